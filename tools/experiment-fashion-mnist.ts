/**
 * The Fashion-MNIST quality experiment (issue 5): does a student distilled from the cached teacher
 * logits beat the same student trained on labels alone, by more than the spread over seeds?
 *
 *   npm run experiment:fashion-mnist                 the grid on the full 60k/10k data + PyTorch parity
 *   npm run experiment:fashion-mnist -- --quick      smoke test (1 epoch, 2 seeds, small grid; out/experiment-quick/)
 *   npm run experiment:fashion-mnist -- --probes     the probes behind the conclusion (validation split, no test data)
 *
 * Every finished run is appended to the results JSON at once, so a killed experiment resumes where it
 * stopped (a half-trained tfjs student resumes from its last epoch checkpoint). Large artifacts
 * (caches, exported logits, students) go to out/experiment/, which git ignores; docs/results.md,
 * the JSON and the plot are regenerated from the JSON after every invocation.
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { cachedTeacherAccuracy } from '../src/demo/demo.js';
import { precomputeLogits } from '../src/precompute/run.js';
import { readManifest } from '../src/shards/manifest.js';
import { readShardFile } from '../src/shards/reader.js';
import { evaluateModel } from '../src/train/evaluate.js';
import { trainStudent } from '../src/train/run.js';
import { UserError, runMain } from '../src/util/errors.js';
import { writeFileAtomic } from '../src/util/fsx.js';
import { mean } from './experiment-stats.js';
import { type ProbeDef, PROBES, type Results, type RunRecord, type RunSpec, type TeacherStats, writeReport } from './experiment-report.js';

// Chosen by the probes (validation split, docs/results.md): the smallest student that profits clearly,
// the learning rate at which distillation converges fastest, and the most epochs that fit ~40 min here.
const DEFAULTS = { student: 'mlp:256', lr: 3e-3, epochs: 15, baselineLr: 1e-3 };
const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const PYTHON = '/usr/bin/python3';
const FILES = {
  trainImages: 'train-images-idx3-ubyte.gz',
  trainLabels: 'train-labels-idx1-ubyte.gz',
  testImages: 't10k-images-idx3-ubyte.gz',
  testLabels: 't10k-labels-idx1-ubyte.gz',
};

interface Args {
  dataset: string;
  student: string;
  epochs: number;
  seeds: number[];
  temperatures: number[];
  alphas: number[];
  lr: number;
  batchSize: number;
  /** the student alone is also trained at these learning rates: the baseline at its own best lr */
  baselineLrs: number[];
  parity: { alpha: number; temperature: number } | null;
  paritySeeds: number[];
  threads: number;
  quick: boolean;
  probes: string[] | null;
  nice: number;
  work: string;
  results: string;
  report: string;
  plot: string;
  argv: string[];
}

const HELP = `usage: npm run experiment:fashion-mnist -- [options]

  --student SPEC           student for the grid (default mlp:256)
  --epochs N               epochs per run (default 15)
  --seeds N|a,b,c          number of seeds (0..N-1) or a list (default 3)
  --temperatures a,b,...   distillation temperatures (default 1,2,4,8,20)
  --alphas a,b,...         distillation weights (default 0.5,0.9); alpha 0 (alone) always runs
  --lr X                   Adam learning rate (default 0.003)
  --batch-size N           (default 128)
  --baseline-lr a,b|none   also train the student alone at these learning rates (default 0.001 when --lr differs)
  --parity A,T|none        distilled setting compared with PyTorch, besides alone (default 0.9,4)
  --parity-seeds N|a,b,c   seeds of the parity comparison, both frameworks (default: the grid's seeds)
  --threads N              threads of the training kernels, tfjs (KDCACHE_THREADS) and PyTorch alike (default 1:
                           the machine is shared, and one training at a time on one core leaves the other free)
  --quick                  smoke test: 1 epoch, 2 seeds, T 1,4, alpha 0.9, parity at 0.9,4; writes to out/experiment-quick/
  --probes                 run all probes instead of the grid (validation split of the training data)
  --probe a,b              run only these probes (${PROBES.map((p) => p.name).join(', ')})
  --nice N                 run at this CPU niceness (children too), e.g. 10 to yield to other jobs (default 0)
  --dataset DIR            Fashion-MNIST gzip IDX files (default /usr/share/datasets/fashion-mnist)
  --results FILE           raw results JSON (default docs/results/fashion-mnist.json)
  --report FILE            markdown report (default docs/results.md)
`;

