import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import * as ort from 'onnxruntime-node';
import { openDataset, loadLabels, fingerprintFiles } from '../data/open.js';
import type { Dataset } from '../data/types.js';
import type { Compression, FidelityRecord, ShardColumns, StorageFormat, StorageSpec } from '../shards/format.js';
import { CONFIG_FILE, MANIFEST_FILE, SHARD_DIR } from '../shards/format.js';
import { configId, finalizeCache, readSidecars, resolveInside } from '../shards/manifest.js';
import type { CacheConfig, LabelsInfo, Manifest, Preprocessing, ShardSidecar } from '../shards/manifest-types.js';
import { prepareShardFiles } from '../shards/paths.js';
import { combineFidelity } from '../sparse/fidelity.js';
import type { TypedArray } from '../util/dtype.js';
import { DTYPE_BYTES, allocTyped, product } from '../util/dtype.js';
import { UserError, describeFsError } from '../util/errors.js';
import { createFileExclusive, makeDirs, readJsonFile, removeStaleTemps, sha256Hex, writeFileAtomic } from '../util/fsx.js';
import { createProgress, formatBytes, formatCount } from '../util/progress.js';
import { buildConfig, configDifferences, defaultShardRows, inputBytesPerRow, resolvePreprocessing, storageSpec } from './config.js';
import { BatchFeeder, realPositions } from './feeds.js';
import { resolvePartition, shardsOfPartition } from './partition.js';
import { type PositionRows, appendPositions } from './sequence.js';
import { ShardWriterPool } from './shard-writer.js';
import {
  type ResolvedTeacherOutput, type StorageFlags, type StorageShape, checkStorageFlags, extendStorage, isSequenceOutput, resolveTeacherOutput,
} from './storage-options.js';
import { type InferencePlace, type InferenceThread, chooseInferenceThread, openTeacherThread } from './teacher-thread.js';
import { type BatchOutput, type Teacher, openTeacher, parseDevice } from './teacher.js';

/** The storage flags (top-k, dtype, teacher output, sampling) are StorageFlags, checked there. */
export interface PrecomputeOptions extends StorageFlags {
  teacher: string;
  data: string;
  out: string;
  labels?: string;
  labelColumn?: string;
  inputColumn?: string;
  inputShape?: number[];
  scale?: number;
  mean?: number[];
  std?: number[];
  inputName?: string;
  outputName?: string;
  device?: string;
  batchSize?: number;
  threads?: number;
  format?: StorageFormat;
  compression?: Compression;
  shardRows?: number;
  storeInputs?: boolean;
  overwrite?: boolean;
  partition?: string;
  partitions?: number;
  writers?: number;
  /** where session.run runs: the main thread, a worker thread, or auto (see chooseInferenceThread) */
  inferenceThread?: InferenceThread;
  /** the model's mask or lengths input (default: a second input named like a mask) */
  maskInput?: string;
  /** sequence teachers: the token id that marks padding */
  padId?: number;
  quiet?: boolean;
  env?: NodeJS.ProcessEnv;
  log?: (line: string) => void;
}

export interface PrecomputeResult {
  out: string;
  config: CacheConfig;
  provider: string;
  /** where session.run ran (--inference-thread, auto resolved) */
  inferenceThread: InferencePlace;
  partition: { index: number; count: number };
  shardsWritten: number;
  shardsReused: number;
  rowsComputed: number;
  bytesWritten: number;
  seconds: number;
  rowsPerSecond: number;
  nonfiniteRows: number;
  nonfiniteExamples: number[];
  /** set when this run (or an earlier one) completed the cache */
  manifest: Manifest | null;
  missingShards: number[];
  /** top-k caches: retained mass and KL over this partition's shards */
  fidelity: FidelityRecord | null;
}

