/**
 * The replacement kernels of the wasm backend (src/train/wasm-kernels.ts: the pure wasm set, and the
 * native set of src/train/kernels/native.ts when the addon is built) against the cpu backend's
 * kernels, which are tfjs's reference implementations: forward values and gradients, at several
 * shapes, strides, paddings, dilations and activations; whole models with every common layer;
 * seeded training curves across backends.
 */
import assert from 'node:assert/strict';
import { before, describe, test } from 'node:test';
import * as tf from '@tensorflow/tfjs';
import '@tensorflow/tfjs-backend-wasm';
import { initBackend } from '../src/train/backend.js';
import { convDims } from '../src/train/kernels/conv-dims.js';
import { depthwiseBackpropFilter, depthwiseBackpropInput } from '../src/train/kernels/depthwise.js';
import { loadNative } from '../src/train/kernels/native.js';
import { maxPoolBackprop, poolDims } from '../src/train/kernels/pool.js';
import { ExampleTable } from '../src/train/examples.js';
import { MetricsAccumulator } from '../src/train/metrics.js';
import { Rng } from '../src/train/rng.js';
import { buildCnn, buildMlp } from '../src/train/students.js';
import { createOptimizer, trainStep } from '../src/train/trainer.js';
import { type WasmKernelSet, configureWasmKernels, installWasmKernels } from '../src/train/wasm-kernels.js';
import { runCli } from './helpers/data.js';

function values(shape: number[], seed: number): Float32Array {
  const n = shape.reduce((a, b) => a * b, 1);
  return Float32Array.from({ length: n }, (_, i) => Math.sin(seed * 12.9898 + i * 78.233) * 0.5);
}

/** Run `f` on the cpu backend and on wasm with `set`; return [cpu, wasm] results, flattened. */
async function onBoth(set: WasmKernelSet, f: () => tf.Tensor | tf.Tensor[]): Promise<[Float32Array, Float32Array]> {
  const out: Float32Array[] = [];
  for (const b of ['cpu', 'wasm']) {
    await tf.setBackend(b);
    if (b === 'wasm') configure(set);
    const r = tf.tidy(f);
    const list = Array.isArray(r) ? r : [r];
    out.push(Float32Array.from(list.flatMap((t) => Array.from(t.dataSync()))));
    tf.dispose(list);
  }
  return [out[0], out[1]];
}

const native = loadNative();
const sets: WasmKernelSet[] = native.ok ? ['wasm', 'native'] : ['wasm'];

function configure(set: WasmKernelSet): void {
  configureWasmKernels(set, set === 'native' && native.ok ? native.info.addon : undefined);
}

/** max |a - b| relative to the largest |a| (at least 1). */
function relDiff(a: Float32Array, b: Float32Array): number {
  assert.equal(a.length, b.length, 'result sizes differ');
  let m = 0;
  let scale = 1;
  for (let i = 0; i < a.length; i++) {
    if (Number.isNaN(a[i]) || Number.isNaN(b[i])) {
      if (Number.isNaN(a[i]) !== Number.isNaN(b[i])) return Infinity;
      continue;
    }
    m = Math.max(m, Math.abs(a[i] - b[i]));
    scale = Math.max(scale, Math.abs(a[i]));
  }
  return m / scale;
}

function close(a: Float32Array, b: Float32Array, tol = 2e-5, what = ''): void {
  const d = relDiff(a, b);
  assert.ok(d < tol, `${what} relative max diff ${d}`);
}

type Pad = 'same' | 'valid' | number;
const t4 = (shape: number[], seed: number) => tf.tensor4d(values(shape, seed), shape as [number, number, number, number]);

const convCases: { x: number[]; f: number[]; s: number | [number, number]; p: Pad; d?: number | [number, number] }[] = [
  { x: [2, 7, 7, 3], f: [3, 3, 3, 4], s: 1, p: 'same' },
  { x: [2, 7, 7, 3], f: [3, 3, 3, 4], s: 2, p: 'same' },
  { x: [2, 8, 8, 3], f: [3, 3, 3, 4], s: 2, p: 'same' },
  { x: [1, 8, 6, 2], f: [3, 2, 2, 5], s: [2, 1], p: 'valid' },
  { x: [3, 9, 9, 1], f: [5, 5, 1, 2], s: 3, p: 'same' },
  { x: [2, 5, 5, 2], f: [2, 2, 2, 3], s: 1, p: 1 },
  { x: [2, 6, 10, 4], f: [1, 1, 4, 8], s: 1, p: 'valid' },
  { x: [2, 6, 10, 4], f: [1, 1, 4, 8], s: 2, p: 'valid' },
  { x: [2, 9, 9, 2], f: [3, 3, 2, 3], s: 1, p: 'same', d: 2 },
  { x: [1, 10, 7, 3], f: [3, 3, 3, 2], s: 1, p: 'valid', d: [2, 1] },
  // enough images for several blocks per thread in the native kernels
  { x: [40, 12, 12, 8], f: [3, 3, 8, 16], s: 1, p: 'same' },
  { x: [30, 11, 11, 8], f: [3, 3, 8, 8], s: 2, p: 'same' },
];

