/**
 * One fuzz target of test/reliability-fuzz.test.ts, run on a worker thread so that the test can stop
 * it when a case hangs (a synchronous loop cannot be timed out from the same thread). Before every
 * case it posts what it is about to try; at the end the number of runs and the peak RSS.
 *
 * The property is the same for every reader: on a damaged or hostile file it either returns data
 * that is right (checked against the file itself or the original), or throws a UserError, which the
 * CLIs print as one line. Any other exception, a hang, or a large allocation is a failure.
 */
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { parentPort, workerData } from 'node:worker_threads';
import { gzipSync } from 'node:zlib';
import fc from 'fast-check';
import { readIdx } from '../../src/data/idx.js';
import { encodeNpy, openNpy, parseNpyHeader, readNpyLabels } from '../../src/data/npy.js';
import { openTable } from '../../src/data/table.js';
import { summarizeOnnx } from '../../src/precompute/onnx-proto.js';
import { CONFIG_ID_FIELDS, canonicalJson, finalizeCache, readConfig, readManifest, readSidecars, shardRelPath, verifyCache } from '../../src/shards/manifest.js';
import type { Manifest } from '../../src/shards/manifest-types.js';
import { decodeShardWithMeta, readShardFile, readShardMeta } from '../../src/shards/reader.js';
import { encodeShard } from '../../src/shards/writer.js';
import { DTYPE_BYTES, type DType, allocTyped, product } from '../../src/util/dtype.js';
import { UserError } from '../../src/util/errors.js';
import { sha256Hex } from '../../src/util/fsx.js';
import { writeFakeCache } from './cache.js';
import { assertColumnsEqual, randomShardColumns } from './shard-columns.js';

export type Target = 'npy' | 'idx' | 'json' | 'shard-parquet' | 'shard-arrow' | 'onnx' | 'regressions';
export interface FuzzJob { target: Target; seed: number; runs: number; dir: string; fixtures: string }
export type FuzzMessage =
  | { type: 'case'; n: number; what: string }
  | { type: 'done'; runs: number; peakRssMiB: number; userErrors: number; accepted: number }
  | { type: 'fail'; message: string };

const job = workerData as FuzzJob;
const post = (m: FuzzMessage) => parentPort!.postMessage(m);
let n = 0;
let userErrors = 0;
let accepted = 0;
let peakRss = 0;
/** A reader may allocate what the file holds and a little more; a lying header must not buy more. */
const RSS_GROWTH_LIMIT = 256 << 20;
let baseRss = 0;

function announce(what: string): void {
  post({ type: 'case', n: ++n, what: what.slice(0, 300) });
}

/** Run `fn`; a UserError counts as a clean refusal, anything else fails the property. */
async function refusesOrReturns<T>(fn: () => Promise<T> | T): Promise<T | undefined> {
  try {
    const v = await fn();
    return v;
  } catch (err) {
    if (err instanceof UserError) {
      assert.ok(!err.message.includes('\n'), `multi-line UserError: ${err.message}`);
      userErrors++;
      return undefined;
    }
    throw err;
  }
}

function checkMemory(): void {
  const rss = process.memoryUsage().rss;
  peakRss = Math.max(peakRss, rss);
  assert.ok(rss - baseRss < RSS_GROWTH_LIMIT, `RSS grew by ${((rss - baseRss) / 2 ** 20).toFixed(0)} MiB`);
}

// ---- byte-level mutations, shared by every target ----

type Mutation =
  | { op: 'flip'; at: number; value: number }
  | { op: 'truncate'; at: number }
  | { op: 'append'; bytes: Uint8Array }
  | { op: 'insert'; at: number; bytes: Uint8Array }
  | { op: 'delete'; at: number; len: number }
  | { op: 'zero'; at: number; len: number }
  | { op: 'tail-flip'; back: number; value: number };

