/**
 * A direct Parquet reader for flat numeric columns and fixed-width lists of numbers: the shape of
 * every kdcache shard. Shards are decoded once per epoch on the training side, where parquet-wasm
 * costs ~3 ms per 10k-row shard (bytes into wasm memory, Arrow arrays, an IPC stream, then
 * apache-arrow) while training wants both cores; this writes each page's values straight into the
 * output typed arrays.
 *
 * It reads what the format needs for these columns: the footer and page headers (Thrift compact),
 * data pages v1 and v2, RLE/bit-packed levels, PLAIN, BYTE_STREAM_SPLIT and DELTA_BINARY_PACKED
 * values, uncompressed, Snappy and (with the native addon and libzstd) zstd pages. Anything else
 * (dictionary pages, nulls, byte arrays, other codecs, nested lists, a damaged file) returns null,
 * and the caller reads the file with parquet-wasm, which handles all of Parquet and names what is
 * wrong with a damaged file. Format facts from the Apache Parquet specification (parquet.thrift,
 * Encodings.md).
 */
import { loadAddon } from '../util/addon.js';
import { allocTyped, DTYPE_BYTES, type DType, type TypedArray } from '../util/dtype.js';
import {
  BYTE_STREAM_SPLIT, CONVERTED_LIST, DATA_PAGE, DATA_PAGE_V2, DELTA_BINARY_PACKED, DOUBLE, FIXED_LEN_BYTE_ARRAY, FLOAT, INT32, INT64, OPTIONAL, PLAIN,
  REPEATED, SNAPPY, UNCOMPRESSED, ZSTD,
} from './parquet-enums.js';
import { ThriftReader, type ThriftStruct, type ThriftValue } from './thrift-compact.js';

/** A column's values: one per row (`width` null), or `width` per row, row-major. */
export interface FlatColumn {
  values: TypedArray;
  dtype: DType;
  width: number | null;
}

export interface FlatParquet {
  rows: number;
  /** every top-level column, decoded or not */
  names: string[];
  columns: Map<string, FlatColumn>;
  /** the file's key-value metadata */
  metadata: Map<string, string>;
}

/** Thrown for anything this reader leaves to parquet-wasm; never escapes readFlatParquet. */
class Unsupported extends Error {}

const unsupported = (what: string): never => {
  throw new Unsupported(what);
};

const CONVERTED_INTS: Record<number, DType> = { 11: 'uint8', 12: 'uint16', 13: 'uint32', 15: 'int8', 16: 'int16', 17: 'int32', 18: 'int64' };

const num = (v: ThriftValue | undefined, what: string): number => (typeof v === 'number' ? v : unsupported(`${what} missing`));
const struct = (v: ThriftValue | undefined): ThriftStruct | undefined => (v instanceof Map ? v : undefined);
const list = (v: ThriftValue | undefined): ThriftValue[] => (Array.isArray(v) ? v : []);
const text = (v: ThriftValue | undefined): string => (v instanceof Uint8Array ? Buffer.from(v.buffer, v.byteOffset, v.byteLength).toString('utf8') : '');

interface Leaf {
  /** the top-level column's name */
  name: string;
  /** schema path, as path_in_schema spells it */
  path: string;
  dtype: DType;
  physical: number;
  typeLength: number;
  maxDef: number;
  maxRep: number;
  list: boolean;
}

/**
 * The columns `want` accepts (by top-level name), decoded; null when the file or one of those
 * columns is outside what this reader handles (see the module comment).
 */
export function readFlatParquet(bytes: Uint8Array, want: (name: string) => boolean): FlatParquet | null {
  try {
    return read(bytes, want);
  } catch (err) {
    // Unsupported, a RangeError from reading past the end, a zstd error from the addon: parquet-wasm
    // then reads the file, or says what is wrong with it.
    if (err instanceof Error) return null;
    throw err;
  }
}

