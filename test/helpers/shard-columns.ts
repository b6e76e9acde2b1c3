/** Deterministic ShardColumns for tests, and exact comparison of two of them. */
import assert from 'node:assert/strict';
import type { ShardColumns } from '../../src/shards/format.js';
import { Rng } from '../../src/train/rng.js';
import { allocTyped, type DType, type TypedArray } from '../../src/util/dtype.js';

/** The project's seeded PRNG as a function: tests must be reproducible. */
export function rng(seed: number): () => number {
  const r = new Rng(seed);
  return () => r.next();
}

export interface RandomColumnsOptions {
  rows: number;
  width: number;
  firstRow?: number;
  seed?: number;
  logitsDtype?: 'float32' | 'float16';
  label?: boolean;
  /** store an input column of this dtype and width */
  input?: { dtype: DType; width: number };
  /** dataset row ids (firstRow-based) whose logits get a NaN/Inf */
  nonfiniteRows?: number[];
}

export function randomShardColumns(o: RandomColumnsOptions): ShardColumns {
  const rand = rng(o.seed ?? 1);
  const first = o.firstRow ?? 0;
  const dtype = o.logitsDtype ?? 'float32';
  const row = new BigInt64Array(o.rows);
  for (let i = 0; i < o.rows; i++) row[i] = BigInt(first + i);
  let logits: Float32Array | Uint16Array;
  if (dtype === 'float32') {
    logits = new Float32Array(o.rows * o.width);
    for (let i = 0; i < logits.length; i++) logits[i] = (rand() * 2 - 1) * 10;
  } else {
    logits = new Uint16Array(o.rows * o.width);
    // finite halves only: exponent field 0..30, any sign and mantissa
    for (let i = 0; i < logits.length; i++) logits[i] = ((rand() * 2) << 15) | (Math.floor(rand() * 31) << 10) | Math.floor(rand() * 1024);
  }
  for (const [k, r] of (o.nonfiniteRows ?? []).entries()) {
    const at = (r - first) * o.width + (k % o.width);
    if (dtype === 'float32') (logits as Float32Array)[at] = k % 2 ? Infinity : NaN;
    else logits[at] = k % 2 ? 0x7c00 : 0x7e00;
  }
  const cols: ShardColumns = { rows: o.rows, row, logits, logitsWidth: o.width, logitsDtype: dtype };
  if (o.label) cols.label = Int32Array.from({ length: o.rows }, () => Math.floor(rand() * o.width));
  if (o.input) {
    cols.input = randomTyped(o.input.dtype, o.rows * o.input.width, rand);
    cols.inputWidth = o.input.width;
    cols.inputDtype = o.input.dtype;
  }
  return cols;
}

function randomTyped(dtype: DType, n: number, rand: () => number): TypedArray {
  const out = allocTyped(dtype, n);
  // Random bytes cover every bit pattern of integer types; floats get finite random values.
  if (dtype === 'float32' || dtype === 'float64') {
    for (let i = 0; i < n; i++) (out as Float32Array)[i] = (rand() - 0.5) * 1000;
  } else {
    const bytes = new Uint8Array(out.buffer, out.byteOffset, out.byteLength);
    for (let i = 0; i < bytes.length; i++) bytes[i] = Math.floor(rand() * 256);
    if (dtype === 'float16') for (let i = 0; i < n; i++) (out as Uint16Array)[i] &= 0xbbff; // keep exponent < 31: finite
  }
  return out;
}

function bytesOf(a: TypedArray): Buffer {
  return Buffer.from(a.buffer, a.byteOffset, a.byteLength);
}

/** Bit-exact equality of every column, dtype and width (NaN payloads included). */
export function assertColumnsEqual(actual: ShardColumns, expected: ShardColumns): void {
  assert.equal(actual.rows, expected.rows, 'rows');
  assert.equal(actual.logitsWidth, expected.logitsWidth, 'logitsWidth');
  assert.equal(actual.logitsDtype, expected.logitsDtype, 'logitsDtype');
  assert.equal(actual.logits.constructor, expected.logits.constructor, 'logits array type');
  assert.ok(bytesOf(actual.row).equals(bytesOf(expected.row)), 'row ids differ');
  assert.ok(bytesOf(actual.logits).equals(bytesOf(expected.logits)), 'logits differ');
  assert.equal(Boolean(actual.label), Boolean(expected.label), 'label column presence');
  if (expected.label) assert.ok(bytesOf(actual.label!).equals(bytesOf(expected.label)), 'labels differ');
  for (const key of ['position', 'topkIndices', 'sampleCounts', 'logsumexp'] as const) {
    assert.equal(Boolean(actual[key]), Boolean(expected[key]), `${key} column presence`);
    if (expected[key]) assert.ok(bytesOf(actual[key]!).equals(bytesOf(expected[key]!)), `${key} differs`);
  }
  assert.equal(Boolean(actual.input), Boolean(expected.input), 'input column presence');
  if (expected.input) {
    assert.equal(actual.inputDtype, expected.inputDtype, 'inputDtype');
    assert.equal(actual.inputWidth, expected.inputWidth, 'inputWidth');
    assert.equal(actual.input!.constructor, expected.input.constructor, 'input array type');
    assert.ok(bytesOf(actual.input!).equals(bytesOf(expected.input)), 'inputs differ');
  }
}
