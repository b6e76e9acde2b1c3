/**
 * Per-epoch checkpoints: model weights + optimizer state + epoch + RNG/early-stopping state.
 *
 *   <out>/checkpoint/epoch-000003/{model.json, weights.bin, optimizer.bin, state.json}
 *   <out>/checkpoint/latest.json   -> { "epoch": 3, "dir": "epoch-000003" }
 *
 * A checkpoint directory is filled under a temporary name and renamed into place; only then does
 * latest.json (replaced atomically) point at it. A kill at any moment leaves latest.json naming a
 * complete checkpoint, so a half-written one is never loaded.
 */
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { UserError, describeFsError } from '../util/errors.js';
import { isTempName, readJsonFile, syncDir, writeFileAtomic } from '../util/fsx.js';
import { arrayOf, checkJson, finite, int, nullable, object, oneOf, str } from '../shards/json-check.js';
import { fileSaveHandler, weightBytes } from './model-io.js';

export const CHECKPOINT_DIR = 'checkpoint';
const LATEST = 'latest.json';
const STATE = 'state.json';
const OPTIMIZER_BIN = 'optimizer.bin';

export interface CheckpointState {
  version: 1;
  /** epochs completed */
  epoch: number;
  /** Shuffling randomness is derived from (seed, epoch), so this is the whole RNG state. */
  rng: { seed: number; next_epoch: number };
  early_stopping: { best: number | null; best_epoch: number | null; stale_epochs: number; best_val: Record<string, number | null> | null };
  train_seconds: number;
  train_examples: number;
  /** the options that shape the run: a resume must use the same */
  run: Record<string, unknown>;
  optimizer: { name: string; weights: tf.io.WeightsManifestEntry[]; scalars?: Record<string, number> };
}

/**
 * Adam keeps beta1^t and beta2^t as running products; its setWeights recomputes them with pow(),
 * which differs in the last float32 bit. Saving the products makes a resumed run bit-identical to
 * an uninterrupted one.
 */
const OPTIMIZER_SCALARS = ['accBeta1', 'accBeta2'] as const;

function optimizerScalars(optimizer: tf.Optimizer): Record<string, number> {
  const out: Record<string, number> = {};
  for (const key of OPTIMIZER_SCALARS) {
    const v = (optimizer as unknown as Record<string, tf.Variable | undefined>)[key];
    if (v instanceof tf.Variable) out[key] = v.dataSync()[0];
  }
  return out;
}

/** Everything resume reads from state.json; a file edited or damaged into valid JSON is refused here. */
const checkState = object({
  version: oneOf(1),
  epoch: int(0),
  rng: object({ seed: int(0), next_epoch: int(0) }),
  early_stopping: object({ best: nullable(finite), best_epoch: nullable(int(0)), stale_epochs: int(0), best_val: nullable(object({})) }),
  train_seconds: finite,
  train_examples: int(0),
  run: object({}),
  optimizer: object({ name: str, weights: arrayOf(object({ name: str, shape: arrayOf(int(0), 16), dtype: str })) }),
});

interface Latest {
  epoch: number;
  dir: string;
}

function epochDirName(epoch: number): string {
  return `epoch-${String(epoch).padStart(6, '0')}`;
}

