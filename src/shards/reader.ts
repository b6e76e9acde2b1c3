/**
 * Reading shards back: bytes -> typed arrays, with every way a file can be wrong (damaged, truncated,
 * replaced, copied from another cache) reported as one line naming the shard and the fix.
 */
import * as fs from 'node:fs/promises';
import * as arrow from 'apache-arrow';
import { describeFsError, UserError } from '../util/errors.js';
import { tableFromIpcBytes } from '../util/arrow-ipc.js';
import { sha256Hex } from '../util/fsx.js';
import {
  COL_INPUT, COL_LABEL, COL_LOGITS, COL_POSITION, COL_ROW, COL_SAMPLE_INDICES, COL_TOPK_INDICES,
  META_CONFIG_ID, META_FIRST_ROW, META_SHARD_INDEX, REGENERATE,
  type ShardColumns, type ShardRecord, type StorageFormat,
} from './format.js';
import { readFlatParquet } from './parquet-pages.js';
import { parquetWasm } from './parquet-wasm.js';
import { resolveInside } from './paths.js';
import { columnsFromTable } from './table-columns.js';

/** What a shard says about itself (absent keys: not written by kdcache). */
export interface EmbeddedMeta {
  config_id?: string;
  first_row?: number;
  shard_index?: number;
}

export function embeddedMeta(metadata: ReadonlyMap<string, string>): EmbeddedMeta {
  const num = (key: string): number | undefined => {
    const v = metadata.get(key);
    return v !== undefined && /^\d+$/.test(v) ? Number(v) : undefined;
  };
  return { config_id: metadata.get(META_CONFIG_ID), first_row: num(META_FIRST_ROW), shard_index: num(META_SHARD_INDEX) };
}

const PAR1 = [0x50, 0x41, 0x52, 0x31];
const ARROW1 = [0x41, 0x52, 0x52, 0x4f, 0x57, 0x31];

function hasMagic(bytes: Uint8Array, magic: number[], at: number): boolean {
  return at >= 0 && at + magic.length <= bytes.byteLength && magic.every((b, i) => bytes[at + i] === b);
}

/** Check the format's magic numbers before handing bytes to a parser that would fail obscurely. */
function checkMagic(bytes: Uint8Array, format: StorageFormat, file: string): void {
  if (format === 'parquet') {
    if (!hasMagic(bytes, PAR1, 0)) throw new UserError(`${file}: not a Parquet file (no PAR1 header); ${REGENERATE}`);
    if (bytes.byteLength < 12 || !hasMagic(bytes, PAR1, bytes.byteLength - 4)) {
      throw new UserError(`${file}: Parquet file is truncated (no PAR1 footer); ${REGENERATE}`);
    }
    return;
  }
  if (!hasMagic(bytes, ARROW1, 0)) {
    const stream = bytes.byteLength >= 4 && bytes[0] === 0xff && bytes[1] === 0xff && bytes[2] === 0xff && bytes[3] === 0xff;
    throw new UserError(`${file}: ${stream ? 'an Arrow IPC stream, expected an Arrow IPC file' : 'not an Arrow IPC file (no ARROW1 header)'}; ${REGENERATE}`);
  }
  if (!hasMagic(bytes, ARROW1, bytes.byteLength - ARROW1.length)) {
    throw new UserError(`${file}: Arrow IPC file is truncated (no ARROW1 footer); ${REGENERATE}`);
  }
}

function firstLine(err: unknown): string {
  return (err instanceof Error ? err.message : String(err)).split('\n')[0];
}

/** Parse a shard (or any Parquet/Arrow file with the same columns) into an Arrow table. */
export function shardBytesToTable(bytes: Uint8Array, format: StorageFormat, file: string): arrow.Table {
  checkMagic(bytes, format, file);
  try {
    if (format === 'parquet') {
      // One batch for the whole file: columns come back as single views, no concatenation.
      return arrow.tableFromIPC(parquetWasm().readParquet(bytes, { batchSize: 1 << 30 }).intoIPCStream());
    }
    // Arrow reads buffers in place and needs them 8-byte aligned; a copy is cheaper than failing.
    return tableFromIpcBytes(bytes.byteOffset % 8 === 0 ? bytes : bytes.slice());
  } catch (err) {
    throw new UserError(`${file}: cannot decode ${format === 'parquet' ? 'Parquet' : 'Arrow IPC'} data (${firstLine(err)}); ${REGENERATE}`);
  }
}

