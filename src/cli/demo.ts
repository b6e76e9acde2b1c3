import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Argv, CommandModule } from 'yargs';

const DATA = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../../data');

interface DemoArgs { out: string; data: string; student: string; epochs: number; alpha: number; temperature: number; lr: number; batchSize: number; seed: number; quiet: boolean }

export const demoCommand: CommandModule<object, DemoArgs> = {
  command: 'demo',
  describe: 'run the whole pipeline on the bundled Fashion-MNIST demo and print a comparison table',
  builder: (y) => y
    .option('out', { type: 'string', default: 'out/demo', describe: 'where caches and students go' })
    .option('data', { type: 'string', default: DATA, describe: 'folder with teacher.onnx and the demo IDX files' })
    .option('student', { type: 'string', default: 'mlp:128', describe: 'student spec' })
    .option('epochs', { type: 'number', default: 40 })
    .option('alpha', { type: 'number', default: 0.9 })
    .option('temperature', { type: 'number', default: 4 })
    .option('lr', { type: 'number', default: 1e-3 })
    .option('batch-size', { type: 'number', default: 128 })
    .option('seed', { type: 'number', default: 0 })
    .option('quiet', { type: 'boolean', default: false }) as unknown as Argv<DemoArgs>,
  handler: async (a) => {
    const f = (name: string) => path.join(a.data, name);
    const { formatDemoTable, runDemo } = await import('../demo/demo.js');
    const report = await runDemo({
      out: a.out, teacher: f('teacher.onnx'),
      trainImages: f('fashion-mnist-train-images.idx3-ubyte.gz'), trainLabels: f('fashion-mnist-train-labels.idx1-ubyte.gz'),
      testImages: f('fashion-mnist-test-images.idx3-ubyte.gz'), testLabels: f('fashion-mnist-test-labels.idx1-ubyte.gz'),
      student: a.student, epochs: a.epochs, alpha: a.alpha, temperature: a.temperature, lr: a.lr, batchSize: a.batchSize, seed: a.seed, quiet: a.quiet,
    });
    console.log(`\n${formatDemoTable(report)}`);
  },
};