export async function precomputeLogits(opts: PrecomputeOptions): Promise<PrecomputeResult> {
  const log = opts.log ?? ((line: string) => { if (!opts.quiet) process.stderr.write(`${line}\n`); });
  const warn = opts.log ?? ((line: string) => process.stderr.write(`${line}\n`));
  const started = performance.now();
  const batchSizeWanted = opts.batchSize ?? 256;
  if (!Number.isInteger(batchSizeWanted) || batchSizeWanted < 1) throw new UserError(`--batch-size ${opts.batchSize}: must be a positive integer`);
  const partition = resolvePartition(opts.partition, opts.partitions, opts.env ?? process.env);
  const storageFlags: StorageFlags = opts;
  checkStorageFlags(storageFlags);
  if (opts.padId !== undefined && !Number.isSafeInteger(opts.padId)) throw new UserError(`--pad-id ${opts.padId}: must be an integer token id`);

  // The writer starts now: loading its code and warming it up on shards shaped like this run's
  // overlaps with opening the teacher and hashing the data, instead of competing with inference.
  const pool = new ShardWriterPool(opts.writers ?? 1, 2, { labels: Boolean(opts.labels ?? opts.labelColumn), format: opts.format ?? 'parquet', compression: opts.compression ?? 'zstd' });
  let teacher: Teacher;
  let ds: Dataset;
  let inferenceThread: InferencePlace = 'main';
  try {
    const device = parseDevice(opts.device ?? 'auto');
    inferenceThread = chooseInferenceThread(opts.inferenceThread ?? 'auto', device, opts.threads);
    const open = inferenceThread === 'worker' ? openTeacherThread : openTeacher;
    teacher = await open(opts.teacher, { device, threads: opts.threads, inputName: opts.inputName, outputName: opts.outputName, maskInput: opts.maskInput });
    teacher.notices.forEach(log);
    ds = await openDataset(opts.data, { inputColumn: opts.inputColumn }).catch(async (err) => {
      await teacher.session.release();
      throw err;
    });
  } catch (err) {
    await pool.close();
    throw err;
  }
  try {
    const labelSet = await loadLabels({ labels: opts.labels, labelColumn: opts.labelColumn, data: opts.data });
    if (labelSet && labelSet.labels.length !== ds.count) {
      throw new UserError(`${opts.labels ?? opts.labelColumn}: ${labelSet.labels.length} labels for ${ds.count} examples in ${opts.data}; they must match one to one`);
    }
    const preprocessing = withPadding(resolvePreprocessing(opts, teacher.info, ds.exampleShape, opts.data, ds.dtype), teacher, opts.padId, log);
    const fixedBatch = teacher.batchDim > 0 ? teacher.batchDim : 0;
    const batchSize = fixedBatch || batchSizeWanted;
    if (fixedBatch && opts.batchSize !== undefined && opts.batchSize !== fixedBatch) log(`notice: the teacher's batch dimension is fixed at ${fixedBatch}; using --batch-size ${fixedBatch}`);

    // The first examples through the model give the exact output shape, whatever the metadata
    // declares, and show whether the teacher outputs probabilities.
    const probe = await probeOutput(teacher, ds, preprocessing, fixedBatch, batchSize);
    const outputShape = probe.shape;
    const width = product(outputShape);
    const sequence = isSequenceOutput(outputShape, preprocessing.input_shape);
    if (!sequence && (preprocessing.pad_id !== undefined || preprocessing.mask_input)) {
      throw new UserError(`${preprocessing.mask_input ? `--teacher ${opts.teacher}: input '${preprocessing.mask_input.name}' is a mask, but the` : '--pad-id: the'} teacher's output [${outputShape.join(', ')}] per example is not one distribution per position of its input [${preprocessing.input_shape.join(', ')}]`);
    }
    const classes = outputShape[outputShape.length - 1];
    const teacherOutput = resolveTeacherOutput(storageFlags.teacherOutput, probe.sample, probe.sample.length / classes, classes);
    if (teacherOutput.notice) log(teacherOutput.notice);
    const inputWidth = product(ds.exampleShape);
    const shardRows = opts.shardRows ?? defaultShardRows(width, opts.storeInputs ? inputBytesPerRow(ds.dtype, inputWidth) : 0);
    if (!Number.isInteger(shardRows) || shardRows < 1) throw new UserError(`--shard-rows ${opts.shardRows}: must be a positive integer`);

    const [datasetFiles, labelFiles] = await Promise.all([fingerprintFiles(ds.files), labelSet ? fingerprintFiles(labelSet.files) : Promise.resolve([])]);
    const labelsInfo: LabelsInfo | null = labelSet && {
      source: labelSet.source, files: labelFiles, column: labelSet.column, count: labelSet.labels.length,
      sha256: sha256Hex(new Uint8Array(labelSet.labels.buffer, labelSet.labels.byteOffset, labelSet.labels.byteLength)),
    };
    const config = buildConfig({
      teacher: teacher.info,
      dataset: { format: ds.format, files: datasetFiles, input_column: ds.inputColumn, count: ds.count, example_shape: ds.exampleShape, dtype: ds.dtype },
      labels: labelsInfo,
      preprocessing,
      outputShape,
      storage: storageFor(storageSpec(opts.format ?? 'parquet', opts.compression ?? 'zstd', shardRows, width, Boolean(labelSet), opts.storeInputs ? { dtype: ds.dtype, width: inputWidth } : null), storageFlags, teacherOutput, {
        outputShape, sequence, hasLabels: Boolean(labelSet), input: opts.storeInputs ? { dtype: ds.dtype, width: inputWidth } : null,
      }),
      rows: ds.count,
    });

    await prepareOutDir(opts.out, config, Boolean(opts.overwrite));
    // A shards/ that links outside the cache is refused before anything in it is touched.
    const shardDir = await resolveInside(opts.out, SHARD_DIR, opts.out);
    await removeStaleTemps(shardDir);

    const { start, end } = shardsOfPartition(config.shard_count, partition);
    const done = new Map<number, ShardSidecar>();
    for (const sc of (await readSidecars(opts.out, config)).valid) done.set(sc.index, sc);
    const todo: number[] = [];
    for (let s = start; s < end; s++) if (!done.has(s)) todo.push(s);
    const partLabel = partition.count > 1 ? ` partition ${partition.index}/${partition.count} (${partition.source})` : '';
    const reused = end - start - todo.length;
    log(`precompute-logits: ${formatCount(ds.count)} rows, ${config.shard_count} shards of ${shardRows}${partLabel}; ${todo.length} to compute${reused ? `, ${reused} already done` : ''}; provider ${teacher.provider}, batch ${batchSize}${inferenceThread === 'worker' ? ', teacher on its own thread' : ''}`);

    const rowsTodo = todo.reduce((n, s) => n + shardRowCount(config, s), 0);
    const progress = createProgress({ label: 'precompute', total: rowsTodo, unit: 'rows', quiet: opts.quiet });
    const blocks = blockReader(ds, batchSize);
    // Feeders for the run, not a fresh input buffer per shard: less external memory for V8 to collect
    // on the inference thread. One per batch the session keeps in flight.
    const feeders = feederRing(teacher.session.depth, () => new BatchFeeder(teacher.info.input_name, config.preprocessing, fixedBatch || batchSize, teacher.mask?.shape ?? null));
    const firstBlock = (s: number) => blocks.read(s * config.storage.shard_rows, s * config.storage.shard_rows + shardRowCount(config, s));
    const prepare = (s: number) => {
      const p = prepareShardFiles(opts.out, s, config.storage.format);
      p.catch(() => {}); // awaited at submit; a failure surfaces there
      return p;
    };
    // The first block and the first shard's files are got ready while the writer finishes warming up.
    let first = todo.length > 0 ? firstBlock(todo[0]) : null;
    let paths = todo.length > 0 ? prepare(todo[0]) : null;
    // The writer's warm-up overlapped with the hashing above; the clock starts once it is done.
    await pool.ready();
    let rowsDone = 0;
    const computeStart = performance.now();
    let written: ShardSidecar[] = [];
    let computeSecs = 0;
    try {
      for (let i = 0; i < todo.length; i++) {
        const s = todo[i];
        const ours = paths!;
        paths = i + 1 < todo.length ? prepare(todo[i + 1]) : null;
        let following: Promise<TypedArray> | null = null;
        const reads: ShardReads = { blocks, first: first!, onLastBlock: () => { if (i + 1 < todo.length) following ??= firstBlock(todo[i + 1]); } };
        const cols = await computeShard(teacher, ds, labelSet?.labels ?? null, config, s, batchSize, fixedBatch, Boolean(opts.storeInputs), (n) => {
          rowsDone += n;
          progress.update(rowsDone);
        }, reads, feeders);
        first = following ?? (i + 1 < todo.length ? firstBlock(todo[i + 1]) : null);
        await pool.submit(opts.out, s, await ours, cols, config.storage, config.config_id, teacher.provider, sequence ? shardRowCount(config, s) : undefined);
      }
      written = await pool.drain();
    } finally {
      // The clock stops once the last shard is durable; stopping the writer threads is teardown, like
      // releasing the session.
      computeSecs = (performance.now() - computeStart) / 1000;
      await pool.close();
    }
    progress.done();

    const { manifest, missing } = await finalizeCache(opts.out);
    // Shards kept from an earlier, killed run count too: a resumed run must report what the
    // uninterrupted one would have.
    const ours = [...written, ...[...done.values()].filter((sc) => sc.index >= start && sc.index < end)].sort((a, b) => a.index - b.index);
    const nonfinite = ours.reduce((n, r) => n + r.nonfinite_rows, 0);
    const examples = ours.flatMap((r) => r.nonfinite_examples).slice(0, 20);
    const bytes = written.reduce((n, r) => n + r.bytes, 0);
    const result: PrecomputeResult = {
      out: opts.out, config, provider: teacher.provider, inferenceThread, partition,
      shardsWritten: written.length, shardsReused: reused, rowsComputed: rowsDone, bytesWritten: bytes,
      seconds: (performance.now() - started) / 1000,
      rowsPerSecond: rowsDone / Math.max(computeSecs, 1e-9),
      nonfiniteRows: nonfinite, nonfiniteExamples: examples,
      manifest, missingShards: missing,
      fidelity: config.storage.kind !== undefined ? combineFidelity(ours.flatMap((r) => (r.fidelity ? [r.fidelity] : []))) : null,
    };
    // A warning is not progress: --quiet does not silence it (the exit code is 3 either way).
    if (nonfinite > 0) warn(`warning: ${nonfinite} rows have NaN/Inf teacher outputs (rows ${examples.join(', ')}${nonfinite > examples.length ? ', ...' : ''}); train-student leaves them out of training`);
    if (result.fidelity) log(fidelityLine(config.storage, result.fidelity));
    // Sequence caches: bytes per stored position is the figure that compares across sequence lengths.
    const positions = written.reduce((n, r) => n + (r.positions ?? 0), 0);
    const perPosition = sequence ? `, ${formatCount(positions)} positions, ${(bytes / Math.max(positions, 1)).toFixed(1)} B/position` : '';
    log(`done: ${formatCount(rowsDone)} rows in ${written.length} shards (${formatBytes(bytes)}, ${(bytes / Math.max(rowsDone, 1)).toFixed(1)} B/row${perPosition}), ${formatCount(result.rowsPerSecond)} rows/s, provider ${teacher.provider}; ` +
      (manifest ? `cache complete: ${path.join(opts.out, MANIFEST_FILE)}` : `${missing.length} shards still missing (other partitions); the last partition to finish, or 'kdcache finalize ${opts.out}', writes the manifest`));
    return result;
  } finally {
    await pool.close();
    await ds.close();
    await teacher.session.release();
  }
}