function read(bytes: Uint8Array, want: (name: string) => boolean): FlatParquet {
  const n = bytes.byteLength;
  if (n < 12) unsupported('too short');
  const footerLength = new DataView(bytes.buffer, bytes.byteOffset + n - 8, 4).getUint32(0, true);
  if (footerLength > n - 12) unsupported('footer length');
  const meta = new ThriftReader(bytes.subarray(n - 8 - footerLength, n - 8)).struct();
  const rows = num(meta.get(3), 'num_rows');
  const metadata = new Map<string, string>();
  for (const kv of list(meta.get(5))) {
    const s = struct(kv);
    if (s) metadata.set(text(s.get(1)), text(s.get(2)));
  }
  const leaves = schemaLeaves(list(meta.get(2)).map((e) => struct(e) ?? unsupported('schema')));
  const groups = list(meta.get(4)).map((g) => struct(g) ?? unsupported('row group'));
  if (groups.reduce((a, g) => a + num(g.get(3), 'row group rows'), 0) !== rows) unsupported('row counts');
  const columns = new Map<string, FlatColumn>();
  for (let c = 0; c < leaves.length; c++) {
    if (!want(leaves[c].name)) continue;
    const leaf = leaves[c].dtype !== undefined ? (leaves[c] as Leaf) : unsupported(`column ${leaves[c].name}`);
    const chunks = groups.map((g) => {
      const chunk = struct(list(g.get(1))[c]) ?? unsupported('column chunk');
      const cm = struct(chunk.get(3)) ?? unsupported('column metadata');
      if (list(cm.get(3)).map(text).join('.') !== leaf.path) unsupported('column order');
      return cm;
    });
    const total = chunks.reduce((a, cm) => a + num(cm.get(5), 'num_values'), 0);
    if (rows === 0 || total % rows !== 0 || (!leaf.list && total !== rows)) unsupported('value count');
    const width = leaf.list ? total / rows : null;
    const values = allocTyped(leaf.dtype, total);
    let at = 0;
    for (const cm of chunks) at = readChunk(bytes, cm, leaf, width ?? 1, values, at);
    if (at !== total) unsupported('values');
    columns.set(leaf.name, { values, dtype: leaf.dtype, width });
  }
  return { rows, names: leaves.map((l) => l.name), columns, metadata };
}

/** Leaves of a flat schema: primitive top-level columns and 3-level lists (LIST > repeated > leaf). */
function schemaLeaves(schema: ThriftStruct[]): (Omit<Leaf, 'dtype'> & { dtype: DType | undefined })[] {
  const leaves: (Omit<Leaf, 'dtype'> & { dtype: DType | undefined })[] = [];
  let i = 1;
  const children = (e: ThriftStruct) => (typeof e.get(5) === 'number' ? (e.get(5) as number) : 0);
  const rep = (e: ThriftStruct) => (typeof e.get(3) === 'number' ? (e.get(3) as number) : 0);
  for (let top = 0; top < children(schema[0] ?? unsupported('schema')); top++) {
    const e = schema[i++] ?? unsupported('schema');
    const name = text(e.get(4));
    if (children(e) === 0) {
      if (rep(e) === REPEATED) unsupported('repeated primitive');
      leaves.push({ name, path: name, ...leafType(e), maxDef: rep(e) === OPTIONAL ? 1 : 0, maxRep: 0, list: false });
      continue;
    }
    const mid = schema[i++] ?? unsupported('schema');
    const item = schema[i++] ?? unsupported('schema');
    const isList = e.get(6) === CONVERTED_LIST || struct(e.get(10))?.has(3);
    if (!isList || children(e) !== 1 || children(mid) !== 1 || rep(mid) !== REPEATED || children(item) !== 0) unsupported('nested column');
    const maxDef = (rep(e) === OPTIONAL ? 1 : 0) + 1 + (rep(item) === OPTIONAL ? 1 : 0);
    leaves.push({ name, path: `${name}.${text(mid.get(4))}.${text(item.get(4))}`, ...leafType(item), maxDef, maxRep: 1, list: true });
  }
  if (i !== schema.length) unsupported('schema');
  return leaves;
}

function leafType(e: ThriftStruct): { dtype: DType | undefined; physical: number; typeLength: number } {
  const physical = num(e.get(1), 'type');
  const typeLength = typeof e.get(2) === 'number' ? (e.get(2) as number) : 0;
  const logical = struct(e.get(10));
  const converted = e.get(6);
  let dtype: DType | undefined;
  if (logical && logical.size > 0) {
    const int = struct(logical.get(10));
    if (int) dtype = `${int.get(2) === false ? 'uint' : 'int'}${int.get(1)}` as DType;
    else if (logical.has(15) && physical === FIXED_LEN_BYTE_ARRAY && typeLength === 2) return { dtype: 'float16', physical, typeLength };
  } else if (typeof converted === 'number') {
    dtype = CONVERTED_INTS[converted];
  } else {
    dtype = ({ [INT32]: 'int32', [INT64]: 'int64', [FLOAT]: 'float32', [DOUBLE]: 'float64' } as Record<number, DType | undefined>)[physical];
  }
  // Integers: 64-bit ones in INT64, all narrower ones in INT32 (uint64 is not a kdcache type).
  if (dtype && /int/.test(dtype) && physical !== (dtype === 'int64' ? INT64 : INT32)) dtype = undefined;
  if (dtype && !(dtype in DTYPE_BYTES)) dtype = undefined;
  return { dtype, physical, typeLength };
}

