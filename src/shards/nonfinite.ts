import type { ShardColumns } from './format.js';

export const MAX_NONFINITE_EXAMPLES = 100;

/** Rows whose logits (or top-k values and logsumexp) contain NaN or ±Inf, and the dataset row ids of the first few. */
export function scanNonfinite(cols: ShardColumns, maxExamples = MAX_NONFINITE_EXAMPLES): { rows: number; examples: number[] } {
  const { logits, logitsWidth: w } = cols;
  const examples: number[] = [];
  let rows = 0;
  for (let r = 0; r < cols.rows; r++) {
    // Top-k: a NaN logsumexp marks a row whose full output was not finite (see sparse/topk.ts).
    const lse = cols.logsumexp ? cols.logsumexp[r] : 0;
    if (lse - lse !== 0 || rowIsNonfinite(logits, r * w, (r + 1) * w, cols.logitsDtype === 'float16')) {
      rows++;
      if (examples.length < maxExamples) examples.push(Number(cols.row[r]));
    }
  }
  return { rows, examples };
}

function rowIsNonfinite(v: Float32Array | Uint16Array, start: number, end: number, half: boolean): boolean {
  if (half) {
    // float16: exponent bits all ones is Inf or NaN.
    for (let i = start; i < end; i++) if ((v[i] & 0x7c00) === 0x7c00) return true;
    return false;
  }
  // x - x is 0 for every finite x and NaN for NaN and ±Inf: one test, no branches on the value.
  for (let i = start; i < end; i++) if (v[i] - v[i] !== 0) return true;
  return false;
}