const frac = fc.double({ min: 0, max: 1, noNaN: true, maxExcluded: true });
const mutation: fc.Arbitrary<Mutation> = fc.oneof(
  { weight: 4, arbitrary: fc.record({ op: fc.constant('flip' as const), at: frac, value: fc.integer({ min: 1, max: 255 }) }) },
  { weight: 2, arbitrary: fc.record({ op: fc.constant('truncate' as const), at: frac }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('append' as const), bytes: fc.uint8Array({ minLength: 1, maxLength: 64 }) }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('insert' as const), at: frac, bytes: fc.uint8Array({ minLength: 1, maxLength: 16 }) }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('delete' as const), at: frac, len: fc.integer({ min: 1, max: 64 }) }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('zero' as const), at: frac, len: fc.integer({ min: 1, max: 64 }) }) },
  // Footers and headers hold the sizes and offsets readers trust: aim there too.
  { weight: 3, arbitrary: fc.record({ op: fc.constant('tail-flip' as const), back: fc.integer({ min: 1, max: 600 }), value: fc.integer({ min: 1, max: 255 }) }) },
);

function mutate(bytes: Uint8Array, ms: readonly Mutation[]): Uint8Array {
  let b = Buffer.from(bytes);
  for (const m of ms) {
    const at = (f: number) => Math.floor(f * Math.max(b.length, 1));
    switch (m.op) {
      case 'flip': if (b.length) b[at(m.at)] ^= m.value; break;
      case 'truncate': b = b.subarray(0, at(m.at)); break;
      case 'append': b = Buffer.concat([b, m.bytes]); break;
      case 'insert': b = Buffer.concat([b.subarray(0, at(m.at)), m.bytes, b.subarray(at(m.at))]); break;
      case 'delete': b = Buffer.concat([b.subarray(0, at(m.at)), b.subarray(at(m.at) + m.len)]); break;
      case 'zero': b.fill(0, Math.min(at(m.at), b.length), Math.min(at(m.at) + m.len, b.length)); break;
      case 'tail-flip': if (b.length) b[Math.max(0, b.length - m.back)] ^= m.value; break;
    }
  }
  return new Uint8Array(b);
}

const describe = (ms: readonly Mutation[]) => ms.map((m) => JSON.stringify(m, (_k, v) => (v instanceof Uint8Array ? `bytes(${v.length})` : v))).join(' ');
let fileNo = 0;
const scratch = (ext: string) => path.join(job.dir, `case-${fileNo++ % 8}${ext}`);

// ---- .npy ----

const NPY_DTYPES: DType[] = ['float32', 'float64', 'uint8', 'int8', 'int16', 'uint16', 'int32', 'uint32', 'int64'];
/** Header values chosen to lie: huge, negative, fractional, absurd dimension counts. */
const lyingDim = fc.oneof(
  fc.integer({ min: 0, max: 40 }),
  fc.constantFrom(2 ** 31, 2 ** 32 + 1, 2 ** 53, 2 ** 53 + 2, 1e20, -1, -(2 ** 31)),
  fc.integer(),
);
const npyHeaderEdit = fc.oneof(
  fc.record({ kind: fc.constant('shape' as const), dims: fc.array(lyingDim, { maxLength: 6 }), text: fc.constantFrom('', 'L', ' ', '.0') }),
  fc.record({ kind: fc.constant('descr' as const), value: fc.constantFrom('<f4', '>f4', '<f2', '<c8', '|O', '<U10', 'V8', '', "<f4', 'x", '<f8', '|u1', '<i8', '>i4', '|b1', 'xyz', '<M8[s]') }),
  fc.record({ kind: fc.constant('fortran' as const), value: fc.constantFrom('True', 'False', 'maybe', '1', '') }),
  fc.record({ kind: fc.constant('text' as const), value: fc.string({ maxLength: 120 }) }),
  fc.record({ kind: fc.constant('headerLen' as const), value: fc.integer({ min: 0, max: 0xffff }) }),
  fc.record({ kind: fc.constant('version' as const), value: fc.integer({ min: 0, max: 255 }) }),
);

type NpyEdit = typeof npyHeaderEdit extends fc.Arbitrary<infer T> ? T : never;

