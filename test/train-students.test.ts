import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { after, before, describe, test } from 'node:test';
import * as tf from '@tensorflow/tfjs';
import { initBackend } from '../src/train/backend.js';
import { fileLoadHandler, fileSaveHandler, loadModel, saveModel } from '../src/train/model-io.js';
import { Rng } from '../src/train/rng.js';
import { ExampleTable } from '../src/train/examples.js';
import { MetricsAccumulator } from '../src/train/metrics.js';
import { buildMlp, createStudent, modelStudentInput, parseStudentSpec, specHasConv } from '../src/train/students.js';
import { createOptimizer, trainStep } from '../src/train/trainer.js';
import { UserError } from '../src/util/errors.js';
import { tempDir } from './helpers/data.js';

let dir: string;
before(async () => {
  dir = tempDir('kdcache-students-');
  await initBackend('wasm');
});
after(() => fs.rmSync(dir, { recursive: true, force: true }));

const isUserError = (pattern: RegExp) => (err: unknown) => err instanceof UserError && pattern.test(err.message) && !err.message.includes('\n');

function outputShape(model: tf.LayersModel, inputShape: number[], batch = 3): number[] {
  const x = tf.zeros([batch, ...inputShape]);
  const y = model.predict(x) as tf.Tensor;
  const shape = y.shape;
  tf.dispose([x, y]);
  return shape;
}

