import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import * as ort from 'onnxruntime-node';
import type { TeacherInfo } from '../shards/manifest-types.js';
import { physicalCores } from '../util/cpus.js';
import { UserError, describeFsError } from '../util/errors.js';
import { sha256Hex } from '../util/fsx.js';
import { explainCudaFailure, linkProviderFromEnv } from './cuda.js';
import { summarizeOnnx } from './onnx-proto.js';

// ONNX Runtime's native logger would print provider-load failures to stderr; we explain them instead.
ort.env.logLevel = process.env.KDCACHE_DEBUG ? 'warning' : 'fatal';

export type Device = 'auto' | 'cpu' | 'cuda';

export interface DeviceSpec {
  kind: Device;
  deviceId: number;
}

export function parseDevice(text: string): DeviceSpec {
  const m = /^(auto|cpu|cuda)(?::(\d+))?$/.exec(text);
  if (!m || (m[2] !== undefined && m[1] !== 'cuda')) throw new UserError(`--device ${text}: expected auto, cpu, cuda or cuda:N`);
  return { kind: m[1] as Device, deviceId: m[2] ? Number(m[2]) : 0 };
}

/** A second model input that tells a sequence model which positions are real. */
export interface TeacherMask {
  name: string;
  kind: 'mask' | 'lengths';
  /** the element type ORT declares, e.g. 'int64' or 'bool' */
  type: string;
  /** declared shape, batch included; -1 for symbolic dimensions */
  shape: number[];
}

/** Input names taken for a mask (or lengths) input when the model has one besides its data input. */
const MASK_NAME = /mask|length|lens\b|seq_?len/i;

/** One batch's output, copied out of ONNX Runtime. */
export interface BatchOutput {
  dims: readonly number[];
  data: ort.Tensor['data'];
  /** the `owned` input buffer, handed back by a session on its own thread (it was transferred there) */
  returned?: ArrayBuffer;
}

/**
 * The part of an inference session precompute uses, on this thread or on its own (teacher-thread.ts).
 * `depth` is how many batches may be in flight: 1 when run() holds the JS thread anyway; more when the
 * next batch can be prepared while the teacher runs.
 */
export interface TeacherSession {
  readonly depth: number;
  /** `owned`: the buffer under the main input, which a session on another thread may take and give back */
  run(feeds: Record<string, ort.Tensor>, output: string, owned?: ArrayBuffer): Promise<BatchOutput>;
  release(): Promise<void>;
}

export interface Teacher {
  session: TeacherSession;
  info: TeacherInfo;
  /** the mask or lengths input, when the model has one (see --mask-input) */
  mask: TeacherMask | null;
  /** the execution provider that actually runs the model */
  provider: 'cpu' | 'cuda';
  /** declared batch dimension: -1 when dynamic */
  batchDim: number;
  notices: string[];
}

export interface TeacherOptions {
  device: DeviceSpec;
  /** ONNX Runtime's intra-op threads; default: defaultIntraOpThreads() */
  threads?: number;
  inputName?: string;
  outputName?: string;
  /** the model's mask/lengths input; by default a second input whose name says mask or length */
  maskInput?: string;
}

/** Dimensions from ORT metadata: numbers stay, symbolic or missing ones become -1. */
function dims(shape: ReadonlyArray<number | string>): number[] {
  return shape.map((d) => (typeof d === 'number' && d >= 0 ? d : -1));
}

/**
 * Intra-op threads without --threads: ONNX Runtime's own ORT_INTRA_OP_NUM_THREADS when it is set (a
 * container platform may size it to the job), else one per physical core (physicalCores).
 */
export function defaultIntraOpThreads(env: NodeJS.ProcessEnv = process.env): number {
  const n = Number(env.ORT_INTRA_OP_NUM_THREADS);
  return Number.isInteger(n) && n > 0 ? n : physicalCores();
}