export function shardRowCount(config: CacheConfig, s: number): number {
  return Math.min(config.rows, (s + 1) * config.storage.shard_rows) - s * config.storage.shard_rows;
}

/** Rows looked at to detect a probability teacher (--teacher-output auto). */
const PROBE_ROWS = 64;

/**
 * The exact per-example output shape, and the first examples' outputs (real positions only). The
 * probe is a whole batch: ONNX Runtime sizes its memory for the first batch of a shape, so that cost
 * (and a batch too large for the device) shows up here, before any shard is computed.
 */
async function probeOutput(teacher: Teacher, ds: Dataset, pre: Preprocessing, fixedBatch: number, batchSize: number): Promise<{ shape: number[]; sample: Float32Array }> {
  const full = Math.min(fixedBatch || batchSize, ds.count);
  const feedRows = fixedBatch || Math.max(full, 1);
  const n = Math.min(full, PROBE_ROWS);
  const raw = await ds.read(0, full);
  const feeder = new BatchFeeder(teacher.info.input_name, pre, feedRows, teacher.mask?.shape ?? null);
  const out = await runBatch(teacher, feeder.feeds(raw, full, feedRows), feedRows, pre.input_shape, feeder.buffer);
  const shape = out.dims.slice(1).map(Number);
  const data = Float32Array.from((out.data as Float32Array).subarray(0, n * product(shape)));
  if (!isSequenceOutput(shape, pre.input_shape)) return { shape, sample: data };
  const [t, c] = shape;
  const kept: PositionRows = { row: new BigInt64Array(n * t), position: new Int32Array(n * t), logits: new Float32Array(n * t * c) };
  const count = appendPositions(kept, 0, data, realPositions(raw, n, pre), n, t, c, 0);
  return { shape, sample: kept.logits.subarray(0, count * c) };
}