function npyWithHeader(base: Uint8Array, edit: NpyEdit): Uint8Array {
  const headerLen = new DataView(base.buffer, base.byteOffset).getUint16(8, true);
  let text = Buffer.from(base.subarray(10, 10 + headerLen)).toString('latin1');
  const body = base.subarray(10 + headerLen);
  const out = Buffer.from(base);
  switch (edit.kind) {
    case 'shape': text = text.replace(/'shape': \([^)]*\)/, `'shape': (${(edit.dims as number[]).map((d) => `${d}${edit.text}`).join(', ')}${edit.dims.length === 1 ? ',' : ''})`); break;
    case 'descr': text = text.replace(/'descr': '[^']*'/, `'descr': '${edit.value}'`); break;
    case 'fortran': text = text.replace(/'fortran_order': \w+/, `'fortran_order': ${edit.value}`); break;
    case 'text': text = edit.value; break;
    case 'headerLen': out.writeUInt16LE(edit.value, 8); return new Uint8Array(out);
    case 'version': out[6] = edit.value; return new Uint8Array(out);
  }
  const head = Buffer.alloc(10);
  Buffer.from(base.subarray(0, 8)).copy(head);
  head.writeUInt16LE(Buffer.byteLength(text, 'latin1') & 0xffff, 8);
  return new Uint8Array(Buffer.concat([head, Buffer.from(text, 'latin1'), body]));
}

async function npyProperty(): Promise<void> {
  const base = fc.record({
    dtype: fc.constantFrom(...NPY_DTYPES),
    shape: fc.tuple(fc.integer({ min: 1, max: 12 }), fc.array(fc.integer({ min: 1, max: 6 }), { maxLength: 2 })).map(([a, rest]) => [a, ...rest]),
    seed: fc.nat(),
  });
  await fc.assert(fc.asyncProperty(base, fc.option(npyHeaderEdit, { nil: undefined }), fc.array(mutation, { maxLength: 3 }), async (b, edit, ms) => {
    announce(`npy ${b.dtype} [${b.shape}] header ${JSON.stringify(edit)} ${describe(ms)}`);
    const data = allocTyped(b.dtype, product(b.shape));
    const raw = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
    for (let i = 0; i < raw.length; i++) raw[i] = (b.seed + i * 131) & 0xff;
    let bytes = encodeNpy(data, b.dtype, b.shape);
    if (edit) bytes = npyWithHeader(bytes, edit);
    bytes = mutate(bytes, ms);
    const file = scratch('.npy');
    fs.writeFileSync(file, bytes);
    const ds = await refusesOrReturns(() => openNpy(file));
    if (ds) {
      try {
        // Accepted: the header must describe bytes the file really has, and reads return them.
        const h = parseNpyHeader(bytes.subarray(0, 65536 + 12), file, bytes.length);
        const rowBytes = product(ds.exampleShape) * DTYPE_BYTES[ds.dtype];
        assert.ok(h.dataOffset + ds.count * rowBytes <= bytes.length, 'declared data past the end of the file');
        if (ds.count > 0) {
          const all = await ds.read(0, ds.count);
          const got = Buffer.from(all.buffer, all.byteOffset, all.byteLength);
          assert.ok(got.equals(Buffer.from(bytes.subarray(h.dataOffset, h.dataOffset + ds.count * rowBytes))), 'read data differs from the file');
        }
        accepted++;
      } finally {
        await ds.close();
      }
    }
    await refusesOrReturns(() => readNpyLabels(file));
    checkMemory();
  }), { seed: job.seed, numRuns: job.runs, endOnFailure: true });
}

// ---- IDX ----

const IDX_TYPES: Record<number, DType> = { 0x08: 'uint8', 0x09: 'int8', 0x0b: 'int16', 0x0c: 'int32', 0x0d: 'float32', 0x0e: 'float64' };

function idxBytes(type: number, shape: number[], seed: number): Uint8Array {
  const size = DTYPE_BYTES[IDX_TYPES[type]];
  const head = Buffer.alloc(4 + 4 * shape.length);
  head[2] = type;
  head[3] = shape.length;
  shape.forEach((d, i) => head.writeUInt32BE(d >>> 0, 4 + 4 * i));
  const body = Buffer.alloc(product(shape) * size);
  for (let i = 0; i < body.length; i++) body[i] = (seed + i * 97) & 0xff;
  return new Uint8Array(Buffer.concat([head, body]));
}

