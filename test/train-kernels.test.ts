/**
 * The wasm kernel replacements (src/train/wasm-kernels.ts) against the cpu backend's kernels.
 */
import assert from 'node:assert/strict';
import { before, describe, test } from 'node:test';
import * as tf from '@tensorflow/tfjs';
import '@tensorflow/tfjs-backend-wasm';
import { initBackend } from '../src/train/backend.js';
import { installWasmKernels } from '../src/train/wasm-kernels.js';

function values(shape: number[], seed: number): Float32Array {
  const n = shape.reduce((a, b) => a * b, 1);
  return Float32Array.from({ length: n }, (_, i) => Math.sin(seed * 12.9898 + i * 78.233) * 0.5);
}

/** Run `f` on both backends and return [cpu, wasm] results. */
async function onBoth(f: () => tf.Tensor): Promise<[Float32Array, Float32Array]> {
  const out: Float32Array[] = [];
  for (const b of ['cpu', 'wasm']) {
    await tf.setBackend(b);
    const t = tf.tidy(f);
    out.push(t.dataSync() as Float32Array);
    t.dispose();
  }
  return [out[0], out[1]];
}

function maxDiff(a: Float32Array, b: Float32Array): number {
  assert.equal(a.length, b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

describe('wasm kernel replacements match the cpu backend', () => {
  before(async () => {
    await initBackend('cpu');
    await initBackend('wasm');
    assert.deepEqual(installWasmKernels(), ['Conv2DBackpropFilter', 'BatchMatMul', '_FusedMatMul']);
  });

  const convCases = [
    { x: [2, 7, 7, 3], f: [3, 3, 3, 4], s: 1, p: 'same' as const },
    { x: [2, 7, 7, 3], f: [3, 3, 3, 4], s: 2, p: 'same' as const },
    { x: [1, 8, 6, 2], f: [3, 2, 2, 5], s: [2, 1] as [number, number], p: 'valid' as const },
    { x: [3, 9, 9, 1], f: [5, 5, 1, 2], s: 3, p: 'same' as const },
    { x: [2, 5, 5, 2], f: [2, 2, 2, 3], s: 1, p: 1 },
    { x: [2, 6, 10, 4], f: [1, 1, 4, 8], s: 2, p: 'valid' as const },
  ];
  for (const c of convCases) {
    test(`Conv2DBackpropFilter x=[${c.x}] filter=[${c.f}] strides=${c.s} pad=${c.p}`, async () => {
      const [cpu, wasm] = await onBoth(() => {
        const x = tf.tensor4d(values(c.x, 1), c.x as [number, number, number, number]);
        const w = tf.tensor4d(values(c.f, 2), c.f as [number, number, number, number]);
        const yShape = tf.conv2d(x, w, c.s, c.p).shape;
        const dy = tf.tensor(values(yShape, 3), yShape);
        return tf.grad((ww: tf.Tensor) => tf.sum(tf.mul(tf.conv2d(x, ww as tf.Tensor4D, c.s, c.p), dy)))(w);
      });
      assert.ok(maxDiff(cpu, wasm) < 1e-5, `max diff ${maxDiff(cpu, wasm)}`);
    });
  }

  for (const [ta, tb] of [[false, false], [true, false], [false, true], [true, true]]) {
    test(`BatchMatMul transposeA=${ta} transposeB=${tb}, rank 2 and batched rank 3`, async () => {
      for (const batch of [[], [3]]) {
        const [cpu, wasm] = await onBoth(() => {
          const a = tf.tensor(values([...batch, 5, 7], 4), [...batch, ...(ta ? [7, 5] : [5, 7])]);
          const b = tf.tensor(values([...batch, 7, 6], 5), [...batch, ...(tb ? [6, 7] : [7, 6])]);
          return tf.matMul(a, b, ta, tb);
        });
        assert.ok(maxDiff(cpu, wasm) < 1e-5, `batch [${batch}]: max diff ${maxDiff(cpu, wasm)}`);
      }
    });
    test(`_FusedMatMul with bias + relu, transposeA=${ta} transposeB=${tb}`, async () => {
      const [cpu, wasm] = await onBoth(() => {
        const a = tf.tensor2d(values([5, 7], 6), (ta ? [7, 5] : [5, 7]) as [number, number]);
        const b = tf.tensor2d(values([7, 6], 7), (tb ? [6, 7] : [7, 6]) as [number, number]);
        return tf.fused.matMul({ a, b, transposeA: ta, transposeB: tb, bias: tf.tensor1d(values([6], 8)), activation: 'relu' });
      });
      assert.ok(maxDiff(cpu, wasm) < 1e-5, `max diff ${maxDiff(cpu, wasm)}`);
    });
  }

  test('a small CNN trains on wasm and its gradients match cpu', async () => {
    const grads = async (backend: string) => {
      await tf.setBackend(backend);
      const model = tf.sequential({
        layers: [
          tf.layers.conv2d({ inputShape: [6, 6, 2], filters: 3, kernelSize: 3, padding: 'same', activation: 'relu', kernelInitializer: tf.initializers.glorotUniform({ seed: 1 }) }),
          tf.layers.maxPooling2d({ poolSize: 2 }),
          tf.layers.flatten(),
          tf.layers.dense({ units: 4, kernelInitializer: tf.initializers.glorotUniform({ seed: 2 }) }),
        ],
      });
      const x = tf.tensor4d(values([4, 6, 6, 2], 9), [4, 6, 6, 2]);
      const { grads: g } = tf.variableGrads(() => tf.mean(tf.square(model.apply(x) as tf.Tensor)) as tf.Scalar);
      const out = Object.values(g).map((t) => Array.from(t.dataSync()));
      tf.dispose([x, ...Object.values(g)]);
      model.dispose();
      return out.flat();
    };
    const cpu = Float32Array.from(await grads('cpu'));
    const wasm = Float32Array.from(await grads('wasm'));
    assert.ok(maxDiff(cpu, wasm) < 1e-5, `max diff ${maxDiff(cpu, wasm)}`);
  });

  test('no tensor memory leaks from the replacements', async () => {
    await tf.setBackend('wasm');
    const run = () => tf.tidy(() => {
      const x = tf.tensor4d(values([2, 5, 5, 2], 1), [2, 5, 5, 2]);
      const w = tf.tensor4d(values([3, 3, 2, 3], 2), [3, 3, 2, 3]);
      const g = tf.grad((ww: tf.Tensor) => tf.sum(tf.conv2d(x, ww as tf.Tensor4D, 1, 'same')))(w);
      return tf.add(g.sum(), tf.matMul(tf.ones([3, 4]), tf.ones([5, 4]), false, true).sum());
    });
    run().dispose();
    const before = { ...tf.memory(), dataIds: tf.backend().numDataIds() };
    for (let i = 0; i < 5; i++) run().dispose();
    assert.equal(tf.memory().numTensors, before.numTensors);
    // buffers the kernels allocate themselves (im2col patches, transposes) are backend data, not tensors
    assert.equal(tf.backend().numDataIds(), before.dataIds);
  });
});
