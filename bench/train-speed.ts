/**
 * Shared by bench/train-backends and bench/train-vs-pytorch: examples/s of kdcache's training step
 * (trainStep, exactly what train-student runs per batch) on in-memory batches, for the two
 * reference students, in a fresh process per measurement, plus the kernel profile of the step.
 */
import { spawnSync } from 'node:child_process';
import * as os from 'node:os';import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { type BackendChoice, initBackend } from '../src/train/backend.js';
import { ExampleTable } from '../src/train/examples.js';
import { MetricsAccumulator } from '../src/train/metrics.js';
import { createStudent, parseStudentSpec } from '../src/train/students.js';
import { type StepContext, createOptimizer, trainStep } from '../src/train/trainer.js';
import { profileKernels, topKernels } from './kernel-profile.js';

export type ModelName = 'mlp' | 'cnn';

/** The students of the comparison: the MLP and small CNN, as kdcache builds them. */
export const MODELS: Record<ModelName, { spec: string; batch: number; preShape: number[]; warmup: number; describe: string }> = {
  mlp: { spec: 'mlp:256,128', batch: 256, preShape: [784], warmup: 30, describe: 'MLP 784-256-128-10 (ReLU), batch 256' },
  cnn: { spec: 'cnn:32,64', batch: 128, preShape: [1, 28, 28], warmup: 6, describe: 'CNN conv3x3x32-pool-conv3x3x64-pool-dense10 on 28x28x1, batch 128' },
};

export interface SpeedResult {
  backend: string;
  message: string;
  model: ModelName;
  batch: number;
  steps: number;
  examples_per_second: number;
  /** examples per second of this process's CPU time (all threads): load-independent with one thread */
  examples_per_cpu_second: number;
  median_ms_per_step: number;
  /** ms per step in the top kernels, measured in a separate pass (wrapping kernels costs a little) */
  profile?: { ms_per_step: number; in_kernels_ms_per_step: number; top: ReturnType<typeof topKernels> };
  /** how a step runs: tfjs ops (kernels profiled) or the fused native MLP step */
  step: string;
}

/**
 * Train for `seconds` after `warmup` steps: loss KD alpha=1 T=4 (kdcache's default), Adam 1e-3,
 * eight fixed random batches in rotation.
 */
export async function measureTraining(backend: BackendChoice, model: ModelName, seconds: number, withProfile: boolean): Promise<SpeedResult> {
  const m = MODELS[model];
  const info = await initBackend(backend, { needsConv: model === 'cnn' });
  const student = await createStudent(parseStudentSpec(m.spec), { preShape: m.preShape, classes: 10, seed: 1 });
  const ctx: StepContext = { model: student.model, optimizer: createOptimizer('adam', 1e-3), loss: { alpha: 1, temperature: 4, kind: 'kd' as const }, inputShape: student.input.shape, classes: 10 };
  const width = m.preShape.reduce((a, b) => a * b, 1);
  const batches = Array.from({ length: 8 }, (_, j) => {
    const t = new ExampleTable(m.batch, width, 10);
    for (let i = 0; i < t.x.length; i++) t.x[i] = ((i * 2654435761 + j * 97) >>> 24) / 255;
    for (let i = 0; i < t.t.length; i++) t.t[i] = Math.sin(i * 0.37 + j) * 3;
    t.length = m.batch;
    return t;
  });
  const metrics = new MetricsAccumulator();
  for (let i = 0; i < m.warmup; i++) trainStep(ctx, batches[i % 8], metrics);
  const times: number[] = [];
  const cpu0 = process.cpuUsage();
  const start = performance.now();
  let steps = 0;
  while (performance.now() - start < seconds * 1000) {
    const t0 = performance.now();
    trainStep(ctx, batches[steps % 8], metrics);
    times.push(performance.now() - t0);
    steps++;
  }
  const total = (performance.now() - start) / 1000;
  const cpu = process.cpuUsage(cpu0);
  times.sort((a, b) => a - b);
  const result: SpeedResult = {
    backend: info.name, message: info.message, model, batch: m.batch, steps,
    examples_per_second: Math.round((steps * m.batch) / total),
    examples_per_cpu_second: Math.round((steps * m.batch) / ((cpu.user + cpu.system) / 1e6)),
    median_ms_per_step: Math.round(times[times.length >> 1] * 100) / 100,
    step: ctx.fused ? 'fused: the whole step in one native call (kernels/fused-mlp.ts)' : 'tfjs ops',
  };
  if (withProfile) {
    const prof = profileKernels(info.tfBackend);
    const n = Math.max(3, Math.min(40, Math.round(steps / 4)));
    const t0 = performance.now();
    for (let i = 0; i < n; i++) trainStep(ctx, batches[i % 8], metrics);
    const ms = (performance.now() - t0) / n;
    result.profile = { ms_per_step: Math.round(ms * 100) / 100, in_kernels_ms_per_step: Math.round((prof.total() / n) * 100) / 100, top: topKernels(prof, n, Number(process.env.KDCACHE_PROFILE_TOP ?? 10)) };
    prof.restore();
  }
  return result;
}

/** Run one measurement in a fresh node process (backends and heaps of one case would skew the next). */
export function measureInProcess(backend: BackendChoice, model: ModelName, seconds: number, withProfile: boolean, env: Record<string, string> = {}): SpeedResult | { backend: string; error: string } {
  const script = path.join(path.dirname(fileURLToPath(import.meta.url)), 'train-speed.js');
  const r = spawnSync(process.execPath, [script, '--measure', backend, model, String(seconds), withProfile ? 'profile' : ''], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], maxBuffer: 1 << 24, env: { ...process.env, ...env } });
  const line = r.stdout.trim().split('\n').pop() ?? '';
  if (r.status !== 0 || !line.startsWith('{')) {
    const why = `${r.stderr}`.split('\n').find((l) => /Error|error/.test(l)) ?? `exit ${r.status}`;
    return { backend, error: why.trim() };
  }
  return JSON.parse(line) as SpeedResult;
}

/** Which backend `choice` gives in a fresh process (its name), or the error that stops it. */
export function probeBackend(choice: BackendChoice, env: Record<string, string> = {}): { backend: string; message: string } | { error: string } {
  const script = path.join(path.dirname(fileURLToPath(import.meta.url)), 'train-speed.js');
  const r = spawnSync(process.execPath, [script, '--probe', choice], { encoding: 'utf8', env: { ...process.env, ...env } });
  const line = r.stdout.trim().split('\n').pop() ?? '';
  if (r.status !== 0 || !line.startsWith('{')) return { error: (`${r.stderr}`.split('\n').find((l) => /Error/.test(l)) ?? `exit ${r.status}`).trim() };
  return JSON.parse(line) as { backend: string; message: string };
}

/** Load average over the last minute, per core: above ~0.3 before a run, timings are suspect. */
export function loadPerCore(): number {
  return Math.round((os.loadavg()[0] / os.cpus().length) * 100) / 100;
}

if (process.argv[2] === '--probe') {
  const info = await initBackend(process.argv[3] as BackendChoice);
  process.stdout.write(`${JSON.stringify({ backend: info.name, message: info.message })}\n`);
}
if (process.argv[2] === '--measure') {
  const [, , , backend, model, seconds, profile] = process.argv;
  const r = await measureTraining(backend as BackendChoice, model as ModelName, Number(seconds), profile === 'profile');
  process.stdout.write(`${JSON.stringify(r)}\n`);
}
