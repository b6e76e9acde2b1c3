/**
 * The on-disk contract of a kdcache cache directory. Everything a reader needs to interpret shards is
 * here: file layout, column names and types. Other tools (DuckDB, pyarrow) read shards directly.
 *
 *   <out>/config.json            the binding: teacher, dataset, preprocessing, storage (written first)
 *   <out>/shards/shard-00000.parquet   rows [first_row, first_row + rows)
 *   <out>/shards/shard-00000.json      per-shard record written after the shard is in place
 *   <out>/manifest.json          config + all shard records, written last; complete: true
 */
import type { DType, TypedArray } from '../util/dtype.js';

export type StorageFormat = 'parquet' | 'arrow';
export type Compression = 'zstd' | 'snappy' | 'none';

/**
 * 1: the original layout (dense logits of a logits teacher, one row per example). 2: a cache that
 * uses any of storage.layout / kind / teacher_output or integer inputs; older kdcache versions
 * refuse it by its version instead of misreading it. Both are read.
 */
export const FORMAT_VERSION = 1;
export const FORMAT_VERSION_EXTENDED = 2;
export const SHARD_DIR = 'shards';
export const CONFIG_FILE = 'config.json';
export const MANIFEST_FILE = 'manifest.json';
/** The fix named by every error about a damaged or foreign shard. */
export const REGENERATE = 're-run precompute-logits with the same arguments to regenerate it';

export function shardExtension(format: StorageFormat): string {
  return format === 'parquet' ? '.parquet' : '.arrow';
}

export function shardBaseName(index: number): string {
  return `shard-${String(index).padStart(5, '0')}`;
}

/**
 * Column names, fixed: external tools and the reader rely on them.
 *
 * Layouts (storage.layout):
 *  - absent: one table row per example; `logits` is the example's whole output, flattened.
 *  - 'sequence' (teachers with per-example output [T, C]): one table row per *real* position, with
 *    `row` (the example) and `position` (0-based index in the sequence); padding positions (see
 *    preprocessing.pad_id) are not stored. Rows are ordered by (row, position).
 *
 * Kinds (storage.kind):
 *  - absent (dense): `logits`, all C values of the row.
 *  - 'topk': `topk_indices` (the k classes with the largest values, best first; ties by lower
 *    index), `topk_logits` (their values) and `logsumexp` (float32, of the full row before top-k),
 *    so p_i = exp(topk_logits_i - logsumexp) is exact and the tail mass is 1 - sum_i p_i.
 *  - 'sample': storage.samples draws from softmax(z / storage.sample_temperature); `sample_indices`
 *    (distinct drawn classes, most drawn first, ties by lower index, -1 in unused slots),
 *    `sample_counts` (draws of each; they sum to storage.samples), `sample_logits` and `logsumexp`
 *    as for top-k. k = min(samples, classes) slots per row. See src/sparse/sample.ts.
 *
 * Values are float32 or float16 (storage.logits_dtype; Parquet FLOAT16 logical type, Arrow
 * Float16). For probability teachers (storage.teacher_output) they are log-probabilities,
 * log(max(p, 2^-126)), never -Inf.
 */
export const COL_ROW = 'row'; // int64, index of the example in the dataset
export const COL_POSITION = 'position'; // int32, sequence layout only
export const COL_LABEL = 'label'; // int32, optional
export const COL_LOGITS = 'logits'; // list<float32|float16>, dense: the raw teacher output, flattened
export const COL_TOPK_INDICES = 'topk_indices'; // list<int32>, top-k only
export const COL_TOPK_LOGITS = 'topk_logits'; // list<float32|float16>, top-k only
export const COL_LOGSUMEXP = 'logsumexp'; // float32, top-k and sampled
export const COL_SAMPLE_INDICES = 'sample_indices'; // list<int32>, sampled only; -1 in unused slots
export const COL_SAMPLE_COUNTS = 'sample_counts'; // list<int32>, sampled only: draws of each class; 0 in unused slots
export const COL_SAMPLE_LOGITS = 'sample_logits'; // list<float32|float16>, sampled only; 0 in unused slots
export const COL_INPUT = 'input'; // list<dataset dtype>, optional (--store-inputs)

