/**
 * Kernel replacements for the tfjs wasm backend (tfjs 4.22.0; these use backend internals, so the
 * version is pinned and the kernels are tested against the cpu backend). Three sets:
 *
 *  - 'stock': wasm as shipped, plus the gradients it lacks (below), without which convolutional
 *    students cannot train at all. For benchmarks.
 *  - 'wasm' (pure wasm, always available): 'stock' plus BatchMatMul / _FusedMatMul with a transpose
 *    flag computed as explicit transpose + plain kernel. Backprop through a dense layer is dominated
 *    by transposed products, which wasm runs ~10x slower than plain ones; this also avoids the
 *    shipped fused kernel's wrong results for transpose + bias.
 *  - 'native': matrix products and convolutions on the machine's BLAS (kernels/native.ts), all
 *    cores; what those do not handle goes to the 'wasm' kernels.
 *
 * In 'wasm' and 'native', also: Identity and same-dtype Cast share the input's memory instead of
 * copying it (as the cpu backend does); Sum over leading axes (bias gradients) is a pass of column
 * sums instead of a transpose + reduction (kernels/reduce.ts); MaxPoolGrad scans each window once
 * (kernels/pool.ts; the shipped kernel re-scans windows per input element); Conv2DBackpropInput is
 * one plain matrix product dCol = dY * W^T on wasm and a col2im pass (the shipped kernel is a
 * direct loop several times slower).
 *
 * 'native' also registers relu's gradient as one kernel (kernels/relu-grad.ts) and the fused Adam
 * update (kernels/adam.ts, native code). Pure wasm keeps tfjs's Adam, whose SIMD elementwise ops
 * are as fast as a JS loop over the heap.
 *
 * Missing from tfjs-backend-wasm and provided in every set:
 *  - Conv2DBackpropFilter: im2col + one plain matrix product on wasm, dW[r, co] = P^T[r, m] * dY[m, co]
 *    with r = (fh, fw, ci) and m = (b, oh, ow); P^T is built directly in transposed form, so the
 *    product needs no transpose flag.
 *  - DepthwiseConv2dNativeBackpropInput / Filter: loops over the heap (kernels/depthwise.ts).
 */
import * as tf from '@tensorflow/tfjs';
import { type ConvAttrs, convDims } from './kernels/conv-dims.js';
import { depthwiseBackpropFilter, depthwiseBackpropInput } from './kernels/depthwise.js';
import { registerAdamKernel, unregisterAdamKernel } from './kernels/adam.js';
import { type NativeAddon, nativeAdam, nativeKernels } from './kernels/native.js';
import { type PoolAttrs, maxPoolBackprop, poolDims } from './kernels/pool.js';
import { columnSums, leadingSplit } from './kernels/reduce.js';
import { RELU_GRAD_KERNEL, installReluGradient } from './kernels/relu-grad.js';
import { lastTwoSwap, transposeLastTwo } from './kernels/transpose.js';
import { type KernelArgs, type KernelFn, type TensorInfo, heapF32, offsetOf } from './kernels/wasm-heap.js';

export type WasmKernelSet = 'stock' | 'wasm' | 'native';

const REPLACEABLE = [
  RELU_GRAD_KERNEL, 'Transpose', 'BatchMatMul', '_FusedMatMul', 'Conv2D', 'FusedConv2D', 'Conv2DBackpropInput', 'Conv2DBackpropFilter',
  'DepthwiseConv2dNative', 'FusedDepthwiseConv2D', 'DepthwiseConv2dNativeBackpropInput', 'DepthwiseConv2dNativeBackpropFilter',
  'Identity', 'Cast', 'Sum', 'MaxPoolGrad', 'Add', 'Multiply', 'Sub', 'Relu', 'Step', 'MaxPool',
] as const;

let shipped: Record<string, KernelFn | undefined> | null = null;

/** The addon behind the 'native' kernel set while it is installed (the fused MLP step uses it too). */
let activeNative: NativeAddon | null = null;

export function activeNativeAddon(): NativeAddon | null {
  return activeNative;
}

/**
 * Register a kernel set on the wasm backend (call after the backend is set up; calling again with
 * another set switches). Returns the kernels that differ from tfjs-backend-wasm as shipped.
 */
