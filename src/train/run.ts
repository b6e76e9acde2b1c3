/**
 * train-student: distil a tfjs student from a logits cache. The teacher is never loaded: its
 * logits stream from the cache's shards, joined by row with the dataset (or the stored inputs).
 */
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import type { Manifest, Preprocessing } from '../shards/manifest-types.js';
import { checkTeacherFile } from '../shards/manifest.js';
import { UserError, describeFsError } from '../util/errors.js';
import { makeDirs, removeStaleTemps, writeFileAtomic } from '../util/fsx.js';
import { createProgress, formatCount, formatDuration } from '../util/progress.js';
import { initBackend } from './backend.js';
import { bindData } from './bind.js';
import { checkShards, openCache, type InputTransform } from './cache.js';
import { type ClosableSource, workerCacheSource } from './cache-worker.js';
import { CHECKPOINT_DIR, type CheckpointState, readCheckpoint, restoreOptimizer, writeCheckpoint } from './checkpoint.js';
import { ExampleTable, teacherRowFinite } from './examples.js';
import type { LossParams } from './losses.js';
import type { MetricValues } from './metrics.js';
import { MODEL_FILE, loadModel, saveModel } from './model-io.js';
import { type Monitor, type ResolvedTrainOptions, type TrainOptions, resolveTrainOptions } from './options.js';
import { RNG_PURPOSE, deriveRng, mixSeed, shuffleInPlace } from './rng.js';
import { type ChunkSource, memorySource } from './stream.js';
import { type InputLayout, type Student, countParameters, createStudent, parseStudentSpec, specHasConv, studentFromModel } from './students.js';
import { type StepContext, createOptimizer, evaluate, trainEpoch } from './trainer.js';
import { type ValData, countHeldOut, isHeldOut, openValData } from './validation.js';

export type { TrainOptions } from './options.js';

export const METRICS_FILE = 'metrics.jsonl';
export const SUMMARY_FILE = 'summary.json';

/** Held-out rows are kept in memory after the first epoch when they fit in this many bytes. */
const VAL_MEMORY_BYTES = 512 << 20;

export interface TrainSummary {
  /** path of the saved model.json */
  model: string;
  out: string;
  backend: string;
  /** epochs completed (including those of resumed runs) */
  epochs: number;
  /** the epoch whose weights were saved: the best on validation, else the last */
  model_epoch: number;
  stopped_early: boolean;
  val_accuracy: number | null;
  teacher_agreement: number | null;
  /** wall time of this invocation */
  seconds: number;
  /** training time over all epochs (without validation and checkpoints), across resumes */
  train_seconds: number;
  examples_per_second: number;
  train: MetricValues | null;
  val: Record<string, number | null> | null;
  validation: { kind: 'fraction' | 'data' | 'none'; rows: number; monitor: Exclude<Monitor, 'auto'> | null; rule?: string };
  teacher: { name: string; sha256: string };
  cache: { dir: string; config_id: string; rows: number; shards: number };
  /** cached rows whose teacher logits have NaN/Inf, left out of the loss (0 when --alpha 0 ignores the teacher) */
  nonfinite_rows_skipped: number;
  preprocessing: Preprocessing;
  student: { spec: string; input_shape: number[]; input_layout: InputLayout; parameters: number; conv: boolean };
  hyperparameters: {
    alpha: number; temperature: number; loss: string; tail: string | null; epochs: number; batch_size: number; lr: number;
    optimizer: string; seed: number; shuffle_buffer: number; val_fraction: number; patience: number;
  };
  created: string;
}

export interface EpochRecord {
  epoch: number;
  train_loss: number | null;
  train_accuracy: number | null;
  train_agreement: number | null;
  train_kl: number | null;
  val_accuracy: number | null;
  val_agreement: number | null;
  val_kl: number | null;
  train_examples: number;
  val_examples: number;
  seconds: number;
  examples_per_second: number;
  improved: boolean;
}

