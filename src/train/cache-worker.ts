/**
 * Shards decoded on a worker thread. Reading a shard, decoding its Parquet/Arrow columns, joining
 * the data file's rows and preprocessing them costs ~1.4 µs of CPU per row for 784 uint8 pixels
 * (native preprocessing; ~2.6 µs in JavaScript); on the main thread that time comes straight out of
 * training. Here it overlaps with training, and the finished arrays are transferred, not copied.
 * Input arrays of chunks the stream has finished with go back to the thread to be filled again:
 * fresh 30 MB arrays per shard cost page faults and leave the allocator holding freed memory.
 * Same chunks, same order, same errors as cacheSource.
 */
import { Worker, isMainThread, parentPort, workerData } from 'node:worker_threads';
import type { Manifest } from '../shards/manifest-types.js';
import { UserError } from '../util/errors.js';
import { type InputTransform, cacheSource } from './cache.js';
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
}

type Reply =
  | { id: number; x: Float32Array; t: Float32Array; y: Int32Array; row: Float64Array; length: number }
  | { id: number; error: { message: string; user: boolean; exitCode: number; stack?: string } };

export interface ClosableSource extends ChunkSource {
  close(): Promise<void>;
}

export function workerCacheSource(opts: WorkerSourceOptions): ClosableSource {
  const init: Init = { kind: WORKER_KIND, ...opts };
  const worker = new Worker(new URL(import.meta.url), { workerData: init });
  // An idle loader must not keep the process alive; pending loads keep it referenced.
  worker.unref();
  const pending = new Map<number, { resolve: (t: ExampleTable) => void; reject: (e: Error) => void }>();
  let nextId = 0;
  let failure: Error | null = null;
  const produced = new WeakSet<ExampleTable>();
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
    const table = new ExampleTable(msg.length, opts.manifest.preprocessing.input_shape.reduce((a, b) => a * b, 1), opts.manifest.output.width, { x: msg.x, t: msg.t, y: msg.y, row: msg.row });
    table.length = msg.length;
    produced.add(table);
    p.resolve(table);
  });
  worker.on('error', (err) => failAll(err));
  worker.on('exit', (code) => failAll(new Error(`shard loader thread exited (code ${code})`)));
  const inputWidth = opts.manifest.preprocessing.input_shape.reduce((a, b) => a * b, 1);
  return {
    chunks: opts.manifest.shards.length,
    inputWidth,
    logitsWidth: opts.manifest.output.width,
    hasTeacher: true,
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
      if (failure || !produced.has(table)) return;
      produced.delete(table);
      // Detaches table.x here: the table must not be used after release.
      worker.postMessage({ recycle: table.x }, [table.x.buffer as ArrayBuffer]);
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
  const spare: Float32Array[] = [];
  port.on('message', async (msg: { id: number; index: number } | { recycle: Float32Array }) => {
    if ('recycle' in msg) {
      if (spare.length < 3) spare.push(msg.recycle);
      return;
    }
    const { id, index } = msg;
    try {
      const rec = init.manifest.shards[index];
      const width = init.manifest.preprocessing.input_shape.reduce((a, b) => a * b, 1);
      const k = spare.findIndex((a) => a.length === rec.rows * width);
      const t = await source.load(index, k >= 0 ? spare.splice(k, 1)[0] : undefined);
      const n = t.length;
      const x = owned(t.x.subarray(0, n * t.inputWidth));
      const tt = owned(t.t.subarray(0, n * t.logitsWidth));
      const y = owned(t.y.subarray(0, n));
      const row = owned(t.row.subarray(0, n));
      const transfer = [...new Set([x.buffer, tt.buffer, y.buffer, row.buffer])] as ArrayBuffer[];
      port.postMessage({ id, x, t: tt, y, row, length: n } satisfies Reply, transfer);
    } catch (err) {
      const e = err instanceof Error ? err : new Error(String(err));
      port.postMessage({ id, error: { message: e.message, user: e instanceof UserError, exitCode: e instanceof UserError ? e.exitCode : 1, stack: e.stack } } satisfies Reply);
    }
  });
}

if (!isMainThread && (workerData as Init | undefined)?.kind === WORKER_KIND) await serve(workerData as Init);
