import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { ShardColumns } from '../src/shards/format.js';
import { combineFidelity, FidelityAccumulator } from '../src/sparse/fidelity.js';
import { toStored } from '../src/sparse/store.js';
import { LOG_FLOOR, detectTeacherOutput, toLogProbs } from '../src/sparse/teacher-output.js';
import { TAIL_FLOOR, storedLogProbs, tailMass, uniformTailLogProb } from '../src/sparse/tail.js';
import { rowRng, sampleRow } from '../src/sparse/sample.js';
import { rowLogSumExp, topkRow } from '../src/sparse/topk.js';
import { halfToFloat } from '../src/util/dtype.js';
import { floatToHalf } from '../src/util/half.js';
import { rng } from './helpers/shard-columns.js';

/** Top-k by sorting every index: the obvious reference. */
function referenceTopk(row: ArrayLike<number>, k: number): number[] {
  return [...Array(row.length).keys()].sort((a, b) => (row[b] - row[a]) || (a - b)).slice(0, k);
}

function lse64(row: ArrayLike<number>, t = 1): number {
  const m = Math.max(...Array.from(row, (v) => v / t));
  return m + Math.log(Array.from(row, (v) => Math.exp(v / t - m)).reduce((a, b) => a + b, 0));
}

describe('top-k selection', () => {
  test('equals a full sort on random rows, for every k', () => {
    const r = rng(5);
    for (let trial = 0; trial < 200; trial++) {
      const width = 1 + Math.floor(r() * 300);
      const row = Float32Array.from({ length: width }, () => (r() - 0.5) * 20);
      const k = 1 + Math.floor(r() * width);
      const idx = new Int32Array(k);
      const val = new Float32Array(k);
      topkRow(row, 0, width, k, idx, val, 0);
      const want = referenceTopk(row, k);
      assert.deepEqual([...idx], want);
      assert.deepEqual([...val], want.map((i) => row[i]));
    }
  });

  test('ties are broken by the lower class index, deterministically', () => {
    const row = Float32Array.from([1, 3, 3, 0, 3, 2, 3, 1]);
    const idx = new Int32Array(3);
    const val = new Float32Array(3);
    topkRow(row, 0, row.length, 3, idx, val, 0);
    assert.deepEqual([...idx], [1, 2, 4]);
    const flat = new Float32Array(50).fill(0.5);
    const idx2 = new Int32Array(7);
    topkRow(flat, 0, 50, 7, idx2, new Float32Array(7), 0);
    assert.deepEqual([...idx2], [0, 1, 2, 3, 4, 5, 6]);
  });

  test('offsets into a shard of rows', () => {
    const rows = Float32Array.from([0, 1, 2, 3, /* row 1 */ 9, 8, 7, 6]);
    const idx = new Int32Array(4);
    const val = new Float64Array(4);
    topkRow(rows, 0, 4, 2, idx, val, 0);
    topkRow(rows, 4, 4, 2, idx, val, 2);
    assert.deepEqual([...idx], [3, 2, 0, 1]);
    assert.deepEqual([...val], [3, 2, 9, 8]);
  });

  test('logsumexp of the full row, exact in float64; non-finite rows give NaN', () => {
    const row = Float32Array.from([1000, 999, -5, 3]);
    assert.ok(Math.abs(rowLogSumExp(row, 0, 4) - lse64(row)) < 1e-12);
    assert.ok(Math.abs(rowLogSumExp(row, 0, 4, 2) - lse64(row, 2)) < 1e-12);
    assert.ok(Number.isNaN(rowLogSumExp(Float32Array.from([1, NaN]), 0, 2)));
    assert.ok(Number.isNaN(rowLogSumExp(Float32Array.from([1, Infinity]), 0, 2)));
    assert.ok(Number.isNaN(rowLogSumExp(Float32Array.from([1, -Infinity]), 0, 2)));
  });
});

