import type { ArgumentsCamelCase, Argv, CommandModule } from 'yargs';
import { BACKEND_CHOICES, type BackendChoice } from '../train/backend-choices.js';
import { parseList, parseNumber, positiveInt } from './common.js';

interface EvaluateArgs {
  model: string;
  data: string;
  labels?: string;
  labelColumn?: string;
  inputColumn?: string;
  logits?: string;
  inputShape?: string;
  scale?: string;
  mean?: string;
  std?: string;
  batchSize: number;
  backend: BackendChoice;
  json: boolean;
  quiet: boolean;
}

/** `kdcache evaluate`: accuracy of a trained student, and agreement with the teacher given its cache. */
export const evaluateCommand: CommandModule<object, EvaluateArgs> = {
  command: 'evaluate',
  describe: 'accuracy of a trained student on labelled data; agreement with the teacher when --logits is given',
  builder: (y: Argv<object>) => y
    .usage('$0 evaluate --model <dir|model.json> --data <file> [--labels <file>] [--logits <cache>] [options]\n\nPreprocessing: flags, else the --logits cache, else the summary.json train-student saved with the model.')
    .option('model', { type: 'string', demandOption: true, describe: 'train-student output directory or a tfjs model.json', group: 'Required:' })
    .option('data', { type: 'string', demandOption: true, describe: 'examples: .npy, IDX (plain or .gz), .parquet or .arrow', group: 'Required:' })
    .option('labels', { type: 'string', describe: 'labels (.npy or IDX)', group: 'Data:' })
    .option('label-column', { type: 'string', describe: 'label column of a Parquet/Arrow --data file', group: 'Data:' })
    .option('input-column', { type: 'string', describe: 'list column holding each example in a Parquet/Arrow --data file', group: 'Data:' })
    .option('logits', { type: 'string', describe: 'the logits cache made from --data: adds top-1 agreement and KL vs the teacher', group: 'Data:' })
    .option('input-shape', { type: 'string', describe: 'per-example shape, channels first, e.g. 1,28,28', group: 'Preprocessing:' })
    .option('scale', { type: 'string', describe: 'multiply raw values first, e.g. 1/255', group: 'Preprocessing:' })
    .option('mean', { type: 'string', describe: 'subtract after scaling: one value or one per channel', group: 'Preprocessing:' })
    .option('std', { type: 'string', describe: 'divide after subtracting: one value or one per channel', group: 'Preprocessing:' })
    .option('batch-size', { type: 'number', default: 512, describe: 'examples per forward pass' })
    .option('backend', { choices: BACKEND_CHOICES, default: 'auto' as BackendChoice, describe: 'tfjs backend' })
    .option('json', { type: 'boolean', default: false, describe: 'print the result as one JSON object' })
    .option('quiet', { type: 'boolean', default: false, describe: 'no status output on stderr' })
    .example('$0 evaluate --model out/student --data test.npy --labels test-labels.npy', 'test accuracy') as unknown as Argv<EvaluateArgs>,
  handler: async (a: ArgumentsCamelCase<EvaluateArgs>) => {
    // Loaded here, not at the top: the other kdcache commands need no TensorFlow.js.
    const { evaluateModel } = await import('../train/evaluate.js');
    const r = await evaluateModel({
      model: a.model,
      data: a.data,
      labels: a.labels,
      labelColumn: a.labelColumn,
      inputColumn: a.inputColumn,
      logits: a.logits,
      inputShape: parseList('input-shape', a.inputShape, true),
      scale: a.scale === undefined ? undefined : parseNumber('scale', a.scale),
      mean: parseList('mean', a.mean, false),
      std: parseList('std', a.std, false),
      batchSize: positiveInt('batch-size', a.batchSize),
      backend: a.backend,
      quiet: a.quiet || a.json,
    });
    if (a.json) {
      process.stdout.write(`${JSON.stringify(r)}\n`);
      return;
    }
    const lines = [`examples ${r.examples}`];
    if (r.accuracy !== null) lines.push(`accuracy ${r.accuracy.toFixed(4)}`);
    if (r.agreement !== null) lines.push(`teacher_agreement ${r.agreement.toFixed(4)}`);
    if (r.kl !== null) lines.push(`mean_kl ${r.kl.toFixed(4)}`);
    process.stdout.write(`${lines.join('\n')}\n`);
  },
};
