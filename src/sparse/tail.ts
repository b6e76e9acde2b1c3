/**
 * The teacher distribution a top-k cache implies, shared by the precompute-time fidelity report and
 * training. For a row with stored classes S (|S| = k of C), stored values z_i and full-row
 * log-sum-exp lse:
 *
 *   p_i  = exp(z_i - lse)             exact teacher probability of a stored class (T = 1)
 *   tail = 1 - sum_{i in S} p_i       exact mass of the C - k classes not stored
 *   u    = tail / (C - k)             the uniform-tail estimate of each unstored class
 *
 * Rounding (float16 values) can push sum p_i a hair above 1; the tail is then clamped to a floor so
 * that log u stays finite: a zero or negative tail must never turn into -Inf or NaN in a loss.
 */

/** The smallest normal float32: log(TAIL_FLOOR) ~ -87.3 is finite in float32 and float16. */
export const TAIL_FLOOR = 1.1754943508222875e-38;

/** log p_i = z_i - lse for the k stored values of one row, into `out` (float64). Returns sum p_i. */
export function storedLogProbs(values: ArrayLike<number>, offset: number, k: number, lse: number, out: Float64Array): number {
  let mass = 0;
  for (let i = 0; i < k; i++) {
    const lp = values[offset + i] - lse;
    out[i] = lp;
    mass += Math.exp(lp);
  }
  return mass;
}

/** Tail mass 1 - stored, floored at TAIL_FLOOR. */
export function tailMass(storedMass: number): number {
  return Math.max(1 - storedMass, TAIL_FLOOR);
}

/** log u: the log-probability each unstored class gets under the uniform tail. */
export function uniformTailLogProb(storedMass: number, classes: number, k: number): number {
  return Math.log(tailMass(storedMass) / (classes - k));
}
