import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { FIXTURES, assertOneLineError, randomFloats, runCli, tempDir, writeIdxU8, writeNpy } from './helpers/data.js';

const MLP = path.join(FIXTURES, 'mlp16.onnx');
let dir: string;
let data: string;

before(() => {
  dir = tempDir();
  data = path.join(dir, 'x.npy');
  writeNpy(data, randomFloats(100 * 16), [100, 16]);
});
after(() => fs.rmSync(dir, { recursive: true, force: true }));

const runWith = (env: NodeJS.ProcessEnv, ...args: string[]) => runCli('precompute-logits', ['--device', 'cpu', '--quiet', ...args], env);
const run = (...args: string[]) => runWith({}, ...args);
const out = (name: string) => path.join(dir, name);

describe('precompute-logits: one-line errors for bad input', () => {
  test('missing teacher', () => {
    assertOneLineError(run('--teacher', out('nope.onnx'), '--data', data, '--out', out('a')), /--teacher .*nope\.onnx: no such file/, 'precompute-logits: --teacher that does not exist');
  });
  test('a file that is not an ONNX model', () => {
    assertOneLineError(run('--teacher', path.join(FIXTURES, 'not_onnx.onnx'), '--data', data, '--out', out('b')), /not_onnx\.onnx: not an ONNX model/, 'precompute-logits: --teacher that is not an ONNX model');
  });
  test('external data outside the model directory is refused', () => {
    assertOneLineError(run('--teacher', path.join(FIXTURES, 'external_escape.onnx'), '--data', data, '--out', out('c')), /refuses external data '\.\.\/\.\.\/etc\/passwd'/, 'precompute-logits: --teacher with external data at ../../etc/passwd');
  });
  test('data that does not fit the teacher prints both shapes', () => {
    const f = out('wrong.npy');
    writeNpy(f, randomFloats(10 * 15), [10, 15]);
    assertOneLineError(run('--teacher', MLP, '--data', f, '--out', out('d')), /shape \[15\].*takes \[16\]/, 'precompute-logits: --data whose examples do not fit the teacher');
  });
  test('label count different from data count', () => {
    const y = out('y.npy');
    writeNpy(y, new Int32Array(99), [99]);
    assertOneLineError(run('--teacher', MLP, '--data', data, '--labels', y, '--out', out('e')), /99 labels for 100 examples/, 'precompute-logits: --labels with fewer labels than examples');
  });
  test('ambiguous input lists the names; unknown output name lists the names', () => {
    const two = path.join(FIXTURES, 'two_io.onnx');
    assertOneLineError(run('--teacher', two, '--data', data, '--out', out('f')), /2 inputs \('a', 'b'\).*--input-name/, 'precompute-logits: --teacher with two inputs and no --input-name');
    assertOneLineError(run('--teacher', MLP, '--data', data, '--output-name', 'probs', '--out', out('g')), /no output of that name; its outputs are 'logits'/, 'precompute-logits: --output-name the teacher does not have');
  });
  test('unsupported dtype', () => {
    const f = out('complex.npy');
    writeNpy(f, new Float32Array(200), [100, 1], '<c8');
    assertOneLineError(run('--teacher', MLP, '--data', f, '--out', out('h')), /unsupported \.npy dtype '<c8'/, 'precompute-logits: --data .npy of complex numbers (<c8)');
  });
  test('truncated .npy and truncated IDX (plain and gz)', () => {
    const f = out('trunc.npy');
    writeNpy(f, randomFloats(100 * 16), [100, 16]);
    fs.truncateSync(f, 3000);
    assertOneLineError(run('--teacher', MLP, '--data', f, '--out', out('i')), /truncated \.npy file: header declares shape \[100, 16\]/, 'precompute-logits: --data .npy truncated');
    const idx = out('trunc.idx3-ubyte');
    writeIdxU8(idx, new Uint8Array(100 * 16), [100, 4, 4]);
    fs.truncateSync(idx, 800);
    assertOneLineError(run('--teacher', MLP, '--data', idx, '--out', out('j')), /truncated IDX file/, 'precompute-logits: --data IDX truncated');
    const gz = out('trunc.idx3-ubyte.gz');
    writeIdxU8(gz, Uint8Array.from({ length: 100 * 16 }, (_, i) => i * 13), [100, 4, 4], true);
    fs.truncateSync(gz, fs.statSync(gz).size - 30);
    assertOneLineError(run('--teacher', MLP, '--data', gz, '--out', out('k')), /corrupt or truncated gzip|truncated IDX/, 'precompute-logits: --data gzip IDX truncated');
  });
  test('output directory that is not writable', () => {
    const file = out('a-file');
    fs.writeFileSync(file, 'x');
    assertOneLineError(run('--teacher', MLP, '--data', data, '--out', path.join(file, 'cache')), /--out .*a-file.*not a directory/, 'precompute-logits: --out under a file');
  });
  test('bad flags are one line too', () => {
    assertOneLineError(run('--teacher', MLP, '--data', data, '--out', out('l'), '--device', 'tpu'), /--device tpu/, 'precompute-logits: --device tpu');
    assertOneLineError(run('--teacher', MLP, '--data', data, '--out', out('m'), '--scale', 'abc'), /--scale abc/, 'precompute-logits: --scale abc');
    assertOneLineError(run('--teacher', MLP, '--data', data, '--out', out('n'), '--partition', '3/2'), /partition index 3/, 'precompute-logits: --partition 3/2');
    assertOneLineError(run('--teacher', MLP, '--data', data), /Missing required argument: out/, 'precompute-logits: --out missing');
  });
  test('explicit --device cuda without the provider says how to install it', () => {
    const r = runCli('precompute-logits', ['--teacher', MLP, '--data', data, '--out', out('o'), '--device', 'cuda', '--quiet']);
    assertOneLineError(r, /--device cuda: .*(CUDA execution provider is not installed|CUDA libraries|driver)/, 'precompute-logits: --device cuda without the CUDA provider');
  });
});