export async function openTeacher(file: string, opts: TeacherOptions): Promise<Teacher> {
  let bytes: Buffer;
  try {
    const st = await fs.stat(file);
    if (st.isDirectory()) throw new UserError(`--teacher ${file}: is a directory; give the .onnx file`);
    bytes = await fs.readFile(file);
  } catch (err) {
    if (err instanceof UserError) throw err;
    const e = describeFsError(err, file, 'read the teacher');
    throw e ? new UserError(`--teacher ${e.message}`) : err;
  }
  const summary = summarizeOnnx(bytes);
  if (!summary) throw new UserError(`--teacher ${file}: not an ONNX model (could not parse it as an ONNX ModelProto); export the teacher with torch.onnx.export or tf2onnx`);
  await checkExternalData(file, summary.externalLocations);

  const notices: string[] = [];
  const base: ort.InferenceSession.SessionOptions = {
    graphOptimizationLevel: 'all',
    logSeverityLevel: 3,
    intraOpNumThreads: opts.threads ?? defaultIntraOpThreads(),
    interOpNumThreads: 1,
  };
  let session: ort.InferenceSession | undefined;
  let provider: 'cpu' | 'cuda' = 'cpu';
  if (opts.device.kind !== 'cpu') {
    const linked = await linkProviderFromEnv();
    if (linked) notices.push(linked);
    try {
      session = await ort.InferenceSession.create(file, { ...base, executionProviders: [{ name: 'cuda', deviceId: opts.device.deviceId }] });
      provider = 'cuda';
    } catch (err) {
      const why = explainCudaFailure(err);
      if (opts.device.kind === 'cuda') throw new UserError(`--device cuda: ${why}`);
      notices.push(`CUDA execution provider not available (${why.split(';')[0]}); running on CPU`);
    }
  }
  if (!session) {
    try {
      session = await ort.InferenceSession.create(file, { ...base, executionProviders: ['cpu'] });
    } catch (err) {
      const msg = String((err as Error).message ?? err).replace(/\s+/g, ' ').slice(0, 300);
      throw new UserError(`--teacher ${file}: onnxruntime cannot load this model (${msg})`);
    }
  }

  const inputs = session.inputMetadata;
  const outputs = session.outputMetadata;
  const maskName = pickMask(opts.maskInput, opts.inputName, session.inputNames, file);
  const inputName = pickName('input', opts.inputName, session.inputNames.filter((n) => n !== maskName), file, true);
  const outputName = pickName('output', opts.outputName, session.outputNames, file, false);
  const inMeta = inputs.find((m) => m.name === inputName);
  const outMeta = outputs.find((m) => m.name === outputName);
  if (!inMeta?.isTensor || !outMeta?.isTensor) throw new UserError(`--teacher ${file}: input '${inputName}' and output '${outputName}' must be tensors`);
  const inputShape = dims(inMeta.shape);
  const outputShape = dims(outMeta.shape);
  if (inputShape.length === 0) throw new UserError(`--teacher ${file}: input '${inputName}' has no declared shape; pass --input-shape`);
  let mask: TeacherMask | null = null;
  if (maskName !== undefined) {
    const meta = inputs.find((m) => m.name === maskName);
    if (!meta?.isTensor) throw new UserError(`--mask-input ${maskName}: must be a tensor input of ${file}`);
    mask = { name: maskName, kind: /len/i.test(maskName) && !/mask/i.test(maskName) ? 'lengths' : 'mask', type: meta.type, shape: dims(meta.shape) };
    if (!['int64', 'int32', 'float32', 'bool'].includes(mask.type)) throw new UserError(`--mask-input ${maskName}: is ${mask.type}; kdcache fills int64, int32, float32 or bool masks`);
  }
  return {
    session: localSession(session),
    provider,
    mask,
    batchDim: inputShape[0],
    notices,
    info: {
      name: path.basename(file),
      sha256: sha256Hex(bytes),
      bytes: bytes.length,
      input_name: inputName,
      output_name: outputName,
      input_names: [...session.inputNames],
      output_names: [...session.outputNames],
      input_shape: inputShape,
      output_shape: outputShape,
      input_type: inMeta.type,
      output_type: outMeta.type,
      opset: summary.opset,
      producer: summary.producer,
    },
  };
}

function localSession(session: ort.InferenceSession): TeacherSession {
  return {
    depth: 1,
    async run(feeds, output) {
      const t = (await session.run(feeds, [output]))[output] as ort.Tensor;
      return { dims: t.dims, data: t.data };
    },
    release: () => session.release(),
  };
}

/** The mask input: named by --mask-input, or the one input of two whose name says mask/length. */
function pickMask(wanted: string | undefined, inputName: string | undefined, names: readonly string[], file: string): string | undefined {
  const list = names.map((n) => `'${n}'`).join(', ');
  if (wanted !== undefined) {
    if (!names.includes(wanted)) throw new UserError(`--mask-input ${wanted}: the teacher ${file} has no input of that name; its inputs are ${list}`);
    if (wanted === inputName) throw new UserError(`--mask-input ${wanted}: is also --input-name; the mask is a second input`);
    return wanted;
  }
  if (names.length !== 2) return undefined;
  const others = names.filter((n) => n !== inputName && MASK_NAME.test(n));
  return others.length === 1 && (inputName === undefined || names.includes(inputName)) ? others[0] : undefined;
}

function pickName(kind: 'input' | 'output', wanted: string | undefined, names: readonly string[], file: string, mustBeOnly: boolean): string {
  const list = names.map((n) => `'${n}'`).join(', ');
  if (wanted !== undefined) {
    if (!names.includes(wanted)) throw new UserError(`--${kind}-name ${wanted}: the teacher ${file} has no ${kind} of that name; its ${kind}s are ${list}`);
    return wanted;
  }
  if (names.length === 0) throw new UserError(`--teacher ${file}: the model has no ${kind}s`);
  if (mustBeOnly && names.length > 1) throw new UserError(`--teacher ${file} has ${names.length} inputs (${list}); choose one with --input-name`);
  return names[0];
}

/** External data must stay inside the model's own directory (ONNX's own rule, enforced before ORT reads). */
async function checkExternalData(file: string, locations: string[]): Promise<void> {
  if (locations.length === 0) return;
  const dir = await fs.realpath(path.dirname(path.resolve(file)));
  for (const loc of new Set(locations)) {
    const bad = () => new UserError(`--teacher ${file}: refuses external data '${loc}' outside the model's directory; keep external data files next to the model`);
    if (path.isAbsolute(loc) || loc.split(/[\\/]/).includes('..')) throw bad();
    const target = path.resolve(dir, loc);
    let real: string;
    try {
      real = await fs.realpath(target);
    } catch {
      throw new UserError(`--teacher ${file}: external data file '${loc}' is missing; copy it next to the model`);
    }
    if (real !== dir && !real.startsWith(dir + path.sep)) throw bad();
  }
}