/** The reference decoder: big-endian values of the declared type, from the plain bytes. */
function decodeIdxBody(plain: Uint8Array, dtype: DType, offset: number, count: number): number[] {
  const v = new DataView(plain.buffer, plain.byteOffset, plain.byteLength);
  const out: number[] = [];
  for (let i = 0; i < count; i++) {
    const o = offset + i * DTYPE_BYTES[dtype];
    out.push(dtype === 'uint8' ? v.getUint8(o) : dtype === 'int8' ? v.getInt8(o) : dtype === 'int16' ? v.getInt16(o) : dtype === 'int32' ? v.getInt32(o) : dtype === 'float32' ? v.getFloat32(o) : v.getFloat64(o));
  }
  return out;
}

async function idxProperty(): Promise<void> {
  const base = fc.record({
    type: fc.constantFrom(0x08, 0x09, 0x0b, 0x0c, 0x0d, 0x0e),
    shape: fc.array(fc.integer({ min: 1, max: 7 }), { minLength: 1, maxLength: 3 }),
    seed: fc.nat(),
    gzip: fc.boolean(),
    // a lie in the header: one dimension replaced (huge, zero, random)
    lie: fc.option(fc.record({ dim: fc.nat(3), value: fc.oneof(fc.constantFrom(0, 0xffffffff, 0x7fffffff, 1 << 20), fc.nat()) }), { nil: undefined }),
    ndimByte: fc.option(fc.integer({ min: 0, max: 255 }), { nil: undefined }),
    typeByte: fc.option(fc.integer({ min: 0, max: 255 }), { nil: undefined }),
    // mutations before compression (a damaged IDX) and after (a damaged .gz)
    plainMs: fc.array(mutation, { maxLength: 2 }),
    gzMs: fc.array(mutation, { maxLength: 2 }),
  });
  await fc.assert(fc.asyncProperty(base, async (b) => {
    announce(`idx ${JSON.stringify({ ...b, plainMs: describe(b.plainMs), gzMs: describe(b.gzMs) })}`);
    let plain = idxBytes(b.type, b.shape, b.seed);
    const hv = Buffer.from(plain);
    if (b.lie && b.lie.dim < b.shape.length) hv.writeUInt32BE(b.lie.value >>> 0, 4 + 4 * b.lie.dim);
    if (b.ndimByte !== undefined) hv[3] = b.ndimByte;
    if (b.typeByte !== undefined) hv[2] = b.typeByte;
    plain = mutate(new Uint8Array(hv), b.plainMs);
    const bytes = b.gzip ? mutate(gzipSync(plain), b.gzMs) : plain;
    const file = scratch(b.gzip ? '.idx3-ubyte.gz' : '.idx3-ubyte');
    fs.writeFileSync(file, bytes);
    const r = await refusesOrReturns(() => readIdx(file));
    if (r) {
      const count = product(r.header.shape);
      assert.equal(r.data.length, count, 'data length differs from the declared shape');
      // When the gzip stream was not damaged, the values are exactly the file's.
      if (!b.gzip || b.gzMs.length === 0) {
        assert.deepEqual(Array.from(r.data as Float64Array, Number), decodeIdxBody(plain, r.header.dtype, r.header.dataOffset, count));
      }
      accepted++;
    }
    checkMemory();
  }), { seed: job.seed, numRuns: job.runs, endOnFailure: true });
}

// ---- manifest.json, config.json, sidecars ----

type Json = null | boolean | number | string | Json[] | { [k: string]: Json };
const hostileValue: fc.Arbitrary<Json> = fc.oneof(
  fc.constantFrom<Json>(-1, 0, 1, 1.5, 1e308, -1e308, 2 ** 53, 2 ** 31, '', '../outside.parquet', '/etc/passwd', 'shards/../../x',
    'shards/shard-00000.parquet', 'shards\\shard-00000.parquet', '__proto__', 'a'.repeat(64), 'f'.repeat(64), [], {}, null, true, false,
    [[[[[[]]]]]], { __proto__: { complete: true } } as unknown as Json),
  fc.jsonValue({ maxDepth: 2 }) as fc.Arbitrary<Json>,
);
type JsonEdit = { path: number[]; how: 'set'; value: Json } | { path: number[]; how: 'delete' } | { path: number[]; how: 'dup' } | { how: 'truncate'; at: number } | { how: 'chars'; at: number; text: string };
const jsonEdit: fc.Arbitrary<JsonEdit> = fc.oneof(
  { weight: 6, arbitrary: fc.record({ path: fc.array(fc.nat(), { minLength: 1, maxLength: 5 }), how: fc.constant('set' as const), value: hostileValue }) },
  { weight: 2, arbitrary: fc.record({ path: fc.array(fc.nat(), { minLength: 1, maxLength: 5 }), how: fc.constant('delete' as const) }) },
  { weight: 1, arbitrary: fc.record({ path: fc.array(fc.nat(), { minLength: 1, maxLength: 4 }), how: fc.constant('dup' as const) }) },
  { weight: 1, arbitrary: fc.record({ how: fc.constant('truncate' as const), at: frac }) },
  { weight: 1, arbitrary: fc.record({ how: fc.constant('chars' as const), at: frac, text: fc.string({ minLength: 1, maxLength: 4 }) }) },
);