describe('student specs', () => {
  test('parse mlp, cnn, model paths; reject bad specs with one line naming --student', () => {
    assert.deepEqual(parseStudentSpec('mlp:256,128'), { kind: 'mlp', hidden: [256, 128] });
    assert.deepEqual(parseStudentSpec('mlp'), { kind: 'mlp', hidden: [] });
    assert.deepEqual(parseStudentSpec('cnn:32,64'), { kind: 'cnn', channels: [32, 64] });
    assert.deepEqual(parseStudentSpec('models/s/model.json'), { kind: 'file', path: 'models/s/model.json' });
    assert.throws(() => parseStudentSpec('mlp:256,x'), isUserError(/--student.*"x" is not a layer size/));
    assert.throws(() => parseStudentSpec('mlp:0'), isUserError(/--student/));
    assert.throws(() => parseStudentSpec('cnn'), isUserError(/at least one conv/));
    assert.throws(() => parseStudentSpec('resnet'), isUserError(/unknown student/));
  });

  test('mlp takes the flat vector and outputs [batch, classes] logits', async () => {
    const s = await createStudent(parseStudentSpec('mlp:32,16'), { preShape: [1, 4, 4], classes: 5, seed: 1 });
    assert.deepEqual(s.input, { shape: [16], layout: 'as-is' });
    assert.deepEqual(outputShape(s.model, s.input.shape), [3, 5]);
    assert.equal(s.hasConv, false);
    assert.equal((s.model.layers.at(-1)!.getConfig() as { activation: string }).activation, 'linear');
  });

  test('cnn takes channels-last images: [C,H,W] -> [H,W,C], [H,W] -> [H,W,1]', async () => {
    const rgb = await createStudent(parseStudentSpec('cnn:4,8'), { preShape: [3, 8, 8], classes: 10, seed: 1 });
    assert.deepEqual(rgb.input, { shape: [8, 8, 3], layout: 'hwc' });
    assert.deepEqual(outputShape(rgb.model, rgb.input.shape), [3, 10]);
    assert.equal(rgb.hasConv, true);
    const gray = await createStudent(parseStudentSpec('cnn:4'), { preShape: [6, 6], classes: 2, seed: 1 });
    assert.deepEqual(gray.input, { shape: [6, 6, 1], layout: 'as-is' });
    assert.deepEqual(outputShape(gray.model, gray.input.shape), [3, 2]);
    await assert.rejects(createStudent(parseStudentSpec('cnn:4'), { preShape: [16], classes: 2, seed: 1 }), isUserError(/not an image/));
    await assert.rejects(createStudent(parseStudentSpec('cnn:2,2,2,2'), { preShape: [1, 4, 4], classes: 2, seed: 1 }), isUserError(/too small/));
  });

  test('same seed, same initial weights; another seed, other weights', async () => {
    const w = async (seed: number) => {
      const s = await createStudent(parseStudentSpec('mlp:8'), { preShape: [6], classes: 3, seed });
      return s.model.getWeights().map((t) => Array.from(t.dataSync()));
    };
    assert.deepEqual(await w(5), await w(5));
    assert.notDeepEqual(await w(5), await w(6));
  });

  test('model input matching: flat, same shape, channels-last, free dims; mismatch is a one-line error', () => {
    assert.deepEqual(modelStudentInput([784], [1, 28, 28], 'm'), { shape: [784], layout: 'as-is' });
    assert.deepEqual(modelStudentInput([28, 28, 3], [3, 28, 28], 'm'), { shape: [28, 28, 3], layout: 'hwc' });
    assert.deepEqual(modelStudentInput([3, 28, 28], [3, 28, 28], 'm'), { shape: [3, 28, 28], layout: 'as-is' });
    assert.deepEqual(modelStudentInput([null, null, 1], [1, 5, 7], 'm'), { shape: [5, 7, 1], layout: 'hwc' });
    assert.deepEqual(modelStudentInput([5, 7, 1], [5, 7], 'm'), { shape: [5, 7, 1], layout: 'as-is' });
    assert.throws(() => modelStudentInput([100], [1, 28, 28], 'm.json'), isUserError(/m\.json: the model's input shape \[100\] does not fit/));
  });
});

describe('model files', () => {
  test('save/load round trip via the fs IOHandler: standard files, same weights, same predictions', async () => {
    const model = buildMlp([6], [5], 3, new Rng(3));
    const out = path.join(dir, 'rt');
    await saveModel(model, out);
    const json = JSON.parse(fs.readFileSync(path.join(out, 'model.json'), 'utf8'));
    assert.equal(json.format, 'layers-model');
    assert.deepEqual(json.weightsManifest[0].paths, ['./weights.bin']);
    assert.equal(fs.statSync(path.join(out, 'weights.bin')).size, (6 * 5 + 5 + 5 * 3 + 3) * 4);
    assert.deepEqual(fs.readdirSync(out).sort(), ['model.json', 'weights.bin'], 'no temp files left');

    for (const loaded of [await loadModel(out), await loadModel(path.join(out, 'model.json')), await tf.loadLayersModel(fileLoadHandler(out))]) {
      assert.deepEqual(loaded.getWeights().map((t) => Array.from(t.dataSync())), model.getWeights().map((t) => Array.from(t.dataSync())));
      const x = tf.tensor2d(Float32Array.from({ length: 12 }, (_, i) => Math.sin(i)), [2, 6]);
      assert.deepEqual(Array.from((loaded.predict(x) as tf.Tensor).dataSync()), Array.from((model.predict(x) as tf.Tensor).dataSync()));
    }
    // also through tfjs' own save path (model.save with our handler)
    await model.save(fileSaveHandler(path.join(dir, 'rt2')));
    assert.ok(fs.existsSync(path.join(dir, 'rt2', 'weights.bin')));
  });

  test('a model.json student: class-count mismatch, softmax output, missing weights are one-line errors', async () => {
    const three = path.join(dir, 'three');
    await saveModel(buildMlp([16], [8], 3, new Rng(1)), three);
    const spec = parseStudentSpec(path.join(three, 'model.json'));
    await assert.rejects(createStudent(spec, { preShape: [16], classes: 4, seed: 0 }), isUserError(/output shape \[null,3\] does not match the teacher's 4 classes/));
    const ok = await createStudent(spec, { preShape: [16], classes: 3, seed: 0 });
    assert.deepEqual(ok.input, { shape: [16], layout: 'as-is' });

    const soft = tf.sequential({ layers: [tf.layers.dense({ units: 4, inputShape: [16], activation: 'softmax' })] });
    const softDir = path.join(dir, 'soft');
    await saveModel(soft, softDir);
    await assert.rejects(createStudent(parseStudentSpec(path.join(softDir, 'model.json')), { preShape: [16], classes: 4, seed: 0 }), isUserError(/softmax; students must output raw logits/));

    fs.rmSync(path.join(three, 'weights.bin'));
    await assert.rejects(loadModel(three), isUserError(/weights\.bin: no such file/));
    fs.writeFileSync(path.join(dir, 'bad.json'), '{"hello": 1}');
    await assert.rejects(loadModel(path.join(dir, 'bad.json')), isUserError(/not a tfjs LayersModel model\.json/));
  });

  test('specHasConv looks into model.json topologies', async () => {
    const cnnDir = path.join(dir, 'cnn');
    const s = await createStudent(parseStudentSpec('cnn:2'), { preShape: [1, 4, 4], classes: 2, seed: 0 });
    await saveModel(s.model, cnnDir);
    assert.equal(await specHasConv(parseStudentSpec(path.join(cnnDir, 'model.json'))), true);
    assert.equal(await specHasConv(parseStudentSpec('mlp:3')), false);
  });
});

describe('training step', () => {
  test('loss goes down, metrics accumulate, no tensors leak across steps', async () => {
    for (const optimizer of ['adam', 'sgd'] as const) {
      const s = await createStudent(parseStudentSpec('mlp:16'), { preShape: [8], classes: 3, seed: 2 });
      const ctx = { model: s.model, optimizer: createOptimizer(optimizer, 0.05), loss: { alpha: 0.5, temperature: 2, kind: 'kd' as const }, inputShape: [8], classes: 3 };
      const batch = new ExampleTable(32, 8, 3);
      for (let i = 0; i < 32; i++) {
        for (let j = 0; j < 8; j++) batch.x[i * 8 + j] = Math.sin(i * 3 + j);
        for (let k = 0; k < 3; k++) batch.t[i * 3 + k] = 2 * batch.x[i * 8 + k];
        const t = batch.t.subarray(i * 3, i * 3 + 3);
        batch.y[i] = t.indexOf(Math.max(...t)); // the teacher's class: learnable
      }
      batch.length = 32;
      const metrics = new MetricsAccumulator();
      const losses = [trainStep(ctx, batch, metrics), trainStep(ctx, batch, metrics)];
      const tensors = tf.memory().numTensors;
      for (let i = 0; i < 30; i++) losses.push(trainStep(ctx, batch, metrics));
      assert.equal(tf.memory().numTensors, tensors, `${optimizer}: tensors leak`);
      assert.ok(losses.at(-1)! < losses[0] * 0.5, `${optimizer}: loss ${losses[0]} -> ${losses.at(-1)}`);
      const v = metrics.values();
      assert.equal(v.examples, 32 * 32);
      assert.ok(v.accuracy !== null && v.agreement !== null && v.kl !== null && v.loss !== null);
      s.model.dispose();
      ctx.optimizer.dispose();
    }
  });
});