export function configureWasmKernels(set: WasmKernelSet, native?: NativeAddon): string[] {
  shipped ??= Object.fromEntries(REPLACEABLE.map((name) => [name, tf.getKernel(name, 'wasm')?.kernelFunc as unknown as KernelFn | undefined]));
  const { Transpose: transpose, BatchMatMul: batchMatMul, _FusedMatMul: fusedMatMul } = shipped;
  if (!transpose || !batchMatMul || !fusedMatMul) return [];

  const pure: Record<string, KernelFn> = {};
  for (const name of REPLACEABLE) if (shipped[name]) pure[name] = shipped[name]!;
  pure.Conv2DBackpropFilter = shipped.Conv2DBackpropFilter ?? ((args) => conv2DBackpropFilter(args, batchMatMul));
  pure.DepthwiseConv2dNativeBackpropInput = shipped.DepthwiseConv2dNativeBackpropInput ?? depthwiseInputKernel;
  pure.DepthwiseConv2dNativeBackpropFilter = shipped.DepthwiseConv2dNativeBackpropFilter ?? depthwiseFilterKernel;
  if (set !== 'stock') {
    const swap = swapLastTwo(transpose);
    pure.Transpose = swap;
    pure.BatchMatMul = (args) => withExplicitTranspose(args, batchMatMul, swap);
    pure._FusedMatMul = (args) => withExplicitTranspose(args, fusedMatMul, swap);
    pure.Identity = shareIdentity(shipped.Identity!);
    pure.Cast = shareCast(shipped.Cast!);
    pure.MaxPoolGrad = maxPoolGradKernel;
    const shippedInput = shipped.Conv2DBackpropInput!;
    pure.Conv2DBackpropInput = (args) => conv2DBackpropInput(args, shippedInput, batchMatMul, transpose);
  }
  if (set !== 'stock') pure.Sum = leadingAxesSum(shipped.Sum!);
  const kernels = set === 'native' && native ? { ...pure, ...nativeKernels(native, pure) } : pure;
  installReluGradient();
  if (!kernels[RELU_GRAD_KERNEL] && tf.getKernel(RELU_GRAD_KERNEL, 'wasm')) tf.unregisterKernel(RELU_GRAD_KERNEL, 'wasm');
  // Pure wasm keeps tfjs's Adam: its SIMD elementwise ops beat a JS loop over the heap.
  if (set === 'native' && native) registerAdamKernel('wasm', nativeAdam(native));
  else unregisterAdamKernel('wasm');
  activeNative = set === 'native' && native ? native : null;
  const changed: string[] = [];
  for (const name of REPLACEABLE) {
    const fn = kernels[name];
    if (!fn) continue;
    register(name, fn);
    if (fn !== shipped[name]) changed.push(name);
  }
  return changed;
}

/** The pure wasm set (kept for callers of the earlier API); `matmul: false` gives 'stock'. */
export function installWasmKernels(opts: { matmul?: boolean } = {}): string[] {
  return configureWasmKernels(opts.matmul ?? true ? 'wasm' : 'stock');
}

function register(kernelName: string, kernelFunc: KernelFn): void {
  if (tf.getKernel(kernelName, 'wasm')) tf.unregisterKernel(kernelName, 'wasm');
  tf.registerKernel({ kernelName, backendName: 'wasm', kernelFunc: kernelFunc as unknown as tf.KernelFunc });
}

/** Run a matmul kernel with its transpose flags resolved by explicit transposes of the inputs. */
function withExplicitTranspose(args: KernelArgs, kernel: KernelFn, transpose: KernelFn): TensorInfo {
  const { inputs, backend, attrs } = args;
  const ta = Boolean(attrs.transposeA);
  const tb = Boolean(attrs.transposeB);
  if (!ta && !tb) return kernel(args);
  const temps: TensorInfo[] = [];
  const flip = (x: TensorInfo): TensorInfo => {
    const n = x.shape.length;
    const perm = [...Array(n - 2).keys(), n - 1, n - 2];
    const t = transpose({ inputs: { x }, backend, attrs: { perm } });
    temps.push(t);
    return t;
  };
  const a = ta ? flip(inputs.a!) : inputs.a!;
  const b = tb ? flip(inputs.b!) : inputs.b!;
  try {
    return kernel({ inputs: { ...inputs, a, b }, backend, attrs: { ...attrs, transposeA: false, transposeB: false } });
  } finally {
    for (const t of temps) backend.disposeData(t.dataId);
  }
}

