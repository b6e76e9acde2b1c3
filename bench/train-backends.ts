/**
 * Every tfjs training backend kdcache can use on this machine, on the same students: examples/s of
 * the training step (what train-student runs per batch), with the kernel profile of each.
 *
 *   npm run build && node dist/bench/train-backends.js [--seconds 8] [--models mlp,cnn] [--reps 2]
 *
 * Backends: tensorflow (tfjs-node, only when installed), native (wasm + BLAS kernels, when built),
 * wasm (pure), wasm as shipped (stock matmul), cpu (pure JS; MLP only: a CNN step takes about a
 * minute there). Each run
 * is a fresh process; reps alternate the order; medians are reported.
 */
import * as os from 'node:os';
import { machine, median, saveResult, table } from './common.js';
import { MODELS, type ModelName, type SpeedResult, loadPerCore, measureInProcess, probeBackend } from './train-speed.js';

const arg = (name: string, fallback: string) => (process.argv.includes(`--${name}`) ? process.argv[process.argv.indexOf(`--${name}`) + 1] : fallback);
const seconds = Number(arg('seconds', '8'));
const reps = Number(arg('reps', '2'));
const models = arg('models', 'mlp,cnn').split(',') as ModelName[];

interface Case { name: string; backend: 'tensorflow' | 'native' | 'wasm' | 'cpu'; env?: Record<string, string>; note: string }
const CASES: Case[] = [
  { name: 'tensorflow', backend: 'tensorflow', note: '@tensorflow/tfjs-node, when installed' },
  { name: 'native', backend: 'native', note: 'wasm + BLAS kernels (native/, built by npm run build)' },
  { name: 'wasm', backend: 'wasm', note: 'pure wasm with kdcache kernels (the fallback)' },
  { name: 'wasm-stock', backend: 'wasm', env: { KDCACHE_WASM_STOCK_MATMUL: '1' }, note: 'wasm as shipped + missing gradients' },
  { name: 'cpu', backend: 'cpu', note: 'pure JS' },
];

const rows: (string | number)[][] = [['student', 'backend', 'examples/s', 'ms/step', 'vs wasm', 'top kernels (ms/step)', 'note']];
const results: Record<string, unknown[]> = {};
for (const model of models) {
  const available = CASES.filter((c) => {
    // The cpu backend needs about a minute per CNN step: it is left out of the CNN comparison.
    if (c.name === 'cpu' && model === 'cnn') return false;
    const probe = probeBackend(c.backend, c.env);
    if ('error' in probe) process.stderr.write(`${model} ${c.name}: not available (${probe.error})\n`);
    return !('error' in probe) && probe.backend === c.backend;
  });
  const runs: Record<string, SpeedResult[]> = {};
  for (let rep = 0; rep < reps; rep++) {
    const order = rep % 2 === 0 ? available : [...available].reverse();
    for (const c of order) {
      // One run places the (slow) cpu backend.
      if (c.name === 'cpu' && rep > 0) continue;
      const r = measureInProcess(c.backend, model, seconds, rep === 0, c.env);
      if ('error' in r) throw new Error(`${model} ${c.name}: ${r.error}`);
      (runs[c.name] ??= []).push(r);
      process.stderr.write(`${model} ${c.name} rep ${rep + 1} (load/core ${loadPerCore()}): ${r.examples_per_second} ex/s\n`);
    }
  }
  const wasmRate = median((runs.wasm ?? []).map((r) => r.examples_per_second));
  results[model] = available.map((c) => {
    const rs = runs[c.name];
    const eps = Math.round(median(rs.map((r) => r.examples_per_second)));
    const profile = rs.find((r) => r.profile)?.profile;
    rows.push([model, c.name, eps, median(rs.map((r) => r.median_ms_per_step)), wasmRate ? `${(eps / wasmRate).toFixed(2)}x` : '-',
      profile ? profile.top.slice(0, 4).map((k) => `${k.kernel} ${k.ms_per_step}`).join(', ') : '', c.note]);
    return { case: c.name, backend_message: rs[0].message, examples_per_second: eps, runs: rs.map((r) => r.examples_per_second), median_ms_per_step: median(rs.map((r) => r.median_ms_per_step)), profile, note: c.note };
  });
}
process.stdout.write(`\ntraining step throughput per backend (${os.cpus().length} cores, ${os.cpus()[0]?.model}); ${models.map((m) => MODELS[m].describe).join('; ')}\n`);
process.stdout.write(`${table(rows)}\n`);
const file = saveResult('train-backends', { machine: machine(), seconds, reps, loss: 'kd, alpha 1, T 4', optimizer: 'adam 1e-3', results });
process.stdout.write(`saved ${file}\n`);
