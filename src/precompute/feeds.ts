/**
 * Model feeds for one batch: the data input (float32 preprocessed, or integer ids passed through)
 * and, for sequence teachers with one, the mask or lengths input derived from the pad id.
 */
import * as ort from 'onnxruntime-node';
import { preprocessInto } from '../data/preprocess.js';
import type { MaskInput, Preprocessing } from '../shards/manifest-types.js';
import { type TypedArray, product } from '../util/dtype.js';

export class BatchFeeder {
  private readonly width: number;
  private floats: Float32Array | null;
  private ints: BigInt64Array | Int32Array | null;

  constructor(private readonly inputName: string, private readonly pre: Preprocessing, batchSize: number, private readonly maskShape: number[] | null) {
    this.width = product(pre.input_shape);
    const n = batchSize * this.width;
    this.floats = pre.input_type === 'float32' ? new Float32Array(n) : null;
    this.ints = pre.input_type === 'int64' ? new BigInt64Array(n) : pre.input_type === 'int32' ? new Int32Array(n) : null;
  }

  /** The memory under the main input's tensor (see adopt). */
  get buffer(): ArrayBuffer {
    return (this.floats ?? this.ints!).buffer as ArrayBuffer;
  }

  /** Take back `buffer` after a teacher on another thread had it transferred (it is ours, detached here). */
  adopt(buffer: ArrayBuffer): void {
    if (this.floats) this.floats = new Float32Array(buffer);
    else if (this.ints instanceof BigInt64Array) this.ints = new BigInt64Array(buffer);
    else this.ints = new Int32Array(buffer);
  }

  /**
   * Feeds for `n` examples of `raw` padded to `feedRows` (a fixed-batch model): padding rows are
   * zeros (the pad id for token inputs), and are dropped from the outputs.
   */
  feeds(raw: TypedArray, n: number, feedRows: number): Record<string, ort.Tensor> {
    const pre = this.pre;
    const w = this.width;
    const shape = [feedRows, ...pre.input_shape];
    const used = feedRows * w;
    const out: Record<string, ort.Tensor> = {};
    if (this.floats) {
      preprocessInto(raw, n, pre, this.floats);
      this.floats.fill(0, n * w, used);
      out[this.inputName] = new ort.Tensor('float32', this.floats.subarray(0, used), shape);
    } else if (this.ints instanceof BigInt64Array) {
      const ids = this.ints;
      if (raw instanceof BigInt64Array) ids.set(raw.subarray(0, n * w));
      else for (let i = 0; i < n * w; i++) ids[i] = BigInt(raw[i] as number);
      ids.fill(BigInt(pre.pad_id ?? 0), n * w, used);
      out[this.inputName] = new ort.Tensor('int64', ids.subarray(0, used), shape);
    } else {
      const ids = this.ints!;
      for (let i = 0; i < n * w; i++) ids[i] = Number(raw[i]);
      ids.fill(pre.pad_id ?? 0, n * w, used);
      out[this.inputName] = new ort.Tensor('int32', ids.subarray(0, used), shape);
    }
    if (pre.mask_input) out[pre.mask_input.name] = maskTensor(pre.mask_input, raw, n, feedRows, pre, this.maskShape!);
    return out;
  }
}

/**
 * Which positions of `n` examples are real (1) or padding (0): a position is padding when its
 * token equals pad_id. Without a pad id every position is real. For lengths-style models only the
 * positions before the first pad are real (right padding).
 */
export function realPositions(raw: TypedArray, n: number, pre: Preprocessing, out: Uint8Array = new Uint8Array(n * pre.input_shape[0])): Uint8Array {
  const t = pre.input_shape[0];
  const perPos = product(pre.input_shape.slice(1));
  out.fill(1, 0, n * t);
  if (pre.pad_id === undefined) return out;
  const pad = pre.pad_id;
  const prefix = pre.mask_input?.kind === 'lengths';
  for (let e = 0; e < n; e++) {
    let ended = false;
    for (let p = 0; p < t; p++) {
      // Padding is a position whose first value is the pad id (token inputs have one value).
      const isPad = Number(raw[(e * t + p) * perPos]) === pad;
      if (isPad) ended = true;
      out[e * t + p] = (prefix ? ended : isPad) ? 0 : 1;
    }
  }
  return out;
}

function maskTensor(mask: MaskInput, raw: TypedArray, n: number, feedRows: number, pre: Preprocessing, declared: number[]): ort.Tensor {
  const t = pre.input_shape[0];
  const real = realPositions(raw, n, pre);
  if (mask.kind === 'lengths') {
    const lengths = new Float64Array(feedRows);
    for (let e = 0; e < n; e++) {
      let len = 0;
      while (len < t && real[e * t + len] === 1) len++;
      lengths[e] = len;
    }
    return tensorOf(mask.type, lengths, declared.length >= 2 ? [feedRows, 1] : [feedRows]);
  }
  const values = new Float64Array(feedRows * t);
  for (let i = 0; i < n * t; i++) values[i] = real[i];
  return tensorOf(mask.type, values, [feedRows, t]);
}

function tensorOf(type: string, values: Float64Array, dims: number[]): ort.Tensor {
  switch (type) {
    case 'int64': return new ort.Tensor('int64', BigInt64Array.from(values, (v) => BigInt(v)), dims);
    case 'int32': return new ort.Tensor('int32', Int32Array.from(values), dims);
    case 'bool': return new ort.Tensor('bool', Uint8Array.from(values), dims);
    default: return new ort.Tensor('float32', Float32Array.from(values), dims);
  }
}
