/**
 * Streams batches from a sequence of chunks (decoded shards) with one chunk of read-ahead and an
 * optional shuffle buffer. Memory: at most two chunks + the buffer + one batch.
 */
import { ExampleTable } from './examples.js';
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
  const buffer = shuffling ? new ShuffleBuffer(opts.shuffleBuffer, source.inputWidth, source.logitsWidth, opts.rng!) : null;

  let next: Promise<ExampleTable> | null = order.length > 0 ? prefetch(source, order[0]) : null;
  for (let k = 0; k < order.length; k++) {
    const chunk = await next!;
    next = k + 1 < order.length ? prefetch(source, order[k + 1]) : null;
    for (let i = 0; i < chunk.length; i++) {
      if (opts.keep && !opts.keep(chunk, i)) {
        opts.onSkip?.(chunk, i);
        continue;
      }
      if (buffer) buffer.add(chunk, i, batch);
      else batch.append(chunk, i);
      if (batch.full) {
        yield batch;
        batch.length = 0;
        if (next) await yieldToEventLoop();
      }
    }
  }
  if (buffer) {
    while (buffer.takeOne(batch)) {
      if (batch.full) {
        yield batch;
        batch.length = 0;
      }
    }
  }
  if (batch.length > 0) yield batch;
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
