/** precompute-logits with top-k, float16, sequence and probability teachers, against direct session.run. */
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { after, before, describe, test } from 'node:test';
import * as ort from 'onnxruntime-node';
import { precomputeLogits } from '../src/precompute/run.js';
import type { ShardColumns } from '../src/shards/format.js';
import { readManifest } from '../src/shards/manifest.js';
import type { Manifest } from '../src/shards/manifest-types.js';
import { readShardFile } from '../src/shards/reader.js';
import { LOG_FLOOR } from '../src/sparse/teacher-output.js';
import { halfToFloat } from '../src/util/dtype.js';
import { floatToHalf } from '../src/util/half.js';
import { FIXTURES, assertOneLineError, dirHashes, randomFloats, runCli, runCliAsync, tempDir, writeNpy } from './helpers/data.js';
import { closeDuck, duckQuery, duckQueryJs, sqlPath } from './helpers/duckdb.js';

const SEQ = path.join(FIXTURES, 'seq_teacher.onnx');
const SEQ_MASK = path.join(FIXTURES, 'seq_mask_teacher.onnx');
const PROBS = path.join(FIXTURES, 'probs_teacher.onnx');
const V = 4096;
const N = 40;
const T = 9;
const PAD = 0;

let dir: string;
let tokFile: string;
let tokens: BigInt64Array;
/** example e has lengths[e] real tokens, then padding */
let lengths: number[];

before(() => {
  dir = tempDir();
  tokens = new BigInt64Array(N * T);
  lengths = Array.from({ length: N }, (_, e) => (e === 5 ? 0 : 1 + ((e * 7) % T)));
  let s = 7;
  for (let e = 0; e < N; e++) {
    for (let t = 0; t < T; t++) {
      s = (s * 1103515245 + 12345) % 2147483648;
      tokens[e * T + t] = t < lengths[e] ? BigInt(1 + (s % (V - 1))) : BigInt(PAD);
    }
  }
  tokFile = path.join(dir, 'tokens.npy');
  writeNpy(tokFile, tokens, [N, T]);
});
after(async () => {
  await closeDuck();
  fs.rmSync(dir, { recursive: true, force: true });
});

/** The full [N, T, V] output of a sequence teacher, from one direct session.run. */
async function directSeq(model: string, mask: boolean): Promise<Float32Array> {
  const s = await ort.InferenceSession.create(model);
  const feeds: Record<string, ort.Tensor> = { tokens: new ort.Tensor('int64', tokens, [N, T]) };
  if (mask) feeds.attention_mask = new ort.Tensor('int64', BigInt64Array.from(tokens, (t) => (t === BigInt(PAD) ? 0n : 1n)), [N, T]);
  const out = (await s.run(feeds)).logits.data as Float32Array;
  await s.release();
  return out;
}

/** Top-k by a full sort: larger first, ties by lower index. */
function referenceTopk(row: Float32Array, k: number): number[] {
  return [...row.keys()].sort((a, b) => (row[b] - row[a]) || (a - b)).slice(0, k);
}

function lse64(row: Float32Array): number {
  let m = -Infinity;
  for (const v of row) m = Math.max(m, v);
  let s = 0;
  for (const v of row) s += Math.exp(v - m);
  return m + Math.log(s);
}

async function allShards(out: string): Promise<{ m: Manifest; cols: ShardColumns[] }> {
  const m = await readManifest(out);
  const cols = [];
  for (const rec of m.shards) cols.push(await readShardFile(out, rec, m.storage.format, { expectConfigId: m.config_id }));
  return { m, cols };
}

