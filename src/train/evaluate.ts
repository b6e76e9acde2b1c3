/**
 * kdcache evaluate: accuracy of a saved student on a labelled dataset, and its agreement with the
 * teacher when the dataset's logits cache is given. Preprocessing comes from flags, else the cache,
 * else the summary.json that train-student wrote next to the model.
 */
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { loadLabels, openDataset } from '../data/open.js';
import type { Dataset } from '../data/types.js';
import type { Manifest, Preprocessing } from '../shards/manifest-types.js';
import { product } from '../util/dtype.js';
import { UserError } from '../util/errors.js';
import { readJsonFile } from '../util/fsx.js';
import { type BackendChoice, initBackend } from './backend.js';
import { bindData } from './bind.js';
import { type ChunkSource } from './stream.js';
import { cacheSource, checkShards, datasetSource, openCache } from './cache.js';
import { loadModel, readModelJson, resolveModelJson } from './model-io.js';
import { modelStudentInput } from './students.js';
import { evaluate } from './trainer.js';
import { checkLabelRange } from './validation.js';

export interface EvaluateOptions {
  /** directory written by train-student, or a model.json */
  model: string;
  data: string;
  labels?: string;
  labelColumn?: string;
  inputColumn?: string;
  /** the cache made from `data`: adds agreement with the teacher */
  logits?: string;
  inputShape?: number[];
  scale?: number;
  mean?: number[];
  std?: number[];
  batchSize?: number;
  backend?: BackendChoice;
  quiet?: boolean;
  log?: (line: string) => void;
}

export interface EvaluateResult {
  model: string;
  data: string;
  examples: number;
  accuracy: number | null;
  /** top-1 agreement with the teacher (with a cache) */
  agreement: number | null;
  /** mean KL(teacher || student) at T = 1 (with a cache) */
  kl: number | null;
  preprocessing: Preprocessing;
  preprocessing_from: 'flags' | 'cache' | 'summary' | 'defaults';
  backend: string;
}

