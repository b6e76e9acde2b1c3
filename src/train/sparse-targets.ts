/**
 * Teacher targets from a top-k cache. Each row stores classes S (|S| = k of C), their logits z_i and
 * the full row's log-sum-exp, so p_i = exp(z_i - lse) is exact and tail = 1 - sum_{i in S} p_i is the
 * exact mass of the C - k classes not stored (sparse/tail.ts). What training does with the tail
 * (--tail), at temperature T:
 *
 *   ignore   renormalise over the stored classes:
 *              q_i = p_i^(1/T) / sum_{j in S} p_j^(1/T)              (i in S; 0 elsewhere)
 *            The tail is dropped: the student is pushed to put no mass there.
 *
 *   uniform  spread the tail evenly, u = tail / (C - k) per unstored class, then temper:
 *              q_i = p^_i^(1/T) / (sum_{j in S} p_j^(1/T) + (C - k) u^(1/T)),   p^ = p on S, u elsewhere
 *            Exact at T = 1 for the stored classes and the total tail. At T > 1 it overstates the
 *            tempered tail (sum_j p_j^(1/T) <= (C - k) u^(1/T) by concavity): an approximation.
 *
 *   bucket   the tail is one extra outcome. Teacher over k + 1 outcomes:
 *              P_i ∝ p_i^(1/T) (i in S),   P_tail ∝ (C - k) u^(1/T)   (the same tempered tail mass as uniform)
 *            Student over the same outcomes: Q_i = softmax(z_s/T)_i, Q_tail = sum_{j not in S} softmax(z_s/T)_j,
 *            and the soft term is T^2 KL(P || Q). The student's distribution inside the tail is left
 *            free; only its total is matched. Exact at T = 1.
 *
 * Rows are handed to the loss as dense log-probability rows of width C: stored classes get
 * log p_i, unstored ones log u (uniform) or ABSENT_LOGIT (ignore, bucket). ABSENT_LOGIT is finite so
 * that tempered softmaxes stay NaN-free (exp underflows to exactly 0, and 0 * finite = 0), and it
 * tells the bucket loss which classes were stored.
 */
import { storedLogProbs, uniformTailLogProb } from '../sparse/tail.js';
import { halvesToFloats } from '../util/half.js';

export type TailMode = 'ignore' | 'uniform' | 'bucket';
export const TAIL_MODES: readonly TailMode[] = ['ignore', 'uniform', 'bucket'];

/** Stands for "class not stored": any value below ABSENT_THRESHOLD is one. */
export const ABSENT_LOGIT = -1e30;
export const ABSENT_THRESHOLD = -1e29;

export interface SparseRows {
  rows: number;
  k: number;
  indices: Int32Array;
  /** rows * k stored values (float32, or float16 bits) */
  values: Float32Array | Uint16Array;
  dtype: 'float32' | 'float16';
  logsumexp: Float32Array;
}

/**
 * Dense teacher rows (rows * classes, float32) for `mode`. A row whose logsumexp is not finite
 * (the teacher gave NaN/Inf there) becomes all NaN, so it is left out like a non-finite dense row.
 */
export function denseTeacherRows(s: SparseRows, classes: number, mode: TailMode, out: Float32Array = new Float32Array(s.rows * classes)): Float32Array {
  const { k, indices } = s;
  const values = s.dtype === 'float16' ? halvesToFloats(s.values as Uint16Array) : (s.values as Float32Array);
  const lp = new Float64Array(k);
  for (let r = 0; r < s.rows; r++) {
    const base = r * classes;
    const lse = s.logsumexp[r];
    if (!Number.isFinite(lse)) {
      out.fill(NaN, base, base + classes);
      continue;
    }
    const mass = storedLogProbs(values, r * k, k, lse, lp);
    out.fill(mode === 'uniform' ? uniformTailLogProb(mass, classes, k) : ABSENT_LOGIT, base, base + classes);
    for (let i = 0; i < k; i++) out[base + indices[r * k + i]] = lp[i];
  }
  return out;
}

