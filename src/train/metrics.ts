/**
 * Running classification and distillation metrics, accumulated batch by batch from student logits
 * already in JS memory: accuracy on labels, top-1 agreement with the teacher, mean KL(teacher || student)
 * at T = 1. Rows without a label are left out of accuracy; rows whose teacher logits are not finite
 * are left out of agreement and KL.
 */

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
  private expT = new Float64Array(0);

  /** `loss` is the batch's mean loss, weighted by its rows. */
  addLoss(loss: number, rows: number): void {
    this.lossSum += loss * rows;
    this.lossRows += rows;
  }

  /** Counts and sums for `rows` examples computed elsewhere by add()'s rules (the fused native step). */
  addTotals(rows: number, labeled: number, correct: number, teacherRows: number, agree: number, klSum: number): void {
    this.examples += rows;
    this.labeled += labeled;
    this.correct += correct;
    this.teacherRows += teacherRows;
    this.agree += agree;
    this.klSum += klSum;
  }

  add(student: Float32Array, teacher: Float32Array | null, labels: Int32Array | null, rows: number, k: number): void {
    this.examples += rows;
    if (teacher && this.expT.length < k) this.expT = new Float64Array(k);
    for (let r = 0; r < rows; r++) {
      const off = r * k;
      // One pass finds both rows' maxima and first maximal classes (as argmax() does): this runs on
      // every evaluation batch and every training batch not fused (the fused MLP step computes the
      // same in native code); three passes with 30 exps per row took 106 against 69 us per 256x10 batch.
      let predicted = 0;
      let sMax = -Infinity;
      let top = 0;
      let tMax = -Infinity;
      for (let j = 0; j < k; j++) {
        const v = student[off + j];
        if (v > sMax) {
          sMax = v;
          predicted = j;
        }
        if (teacher && teacher[off + j] > tMax) {
          tMax = teacher[off + j];
          top = j;
        }
      }
      if (labels && labels[r] >= 0) {
        this.labeled++;
        if (predicted === labels[r]) this.correct++;
      }
      if (teacher) {
        const kl = klRowWithMax(teacher, student, off, k, tMax, sMax, this.expT);
        if (Number.isFinite(kl)) {
          this.teacherRows++;
          this.klSum += kl;
          if (predicted === top) this.agree++;
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
  let tMax = -Infinity;
  let sMax = -Infinity;
  for (let j = off; j < off + k; j++) {
    if (t[j] > tMax) tMax = t[j];
    if (s[j] > sMax) sMax = s[j];
  }
  return klRowWithMax(t, s, off, k, tMax, sMax, new Float64Array(k));
}

/** klRow given both rows' maxima; `expT` (at least k long) keeps exp(t - max t) for the second pass. */
function klRowWithMax(t: ArrayLike<number>, s: ArrayLike<number>, off: number, k: number, tMax: number, sMax: number, expT: Float64Array): number {
  let sumT = 0;
  let sumS = 0;
  for (let j = 0; j < k; j++) {
    const e = Math.exp(t[off + j] - tMax);
    expT[j] = e;
    sumT += e;
    sumS += Math.exp(s[off + j] - sMax);
  }
  const lseT = tMax + Math.log(sumT);
  const lseS = sMax + Math.log(sumS);
  // A teacher row with a NaN, or whose maximum is +-Infinity (exp(inf - inf) is NaN), is not a distribution.
  if (!Number.isFinite(lseT)) return NaN;
  let kl = 0;
  for (let j = 0; j < k; j++) {
    const p = expT[j] / sumT;
    if (p > 0) kl += p * ((t[off + j] - lseT) - (s[off + j] - lseS));
  }
  return kl;
}
