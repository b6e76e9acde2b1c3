import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
export const MODELS = path.join(ROOT, 'bench/models');
export const RESULTS = path.join(ROOT, 'bench/results');

export function machine() {
  return { cpus: os.cpus().length, cpu_model: os.cpus()[0]?.model ?? 'unknown', mem_gib: Math.round(os.totalmem() / 2 ** 30), node: process.version, platform: `${os.platform()}-${os.arch()}` };
}

/** Benchmark teachers are generated (deterministic random weights), not committed: they are large. */
export function ensureBenchModels(): void {
  if (fs.existsSync(path.join(MODELS, 'mlp_784_4096x3_10.onnx'))) return;
  process.stderr.write(`generating benchmark models into ${MODELS} (needs python3-onnx: apt-get install python3-onnx)\n`);
  runPythonTool('make_bench_models.py', [MODELS]);
}

/** Debian's python3, where python3-onnx and python3-torch import (the python3 on PATH may be another build). */
export const PYTHON = fs.existsSync('/usr/bin/python3') ? '/usr/bin/python3' : 'python3';

/** Run tools/<script> under PYTHON. */
export function runPythonTool(script: string, args: string[] = []): void {
  execFileSync(PYTHON, [path.join(ROOT, 'tools', script), ...args], { stdio: 'inherit' });
}

export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

export function saveResult(name: string, result: unknown): string {
  fs.mkdirSync(RESULTS, { recursive: true });
  const file = path.join(RESULTS, `${name}.json`);
  fs.writeFileSync(file, `${JSON.stringify(result, null, 2)}\n`);
  return file;
}

export function table(rows: (string | number)[][]): string {
  const widths = rows[0].map((_, c) => Math.max(...rows.map((r) => String(r[c]).length)));
  return rows.map((r) => r.map((v, c) => String(v).padEnd(widths[c])).join('  ')).join('\n');
}