/** Decode one column chunk's pages into `out` from value `at`; returns the next value index. */
function readChunk(bytes: Uint8Array, cm: ThriftStruct, leaf: Leaf, width: number, out: TypedArray, at: number): number {
  const codec = num(cm.get(4), 'codec');
  const count = num(cm.get(5), 'num_values');
  let pos = num(cm.get(11) ?? cm.get(9), 'page offset');
  const end = at + count;
  while (at < end) {
    const r = new ThriftReader(bytes, pos);
    const header = r.struct();
    const type = num(header.get(1), 'page type');
    const size = num(header.get(3), 'page size');
    const rawSize = num(header.get(2), 'page size');
    const page = bytes.subarray(r.pos, r.pos + size);
    if (page.byteLength !== size) unsupported('page past the end');
    pos = r.pos + size;
    // Each page version puts its levels and values in its own place; they are checked alike below.
    let values: Uint8Array;
    let n: number;
    let encoding: number;
    let rep: Uint8Array | null = null;
    let def: Uint8Array | null = null;
    if (type === DATA_PAGE) {
      const h = struct(header.get(5)) ?? unsupported('page header');
      n = num(h.get(1), 'page values');
      encoding = num(h.get(2), 'encoding');
      const data = decompress(page, codec, rawSize);
      let off = 0;
      // v1: each kind of level present is a 4-byte length and its runs, repetition first
      const prefixed = (): Uint8Array => {
        const len = data[off] | (data[off + 1] << 8) | (data[off + 2] << 16) | (data[off + 3] << 24);
        if (!(len >= 0 && off + 4 + len <= data.byteLength)) unsupported('levels');
        off += 4 + len;
        return data.subarray(off - len, off);
      };
      if (leaf.maxRep > 0) rep = prefixed();
      if (leaf.maxDef > 0) def = prefixed();
      values = data.subarray(off);
    } else if (type === DATA_PAGE_V2) {
      const h = struct(header.get(8)) ?? unsupported('page header');
      n = num(h.get(1), 'page values');
      encoding = num(h.get(4), 'encoding');
      if (num(h.get(2), 'nulls') !== 0) unsupported('nulls');
      const defLength = num(h.get(5), 'levels');
      const repLength = num(h.get(6), 'levels');
      if (repLength + defLength > size) unsupported('levels');
      // v2: both kinds of level uncompressed at the start, lengths in the header
      if (leaf.maxRep > 0) rep = page.subarray(0, repLength);
      if (leaf.maxDef > 0) def = page.subarray(repLength, repLength + defLength);
      const body = page.subarray(repLength + defLength);
      values = h.get(7) === false ? body : decompress(body, codec, rawSize - repLength - defLength);
    } else {
      return unsupported(`page type ${type}`); // dictionary pages included
    }
    if (n > end - at) unsupported('page values');
    if (rep) checkLevels(rep, leaf.maxRep, n, true, width, at);
    if (def) checkLevels(def, leaf.maxDef, n, false, width, at);
    decodeValues(values, encoding, leaf, n, out, at);
    at += n;
  }
  return at;
}

let zstd: boolean | null = null;

/**
 * Whether this thread has zstd: the addon is built and opens libzstd (an empty frame decodes). The
 * addon loads libzstd only with both its compressor and decompressor, so this answers for reading
 * pages here and for writing them (parquet-write.ts).
 */
export function zstdAvailable(): boolean {
  if (zstd === null) {
    const base = loadAddon();
    try {
      zstd = base.ok && base.addon.zstdDecompress(new Uint8Array([0x28, 0xb5, 0x2f, 0xfd, 0x20, 0x00, 0x01, 0x00, 0x00]), new Uint8Array(0)) === 0;
    } catch {
      zstd = false;
    }
  }
  return zstd;
}

let scratch = new Uint8Array(1 << 16);

/** A page's bytes, decompressed into a scratch buffer that the next page reuses. */
function decompress(src: Uint8Array, codec: number, size: number): Uint8Array {
  if (codec === UNCOMPRESSED) {
    if (src.byteLength !== size) unsupported('page size');
    return src;
  }
  if (scratch.byteLength < size) scratch = new Uint8Array(Math.max(size, scratch.byteLength * 2));
  const dst = scratch.subarray(0, size);
  let got: number;
  if (codec === SNAPPY) got = snappyDecompress(src, dst);
  else if (codec === ZSTD) {
    const base = loadAddon();
    if (!base.ok || !zstdAvailable()) return unsupported('zstd needs the native addon and libzstd');
    got = base.addon.zstdDecompress(src, dst);
  } else return unsupported(`codec ${codec}`);
  if (got !== size) unsupported('page size');
  return dst;
}

