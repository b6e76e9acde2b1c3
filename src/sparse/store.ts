/**
 * Dense float32 teacher rows -> the columns a cache stores: log-probabilities for probability
 * teachers, float16 values, or top-k indices + values + full-row log-sum-exp with fidelity stats.
 * Runs in the shard writer thread, so inference never waits for it.
 */
import type { ShardColumns, StorageSpec } from '../shards/format.js';
import { floatsToHalves, halvesToFloats } from '../util/half.js';
import { FidelityAccumulator, type FidelityStats, KL_SAMPLE_EVERY } from './fidelity.js';
import { rowRng, sampleRow } from './sample.js';
import { type TeacherOutput, toLogProbs } from './teacher-output.js';
import { rowLogSumExp, topkRow } from './topk.js';

export interface StoreSpec {
  kind: 'dense' | 'topk' | 'sample';
  /** list slots per row (top-k: the k classes kept; sampled: min(samples, classes)) */
  k?: number;
  /** sampled: draws per row and their temperature */
  samples?: number;
  sampleTemperature?: number;
  dtype: 'float32' | 'float16';
  teacherOutput: TeacherOutput;
  /** the second temperature of the fidelity report (top-k only) */
  reportTemperature?: number;
}

export function storeSpecOf(storage: StorageSpec): StoreSpec {
  return {
    kind: storage.kind ?? 'dense',
    k: storage.k,
    samples: storage.samples,
    sampleTemperature: storage.sample_temperature,
    dtype: storage.logits_dtype,
    teacherOutput: storage.teacher_output?.output ?? 'logits',
    reportTemperature: storage.report_temperature,
  };
}

export interface Stored {
  cols: ShardColumns;
  /** top-k only */
  fidelity: FidelityStats | null;
}

/**
 * `cols` holds dense float32 rows (`logitsWidth` classes each); its logits buffer is converted in
 * place and may be returned inside the result. Dense float32 logits from a logits teacher come
 * back untouched, so that path writes the same bytes as before sparse caches existed.
 */
export function toStored(cols: ShardColumns, spec: StoreSpec): Stored {
  const full = cols.logits;
  if (!(full instanceof Float32Array) || cols.logitsDtype !== 'float32' || cols.topkIndices) {
    throw new Error('toStored: expects dense float32 rows');
  }
  toLogProbs(full, spec.teacherOutput);
  if (spec.kind === 'dense') {
    if (spec.dtype === 'float32') return { cols, fidelity: null };
    return { cols: { ...cols, logits: floatsToHalves(full), logitsDtype: 'float16' }, fidelity: null };
  }
  return spec.kind === 'sample' ? sampledColumns(cols, full, spec) : topkColumns(cols, full, spec);
}

function sampledColumns(cols: ShardColumns, full: Float32Array, spec: StoreSpec): Stored {
  const c = cols.logitsWidth;
  const k = spec.k!;
  const ts = spec.sampleTemperature ?? 1;
  const rows = cols.rows;
  const idx = new Int32Array(rows * k);
  const counts = new Int32Array(rows * k);
  const values = new Float32Array(rows * k);
  const lse = new Float32Array(rows);
  const exact = new Float64Array(rows);
  const distinct = new Int32Array(rows);
  for (let r = 0; r < rows; r++) {
    exact[r] = rowLogSumExp(full, r * c, c);
    lse[r] = exact[r];
    if (!Number.isFinite(exact[r])) {
      // Not a distribution: nothing to draw from; the NaN logsumexp flags the row.
      idx.fill(-1, r * k, (r + 1) * k);
      continue;
    }
    const lseTs = ts === 1 ? exact[r] : rowLogSumExp(full, r * c, c, ts);
    const rng = rowRng(Number(cols.row[r]), cols.position ? cols.position[r] : 0);
    distinct[r] = sampleRow(full, r * c, c, ts, lseTs, spec.samples!, rng, idx, counts, values, r * k, k);
  }
  const half = spec.dtype === 'float16' ? floatsToHalves(values) : null;
  const stored = half ? halvesToFloats(half) : values;
  const acc = new FidelityAccumulator(c, k, spec.reportTemperature ?? 1);
  for (let r = 0; r < rows; r++) acc.add(full, r * c, exact[r], idx, stored, r * k, lse[r], r % KL_SAMPLE_EVERY === 0, distinct[r]);
  const out: ShardColumns = {
    ...cols, logits: half ?? values, logitsDtype: spec.dtype, logitsWidth: k, topkIndices: idx, sampleCounts: counts, logsumexp: lse,
  };
  return { cols: out, fidelity: acc.stats() };
}

function topkColumns(cols: ShardColumns, full: Float32Array, spec: StoreSpec): Stored {
  const c = cols.logitsWidth;
  const k = spec.k!;
  const rows = cols.rows;
  const idx = new Int32Array(rows * k);
  const values = new Float32Array(rows * k);
  const lse = new Float32Array(rows);
  const exact = new Float64Array(rows);
  const heapIdx = new Int32Array(k);
  const heapVal = new Float64Array(k);
  for (let r = 0; r < rows; r++) {
    topkRow(full, r * c, c, k, idx, values, r * k, heapIdx, heapVal);
    exact[r] = rowLogSumExp(full, r * c, c);
    lse[r] = exact[r];
  }
  const half = spec.dtype === 'float16' ? floatsToHalves(values) : null;
  // Fidelity is measured against what training will read: the values after rounding.
  const stored = half ? halvesToFloats(half) : values;
  const acc = new FidelityAccumulator(c, k, spec.reportTemperature ?? 1);
  for (let r = 0; r < rows; r++) acc.add(full, r * c, exact[r], idx, stored, r * k, lse[r], r % KL_SAMPLE_EVERY === 0);
  const out: ShardColumns = {
    ...cols,
    logits: half ?? values,
    logitsDtype: spec.dtype,
    logitsWidth: k,
    topkIndices: idx,
    logsumexp: lse,
  };
  return { cols: out, fidelity: acc.stats() };
}