describe('tail mass', () => {
  test('hand-computed: p = (0.5, 0.25, 0.125, 0.125), top-2 stored', () => {
    const z = [Math.log(0.5) + 3, Math.log(0.25) + 3]; // logits shifted by 3: lse = 3
    const lp = new Float64Array(2);
    const mass = storedLogProbs(z, 0, 2, 3, lp);
    assert.ok(Math.abs(mass - 0.75) < 1e-15);
    assert.ok(Math.abs(lp[0] - Math.log(0.5)) < 1e-15);
    assert.ok(Math.abs(tailMass(mass) - 0.25) < 1e-15);
    assert.ok(Math.abs(uniformTailLogProb(mass, 4, 2) - Math.log(0.125)) < 1e-15);
  });

  test('a tail that rounding made zero or negative stays finite', () => {
    assert.equal(tailMass(1.0000001), TAIL_FLOOR);
    assert.ok(Number.isFinite(uniformTailLogProb(1.2, 10, 3)));
  });
});

describe('fidelity', () => {
  test('hand-computed masses and KL for one row', () => {
    // p = (0.5, 0.25, 0.125, 0.125), k = 2: mass 0.75; the uniform tail is exact here, so KL = 0
    const full = Float64Array.from([0.5, 0.25, 0.125, 0.125], Math.log);
    const acc = new FidelityAccumulator(4, 2, 2);
    acc.add(full, 0, 0, Int32Array.from([0, 1]), [full[0], full[1]], 0, 0, true);
    const s = acc.stats();
    assert.ok(Math.abs(s.mass_mean - 0.75) < 1e-12);
    const sq = [0.5, 0.25, 0.125, 0.125].map(Math.sqrt);
    const sum = sq.reduce((a, b) => a + b);
    assert.ok(Math.abs(s.mass_t_mean - (sq[0] + sq[1]) / sum) < 1e-12, 'retained mass at T = 2');
    assert.ok(s.kl_mean < 1e-12 && s.kl_t_mean < 1e-12);
    assert.equal(s.kl_rows, 1);
  });

  test('KL of an uneven tail equals the formula', () => {
    // p = (0.6, 0.3, 0.1, 0.0): k = 2, tail 0.1 spread as 0.05 / 0.05
    const p = [0.6, 0.3, 0.1, 1e-30];
    const full = Float64Array.from(p, Math.log);
    const acc = new FidelityAccumulator(4, 2, 1);
    const l = lse64(full);
    acc.add(full, 0, l, Int32Array.from([0, 1]), [full[0], full[1]], 0, l, true);
    const want = p.reduce((kl, pj, j) => kl + (j < 2 ? 0 : pj * Math.log(pj / ((1 - 0.9) / 2))), 0);
    assert.ok(Math.abs(acc.stats().kl_mean - want) < 1e-9, `${acc.stats().kl_mean} vs ${want}`);
  });

  test('combining shards: means weighted by rows, minimum of minima; non-finite rows left out', () => {
    const a = { rows: 2, mass_mean: 0.5, mass_min: 0.4, mass_t_mean: 0.3, mass_t_min: 0.2, kl_rows: 1, kl_mean: 1, kl_t_mean: 2 };
    const b = { rows: 6, mass_mean: 0.9, mass_min: 0.8, mass_t_mean: 0.7, mass_t_min: 0.1, kl_rows: 3, kl_mean: 3, kl_t_mean: 4 };
    const c = combineFidelity([a, b, { ...a, rows: 0, kl_rows: 0, mass_min: 0 }]);
    const want = { rows: 8, mass_mean: 0.8, mass_min: 0.4, mass_t_mean: 0.6, mass_t_min: 0.1, kl_rows: 4, kl_mean: 2.5, kl_t_mean: 3.5 };
    for (const [key, v] of Object.entries(want)) assert.ok(Math.abs(c[key as keyof typeof c] - v) < 1e-12, `${key}: ${c[key as keyof typeof c]} vs ${v}`);
    const acc = new FidelityAccumulator(2, 1, 1);
    acc.add([NaN, 1], 0, NaN, Int32Array.from([1]), [1], 0, NaN, true);
    assert.equal(acc.stats().rows, 0);
  });
});

