/**
 * Encodes and writes finished shards off the main thread: ONNX Runtime's Node binding runs inference
 * synchronously on the main thread, so Parquet encoding there would stall the teacher.
 */
import { parentPort } from 'node:worker_threads';
import type { ShardColumns, StorageSpec } from '../shards/format.js';
import { type ShardPaths, encodeShard, shardSidecarFor, writeShard } from '../shards/writer.js';
import { storeSpecOf, toStored } from '../sparse/store.js';
import { UserError } from '../util/errors.js';

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

/**
 * Encode a few synthetic shards in memory (default storage: Parquet, zstd, float32) and make their
 * sidecar records (non-finite scan, sha256). Cold, the first real shard's record took ~14 ms next to
 * the teacher instead of under 1 (an interpreted pass over the logits), CPU taken from a teacher that
 * runs on every core; done here, while the main thread hashes the teacher and the data, that work is
 * off the clock.
 */
function warmUp(): void {
  const rows = 4096;
  const width = 10;
  const cols: ShardColumns = {
    rows, row: BigInt64Array.from({ length: rows }, (_, i) => BigInt(i)), logitsWidth: width, logitsDtype: 'float32',
    logits: Float32Array.from({ length: rows * width }, (_, i) => Math.sin(i) * 8), label: Int32Array.from({ length: rows }, (_, i) => i % width),
  };
  for (let i = 0; i < 8; i++) {
    const encoded = encodeShard(cols, { format: 'parquet', compression: 'zstd', logits_dtype: 'float32' }, { config_id: 'warm-up', first_row: 0, shard_index: 0 });
    shardSidecarFor({ index: 0, format: 'parquet', first_row: 0, cols, encoded, config_id: 'warm-up', execution_provider: 'cpu' });
  }
}

try {
  warmUp();
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
