/**
 * Reliability: full disks, read-only directories and concurrent writers. Disks are real tmpfs mounts
 * (the tests skip where mount is not allowed); a sweep of sizes makes precompute-logits run out of
 * space at every stage of a run. Concurrency: four partitions at once into one directory, and the
 * same partition started twice at the same moment.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { precomputeLogits } from '../src/precompute/run.js';
import type { Manifest, ShardSidecar } from '../src/shards/manifest-types.js';
import { FIXTURES, assertOneLineError, dirHashes, randomFloats, scrub, tempDir, writeNpy } from './helpers/data.js';
import { runAsync as run, isTemp, list, pool, record, sha256, size, walk } from './helpers/reliability.js';

const MLP = path.join(FIXTURES, 'mlp16.onnx');
const N = 6_000;
let dir: string;
let data: string;
let clean: { shards: Record<string, string>; records: Manifest['shards']; bytes: number };


const args = (out: string, extra: string[] = []) => [
  '--teacher', MLP, '--data', data, '--out', out, '--shard-rows', '500', '--compression', 'none', '--device', 'cpu', '--threads', '1', '--quiet', ...extra,
];
const manifestOf = (out: string): Manifest => JSON.parse(fs.readFileSync(path.join(out, 'manifest.json'), 'utf8'));

function assertSameAsClean(out: string): void {
  assert.deepEqual(dirHashes(path.join(out, 'shards')), clean.shards);
  assert.deepEqual(manifestOf(out).shards, clean.records);
  assert.deepEqual(walk(out).filter(isTemp), [], 'temporary files left');
}

/** Nothing on disk vouches for an incomplete shard: every sidecar's shard is there with its sha256. */
function assertNothingHalfVouched(out: string): void {
  const shards = path.join(out, 'shards');
  for (const n of list(shards).filter((x) => /^shard-\d+\.json$/.test(x))) {
    const sc = JSON.parse(fs.readFileSync(path.join(shards, n), 'utf8')) as ShardSidecar;
    assert.equal(sha256(path.join(out, sc.file)), sc.sha256, `${n} vouches for an incomplete shard`);
  }
  if (fs.existsSync(path.join(out, 'manifest.json'))) {
    for (const r of manifestOf(out).shards) assert.equal(sha256(path.join(out, r.file)), r.sha256);
  }
}

const mounted: string[] = [];
function mount(name: string, opts: string): string | null {
  const mnt = path.join(dir, name);
  fs.mkdirSync(mnt, { recursive: true });
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', opts, 'tmpfs', mnt], { stdio: 'ignore' });
  } catch {
    return null;
  }
  mounted.push(mnt);
  return mnt;
}
function remount(mnt: string, opts: string): void {
  execFileSync('mount', ['-o', `remount,${opts}`, mnt], { stdio: 'ignore' });
}
function umount(mnt: string): void {
  try { execFileSync('umount', [mnt], { stdio: 'ignore' }); } catch { /* not mounted */ }
}

before(async () => {
  dir = tempDir('kdcache-fs-');
  data = path.join(dir, 'x.npy');
  writeNpy(data, randomFloats(N * 16, 41), [N, 16]);
  const out = path.join(dir, 'clean');
  const r = await run('precompute-logits', args(out));
  assert.equal(r.code, 0, r.stderr);
  clean = { shards: dirHashes(path.join(out, 'shards')), records: manifestOf(out).shards, bytes: walk(out).reduce((n, f) => n + (fs.statSync(path.join(out, f)).isFile() ? fs.statSync(path.join(out, f)).size : 0), 0) };
});
after(() => {
  for (const m of mounted) umount(m);
  fs.rmSync(dir, { recursive: true, force: true });
});