describe('sequence teachers', () => {
  test('top-k float32 with a mask input and --pad-id: real positions only; indices, values and logsumexp equal the full output\'s', async () => {
    const out = path.join(dir, 'seq-topk');
    const lines: string[] = [];
    const res = await precomputeLogits({ teacher: SEQ_MASK, data: tokFile, out, topK: 16, padId: PAD, shardRows: 12, device: 'cpu', log: (l) => lines.push(l) });
    const full = await directSeq(SEQ_MASK, true);
    const { m, cols } = await allShards(out);
    assert.equal(m.format_version, 2);
    assert.equal(m.storage.layout, 'sequence');
    assert.deepEqual(m.preprocessing.mask_input, { name: 'attention_mask', kind: 'mask', type: 'int64' });
    assert.equal(m.preprocessing.input_type, 'int64');
    assert.equal(m.totals.positions, lengths.reduce((a, b) => a + b));
    assert.deepEqual(m.shards.map((s) => s.positions), [0, 1, 2, 3].map((s) => lengths.slice(s * 12, s * 12 + 12).reduce((a, b) => a + b, 0)));
    const expected: [number, number][] = [];
    lengths.forEach((len, e) => { for (let t = 0; t < len; t++) expected.push([e, t]); });
    const got: [number, number][] = [];
    for (const c of cols) {
      for (let i = 0; i < c.rows; i++) {
        const [e, t] = [Number(c.row[i]), c.position![i]];
        got.push([e, t]);
        const row = full.subarray((e * T + t) * V, (e * T + t + 1) * V);
        const want = referenceTopk(row, 16);
        assert.deepEqual([...c.topkIndices!.subarray(i * 16, i * 16 + 16)], want, `indices of row ${e} position ${t}`);
        assert.deepEqual([...c.logits.subarray(i * 16, i * 16 + 16)], want.map((j) => row[j]), 'values');
        assert.equal(c.logsumexp![i], Math.fround(lse64(row)), 'logsumexp of the full row');
      }
    }
    assert.deepEqual(got, expected, 'exactly the real positions, in (row, position) order');
    const f = m.totals.fidelity!;
    assert.equal(f.rows, expected.length);
    assert.ok(f.mass_mean > 0.5 && f.mass_mean <= 1 && f.mass_min <= f.mass_mean && f.mass_t_mean < f.mass_mean);
    assert.ok(f.kl_rows >= 4 && f.kl_mean > 0);
    assert.deepEqual(res.fidelity, f);
    assert.ok(lines.some((l) => /^top-16: retained mass 0\.\d{4} mean, .* at T=1; .* at T=2; KL\(full \|\| top-k \+ uniform tail\)/.test(l)), lines.join('\n'));
    assert.ok(lines.some((l) => new RegExp(`^done: 40 rows in 4 shards \\(.*, ${expected.length} positions, [\\d.]+ B/position\\)`).test(l)), lines.join('\n'));
    const inspect = runCli('kdcache', ['inspect', out, '--rows', '2']);
    assert.equal(inspect.code, 0, inspect.stderr);
    assert.match(inspect.stdout, /^preprocess  input \[9\]  int64 ids fed as they are  pad id 0 \(not stored\)  mask input 'attention_mask' int64$/m);
    assert.match(inspect.stdout, /^layout      sequence: one row per real position \(row, position\)$/m);
    assert.match(inspect.stdout, /^top-k       k = 16 of 4096 classes; retained mass /m);
    assert.match(inspect.stdout, /^row 0 position 0  classes \[\d+, .*\]  top-k logits \[.*\]  logsumexp -?\d+\.\d{3}$/m);
  });

  test('--sample: draws are the teacher\'s classes with its logits and counts summing to N, the same whatever the sharding', async () => {
    const full = await directSeq(SEQ_MASK, true);
    const draws: string[] = [];
    for (const shardRows of [12, 40]) {
      const out = path.join(dir, `seq-sample-${shardRows}`);
      const lines: string[] = [];
      await precomputeLogits({ teacher: SEQ_MASK, data: tokFile, out, sample: 24, sampleTemperature: 2, padId: PAD, shardRows, device: 'cpu', log: (l) => lines.push(l) });
      assert.ok(lines.some((l) => /^24 draws at T=2: the drawn classes retained mass /.test(l)), lines.join('\n'));
      const { m, cols } = await allShards(out);
      assert.deepEqual([m.storage.kind, m.storage.samples, m.storage.sample_temperature, m.storage.k], ['sample', 24, 2, 24]);
      const all: number[] = [];
      for (const c of cols) {
        for (let i = 0; i < c.rows; i++) {
          const [e, t] = [Number(c.row[i]), c.position![i]];
          const row = full.subarray((e * T + t) * V, (e * T + t + 1) * V);
          const idx = c.topkIndices!.subarray(i * 24, i * 24 + 24);
          const cnt = c.sampleCounts!.subarray(i * 24, i * 24 + 24);
          assert.equal(cnt.reduce((a, b) => a + b, 0), 24);
          const used = [...idx].filter((j) => j >= 0);
          assert.equal(new Set(used).size, used.length, 'distinct classes');
          used.forEach((j, s) => assert.equal(c.logits[i * 24 + s], row[j]));
          assert.equal(c.logsumexp![i], Math.fround(lse64(row)));
          all.push(...idx, ...cnt);
        }
      }
      draws.push(JSON.stringify(all));
    }
    assert.equal(draws[0], draws[1], 'each position draws from its own generator (row, position)');
  });

  test('DuckDB reads every column of a top-k float16 sequence cache; p = exp(value - logsumexp) is exact', async () => {
    const out = path.join(dir, 'seq-f16');
    await precomputeLogits({ teacher: SEQ, data: tokFile, out, topK: 8, dtype: 'float16', padId: PAD, device: 'cpu', quiet: true });
    const full = await directSeq(SEQ, false);
    const glob = sqlPath(path.join(out, 'shards', '*.parquet'));
    const types = await duckQuery(`select column_name, column_type from (describe select * from read_parquet(${glob}))`);
    assert.deepEqual(types, [['row', 'BIGINT'], ['position', 'INTEGER'], ['topk_indices', 'INTEGER[]'], ['topk_logits', 'FLOAT[]'], ['logsumexp', 'FLOAT']]);
    const rows = await duckQueryJs(`select row, position, topk_indices, topk_logits, logsumexp, exp(topk_logits[1] - logsumexp) from read_parquet(${glob}) order by row, position`);
    assert.equal(rows.length, lengths.reduce((a, b) => a + b));
    for (const [row, position, idx, values, lse, p1] of rows as [bigint, number, number[], number[], number, number][]) {
      const r = full.subarray((Number(row) * T + position) * V, (Number(row) * T + position + 1) * V);
      const want = referenceTopk(r, 8);
      assert.deepEqual(idx, want);
      assert.deepEqual(values, want.map((j) => halfToFloat(floatToHalf(r[j]))), 'values rounded to the nearest float16');
      assert.equal(lse, Math.fround(lse64(r)));
      assert.ok(Math.abs(p1 - Math.exp(r[want[0]] - lse64(r))) < 2e-3 * p1, 'top-1 probability from SQL');
    }
  });

  test('dense float16 sequence cache: one row per position of C values; without --pad-id every position is stored', async () => {
    const out = path.join(dir, 'seq-dense');
    await precomputeLogits({ teacher: SEQ, data: tokFile, out, dtype: 'float16', device: 'cpu', quiet: true });
    const full = await directSeq(SEQ, false);
    const { m, cols } = await allShards(out);
    assert.equal(m.totals.positions, N * T);
    assert.equal(m.storage.kind, undefined);
    const c = cols[0];
    assert.equal(c.logitsWidth, V);
    assert.equal(c.logitsDtype, 'float16');
    for (const i of [0, 1, T, N * T - 1]) {
      assert.deepEqual([c.row[i], c.position![i]], [BigInt(Math.floor(i / T)), i % T]);
      assert.deepEqual([...c.logits.subarray(i * V, i * V + 50)], [...full.subarray(i * V, i * V + 50)].map(floatToHalf));
    }
  });

  test('top-k shards are byte-identical whether made in one run or by two partitions', async () => {
    const args = (out: string, extra: string[]) => ['--teacher', SEQ_MASK, '--data', tokFile, '--out', out, '--top-k', '32', '--dtype', 'float16', '--pad-id', '0', '--shard-rows', '10', '--device', 'cpu', '--quiet', ...extra];
    const one = path.join(dir, 'det-one');
    assert.equal(runCli('precompute-logits', args(one, [])).code, 0);
    const two = path.join(dir, 'det-two');
    const kids = [runCliAsync('precompute-logits', args(two, ['--partition', '0/2'])), runCliAsync('precompute-logits', args(two, ['--partition', '1/2']))];
    assert.deepEqual(await Promise.all(kids.map((k) => new Promise((r) => k.once('exit', r)))), [0, 0]);
    assert.deepEqual(dirHashes(path.join(two, 'shards')), dirHashes(path.join(one, 'shards')));
    const [a, b] = [one, two].map((d) => JSON.parse(fs.readFileSync(path.join(d, 'manifest.json'), 'utf8')));
    assert.deepEqual(a.totals, b.totals);
  });
});

