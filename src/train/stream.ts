/**
 * Streams batches from a sequence of chunks (decoded shards) with one chunk of read-ahead and an
 * optional shuffle buffer. Memory: at most two chunks + the buffer + one batch. With `nextOrder`,
 * the next pass's first two chunks are read while this pass ends (its last chunk, then the drain
 * of the buffer), so an epoch does not start by waiting for the disk and the decoder.
 */
import { ExampleTable } from './examples.js';
import type { PixelRows } from './row-moves.js';
import type { Rng } from './rng.js';
import { ShuffleBuffer } from './shuffle-buffer.js';

/** Something that can produce chunk `index` of a dataset as an ExampleTable (e.g. one shard). */
export interface ChunkSource {
  readonly chunks: number;
  readonly inputWidth: number;
  readonly logitsWidth: number;
  /** whether `t` holds teacher logits */
  readonly hasTeacher: boolean;
  load(index: number): Promise<ExampleTable>;
  /** true while a load runs on another thread of this process (training then leaves it a core) */
  readonly busy?: boolean;
  /** set when every chunk holds its inputs as pixel rows (ExampleTable.pixels) with this conversion */
  readonly pixels?: Omit<PixelRows, 'u8'> | null;
  /** The stream is done with a table `load` returned: the source may reuse its memory. */
  release?(table: ExampleTable): void;
}

export interface StreamOptions {
  batchSize: number;
  /** rows; 0 or 1 = no shuffling (evaluation order) */
  shuffleBuffer: number;
  /** required when shuffleBuffer > 1 */
  rng?: Rng;
  /** rows for which this returns false are left out (held-out validation rows, non-finite teachers) */
  keep?: (table: ExampleTable, i: number) => boolean;
  /** sees every row left out by `keep` */
  onSkip?: (table: ExampleTable, i: number) => void;
  /** the chunk order of the pass that follows this one on the same source (the next epoch) */
  nextOrder?: readonly number[];
}

/** Loads started by the previous pass over a source for the pass that follows it. */
const early = new WeakMap<ChunkSource, Map<number, Promise<ExampleTable>>>();

/** The shuffle buffer is reused from pass to pass: a fresh one costs a page fault per 4 KiB. */
const buffers = new WeakMap<ChunkSource, ShuffleBuffer>();

const inUse = new WeakSet<ShuffleBuffer>();

function shuffleBufferFor(source: ChunkSource, capacity: number, rng: Rng): ShuffleBuffer {
  const kept = buffers.get(source);
  if (kept && kept.capacity === capacity && !inUse.has(kept)) {
    kept.reset(rng);
    return kept;
  }
  const fresh = new ShuffleBuffer(capacity, source.inputWidth, source.logitsWidth, rng, source.pixels ?? null);
  if (!kept || !inUse.has(kept)) buffers.set(source, fresh);
  return fresh;
}

/**
 * Read chunks in `order`, one ahead: the next chunk's read and decode are started before the current
 * chunk's batches are handed out, and the consumer yields to the event loop between batches so that
 * the read can progress. Yields the same batch table each time: use it before asking for the next.
 */
export async function* streamBatches(source: ChunkSource, order: readonly number[], opts: StreamOptions): AsyncGenerator<ExampleTable> {
  const batch = new ExampleTable(opts.batchSize, source.inputWidth, source.logitsWidth);
  const shuffling = opts.shuffleBuffer > 1;
  if (shuffling && !opts.rng) throw new Error('streamBatches: shuffling needs an rng');
  const buffer = shuffling ? shuffleBufferFor(source, opts.shuffleBuffer, opts.rng!) : null;
  const started = early.get(source);
  early.delete(source);
  const load = (index: number) => {
    const p = started?.get(index);
    started?.delete(index);
    return p ?? prefetch(source, index);
  };
  const following = opts.nextOrder ?? [];
  const startEarly = (index: number | undefined) => {
    if (index === undefined) return;
    if (!early.has(source)) early.set(source, new Map());
    const m = early.get(source)!;
    if (!m.has(index)) m.set(index, prefetch(source, index));
  };

  if (buffer) inUse.add(buffer);
  try {
    let next: Promise<ExampleTable> | null = order.length > 0 ? load(order[0]) : null;
    for (let k = 0; k < order.length; k++) {
      const chunk = await next!;
      next = k + 1 < order.length ? load(order[k + 1]) : null;
      // Early loads this pass did not ask for first (another pass came in between) are dropped.
      if (k === 0) started?.clear();
      if (!next) startEarly(following[0]);
      const rows = keptRows(chunk, opts);
      for (let p = 0; p < rows.length;) {
        if (buffer) p += buffer.addRows(chunk, rows, p, rows.length - p, batch);
        else {
          const m = Math.min(rows.length - p, batch.capacity - batch.length);
          batch.appendRows(chunk, rows.subarray(p, p + m), m);
          p += m;
        }
        if (batch.full) {
          yield batch;
          batch.length = 0;
          // Let a finished load's reply in: the next chunk, or the next pass's first (ChunkSource.busy)
          if (next || following.length > 0) await yieldToEventLoop();
        }
      }
      source.release?.(chunk);
    }
    startEarly(following[1]);
    if (buffer) {
      while (buffer.drain(batch) > 0) {
        if (batch.full) {
          yield batch;
          batch.length = 0;
          if (following.length > 0) await yieldToEventLoop();
        }
      }
    }
    if (batch.length > 0) yield batch;
  } finally {
    if (buffer) inUse.delete(buffer);
  }
}

/** The rows of a chunk that `keep` accepts, in order; onSkip sees the others. */
function keptRows(chunk: ExampleTable, opts: StreamOptions): Int32Array {
  const rows = new Int32Array(chunk.length);
  let n = 0;
  for (let i = 0; i < chunk.length; i++) {
    if (!opts.keep || opts.keep(chunk, i)) rows[n++] = i;
    else opts.onSkip?.(chunk, i);
  }
  return n === chunk.length ? rows : rows.subarray(0, n);
}

function prefetch(source: ChunkSource, index: number): Promise<ExampleTable> {
  const p = source.load(index);
  // Attach a handler now: a read-ahead that fails before it is awaited must not count as an
  // unhandled rejection (which would kill the process); the error surfaces when it is awaited.
  p.catch(() => {});
  return p;
}

function yieldToEventLoop(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

/** A ChunkSource over tables already in memory (validation rows, tests). */
export function memorySource(tables: ExampleTable[], hasTeacher: boolean): ChunkSource {
  const first = tables[0];
  return {
    chunks: tables.length,
    inputWidth: first?.inputWidth ?? 0,
    logitsWidth: first?.logitsWidth ?? 0,
    hasTeacher,
    load: async (index) => tables[index],
  };
}
