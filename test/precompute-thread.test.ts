import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { precomputeLogits } from '../src/precompute/run.js';
import { chooseInferenceThread } from '../src/precompute/teacher-thread.js';
import { FIXTURES, dirHashes, randomFloats, runCli, tempDir, writeNpy } from './helpers/data.js';

const MLP = path.join(FIXTURES, 'mlp16.onnx');
const MLP_B1 = path.join(FIXTURES, 'mlp16_batch1.onnx');
const SEQ_MASK = path.join(FIXTURES, 'seq_mask_teacher.onnx');

let dir: string;
let xFile: string;
let yFile: string;
let tokFile: string;

before(() => {
  dir = tempDir();
  xFile = path.join(dir, 'x.npy');
  writeNpy(xFile, randomFloats(700 * 16, 3), [700, 16]);
  yFile = path.join(dir, 'y.npy');
  writeNpy(yFile, Int32Array.from({ length: 700 }, (_, i) => i % 4), [700]);
  // Token ids with right padding (0): a sequence teacher with a mask input.
  const [n, t] = [30, 9];
  const tokens = new BigInt64Array(n * t);
  for (let e = 0; e < n; e++) for (let p = 0; p < t; p++) tokens[e * t + p] = p < 1 + (e * 5) % t ? BigInt(1 + ((e * 31 + p * 7) % 4000)) : 0n;
  tokFile = path.join(dir, 'tokens.npy');
  writeNpy(tokFile, tokens, [n, t]);
});
after(() => fs.rmSync(dir, { recursive: true, force: true }));

/** The same cache made with the teacher on the main thread and on a worker thread. */
async function both(opts: Omit<Parameters<typeof precomputeLogits>[0], 'out'>, name: string): Promise<[Record<string, string>, Record<string, string>]> {
  const hashes = [];
  for (const inferenceThread of ['main', 'worker'] as const) {
    const out = path.join(dir, `${name}-${inferenceThread}`);
    const res = await precomputeLogits({ ...opts, out, inferenceThread, device: 'cpu', quiet: true });
    assert.ok(res.manifest?.complete, `${name} ${inferenceThread}: cache not complete`);
    assert.equal(res.inferenceThread, inferenceThread);
    hashes.push(dirHashes(path.join(out, 'shards')));
  }
  return [hashes[0], hashes[1]];
}

describe('teacher on its own thread (--inference-thread worker)', () => {
  test('writes byte-identical shards to the main-thread teacher: batches in flight across shard ends and a partial last batch', async () => {
    const [main, worker] = await both({ teacher: MLP, data: xFile, labels: yFile, batchSize: 64, shardRows: 150 }, 'mlp');
    assert.equal(Object.keys(main).length, 10);
    assert.deepEqual(worker, main);
  });

  test('byte-identical for a teacher whose batch dimension is fixed at 1 (padding rows dropped)', async () => {
    const [main, worker] = await both({ teacher: MLP_B1, data: xFile, shardRows: 300, format: 'arrow' }, 'b1');
    assert.deepEqual(worker, main);
  });

  test('byte-identical for a sequence teacher fed int64 ids and a mask, padding positions left out', async () => {
    const [main, worker] = await both({ teacher: SEQ_MASK, data: tokFile, padId: 0, topK: 8, shardRows: 7, batchSize: 4 }, 'seq');
    assert.equal(Object.keys(main).length, 10);
    assert.deepEqual(worker, main);
  });

  test('a model error and an inference error come back as the same one-line errors as on the main thread', () => {
    for (const mode of ['main', 'worker']) {
      const bad = runCli('precompute-logits', ['--teacher', path.join(FIXTURES, 'not_onnx.onnx'), '--data', xFile, '--out', path.join(dir, `bad-${mode}`), '--device', 'cpu', '--inference-thread', mode]);
      assert.equal(bad.code, 2, bad.stderr);
      assert.match(bad.stderr, /^error: --teacher .*not_onnx\.onnx: not an ONNX model/);
      const shape = runCli('precompute-logits', ['--teacher', MLP, '--data', xFile, '--out', path.join(dir, `shape-${mode}`), '--device', 'cpu', '--inference-thread', mode, '--input-shape', '4,4']);
      assert.equal(shape.code, 2, shape.stderr);
      assert.match(shape.stderr, /^error: --teacher mlp16\.onnx: inference failed on input \[\d+, 4, 4\] \(.*Invalid rank.*\); check --input-shape/m);
      for (const r of [bad, shape]) assert.doesNotMatch(r.stderr, /\n\s+at /, 'no stack trace');
    }
  });

  test('auto puts the teacher on its own thread when the main thread and the writer have cores to spare', () => {
    const cpu = { kind: 'cpu' as const, deviceId: 0 };
    const cuda = { kind: 'cuda' as const, deviceId: 1 };
    assert.equal(chooseInferenceThread('main', cuda, undefined, {}, 16), 'main');
    assert.equal(chooseInferenceThread('worker', cpu, undefined, {}, 2), 'worker');
    assert.equal(chooseInferenceThread('auto', cuda, undefined, {}, 16), 'worker');
    assert.equal(chooseInferenceThread('auto', cuda, undefined, {}, 2), 'main');
    assert.equal(chooseInferenceThread('auto', cpu, undefined, {}, 16), 'main');
    assert.equal(chooseInferenceThread('auto', cpu, 15, {}, 16), 'main');
    assert.equal(chooseInferenceThread('auto', cpu, 14, {}, 16), 'worker');
    assert.equal(chooseInferenceThread('auto', cpu, 1, {}, 2), 'main');
    assert.equal(chooseInferenceThread('auto', { kind: 'auto', deviceId: 0 }, undefined, { KDCACHE_ORT_CUDA_DIR: '/opt/ort-cuda' }, 16), 'worker');
    assert.equal(chooseInferenceThread('auto', cpu, undefined, { KDCACHE_ORT_CUDA_DIR: '/opt/ort-cuda' }, 16), 'main');
  });
});
