/**
 * Sampled sparse targets ("Sparse Logit Sampling", Anshumann et al., ACL 2025): instead of the k
 * largest classes, store N draws from the teacher's distribution at a sampling temperature Ts,
 * q = softmax(z / Ts). The counts divided by N are an unbiased estimate of q, so a student trained
 * on them gets, in expectation, the dense gradient at T = Ts; top-k is biased (it never shows the
 * tail). Each row stores its distinct sampled classes (most drawn first, ties by lower index), how
 * often each was drawn, and their raw logits; unused slots hold class -1, count 0.
 *
 * Draws are reproducible: the generator is seeded from the row id and position alone, so every
 * run, partition and machine draws the same classes.
 */

/** mulberry32, seeded from (row, position): fast, and the same everywhere. */
export function rowRng(row: number, position: number): () => number {
  let s = (Math.imul(row ^ 0x9e3779b9, 0x85ebca6b) ^ Math.imul(position + 0x632be5ab, 0xc2b2ae35)) >>> 0;
  s = Math.imul(s ^ (s >>> 16), 0x7feb352d) >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/**
 * Draw `draws` classes from softmax(values[offset..offset+width) / ts) (its log-normaliser
 * `lseTs` given) and write the distinct ones into `outIdx/outCount/outVal` from `outOffset`
 * (`slots` entries, slots >= min(draws, width)). Returns the number of distinct classes.
 * Inverse-CDF over sorted uniforms: one pass over the classes.
 */
export function sampleRow(
  values: ArrayLike<number>, offset: number, width: number, ts: number, lseTs: number, draws: number, rng: () => number,
  outIdx: Int32Array, outCount: Int32Array, outVal: { [i: number]: number }, outOffset: number, slots: number,
): number {
  const u = new Float64Array(draws);
  for (let i = 0; i < draws; i++) u[i] = rng();
  u.sort();
  const counts = new Map<number, number>();
  let cdf = 0;
  let d = 0;
  const inv = 1 / ts;
  for (let j = 0; j < width && d < draws; j++) {
    cdf += Math.exp(values[offset + j] * inv - lseTs);
    let n = 0;
    while (d < draws && u[d] < cdf) {
      d++;
      n++;
    }
    if (n > 0) counts.set(j, n);
  }
  // Rounding can leave the cdf a hair below 1: the last draws go to the last class with mass.
  if (d < draws) {
    let last = width - 1;
    while (last > 0 && !(values[offset + last] * inv - lseTs > -745)) last--;
    counts.set(last, (counts.get(last) ?? 0) + draws - d);
  }
  const distinct = [...counts].sort((a, b) => (b[1] - a[1]) || (a[0] - b[0]));
  for (let i = 0; i < slots; i++) {
    const e = distinct[i];
    outIdx[outOffset + i] = e ? e[0] : -1;
    outCount[outOffset + i] = e ? e[1] : 0;
    outVal[outOffset + i] = e ? values[offset + e[0]] : 0;
  }
  return distinct.length;
}
