import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { DuckDBInstance } from '@duckdb/node-api';
import { tableFromIPC } from 'apache-arrow';
import * as ort from 'onnxruntime-node';
import { precomputeLogits } from '../src/precompute/run.js';
import { readShardFile } from '../src/shards/reader.js';
import { readManifest } from '../src/shards/manifest.js';
import { FIXTURES, dirHashes, randomFloats, runCli, runCliAsync, tempDir, writeNpy } from './helpers/data.js';

const MLP = path.join(FIXTURES, 'mlp16.onnx');
const MLP_B1 = path.join(FIXTURES, 'mlp16_batch1.onnx');
const N = 1000;

let dir: string;
let dataFile: string;
let labelFile: string;
let x: Float32Array;
let labels: Int32Array;

before(() => {
  dir = tempDir();
  x = randomFloats(N * 16, 7);
  dataFile = path.join(dir, 'x.npy');
  writeNpy(dataFile, x, [N, 16]);
  labels = Int32Array.from({ length: N }, (_, i) => (i * 7) % 4);
  labelFile = path.join(dir, 'y.npy');
  writeNpy(labelFile, labels, [N]);
});
after(() => fs.rmSync(dir, { recursive: true, force: true }));

/** The teacher's outputs computed directly, in the same batches the cache uses. */
async function directLogits(model: string, batch: number, shardRows: number): Promise<Float32Array> {
  const s = await ort.InferenceSession.create(model);
  const out = new Float32Array(N * 4);
  for (let first = 0; first < N; first += shardRows) {
    const end = Math.min(N, first + shardRows);
    for (let b = first; b < end; b += batch) {
      const n = Math.min(batch, end - b);
      const feed = new Float32Array(batch * 16);
      feed.set(x.subarray(b * 16, (b + n) * 16));
      const rows = model === MLP_B1 ? 1 : n;
      const r = await s.run({ x: new ort.Tensor('float32', feed.subarray(0, rows * 16), [rows, 16]) });
      out.set((r.logits.data as Float32Array).subarray(0, n * 4), b * 4);
    }
  }
  await s.release();
  return out;
}