/** --pad-id and the model's mask input, recorded in the preprocessing (they decide what is stored). */
function withPadding(pre: Preprocessing, teacher: Teacher, padId: number | undefined, log: (line: string) => void): Preprocessing {
  if (padId === undefined && !teacher.mask) return pre;
  if (padId !== undefined && pre.input_type === 'float32') {
    throw new UserError(`--pad-id ${padId}: the teacher's input '${teacher.info.input_name}' is float32; padding ids apply to integer (token) inputs`);
  }
  const out: Preprocessing = { ...pre };
  if (padId !== undefined) out.pad_id = padId;
  if (teacher.mask) {
    out.mask_input = { name: teacher.mask.name, kind: teacher.mask.kind, type: teacher.mask.type };
    if (padId === undefined) log(`notice: the teacher's ${teacher.mask.kind} input '${teacher.mask.name}' is filled with every position real; pass --pad-id <id> if the data is padded`);
  }
  return out;
}

/** The original storage spec, extended only when a flag or the teacher asks for more. */
function storageFor(base: StorageSpec, flags: StorageFlags, teacherOutput: ResolvedTeacherOutput, shape: StorageShape): StorageSpec {
  const plain = !shape.sequence && flags.topK === undefined && flags.sample === undefined && (flags.dtype ?? 'float32') === 'float32' && teacherOutput.output === 'logits';
  return plain ? base : extendStorage(base, flags, teacherOutput, shape);
}

