/**
 * Teachers that end in a Softmax (or LogSoftmax) give probabilities (log-probabilities) instead of
 * logits. Both are stored as log-probabilities, which are logits up to a per-row constant, so the
 * same loss applies. log(0) is clamped to log(TAIL_FLOOR) ~ -87.3: a zero probability must not
 * become -Inf, which would poison the loss (0 * -Inf = NaN) and overflow float16.
 */
import { TAIL_FLOOR } from './tail.js';

export type TeacherOutput = 'logits' | 'probs' | 'logprobs';
export type TeacherOutputFlag = TeacherOutput | 'auto';

export const LOG_FLOOR = Math.log(TAIL_FLOOR);

/** |sum - 1| allowed when detecting a distribution. */
export const SUM_TOLERANCE = 1e-3;

/**
 * What rows of `width` values look like: 'probs' when every row is non-negative and sums to 1,
 * 'logprobs' when every row is non-positive and its exponentials sum to 1, else 'logits'. Needs at
 * least two classes (a single 1.0 is no evidence of a softmax).
 */
export function detectTeacherOutput(values: ArrayLike<number>, rows: number, width: number): TeacherOutput {
  if (width < 2 || rows < 1) return 'logits';
  let probs = true;
  let logprobs = true;
  for (let r = 0; r < rows && (probs || logprobs); r++) {
    let sum = 0;
    let expSum = 0;
    for (let j = r * width; j < (r + 1) * width; j++) {
      const v = values[j];
      if (!(v >= 0)) probs = false; // NaN fails too
      if (!(v <= 0)) logprobs = false;
      sum += v;
      expSum += Math.exp(v);
    }
    if (!(Math.abs(sum - 1) <= SUM_TOLERANCE)) probs = false;
    if (!(Math.abs(expSum - 1) <= SUM_TOLERANCE)) logprobs = false;
  }
  return probs ? 'probs' : logprobs ? 'logprobs' : 'logits';
}

/**
 * In place: probabilities -> log(max(p, TAIL_FLOOR)); log-probabilities -> max(lp, log TAIL_FLOOR).
 * NaN stays NaN (the row is then flagged non-finite); logits are left alone.
 */
export function toLogProbs(values: Float32Array, kind: TeacherOutput): void {
  if (kind === 'probs') {
    for (let i = 0; i < values.length; i++) {
      const p = values[i];
      values[i] = p > TAIL_FLOOR ? Math.log(p) : p === p ? LOG_FLOOR : p;
    }
  } else if (kind === 'logprobs') {
    for (let i = 0; i < values.length; i++) if (values[i] < LOG_FLOOR) values[i] = LOG_FLOOR;
  }
}