export async function writeCheckpoint(outDir: string, model: tf.LayersModel, optimizer: tf.Optimizer, state: Omit<CheckpointState, 'optimizer'> & { optimizer: { name: string } }): Promise<void> {
  const root = path.join(outDir, CHECKPOINT_DIR);
  const name = epochDirName(state.epoch);
  const tmp = path.join(root, `.${name}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`);
  try {
    await fs.mkdir(tmp, { recursive: true });
    await model.save(fileSaveHandler(tmp));
    const { data, specs } = await tf.io.encodeWeights(await optimizer.getWeights());
    await writeFileAtomic(path.join(tmp, OPTIMIZER_BIN), new Uint8Array(data));
    const full: CheckpointState = { ...state, optimizer: { name: state.optimizer.name, weights: specs, scalars: optimizerScalars(optimizer) } };
    await writeFileAtomic(path.join(tmp, STATE), `${JSON.stringify(full, null, 1)}\n`);
    const final = path.join(root, name);
    await fs.rm(final, { recursive: true, force: true });
    await fs.rename(tmp, final);
    syncDir(root);
    await writeFileAtomic(path.join(root, LATEST), `${JSON.stringify({ epoch: state.epoch, dir: name } satisfies Latest)}\n`);
  } catch (err) {
    await fs.rm(tmp, { recursive: true, force: true }).catch(() => {});
    throw describeFsError(err, root, 'write the checkpoint') ?? err;
  }
  // Older checkpoints and leftovers of killed writers (directories and latest.json temps); the one
  // latest.json names stays.
  for (const entry of await fs.readdir(root)) {
    if (entry === name || entry === LATEST) continue;
    if (/^epoch-\d+$/.test(entry) || isTempName(entry)) {
      await fs.rm(path.join(root, entry), { recursive: true, force: true }).catch(() => {});
    }
  }
}

export interface LoadedCheckpoint {
  dir: string;
  state: CheckpointState;
}

/** The last complete checkpoint under `outDir`, or null when there is none. */
export async function readCheckpoint(outDir: string): Promise<LoadedCheckpoint | null> {
  const root = path.join(outDir, CHECKPOINT_DIR);
  const latestPath = path.join(root, LATEST);
  const exists = await fs.access(latestPath).then(() => true, () => false);
  if (!exists) return null;
  const latest = await readJsonFile<Latest>(latestPath);
  if (typeof latest?.dir !== 'string' || !/^epoch-\d+$/.test(latest.dir)) {
    throw new UserError(`${latestPath}: damaged (no checkpoint directory named); delete ${root} to start over`);
  }
  const dir = path.join(root, latest.dir);
  const state = await readJsonFile<CheckpointState>(path.join(dir, STATE)).then((value) => {
    checkJson(value, checkState, path.join(dir, STATE), `the checkpoint is damaged; delete ${root} to start over`);
    return value;
  }, (err) => {
    if (err instanceof UserError) throw new UserError(`${dir}: checkpoint unreadable (${err.message}); delete ${root} to start over`);
    throw err;
  });
  if (state.version !== 1 || state.epoch !== latest.epoch) {
    throw new UserError(`${dir}: checkpoint state does not match ${LATEST}; delete ${root} to start over`);
  }
  return { dir, state };
}

export async function restoreOptimizer(optimizer: tf.Optimizer, ckpt: LoadedCheckpoint): Promise<void> {
  const file = path.join(ckpt.dir, OPTIMIZER_BIN);
  const bytes = await fs.readFile(file).catch((err) => {
    throw describeFsError(err, file, 'resume from the checkpoint') ?? err;
  });
  const specs = ckpt.state.optimizer.weights;
  const expected = specs.reduce((n, s) => n + weightBytes(s), 0);
  if (bytes.byteLength !== expected) {
    throw new UserError(`${file}: ${bytes.byteLength} bytes, the checkpoint describes ${expected}; the checkpoint is damaged: delete ${path.dirname(ckpt.dir)} to start over`);
  }
  const map = tf.io.decodeWeights(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength) as ArrayBuffer, specs);
  // setWeights is positional (accumulators follow the variable order), so keep the saved order.
  await optimizer.setWeights(specs.map((s) => ({ name: s.name, tensor: map[s.name] })));
  tf.dispose(Object.values(map)); // setWeights copied them into variables
  for (const [key, value] of Object.entries(ckpt.state.optimizer.scalars ?? {})) {
    const v = (optimizer as unknown as Record<string, tf.Variable | undefined>)[key];
    if (v instanceof tf.Variable) tf.tidy(() => v.assign(tf.scalar(value)));
  }
}
