import * as fs from 'node:fs';
import * as path from 'node:path';
import { Worker } from 'node:worker_threads';
import type * as ort from 'onnxruntime-node';
import { usableCpus } from '../util/cpus.js';
import type { TypedArray } from '../util/dtype.js';
import { UserError } from '../util/errors.js';
import { PROVIDER_FILES, ortBinDir } from './cuda.js';
import type { BatchOutput, DeviceSpec, Teacher, TeacherOptions } from './teacher.js';
import type { FeedMessage, TeacherReply, TeacherRequest } from './teacher-worker.js';

export const INFERENCE_THREADS = ['auto', 'main', 'worker'] as const;
export type InferenceThread = (typeof INFERENCE_THREADS)[number];
/** where the teacher ran: auto resolved */
export type InferencePlace = Exclude<InferenceThread, 'auto'>;

/** Batches in flight with the teacher on its own thread: one running, one queued, one being prepared. */
const WORKER_DEPTH = 3;

/**
 * Where session.run goes. On its own thread, the next batch is read and converted while the teacher
 * runs; that pays only when the main thread and the shard writer have cores of their own besides
 * inference (one core for a CUDA teacher, `threads` for a CPU one). Measured, pipeline / raw
 * session.run: on an H200 with 16 cores, 784-1200-1200-10 on CUDA 0.68 on the main thread, 0.98 on
 * its own; on 2 cores with ONNX Runtime on 1 thread, a fast teacher 0.59 on the main thread and 0.43
 * on its own (three busy threads on two cores).
 */
export function chooseInferenceThread(mode: InferenceThread, device: DeviceSpec, threads: number | undefined, env: NodeJS.ProcessEnv = process.env, cores = usableCpus()): InferencePlace {
  if (mode !== 'auto') return mode;
  const cuda = device.kind === 'cuda' || (device.kind === 'auto' && Boolean(env.KDCACHE_ORT_CUDA_DIR || fs.existsSync(path.join(ortBinDir(), PROVIDER_FILES[1]))));
  const inference = cuda ? 1 : threads ?? cores;
  return cores - inference >= 2 ? 'worker' : 'main';
}

/** openTeacher on a worker thread (teacher-worker.ts); the same Teacher, with a session that pipelines. */
export async function openTeacherThread(file: string, opts: TeacherOptions): Promise<Teacher> {
  const worker = new Worker(new URL('./teacher-worker.js', import.meta.url), { workerData: { file, opts } });
  const pending = new Map<number, { resolve: (o: BatchOutput) => void; reject: (e: Error) => void }>();
  let opened: (r: TeacherReply) => void = () => {};
  let released: () => void = () => {};
  let failure: Error | null = null;
  const fail = (err: Error) => {
    failure ??= err;
    for (const p of pending.values()) p.reject(failure);
    pending.clear();
    released();
  };
  const first = new Promise<TeacherReply>((resolve) => (opened = resolve));
  worker.on('message', (reply: TeacherReply) => {
    if ('opened' in reply) opened(reply);
    else if ('released' in reply) released();
    else {
      const p = pending.get(reply.id);
      pending.delete(reply.id);
      if (!p) return;
      if (reply.ok) p.resolve({ dims: reply.dims, data: reply.data, ...(reply.returned ? { returned: reply.returned } : {}) });
      else p.reject(new Error(reply.message));
    }
  });
  worker.on('error', (err) => { opened({ opened: false, message: err.message, user: false }); fail(err); });
  worker.on('exit', (code) => { opened({ opened: false, message: `the teacher's thread exited (code ${code})`, user: false }); fail(new Error(`the teacher's thread exited (code ${code})`)); });

  const reply = await first;
  if (!('opened' in reply) || !reply.opened) {
    await worker.terminate();
    const r = reply as { message: string; user: boolean };
    throw r.user ? new UserError(r.message) : new Error(r.message);
  }
  let nextId = 0;
  const meta = reply.teacher as Omit<Teacher, 'session'>;
  return {
    ...meta,
    session: {
      depth: WORKER_DEPTH,
      run(feeds, output, owned) {
        if (failure) return Promise.reject(failure);
        const id = nextId++;
        const list: FeedMessage[] = Object.entries(feeds).map(([name, t]: [string, ort.Tensor]) => ({ name, type: t.type, dims: t.dims, data: t.data }));
        const ownedName = owned ? list.find((f) => (f.data as TypedArray).buffer === owned)?.name ?? null : null;
        const result = new Promise<BatchOutput>((resolve, reject) => pending.set(id, { resolve, reject }));
        worker.postMessage({ id, feeds: list, output, owned: ownedName } satisfies TeacherRequest, ownedName ? [owned!] : []);
        return result;
      },
      async release() {
        if (!failure) {
          const done = new Promise<void>((resolve) => (released = resolve));
          worker.postMessage({ release: true } satisfies TeacherRequest);
          await done;
        }
        await worker.terminate();
      },
    },
  };
}
