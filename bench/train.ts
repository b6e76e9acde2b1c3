/**
 * train-student throughput, in one run:
 *  - examples/s streaming from shards vs the same training with all data preloaded in memory
 *    (same student, batch, epochs and step code; rounds alternating in one process; median ratio;
 *    target >= 0.95), against two preloaded baselines: the very same batches (shards decoded
 *    before the clock starts, then the same shard order and shuffle buffer: only where the data
 *    comes from differs), and a full permutation of all rows gathered into batches (the fastest
 *    preloaded loop);
 *  - process RSS while training over a cache >= 10x the shuffle buffer (sampled every 100 ms);
 *  - examples/s of offline distillation (cached logits) per tfjs backend;
 *  - offline vs online distillation (the ONNX teacher run on every batch, every epoch).
 *
 *   npm run bench:train [-- --rows 10000 --epochs 2 --cpu --teacher mlp_784_1200_1200_10.onnx]
 *                       [--stream-rows 40000 --stream-epochs 6 --reps 3 --rss-rows 200000 --rss-buffer 10000]
 *
 * Student mlp:256,128 on 784-dim inputs, batch 256, Adam; teacher from bench/models (--teacher).
 * Reported examples/s: per backend, the last epoch's; streaming vs preloaded, per round the median
 * of epochs 2-6 (--stream-epochs 6: one 0.3 s epoch is at the mercy of this VM's hiccups), then the
 * median over rounds. Each backend runs in a fresh process: tfjs backends and wasm heaps left by
 * one would skew the next. The three streaming cases share one process and one backend.
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as ort from 'onnxruntime-node';
import { fileURLToPath } from 'node:url';
import { encodeNpy } from '../src/data/npy.js';
import { precomputeLogits } from '../src/precompute/run.js';
import { initBackend } from '../src/train/backend.js';
import { bindData } from '../src/train/bind.js';
import { cacheSource, openCache } from '../src/train/cache.js';
import { workerCacheSource } from '../src/train/cache-worker.js';
import { ExampleTable } from '../src/train/examples.js';
import { MetricsAccumulator } from '../src/train/metrics.js';
import { RNG_PURPOSE, Rng, deriveRng, shuffleInPlace } from '../src/train/rng.js';
import { trainStudent } from '../src/train/run.js';
import { memorySource } from '../src/train/stream.js';
import { createStudent, parseStudentSpec } from '../src/train/students.js';
import { type StepContext, createOptimizer, trainEpoch, trainStep } from '../src/train/trainer.js';
import { product } from '../src/util/dtype.js';
import { MODELS, ensureBenchModels, machine, median, saveResult, table } from './common.js';

function arg(name: string, fallback: number): number {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? Number(process.argv[i + 1]) : fallback;
}

const rows = arg('rows', 10_000);
const epochs = arg('epochs', 2);
// Streaming vs preloaded: several shards (10,000 rows each by default), so read-ahead and the
// shuffle buffer both work as in a real run.
const streamRows = arg('stream-rows', 40_000);
const streamEpochs = arg('stream-epochs', 6);
const reps = arg('reps', 3);
const rssRows = arg('rss-rows', 200_000);
const rssBuffer = arg('rss-buffer', 10_000);
const CHEAP_TEACHER = path.join(MODELS, 'mlp_784_1200_1200_10.onnx');
const withCpu = process.argv.includes('--cpu');
const batchSize = 256;
const student = 'mlp:256,128';
// The offline/online comparison depends on how expensive the teacher is: --teacher picks one of
// bench/models (default: the inference-bound 784-4096x3-10 MLP; mlp_784_1200_1200_10.onnx is cheap).
const TEACHER = path.join(MODELS, process.argv.includes('--teacher') ? process.argv[process.argv.indexOf('--teacher') + 1] : 'mlp_784_4096x3_10.onnx');

interface Row { case: string; backend: string; examples_per_second: number; note: string }

async function offline(cache: string, data: string, tmp: string, name: string, backend: 'auto' | 'native' | 'wasm' | 'cpu' | 'tensorflow', env: Record<string, string>, note: string, epochsHere = epochs): Promise<Row | null> {
  Object.assign(process.env, env);
  try {
    const out = path.join(tmp, `out-${name}`);
    const s = await trainStudent({ logits: cache, data, student, out, epochs: epochsHere, batchSize, backend, quiet: true, skipChecksums: true, seed: 1 });
    const lines = fs.readFileSync(path.join(out, 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
    const last = lines[lines.length - 1];
    return { case: name, backend: s.backend, examples_per_second: Math.round(last.examples_per_second), note };
  } catch (err) {
    if (backend === 'tensorflow' || backend === 'native') return null; // not installed / not built: nothing to measure
    throw err;
  } finally {
    for (const k of Object.keys(env)) delete process.env[k];
  }
}

/** Online distillation: teacher inference on every batch, then the same training step. */
async function online(x: Float32Array, n: number): Promise<Row> {
  const info = await initBackend('auto');
  const session = await ort.InferenceSession.create(TEACHER, { intraOpNumThreads: os.cpus().length, interOpNumThreads: 1 });
  const s = await createStudent(parseStudentSpec(student), { preShape: [784], classes: 10, seed: 1 });
  const ctx = { model: s.model, optimizer: createOptimizer('adam', 1e-3), loss: { alpha: 1, temperature: 4, kind: 'kd' as const }, inputShape: [784], classes: 10 };
  const batch = new ExampleTable(batchSize, 784, 10);
  let rate = 0;
  for (let e = 0; e < epochs; e++) {
    const order = shuffleInPlace([...Array(n).keys()], new Rng(e));
    const metrics = new MetricsAccumulator();
    const t0 = performance.now();
    for (let b = 0; b < n; b += batchSize) {
      const m = Math.min(batchSize, n - b);
      for (let i = 0; i < m; i++) batch.x.set(x.subarray(order[b + i] * 784, order[b + i] * 784 + 784), i * 784);
      batch.length = m;
      const r = await session.run({ x: new ort.Tensor('float32', batch.x.subarray(0, m * 784), [m, 784]) });
      batch.t.set(r[session.outputNames[0]].data as Float32Array);
      trainStep(ctx, batch, metrics);
    }
    rate = n / ((performance.now() - t0) / 1000);
  }
  await session.release();
  return { case: 'online (teacher every batch)', backend: info.name, examples_per_second: Math.round(rate), note: 'ONNX teacher + train step per batch' };
}

