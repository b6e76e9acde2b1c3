/** Training from top-k caches: tail reconstructions, the bucket loss (reference and tfjs), end to end. */
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { after, before, describe, test } from 'node:test';
import * as tf from '@tensorflow/tfjs';
import { precomputeLogits } from '../src/precompute/run.js';
import { initBackend } from '../src/train/backend.js';
import { softmax } from '../src/train/losses.js';
import { trainStudent } from '../src/train/run.js';
import { ABSENT_LOGIT, bucketSoftTerm, denseTeacherRows, sampledTeacherRows, type SparseRows } from '../src/train/sparse-targets.js';
import { distillationLoss } from '../src/train/tf-losses.js';
import { UserError } from '../src/util/errors.js';
import { floatToHalf } from '../src/util/half.js';
import { FIXTURES, randomFloats, tempDir, writeNpy } from './helpers/data.js';
import { rng } from './helpers/shard-columns.js';

const L = Math.log;

function near(actual: number, expected: number, tol: number, what = ''): void {
  assert.ok(Math.abs(actual - expected) <= tol, `${what}: ${actual} vs ${expected} (tol ${tol})`);
}

/** p = (0.5, 0.25, 0.125, 0.125) over 4 classes; classes 0 and 1 stored; logits shifted by lse = 3. */
const ROW: SparseRows = {
  rows: 1, k: 2, indices: Int32Array.from([0, 1]), values: Float32Array.from([L(0.5) + 3, L(0.25) + 3]), dtype: 'float32', logsumexp: Float32Array.from([3]),
};

describe('sparse teacher rows (hand-computed)', () => {
  test('ignore: stored log-probabilities, the rest absent; tempered softmax renormalises over the top-k', () => {
    const t = denseTeacherRows(ROW, 4, 'ignore');
    near(t[0], L(0.5), 1e-6, 't0');
    near(t[1], L(0.25), 1e-6, 't1');
    assert.deepEqual([t[2], t[3]], [ABSENT_LOGIT, ABSENT_LOGIT].map(Math.fround));
    const q1 = softmax(t, 1);
    near(q1[0], 2 / 3, 1e-6, 'T=1');
    assert.equal(q1[2], 0);
    const q2 = softmax(t, 2); // ∝ (√.5, √.25) = (0.7071, 0.5)
    near(q2[0], Math.SQRT1_2 / (Math.SQRT1_2 + 0.5), 1e-6, 'T=2');
  });

  test('uniform: the tail 0.25 spread as 0.125 each reproduces p exactly at T = 1', () => {
    const t = denseTeacherRows(ROW, 4, 'uniform');
    [0.5, 0.25, 0.125, 0.125].forEach((p, i) => near(t[i], L(p), 1e-6, `t${i}`));
    // classes 2..5 of a 6-class row share the tail: 0.25 / 4 each
    const t6 = denseTeacherRows(ROW, 6, 'uniform');
    near(t6[5], L(0.0625), 1e-6, 'u');
  });

  test('float16 values, several rows, and a NaN logsumexp row (left out of training as non-finite)', () => {
    const s: SparseRows = {
      rows: 2, k: 1, indices: Int32Array.from([2, 0]), values: Uint16Array.from([floatToHalf(0.5), floatToHalf(1)]), dtype: 'float16', logsumexp: Float32Array.from([0.5, NaN]),
    };
    const t = denseTeacherRows(s, 3, 'uniform');
    near(t[2], 0, 1e-7, 'p = 1: log p = 0');
    // tail floored: log(2^-126 / 2), finite
    assert.ok(Number.isFinite(t[0]) && t[0] < -80);
    assert.ok([t[3], t[4], t[5]].every(Number.isNaN));
  });

  test('bucket soft term: T² KL over stored classes + one tail bucket', () => {
    const t = denseTeacherRows(ROW, 4, 'bucket');
    const zs = [0, 0, 0, 0]; // student uniform: buckets (.25, .25, .5)
    // T = 1: KL((.5, .25, .25) || (.25, .25, .5)) = .5 ln 2 - .25 ln 2 = .25 ln 2
    // (the teacher row is float32, so agreement is to ~1e-8)
    near(bucketSoftTerm(zs, t, 1).loss, 0.25 * Math.LN2, 1e-7, 'T=1');
    // T = 2: teacher ∝ (√.5, √.25, 2·√.125) (the tail bucket keeps the uniform estimate of its tempered mass)
    const w = [Math.SQRT1_2, 0.5, 2 * Math.sqrt(0.125)];
    const sum = w[0] + w[1] + w[2];
    const P = w.map((x) => x / sum);
    const Q = [0.25, 0.25, 0.5];
    const kl = P.reduce((a, p, i) => a + p * L(p / Q[i]), 0);
    near(bucketSoftTerm(zs, t, 2).loss, 4 * kl, 1e-7, 'T=2');
  });

  test('bucket gradient equals finite differences', () => {
    const r = rng(4);
    const c = 12;
    const full = Float32Array.from({ length: c }, () => (r() - 0.5) * 6);
    const order = [...full.keys()].sort((a, b) => full[b] - full[a]).slice(0, 4);
    const lse = L(full.reduce((a, v) => a + Math.exp(v), 0));
    const t = denseTeacherRows({ rows: 1, k: 4, indices: Int32Array.from(order), values: Float32Array.from(order, (i) => full[i]), dtype: 'float32', logsumexp: Float32Array.from([lse]) }, c, 'bucket');
    const zs = Array.from({ length: c }, () => (r() - 0.5) * 4);
    for (const T of [1, 3]) {
      const { grad } = bucketSoftTerm(zs, t, T);
      for (let j = 0; j < c; j++) {
        const h = 1e-6;
        const up = [...zs];
        const down = [...zs];
        up[j] += h;
        down[j] -= h;
        near(grad[j], (bucketSoftTerm(up, t, T).loss - bucketSoftTerm(down, t, T).loss) / (2 * h), 1e-6, `T=${T} grad[${j}]`);
      }
    }
  });
});

