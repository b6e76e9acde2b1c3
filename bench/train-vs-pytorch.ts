/**
 * kdcache vs PyTorch on the same machine, in one invocation: the same students (MLP 784-256-128-10,
 * batch 256; CNN conv3x3x32-pool-conv3x3x64-pool-dense10, batch 128), the same loss (kdcache's
 * default distillation loss, alpha 1, T 4) and optimizer (Adam 1e-3), examples/s of the training
 * step on in-memory batches. PyTorch is Debian's python3-torch under /usr/bin/python3
 * (tools/train_speed_torch.py), which must run on OpenBLAS (libopenblas0-pthread), not the
 * reference BLAS: the script reports the BLAS it loaded. It runs with glibc told to keep freed
 * memory (TORCH_MALLOC below), which is PyTorch at its best on this machine.
 *
 *   npm run build && node dist/bench/train-vs-pytorch.js [--seconds 10] [--reps 3] [--models mlp,cnn] [--threads N]
 *
 * --threads (default: every core) sets kdcache's threads. PyTorch runs twice per rep, with its own
 * default thread count (Debian's build picks 1 here) and with --threads; the faster of the two is
 * the reference, so the ratio is against the best PyTorch does on this machine. The ratio that
 * counts is wall-clock examples/s on a quiet machine (the load per core is recorded with each run).
 * On a busy machine, --threads 1 also gives examples per CPU-second, which other processes hardly
 * change: a per-core comparison that stays fair under load.
 *
 * Each rep also runs PyTorch as installed (default threads, glibc's default malloc), reported
 * beside the reference: not the target's reference, but what an untuned PyTorch run gets here.
 *
 * Runs alternate (PyTorch, kdcache fastest, kdcache pure wasm, then the next rep in rotated order),
 * each in a fresh process; ratios are per rep, reported as medians. Targets: MLP >= 1.5x with the
 * fastest backend and >= 0.7x with pure wasm; CNN >= 0.8x with the fastest.
 */
import { spawnSync } from 'node:child_process';
import * as os from 'node:os';
import * as path from 'node:path';
import { PYTHON, ROOT, machine, median, saveResult, table } from './common.js';
import { MODELS, type ModelName, type SpeedResult, loadPerCore, measureInProcess } from './train-speed.js';

const arg = (name: string, fallback: string) => (process.argv.includes(`--${name}`) ? process.argv[process.argv.indexOf(`--${name}`) + 1] : fallback);
const seconds = Number(arg('seconds', '10'));
const reps = Number(arg('reps', '3'));
const models = arg('models', 'mlp,cnn').split(',') as ModelName[];
const threads = Number(arg('threads', String(os.cpus().length)));
const TARGETS = { mlp: { fastest: 1.5, wasm: 0.7 }, cnn: { fastest: 0.8, wasm: null } } as const;

interface TorchResult { framework: string; examples_per_second: number; examples_per_cpu_second: number; median_ms_per_step: number; threads: number; blas: string }

/**
 * glibc hands blocks over 128 KB straight back to the kernel (munmap) and gets fresh ones with mmap,
 * so every PyTorch op on a large tensor page-faults its output in. On some VMs that dominates: here
 * it made PyTorch's MLP step 3x slower (8 ms vs 2.7 ms) and its CNN step 3x too. Keeping freed
 * memory in the heap is the standard fix (jemalloc or tcmalloc do it too); the reference gets it.
 */
const TORCH_MALLOC = { MALLOC_MMAP_THRESHOLD_: String(1 << 30), MALLOC_TRIM_THRESHOLD_: String(1 << 30) };

function torchOnce(model: ModelName, torchThreads: number, env: Record<string, string> = TORCH_MALLOC): TorchResult {
  const m = MODELS[model];
  const r = spawnSync(PYTHON, [path.join(ROOT, 'tools/train_speed_torch.py'), '--model', model, '--batch', String(m.batch), '--seconds', String(seconds), '--warmup', String(m.warmup), '--threads', String(torchThreads)], { encoding: 'utf8', env: { ...process.env, ...env } });
  const line = r.stdout.trim().split('\n').pop() ?? '';
  if (r.status !== 0 || !line.startsWith('{')) throw new Error(`PyTorch reference failed (${PYTHON}; needs python3-torch): ${r.stderr.split('\n').filter(Boolean).pop()}`);
  return JSON.parse(line) as TorchResult;
}

/**
 * PyTorch with its default threads and with `threads`: the faster run is the reference. Also, for
 * the record, PyTorch as installed (default threads, glibc's default malloc): what a user who
 * does not tune it gets.
 */
function torch(model: ModelName): TorchResult & { other: TorchResult | null; installed: TorchResult } {
  const byDefault = torchOnce(model, 0);
  const forced = byDefault.threads === threads ? null : torchOnce(model, threads);
  const installed = torchOnce(model, 0, {});
  const [best, other] = forced && forced.examples_per_second > byDefault.examples_per_second ? [forced, byDefault] : [byDefault, forced];
  return { ...best, other, installed };
}

function kdcache(backend: 'auto' | 'wasm', model: ModelName, profile: boolean): SpeedResult {
  const r = measureInProcess(backend, model, seconds, profile, { KDCACHE_THREADS: String(threads) });
  if ('error' in r) throw new Error(`kdcache --backend ${backend} ${model}: ${r.error}`);
  return r;
}

