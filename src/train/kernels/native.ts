/**
 * Native kernels for the wasm backend: matrix products and convolutions run on the machine's
 * BLAS through a small N-API addon (native/kdcache_native.cc, built by `npm run build` when a C++
 * compiler is present; OpenBLAS is opened at run time). Tensors stay in the wasm heap: the addon
 * reads and writes them in place, synchronously, on all cores. Everything else (elementwise ops,
 * reductions, pooling, the optimizer) stays on wasm.
 *
 * Whatever a native kernel does not handle (NCHW, prelu, non-float32, unusual broadcasting) goes
 * to the pure wasm kernel it replaces, so registering these never loses an op.
 */
import * as tf from '@tensorflow/tfjs';
import { type AddonBase, loadAddon } from '../../util/addon.js';
import { usableCpus } from '../../util/cpus.js';
import { wasmAdamKernel } from './adam.js';
import { RELU_GRAD_KERNEL } from './relu-grad.js';
import { type ConvAttrs, type ConvDims, convDims, convOutShape } from './conv-dims.js';
import { type PoolAttrs, poolDims } from './pool.js';
import { leadingSplit } from './reduce.js';
import { type KernelArgs, type KernelFn, type TensorInfo, heapF32, offsetOf, size } from './wasm-heap.js';

export interface NativeAddon extends AddonBase {
  load(library: string, threads: number): { blas: string; config: string; threads: number; loopThreads: number };
  sgemm(ta: boolean, tb: boolean, m: number, n: number, k: number, alpha: number,
    a: Float32Array, aOff: number, lda: number, b: Float32Array, bOff: number, ldb: number,
    beta: number, c: Float32Array, cOff: number, ldc: number): void;
  conv(kind: number, x: Float32Array, xOff: number, w: Float32Array, wOff: number, y: Float32Array, yOff: number, dims: Int32Array): void;
  epilogue(y: Float32Array, yOff: number, rows: number, cols: number, bias: Float32Array | null, biasOff: number, act: number, alpha: number): void;
  maxPoolBackprop(x: Float32Array, xOff: number, dy: Float32Array, dyOff: number, dx: Float32Array, dxOff: number, dims: Int32Array): void;
  columnSums(x: Float32Array, xOff: number, rows: number, cols: number, y: Float32Array, yOff: number): void;
  adam(heap: Float32Array, offsets: Int32Array, n: number, b1: number, c1: number, b2: number, c2: number, d1: number, d2: number, eps: number, negLr: number): void;
  elementwise(op: number, x: Float32Array, xOff: number, n: number, b: Float32Array | null, bOff: number, bn: number, y: Float32Array, yOff: number, alpha: number): void;
  maxPool(x: Float32Array, xOff: number, y: Float32Array, yOff: number, dims: Int32Array): void;
  /**
   * Threads for the BLAS and the loops from now on, at most load's count (0 restores it); returns
   * the count in effect.
   */
  computeThreads(n: number): number;
  /** one Adam step of an MLP student, in place in the heap; returns the batch loss (fused-mlp.ts) */
  mlpStep(heap: Float32Array, dims: Int32Array, offsets: Int32Array, x: Float32Array, t: Float32Array | null, y: Int32Array | null,
    n: number, params: Float64Array, stats: Float64Array): number;
}

/**
 * Elementwise ops move to native code only on large tensors (the activations of convolutional
 * layers), where using every core pays for the call; small ones stay on wasm.
 */
const ELEMENTWISE_MIN = 1 << 17;

