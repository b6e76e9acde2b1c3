/**
 * Reliability: SIGKILL at many moments, then the same command again. precompute-logits must end with
 * the very cache an uninterrupted run writes (same shard bytes, same manifest records, no temp files
 * left); train-student --resume must continue from the last complete checkpoint and end with the
 * weights of an uninterrupted run. Moments inside a write are hit with KDCACHE_TEST_STALL_WRITES,
 * which pauses that write halfway (see src/util/fsx.ts). KDCACHE_SOAK=1 runs more kill points.
 */
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { precomputeLogits } from '../src/precompute/run.js';
import type { Manifest, ShardSidecar } from '../src/shards/manifest-types.js';
import { FIXTURES, dirHashes, randomFloats, runCliAsync, tempDir, writeNpy } from './helpers/data.js';
import { runAsync as run, isTemp, killWhen, list, pool, record, seeded, sha256, size, walk } from './helpers/reliability.js';

const MLP = path.join(FIXTURES, 'mlp16.onnx');
const ROWS = 20_000;
const SHARD_ROWS = 1_000;
const SHARDS = ROWS / SHARD_ROWS;
const STALL_MS = 400;

let dir: string;
let data: string;
let clean: { shards: Record<string, string>; records: Manifest['shards']; seconds: number; computeSeconds: number };


const precomputeArgs = (out: string, extra: string[] = []) => [
  '--teacher', MLP, '--data', data, '--out', out, '--shard-rows', String(SHARD_ROWS),
  '--batch-size', '50', '--device', 'cpu', '--threads', '1', '--quiet', ...extra,
];

const manifestOf = (out: string): Manifest => JSON.parse(fs.readFileSync(path.join(out, 'manifest.json'), 'utf8'));
const shardName = (i: number, ext = 'parquet') => `shard-${String(i).padStart(5, '0')}.${ext}`;
const tempOf = (dirPath: string, name: string) => () => list(dirPath).some((n) => n.startsWith(`.${name}.tmp-`));

/** What a kill left behind; every sidecar and a manifest must only ever vouch for complete shards. */
function stateAfterKill(out: string): { sidecars: number; temps: number; manifest: boolean } {
  const shardsDir = path.join(out, 'shards');
  const names = list(shardsDir);
  const sidecars = names.filter((n) => /^shard-\d+\.json$/.test(n));
  for (const n of sidecars) {
    const sc = JSON.parse(fs.readFileSync(path.join(shardsDir, n), 'utf8')) as ShardSidecar;
    const shard = path.join(out, sc.file);
    assert.ok(fs.existsSync(shard), `sidecar ${n} without its shard`);
    assert.equal(sha256(shard), sc.sha256, `sidecar ${n} vouches for a shard that is not complete`);
  }
  const manifest = fs.existsSync(path.join(out, 'manifest.json'));
  if (manifest) {
    const m = manifestOf(out);
    assert.equal(m.complete, true, 'a manifest on disk is complete');
    for (const rec of m.shards) assert.equal(sha256(path.join(out, rec.file)), rec.sha256, `manifest vouches for a bad ${rec.file}`);
  }
  return { sidecars: sidecars.length, temps: walk(out).filter(isTemp).length, manifest };
}

function assertSameAsClean(out: string): void {
  assert.deepEqual(dirHashes(path.join(out, 'shards')), clean.shards, 'shards and sidecars differ from the uninterrupted run');
  assert.deepEqual(manifestOf(out).shards, clean.records, 'manifest records differ');
  assert.deepEqual(walk(out).filter(isTemp), [], 'temporary files left after success');
}

interface KillTrial {
  kind: 'random' | 'shard write' | 'sidecar write' | 'manifest write' | 'config write' | 'between partitions';
  detail: string;
  /** runs before the one that is killed (e.g. another partition, to completion) */
  before?: string[][];
  killed: string[];
  stall?: string;
  /** when to kill, given the out dir and the ms since the killed run started */
  when: (out: string, ms: number) => boolean;
  /** the commands (extra args) that finish the job afterwards; the last one completes the cache */
  after: string[][];
}

