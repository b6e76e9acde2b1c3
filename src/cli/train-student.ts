#!/usr/bin/env node
import { hideBin } from 'yargs/helpers';
import { BACKEND_CHOICES } from '../train/backend-choices.js';
import { TRAIN_DEFAULTS } from '../train/options.js';
import { runMain } from '../util/errors.js';
import { cli, parseNumber } from './common.js';

const D = TRAIN_DEFAULTS;

export function trainStudentCommand(argv: string[]) {
  return cli('train-student', argv)
    .usage('$0 --logits <cache dir> --student <spec> --out <dir> [options]\n\nTrain a TensorFlow.js student from cached teacher logits (the teacher is never loaded).\nloss = alpha·T²·KL(softmax(z_t/T) ‖ softmax(z_s/T)) + (1 − alpha)·CE(y, z_s)')
    .option('logits', { type: 'string', demandOption: true, describe: 'cache directory written by precompute-logits', group: 'Required:' })
    .option('student', { type: 'string', demandOption: true, describe: "mlp:256,128 (ReLU hidden sizes) | cnn:32,64 (3x3 conv+ReLU+maxpool per entry, then dense) | path/to/model.json (tfjs LayersModel, fresh or pretrained; must output raw logits)", group: 'Required:' })
    .option('out', { type: 'string', demandOption: true, describe: 'output directory: model.json, weights.bin, metrics.jsonl, summary.json, checkpoint/', group: 'Required:' })
    .option('data', { type: 'string', describe: 'the dataset the cache was made from (checked by sha256); default: inputs stored in the cache (--store-inputs)', group: 'Data:' })
    .option('labels', { type: 'string', describe: 'labels (.npy/IDX) when the cache has none; needed for --alpha < 1', group: 'Data:' })
    .option('label-column', { type: 'string', describe: 'label column of a Parquet/Arrow --data file', group: 'Data:' })
    .option('val-fraction', { type: 'string', describe: 'hold out cached rows whose hash(row index) < f (same rows every run, any seed): accuracy, teacher agreement, KL', group: 'Validation:' })
    .option('val-data', { type: 'string', describe: 'separate validation examples (accuracy only: no teacher logits)', group: 'Validation:' })
    .option('val-labels', { type: 'string', describe: 'labels of --val-data', group: 'Validation:' })
    .option('val-label-column', { type: 'string', describe: 'label column of a Parquet/Arrow --val-data file', group: 'Validation:' })
    .option('patience', { type: 'string', describe: `early stopping: stop after N epochs without improvement (default ${D.patience}: off)`, group: 'Validation:' })
    .option('monitor', { choices: ['auto', 'accuracy', 'agreement'] as const, default: D.monitor, describe: 'validation metric for early stopping and the saved model (auto: accuracy when labels exist)', group: 'Validation:' })
    .option('alpha', { type: 'string', describe: `weight of the teacher term, 1 = pure distillation, 0 = labels only (default ${D.alpha})`, group: 'Loss:' })
    .option('temperature', { type: 'string', alias: 'T', describe: `softmax temperature T of the KD term (default ${D.temperature})`, group: 'Loss:' })
    .option('loss', { choices: ['kd', 'mse'] as const, default: D.loss, describe: 'kd: T²·KL on softened outputs; mse: mean squared error between logits (T unused)', group: 'Loss:' })
    .option('tail', { choices: ['ignore', 'uniform', 'bucket'] as const, default: D.tail, describe: 'top-k caches: the unstored classes\' mass is dropped (ignore), spread evenly (uniform) or one extra outcome (bucket)', group: 'Loss:' })
    .option('epochs', { type: 'string', describe: `passes over the cache (default ${D.epochs})`, group: 'Optimisation:' })
    .option('batch-size', { type: 'string', describe: `examples per step (default ${D.batchSize})`, group: 'Optimisation:' })
    .option('lr', { type: 'string', describe: `learning rate (default ${D.lr})`, group: 'Optimisation:' })
    .option('optimizer', { choices: ['adam', 'sgd'] as const, default: D.optimizer, describe: 'adam, or sgd with momentum 0.9', group: 'Optimisation:' })
    .option('seed', { type: 'string', describe: `seed for weight init, shard order and shuffling; same seed + backend = same result (default ${D.seed})`, group: 'Optimisation:' })
    .option('shuffle-buffer', { type: 'string', describe: `rows in the shuffle buffer; bounds memory (default ${D.shuffleBuffer}; 0 = shard order only)`, group: 'Optimisation:' })
    .option('backend', { choices: BACKEND_CHOICES, default: D.backend, describe: 'auto takes the fastest that loads: tensorflow (tfjs-node, if installed), native (wasm + OpenBLAS kernels, built by npm run build), wasm, cpu; kdcache backends lists them', group: 'Execution:' })
    .option('resume', { type: 'boolean', default: false, describe: 'continue from the last complete checkpoint in --out', group: 'Execution:' })
    .option('skip-checksums', { type: 'boolean', default: false, describe: 'do not sha256 every shard before training (sizes and metadata are checked; each shard\'s sha256 is still checked when it is read)', group: 'Execution:' })
    .option('teacher', { type: 'string', describe: 'the teacher .onnx: refuse the cache unless it was made with this very file (sha256)', group: 'Data:' })
    .option('quiet', { type: 'boolean', default: false, describe: 'no progress or status output' })
    .example('$0 --logits out/cache --data train.npy --student mlp:256,128 --val-fraction 0.1 --out out/student', 'distil into an MLP, 10% of rows held out')
    .example('$0 --logits out/cache --student cnn:32,64 --alpha 0.5 --temperature 4 --labels y.npy --out out/cnn', 'half distillation, half labels, inputs from the cache')
    .help();
}