/** For a binary op on a and b: which operand is the full-size one, and how often the other repeats. */
function broadcastPlan(a: TensorInfo, b: TensorInfo): { big: TensorInfo; small: TensorInfo; swapped: boolean; shape: number[] } | null {
  let shape: number[];
  try {
    shape = tf.backend_util.assertAndGetBroadcastShape(a.shape, b.shape);
  } catch {
    return null;
  }
  const n = size(shape);
  // t repeats contiguously over the output when, leading 1s dropped, it is the output's trailing dims
  const suffixOf = (t: TensorInfo) => {
    const first = t.shape.findIndex((d) => d !== 1);
    const inner = first < 0 ? [] : t.shape.slice(first);
    return inner.length <= shape.length && inner.every((d, i) => d === shape[shape.length - inner.length + i]);
  };
  if (size(a.shape) === n && sameShape(a.shape, shape) && suffixOf(b)) return { big: a, small: b, swapped: false, shape };
  if (size(b.shape) === n && sameShape(b.shape, shape) && suffixOf(a)) return { big: b, small: a, swapped: true, shape };
  return null;
}

/** The fused Adam update (kernels/adam.ts) on the native side: same float32 arithmetic, all cores. */
export function nativeAdam(native: NativeAddon): KernelFn {
  const offsets = new Int32Array(7);
  return wasmAdamKernel((n, a, heap, off) => {
    offsets.set(off);
    native.adam(heap, offsets, n, a.beta1, 1 - a.beta1, a.beta2, 1 - a.beta2, a.oneMinusAcc1, a.oneMinusAcc2, a.epsilon, a.negLr);
  });
}

export interface NativeInfo {
  addon: NativeAddon;
  file: string;
  /** the shared library that provides BLAS, e.g. libopenblas.so.0 */
  blas: string;
  /** OpenBLAS's build description (version, kernel set) */
  config: string;
  /** the addon's pool: every product and loop is cut across it; the BLAS itself runs single-threaded */
  threads: number;
}

export type NativeLoad = { ok: true; info: NativeInfo } | { ok: false; reason: string };

let loaded: NativeLoad | null = null;

const CORES = usableCpus();

/**
 * Load the addon and its BLAS once per process. KDCACHE_NATIVE=0 disables it; KDCACHE_BLAS names
 * another BLAS library; KDCACHE_THREADS sets the thread count (default: all cores).
 */
export function loadNative(): NativeLoad {
  if (loaded) return loaded;
  const base = loadAddon<NativeAddon>();
  if (!base.ok) return (loaded = base);
  const { addon, file } = base;
  try {
    const threads = Number(process.env.KDCACHE_THREADS) || CORES;
    const r = addon.load(process.env.KDCACHE_BLAS ?? '', threads);
    return (loaded = { ok: true, info: { addon, file, blas: r.blas, config: r.config, threads: r.threads } });
  } catch (err) {
    const message = (err instanceof Error ? err.message : String(err)).split('\n')[0];
    return (loaded = { ok: false, reason: /BLAS/.test(message) ? `${message}; install OpenBLAS (apt-get install libopenblas0-pthread)` : message });
  }
}

let computing = 0;

/**
 * While another thread of this process is busy (train-student's shard decoder), the products and
 * loops run on one thread fewer when they would otherwise want every core. Work is split statically
 * and joined, so a thread that loses its core stalls every step: measured, 1.9 ms MLP steps took
 * 8-17 ms while a shard was decoded, against 3.1 ms on one thread. The work is cut the same way
 * whatever the count, so results do not change. No-op unless the native kernels are loaded.
 */
export function shareCores(busy: boolean): void {
  if (!loaded?.ok || loaded.info.threads < 2) return;
  const { addon, threads } = loaded.info;
  const want = busy && threads >= CORES ? threads - 1 : threads;
  if (want !== (computing || threads)) computing = addon.computeThreads(want);
}

const ACTIVATIONS: Record<string, number> = { linear: 0, relu: 1, relu6: 2, leakyrelu: 3, sigmoid: 4, elu: 5 };

/** Activation code for the epilogue, or -1 when the native side does not implement it. */
function activationCode(attrs: Record<string, unknown>, inputs: KernelArgs['inputs']): number {
  if (inputs.preluActivationWeights) return -1;
  const name = (attrs.activation as string | undefined) ?? 'linear';
  return ACTIVATIONS[name] ?? -1;
}

