/**
 * The training side's view of a logits cache: open and check it before any training starts, and
 * turn its shards into ExampleTables (inputs preprocessed as recorded, teacher logits as float32,
 * labels), joined with the dataset by the `row` column.
 */
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { chwToHwc, pixelAffine, preprocessInto } from '../data/preprocess.js';
import type { Dataset } from '../data/types.js';
import { COL_INPUT, CONFIG_FILE, MANIFEST_FILE, type ShardColumns } from '../shards/format.js';
import type { Manifest, Preprocessing } from '../shards/manifest-types.js';
import { readManifest, verifyCache } from '../shards/manifest.js';
import { readShardFile } from '../shards/reader.js';
import { DTYPE_BYTES, type DType, type TypedArray, halfToFloat, product } from '../util/dtype.js';
import { UserError, describeFsError } from '../util/errors.js';
import { halvesToFloats } from '../util/half.js';
import { ExampleTable } from './examples.js';
import type { PixelRows } from './row-moves.js';
import { type TailMode, denseTeacherRows, sampledTeacherRows } from './sparse-targets.js';
import type { ChunkSource } from './stream.js';
import type { InputLayout } from './students.js';

const REGENERATE = 'rerun precompute-logits with the same arguments to regenerate the cache';

/** Read the manifest of a finished cache; a cache still being written is refused, naming why. */
export async function openCache(cacheDir: string): Promise<Manifest> {
  const stat = await fs.stat(cacheDir).catch((err) => {
    throw describeFsError(err, cacheDir, 'open the logits cache') ?? err;
  });
  if (!stat.isDirectory()) throw new UserError(`--logits ${cacheDir}: not a directory; pass the directory precompute-logits wrote`);
  const has = async (name: string) => fs.access(path.join(cacheDir, name)).then(() => true, () => false);
  if (!(await has(MANIFEST_FILE)) && !(await has(CONFIG_FILE))) {
    throw new UserError(`--logits ${cacheDir}: not a kdcache cache (no ${MANIFEST_FILE}); pass the --out directory of precompute-logits`);
  }
  const manifest = await readManifest(cacheDir); // refuses incomplete or damaged manifests
  if (manifest.storage.layout === 'sequence') {
    throw new UserError(`--logits ${cacheDir}: a sequence cache (one row per position); train-student trains per-example students and cannot use it yet: read it with DuckDB or pyarrow`);
  }
  if (!(manifest.output.width >= 2)) {
    throw new UserError(`--logits ${cacheDir}: the teacher outputs ${manifest.output.width} value(s) per example; distillation needs class logits (width >= 2)`);
  }
  return manifest;
}

/**
 * Every shard present with its recorded size, metadata and (with `checksums`) sha256. Runs before
 * training so that a damaged cache fails in seconds, not hours in. Names the first bad shard.
 */
export async function checkShards(cacheDir: string, opts: { checksums: boolean }): Promise<void> {
  const report = await verifyCache(cacheDir, { checksums: opts.checksums });
  if (report.ok) return;
  const first = report.problems[0];
  const more = report.problems.length > 1 ? ` (and ${report.problems.length - 1} more problem(s): run 'kdcache verify ${cacheDir}' to list them)` : '';
  throw new UserError(`${path.join(cacheDir, first.file)}: ${first.message}${more}`);
}

export function cacheHasInputs(manifest: Manifest): boolean {
  return manifest.storage.columns.some((c) => c.name === COL_INPUT);
}

/** Per-example preprocessing + layout, applied to raw dataset rows of any dtype. */
export interface InputTransform {
  pre: Preprocessing;
  layout: InputLayout;
}

/** Channels-first rows go channels-last (for C = 1 the two layouts are the same bytes). */
function changesLayout(tr: InputTransform): boolean {
  return tr.layout === 'hwc' && tr.pre.input_shape.length === 3 && tr.pre.input_shape[0] > 1;
}

/**
 * Raw dataset rows -> student inputs (float32, preprocessed, laid out for the student). `into`, when
 * it has exactly the right length, receives the result (a recycled chunk buffer) where the layout
 * allows it.
 */
export function transformInputs(raw: TypedArray, dtype: DType, rows: number, tr: InputTransform, into?: Float32Array): Float32Array {
  // float16 data is held as raw bits; preprocessInto expects numbers.
  const src = dtype === 'float16' ? Float32Array.from(raw as Uint16Array, halfToFloat) : raw;
  const hwc = changesLayout(tr);
  const out = !hwc && into?.length === rows * product(tr.pre.input_shape) ? into : undefined;
  const x = preprocessInto(src, rows, tr.pre, out);
  if (hwc) {
    const [c, h, w] = tr.pre.input_shape;
    return chwToHwc(x, rows, c, h, w);
  }
  return x;
}