function conv2DBackpropFilter(args: KernelArgs, batchMatMul: KernelFn): TensorInfo {
  const { inputs, backend, attrs } = args;
  const x = inputs.x!;
  const dy = inputs.dy!;
  const filterShape = attrs.filterShape as [number, number, number, number];
  const dataFormat = (attrs.dataFormat as string | undefined) ?? 'NHWC';
  if (dataFormat !== 'NHWC') throw new Error(`Conv2DBackpropFilter (wasm replacement): only NHWC is supported, got ${dataFormat}`);
  if (x.dtype !== 'float32' || dy.dtype !== 'float32') throw new Error('Conv2DBackpropFilter (wasm replacement): float32 only');
  const info = tf.backend_util.computeConv2DInfo(
    x.shape as [number, number, number, number], filterShape, attrs.strides as [number, number] | number, 1,
    attrs.pad as 'valid' | 'same' | number, attrs.dimRoundingMode as 'floor' | 'round' | 'ceil' | undefined, false, 'channelsLast');
  const { batchSize: nb, inHeight: ih, inWidth: iw, inChannels: ci, outHeight: oh, outWidth: ow, outChannels: co } = info;
  const { filterHeight: fh, filterWidth: fw, strideHeight: sh, strideWidth: sw } = info;
  const top = info.padInfo.top;
  const left = info.padInfo.left;
  const rows = fh * fw * ci;
  const m = nb * oh * ow;

  const patches = backend.makeOutput([1, rows, m], 'float32');
  try {
    // Views only after an allocation: heap growth detaches older views.
    const p = backend.typedArrayFromHeap(patches);
    const xs = backend.typedArrayFromHeap(x);
    // Tiles of output positions: the tile's input pixels (all channels) stay in cache while each
    // channel's row segment of P^T is written contiguously.
    const TILE = 64;
    const src = new Int32Array(TILE);
    for (let kh = 0; kh < fh; kh++) {
      for (let kw = 0; kw < fw; kw++) {
        const rowBase = (kh * fw + kw) * ci * m;
        // The output position (b, y, xo) of column `col`, advanced with the column: no divisions
        // in the loop (they were most of the cost for one input channel).
        let b = 0;
        let y = 0;
        let xo = 0;
        for (let t0 = 0; t0 < m; t0 += TILE) {
          const t1 = Math.min(m, t0 + TILE);
          for (let col = t0; col < t1; col++) {
            const iy = y * sh + kh - top;
            const ix = xo * sw + kw - left;
            src[col - t0] = iy >= 0 && iy < ih && ix >= 0 && ix < iw ? ((b * ih + iy) * iw + ix) * ci : -1;
            if (++xo === ow) {
              xo = 0;
              if (++y === oh) {
                y = 0;
                b++;
              }
            }
          }
          for (let c = 0; c < ci; c++) {
            const row = rowBase + c * m;
            for (let col = t0; col < t1; col++) {
              const at = src[col - t0];
              p[row + col] = at >= 0 ? xs[at + c] : 0;
            }
          }
        }
      }
    }
    // dY as [1, m, co] in a buffer of its own: wasm caches the packed right-hand side of a product
    // by tensor id, so dy's id must not be reused with another shape.
    const dy3 = backend.makeOutput([1, m, co], 'float32');
    try {
      backend.typedArrayFromHeap(dy3).set(backend.typedArrayFromHeap(dy));
      const out = batchMatMul({ inputs: { a: patches, b: dy3 }, backend, attrs: { transposeA: false, transposeB: false } });
      out.shape = filterShape.slice();
      return out;
    } finally {
      backend.disposeData(dy3.dataId);
    }
  } finally {
    backend.disposeData(patches.dataId);
  }
}

function depthwiseDims(args: KernelArgs, xShape: number[], filterShape: number[]) {
  const attrs = args.attrs as unknown as ConvAttrs;
  const d = convDims(xShape, filterShape, { ...attrs, dilations: attrs.dilations ?? 1 }, true);
  if (!d) throw new Error('depthwise convolution gradient (wasm replacement): only NHWC is supported');
  return d;
}

const depthwiseInputKernel: KernelFn = (args) => {
  const { inputs, backend, attrs } = args;
  const dy = inputs.dy!;
  const filter = inputs.filter!;
  const inputShape = (attrs.inputShape as number[]).slice();
  const d = depthwiseDims(args, inputShape, filter.shape);
  const out = backend.makeOutput(inputShape, 'float32');
  const heap = heapF32(backend);
  depthwiseBackpropInput(d, heap, offsetOf(backend, dy), heap, offsetOf(backend, filter), heap, offsetOf(backend, out));
  return out;
};

const depthwiseFilterKernel: KernelFn = (args) => {
  const { inputs, backend, attrs } = args;
  const x = inputs.x!;
  const dy = inputs.dy!;
  const filterShape = (attrs.filterShape as number[]).slice();
  const d = depthwiseDims(args, x.shape, filterShape);
  const out = backend.makeOutput(filterShape, 'float32');
  const heap = heapF32(backend);
  depthwiseBackpropFilter(d, heap, offsetOf(backend, x), heap, offsetOf(backend, dy), heap, offsetOf(backend, out));
  return out;
};