type RateCase = 'stream' | 'preloaded' | 'preloaded-same-batches';
const RATE_CASES: RateCase[] = ['stream', 'preloaded-same-batches', 'preloaded'];
interface RateRound { order: RateCase[]; epoch_rates: Record<RateCase, number[]>; examples_per_second: Record<RateCase, number>; ratio_same_batches: number; ratio: number }
interface RateResult { backend: string; rounds: RateRound[]; final_loss: Record<RateCase, number | null> }

/** The same student (same seed, so the same initial weights) and optimizer for every case. */
async function stepContext(): Promise<StepContext> {
  const s = await createStudent(parseStudentSpec(student), { preShape: [784], classes: 10, seed: 1 });
  return { model: s.model, optimizer: createOptimizer('adam', 1e-3), loss: { alpha: 1, temperature: 4, kind: 'kd' as const }, inputShape: [784], classes: 10 };
}

/**
 * Streaming vs preloaded, in one process: rounds of `streamEpochs` epochs per case, the cases'
 * order rotating from round to round. From one process to the next this VM ran the same preloaded
 * case anywhere from 105k to 153k ex/s, which buried a few percent of difference; within a process,
 * rounds seconds apart see the same machine. Each case trains its own copy of the student, so the
 * cases do not share optimizer state. The first epoch of each round is not counted: streaming
 * starts it waiting for its first shards (no read-ahead crosses from one case to the next).
 *  - stream: shards read, decoded and joined with the data file one ahead on the loader thread,
 *    through the shuffle buffer, as train-student does;
 *  - preloaded-same-batches: every shard decoded before the clock starts, in the form the loader
 *    hands over (pixel rows for uint8 data), then the same trainEpoch (shard order, shuffle buffer,
 *    seed) over the tables in memory: only where the chunks come from differs, so its losses equal
 *    streaming's;
 *  - preloaded: the shards in one table, each epoch a full permutation gathered into batches.
 */
