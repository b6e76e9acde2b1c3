import assert from 'node:assert/strict';
import { before, describe, test } from 'node:test';
import * as tf from '@tensorflow/tfjs';
import { crossEntropy, kdLoss, kdLossBatch, klDivergence, logSoftmax, meanSquaredError, softmax, type LossParams } from '../src/train/losses.js';
import { klRow } from '../src/train/metrics.js';
import { distillationLoss } from '../src/train/tf-losses.js';
import { initBackend } from '../src/train/backend.js';

const L2 = Math.log(2);
const L3 = Math.log(3);
// Logits chosen so that the softmaxes are simple fractions:
//   softmax([0, ln2, ln3]) = [1, 2, 3] / 6      softmax([ln3, ln2, 0]) = [3, 2, 1] / 6
const ZS = [0, L2, L3];
const ZT = [L3, L2, 0];

function close(actual: ArrayLike<number>, expected: ArrayLike<number>, tol: number, what = ''): void {
  assert.equal(actual.length, expected.length, `${what}: length`);
  for (let i = 0; i < expected.length; i++) {
    assert.ok(Math.abs(actual[i] - expected[i]) <= tol, `${what}[${i}]: ${actual[i]} vs ${expected[i]} (tol ${tol})`);
  }
}

function near(actual: number, expected: number, tol: number, what = ''): void {
  assert.ok(Math.abs(actual - expected) <= tol, `${what}: ${actual} vs ${expected} (tol ${tol})`);
}

const kd = (alpha: number, temperature: number): LossParams => ({ alpha, temperature, kind: 'kd' });