export interface CacheSourceOptions {
  cacheDir: string;
  manifest: Manifest;
  transform: InputTransform;
  /** the dataset the cache was made from (verified by the caller), or null to use the shards' input column */
  dataset: Dataset | null;
  /** labels for all dataset rows, used when the shards carry none */
  labels: Int32Array | null;
  /** top-k caches: how the unstored classes become part of the teacher rows (default 'ignore') */
  tail?: TailMode;
  /** sampled caches: the training temperature (the rows depend on it) */
  temperature?: number;
}

/**
 * Whether chunks can hold their inputs as pixel rows (ExampleTable.pixels): uint8 data whose
 * transform is only the per-channel affine map, with no change of layout.
 */
export function pixelChunks(manifest: Manifest, tr: InputTransform): boolean {
  return manifest.dataset.dtype === 'uint8' && !changesLayout(tr) && product(manifest.dataset.example_shape) === product(tr.pre.input_shape);
}

/**
 * Shards as chunks: chunk i is shard i. `load` may be given a spent chunk's input array to fill: a
 * Float32Array, or for pixelChunks a Uint8Array that receives the raw rows (the chunk's `pixels`).
 */
export function cacheSource(opts: CacheSourceOptions): ChunkSource & { load(index: number, into?: Float32Array | Uint8Array): Promise<ExampleTable> } {
  const { manifest } = opts;
  const inputWidth = product(opts.transform.pre.input_shape);
  const k = manifest.output.width;
  // Buffers for raw dataset rows, reused from shard to shard (one per load in flight).
  const scratches: ArrayBuffer[] = [];
  const withScratch = async <T>(bytes: number, use: (scratch: ArrayBuffer) => Promise<T>): Promise<T> => {
    let scratch = scratches.pop();
    if (!scratch || scratch.byteLength < bytes) scratch = new ArrayBuffer(bytes);
    try {
      return await use(scratch);
    } finally {
      scratches.push(scratch);
    }
  };
  return {
    chunks: manifest.shards.length,
    inputWidth,
    logitsWidth: k,
    hasTeacher: true,
    async load(index: number, into?: Float32Array | Uint8Array): Promise<ExampleTable> {
      const rec = manifest.shards[index];
      // The sha256 is checked on every read, not only before training: with --skip-checksums this is
      // the only check, and an uncompressed Arrow shard with a flipped byte would otherwise decode
      // into wrong targets. Hashing costs a fraction of decoding.
      const cols = await readShardFile(opts.cacheDir, rec, manifest.storage.format, { expectConfigId: manifest.config_id });
      const where = `${path.join(opts.cacheDir, rec.file)}`;
      if (cols.rows !== rec.rows) throw new UserError(`${where}: holds ${cols.rows} rows, the manifest records ${rec.rows}; ${REGENERATE}`);
      const kind = manifest.storage.kind;
      const stored = kind !== undefined ? manifest.storage.k! : k;
      if (cols.logitsWidth !== stored || Boolean(cols.topkIndices) !== (kind !== undefined) || Boolean(cols.sampleCounts) !== (kind === 'sample')) {
        throw new UserError(`${where}: logits have ${cols.logitsWidth} values per row, the manifest records ${stored}${kind ? ` (${kind})` : ''}; ${REGENERATE}`);
      }
      const rows = rowIndices(cols, manifest.dataset.count, where);
      const width = product(manifest.dataset.example_shape);
      const raw = async (scratch?: ArrayBuffer) => (opts.dataset ? readDatasetRows(opts.dataset, rows, scratch) : shardInputs(cols, manifest, where));
      let x: Float32Array | undefined;
      let pixels: PixelRows | undefined;
      if (into instanceof Uint8Array) {
        if (!pixelChunks(manifest, opts.transform) || into.length !== cols.rows * width) throw new Error('cacheSource: pixel rows need uint8 data and a buffer of exactly the shard\'s rows');
        // npy rows are read straight into `into`; other readers' rows are copied there
        const u8 = await raw(into.buffer as ArrayBuffer);
        if (u8.buffer !== into.buffer || u8.byteOffset !== into.byteOffset) into.set(u8 as Uint8Array);
        pixels = { u8: into, ...pixelAffine(opts.transform.pre) };
      } else {
        x = opts.dataset
          ? await withScratch(cols.rows * width * DTYPE_BYTES[manifest.dataset.dtype], async (scratch) =>
            // transformInputs always writes a new array (or `into`), so the scratch is free again after it
            transformInputs(await raw(scratch), manifest.dataset.dtype, cols.rows, opts.transform, into))
          : transformInputs(await raw(), manifest.dataset.dtype, cols.rows, opts.transform, into);
      }
      const t = teacherRows(cols, k, opts.tail ?? 'ignore', opts.temperature ?? 1, manifest.storage.sample_temperature ?? 1);
      const y = new Int32Array(cols.rows).fill(-1);
      if (cols.label) y.set(cols.label);
      else if (opts.labels) for (let i = 0; i < cols.rows; i++) y[i] = opts.labels[rows[i]];
      const table = new ExampleTable(cols.rows, inputWidth, k, { x, t, y, row: rows, pixels });
      table.length = cols.rows;
      return table;
    },
  };
}

