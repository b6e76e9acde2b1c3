/**
 * Student models: built from a short spec (`mlp:256,128`, `cnn:32,64`) or loaded from a tfjs
 * model.json. Students end in raw logits (no softmax): the loss applies its own (tempered) softmax.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { UserError } from '../util/errors.js';
import { product } from '../util/dtype.js';
import { loadModel, readModelJson, resolveModelJson } from './model-io.js';
import { Rng } from './rng.js';

export type StudentSpec =
  | { kind: 'mlp'; hidden: number[] }
  | { kind: 'cnn'; channels: number[] }
  | { kind: 'file'; path: string };

/** How examples (preprocessed, channels-first as recorded in the cache) are laid out for the student. */
export type InputLayout = 'as-is' | 'hwc';

export interface StudentInput {
  /** per-example shape the model consumes (batch dimension excluded) */
  shape: number[];
  layout: InputLayout;
}

const SPEC_HELP = "expected 'mlp:256,128' (hidden sizes), 'cnn:32,64' (conv channels) or a path to a tfjs model.json";

export function parseStudentSpec(spec: string): StudentSpec {
  const m = /^(mlp|cnn)(?::(.*))?$/.exec(spec.trim());
  if (!m) {
    if (spec.endsWith('.json') || spec.includes('/') || spec.includes(path.sep) || fs.existsSync(spec)) return { kind: 'file', path: spec };
    throw new UserError(`--student ${JSON.stringify(spec)}: unknown student; ${SPEC_HELP}`);
  }
  const sizes = (m[2] ?? '').split(',').map((s) => s.trim()).filter((s) => s !== '');
  const numbers = sizes.map((s) => {
    const n = Number(s);
    if (!Number.isInteger(n) || n < 1 || n > 1 << 16) {
      throw new UserError(`--student ${JSON.stringify(spec)}: ${JSON.stringify(s)} is not a layer size (a positive integer); ${SPEC_HELP}`);
    }
    return n;
  });
  if (m[1] === 'cnn') {
    if (numbers.length === 0) throw new UserError(`--student ${JSON.stringify(spec)}: a cnn needs at least one conv layer, e.g. cnn:32,64`);
    return { kind: 'cnn', channels: numbers };
  }
  return { kind: 'mlp', hidden: numbers };
}

/**
 * The student's input shape for a preprocessed example of shape `pre` ([C,H,W], [H,W] or [D]).
 * MLPs take the flat vector; CNNs take channels-last images, as tfjs convolutions expect.
 */
export function builtinStudentInput(spec: StudentSpec, pre: number[]): StudentInput {
  if (spec.kind === 'mlp') return { shape: [product(pre)], layout: 'as-is' };
  if (spec.kind === 'cnn') {
    if (pre.length === 3) {
      const [c, h, w] = pre;
      return { shape: [h, w, c], layout: 'hwc' };
    }
    if (pre.length === 2) return { shape: [pre[0], pre[1], 1], layout: 'as-is' };
    throw new UserError(`--student cnn: the cache's input shape [${pre}] is not an image ([C,H,W] or [H,W]); use an mlp student`);
  }
  throw new Error('builtinStudentInput: file students take their input shape from the model');
}

/**
 * Match a loaded model's declared input shape (nulls are free dimensions) to the cache's
 * preprocessed shape: flat, the same shape, or the channels-last version of [C,H,W].
 */
export function modelStudentInput(modelShape: (number | null)[], pre: number[], where: string): StudentInput {
  const fits = (cand: number[]) => cand.length === modelShape.length && cand.every((d, i) => modelShape[i] === null || modelShape[i] === d);
  const flat = [product(pre)];
  if (pre.length === 3) {
    const [c, h, w] = pre;
    // Prefer channels-last when both fit (C = W); tfjs convolutions are channels-last by default.
    if (fits([h, w, c])) return { shape: [h, w, c], layout: 'hwc' };
  }
  if (fits(pre)) return { shape: pre, layout: 'as-is' };
  if (pre.length === 2 && fits([pre[0], pre[1], 1])) return { shape: [pre[0], pre[1], 1], layout: 'as-is' };
  if (fits(flat)) return { shape: flat, layout: 'as-is' };
  throw new UserError(`${where}: the model's input shape [${modelShape.map((d) => d ?? 'null')}] does not fit the cache's preprocessed input [${pre}] (accepted: [${pre}], its channels-last form, or [${flat}])`);
}

export interface BuildOptions {
  /** preprocessed example shape recorded in the cache (channels-first) */
  preShape: number[];
  classes: number;
  seed: number;
}

export interface Student {
  model: tf.LayersModel;
  input: StudentInput;
  spec: StudentSpec;
  hasConv: boolean;
}