describe('reference losses (hand-computed)', () => {
  test('softmax and logSoftmax', () => {
    close(softmax(ZS), [1 / 6, 2 / 6, 3 / 6], 1e-15, 'softmax');
    close(logSoftmax(ZS), [Math.log(1 / 6), Math.log(2 / 6), Math.log(3 / 6)], 1e-15, 'logSoftmax');
    // T = 2 halves the logits: softmax([0, ln√2, ln√3]) = [1, √2, √3] / (1 + √2 + √3)
    const s = 1 + Math.SQRT2 + Math.sqrt(3);
    close(softmax(ZS, 2), [1 / s, Math.SQRT2 / s, Math.sqrt(3) / s], 1e-15, 'softmax T=2');
  });

  test('max subtraction: huge logits neither overflow nor lose precision', () => {
    close(softmax([1000, 1000]), [0.5, 0.5], 0, 'softmax [1000,1000]');
    close(logSoftmax([1000, 0]), [0, -1000], 1e-12, 'logSoftmax [1000,0]');
    close(softmax([-1000, -1000, -1000]), [1 / 3, 1 / 3, 1 / 3], 1e-15, 'softmax of very negative');
  });

  test('KL, CE, MSE values', () => {
    // KL(p_t || p_s) = 3/6 ln(3/1) + 2/6 ln(2/2) + 1/6 ln(1/3) = (1/2 - 1/6) ln 3 = ln(3)/3 = 0.366204096...
    near(klDivergence(ZT, ZS), L3 / 3, 1e-15, 'KL T=1');
    near(klDivergence(ZT, ZS), 0.3662040962227033, 1e-15, 'KL T=1 numeric');
    // T = 2, s = 1 + √2 + √3 = 4.146264...: KL = √3/s ln(√3) + √2/s ln 1 + 1/s ln(1/√3) = (√3 - 1)/s · ln√3 = 0.0969836871...
    near(klDivergence(ZT, ZS, 2), 0.09698368716607396, 1e-15, 'KL T=2');
    near(klDivergence(ZS, ZS, 3), 0, 1e-15, 'KL of equal distributions');
    // CE(y = 2) = -ln(3/6) = ln 2
    near(crossEntropy(ZS, 2), L2, 1e-15, 'CE');
    // mean((z_s - z_t)^2) = ((-ln3)^2 + 0 + (ln3)^2) / 3 = 2 ln(3)^2 / 3 = 0.80463264...
    near(meanSquaredError(ZS, ZT), 0.8046326405417213, 1e-15, 'MSE');
  });

  test('kdLoss value and gradient: pure distillation, T = 1 and T = 2', () => {
    // alpha = 1, T = 1: loss = KL = ln(3)/3; grad = T (p_s - p_t) = [1-3, 2-2, 3-1] / 6 = [-1/3, 0, 1/3]
    const a = kdLoss(ZS, ZT, -1, kd(1, 1));
    near(a.loss, L3 / 3, 1e-15, 'loss');
    close(a.grad, [-1 / 3, 0, 1 / 3], 1e-15, 'grad');
    // alpha = 1, T = 2: loss = T^2 KL = 4 · 0.0969836871... = 0.3879347486...;
    // grad = 2 · ([1, √2, √3] - [√3, √2, 1]) / s = [2(1-√3)/s, 0, 2(√3-1)/s] = [-0.3531134256, 0, 0.3531134256]
    const b = kdLoss(ZS, ZT, -1, kd(1, 2));
    near(b.loss, 0.38793474866429584, 1e-15, 'loss T=2');
    close(b.grad, [-0.3531134256058652, 0, 0.3531134256058652], 1e-15, 'grad T=2');
  });

  test('kdLoss mixed with labels (alpha = 0.5) and labels only (alpha = 0)', () => {
    // loss = 0.5 · ln(3)/3 + 0.5 · ln 2 = 0.1831020481 + 0.3465735903 = 0.5296756384
    // grad = 0.5 (p_s - p_t) + 0.5 (p_s - onehot(2)) = 0.5 [-1/3, 0, 1/3] + 0.5 [1/6, 2/6, -3/6] = [-1/12, 1/6, -1/12]
    const m = kdLoss(ZS, ZT, 2, kd(0.5, 1));
    near(m.loss, 0.5296756383913243, 1e-15, 'loss');
    close(m.grad, [-1 / 12, 1 / 6, -1 / 12], 1e-15, 'grad');
    // alpha = 0: plain CE, the teacher is ignored: loss = ln 2, grad = [1/6, 2/6, 3/6 - 1]
    const c = kdLoss(ZS, [NaN, NaN, NaN], 2, kd(0, 5));
    near(c.loss, L2, 1e-15, 'CE loss');
    close(c.grad, [1 / 6, 2 / 6, -1 / 2], 1e-15, 'CE grad');
    assert.throws(() => kdLoss(ZS, ZT, -1, kd(0.5, 1)), /label/);
  });

  test('mse kind: value and gradient 2 (z_s - z_t) / K', () => {
    const r = kdLoss(ZS, ZT, -1, { alpha: 1, temperature: 7, kind: 'mse' });
    near(r.loss, 0.8046326405417213, 1e-15, 'loss');
    // 2 · [-ln3, 0, ln3] / 3 = [-0.7324081924, 0, 0.7324081924]
    close(r.grad, [-0.7324081924454066, 0, 0.7324081924454066], 1e-15, 'grad');
  });

  test('batch loss is the mean; its gradient is per-example gradient / B', () => {
    const s = Float64Array.from([...ZS, ...ZT]);
    const t = Float64Array.from([...ZT, ...ZT]);
    const r = kdLossBatch(s, t, null, 2, 3, kd(1, 1));
    near(r.loss, (L3 / 3 + 0) / 2, 1e-15, 'mean');
    close(r.grad, [-1 / 6, 0, 1 / 6, 0, 0, 0], 1e-15, 'grad');
  });

  test('metrics KL row agrees with klDivergence, NaN for non-finite teacher rows', () => {
    near(klRow(Float32Array.from(ZT), Float32Array.from(ZS), 0, 3), L3 / 3, 1e-7, 'klRow');
    assert.ok(Number.isNaN(klRow([NaN, 0, 0], ZS, 0, 3)));
    assert.ok(Number.isNaN(klRow([Infinity, 0, 0], ZS, 0, 3)));
  });

  test('finite differences of the reference loss match its analytic gradient', () => {
    const zs = [0.3, -1.2, 2.0, 0.7];
    const zt = [1.5, -0.4, 0.1, 0.9];
    for (const p of [kd(1, 1), kd(1, 3.5), kd(0.3, 2), { alpha: 0.6, temperature: 1, kind: 'mse' as const }]) {
      const { grad } = kdLoss(zs, zt, 2, p);
      const h = 1e-6;
      for (let i = 0; i < zs.length; i++) {
        const up = zs.slice(); up[i] += h;
        const dn = zs.slice(); dn[i] -= h;
        const fd = (kdLoss(up, zt, 2, p).loss - kdLoss(dn, zt, 2, p).loss) / (2 * h);
        near(fd, grad[i], 1e-8, `fd ${JSON.stringify(p)} [${i}]`);
      }
    }
  });
});