/**
 * Dense teacher rows of a sampled cache (sparse/sample.ts) for training at temperature T. Drawn
 * class j (count c_j, logit z_j, drawn at temperature Ts) gets a_j = T log c_j + z_j (1 - T/Ts),
 * the others ABSENT_LOGIT, so that the loss's softmax(a / T) is
 *
 *   q_j ∝ c_j · exp(z_j (1/T - 1/Ts))
 *
 * At T = Ts that is counts / N: an unbiased estimate of the teacher's tempered distribution, so the
 * soft term's gradient is, in expectation over the draws, the dense one. At another T the counts
 * are reweighted by importance weights p_T / p_Ts, normalised over the drawn classes: consistent,
 * but biased for few draws (train at the temperature the cache was sampled at).
 */
export function sampledTeacherRows(s: SparseRows & { counts: Int32Array }, classes: number, temperature: number, sampleTemperature: number, out: Float32Array = new Float32Array(s.rows * classes)): Float32Array {
  const { k, indices, counts } = s;
  const values = s.dtype === 'float16' ? halvesToFloats(s.values as Uint16Array) : (s.values as Float32Array);
  const tilt = 1 - temperature / sampleTemperature;
  for (let r = 0; r < s.rows; r++) {
    const base = r * classes;
    if (!Number.isFinite(s.logsumexp[r])) {
      out.fill(NaN, base, base + classes);
      continue;
    }
    out.fill(ABSENT_LOGIT, base, base + classes);
    for (let i = r * k; i < (r + 1) * k && counts[i] > 0; i++) out[base + indices[i]] = temperature * Math.log(counts[i]) + (tilt === 0 ? 0 : values[i] * tilt);
  }
  return out;
}

/**
 * Reference (float64) bucket soft term of one example: T^2 KL(P || Q) over stored classes + tail,
 * and its gradient with respect to the student logits, T (q_j - target_j), where target_j = P_j on
 * stored classes and P_tail * q_j / Q_tail on the others. `teacher` is a dense row as built above.
 */
export function bucketSoftTerm(student: ArrayLike<number>, teacher: ArrayLike<number>, temperature: number): { loss: number; grad: Float64Array } {
  const c = student.length;
  const T = temperature;
  let max = -Infinity;
  for (let j = 0; j < c; j++) max = Math.max(max, student[j] / T);
  let z = 0;
  for (let j = 0; j < c; j++) z += Math.exp(student[j] / T - max);
  const logQ = (j: number) => student[j] / T - max - Math.log(z);

  let stored = 0;
  let mass = 0;
  let tMax = -Infinity;
  for (let j = 0; j < c; j++) {
    if (teacher[j] <= ABSENT_THRESHOLD) continue;
    stored++;
    mass += Math.exp(teacher[j]);
    tMax = Math.max(tMax, teacher[j] / T);
  }
  const rest = c - stored;
  const logU = uniformTailLogProb(mass, c, stored);
  // tempered teacher over S + bucket, normalised with a shared max
  const logBucket = rest > 0 ? Math.log(rest) + logU / T : -Infinity;
  const top = Math.max(tMax, logBucket);
  let norm = Math.exp(logBucket - top);
  for (let j = 0; j < c; j++) if (teacher[j] > ABSENT_THRESHOLD) norm += Math.exp(teacher[j] / T - top);
  const logNorm = top + Math.log(norm);
  let qTail = 0;
  for (let j = 0; j < c; j++) if (teacher[j] <= ABSENT_THRESHOLD) qTail += Math.exp(logQ(j));
  const pTail = rest > 0 ? Math.exp(logBucket - logNorm) : 0;

  let kl = pTail > 0 ? pTail * (Math.log(pTail) - Math.log(qTail)) : 0;
  const grad = new Float64Array(c);
  for (let j = 0; j < c; j++) {
    const q = Math.exp(logQ(j));
    let target: number;
    if (teacher[j] > ABSENT_THRESHOLD) {
      const logP = teacher[j] / T - logNorm;
      target = Math.exp(logP);
      kl += target * (logP - logQ(j));
    } else {
      target = pTail * q / qTail;
    }
    grad[j] = T * (q - target);
  }
  return { loss: T * T * kl, grad };
}