function precomputeTrials(): KillTrial[] {
  const rand = seeded(20240607);
  const pick = (lo: number, hi: number) => lo + Math.floor(rand() * (hi - lo + 1));
  const trials: KillTrial[] = [];
  const shardsDir = (out: string) => path.join(out, 'shards');
  // Random moments spread over the whole run: startup (no shard yet), inference of any shard, the end.
  const sidecars = (o: string) => list(shardsDir(o)).filter((n) => /^shard-\d+\.json$/.test(n)).length;
  const shardMs = Math.max(1, (clean.computeSeconds * 1000) / SHARDS);
  for (let i = 0; i < size(8, 60); i++) {
    const done = pick(0, SHARDS - 1);
    const extra = Math.round(rand() * shardMs);
    let since = 0;
    trials.push({ kind: 'random', detail: `${extra} ms after ${done} shards were done`, killed: [], after: [[]], when: (o) => {
      if (sidecars(o) < done) return false;
      since ||= performance.now();
      return performance.now() - since >= extra;
    } });
  }
  for (let i = 0; i < size(4, 15); i++) {
    const s = pick(0, SHARDS - 1);
    trials.push({ kind: 'shard write', detail: `${shardName(s)} half written`, killed: [], stall: `${STALL_MS}:^${shardName(s).replace('.', '\\.')}$`, when: (o) => tempOf(shardsDir(o), shardName(s))(), after: [[]] });
  }
  for (let i = 0; i < size(2, 8); i++) {
    const s = pick(0, SHARDS - 1);
    const name = shardName(s, 'json');
    trials.push({ kind: 'sidecar write', detail: `${name} half written, its shard complete`, killed: [], stall: `${STALL_MS}:^${name.replace('.', '\\.')}$`, when: (o) => tempOf(shardsDir(o), name)(), after: [[]] });
  }
  for (let i = 0; i < size(2, 6); i++) {
    trials.push({ kind: 'manifest write', detail: 'manifest.json half written', killed: [], stall: `${STALL_MS}:^manifest\\.json$`, when: (o) => tempOf(o, 'manifest.json')(), after: [[]] });
  }
  for (let i = 0; i < size(1, 3); i++) {
    trials.push({ kind: 'config write', detail: 'config.json half written (first write of a run)', killed: [], stall: `${STALL_MS}:^config\\.json$`, when: (o) => tempOf(o, 'config.json')(), after: [[]] });
  }
  const p0 = ['--partition', '0/2'];
  const p1 = ['--partition', '1/2'];
  for (let i = 0; i < size(1, 3); i++) {
    const at = Math.round(rand() * clean.seconds * 500);
    trials.push({ kind: 'between partitions', detail: `0/2 done, 1/2 killed ${at} ms after its start`, before: [p0], killed: p1, when: (_o, t) => t >= at, after: [p1] });
  }
  for (let i = 0; i < size(1, 3); i++) {
    trials.push({ kind: 'between partitions', detail: '1/2 done, 0/2 (the last to finish) killed writing the manifest', before: [p1], killed: p0, stall: `${STALL_MS}:^manifest\\.json$`, when: (o) => tempOf(o, 'manifest.json')(), after: [p0] });
  }
  for (let i = 0; i < size(1, 2); i++) {
    const last = shardName(Math.floor(SHARDS / 2) - 1, 'json'); // partition 0/2 owns shards [0, floor(S/2))
    trials.push({ kind: 'between partitions', detail: `0/2 killed writing its last sidecar, then 0/2 and 1/2 run`, killed: p0, stall: `${STALL_MS}:^${last.replace('.', '\\.')}$`, when: (o) => tempOf(shardsDir(o), last)(), after: [p0, p1] });
  }
  return trials;
}

async function runTrial(t: KillTrial, out: string): Promise<{ landed: boolean; state?: ReturnType<typeof stateAfterKill> }> {
  for (const extra of t.before ?? []) {
    const r = await run('precompute-logits', precomputeArgs(out, extra));
    assert.equal(r.code, 0, r.stderr);
  }
  const env = t.stall ? { KDCACHE_TEST_STALL_WRITES: t.stall } : {};
  const child = runCliAsync('precompute-logits', precomputeArgs(out, t.killed), env);
  const started = performance.now();
  const landed = await killWhen(child, () => t.when(out, performance.now() - started));
  const state = landed ? stateAfterKill(out) : undefined;
  for (const [i, extra] of t.after.entries()) {
    const r = await run('precompute-logits', precomputeArgs(out, extra));
    assert.equal(r.code, 0, `rerun ${i + 1} after '${t.detail}': ${r.stderr}`);
  }
  assertSameAsClean(out);
  return { landed, state };
}