function fidelityLine(storage: StorageSpec, f: FidelityRecord): string {
  const t = storage.report_temperature;
  const what = storage.kind === 'sample' ? `${storage.samples} draws at T=${storage.sample_temperature}: the drawn classes` : `top-${storage.k}:`;
  return `${what} retained mass ${f.mass_mean.toFixed(4)} mean, ${f.mass_min.toFixed(4)} min at T=1; ${f.mass_t_mean.toFixed(4)} mean, ${f.mass_t_min.toFixed(4)} min at T=${t}; ` +
    `KL(full || ${storage.kind === 'sample' ? 'drawn classes' : 'top-k'} + uniform tail) ${f.kl_mean.toExponential(3)} at T=1, ${f.kl_t_mean.toExponential(3)} at T=${t} (${f.kl_rows} sampled rows of ${f.rows})`;
}

async function runBatch(teacher: Teacher, feeds: Record<string, ort.Tensor>, rows: number, inputShape: number[], owned?: ArrayBuffer): Promise<BatchOutput> {
  try {
    return await teacher.session.run(feeds, teacher.info.output_name, owned);
  } catch (err) {
    const msg = String((err as Error).message ?? err).replace(/\s+/g, ' ').slice(0, 300);
    throw new UserError(`--teacher ${teacher.info.name}: inference failed on input [${rows}, ${inputShape.join(', ')}] (${msg}); check --input-shape and --input-name`);
  }
}

/**
 * Run one shard through the teacher. Batches always start at the shard's first row, so every partition
 * and every rerun computes a shard the same way and writes the same bytes.
 */
