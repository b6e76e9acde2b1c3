/**
 * train-student end to end on real caches made by precomputeLogits from the fixture teachers:
 * outputs, validation, determinism, resume, cache and data checks, early stopping, evaluate, CLI.
 */
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { after, before, describe, test } from 'node:test';
import * as tf from '@tensorflow/tfjs';
import { type PrecomputeOptions, precomputeLogits } from '../src/precompute/run.js';
import { readManifest } from '../src/shards/manifest.js';
import { readShardFile } from '../src/shards/reader.js';
import { cacheSource, transformInputs } from '../src/train/cache.js';
import { workerCacheSource } from '../src/train/cache-worker.js';
import type { ExampleTable } from '../src/train/examples.js';
import { openDataset } from '../src/data/open.js';
import { evaluateModel } from '../src/train/evaluate.js';
import { fileLoadHandler } from '../src/train/model-io.js';
import { type TrainOptions, type TrainSummary, trainStudent } from '../src/train/run.js';
import { UserError } from '../src/util/errors.js';
import { FIXTURES, assertOneLineError, randomFloats, runCli, tempDir, writeNpy } from './helpers/data.js';

const MLP = path.join(FIXTURES, 'mlp16.onnx');
const N = 1200;

let dir: string;
let dataFile: string;
let labelFile: string;
/** cache with labels, Parquet, 4 shards; inputs not stored */
let cacheA: string;
/** cache without labels, Arrow, inputs stored */
let cacheB: string;

async function makeCache(opts: Omit<PrecomputeOptions, 'device' | 'quiet'>): Promise<string> {
  await precomputeLogits({ ...opts, device: 'cpu', quiet: true });
  return opts.out;
}

/** The teacher's top-1 class of every row, read back from a cache: learnable labels. */
async function teacherLabels(cache: string): Promise<Int32Array> {
  const m = await readManifest(cache);
  const y = new Int32Array(m.rows);
  for (const rec of m.shards) {
    const cols = await readShardFile(cache, rec, m.storage.format, {});
    const z = cols.logits as Float32Array;
    for (let i = 0; i < cols.rows; i++) {
      let best = 0;
      for (let k = 1; k < 4; k++) if (z[i * 4 + k] > z[i * 4 + best]) best = k;
      y[Number(cols.row[i])] = best;
    }
  }
  return y;
}

function train(opts: Partial<TrainOptions> & { out: string }): Promise<TrainSummary> {
  return trainStudent({ logits: cacheA, data: dataFile, student: 'mlp:32', epochs: 2, batchSize: 64, backend: 'wasm', quiet: true, skipChecksums: false, ...opts });
}