export async function trainStudent(input: TrainOptions): Promise<TrainSummary> {
  const opts = resolveTrainOptions(input);
  const log = opts.log ?? ((line: string) => { if (!opts.quiet) process.stderr.write(`${line}\n`); });
  const started = performance.now();

  const manifest = await openCache(opts.logits);
  if (opts.teacher) await checkTeacherFile(manifest, opts.teacher);
  await checkShards(opts.logits, { checksums: !opts.skipChecksums });
  const classes = manifest.output.width;
  const sparse = manifest.storage.kind === 'topk';
  const loss: LossParams = { alpha: opts.alpha, temperature: opts.temperature, kind: opts.loss, ...(sparse ? { tail: opts.tail } : {}) };
  if (manifest.storage.kind !== undefined && opts.loss === 'mse' && opts.alpha > 0) {
    const kept = sparse ? `only the top ${manifest.storage.k} logits` : `only ${manifest.storage.samples} sampled classes`;
    throw new UserError(`--loss mse: the cache keeps ${kept} per row, and logit matching needs all of them; use --loss kd or a dense cache`);
  }

  const spec = parseStudentSpec(opts.student);
  const ckpt = await prepareOutDir(opts);
  const run = runFingerprint(opts, manifest);
  if (ckpt) checkResumable(ckpt.state, run, opts.out);

  const binding = await bindData(manifest, opts.logits, { data: opts.data, labels: opts.labels, labelColumn: opts.labelColumn });
  let val: ValData | null = null;
  let train: ClosableSource | null = null;
  try {
    if (loss.alpha < 1 && !binding.hasLabels) {
      throw new UserError(`--alpha ${loss.alpha} needs labels, but the cache has none; pass --labels <file> (or --label-column) with the labels of the cached data, or use --alpha 1`);
    }
    const backend = await initBackend(opts.backend, { needsConv: await specHasConv(spec) });

    const preShape = manifest.preprocessing.input_shape;
    const student: Student = ckpt
      ? studentFromModel(await loadModel(ckpt.dir), spec, preShape, classes, opts.student)
      : await createStudent(spec, { preShape, classes, seed: mixSeed(opts.seed, RNG_PURPOSE.init) });
    const transform: InputTransform = { pre: manifest.preprocessing, layout: student.input.layout };
    // Shards are decoded on a worker thread so that decoding overlaps training.
    train = workerCacheSource({
      cacheDir: opts.logits, manifest, transform, labels: binding.labels, tail: opts.tail, temperature: opts.temperature,
      dataset: binding.dataset ? { file: binding.dataset.files[0], inputColumn: binding.dataset.inputColumn } : null,
    });

    if (opts.valData) {
      val = await openValData({ valData: opts.valData, valLabels: opts.valLabels, valLabelColumn: opts.valLabelColumn, inputColumn: manifest.dataset.input_column }, transform, classes);
    }
    const heldOut = countHeldOut(manifest.rows, opts.valFraction);
    if (opts.valFraction > 0 && heldOut === 0) throw new UserError(`--val-fraction ${opts.valFraction}: holds out no rows of the ${manifest.rows} in the cache; use a larger fraction`);
    if (opts.valFraction > 0 && heldOut === manifest.rows) throw new UserError(`--val-fraction ${opts.valFraction}: holds out every row; use a smaller fraction`);
    const monitor = resolveMonitor(opts, binding.hasLabels);

    const optimizer = createOptimizer(opts.optimizer, opts.lr);
    if (ckpt) {
      await restoreOptimizer(optimizer, ckpt);
      log(`resuming from ${ckpt.dir} (epoch ${ckpt.state.epoch} done)`);
    }
    const ctx: StepContext = { model: student.model, optimizer, loss, inputShape: student.input.shape, classes };
    const nonfiniteSkipped = loss.alpha > 0 ? manifest.totals.nonfinite_rows : 0;
    const summaryBase = {
      teacher: { name: manifest.teacher.name, sha256: manifest.teacher.sha256 },
      cache: { dir: path.resolve(opts.logits), config_id: manifest.config_id, rows: manifest.rows, shards: manifest.shards.length },
      nonfinite_rows_skipped: nonfiniteSkipped,
      preprocessing: manifest.preprocessing,
      student: { spec: opts.student, input_shape: student.input.shape, input_layout: student.input.layout, parameters: countParameters(student.model), conv: student.hasConv },
      hyperparameters: {
        alpha: opts.alpha, temperature: opts.temperature, loss: opts.loss, tail: sparse ? opts.tail : null, epochs: opts.epochs, batch_size: opts.batchSize, lr: opts.lr,
        optimizer: opts.optimizer, seed: opts.seed, shuffle_buffer: opts.shuffleBuffer, val_fraction: opts.valFraction, patience: opts.patience,
      },
      validation: {
        kind: opts.valFraction > 0 ? 'fraction' as const : val ? 'data' as const : 'none' as const,
        rows: opts.valFraction > 0 ? heldOut : val?.rows ?? 0,
        monitor,
        ...(opts.valFraction > 0 ? { rule: `rows r with rowHash01(r) < ${opts.valFraction} (hash of the row index; independent of --seed)` } : {}),
      },
    };

    // Said only once every check has passed: an error stays the single line of output.
    log(backend.message);
    if (manifest.storage.kind === 'sample' && manifest.storage.sample_temperature !== opts.temperature && opts.alpha > 0) {
      log(`notice: the cache's classes were drawn at T=${manifest.storage.sample_temperature}; at --temperature ${opts.temperature} the draws are reweighted (consistent, but biased for few draws)`);
    }
    if (nonfiniteSkipped > 0) log(`notice: ${nonfiniteSkipped} cached rows have NaN/Inf teacher logits (precompute-logits reported them); they are left out of training`);
    const result = await trainLoop({
      opts, ctx, train, val, heldOut, monitor, run, ckpt: ckpt?.state ?? null, log,
      trainRows: manifest.rows - heldOut - (loss.alpha > 0 ? manifest.totals.nonfinite_rows : 0),
      cacheRows: manifest.rows,
    });

    const summary: TrainSummary = {
      model: path.join(opts.out, MODEL_FILE),
      out: opts.out,
      backend: backend.name,
      epochs: result.epochs,
      model_epoch: result.modelEpoch,
      stopped_early: result.stoppedEarly,
      val_accuracy: result.bestVal?.accuracy ?? null,
      teacher_agreement: result.bestVal?.agreement ?? null,
      seconds: (performance.now() - started) / 1000,
      train_seconds: result.trainSeconds,
      examples_per_second: result.trainSeconds > 0 ? result.trainExamples / result.trainSeconds : 0,
      train: result.lastTrain,
      val: result.bestVal,
      ...summaryBase,
      created: new Date().toISOString(),
    };
    await writeFileAtomic(path.join(opts.out, SUMMARY_FILE), `${JSON.stringify(summary, null, 2)}\n`);
    const valText = summary.val_accuracy !== null || summary.teacher_agreement !== null
      ? ` (epoch ${summary.model_epoch}:${fmtMetric(' val acc', summary.val_accuracy)}${fmtMetric(' agreement', summary.teacher_agreement)})`
      : '';
    log(`saved ${summary.model}${valText}; ${formatCount(summary.examples_per_second)} examples/s on ${backend.name}`);
    return summary;
  } catch (err) {
    throw outOfSpaceAdvice(err, opts.out);
  } finally {
    await train?.close();
    await binding.dataset?.close();
    await val?.close();
  }
}

