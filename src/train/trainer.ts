/**
 * One optimisation step, one epoch, one evaluation pass. Batches arrive as ExampleTables in JS
 * memory; each step makes fresh tensors from their typed arrays (never slices of a big tensor,
 * which on wasm copies the whole tensor out of the heap) and disposes them after the step.
 */
import * as tf from '@tensorflow/tfjs';
import { UserError } from '../util/errors.js';
import type { ExampleTable } from './examples.js';
import type { LossParams } from './losses.js';
import { MetricsAccumulator, type MetricValues } from './metrics.js';
import { type ChunkSource, type StreamOptions, streamBatches } from './stream.js';
import { FusedAdam } from './kernels/adam.js';
import { type FusedStep, fusedMlpStep } from './kernels/fused-mlp.js';
import { shareCores } from './kernels/native.js';
import { distillationLoss } from './tf-losses.js';

export interface StepContext {
  model: tf.LayersModel;
  optimizer: tf.Optimizer;
  loss: LossParams;
  /** per-example student input shape */
  inputShape: number[];
  classes: number;
  /** the fused native step for this student (kernels/fused-mlp.ts); undefined until first decided */
  fused?: FusedStep | null;
}

/** Adam is tfjs's, with its update fused into one kernel call per variable (bit-identical). */
export function createOptimizer(name: 'adam' | 'sgd', lr: number): tf.Optimizer {
  return name === 'adam' ? new FusedAdam(lr, 0.9, 0.999) : tf.train.momentum(lr, 0.9);
}

/** One optimisation step on `batch`; accumulates loss and training metrics. Returns the batch loss. */
export function trainStep(ctx: StepContext, batch: ExampleTable, metrics: MetricsAccumulator): number {
  const n = batch.length;
  const k = ctx.classes;
  const needTeacher = ctx.loss.alpha > 0;
  const needLabels = ctx.loss.alpha < 1;
  if (needLabels) checkLabels(batch, k);
  if (ctx.fused === undefined) ctx.fused = fusedMlpStep(ctx.model, ctx.optimizer, ctx.loss);
  if (ctx.fused) return checkedLoss(ctx, ctx.fused(batch, metrics));
  const x = tf.tensor(batch.xView(), [n, ...ctx.inputShape], 'float32');
  const t = needTeacher ? tf.tensor2d(batch.tView(), [n, k], 'float32') : null;
  const y = needLabels ? tf.tensor1d(batch.yView(), 'int32') : null;
  let logits: tf.Tensor | null = null;
  const vars = ctx.model.trainableWeights.map((w) => w.read() as tf.Variable);
  try {
    const cost = ctx.optimizer.minimize(() => {
      const zs = ctx.model.apply(x, { training: true }) as tf.Tensor2D;
      logits = tf.keep(zs);
      return distillationLoss(zs, t, y, ctx.loss);
    }, true, vars);
    const raw = cost!.dataSync()[0];
    cost!.dispose();
    const value = checkedLoss(ctx, raw);
    const zs = (logits as unknown as tf.Tensor).dataSync() as Float32Array;
    metrics.add(zs, batch.logitsWidth > 0 ? batch.t : null, batch.y, n, k);
    metrics.addLoss(value, n);
    return value;
  } finally {
    tf.dispose([x, ...(t ? [t] : []), ...(y ? [y] : []), ...(logits ? [logits as tf.Tensor] : [])]);
  }
}

function checkedLoss(ctx: StepContext, value: number): number {
  if (!Number.isFinite(value)) {
    throw new UserError(`the loss became ${value} at a training step; lower --lr (now ${(ctx.optimizer as unknown as { learningRate: number }).learningRate}) or --temperature`);
  }
  return value;
}

function checkLabels(batch: ExampleTable, k: number): void {
  for (let i = 0; i < batch.length; i++) {
    const label = batch.y[i];
    if (!(label >= 0 && label < k)) {
      throw new UserError(label < 0
        ? `row ${batch.row[i]} has no label but --alpha < 1 needs one for every example; use --alpha 1 or complete the labels`
        : `row ${batch.row[i]} has label ${label}, outside the teacher's ${k} classes [0, ${k - 1}]; check the labels file`);
    }
  }
}

export interface EpochResult {
  metrics: MetricValues;
  seconds: number;
  examples: number;
}

export async function trainEpoch(
  ctx: StepContext,
  source: ChunkSource,
  order: readonly number[],
  stream: StreamOptions,
  onBatch?: (examplesSoFar: number, loss: number) => void,
): Promise<EpochResult> {
  const metrics = new MetricsAccumulator();
  const start = performance.now();
  let examples = 0;
  try {
    for await (const batch of streamBatches(source, order, stream)) {
      shareCores(source.busy === true);
      const loss = trainStep(ctx, batch, metrics);
      examples += batch.length;
      onBatch?.(examples, loss);
    }
  } finally {
    shareCores(false);
  }
  return { metrics: metrics.values(), seconds: (performance.now() - start) / 1000, examples };
}

/** Forward passes only: accuracy, and agreement/KL when the source has teacher logits. */
export async function evaluate(
  model: tf.LayersModel,
  source: ChunkSource,
  inputShape: number[],
  opts: { batchSize: number; keep?: StreamOptions['keep']; order?: readonly number[] },
): Promise<MetricValues> {
  const metrics = new MetricsAccumulator();
  const order = opts.order ?? [...Array(source.chunks).keys()];
  for await (const batch of streamBatches(source, order, { batchSize: opts.batchSize, shuffleBuffer: 0, keep: opts.keep })) {
    const n = batch.length;
    const out = tf.tidy(() => model.predict(tf.tensor(batch.xView(), [n, ...inputShape], 'float32')) as tf.Tensor);
    const zs = out.dataSync() as Float32Array;
    out.dispose();
    const k = out.shape[out.shape.length - 1]!;
    metrics.add(zs, source.hasTeacher ? batch.t : null, batch.y, n, k);
  }
  return metrics.values();
}