function metricsLines(out: string): Record<string, number | null | boolean>[] {
  return fs.readFileSync(path.join(out, 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
}

/** metrics without the timing fields, which legitimately differ between runs */
function trajectory(out: string) {
  return metricsLines(out).map(({ seconds: _s, examples_per_second: _e, ...rest }) => rest);
}

const userError = (pattern: RegExp) => (err: unknown) => {
  assert.ok(err instanceof UserError, `not a UserError: ${(err as Error)?.stack ?? err}`);
  assert.ok(!err.message.includes('\n'), `multi-line message: ${err.message}`);
  assert.match(err.message, pattern);
  return true;
};

before(async () => {
  dir = tempDir('kdcache-train-');
  dataFile = path.join(dir, 'x.npy');
  writeNpy(dataFile, randomFloats(N * 16, 11), [N, 16]);
  cacheB = await makeCache({ teacher: MLP, data: dataFile, out: path.join(dir, 'cacheB'), format: 'arrow', shardRows: 500, storeInputs: true });
  labelFile = path.join(dir, 'y.npy');
  writeNpy(labelFile, await teacherLabels(cacheB), [N]);
  cacheA = await makeCache({ teacher: MLP, data: dataFile, labels: labelFile, out: path.join(dir, 'cacheA'), shardRows: 300 });
});
after(() => fs.rmSync(dir, { recursive: true, force: true }));

describe('train-student end to end', () => {
  test('trains from a cache + the dataset: model, metrics.jsonl, summary.json, checkpoint', async () => {
    const out = path.join(dir, 'basic');
    const s = await train({ out, epochs: 3, valFraction: 0.2, alpha: 0.5, temperature: 2 });
    const m = await readManifest(cacheA);

    const lines = metricsLines(out);
    assert.equal(lines.length, 3);
    for (const key of ['epoch', 'train_loss', 'train_accuracy', 'train_agreement', 'train_kl', 'val_accuracy', 'val_agreement', 'val_kl', 'train_examples', 'val_examples', 'examples_per_second']) {
      assert.ok(key in lines[0], `metrics.jsonl lacks ${key}`);
    }
    assert.equal(Number(lines[0].train_examples) + Number(lines[0].val_examples), N, 'held-out and training rows partition the cache');
    assert.ok(Number(lines[2].val_agreement) > Number(lines[0].val_agreement), 'agreement improves');
    assert.ok(Number(lines[2].val_kl) < Number(lines[0].val_kl), 'KL decreases');
    assert.ok(Number(lines[2].val_agreement) > 0.6, `val agreement ${lines[2].val_agreement}`);

    const summary = JSON.parse(fs.readFileSync(path.join(out, 'summary.json'), 'utf8'));
    assert.deepEqual(summary, JSON.parse(JSON.stringify(s)));
    assert.equal(summary.teacher.sha256, m.teacher.sha256);
    assert.deepEqual(summary.preprocessing, m.preprocessing);
    assert.equal(summary.backend, 'wasm');
    assert.equal(summary.epochs, 3);
    assert.equal(summary.hyperparameters.alpha, 0.5);
    assert.equal(summary.hyperparameters.temperature, 2);
    assert.equal(summary.validation.kind, 'fraction');
    assert.equal(summary.validation.monitor, 'accuracy');
    assert.ok(summary.val_accuracy > 0.3 && summary.teacher_agreement > 0.6);
    assert.ok(summary.examples_per_second > 0);
    assert.deepEqual(summary.student.input_shape, [16]);

    // a standard LayersModel: loadable by tfjs, [batch, 4] logits
    const model = await tf.loadLayersModel(fileLoadHandler(out));
    const y = model.predict(tf.zeros([2, 16])) as tf.Tensor;
    assert.deepEqual(y.shape, [2, 4]);
    assert.ok(fs.existsSync(path.join(out, 'checkpoint', 'latest.json')));
    assert.deepEqual(fs.readdirSync(path.join(out, 'checkpoint')).sort(), ['epoch-000003', 'latest.json']);
  });

  test('inputs stored in the cache (no --data); labels given separately when the cache has none', async () => {
    const s = await train({ out: path.join(dir, 'stored'), logits: cacheB, data: undefined, valFraction: 0.25 });
    assert.equal(s.validation.monitor, 'agreement', 'no labels: monitor agreement');
    assert.equal(s.val_accuracy, null);
    assert.ok(s.teacher_agreement! > 0.5);
    await assert.rejects(train({ out: path.join(dir, 'nolabels'), logits: cacheB, data: undefined, alpha: 0.5 }), userError(/--alpha 0\.5 needs labels, but the cache has none/));
    const withLabels = await train({ out: path.join(dir, 'labels'), logits: cacheB, data: undefined, labels: labelFile, alpha: 0.5, valFraction: 0.25 });
    assert.ok(withLabels.val_accuracy! > 0.4);
    await assert.rejects(train({ out: path.join(dir, 'noinputs'), data: undefined }), userError(/does not store inputs.*pass --data <the dataset it was made from: x\.npy>/));
  });

  test('same seed, same loss curve; another seed, another curve; resume continues bit-identically', async () => {
    const a = path.join(dir, 'seedA');
    const b = path.join(dir, 'seedB');
    const c = path.join(dir, 'seedC');
    await train({ out: a, epochs: 3, seed: 7, shuffleBuffer: 200 });
    await train({ out: b, epochs: 3, seed: 7, shuffleBuffer: 200 });
    await train({ out: c, epochs: 3, seed: 8, shuffleBuffer: 200 });
    assert.deepEqual(trajectory(b), trajectory(a));
    assert.notDeepEqual(trajectory(c).map((l) => l.train_loss), trajectory(a).map((l) => l.train_loss));

    const r = path.join(dir, 'resumed');
    await train({ out: r, epochs: 1, seed: 7, shuffleBuffer: 200 });
    await assert.rejects(train({ out: r, epochs: 3, seed: 7, shuffleBuffer: 200 }), userError(/already holds a training run \(checkpoint after epoch 1\); pass --resume/));
    await assert.rejects(train({ out: r, epochs: 3, seed: 8, shuffleBuffer: 200, resume: true }), userError(/--resume: .*--seed \(checkpoint: 7, now: 8\)/));
    const s = await train({ out: r, epochs: 3, seed: 7, shuffleBuffer: 200, resume: true });
    assert.equal(s.epochs, 3);
    assert.deepEqual(trajectory(r), trajectory(a), 'a resumed run equals an uninterrupted one');
    const wa = (await tf.loadLayersModel(fileLoadHandler(a))).getWeights().map((t) => Array.from(t.dataSync()));
    const wr = (await tf.loadLayersModel(fileLoadHandler(r))).getWeights().map((t) => Array.from(t.dataSync()));
    assert.deepEqual(wr, wa);
  });

  test('a half-written checkpoint is never loaded', async () => {
    const out = path.join(dir, 'halfckpt');
    await train({ out, epochs: 1, optimizer: 'sgd' });
    // a killed writer leaves a temp directory; latest.json still names the complete epoch-1 checkpoint
    const junk = path.join(out, 'checkpoint', '.epoch-000002.tmp-99999-deadbeef');
    fs.mkdirSync(junk);
    fs.writeFileSync(path.join(junk, 'model.json'), '{"trunc');
    const s = await train({ out, epochs: 2, optimizer: 'sgd', resume: true });
    assert.equal(s.epochs, 2);
    assert.deepEqual(metricsLines(out).map((l) => l.epoch), [1, 2]);
    assert.deepEqual(fs.readdirSync(path.join(out, 'checkpoint')).sort(), ['epoch-000002', 'latest.json']);
  });

  test('early stopping on the validation metric keeps the best epoch', async () => {
    // a learning rate this small changes nothing: no improvement after epoch 1
    const s = await train({ out: path.join(dir, 'early'), epochs: 6, lr: 1e-12, valFraction: 0.2, patience: 2 });
    assert.equal(s.stopped_early, true);
    assert.equal(s.epochs, 3);
    assert.equal(s.model_epoch, 1);
  });

  test('cache problems are one-line errors naming the shard or file, before any training', async () => {
    const copy = path.join(dir, 'broken');
    fs.cpSync(cacheA, copy, { recursive: true });
    const shard = path.join(copy, 'shards', 'shard-00002.parquet');
    const bytes = fs.readFileSync(shard);
    bytes[Math.floor(bytes.length / 2)] ^= 0xff;
    fs.writeFileSync(shard, bytes);
    await assert.rejects(train({ out: path.join(dir, 'b1'), logits: copy }), userError(/shard-00002\.parquet: sha256 differs/));
    fs.rmSync(shard);
    await assert.rejects(train({ out: path.join(dir, 'b2'), logits: copy }), userError(/shard-00002\.parquet: missing/));
    fs.rmSync(path.join(copy, 'manifest.json'));
    await assert.rejects(train({ out: path.join(dir, 'b3'), logits: copy }), userError(/manifest\.json: missing, the cache is not finished/));
    await assert.rejects(train({ out: path.join(dir, 'b4'), logits: path.join(dir, 'nope') }), userError(/nope: no such file or directory/));
    assert.ok(!fs.existsSync(path.join(dir, 'b1', 'metrics.jsonl')));
  });

  test('the shard loader thread gives the same tables as reading on the main thread, and the same errors', async () => {
    for (const [cache, data] of [[cacheA, dataFile], [cacheB, null]] as const) {
      const manifest = await readManifest(cache);
      const transform = { pre: manifest.preprocessing, layout: 'as-is' as const };
      const ds = data ? await openDataset(data) : null;
      const direct = cacheSource({ cacheDir: cache, manifest, transform, dataset: ds, labels: null });
      const threaded = workerCacheSource({ cacheDir: cache, manifest, transform, dataset: data ? { file: data, inputColumn: null } : null, labels: null });
      try {
        const same = (a: ExampleTable, b: ExampleTable) => {
          assert.equal(b.length, a.length);
          assert.deepEqual([b.xView(), b.tView(), b.yView(), b.row.subarray(0, b.length)], [a.xView(), a.tView(), a.yView(), a.row.subarray(0, a.length)]);
        };
        // Twice over: the second round refills the shared input slots released after the first.
        for (const i of [...manifest.shards.keys(), ...manifest.shards.keys()]) {
          const [a, b] = await Promise.all([direct.load(i), threaded.load(i)]);
          same(a, b);
          threaded.release!(b);
        }
        // All at once and none released: more chunks than slots get arrays of their own.
        const order = [...manifest.shards.keys(), ...manifest.shards.keys()];
        assert.ok(order.length > 3, 'more loads than the loader has slots');
        const held = await Promise.all(order.map((i) => threaded.load(i)));
        for (const [k, b] of held.entries()) same(await direct.load(order[k]), b);
      } finally {
        await threaded.close();
        await ds?.close();
      }
    }
    const copy = path.join(dir, 'cacheA-broken');
    fs.cpSync(cacheA, copy, { recursive: true });
    const manifest = await readManifest(copy);
    fs.writeFileSync(path.join(copy, manifest.shards[1].file), 'not a shard');
    const threaded = workerCacheSource({ cacheDir: copy, manifest, transform: { pre: manifest.preprocessing, layout: 'as-is' }, dataset: { file: dataFile, inputColumn: null }, labels: null });
    try {
      await assert.rejects(threaded.load(1), userError(/shard-00001\.parquet: 11 bytes, the manifest says/));
      assert.equal((await threaded.load(0)).length, 300, 'the loader survives a bad shard');
    } finally {
      await threaded.close();
    }
    await assert.rejects(threaded.load(0), /closed/);
  });

  test('uint8 data reaches the stream as pixel rows, converting to the same floats as reading on the main thread', async () => {
    const imgs = path.join(dir, 'px.npy');
    writeNpy(imgs, Uint8Array.from(randomFloats(200 * 784, 5), (v) => Math.floor((v + 2) * 60)), [200, 1, 28, 28]);
    const stored = await makeCache({ teacher: path.join(FIXTURES, 'cnn_tiny.onnx'), data: imgs, out: path.join(dir, 'pxcache'), scale: 1 / 255, mean: [0.25], std: [0.5], shardRows: 70, storeInputs: true });
    for (const data of [imgs, null]) {
      const manifest = await readManifest(stored);
      const transform = { pre: manifest.preprocessing, layout: 'as-is' as const };
      const ds = data ? await openDataset(data) : null;
      const direct = cacheSource({ cacheDir: stored, manifest, transform, dataset: ds, labels: null });
      const threaded = workerCacheSource({ cacheDir: stored, manifest, transform, dataset: data ? { file: data, inputColumn: null } : null, labels: null });
      try {
        assert.ok(threaded.pixels, 'the loader hands over pixel rows');
        const check = async (i: number, b: ExampleTable) => {
          const a = await direct.load(i);
          assert.ok(b.pixels && !a.pixels);
          assert.deepEqual([b.xView(), b.tView(), b.row.subarray(0, b.length)], [a.xView(), a.tView(), a.row.subarray(0, a.length)]);
        };
        for (const i of [0, 1, 2, 0]) {
          const b = await threaded.load(i);
          await check(i, b);
          threaded.release!(b);
        }
        // more loads in flight than slots: the rest come as transferred pixel rows
        const held = await Promise.all([0, 1, 2, 0, 1].map((i) => threaded.load(i)));
        for (const [k, i] of [0, 1, 2, 0, 1].entries()) await check(i, held[k]);
      } finally {
        await threaded.close();
        await ds?.close();
      }
    }
  });

  test('data and labels must be the ones the cache was made from', async () => {
    const other = path.join(dir, 'other.npy');
    writeNpy(other, randomFloats(N * 16, 12), [N, 16]);
    await assert.rejects(train({ out: path.join(dir, 'd1'), data: other }), userError(/--data .*other\.npy: not the data the cache was made from .*cache: x\.npy/));
    const otherLabels = path.join(dir, 'other-y.npy');
    writeNpy(otherLabels, new Int32Array(N), [N]);
    await assert.rejects(train({ out: path.join(dir, 'd2'), labels: otherLabels }), userError(/--labels .*differ from the ones the cache was made with/));
    const short = path.join(dir, 'short-y.npy');
    writeNpy(short, new Int32Array(N - 1), [N - 1]);
    await assert.rejects(train({ out: path.join(dir, 'd3'), logits: cacheB, data: undefined, labels: short }), userError(/1199 labels, but the cache's dataset has 1200 rows/));
  });

  test('bad options are one-line errors naming the flag', async () => {
    await assert.rejects(train({ out: path.join(dir, 'o1'), alpha: 1.5 }), userError(/--alpha 1\.5: must be in \[0, 1\]/));
    await assert.rejects(train({ out: path.join(dir, 'o2'), patience: 2 }), userError(/--patience 2: early stopping needs validation data/));
    await assert.rejects(train({ out: path.join(dir, 'o3'), valFraction: 0.1, valData: dataFile, valLabels: labelFile }), userError(/exclusive/));
    await assert.rejects(train({ out: path.join(dir, 'o4'), student: 'mlp:abc' }), userError(/--student "mlp:abc"/));
  });

  test('--val-data: accuracy only; evaluate reports accuracy and, with the cache, teacher agreement', async () => {
    const out = path.join(dir, 'valdata');
    const s = await train({ out, valData: dataFile, valLabels: labelFile, loss: 'mse', epochs: 3 });
    assert.equal(s.validation.kind, 'data');
    assert.equal(s.teacher_agreement, null, 'no teacher for --val-data');
    assert.ok(s.val_accuracy! > 0.4);

    const plain = await evaluateModel({ model: out, data: dataFile, labels: labelFile, backend: 'wasm', quiet: true });
    assert.equal(plain.preprocessing_from, 'summary');
    assert.equal(plain.examples, N);
    assert.equal(plain.agreement, null);
    const withCache = await evaluateModel({ model: out, data: dataFile, logits: cacheA, backend: 'wasm', quiet: true });
    assert.equal(withCache.preprocessing_from, 'cache');
    assert.equal(withCache.accuracy, plain.accuracy, 'labels from the cache equal the labels file');
    // the labels are the teacher's argmax, so agreement and accuracy coincide
    assert.equal(withCache.agreement, plain.accuracy);
    assert.ok(withCache.kl! > 0);
    await assert.rejects(evaluateModel({ model: out, data: dataFile, backend: 'wasm', quiet: true }), userError(/needs --labels/));
  });

  test('rows with non-finite teacher logits are left out of distillation', async () => {
    const nanData = path.join(dir, 'nan-x.npy');
    const x = randomFloats(300 * 16, 5).map(Math.abs);
    for (const r of [3, 50, 51, 299]) x[r * 16] = -1; // Log(-1) = NaN in the teacher's first logit
    writeNpy(nanData, x, [300, 16]);
    const cache = await makeCache({ teacher: path.join(FIXTURES, 'nan_teacher.onnx'), data: nanData, out: path.join(dir, 'nancache'), shardRows: 100 });
    const s = await train({ out: path.join(dir, 'nan'), logits: cache, data: nanData, epochs: 1 });
    assert.equal(s.train!.examples, 296);
    assert.ok(Number.isFinite(s.train!.loss!));
  });

  test('a CNN student on image inputs trains on wasm (replacement Conv2DBackpropFilter)', async () => {
    const imgs = path.join(dir, 'img.npy');
    writeNpy(imgs, Uint8Array.from(randomFloats(160 * 784, 3), (v) => Math.floor((v + 2) * 60)), [160, 28, 28]);
    const cache = await makeCache({ teacher: path.join(FIXTURES, 'cnn_tiny.onnx'), data: imgs, out: path.join(dir, 'imgcache'), scale: 1 / 255, shardRows: 80 });
    const s = await train({ out: path.join(dir, 'cnn'), logits: cache, data: imgs, student: 'cnn:4', epochs: 2, batchSize: 32 });
    assert.equal(s.backend, 'wasm');
    assert.deepEqual(s.student.input_shape, [28, 28, 1]);
    assert.equal(s.student.conv, true);
    assert.ok(Number.isFinite(s.train!.loss!));
  });

  test('channels-first inputs are laid out channels-last for convolutions', () => {
    // one example, C=2, H=1, W=3: [[1,2,3],[4,5,6]] -> pixels (1,4) (2,5) (3,6); scale 2, mean [1, 0], std [1, 2]
    const pre = { input_shape: [2, 1, 3], input_type: 'float32' as const, scale: 2, mean: [1, 0], std: [1, 2] };
    const raw = Uint8Array.from([1, 2, 3, 4, 5, 6]);
    assert.deepEqual([...transformInputs(raw, 'uint8', 1, { pre, layout: 'as-is' })], [1, 3, 5, 4, 5, 6]);
    assert.deepEqual([...transformInputs(raw, 'uint8', 1, { pre, layout: 'hwc' })], [1, 4, 3, 5, 5, 6]);
  });
});

describe('train-student CLI', () => {
  test('--help lists the options; bad flags are one-line errors', () => {
    const help = runCli('train-student', ['--help']);
    assert.equal(help.code, 0);
    for (const flag of ['--logits', '--student', '--alpha', '--temperature', '--val-fraction', '--shuffle-buffer', '--resume', '--backend', '--patience']) {
      assert.ok(help.stdout.includes(flag), `--help lacks ${flag}`);
    }
    assertOneLineError(runCli('train-student', ['--student', 'mlp:8', '--out', path.join(dir, 'c1')]), /Missing required argument: logits/);
    assertOneLineError(runCli('train-student', ['--logits', cacheA, '--student', 'mlp:8', '--out', path.join(dir, 'c2'), '--lr', 'fast']), /--lr fast: expected a number/);
    assertOneLineError(runCli('train-student', ['--logits', cacheA, '--student', 'mlp:8', '--out', path.join(dir, 'c3'), '--optimiser', 'sgd']), /Unknown argument: optimiser/);
  });

  test('pure wasm on two threads (the threaded tfjs build) trains bit-identically to one thread, and the process exits', () => {
    const weights: Buffer[] = [];
    for (const threads of ['2', '1']) {
      const out = path.join(dir, `wasm-threads-${threads}`);
      const r = runCli('train-student', ['--logits', cacheA, '--data', dataFile, '--student', 'mlp:64,32', '--out', out, '--epochs', '2', '--batch-size', '128', '--backend', 'wasm'], { KDCACHE_THREADS: threads });
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stderr, new RegExp(`^backend: wasm \\(pure wasm, ${threads} threads?\\)$`, 'm'));
      weights.push(fs.readFileSync(path.join(out, 'weights.bin')));
    }
    assert.ok(weights[0].equals(weights[1]), 'weights differ between 2 threads and 1');
  });

  test('a full run from the command line', () => {
    const out = path.join(dir, 'cli');
    const r = runCli('train-student', ['--logits', cacheA, '--data', dataFile, '--student', 'mlp:16', '--out', out, '--epochs', '1', '--val-fraction', '1/5', '--backend', 'wasm']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /^backend: wasm/m);
    assert.match(r.stderr, /^epoch 1\/1 .*val acc/m);
    assert.match(r.stdout, /model .*model\.json\s+epochs 1\s+val_accuracy 0\.\d+\s+teacher_agreement 0\.\d+/);

    const ev = runCli('kdcache', ['evaluate', '--model', out, '--data', dataFile, '--logits', cacheA, '--backend', 'wasm', '--json']);
    assert.equal(ev.code, 0, ev.stderr);
    const res = JSON.parse(ev.stdout);
    assert.equal(res.examples, N);
    assert.equal(res.preprocessing_from, 'cache');
    assert.ok(res.accuracy > 0 && res.agreement > 0);
    assertOneLineError(runCli('kdcache', ['evaluate', '--model', out, '--data', dataFile, '--backend', 'wasm']), /evaluate needs --labels/);
    assertOneLineError(runCli('kdcache', ['evaluate', '--model', path.join(dir, 'missing'), '--data', dataFile, '--labels', labelFile]), /missing: no such file or directory/);
  });
});