async function streamVsPreloaded(cache: string, data: string): Promise<RateResult> {
  const manifest = await openCache(cache);
  const binding = await bindData(manifest, cache, { data });
  const info = await initBackend('auto');
  const transform = { pre: manifest.preprocessing, layout: 'as-is' as const };
  const loader = workerCacheSource({ cacheDir: cache, manifest, transform, dataset: { file: data, inputColumn: null }, labels: binding.labels });
  try {
    const direct = cacheSource({ cacheDir: cache, manifest, transform, dataset: binding.dataset, labels: binding.labels });
    const tables = await Promise.all(Array.from({ length: direct.chunks }, (_, c) => direct.load(c)));
    // The same batches in the loader's own form: pixel rows (raw bytes, shuffle buffer of bytes)
    // when it hands over pixels, so that only where the chunks come from differs.
    const width = product(manifest.preprocessing.input_shape);
    const sameForm = loader.pixels
      ? await Promise.all(manifest.shards.map((rec, c) => direct.load(c, new Uint8Array(rec.rows * width))))
      : tables;
    const memory = { ...memorySource(sameForm, true), pixels: loader.pixels };
    const all = new ExampleTable(manifest.rows, direct.inputWidth, direct.logitsWidth);
    for (const chunk of tables) for (let i = 0; i < chunk.length; i++) all.append(chunk, i);
    const ctx = Object.fromEntries(await Promise.all(RATE_CASES.map(async (c) => [c, await stepContext()] as const))) as Record<RateCase, StepContext>;
    const epochOf: Record<RateCase, number> = { stream: 0, 'preloaded-same-batches': 0, preloaded: 0 };
    const finalLoss: Record<RateCase, number | null> = { stream: null, 'preloaded-same-batches': null, preloaded: null };
    const batch = new ExampleTable(batchSize, all.inputWidth, all.logitsWidth);
    const epoch = async (kind: RateCase, last: boolean): Promise<number> => {
      const e = epochOf[kind]++;
      if (kind === 'preloaded') {
        const perm = Int32Array.from(shuffleInPlace([...Array(all.length).keys()], deriveRng(1, e, RNG_PURPOSE.shuffle)));
        const metrics = new MetricsAccumulator();
        const t0 = performance.now();
        for (let b = 0; b < perm.length; b += batchSize) {
          batch.length = 0;
          // gathered the way the stream fills its batches (one moveRows call per batch)
          const n = Math.min(batchSize, perm.length - b);
          batch.appendRows(all, perm.subarray(b, b + n), n);
          trainStep(ctx[kind], batch, metrics);
        }
        return perm.length / ((performance.now() - t0) / 1000);
      }
      const source = kind === 'stream' ? loader : memory;
      const order = shuffleInPlace([...Array(source.chunks).keys()], deriveRng(1, e, RNG_PURPOSE.shardOrder));
      const nextOrder = last ? undefined : shuffleInPlace([...Array(source.chunks).keys()], deriveRng(1, e + 1, RNG_PURPOSE.shardOrder));
      const r = await trainEpoch(ctx[kind], source, order, { batchSize, shuffleBuffer: Math.min(10_000, manifest.rows), rng: deriveRng(1, e, RNG_PURPOSE.shuffle), nextOrder });
      finalLoss[kind] = r.metrics.loss ?? null;
      return r.examples / r.seconds;
    };
    const rounds: RateRound[] = [];
    for (let i = 0; i < reps; i++) {
      const order = RATE_CASES.map((_, j) => RATE_CASES[(i + j) % RATE_CASES.length]);
      const rates = {} as Record<RateCase, number[]>;
      for (const c of order) {
        rates[c] = [];
        for (let k = 0; k < streamEpochs; k++) rates[c].push(await epoch(c, k === streamEpochs - 1));
      }
      const ex = Object.fromEntries(RATE_CASES.map((c) => [c, Math.round(median(rates[c].slice(1)))])) as Record<RateCase, number>;
      const round = { order, epoch_rates: Object.fromEntries(RATE_CASES.map((c) => [c, rates[c].map(Math.round)])) as Record<RateCase, number[]>, examples_per_second: ex,
        ratio_same_batches: ex.stream / ex['preloaded-same-batches'], ratio: ex.stream / ex.preloaded };
      rounds.push(round);
      process.stderr.write(`round ${i + 1}/${reps}: stream ${ex.stream} ex/s vs preloaded same batches ${ex['preloaded-same-batches']} (${round.ratio_same_batches.toFixed(3)}) vs preloaded permutation ${ex.preloaded} (${round.ratio.toFixed(3)}), ${info.name}\n`);
    }
    return { backend: info.name, rounds, final_loss: finalLoss };
  } finally {
    await loader.close();
    await binding.dataset?.close();
  }
}