function parseList(flag: string, v: string): number[] {
  const xs = v.split(',').map((s) => s.trim()).filter((s) => s !== '').map(Number);
  if (xs.length === 0 || xs.some((x) => !Number.isFinite(x))) throw new UserError(`--${flag} ${v}: expected comma-separated numbers`);
  return xs;
}

function parseSeeds(flag: string, v: string): number[] {
  const seeds = /^\d+$/.test(v) ? [...Array(Number(v)).keys()] : parseList(flag, v);
  if (seeds.length < 2) throw new UserError(`--${flag} ${v}: at least 2 seeds are needed for a standard deviation`);
  if (seeds.some((s) => !Number.isInteger(s) || s < 0)) throw new UserError(`--${flag} ${v}: seeds are non-negative integers`);
  return [...new Set(seeds)];
}

function parsePositive(flag: string, v: string, integer: boolean): number {
  const x = Number(v);
  if (!(x > 0) || !Number.isFinite(x) || (integer && !Number.isInteger(x))) throw new UserError(`--${flag} ${v}: expected a positive ${integer ? 'integer' : 'number'}`);
  return x;
}

function parseCli(argv: string[]): Args {
  const { values: v } = parseArgs({
    args: argv,
    strict: true,
    options: {
      student: { type: 'string' }, epochs: { type: 'string' }, seeds: { type: 'string' }, temperatures: { type: 'string' },
      alphas: { type: 'string' }, lr: { type: 'string' }, 'batch-size': { type: 'string' }, parity: { type: 'string' },
      'baseline-lr': { type: 'string' }, 'parity-seeds': { type: 'string' },
      threads: { type: 'string' }, quick: { type: 'boolean' }, probes: { type: 'boolean' }, probe: { type: 'string' },
      nice: { type: 'string' }, dataset: { type: 'string' }, results: { type: 'string' }, report: { type: 'string' }, help: { type: 'boolean' },
    },
  });
  if (v.help) {
    process.stdout.write(HELP);
    process.exit(0);
  }
  const quick = v.quick ?? false;
  const seeds = parseSeeds('seeds', v.seeds ?? (quick ? '2' : '3'));
  const paritySeeds = v['parity-seeds'] === undefined ? seeds : parseSeeds('parity-seeds', v['parity-seeds']);
  const alphas = parseList('alphas', v.alphas ?? (quick ? '0.9' : '0.5,0.9'));
  if (alphas.some((a) => !(a > 0 && a <= 1))) throw new UserError(`--alphas ${v.alphas}: each alpha must be in (0, 1] (alpha 0, the student alone, always runs)`);
  const temperatures = parseList('temperatures', v.temperatures ?? (quick ? '1,4' : '1,2,4,8,20'));
  if (temperatures.some((t) => !(t > 0))) throw new UserError(`--temperatures ${v.temperatures}: temperatures must be positive`);
  let parity: Args['parity'] = { alpha: 0.9, temperature: 4 };
  if (v.parity === 'none') parity = null;
  else if (v.parity !== undefined) {
    const [alpha, temperature] = parseList('parity', v.parity);
    if (!(alpha > 0 && alpha <= 1) || !(temperature > 0)) throw new UserError(`--parity ${v.parity}: expected ALPHA,T with alpha in (0, 1] and T > 0, or none`);
    parity = { alpha, temperature };
  }
  if (quick && v.parity === undefined) parity = { alpha: alphas[alphas.length - 1], temperature: temperatures[temperatures.length - 1] };
  const probes = v.probe !== undefined ? v.probe.split(',').map((s) => s.trim()) : v.probes ? PROBES.map((p) => p.name) : null;
  for (const name of probes ?? []) {
    if (!PROBES.some((p) => p.name === name)) throw new UserError(`--probe ${v.probe}: unknown probe ${JSON.stringify(name)}; known: ${PROBES.map((p) => p.name).join(', ')}`);
  }
  const lr = v.lr ? parsePositive('lr', v.lr, false) : DEFAULTS.lr;
  const baselineLrs = v['baseline-lr'] === 'none' ? [] : v['baseline-lr'] !== undefined ? parseList('baseline-lr', v['baseline-lr']) : [DEFAULTS.baselineLr];
  if (baselineLrs.some((x) => !(x > 0))) throw new UserError(`--baseline-lr ${v['baseline-lr']}: learning rates must be positive`);
  const quickDir = path.join(ROOT, 'out/experiment-quick');
  const nice = v.nice === undefined ? 0 : Number(v.nice);
  if (!Number.isInteger(nice) || nice < 0 || nice > 19) throw new UserError(`--nice ${v.nice}: expected an integer 0..19`);
  return {
    dataset: path.resolve(v.dataset ?? '/usr/share/datasets/fashion-mnist'),
    student: v.student ?? DEFAULTS.student,
    epochs: v.epochs ? parsePositive('epochs', v.epochs, true) : quick ? 1 : DEFAULTS.epochs,
    seeds,
    temperatures,
    alphas,
    lr,
    baselineLrs: baselineLrs.filter((x) => x !== lr),
    batchSize: v['batch-size'] ? parsePositive('batch-size', v['batch-size'], true) : 128,
    parity,
    paritySeeds,
    threads: v.threads ? parsePositive('threads', v.threads, true) : 1,
    quick,
    probes,
    nice,
    work: path.join(ROOT, 'out/experiment'),
    results: path.resolve(v.results ?? (quick ? path.join(quickDir, 'fashion-mnist.json') : path.join(ROOT, 'docs/results/fashion-mnist.json'))),
    report: path.resolve(v.report ?? (quick ? path.join(quickDir, 'results.md') : path.join(ROOT, 'docs/results.md'))),
    plot: quick ? path.join(quickDir, 'accuracy-vs-temperature.png') : path.join(ROOT, 'docs/results/accuracy-vs-temperature.png'),
    argv,
  };
}