/** Columnar in-memory form of one shard: typed arrays, never arrays of row objects. */
export interface ShardColumns {
  /** table rows: examples, or positions in the sequence layout */
  rows: number;
  row: BigInt64Array;
  /** sequence layout: each row's position in its example */
  position?: Int32Array;
  label?: Int32Array;
  /**
   * rows * logitsWidth values, row-major. float16 is raw Uint16 bits. Dense: the whole output of
   * the row. Top-k (topkIndices present): the k stored values, logitsWidth = k.
   */
  logits: Float32Array | Uint16Array;
  logitsWidth: number;
  logitsDtype: 'float32' | 'float16';
  /** top-k: rows * k class indices, best first; sampled: the distinct drawn classes, -1 padded */
  topkIndices?: Int32Array;
  /** sampled: rows * k draw counts (present exactly for sampled shards) */
  sampleCounts?: Int32Array;
  /** top-k: per row, log-sum-exp of the full row */
  logsumexp?: Float32Array;
  /** rows * inputWidth values, row-major, in the dataset's dtype. */
  input?: TypedArray;
  inputWidth?: number;
  inputDtype?: DType;
}

export interface ColumnSpec {
  name: string;
  /** e.g. 'int64', 'int32', 'list<float32>' */
  type: string;
  /** fixed number of list items per row, for list columns */
  length?: number;
}

/**
 * Fields beyond the first five are absent for the original layout (dense logits of a logits
 * teacher, one row per example), so those caches keep their config_id and bytes.
 */
export interface StorageSpec {
  format: StorageFormat;
  compression: Compression;
  /** examples per shard (a sequence shard holds their real positions) */
  shard_rows: number;
  /** dtype of the stored values (logits or topk_logits) */
  logits_dtype: 'float32' | 'float16';
  columns: ColumnSpec[];
  layout?: 'sequence';
  /** classes per distribution (the last output dimension); with layout or kind */
  classes?: number;
  kind?: 'topk' | 'sample';
  /** list slots per row: the k of top-k, or min(samples, classes) */
  k?: number;
  /** sampled: draws per row and the temperature they were drawn at */
  samples?: number;
  sample_temperature?: number;
  /** temperature of the second retained-mass/KL figure of the fidelity report (top-k) */
  report_temperature?: number;
  /** teachers whose outputs are not logits; values are stored as log-probabilities */
  teacher_output?: { output: 'probs' | 'logprobs'; detected: boolean };
}

/** Retained mass and KL of a top-k cache (see src/sparse/fidelity.ts). */
export interface FidelityRecord {
  rows: number;
  mass_mean: number;
  mass_min: number;
  mass_t_mean: number;
  mass_t_min: number;
  kl_rows: number;
  kl_mean: number;
  kl_t_mean: number;
}

export interface ShardRecord {
  file: string; // relative to the cache directory, e.g. 'shards/shard-00000.parquet'
  index: number;
  first_row: number;
  rows: number;
  bytes: number;
  sha256: string;
  /** number of rows whose logits contain NaN or Inf (table rows: positions in the sequence layout) */
  nonfinite_rows: number;
  /** sequence layout: table rows (real positions) in the shard */
  positions?: number;
  /** top-k caches */
  fidelity?: FidelityRecord;
}

/**
 * Key-value metadata every shard carries (Parquet file key-value metadata, Arrow schema metadata), so
 * a shard copied into the wrong cache or renamed is detected even without the manifest.
 */
export const META_CONFIG_ID = 'kdcache.config_id';
export const META_FIRST_ROW = 'kdcache.first_row';
export const META_SHARD_INDEX = 'kdcache.shard_index';