interface RssResult {
  cache_rows: number; shuffle_buffer: number; shards: number; cache_bytes_on_disk: number; cache_bytes_decoded: number;
  epochs: number; examples_per_second: number; backend: string; samples: number; seconds: number;
  rss_mb: { before_training: number; min: number; max: number; last: number; max_minus_min: number };
  /** the second epoch: after warm-up (heaps at their high-water marks) */
  epoch2_rss_mb: { min: number; max: number; max_minus_min: number };
  slope_mb_per_100k_rows: number; epoch2_slope_mb_per_100k_rows: number;
}

/** Least-squares slope of ys over xs. */
function slope(xs: number[], ys: number[]): number {
  const n = xs.length;
  if (n < 2) return 0;
  const mx = xs.reduce((a, b) => a + b, 0) / n;
  const my = ys.reduce((a, b) => a + b, 0) / n;
  let num = 0;
  let den = 0;
  for (let i = 0; i < n; i++) {
    num += (xs[i] - mx) * (ys[i] - my);
    den += (xs[i] - mx) ** 2;
  }
  return den > 0 ? num / den : 0;
}

/**
 * train-student over a cache much larger than its shuffle buffer, sampling this process's RSS every
 * 100 ms (the loop yields to the event loop between batches, so the timer runs during training).
 * Flat memory: a slope near zero and a max - min far below the decoded cache size. The slope is
 * taken against time and expressed per 100k rows at the run's throughput.
 */
