/**
 * Adam in one kernel call per variable. tfjs's AdamOptimizer spends ~12 elementwise ops per
 * variable per step; each costs a few microseconds of engine bookkeeping whatever its size, which
 * adds up to a millisecond or more per step for a small student. This optimizer is tfjs's Adam
 * (same class, same state, same checkpoints) with the update fused: the arithmetic is the same
 * float32 operations in the same order, so results are bit-identical to tf.train.adam.
 * The fused kernel is registered for the cpu backend (a JS loop, much faster than the cpu backend's
 * separate ops) and for 'native' (C++, native.ts); elsewhere the optimizer uses tfjs's update.
 */
import * as tf from '@tensorflow/tfjs';
import { type KernelFn, type WasmBackend, heapF32, offsetOf } from './wasm-heap.js';

export const ADAM_KERNEL = 'KdcacheAdamUpdate';

export interface AdamAttrs {
  beta1: number;
  beta2: number;
  /** -learningRate */
  negLr: number;
  epsilon: number;
  /** 1 - beta1^t and 1 - beta2^t, float32 as tfjs computes them */
  oneMinusAcc1: number;
  oneMinusAcc2: number;
}

const f = Math.fround;

/**
 * One Adam step over n elements, written to the outputs (may not alias inputs). Every operation
 * rounds to float32 exactly as tfjs's ops do: m' = m*b1 + g*(1-b1); v' = v*b2 + g^2*(1-b2);
 * w' = (m'/(1-b1^t)) / (sqrt(v'/(1-b2^t)) + eps) * -lr + w.
 */
export function adamUpdate(
  n: number, a: AdamAttrs,
  w: Float32Array, wOff: number, m: Float32Array, mOff: number, v: Float32Array, vOff: number, g: Float32Array, gOff: number,
  wOut: Float32Array, wOutOff: number, mOut: Float32Array, mOutOff: number, vOut: Float32Array, vOutOff: number,
): void {
  const b1 = f(a.beta1);
  const c1 = f(1 - a.beta1);
  const b2 = f(a.beta2);
  const c2 = f(1 - a.beta2);
  const d1 = f(a.oneMinusAcc1);
  const d2 = f(a.oneMinusAcc2);
  const eps = f(a.epsilon);
  const lr = f(a.negLr);
  for (let i = 0; i < n; i++) {
    const gi = g[gOff + i];
    const m1 = f(f(m[mOff + i] * b1) + f(gi * c1));
    const v1 = f(f(v[vOff + i] * b2) + f(f(gi * gi) * c2));
    const step = f(f(f(m1 / d1) / f(f(Math.sqrt(f(v1 / d2))) + eps)) * lr);
    wOut[wOutOff + i] = f(step + w[wOff + i]);
    mOut[mOutOff + i] = m1;
    vOut[vOutOff + i] = v1;
  }
}

interface CpuBackend {
  data: { get(dataId: object): { values: Float32Array } };
  makeTensorInfo(shape: number[], dtype: tf.DataType, values: Float32Array): tf.TensorInfo;
}

const cpuAdam = (args: { inputs: Record<string, tf.TensorInfo | undefined>; backend: unknown; attrs: Record<string, unknown> }) => {
  const b = args.backend as CpuBackend;
  const { w, m, v, g } = args.inputs as Record<string, tf.TensorInfo>;
  const n = w.shape.reduce((p, q) => p * q, 1);
  const outs = [new Float32Array(n), new Float32Array(n), new Float32Array(n)];
  const val = (t: tf.TensorInfo) => b.data.get(t.dataId).values;
  adamUpdate(n, args.attrs as unknown as AdamAttrs, val(w), 0, val(m), 0, val(v), 0, val(g), 0, outs[0], 0, outs[1], 0, outs[2], 0);
  return outs.map((o) => b.makeTensorInfo(w.shape.slice(), 'float32', o));
};

