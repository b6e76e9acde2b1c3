/**
 * train-student throughput: examples/s of offline distillation (cached logits) per tfjs backend,
 * and against online distillation (the ONNX teacher run on every batch, every epoch).
 *
 *   npm run bench:train [-- --rows 10000 --epochs 2 --cpu --teacher mlp_784_1200_1200_10.onnx]
 *
 * Student mlp:256,128 on 784-dim inputs, batch 256, Adam; teacher from bench/models (--teacher).
 * Reported examples/s is the last epoch's (the first includes tfjs warm-up). Every case runs in a
 * fresh process: tfjs backends and wasm heaps left by one case would skew the next.
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as ort from 'onnxruntime-node';
import { encodeNpy } from '../src/data/npy.js';
import { precomputeLogits } from '../src/precompute/run.js';
import { initBackend } from '../src/train/backend.js';
import { ExampleTable } from '../src/train/examples.js';
import { MetricsAccumulator } from '../src/train/metrics.js';
import { Rng, shuffleInPlace } from '../src/train/rng.js';
import { trainStudent } from '../src/train/run.js';
import { fileURLToPath } from 'node:url';
import { createStudent, parseStudentSpec } from '../src/train/students.js';
import { createOptimizer, trainStep } from '../src/train/trainer.js';
import { MODELS, ensureBenchModels, machine, saveResult, table } from './common.js';

function arg(name: string, fallback: number): number {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? Number(process.argv[i + 1]) : fallback;
}

const rows = arg('rows', 10_000);
const epochs = arg('epochs', 2);
const withCpu = process.argv.includes('--cpu');
const batchSize = 256;
const student = 'mlp:256,128';
// The offline/online comparison depends on how expensive the teacher is: --teacher picks one of
// bench/models (default: the inference-bound 784-4096x3-10 MLP; mlp_784_1200_1200_10.onnx is cheap).
const TEACHER = path.join(MODELS, process.argv.includes('--teacher') ? process.argv[process.argv.indexOf('--teacher') + 1] : 'mlp_784_4096x3_10.onnx');

interface Row { case: string; backend: string; examples_per_second: number; note: string }

async function offline(cache: string, data: string, tmp: string, name: string, backend: 'wasm' | 'cpu' | 'tensorflow', env: Record<string, string>, note: string, epochsHere = epochs): Promise<Row | null> {
  Object.assign(process.env, env);
  try {
    const out = path.join(tmp, `out-${name}`);
    const s = await trainStudent({ logits: cache, data, student, out, epochs: epochsHere, batchSize, backend, quiet: true, skipChecksums: true, seed: 1 });
    const lines = fs.readFileSync(path.join(out, 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
    const last = lines[lines.length - 1];
    return { case: name, backend: s.backend, examples_per_second: Math.round(last.examples_per_second), note };
  } catch (err) {
    if (backend === 'tensorflow') return null; // tfjs-node not installed: nothing to measure
    throw err;
  } finally {
    for (const k of Object.keys(env)) delete process.env[k];
  }
}

/** Online distillation: teacher inference on every batch, then the same training step. */
async function online(x: Float32Array, n: number): Promise<Row> {
  const info = await initBackend('wasm');
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

function flag(name: string): string {
  return process.argv[process.argv.indexOf(`--${name}`) + 1];
}

/** One measurement, in this (fresh) process; prints its Row as JSON on stdout. */
async function runCase(name: string): Promise<void> {
  const cache = flag('cache');
  const data = flag('data');
  const tmp = flag('tmp');
  let row: Row | null;
  if (name === 'online') {
    const u8 = new Uint8Array(rows * 784);
    for (let i = 0; i < u8.length; i++) u8[i] = (i * 2654435761) >>> 24;
    row = await online(Float32Array.from(u8, (v) => v / 255), rows);
  } else if (name === 'tensorflow') row = await offline(cache, data, tmp, 'offline, tfjs-node', 'tensorflow', {}, 'only when @tensorflow/tfjs-node is installed');
  else if (name === 'wasm-stock') row = await offline(cache, data, tmp, 'offline, wasm as shipped', 'wasm', { KDCACHE_WASM_STOCK_MATMUL: '1' }, 'transposed matmuls ~10x slower');
  else if (name === 'wasm') row = await offline(cache, data, tmp, 'offline, wasm + explicit-transpose matmul', 'wasm', {}, 'default');
  else row = await offline(cache, data, tmp, 'offline, cpu (pure JS)', 'cpu', {}, '1 epoch, includes warm-up', 1);
  process.stdout.write(`${JSON.stringify(row)}\n`);
}

async function main(): Promise<void> {
  ensureBenchModels();
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'kdcache-bench-train-'));
  try {
    const u8 = new Uint8Array(rows * 784);
    for (let i = 0; i < u8.length; i++) u8[i] = (i * 2654435761) >>> 24;
    const data = path.join(tmp, 'x.npy');
    fs.writeFileSync(data, encodeNpy(u8, 'uint8', [rows, 784]));
    const cache = path.join(tmp, 'cache');
    const t0 = performance.now();
    await precomputeLogits({ teacher: TEACHER, data, out: cache, scale: 1 / 255, device: 'cpu', quiet: true });
    const precomputeSecs = (performance.now() - t0) / 1000;

    const results: Row[] = [];
    const cases = ['tensorflow', 'wasm-stock', 'wasm', ...(withCpu ? ['cpu'] : []), 'online'];
    for (const c of cases) {
      const r = spawnSync(process.execPath, [fileURLToPath(import.meta.url), '--case', c, '--cache', cache, '--data', data, '--tmp', tmp, '--rows', String(rows), '--epochs', String(epochs), '--teacher', path.basename(TEACHER)], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] });
      if (r.status !== 0) throw new Error(`case ${c} failed (exit ${r.status})`);
      const row = JSON.parse(r.stdout.trim() || 'null') as Row | null;
      if (row) {
        results.push(row);
        process.stderr.write(`${row.case}: ${row.examples_per_second} ex/s on ${row.backend}\n`);
      }
    }

    const wasmOffline = results.find((r) => r.case === 'offline, wasm + explicit-transpose matmul')!.examples_per_second;
    const onlineRate = results.find((r) => r.case.startsWith('online'))!.examples_per_second;
    const precomputeRate = rows / precomputeSecs;
    // E epochs: offline pays the teacher once (precompute), online pays it every epoch.
    const speedup = (E: number) => ((E * rows) / onlineRate) / (rows / precomputeRate + (E * rows) / wasmOffline);
    process.stdout.write(`\ntrain-student, ${student}, batch ${batchSize}, ${rows} rows x 784, epochs ${epochs} (rate of the last epoch)\n`);
    process.stdout.write(`${table([['case', 'backend', 'examples/s', 'note'], ...results.map((r) => [r.case, r.backend, r.examples_per_second, r.note])])}\n`);
    process.stdout.write(`precompute (teacher ${path.basename(TEACHER)}): ${Math.round(precomputeRate)} rows/s, once\n`);
    process.stdout.write(`offline vs online wall time over 10 epochs: ${speedup(10).toFixed(2)}x faster offline (wasm)\n`);
    const file = saveResult('train', { machine: machine(), rows, epochs, student, batch_size: batchSize, teacher: path.basename(TEACHER), precompute_rows_per_second: precomputeRate, results });
    process.stdout.write(`saved ${file}\n`);
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
}

if (process.argv.includes('--case')) await runCase(flag('case'));
else await main();
