/**
 * A direct Parquet writer for kdcache's dense shards: `row`, `label`, the float32 `logits` list and
 * an optional float32 or uint8 `input` list. precompute's writer thread runs next to a teacher that
 * uses every core, and parquet-wasm spends ~5 ms of CPU on a 10k-row shard (the table copied into
 * wasm memory as an Arrow IPC stream, then zstd compiled to wasm); this writes the pages straight
 * from the typed arrays and compresses them with the system's libzstd through the native addon.
 *
 * The files mirror what parquet-wasm writes for the same columns: the same schema and ARROW:schema
 * entry, encodings (BYTE_STREAM_SPLIT floats, DELTA_BINARY_PACKED row ids with chunk statistics),
 * data pages v1 of at most ~1 MiB, zstd level 1, so every reader sees the same table. Anything else
 * (top-k, sampled and sequence shards, float16, other input dtypes, snappy, no addon or libzstd)
 * returns null and is left to parquet-wasm. Format facts from parquet.thrift and Encodings.md.
 */
import * as arrow from 'apache-arrow';
import { loadAddon } from '../util/addon.js';
import { allocTyped, concatTyped } from '../util/dtype.js';
import { TOOL_VERSION } from '../version.js';
import { checkColumns, shardTable } from './arrow-table.js';
import { COL_INPUT, COL_LABEL, COL_LOGITS, COL_ROW, type Compression, type ShardColumns } from './format.js';
import { zstdAvailable } from './parquet-pages.js';
import { type ParquetLayout, parquetLayout } from './parquet-props.js';
import {
  BYTE_STREAM_SPLIT, CONVERTED_LIST, CONVERTED_UINT_8, DATA_PAGE, DELTA_BINARY_PACKED, FLOAT, INT32, INT64, PLAIN, REPEATED, REQUIRED, RLE,
  UNCOMPRESSED, ZSTD,
} from './parquet-enums.js';
import { T, type ThriftFields, type ThriftOut, encodeThrift, varint } from './thrift-compact.js';

/** parquet-rs's page limits, which other readers are tuned for */
const PAGE_BYTES = 1 << 20;
const PAGE_ROWS = 20_000;
/** parquet-rs's default zstd level: shards stay the size parquet-wasm made them */
const ZSTD_LEVEL = 1;
/** bit-packed level runs of at most 63 groups of 8, as parquet-mr and parquet-rs write them */
const MAX_PACKED_GROUPS = 63;

interface Column {
  name: string;
  physical: number;
  /** values per row: list columns (those with `into`) hold `width` per row, flat ones 1 */
  width: number;
  /** bytes per value of the physical type */
  bytes: number;
  encoding: number;
  uint8: boolean;
  /** flat columns: the encoded values of rows [a, b) */
  values?(a: number, b: number): Uint8Array;
  /** list columns: the encoded values of rows [a, b), written into `dst` at `at` (after the levels) */
  into?(a: number, b: number, dst: Uint8Array, at: number): void;
  /** min and max of rows [a, b), for the chunk statistics */
  stats?(a: number, b: number): [Uint8Array, Uint8Array];
}

/**
 * The shard as Parquet bytes, or null when it is not one of the layouts this writer covers (the
 * caller then encodes with parquet-wasm). Deterministic.
 */