/**
 * Out of space mid-run: the same command would refuse the half-finished --out ("already holds a
 * training run"), so the advice is --resume, which continues from the last complete checkpoint.
 */
function outOfSpaceAdvice(err: unknown, out: string): unknown {
  const code = err instanceof UserError ? err.fsCode : (err as NodeJS.ErrnoException | undefined)?.code;
  if (code !== 'ENOSPC' && code !== 'EDQUOT') return err;
  const what = code === 'ENOSPC' ? 'no space left on device' : 'disk quota exceeded';
  return new UserError(`--out ${out}: ${what} while training; free space and rerun with --resume: completed epochs are kept`);
}

function resolveMonitor(opts: ResolvedTrainOptions, hasLabels: boolean): Exclude<Monitor, 'auto'> | null {
  if (!opts.valData && !(opts.valFraction > 0)) return null;
  if (opts.monitor !== 'auto') {
    if (opts.monitor === 'accuracy' && opts.valFraction > 0 && !hasLabels) {
      throw new UserError('--monitor accuracy: the held-out rows have no labels (the cache has none); use --monitor agreement or pass --labels');
    }
    return opts.monitor;
  }
  return opts.valData || hasLabels ? 'accuracy' : 'agreement';
}

/** What must not change between a run and its resumption. */
function runFingerprint(opts: ResolvedTrainOptions, manifest: Manifest): Record<string, unknown> {
  return {
    config_id: manifest.config_id,
    student: opts.student,
    seed: opts.seed,
    alpha: opts.alpha,
    temperature: opts.temperature,
    loss: opts.loss,
    // top-k caches only, so that checkpoints of dense runs keep resuming
    tail: manifest.storage.kind === 'topk' ? opts.tail : undefined,
    batch_size: opts.batchSize,
    optimizer: opts.optimizer,
    shuffle_buffer: opts.shuffleBuffer,
    val_fraction: opts.valFraction,
    val_data: opts.valData ? path.basename(opts.valData) : null,
  };
}

