import type { DType } from '../util/dtype.js';
import type { ShardRecord, StorageSpec } from './format.js';

export interface FileFingerprint {
  name: string; // base name only: caches move between machines
  sha256: string;
  bytes: number;
}

export interface TeacherInfo extends FileFingerprint {
  input_name: string;
  output_name: string;
  input_names: string[];
  output_names: string[];
  /** declared shapes; -1 for symbolic or dynamic dimensions */
  input_shape: number[];
  output_shape: number[];
  input_type: string;
  output_type: string;
  opset: number | null;
  producer: string | null;
}

export interface DatasetInfo {
  format: 'npy' | 'idx' | 'parquet' | 'arrow';
  files: FileFingerprint[];
  input_column: string | null;
  count: number;
  example_shape: number[];
  dtype: DType;
}

export interface LabelsInfo {
  source: 'file' | 'column';
  files: FileFingerprint[];
  column: string | null;
  count: number;
  /** sha256 of the int32 label array: binds the cache to the exact labels whatever their source */
  sha256: string;
}

export interface Preprocessing {
  /** per-example shape fed to the model (batch dimension excluded) */
  input_shape: number[];
  input_type: 'float32';
  /** x' = (x * scale - mean[c]) / std[c]; c is the channel (dimension 0 of input_shape) */
  scale: number;
  mean: number[];
  std: number[];
}

/** Everything that determines the cache's contents. Same config -> same bytes. */
export interface CacheConfig {
  format_version: number;
  tool: { name: 'kdcache'; version: string };
  /** sha256 of the canonical JSON of the fields below; shards carry it to detect mixing */
  config_id: string;
  teacher: TeacherInfo;
  dataset: DatasetInfo;
  labels: LabelsInfo | null;
  preprocessing: Preprocessing;
  /** per-example teacher output shape (batch dimension excluded) and its flattened width */
  output: { shape: number[]; width: number };
  storage: StorageSpec;
  rows: number;
  shard_count: number;
}

export interface Manifest extends CacheConfig {
  complete: boolean;
  /** execution providers that produced the shards, e.g. ['cpu'] or ['cuda'] */
  execution_providers: string[];
  shards: ShardRecord[];
  totals: { bytes: number; nonfinite_rows: number };
}

/** Per-shard sidecar: the shard record plus what produced it. */
export interface ShardSidecar extends ShardRecord {
  config_id: string;
  execution_provider: string;
  /** dataset rows whose teacher output had NaN/Inf (first 100) */
  nonfinite_examples: number[];
}