export function writeDenseParquet(
  cols: ShardColumns, compression: Compression, metadata: Map<string, string>, layout: ParquetLayout = parquetLayout(cols, compression),
): Uint8Array | null {
  checkColumns(cols);
  if (cols.rows === 0 || cols.position || cols.topkIndices || cols.logitsDtype !== 'float32') return null;
  if (cols.input && cols.inputDtype !== 'float32' && cols.inputDtype !== 'uint8') return null;
  if (compression === 'snappy' || (compression === 'zstd' && !zstdAvailable())) return null;
  if (!consecutive(cols.row)) return null;
  const floats = layout.byteStreamSplit ? BYTE_STREAM_SPLIT : PLAIN;
  const columns: Column[] = [rowColumn(cols.row)];
  if (cols.label) columns.push(flatColumn(COL_LABEL, INT32, cols.label));
  columns.push(floatList(COL_LOGITS, cols.logits as Float32Array, cols.logitsWidth, floats));
  if (cols.input) {
    columns.push(cols.input instanceof Uint8Array
      ? uint8List(COL_INPUT, cols.input, cols.inputWidth!)
      : floatList(COL_INPUT, cols.input as Float32Array, cols.inputWidth!, floats));
  }

  const codec = compression === 'zstd' ? ZSTD : UNCOMPRESSED;
  const parts: Uint8Array[] = [MAGIC];
  let offset = MAGIC.length;
  const rowGroups: ThriftOut[] = [];
  for (let g = 0, ordinal = 0; g < cols.rows; g += layout.rowGroupRows, ordinal++) {
    const end = Math.min(cols.rows, g + layout.rowGroupRows);
    const chunks: ThriftOut[] = [];
    let groupBytes = 0;
    let groupCompressed = 0;
    const groupOffset = offset;
    for (const c of columns) {
      const chunkOffset = offset;
      let uncompressed = 0;
      let pages = 0;
      const perPage = Math.max(1, Math.min(PAGE_ROWS, Math.floor(PAGE_BYTES / (c.width * c.bytes))));
      for (let a = g; a < end; a += perPage) {
        const b = Math.min(end, a + perPage);
        const payload = c.into ? listPage(c, a, b) : c.values!(a, b);
        const body = codec === ZSTD ? zstd(payload) : payload;
        const header = encodeThrift([
          [1, T.i32(DATA_PAGE)], [2, T.i32(payload.length)], [3, T.i32(body.length)],
          [5, T.struct([[1, T.i32((b - a) * c.width)], [2, T.i32(c.encoding)], [3, T.i32(RLE)], [4, T.i32(RLE)]])],
        ]);
        parts.push(header, body);
        offset += header.length + body.length;
        uncompressed += header.length + payload.length;
        pages++;
      }
      const compressed = offset - chunkOffset;
      groupBytes += uncompressed;
      groupCompressed += compressed;
      const stats = c.stats?.(g, end);
      chunks.push(T.struct([
        [2, T.i64(0)],
        [3, T.struct([
          [1, T.i32(c.physical)],
          [2, T.list([...new Set([c.encoding, RLE])].sort((x, y) => x - y).map(T.i32))],
          [3, T.list((c.into ? [c.name, 'list', 'item'] : [c.name]).map(T.binary))],
          [4, T.i32(codec)],
          [5, T.i64((end - g) * c.width)],
          [6, T.i64(uncompressed)],
          [7, T.i64(compressed)],
          [9, T.i64(chunkOffset)],
          [12, stats && T.struct([
            [1, T.binary(stats[1])], [2, T.binary(stats[0])], [3, T.i64(0)],
            [5, T.binary(stats[1])], [6, T.binary(stats[0])], [7, T.bool(true)], [8, T.bool(true)],
          ])],
          [13, T.list([T.struct([[1, T.i32(DATA_PAGE)], [2, T.i32(c.encoding)], [3, T.i32(pages)]])])],
        ])],
      ]));
    }
    rowGroups.push(T.struct([
      [1, T.list(chunks)], [2, T.i64(groupBytes)], [3, T.i64(end - g)], [5, T.i64(groupOffset)],
      [6, T.i64(groupCompressed)], [7, T.i16(ordinal)],
    ]));
  }

  const keyValues = [...[...metadata].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)), ['ARROW:schema', arrowSchemaEntry(cols)]];
  const footer = encodeThrift([
    [1, T.i32(1)],
    [2, T.list(schemaElements(columns))],
    [3, T.i64(cols.rows)],
    [4, T.list(rowGroups)],
    [5, T.list(keyValues.map(([k, v]) => T.struct([[1, T.binary(k)], [2, T.binary(v)]])))],
    [6, T.binary(`kdcache version ${TOOL_VERSION}`)],
    // TypeDefinedOrder for every leaf: without column orders, readers ignore min_value/max_value
    [7, T.list(columns.map(() => T.struct([[1, T.struct([])]])))],
  ]);
  const tail = new Uint8Array(8);
  new DataView(tail.buffer).setUint32(0, footer.length, true);
  tail.set(MAGIC, 4);
  parts.push(footer, tail);
  return concatTyped(parts);
}

const MAGIC = new TextEncoder().encode('PAR1');

