#!/usr/bin/env node
import { hideBin } from 'yargs/helpers';
import { INFERENCE_THREADS } from '../precompute/teacher-thread.js';
import { runMain } from '../util/errors.js';
import { cli, parseList, parseNumber, positiveInt } from './common.js';

export function precomputeCommand(argv: string[]) {
  return cli('precompute-logits', argv)
    .usage('$0 --teacher model.onnx --data <file> --out <dir> [options]\n\nRun an ONNX teacher over a dataset once and cache its raw outputs as Parquet or Arrow shards with a manifest.json.')
    .option('teacher', { type: 'string', demandOption: true, describe: 'teacher model (.onnx)', group: 'Required:' })
    .option('data', { type: 'string', demandOption: true, describe: 'examples: .npy, IDX (plain or .gz), .parquet or .arrow', group: 'Required:' })
    .option('out', { type: 'string', demandOption: true, describe: 'cache directory (created; reruns resume)', group: 'Required:' })
    .option('labels', { type: 'string', describe: 'labels file (.npy or IDX)', group: 'Data:' })
    .option('label-column', { type: 'string', describe: 'label column of a Parquet/Arrow --data file', group: 'Data:' })
    .option('input-column', { type: 'string', describe: 'list column holding each example in a Parquet/Arrow --data file', group: 'Data:' })
    .option('input-shape', { type: 'string', describe: 'per-example shape fed to the model, e.g. 1,28,28 (default: the model\'s declared input shape)', group: 'Preprocessing:' })
    .option('scale', { type: 'string', describe: 'multiply raw values first, e.g. 1/255 (default 1)', group: 'Preprocessing:' })
    .option('mean', { type: 'string', describe: 'subtract after scaling: one value or one per channel (default 0)', group: 'Preprocessing:' })
    .option('std', { type: 'string', describe: 'divide after subtracting: one value or one per channel (default 1)', group: 'Preprocessing:' })
    .option('input-name', { type: 'string', describe: 'model input to feed (default: its only input)', group: 'Model:' })
    .option('output-name', { type: 'string', describe: 'model output to cache (default: its first output)', group: 'Model:' })
    .option('mask-input', { type: 'string', describe: 'sequence teachers: the model\'s mask or lengths input (default: a second input named like mask/attention_mask/lengths)', group: 'Model:' })
    .option('pad-id', { type: 'number', describe: 'sequence teachers: the token id of padding; padding positions are masked and not stored', group: 'Model:' })
    .option('device', { type: 'string', default: 'auto', describe: 'auto | cpu | cuda | cuda:N (auto = CUDA when its provider loads, else CPU)', group: 'Execution:' })
    .option('batch-size', { type: 'number', default: 256, describe: 'examples per inference call', group: 'Execution:' })
    .option('threads', { type: 'number', describe: 'ONNX Runtime intra-op threads (default: ORT_INTRA_OP_NUM_THREADS, else one per physical core within the CPU limit)', group: 'Execution:' })
    .option('writers', { type: 'number', default: 1, describe: 'shard encoder threads', group: 'Execution:' })
    .option('inference-thread', { choices: INFERENCE_THREADS, default: 'auto' as const, describe: 'where the teacher runs: on a worker thread, reading and converting the next batch overlap inference (auto: worker when 2 cores are left beside inference, e.g. CUDA on a many-core box)', group: 'Execution:' })
    .option('format', { choices: ['parquet', 'arrow'] as const, default: 'parquet' as const, describe: 'shard file format', group: 'Output:' })
    .option('compression', { choices: ['zstd', 'snappy', 'none'] as const, default: 'zstd' as const, describe: 'Parquet compression (Arrow shards are uncompressed)', group: 'Output:' })
    .option('shard-rows', { type: 'number', describe: 'rows per shard (default: up to 10000, ~64 MiB at most)', group: 'Output:' })
    .option('top-k', { type: 'number', describe: 'store only the K largest values per row (per position), their class indices and the full row\'s logsumexp', group: 'Output:' })
    .option('sample', { type: 'number', describe: 'instead of the top-k, store N draws per row from the teacher\'s distribution (distinct classes, counts, logits, logsumexp): unbiased sparse targets', group: 'Output:' })
    .option('sample-temperature', { type: 'string', describe: 'with --sample: draw from softmax(z / T) (default 1; use the temperature you will train at)', group: 'Output:' })
    .option('dtype', { choices: ['float32', 'float16'] as const, default: 'float32' as const, describe: 'type of the stored values (float16: Parquet FLOAT16 / Arrow Float16)', group: 'Output:' })
    .option('teacher-output', { choices: ['auto', 'logits', 'probs', 'logprobs'] as const, default: 'auto' as const, describe: 'what the teacher outputs; probs/logprobs are stored as log-probabilities (auto: probs when the first rows are >= 0 and sum to 1)', group: 'Output:' })
    .option('report-temperature', { type: 'string', describe: 'with --top-k: also report the retained mass and KL at this temperature (default 2)', group: 'Output:' })
    .option('store-inputs', { type: 'boolean', default: false, describe: 'also store each example as read, so the cache trains on its own', group: 'Output:' })
    .option('overwrite', { type: 'boolean', default: false, describe: 'replace a cache in --out made with a different teacher, data or settings', group: 'Output:' })
    .option('partition', { type: 'string', describe: 'process only slice i of n (0-based), e.g. 2/8; also read from SLURM_ARRAY_TASK_ID/COUNT', group: 'Scale-out:' })
    .option('partitions', { type: 'number', describe: 'partition count, with JOB_COMPLETION_INDEX (Kubernetes Indexed Jobs)', group: 'Scale-out:' })
    .option('quiet', { type: 'boolean', default: false, describe: 'no progress output' })
    .example('$0 --teacher data/teacher.onnx --data data/fashion-mnist-train-images.idx3-ubyte.gz --labels data/fashion-mnist-train-labels.idx1-ubyte.gz --scale 1/255 --out out/cache', 'cache the demo teacher\'s logits')
    .help();
}