describe('precompute-logits', () => {
  test('parquet cache equals direct session.run bit for bit, read back by DuckDB and by our reader', async () => {
    const out = path.join(dir, 'pq');
    const res = await precomputeLogits({ teacher: MLP, data: dataFile, labels: labelFile, out, batchSize: 64, shardRows: 300, device: 'cpu', quiet: true });
    assert.equal(res.shardsWritten, 4);
    assert.ok(res.manifest?.complete);
    const want = await directLogits(MLP, 64, 300);

    const m = await readManifest(out);
    assert.equal(m.rows, N);
    assert.deepEqual(m.shards.map((s) => [s.first_row, s.rows]), [[0, 300], [300, 300], [600, 300], [900, 100]]);
    assert.equal(m.teacher.output_name, 'logits');
    assert.deepEqual(m.output.shape, [4]);
    const got = new Float32Array(N * 4);
    for (const rec of m.shards) {
      const cols = await readShardFile(out, rec, m.storage.format, { expectConfigId: m.config_id });
      got.set(cols.logits as Float32Array, rec.first_row * 4);
      assert.deepEqual([...cols.label!], [...labels.subarray(rec.first_row, rec.first_row + rec.rows)]);
    }
    assert.deepEqual(new Uint32Array(got.buffer), new Uint32Array(want.buffer), 'logits differ from session.run');

    const db = await (await DuckDBInstance.create(':memory:')).connect();
    const rows = (await db.runAndReadAll(`select row, label, logits from read_parquet('${out}/shards/*.parquet') order by row`)).getRows();
    assert.equal(rows.length, N);
    for (const i of [0, 1, 299, 300, 999]) {
      const [row, label, list] = rows[i] as [bigint, number, { items: number[] }];
      assert.equal(Number(row), i);
      assert.equal(label, labels[i]);
      assert.deepEqual(list.items, [...want.subarray(i * 4, i * 4 + 4)]);
    }
  });

  test('arrow cache is read by apache-arrow; a batch-1 model works with a partial last batch', async () => {
    const out = path.join(dir, 'arrow');
    await precomputeLogits({ teacher: MLP_B1, data: dataFile, out, format: 'arrow', shardRows: 250, device: 'cpu', quiet: true });
    const want = await directLogits(MLP_B1, 1, 250);
    const m = await readManifest(out);
    const got: number[] = [];
    for (const rec of m.shards) {
      const t = tableFromIPC(fs.readFileSync(path.join(out, rec.file)));
      assert.equal(t.numRows, rec.rows);
      const logits = t.getChild('logits')!;
      for (let i = 0; i < t.numRows; i++) got.push(...(logits.get(i) as { toArray(): Float32Array }).toArray());
      assert.equal(t.getChild('label'), null);
    }
    assert.deepEqual(Float32Array.from(got), want);
  });

  test('shards that span several read blocks (a ring of reused buffers) still equal session.run', async () => {
    // 3136-byte rows: a 4 MB read block holds 1280 of them, so 4000 rows in shards of 1500 take six
    // blocks through a ring of three buffers; a block reused too early would corrupt rows.
    const rows = 4000;
    const img = randomFloats(rows * 784, 11).map((v) => Math.abs(v) % 1);
    const f = path.join(dir, 'img.npy');
    writeNpy(f, img, [rows, 1, 28, 28]);
    const model = path.join(FIXTURES, 'cnn_tiny.onnx');
    const out = path.join(dir, 'blocks');
    await precomputeLogits({ teacher: model, data: f, out, batchSize: 64, shardRows: 1500, device: 'cpu', quiet: true });
    const s = await ort.InferenceSession.create(model);
    const want = new Float32Array(rows * 10);
    for (let first = 0; first < rows; first += 1500) {
      for (let b = first; b < Math.min(rows, first + 1500); b += 64) {
        const n = Math.min(64, first + 1500 - b, rows - b);
        const r = await s.run({ image: new ort.Tensor('float32', img.slice(b * 784, (b + n) * 784), [n, 1, 28, 28]) });
        want.set(r.logits.data as Float32Array, b * 10);
      }
    }
    await s.release();
    const m = await readManifest(out);
    const got = new Float32Array(rows * 10);
    for (const rec of m.shards) got.set((await readShardFile(out, rec, 'parquet', {})).logits as Float32Array, rec.first_row * 10);
    assert.deepEqual(new Uint32Array(got.buffer), new Uint32Array(want.buffer));
  });

  test('--store-inputs keeps uint8 inputs as uint8', async () => {
    const u8 = Uint8Array.from({ length: 50 * 16 }, (_, i) => (i * 31) % 256);
    const f = path.join(dir, 'u8.npy');
    writeNpy(f, u8, [50, 16]);
    const out = path.join(dir, 'u8');
    await precomputeLogits({ teacher: MLP, data: f, out, scale: 1 / 255, storeInputs: true, device: 'cpu', quiet: true });
    const m = await readManifest(out);
    assert.equal(m.preprocessing.scale, 1 / 255);
    const cols = await readShardFile(out, m.shards[0], 'parquet', {});
    assert.ok(cols.input instanceof Uint8Array);
    assert.deepEqual([...cols.input], [...u8]);
  });

  test('SIGKILL mid-run, then the same command: shards identical to an uninterrupted run', async () => {
    const big = 40_000;
    const f = path.join(dir, 'big.npy');
    writeNpy(f, randomFloats(big * 16, 3), [big, 16]);
    const args = (out: string) => ['--teacher', MLP, '--data', f, '--out', out, '--shard-rows', '2000', '--batch-size', '50', '--device', 'cpu', '--threads', '1', '--quiet'];
    const clean = path.join(dir, 'clean');
    assert.equal(runCli('precompute-logits', args(clean)).code, 0);

    const killed = path.join(dir, 'killed');
    const child = runCliAsync('precompute-logits', args(killed));
    await new Promise<void>((resolve) => {
      const poll = setInterval(() => {
        const done = fs.existsSync(path.join(killed, 'shards')) ? fs.readdirSync(path.join(killed, 'shards')).filter((n) => n.endsWith('.json')).length : 0;
        if (done >= 3) {
          clearInterval(poll);
          child.kill('SIGKILL');
          resolve();
        }
      }, 5);
    });
    await new Promise((r) => child.once('exit', r));
    assert.ok(!fs.existsSync(path.join(killed, 'manifest.json')), 'killed before completion');
    const rerun = runCli('precompute-logits', args(killed));
    assert.equal(rerun.code, 0, rerun.stderr);
    assert.deepEqual(dirHashes(path.join(killed, 'shards')), dirHashes(path.join(clean, 'shards')));
    assert.deepEqual(JSON.parse(fs.readFileSync(path.join(killed, 'manifest.json'), 'utf8')).shards, JSON.parse(fs.readFileSync(path.join(clean, 'manifest.json'), 'utf8')).shards);
  });

  test('two partitions at once into one directory give the same rows as one run', async () => {
    const one = path.join(dir, 'one');
    await precomputeLogits({ teacher: MLP, data: dataFile, labels: labelFile, out: one, shardRows: 100, device: 'cpu', quiet: true });
    const two = path.join(dir, 'two');
    const args = (p: string) => ['--teacher', MLP, '--data', dataFile, '--labels', labelFile, '--out', two, '--shard-rows', '100', '--device', 'cpu', '--partition', p, '--quiet'];
    const kids = [runCliAsync('precompute-logits', args('0/2')), runCliAsync('precompute-logits', args('1/2'))];
    const codes = await Promise.all(kids.map((k) => new Promise((r) => k.once('exit', r))));
    assert.deepEqual(codes, [0, 0]);
    assert.deepEqual(dirHashes(path.join(two, 'shards')), dirHashes(path.join(one, 'shards')));
    assert.equal(JSON.parse(fs.readFileSync(path.join(two, 'manifest.json'), 'utf8')).complete, true);
  });

  test('partition index from Slurm and Kubernetes environments', async () => {
    const out = path.join(dir, 'slurm');
    const base = ['--teacher', MLP, '--data', dataFile, '--out', out, '--shard-rows', '250', '--device', 'cpu', '--quiet'];
    const r0 = runCli('precompute-logits', base, { SLURM_ARRAY_TASK_ID: '0', SLURM_ARRAY_TASK_COUNT: '2' });
    assert.equal(r0.code, 0, r0.stderr);
    assert.ok(!fs.existsSync(path.join(out, 'manifest.json')));
    const r1 = runCli('precompute-logits', [...base, '--partitions', '2'], { JOB_COMPLETION_INDEX: '1' });
    assert.equal(r1.code, 0, r1.stderr);
    assert.equal(JSON.parse(fs.readFileSync(path.join(out, 'manifest.json'), 'utf8')).complete, true);
  });

  test('a rerun of a complete cache recomputes nothing; a different teacher is refused unless --overwrite', async () => {
    const out = path.join(dir, 'rerun');
    await precomputeLogits({ teacher: MLP, data: dataFile, out, device: 'cpu', quiet: true });
    const again = await precomputeLogits({ teacher: MLP, data: dataFile, out, device: 'cpu', quiet: true });
    assert.equal(again.shardsWritten, 0);
    assert.equal(again.rowsComputed, 0);
    await assert.rejects(precomputeLogits({ teacher: MLP, data: dataFile, out, scale: 2, device: 'cpu', quiet: true }), /different preprocessing.*--overwrite/);
    const over = await precomputeLogits({ teacher: MLP, data: dataFile, out, scale: 2, device: 'cpu', quiet: true, overwrite: true });
    assert.equal(over.rowsComputed, N);
  });
});