describe('disk full', () => {
  test('precompute-logits runs out of space at every stage: one line, nothing half-written vouched for, rerun after freeing space completes', async (t) => {
    const probe = mount('probe', 'size=64k');
    if (!probe) return t.skip('cannot mount a tmpfs here (needs root)');
    umount(probe);
    // From "not even config.json fits" to "everything but the manifest fits", in steps.
    const steps = size(5, 24);
    // tmpfs charges whole pages: room for every file but the manifest makes the last write fail.
    const pages = (f: string) => Math.ceil(fs.statSync(path.join(dir, 'clean', f)).size / 4096) * 4096;
    const allButManifest = walk(path.join(dir, 'clean')).filter((f) => f !== 'manifest.json' && fs.statSync(path.join(dir, 'clean', f)).isFile()).reduce((n, f) => n + pages(f), 0);
    const limits = [...Array.from({ length: steps }, (_, i) => Math.max(4096, Math.round(((i + 0.5) / steps) * clean.bytes / 4096) * 4096)), allButManifest];
    // Two sizes at a time, each on its own tmpfs.
    const results = await pool(limits, 2, async (limit, i) => {
      const mnt = mount(`full-${i}`, `size=${limit}`)!;
      const out = path.join(mnt, 'cache');
      const r = await run('precompute-logits', args(out));
      let error: string | null = null;
      const stage = /manifest\.json/.test(r.stderr) ? 'the manifest' : /shard-\d+\.json/.test(r.stderr) ? 'a sidecar' : /config\.json/.test(r.stderr) ? 'config.json' : 'a shard';
      if (r.code !== 0) error = scrub(assertOneLineError(r, /no space left on device.*free space and rerun the same command/, `precompute-logits: disk full while writing ${stage}`));
      if (fs.existsSync(out)) assertNothingHalfVouched(out);
      const sidecars = list(path.join(out, 'shards')).filter((n) => n.endsWith('.json')).length;
      remount(mnt, `size=${4 * clean.bytes + (1 << 20)}`);
      const again = await run('precompute-logits', args(out));
      assert.equal(again.code, 0, again.stderr);
      assertSameAsClean(out);
      umount(mnt);
      return { limitKiB: limit >> 10, error, sidecarsAtFailure: sidecars };
    });
    record('disk-full', { cacheBytes: clean.bytes, steps: results });
    assert.ok(results.filter((r) => r.error).length >= steps - 1, 'most sizes are too small for the cache');
    assert.match(results[results.length - 1].error ?? '', /manifest\.json: no space left on device/, 'the last size fails writing the manifest');
  });

  test('train-student: a full disk during a checkpoint is one line; --resume after freeing space completes', async (t) => {
    const mnt = mount('train-full', 'size=24k');
    if (!mnt) return t.skip('cannot mount a tmpfs here (needs root)');
    const cache = path.join(dir, 'clean');
    const out = path.join(mnt, 'student');
    // 24 KiB: model.json, weights.bin and metrics.jsonl fit, the checkpoint (weights + Adam state) does not.
    const train = (extra: string[] = []) => run('train-student', ['--logits', cache, '--data', data, '--student', 'mlp:64', '--epochs', '2', '--backend', 'wasm', '--out', out, '--quiet', ...extra]);
    const r = await train();
    const msg = scrub(assertOneLineError(r, /no space left on device.*free space and rerun with --resume/, 'train-student: disk full while writing a checkpoint'));
    assert.deepEqual(walk(out).filter(isTemp), [], 'temp files left by the failed write');
    remount(mnt, 'size=64m');
    const again = await train(['--resume']);
    assert.equal(again.code, 0, again.stderr);
    assert.ok(fs.existsSync(path.join(out, 'summary.json')));
    record('disk-full-train', { error: msg });
    umount(mnt);
  });
});

describe('read-only directories', () => {
  test('a cache on a read-only mount verifies and trains; writing into one is one line', async (t) => {
    const mnt = mount('ro', 'size=8m');
    if (!mnt) return t.skip('cannot mount a tmpfs here (needs root)');
    const cache = path.join(mnt, 'cache');
    fs.cpSync(path.join(dir, 'clean'), cache, { recursive: true });
    remount(mnt, 'ro');
    const [v, tr, trOut, pre, fin] = await Promise.all([
      run('kdcache', ['verify', cache, '--quiet']),
      run('train-student', ['--logits', cache, '--data', data, '--student', 'mlp:8', '--epochs', '1', '--backend', 'wasm', '--out', path.join(dir, 'ro-student'), '--quiet']),
      run('train-student', ['--logits', cache, '--data', data, '--student', 'mlp:8', '--epochs', '1', '--backend', 'wasm', '--out', path.join(mnt, 'student'), '--quiet']),
      run('precompute-logits', args(path.join(mnt, 'new-cache'))),
      run('kdcache', ['finalize', cache]),
    ]);
    assert.equal(v.code, 0, v.stderr);
    assert.equal(tr.code, 0, tr.stderr);
    assertOneLineError(trOut, /--out .*student: read-only file system|student: read-only file system/, 'train-student: --out on a read-only file system');
    assertOneLineError(pre, /--out .*read-only file system/, 'precompute-logits: --out on a read-only file system');
    assertOneLineError(fin, /read-only file system/, 'kdcache finalize: a cache on a read-only file system');
    umount(mnt);
  });
});