describe('sampled teacher rows (hand-computed)', () => {
  // 4 draws over 5 classes: class 3 three times (logit 2), class 1 once (logit 1)
  const S = {
    rows: 1, k: 4, indices: Int32Array.from([3, 1, -1, -1]), counts: Int32Array.from([3, 1, 0, 0]),
    values: Float32Array.from([2, 1, 0, 0]), dtype: 'float32' as const, logsumexp: Float32Array.from([2.5]),
  };

  test('at the sampling temperature the target is counts / N', () => {
    for (const t of [1, 2]) {
      const q = softmax(sampledTeacherRows(S, 5, t, t), t);
      near(q[3], 0.75, 1e-6, `T=${t}`);
      near(q[1], 0.25, 1e-6, `T=${t}`);
      assert.equal(q[0] + q[2] + q[4], 0);
    }
  });

  test('at another temperature the counts are reweighted by exp(z (1/T - 1/Ts))', () => {
    // T = 2, Ts = 1: weights 3 e^{-1} and 1 e^{-1/2}
    const q = softmax(sampledTeacherRows(S, 5, 2, 1), 2);
    const w3 = 3 * Math.exp(-1);
    const w1 = Math.exp(-0.5);
    near(q[3], w3 / (w3 + w1), 1e-6, 'class 3');
    const t = sampledTeacherRows(S, 5, 2, 1);
    assert.equal(t[0], Math.fround(ABSENT_LOGIT));
  });

  test('a row whose logsumexp is NaN becomes NaN (left out)', () => {
    assert.ok(sampledTeacherRows({ ...S, logsumexp: Float32Array.from([NaN]) }, 5, 1, 1).every(Number.isNaN));
  });
});