const FLAG_OF: Record<string, string> = {
  config_id: '--logits (a different cache)', student: '--student', seed: '--seed', alpha: '--alpha', temperature: '--temperature',
  loss: '--loss', tail: '--tail', batch_size: '--batch-size', optimizer: '--optimizer', shuffle_buffer: '--shuffle-buffer',
  val_fraction: '--val-fraction', val_data: '--val-data',
};

function checkResumable(state: CheckpointState, run: Record<string, unknown>, out: string): void {
  const differ = Object.keys(run).filter((k) => JSON.stringify(run[k]) !== JSON.stringify(state.run[k]));
  if (differ.length > 0) {
    const what = differ.map((k) => `${FLAG_OF[k] ?? k} (checkpoint: ${JSON.stringify(state.run[k])}, now: ${JSON.stringify(run[k])})`).join(', ');
    throw new UserError(`--resume: the checkpoint in ${out} was made with different options: ${what}; rerun with the same options or use a new --out`);
  }
}

/** Refuse to mix two runs in one --out; with --resume, return the checkpoint to continue from. */
async function prepareOutDir(opts: ResolvedTrainOptions) {
  const ckpt = await readCheckpoint(opts.out);
  if (!opts.resume) {
    const hasRun = ckpt !== null || await fs.access(path.join(opts.out, METRICS_FILE)).then(() => true, () => false);
    if (hasRun) {
      throw new UserError(`--out ${opts.out}: already holds a training run${ckpt ? ` (checkpoint after epoch ${ckpt.state.epoch})` : ''}; pass --resume to continue it, or choose another --out`);
    }
  }
  await makeDirs(opts.out).catch((err) => {
    throw describeFsError(err, opts.out, 'create the output directory') ?? err;
  });
  await removeStaleTemps(opts.out); // model.json, weights.bin, summary.json of a killed run
  if (opts.resume && !ckpt) {
    await fs.rm(path.join(opts.out, METRICS_FILE), { force: true });
  }
  return ckpt;
}

interface LoopInput {
  opts: ResolvedTrainOptions;
  ctx: StepContext;
  train: ChunkSource;
  val: ValData | null;
  heldOut: number;
  monitor: Exclude<Monitor, 'auto'> | null;
  run: Record<string, unknown>;
  ckpt: CheckpointState | null;
  trainRows: number;
  cacheRows: number;
  log: (line: string) => void;
}

interface LoopResult {
  epochs: number;
  modelEpoch: number;
  stoppedEarly: boolean;
  bestVal: Record<string, number | null> | null;
  lastTrain: MetricValues | null;
  trainSeconds: number;
  trainExamples: number;
}