/** A bias the epilogue can add: one value per output channel (shape [n], [1, n], ...). */
function channelBias(bias: TensorInfo | undefined, n: number): boolean {
  return !bias || (bias.dtype === 'float32' && size(bias.shape) === n && bias.shape[bias.shape.length - 1] === n);
}

/**
 * The native kernels, each falling back to `pure[name]` (the pure wasm kernel) for what it does
 * not handle.
 */
export function nativeKernels(native: NativeAddon, pure: Record<string, KernelFn>): Record<string, KernelFn> {
  const matmul = (fused: boolean): KernelFn => (args) => {
    const fallback = pure[fused ? '_FusedMatMul' : 'BatchMatMul'];
    const { inputs, backend, attrs } = args;
    const a = inputs.a!;
    const b = inputs.b!;
    const ta = Boolean(attrs.transposeA);
    const tb = Boolean(attrs.transposeB);
    const act = fused ? activationCode(attrs, inputs) : 0;
    if (a.dtype !== 'float32' || b.dtype !== 'float32' || act < 0 || a.shape.length < 2 || b.shape.length < 2) return fallback(args);
    const ra = a.shape.length;
    const rb = b.shape.length;
    const [m, k] = ta ? [a.shape[ra - 1], a.shape[ra - 2]] : [a.shape[ra - 2], a.shape[ra - 1]];
    const [k2, n] = tb ? [b.shape[rb - 1], b.shape[rb - 2]] : [b.shape[rb - 2], b.shape[rb - 1]];
    const batchA = size(a.shape.slice(0, -2));
    const batchB = size(b.shape.slice(0, -2));
    if (k !== k2 || !(batchA === batchB || batchA === 1 || batchB === 1)) return fallback(args);
    let outBatch: number[];
    try {
      outBatch = tf.backend_util.assertAndGetBroadcastShape(a.shape.slice(0, -2), b.shape.slice(0, -2));
    } catch {
      return fallback(args);
    }
    const batch = Math.max(batchA, batchB);
    const bias = fused ? inputs.bias : undefined;
    if (size(outBatch) !== batch || !channelBias(bias, n) || m * n === 0) return fallback(args);
    const out = backend.makeOutput([...outBatch, m, n], 'float32');
    const heap = heapF32(backend);
    const aOff = offsetOf(backend, a);
    const bOff = offsetOf(backend, b);
    const oOff = offsetOf(backend, out);
    const lda = a.shape[ra - 1];
    const ldb = b.shape[rb - 1];
    for (let i = 0; i < batch; i++) {
      native.sgemm(ta, tb, m, n, k, 1, heap, aOff + (batchA === 1 ? 0 : i * m * k), lda, heap, bOff + (batchB === 1 ? 0 : i * k * n), ldb, 0, heap, oOff + i * m * n, n);
    }
    if (bias || act !== 0) native.epilogue(heap, oOff, batch * m, n, bias ? heap : null, bias ? offsetOf(backend, bias) : 0, act, Number(attrs.leakyreluAlpha ?? 0.2));
    return out;
  };

  /** Forward convolution (kind 0 regular, 3 depthwise), optionally fused with bias + activation. */
  const forward = (kind: 0 | 3, name: string, fused: boolean): KernelFn => (args) => {
    const { inputs, backend, attrs } = args;
    const x = inputs.x!;
    const filter = inputs.filter!;
    const act = fused ? activationCode(attrs, inputs) : 0;
    const d = floatInputs(x, filter) && act >= 0 ? convDims(x.shape, filter.shape, attrs as unknown as ConvAttrs, kind === 3) : null;
    if (!d || !nonEmpty(d) || !channelBias(fused ? inputs.bias : undefined, d[6])) return pure[name](args);
    const out = backend.makeOutput(convOutShape(d), 'float32');
    const heap = heapF32(backend);
    const oOff = offsetOf(backend, out);
    native.conv(kind, heap, offsetOf(backend, x), heap, offsetOf(backend, filter), heap, oOff, d);
    const bias = fused ? inputs.bias : undefined;
    if (bias || act !== 0) native.epilogue(heap, oOff, d[0] * d[4] * d[5], d[6], bias ? heap : null, bias ? offsetOf(backend, bias) : 0, act, Number(attrs.leakyreluAlpha ?? 0.2));
    return out;
  };

  /** dL/dx (kind 1 regular, 4 depthwise): inputs dy and filter, attrs.inputShape. */
  const backpropInput = (kind: 1 | 4, name: string): KernelFn => (args) => {
    const { inputs, backend, attrs } = args;
    const dy = inputs.dy!;
    const filter = inputs.filter!;
    const inputShape = attrs.inputShape as number[];
    const d = floatInputs(dy, filter) ? convDims(inputShape, filter.shape, { ...(attrs as unknown as ConvAttrs), dilations: (attrs.dilations as ConvAttrs['dilations']) ?? 1 }, kind === 4) : null;
    if (!d || !nonEmpty(d) || !sameShape(convOutShape(d), dy.shape)) return pure[name](args);
    const out = backend.makeOutput(inputShape.slice(), 'float32');
    const heap = heapF32(backend);
    native.conv(kind, heap, offsetOf(backend, out), heap, offsetOf(backend, filter), heap, offsetOf(backend, dy), d);
    return out;
  };

  /** dL/dfilter (kind 2 regular, 5 depthwise): inputs x and dy, attrs.filterShape. */
  const backpropFilter = (kind: 2 | 5, name: string): KernelFn => (args) => {
    const { inputs, backend, attrs } = args;
    const x = inputs.x!;
    const dy = inputs.dy!;
    const filterShape = attrs.filterShape as number[];
    const d = floatInputs(x, dy) ? convDims(x.shape, filterShape, { ...(attrs as unknown as ConvAttrs), dilations: (attrs.dilations as ConvAttrs['dilations']) ?? 1 }, kind === 5) : null;
    if (!d || !nonEmpty(d) || !sameShape(convOutShape(d), dy.shape)) return pure[name](args);
    const out = backend.makeOutput(filterShape.slice(), 'float32');
    const heap = heapF32(backend);
    native.conv(kind, heap, offsetOf(backend, x), heap, offsetOf(backend, out), heap, offsetOf(backend, dy), d);
    return out;
  };

  const maxPoolGrad: KernelFn = (args) => {
    const { inputs, backend, attrs } = args;
    const dy = inputs.dy!;
    const x = inputs.input!;
    // positions within an image are int32 on the native side
    if (x.dtype !== 'float32' || dy.dtype !== 'float32' || x.shape.length !== 4 || size(x.shape) === 0 || size(x.shape.slice(1)) >= 2 ** 31) return pure.MaxPoolGrad(args);
    const d = poolDims(x.shape, attrs as unknown as PoolAttrs);
    const out = backend.makeOutput(x.shape.slice(), 'float32');
    const heap = heapF32(backend);
    native.maxPoolBackprop(heap, offsetOf(backend, x), heap, offsetOf(backend, dy), heap, offsetOf(backend, out), d);
    return out;
  };

  const sum: KernelFn = (args) => {
    const split = leadingSplit(args);
    if (!split) return pure.Sum(args);
    const out = args.backend.makeOutput(split.outShape, 'float32');
    const heap = heapF32(args.backend);
    native.columnSums(heap, offsetOf(args.backend, args.inputs.x!), split.rows, split.cols, heap, offsetOf(args.backend, out));
    return out;
  };

  const binary = (op: 0 | 1 | 2, name: string): KernelFn => (args) => {
    const { a, b } = args.inputs as Record<string, TensorInfo>;
    const plan = a.dtype === 'float32' && b.dtype === 'float32' ? broadcastPlan(a, b) : null;
    // subtraction is not commutative: only a - (broadcast b)
    if (!plan || size(plan.shape) < ELEMENTWISE_MIN || (op === 2 && plan.swapped)) return pure[name](args);
    const out = args.backend.makeOutput(plan.shape, 'float32');
    const heap = heapF32(args.backend);
    native.elementwise(op, heap, offsetOf(args.backend, plan.big), size(plan.shape), heap, offsetOf(args.backend, plan.small), size(plan.small.shape), heap, offsetOf(args.backend, out), 0);
    return out;
  };
  const unary = (op: 3 | 4, name: string): KernelFn => (args) => {
    const x = args.inputs.x!;
    if (x.dtype !== 'float32' || size(x.shape) < ELEMENTWISE_MIN) return pure[name](args);
    const out = args.backend.makeOutput(x.shape.slice(), 'float32');
    const heap = heapF32(args.backend);
    native.elementwise(op, heap, offsetOf(args.backend, x), size(x.shape), null, 0, 0, heap, offsetOf(args.backend, out), Number(args.attrs?.alpha ?? 0));
    return out;
  };
  const maxPool: KernelFn = (args) => {
    const x = args.inputs.x!;
    if (x.dtype !== 'float32' || x.shape.length !== 4 || size(x.shape) === 0) return pure.MaxPool(args);
    const d = poolDims(x.shape, args.attrs as unknown as PoolAttrs);
    const out = args.backend.makeOutput([d[0], d[4], d[5], d[3]], 'float32');
    const heap = heapF32(args.backend);
    native.maxPool(heap, offsetOf(args.backend, x), heap, offsetOf(args.backend, out), d);
    return out;
  };

  const reluGrad: KernelFn = (args) => {
    const { dy, x } = args.inputs as Record<string, TensorInfo>;
    const out = args.backend.makeOutput(x.shape.slice(), 'float32');
    const heap = heapF32(args.backend);
    native.elementwise(5, heap, offsetOf(args.backend, x), size(x.shape), heap, offsetOf(args.backend, dy), size(dy.shape), heap, offsetOf(args.backend, out), 0);
    return out;
  };

  return {
    [RELU_GRAD_KERNEL]: reluGrad,
    Add: binary(0, 'Add'),
    Multiply: binary(1, 'Multiply'),
    Sub: binary(2, 'Sub'),
    Relu: unary(3, 'Relu'),
    Step: unary(4, 'Step'),
    MaxPool: maxPool,
    Sum: sum,
    MaxPoolGrad: maxPoolGrad,
    BatchMatMul: matmul(false),
    _FusedMatMul: matmul(true),
    Conv2D: forward(0, 'Conv2D', false),
    FusedConv2D: forward(0, 'FusedConv2D', true),
    Conv2DBackpropInput: backpropInput(1, 'Conv2DBackpropInput'),
    Conv2DBackpropFilter: backpropFilter(2, 'Conv2DBackpropFilter'),
    DepthwiseConv2dNative: forward(3, 'DepthwiseConv2dNative', false),
    FusedDepthwiseConv2D: forward(3, 'FusedDepthwiseConv2D', true),
    DepthwiseConv2dNativeBackpropInput: backpropInput(4, 'DepthwiseConv2dNativeBackpropInput'),
    DepthwiseConv2dNativeBackpropFilter: backpropFilter(5, 'DepthwiseConv2dNativeBackpropFilter'),
  };
}

function floatInputs(...xs: TensorInfo[]): boolean {
  return xs.every((x) => x.dtype === 'float32' && x.shape.length === 4);
}

function nonEmpty(d: ConvDims): boolean {
  return d.every((v, i) => i >= 13 || v > 0);
}

function sameShape(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((v, i) => v === b[i]);
}