const rel = (p: string) => path.relative(ROOT, p) || '.';
const say = (line: string) => process.stderr.write(`${line}\n`);

function reproduceCommand(argv: string[]): string {
  const quoted = argv.map((a) => (/^[\w@%+=:,./-]+$/.test(a) ? a : `'${a.replace(/'/g, "'\\''")}'`));
  return `npm run experiment:fashion-mnist${quoted.length ? ` -- ${quoted.join(' ')}` : ''}`;
}

export function runKey(s: RunSpec): string {
  return [s.framework, s.student, `e${s.epochs}`, `lr${s.lr}`, `bs${s.batch_size}`, `a${s.alpha}`, `T${s.alpha > 0 ? s.temperature : '-'}`, `s${s.seed}`, `vf${s.val_fraction}`].join('_').replace(/[^\w.-]/g, '');
}

// ---------------------------------------------------------------------------------------------

class Store {
  data: Results;

  constructor(readonly file: string, fresh: Results) {
    this.data = fs.existsSync(file) ? { ...fresh, ...(JSON.parse(fs.readFileSync(file, 'utf8')) as Results) } : fresh;
    this.data.runs ??= [];
  }

  find(spec: RunSpec): RunRecord | undefined {
    const key = runKey(spec);
    return this.data.runs.find((r) => r.key === key);
  }

  async add(rec: RunRecord): Promise<void> {
    this.data.runs = this.data.runs.filter((r) => r.key !== rec.key);
    this.data.runs.push(rec);
    await this.save();
  }

