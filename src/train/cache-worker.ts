/**
 * Shards decoded on a worker thread. Reading a shard, decoding its Parquet/Arrow columns, joining
 * the data file's rows and preprocessing them costs ~1.4 µs of CPU per row for 784 uint8 pixels
 * (native preprocessing; ~2.6 µs in JavaScript); on the main thread that time comes straight out of
 * training. Here it overlaps with training.
 * Inputs are decoded into a few slots of shared memory that live as long as the source: handing
 * 30 MB arrays back and forth by transfer counts as fresh external memory in each thread every
 * shard, and V8 answered with full garbage collections in both (measured: 2-8 ms pauses, with
 * concurrent marking taking CPU from training, after every shard). A slot is reused once the stream
 * releases its chunk; with none free (a consumer holding many chunks) a load falls back to a fresh
 * transferred array. Same chunks, same order, same errors as cacheSource; uint8 data comes as pixel
 * rows (ExampleTable.pixels), whose floats are the ones cacheSource gives.
 */
import { Worker, isMainThread, parentPort, workerData } from 'node:worker_threads';
import type { Manifest } from '../shards/manifest-types.js';
import { product } from '../util/dtype.js';
import { UserError } from '../util/errors.js';
import { pixelAffine } from '../data/preprocess.js';
import { type InputTransform, cacheSource, pixelChunks } from './cache.js';
import type { TailMode } from './sparse-targets.js';
import { ExampleTable } from './examples.js';
import type { ChunkSource } from './stream.js';

const WORKER_KIND = 'kdcache-cache-loader';

export interface WorkerSourceOptions {
  cacheDir: string;
  manifest: Manifest;
  transform: InputTransform;
  /** the data file to join (already verified against the manifest by the caller), or null for stored inputs */
  dataset: { file: string; inputColumn: string | null } | null;
  labels: Int32Array | null;
  /** top-k caches: see CacheSourceOptions.tail */
  tail?: TailMode;
  /** sampled caches: see CacheSourceOptions.temperature */
  temperature?: number;
}

interface Init extends WorkerSourceOptions {
  kind: typeof WORKER_KIND;
  /** input slots, each room for the largest shard's rows: raw uint8 rows when `pixels`, else floats */
  slots: SharedArrayBuffer[];
  pixels: boolean;
}

/** Current chunk, the next one, and the next pass's first two while this pass ends: three suffice. */
const SLOTS = 3;

type Reply =
  | { id: number; x: Float32Array | Uint8Array | null; slot: number; pixels: boolean; t: Float32Array; y: Int32Array; row: Float64Array; length: number }
  | { id: number; error: { message: string; user: boolean; exitCode: number; stack?: string } };

export interface ClosableSource extends ChunkSource {
  close(): Promise<void>;
}

export function workerCacheSource(opts: WorkerSourceOptions): ClosableSource {
  const width = product(opts.manifest.preprocessing.input_shape);
  const maxRows = opts.manifest.shards.reduce((m, r) => Math.max(m, r.rows), 0);
  // uint8 rows cross as raw bytes and become floats only as they are gathered into a batch
  // (ExampleTable.pixels): converting here wrote 4 bytes per pixel into memory training shares
  // (measured in bench/train rounds: streaming 0.920-0.965 of preloaded with it, 0.954-0.999 without).
  const pixels = pixelChunks(opts.manifest, opts.transform);
  const affine = pixelAffine(opts.transform.pre);
  const slots = Array.from({ length: SLOTS }, () => new SharedArrayBuffer(maxRows * width * (pixels ? 1 : 4)));
  const init: Init = { kind: WORKER_KIND, ...opts, slots, pixels };
  const worker = new Worker(new URL(import.meta.url), { workerData: init });
  // An idle loader must not keep the process alive; pending loads keep it referenced.
  worker.unref();
  const pending = new Map<number, { resolve: (t: ExampleTable) => void; reject: (e: Error) => void }>();
  let nextId = 0;
  let failure: Error | null = null;
  /** tables whose inputs live in a slot, and which slot */
  const produced = new WeakMap<ExampleTable, number>();
  const failAll = (err: Error) => {
    failure ??= err;
    for (const p of pending.values()) p.reject(err);
    pending.clear();
  };
  worker.on('message', (msg: Reply) => {
    const p = pending.get(msg.id);
    if (!p) return;
    pending.delete(msg.id);
    if (pending.size === 0) worker.unref();
    if ('error' in msg) {
      const err = msg.error.user ? new UserError(msg.error.message, msg.error.exitCode) : new Error(msg.error.message);
      if (!msg.error.user && msg.error.stack) err.stack = msg.error.stack;
      p.reject(err);
      return;
    }
    // inputs in a slot (x null) or transferred
    const inputs = msg.pixels
      ? { pixels: { u8: (msg.x as Uint8Array | null) ?? new Uint8Array(slots[msg.slot], 0, msg.length * width), ...affine } }
      : { x: (msg.x as Float32Array | null) ?? new Float32Array(slots[msg.slot], 0, msg.length * width) };
    const table = new ExampleTable(msg.length, width, opts.manifest.output.width, { ...inputs, t: msg.t, y: msg.y, row: msg.row });
    table.length = msg.length;
    if (!msg.x) produced.set(table, msg.slot);
    p.resolve(table);
  });
  worker.on('error', (err) => failAll(err));
  worker.on('exit', (code) => failAll(new Error(`shard loader thread exited (code ${code})`)));
  return {
    chunks: opts.manifest.shards.length,
    inputWidth: width,
    logitsWidth: opts.manifest.output.width,
    hasTeacher: true,
    pixels: pixels ? affine : null,
    get busy() {
      return pending.size > 0;
    },
    load(index: number): Promise<ExampleTable> {
      if (failure) return Promise.reject(failure);
      const id = nextId++;
      return new Promise((resolve, reject) => {
        pending.set(id, { resolve, reject });
        worker.ref();
        worker.postMessage({ id, index });
      });
    },
    release(table: ExampleTable): void {
      const slot = produced.get(table);
      if (failure || slot === undefined) return;
      produced.delete(table);
      // The slot is refilled by a later load: the table must not be used after release.
      worker.postMessage({ free: slot });
    },
    async close(): Promise<void> {
      failure ??= new Error('shard loader closed');
      await worker.terminate();
    },
  };
}

