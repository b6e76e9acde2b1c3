/**
 * Structure and consistency of config.json, sidecars and manifest.json. Everything kdcache later uses
 * for arithmetic or file access is checked here, so hostile or damaged JSON fails with one line
 * naming the file and the field instead of misbehaving later.
 */
import { product } from '../util/dtype.js';
import { FORMAT_VERSION, FORMAT_VERSION_EXTENDED } from './format.js';
import {
  arrayOf, bool, type Check, fieldFail, finite, int, nullable, object, oneOf, optional, sha256, str,
} from './json-check.js';
import { relPathProblem, shardRelPath } from './paths.js';
import type { CacheConfig, Manifest } from './manifest-types.js';
import type { ShardRecord } from './format.js';

const DTYPES = ['float32', 'float64', 'float16', 'uint8', 'int8', 'uint16', 'int16', 'uint32', 'int32', 'int64'] as const;
const MAX_DIM = 2 ** 31 - 1;
/** Beyond this a cache would need an absurd number of files; refuse rather than loop over it. */
export const MAX_SHARDS = 10_000_000;

const fingerprint = object({ name: str, sha256, bytes: int(0) });
const shape = (min: number): Check => arrayOf(int(min, MAX_DIM), 64);

const teacher = object({
  name: str, sha256, bytes: int(0),
  input_name: str, output_name: str,
  input_names: arrayOf(str, 4096), output_names: arrayOf(str, 4096),
  input_shape: shape(-1), output_shape: shape(-1),
  input_type: str, output_type: str,
  opset: nullable(int(0)), producer: nullable(str),
});

const dataset = object({
  format: oneOf('npy', 'idx', 'parquet', 'arrow'),
  files: arrayOf(fingerprint, 1 << 20),
  input_column: nullable(str),
  count: int(0),
  example_shape: shape(0),
  dtype: oneOf(...DTYPES),
});

const labels = nullable(object({
  source: oneOf('file', 'column'),
  files: arrayOf(fingerprint, 1 << 20),
  column: nullable(str),
  count: int(0),
  sha256,
}));

const preprocessing = object({
  input_shape: shape(1),
  input_type: oneOf('float32', 'int64', 'int32'),
  scale: finite,
  mean: arrayOf(finite, 1 << 16),
  std: arrayOf(finite, 1 << 16),
  pad_id: optional(int(Number.MIN_SAFE_INTEGER)),
  mask_input: optional(object({ name: str, kind: oneOf('mask', 'lengths'), type: str })),
});

const positive: Check = (v, at) => {
  if (typeof v !== 'number' || !(v > 0) || !Number.isFinite(v)) fieldFail(at, 'a positive number', v);
};

const storage = object({
  format: oneOf('parquet', 'arrow'),
  compression: oneOf('zstd', 'snappy', 'none'),
  shard_rows: int(1, MAX_DIM),
  logits_dtype: oneOf('float32', 'float16'),
  columns: arrayOf(object({ name: str, type: str, length: optional(int(0, MAX_DIM)) }), 64),
  layout: optional(oneOf('sequence')),
  classes: optional(int(1, MAX_DIM)),
  kind: optional(oneOf('topk', 'sample')),
  samples: optional(int(1, MAX_DIM)),
  sample_temperature: optional(positive),
  k: optional(int(1, MAX_DIM)),
  report_temperature: optional(positive),
  teacher_output: optional(object({ output: oneOf('probs', 'logprobs'), detected: bool })),
});

/** Things a version-1 cache cannot have. */
function extendedFeatures(c: CacheConfig): string[] {
  const s = c.storage;
  const p = c.preprocessing;
  const out: string[] = [];
  for (const key of ['layout', 'classes', 'kind', 'k', 'samples', 'sample_temperature', 'report_temperature', 'teacher_output'] as const) if (s[key] !== undefined) out.push(`storage.${key}`);
  if (p.input_type !== 'float32') out.push('preprocessing.input_type');
  if (p.pad_id !== undefined) out.push('preprocessing.pad_id');
  if (p.mask_input !== undefined) out.push('preprocessing.mask_input');
  return out;
}

/** The version a config must carry: 2 exactly when it uses a field version 1 does not have. */
export function formatVersionOf(c: CacheConfig): number {
  return extendedFeatures(c).length > 0 ? FORMAT_VERSION_EXTENDED : FORMAT_VERSION;
}