describe('probability teachers', () => {
  let xFile: string;
  let probs: Float32Array;
  before(async () => {
    const x = randomFloats(300 * 16, 4);
    // Row 0 is scaled up so that the softmax underflows to exact zeros there.
    for (let i = 0; i < 16; i++) x[i] *= 400;
    xFile = path.join(dir, 'x.npy');
    writeNpy(xFile, x, [300, 16]);
    const s = await ort.InferenceSession.create(PROBS);
    probs = (await s.run({ x: new ort.Tensor('float32', x, [300, 16]) })).probs.data as Float32Array;
    await s.release();
    assert.ok(probs.subarray(0, 4).some((p) => p === 0), 'the fixture row has a zero probability');
  });

  test('auto-detected (with a notice) and stored as log-probabilities; zero probabilities stay finite', async () => {
    const out = path.join(dir, 'probs');
    const lines: string[] = [];
    await precomputeLogits({ teacher: PROBS, data: xFile, out, device: 'cpu', log: (l) => lines.push(l) });
    assert.ok(lines.some((l) => /^notice: the teacher's outputs look like probabilities .*storing log-probabilities/.test(l)), lines.join('\n'));
    const { m, cols } = await allShards(out);
    assert.deepEqual(m.storage.teacher_output, { output: 'probs', detected: true });
    assert.equal(m.totals.nonfinite_rows, 0);
    const stored = cols[0].logits as Float32Array;
    for (let i = 0; i < 300 * 4; i++) {
      assert.equal(stored[i], probs[i] > 0 ? Math.fround(Math.log(probs[i])) : Math.fround(LOG_FLOOR));
    }
  });

  test('--teacher-output logits keeps the values as they are; top-k of probabilities keeps the classes of the largest', async () => {
    const asIs = path.join(dir, 'probs-asis');
    await precomputeLogits({ teacher: PROBS, data: xFile, out: asIs, teacherOutput: 'logits', device: 'cpu', quiet: true });
    const plain = await allShards(asIs);
    assert.equal(plain.m.storage.teacher_output, undefined);
    assert.equal(plain.m.format_version, 1);
    assert.deepEqual(plain.cols[0].logits, probs);

    const topk = path.join(dir, 'probs-topk');
    await precomputeLogits({ teacher: PROBS, data: xFile, out: topk, topK: 2, teacherOutput: 'probs', device: 'cpu', quiet: true });
    const { m, cols } = await allShards(topk);
    assert.deepEqual(m.storage.teacher_output, { output: 'probs', detected: false });
    for (let r = 0; r < 300; r++) {
      const row = probs.subarray(r * 4, r * 4 + 4);
      assert.deepEqual([...cols[0].topkIndices!.subarray(r * 2, r * 2 + 2)], referenceTopk(row, 2));
      assert.ok(Math.abs(cols[0].logsumexp![r]) < 1e-5, 'log-probabilities: logsumexp ~ 0');
    }
    const f = m.totals.fidelity!;
    assert.ok(f.mass_mean > 0.5 && f.mass_mean < 1);
  });
});

describe('flag errors', () => {
  test('one line each, naming the flag', () => {
    const base = ['--teacher', SEQ, '--data', tokFile, '--device', 'cpu'];
    assertOneLineError(runCli('precompute-logits', [...base, '--out', path.join(dir, 'e1'), '--top-k', '4096']), /--top-k 4096: the teacher has 4096 classes; top-k must keep fewer/);
    assertOneLineError(runCli('precompute-logits', [...base, '--out', path.join(dir, 'e2'), '--report-temperature', '2']), /--report-temperature: only applies with --top-k/);
    assertOneLineError(runCli('precompute-logits', [...base, '--out', path.join(dir, 'e3'), '--scale', '2']), /--scale: the teacher's input 'tokens' is int64; integer inputs are fed as they are/);
    assertOneLineError(runCli('precompute-logits', ['--teacher', PROBS, '--data', path.join(dir, 'x.npy'), '--device', 'cpu', '--out', path.join(dir, 'e4'), '--pad-id', '0']), /--pad-id 0: the teacher's input 'x' is float32/);
    assertOneLineError(runCli('precompute-logits', [...base, '--out', path.join(dir, 'e5'), '--top-k', '0']), /--top-k 0: must be a positive integer/);
  });
});
