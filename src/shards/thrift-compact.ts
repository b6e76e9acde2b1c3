/**
 * The Thrift compact protocol as Parquet uses it for its footer and page headers. Structs come back
 * keyed by field id, and are written from (id, value) lists (the schema lives with the callers,
 * src/shards/parquet-pages.ts and parquet-write.ts), which keeps this a few dozen lines. Integers are JavaScript numbers: Parquet's sizes, offsets and counts
 * fit in 2^53, and a value that does not fails the read (the caller then hands the file to
 * parquet-wasm, which reports what is wrong).
 */

export type ThriftValue = number | boolean | Uint8Array | ThriftValue[] | ThriftStruct;
export type ThriftStruct = Map<number, ThriftValue>;

const STOP = 0;
const TRUE = 1;
const FALSE = 2;
const BYTE = 3;
const I16 = 4;
const I32 = 5;
const I64 = 6;
const DOUBLE = 7;
const BINARY = 8;
const LIST = 9;
const SET = 10;
const MAP = 11;
const STRUCT = 12;

export class ThriftReader {
  pos: number;

  constructor(private readonly buf: Uint8Array, pos = 0) {
    this.pos = pos;
  }

  private byte(): number {
    if (this.pos >= this.buf.length) throw new RangeError('thrift: read past the end');
    return this.buf[this.pos++];
  }

  /** unsigned LEB128, exact up to 2^53 (also Parquet's own varints: levels, delta encoding) */
  varint(): number {
    let v = 0;
    let scale = 1;
    for (;;) {
      const b = this.byte();
      v += (b & 0x7f) * scale;
      if (b < 0x80) break;
      scale *= 128;
      if (scale > 2 ** 49) throw new RangeError('thrift: integer beyond 2^53');
    }
    return v;
  }

  zigzag(): number {
    const v = this.varint();
    return v % 2 === 0 ? v / 2 : -(v + 1) / 2;
  }

  struct(): ThriftStruct {
    const out: ThriftStruct = new Map();
    let id = 0;
    for (;;) {
      const head = this.byte();
      const type = head & 0x0f;
      if (type === STOP) return out;
      id = head >> 4 ? id + (head >> 4) : this.zigzag();
      out.set(id, type === TRUE || type === FALSE ? type === TRUE : this.value(type));
    }
  }

  private value(type: number): ThriftValue {
    switch (type) {
      case TRUE: case FALSE: // list elements: one byte each
        return this.byte() === TRUE;
      case BYTE: {
        const b = this.byte();
        return b > 127 ? b - 256 : b;
      }
      case I16: case I32: case I64:
        return this.zigzag();
      case DOUBLE: {
        if (this.pos + 8 > this.buf.length) throw new RangeError('thrift: read past the end');
        const v = new DataView(this.buf.buffer, this.buf.byteOffset + this.pos, 8).getFloat64(0, true);
        this.pos += 8;
        return v;
      }
      case BINARY: {
        const n = this.varint();
        if (this.pos + n > this.buf.length) throw new RangeError('thrift: read past the end');
        const v = this.buf.subarray(this.pos, this.pos + n);
        this.pos += n;
        return v;
      }
      case LIST: case SET: {
        const head = this.byte();
        const n = head >> 4 === 15 ? this.varint() : head >> 4;
        if (n > this.buf.length - this.pos) throw new RangeError('thrift: list longer than the data');
        const items: ThriftValue[] = [];
        for (let i = 0; i < n; i++) items.push(this.value(head & 0x0f));
        return items;
      }
      case MAP: {
        const n = this.varint();
        if (n === 0) return [];
        const kinds = this.byte();
        const items: ThriftValue[] = [];
        for (let i = 0; i < n; i++) items.push([this.value(kinds >> 4), this.value(kinds & 0x0f)]);
        return items;
      }
      case STRUCT:
        return this.struct();
      default:
        throw new RangeError(`thrift: unknown type ${type}`);
    }
  }
}

/** A value to write: its compact-protocol type travels with it (readers skip a field of the wrong type). */
export interface ThriftOut {
  type: number;
  v: number | Uint8Array | ThriftOut[] | ThriftFields;
}

/** A struct's fields in increasing id order; undefined values are optional fields left out. */
export type ThriftFields = readonly (readonly [id: number, value: ThriftOut | undefined])[];

const utf8 = new TextEncoder();

export const T = {
  byte: (v: number): ThriftOut => ({ type: BYTE, v }),
  i16: (v: number): ThriftOut => ({ type: I16, v }),
  i32: (v: number): ThriftOut => ({ type: I32, v }),
  /** exact up to 2^53, like the reader */
  i64: (v: number): ThriftOut => ({ type: I64, v }),
  bool: (v: boolean): ThriftOut => ({ type: v ? TRUE : FALSE, v: 0 }),
  binary: (v: string | Uint8Array): ThriftOut => ({ type: BINARY, v: typeof v === 'string' ? utf8.encode(v) : v }),
  struct: (fields: ThriftFields): ThriftOut => ({ type: STRUCT, v: fields }),
  /** items all of one type (not booleans) */
  list: (items: ThriftOut[]): ThriftOut => ({ type: LIST, v: items }),
};

/** Append unsigned LEB128 `n` (exact up to 2^53) to `out`: Thrift's varints, and Parquet's own. */
export function varint(out: number[], n: number): void {
  for (; n >= 0x80; n = Math.floor(n / 128)) out.push((n % 128) | 0x80);
  out.push(n);
}

export function encodeThrift(fields: ThriftFields): Uint8Array {
  const out: number[] = [];
  const zigzag = (n: number): void => varint(out, n >= 0 ? 2 * n : -2 * n - 1);
  const value = (x: ThriftOut): void => {
    switch (x.type) {
      case BYTE: out.push((x.v as number) & 0xff); break;
      case I16: case I32: case I64: zigzag(x.v as number); break;
      case BINARY: varint(out, (x.v as Uint8Array).length); for (const b of x.v as Uint8Array) out.push(b); break;
      case STRUCT: struct(x.v as ThriftFields); break;
      case LIST: {
        const items = x.v as ThriftOut[];
        const type = items.length > 0 ? items[0].type : STRUCT;
        if (type === TRUE || type === FALSE) throw new Error('thrift: lists of booleans are not written');
        if (items.length < 15) out.push((items.length << 4) | type);
        else { out.push(0xf0 | type); varint(out, items.length); }
        items.forEach(value);
        break;
      }
      default: throw new Error(`thrift: cannot write type ${x.type}`);
    }
  };
  const struct = (fs: ThriftFields): void => {
    let last = 0;
    for (const [id, x] of fs) {
      if (x === undefined) continue;
      if (id > last && id - last <= 15) out.push(((id - last) << 4) | x.type);
      else { out.push(x.type); zigzag(id); }
      last = id;
      if (x.type !== TRUE && x.type !== FALSE) value(x);
    }
    out.push(STOP);
  };
  struct(fields);
  return Uint8Array.from(out);
}