const configShape = object({
  format_version: int(0),
  tool: object({ name: oneOf('kdcache'), version: str }),
  config_id: sha256,
  teacher, dataset, labels, preprocessing,
  output: object({ shape: shape(1), width: int(1, MAX_DIM) }),
  storage,
  rows: int(0),
  shard_count: int(0, MAX_SHARDS),
});

/** config.json: structure, then the arithmetic the rest of kdcache relies on. */
export const checkConfig: Check = (v, at) => {
  configShape(v, at);
  const c = v as CacheConfig;
  if (c.format_version !== FORMAT_VERSION && c.format_version !== FORMAT_VERSION_EXTENDED) {
    fieldFail('format_version', `${FORMAT_VERSION} or ${FORMAT_VERSION_EXTENDED} (the cache formats this kdcache reads; the cache was written by another version)`, c.format_version);
  }
  const features = extendedFeatures(c);
  if (c.format_version === FORMAT_VERSION && features.length > 0) fieldFail(features[0], `absent in a format_version ${FORMAT_VERSION} cache`, 'a value');
  if (product(c.output.shape) !== c.output.width) fieldFail('output.width', `the product of output.shape (${product(c.output.shape)})`, c.output.width);
  const s = c.storage;
  const classes = c.output.shape[c.output.shape.length - 1];
  if (s.layout === 'sequence' && c.output.shape.length !== 2) fieldFail('output.shape', '[positions, classes] in the sequence layout', c.output.shape);
  if ((s.layout !== undefined || s.kind !== undefined) && s.classes !== classes) fieldFail('storage.classes', `the last output dimension (${classes})`, s.classes);
  if (s.kind === 'topk') {
    if (s.k === undefined || s.k >= classes) fieldFail('storage.k', `an integer from 1 to ${classes - 1} (fewer than the classes)`, s.k);
    if (s.report_temperature === undefined) fieldFail('storage.report_temperature', 'a positive number', s.report_temperature);
  } else if (s.kind === 'sample') {
    if (s.samples === undefined) fieldFail('storage.samples', 'the draws per row of a sampled cache', s.samples);
    if (s.sample_temperature === undefined) fieldFail('storage.sample_temperature', 'a positive number', s.sample_temperature);
    if (s.k !== Math.min(s.samples, classes)) fieldFail('storage.k', `min(samples, classes) = ${Math.min(s.samples, classes)}`, s.k);
    if (s.report_temperature === undefined) fieldFail('storage.report_temperature', 'a positive number', s.report_temperature);
  } else if (s.k !== undefined || s.report_temperature !== undefined) {
    fieldFail(s.k !== undefined ? 'storage.k' : 'storage.report_temperature', 'absent without storage.kind "topk" or "sample"', 'a value');
  }
  if (s.kind !== 'sample' && (s.samples !== undefined || s.sample_temperature !== undefined)) {
    fieldFail(s.samples !== undefined ? 'storage.samples' : 'storage.sample_temperature', 'absent without storage.kind "sample"', 'a value');
  }
  const shards = Math.ceil(c.rows / c.storage.shard_rows);
  if (c.shard_count !== shards) fieldFail('shard_count', `ceil(rows / storage.shard_rows) = ${shards}`, c.shard_count);
};

/** Rows in shard `index` of a cache of `rows` rows cut into `shardRows`-row shards. */
export function expectedShardRows(rows: number, shardRows: number, index: number): number {
  return Math.max(0, Math.min(rows, (index + 1) * shardRows) - index * shardRows);
}

const nonNegative: Check = (v, at) => {
  if (typeof v !== 'number' || !(v >= 0) || !Number.isFinite(v)) fieldFail(at, 'a finite number >= 0', v);
};

const fidelity = object({
  rows: int(0), mass_mean: nonNegative, mass_min: nonNegative, mass_t_mean: nonNegative, mass_t_min: nonNegative,
  kl_rows: int(0), kl_mean: nonNegative, kl_t_mean: nonNegative,
});

const recordShape = {
  file: str, index: int(0, MAX_SHARDS), first_row: int(0), rows: int(0, MAX_DIM),
  bytes: int(0), sha256, nonfinite_rows: int(0, MAX_DIM),
  positions: optional(int(0)),
  fidelity: optional(fidelity),
};