const results: Record<string, unknown> = {};
const summary: (string | number)[][] = [['student', 'PyTorch ex/s', 'kdcache fastest ex/s', 'ratio', 'target', 'kdcache pure wasm ex/s', 'ratio', 'target', 'per CPU-s: fastest, wasm', 'load/core', 'PyTorch as installed', 'pure wasm vs it']];
for (const model of models) {
  const runs: { rep: number; load_before: number; torch: ReturnType<typeof torch>; fastest: SpeedResult; wasm: SpeedResult; ratio_fastest: number; ratio_wasm: number; cpu_ratio_fastest: number; cpu_ratio_wasm: number; ratio_wasm_vs_installed: number }[] = [];
  for (let rep = 0; rep < reps; rep++) {
    const load = loadPerCore();
    const order = [0, 1, 2].map((i) => (i + rep) % 3);
    const got: { torch?: ReturnType<typeof torch>; fastest?: SpeedResult; wasm?: SpeedResult } = {};
    for (const which of order) {
      if (which === 0) got.torch = torch(model);
      else if (which === 1) got.fastest = kdcache('auto', model, false);
      else got.wasm = kdcache('wasm', model, false);
    }
    const run = {
      rep, load_before: load, torch: got.torch!, fastest: got.fastest!, wasm: got.wasm!,
      ratio_fastest: got.fastest!.examples_per_second / got.torch!.examples_per_second, ratio_wasm: got.wasm!.examples_per_second / got.torch!.examples_per_second,
      cpu_ratio_fastest: got.fastest!.examples_per_cpu_second / got.torch!.examples_per_cpu_second, cpu_ratio_wasm: got.wasm!.examples_per_cpu_second / got.torch!.examples_per_cpu_second,
      ratio_wasm_vs_installed: got.wasm!.examples_per_second / got.torch!.installed.examples_per_second,
    };
    runs.push(run);
    process.stderr.write(`${model} rep ${rep + 1}/${reps} (load/core ${load}): PyTorch ${Math.round(run.torch.examples_per_second)} (${run.torch.threads} thread(s); other ${run.torch.other ? Math.round(run.torch.other.examples_per_second) : '-'}; as installed ${Math.round(run.torch.installed.examples_per_second)}), kdcache ${run.fastest.backend} ${run.fastest.examples_per_second} (${run.ratio_fastest.toFixed(2)}x), wasm ${run.wasm.examples_per_second} (${run.ratio_wasm.toFixed(2)}x)\n`);
  }
  // Where the time goes, for the report: one profiled step loop per kdcache backend.
  const profiles = { fastest: kdcache('auto', model, true).profile, wasm: kdcache('wasm', model, true).profile };
  const med = {
    torch: Math.round(median(runs.map((r) => r.torch.examples_per_second))),
    fastest: Math.round(median(runs.map((r) => r.fastest.examples_per_second))),
    wasm: Math.round(median(runs.map((r) => r.wasm.examples_per_second))),
    ratio_fastest: Math.round(median(runs.map((r) => r.ratio_fastest)) * 100) / 100,
    ratio_wasm: Math.round(median(runs.map((r) => r.ratio_wasm)) * 100) / 100,
    cpu_ratio_fastest: Math.round(median(runs.map((r) => r.cpu_ratio_fastest)) * 100) / 100,
    cpu_ratio_wasm: Math.round(median(runs.map((r) => r.cpu_ratio_wasm)) * 100) / 100,
    load_per_core: median(runs.map((r) => r.load_before)),
    torch_installed: Math.round(median(runs.map((r) => r.torch.installed.examples_per_second))),
    ratio_wasm_vs_installed: Math.round(median(runs.map((r) => r.ratio_wasm_vs_installed)) * 100) / 100,
  };
  results[model] = { student: MODELS[model].describe, fastest_backend: runs[0].fastest.message, fastest_step: runs[0].fastest.step, pytorch: { framework: runs[0].torch.framework, threads_of_best: runs.map((r) => r.torch.threads), blas: runs[0].torch.blas, env: TORCH_MALLOC }, targets: TARGETS[model], median: med, runs, profiles };
  const t = TARGETS[model];
  summary.push([model, med.torch, med.fastest, `${med.ratio_fastest}x`, `>= ${t.fastest}x`, med.wasm, `${med.ratio_wasm}x`, t.wasm === null ? '-' : `>= ${t.wasm}x`,
    threads === 1 ? `${med.cpu_ratio_fastest}x, ${med.cpu_ratio_wasm}x` : '-', med.load_per_core, med.torch_installed, `${med.ratio_wasm_vs_installed}x`]);
}

process.stdout.write(`\nkdcache vs PyTorch, same machine (${os.cpus().length} cores, ${os.cpus()[0]?.model}), ${threads} thread(s) each, ${seconds} s per run, ${reps} alternating reps, medians\n`);
process.stdout.write(`${table(summary)}\n`);
for (const model of models) {
  const r = results[model] as { fastest_backend: string; fastest_step: string; pytorch: { blas: string }; profiles: Record<string, SpeedResult['profile']> };
  process.stdout.write(`\n${model}: ${r.fastest_backend}; step: ${r.fastest_step}\n  PyTorch BLAS: ${r.pytorch.blas}\n`);
  for (const [which, p] of Object.entries(r.profiles)) {
    if (!p) continue;
    process.stdout.write(`  profile, kdcache ${which}: ${p.ms_per_step} ms/step, ${p.in_kernels_ms_per_step} in kernels: ${p.top.slice(0, 6).map((k) => `${k.kernel} ${k.ms_per_step}`).join(', ')}\n`);
  }
}
const file = saveResult(threads === os.cpus().length ? 'train-vs-pytorch' : `train-vs-pytorch-${threads}thread`, { machine: machine(), threads, seconds, reps, loss: 'kd, alpha 1, T 4', optimizer: 'adam 1e-3', results });
process.stdout.write(`saved ${file}\n`);
