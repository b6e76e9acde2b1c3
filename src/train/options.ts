/**
 * Options of train-student, their defaults, and validation. Every bad value is a UserError naming
 * the flag, so the CLI and the programmatic API fail the same way.
 */
import { UserError } from '../util/errors.js';
import { BACKEND_CHOICES, type BackendChoice } from './backend-choices.js';
import type { LossKind } from './losses.js';
import { TAIL_MODES, type TailMode } from './sparse-targets.js';

export type OptimizerName = 'adam' | 'sgd';
export type Monitor = 'auto' | 'accuracy' | 'agreement';

export interface TrainOptions {
  /** cache directory written by precompute-logits */
  logits: string;
  /** 'mlp:256,128', 'cnn:32,64' or a path to a tfjs model.json */
  student: string;
  out: string;
  /** the dataset the cache was made from (else the shards' stored inputs) */
  data?: string;
  labels?: string;
  labelColumn?: string;
  valData?: string;
  valLabels?: string;
  valLabelColumn?: string;
  /** hold out rows whose hash(row index) < f; mutually exclusive with valData */
  valFraction?: number;
  /** weight of the teacher term (1 = pure distillation, 0 = labels only) */
  alpha?: number;
  temperature?: number;
  loss?: LossKind;
  /** top-k caches: the unstored classes' mass (sparse-targets.ts); ignored for dense caches */
  tail?: TailMode;
  epochs?: number;
  batchSize?: number;
  lr?: number;
  optimizer?: OptimizerName;
  seed?: number;
  shuffleBuffer?: number;
  /** stop after this many epochs without improvement of the monitored validation metric; 0 = never */
  patience?: number;
  monitor?: Monitor;
  backend?: BackendChoice;
  resume?: boolean;
  /** skip the sha256 check of every shard before training (each shard is still checked when read) */
  skipChecksums?: boolean;
  /** the teacher .onnx file: refuse the cache unless it was made with this very file (sha256) */
  teacher?: string;
  quiet?: boolean;
  /** status lines (default: stderr unless quiet) */
  log?: (line: string) => void;
  /** where the progress bar goes (default: stderr) */
  progressStream?: NodeJS.WriteStream;
}

export type ResolvedTrainOptions = Required<Omit<TrainOptions,
  'data' | 'labels' | 'labelColumn' | 'valData' | 'valLabels' | 'valLabelColumn' | 'log' | 'progressStream' | 'teacher'>>
  & Pick<TrainOptions, 'data' | 'labels' | 'labelColumn' | 'valData' | 'valLabels' | 'valLabelColumn' | 'log' | 'progressStream' | 'teacher'>;

export const TRAIN_DEFAULTS = {
  alpha: 1,
  temperature: 4,
  loss: 'kd' as LossKind,
  // never measurably worse than uniform at T = 1, far better at T > 1 (bench/results/topk-agreement*.json)
  tail: 'ignore' as TailMode,
  epochs: 10,
  batchSize: 128,
  lr: 1e-3,
  optimizer: 'adam' as OptimizerName,
  seed: 0,
  shuffleBuffer: 10_000,
  patience: 0,
  monitor: 'auto' as Monitor,
  backend: 'auto' as BackendChoice,
  valFraction: 0,
} as const;

function check(ok: boolean, message: string): void {
  if (!ok) throw new UserError(message);
}

const isInt = (v: number) => Number.isInteger(v);