function schemaElements(columns: Column[]): ThriftOut[] {
  const out: ThriftOut[] = [T.struct([[4, T.binary('arrow_schema')], [5, T.i32(columns.length)]])];
  for (const c of columns) {
    const leaf = (name: string): ThriftFields => [
      [1, T.i32(c.physical)], [3, T.i32(REQUIRED)], [4, T.binary(name)],
      [6, c.uint8 ? T.i32(CONVERTED_UINT_8) : undefined],
      [10, c.uint8 ? T.struct([[10, T.struct([[1, T.byte(8)], [2, T.bool(false)]])]]) : undefined],
    ];
    if (!c.into) {
      out.push(T.struct(leaf(c.name)));
      continue;
    }
    out.push(
      T.struct([[3, T.i32(REQUIRED)], [4, T.binary(c.name)], [5, T.i32(1)], [6, T.i32(CONVERTED_LIST)], [10, T.struct([[3, T.struct([])]])]]),
      T.struct([[3, T.i32(REPEATED)], [4, T.binary('list')], [5, T.i32(1)]]),
      T.struct(leaf('item')),
    );
  }
  return out;
}

/** Row ids one after another: the only `row` column of a dense shard. */
function consecutive(row: BigInt64Array): boolean {
  // Zigzag-encoding the first id must stay exact in a double.
  if (row[0] < 0n || row[0] >= 2n ** 52n) return false;
  for (let i = 1; i < row.length; i++) if (row[i] !== row[i - 1] + 1n) return false;
  return true;
}

/**
 * DELTA_BINARY_PACKED of consecutive ids: blocks of 128 deltas in 4 miniblocks, every delta equal
 * to the block's minimum (1), so each block is its minimum and four zero bit widths.
 */
function rowColumn(row: BigInt64Array): Column {
  const le = (v: bigint): Uint8Array => {
    const b = new Uint8Array(8);
    new DataView(b.buffer).setBigInt64(0, v, true);
    return b;
  };
  return {
    name: COL_ROW, physical: INT64, width: 1, bytes: 8, encoding: DELTA_BINARY_PACKED, uint8: false,
    values(a, b) {
      const n = b - a;
      const blocks = Math.ceil((n - 1) / 128);
      const out: number[] = [];
      varint(out, 128);
      varint(out, 4);
      varint(out, n);
      varint(out, 2 * Number(row[a]));
      for (let k = 0; k < blocks; k++) out.push(2, 0, 0, 0, 0);
      return Uint8Array.from(out);
    },
    stats: (a, b) => [le(row[a]), le(row[b - 1])],
  };
}

function flatColumn(name: string, physical: number, values: Int32Array): Column {
  return { name, physical, width: 1, bytes: 4, encoding: PLAIN, uint8: false, values: (a, b) => bytesOf(values.subarray(a, b)) };
}

function floatList(name: string, values: Float32Array, width: number, encoding: number): Column {
  return {
    name, physical: FLOAT, width, bytes: 4, encoding, uint8: false,
    into(a, b, dst, at) {
      const src = bytesOf(values.subarray(a * width, b * width));
      if (encoding === BYTE_STREAM_SPLIT) byteStreamSplit(src, dst, at);
      else dst.set(src, at);
    },
  };
}

/** uint8 goes into Parquet as INT32 annotated UINT_8, as parquet-wasm stores it. */
function uint8List(name: string, values: Uint8Array, width: number): Column {
  return {
    name, physical: INT32, width, bytes: 4, encoding: PLAIN, uint8: true,
    into: (a, b, dst, at) => dst.set(bytesOf(Int32Array.from(values.subarray(a * width, b * width))), at),
  };
}

/** A data page v1 of a list column: repetition levels, definition levels, then the values. */
function listPage(c: Column, a: number, b: number): Uint8Array {
  const n = (b - a) * c.width;
  const rep = levels(n, c.width, true);
  const def = levels(n, c.width, false);
  const page = new Uint8Array(rep.length + def.length + n * c.bytes);
  page.set(rep);
  page.set(def, rep.length);
  c.into!(a, b, page, rep.length + def.length);
  return page;
}

function bytesOf(v: Float32Array | Int32Array): Uint8Array {
  return new Uint8Array(v.buffer, v.byteOffset, v.byteLength);
}

