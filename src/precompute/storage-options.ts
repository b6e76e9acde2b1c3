/**
 * The storage flags of precompute-logits (--top-k, --dtype, --teacher-output, --report-temperature)
 * and the teacher's output shape -> the storage spec of the cache. With every flag at its default
 * and a logits teacher, the spec is exactly the original one, so those caches keep their config_id.
 */
import {
  COL_INPUT, COL_LABEL, COL_LOGITS, COL_LOGSUMEXP, COL_POSITION, COL_ROW, COL_SAMPLE_COUNTS, COL_SAMPLE_INDICES, COL_SAMPLE_LOGITS,
  COL_TOPK_INDICES, COL_TOPK_LOGITS,
  type ColumnSpec, type StorageSpec,
} from '../shards/format.js';
import { type TeacherOutput, type TeacherOutputFlag, detectTeacherOutput } from '../sparse/teacher-output.js';
import type { DType } from '../util/dtype.js';
import { UserError } from '../util/errors.js';

export const DEFAULT_REPORT_TEMPERATURE = 2;

export interface StorageFlags {
  /** keep only the k largest values per row (plus the row's log-sum-exp) */
  topK?: number;
  /** dtype of the stored values */
  dtype?: 'float32' | 'float16';
  teacherOutput?: TeacherOutputFlag;
  /** second temperature of the top-k fidelity report */
  reportTemperature?: number;
  /** store this many draws per row from the teacher's distribution instead of the top-k */
  sample?: number;
  /** the temperature the draws are taken at (default 1) */
  sampleTemperature?: number;
}

export function checkStorageFlags(f: StorageFlags): void {
  if (f.topK !== undefined && !(Number.isInteger(f.topK) && f.topK >= 1)) throw new UserError(`--top-k ${f.topK}: must be a positive integer`);
  if (f.dtype !== undefined && f.dtype !== 'float32' && f.dtype !== 'float16') throw new UserError(`--dtype ${f.dtype}: must be float32 or float16`);
  if (f.teacherOutput !== undefined && !['auto', 'logits', 'probs', 'logprobs'].includes(f.teacherOutput)) {
    throw new UserError(`--teacher-output ${f.teacherOutput}: must be auto, logits, probs or logprobs`);
  }
  if (f.reportTemperature !== undefined && !(f.reportTemperature > 0 && Number.isFinite(f.reportTemperature))) {
    throw new UserError(`--report-temperature ${f.reportTemperature}: must be a positive number`);
  }
  if (f.sample !== undefined && !(Number.isInteger(f.sample) && f.sample >= 1 && f.sample <= 1 << 20)) throw new UserError(`--sample ${f.sample}: must be a positive integer (draws per row)`);
  if (f.sample !== undefined && f.topK !== undefined) throw new UserError('--sample and --top-k are exclusive: store sampled classes or the k largest, not both');
  if (f.sampleTemperature !== undefined && !(f.sampleTemperature > 0 && Number.isFinite(f.sampleTemperature))) {
    throw new UserError(`--sample-temperature ${f.sampleTemperature}: must be a positive number`);
  }
  if (f.sampleTemperature !== undefined && f.sample === undefined) throw new UserError('--sample-temperature: only applies with --sample');
  if (f.reportTemperature !== undefined && f.topK === undefined && f.sample === undefined) {
    throw new UserError('--report-temperature: only applies with --top-k or --sample (it sets the temperature of the retained-mass report)');
  }
}

/**
 * Whether a per-example output shape is one distribution per position: [T, C] where T is the first
 * dimension of the per-example input (a sequence of T tokens or feature vectors), T > 1.
 */
export function isSequenceOutput(outputShape: readonly number[], inputShape: readonly number[]): boolean {
  return outputShape.length === 2 && inputShape.length >= 1 && outputShape[0] === inputShape[0] && outputShape[0] > 1;
}

export interface ResolvedTeacherOutput {
  output: TeacherOutput;
  detected: boolean;
  /** a one-line notice when detection changed what is stored */
  notice: string | null;
}

/** --teacher-output: the flag, or (auto) what the first rows look like. */
export function resolveTeacherOutput(flag: TeacherOutputFlag | undefined, sample: ArrayLike<number>, rows: number, classes: number): ResolvedTeacherOutput {
  if (flag !== undefined && flag !== 'auto') return { output: flag, detected: false, notice: null };
  const output = detectTeacherOutput(sample, rows, classes);
  if (output === 'logits') return { output, detected: true, notice: null };
  const what = output === 'probs' ? 'probabilities (every value >= 0, every row sums to 1)' : 'log-probabilities (every value <= 0, every row\'s exponentials sum to 1)';
  return {
    output, detected: true,
    notice: `notice: the teacher's outputs look like ${what} on the first ${rows} rows; storing log-probabilities (pass --teacher-output logits to store them as they are)`,
  };
}