async function rssCase(cache: string, tmp: string): Promise<RssResult> {
  const manifest = await openCache(cache);
  const mb = (b: number) => Math.round((b / 2 ** 20) * 10) / 10;
  const samples: { t: number; rss: number }[] = [];
  let t0 = 0;
  let t1 = Infinity;
  let before = 0;
  const timer = setInterval(() => { if (t0 > 0) samples.push({ t: (performance.now() - t0) / 1000, rss: process.memoryUsage.rss() }); }, 100);
  const epochsHere = 2;
  try {
    const s = await trainStudent({
      logits: cache, student, out: path.join(tmp, 'out-rss'), epochs: epochsHere, batchSize, backend: 'auto', quiet: true, skipChecksums: true, seed: 1,
      shuffleBuffer: rssBuffer,
      // trainStudent logs the backend line right before the first epoch, then a line per epoch.
      log: (line) => {
        if (line.startsWith('backend:')) { before = process.memoryUsage.rss(); t0 = performance.now(); }
        if (line.startsWith('epoch 1/')) t1 = (performance.now() - t0) / 1000;
      },
    });
    const seconds = (performance.now() - t0) / 1000;
    t0 = 0;
    const rss = samples.map((x) => x.rss);
    const second = samples.filter((x) => x.t >= t1);
    const perRow = (mbPerSecond: number) => Math.round((mbPerSecond / s.examples_per_second) * 1e5 * 10) / 10;
    const lo = (xs: number[]) => Math.min(...xs);
    const hi = (xs: number[]) => Math.max(...xs);
    return {
      cache_rows: manifest.rows, shuffle_buffer: rssBuffer, shards: manifest.shards.length,
      cache_bytes_on_disk: manifest.shards.reduce((a, r) => a + r.bytes, 0),
      cache_bytes_decoded: manifest.rows * (784 + 10) * 4, epochs: epochsHere,
      examples_per_second: Math.round(s.examples_per_second), backend: s.backend, samples: samples.length, seconds: Math.round(seconds * 10) / 10,
      rss_mb: { before_training: mb(before), min: mb(lo(rss)), max: mb(hi(rss)), last: mb(rss[rss.length - 1]), max_minus_min: mb(hi(rss) - lo(rss)) },
      epoch2_rss_mb: { min: mb(lo(second.map((x) => x.rss))), max: mb(hi(second.map((x) => x.rss))), max_minus_min: mb(hi(second.map((x) => x.rss)) - lo(second.map((x) => x.rss))) },
      slope_mb_per_100k_rows: perRow(slope(samples.map((x) => x.t), rss.map(mb))),
      epoch2_slope_mb_per_100k_rows: perRow(slope(second.map((x) => x.t), second.map((x) => mb(x.rss)))),
    };
  } finally {
    clearInterval(timer);
  }
}

/** Deterministic pseudo-random pixels (the throughput does not depend on the values). */
function randomBytes(n: number): Uint8Array {
  const u8 = new Uint8Array(n * 784);
  for (let i = 0; i < u8.length; i++) u8[i] = (i * 2654435761) >>> 24;
  return u8;
}

function writeRandomNpy(file: string, n: number): void {
  fs.writeFileSync(file, encodeNpy(randomBytes(n), 'uint8', [n, 784]));
}

function flag(name: string): string {
  return process.argv[process.argv.indexOf(`--${name}`) + 1];
}

/** One measurement, in this (fresh) process; prints its Row as JSON on stdout. */
async function runCase(name: string): Promise<void> {
  const cache = flag('cache');
  const data = flag('data');
  const tmp = flag('tmp');
  let row: Row | RateResult | RssResult | null;
  if (name === 'stream-vs-preloaded') row = await streamVsPreloaded(cache, data);
  else if (name === 'rss') row = await rssCase(cache, tmp);
  else if (name === 'online') {
    row = await online(Float32Array.from(randomBytes(rows), (v) => v / 255), rows);
  } else if (name === 'tensorflow') row = await offline(cache, data, tmp, 'offline, tfjs-node', 'tensorflow', {}, 'only when @tensorflow/tfjs-node is installed');
  else if (name === 'wasm-stock') row = await offline(cache, data, tmp, 'offline, wasm as shipped', 'wasm', { KDCACHE_WASM_STOCK_MATMUL: '1' }, 'transposed matmuls ~10x slower');
  else if (name === 'wasm') row = await offline(cache, data, tmp, 'offline, pure wasm (kdcache kernels)', 'wasm', {}, 'the fallback');
  else if (name === 'native') row = await offline(cache, data, tmp, 'offline, native (wasm + BLAS kernels)', 'native', {}, 'default when built');
  else row = await offline(cache, data, tmp, 'offline, cpu (pure JS)', 'cpu', {}, '1 epoch, includes warm-up', 1);
  process.stdout.write(`${JSON.stringify(row)}\n`);
}