/** BYTE_STREAM_SPLIT of float32 values into `out` at `at`: byte 0 of every value, then byte 1, ... */
function byteStreamSplit(src: Uint8Array, out: Uint8Array, at: number): void {
  const n = src.length >> 2;
  for (let i = 0, j = 0; i < n; i++, j += 4) {
    out[at + i] = src[j];
    out[at + n + i] = src[j + 1];
    out[at + 2 * n + i] = src[j + 2];
    out[at + 3 * n + i] = src[j + 3];
  }
}

/**
 * The repetition or definition levels of `n` values of a list `width` values wide, with their 4-byte
 * length (data page v1). Items are required, so every definition level is 1; a repetition level is 0
 * at the start of a row and 1 inside it. Both have bit width 1. Repetition levels are bit-packed:
 * their bytes repeat every width / gcd(width, 8) bytes, so one period is computed and copied.
 */
function levels(n: number, width: number, repetition: boolean): Uint8Array {
  if (!repetition || width === 1) {
    const run: number[] = [0, 0, 0, 0];
    varint(run, n * 2);
    run.push(repetition ? 0 : 1);
    const bytes = Uint8Array.from(run);
    new DataView(bytes.buffer).setUint32(0, bytes.length - 4, true);
    return bytes;
  }
  const packed = Math.ceil(n / 8);
  const out = new Uint8Array(4 + Math.ceil(packed / MAX_PACKED_GROUPS) + packed);
  const period = width / gcd(width, 8);
  const pattern = new Uint8Array(period);
  for (let i = 0; i < period * 8; i++) if (i % width !== 0) pattern[i >> 3] |= 1 << (i & 7);
  let at = 4;
  for (let byte = 0; byte < packed;) {
    const groups = Math.min(MAX_PACKED_GROUPS, packed - byte);
    out[at++] = groups * 2 + 1; // one-byte varint: groups <= 63
    for (const end = byte + groups; byte < end; byte++) out[at++] = pattern[byte % period];
  }
  // The last group's padding is zeros, whatever the pattern holds there.
  if (n % 8 !== 0) out[at - 1] &= (1 << (n % 8)) - 1;
  new DataView(out.buffer).setUint32(0, out.length - 4, true);
  return out;
}

function gcd(a: number, b: number): number {
  return b === 0 ? a : gcd(b, a % b);
}

/** ZSTD_COMPRESSBOUND from zstd.h: the most one frame of `n` bytes can take. */
function zstdBound(n: number): number {
  return n + (n >>> 8) + (n < 128 << 10 ? ((128 << 10) - n) >>> 11 : 0);
}

function zstd(src: Uint8Array): Uint8Array {
  const native = loadAddon();
  if (!native.ok) throw new Error('zstd: the native addon is not loaded');
  const dst = new Uint8Array(zstdBound(src.length));
  const n = native.addon.zstdCompress(src, dst, ZSTD_LEVEL);
  if (n < 0) throw new Error('zstd: libzstd is not loaded');
  return dst.subarray(0, n);
}

const schemaEntries = new Map<string, string>();

/**
 * The ARROW:schema footer entry parquet-wasm writes (and pyarrow and parquet-wasm read back): the
 * Arrow IPC schema message of the table, base64. Built once per column layout from an empty table.
 */
function arrowSchemaEntry(cols: ShardColumns): string {
  const key = `${Boolean(cols.label)}/${cols.logitsWidth}/${cols.inputDtype ?? ''}/${cols.inputWidth ?? 0}`;
  let entry = schemaEntries.get(key);
  if (entry === undefined) {
    const empty: ShardColumns = {
      rows: 0, row: new BigInt64Array(0), logits: new Float32Array(0), logitsWidth: cols.logitsWidth, logitsDtype: 'float32',
      ...(cols.label ? { label: new Int32Array(0) } : {}),
      ...(cols.input ? { input: allocTyped(cols.inputDtype!, 0), inputWidth: cols.inputWidth, inputDtype: cols.inputDtype } : {}),
    };
    const ipc = arrow.tableToIPC(shardTable(empty, new Map()), 'stream');
    // continuation marker, metadata length, then the schema message itself (it has no body)
    const length = new DataView(ipc.buffer, ipc.byteOffset).getInt32(4, true);
    entry = Buffer.from(ipc.subarray(0, 8 + length)).toString('base64');
    schemaEntries.set(key, entry);
  }
  return entry;
}