export function resolveTrainOptions(opts: TrainOptions): ResolvedTrainOptions {
  for (const key of ['logits', 'student', 'out'] as const) {
    check(typeof opts[key] === 'string' && opts[key].length > 0, `--${key} is required`);
  }
  const r: ResolvedTrainOptions = {
    ...opts,
    alpha: opts.alpha ?? TRAIN_DEFAULTS.alpha,
    temperature: opts.temperature ?? TRAIN_DEFAULTS.temperature,
    loss: opts.loss ?? TRAIN_DEFAULTS.loss,
    tail: opts.tail ?? TRAIN_DEFAULTS.tail,
    epochs: opts.epochs ?? TRAIN_DEFAULTS.epochs,
    batchSize: opts.batchSize ?? TRAIN_DEFAULTS.batchSize,
    lr: opts.lr ?? TRAIN_DEFAULTS.lr,
    optimizer: opts.optimizer ?? TRAIN_DEFAULTS.optimizer,
    seed: opts.seed ?? TRAIN_DEFAULTS.seed,
    shuffleBuffer: opts.shuffleBuffer ?? TRAIN_DEFAULTS.shuffleBuffer,
    patience: opts.patience ?? TRAIN_DEFAULTS.patience,
    monitor: opts.monitor ?? TRAIN_DEFAULTS.monitor,
    backend: opts.backend ?? TRAIN_DEFAULTS.backend,
    valFraction: opts.valFraction ?? TRAIN_DEFAULTS.valFraction,
    resume: opts.resume ?? false,
    skipChecksums: opts.skipChecksums ?? false,
    quiet: opts.quiet ?? false,
  };
  check(r.alpha >= 0 && r.alpha <= 1, `--alpha ${r.alpha}: must be in [0, 1] (1 = pure distillation, 0 = labels only)`);
  check(r.temperature > 0 && Number.isFinite(r.temperature), `--temperature ${r.temperature}: must be a positive number`);
  check(r.loss === 'kd' || r.loss === 'mse', `--loss ${r.loss}: must be kd or mse`);
  check(TAIL_MODES.includes(r.tail), `--tail ${r.tail}: must be ignore, uniform or bucket`);
  check(isInt(r.epochs) && r.epochs >= 1, `--epochs ${r.epochs}: must be a positive integer`);
  check(isInt(r.batchSize) && r.batchSize >= 1 && r.batchSize <= 1 << 20, `--batch-size ${r.batchSize}: must be a positive integer`);
  check(r.lr > 0 && Number.isFinite(r.lr), `--lr ${r.lr}: must be a positive number`);
  check(r.optimizer === 'adam' || r.optimizer === 'sgd', `--optimizer ${r.optimizer}: must be adam or sgd`);
  check(isInt(r.seed) && r.seed >= 0 && r.seed <= 0xffffffff, `--seed ${r.seed}: must be an integer in [0, 4294967295]`);
  check(isInt(r.shuffleBuffer) && r.shuffleBuffer >= 0, `--shuffle-buffer ${r.shuffleBuffer}: must be a non-negative integer (rows; 0 = no shuffling)`);
  check(isInt(r.patience) && r.patience >= 0, `--patience ${r.patience}: must be a non-negative integer (0 = no early stopping)`);
  check(['auto', 'accuracy', 'agreement'].includes(r.monitor), `--monitor ${r.monitor}: must be auto, accuracy or agreement`);
  check(BACKEND_CHOICES.includes(r.backend), `--backend ${r.backend}: must be one of ${BACKEND_CHOICES.join(', ')}`);
  check(r.valFraction >= 0 && r.valFraction < 1, `--val-fraction ${r.valFraction}: must be in [0, 1)`);
  check(!(r.valFraction > 0 && r.valData), '--val-fraction and --val-data are exclusive: give one');
  check(!(r.valLabels && r.valLabelColumn), '--val-labels and --val-label-column are exclusive: give one');
  check(!((r.valLabels || r.valLabelColumn) && !r.valData), '--val-labels/--val-label-column need --val-data');
  check(!(r.valData && !r.valLabels && !r.valLabelColumn), '--val-data needs labels: add --val-labels <file> (or --val-label-column for Parquet/Arrow data)');
  check(!(r.labels && r.labelColumn), '--labels and --label-column are exclusive: give one');
  check(!(r.labelColumn && !r.data), '--label-column needs --data (the Parquet/Arrow file holding the column)');
  check(!(r.patience > 0 && !r.valData && !(r.valFraction > 0)), `--patience ${r.patience}: early stopping needs validation data; add --val-fraction f or --val-data/--val-labels`);
  check(!(r.monitor === 'agreement' && r.valData), '--monitor agreement: --val-data has no teacher logits; use --val-fraction or --monitor accuracy');
  return r;
}
