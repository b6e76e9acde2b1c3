import { Worker } from 'node:worker_threads';
import type { ShardColumns, StorageSpec } from '../shards/format.js';
import type { ShardSidecar } from '../shards/manifest-types.js';
import type { ShardPaths } from '../shards/paths.js';
import { UserError, describeFsError } from '../util/errors.js';
import type { WarmUpShape, WriteReply, WriteRequest } from './writer-worker.js';

/**
 * A pool of writer workers with a bounded queue: submit() resolves once there is room, so at most
 * `maxPending` finished shards wait in memory while inference goes on.
 */
export class ShardWriterPool {
  private readonly workers: Worker[] = [];
  private readonly idle: Worker[] = [];
  private readonly waiting: { req: WriteRequest; transfer: ArrayBuffer[] }[] = [];
  private readonly pending = new Map<number, { resolve: (r: ShardSidecar) => void; reject: (e: Error) => void }>();
  private readonly results: Promise<ShardSidecar>[] = [];
  private nextId = 0;
  private firstError: Error | undefined;
  private roomWaiters: (() => void)[] = [];

  private readonly started: Promise<void>[] = [];

  /** `warm`: the shards' expected shape, which each worker encodes a few of before it is ready. */
  constructor(threads: number, private readonly maxPending: number, warm: WarmUpShape) {
    for (let i = 0; i < threads; i++) {
      const w = new Worker(new URL('./writer-worker.js', import.meta.url), { workerData: warm });
      let onReady = () => {};
      this.started.push(new Promise<void>((resolve) => (onReady = resolve)));
      w.on('message', (reply: WriteReply) => ('ready' in reply ? onReady() : this.onReply(w, reply)));
      // A worker that dies before it is ready fails the pool, which ready() reports.
      w.on('error', (err) => { this.fail(err); onReady(); });
      w.on('exit', () => onReady());
      this.workers.push(w);
      this.idle.push(w);
    }
  }

  /** Resolves once every worker has loaded and warmed up its encoder (see writer-worker.ts). */
  async ready(): Promise<void> {
    await Promise.all(this.started);
    if (this.firstError) throw this.firstError;
  }

  private onReply(w: Worker, reply: Exclude<WriteReply, { ready: true }>): void {
    const p = this.pending.get(reply.id)!;
    this.pending.delete(reply.id);
    if (reply.ok) p.resolve(reply.record as ShardSidecar);
    else {
      const err = reply.user ? new UserError(reply.message)
        : (describeFsError({ code: reply.code }, /(\S+):/.exec(reply.message)?.[1] ?? 'shard', 'write the shard') ?? new Error(reply.message));
      this.fail(err);
      p.reject(err);
    }
    this.idle.push(w);
    this.pump();
    this.roomWaiters.splice(0).forEach((f) => f());
  }

  private fail(err: Error): void {
    this.firstError ??= err;
    this.roomWaiters.splice(0).forEach((f) => f());
  }

  private pump(): void {
    while (this.idle.length > 0 && this.waiting.length > 0) {
      const w = this.idle.pop()!;
      const { req, transfer } = this.waiting.shift()!;
      w.postMessage(req, transfer);
    }
  }

  /** Queue a shard; buffers in `cols` are transferred (the caller must not reuse them). */
  async submit(cacheDir: string, index: number, paths: ShardPaths, cols: ShardColumns, storage: StorageSpec, configId: string, provider: string, examples?: number): Promise<void> {
    while (this.pending.size >= this.maxPending && !this.firstError) await new Promise<void>((r) => this.roomWaiters.push(r));
    if (this.firstError) throw this.firstError;
    const id = this.nextId++;
    const transfer = [cols.row.buffer, cols.logits.buffer, cols.label?.buffer, cols.input?.buffer, cols.position?.buffer]
      .filter((b): b is ArrayBuffer => b instanceof ArrayBuffer);
    const result = new Promise<ShardSidecar>((resolve, reject) => this.pending.set(id, { resolve, reject }));
    result.catch(() => {});
    this.results.push(result);
    this.waiting.push({ req: { id, cacheDir, index, paths, cols, storage, configId, provider, ...(examples !== undefined ? { examples } : {}) }, transfer: [...new Set(transfer)] });
    this.pump();
  }

  /** Wait for every queued shard; throws the first failure. */
  async drain(): Promise<ShardSidecar[]> {
    const settled = await Promise.allSettled(this.results);
    if (this.firstError) throw this.firstError;
    return settled.map((s) => (s as PromiseFulfilledResult<ShardSidecar>).value);
  }

  /** Idempotent. */
  async close(): Promise<void> {
    await Promise.all(this.workers.splice(0).map((w) => w.terminate()));
  }
}
