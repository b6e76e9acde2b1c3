import type { DType } from '../util/dtype.js';
import type { FidelityRecord, ShardRecord, StorageSpec } from './format.js';

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
  /** integer inputs (token ids) are fed as they are: scale 1, mean 0, std 1 */
  input_type: 'float32' | 'int64' | 'int32';
  /** x' = (x * scale - mean[c]) / std[c]; c is the channel (dimension 0 of input_shape) */
  scale: number;
  mean: number[];
  std: number[];
  /** sequence teachers: the input value that marks padding; padding positions are not stored */
  pad_id?: number;
  /** sequence teachers with a mask or lengths input, derived from pad_id (all real without one) */
  mask_input?: MaskInput;
}

export interface MaskInput {
  name: string;
  /** 'mask': [T], 1 at real positions, 0 at padding; 'lengths': [] or [1], real positions before the first pad */
  kind: 'mask' | 'lengths';
  /** the element type the model declares: int64, int32, float32 or bool */
  type: string;
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
  totals: {
    bytes: number;
    nonfinite_rows: number;
    /** sequence layout: real positions stored */
    positions?: number;
    /** top-k: the shards' fidelity combined (means weighted by rows) */
    fidelity?: FidelityRecord;
  };
}

/** Per-shard sidecar: the shard record plus what produced it. */
export interface ShardSidecar extends ShardRecord {
  config_id: string;
  execution_provider: string;
  /** dataset rows whose teacher output had NaN/Inf (first 100) */
  nonfinite_examples: number[];
}