describe('pure functions against straightforward definitions', () => {
  test('depthwise gradients equal sums over the definition', () => {
    const x = values([2, 5, 4, 3], 1);
    const w = values([3, 2, 3, 2], 2);
    const attrs = { strides: [2, 1] as [number, number], pad: 'same' as const };
    const d = convDims([2, 5, 4, 3], [3, 2, 3, 2], attrs, true)!;
    const [nb, ih, iw, ci, oh, ow, co, kh, kw, sh, sw, , , pt, pl] = d;
    const dy = values([nb, oh, ow, co], 3);
    // y = conv(x, w); L = sum(y * dy); dL/dx and dL/dw by the definition, term by term.
    const dx = new Float64Array(x.length);
    const dw = new Float64Array(w.length);
    for (let b = 0; b < nb; b++) for (let y = 0; y < oh; y++) for (let xo = 0; xo < ow; xo++) for (let fy = 0; fy < kh; fy++) for (let fx = 0; fx < kw; fx++) {
      const iy = y * sh + fy - pt;
      const ix = xo * sw + fx - pl;
      if (iy < 0 || iy >= ih || ix < 0 || ix >= iw) continue;
      for (let c = 0; c < ci; c++) for (let q = 0; q < co / ci; q++) {
        const g = dy[((b * oh + y) * ow + xo) * co + c * (co / ci) + q];
        dx[((b * ih + iy) * iw + ix) * ci + c] += g * w[((fy * kw + fx) * ci + c) * (co / ci) + q];
        dw[((fy * kw + fx) * ci + c) * (co / ci) + q] += g * x[((b * ih + iy) * iw + ix) * ci + c];
      }
    }
    const gotX = new Float32Array(x.length + 5).fill(9);
    const gotW = new Float32Array(w.length + 3).fill(9);
    depthwiseBackpropInput(d, dy, 0, w, 0, gotX, 5);
    depthwiseBackpropFilter(d, x, 0, dy, 0, gotW, 3);
    close(Float32Array.from(dx), gotX.subarray(5), 1e-6, 'dx');
    close(Float32Array.from(dw), gotW.subarray(3), 1e-6, 'dw');
    assert.deepEqual([...gotX.subarray(0, 5), ...gotW.subarray(0, 3)], Array(8).fill(9), 'writes only its own range');
  });

  test('max pool gradient: first maximum of each window, overlapping windows add', () => {
    // One channel, 3x3 input with ties; 2x2 windows, stride 1: four overlapping windows.
    const x = Float32Array.from([1, 5, 5, 2, 5, 0, 7, 7, 3]);
    const d = poolDims([1, 3, 3, 1], { filterSize: 2, strides: 1, pad: 'valid' });
    const dx = new Float32Array(9);
    maxPoolBackprop(d, x, 0, Float32Array.from([10, 20, 30, 40]), 0, dx, 0);
    // windows: [1,5,2,5] -> first 5 (index 1); [5,5,5,0] -> index 1; [2,5,7,7] -> index 6; [5,0,7,3] -> index 7
    assert.deepEqual([...dx], [0, 30, 0, 0, 0, 0, 30, 40, 0]);
  });
});

describe('the pure wasm set', () => {
  before(async () => {
    await initBackend('cpu');
    await initBackend('wasm');
  });

  test('installWasmKernels (earlier API) registers the pure wasm set; the sets can be switched', () => {
    const wasm = installWasmKernels();
    for (const k of ['BatchMatMul', '_FusedMatMul', 'Conv2DBackpropFilter', 'DepthwiseConv2dNativeBackpropInput', 'DepthwiseConv2dNativeBackpropFilter', 'MaxPoolGrad', 'Sum', 'Identity']) {
      assert.ok(wasm.includes(k), `${k} not replaced`);
    }
    assert.deepEqual(installWasmKernels({ matmul: false }), ['Conv2DBackpropFilter', 'DepthwiseConv2dNativeBackpropInput', 'DepthwiseConv2dNativeBackpropFilter']);
    assert.deepEqual(configureWasmKernels('wasm'), wasm);
  });
});