export const checkSidecarShape: Check = object({
  ...recordShape,
  config_id: sha256,
  execution_provider: str,
  nonfinite_examples: arrayOf(int(0), 100),
});

/**
 * A shard record against the configuration: its name, position and row range are all implied by its
 * index, so anything else means the record was edited or belongs elsewhere.
 */
export function checkRecordAgainstConfig(r: ShardRecord, config: CacheConfig, at: string): void {
  const pathProblem = relPathProblem(r.file);
  if (pathProblem) fieldFail(`${at}file`, `a path inside the cache directory (it ${pathProblem})`, r.file);
  const name = shardRelPath(r.index, config.storage.format);
  if (r.file !== name) fieldFail(`${at}file`, JSON.stringify(name), r.file);
  if (r.index >= config.shard_count) fieldFail(`${at}index`, `below shard_count ${config.shard_count}`, r.index);
  const first = r.index * config.storage.shard_rows;
  if (r.first_row !== first) fieldFail(`${at}first_row`, `index * storage.shard_rows = ${first}`, r.first_row);
  const rows = expectedShardRows(config.rows, config.storage.shard_rows, r.index);
  if (r.rows !== rows) fieldFail(`${at}rows`, `${rows} (rows of shard ${r.index})`, r.rows);
  const sequence = config.storage.layout === 'sequence';
  if (sequence && r.positions === undefined) fieldFail(`${at}positions`, 'the number of stored positions (sequence layout)', r.positions);
  if (!sequence && r.positions !== undefined) fieldFail(`${at}positions`, 'absent outside the sequence layout', r.positions);
  const maxPositions = rows * (config.output.shape[0] ?? 1);
  if (sequence && r.positions! > maxPositions) fieldFail(`${at}positions`, `at most rows * positions per example (${maxPositions})`, r.positions);
  const tableRows = sequence ? r.positions! : r.rows;
  if (r.nonfinite_rows > tableRows) fieldFail(`${at}nonfinite_rows`, `at most ${sequence ? 'positions' : 'rows'} (${tableRows})`, r.nonfinite_rows);
  if ((config.storage.kind !== undefined) !== (r.fidelity !== undefined)) {
    fieldFail(`${at}fidelity`, config.storage.kind !== undefined ? 'the fidelity stats of a sparse shard' : 'absent in a dense cache', r.fidelity);
  }
}

export const checkManifest: Check = (v, at) => {
  checkConfig(v, at);
  object({
    complete: bool,
    execution_providers: arrayOf(str, 64),
    shards: arrayOf(object(recordShape), MAX_SHARDS),
    totals: object({ bytes: int(0), nonfinite_rows: int(0), positions: optional(int(0)), fidelity: optional(fidelity) }),
  })(v, at);
  const m = v as Manifest;
  let bytes = 0;
  let nonfinite = 0;
  let positions = 0;
  m.shards.forEach((r, i) => {
    checkRecordAgainstConfig(r, m, `shards[${i}].`);
    if (m.complete ? r.index !== i : i > 0 && r.index <= m.shards[i - 1].index) {
      fieldFail(`shards[${i}].index`, m.complete ? `${i} (shards sorted by index, none missing)` : 'increasing', r.index);
    }
    bytes += r.bytes;
    nonfinite += r.nonfinite_rows;
    positions += r.positions ?? 0;
  });
  if (m.complete && m.shards.length !== m.shard_count) fieldFail('shards', `${m.shard_count} shard records (shard_count)`, m.shards);
  if (m.totals.bytes !== bytes) fieldFail('totals.bytes', `the sum of the shards' bytes (${bytes})`, m.totals.bytes);
  if (m.totals.nonfinite_rows !== nonfinite) fieldFail('totals.nonfinite_rows', `the sum of the shards' nonfinite_rows (${nonfinite})`, m.totals.nonfinite_rows);
  const sequence = m.storage.layout === 'sequence';
  if (sequence ? m.totals.positions !== positions : m.totals.positions !== undefined) {
    fieldFail('totals.positions', sequence ? `the sum of the shards' positions (${positions})` : 'absent outside the sequence layout', m.totals.positions);
  }
  if ((m.storage.kind !== undefined) !== (m.totals.fidelity !== undefined)) fieldFail('totals.fidelity', m.storage.kind !== undefined ? 'the combined fidelity stats' : 'absent in a dense cache', m.totals.fidelity);
};