  async save(): Promise<void> {
    fs.mkdirSync(path.dirname(this.file), { recursive: true });
    // Another invocation (probes and grid at once) may have added runs since we read the file: keep them.
    if (fs.existsSync(this.file)) {
      const mine = new Set(this.data.runs.map((r) => r.key));
      const theirs = (JSON.parse(fs.readFileSync(this.file, 'utf8')) as Results).runs ?? [];
      this.data.runs.push(...theirs.filter((r) => !mine.has(r.key)));
    }
    await writeFileAtomic(this.file, `${JSON.stringify(this.data, null, 1)}\n`);
  }
}

function checkDataset(dir: string): void {
  const missing = Object.values(FILES).filter((f) => !fs.existsSync(path.join(dir, f)));
  if (missing.length > 0) {
    throw new UserError(`${dir}: Fashion-MNIST not found (missing ${missing.join(', ')}); install it with: apt-get install dataset-fashion-mnist (or pass --dataset DIR)`);
  }
}

interface Caches { train: string; test: string }

async function ensureCaches(a: Args): Promise<Caches & { seconds: number }> {
  const started = performance.now();
  const caches = { train: path.join(a.work, 'cache-train'), test: path.join(a.work, 'cache-test') };
  const teacher = path.join(ROOT, 'data/teacher.onnx');
  for (const [split, images, labels, out] of [
    ['train', FILES.trainImages, FILES.trainLabels, caches.train],
    ['test', FILES.testImages, FILES.testLabels, caches.test],
  ] as const) {
    // A complete cache is a no-op, a partial one resumes: rerunning is always safe.
    const r = await precomputeLogits({
      teacher, data: path.join(a.dataset, images), labels: path.join(a.dataset, labels), out, scale: 1 / 255, threads: a.threads, quiet: true,
    });
    say(r.rowsComputed > 0
      ? `precomputed ${split} logits: ${r.rowsComputed} rows in ${r.seconds.toFixed(1)} s -> ${rel(out)}`
      : `${split} cache complete: ${rel(out)}`);
  }
  return { ...caches, seconds: (performance.now() - started) / 1000 };
}

/** Cached logits in dataset row order, [rows, classes] float32. */
async function cachedLogits(cacheDir: string): Promise<{ logits: Float32Array; labels: Int32Array; rows: number; width: number }> {
  const m = await readManifest(cacheDir);
  const k = m.output.width;
  const logits = new Float32Array(m.rows * k);
  const labels = new Int32Array(m.rows);
  for (const rec of m.shards) {
    const cols = await readShardFile(cacheDir, rec, m.storage.format, { expectConfigId: m.config_id });
    if (cols.logitsDtype !== 'float32' || !cols.label) throw new Error(`${cacheDir}: expected float32 logits and labels`);
    for (let i = 0; i < cols.rows; i++) {
      const row = Number(cols.row[i]);
      logits.set(cols.logits.subarray(i * k, (i + 1) * k), row * k);
      labels[row] = cols.label[i];
    }
  }
  return { logits, labels, rows: m.rows, width: k };
}

function writeNpy(file: string, data: Float32Array, shape: number[]): void {
  let header = `{'descr': '<f4', 'fortran_order': False, 'shape': (${shape.join(', ')}${shape.length === 1 ? ',' : ''}), }`;
  // NPY 1.0: magic(6) + version(2) + header length(2) + header, padded with spaces to a multiple of 64, ending in \n.
  header += ' '.repeat((64 - ((10 + header.length + 1) % 64)) % 64) + '\n';
  const prefix = Buffer.alloc(10);
  prefix.write('\x93NUMPY', 0, 'latin1');
  prefix[6] = 1;
  prefix[7] = 0;
  prefix.writeUInt16LE(header.length, 8);
  const tmp = `${file}.tmp`;
  fs.writeFileSync(tmp, Buffer.concat([prefix, Buffer.from(header, 'latin1'), Buffer.from(data.buffer, data.byteOffset, data.byteLength)]));
  fs.renameSync(tmp, file);
}