/** The wasm kernel: reads and writes the heap in place. `native` runs the loop in C++ instead. */
export function wasmAdamKernel(native?: (n: number, a: AdamAttrs, heap: Float32Array, offsets: Int32Array | number[]) => void): KernelFn {
  return (args) => {
    const backend = args.backend as WasmBackend;
    const { w, m, v, g } = args.inputs as Record<string, tf.TensorInfo>;
    const n = w.shape.reduce((p, q) => p * q, 1);
    const outs = [0, 1, 2].map(() => backend.makeOutput(w.shape.slice(), 'float32'));
    const heap = heapF32(backend);
    const attrs = args.attrs as unknown as AdamAttrs;
    const off = [w, m, v, g, ...outs].map((t) => offsetOf(backend, t));
    if (native) native(n, attrs, heap, off);
    else adamUpdate(n, attrs, heap, off[0], heap, off[1], heap, off[2], heap, off[3], heap, off[4], heap, off[5], heap, off[6]);
    return outs as unknown as tf.TensorInfo;
  };
}

/** Register the fused update for `backendName` ('cpu': the JS loop; 'wasm': `wasmKernel`); idempotent. */
export function registerAdamKernel(backendName: 'cpu' | 'wasm', wasmKernel?: KernelFn): void {
  const kernelFunc = backendName === 'cpu' ? cpuAdam : wasmKernel ?? wasmAdamKernel();
  if (tf.getKernel(ADAM_KERNEL, backendName)) tf.unregisterKernel(ADAM_KERNEL, backendName);
  tf.registerKernel({ kernelName: ADAM_KERNEL, backendName, kernelFunc: kernelFunc as unknown as tf.KernelFunc });
}

export function unregisterAdamKernel(backendName: 'cpu' | 'wasm'): void {
  if (tf.getKernel(ADAM_KERNEL, backendName)) tf.unregisterKernel(ADAM_KERNEL, backendName);
}

type Moment = { originalName: string; variable: tf.Variable };

/** tf.train.adam with the fused update where the backend has it. */
export class FusedAdam extends tf.AdamOptimizer {
  override applyGradients(variableGradients: Parameters<tf.AdamOptimizer['applyGradients']>[0]): void {
    if (!tf.getKernel(ADAM_KERNEL, tf.getBackend())) {
      super.applyGradients(variableGradients);
      return;
    }
    const self = this as unknown as {
      accumulatedFirstMoment: Moment[]; accumulatedSecondMoment: Moment[]; accBeta1: tf.Variable; accBeta2: tf.Variable;
      incrementIterations(): void;
    };
    const names = Array.isArray(variableGradients) ? variableGradients.map((v) => v.name) : Object.keys(variableGradients);
    const acc1 = self.accBeta1.dataSync()[0];
    const acc2 = self.accBeta2.dataSync()[0];
    const attrs: AdamAttrs = {
      beta1: this.beta1, beta2: this.beta2, negLr: -this.learningRate, epsilon: this.epsilon,
      oneMinusAcc1: f(1 - acc1), oneMinusAcc2: f(1 - acc2),
    };
    tf.tidy(() => {
      names.forEach((name, i) => {
        const value = tf.engine().registeredVariables[name];
        self.accumulatedFirstMoment[i] ??= { originalName: `${name}/m`, variable: tf.tidy(() => tf.zerosLike(value).variable(false)) };
        self.accumulatedSecondMoment[i] ??= { originalName: `${name}/v`, variable: tf.tidy(() => tf.zerosLike(value).variable(false)) };
        const gradient = Array.isArray(variableGradients) ? variableGradients[i].tensor : variableGradients[name];
        if (gradient == null) return;
        const m = self.accumulatedFirstMoment[i].variable;
        const v = self.accumulatedSecondMoment[i].variable;
        const [w1, m1, v1] = tf.engine().runKernel(ADAM_KERNEL, { w: value, m, v, g: gradient }, attrs as unknown as tf.NamedAttrMap) as tf.Tensor[];
        m.assign(m1);
        v.assign(v1);
        value.assign(w1);
      });
      // float32 products, as tfjs's mul computes them
      self.accBeta1.assign(tf.scalar(f(acc1 * f(this.beta1))));
      self.accBeta2.assign(tf.scalar(f(acc2 * f(this.beta2))));
    });
    self.incrementIterations();
  }
}