describe('concurrent writers into one directory', () => {
  const rounds = size(1, 8);
  test(`four partitions at once, plus the same partition started twice (${rounds} rounds): the uninterrupted cache, or a clear refusal`, async () => {
    const outcomes: { round: number; kind: string; codes: (number | null)[]; errors: string[] }[] = [];
    for (let round = 0; round < rounds; round++) {
      // 4 partitions + a duplicate of one of them, all started together.
      const out = path.join(dir, `conc-${round}`);
      const dup = round % 4;
      const parts = [0, 1, 2, 3, dup].map((p) => run('precompute-logits', args(out, ['--partition', `${p}/4`])));
      const rs = await Promise.all(parts);
      for (const r of rs) if (r.code !== 0) assertOneLineError(r, /./, 'precompute-logits: the same partition twice at once');
      if (!fs.existsSync(path.join(out, 'manifest.json'))) {
        const fin = await run('kdcache', ['finalize', out]);
        assert.equal(fin.code, 0, fin.stderr);
      }
      assertSameAsClean(out);
      outcomes.push({ round, kind: `4 partitions + partition ${dup} twice`, codes: rs.map((r) => r.code), errors: rs.filter((r) => r.code !== 0).map((r) => r.stderr.trim()) });

      // The whole job started twice at the same moment (a scheduler retry racing the original).
      const twice = path.join(dir, `twice-${round}`);
      const both = await Promise.all([run('precompute-logits', args(twice)), run('precompute-logits', args(twice))]);
      for (const r of both) if (r.code !== 0) assertOneLineError(r, /./, 'precompute-logits: the same job twice at once');
      assertSameAsClean(twice);
      outcomes.push({ round, kind: 'the whole job twice', codes: both.map((r) => r.code), errors: both.filter((r) => r.code !== 0).map((r) => r.stderr.trim()) });
      fs.rmSync(out, { recursive: true, force: true });
      fs.rmSync(twice, { recursive: true, force: true });
    }
    record('concurrency', { rounds, outcomes });
  });

  test('two different jobs into one --out at once: one wins, the other refuses clearly', async () => {
    const out = path.join(dir, 'conflict');
    const [a, b] = await Promise.all([run('precompute-logits', args(out)), run('precompute-logits', args(out, ['--scale', '2']))]);
    const failed = [a, b].filter((r) => r.code !== 0);
    assert.equal(failed.length, 1, `${a.stderr}\n${b.stderr}`);
    assertOneLineError(failed[0], /--out .*holds a cache made with a different preprocessing; use a new --out, or --overwrite/, 'precompute-logits: two different jobs into one --out at once');
    const v = await run('kdcache', ['verify', out, '--quiet']);
    assert.equal(v.code, 0, v.stderr);
  });

  test('precompute into a cache directory while train-student reads it: training sees the complete cache', async () => {
    const cache = path.join(dir, 'conc-read');
    await precomputeLogits({ teacher: MLP, data, out: cache, shardRows: 500, compression: 'none', device: 'cpu', quiet: true });
    // A rerun of the same command (nothing to do) while training reads.
    const [tr, pre] = await Promise.all([
      run('train-student', ['--logits', cache, '--data', data, '--student', 'mlp:8', '--epochs', '1', '--backend', 'wasm', '--out', path.join(dir, 'conc-student'), '--quiet']),
      run('precompute-logits', args(cache)),
    ]);
    assert.equal(tr.code, 0, tr.stderr);
    assert.equal(pre.code, 0, pre.stderr);
  });
});