/** The output shares the input's memory (reference counted by the backend), as on the cpu backend. */
function shareIdentity(original: KernelFn): KernelFn {
  return (args) => {
    const x = args.inputs.x!;
    if (x.dtype === 'string') return original(args);
    (args.backend as unknown as { incRef(dataId: object): void }).incRef(x.dataId);
    return { dataId: x.dataId, shape: x.shape.slice(), dtype: x.dtype };
  };
}

function shareCast(original: KernelFn): KernelFn {
  const identity = shareIdentity(original);
  return (args) => (args.inputs.x!.dtype === args.attrs.dtype ? identity(args) : original(args));
}

const swapLastTwo = (original: KernelFn): KernelFn => (args) => {
  const view = lastTwoSwap(args);
  if (!view) return original(args);
  const x = args.inputs.x!;
  const out = args.backend.makeOutput((args.attrs.perm as number[]).map((p) => x.shape[p]), 'float32');
  const heap = heapF32(args.backend);
  transposeLastTwo(heap, offsetOf(args.backend, x), heap, offsetOf(args.backend, out), view.batch, view.rows, view.cols);
  return out;
};

const leadingAxesSum = (original: KernelFn): KernelFn => (args) => {
  const split = leadingSplit(args);
  if (!split) return original(args);
  const out = args.backend.makeOutput(split.outShape, 'float32');
  const heap = heapF32(args.backend);
  columnSums(heap, offsetOf(args.backend, args.inputs.x!), split.rows, split.cols, heap, offsetOf(args.backend, out));
  return out;
};

const maxPoolGradKernel: KernelFn = (args) => {
  const { inputs, backend, attrs } = args;
  const dy = inputs.dy!;
  const x = inputs.input!;
  const d = poolDims(x.shape, attrs as unknown as PoolAttrs);
  const out = backend.makeOutput(x.shape.slice(), 'float32');
  const heap = heapF32(backend);
  maxPoolBackprop(d, heap, offsetOf(backend, x), heap, offsetOf(backend, dy), heap, offsetOf(backend, out));
  return out;
};

/**
 * dL/dx of a convolution: dCol[m, r] = dY[m, co] * W^T[co, r] with m = (b, oh, ow) and r = (kh, kw, ci),
 * then every patch row added back where it came from (col2im).
 */
function conv2DBackpropInput(args: KernelArgs, original: KernelFn, batchMatMul: KernelFn, transpose: KernelFn): TensorInfo {
  const { inputs, backend, attrs } = args;
  const dy = inputs.dy!;
  const filter = inputs.filter!;
  const inputShape = (attrs.inputShape as number[]).slice();
  const d = dy.dtype === 'float32' && filter.dtype === 'float32' ? convDims(inputShape, filter.shape, { ...(attrs as unknown as ConvAttrs), dilations: 1 }, false) : null;
  if (!d || d.some((v, i) => i < 13 && v <= 0)) return original(args);
  const [nb, ih, iw, ci, oh, ow, co, kh, kw, sh, sw, , , pt, pl] = d;
  const k = kh * kw * ci;
  const m = nb * oh * ow;
  // W^T as a tensor of its own: the product caches its right-hand side by tensor id.
  const wT = transpose({ inputs: { x: { dataId: filter.dataId, shape: [k, co], dtype: 'float32' } }, backend, attrs: { perm: [1, 0] } });
  let col: TensorInfo | null = null;
  try {
    col = batchMatMul({ inputs: { a: { dataId: dy.dataId, shape: [1, m, co], dtype: 'float32' }, b: { ...wT, shape: [1, co, k] } }, backend, attrs: { transposeA: false, transposeB: false } });
    const out = backend.makeOutput(inputShape, 'float32');
    const heap = heapF32(backend);
    const c0 = offsetOf(backend, col);
    const x0 = offsetOf(backend, out);
    heap.fill(0, x0, x0 + nb * ih * iw * ci);
    for (let b = 0; b < nb; b++) {
      for (let y = 0; y < oh; y++) {
        for (let xo = 0; xo < ow; xo++) {
          let src = c0 + ((b * oh + y) * ow + xo) * k;
          for (let fy = 0; fy < kh; fy++) {
            const iy = y * sh + fy - pt;
            if (iy < 0 || iy >= ih) {
              src += kw * ci;
              continue;
            }
            for (let fx = 0; fx < kw; fx++, src += ci) {
              const ix = xo * sw + fx - pl;
              if (ix < 0 || ix >= iw) continue;
              const dst = x0 + ((b * ih + iy) * iw + ix) * ci;
              for (let c = 0; c < ci; c++) heap[dst + c] += heap[src + c];
            }
          }
        }
      }
    }
    return out;
  } finally {
    backend.disposeData(wT.dataId);
    if (col) backend.disposeData(col.dataId);
  }
}