describe('precompute-logits: disk full and read-only', () => {
  const mnt = () => path.join(dir, 'mnt');
  const mount = (opts: string): boolean => {
    fs.mkdirSync(mnt(), { recursive: true });
    try {
      execFileSync('mount', ['-t', 'tmpfs', '-o', opts, 'tmpfs', mnt()], { stdio: 'ignore' });
      return true;
    } catch {
      return false;
    }
  };
  const umount = () => { try { execFileSync('umount', [mnt()], { stdio: 'ignore' }); } catch { /* not mounted */ } };

  test('a full disk: clear error, no partial shard left looking complete, a rerun after freeing space completes', (t) => {
    if (!mount('size=1m')) return t.skip('cannot mount a tmpfs here (needs root)');
    try {
      const big = out('big.npy');
      writeNpy(big, randomFloats(20_000 * 16, 5), [20_000, 16]);
      const filler = path.join(mnt(), 'filler');
      fs.writeFileSync(filler, Buffer.alloc(800 * 1024));
      const args = ['--teacher', MLP, '--data', big, '--out', path.join(mnt(), 'cache'), '--shard-rows', '2000', '--compression', 'none'];
      // Slowed shard writes keep the next shard queued when the disk fills, the case where a writer
      // thread stopped mid-write used to leave its temp file (1 CI run in many; 3 of 3 runs this way).
      const r = runWith({ KDCACHE_TEST_STALL_WRITES: '150:^shard-\\d+\\.parquet$' }, ...args);
      assertOneLineError(r, /no space left on device.*free space and rerun/, 'precompute-logits: disk full (1 MiB tmpfs, existing test)');
      const names = fs.readdirSync(path.join(mnt(), 'cache', 'shards'));
      assert.ok(!names.some((n) => n.includes('.tmp-')), `temp files left: ${names}`);
      // A record vouches for a complete shard, so no record may exist without its shard. (A shard
      // without a record is possible when the disk fills in between; the rerun redoes it.)
      for (const n of names.filter((x) => x.endsWith('.json'))) assert.ok(names.includes(n.replace('.json', '.parquet')), `record ${n} without its shard`);
      fs.rmSync(filler);
      const again = run(...args);
      assert.equal(again.code, 0, again.stderr);
      assert.equal(JSON.parse(fs.readFileSync(path.join(mnt(), 'cache', 'manifest.json'), 'utf8')).complete, true);
    } finally {
      umount();
    }
  });

  test('a read-only directory', (t) => {
    if (!mount('size=1m,ro')) return t.skip('cannot mount a tmpfs here (needs root)');
    try {
      assertOneLineError(run('--teacher', MLP, '--data', data, '--out', path.join(mnt(), 'cache')), /read-only file system/, 'precompute-logits: --out on a read-only file system');
    } finally {
      umount();
    }
  });
});