/** The teacher rows of a shard as dense float32 logits (top-k shards: see sparse-targets.ts). */
function teacherRows(cols: ShardColumns, classes: number, tail: TailMode, temperature: number, sampleTemperature: number): Float32Array {
  if (cols.topkIndices) {
    const rows = { rows: cols.rows, k: cols.logitsWidth, indices: cols.topkIndices, values: cols.logits, dtype: cols.logitsDtype, logsumexp: cols.logsumexp! };
    return cols.sampleCounts
      ? sampledTeacherRows({ ...rows, counts: cols.sampleCounts }, classes, temperature, sampleTemperature)
      : denseTeacherRows(rows, classes, tail);
  }
  return cols.logitsDtype === 'float16' ? halvesToFloats(cols.logits as Uint16Array) : (cols.logits as Float32Array);
}

function rowIndices(cols: ShardColumns, count: number, where: string): Float64Array {
  const rows = new Float64Array(cols.rows);
  for (let i = 0; i < cols.rows; i++) {
    const r = Number(cols.row[i]);
    if (!(r >= 0 && r < count)) throw new UserError(`${where}: row ${r} is outside the dataset's ${count} rows; the shard does not belong to this cache: ${REGENERATE}`);
    rows[i] = r;
  }
  return rows;
}

function shardInputs(cols: ShardColumns, manifest: Manifest, where: string): TypedArray {
  const width = product(manifest.preprocessing.input_shape);
  if (!cols.input) throw new UserError(`${where}: the shard has no input column; pass --data <the dataset the cache was made from>`);
  if (cols.inputWidth !== width) throw new UserError(`${where}: stored inputs have ${cols.inputWidth} values per row, the preprocessing expects ${width}; ${REGENERATE}`);
  return cols.input;
}

/**
 * Dataset rows for a shard, joined by row index. Shards hold contiguous ascending rows, so this is
 * one range read; any other order is gathered from the covering range.
 */
export async function readDatasetRows(ds: Dataset, rows: Float64Array, scratch?: ArrayBuffer): Promise<TypedArray> {
  const n = rows.length;
  if (n === 0) return new Float32Array(0);
  let lo = rows[0];
  let hi = rows[0];
  let contiguous = true;
  for (let i = 1; i < n; i++) {
    if (rows[i] !== rows[i - 1] + 1) contiguous = false;
    if (rows[i] < lo) lo = rows[i];
    if (rows[i] > hi) hi = rows[i];
  }
  if (contiguous) return ds.read(lo, hi + 1, scratch);
  const block = await ds.read(lo, hi + 1);
  const width = product(ds.exampleShape);
  const out = new (block.constructor as new (n: number) => TypedArray)(n * width);
  for (let i = 0; i < n; i++) {
    const from = (rows[i] - lo) * width;
    (out as Float32Array).set((block as Float32Array).subarray(from, from + width), i * width);
  }
  return out;
}

/** A dataset without teacher logits in fixed-size chunks (validation data, evaluate without a cache). */
export function datasetSource(ds: Dataset, transform: InputTransform, labels: Int32Array | null, chunkRows = 4096): ChunkSource {
  const inputWidth = product(transform.pre.input_shape);
  return {
    chunks: Math.ceil(ds.count / chunkRows),
    inputWidth,
    logitsWidth: 0,
    hasTeacher: false,
    async load(index: number): Promise<ExampleTable> {
      const start = index * chunkRows;
      const end = Math.min(ds.count, start + chunkRows);
      const n = end - start;
      const x = transformInputs(await ds.read(start, end), ds.dtype, n, transform);
      const y = labels ? labels.slice(start, end) : new Int32Array(n).fill(-1);
      const row = Float64Array.from({ length: n }, (_, i) => start + i);
      const table = new ExampleTable(n, inputWidth, 0, { x, y, row });
      table.length = n;
      return table;
    },
  };
}