/** Follow `path` (indexes into the keys of each object or array) and edit what it reaches. */
function editJson(text: string, e: JsonEdit): { text: string; where: string } {
  if (e.how === 'truncate') return { text: text.slice(0, Math.floor(e.at * text.length)), where: 'truncated' };
  if (e.how === 'chars') {
    const at = Math.floor(e.at * text.length);
    return { text: text.slice(0, at) + e.text + text.slice(at + e.text.length), where: `chars at ${at}` };
  }
  const root = JSON.parse(text) as Json;
  let parent: any = null;
  let key: string | number = '';
  let node: any = root;
  const names: string[] = [];
  for (const step of e.path) {
    if (node === null || typeof node !== 'object') break;
    const keys = Array.isArray(node) ? node.map((_: unknown, i: number) => i) : Object.keys(node);
    if (keys.length === 0) break;
    parent = node;
    key = keys[step % keys.length];
    node = node[key];
    names.push(String(key));
  }
  if (parent === null) return { text, where: '(nothing)' };
  if (e.how === 'set') Object.defineProperty(parent, key, { value: e.value, enumerable: true, writable: true, configurable: true });
  else if (e.how === 'delete') { if (Array.isArray(parent)) parent.splice(Number(key), 1); else delete parent[key]; }
  else if (Array.isArray(parent)) parent.splice(Number(key), 0, structuredClone(parent[Number(key)]));
  return { text: JSON.stringify(root, null, 2), where: names.join('.') };
}

async function jsonProperty(): Promise<void> {
  // A real cache made by the real writer, copied for every case.
  const template = path.join(job.dir, 'template');
  const cache = await writeFakeCache(template, { rows: 25, width: 3, shardRows: 10, label: true });
  const original = cache.manifest!;
  const idFields = (m: Manifest) => canonicalJson(Object.fromEntries(CONFIG_ID_FIELDS.map((k) => [k, m[k]])));
  const files = ['manifest.json', 'config.json', 'shards/shard-00001.json', 'shards/shard-00002.json'];
  await fc.assert(fc.asyncProperty(fc.constantFrom(...files), fc.array(jsonEdit, { minLength: 1, maxLength: 3 }), async (file, edits) => {
    announce(`json ${file} ${JSON.stringify(edits)}`);
    const dir = path.join(job.dir, 'cache');
    fs.rmSync(dir, { recursive: true, force: true });
    fs.cpSync(template, dir, { recursive: true });
    let text = fs.readFileSync(path.join(dir, file), 'utf8');
    for (const e of edits) {
      try {
        text = editJson(text, e).text;
      } catch {
        text = editJson(text, { how: 'chars', at: 0.5, text: '#' }).text; // earlier edit left no JSON to walk
      }
    }
    fs.writeFileSync(path.join(dir, file), text);
    if (file !== 'manifest.json') fs.rmSync(path.join(dir, 'manifest.json'));
    // Finalizing from damaged sidecars or config must refuse or write a manifest that verifies.
    await refusesOrReturns(() => readConfig(dir));
    const fin = await refusesOrReturns(() => finalizeCache(dir));
    if (fin) await refusesOrReturns(async () => readSidecars(dir, await readConfig(dir)));
    await refusesOrReturns(() => readManifest(dir));
    const report = await refusesOrReturns(() => verifyCache(dir, { checksums: true }));
    if (report?.ok) {
      // verify accepting a cache means training on it is training on the original targets.
      const m = report.manifest!;
      assert.equal(idFields(m), idFields(original), 'verify accepted a manifest describing another configuration');
      assert.equal(m.shards.length, original.shards.length);
      for (const [i, rec] of m.shards.entries()) {
        assert.equal(rec.file, shardRelPath(i, m.storage.format), `verify accepted a record naming ${rec.file}`);
        assertColumnsEqual(await readShardFile(dir, rec, m.storage.format, { expectConfigId: m.config_id }), cache.columns[i]);
      }
      accepted++;
    }
    checkMemory();
  }), { seed: job.seed, numRuns: job.runs, endOnFailure: true });
}

