import { type PixelRows, copyPixelRows, copyRow, movePixelRows, moveRows } from './row-moves.js';

/**
 * A block of training examples in flat typed arrays: student inputs (already preprocessed and laid
 * out for the student), teacher logits, labels and dataset row indices. Used for decoded shards,
 * the shuffle buffer and batches alike, so that moving a row is a few typed-array copies.
 */
export class ExampleTable {
  /** rows in use, from 0 */
  length = 0;
  /** inputs as floats, unless `pixels` holds them (then empty) */
  readonly x: Float32Array;
  /**
   * A decoded shard's inputs as raw uint8 rows, converted as rows are copied out (into the shuffle
   * buffer or a batch): the loader then writes a quarter of the bytes and converts nothing.
   */
  readonly pixels: PixelRows | null;
  /** teacher logits, capacity * logitsWidth; all zero when the source has no teacher */
  readonly t: Float32Array;
  /** class label, -1 when unknown */
  readonly y: Int32Array;
  readonly row: Float64Array;

  constructor(
    readonly capacity: number,
    readonly inputWidth: number,
    readonly logitsWidth: number,
    arrays: Partial<Pick<ExampleTable, 'x' | 't' | 'y' | 'row' | 'pixels'>> = {},
  ) {
    this.pixels = arrays.pixels ?? null;
    this.x = arrays.x ?? new Float32Array(this.pixels ? 0 : capacity * inputWidth);
    this.t = arrays.t ?? new Float32Array(capacity * logitsWidth);
    this.y = arrays.y ?? new Int32Array(capacity).fill(-1);
    this.row = arrays.row ?? new Float64Array(capacity);
    if ((this.pixels ? this.pixels.u8.length : this.x.length) < capacity * inputWidth || this.t.length < capacity * logitsWidth || this.y.length < capacity || this.row.length < capacity) {
      throw new RangeError('ExampleTable: an array is shorter than capacity * width');
    }
  }

  get full(): boolean {
    return this.length >= this.capacity;
  }

  /** Copy row `i` of `src` into slot `slot` of this table. */
  put(slot: number, src: ExampleTable, i: number): void {
    const d = this.inputWidth;
    const k = this.logitsWidth;
    if (this.pixels || src.pixels) this.inputsFrom(slot, src, Int32Array.of(i), 1);
    else copyRow(this.x, slot * d, src.x, i * d, d);
    copyRow(this.t, slot * k, src.t, i * k, k);
    this.y[slot] = src.y[i];
    this.row[slot] = src.row[i];
  }

  append(src: ExampleTable, i: number): void {
    this.put(this.length++, src, i);
  }

  /** Append rows rows[0..count) of `src` (a gather: one call for a batch's worth of rows). */
  appendRows(src: ExampleTable, rows: Int32Array, count: number): void {
    const move = moveRows();
    const at = this.length;
    this.inputsFrom(at, src, rows, count);
    move(this.t, at, src.t, rows, count, this.logitsWidth, null, null);
    for (let k = 0; k < count; k++) {
      this.y[at + k] = src.y[rows[k]];
      this.row[at + k] = src.row[rows[k]];
    }
    this.length = at + count;
  }

  /** Inputs of rows[0..count) of `src` into rows at.. of this table: pixels stay bytes until they reach floats. */
  private inputsFrom(at: number, src: ExampleTable, rows: Int32Array, count: number): void {
    if (this.pixels) {
      if (!src.pixels) throw new Error('ExampleTable: float rows cannot go into a table of pixel rows');
      copyPixelRows(this.pixels.u8, at, src.pixels.u8, rows, count, this.inputWidth);
    } else if (src.pixels) movePixelRows()(this.x, at, src.pixels, rows, count, this.inputWidth, null, null);
    else moveRows()(this.x, at, src.x, rows, count, this.inputWidth, null, null);
  }

  /** The first `length` rows' inputs / logits / labels, as views (no copy; pixel rows are converted into a new array). */
  xView(): Float32Array {
    if (!this.pixels) return this.x.subarray(0, this.length * this.inputWidth);
    const x = new Float32Array(this.length * this.inputWidth);
    movePixelRows()(x, 0, this.pixels, Int32Array.from({ length: this.length }, (_, i) => i), this.length, this.inputWidth, null, null);
    return x;
  }

  tView(): Float32Array {
    return this.t.subarray(0, this.length * this.logitsWidth);
  }

  yView(): Int32Array {
    return this.y.subarray(0, this.length);
  }
}

/** True when all of row i's teacher logits are finite (NaN/Inf rows cannot be distilled from). */
export function teacherRowFinite(t: Float32Array, i: number, k: number): boolean {
  for (let j = i * k; j < i * k + k; j++) if (!Number.isFinite(t[j])) return false;
  return true;
}