/** How soft the teacher's targets are at each temperature, on the train cache (explains T). */
function teacherStats(train: Awaited<ReturnType<typeof cachedLogits>>, temperatures: number[]): TeacherStats {
  const { logits, labels, rows, width: k } = train;
  let right = 0;
  const perT = temperatures.map((T) => {
    let top = 0;
    let entropy = 0;
    let second = 0;
    for (let r = 0; r < rows; r++) {
      const z = logits.subarray(r * k, (r + 1) * k);
      let max = -Infinity;
      for (const v of z) max = Math.max(max, v / T);
      const p = Array.from(z, (v) => Math.exp(v / T - max));
      const s = p.reduce((a, b) => a + b, 0);
      const sorted = p.map((x) => x / s).sort((a, b) => b - a);
      top += sorted[0];
      second += sorted[1];
      entropy -= sorted.reduce((a, q) => a + (q > 0 ? q * Math.log(q) : 0), 0);
    }
    return { temperature: T, mean_top_probability: top / rows, mean_second_probability: second / rows, mean_entropy_nats: entropy / rows };
  });
  for (let r = 0; r < rows; r++) {
    let best = 0;
    for (let c = 1; c < k; c++) if (logits[r * k + c] > logits[r * k + best]) best = c;
    if (best === labels[r]) right++;
  }
  return { train_accuracy: right / rows, soft_targets: perT };
}

// ---------------------------------------------------------------------------------------------

function runDir(a: Args, s: RunSpec): string {
  return path.join(a.quick ? path.join(ROOT, 'out/experiment-quick/runs') : path.join(a.work, 'runs'), runKey(s));
}

function tfjsCommand(a: Args, s: RunSpec, caches: Caches, dir: string): string {
  const train = [
    `KDCACHE_THREADS=${a.threads} npx train-student`, `--logits ${rel(caches.train)}`, `--data ${path.join(a.dataset, FILES.trainImages)}`, `--labels ${path.join(a.dataset, FILES.trainLabels)}`,
    `--student ${s.student}`, `--alpha ${s.alpha}`, ...(s.alpha > 0 ? [`--temperature ${s.temperature}`] : []), `--epochs ${s.epochs}`,
    `--batch-size ${s.batch_size}`, `--lr ${s.lr}`, `--seed ${s.seed}`, `--shuffle-buffer ${s.shuffle_buffer}`,
    ...(s.val_fraction > 0 ? [`--val-fraction ${s.val_fraction}`] : []), `--out ${rel(dir)}`,
  ].join(' ');
  if (s.val_fraction > 0) return train;
  const evaluate = `npx kdcache evaluate --model ${rel(dir)} --data ${path.join(a.dataset, FILES.testImages)} --labels ${path.join(a.dataset, FILES.testLabels)} --logits ${rel(caches.test)}`;
  return `${train} && ${evaluate}`;
}