describe('teacher outputs', () => {
  test('detects probabilities and log-probabilities; logits otherwise', () => {
    assert.equal(detectTeacherOutput([0.2, 0.8, 0.5, 0.5], 2, 2), 'probs');
    assert.equal(detectTeacherOutput([Math.log(0.2), Math.log(0.8)], 1, 2), 'logprobs');
    assert.equal(detectTeacherOutput([0.2, 0.8, 0.5, 0.6], 2, 2), 'logits', 'a row not summing to 1');
    assert.equal(detectTeacherOutput([-1, 2], 1, 2), 'logits');
    assert.equal(detectTeacherOutput([1], 1, 1), 'logits', 'one class is no evidence');
    assert.equal(detectTeacherOutput([0.5, NaN], 1, 2), 'logits');
  });

  test('zero probabilities become log(2^-126), never -Inf; NaN stays NaN', () => {
    const v = Float32Array.from([0, 0.5, 1, NaN, -Infinity]);
    toLogProbs(v.subarray(0, 4), 'probs');
    assert.equal(v[0], Math.fround(LOG_FLOOR));
    assert.equal(v[1], Math.fround(Math.log(0.5)));
    assert.equal(v[2], 0);
    assert.ok(Number.isNaN(v[3]));
    const lp = Float32Array.from([-Infinity, -1]);
    toLogProbs(lp, 'logprobs');
    assert.deepEqual([...lp], [Math.fround(LOG_FLOOR), -1]);
    assert.ok(LOG_FLOOR > -88 && Number.isFinite(halfToFloat(floatToHalf(LOG_FLOOR))));
  });
});

describe('stored columns', () => {
  const dense = (rows: number, width: number, seed = 1): ShardColumns => {
    const r = rng(seed);
    return {
      rows, row: BigInt64Array.from({ length: rows }, (_, i) => BigInt(i)),
      logits: Float32Array.from({ length: rows * width }, () => (r() - 0.5) * 8), logitsWidth: width, logitsDtype: 'float32',
    };
  };

  test('dense float32 logits pass through untouched (the original bytes)', () => {
    const cols = dense(3, 5);
    const out = toStored(cols, { kind: 'dense', dtype: 'float32', teacherOutput: 'logits' });
    assert.equal(out.cols, cols);
    assert.equal(out.fidelity, null);
  });

  test('dense float16: every value rounded to nearest half', () => {
    const cols = dense(3, 5);
    const want = [...(cols.logits as Float32Array)].map(floatToHalf);
    const out = toStored(cols, { kind: 'dense', dtype: 'float16', teacherOutput: 'logits' });
    assert.equal(out.cols.logitsDtype, 'float16');
    assert.deepEqual([...out.cols.logits], want);
  });

  test('top-k: indices, values and logsumexp equal those of the full rows; fidelity over all rows', () => {
    const cols = dense(130, 40, 9);
    const full = Float32Array.from(cols.logits as Float32Array);
    const out = toStored(cols, { kind: 'topk', k: 6, dtype: 'float32', teacherOutput: 'logits', reportTemperature: 2 });
    assert.equal(out.cols.logitsWidth, 6);
    for (let r = 0; r < 130; r++) {
      const row = full.subarray(r * 40, r * 40 + 40);
      const want = referenceTopk(row, 6);
      assert.deepEqual([...out.cols.topkIndices!.subarray(r * 6, r * 6 + 6)], want);
      assert.deepEqual([...out.cols.logits.subarray(r * 6, r * 6 + 6)], want.map((i) => row[i]));
      assert.equal(out.cols.logsumexp![r], Math.fround(lse64(row)));
    }
    assert.equal(out.fidelity!.rows, 130);
    assert.equal(out.fidelity!.kl_rows, 3, 'rows 0, 64 and 128');
    assert.ok(out.fidelity!.mass_mean > 0.15 && out.fidelity!.mass_mean < 1);
    assert.ok(out.fidelity!.mass_t_mean < out.fidelity!.mass_mean, 'a higher temperature spreads mass into the tail');
  });

  test('top-k of a probability teacher works on log-probabilities; float16 values', () => {
    const p = Float32Array.from([0.7, 0.2, 0.1, 0, /* row 1 */ 0, 0, 1, 0]);
    const out = toStored({ rows: 2, row: BigInt64Array.from([0n, 1n]), logits: p, logitsWidth: 4, logitsDtype: 'float32' },
      { kind: 'topk', k: 2, dtype: 'float16', teacherOutput: 'probs', reportTemperature: 2 });
    assert.deepEqual([...out.cols.topkIndices!], [0, 1, 2, 0]);
    const values = [...out.cols.logits].map(halfToFloat);
    assert.ok(values.every(Number.isFinite));
    assert.equal(values[0], halfToFloat(floatToHalf(Math.log(0.7))));
    assert.ok(Math.abs(out.cols.logsumexp![0]) < 1e-6 && Math.abs(out.cols.logsumexp![1]) < 1e-6, 'probabilities: lse ~ 0');
    assert.ok(Math.abs(out.fidelity!.mass_min - 0.9) < 1e-6);
  });
});

