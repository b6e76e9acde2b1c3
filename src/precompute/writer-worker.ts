/**
 * Encodes and writes finished shards off the main thread: ONNX Runtime's Node binding runs inference
 * synchronously on the main thread, so Parquet encoding there would stall the teacher.
 */
import { parentPort, workerData } from 'node:worker_threads';
import type { Compression, ShardColumns, StorageFormat, StorageSpec } from '../shards/format.js';
import type { ShardPaths } from '../shards/paths.js';
import { encodeShard, shardSidecarFor, sidecarText, writeShard } from '../shards/writer.js';
import { storeSpecOf, toStored } from '../sparse/store.js';
import { UserError } from '../util/errors.js';
import { defaultShardRows } from './config.js';

export interface WriteRequest {
  id: number;
  cacheDir: string;
  index: number;
  cols: ShardColumns;
  storage: StorageSpec;
  configId: string;
  provider: string;
  /** sequence layout: examples the shard covers */
  examples?: number;
  /** prepared by the caller while the shard was computed */
  paths: ShardPaths;
}

export type WriteReply =
  | { id: number; ok: true; record: Awaited<ReturnType<typeof writeShard>> }
  | { id: number; ok: false; message: string; user: boolean; code?: string }
  | { ready: true };

/** What the run's shards will look like, as far as its flags tell before the teacher is opened. */
export interface WarmUpShape {
  labels: boolean;
  format: StorageFormat;
  compression: Compression;
}

/**
 * Encode a few synthetic shards shaped like the run's (label column or not, format, compression) and
 * make their sidecars, record and text. Each thread compiles its code afresh, and what is compiled
 * during the run takes CPU from a teacher that runs on every core. Cold, the first real shard's
 * record took ~14 ms instead of under 1; after a warm-up of another shape (4,096 rows with a label
 * column, for a run without one, and no sidecar text) the writer still used 31-38 ms of CPU inside a
 * 30,000-row run, and warming up on the run's shape made the cheap bench teacher's run 4-5% faster
 * (README). Done here, while the main thread opens the teacher and hashes the data, that work is off
 * the clock.
 */
function warmUp(shape: WarmUpShape): void {
  const width = 10;
  const rows = defaultShardRows(width, 0); // a full shard of a 10-class teacher
  const cols: ShardColumns = {
    rows, row: BigInt64Array.from({ length: rows }, (_, i) => BigInt(i)), logitsWidth: width, logitsDtype: 'float32',
    logits: Float32Array.from({ length: rows * width }, (_, i) => Math.sin(i) * 8),
    ...(shape.labels ? { label: Int32Array.from({ length: rows }, (_, i) => i % width) } : {}),
  };
  for (let i = 0; i < 8; i++) {
    const encoded = encodeShard(cols, { format: shape.format, compression: shape.compression, logits_dtype: 'float32' }, { config_id: 'warm-up', first_row: 0, shard_index: 0 });
    sidecarText(shardSidecarFor({ index: 0, format: shape.format, first_row: 0, cols, encoded, config_id: 'warm-up', execution_provider: 'cpu' }));
  }
}

try {
  warmUp(workerData as WarmUpShape);
} catch {
  // only an optimisation: a real shard reports any real encoding problem
}
parentPort!.postMessage({ ready: true } satisfies WriteReply);

parentPort!.on('message', async (req: WriteRequest) => {
  let reply: WriteReply;
  try {
    // Conversion (log-probabilities, float16, top-k and its fidelity stats) happens here, off the
    // inference thread; the dense float32 logits of a logits teacher pass through untouched.
    const { cols, fidelity } = toStored(req.cols, storeSpecOf(req.storage));
    const extras = { ...(req.examples !== undefined ? { examples: req.examples } : {}), ...(fidelity ? { fidelity } : {}) };
    const record = await writeShard(req.cacheDir, req.index, cols, req.storage, req.configId, req.provider, extras, req.paths);
    reply = { id: req.id, ok: true, record };
  } catch (err) {
    reply = { id: req.id, ok: false, message: (err as Error).message ?? String(err), user: err instanceof UserError, code: (err as NodeJS.ErrnoException).code };
  }
  parentPort!.postMessage(reply);
});
