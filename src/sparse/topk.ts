/**
 * Exact top-k of teacher rows and the log-sum-exp of each full row: what a sparse cache stores so
 * that p_i = exp(z_i - lse) is the exact teacher probability of every stored class and
 * 1 - sum_i p_i the exact tail mass.
 *
 * Order is total and deterministic: larger value first, equal values by lower class index. So
 * every run, partition and machine stores the same classes in the same order.
 */

/** True when (va, ia) ranks before (vb, ib). NaN never ranks before anything. */
function before(va: number, ia: number, vb: number, ib: number): boolean {
  return va > vb || (va === vb && ia < ib);
}

/**
 * Top `k` of `values[offset .. offset + width)`: class indices into `outIdx[outOffset ..]` and
 * their values into `outVal[outOffset ..]`, best first. O(width log k) with a k-slot min-heap whose
 * root is the worst class kept so far. `outVal` may be a float64 array for exact downstream math.
 */
export function topkRow(
  values: ArrayLike<number>, offset: number, width: number, k: number,
  outIdx: Int32Array, outVal: { [i: number]: number }, outOffset: number,
  heapIdx: Int32Array = new Int32Array(k), heapVal: Float64Array = new Float64Array(k),
): void {
  if (!(k >= 1 && k <= width)) throw new RangeError(`topkRow: k ${k} outside [1, ${width}]`);
  // Fill with the first k, heapify, then offer the rest.
  for (let i = 0; i < k; i++) {
    heapIdx[i] = i;
    heapVal[i] = values[offset + i];
  }
  for (let i = (k >> 1) - 1; i >= 0; i--) siftDown(heapIdx, heapVal, k, i);
  for (let i = k; i < width; i++) {
    const v = values[offset + i];
    if (before(v, i, heapVal[0], heapIdx[0])) {
      heapVal[0] = v;
      heapIdx[0] = i;
      siftDown(heapIdx, heapVal, k, 0);
    }
  }
  // Pop worst-first into the output from the back: the output ends up best-first.
  for (let n = k; n > 0; n--) {
    outIdx[outOffset + n - 1] = heapIdx[0];
    outVal[outOffset + n - 1] = heapVal[0];
    heapIdx[0] = heapIdx[n - 1];
    heapVal[0] = heapVal[n - 1];
    siftDown(heapIdx, heapVal, n - 1, 0);
  }
}

/** Min-heap by rank: the root is the class that ranks last. */
function siftDown(idx: Int32Array, val: Float64Array, n: number, at: number): void {
  for (;;) {
    const l = 2 * at + 1;
    if (l >= n) return;
    const r = l + 1;
    // the child that ranks later (the "smaller" one) moves up
    let c = l;
    if (r < n && before(val[l], idx[l], val[r], idx[r])) c = r;
    if (!before(val[at], idx[at], val[c], idx[c])) return;
    const ti = idx[at];
    const tv = val[at];
    idx[at] = idx[c];
    val[at] = val[c];
    idx[c] = ti;
    val[c] = tv;
    at = c;
  }
}

/**
 * log(sum_j exp(values[j] / temperature)) over one row, in float64, max-shifted. Any NaN or ±Inf
 * in the row gives NaN: such rows are flagged non-finite, as in dense caches.
 */
export function rowLogSumExp(values: ArrayLike<number>, offset: number, width: number, temperature = 1): number {
  let max = -Infinity;
  for (let i = offset; i < offset + width; i++) {
    const v = values[i];
    if (v - v !== 0) return NaN; // NaN and ±Inf
    if (v > max) max = v;
  }
  const inv = 1 / temperature;
  let sum = 0;
  for (let i = offset; i < offset + width; i++) sum += Math.exp((values[i] - max) * inv);
  return max * inv + Math.log(sum);
}
