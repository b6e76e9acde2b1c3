/**
 * Just enough of the ONNX protobuf to read what the runtime does not expose: opset, producer, and
 * every external-data location (so a model cannot make us read files outside its directory).
 * Initializer payloads are skipped, never copied.
 */
import { varint } from '../shards/thrift-compact.js';

export interface OnnxSummary {
  irVersion: number;
  producer: string | null;
  opset: number | null;
  externalLocations: string[];
}

class ProtoError extends Error {}

class Reader {
  pos: number;
  constructor(readonly buf: Uint8Array, start: number, readonly end: number) {
    this.pos = start;
  }
  varint(): number {
    let result = 0;
    let shift = 0;
    for (;;) {
      if (this.pos >= this.end) throw new ProtoError('truncated varint');
      const b = this.buf[this.pos++];
      if (shift < 49) result += (b & 0x7f) * 2 ** shift;
      if (!(b & 0x80)) return result;
      shift += 7;
      if (shift > 63) throw new ProtoError('varint too long');
    }
  }
  /** returns [fieldNumber, wireType] */
  tag(): [number, number] {
    const t = this.varint();
    return [Math.floor(t / 8), t & 7];
  }
  lengthDelimited(): [number, number] {
    const len = this.varint();
    const start = this.pos;
    if (len > this.end - start) throw new ProtoError('length past end of message');
    this.pos += len;
    return [start, start + len];
  }
  skip(wire: number): void {
    switch (wire) {
      case 0: this.varint(); return;
      case 1: this.advance(8); return;
      case 2: this.lengthDelimited(); return;
      case 5: this.advance(4); return;
      default: throw new ProtoError(`bad wire type ${wire}`);
    }
  }
  private advance(n: number): void {
    if (this.pos + n > this.end) throw new ProtoError('truncated field');
    this.pos += n;
  }
}

const utf8 = new TextDecoder();

/** Parse a ModelProto summary; returns null when the bytes are not a protobuf ModelProto at all. */
export function summarizeOnnx(buf: Uint8Array): OnnxSummary | null {
  const out: OnnxSummary = { irVersion: 0, producer: null, opset: null, externalLocations: [] };
  let sawGraph = false;
  try {
    const r = new Reader(buf, 0, buf.length);
    while (r.pos < r.end) {
      const [field, wire] = r.tag();
      if (field === 1 && wire === 0) out.irVersion = r.varint();
      else if (field === 2 && wire === 2) {
        const [s, e] = r.lengthDelimited();
        out.producer = utf8.decode(buf.subarray(s, e));
      } else if (field === 3 && wire === 2) {
        const [s, e] = r.lengthDelimited();
        out.producer = `${out.producer ?? ''} ${utf8.decode(buf.subarray(s, e))}`.trim();
      } else if (field === 7 && wire === 2) {
        const [s, e] = r.lengthDelimited();
        sawGraph = true;
        scanGraph(buf, s, e, out.externalLocations, 0);
      } else if (field === 8 && wire === 2) {
        const [s, e] = r.lengthDelimited();
        const { domain, version } = opsetEntry(buf, s, e);
        if (domain === '' || domain === 'ai.onnx') out.opset = version;
      } else r.skip(wire);
    }
  } catch (err) {
    if (err instanceof ProtoError) return null;
    throw err;
  }
  return sawGraph && out.irVersion > 0 ? out : null;
}

function opsetEntry(buf: Uint8Array, start: number, end: number): { domain: string; version: number } {
  const r = new Reader(buf, start, end);
  let domain = '';
  let version = 0;
  while (r.pos < r.end) {
    const [field, wire] = r.tag();
    if (field === 1 && wire === 2) {
      const [s, e] = r.lengthDelimited();
      domain = utf8.decode(buf.subarray(s, e));
    } else if (field === 2 && wire === 0) version = r.varint();
    else r.skip(wire);
  }
  return { domain, version };
}

