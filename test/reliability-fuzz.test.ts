/**
 * Reliability: fast-check fuzzing of every reader that takes a file from the user or from disk: .npy,
 * IDX (plain and gzip), manifest.json / config.json / sidecars, Parquet and Arrow shards (also read as
 * input data), and the ONNX summary behind the external-data guard. Each target runs on a worker
 * thread (helpers/fuzz-worker.ts) with a fixed seed; a case that makes no progress for HANG_MS is a
 * hang and fails with its description. KDCACHE_SOAK=1 runs ten times as many cases.
 */
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { Worker } from 'node:worker_threads';
import { FIXTURES, tempDir } from './helpers/data.js';
import type { FuzzJob, FuzzMessage, Target } from './helpers/fuzz-worker.js';
import { record, size } from './helpers/reliability.js';

const HANG_MS = 20_000;
/** KDCACHE_FUZZ_SEED tries other seeds (the soak bench); failures print the seed to reproduce them. */
const SEED = Number(process.env.KDCACHE_FUZZ_SEED ?? 20260607);
let dir: string;
before(() => { dir = tempDir('kdcache-fuzz-'); });
after(() => fs.rmSync(dir, { recursive: true, force: true }));

function fuzz(target: Target, runs: number): Promise<Extract<FuzzMessage, { type: 'done' }>> {
  const job: FuzzJob = { target, seed: SEED, runs, dir: path.join(dir, target), fixtures: FIXTURES };
  const worker = new Worker(new URL('./helpers/fuzz-worker.js', import.meta.url), { workerData: job });
  return new Promise((resolve, reject) => {
    let last: Extract<FuzzMessage, { type: 'case' }> | undefined;
    let timer: NodeJS.Timeout;
    const watchdog = () => {
      clearTimeout(timer);
      timer = setTimeout(() => {
        void worker.terminate();
        reject(new Error(`${target}: no progress for ${HANG_MS} ms (hang) in case ${last?.n}: ${last?.what}`));
      }, HANG_MS);
    };
    watchdog();
    worker.on('message', (m: FuzzMessage) => {
      if (m.type === 'case') {
        last = m;
        watchdog();
      } else {
        clearTimeout(timer);
        void worker.terminate();
        if (m.type === 'done') resolve(m);
        else reject(new Error(`${target} (seed ${SEED}), last case ${last?.n}: ${last?.what}\n${m.message}`));
      }
    });
    worker.on('error', (err) => {
      clearTimeout(timer);
      reject(new Error(`${target}: worker crashed in case ${last?.n} (${last?.what}): ${err.stack ?? err}`));
    });
  });
}

const TARGETS: [Target, number, number, string][] = [
  ['npy', 400, 4000, '.npy: lying shapes and sizes, bad dtypes and versions, header text, truncation, byte flips'],
  ['idx', 400, 4000, 'IDX plain and gzip: lying dimensions, ndim and type bytes, truncated or damaged gzip'],
  ['json', 250, 2500, 'manifest.json, config.json, sidecars: wrong types, huge numbers, missing fields, ../ and absolute paths, __proto__, truncation'],
  ['shard-parquet', 300, 3000, 'Parquet shards: byte flips (footer-heavy), truncation, insertion, deletion; also read as --data input'],
  ['shard-arrow', 300, 3000, 'Arrow IPC shards: the same mutations'],
  ['onnx', 400, 4000, 'ONNX protobuf summary (external-data guard): the same mutations on five fixtures'],
];

describe('fuzzing the readers (fast-check, fixed seed)', () => {
  test('regressions: the damaged files fuzzing found are refused quickly, with one line', async () => {
    const r = await fuzz('regressions', 1);
    assert.equal(r.runs, 6);
  });

  for (const [target, ci, soak, what] of TARGETS) {
    test(`${target}: every case returns correct data or a one-line UserError; no hang, no large allocation`, async () => {
      const t0 = performance.now();
      const r = await fuzz(target, size(ci, soak));
      const seconds = (performance.now() - t0) / 1000;
      record('fuzz', { target, what, seed: SEED, runs: r.runs, refused: r.userErrors, accepted: r.accepted, failures: 0, peakRssMiB: r.peakRssMiB, seconds });
      assert.ok(r.runs >= size(ci, soak));
    });
  }
});
