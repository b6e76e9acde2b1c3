/**
 * Bounded-memory shuffling for streamed data: rows enter a fixed-size reservoir; once it is full,
 * each new row evicts a uniformly chosen resident row, which goes to the output. At the end of an
 * epoch the remainder leaves in random order. Every row comes out exactly once, and memory is
 * `capacity` rows whatever the dataset size. Combined with a shuffled shard order this mixes well
 * across shards without ever holding the dataset.
 */
import { ExampleTable } from './examples.js';
import { type PixelRows, movePixelRows, moveRows } from './row-moves.js';
import type { Rng } from './rng.js';

export class ShuffleBuffer {
  private readonly table: ExampleTable;

  /**
   * With `pixels` (the conversion of a source whose chunks hold pixel rows) the buffer keeps raw
   * bytes, a quarter of the memory and of the copying; rows become floats as they leave.
   */
  constructor(capacity: number, inputWidth: number, logitsWidth: number, private rng: Rng, pixels: Omit<PixelRows, 'u8'> | null = null) {
    if (!(capacity >= 1)) throw new RangeError('ShuffleBuffer: capacity must be at least 1');
    this.table = new ExampleTable(capacity, inputWidth, logitsWidth, pixels ? { pixels: { ...pixels, u8: new Uint8Array(capacity * inputWidth) } } : {});
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
   * Add rows rows[from..from+count) of `src`, in order. While the buffer is filling, rows just go in;
   * once it is full, each new row first evicts a random resident row to `out`. Stops when `out` is
   * full and returns how many rows went in. Row by row, the same moves and random draws as adding
   * one row at a time; the copies of a batch's worth of rows are made by one moveRows call.
   */
  addRows(src: ExampleTable, rows: Int32Array, from: number, count: number, out: ExampleTable): number {
    const t = this.table;
    let used = 0;
    if (!t.full) {
      used = Math.min(count, t.capacity - t.length);
      t.appendRows(src, rows.subarray(from, from + used), used);
    }
    const m = Math.min(count - used, out.capacity - out.length);
    if (m <= 0) return used;
    const slots = (this.slots = atLeast(this.slots, m));
    for (let j = 0; j < m; j++) slots[j] = this.rng.int(t.length);
    this.evict(out, src, rows.subarray(from + used, from + used + m), slots, m);
    return used + m;
  }

  /** Move random resident rows to `out` until it is full or the buffer is empty; returns how many. */
  drain(out: ExampleTable): number {
    const t = this.table;
    const m = Math.min(t.length, out.capacity - out.length);
    const slots = (this.slots = atLeast(this.slots, m));
    const last = (this.lasts = atLeast(this.lasts, m));
    // Each taken slot is refilled with the buffer's last row, so the residents stay in 0..length-1.
    for (let j = 0, n = t.length; j < m; j++, n--) {
      slots[j] = this.rng.int(n);
      last[j] = slots[j] === n - 1 ? -1 : n - 1;
    }
    this.evict(out, t, last, slots, m);
    t.length -= m;
    return m;
  }

  /** For j in order: out gets resident slots[j], which is replaced by src row rows[j] (none if < 0). */
  private evict(out: ExampleTable, src: ExampleTable, rows: Int32Array, slots: Int32Array, m: number): void {
    const t = this.table;
    const move = moveRows();
    const at = out.length;
    // A source's chunks are all of one kind (ChunkSource.pixels), and so is its buffer.
    if (Boolean(t.pixels) !== Boolean(src.pixels)) throw new Error('ShuffleBuffer: pixel and float rows cannot be mixed');
    if (t.pixels) movePixelRows()(out.x, at, src.pixels!, rows, m, t.inputWidth, t.pixels.u8, slots);
    else move(out.x, at, src.x, rows, m, t.inputWidth, t.x, slots);
    move(out.t, at, src.t, rows, m, t.logitsWidth, t.t, slots);
    for (let j = 0; j < m; j++) {
      const s = slots[j];
      out.y[at + j] = t.y[s];
      out.row[at + j] = t.row[s];
      const r = rows[j];
      if (r >= 0) {
        t.y[s] = src.y[r];
        t.row[s] = src.row[r];
      }
    }
    out.length = at + m;
  }

  /** scratch for evict: the slots drawn, and the rows that refill them */
  private slots: Int32Array = new Int32Array(0);
  private lasts: Int32Array = new Int32Array(0);
}

function atLeast(a: Int32Array, m: number): Int32Array {
  return a.length >= m ? a : new Int32Array(m);
}
