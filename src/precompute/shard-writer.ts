import { Worker } from 'node:worker_threads';
import type { ShardColumns, StorageSpec } from '../shards/format.js';
import type { ShardSidecar } from '../shards/manifest-types.js';
import type { ShardPaths } from '../shards/paths.js';
import { UserError, describeFsError } from '../util/errors.js';
import type { WarmUpShape, WriteReply, WriteRequest } from './writer-worker.js';

/**
 * A pool of writer workers with a bounded queue: submit() resolves once there is room, so at most
 * `maxPending` finished shards wait in memory while inference goes on.
 *
 * After the first failure nothing more is handed to a worker, and close() lets the writes already
 * handed over finish before it stops the threads: a thread stopped in the middle of a write leaves
 * its temp file behind (measured: a full disk with slowed writes left `.shard-00006.parquet.tmp-*`
 * in 3 runs of 3 when the queued shard was still handed over after the failure).
 */
export class ShardWriterPool {
  private readonly workers: Worker[] = [];
  private readonly idle: Worker[] = [];
  private readonly waiting: { req: WriteRequest; transfer: ArrayBuffer[] }[] = [];
  private readonly pending = new Map<number, { resolve: (r: ShardSidecar) => void; reject: (e: Error) => void; promise: Promise<ShardSidecar> }>();
  /** the request each worker is writing */
  private readonly busy = new Map<Worker, number>();
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
      w.on('exit', () => { onReady(); this.onExit(w); });
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
    this.busy.delete(w);
    if (reply.ok) this.settle(reply.id, reply.record as ShardSidecar);
    else {
      const err = reply.user ? new UserError(reply.message)
        : (describeFsError({ code: reply.code }, /(\S+):/.exec(reply.message)?.[1] ?? 'shard', 'write the shard') ?? new Error(reply.message));
      this.fail(err);
      this.settle(reply.id, err);
    }
    this.idle.push(w);
    this.pump();
    this.roomWaiters.splice(0).forEach((f) => f());
  }

  /** A worker that exits while it holds a write would leave that write unanswered, and drain() waiting. */
  private onExit(w: Worker): void {
    const id = this.busy.get(w);
    this.busy.delete(w);
    const i = this.idle.indexOf(w);
    if (i >= 0) this.idle.splice(i, 1);
    if (id === undefined) return;
    const err = this.firstError ?? new Error('a shard writer thread exited in the middle of a write');
    this.fail(err);
    this.settle(id, err);
  }

  private settle(id: number, outcome: ShardSidecar | Error): void {
    const p = this.pending.get(id);
    if (!p) return;
    this.pending.delete(id);
    if (outcome instanceof Error) p.reject(outcome);
    else p.resolve(outcome);
  }

  private fail(err: Error): void {
    this.firstError ??= err;
    for (const { req } of this.waiting.splice(0)) this.settle(req.id, this.firstError);
    this.roomWaiters.splice(0).forEach((f) => f());
  }

  private pump(): void {
    while (!this.firstError && this.idle.length > 0 && this.waiting.length > 0) {
      const w = this.idle.pop()!;
      const { req, transfer } = this.waiting.shift()!;
      this.busy.set(w, req.id);
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
    let settlers!: { resolve: (r: ShardSidecar) => void; reject: (e: Error) => void };
    const promise = new Promise<ShardSidecar>((resolve, reject) => (settlers = { resolve, reject }));
    promise.catch(() => {});
    this.pending.set(id, { ...settlers, promise });
    this.results.push(promise);
    this.waiting.push({ req: { id, cacheDir, index, paths, cols, storage, configId, provider, ...(examples !== undefined ? { examples } : {}) }, transfer: [...new Set(transfer)] });
    this.pump();
  }

  /** Wait for every queued shard; throws the first failure. */
  async drain(): Promise<ShardSidecar[]> {
    const settled = await Promise.allSettled(this.results);
    if (this.firstError) throw this.firstError;
    return settled.map((s) => (s as PromiseFulfilledResult<ShardSidecar>).value);
  }

  /** Idempotent. Shards not yet handed to a worker are dropped; those being written are finished. */
  async close(): Promise<void> {
    this.fail(new Error('the shard writer pool is closed'));
    await Promise.allSettled([...this.busy.values()].map((id) => this.pending.get(id)?.promise));
    await Promise.all(this.workers.splice(0).map((w) => w.terminate()));
  }
}