/** Snappy's block format (github.com/google/snappy, format_description.txt). */
function snappyDecompress(src: Uint8Array, dst: Uint8Array): number {
  let p = 0;
  let length = 0;
  for (let scale = 1; ; scale *= 128) {
    if (p >= src.length || scale > 2 ** 28) unsupported('snappy length');
    const b = src[p++];
    length += (b & 0x7f) * scale;
    if (b < 0x80) break;
  }
  if (length > dst.byteLength) unsupported('snappy length');
  let o = 0;
  while (p < src.length) {
    const tag = src[p++];
    let len: number;
    let offset: number;
    switch (tag & 3) {
      case 0: {
        len = tag >>> 2;
        if (len >= 60) {
          const extra = len - 59;
          if (p + extra > src.length) unsupported('snappy literal');
          len = 0;
          for (let k = 0; k < extra; k++) len += src[p++] * 2 ** (8 * k);
        }
        len += 1;
        if (p + len > src.length || o + len > length) unsupported('snappy literal');
        dst.set(src.subarray(p, p + len), o);
        p += len;
        o += len;
        continue;
      }
      case 1:
        if (p + 1 > src.length) unsupported('snappy copy');
        len = 4 + ((tag >>> 2) & 7);
        offset = ((tag >>> 5) << 8) | src[p++];
        break;
      case 2:
        if (p + 2 > src.length) unsupported('snappy copy');
        len = 1 + (tag >>> 2);
        offset = src[p] | (src[p + 1] << 8);
        p += 2;
        break;
      default:
        if (p + 4 > src.length) unsupported('snappy copy');
        len = 1 + (tag >>> 2);
        offset = (src[p] | (src[p + 1] << 8) | (src[p + 2] << 16) | (src[p + 3] << 24)) >>> 0;
        p += 4;
    }
    if (offset === 0 || offset > o || o + len > length) unsupported('snappy copy');
    if (offset >= len) dst.copyWithin(o, o - offset, o - offset + len);
    else for (let k = 0; k < len; k++) dst[o + k] = dst[o - offset + k];
    o += len;
  }
  return o === length ? o : unsupported('snappy length');
}

/** `bits` bits at bit offset `bit` of buf, least significant first (widths up to 52). */
function bitsAt(buf: Uint8Array, bit: number, bits: number): number {
  let v = 0;
  let scale = 1;
  while (bits > 0) {
    const byte = Math.floor(bit / 8);
    if (byte >= buf.length) unsupported('bit-packed data past the end');
    const shift = bit % 8;
    const take = Math.min(8 - shift, bits);
    v += ((buf[byte] >>> shift) & ((1 << take) - 1)) * scale;
    scale *= 2 ** take;
    bits -= take;
    bit += take;
  }
  return v;
}

/**
 * Check n levels (RLE/bit-packed hybrid) against what a column without nulls holds: definition levels
 * all at their maximum (rep false), or repetition levels that start a row every `width` values, the
 * first of them being value `at` of the column (rep true). RLE runs are checked whole.
 */
function checkLevels(buf: Uint8Array, max: number, n: number, rep: boolean, width: number, at: number): void {
  const bits = 32 - Math.clz32(max);
  const bad = () => unsupported(rep ? 'lists of different lengths' : 'nulls or empty lists');
  const c = new ThriftReader(buf);
  let col = at % width; // rep: the next value's place in its row
  let k = 0;
  while (k < n) {
    const header = c.varint();
    if (header % 2 === 1) {
      const count = Math.floor(header / 2) * 8;
      const take = Math.min(count, n - k);
      if (c.pos + Math.ceil((take * bits) / 8) > buf.length) unsupported('levels past the end');
      for (let j = 0; j < take; j++) {
        const v = bits === 1 ? (buf[c.pos + (j >>> 3)] >>> (j & 7)) & 1 : bitsAt(buf, c.pos * 8 + j * bits, bits);
        if (!rep) {
          if (v !== max) bad();
        } else {
          if (v !== (col === 0 ? 0 : 1)) bad();
          if (++col === width) col = 0;
        }
      }
      c.pos += (count * bits) / 8;
      k += take;
    } else {
      const count = Math.min(header / 2, n - k);
      let v = 0;
      for (let b = 0; b < Math.ceil(bits / 8); b++) v |= (buf[c.pos++] ?? unsupported('levels past the end')) << (8 * b);
      if (count === 0) unsupported('empty run');
      if (!rep) {
        if (v !== max) bad();
      } else if (v === 0) {
        // each 0 starts a row: several in a row only for one-value rows
        if (col !== 0 || (count > 1 && width !== 1)) bad();
        col = width === 1 ? 0 : 1;
      } else {
        if (v !== 1 || col === 0 || col + count > width) bad();
        col = (col + count) % width;
      }
      k += count;
    }
  }
}