before(async () => {
  dir = tempDir('kdcache-kill-');
  data = path.join(dir, 'x.npy');
  writeNpy(data, randomFloats(ROWS * 16, 21), [ROWS, 16]);
  const out = path.join(dir, 'clean');
  const t0 = performance.now();
  const r = await run('precompute-logits', precomputeArgs(out));
  assert.equal(r.code, 0, r.stderr);
  const seconds = (performance.now() - t0) / 1000;
  // Time spent computing shards: from config.json (written first) to manifest.json (written last).
  const computeSeconds = (fs.statSync(path.join(out, 'manifest.json')).mtimeMs - fs.statSync(path.join(out, 'config.json')).mtimeMs) / 1000;
  clean = { shards: dirHashes(path.join(out, 'shards')), records: manifestOf(out).shards, seconds, computeSeconds };
});
after(() => fs.rmSync(dir, { recursive: true, force: true }));

describe('precompute-logits: SIGKILL at many moments, then the same command', () => {
  test('every rerun ends with the uninterrupted cache; nothing half-written is ever vouched for', async () => {
    const trials = precomputeTrials();
    // Two trials at a time on two cores; each run uses one inference thread.
    const results = await pool(trials, 2, async (t, i) => {
      const out = path.join(dir, `trial-${i}`);
      try {
        const { landed, state } = await runTrial(t, out);
        return { kind: t.kind, detail: t.detail, landed, survived: true, state };
      } catch (err) {
        return { kind: t.kind, detail: t.detail, landed: true, survived: false, error: (err as Error).message.split('\n')[0] };
      } finally {
        fs.rmSync(out, { recursive: true, force: true });
      }
    });
    const landed = results.filter((r) => r.landed);
    const survived = landed.filter((r) => r.survived);
    record('kill-precompute', { tried: landed.length, survived: survived.length, finishedBeforeKill: results.length - landed.length, cleanSeconds: clean.seconds, trials: results });
    const failed = results.filter((r) => !r.survived);
    assert.deepEqual(failed, [], 'failed trials');
    for (const kind of ['shard write', 'sidecar write', 'manifest write', 'config write', 'between partitions']) {
      assert.ok(landed.some((r) => r.kind === kind), `no kill landed during a ${kind}`);
    }
    // Random moments past the end of a fast run do not kill anything; most must land.
    assert.ok(landed.length >= trials.length - 3, `only ${landed.length} of ${trials.length} kills landed`);
  });
});