/** An array that owns its whole buffer can be transferred; a view into a shared one is copied first. */
function owned<T extends Float32Array | Int32Array | Float64Array>(a: T): T {
  return a.byteOffset === 0 && a.byteLength === a.buffer.byteLength && a.buffer instanceof ArrayBuffer ? a : (a.slice() as T);
}

async function serve(init: Init): Promise<void> {
  const port = parentPort!;
  // Normal priority, measured: at the lowest (nice 19) the spinning BLAS threads starved this one
  // and training waited for shards (streaming 0.83-0.85 of preloaded vs 0.86-0.88 at normal).
  const { openDataset } = await import('../data/open.js');
  const dataset = init.dataset ? await openDataset(init.dataset.file, init.dataset.inputColumn ? { inputColumn: init.dataset.inputColumn } : {}) : null;
  const source = cacheSource({ cacheDir: init.cacheDir, manifest: init.manifest, transform: init.transform, dataset, labels: init.labels, tail: init.tail, temperature: init.temperature });
  const free = init.slots.map((_, i) => i);
  const width = product(init.manifest.preprocessing.input_shape);
  port.on('message', async (msg: { id: number; index: number } | { free: number }) => {
    if ('free' in msg) {
      free.push(msg.free);
      return;
    }
    const { id, index } = msg;
    try {
      const rec = init.manifest.shards[index];
      const slot = free.length > 0 ? free.shift()! : -1;
      let t: ExampleTable;
      try {
        // Without a free slot, pixel rows still come as pixels (every chunk of a source is of one kind).
        const into = init.pixels
          ? slot < 0 ? new Uint8Array(rec.rows * width) : new Uint8Array(init.slots[slot], 0, rec.rows * width)
          : slot < 0 ? undefined : new Float32Array(init.slots[slot], 0, rec.rows * width);
        t = await source.load(index, into);
      } catch (err) {
        if (slot >= 0) free.unshift(slot);
        throw err;
      }
      const n = t.length;
      // The transform writes into the slot unless the layout needs its own array (copied in then);
      // a chunk larger than the slot (one row per sequence position) is transferred instead. Pixel
      // rows are always in the slot.
      const fits = slot >= 0 && (t.pixels !== null || n * width * 4 <= init.slots[slot].byteLength);
      if (slot >= 0 && !fits) free.unshift(slot);
      if (fits && !t.pixels && t.x.buffer !== init.slots[slot]) new Float32Array(init.slots[slot], 0, n * width).set(t.x.subarray(0, n * width));
      const x = fits ? null : t.pixels ? t.pixels.u8 : owned(t.x.subarray(0, n * t.inputWidth));
      const tt = owned(t.t.subarray(0, n * t.logitsWidth));
      const y = owned(t.y.subarray(0, n));
      const row = owned(t.row.subarray(0, n));
      const transfer = [...new Set([...(x ? [x.buffer] : []), tt.buffer, y.buffer, row.buffer])] as ArrayBuffer[];
      port.postMessage({ id, x, slot: fits ? slot : -1, pixels: t.pixels !== null, t: tt, y, row, length: n } satisfies Reply, transfer);
    } catch (err) {
      const e = err instanceof Error ? err : new Error(String(err));
      port.postMessage({ id, error: { message: e.message, user: e instanceof UserError, exitCode: e instanceof UserError ? e.exitCode : 1, stack: e.stack } } satisfies Reply);
    }
  });
}

if (!isMainThread && (workerData as Init | undefined)?.kind === WORKER_KIND) await serve(workerData as Init);