for (const set of sets) {
  describe(`the ${set} kernel set matches the cpu backend`, () => {
    before(async () => {
      await initBackend('cpu');
      await initBackend('wasm');
      configure(set);
    });

    for (const [ta, tb] of [[false, false], [true, false], [false, true], [true, true]]) {
      test(`BatchMatMul transposeA=${ta} transposeB=${tb}: rank 2, batched rank 3, broadcast batch`, async () => {
        for (const [ba, bb] of [[[], []], [[3], [3]], [[1], [4]], [[2, 3], [1]]]) {
          const [cpu, wasm] = await onBoth(set, () => {
            const a = tf.tensor(values([...ba, 5, 7], 4), [...ba, ...(ta ? [7, 5] : [5, 7])]);
            const b = tf.tensor(values([...bb, 7, 6], 5), [...bb, ...(tb ? [6, 7] : [7, 6])]);
            return tf.matMul(a, b, ta, tb);
          });
          close(cpu, wasm, 2e-5, `batch [${ba}] x [${bb}]`);
        }
      });
    }

    for (const activation of ['linear', 'relu', 'relu6', 'leakyrelu', 'sigmoid', 'elu', 'prelu'] as const) {
      test(`_FusedMatMul with bias + ${activation}, every transpose combination, and its gradients`, async () => {
        for (const [ta, tb] of [[false, false], [true, false], [false, true], [true, true]]) {
          const [cpu, wasm] = await onBoth(set, () => {
            const a = tf.tensor2d(values([5, 7], 6), (ta ? [7, 5] : [5, 7]) as [number, number]);
            const b = tf.tensor2d(values([7, 6], 7), (tb ? [6, 7] : [7, 6]) as [number, number]);
            const bias = tf.tensor1d(values([6], 8));
            const prelu = activation === 'prelu' ? tf.tensor1d(values([6], 9)) : undefined;
            const f = (aa: tf.Tensor, bb: tf.Tensor, cc: tf.Tensor) => tf.fused.matMul({ a: aa as tf.Tensor2D, b: bb as tf.Tensor2D, transposeA: ta, transposeB: tb, bias: cc, activation, preluActivationWeights: prelu, leakyreluAlpha: 0.1 });
            const y = f(a, b, bias);
            const dy = tf.tensor2d(values([5, 6], 10), [5, 6]);
            const grads = tf.grads((aa, bb, cc) => tf.sum(tf.mul(f(aa, bb, cc), dy)))([a, b, bias]);
            return [y, ...grads];
          });
          close(cpu, wasm, 2e-5, `ta=${ta} tb=${tb}`);
        }
      });
    }

    for (const c of convCases) {
      test(`Conv2D, FusedConv2D and both gradients: x=[${c.x}] filter=[${c.f}] strides=${c.s} pad=${c.p} dilations=${c.d ?? 1}`, async () => {
        const [cpu, wasm] = await onBoth(set, () => {
          const x = t4(c.x, 1);
          const w = t4(c.f, 2);
          const y = tf.conv2d(x, w, c.s, c.p, 'NHWC', c.d ?? 1);
          const bias = tf.tensor1d(values([c.f[3]], 4));
          const fused = tf.fused.conv2d({ x, filter: w, strides: c.s, pad: c.p, dilations: c.d ?? 1, bias, activation: 'relu' });
          const out: tf.Tensor[] = [y, fused];
          if ((c.d ?? 1) === 1) {
            const dy = tf.tensor(values(y.shape, 3), y.shape);
            out.push(...tf.grads((xx, ww) => tf.sum(tf.mul(tf.conv2d(xx as tf.Tensor4D, ww as tf.Tensor4D, c.s, c.p), dy)))([x, w]));
            out.push(...tf.grads((xx, ww, bb) => tf.sum(tf.mul(tf.fused.conv2d({ x: xx as tf.Tensor4D, filter: ww as tf.Tensor4D, strides: c.s, pad: c.p, bias: bb, activation: 'relu' }), dy)))([x, w, bias]));
          }
          return out;
        });
        close(cpu, wasm, 2e-5);
      });
    }

    const depthwiseCases: { x: number[]; f: number[]; s: number | [number, number]; p: Pad; d?: number }[] = [
      { x: [2, 7, 7, 3], f: [3, 3, 3, 1], s: 1, p: 'same' },
      { x: [2, 7, 7, 3], f: [3, 3, 3, 2], s: 2, p: 'same' },
      { x: [1, 8, 6, 4], f: [3, 2, 4, 1], s: [2, 1], p: 'valid' },
      { x: [2, 6, 6, 2], f: [2, 2, 2, 3], s: 1, p: 1 },
      { x: [1, 9, 9, 2], f: [3, 3, 2, 1], s: 1, p: 'same', d: 2 },
    ];
    for (const c of depthwiseCases) {
      test(`depthwise conv and its gradients: x=[${c.x}] filter=[${c.f}] strides=${c.s} pad=${c.p} dilations=${c.d ?? 1}`, async () => {
        const [cpu, wasm] = await onBoth(set, () => {
          const x = t4(c.x, 5);
          const w = t4(c.f, 6);
          const y = tf.depthwiseConv2d(x, w, c.s, c.p, 'NHWC', c.d ?? 1);
          const out: tf.Tensor[] = [y];
          if ((c.d ?? 1) === 1) {
            const dy = tf.tensor(values(y.shape, 7), y.shape);
            out.push(...tf.grads((xx, ww) => tf.sum(tf.mul(tf.depthwiseConv2d(xx as tf.Tensor4D, ww as tf.Tensor4D, c.s, c.p), dy)))([x, w]));
          }
          return out;
        });
        close(cpu, wasm, 2e-5);
      });
    }

    test('separable conv (depthwise + pointwise) with bias: values and gradients', async () => {
      const [cpu, wasm] = await onBoth(set, () => {
        const x = t4([2, 6, 6, 3], 11);
        const dw = t4([3, 3, 3, 2], 12);
        const pw = t4([1, 1, 6, 4], 13);
        const f = (xx: tf.Tensor, a: tf.Tensor, b: tf.Tensor) => tf.separableConv2d(xx as tf.Tensor4D, a as tf.Tensor4D, b as tf.Tensor4D, 1, 'same');
        return [f(x, dw, pw), ...tf.grads((xx, a, b) => tf.sum(tf.square(f(xx, a, b))))([x, dw, pw])];
      });
      close(cpu, wasm, 2e-5);
    });

    for (const c of [
      { x: [2, 8, 8, 3], size: 2, s: 2, p: 'valid' as Pad },
      { x: [2, 7, 7, 3], size: 2, s: 2, p: 'same' as Pad },
      { x: [1, 9, 9, 2], size: 3, s: 2, p: 'same' as Pad },
      { x: [2, 6, 5, 4], size: 3, s: 1, p: 'valid' as Pad },
    ]) {
      test(`max pool and avg pool gradients: x=[${c.x}] size=${c.size} strides=${c.s} pad=${c.p}, with ties`, async () => {
        const [cpu, wasm] = await onBoth(set, () => {
          // Rounded values make ties, which must go to the same (first) position as on cpu.
          const x = tf.tensor4d(values(c.x, 14).map((v) => Math.round(v * 4) / 4), c.x as [number, number, number, number]);
          const mp = (xx: tf.Tensor) => tf.maxPool(xx as tf.Tensor4D, c.size, c.s, c.p as 'same' | 'valid');
          const ap = (xx: tf.Tensor) => tf.avgPool(xx as tf.Tensor4D, c.size, c.s, c.p as 'same' | 'valid');
          const dy = tf.tensor(values(mp(x).shape, 15), mp(x).shape);
          return [mp(x), tf.grad((xx) => tf.sum(tf.mul(mp(xx), dy)))(x), tf.grad((xx) => tf.sum(tf.mul(ap(xx), dy)))(x)];
        });
        close(cpu, wasm, 1e-6);
      });
    }

    test('elementwise ops and max pooling on large tensors (native above 2^17 elements): broadcasts, NaN', async () => {
      const [cpu, wasm] = await onBoth(set, () => {
        const shape = [9, 20, 20, 41];
        const x = tf.tensor4d(values(shape, 21).map((v, i) => (i % 997 === 0 ? NaN : i % 13 === 0 ? 0 : v)), shape as [number, number, number, number]);
        const y = tf.tensor4d(values(shape, 22), shape as [number, number, number, number]);
        const bias = tf.tensor1d(values([41], 23));
        const row = tf.tensor2d(values([20, 41], 24), [20, 41]);
        const col = tf.tensor4d(values([9, 20, 20, 1], 25), [9, 20, 20, 1]);
        const finite = tf.where(tf.isNaN(x), tf.zerosLike(x), x);
        return [
          tf.add(x, bias), tf.add(bias, x), tf.add(x, y), tf.add(row, y), tf.mul(x, bias), tf.mul(y, x), tf.sub(x, bias), tf.sub(bias, y), tf.sub(x, y),
          tf.add(x, col), tf.relu(x), tf.step(x), tf.step(x, 0.3),
          tf.grad((xx) => tf.sum(tf.mul(tf.relu(xx), y)))(x), tf.grad((xx) => tf.sum(tf.square(tf.relu(xx))))(tf.slice(x, 0, [1, 4, 4, 41])),
          tf.maxPool(finite, 2, 2, 'valid'), tf.maxPool(finite, 3, 2, 'same'), tf.maxPool(finite, [3, 2], 1, 'valid'),
        ];
      });
      close(cpu, wasm, 1e-6);
    });

    test('Sum over leading axes (bias gradients), keepDims, and over other axes', async () => {
      const [cpu, wasm] = await onBoth(set, () => {
        const x = tf.tensor(values([4, 3, 5, 6], 16), [4, 3, 5, 6]);
        return [tf.sum(x, 0), tf.sum(x, [0, 1, 2]), tf.sum(x, [0, 1], true), tf.sum(x, [1, 0]), tf.sum(x, 3), tf.sum(x, [0, 2]), tf.sum(x), tf.sum(tf.tensor1d([1, 2, 3]), 0)];
      });
      close(cpu, wasm, 2e-6);
      await tf.setBackend('wasm');
      const ints = tf.sum(tf.tensor2d([[1, 2], [3, 4]], [2, 2], 'int32'), 0);
      assert.equal(ints.dtype, 'int32');
      assert.deepEqual(Array.from(ints.dataSync()), [4, 6]);
      ints.dispose();
    });

    test('Transpose: last two axes swapped in tiles (sizes off the tile edge, batched), other perms and int32 as shipped', async () => {
      const [cpu, wasm] = await onBoth(set, () => {
        const outs: tf.Tensor[] = [];
        for (const shape of [[1, 1], [3, 5], [64, 64], [65, 130], [256, 784], [3, 70, 9], [2, 2, 67, 3]]) {
          const x = tf.tensor(values(shape, shape.length + shape[shape.length - 1]), shape);
          const n = shape.length;
          outs.push(tf.transpose(x, [...Array(n - 2).keys(), n - 1, n - 2]));
        }
        const x3 = tf.tensor(values([4, 5, 6], 3), [4, 5, 6]);
        outs.push(tf.transpose(x3, [2, 0, 1]), tf.transpose(x3, [1, 0, 2]), tf.transpose(x3));
        return outs;
      });
      assert.deepEqual(wasm, cpu);
      await tf.setBackend('wasm');
      const ints = tf.transpose(tf.tensor2d([[1, 2, 3], [4, 5, 6]], [2, 3], 'int32'));
      assert.equal(ints.dtype, 'int32');
      assert.deepEqual(Array.from(ints.dataSync()), [1, 4, 2, 5, 3, 6]);
      ints.dispose();
    });

    test('Identity and Cast share memory safely: values survive disposing either side', async () => {
      await tf.setBackend('wasm');
      const a = tf.tensor1d([1, 2, 3]);
      const b = tf.clone(a);
      const c = tf.cast(a, 'float32');
      a.dispose();
      assert.deepEqual(Array.from(b.dataSync()), [1, 2, 3]);
      b.dispose();
      assert.deepEqual(Array.from(c.dataSync()), [1, 2, 3]);
      const i = tf.cast(c, 'int32');
      assert.equal(i.dtype, 'int32');
      tf.dispose([c, i]);
    });

    test('a model with every common layer: forward values and gradients match cpu', async () => {
      const grads = async (backend: string) => {
        await tf.setBackend(backend);
        if (backend === 'wasm') configure(set);
        const init = (seed: number) => tf.initializers.glorotUniform({ seed });
        const model = tf.sequential({
          layers: [
            tf.layers.conv2d({ inputShape: [12, 12, 2], filters: 4, kernelSize: 3, strides: 1, padding: 'same', activation: 'relu', kernelInitializer: init(1) }),
            tf.layers.batchNormalization({}),
            tf.layers.maxPooling2d({ poolSize: 2 }),
            tf.layers.depthwiseConv2d({ kernelSize: 3, depthMultiplier: 2, padding: 'same', depthwiseInitializer: init(2) }),
            tf.layers.separableConv2d({ filters: 6, kernelSize: 3, strides: 2, padding: 'same', activation: 'relu', depthwiseInitializer: init(3), pointwiseInitializer: init(4) }),
            tf.layers.averagePooling2d({ poolSize: 2, padding: 'same' }),
            tf.layers.conv2d({ filters: 5, kernelSize: 1, kernelInitializer: init(5) }),
            tf.layers.flatten(),
            tf.layers.dropout({ rate: 0.25, seed: 7 }),
            tf.layers.dense({ units: 8, activation: 'elu', kernelInitializer: init(6) }),
            tf.layers.dense({ units: 4, kernelInitializer: init(7) }),
          ],
        });
        const x = tf.tensor4d(values([3, 12, 12, 2], 9), [3, 12, 12, 2]);
        const { value, grads: g } = tf.variableGrads(() => tf.mean(tf.square(model.apply(x, { training: true }) as tf.Tensor)) as tf.Scalar);
        const names = Object.keys(g).sort();
        const out = [value.dataSync()[0], ...names.flatMap((n) => Array.from(g[n].dataSync()))];
        tf.dispose([x, value, ...Object.values(g)]);
        model.dispose();
        return Float32Array.from(out);
      };
      close(await grads('cpu'), await grads('wasm'), 5e-5);
    });

    test('no tensor or heap-buffer leaks from the replacements', async () => {
      await tf.setBackend('wasm');
      configure(set);
      const run = () => tf.tidy(() => {
        const x = tf.tensor4d(values([2, 5, 5, 2], 1), [2, 5, 5, 2]);
        const w = tf.tensor4d(values([3, 3, 2, 3], 2), [3, 3, 2, 3]);
        const dwf = tf.tensor4d(values([3, 3, 2, 2], 3), [3, 3, 2, 2]);
        const [gx, gw, gd] = tf.grads((xx, ww, dd) => tf.sum(tf.maxPool(tf.relu(tf.add(tf.conv2d(xx as tf.Tensor4D, ww as tf.Tensor4D, 1, 'same'), tf.sum(tf.depthwiseConv2d(xx as tf.Tensor4D, dd as tf.Tensor4D, 1, 'same'), 3, true))) as tf.Tensor4D, 2, 2, 'same')))([x, w, dwf]);
        return tf.addN([gx.sum(), gw.sum(), gd.sum(), tf.matMul(tf.ones([3, 4]), tf.ones([5, 4]), false, true).sum(), tf.clone(x).sum()]);
      });
      run().dispose();
      const before = { ...tf.memory(), dataIds: tf.backend().numDataIds() };
      for (let i = 0; i < 5; i++) run().dispose();
      assert.equal(tf.memory().numTensors, before.numTensors);
      // buffers the kernels allocate themselves (im2col patches, transposes, ones) are backend data, not tensors
      assert.equal(tf.backend().numDataIds(), before.dataIds);
    });
  });
}