export function decodeShardWithMeta(bytes: Uint8Array, format: StorageFormat, file: string): { cols: ShardColumns; meta: EmbeddedMeta } {
  if (format === 'parquet' && process.env.KDCACHE_PARQUET_PAGES !== '0') {
    checkMagic(bytes, format, file);
    const fast = denseParquetShard(bytes);
    if (fast) return fast;
  }
  const table = shardBytesToTable(bytes, format, file);
  return { cols: columnsFromTable(table, file), meta: embeddedMeta(table.schema.metadata) };
}

const DENSE_COLUMNS = new Set([COL_ROW, COL_LABEL, COL_POSITION, COL_LOGITS, COL_INPUT]);

/**
 * A dense shard (int64 row, int32 label/position, a list of float32/float16 logits, a list of inputs)
 * read by parquet-pages.ts, the same columns columnsFromTable gives; null for any other file, which
 * parquet-wasm then reads (KDCACHE_PARQUET_PAGES=0 always leaves it to parquet-wasm).
 */
export function denseParquetShard(bytes: Uint8Array): { cols: ShardColumns; meta: EmbeddedMeta } | null {
  const flat = readFlatParquet(bytes, (name) => DENSE_COLUMNS.has(name));
  if (!flat || flat.names.includes(COL_TOPK_INDICES) || flat.names.includes(COL_SAMPLE_INDICES)) return null;
  const { row, logits, label, position, input } = Object.fromEntries(flat.columns);
  const scalar = (c: typeof row | undefined, dtype: string) => c === undefined || (c.width === null && c.dtype === dtype);
  if (!row || !scalar(row, 'int64') || !scalar(label, 'int32') || !scalar(position, 'int32')) return null;
  if (!logits || logits.width === null || (logits.dtype !== 'float32' && logits.dtype !== 'float16') || (input && input.width === null)) return null;
  const cols: ShardColumns = {
    rows: flat.rows, row: row.values as BigInt64Array,
    logits: logits.values as Float32Array | Uint16Array, logitsWidth: logits.width, logitsDtype: logits.dtype,
  };
  if (position) cols.position = position.values as Int32Array;
  if (label) cols.label = label.values as Int32Array;
  if (input) {
    cols.input = input.values;
    cols.inputWidth = input.width!;
    cols.inputDtype = input.dtype;
  }
  return { cols, meta: embeddedMeta(flat.metadata) };
}

/** Decode shard bytes into flat typed arrays; `file` names the shard in errors. */
export function decodeShard(bytes: Uint8Array, format: StorageFormat, file: string): ShardColumns {
  return decodeShardWithMeta(bytes, format, file).cols;
}

/**
 * The metadata a shard carries, reading only its footer (Parquet) or schema (Arrow): cheap enough to
 * check every shard of a cache without hashing it.
 */
export async function readShardMeta(absPath: string, format: StorageFormat, file: string): Promise<EmbeddedMeta> {
  try {
    if (format === 'parquet') return embeddedMeta(await readParquetKeyValues(absPath, file));
    const fh = await fs.open(absPath, 'r');
    try {
      const reader = await arrow.RecordBatchReader.from(fh);
      await reader.open();
      if (!reader.isFile()) throw new Error('an Arrow IPC stream, expected an Arrow IPC file');
      return embeddedMeta(reader.schema.metadata);
    } finally {
      await fh.close().catch(() => {});
    }
  } catch (err) {
    if (err instanceof UserError) throw err;
    const fsErr = describeFsError(err, file, 'read');
    if (fsErr) throw fsErr;
    throw new UserError(`${file}: cannot read ${format === 'parquet' ? 'Parquet footer' : 'Arrow IPC schema'} (${firstLine(err)}); ${REGENERATE}`);
  }
}

/**
 * The key-value metadata of a Parquet file, from its footer alone. The footer is parsed synchronously:
 * parquet-wasm's async ParquetFile.fromFile panics on some damaged footers inside a detached future,
 * where the panic cannot be caught and kills the process (found by fuzzing); a synchronous panic is
 * an ordinary exception.
 */
async function readParquetKeyValues(absPath: string, file: string): Promise<Map<string, string>> {
  const fh = await fs.open(absPath, 'r');
  let footer: Uint8Array;
  try {
    const { size } = await fh.stat();
    const tail = Buffer.alloc(8);
    if (size < 12 || (await fh.read(tail, 0, 8, size - 8)).bytesRead !== 8 || !hasMagic(tail, PAR1, 4)) {
      throw new UserError(`${file}: Parquet file is truncated (no PAR1 footer); ${REGENERATE}`);
    }
    const length = tail.readUInt32LE(0);
    if (length > size - 12) throw new UserError(`${file}: Parquet footer length ${length} exceeds the file's ${size} bytes (truncated or damaged); ${REGENERATE}`);
    // What the parser needs to find the footer: magic, footer, its length, magic.
    footer = Buffer.alloc(4 + length + 8);
    footer.set(PAR1, 0);
    await fh.read(footer, 4, length + 8, size - length - 8);
  } finally {
    await fh.close();
  }
  const schema = parquetWasm().readSchema(footer);
  try {
    return new Map(schema.metadata() as Map<string, string>);
  } finally {
    schema.free();
  }
}