describe('sampled classes', () => {
  const row = Float32Array.from([2, 1, 0, -1, 0.5, 1.5]);
  const lse = lse64(row);

  test('N draws: distinct classes most drawn first, counts sum to N, unused slots -1/0, reproducible per (row, position)', () => {
    const idx = new Int32Array(8);
    const cnt = new Int32Array(8);
    const val = new Float32Array(8);
    const n = sampleRow(row, 0, 6, 1, lse, 8, rowRng(7, 3), idx, cnt, val, 0, 8);
    assert.equal(cnt.reduce((a, b) => a + b, 0), 8);
    assert.ok(n >= 1 && n <= 6);
    for (let i = 0; i < 8; i++) {
      if (i < n) {
        assert.ok(cnt[i] > 0 && val[i] === row[idx[i]]);
        if (i > 0) assert.ok(cnt[i] < cnt[i - 1] || (cnt[i] === cnt[i - 1] && idx[i] > idx[i - 1]), 'order');
      } else {
        assert.deepEqual([idx[i], cnt[i], val[i]], [-1, 0, 0]);
      }
    }
    const again = new Int32Array(8);
    sampleRow(row, 0, 6, 1, lse, 8, rowRng(7, 3), again, new Int32Array(8), new Float32Array(8), 0, 8);
    assert.deepEqual(again, idx);
  });

  test('unbiased: counts / N average to softmax(z / Ts) over many rows', () => {
    for (const ts of [1, 2]) {
      const p = softmax64(row, ts);
      const sum = new Float64Array(6);
      const rows = 4000;
      const draws = 16;
      const lseTs = lse64(row, ts);
      for (let r = 0; r < rows; r++) {
        const idx = new Int32Array(6);
        const cnt = new Int32Array(6);
        sampleRow(row, 0, 6, ts, lseTs, draws, rowRng(r, 0), idx, cnt, new Float32Array(6), 0, 6);
        for (let i = 0; i < 6 && cnt[i] > 0; i++) sum[idx[i]] += cnt[i] / draws;
      }
      for (let j = 0; j < 6; j++) {
        const se = Math.sqrt(p[j] * (1 - p[j]) / (rows * draws));
        assert.ok(Math.abs(sum[j] / rows - p[j]) < 5 * se, `Ts=${ts} class ${j}: ${sum[j] / rows} vs ${p[j]}`);
      }
    }
  });

  test('stored columns: sampled classes, counts, logits and the full row\'s logsumexp; fidelity over the drawn classes', () => {
    const r = rng(2);
    const rows = 70;
    const c = 30;
    const logits = Float32Array.from({ length: rows * c }, () => (r() - 0.5) * 8);
    const full = Float32Array.from(logits);
    const out = toStored({ rows, row: BigInt64Array.from({ length: rows }, (_, i) => BigInt(i)), logits, logitsWidth: c, logitsDtype: 'float32' },
      { kind: 'sample', k: 12, samples: 12, sampleTemperature: 1, dtype: 'float32', teacherOutput: 'logits', reportTemperature: 2 });
    assert.equal(out.cols.logitsWidth, 12);
    for (let i = 0; i < rows; i++) {
      const cnt = out.cols.sampleCounts!.subarray(i * 12, i * 12 + 12);
      assert.equal(cnt.reduce((a, b) => a + b, 0), 12);
      for (let s = 0; s < 12 && cnt[s] > 0; s++) assert.equal(out.cols.logits[i * 12 + s], full[i * c + out.cols.topkIndices![i * 12 + s]]);
      assert.equal(out.cols.logsumexp![i], Math.fround(lse64(full.subarray(i * c, i * c + c))));
    }
    assert.equal(out.fidelity!.rows, rows);
    assert.ok(out.fidelity!.mass_mean > 0 && out.fidelity!.mass_mean < 1);
  });
});

function softmax64(row: ArrayLike<number>, t: number): number[] {
  const l = lse64(row, t);
  return Array.from(row, (v) => Math.exp(v / t - l));
}
