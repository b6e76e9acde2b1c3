/**
 * The reliability suite as a benchmark: runs test/reliability-*.test.ts and test/precompute-errors.test.ts
 * with KDCACHE_SOAK=1 (more kill points, fuzz iterations, disk sizes and concurrency rounds), collects
 * the figures each test records, and writes bench/results/reliability.json (or reliability-ci.json
 * with --ci, the CI sizes). --markdown also prints the tables of docs/reliability.md.
 *
 *   node dist/bench/reliability.js [--ci] [--seed N] [--markdown]
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { ROOT, machine, saveResult } from './common.js';

const argv = process.argv.slice(2);
const ci = argv.includes('--ci');
const markdown = argv.includes('--markdown');
const seedAt = argv.indexOf('--seed');
const seed = seedAt >= 0 ? argv[seedAt + 1] : undefined;

const FILES = ['reliability-kill', 'reliability-corrupt', 'reliability-fuzz', 'reliability-fs', 'reliability-catalogue', 'precompute-errors'];

interface Rec { kind: string; [k: string]: any }

function runSuite(): { records: Rec[]; tests: { file: string; pass: number; fail: number; seconds: number }[] } {
  const out = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'kdcache-reliability-')), 'figures.jsonl');
  const tests = [];
  for (const f of FILES) {
    const t0 = performance.now();
    const r = spawnSync(process.execPath, ['--test', '--test-concurrency=1', path.join(ROOT, 'dist/test', `${f}.test.js`)], {
      encoding: 'utf8', maxBuffer: 256 << 20,
      env: { ...process.env, KDCACHE_RELIABILITY_OUT: out, ...(ci ? {} : { KDCACHE_SOAK: '1' }), ...(seed ? { KDCACHE_FUZZ_SEED: seed } : {}) },
    });
    const count = (what: string) => Number(new RegExp(`^# ${what} (\\d+)`, 'm').exec(r.stdout)?.[1] ?? NaN);
    const result = { file: `test/${f}.test.ts`, pass: count('pass'), fail: count('fail'), seconds: Math.round((performance.now() - t0) / 100) / 10 };
    tests.push(result);
    process.stderr.write(`${result.file}: ${result.pass} passed, ${result.fail} failed, ${result.seconds} s\n`);
    if (result.fail !== 0 || r.status !== 0) process.stderr.write(r.stdout.split('\n').filter((l) => /^\s*(not ok|error:)/.test(l)).join('\n') + '\n');
  }
  const records = fs.existsSync(out) ? fs.readFileSync(out, 'utf8').trim().split('\n').filter(Boolean).map((l) => JSON.parse(l) as Rec) : [];
  return { records, tests };
}

function summarize(records: Rec[]) {
  const of = (kind: string) => records.filter((r) => r.kind === kind);
  const kp = of('kill-precompute');
  const kt = of('kill-train');
  const sum = (rs: Rec[], key: string) => rs.reduce((n, r) => n + (r[key] as number), 0);
  const byKind = (trials: Rec[]) => {
    const m: Record<string, { tried: number; survived: number }> = {};
    for (const t of trials.filter((x) => x.landed)) {
      const k = t.kind.replace(/ of epoch \d+| \d+/g, '');
      m[k] ??= { tried: 0, survived: 0 };
      m[k].tried++;
      if (t.survived) m[k].survived++;
    }
    return m;
  };
  const corruptions = of('corruptions');
  const fuzz = of('fuzz');
  // Each catalogue line once (some cases are asserted in more than one place).
  const seen = new Set<string>();
  const catalogue = of('catalogue').filter((c) => {
    const key = c.label ?? c.input;
    if (seen.has(key)) return false;
    seen.add(key);
    return true;
  }).map((c) => ({ input: c.label ?? c.input, command: c.input, error: c.error }));
  return {
    kill_points: {
      precompute: { tried: sum(kp, 'tried'), survived: sum(kp, 'survived'), by_kind: byKind(kp.flatMap((r) => r.trials)) },
      train: { tried: sum(kt, 'tried'), survived: sum(kt, 'survived'), by_kind: byKind(kt.flatMap((r) => r.trials)) },
    },
    corruptions: { tried: sum(corruptions, 'tried'), detected: sum(corruptions, 'detected'), cases: corruptions.flatMap((r) => r.cases) },
    fuzz: {
      iterations: sum(fuzz, 'runs'),
      failures: sum(fuzz, 'failures'),
      targets: fuzz.map((f) => ({ target: f.target, what: f.what, seed: f.seed, runs: f.runs, refused_calls: f.refused, accepted_calls: f.accepted, peak_rss_mib: f.peakRssMiB, seconds: Math.round(f.seconds * 10) / 10 })),
    },
    disk_full: of('disk-full').concat(of('disk-full-train')),
    concurrency: of('concurrency'),
    nonfinite: of('nonfinite'),
    catalogue: { count: catalogue.length, cases: catalogue },
  };
}

function printMarkdown(s: ReturnType<typeof summarize>): void {
  const esc = (t: string) => t.replace(/\|/g, '\\|').replace(/`/g, "'");
  const lines = ['| # | bad input | error line |', '|---|---|---|'];
  s.catalogue.cases.forEach((c, i) => lines.push(`| ${i + 1} | ${esc(c.input)} | \`${esc(c.error)}\` |`));
  lines.push('', '| corruption | detected | when | error line |', '|---|---|---|---|');
  for (const c of s.corruptions.cases) lines.push(`| ${esc(c.name)} | ${c.detected ? 'yes' : '**no**'} | ${c.when ?? ''} | \`${esc(c.error ?? c.why ?? '')}\` |`);
  lines.push('', '| fuzz target | iterations | refused calls | accepted calls | peak RSS MiB |', '|---|---|---|---|---|');
  for (const f of s.fuzz.targets) lines.push(`| ${f.target} | ${f.runs} | ${f.refused_calls} | ${f.accepted_calls} | ${f.peak_rss_mib} |`);
  process.stdout.write(`${lines.join('\n')}\n`);
}

const t0 = performance.now();
const { records, tests } = runSuite();
const summary = summarize(records);
const result = {
  bench: 'reliability',
  mode: ci ? 'ci' : 'soak',
  date: new Date().toISOString(),
  machine: { ...machine(), load_average: os.loadavg().map((x) => Math.round(x * 10) / 10) },
  seconds: Math.round((performance.now() - t0) / 1000),
  tests,
  figures: {
    kill_points_survived: `${summary.kill_points.precompute.survived + summary.kill_points.train.survived}/${summary.kill_points.precompute.tried + summary.kill_points.train.tried}`,
    corruptions_detected: `${summary.corruptions.detected}/${summary.corruptions.tried}`,
    fuzz_iterations_without_failure: summary.fuzz.failures === 0 ? summary.fuzz.iterations : 0,
    bad_inputs_in_catalogue: summary.catalogue.count,
  },
  ...summary,
};
const file = saveResult(ci ? 'reliability-ci' : 'reliability', result);
process.stderr.write(`${JSON.stringify(result.figures)}\nwrote ${file}\n`);
if (markdown) printMarkdown(summary);
if (tests.some((t) => t.fail !== 0 || Number.isNaN(t.pass))) process.exitCode = 1;
