/**
 * Sums over leading axes (the bias gradients of dense and conv layers: [batch, ..., C] -> [C]).
 * tfjs-backend-wasm reduces only innermost axes, so it transposes the whole input first; viewed as
 * a [rows, cols] matrix, the same sum is a pass of column sums. Accumulated in float64, as the cpu
 * backend's sums are.
 */
import * as tf from '@tensorflow/tfjs';
import type { KernelArgs } from './wasm-heap.js';

export interface LeadingSplit {
  rows: number;
  cols: number;
  outShape: number[];
}

/** The [rows, cols] view of a float32 Sum over leading axes, or null for any other Sum. */
export function leadingSplit(args: KernelArgs): LeadingSplit | null {
  const x = args.inputs.x!;
  const axes = tf.util.parseAxisParam(args.attrs.axis as number | number[], x.shape).sort((a, b) => a - b);
  const k = axes.length;
  if (x.dtype !== 'float32' || k === 0 || k === x.shape.length || !axes.every((a, i) => a === i)) return null;
  const rows = x.shape.slice(0, k).reduce((a, b) => a * b, 1);
  const cols = x.shape.slice(k).reduce((a, b) => a * b, 1);
  if (rows < 2 || cols < 1) return null;
  return { rows, cols, outShape: args.attrs.keepDims ? x.shape.map((d, i) => (i < k ? 1 : d)) : x.shape.slice(k) };
}

export function columnSums(x: Float32Array, xOff: number, rows: number, cols: number, y: Float32Array, yOff: number): void {
  const acc = new Float64Array(cols);
  for (let i = 0; i < rows; i++) {
    const base = xOff + i * cols;
    for (let j = 0; j < cols; j++) acc[j] += x[base + j];
  }
  for (let j = 0; j < cols; j++) y[yOff + j] = acc[j];
}