describe('backends', () => {
  test('kdcache backends lists every backend, says why one does not load, and what auto picks', () => {
    const r = runCli('kdcache', ['backends']);
    assert.equal(r.code, 0, r.stderr);
    const lines = r.stdout.trim().split('\n');
    assert.match(lines.find((l) => /\bwasm\b/.test(l) && /pure wasm/.test(l)) ?? '', /^yes\s+wasm/);
    assert.match(lines.find((l) => /\bcpu\b/.test(l)) ?? '', /^yes\s+cpu/);
    assert.match(lines.find((l) => /tensorflow/.test(l)) ?? '', /^no\s+tensorflow\s+neither @tensorflow\/tfjs-node-gpu nor @tensorflow\/tfjs-node is installed/);
    const nativeLine = lines.find((l) => /^\w+\s+native/.test(l)) ?? '';
    assert.match(nativeLine, native.ok ? /^yes\s+native\s+native \(wasm \+ OpenBLAS/ : /^no\s+native/);
    assert.equal(lines.at(-1), `auto: ${native.ok ? 'native' : 'wasm'}`);
  });

  test('without the addon, auto falls back to pure wasm and says why', () => {
    const r = runCli('kdcache', ['backends'], { KDCACHE_NATIVE_ADDON: '/nonexistent/kdcache_native.node' });
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^no\s+native\s+.*is not built \(npm run build builds it when g\+\+ is installed\)/m);
    assert.match(r.stdout, /auto: wasm\s*$/);
  });
});

