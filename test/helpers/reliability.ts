/**
 * Shared by the reliability suite (test/reliability-*.test.ts): CI vs soak sizes, the figures each
 * file reports, and small process and file helpers for killing runs at chosen moments.
 */
import type { ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Rng } from '../../src/train/rng.js';
import { type CliResult, runCliAsync } from './data.js';

/** KDCACHE_SOAK=1: the same tests with bigger counts (bench/reliability.ts sets it). */
export const SOAK = process.env.KDCACHE_SOAK === '1';

export function size(ci: number, soak: number): number {
  return SOAK ? soak : ci;
}

/**
 * Figures go to the JSON-lines file named by KDCACHE_RELIABILITY_OUT, when set; bench/reliability.ts
 * collects them into bench/results/reliability.json and the tables of docs/reliability.md.
 */
export function record(kind: string, data: Record<string, unknown>): void {
  const file = process.env.KDCACHE_RELIABILITY_OUT;
  if (!file) return;
  fs.appendFileSync(file, `${JSON.stringify({ kind, ...data })}\n`);
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** runCli without blocking the event loop, so that two trials can run side by side. */
export async function runAsync(bin: 'precompute-logits' | 'train-student' | 'kdcache', args: string[], env: NodeJS.ProcessEnv = {}): Promise<CliResult> {
  const child = runCliAsync(bin, args, env);
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d) => { stdout += d; });
  child.stderr.on('data', (d) => { stderr += d; });
  const { code, signal } = await exited(child);
  return { code, signal, stdout, stderr, command: [bin, ...args].join(' ') };
}

export function exited(child: ChildProcess): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve({ code: child.exitCode, signal: child.signalCode });
  return new Promise((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
}

/**
 * Poll until `ready()` is true (then SIGKILL the child and return true) or the child exits on its own
 * (return false). Polling every few ms is enough: the moments it waits for are stretched by
 * KDCACHE_TEST_STALL_WRITES.
 */
export async function killWhen(child: ChildProcess, ready: () => boolean, everyMs = 5): Promise<boolean> {
  for (;;) {
    if (child.exitCode !== null || child.signalCode !== null) return false;
    if (ready()) {
      child.kill('SIGKILL');
      await exited(child);
      return true;
    }
    await sleep(everyMs);
  }
}

/** Run `fn` over `items`, `n` at a time (two cores: two child processes side by side). */
export async function pool<T, R>(items: readonly T[], n: number, fn: (item: T, index: number) => Promise<R>): Promise<R[]> {
  const results: R[] = [];
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const i = next++;
      results[i] = await fn(items[i], i);
    }
  };
  await Promise.all(Array.from({ length: n }, worker));
  return results;
}

export function list(dir: string): string[] {
  try {
    return fs.readdirSync(dir);
  } catch {
    return [];
  }
}

/** Every path under `dir` (relative), files and directories. */
export function walk(dir: string, prefix = ''): string[] {
  const out: string[] = [];
  for (const name of list(dir).sort()) {
    const rel = prefix ? `${prefix}/${name}` : name;
    out.push(rel);
    if (fs.lstatSync(path.join(dir, name)).isDirectory()) out.push(...walk(path.join(dir, name), rel));
  }
  return out;
}

export const isTemp = (rel: string): boolean => /(^|\/)\.[^/]*\.tmp-\d+-[0-9a-f]{8}(\/|$)/.test(rel);

export function sha256(file: string): string {
  return createHash('sha256').update(fs.readFileSync(file)).digest('hex');
}

/** Kill moments and mutations come from a fixed seed, so a failure reproduces. */
export function seeded(seed: number): () => number {
  const r = new Rng(seed);
  return () => r.next();
}