export async function evaluateModel(opts: EvaluateOptions): Promise<EvaluateResult> {
  const log = opts.log ?? ((line: string) => { if (!opts.quiet) process.stderr.write(`${line}\n`); });
  const batchSize = opts.batchSize ?? 512;
  if (!(Number.isInteger(batchSize) && batchSize >= 1)) throw new UserError(`--batch-size ${batchSize}: must be a positive integer`);
  if (opts.labels && opts.labelColumn) throw new UserError('--labels and --label-column are exclusive: give one');
  if (!opts.logits && !opts.labels && !opts.labelColumn) {
    throw new UserError('evaluate needs --labels <file> (or --label-column), or --logits <cache> to measure agreement with the teacher');
  }
  const jsonPath = await resolveModelJson(opts.model);
  const topology = JSON.stringify((await readModelJson(jsonPath)).modelTopology);

  let manifest: Manifest | null = null;
  if (opts.logits) {
    manifest = await openCache(opts.logits);
    await checkShards(opts.logits, { checksums: false });
  }
  const summaryPre = await summaryPreprocessing(path.dirname(jsonPath));
  const base = manifest?.preprocessing ?? summaryPre;
  const pre = mergePreprocessing(base, opts);
  const from: EvaluateResult['preprocessing_from'] = hasPreFlags(opts) ? 'flags' : manifest ? 'cache' : summaryPre ? 'summary' : 'defaults';

  const backend = await initBackend(opts.backend ?? 'auto', { needsConv: /"class_name"\s*:\s*"(Conv|SeparableConv|DepthwiseConv)/.test(topology) });
  const model = await loadModel(jsonPath);
  const outShape = model.outputs[0].shape;
  const classes = outShape[outShape.length - 1];
  if (model.outputs.length !== 1 || outShape.length !== 2 || !classes) {
    throw new UserError(`${jsonPath}: the model's output shape [${outShape.map((d) => d ?? 'null')}] is not [batch, classes]`);
  }
  if (manifest && manifest.output.width !== classes) {
    throw new UserError(`--logits ${opts.logits}: the teacher has ${manifest.output.width} classes but the model outputs ${classes}; pass the cache of this model's task`);
  }
  const input = modelStudentInput(model.inputs[0].shape.slice(1), pre.input_shape, jsonPath);
  const transform = { pre, layout: input.layout };

  let source: ChunkSource;
  let dataset: Dataset | null = null;
  try {
    if (manifest) {
      const binding = await bindData(manifest, opts.logits!, { data: opts.data, labels: opts.labels, labelColumn: opts.labelColumn });
      dataset = binding.dataset;
      source = cacheSource({ cacheDir: opts.logits!, manifest, transform, dataset, labels: binding.labels });
    } else {
      dataset = await openDataset(opts.data, opts.inputColumn ? { inputColumn: opts.inputColumn } : {});
      if (product(dataset.exampleShape) !== product(pre.input_shape)) {
        throw new UserError(`--data ${opts.data}: examples have ${product(dataset.exampleShape)} values ([${dataset.exampleShape}]), the preprocessing's input shape [${pre.input_shape}] has ${product(pre.input_shape)}; fix --input-shape`);
      }
      const set = await loadLabels({ labels: opts.labels, labelColumn: opts.labelColumn, data: opts.data });
      if (!set) throw new Error('unreachable: labels were checked above');
      if (set.labels.length !== dataset.count) throw new UserError(`${opts.labels ?? opts.labelColumn}: ${set.labels.length} labels for ${dataset.count} examples in ${opts.data}; they must match one to one`);
      checkLabelRange(set.labels, classes, opts.labels ? `--labels ${opts.labels}` : `--label-column ${opts.labelColumn}`);
      source = datasetSource(dataset, transform, set.labels);
    }
    log(backend.message); // after every check: an error stays the single line of output
    const m = await evaluate(model, source, input.shape, { batchSize });
    return {
      model: jsonPath, data: opts.data, examples: m.examples, accuracy: m.accuracy, agreement: m.agreement, kl: m.kl,
      preprocessing: pre, preprocessing_from: from, backend: backend.name,
    };
  } finally {
    await dataset?.close();
  }
}

function hasPreFlags(o: EvaluateOptions): boolean {
  return o.inputShape !== undefined || o.scale !== undefined || o.mean !== undefined || o.std !== undefined;
}

async function summaryPreprocessing(dir: string): Promise<Preprocessing | null> {
  const file = path.join(dir, 'summary.json');
  if (!(await fs.access(file).then(() => true, () => false))) return null;
  const s = await readJsonFile<{ preprocessing?: Preprocessing }>(file);
  return s?.preprocessing && Array.isArray(s.preprocessing.input_shape) ? s.preprocessing : null;
}

/** Flags override the recorded preprocessing field by field. */
export function mergePreprocessing(base: Preprocessing | null, flags: Pick<EvaluateOptions, 'inputShape' | 'scale' | 'mean' | 'std'>): Preprocessing {
  const inputShape = flags.inputShape ?? base?.input_shape;
  if (!inputShape) {
    throw new UserError('no preprocessing known for this model: give --input-shape (and --scale/--mean/--std as used in training), --logits <cache>, or a model directory with the summary.json train-student wrote');
  }
  if (inputShape.length === 0 || inputShape.some((d) => !Number.isInteger(d) || d < 1)) throw new UserError(`--input-shape ${inputShape.join(',')}: dimensions must be positive integers`);
  const channels = inputShape.length >= 2 ? inputShape[0] : 1;
  const perChannel = (name: string, v: number[] | undefined, fallback: number[]): number[] => {
    const out = v ?? fallback;
    if (out.length !== 1 && out.length !== channels) throw new UserError(`--${name}: ${out.length} values for ${channels} channels (dimension 0 of input shape [${inputShape.join(', ')}]); give 1 or ${channels}`);
    if (out.some((x) => !Number.isFinite(x))) throw new UserError(`--${name}: values must be finite numbers`);
    return out;
  };
  const std = perChannel('std', flags.std, base?.std ?? [1]);
  if (std.some((s) => s === 0)) throw new UserError('--std: values must be non-zero');
  const scale = flags.scale ?? base?.scale ?? 1;
  if (!Number.isFinite(scale)) throw new UserError('--scale: must be a finite number');
  return { input_shape: inputShape, input_type: 'float32', scale, mean: perChannel('mean', flags.mean, base?.mean ?? [0]), std };
}