describe('the native addon', { skip: native.ok ? false : `not available: ${native.ok ? '' : native.reason}` }, () => {
  test('refuses out-of-range arguments instead of touching memory it was not given', () => {
    assert.ok(native.ok);
    const { addon } = native.info;
    const a = new Float32Array(6);
    assert.throws(() => addon.sgemm(false, false, 2, 3, 3, 1, a, 0, 3, a, 0, 3, 0, a, 0, 3), /out of range/);
    assert.throws(() => addon.sgemm(false, false, 2, 3, 1, 1, a, 1, 1, a, 0, 3, 0, a, 1, 2), /leading dimension/);
    assert.throws(() => addon.conv(0, a, 0, a, 0, a, 0, new Int32Array(15).fill(2)), /out of range/);
    assert.throws(() => addon.conv(0, a, 0, a, 0, a, 0, new Int32Array(3)), /Int32Array of 15/);
    assert.throws(() => addon.sgemm(false, false, 1, 1, 1, 1, [1] as unknown as Float32Array, 0, 1, a, 0, 1, 0, a, 0, 1), /Float32Array/);
    const c = new Float32Array(4);
    addon.sgemm(false, true, 2, 2, 1, 1, Float32Array.from([1, 2]), 0, 1, Float32Array.from([3, 4]), 0, 1, 0, c, 0, 2);
    assert.deepEqual([...c], [3, 4, 6, 8]);
  });

  // train-student drops a thread while a shard loads (shareCores): if that changed how work is cut,
  // a seeded run would depend on load timing. OpenBLAS's own threading did (AVX-512, 1 vs 2 threads).
  test('results are bit-identical whichever number of its threads is free', { skip: native.ok && native.info.threads < 2 ? 'a pool of one thread' : false }, () => {
    assert.ok(native.ok);
    const { addon } = native.info;
    const sgemm = (ta: boolean, m: number, n: number, k: number) => () => {
      const c = new Float32Array(m * n);
      addon.sgemm(ta, false, m, n, k, 1, values([m * k], 1), 0, ta ? m : k, values([k * n], 2), 0, n, 0, c, 0, n);
      return c;
    };
    const conv = (kind: 0 | 1 | 2 | 5, x: number[], f: number[]) => () => {
      const d = convDims(x, f, { strides: 1, pad: 'same' }, kind === 5);
      assert.ok(d);
      const out = new Float32Array(kind === 2 || kind === 5 ? f.reduce((a, b) => a * b) : kind === 1 ? x.reduce((a, b) => a * b) : d[0] * d[4] * d[5] * d[6]);
      const dy = values([d[0] * d[4] * d[5] * d[6]], 4);
      if (kind === 0) addon.conv(0, values(x, 3), 0, values(f, 5), 0, out, 0, d);
      else if (kind === 1) addon.conv(1, out, 0, values(f, 5), 0, dy, 0, d);
      else addon.conv(kind, values(x, 3), 0, out, 0, dy, 0, d);
      return out;
    };
    const cases: [string, () => Float32Array][] = [
      ['sgemm 256x256x784', sgemm(false, 256, 256, 784)],
      ['sgemm transposed 784x256x256', sgemm(true, 784, 256, 256)],
      ['column sums', () => {
        const y = new Float32Array(300);
        addon.columnSums(values([1000 * 300], 6), 0, 1000, 300, y, 0);
        return y;
      }],
      ['conv forward', conv(0, [40, 12, 12, 8], [3, 3, 8, 16])],
      ['conv input gradient', conv(1, [40, 12, 12, 8], [3, 3, 8, 16])],
      ['conv filter gradient', conv(2, [40, 12, 12, 8], [3, 3, 8, 16])],
      ['pointwise conv filter gradient', conv(2, [64, 16, 16, 32], [1, 1, 32, 64])],
      ['depthwise filter gradient', conv(5, [40, 12, 12, 8], [3, 3, 8, 1])],
    ];
    try {
      for (const [what, f] of cases) {
        addon.computeThreads(0);
        const all = f();
        addon.computeThreads(1);
        assert.deepEqual(f(), all, what);
      }
    } finally {
      addon.computeThreads(0);
    }
  });
});

