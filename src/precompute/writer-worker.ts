/**
 * Encodes and writes finished shards off the main thread: ONNX Runtime's Node binding runs inference
 * synchronously on the main thread, so Parquet encoding there would stall the teacher.
 */
import { parentPort } from 'node:worker_threads';
import type { ShardColumns, StorageSpec } from '../shards/format.js';
import { writeShard } from '../shards/writer.js';
import { UserError } from '../util/errors.js';

export interface WriteRequest {
  id: number;
  cacheDir: string;
  index: number;
  cols: ShardColumns;
  storage: StorageSpec;
  configId: string;
  provider: string;
}

export type WriteReply =
  | { id: number; ok: true; record: Awaited<ReturnType<typeof writeShard>> }
  | { id: number; ok: false; message: string; user: boolean; code?: string };

parentPort!.on('message', async (req: WriteRequest) => {
  let reply: WriteReply;
  try {
    const record = await writeShard(req.cacheDir, req.index, req.cols, req.storage, req.configId, req.provider);
    reply = { id: req.id, ok: true, record };
  } catch (err) {
    reply = { id: req.id, ok: false, message: (err as Error).message ?? String(err), user: err instanceof UserError, code: (err as NodeJS.ErrnoException).code };
  }
  parentPort!.postMessage(reply);
});