describe('tfjs loss matches the reference', () => {
  before(async () => {
    await initBackend('cpu');
  });

  const B = 5;
  const K = 4;
  const rand = (n: number, seed: number) => Float32Array.from({ length: n }, (_, i) => Math.sin(seed * 7.31 + i * 1.7) * 3);
  const zs = rand(B * K, 1);
  const zt = rand(B * K, 2);
  const labels = Int32Array.from([0, 3, 1, 2, 3]);

  for (const p of [kd(1, 1), kd(1, 4), kd(0.5, 2), kd(0, 1), { alpha: 1, temperature: 1, kind: 'mse' as const }, { alpha: 0.25, temperature: 3, kind: 'mse' as const }]) {
    test(`value and tf.grad vs reference: ${JSON.stringify(p)}`, () => {
      const ref = kdLossBatch(zs, zt, labels, B, K, p);
      const t = tf.tensor2d(zt, [B, K]);
      const y = tf.tensor1d(labels, 'int32');
      const f = (s: tf.Tensor) => distillationLoss(s as tf.Tensor2D, t, y, p);
      const s = tf.tensor2d(zs, [B, K]);
      near(f(s).dataSync()[0], ref.loss, 1e-5, 'loss');
      const g = tf.grad(f)(s).dataSync();
      close(g, ref.grad, 1e-6, 'grad');
      tf.dispose([t, y, s]);
    });
  }

  test('alpha = 1: tf.grad of T²·KL is T (softmax(z_s/T) - softmax(z_t/T)) per example', () => {
    const T = 3;
    const t = tf.tensor2d(zt, [B, K]);
    const g = tf.grad((s: tf.Tensor) => distillationLoss(s as tf.Tensor2D, t, null, kd(1, T)))(tf.tensor2d(zs, [B, K])).dataSync();
    for (let r = 0; r < B; r++) {
      const ps = softmax(zs.subarray(r * K, r * K + K), T);
      const pt = softmax(zt.subarray(r * K, r * K + K), T);
      // the batch loss is a mean: per-example gradient = B · batch gradient
      close(Array.from(g.subarray(r * K, r * K + K), (v) => v * B), Array.from(ps, (v, i) => T * (v - pt[i])), 1e-6, `row ${r}`);
    }
    t.dispose();
  });

  test('tf.grad matches central finite differences of the tfjs loss itself', () => {
    const p = kd(0.7, 2.5);
    const t = tf.tensor2d(zt, [B, K]);
    const y = tf.tensor1d(labels, 'int32');
    // float32 forward: a larger step, looser tolerance
    const value = (a: Float32Array) => tf.tidy(() => distillationLoss(tf.tensor2d(a, [B, K]), t, y, p).dataSync()[0]);
    const g = tf.grad((s: tf.Tensor) => distillationLoss(s as tf.Tensor2D, t, y, p))(tf.tensor2d(zs, [B, K])).dataSync();
    const h = 1e-2;
    for (const i of [0, 3, 7, 12, 19]) {
      const up = zs.slice(); up[i] += h;
      const dn = zs.slice(); dn[i] -= h;
      near((value(up) - value(dn)) / (2 * h), g[i], 2e-4, `fd [${i}]`);
    }
    tf.dispose([t, y]);
  });

  test('no tensors leak from the loss', () => {
    const before = tf.memory().numTensors;
    const t = tf.tensor2d(zt, [B, K]);
    const s = tf.tensor2d(zs, [B, K]);
    const y = tf.tensor1d(labels, 'int32');
    distillationLoss(s, t, y, kd(0.5, 2)).dispose();
    tf.dispose([t, s, y]);
    assert.equal(tf.memory().numTensors, before);
  });
});
