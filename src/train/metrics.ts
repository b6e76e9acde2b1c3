/**
 * Running classification and distillation metrics, accumulated batch by batch from student logits
 * already in JS memory: accuracy on labels, top-1 agreement with the teacher, mean KL(teacher || student)
 * at T = 1. Rows without a label are left out of accuracy; rows whose teacher logits are not finite
 * are left out of agreement and KL.
 */
import { argmax } from './losses.js';

export interface MetricValues {
  examples: number;
  /** mean training loss (training passes only) */
  loss: number | null;
  accuracy: number | null;
  agreement: number | null;
  kl: number | null;
}

export class MetricsAccumulator {
  private examples = 0;
  private lossSum = 0;
  private lossRows = 0;
  private labeled = 0;
  private correct = 0;
  private teacherRows = 0;
  private agree = 0;
  private klSum = 0;

  /** `loss` is the batch's mean loss, weighted by its rows. */
  addLoss(loss: number, rows: number): void {
    this.lossSum += loss * rows;
    this.lossRows += rows;
  }

  add(student: Float32Array, teacher: Float32Array | null, labels: Int32Array | null, rows: number, k: number): void {
    this.examples += rows;
    for (let r = 0; r < rows; r++) {
      const off = r * k;
      const predicted = argmax(student, off, k);
      if (labels && labels[r] >= 0) {
        this.labeled++;
        if (predicted === labels[r]) this.correct++;
      }
      if (teacher) {
        const kl = klRow(teacher, student, off, k);
        if (Number.isFinite(kl)) {
          this.teacherRows++;
          this.klSum += kl;
          if (predicted === argmax(teacher, off, k)) this.agree++;
        }
      }
    }
  }

  values(): MetricValues {
    return {
      examples: this.examples,
      loss: this.lossRows > 0 ? this.lossSum / this.lossRows : null,
      accuracy: this.labeled > 0 ? this.correct / this.labeled : null,
      agreement: this.teacherRows > 0 ? this.agree / this.teacherRows : null,
      kl: this.teacherRows > 0 ? this.klSum / this.teacherRows : null,
    };
  }
}

/**
 * KL(softmax(t) || softmax(s)) for one row at T = 1, without allocating:
 * sum_k p_t,k ((t_k - lse(t)) - (s_k - lse(s))). NaN when the teacher row is not finite.
 */
export function klRow(t: ArrayLike<number>, s: ArrayLike<number>, off: number, k: number): number {
  const lseT = logSumExp(t, off, k);
  const lseS = logSumExp(s, off, k);
  if (!Number.isFinite(lseT)) return NaN;
  let kl = 0;
  for (let j = off; j < off + k; j++) {
    const logPt = t[j] - lseT;
    const p = Math.exp(logPt);
    if (p > 0) kl += p * (logPt - (s[j] - lseS));
  }
  return kl;
}

function logSumExp(z: ArrayLike<number>, off: number, k: number): number {
  let max = -Infinity;
  for (let j = off; j < off + k; j++) if (z[j] > max) max = z[j];
  if (!Number.isFinite(max)) return max === -Infinity ? -Infinity : NaN;
  let sum = 0;
  for (let j = off; j < off + k; j++) sum += Math.exp(z[j] - max);
  return max + Math.log(sum);
}