async function trainLoop(L: LoopInput): Promise<LoopResult> {
  const { opts, ctx, train } = L;
  const metricsPath = path.join(opts.out, METRICS_FILE);
  const startEpoch = L.ckpt?.epoch ?? 0;
  await trimMetrics(metricsPath, startEpoch);
  const es = L.ckpt ? { ...L.ckpt.early_stopping } : { best: null as number | null, best_epoch: null as number | null, stale_epochs: 0, best_val: null as Record<string, number | null> | null };
  let trainSeconds = L.ckpt?.train_seconds ?? 0;
  let trainExamples = L.ckpt?.train_examples ?? 0;
  let lastTrain: MetricValues | null = null;
  let epochsDone = startEpoch;
  let stoppedEarly = opts.patience > 0 && es.stale_epochs >= opts.patience;

  const fraction = opts.valFraction;
  const needFinite = ctx.loss.alpha > 0;
  const k = ctx.classes;
  // Held-out rows are copied out during the first pass when they fit, so later epochs need not
  // read the shards twice; otherwise each validation streams the shards again.
  const valBytes = L.heldOut * (train.inputWidth + train.logitsWidth + 3) * 4;
  let valTable: ExampleTable | null = fraction > 0 && valBytes <= VAL_MEMORY_BYTES ? new ExampleTable(L.heldOut, train.inputWidth, train.logitsWidth) : null;
  let collecting = valTable !== null;
  const valBatch = Math.max(opts.batchSize, 256);

  for (let epoch = startEpoch; epoch < opts.epochs && !stoppedEarly; epoch++) {
    const order = shuffleInPlace([...Array(train.chunks).keys()], deriveRng(opts.seed, epoch, RNG_PURPOSE.shardOrder));
    const progress = createProgress({ label: `epoch ${epoch + 1}/${opts.epochs}`, total: Math.max(L.trainRows, 1), unit: 'ex', quiet: opts.quiet, stream: opts.progressStream });
    let smooth: number | null = null;
    const collectNow = collecting;
    const result = await trainEpoch(ctx, train, order, {
      batchSize: opts.batchSize,
      // A buffer larger than the cache behaves exactly like one the cache's size: allocate no more.
      shuffleBuffer: Math.min(opts.shuffleBuffer, L.cacheRows),
      rng: deriveRng(opts.seed, epoch, RNG_PURPOSE.shuffle),
      nextOrder: epoch + 1 < opts.epochs ? shuffleInPlace([...Array(train.chunks).keys()], deriveRng(opts.seed, epoch + 1, RNG_PURPOSE.shardOrder)) : undefined,
      keep: (t, i) => !isHeldOut(t.row[i], fraction) && (!needFinite || teacherRowFinite(t.t, i, k)),
      onSkip: collectNow ? (t, i) => { if (isHeldOut(t.row[i], fraction)) valTable!.append(t, i); } : undefined,
    }, (done, loss) => {
      smooth = smooth === null ? loss : 0.95 * smooth + 0.05 * loss;
      progress.update(done, `loss ${smooth.toFixed(4)}`);
    });
    progress.done();
    if (collectNow) {
      collecting = false;
      if (valTable!.length !== L.heldOut) throw new Error(`held out ${valTable!.length} rows, expected ${L.heldOut}`);
    }
    if (result.examples === 0) throw new UserError(`--logits ${opts.logits}: no rows left to train on (held out or non-finite teacher logits)`);
    trainSeconds += result.seconds;
    trainExamples += result.examples;
    lastTrain = result.metrics;

    let valMetrics: MetricValues | null = null;
    if (valTable) valMetrics = await evaluate(ctx.model, memorySource([valTable], true), ctx.inputShape, { batchSize: valBatch });
    else if (fraction > 0) valMetrics = await evaluate(ctx.model, train, ctx.inputShape, { batchSize: valBatch, keep: (t, i) => isHeldOut(t.row[i], fraction) });
    else if (L.val) valMetrics = await evaluate(ctx.model, L.val.source, ctx.inputShape, { batchSize: valBatch });

    let improved = true;
    if (valMetrics && L.monitor) {
      const value = valMetrics[L.monitor];
      improved = value !== null && (es.best === null || value > es.best);
      if (improved) {
        es.best = value;
        es.best_epoch = epoch + 1;
        es.stale_epochs = 0;
        es.best_val = { accuracy: valMetrics.accuracy, agreement: valMetrics.agreement, kl: valMetrics.kl, examples: valMetrics.examples };
      } else es.stale_epochs++;
    }
    const record: EpochRecord = {
      epoch: epoch + 1,
      train_loss: result.metrics.loss,
      train_accuracy: result.metrics.accuracy,
      train_agreement: result.metrics.agreement,
      train_kl: result.metrics.kl,
      val_accuracy: valMetrics?.accuracy ?? null,
      val_agreement: valMetrics?.agreement ?? null,
      val_kl: valMetrics?.kl ?? null,
      train_examples: result.examples,
      val_examples: valMetrics?.examples ?? 0,
      seconds: result.seconds,
      examples_per_second: result.examples / Math.max(result.seconds, 1e-9),
      improved,
    };
    await fs.appendFile(metricsPath, `${JSON.stringify(record)}\n`);
    L.log(epochLine(record, opts.epochs));

    // model.json always holds the best epoch so far (the last one without validation).
    if (improved) await saveModel(ctx.model, opts.out);
    epochsDone = epoch + 1;
    stoppedEarly = opts.patience > 0 && es.stale_epochs >= opts.patience;
    await writeCheckpoint(opts.out, ctx.model, ctx.optimizer, {
      version: 1,
      epoch: epochsDone,
      rng: { seed: opts.seed, next_epoch: epochsDone },
      early_stopping: es,
      train_seconds: trainSeconds,
      train_examples: trainExamples,
      run: L.run,
      optimizer: { name: opts.optimizer },
    });
    if (stoppedEarly) L.log(`early stopping: no ${L.monitor} improvement for ${opts.patience} epoch(s); keeping epoch ${es.best_epoch}`);
  }
  if (!(await fs.access(path.join(opts.out, MODEL_FILE)).then(() => true, () => false))) await saveModel(ctx.model, opts.out);
  return {
    epochs: epochsDone,
    modelEpoch: L.monitor ? (es.best_epoch ?? epochsDone) : epochsDone,
    stoppedEarly,
    bestVal: es.best_val,
    lastTrain,
    trainSeconds,
    trainExamples,
  };
}