describe('tfjs bucket loss', () => {
  before(async () => {
    await initBackend('cpu', { needsConv: false });
  });

  test('value and gradient match the float64 reference on random top-k rows', () => {
    const r = rng(8);
    const rows = 6;
    const c = 40;
    const k = 5;
    const full = Float32Array.from({ length: rows * c }, () => (r() - 0.5) * 8);
    const idx = new Int32Array(rows * k);
    const vals = new Float32Array(rows * k);
    const lse = new Float32Array(rows);
    for (let i = 0; i < rows; i++) {
      const row = full.subarray(i * c, i * c + c);
      const top = [...row.keys()].sort((a, b) => row[b] - row[a]).slice(0, k);
      top.forEach((j, n) => { idx[i * k + n] = j; vals[i * k + n] = row[j]; });
      lse[i] = L(row.reduce((a, v) => a + Math.exp(v), 0));
    }
    const teacher = denseTeacherRows({ rows, k, indices: idx, values: vals, dtype: 'float32', logsumexp: lse }, c, 'bucket');
    const student = Float32Array.from({ length: rows * c }, () => (r() - 0.5) * 4);
    for (const T of [1, 2.5]) {
      const p = { alpha: 1, temperature: T, kind: 'kd' as const, tail: 'bucket' as const };
      const tt = tf.tensor2d(teacher, [rows, c]);
      const zs = tf.tensor2d(student, [rows, c]);
      const { value, grad } = tf.valueAndGrad((z: tf.Tensor) => distillationLoss(z as tf.Tensor2D, tt, null, p))(zs);
      let want = 0;
      const wantGrad = new Float64Array(rows * c);
      for (let i = 0; i < rows; i++) {
        const ref = bucketSoftTerm(student.subarray(i * c, i * c + c), teacher.subarray(i * c, i * c + c), T);
        want += ref.loss / rows;
        ref.grad.forEach((g, j) => { wantGrad[i * c + j] = g / rows; });
      }
      near(value.dataSync()[0], want, 2e-5 * Math.max(1, want), `loss T=${T}`);
      const got = grad.dataSync();
      for (let j = 0; j < rows * c; j++) near(got[j], wantGrad[j], 2e-5, `grad T=${T} [${j}]`);
      tf.dispose([tt, zs, value, grad]);
    }
  });
});