// ---- shards (and the same files as Parquet/Arrow input data) ----

async function shardProperty(format: 'parquet' | 'arrow'): Promise<void> {
  const configId = 'c'.repeat(64);
  const variants = [
    randomShardColumns({ rows: 40, width: 10, firstRow: 80, seed: 3, label: true }),
    randomShardColumns({ rows: 7, width: 3, firstRow: 0, seed: 4, logitsDtype: 'float16', input: { dtype: 'uint8', width: 5 } }),
  ];
  const encoded = variants.map((cols) => encodeShard(cols, { format, compression: 'zstd', logits_dtype: cols.logitsDtype }, { config_id: configId, first_row: Number(cols.row[0]), shard_index: Number(cols.row[0]) / 40 }));
  await fc.assert(fc.asyncProperty(fc.nat(variants.length - 1), fc.array(mutation, { minLength: 1, maxLength: 4 }), async (v, ms) => {
    announce(`${format} shard variant ${v} ${describe(ms)}`);
    const bytes = mutate(encoded[v], ms);
    const rel = shardRelPath(v === 0 ? 2 : 0, format);
    const dir = path.join(job.dir, 'cache');
    fs.mkdirSync(path.join(dir, 'shards'), { recursive: true });
    fs.writeFileSync(path.join(dir, rel), bytes);
    const cols = variants[v];
    const record = { file: rel, index: v === 0 ? 2 : 0, first_row: Number(cols.row[0]), rows: cols.rows, bytes: encoded[v].length, sha256: sha256Hex(encoded[v]), nonfinite_rows: 0 };
    // Through the checksum: the original data or a refusal.
    const read = await refusesOrReturns(() => readShardFile(dir, record, format, { expectConfigId: configId }));
    if (read) assertColumnsEqual(read, cols);
    // Without it (what --no-checksums and decoders see): structurally sound columns or a refusal.
    const decoded = await refusesOrReturns(() => decodeShardWithMeta(bytes, format, rel));
    if (decoded) {
      const c = decoded.cols;
      assert.equal(c.row.length, c.rows);
      assert.equal(c.logits.length, c.rows * c.logitsWidth);
      if (c.label) assert.equal(c.label.length, c.rows);
      if (c.input) assert.equal(c.input.length, c.rows * c.inputWidth!);
      accepted++;
    }
    await refusesOrReturns(() => readShardMeta(path.join(dir, rel), format, rel));
    const ds = await refusesOrReturns(() => openTable(path.join(dir, rel), 'logits', format));
    if (ds) {
      assert.equal((await ds.read(0, ds.count)).length, ds.count * product(ds.exampleShape));
      await ds.close();
    }
    checkMemory();
  }), { seed: job.seed, numRuns: job.runs, endOnFailure: true });
}

// ---- ONNX summary (the external-data guard's parser) ----

async function onnxProperty(): Promise<void> {
  const models = ['mlp16.onnx', 'external_escape.onnx', 'sparse_escape.onnx', 'external_ok.onnx', 'two_io.onnx'].map((f) => new Uint8Array(fs.readFileSync(path.join(job.fixtures, f))));
  await fc.assert(fc.asyncProperty(fc.nat(models.length - 1), fc.array(mutation, { minLength: 1, maxLength: 4 }), async (i, ms) => {
    announce(`onnx model ${i} ${describe(ms)}`);
    // Never throws: a model it cannot parse is "not an ONNX model" (null), never a crash.
    const s = summarizeOnnx(mutate(models[i], ms));
    if (s) {
      assert.ok(Array.isArray(s.externalLocations));
      accepted++;
    } else userErrors++;
    checkMemory();
  }), { seed: job.seed, numRuns: job.runs, endOnFailure: true });
}

