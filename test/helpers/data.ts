import { spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { gzipSync } from 'node:zlib';
import { encodeNpy } from '../../src/data/npy.js';
import { Rng } from '../../src/train/rng.js';
import type { DType, TypedArray } from '../../src/util/dtype.js';
import { record } from './reliability.js';

/** Repository root, from dist/test/helpers/ */
export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
export const FIXTURES = path.join(ROOT, 'test/fixtures');
export const BIN = path.join(ROOT, 'dist/src/cli');

const DTYPES: Record<string, DType> = {
  Float32Array: 'float32', Float64Array: 'float64', Uint8Array: 'uint8', Int32Array: 'int32', BigInt64Array: 'int64', Int16Array: 'int16',
};

/** Write a C-order .npy file. */
export function writeNpy(file: string, data: TypedArray, shape: number[], descr?: string): void {
  fs.writeFileSync(file, encodeNpy(data, DTYPES[data.constructor.name], shape, descr));
}

/** Write an MNIST-style IDX file of uint8 (optionally gzip). */
export function writeIdxU8(file: string, data: Uint8Array, shape: number[], gzip = false): void {
  const head = Buffer.alloc(4 + 4 * shape.length);
  head[2] = 0x08;
  head[3] = shape.length;
  shape.forEach((d, i) => head.writeUInt32BE(d, 4 + 4 * i));
  const bytes = Buffer.concat([head, Buffer.from(data)]);
  fs.writeFileSync(file, gzip ? gzipSync(bytes) : bytes);
}

/** Deterministic pseudo-random floats in [-2, 2). */
export function randomFloats(n: number, seed = 1): Float32Array {
  const r = new Rng(seed);
  return Float32Array.from({ length: n }, () => r.next() * 4 - 2);
}

export function tempDir(prefix = 'kdcache-test-'): string {
  return fs.mkdtempSync(path.join(fs.realpathSync(process.env.TMPDIR ?? '/tmp'), prefix));
}

export interface CliResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  /** the command line, for the reliability catalogue */
  command?: string;
}

/** Run one of the project's CLIs (built in dist/) as a child process. */
export function runCli(bin: 'precompute-logits' | 'train-student' | 'kdcache', args: string[], env: NodeJS.ProcessEnv = {}): CliResult {
  const r = spawnSync(process.execPath, [path.join(BIN, `${bin}.js`), ...args], { encoding: 'utf8', env: { ...process.env, ...env }, timeout: 120_000 });
  return { code: r.status, signal: r.signal, stdout: r.stdout, stderr: r.stderr, command: [bin, ...args].join(' ') };
}

export function runCliAsync(bin: 'precompute-logits' | 'train-student' | 'kdcache', args: string[], env: NodeJS.ProcessEnv = {}) {
  return spawn(process.execPath, [path.join(BIN, `${bin}.js`), ...args], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
}

/** sha256 of every file in a directory (non-recursive), by name; temp files included so leftovers show. */
export function dirHashes(dir: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const name of fs.readdirSync(dir).sort()) {
    const p = path.join(dir, name);
    if (fs.statSync(p).isFile()) out[name] = fileSha(p);
  }
  return out;
}

function fileSha(p: string): string {
  return createHash('sha256').update(fs.readFileSync(p)).digest('hex');
}

/** The one-line-error contract: non-zero exit, a single "error: ..." line, no stack trace. */
export function assertOneLineError(r: CliResult, pattern: RegExp, label?: string): string {
  const lines = r.stderr.trim().split('\n').filter((l) => !l.startsWith('notice') && !l.startsWith('precompute-logits:'));
  const msg = lines.join('\n');
  if (r.code === 0 || r.code === null) throw new Error(`expected a non-zero exit, got ${r.code}; stderr: ${r.stderr}`);
  if (lines.length !== 1 || !lines[0].startsWith('error: ')) throw new Error(`expected one "error:" line, got:\n${r.stderr}`);
  if (lines[0].startsWith('error: internal error:')) throw new Error(`an internal error is a bug, not a user error: ${lines[0]}`);
  if (/\n\s+at /.test(r.stderr)) throw new Error(`stack trace printed:\n${r.stderr}`);
  if (!pattern.test(msg)) throw new Error(`error ${JSON.stringify(msg)} does not match ${pattern}`);
  if (r.command) record('catalogue', { label: label ?? null, input: scrub(r.command), error: scrub(msg) });
  return msg;
}

/** Paths that differ between machines and runs, as `$TMP/...` and repository-relative names. */
export function scrub(text: string): string {
  const tmp = fs.realpathSync(process.env.TMPDIR ?? '/tmp');
  return text.split(`${ROOT}/`).join('').replace(new RegExp(`${tmp.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}/kdcache-[^/\\s]+`, 'g'), '$TMP');
}
