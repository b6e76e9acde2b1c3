/**
 * Kernel replacements for the tfjs wasm backend (tfjs 4.22.0; these use backend internals, so the
 * version is pinned and the kernels are tested against the cpu backend):
 *
 *  - Conv2DBackpropFilter is missing from wasm, so a student with convolutions cannot train there.
 *    It is computed here as im2col + one plain matrix product on wasm: dW[r, co] = P^T[r, m] * dY[m, co],
 *    with r = (fh, fw, ci) and m = (b, oh, ow). P^T is built directly in transposed form, so the
 *    product needs no transpose flag (wasm's transposed GEMM is ~10x slower than the plain one).
 *  - BatchMatMul / _FusedMatMul with a transpose flag: transpose explicitly, then run the plain
 *    kernel. Backprop through a dense layer is dominated by transposed products; this also avoids
 *    the shipped fused kernel's wrong results for transpose + bias.
 */
import * as tf from '@tensorflow/tfjs';

type TensorInfo = tf.TensorInfo;

interface WasmBackend {
  makeOutput(shape: number[], dtype: tf.DataType): TensorInfo;
  typedArrayFromHeap(info: TensorInfo): Float32Array;
  disposeData(dataId: object): boolean;
}

interface KernelArgs {
  inputs: Record<string, TensorInfo | undefined>;
  backend: WasmBackend;
  attrs: Record<string, unknown>;
}

type KernelFn = (args: KernelArgs) => TensorInfo;

let originals: Record<string, KernelFn | undefined> | null = null;

/**
 * Register the replacements (idempotent); returns the kernels that differ from tfjs-backend-wasm as
 * shipped. `matmul: false` keeps the shipped matmul kernels (for benchmarks); Conv2DBackpropFilter
 * is always provided since wasm has none.
 */
export function installWasmKernels(opts: { matmul?: boolean } = {}): string[] {
  const original = (name: string) => tf.getKernel(name, 'wasm')?.kernelFunc as unknown as KernelFn | undefined;
  originals ??= {
    Transpose: original('Transpose'),
    BatchMatMul: original('BatchMatMul'),
    _FusedMatMul: original('_FusedMatMul'),
    Conv2DBackpropFilter: original('Conv2DBackpropFilter'),
  };
  const { Transpose: transpose, BatchMatMul: batchMatMul, _FusedMatMul: fusedMatMul } = originals;
  if (!transpose || !batchMatMul) return [];
  const done: string[] = [];
  if (!originals.Conv2DBackpropFilter) {
    register('Conv2DBackpropFilter', (args) => conv2DBackpropFilter(args, batchMatMul));
    done.push('Conv2DBackpropFilter');
  }
  const matmul = opts.matmul ?? true;
  register('BatchMatMul', matmul ? (args) => withExplicitTranspose(args, batchMatMul, transpose) : batchMatMul);
  if (matmul) done.push('BatchMatMul');
  if (fusedMatMul) {
    register('_FusedMatMul', matmul ? (args) => withExplicitTranspose(args, fusedMatMul, transpose) : fusedMatMul);
    if (matmul) done.push('_FusedMatMul');
  }
  return done;
}

function register(kernelName: string, kernelFunc: KernelFn): void {
  if (tf.getKernel(kernelName, 'wasm')) tf.unregisterKernel(kernelName, 'wasm');
  tf.registerKernel({ kernelName, backendName: 'wasm', kernelFunc: kernelFunc as unknown as tf.KernelFunc });
}

function swapLastTwo(shape: number[]): number[] {
  const s = shape.slice();
  const n = s.length;
  [s[n - 2], s[n - 1]] = [s[n - 1], s[n - 2]];
  return s;
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
    // Views only after every allocation: heap growth detaches older views.
    const p = backend.typedArrayFromHeap(patches);
    const xs = backend.typedArrayFromHeap(x);
    for (let kh = 0; kh < fh; kh++) {
      for (let kw = 0; kw < fw; kw++) {
        for (let c = 0; c < ci; c++) {
          const rowBase = ((kh * fw + kw) * ci + c) * m;
          let col = 0;
          for (let b = 0; b < nb; b++) {
            const xb = b * ih * iw * ci;
            for (let y = 0; y < oh; y++) {
              const iy = y * sh + kh - top;
              const inside = iy >= 0 && iy < ih;
              for (let xo = 0; xo < ow; xo++, col++) {
                const ix = xo * sw + kw - left;
                p[rowBase + col] = inside && ix >= 0 && ix < iw ? xs[xb + (iy * iw + ix) * ci + c] : 0;
              }
            }
          }
        }
      }
    }
    // dY viewed as [1, m, co]: the kernel reshapes its inputs itself and keeps dy's buffer.
    const dy3: TensorInfo = { dataId: dy.dataId, shape: [1, m, co], dtype: 'float32' };
    const out = batchMatMul({ inputs: { a: patches, b: dy3 }, backend, attrs: { transposeA: false, transposeB: false } });
    out.shape = filterShape.slice();
    return out;
  } finally {
    backend.disposeData(patches.dataId);
  }
}