export interface StorageShape {
  /** per-example output shape */
  outputShape: number[];
  sequence: boolean;
  hasLabels: boolean;
  input: { dtype: DType; width: number } | null;
}

/** Add the layout/kind/dtype/teacher-output fields to `base` (the original dense spec). */
export function extendStorage(base: StorageSpec, f: StorageFlags, teacherOutput: ResolvedTeacherOutput, shape: StorageShape): StorageSpec {
  const classes = shape.outputShape[shape.outputShape.length - 1];
  const dtype = f.dtype ?? 'float32';
  if (f.topK !== undefined) {
    if (shape.outputShape.length !== 1 && !shape.sequence) {
      throw new UserError(`--top-k: the teacher's output per example is [${shape.outputShape.join(', ')}]; top-k needs one distribution per row: [classes], or [positions, classes] for a sequence teacher`);
    }
    if (f.topK >= classes) throw new UserError(`--top-k ${f.topK}: the teacher has ${classes} classes; top-k must keep fewer (a dense cache stores all of them)`);
  }
  if (f.sample !== undefined && shape.outputShape.length !== 1 && !shape.sequence) {
    throw new UserError(`--sample: the teacher's output per example is [${shape.outputShape.join(', ')}]; sampling needs one distribution per row: [classes], or [positions, classes] for a sequence teacher`);
  }
  if (shape.sequence && shape.hasLabels) {
    throw new UserError('--labels: the teacher outputs one distribution per position (a sequence cache, one row per position); per-example labels do not apply: leave --labels out');
  }
  if (shape.sequence && shape.input) throw new UserError('--store-inputs: not supported for sequence teachers (one row per position); join the dataset by "row" instead');
  const spec: StorageSpec = { ...base, logits_dtype: dtype };
  const columns: ColumnSpec[] = [{ name: COL_ROW, type: 'int64' }];
  if (shape.sequence) columns.push({ name: COL_POSITION, type: 'int32' });
  if (shape.hasLabels) columns.push({ name: COL_LABEL, type: 'int32' });
  const perRow = shape.sequence ? classes : base.columns.find((c) => c.name === COL_LOGITS)!.length!;
  const slots = f.sample !== undefined ? Math.min(f.sample, classes) : 0;
  if (f.topK !== undefined) {
    columns.push(
      { name: COL_TOPK_INDICES, type: 'list<int32>', length: f.topK },
      { name: COL_TOPK_LOGITS, type: `list<${dtype}>`, length: f.topK },
      { name: COL_LOGSUMEXP, type: 'float32' },
    );
  } else if (f.sample !== undefined) {
    columns.push(
      { name: COL_SAMPLE_INDICES, type: 'list<int32>', length: slots },
      { name: COL_SAMPLE_COUNTS, type: 'list<int32>', length: slots },
      { name: COL_SAMPLE_LOGITS, type: `list<${dtype}>`, length: slots },
      { name: COL_LOGSUMEXP, type: 'float32' },
    );
  } else {
    columns.push({ name: COL_LOGITS, type: `list<${dtype}>`, length: perRow });
  }
  if (shape.input) columns.push({ name: COL_INPUT, type: `list<${shape.input.dtype}>`, length: shape.input.width });
  spec.columns = columns;
  if (shape.sequence) spec.layout = 'sequence';
  if (shape.sequence || f.topK !== undefined || f.sample !== undefined) spec.classes = classes;
  if (f.topK !== undefined) {
    spec.kind = 'topk';
    spec.k = f.topK;
    spec.report_temperature = f.reportTemperature ?? DEFAULT_REPORT_TEMPERATURE;
  } else if (f.sample !== undefined) {
    spec.kind = 'sample';
    spec.k = slots;
    spec.samples = f.sample;
    spec.sample_temperature = f.sampleTemperature ?? 1;
    spec.report_temperature = f.reportTemperature ?? DEFAULT_REPORT_TEMPERATURE;
  }
  if (teacherOutput.output !== 'logits') spec.teacher_output = { output: teacherOutput.output, detected: teacherOutput.detected };
  return spec;
}
