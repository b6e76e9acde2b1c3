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

export const FORMAT_VERSION = 1;
export const SHARD_DIR = 'shards';
export const CONFIG_FILE = 'config.json';
export const MANIFEST_FILE = 'manifest.json';

export function shardExtension(format: StorageFormat): string {
  return format === 'parquet' ? '.parquet' : '.arrow';
}

export function shardBaseName(index: number): string {
  return `shard-${String(index).padStart(5, '0')}`;
}

/** Column names, fixed: external tools and the reader rely on them. */
export const COL_ROW = 'row'; // int64, index of the example in the dataset
export const COL_LABEL = 'label'; // int32, optional
export const COL_LOGITS = 'logits'; // list<float32|float16>, the raw teacher output, flattened
export const COL_INPUT = 'input'; // list<dataset dtype>, optional (--store-inputs)

/** Columnar in-memory form of one shard: typed arrays, never arrays of row objects. */
export interface ShardColumns {
  rows: number;
  row: BigInt64Array;
  label?: Int32Array;
  /** rows * logitsWidth values, row-major. float16 is raw Uint16 bits. */
  logits: Float32Array | Uint16Array;
  logitsWidth: number;
  logitsDtype: 'float32' | 'float16';
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

export interface StorageSpec {
  format: StorageFormat;
  compression: Compression;
  shard_rows: number;
  logits_dtype: 'float32' | 'float16';
  columns: ColumnSpec[];
}

export interface ShardRecord {
  file: string; // relative to the cache directory, e.g. 'shards/shard-00000.parquet'
  index: number;
  first_row: number;
  rows: number;
  bytes: number;
  sha256: string;
  /** number of rows whose logits contain NaN or Inf */
  nonfinite_rows: number;
}

/**
 * Key-value metadata every shard carries (Parquet file key-value metadata, Arrow schema metadata), so
 * a shard copied into the wrong cache or renamed is detected even without the manifest.
 */
export const META_CONFIG_ID = 'kdcache.config_id';
export const META_FIRST_ROW = 'kdcache.first_row';
export const META_SHARD_INDEX = 'kdcache.shard_index';