describe('fused MLP step (native)', { skip: native.ok ? false : `not available: ${native.ok ? '' : native.reason}` }, () => {
  const d = 20;
  const C = 7;
  // two row blocks of uneven size (38 + 39): the data-parallel step's partial gradients are added
  const n = 77;
  const batch = new ExampleTable(n, d, C);
  const rng = new Rng(5);
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < d; j++) batch.x[i * d + j] = rng.next() * 2 - 1;
    for (let j = 0; j < C; j++) batch.t[i * C + j] = rng.next() * 6 - 3;
    batch.y[i] = i % C;
    batch.row[i] = i;
  }
  batch.length = n;

  /** Five steps from the same initial weights; the fused step or tfjs's ops. */
  async function steps(fused: boolean, alpha: number, T: number) {
    const before = process.env.KDCACHE_FUSED;
    process.env.KDCACHE_FUSED = fused ? '1' : '0';
    try {
      await initBackend('native');
      const model = buildMlp([d], [16, 8], C, new Rng(3));
      const ctx = { model, optimizer: createOptimizer('adam', 1e-2), loss: { alpha, temperature: T, kind: 'kd' as const }, inputShape: [d], classes: C } as Parameters<typeof trainStep>[0];
      const metrics = new MetricsAccumulator();
      const losses = Array.from({ length: 5 }, () => trainStep(ctx, batch, metrics));
      const weights = model.getWeights().map((w) => Float32Array.from(w.dataSync()));
      const state = (await ctx.optimizer.getWeights()).map((w) => Float32Array.from(w.tensor.dataSync()));
      return { used: Boolean(ctx.fused), losses, weights, state, metrics: metrics.values() };
    } finally {
      if (before === undefined) delete process.env.KDCACHE_FUSED;
      else process.env.KDCACHE_FUSED = before;
    }
  }

  for (const [alpha, T] of [[0.7, 3], [1, 4], [0, 1]] as const) {
    test(`alpha ${alpha}, T ${T}: the same losses, weights, Adam state and metrics as tfjs's ops`, async () => {
      const ops = await steps(false, alpha, T);
      const fused = await steps(true, alpha, T);
      assert.equal(ops.used, false);
      assert.equal(fused.used, true);
      for (let k = 0; k < 5; k++) assert.ok(Math.abs(ops.losses[k] - fused.losses[k]) < 1e-5 * Math.abs(ops.losses[k]), `loss ${k}: ${ops.losses[k]} vs ${fused.losses[k]}`);
      assert.ok(ops.losses[4] < ops.losses[0], 'training lowers the loss');
      ops.weights.forEach((w, i) => assert.ok(relDiff(w, fused.weights[i]) < 1e-5, `weight ${i}`));
      assert.equal(ops.state.length, fused.state.length);
      ops.state.forEach((w, i) => assert.ok(relDiff(w, fused.state[i]) < 1e-5, `optimizer state ${i}`));
      assert.equal(fused.metrics.accuracy, ops.metrics.accuracy);
      assert.equal(fused.metrics.agreement, ops.metrics.agreement);
      assert.ok(Math.abs(fused.metrics.kl! - ops.metrics.kl!) <= 1e-6 * ops.metrics.kl!, `KL ${fused.metrics.kl} vs ${ops.metrics.kl}`);
    });
  }

  test('bit-identical whichever number of the pool\'s threads is free', { skip: native.ok && native.info.threads < 2 ? 'a pool of one thread' : false }, async () => {
    assert.ok(native.ok);
    const all = await steps(true, 0.7, 3);
    native.info.addon.computeThreads(1);
    try {
      const one = await steps(true, 0.7, 3);
      assert.deepEqual(one.losses, all.losses);
      one.weights.forEach((w, i) => assert.deepEqual(w, all.weights[i], `weight ${i}`));
      one.state.forEach((w, i) => assert.deepEqual(w, all.state[i], `optimizer state ${i}`));
    } finally {
      native.info.addon.computeThreads(0);
    }
  });

  test('only plain ReLU MLPs with Adam and the kd loss are fused', async () => {
    await initBackend('native');
    const ctx = (model: tf.LayersModel, kind: 'kd' | 'mse', opt = 'adam' as 'adam' | 'sgd') => ({ model, optimizer: createOptimizer(opt, 1e-3), loss: { alpha: 1, temperature: 2, kind }, inputShape: [d], classes: C }) as Parameters<typeof trainStep>[0];
    const tanh = tf.sequential({ layers: [tf.layers.dense({ units: 8, activation: 'tanh', inputShape: [d] }), tf.layers.dense({ units: C })] });
    for (const [c, want] of [[ctx(buildMlp([d], [8], C, new Rng(1)), 'kd'), true], [ctx(tanh, 'kd'), false], [ctx(buildMlp([d], [8], C, new Rng(1)), 'mse'), false], [ctx(buildMlp([d], [8], C, new Rng(1)), 'kd', 'sgd'), false]] as const) {
      trainStep(c, batch, new MetricsAccumulator());
      assert.equal(Boolean(c.fused), want);
    }
  });
});