export async function main(argv: string[]): Promise<void> {
  const a = await precomputeCommand(argv).parseAsync();
  // Loaded once the flags are parsed: --help and flag errors need no ONNX Runtime.
  const { precomputeLogits } = await import('../precompute/run.js');
  const result = await precomputeLogits({
    teacher: a.teacher,
    data: a.data,
    out: a.out,
    labels: a.labels,
    labelColumn: a.labelColumn,
    inputColumn: a.inputColumn,
    inputShape: parseList('input-shape', a.inputShape, true),
    scale: a.scale === undefined ? undefined : parseNumber('scale', a.scale),
    mean: parseList('mean', a.mean, false),
    std: parseList('std', a.std, false),
    inputName: a.inputName,
    outputName: a.outputName,
    device: a.device,
    batchSize: positiveInt('batch-size', a.batchSize),
    threads: positiveInt('threads', a.threads),
    writers: positiveInt('writers', a.writers),
    inferenceThread: a.inferenceThread,
    format: a.format,
    compression: a.compression,
    shardRows: positiveInt('shard-rows', a.shardRows),
    storeInputs: a.storeInputs,
    topK: a.topK,
    sample: a.sample,
    sampleTemperature: a.sampleTemperature === undefined ? undefined : parseNumber('sample-temperature', a.sampleTemperature),
    dtype: a.dtype,
    teacherOutput: a.teacherOutput,
    reportTemperature: a.reportTemperature === undefined ? undefined : parseNumber('report-temperature', a.reportTemperature),
    maskInput: a.maskInput,
    padId: a.padId,
    overwrite: a.overwrite,
    partition: a.partition,
    partitions: positiveInt('partitions', a.partitions),
    quiet: a.quiet,
  });
  if (result.nonfiniteRows > 0) process.exitCode = 3;
}

await runMain(() => main(hideBin(process.argv)));
