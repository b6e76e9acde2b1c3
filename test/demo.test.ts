import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { after, test } from 'node:test';
import { readIdx } from '../src/data/idx.js';
import { ROOT, runCli, tempDir, writeIdxU8 } from './helpers/data.js';

let dir: string | undefined;
after(() => { if (dir) fs.rmSync(dir, { recursive: true, force: true }); });

/** The bundled demo data, cut to the first `n` examples, in the same file layout the demo reads. */
async function subset(dst: string, split: 'train' | 'test', n: number): Promise<void> {
  const images = await readIdx(path.join(ROOT, 'data', `fashion-mnist-${split}-images.idx3-ubyte.gz`));
  const labels = await readIdx(path.join(ROOT, 'data', `fashion-mnist-${split}-labels.idx1-ubyte.gz`));
  writeIdxU8(path.join(dst, `fashion-mnist-${split}-images.idx3-ubyte.gz`), (images.data as Uint8Array).subarray(0, n * 784), [n, 28, 28], true);
  writeIdxU8(path.join(dst, `fashion-mnist-${split}-labels.idx1-ubyte.gz`), (labels.data as Uint8Array).subarray(0, n), [n], true);
}

test('the demo pipeline end to end on a reduced size: table printed, distilled student agrees with the teacher', async () => {
  dir = tempDir();
  const data = path.join(dir, 'data');
  fs.mkdirSync(data);
  fs.symlinkSync(path.join(ROOT, 'data', 'teacher.onnx'), path.join(data, 'teacher.onnx'));
  await subset(data, 'train', 2000);
  await subset(data, 'test', 500);
  const out = path.join(dir, 'out');
  const r = runCli('kdcache', ['demo', '--data', data, '--out', out, '--epochs', '4', '--quiet']);
  assert.equal(r.code, 0, r.stderr);
  const row = (name: string) => {
    const line = r.stdout.split('\n').find((l) => l.startsWith(name));
    assert.ok(line, `no "${name}" row in:\n${r.stdout}`);
    return [...line.matchAll(/(\d+\.\d+)%/g)].map((m) => Number(m[1]) / 100);
  };
  const [teacherAcc] = row('teacher');
  const [aloneAcc] = row('student alone');
  const [distAcc, distAgree] = row('student distilled');
  assert.ok(teacherAcc > 0.85, `teacher accuracy ${teacherAcc}`);
  // Chance is 10% for 10 classes; a student that learned from the cached logits agrees far above it.
  assert.ok(distAgree > 0.6, `distilled agreement ${distAgree}`);
  assert.ok(distAcc > 0.55 && aloneAcc > 0.55, `student accuracies ${aloneAcc}, ${distAcc}`);
  assert.match(r.stdout, /stage times \(training backend: \w+/);
  for (const d of ['cache-train/manifest.json', 'cache-test/manifest.json', 'student-alone/model.json', 'student-distilled/model.json']) {
    assert.ok(fs.existsSync(path.join(out, d)), `${d} missing`);
  }
});