describe('fused Adam', () => {
  for (const backend of ['cpu', 'wasm', ...(native.ok ? ['native' as const] : [])] as const) {
    test(`${backend}: bit-identical to tf.train.adam, state and checkpoint scalars included`, async () => {
      await initBackend(backend);
      const run = (optimizer: tf.Optimizer) => {
        const model = buildMlp([12], [9], 4, new Rng(5));
        for (let step = 0; step < 6; step++) {
          const x = tf.tensor2d(values([8, 12], step), [8, 12]);
          optimizer.minimize(() => tf.mean(tf.square(model.apply(x) as tf.Tensor)) as tf.Scalar);
          x.dispose();
        }
        const weights = model.getWeights().map((w) => Array.from(w.dataSync()));
        const o = optimizer as unknown as { accBeta1: tf.Variable; accBeta2: tf.Variable; accumulatedSecondMoment: { variable: tf.Variable }[] };
        const state = [o.accBeta1.dataSync()[0], o.accBeta2.dataSync()[0], ...o.accumulatedSecondMoment.flatMap((m) => Array.from(m.variable.dataSync()))];
        model.dispose();
        optimizer.dispose();
        return { weights, state };
      };
      const fused = run(createOptimizer('adam', 0.01));
      assert.ok(fused.weights.length > 0);
      assert.deepEqual(fused, run(tf.train.adam(0.01)));
    });
  }
});

