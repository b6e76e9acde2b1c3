/**
 * How much of the teacher a top-k cache keeps, measured at precompute time from the full rows so a
 * user can choose k from data:
 *
 *   mass     sum_{i in S} softmax(z)_i            retained probability at T = 1 (exact)
 *   mass_t   sum_{i in S} softmax(z / T_r)_i      the same at the report temperature T_r
 *   kl       KL(softmax(z) || p^)                  on sampled rows
 *   kl_t     KL(softmax(z / T_r) || softmax(log p^ / T_r))
 *
 * where p^ is the distribution training reconstructs with `--tail uniform`: the stored classes with
 * their stored (possibly float16-rounded) values and the tail spread evenly over the other classes
 * (see tail.ts). Rows with NaN/Inf outputs are left out.
 */
import type { FidelityRecord } from '../shards/format.js';
import { storedLogProbs, uniformTailLogProb } from './tail.js';
import { rowLogSumExp } from './topk.js';

/** Every KL_SAMPLE_EVERY-th row of a shard (from its first) is used for KL: O(C) each. */
export const KL_SAMPLE_EVERY = 64;

/** rows: rows with finite outputs the masses are over; kl_rows: rows the KL means are over. */
export type FidelityStats = FidelityRecord;

export class FidelityAccumulator {
  private rows = 0;
  private mass = 0;
  private massMin = Infinity;
  private massT = 0;
  private massTMin = Infinity;
  private klRows = 0;
  private kl = 0;
  private klT = 0;
  private scratch = new Float64Array(0);

  constructor(private readonly classes: number, private readonly k: number, private readonly temperature: number) {}

  /**
   * One row: `full` is the row as the teacher gave it (after probability -> log conversion),
   * `exactLse` its log-sum-exp in float64, `idx` the stored classes, `stored` their values as
   * stored and `lse` the log-sum-exp as stored (float32). `k` classes are stored in this row
   * (fewer than the slots for sampled rows).
   */
  add(full: ArrayLike<number>, offset: number, exactLse: number, idx: Int32Array, stored: ArrayLike<number>, kOffset: number, lse: number, sampleKl: boolean, k = this.k): void {
    const { classes: c, temperature: t } = this;
    if (!Number.isFinite(exactLse)) return;
    const lseT = rowLogSumExp(full, offset, c, t);
    let m = 0;
    let mt = 0;
    for (let i = 0; i < k; i++) {
      const z = full[offset + idx[kOffset + i]];
      m += Math.exp(z - exactLse);
      mt += Math.exp(z / t - lseT);
    }
    this.rows++;
    this.mass += m;
    this.massT += mt;
    if (m < this.massMin) this.massMin = m;
    if (mt < this.massTMin) this.massTMin = mt;
    if (!sampleKl) return;
    this.klRows++;
    const kl = this.rowKl(full, offset, idx, stored, kOffset, k, lse, exactLse, 1, exactLse);
    this.kl += kl;
    this.klT += this.rowKl(full, offset, idx, stored, kOffset, k, lse, exactLse, t, lseT);
  }

  /** KL(softmax(z/T) || softmax(log p^ / T)) for one row. */
  private rowKl(full: ArrayLike<number>, offset: number, idx: Int32Array, stored: ArrayLike<number>, kOffset: number, k: number, lse: number, exactLse: number, t: number, lseT: number): number {
    const c = this.classes;
    if (this.scratch.length < c) this.scratch = new Float64Array(c);
    const logHat = this.scratch;
    const lp = new Float64Array(k);
    const logU = uniformTailLogProb(storedLogProbs(stored, kOffset, k, lse, lp), c, k);
    logHat.fill(logU, 0, c);
    for (let i = 0; i < k; i++) logHat[idx[kOffset + i]] = lp[i];
    // log softmax(log p^ / T): normalise the tempered reconstruction
    const hatLse = rowLogSumExp(logHat, 0, c, t);
    let kl = 0;
    for (let j = 0; j < c; j++) {
      const logP = t === 1 ? full[offset + j] - exactLse : full[offset + j] / t - lseT;
      const p = Math.exp(logP);
      if (p > 0) kl += p * (logP - (logHat[j] / t - hatLse));
    }
    return Math.max(kl, 0);
  }

  stats(): FidelityStats {
    const n = this.rows;
    return {
      rows: n,
      mass_mean: n ? this.mass / n : 0,
      mass_min: n ? this.massMin : 0,
      mass_t_mean: n ? this.massT / n : 0,
      mass_t_min: n ? this.massTMin : 0,
      kl_rows: this.klRows,
      kl_mean: this.klRows ? this.kl / this.klRows : 0,
      kl_t_mean: this.klRows ? this.klT / this.klRows : 0,
    };
  }
}

/** Shards' stats combined: means weighted by rows, minima of minima. */
export function combineFidelity(parts: readonly FidelityStats[]): FidelityStats {
  const out: FidelityStats = { rows: 0, mass_mean: 0, mass_min: 0, mass_t_mean: 0, mass_t_min: 0, kl_rows: 0, kl_mean: 0, kl_t_mean: 0 };
  let min = Infinity;
  let minT = Infinity;
  for (const p of parts) {
    out.rows += p.rows;
    out.kl_rows += p.kl_rows;
    out.mass_mean += p.mass_mean * p.rows;
    out.mass_t_mean += p.mass_t_mean * p.rows;
    out.kl_mean += p.kl_mean * p.kl_rows;
    out.kl_t_mean += p.kl_t_mean * p.kl_rows;
    if (p.rows > 0) {
      min = Math.min(min, p.mass_min);
      minT = Math.min(minT, p.mass_t_min);
    }
  }
  if (out.rows > 0) {
    out.mass_mean /= out.rows;
    out.mass_t_mean /= out.rows;
    out.mass_min = min;
    out.mass_t_min = minT;
  }
  if (out.kl_rows > 0) {
    out.kl_mean /= out.kl_rows;
    out.kl_t_mean /= out.kl_rows;
  }
  return out;
}