describe('train-student on top-k caches', () => {
  let dir: string;
  let xFile: string;
  let topk: string;
  before(async () => {
    dir = tempDir('kdcache-sparse-train-');
    xFile = path.join(dir, 'x.npy');
    writeNpy(xFile, randomFloats(600 * 32, 12), [600, 32]);
    topk = path.join(dir, 'topk');
    await precomputeLogits({ teacher: path.join(FIXTURES, 'wide_teacher.onnx'), data: xFile, out: topk, topK: 32, dtype: 'float16', shardRows: 250, device: 'cpu', quiet: true });
  });
  after(() => fs.rmSync(dir, { recursive: true, force: true }));

  for (const tail of ['ignore', 'uniform', 'bucket'] as const) {
    test(`--tail ${tail}: finite losses, the loss falls, the summary records the tail`, async () => {
      const out = path.join(dir, `student-${tail}`);
      const s = await trainStudent({ logits: topk, data: xFile, out, student: 'mlp:64', epochs: 3, batchSize: 50, lr: 3e-3, temperature: 2, tail, valFraction: 0.2, backend: 'wasm', quiet: true });
      const lines = fs.readFileSync(path.join(out, 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
      assert.ok(lines.every((l) => Number.isFinite(l.train_loss)), JSON.stringify(lines));
      assert.ok(lines[2].train_loss < lines[0].train_loss, 'loss falls');
      assert.equal(s.hyperparameters.tail, tail);
      assert.ok(s.teacher_agreement !== null && s.teacher_agreement >= 0);
    });
  }

  test('a sampled cache (--sample 32 at T = 2) trains at T = 2 with finite, falling losses; another T gets a notice', async () => {
    const sampled = path.join(dir, 'sampled');
    await precomputeLogits({ teacher: path.join(FIXTURES, 'wide_teacher.onnx'), data: xFile, out: sampled, sample: 32, sampleTemperature: 2, dtype: 'float16', shardRows: 250, device: 'cpu', quiet: true });
    const out = path.join(dir, 'student-sampled');
    const s = await trainStudent({ logits: sampled, data: xFile, out, student: 'mlp:64', epochs: 3, batchSize: 50, lr: 3e-3, temperature: 2, backend: 'wasm', quiet: true });
    const lines = fs.readFileSync(path.join(out, 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
    assert.ok(lines.every((l) => Number.isFinite(l.train_loss)), JSON.stringify(lines));
    assert.ok(lines[2].train_loss < lines[0].train_loss, 'loss falls');
    assert.equal(s.hyperparameters.tail, null, '--tail does not apply to sampled caches');
    const log: string[] = [];
    await trainStudent({ logits: sampled, data: xFile, out: path.join(dir, 'student-sampled-t1'), student: 'mlp:8', epochs: 1, temperature: 1, backend: 'wasm', quiet: true, log: (l) => log.push(l) });
    assert.ok(log.some((l) => /^notice: the cache's classes were drawn at T=2; at --temperature 1 the draws are reweighted/.test(l)), log.join('\n'));
  });

  test('--loss mse is refused for a top-k cache; a sequence cache is refused with one line', async () => {
    await assert.rejects(trainStudent({ logits: topk, data: xFile, student: 'mlp:8', out: path.join(dir, 'mse'), loss: 'mse', epochs: 1, quiet: true }),
      (e: unknown) => e instanceof UserError && /--loss mse: the cache keeps only the top 32 logits/.test(e.message));
    const tok = path.join(dir, 'tok.npy');
    writeNpy(tok, BigInt64Array.from({ length: 20 * 4 }, (_, i) => BigInt(1 + (i % 50))), [20, 4]);
    const seq = path.join(dir, 'seq');
    await precomputeLogits({ teacher: path.join(FIXTURES, 'seq_teacher.onnx'), data: tok, out: seq, topK: 8, device: 'cpu', quiet: true });
    await assert.rejects(trainStudent({ logits: seq, data: tok, student: 'mlp:8', out: path.join(dir, 'seq-student'), epochs: 1, quiet: true }),
      (e: unknown) => e instanceof UserError && /a sequence cache \(one row per position\)/.test(e.message));
  });
});

describe('train-student on a probability teacher', () => {
  test('dense and top-k caches of probs_teacher (with exact zero probabilities) give finite losses', async () => {
    const dir = tempDir('kdcache-probs-train-');
    try {
      const x = randomFloats(400 * 16, 5);
      for (let i = 0; i < 16 * 3; i++) x[i] *= 400; // rows 0-2: the softmax underflows to exact zeros
      const xFile = path.join(dir, 'x.npy');
      writeNpy(xFile, x, [400, 16]);
      for (const topK of [undefined, 2]) {
        const cache = path.join(dir, `cache-${topK ?? 'dense'}`);
        await precomputeLogits({ teacher: path.join(FIXTURES, 'probs_teacher.onnx'), data: xFile, out: cache, topK, device: 'cpu', quiet: true });
        for (const tail of topK ? (['ignore', 'uniform', 'bucket'] as const) : [undefined]) {
          const s = await trainStudent({ logits: cache, data: xFile, student: 'mlp:16', epochs: 2, batchSize: 40, temperature: 4, tail, out: path.join(dir, `s-${topK ?? 'dense'}-${tail}`), backend: 'wasm', quiet: true });
          assert.ok(s.train !== null && Number.isFinite(s.train.loss!) && Number.isFinite(s.train.kl!), `${tail}: ${JSON.stringify(s.train)}`);
          assert.equal(s.train.examples, 400, 'no row left out');
        }
      }
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
