import type { Compression, StorageFormat, StorageSpec } from '../shards/format.js';
import { COL_INPUT, COL_LABEL, COL_LOGITS, COL_ROW } from '../shards/format.js';
import { formatVersionOf } from '../shards/schemas.js';
import { canonicalJson, configId } from '../shards/config-id.js';
import type { CacheConfig, DatasetInfo, LabelsInfo, Preprocessing, TeacherInfo } from '../shards/manifest-types.js';
import type { DType } from '../util/dtype.js';
import { DTYPE_BYTES, product } from '../util/dtype.js';
import { UserError } from '../util/errors.js';
import { TOOL_VERSION } from '../version.js';

export interface PreprocessingFlags {
  inputShape?: number[];
  scale?: number;
  mean?: number[];
  std?: number[];
}

/** Resolve the per-example model input shape and normalisation, checking the data fits the teacher. */
export function resolvePreprocessing(flags: PreprocessingFlags, teacher: TeacherInfo, exampleShape: number[], dataFile: string, dataDtype?: DType): Preprocessing {
  const declared = teacher.input_shape.slice(1);
  let inputShape = flags.inputShape;
  if (!inputShape) {
    // Symbolic dimensions (a sequence length, say) are taken from the data when the ranks agree.
    const fromData = declared.length === exampleShape.length && declared.every((d, i) => d < 0 || d === exampleShape[i]);
    if (declared.some((d) => d < 0) && !fromData) {
      throw new UserError(`--teacher ${teacher.name}: input '${teacher.input_name}' has symbolic dimensions [${teacher.input_shape.join(', ')}]; pass --input-shape d1,d2,...`);
    }
    inputShape = fromData ? [...exampleShape] : declared;
  } else if (declared.length === inputShape.length && declared.some((d, i) => d >= 0 && d !== inputShape![i])) {
    throw new UserError(`--input-shape ${inputShape.join(',')} does not match the teacher's input '${teacher.input_name}' [${teacher.input_shape.join(', ')}]`);
  }
  if (inputShape.some((d) => !Number.isInteger(d) || d <= 0)) throw new UserError(`--input-shape ${inputShape.join(',')}: dimensions must be positive integers`);
  if (product(inputShape) !== product(exampleShape)) {
    throw new UserError(`${dataFile}: examples have shape [${exampleShape.join(', ')}] (${product(exampleShape)} values) but the teacher's input '${teacher.input_name}' takes [${inputShape.join(', ')}] (${product(inputShape)} values); fix --input-shape or the data`);
  }
  const channels = inputShape.length >= 2 ? inputShape[0] : 1;
  const perChannel = (name: string, v: number[] | undefined, dflt: number): number[] => {
    if (!v || v.length === 0) return [dflt];
    if (v.length !== 1 && v.length !== channels) throw new UserError(`--${name}: ${v.length} values for ${channels} channels (dimension 0 of input shape [${inputShape!.join(', ')}]); give 1 or ${channels}`);
    if (v.some((x) => !Number.isFinite(x))) throw new UserError(`--${name}: values must be finite numbers`);
    return v;
  };
  if (teacher.input_type === 'int64' || teacher.input_type === 'int32') {
    // Token ids and other integer inputs are fed exactly as stored: no scaling can apply to them.
    const given = (['scale', 'mean', 'std'] as const).find((k) => flags[k] !== undefined);
    if (given) throw new UserError(`--${given}: the teacher's input '${teacher.input_name}' is ${teacher.input_type}; integer inputs are fed as they are, without --scale/--mean/--std`);
    if (dataDtype && !INTEGER_DTYPES.includes(dataDtype)) {
      throw new UserError(`${dataFile}: holds ${dataDtype} values, but the teacher's input '${teacher.input_name}' is ${teacher.input_type}; give integer data (token ids)`);
    }
    return { input_shape: inputShape, input_type: teacher.input_type, scale: 1, mean: [0], std: [1] };
  }
  if (teacher.input_type !== 'float32') {
    throw new UserError(`--teacher ${teacher.name}: input '${teacher.input_name}' is ${teacher.input_type}; kdcache feeds float32, int64 or int32 inputs`);
  }
  const std = perChannel('std', flags.std, 1);
  if (std.some((s) => s === 0)) throw new UserError('--std: values must be non-zero');
  const scale = flags.scale ?? 1;
  if (!Number.isFinite(scale)) throw new UserError('--scale: must be a finite number');
  return { input_shape: inputShape, input_type: 'float32', scale, mean: perChannel('mean', flags.mean, 0), std };
}

const INTEGER_DTYPES: readonly DType[] = ['uint8', 'int8', 'uint16', 'int16', 'uint32', 'int32', 'int64'];

export function defaultShardRows(logitsWidth: number, inputBytesPerRow: number): number {
  // Keep a shard's encoded size near or below 64 MiB: small enough to stream, large enough to amortise.
  const rowBytes = 8 + 4 + logitsWidth * 4 + inputBytesPerRow;
  return Math.max(1, Math.min(10_000, Math.floor((64 << 20) / rowBytes)));
}

export function storageSpec(format: StorageFormat, compression: Compression, shardRows: number, width: number, hasLabels: boolean, input: { dtype: DType; width: number } | null): StorageSpec {
  const columns = [{ name: COL_ROW, type: 'int64' }];
  if (hasLabels) columns.push({ name: COL_LABEL, type: 'int32' });
  columns.push({ name: COL_LOGITS, type: 'list<float32>', length: width } as never);
  if (input) columns.push({ name: COL_INPUT, type: `list<${input.dtype}>`, length: input.width } as never);
  return { format, compression, shard_rows: shardRows, logits_dtype: 'float32', columns };
}

export function buildConfig(parts: {
  teacher: TeacherInfo;
  dataset: DatasetInfo;
  labels: LabelsInfo | null;
  preprocessing: Preprocessing;
  outputShape: number[];
  storage: StorageSpec;
  rows: number;
}): CacheConfig {
  const shardCount = Math.ceil(parts.rows / parts.storage.shard_rows);
  const body = {
    format_version: formatVersionOf({ storage: parts.storage, preprocessing: parts.preprocessing } as CacheConfig),
    teacher: parts.teacher,
    dataset: parts.dataset,
    labels: parts.labels,
    preprocessing: parts.preprocessing,
    output: { shape: parts.outputShape, width: product(parts.outputShape) },
    storage: parts.storage,
    rows: parts.rows,
    shard_count: shardCount,
  };
  return { ...body, tool: { name: 'kdcache', version: TOOL_VERSION }, config_id: configId(body) };
}

/** Name the top-level fields that differ, for the "made with a different ..." error. */
export function configDifferences(a: CacheConfig, b: CacheConfig): string[] {
  const out: string[] = [];
  for (const key of ['teacher', 'dataset', 'labels', 'preprocessing', 'output', 'storage', 'rows', 'format_version'] as const) {
    if (canonicalJson(a[key]) !== canonicalJson(b[key])) out.push(key === 'teacher' && a.teacher.sha256 !== b.teacher.sha256 ? 'teacher (different model file)' : key);
  }
  return out;
}

export function inputBytesPerRow(dtype: DType, width: number): number {
  return DTYPE_BYTES[dtype] * width;
}