export async function createStudent(spec: StudentSpec, opts: BuildOptions): Promise<Student> {
  if (spec.kind === 'file') {
    const model = await loadModel(spec.path);
    const input = modelStudentInput(model.inputs[0].shape.slice(1), opts.preShape, spec.path);
    checkStudentOutput(model, opts.classes, spec.path);
    return { model, input, spec, hasConv: modelHasConv(model) };
  }
  const input = builtinStudentInput(spec, opts.preShape);
  const model = spec.kind === 'mlp'
    ? buildMlp(input.shape, spec.hidden, opts.classes, new Rng(opts.seed))
    : buildCnn(input.shape, spec.channels, opts.classes, new Rng(opts.seed));
  return { model, input, spec, hasConv: spec.kind === 'cnn' };
}

/** Without building anything: will this student contain convolutions? (The backend choice depends on it.) */
export async function specHasConv(spec: StudentSpec): Promise<boolean> {
  if (spec.kind === 'cnn') return true;
  if (spec.kind === 'mlp') return false;
  const json = await readModelJson(await resolveModelJson(spec.path));
  return /"class_name"\s*:\s*"(Conv|SeparableConv|DepthwiseConv)/.test(JSON.stringify(json.modelTopology));
}

function modelHasConv(model: tf.LayersModel): boolean {
  return model.layers.some((l) => /Conv/.test(l.getClassName()));
}

function glorot(rng: Rng): ReturnType<typeof tf.initializers.glorotUniform> {
  return tf.initializers.glorotUniform({ seed: rng.nextU32() });
}

export function buildMlp(inputShape: number[], hidden: number[], classes: number, rng: Rng): tf.LayersModel {
  const model = tf.sequential();
  hidden.forEach((units, i) => {
    model.add(tf.layers.dense({
      units, activation: 'relu', kernelInitializer: glorot(rng), name: `hidden_${i + 1}`,
      ...(i === 0 ? { inputShape } : {}),
    }));
  });
  model.add(tf.layers.dense({
    units: classes, kernelInitializer: glorot(rng), name: 'logits',
    ...(hidden.length === 0 ? { inputShape } : {}),
  }));
  return model;
}

export function buildCnn(inputShape: number[], channels: number[], classes: number, rng: Rng): tf.LayersModel {
  let [h, w] = inputShape;
  const model = tf.sequential();
  channels.forEach((filters, i) => {
    if (h < 2 || w < 2) {
      throw new UserError(`--student cnn:${channels.join(',')}: the ${h}x${w} feature map after ${i} conv+pool blocks is too small for another 2x2 pool; use fewer conv layers`);
    }
    model.add(tf.layers.conv2d({
      filters, kernelSize: 3, padding: 'same', activation: 'relu', kernelInitializer: glorot(rng), name: `conv_${i + 1}`,
      ...(i === 0 ? { inputShape } : {}),
    }));
    model.add(tf.layers.maxPooling2d({ poolSize: 2, strides: 2, name: `pool_${i + 1}` }));
    h = Math.floor(h / 2);
    w = Math.floor(w / 2);
  });
  model.add(tf.layers.flatten({ name: 'flatten' }));
  model.add(tf.layers.dense({ units: classes, kernelInitializer: glorot(rng), name: 'logits' }));
  return model;
}

/** The student's output must be [batch, classes] raw logits. */
export function checkStudentOutput(model: tf.LayersModel, classes: number, where: string): void {
  if (model.outputs.length !== 1) throw new UserError(`${where}: the student has ${model.outputs.length} outputs; it needs exactly one (the class logits)`);
  const shape = model.outputs[0].shape;
  const width = shape[shape.length - 1];
  if (shape.length !== 2 || width !== classes) {
    throw new UserError(`${where}: the student's output shape [${shape.map((d) => d ?? 'null')}] does not match the teacher's ${classes} classes; its last layer must output [batch, ${classes}] logits`);
  }
  const last = model.layers[model.layers.length - 1];
  const activation = (last.getConfig() as { activation?: string }).activation;
  if (activation === 'softmax' || last.getClassName() === 'Softmax') {
    throw new UserError(`${where}: the student ends in a softmax; students must output raw logits (the loss applies its own softmax): set the last layer's activation to 'linear'`);
  }
}

/** Wrap an already loaded model (a checkpoint) with the input layout its spec implies. */
export function studentFromModel(model: tf.LayersModel, spec: StudentSpec, preShape: number[], classes: number, where: string): Student {
  const input = spec.kind === 'file'
    ? modelStudentInput(model.inputs[0].shape.slice(1), preShape, where)
    : builtinStudentInput(spec, preShape);
  checkStudentOutput(model, classes, where);
  return { model, input, spec, hasConv: modelHasConv(model) };
}

export function countParameters(model: tf.LayersModel): number {
  return model.trainableWeights.reduce((n, w) => n + (w.shape as number[]).reduce((a, b) => a * b, 1), 0);
}