/** n values of a page, decoded into out[at, at + n). */
function decodeValues(src: Uint8Array, encoding: number, leaf: Leaf, n: number, out: TypedArray, at: number): void {
  const size = leaf.physical === INT32 || leaf.physical === FLOAT ? 4 : leaf.physical === FIXED_LEN_BYTE_ARRAY ? leaf.typeLength : 8;
  const sameBytes = DTYPE_BYTES[leaf.dtype] === size;
  if (encoding === PLAIN) {
    if (src.byteLength < n * size) unsupported('values past the end');
    if (sameBytes) new Uint8Array(out.buffer, out.byteOffset + at * size, n * size).set(src.subarray(0, n * size));
    else {
      // 8/16-bit integers stored as INT32: narrowed as Arrow's readers do (the value mod 2^bits)
      const aligned = src.byteOffset % 4 === 0 ? src : src.slice(0, n * 4);
      (out as Int8Array).set(new Int32Array(aligned.buffer, aligned.byteOffset, n), at);
    }
  } else if (encoding === BYTE_STREAM_SPLIT && sameBytes) {
    if (src.byteLength < n * size) unsupported('values past the end');
    if (size === 4) {
      const o = new Int32Array(out.buffer, out.byteOffset + at * 4, n);
      const [b0, b1, b2, b3] = [0, 1, 2, 3].map((b) => src.subarray(b * n, b * n + n));
      for (let i = 0; i < n; i++) o[i] = b0[i] | (b1[i] << 8) | (b2[i] << 16) | (b3[i] << 24);
    } else {
      const o = new Uint8Array(out.buffer, out.byteOffset + at * size, n * size);
      for (let b = 0; b < size; b++) for (let i = 0; i < n; i++) o[i * size + b] = src[b * n + i];
    }
  } else if (encoding === DELTA_BINARY_PACKED && (leaf.physical === INT32 || leaf.physical === INT64)) {
    deltaBinaryPacked(src, n, out, at, leaf.physical === INT64 ? 64 : 32);
  } else {
    unsupported(`encoding ${encoding}`);
  }
}

/** DELTA_BINARY_PACKED integers; values must stay within 2^53 (row ids and positions do). */
function deltaBinaryPacked(buf: Uint8Array, n: number, out: TypedArray, at: number, bits: 32 | 64): void {
  const c = new ThriftReader(buf);
  const blockSize = c.varint();
  const miniblocks = c.varint();
  const total = c.varint();
  let last = c.zigzag();
  const per = blockSize / miniblocks;
  if (total !== n || !(miniblocks > 0) || blockSize % 128 !== 0 || per % 32 !== 0) unsupported('delta header');
  // int64 values written as two int32 halves: no BigInt per value
  const halves = out instanceof BigInt64Array ? new Int32Array(out.buffer, out.byteOffset, out.length * 2) : null;
  const put = (k: number, v: number) => {
    if (!Number.isSafeInteger(v) || (bits === 32 && v !== (v | 0))) unsupported('delta value');
    if (halves) {
      halves[2 * (at + k)] = v >>> 0;
      halves[2 * (at + k) + 1] = Math.floor(v / 2 ** 32);
    } else (out as Int32Array)[at + k] = v;
  };
  if (n > 0) put(0, last);
  let k = 1;
  while (k < n) {
    const minDelta = c.zigzag();
    const widths = c.pos;
    c.pos += miniblocks;
    for (let m = 0; m < miniblocks && k < n; m++) {
      const width = buf[widths + m] ?? unsupported('delta widths');
      if (width > 52) unsupported('delta width');
      const base = c.pos * 8;
      for (let j = 0; j < per && k < n; j++) {
        last += minDelta + (width === 0 ? 0 : bitsAt(buf, base + j * width, width));
        put(k++, last);
      }
      c.pos += (per * width) / 8;
    }
  }
}