async function computeShard(
  teacher: Teacher, ds: Dataset, labels: Int32Array | null, config: CacheConfig, s: number,
  batchSize: number, fixedBatch: number, storeInputs: boolean, onRows: (n: number) => void,
  reads: ShardReads, feeders: FeederRing,
): Promise<ShardColumns> {
  const first = s * config.storage.shard_rows;
  const rows = shardRowCount(config, s);
  const width = config.output.width;
  const pre = config.preprocessing;
  const logits = new Float32Array(rows * width);
  const sequence = config.storage.layout === 'sequence';
  const [t, c] = config.output.shape;
  // The sequence layout has one table row per real position: at most rows * T of them.
  const row = new BigInt64Array(sequence ? rows * t : rows);
  if (!sequence) for (let i = 0; i < rows; i++) row[i] = BigInt(first + i);
  const kept: PositionRows | null = sequence ? { row, position: new Int32Array(rows * t), logits } : null;
  let positions = 0;
  const input = storeInputs ? allocTyped(ds.dtype, rows * product(ds.exampleShape)) : undefined;

  const inWidth = product(ds.exampleShape);
  const { blockRows } = reads.blocks;
  let next = reads.first;
  let block: TypedArray = new Uint8Array(0);
  // Batches in flight, oldest first: a teacher on its own thread runs one while the next is prepared.
  const inflight: { b: number; n: number; feedRows: number; feeder: BatchFeeder; real: Uint8Array | null; out: Promise<BatchOutput> }[] = [];
  const finish = async (): Promise<void> => {
    const { b, n, feedRows, feeder, real, out: pending } = inflight.shift()!;
    const out = await pending;
    if (out.returned) feeder.adopt(out.returned);
    const data = out.data;
    if (out.dims.length < 1 || Number(out.dims[0]) !== feedRows || data.length !== feedRows * width) {
      throw new UserError(`--teacher ${teacher.info.name}: output '${teacher.info.output_name}' has shape [${out.dims.join(', ')}] for a batch of ${feedRows}; expected [${feedRows}, ${config.output.shape.join(', ')}]`);
    }
    if (kept) {
      if (!(data instanceof Float32Array || data instanceof Float64Array)) copyLogits(data, 0, logits, 0, teacher.info.output_type);
      positions = appendPositions(kept, positions, data as Float32Array | Float64Array, real!, n, t, c, first + b);
    } else {
      copyLogits(data, n * width, logits, b * width, teacher.info.output_type);
    }
    onRows(n);
  };
  try {
    for (let b = 0; b < rows; b += batchSize) {
      const n = Math.min(batchSize, rows - b);
      const inBlock = b % blockRows;
      if (inBlock === 0) {
        block = await next;
        if (b + blockRows < rows) next = reads.blocks.read(first + b + blockRows, first + rows);
        else reads.onLastBlock();
      }
      const raw = rowsOf(block, inBlock, inBlock + n, inWidth);
      if (input) (input as Float32Array).set(raw as Float32Array, b * inWidth);
      // A fixed-batch model gets a partial batch padded; the padding rows' outputs are dropped.
      const feedRows = fixedBatch || n;
      const feeder = feeders.next();
      const feeds = feeder.feeds(raw, n, feedRows);
      // Which positions are real is read now: the block may be reused before this batch finishes.
      const real = kept ? realPositions(raw, n, pre) : null;
      const out = runBatch(teacher, feeds, feedRows, pre.input_shape, feeder.buffer);
      out.catch(() => {}); // awaited in finish; a failure surfaces there
      inflight.push({ b, n, feedRows, feeder, real, out });
      if (inflight.length >= teacher.session.depth) await finish();
    }
    while (inflight.length > 0) await finish();
  } finally {
    // A failed shard leaves no batch behind holding a feeder's buffer.
    await Promise.allSettled(inflight.map((f) => f.out.then((o) => { if (o.returned) f.feeder.adopt(o.returned); })));
  }
  if (kept) {
    // Views into the full-size buffers: they are transferred to the writer whole, without a copy.
    return { rows: positions, row: row.subarray(0, positions), position: kept.position.subarray(0, positions), logits: logits.subarray(0, positions * c), logitsWidth: c, logitsDtype: 'float32' };
  }
  return {
    rows, row, logits, logitsWidth: width, logitsDtype: 'float32',
    ...(labels ? { label: labels.slice(first, first + rows) } : {}),
    ...(input ? { input, inputWidth: product(ds.exampleShape), inputDtype: ds.dtype } : {}),
  };
}

/**
 * Reads go in blocks of whole batches (a few MB): one read per batch costs a thread-pool round trip
 * and a fresh buffer each time, measurable next to a fast teacher. The next block, also across
 * shards, is read while the teacher runs on this one.
 */
const READ_BLOCK_BYTES = 4 << 20;

interface BlockReader {
  blockRows: number;
  /** rows [start, min(shardEnd, start + blockRows)) */
  read(start: number, shardEnd: number): Promise<TypedArray>;
}

interface ShardReads {
  blocks: BlockReader;
  /** the shard's first block, already requested */
  first: Promise<TypedArray>;
  /** called when the shard has requested its last block: the next shard's first may start */
  onLastBlock: () => void;
}

