/**
 * End-to-end precompute throughput against the ceiling: a raw loop of session.run over tensors that
 * are already preprocessed and in memory, same model, batch size and threads. Runs alternate
 * (raw, pipeline, raw, pipeline, ...) so machine drift hits both; medians are reported.
 *
 *   npm run bench:precompute [-- --reps 3] [--device cpu|cuda] [--models mlp,big,cnn] [--rows-scale 1] [--threads N]
 *       [--pipeline-threads N] [--batch N] [--writers N] [--inference-thread auto|main|worker]
 *
 * --threads (default: precompute-logits' default, defaultIntraOpThreads) is ONNX Runtime's intra-op
 * threads in both loops; without it the pipeline is left to its own default. --pipeline-threads gives
 * the pipeline its own count (does leaving a core to reading, converting and
 * writing beat the raw loop on every core?); --batch overrides each model's batch size in both loops;
 * --writers is the pipeline's shard encoder threads; --inference-thread where the pipeline's teacher runs
 * (precompute-logits' flag; auto by default).
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as ort from 'onnxruntime-node';
import { encodeNpy } from '../src/data/npy.js';
import { precomputeLogits } from '../src/precompute/run.js';
import { INFERENCE_THREADS, type InferenceThread } from '../src/precompute/teacher-thread.js';
import { defaultIntraOpThreads } from '../src/precompute/teacher.js';
import { MODELS, ensureBenchModels, machine, median, saveResult, table } from './common.js';

interface Case { key: string; name: string; model: string; rows: number; batch: number }

const arg = (name: string): string | undefined => (process.argv.includes(name) ? process.argv[process.argv.indexOf(name) + 1] : undefined);
const reps = Number(arg('--reps')) || 3;
const device = arg('--device') ?? 'cpu';
const rowsScale = Number(arg('--rows-scale')) || 1;
const only = arg('--models')?.split(',');
const defaultThreads = defaultIntraOpThreads();
const threads = Number(arg('--threads')) || defaultThreads;
const batchOverride = Number(arg('--batch')) || 0;
const writers = Number(arg('--writers')) || 1;
const pipelineThreads = Number(arg('--pipeline-threads')) || threads;
const pipelineThreadsFlag = Number(arg('--pipeline-threads')) || Number(arg('--threads')) || undefined;
const inferenceThread = (arg('--inference-thread') ?? 'auto') as InferenceThread;
if (!INFERENCE_THREADS.includes(inferenceThread)) throw new Error(`--inference-thread ${inferenceThread}: expected ${INFERENCE_THREADS.join(', ')}`);

async function rawLoop(model: string, x: Float32Array, rows: number, batch: number): Promise<number> {
  const s = await ort.InferenceSession.create(model, {
    intraOpNumThreads: threads, interOpNumThreads: 1, graphOptimizationLevel: 'all',
    executionProviders: device === 'cpu' ? ['cpu'] : [{ name: 'cuda', deviceId: Number(device.split(':')[1] ?? 0) }],
  });
  const inputName = s.inputNames[0];
  const shape = (s.inputMetadata[0] as { shape: readonly (number | string)[] }).shape.slice(1).map(Number);
  const feeds: ort.Tensor[] = [];
  for (let b = 0; b < rows; b += batch) {
    const n = Math.min(batch, rows - b);
    feeds.push(new ort.Tensor('float32', x.subarray(b * 784, (b + n) * 784), [n, ...shape]));
  }
  await s.run({ [inputName]: feeds[0] }); // warm-up, as the pipeline's shape probe does
  const t0 = performance.now();
  for (const f of feeds) await s.run({ [inputName]: f });
  const secs = (performance.now() - t0) / 1000;
  await s.release();
  return rows / secs;
}

async function main(): Promise<void> {
  ensureBenchModels();
  const cases: Case[] = [
    { key: 'mlp', name: 'mlp 784-1200-1200-10', model: path.join(MODELS, 'mlp_784_1200_1200_10.onnx'), rows: 30_000, batch: 256 },
    { key: 'big', name: 'mlp 784-4096x3-10 (inference-bound)', model: path.join(MODELS, 'mlp_784_4096x3_10.onnx'), rows: 6_000, batch: 256 },
    { key: 'cnn', name: 'cnn_wide (ResNet-style)', model: path.join(MODELS, 'cnn_wide.onnx'), rows: 3_000, batch: 256 },
  ].filter((c) => (only ? only.includes(c.key) : c.key !== 'cnn')).map((c) => ({ ...c, rows: Math.round(c.rows * rowsScale), batch: batchOverride || c.batch }));
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'kdcache-bench-'));
  const results = [];
  try {
    for (const c of cases) {
      const u8 = new Uint8Array(c.rows * 784);
      for (let i = 0; i < u8.length; i++) u8[i] = (i * 2654435761) >>> 24;
      const dataFile = path.join(tmp, `data-${c.rows}.npy`);
      fs.writeFileSync(dataFile, encodeNpy(u8, 'uint8', [c.rows, 784]));
      // A plain loop: Float32Array.from(u8, fn) goes through a JS array and runs out of heap at 300k rows.
      const x = new Float32Array(u8.length);
      for (let i = 0; i < u8.length; i++) x[i] = u8[i] / 255;
      const raw: number[] = [];
      const pipe: number[] = [];
      const wall: number[] = [];
      let bytesPerRow = 0;
      let ran = '';
      for (let r = 0; r < reps; r++) {
        raw.push(await rawLoop(c.model, x, c.rows, c.batch));
        const out = path.join(tmp, `out-${r}`);
        const t0 = performance.now();
        const res = await precomputeLogits({ teacher: c.model, data: dataFile, out, scale: 1 / 255, batchSize: c.batch, threads: pipelineThreadsFlag, device, writers, inferenceThread, quiet: true });
        wall.push(c.rows / ((performance.now() - t0) / 1000));
        pipe.push(res.rowsPerSecond);
        ran = res.inferenceThread;
        bytesPerRow = res.bytesWritten / c.rows;
        fs.rmSync(out, { recursive: true, force: true });
        process.stderr.write(`  ${c.name} rep ${r + 1}/${reps}: raw ${raw[r].toFixed(0)} rows/s, pipeline ${pipe[r].toFixed(0)} rows/s\n`);
      }
      const ratios = raw.map((v, i) => pipe[i] / v);
      results.push({
        case: c.name, rows: c.rows, batch: c.batch, threads, pipeline_threads: pipelineThreads, writers, inference_thread: inferenceThread, inference_thread_used: ran,
        raw_rows_per_s: median(raw), pipeline_rows_per_s: median(pipe), pipeline_ratio_median: median(ratios),
        pipeline_ratio_min: Math.min(...ratios), end_to_end_rows_per_s_incl_startup: median(wall), bytes_per_row: bytesPerRow,
      });
    }
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
  const rows: (string | number)[][] = [['case', 'raw rows/s', 'pipeline rows/s', 'ratio (median)', 'incl. startup rows/s', 'bytes/row']];
  for (const r of results) rows.push([r.case, r.raw_rows_per_s.toFixed(0), r.pipeline_rows_per_s.toFixed(0), r.pipeline_ratio_median.toFixed(3), r.end_to_end_rows_per_s_incl_startup.toFixed(0), r.bytes_per_row.toFixed(1)]);
  console.log(table(rows));
  console.log(`target: pipeline >= ${device === 'cpu' ? 0.95 : 0.9} x raw session.run loop; saved ${saveResult(`${device === 'cpu' ? 'precompute' : 'precompute-cuda'}${threads !== defaultThreads ? `-threads${threads}` : ''}${pipelineThreads !== threads ? `-pipeline${pipelineThreads}` : ''}${inferenceThread !== 'auto' ? `-${inferenceThread}` : ''}`, { machine: machine(), device, threads, reps, target_ratio: device === 'cpu' ? 0.95 : 0.9, results })}`);
}

await main();
