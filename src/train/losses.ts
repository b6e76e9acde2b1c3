/**
 * Reference math for the distillation loss on plain arrays: used by tests, by metrics, and as the
 * specification the tfjs version in tf-losses.ts must match. Float64 throughout, so that these
 * functions can serve as ground truth for float32 tfjs results.
 *
 *   kd:  loss = alpha * T^2 * KL(softmax(z_t/T) || softmax(z_s/T)) + (1 - alpha) * CE(y, z_s)
 *   mse: loss = alpha * mean_k (z_s - z_t)^2                     + (1 - alpha) * CE(y, z_s)
 *
 * Batch losses are means over examples, so gradients of batch losses are per-example gradients / B.
 */
export type Vec = ArrayLike<number>;
export type LossKind = 'kd' | 'mse';

export interface LossParams {
  alpha: number;
  temperature: number;
  kind: LossKind;
  /**
   * top-k caches only: 'bucket' scores the unstored classes as one outcome (sparse-targets.ts);
   * 'ignore' and 'uniform' are in the teacher rows themselves and use the plain kd term.
   */
  tail?: 'ignore' | 'uniform' | 'bucket';
}

/** log(softmax(z / T)), with the max subtracted first so that large logits cannot overflow exp. */
export function logSoftmax(z: Vec, temperature = 1): Float64Array {
  const n = z.length;
  const out = new Float64Array(n);
  let max = -Infinity;
  for (let i = 0; i < n; i++) max = Math.max(max, z[i] / temperature);
  let sum = 0;
  for (let i = 0; i < n; i++) {
    out[i] = z[i] / temperature - max;
    sum += Math.exp(out[i]);
  }
  const logSum = Math.log(sum);
  for (let i = 0; i < n; i++) out[i] -= logSum;
  return out;
}

export function softmax(z: Vec, temperature = 1): Float64Array {
  const out = logSoftmax(z, temperature);
  for (let i = 0; i < out.length; i++) out[i] = Math.exp(out[i]);
  return out;
}

/** KL(softmax(z_t/T) || softmax(z_s/T)); terms with p_t = 0 contribute 0 (the limit of p log p). */
export function klDivergence(teacher: Vec, student: Vec, temperature = 1): number {
  const lt = logSoftmax(teacher, temperature);
  const ls = logSoftmax(student, temperature);
  let kl = 0;
  for (let i = 0; i < lt.length; i++) {
    const p = Math.exp(lt[i]);
    if (p > 0) kl += p * (lt[i] - ls[i]);
  }
  return kl;
}

/** -log softmax(z)[label] */
export function crossEntropy(student: Vec, label: number): number {
  return -logSoftmax(student)[label];
}

export function meanSquaredError(student: Vec, teacher: Vec): number {
  let s = 0;
  for (let i = 0; i < student.length; i++) s += (student[i] - teacher[i]) ** 2;
  return s / student.length;
}

export function argmax(z: Vec, offset = 0, width = z.length - offset): number {
  let best = 0;
  let bestValue = -Infinity;
  for (let i = 0; i < width; i++) {
    const v = z[offset + i];
    if (v > bestValue) {
      bestValue = v;
      best = i;
    }
  }
  return best;
}

export interface ExampleLoss {
  loss: number;
  /** d loss / d z_s */
  grad: Float64Array;
}

/**
 * Loss of one example and its gradient with respect to the student logits.
 *   d(T^2 KL)/dz_s = T * (softmax(z_s/T) - softmax(z_t/T))
 *   d(CE)/dz_s     = softmax(z_s) - onehot(y)
 *   d(mse)/dz_s    = 2 (z_s - z_t) / K
 * `label` may be negative (unknown) only when alpha = 1.
 */
export function kdLoss(student: Vec, teacher: Vec, label: number, p: LossParams): ExampleLoss {
  const k = student.length;
  const grad = new Float64Array(k);
  let loss = 0;
  if (p.alpha > 0) {
    if (p.kind === 'kd') {
      const T = p.temperature;
      const ps = softmax(student, T);
      const pt = softmax(teacher, T);
      loss += p.alpha * T * T * klDivergence(teacher, student, T);
      for (let i = 0; i < k; i++) grad[i] += p.alpha * T * (ps[i] - pt[i]);
    } else {
      loss += p.alpha * meanSquaredError(student, teacher);
      for (let i = 0; i < k; i++) grad[i] += (p.alpha * 2 * (student[i] - teacher[i])) / k;
    }
  }
  if (p.alpha < 1) {
    if (!(label >= 0 && label < k)) throw new RangeError(`label ${label} outside [0, ${k}) with alpha < 1`);
    const ps = softmax(student);
    loss += (1 - p.alpha) * crossEntropy(student, label);
    for (let i = 0; i < k; i++) grad[i] += (1 - p.alpha) * (ps[i] - (i === label ? 1 : 0));
  }
  return { loss, grad };
}

/** Mean loss over a row-major batch [rows, width] and its gradient (per-example gradient / rows). */
export function kdLossBatch(
  student: Float32Array | Float64Array,
  teacher: Float32Array | Float64Array,
  labels: Int32Array | null,
  rows: number,
  width: number,
  p: LossParams,
): ExampleLoss {
  const grad = new Float64Array(rows * width);
  let loss = 0;
  for (let r = 0; r < rows; r++) {
    const s = student.subarray(r * width, (r + 1) * width);
    const t = teacher.subarray(r * width, (r + 1) * width);
    const e = kdLoss(s, t, labels ? labels[r] : -1, p);
    loss += e.loss;
    for (let i = 0; i < width; i++) grad[r * width + i] = e.grad[i] / rows;
  }
  return { loss: loss / rows, grad };
}
