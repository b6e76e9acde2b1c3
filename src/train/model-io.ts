/**
 * tfjs IOHandlers backed by node:fs. tfjs core only ships browser and HTTP handlers; file:// comes
 * with tfjs-node, which cannot be installed here. The files written are the standard LayersModel
 * format (model.json + one weights.bin), loadable by tf.loadLayersModel in any environment.
 */
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { describeFsError, UserError } from '../util/errors.js';
import { readJsonFile, writeFileAtomic } from '../util/fsx.js';

export const MODEL_FILE = 'model.json';
export const WEIGHTS_FILE = 'weights.bin';

interface ModelJson {
  modelTopology?: object;
  format?: string;
  generatedBy?: string;
  convertedBy?: string | null;
  trainingConfig?: tf.io.TrainingConfig;
  weightsManifest?: tf.io.WeightsManifestConfig;
  userDefinedMetadata?: { [key: string]: {} };
}

/** Save handler: `<dir>/model.json` + `<dir>/weights.bin`, each replaced atomically, weights first. */
export function fileSaveHandler(dir: string): tf.io.IOHandler {
  return {
    async save(artifacts: tf.io.ModelArtifacts): Promise<tf.io.SaveResult> {
      await fs.mkdir(dir, { recursive: true }).catch((err) => {
        throw describeFsError(err, dir, 'create the output directory') ?? err;
      });
      const weights = artifacts.weightData === undefined
        ? new Uint8Array(0)
        : new Uint8Array(tf.io.CompositeArrayBuffer.join(artifacts.weightData));
      const json: ModelJson = {
        modelTopology: artifacts.modelTopology as object,
        format: artifacts.format ?? 'layers-model',
        generatedBy: artifacts.generatedBy ?? `TensorFlow.js tfjs-layers v${tf.version_layers}`,
        convertedBy: artifacts.convertedBy ?? null,
        weightsManifest: [{ paths: [`./${WEIGHTS_FILE}`], weights: artifacts.weightSpecs ?? [] }],
      };
      if (artifacts.trainingConfig) json.trainingConfig = artifacts.trainingConfig;
      if (artifacts.userDefinedMetadata) json.userDefinedMetadata = artifacts.userDefinedMetadata;
      // Weights before the JSON: a model.json on disk always refers to weights that are complete.
      await writeFileAtomic(path.join(dir, WEIGHTS_FILE), weights);
      await writeFileAtomic(path.join(dir, MODEL_FILE), JSON.stringify(json));
      return {
        modelArtifactsInfo: {
          dateSaved: new Date(),
          modelTopologyType: 'JSON',
          weightDataBytes: weights.byteLength,
        },
      };
    },
  };
}

/** Load handler for a model.json path (or its directory); weight paths are relative to model.json. */
export function fileLoadHandler(modelPath: string): tf.io.IOHandler {
  return {
    async load(): Promise<tf.io.ModelArtifacts> {
      const jsonPath = await resolveModelJson(modelPath);
      const json = await readModelJson(jsonPath);
      const dir = path.dirname(jsonPath);
      const specs: tf.io.WeightsManifestEntry[] = [];
      const buffers: ArrayBuffer[] = [];
      for (const group of json.weightsManifest ?? []) {
        specs.push(...group.weights);
        for (const p of group.paths) {
          const file = path.resolve(dir, p);
          const bytes = await fs.readFile(file).catch((err) => {
            throw describeFsError(err, file, `read the weights listed in ${jsonPath}`) ?? err;
          });
          buffers.push(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength) as ArrayBuffer);
        }
      }
      const weightData = tf.io.CompositeArrayBuffer.join(buffers);
      const expected = specs.reduce((n, s) => n + weightBytes(s), 0);
      if (weightData.byteLength !== expected) {
        throw new UserError(`${jsonPath}: weight files hold ${weightData.byteLength} bytes but the manifest describes ${expected}; the model files are damaged or mismatched`);
      }
      return {
        modelTopology: json.modelTopology,
        format: json.format,
        generatedBy: json.generatedBy,
        convertedBy: json.convertedBy ?? undefined,
        trainingConfig: json.trainingConfig,
        userDefinedMetadata: json.userDefinedMetadata,
        weightSpecs: specs,
        weightData,
      };
    },
  };
}

/** Accept either a model.json path or a directory holding one. */
export async function resolveModelJson(modelPath: string): Promise<string> {
  const stat = await fs.stat(modelPath).catch((err) => {
    throw describeFsError(err, modelPath, 'load the model') ?? err;
  });
  if (!stat.isDirectory()) return modelPath;
  const jsonPath = path.join(modelPath, MODEL_FILE);
  await fs.access(jsonPath).catch(() => {
    throw new UserError(`${modelPath}: no ${MODEL_FILE} in this directory; pass the directory train-student wrote or a tfjs model.json`);
  });
  return jsonPath;
}

export async function readModelJson(jsonPath: string): Promise<ModelJson> {
  const json = await readJsonFile<ModelJson>(jsonPath);
  if (typeof json !== 'object' || json === null || typeof json.modelTopology !== 'object' || json.modelTopology === null) {
    throw new UserError(`${jsonPath}: not a tfjs LayersModel model.json (no modelTopology); export the model with tfjs (model.save) or tensorflowjs_converter --output_format tfjs_layers_model`);
  }
  return json;
}

const DTYPE_SIZE: Record<string, number> = { float32: 4, int32: 4, bool: 1, complex64: 8 };

export function weightBytes(spec: tf.io.WeightsManifestEntry): number {
  const n = spec.shape.reduce((a, b) => a * b, 1);
  if (spec.quantization) {
    const q = spec.quantization.dtype;
    return n * (q === 'uint8' ? 1 : q === 'uint16' || q === 'float16' ? 2 : 4);
  }
  return n * (DTYPE_SIZE[spec.dtype] ?? 4);
}

export async function saveModel(model: tf.LayersModel, dir: string): Promise<void> {
  await model.save(fileSaveHandler(dir));
}

export async function loadModel(modelPath: string): Promise<tf.LayersModel> {
  try {
    return await tf.loadLayersModel(fileLoadHandler(modelPath));
  } catch (err) {
    if (err instanceof UserError) throw err;
    throw new UserError(`${modelPath}: cannot load the tfjs model: ${(err as Error).message.split('\n')[0]}`);
  }
}