/** After a crash between writing a metrics line and the checkpoint, drop lines the resume redoes. */
async function trimMetrics(file: string, epochsDone: number): Promise<void> {
  const text = await fs.readFile(file, 'utf8').catch(() => null);
  if (text === null) return;
  const keep = text.split('\n').filter((l) => l.trim() !== '').filter((l) => {
    try {
      return (JSON.parse(l) as EpochRecord).epoch <= epochsDone;
    } catch {
      return false;
    }
  });
  await writeFileAtomic(file, keep.map((l) => `${l}\n`).join(''));
}

function fmtMetric(name: string, v: number | null | undefined, digits = 4): string {
  return v === null || v === undefined ? '' : `${name} ${v.toFixed(digits)}`;
}

function epochLine(r: EpochRecord, epochs: number): string {
  const trainPart = `loss ${r.train_loss?.toFixed(4) ?? '-'}${fmtMetric(' acc', r.train_accuracy)}${fmtMetric(' agree', r.train_agreement)}${fmtMetric(' kl', r.train_kl)}`;
  const valPart = r.val_examples > 0 ? ` | val${fmtMetric(' acc', r.val_accuracy)}${fmtMetric(' agree', r.val_agreement)}${fmtMetric(' kl', r.val_kl)}` : '';
  return `epoch ${r.epoch}/${epochs}  ${trainPart}${valPart}  (${formatCount(r.examples_per_second)} ex/s, ${formatDuration(r.seconds)})`;
}

export { CHECKPOINT_DIR };