describe('train-student: SIGKILL during an epoch and during a checkpoint write, then --resume', () => {
  const TRAIN_ROWS = 3_000;
  const EPOCHS = 3;
  let cache: string;
  let tdata: string;
  let reference: { weights: string; metrics: unknown[] };
  let epochMs = 400;

  const trainArgs = (out: string, extra: string[] = []) => [
    '--logits', cache, '--data', tdata, '--student', 'mlp:32', '--epochs', String(EPOCHS), '--batch-size', '64',
    '--backend', 'wasm', '--out', out, '--quiet', ...extra,
  ];
  const latestEpoch = (out: string): number => {
    try {
      return JSON.parse(fs.readFileSync(path.join(out, 'checkpoint', 'latest.json'), 'utf8')).epoch;
    } catch {
      return 0;
    }
  };
  /** metrics without timings, which differ between runs */
  const trajectory = (out: string) => fs.readFileSync(path.join(out, 'metrics.jsonl'), 'utf8').trim().split('\n')
    .map((l) => { const { seconds: _s, examples_per_second: _e, ...rest } = JSON.parse(l); return rest; });

  before(async () => {
    tdata = path.join(dir, 'train-x.npy');
    writeNpy(tdata, randomFloats(TRAIN_ROWS * 16, 22), [TRAIN_ROWS, 16]);
    cache = path.join(dir, 'train-cache');
    await precomputeLogits({ teacher: MLP, data: tdata, out: cache, shardRows: 500, device: 'cpu', quiet: true });
    const out = path.join(dir, 'train-clean');
    const r = await run('train-student', trainArgs(out));
    assert.equal(r.code, 0, r.stderr);
    reference = { weights: sha256(path.join(out, 'weights.bin')), metrics: trajectory(out) };
    // Kills "during an epoch" wait a fraction of the clean run's shortest epoch: fixed waits miss the
    // epoch altogether on a fast, quiet machine.
    epochMs = Math.min(...fs.readFileSync(path.join(out, 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l).seconds * 1000));
  });

  interface TrainTrial { kind: string; stall?: string; when: (out: string) => boolean }
  const ckptTemp = (out: string, epoch: number) => list(path.join(out, 'checkpoint'))
    .some((n) => n.startsWith(`.epoch-${String(epoch).padStart(6, '0')}.tmp-`) && list(path.join(out, 'checkpoint', n)).some((f) => f.includes('.tmp-')));

  test('resume continues from the last complete checkpoint and ends with the uninterrupted weights', async () => {
    const rand = seeded(77);
    const trials: TrainTrial[] = [];
    for (let i = 0; i < size(2, 8); i++) {
      const epoch = 1 + Math.floor(rand() * (EPOCHS - 1));
      const share = rand();
      let since = 0;
      trials.push({ kind: `during epoch ${epoch + 1}`, when: (out) => {
        if (latestEpoch(out) < epoch) return false;
        since ||= performance.now();
        return performance.now() - since >= share * 0.5 * epochMs;
      } });
    }
    for (let i = 0; i < size(1, 4); i++) {
      const epoch = 1 + (i % EPOCHS);
      trials.push({ kind: `checkpoint of epoch ${epoch} half written (weights.bin)`, stall: `${STALL_MS}:^weights\\.bin$`, when: (o) => ckptTemp(o, epoch) });
      trials.push({ kind: `checkpoint of epoch ${epoch} half written (optimizer.bin)`, stall: `${STALL_MS}:^optimizer\\.bin$`, when: (o) => ckptTemp(o, epoch) });
    }
    for (let i = 0; i < size(1, 3); i++) {
      const epoch = 1 + (i % (EPOCHS - 1));
      trials.push({ kind: `latest.json of epoch ${epoch + 1} half written (its checkpoint directory complete)`, stall: `${STALL_MS}:^latest\\.json$`,
        when: (o) => latestEpoch(o) === epoch && tempOf(path.join(o, 'checkpoint'), 'latest.json')() });
    }
    const results = await pool(trials, 2, async (t, i) => {
      const out = path.join(dir, `train-trial-${i}`);
      const child = runCliAsync('train-student', trainArgs(out), t.stall ? { KDCACHE_TEST_STALL_WRITES: t.stall } : {});
      const landed = await killWhen(child, () => t.when(out));
      try {
        const done = latestEpoch(out);
        const r = await run('train-student', trainArgs(out, ['--resume']).filter((a) => a !== '--quiet'));
        assert.equal(r.code, 0, r.stderr);
        if (done > 0) assert.match(r.stderr, new RegExp(`resuming from .*epoch-${String(done).padStart(6, '0')} \\(epoch ${done} done\\)`));
        assert.equal(sha256(path.join(out, 'weights.bin')), reference.weights, 'final weights differ from the uninterrupted run');
        assert.deepEqual(trajectory(out), reference.metrics, 'metrics differ from the uninterrupted run');
        assert.deepEqual(walk(out).filter(isTemp), [], 'temporary files left');
        return { kind: t.kind, landed, survived: true, resumedFrom: done };
      } catch (err) {
        return { kind: t.kind, landed, survived: false, error: (err as Error).message.split('\n')[0] };
      } finally {
        fs.rmSync(out, { recursive: true, force: true });
      }
    });
    const landed = results.filter((r) => r.landed);
    record('kill-train', { tried: landed.length, survived: landed.filter((r) => r.survived).length, trials: results });
    assert.deepEqual(results.filter((r) => !r.survived), []);
    assert.equal(landed.length, trials.length, 'every kill landed');
  });
});