// Numeric flags are parsed here, not by yargs, so that '1/5' works and 'fast' names the flag in its error.
const num = (flag: string, v: unknown) => (v === undefined ? undefined : parseNumber(flag, v as string | number));

export async function main(argv: string[]): Promise<void> {
  const a = await trainStudentCommand(argv).parseAsync();
  // Loaded once the flags are parsed: --help and flag errors need no TensorFlow.js.
  const { trainStudent } = await import('../train/run.js');
  const s = await trainStudent({
    logits: a.logits,
    student: a.student,
    out: a.out,
    data: a.data,
    labels: a.labels,
    labelColumn: a.labelColumn,
    valData: a.valData,
    valLabels: a.valLabels,
    valLabelColumn: a.valLabelColumn,
    valFraction: num('val-fraction', a.valFraction),
    patience: num('patience', a.patience),
    monitor: a.monitor,
    alpha: num('alpha', a.alpha),
    temperature: num('temperature', a.temperature),
    loss: a.loss,
    tail: a.tail,
    epochs: num('epochs', a.epochs),
    batchSize: num('batch-size', a.batchSize),
    lr: num('lr', a.lr),
    optimizer: a.optimizer,
    seed: num('seed', a.seed),
    shuffleBuffer: num('shuffle-buffer', a.shuffleBuffer),
    backend: a.backend,
    resume: a.resume,
    skipChecksums: a.skipChecksums,
    teacher: a.teacher,
    quiet: a.quiet,
  });
  if (!a.quiet) {
    const parts = [`model ${s.model}`, `epochs ${s.epochs}`];
    if (s.val_accuracy !== null) parts.push(`val_accuracy ${s.val_accuracy.toFixed(4)}`);
    if (s.teacher_agreement !== null) parts.push(`teacher_agreement ${s.teacher_agreement.toFixed(4)}`);
    parts.push(`examples/s ${Math.round(s.examples_per_second)}`, `backend ${s.backend}`);
    process.stdout.write(`${parts.join('  ')}\n`);
  }
}

await runMain(() => main(hideBin(process.argv)));