/** The one-line mismatch between a shard's embedded metadata and its manifest record, if any. */
export function metaProblem(meta: EmbeddedMeta, record: Pick<ShardRecord, 'index' | 'first_row'>, expectConfigId?: string): string | undefined {
  if (meta.config_id === undefined || meta.first_row === undefined) return 'carries no kdcache metadata (not a kdcache shard)';
  if (expectConfigId !== undefined && meta.config_id !== expectConfigId) {
    return `belongs to another cache (config_id ${meta.config_id.slice(0, 12)}..., this cache is ${expectConfigId.slice(0, 12)}...): shards were copied between cache directories`;
  }
  if (meta.first_row !== record.first_row) return `holds rows from ${meta.first_row}, the manifest expects ${record.first_row}: shard files were renamed or mixed`;
  if (meta.shard_index !== undefined && meta.shard_index !== record.index) return `is shard ${meta.shard_index}, the manifest expects shard ${record.index}: shard files were renamed or mixed`;
  return undefined;
}

export interface ReadShardOptions {
  /** the cache's config_id; a shard carrying another one was copied from a different cache */
  expectConfigId?: string;
  /** compare sha256 with the record (default true) */
  verifyChecksum?: boolean;
}

/** Read, verify and decode the shard a manifest record describes. */
export async function readShardFile(cacheDir: string, record: ShardRecord, format: StorageFormat, opts: ReadShardOptions = {}): Promise<ShardColumns> {
  const file = record.file;
  const abs = await resolveInside(cacheDir, file);
  let bytes: Uint8Array;
  try {
    bytes = await fs.readFile(abs);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') throw new UserError(`${file}: missing; ${REGENERATE}`);
    throw describeFsError(err, file, 'read') ?? err;
  }
  if (bytes.byteLength !== record.bytes) {
    throw new UserError(`${file}: ${bytes.byteLength} bytes, the manifest says ${record.bytes} (truncated or replaced); ${REGENERATE}`);
  }
  if (opts.verifyChecksum !== false && sha256Hex(bytes) !== record.sha256) {
    throw new UserError(`${file}: sha256 differs from manifest (file changed or corrupted); ${REGENERATE}`);
  }
  const { cols, meta } = decodeShardWithMeta(bytes, format, file);
  const problem = metaProblem(meta, record, opts.expectConfigId);
  if (problem) throw new UserError(`${file}: ${problem}; ${REGENERATE}`);
  if (record.positions !== undefined) {
    checkSequenceRows(cols, record, file);
    return cols;
  }
  if (cols.rows !== record.rows) throw new UserError(`${file}: ${cols.rows} rows, the manifest says ${record.rows}; ${REGENERATE}`);
  if (cols.rows > 0 && (cols.row[0] !== BigInt(record.first_row) || cols.row[cols.rows - 1] !== BigInt(record.first_row + cols.rows - 1))) {
    throw new UserError(`${file}: row ids ${cols.row[0]}..${cols.row[cols.rows - 1]} do not match rows ${record.first_row}..${record.first_row + cols.rows - 1} of the manifest; ${REGENERATE}`);
  }
  return cols;
}

/**
 * Sequence layout: one table row per stored position, ordered by (row, position), every row id in
 * the shard's example range (an example whose positions are all padding has no rows at all).
 */
function checkSequenceRows(cols: ShardColumns, record: ShardRecord, file: string): void {
  if (cols.rows !== record.positions) throw new UserError(`${file}: ${cols.rows} positions, the manifest says ${record.positions}; ${REGENERATE}`);
  if (!cols.position) throw new UserError(`${file}: no "position" column in a sequence cache; ${REGENERATE}`);
  const lo = BigInt(record.first_row);
  const hi = BigInt(record.first_row + record.rows);
  for (let i = 0; i < cols.rows; i++) {
    const r = cols.row[i];
    const ordered = i === 0 || r > cols.row[i - 1] || (r === cols.row[i - 1] && cols.position[i] > cols.position[i - 1]);
    if (r < lo || r >= hi || !ordered || cols.position[i] < 0) {
      throw new UserError(`${file}: table row ${i} (row ${r}, position ${cols.position[i]}) is out of order or outside rows ${lo}..${hi - 1n} of the manifest; ${REGENERATE}`);
    }
  }
}