/**
 * Blocks are read into a ring of three buffers: at most one block is in use and one being read
 * (the batch's rows are copied out by the feeder before the next block is awaited). A fresh 4 MB
 * buffer per block is page-faulted in by the reading thread and, as external memory, drives V8 to
 * full garbage collections; both take CPU from a teacher that runs on every core.
 */
function blockReader(ds: Dataset, batchSize: number): BlockReader {
  const rowBytes = Math.max(1, product(ds.exampleShape) * DTYPE_BYTES[ds.dtype]);
  const blockRows = Math.max(batchSize, Math.floor(READ_BLOCK_BYTES / rowBytes / batchSize) * batchSize);
  const ring = Array.from({ length: 3 }, () => new ArrayBuffer(blockRows * rowBytes));
  let k = 0;
  return {
    blockRows,
    read(start, shardEnd) {
      const p = ds.read(start, Math.min(shardEnd, start + blockRows), ring[k++ % ring.length]);
      // Read ahead: a failure surfaces when the block is awaited, not as an unhandled rejection.
      p.catch(() => {});
      return p;
    },
  };
}

interface FeederRing { next(): BatchFeeder }

/** Feeders taken in turn: with `depth` batches in flight, the one handed out has finished its last batch. */
function feederRing(depth: number, make: () => BatchFeeder): FeederRing {
  const ring = Array.from({ length: depth }, make);
  let k = 0;
  return { next: () => ring[k++ % ring.length] };
}

/** Rows [a, b) of a block of examples `width` values wide, as a view. */
function rowsOf(block: TypedArray, a: number, b: number, width: number): TypedArray {
  return (block as Uint8Array).subarray(a * width, b * width) as unknown as TypedArray;
}

function copyLogits(src: ort.Tensor['data'], n: number, dst: Float32Array, offset: number, type: string): void {
  if (src instanceof Float32Array) dst.set(src.subarray(0, n), offset);
  else if (src instanceof Float64Array) for (let i = 0; i < n; i++) dst[offset + i] = src[i];
  else throw new UserError(`teacher output type ${type} is not supported; export the teacher with a float32 output`);
}

async function makeOutDir(dir: string, flagValue: string): Promise<void> {
  try {
    await makeDirs(dir);
  } catch (err) {
    const e = describeFsError(err, flagValue, 'create the output directory');
    throw e ? new UserError(`--out ${e.message}`) : err;
  }
}

function recordsItsOwnId(c: CacheConfig): boolean {
  try {
    return configId(c) === c.config_id;
  } catch {
    return false;
  }
}

/**
 * config.json binds the directory to one teacher/dataset/preprocessing/storage. The first writer
 * creates it atomically; later runs and other partitions must match it.
 */
async function prepareOutDir(out: string, config: CacheConfig, overwrite: boolean): Promise<void> {
  await makeOutDir(path.join(out, SHARD_DIR), out);
  const configPath = path.join(out, CONFIG_FILE);
  const text = `${JSON.stringify(config, null, 2)}\n`;
  if (await createFileExclusive(configPath, text)) return;
  let existing: CacheConfig | undefined;
  try {
    existing = await readJsonFile<CacheConfig>(configPath);
  } catch {
    existing = undefined;
  }
  if (existing?.config_id === config.config_id) {
    // Our cache, but the file was edited by hand: finalize would copy the edits into the manifest.
    if (!recordsItsOwnId(existing)) await writeFileAtomic(configPath, text);
    return;
  }
  if (!overwrite) {
    const diff = existing ? configDifferences(existing, config).join(', ') : 'unreadable config.json';
    throw new UserError(`--out ${out}: holds a cache made with a different ${diff || 'configuration'}; use a new --out, or --overwrite to replace it`);
  }
  await fs.rm(path.join(out, MANIFEST_FILE), { force: true });
  await fs.rm(path.join(out, SHARD_DIR), { recursive: true, force: true });
  await fs.rm(configPath, { force: true });
  await fs.mkdir(path.join(out, SHARD_DIR), { recursive: true });
  if (!(await createFileExclusive(configPath, text))) {
    throw new UserError(`--out ${out}: another process is writing a different cache here at the same time`);
  }
}
