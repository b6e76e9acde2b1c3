/**
 * Encoding shards and putting them on disk. A shard is written atomically first and its sidecar
 * (shards/shard-NNNNN.json) atomically after it, so a sidecar exists only next to a complete shard.
 */
import * as arrow from 'apache-arrow';
import { sha256Hex, writeFilesAtomic } from '../util/fsx.js';
import { shardTable } from './arrow-table.js';
import {
  META_CONFIG_ID, META_FIRST_ROW, META_SHARD_INDEX,
  type FidelityRecord, type ShardColumns, type StorageFormat, type StorageSpec,
} from './format.js';
import type { ShardSidecar } from './manifest-types.js';
import { scanNonfinite } from './nonfinite.js';
import { sortFooterKeyValues } from './parquet-kv-order.js';
import { parquetLayout, parquetWriterProperties } from './parquet-props.js';
import { parquetWasm } from './parquet-wasm.js';
import { writeDenseParquet } from './parquet-write.js';
import { type ShardPaths, prepareShardFiles, shardRelPath } from './paths.js';

export interface ShardMeta {
  config_id: string;
  first_row: number;
  shard_index: number;
}

export function shardMetadata(meta: ShardMeta): Map<string, string> {
  return new Map([
    [META_CONFIG_ID, meta.config_id],
    [META_FIRST_ROW, String(meta.first_row)],
    [META_SHARD_INDEX, String(meta.shard_index)],
  ]);
}

/** One shard as the bytes of a standard Parquet file or Arrow IPC file. Deterministic. */
export function encodeShard(cols: ShardColumns, storage: Pick<StorageSpec, 'format' | 'compression' | 'logits_dtype'>, meta: ShardMeta): Uint8Array {
  if (cols.logitsDtype !== storage.logits_dtype) {
    throw new Error(`encodeShard: logits are ${cols.logitsDtype} but the storage spec says ${storage.logits_dtype}`);
  }
  const metadata = shardMetadata(meta);
  if (storage.format === 'arrow') {
    // IPC *file* format (random access, footer), uncompressed: readers map it without decoding.
    return arrow.tableToIPC(shardTable(cols, metadata), 'file');
  }
  // Dense shards are written directly (parquet-write.ts); KDCACHE_PARQUET_PAGES=0 leaves all Parquet to parquet-wasm.
  if (process.env.KDCACHE_PARQUET_PAGES !== '0') {
    const direct = writeDenseParquet(cols, storage.compression, metadata);
    if (direct) return direct;
  }
  // Parquet: the metadata goes into the file's key-value metadata (where DuckDB and pyarrow look, and
  // which parquet-wasm's reader merges into the Arrow schema), not into the embedded Arrow schema.
  const table = shardTable(cols, new Map());
  const props = parquetWriterProperties(parquetLayout(cols, storage.compression), storage.compression, metadata);
  const pw = parquetWasm();
  const bytes = pw.writeParquet(pw.Table.fromIPCStream(arrow.tableToIPC(table, 'stream')), props);
  sortFooterKeyValues(bytes, metadata);
  return bytes;
}

/** The sidecar record of an encoded shard; sha256 and size come from the bytes about to be written. */
export function shardSidecarFor(args: {
  index: number;
  format: StorageFormat;
  first_row: number;
  cols: ShardColumns;
  encoded: Uint8Array;
  config_id: string;
  execution_provider: string;
  /** sequence layout: the examples the shard covers (its table rows are their positions) */
  examples?: number;
  fidelity?: FidelityRecord;
}): ShardSidecar {
  const nonfinite = scanNonfinite(args.cols);
  return {
    file: shardRelPath(args.index, args.format),
    index: args.index,
    first_row: args.first_row,
    rows: args.examples ?? args.cols.rows,
    bytes: args.encoded.byteLength,
    sha256: sha256Hex(args.encoded),
    nonfinite_rows: nonfinite.rows,
    ...(args.examples !== undefined ? { positions: args.cols.rows } : {}),
    ...(args.fidelity ? { fidelity: args.fidelity } : {}),
    config_id: args.config_id,
    execution_provider: args.execution_provider,
    nonfinite_examples: nonfinite.examples,
  };
}

/** A sidecar file's contents. */
export function sidecarText(sidecar: ShardSidecar): string {
  return `${JSON.stringify(sidecar, null, 2)}\n`;
}

export interface ShardExtras {
  /** sequence layout: the number of examples the shard covers */
  examples?: number;
  /** top-k: fidelity stats for the sidecar */
  fidelity?: FidelityRecord;
}

/**
 * Encode shard `index` and write shards/shard-NNNNN.<ext> and its sidecar (to `paths` when they
 * were prepared). Rows must be the dataset rows [index * shard_rows, ...) in order.
 */
export async function writeShard(
  cacheDir: string, index: number, cols: ShardColumns, storage: StorageSpec, config_id: string, execution_provider: string, extras: ShardExtras = {},
  paths?: ShardPaths,
): Promise<ShardSidecar> {
  const first_row = index * storage.shard_rows;
  const sequence = storage.layout === 'sequence';
  if (sequence !== (extras.examples !== undefined)) throw new Error('writeShard: a sequence shard needs its example count, and only it');
  if ((extras.examples ?? cols.rows) > storage.shard_rows) throw new Error(`writeShard: ${extras.examples ?? cols.rows} rows exceed shard_rows ${storage.shard_rows}`);
  if (!sequence && cols.rows > 0 && cols.row[0] !== BigInt(first_row)) throw new Error(`writeShard: shard ${index} starts at row ${cols.row[0]}, expected ${first_row}`);
  const encoded = encodeShard(cols, storage, { config_id, first_row, shard_index: index });
  const { shard, sidecar: sidecarPath } = paths ?? await prepareShardFiles(cacheDir, index, storage.format);
  const sidecar = shardSidecarFor({ index, format: storage.format, first_row, cols, encoded, config_id, execution_provider, ...extras });
  // Written side by side, renamed shard first.
  await writeFilesAtomic([[shard, encoded], [sidecarPath, sidecarText(sidecar)]]);
  return sidecar;
}