// ---- the cases fuzzing found, kept as fixed regressions (a hang shows as no progress) ----

async function regressions(): Promise<void> {
  const variants = {
    wide: randomShardColumns({ rows: 40, width: 10, firstRow: 80, seed: 3, label: true }),
    half: randomShardColumns({ rows: 7, width: 3, firstRow: 0, seed: 4, logitsDtype: 'float16', input: { dtype: 'uint8', width: 5 } }),
  };
  const encode = (v: keyof typeof variants, format: 'parquet' | 'arrow') => {
    const cols = variants[v];
    return encodeShard(cols, { format, compression: 'zstd', logits_dtype: cols.logitsDtype }, { config_id: 'c'.repeat(64), first_row: Number(cols.row[0]), shard_index: Number(cols.row[0]) / 40 });
  };
  const cases: [string, keyof typeof variants, 'parquet' | 'arrow', Mutation[]][] = [
    ['arrow schema claiming ~2^28 fields: decoded for seconds to hours', 'wide', 'arrow', [{ op: 'tail-flip', back: 470, value: 234 }]],
    ['arrow footer block pointing at the schema message: endless loop', 'half', 'arrow', [{ op: 'flip', at: 0.04825605189861685, value: 247 }]],
    ['arrow record batch declaring more rows than its buffers hold', 'wide', 'arrow', [{ op: 'tail-flip', back: 242, value: 37 }]],
    ['arrow column shorter than the declared rows (float16 shard)', 'half', 'arrow', [{ op: 'tail-flip', back: 80, value: 108 }]],
    ['arrow column names turned into binary garbage: one-line message', 'wide', 'arrow', [{ op: 'tail-flip', back: 210, value: 220 }]],
    ['parquet footer byte flip: uncatchable panic in ParquetFile.fromFile', 'wide', 'parquet', [{ op: 'tail-flip', back: 76, value: 1 }]],
  ];
  const dir = path.join(job.dir, 'regressions');
  fs.mkdirSync(dir, { recursive: true });
  for (const [name, v, format, ms] of cases) {
    announce(name);
    const started = performance.now();
    const bytes = mutate(encode(v, format), ms);
    const file = path.join(dir, `shard.${format}`);
    fs.writeFileSync(file, bytes);
    const before = userErrors;
    const decoded = await refusesOrReturns(() => decodeShardWithMeta(bytes, format, 'shard'));
    const meta = await refusesOrReturns(() => readShardMeta(file, format, 'shard'));
    const table = await refusesOrReturns(async () => {
      const ds = await openTable(file, 'logits', format);
      try {
        assert.equal((await ds.read(0, ds.count)).length, ds.count * product(ds.exampleShape));
      } finally {
        await ds.close();
      }
    });
    // Each of these files must be refused by some reader, and by the one that misbehaved.
    assert.ok(userErrors > before, `${name}: accepted everywhere (decode ${Boolean(decoded)}, meta ${Boolean(meta)}, table ${table !== undefined})`);
    if (format === 'arrow') assert.equal(decoded, undefined, `${name}: decoded`);
    else assert.equal(meta, undefined, `${name}: footer read`);
    // Small files: refusing them takes milliseconds; seconds mean a loop driven by a lying length.
    assert.ok(performance.now() - started < 2000, `${name}: took ${Math.round(performance.now() - started)} ms`);
  }
}

async function main(): Promise<void> {
  fs.mkdirSync(job.dir, { recursive: true });
  baseRss = process.memoryUsage().rss;
  try {
    switch (job.target) {
      case 'npy': await npyProperty(); break;
      case 'idx': await idxProperty(); break;
      case 'json': await jsonProperty(); break;
      case 'shard-parquet': await shardProperty('parquet'); break;
      case 'shard-arrow': await shardProperty('arrow'); break;
      case 'onnx': await onnxProperty(); break;
      case 'regressions': await regressions(); break;
    }
    post({ type: 'done', runs: n, peakRssMiB: Math.round(peakRss / 2 ** 20), userErrors, accepted });
  } catch (err) {
    const cause = (err as { cause?: Error }).cause;
    post({ type: 'fail', message: `${String((err as Error)?.message ?? err).slice(0, 3000)}\ncaused by: ${String(cause?.stack ?? cause).slice(0, 3000)}` });
  }
}

await main();
