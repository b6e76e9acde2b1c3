/**
 * The whole training step of an MLP student (Dense layers with ReLU, linear logits) in one call to
 * the native addon: forward, the distillation loss, backward and Adam. For a small student tfjs's
 * per-op bookkeeping in JavaScript costs about a third of a step on the native backend; this skips
 * it. Same maths as tf-losses.ts, tfjs's Dense gradients and kernels/adam.ts (float32 Adam in tfjs's
 * order, same optimizer state, so checkpoints and --resume are unchanged); only summation orders
 * differ. Used when the backend is 'native' and the student, loss and optimizer fit; KDCACHE_FUSED=0
 * turns it off.
 */
import * as tf from '@tensorflow/tfjs';
import type { ExampleTable } from '../examples.js';
import type { LossParams } from '../losses.js';
import type { MetricsAccumulator } from '../metrics.js';
import { activeNativeAddon } from '../wasm-kernels.js';
import { FusedAdam } from './adam.js';
import { type WasmBackend, heapF32, offsetOf } from './wasm-heap.js';

/** One step on `batch`; accumulates metrics and returns the batch loss. */
export type FusedStep = (batch: ExampleTable, metrics: MetricsAccumulator) => number;

interface Moment { originalName: string; variable: tf.Variable }
interface AdamState {
  accumulatedFirstMoment: Moment[]; accumulatedSecondMoment: Moment[]; accBeta1: tf.Variable; accBeta2: tf.Variable;
  beta1: number; beta2: number; epsilon: number; learningRate: number;
  incrementIterations(): void;
}

const f = Math.fround;

/** The layer sizes [d0, d1, ..., dL] when `model` is a plain ReLU MLP with biases, else null. */
function mlpDims(model: tf.LayersModel): number[] | null {
  const shape = model.inputs[0]?.shape;
  if (!shape || shape.length !== 2 || typeof shape[1] !== 'number') return null;
  const dims = [shape[1]];
  const layers = model.layers;
  for (let l = 0; l < layers.length; l++) {
    const layer = layers[l];
    if (layer.getClassName() !== 'Dense') return null;
    const cfg = layer.getConfig() as { useBias?: boolean; activation?: string; units?: number };
    const last = l === layers.length - 1;
    if (!cfg.useBias || cfg.activation !== (last ? 'linear' : 'relu')) return null;
    const w = layer.trainableWeights;
    if (w.length !== 2 || w[0].shape.length !== 2 || w[0].shape[0] !== dims[dims.length - 1]) return null;
    dims.push(w[0].shape[1]!);
  }
  return layers.length > 0 ? dims : null;
}

export function fusedMlpStep(model: tf.LayersModel, optimizer: tf.Optimizer, loss: LossParams): FusedStep | null {
  const native = activeNativeAddon();
  if (!native || process.env.KDCACHE_FUSED === '0' || tf.getBackend() !== 'wasm') return null;
  // Not instanceof: tfjs optimizers define Symbol.hasInstance so that any optimizer passes it.
  if (!FusedAdam.prototype.isPrototypeOf(optimizer) || loss.kind !== 'kd' || (loss.alpha > 0 && loss.tail === 'bucket')) return null;
  const dims = mlpDims(model);
  if (!dims) return null;
  // The same variables, in the same order, as trainStep passes to the optimizer.
  const vars = model.trainableWeights.map((w) => w.read() as tf.Variable);
  if (vars.length !== 2 * (dims.length - 1)) return null;
  const adam = optimizer as unknown as AdamState;
  const L = dims.length - 1;
  const dimsArg = Int32Array.from([L, ...dims]);
  const offsets = new Int32Array(6 * L);
  const params = new Float64Array(10);
  const stats = new Float64Array(5);

  return (batch, metrics) => {
    const n = batch.length;
    vars.forEach((value, i) => {
      adam.accumulatedFirstMoment[i] ??= { originalName: `${value.name}/m`, variable: tf.tidy(() => tf.zerosLike(value).variable(false)) };
      adam.accumulatedSecondMoment[i] ??= { originalName: `${value.name}/v`, variable: tf.tidy(() => tf.zerosLike(value).variable(false)) };
    });
    const backend = tf.backend() as unknown as WasmBackend;
    for (let l = 0; l < L; l++) {
      const [k, b] = [2 * l, 2 * l + 1];
      const m = adam.accumulatedFirstMoment;
      const v = adam.accumulatedSecondMoment;
      offsets.set([vars[k], vars[b], m[k].variable, v[k].variable, m[b].variable, v[b].variable].map((t) => offsetOf(backend, t)), 6 * l);
    }
    const acc1 = adam.accBeta1.dataSync()[0];
    const acc2 = adam.accBeta2.dataSync()[0];
    params.set([loss.alpha, loss.temperature, adam.beta1, 1 - adam.beta1, adam.beta2, 1 - adam.beta2, f(1 - acc1), f(1 - acc2), adam.epsilon, -adam.learningRate]);
    const teacher = batch.logitsWidth > 0 ? batch.tView() : null;
    const value = native.mlpStep(heapF32(backend), dimsArg, offsets, batch.xView(), teacher,
      batch.yView(), n, params, stats);
    tf.tidy(() => {
      adam.accBeta1.assign(tf.scalar(f(acc1 * f(adam.beta1))));
      adam.accBeta2.assign(tf.scalar(f(acc2 * f(adam.beta2))));
    });
    adam.incrementIterations();
    // The step computed the metrics too, on both threads (metrics.ts's rules).
    metrics.addTotals(n, stats[0], stats[1], stats[2], stats[3], stats[4]);
    metrics.addLoss(value, n);
    return value;
  };
}