async function runTfjs(a: Args, s: RunSpec, caches: Caches): Promise<RunRecord> {
  const dir = runDir(a, s);
  const started = performance.now();
  let backendLine = '';
  const summary = await trainStudent({
    logits: caches.train, data: path.join(a.dataset, FILES.trainImages), labels: path.join(a.dataset, FILES.trainLabels),
    student: s.student, alpha: s.alpha, temperature: s.temperature ?? 1, epochs: s.epochs, batchSize: s.batch_size,
    lr: s.lr, seed: s.seed, shuffleBuffer: s.shuffle_buffer, valFraction: s.val_fraction, out: dir,
    // resume: a run killed mid-way continues from its last epoch checkpoint, exactly as if uninterrupted.
    resume: true, skipChecksums: true, quiet: true,
    log: (line) => { if (line.startsWith('backend:')) backendLine = line.slice('backend: '.length); },
  });
  const curve = fs.readFileSync(path.join(dir, 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { epoch: number; val_accuracy: number | null; val_agreement: number | null; train_accuracy: number | null });
  let accuracy: number | null = null;
  let agreement: number | null = null;
  if (s.val_fraction === 0) {
    const ev = await evaluateModel({
      model: dir, data: path.join(a.dataset, FILES.testImages), labels: path.join(a.dataset, FILES.testLabels), logits: caches.test, backend: 'auto', quiet: true,
    });
    accuracy = ev.accuracy;
    agreement = ev.agreement;
  }
  return {
    key: runKey(s), ...s, accuracy, agreement,
    val_accuracy: s.val_fraction > 0 ? curve[curve.length - 1].val_accuracy : null,
    val_agreement: s.val_fraction > 0 ? curve[curve.length - 1].val_agreement : null,
    curve: curve.map((c) => ({ epoch: c.epoch, train_accuracy: c.train_accuracy, val_accuracy: c.val_accuracy, val_agreement: c.val_agreement })),
    train_seconds: summary.train_seconds, seconds: (performance.now() - started) / 1000, examples_per_second: summary.examples_per_second,
    backend: backendLine || summary.backend, parameters: summary.student.parameters,
    command: tfjsCommand(a, s, caches, dir), finished: new Date().toISOString(),
  };
}

function torchCommand(a: Args, s: RunSpec, npy: { train: string; test: string }): string[] {
  return [
    path.join(ROOT, 'tools/torch_student.py'), '--teacher-logits', npy.train, '--test-teacher-logits', npy.test,
    '--train-images', path.join(a.dataset, FILES.trainImages), '--train-labels', path.join(a.dataset, FILES.trainLabels),
    '--test-images', path.join(a.dataset, FILES.testImages), '--test-labels', path.join(a.dataset, FILES.testLabels),
    '--student', s.student, '--alpha', String(s.alpha), '--temperature', String(s.alpha > 0 ? s.temperature : 1), '--epochs', String(s.epochs),
    '--batch-size', String(s.batch_size), '--lr', String(s.lr), '--seeds', String(s.seed), '--threads', String(a.threads),
  ];
}

function runTorch(a: Args, s: RunSpec, npy: { train: string; test: string }): RunRecord {
  const args = torchCommand(a, s, npy);
  const started = performance.now();
  const r = spawnSync(PYTHON, args, { cwd: ROOT, encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'], maxBuffer: 1 << 24 });
  if (r.status !== 0) throw new UserError(`${PYTHON} tools/torch_student.py failed (exit ${r.status ?? r.signal}); run it by hand: ${PYTHON} ${args.map(rel).join(' ')}`);
  const out = JSON.parse(r.stdout.trim().split('\n').pop()!) as { accuracy: number; agreement: number; train_seconds: number; examples_per_second: number; torch: string; threads: number };
  const shown = args.map((x) => (path.isAbsolute(x) && x.startsWith(ROOT) ? rel(x) : x));
  return {
    key: runKey(s), ...s, accuracy: out.accuracy, agreement: out.agreement, val_accuracy: null, val_agreement: null, curve: [],
    train_seconds: out.train_seconds, seconds: (performance.now() - started) / 1000, examples_per_second: out.examples_per_second,
    backend: `pytorch ${out.torch} (cpu, ${out.threads} thread${out.threads === 1 ? '' : 's'})`, parameters: null,
    command: `${PYTHON} ${shown.join(' ')}`, finished: new Date().toISOString(),
  };
}

function torchAvailable(): string | null {
  if (!fs.existsSync(PYTHON)) return `${PYTHON} not found`;
  const r = spawnSync(PYTHON, ['-c', 'import torch, numpy'], { encoding: 'utf8' });
  return r.status === 0 ? null : `${PYTHON} cannot import torch and numpy (${(r.stderr || '').trim().split('\n').pop()})`;
}

// ---------------------------------------------------------------------------------------------

function gridSpecs(a: Args): RunSpec[] {
  const base = { framework: 'tfjs' as const, student: a.student, epochs: a.epochs, lr: a.lr, batch_size: a.batchSize, shuffle_buffer: 60000, val_fraction: 0 };
  const specs: RunSpec[] = [];
  // Seed-major order: a partial (killed) experiment already has every setting at the first seeds.
  for (const seed of a.seeds) {
    specs.push({ ...base, alpha: 0, temperature: null, seed });
    for (const lr of a.baselineLrs) specs.push({ ...base, lr, alpha: 0, temperature: null, seed });
    for (const temperature of a.temperatures) for (const alpha of a.alphas) specs.push({ ...base, alpha, temperature, seed });
  }
  return specs;
}

/** PyTorch runs for the parity settings, and tfjs runs for parity seeds the grid does not have. */
function paritySpecs(a: Args): RunSpec[] {
  if (!a.parity) return [];
  const base = { student: a.student, epochs: a.epochs, lr: a.lr, batch_size: a.batchSize, shuffle_buffer: 60000, val_fraction: 0 };
  const settings = [{ alpha: 0, temperature: null }, { alpha: a.parity.alpha, temperature: a.parity.temperature }];
  const extraTfjs = a.paritySeeds.filter((seed) => !a.seeds.includes(seed))
    .flatMap((seed) => settings.map((st) => ({ ...base, ...st, framework: 'tfjs' as const, seed })));
  const torch = a.paritySeeds.flatMap((seed) => settings.map((st) => ({ ...base, ...st, framework: 'pytorch' as const, seed })));
  return [...extraTfjs, ...torch];
}

export function probeSpecs(p: ProbeDef): RunSpec[] {
  const specs: RunSpec[] = [];
  for (const seed of p.seeds) {
    for (const student of p.students) {
      for (const lr of p.lrs) {
        for (const st of p.settings) {
          specs.push({ framework: 'tfjs', student, epochs: p.epochs, lr, batch_size: p.batchSize, shuffle_buffer: 60000, val_fraction: p.valFraction, alpha: st.alpha, temperature: st.alpha > 0 ? st.temperature : null, seed });
        }
      }
    }
  }
  return specs;
}

function describe(s: RunSpec): string {
  const loss = s.alpha === 0 ? 'alone' : `alpha ${s.alpha} T ${s.temperature}`;
  return `${s.framework} ${s.student} ${loss} lr ${s.lr} e${s.epochs} seed ${s.seed}${s.val_fraction > 0 ? ` (val split ${s.val_fraction})` : ''}`;
}

async function main(): Promise<void> {
  const a = parseCli(process.argv.slice(2));
  const command = reproduceCommand(a.argv);
  const invocationStart = performance.now();
  checkDataset(a.dataset);
  if (a.nice > 0) {
    // Children (the PyTorch runs, the plot) inherit it: the experiment yields to interactive work.
    try { os.setPriority(0, Math.max(os.getPriority(0), a.nice)); } catch { /* not permitted: run at normal priority */ }
  }
  // Read by the native training kernels when they load (first trainStudent call).
  process.env.KDCACHE_THREADS = String(a.threads);
  say(`experiment: ${command}`);
  say(`results: ${rel(a.results)}  report: ${rel(a.report)}`);

  const store = new Store(a.results, { version: 1, runs: [], invocations: [] } as unknown as Results);
  const caches = await ensureCaches(a);
  const trainLogits = await cachedLogits(caches.train);
  const testLogits = await cachedLogits(caches.test);
  store.data.teacher = {
    file: 'data/teacher.onnx',
    description: JSON.parse(fs.readFileSync(path.join(ROOT, 'data/teacher.json'), 'utf8')).architecture,
    parameters: JSON.parse(fs.readFileSync(path.join(ROOT, 'data/teacher.json'), 'utf8')).parameters,
    test_accuracy: await cachedTeacherAccuracy(caches.test),
    ...teacherStats(trainLogits, [1, 2, 4, 8, 20]),
  };
  store.data.dataset = { dir: a.dataset, train_rows: trainLogits.rows, test_rows: testLogits.rows, preprocessing: 'pixel / 255, float32' };
  store.data.environment = {
    node: process.version, tfjs: readVersion('@tensorflow/tfjs'), tfjs_backend_wasm: readVersion('@tensorflow/tfjs-backend-wasm'),
    cpu: os.cpus()[0]?.model ?? 'unknown', cores: os.cpus().length, platform: `${os.platform()}-${os.arch()}`, niceness: a.nice, threads: a.threads,
  };

  let specs: RunSpec[];
  let npy: { train: string; test: string } | null = null;
  if (a.probes) {
    specs = PROBES.filter((p) => a.probes!.includes(p.name)).flatMap(probeSpecs);
  } else {
    specs = gridSpecs(a);
    store.data.grid = {
      student: a.student, epochs: a.epochs, lr: a.lr, batch_size: a.batchSize, seeds: a.seeds, temperatures: a.temperatures, alphas: a.alphas,
      baseline_lrs: a.baselineLrs, parity: a.parity, parity_seeds: a.paritySeeds, shuffle_buffer: 60000, command, quick: a.quick,
    };
    const parity = paritySpecs(a);
    if (parity.length > 0) {
      const why = torchAvailable();
      if (why) say(`skipping the PyTorch parity runs: ${why} (Debian: apt-get install python3-torch)`);
      else {
        npy = { train: path.join(a.work, 'teacher-train-logits.npy'), test: path.join(a.work, 'teacher-test-logits.npy') };
        // The PyTorch twin reads exactly the logits the tfjs students were distilled from.
        writeNpy(npy.train, trainLogits.logits, [trainLogits.rows, trainLogits.width]);
        writeNpy(npy.test, testLogits.logits, [testLogits.rows, testLogits.width]);
        specs = [...specs, ...parity];
      }
    }
  }
  await store.save();

  // Probes share runs (the lr probe's middle lr is a capacity-probe run): each key runs once.
  specs = [...new Map(specs.map((s) => [runKey(s), s])).values()];
  const todo = specs.filter((s) => !store.find(s));
  say(`${specs.length} runs, ${specs.length - todo.length} already done, ${todo.length} to go`);
  const times: number[] = [];
  for (const [i, s] of todo.entries()) {
    const rec = s.framework === 'tfjs' ? await runTfjs(a, s, caches) : runTorch(a, s, npy!);
    await store.add(rec);
    times.push(rec.seconds);
    const left = (todo.length - i - 1) * mean(times);
    const metric = rec.accuracy !== null ? `test acc ${pct(rec.accuracy)} agree ${pct(rec.agreement)}` : `val acc ${pct(rec.val_accuracy)} agree ${pct(rec.val_agreement)}`;
    say(`[${i + 1}/${todo.length}] ${describe(s)}: ${metric} (${rec.seconds.toFixed(0)} s, ${Math.round(rec.examples_per_second)} ex/s; ~${Math.ceil(left / 60)} min left)`);
  }

  const seconds = (performance.now() - invocationStart) / 1000;
  // A rerun with nothing left to do only rewrites the report: it is not an invocation worth listing.
  if (todo.length > 0) store.data.invocations = [...(store.data.invocations ?? []), {
    command, started: new Date(Date.now() - seconds * 1000).toISOString(), seconds, runs: todo.length, precompute_seconds: caches.seconds,
  }];
  await store.save();

  const plotted = a.probes ? true : plot(a);
  await writeReport(store.data, { report: a.report, results: a.results, plot: a.plot, plotted, root: ROOT });
  say(`wrote ${rel(a.results)} and ${rel(a.report)} (${(seconds / 60).toFixed(1)} min)`);
  say(`reproduce: ${command}`);
}

function plot(a: Args): boolean {
  const args = [path.join(ROOT, 'tools/plot_results.py'), '--results', a.results, '--out', a.plot];
  const r = spawnSync(PYTHON, args, { cwd: ROOT, encoding: 'utf8', stdio: ['ignore', 'inherit', 'pipe'] });
  if (r.status !== 0) {
    say(`no plot: ${(r.stderr || r.error?.message || '').trim().split('\n').pop()} (needs ${PYTHON} with matplotlib: apt-get install python3-matplotlib)`);
    return false;
  }
  return true;
}

function readVersion(pkg: string): string {
  try {
    return JSON.parse(fs.readFileSync(path.join(ROOT, 'node_modules', pkg, 'package.json'), 'utf8')).version;
  } catch {
    return 'not installed';
  }
}

const pct = (x: number | null | undefined) => (x === null || x === undefined ? '-' : `${(100 * x).toFixed(2)}%`);

await runMain(main);
