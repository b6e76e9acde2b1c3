/**
 * The bundled demo: cache the teacher's logits on the demo train and test splits, train one small
 * student twice (alone on labels, and distilled from the cache), evaluate both on the test split.
 */
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { precomputeLogits } from '../precompute/run.js';
import { readManifest } from '../shards/manifest.js';
import { readShardFile } from '../shards/reader.js';
import { evaluateModel } from '../train/evaluate.js';
import { argmax } from '../train/losses.js';
import { trainStudent } from '../train/run.js';
import { formatDuration } from '../util/progress.js';

export interface DemoOptions {
  out: string;
  teacher: string;
  trainImages: string;
  trainLabels: string;
  testImages: string;
  testLabels: string;
  student: string;
  epochs: number;
  alpha: number;
  temperature: number;
  lr: number;
  batchSize: number;
  seed: number;
  backend?: 'auto' | 'tensorflow' | 'wasm' | 'cpu';
  quiet?: boolean;
}

export interface DemoReport {
  teacher_accuracy: number;
  alone: { accuracy: number; agreement: number };
  distilled: { accuracy: number; agreement: number };
  stages: { name: string; seconds: number }[];
  backend: string;
  out: string;
}

export async function runDemo(o: DemoOptions): Promise<DemoReport> {
  const say = (line: string) => { if (!o.quiet) process.stderr.write(`\n== ${line}\n`); };
  const stages: DemoReport['stages'] = [];
  const timed = async <T>(name: string, f: () => Promise<T>): Promise<T> => {
    say(name);
    const t0 = performance.now();
    const r = await f();
    stages.push({ name, seconds: (performance.now() - t0) / 1000 });
    return r;
  };
  await fs.mkdir(o.out, { recursive: true });
  const dirs = {
    trainCache: path.join(o.out, 'cache-train'),
    testCache: path.join(o.out, 'cache-test'),
    alone: path.join(o.out, 'student-alone'),
    distilled: path.join(o.out, 'student-distilled'),
  };
  const pre = { teacher: o.teacher, scale: 1 / 255, device: 'auto', quiet: o.quiet } as const;
  await timed('precompute teacher logits (train split)', () => precomputeLogits({ ...pre, data: o.trainImages, labels: o.trainLabels, out: dirs.trainCache }));
  await timed('precompute teacher logits (test split)', () => precomputeLogits({ ...pre, data: o.testImages, labels: o.testLabels, out: dirs.testCache }));
  const common = {
    logits: dirs.trainCache, data: o.trainImages, labels: o.trainLabels, student: o.student, epochs: o.epochs,
    temperature: o.temperature, lr: o.lr, batchSize: o.batchSize, seed: o.seed, backend: o.backend ?? 'auto', quiet: o.quiet,
  };
  // Fresh students each run: a demo rerun must not resume an old checkpoint.
  await fs.rm(dirs.alone, { recursive: true, force: true });
  await fs.rm(dirs.distilled, { recursive: true, force: true });
  const aloneRun = await timed('train student alone (alpha = 0, labels only)', () => trainStudent({ ...common, alpha: 0, out: dirs.alone }));
  await timed(`train student distilled (alpha = ${o.alpha}, T = ${o.temperature})`, () => trainStudent({ ...common, alpha: o.alpha, out: dirs.distilled }));
  const evaluate = (model: string) => evaluateModel({ model, data: o.testImages, labels: o.testLabels, logits: dirs.testCache, backend: o.backend ?? 'auto', quiet: true });
  const [alone, distilled] = await timed('evaluate both students on the test split', async () => [await evaluate(dirs.alone), await evaluate(dirs.distilled)]);
  return {
    teacher_accuracy: await cachedTeacherAccuracy(dirs.testCache),
    alone: { accuracy: alone.accuracy ?? NaN, agreement: alone.agreement ?? NaN },
    distilled: { accuracy: distilled.accuracy ?? NaN, agreement: distilled.agreement ?? NaN },
    stages,
    backend: aloneRun.backend,
    out: o.out,
  };
}

/** Top-1 accuracy of the cached teacher logits against the cached labels. */
export async function cachedTeacherAccuracy(cacheDir: string): Promise<number> {
  const m = await readManifest(cacheDir);
  let right = 0;
  for (const rec of m.shards) {
    const cols = await readShardFile(cacheDir, rec, m.storage.format, { expectConfigId: m.config_id });
    if (!cols.label) throw new Error(`${cacheDir}: the cache has no labels`);
    for (let i = 0; i < cols.rows; i++) if (argmax(cols.logits, i * cols.logitsWidth, cols.logitsWidth) === cols.label[i]) right++;
  }
  return right / m.rows;
}

export function formatDemoTable(r: DemoReport): string {
  const pct = (x: number) => `${(100 * x).toFixed(2)}%`;
  const rows: [string, string, string][] = [
    ['model', 'test accuracy', 'agreement with teacher'],
    ['teacher (ONNX, cached logits)', pct(r.teacher_accuracy), '-'],
    ['student alone (alpha = 0)', pct(r.alone.accuracy), pct(r.alone.agreement)],
    ['student distilled', pct(r.distilled.accuracy), pct(r.distilled.agreement)],
  ];
  const w = [0, 1, 2].map((c) => Math.max(...rows.map((row) => row[c].length)));
  const line = (row: string[]) => row.map((v, c) => v.padEnd(w[c])).join('   ');
  const stages = r.stages.map((s) => `  ${s.name.padEnd(52)} ${formatDuration(s.seconds)}`);
  const total = r.stages.reduce((n, s) => n + s.seconds, 0);
  return [
    line(rows[0]), w.map((n) => '-'.repeat(n)).join('   '), ...rows.slice(1).map(line), '',
    `stage times (training backend: ${r.backend})`, ...stages, `  ${'total'.padEnd(52)} ${formatDuration(total)}`, '',
    `caches and students are in ${r.out}/`,
  ].join('\n');
}