async function main(): Promise<void> {
  ensureBenchModels();
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'kdcache-bench-train-'));
  try {
    const data = path.join(tmp, 'x.npy');
    writeRandomNpy(data, rows);
    const cache = path.join(tmp, 'cache');
    const t0 = performance.now();
    await precomputeLogits({ teacher: TEACHER, data, out: cache, scale: 1 / 255, device: 'cpu', quiet: true });
    const precomputeSecs = (performance.now() - t0) / 1000;

    const runIn = <T>(c: string, cacheDir: string, dataFile: string, extra: string[] = []): T | null => {
      const r = spawnSync(process.execPath, [fileURLToPath(import.meta.url), '--case', c, '--cache', cacheDir, '--data', dataFile, '--tmp', tmp, '--rows', String(rows), '--epochs', String(epochs), '--teacher', path.basename(TEACHER), '--stream-epochs', String(streamEpochs), '--rss-buffer', String(rssBuffer), ...extra], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'], maxBuffer: 1 << 26 });
      if (r.status !== 0) throw new Error(`case ${c} failed (exit ${r.status})`);
      return JSON.parse(r.stdout.trim() || 'null') as T | null;
    };

    // Streaming vs preloaded, alternating so that drift in machine load hits both sides.
    const streamData = path.join(tmp, 'x-stream.npy');
    writeRandomNpy(streamData, streamRows);
    const streamCache = path.join(tmp, 'cache-stream');
    await precomputeLogits({ teacher: CHEAP_TEACHER, data: streamData, out: streamCache, scale: 1 / 255, device: 'cpu', quiet: true });
    const sp = runIn<RateResult>('stream-vs-preloaded', streamCache, streamData, ['--reps', String(reps)])!;
    const ofCase = (c: RateCase) => sp.rounds.map((r) => r.examples_per_second[c]);
    const streamVsPreloaded = {
      rows: streamRows, shards: Math.ceil(streamRows / 10_000), epochs_per_round: streamEpochs, shuffle_buffer: 10_000, backend: sp.backend, rounds: reps,
      method: 'one process; per round, each case trains its own copy of the student for the given epochs (the first not counted), the order of the cases rotating',
      stream_examples_per_second: median(ofCase('stream')),
      preloaded_same_batches_examples_per_second: median(ofCase('preloaded-same-batches')),
      preloaded_examples_per_second: median(ofCase('preloaded')),
      median_ratio_same_batches: Math.round(median(sp.rounds.map((r) => r.ratio_same_batches)) * 1000) / 1000,
      median_ratio: Math.round(median(sp.rounds.map((r) => r.ratio)) * 1000) / 1000,
      same_batches_identical_loss: sp.final_loss.stream === sp.final_loss['preloaded-same-batches'],
      target: 0.95,
      runs: sp.rounds,
    };
    fs.rmSync(streamCache, { recursive: true, force: true });

    // RSS over a cache >= 10x the shuffle buffer; inputs stored in the shards (no data file).
    const rssData = path.join(tmp, 'x-rss.npy');
    writeRandomNpy(rssData, rssRows);
    const rssCache = path.join(tmp, 'cache-rss');
    await precomputeLogits({ teacher: CHEAP_TEACHER, data: rssData, out: rssCache, scale: 1 / 255, device: 'cpu', quiet: true, storeInputs: true });
    fs.rmSync(rssData);
    const rss = runIn<RssResult>('rss', rssCache, '')!;
    process.stderr.write(`RSS over ${rss.cache_rows} rows (buffer ${rss.shuffle_buffer}): min ${rss.rss_mb.min} max ${rss.rss_mb.max} last ${rss.rss_mb.last} MB; epoch 2 ${rss.epoch2_rss_mb.min}-${rss.epoch2_rss_mb.max} MB, slope ${rss.epoch2_slope_mb_per_100k_rows} MB/100k rows\n`);
    fs.rmSync(rssCache, { recursive: true, force: true });

    const results: Row[] = [];
    const cases = ['tensorflow', 'native', 'wasm-stock', 'wasm', ...(withCpu ? ['cpu'] : []), 'online'];
    for (const c of cases) {
      const row = runIn<Row>(c, cache, data);
      if (row) {
        results.push(row);
        process.stderr.write(`${row.case}: ${row.examples_per_second} ex/s on ${row.backend}\n`);
      }
    }

    // Online runs on the fastest backend (auto): compare with the fastest offline case.
    const offlineRows = results.filter((r) => r.case.startsWith('offline'));
    const fastest = offlineRows.reduce((a, b) => (b.examples_per_second > a.examples_per_second ? b : a));
    const wasmOffline = fastest.examples_per_second;
    const onlineRate = results.find((r) => r.case.startsWith('online'))!.examples_per_second;
    const precomputeRate = rows / precomputeSecs;
    // E epochs: offline pays the teacher once (precompute), online pays it every epoch.
    const speedup = (E: number) => ((E * rows) / onlineRate) / (rows / precomputeRate + (E * rows) / wasmOffline);
    process.stdout.write(`\nstreaming vs preloaded (${streamRows} rows, ${streamVsPreloaded.shards} shards, shuffle buffer 10000, ${reps} rounds of ${streamEpochs} epochs per case in one process, ${streamVsPreloaded.backend}): `
      + `${streamVsPreloaded.stream_examples_per_second} ex/s; preloaded with the same batches ${streamVsPreloaded.preloaded_same_batches_examples_per_second} ex/s, median ratio ${streamVsPreloaded.median_ratio_same_batches}`
      + ` (identical losses: ${streamVsPreloaded.same_batches_identical_loss}); preloaded as one permuted table ${streamVsPreloaded.preloaded_examples_per_second} ex/s, median ratio ${streamVsPreloaded.median_ratio} (target >= 0.95)\n`);
    process.stdout.write(`RSS, ${rss.cache_rows} rows (${(rss.cache_bytes_decoded / 2 ** 20).toFixed(0)} MB decoded, ${(rss.cache_bytes_on_disk / 2 ** 20).toFixed(0)} MB on disk) with shuffle buffer ${rss.shuffle_buffer}: `
      + `min ${rss.rss_mb.min} / max ${rss.rss_mb.max} / last ${rss.rss_mb.last} MB over ${rss.samples} samples (2 epochs); `
      + `second epoch ${rss.epoch2_rss_mb.min}-${rss.epoch2_rss_mb.max} MB, slope ${rss.epoch2_slope_mb_per_100k_rows} MB per 100k rows (whole run ${rss.slope_mb_per_100k_rows}, warm-up included)\n`);
    process.stdout.write(`\ntrain-student, ${student}, batch ${batchSize}, ${rows} rows x 784, epochs ${epochs} (rate of the last epoch)\n`);
    process.stdout.write(`${table([['case', 'backend', 'examples/s', 'note'], ...results.map((r) => [r.case, r.backend, r.examples_per_second, r.note])])}\n`);
    process.stdout.write(`precompute (teacher ${path.basename(TEACHER)}): ${Math.round(precomputeRate)} rows/s, once\n`);
    process.stdout.write(`offline vs online wall time over 10 epochs: ${speedup(10).toFixed(2)}x faster offline (${fastest.backend})\n`);
    const file = saveResult('train', { machine: machine(), rows, epochs, student, batch_size: batchSize, teacher: path.basename(TEACHER), precompute_rows_per_second: precomputeRate, stream_vs_preloaded: streamVsPreloaded, rss, results, offline_vs_online_10_epochs: { speedup: Math.round(speedup(10) * 100) / 100, offline_backend: fastest.backend } });
    process.stdout.write(`saved ${file}\n`);
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
}

if (process.argv.includes('--case')) await runCase(flag('case'));
else await main();
