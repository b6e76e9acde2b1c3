/**
 * Bounded-memory shuffling for streamed data: rows enter a fixed-size reservoir; once it is full,
 * each new row evicts a uniformly chosen resident row, which goes to the output. At the end of an
 * epoch the remainder leaves in random order. Every row comes out exactly once, and memory is
 * `capacity` rows whatever the dataset size. Combined with a shuffled shard order this mixes well
 * across shards without ever holding the dataset.
 */
import { ExampleTable } from './examples.js';
import type { Rng } from './rng.js';

export class ShuffleBuffer {
  private readonly table: ExampleTable;

  constructor(capacity: number, inputWidth: number, logitsWidth: number, private rng: Rng) {
    if (!(capacity >= 1)) throw new RangeError('ShuffleBuffer: capacity must be at least 1');
    this.table = new ExampleTable(capacity, inputWidth, logitsWidth);
  }

  /** Empty, with a new generator: the same as a fresh buffer, without allocating one. */
  reset(rng: Rng): void {
    this.rng = rng;
    this.table.length = 0;
  }

  get size(): number {
    return this.table.length;
  }

  get capacity(): number {
    return this.table.capacity;
  }

  /**
   * Add row `i` of `src`. When the buffer is full, a random resident row is first moved to `out`
   * (which must have room); returns true when that happened.
   */
  add(src: ExampleTable, i: number, out: ExampleTable): boolean {
    const t = this.table;
    if (!t.full) {
      t.append(src, i);
      return false;
    }
    const slot = this.rng.int(t.length);
    out.append(t, slot);
    t.put(slot, src, i);
    return true;
  }

  /** Move one random resident row to `out`; false when empty. */
  takeOne(out: ExampleTable): boolean {
    const t = this.table;
    if (t.length === 0) return false;
    const slot = this.rng.int(t.length);
    out.append(t, slot);
    const last = t.length - 1;
    if (slot !== last) t.put(slot, t, last);
    t.length = last;
    return true;
  }
}