describe('seeded training: the same loss curve on every backend', () => {
  async function curve(backend: 'cpu' | 'wasm' | 'native', kind: 'mlp' | 'cnn'): Promise<number[]> {
    await initBackend(backend === 'native' ? 'native' : backend);
    const model = kind === 'mlp' ? buildMlp([64], [32, 16], 5, new Rng(3)) : buildCnn([8, 8, 1], [4, 6], 5, new Rng(3));
    const ctx = { model, optimizer: createOptimizer('adam', 1e-2), loss: { alpha: 0.5, temperature: 2, kind: 'kd' as const }, inputShape: kind === 'mlp' ? [64] : [8, 8, 1], classes: 5 };
    const batch = new ExampleTable(16, 64, 5);
    const losses: number[] = [];
    const metrics = new MetricsAccumulator();
    for (let step = 0; step < 12; step++) {
      // three batches, seen four times each
      batch.x.set(values([16, 64], (step % 3) + 1).map((v) => v + 0.5));
      batch.t.set(values([16, 5], (step % 3) + 100).map((v) => v * 6));
      for (let i = 0; i < 16; i++) batch.y[i] = (i + step) % 3 === 0 ? 0 : (i * 7 + step % 3) % 5;
      batch.length = 16;
      losses.push(trainStep(ctx, batch, metrics));
    }
    model.dispose();
    return losses;
  }

  for (const kind of ['mlp', 'cnn'] as const) {
    test(`${kind}: run to run identical per backend; across backends within float tolerance`, async () => {
      const backends = ['cpu', 'wasm', ...(native.ok ? ['native' as const] : [])] as const;
      const curves: Record<string, number[]> = {};
      for (const b of backends) {
        curves[b] = await curve(b, kind);
        assert.deepEqual(await curve(b, kind), curves[b], `${b}: a second run differs`);
      }
      const sum = (xs: number[]) => xs.reduce((a, b) => a + b, 0);
      assert.ok(sum(curves.cpu.slice(9)) < sum(curves.cpu.slice(0, 3)), `the loss falls: ${curves.cpu.map((l) => l.toFixed(4))}`);
      for (const b of backends) {
        close(Float32Array.from(curves.cpu), Float32Array.from(curves[b]), 1e-4, `${b} vs cpu`);
      }
    });
  }
});