// GraphProto: node=1, initializer=5, sparse_initializer=15. NodeProto: attribute=5.
// AttributeProto: t=5, g=6, tensors=10, graphs=11, sparse_tensor=22, sparse_tensors=23.
// SparseTensorProto: values=1, indices=2 (both TensorProtos). TensorProto: external_data=13.
function scanGraph(buf: Uint8Array, start: number, end: number, locs: string[], depth: number): void {
  if (depth > 32) throw new ProtoError('graph nesting too deep');
  const r = new Reader(buf, start, end);
  while (r.pos < r.end) {
    const [field, wire] = r.tag();
    if (wire !== 2) { r.skip(wire); continue; }
    const [s, e] = r.lengthDelimited();
    if (field === 5) scanTensor(buf, s, e, locs);
    else if (field === 15) scanSparse(buf, s, e, locs);
    else if (field === 1) scanNode(buf, s, e, locs, depth);
  }
}

/** Sparse tensors keep their values and indices in TensorProtos, which may be external too. */
function scanSparse(buf: Uint8Array, start: number, end: number, locs: string[]): void {
  const r = new Reader(buf, start, end);
  while (r.pos < r.end) {
    const [field, wire] = r.tag();
    if (wire !== 2) { r.skip(wire); continue; }
    const [s, e] = r.lengthDelimited();
    if (field === 1 || field === 2) scanTensor(buf, s, e, locs);
  }
}

function scanNode(buf: Uint8Array, start: number, end: number, locs: string[], depth: number): void {
  const r = new Reader(buf, start, end);
  while (r.pos < r.end) {
    const [field, wire] = r.tag();
    if (field === 5 && wire === 2) {
      const [s, e] = r.lengthDelimited();
      const a = new Reader(buf, s, e);
      while (a.pos < a.end) {
        const [af, aw] = a.tag();
        if (aw !== 2) { a.skip(aw); continue; }
        const [as, ae] = a.lengthDelimited();
        if (af === 5 || af === 10) scanTensor(buf, as, ae, locs);
        else if (af === 22 || af === 23) scanSparse(buf, as, ae, locs);
        else if (af === 6 || af === 11) scanGraph(buf, as, ae, locs, depth + 1);
      }
    } else r.skip(wire);
  }
}

function scanTensor(buf: Uint8Array, start: number, end: number, locs: string[]): void {
  const r = new Reader(buf, start, end);
  while (r.pos < r.end) {
    const [field, wire] = r.tag();
    if (field === 13 && wire === 2) {
      const [s, e] = r.lengthDelimited();
      const kv = new Reader(buf, s, e);
      let key = '';
      let value = '';
      while (kv.pos < kv.end) {
        const [kf, kw] = kv.tag();
        if (kw !== 2) { kv.skip(kw); continue; }
        const [ks, ke] = kv.lengthDelimited();
        if (kf === 1) key = utf8.decode(buf.subarray(ks, ke));
        else if (kf === 2) value = utf8.decode(buf.subarray(ks, ke));
      }
      if (key === 'location') locs.push(value);
    } else r.skip(wire);
  }
}

/**
 * A complete model of one node, y = Relu(x) with x float32 [n], encoded by hand (ir 8, opset 13):
 * enough for ONNX Runtime to load an execution provider and run a kernel on it.
 */
export function oneNodeModel(n: number): Uint8Array {
  // Protobuf's varints are the ULEB128 of Thrift's compact protocol.
  const uleb = (v: number): number[] => {
    const out: number[] = [];
    varint(out, v);
    return out;
  };
  const int = (field: number, v: number): number[] => [...uleb(field << 3), ...uleb(v)];
  const bytes = (field: number, b: number[]): number[] => [...uleb((field << 3) | 2), ...uleb(b.length), ...b];
  const str = (field: number, s: string): number[] => bytes(field, [...new TextEncoder().encode(s)]);
  // ValueInfoProto{name, type: TypeProto{tensor_type{elem_type FLOAT, shape{dim{dim_value n}}}}}
  const value = (name: string): number[] => [...str(1, name), ...bytes(2, bytes(1, [...int(1, 1), ...bytes(2, bytes(1, int(1, n)))]))];
  const graph = [...bytes(1, [...str(1, 'x'), ...str(2, 'y'), ...str(4, 'Relu')]), ...str(2, 'cuda-check'), ...bytes(11, value('x')), ...bytes(12, value('y'))];
  return Uint8Array.from([...int(1, 8), ...bytes(8, [...str(1, ''), ...int(2, 13)]), ...bytes(7, graph)]);
}
