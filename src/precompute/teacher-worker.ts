/**
 * The teacher on its own thread. ONNX Runtime's Node binding runs session.run synchronously on the
 * calling thread, so on the main thread every batch's reading, converting and bookkeeping waits for
 * inference and inference waits for it. Here the next batch is prepared while this one runs.
 */
import { parentPort, workerData } from 'node:worker_threads';
import * as ort from 'onnxruntime-node';
import type { TypedArray } from '../util/dtype.js';
import { UserError } from '../util/errors.js';
import { type TeacherOptions, openTeacher } from './teacher.js';

export interface FeedMessage { name: string; type: ort.Tensor.Type; dims: readonly number[]; data: ort.Tensor['data'] }

export type TeacherRequest =
  | { id: number; feeds: FeedMessage[]; output: string; owned: string | null }
  | { release: true };

export type TeacherReply =
  | { opened: true; teacher: Record<string, unknown> }
  | { opened: false; message: string; user: boolean }
  | { id: number; ok: true; dims: readonly number[]; data: ort.Tensor['data']; returned: ArrayBuffer | null }
  | { id: number; ok: false; message: string }
  | { released: true };

const { file, opts } = workerData as { file: string; opts: TeacherOptions };
const port = parentPort!;

try {
  const { session, ...meta } = await openTeacher(file, opts);
  port.postMessage({ opened: true, teacher: meta } satisfies TeacherReply);
  // One batch at a time, in the order sent.
  let queue = Promise.resolve();
  port.on('message', (req: TeacherRequest) => {
    queue = queue.then(async () => {
      if ('release' in req) {
        await session.release();
        port.postMessage({ released: true } satisfies TeacherReply);
        return;
      }
      const returned = req.owned === null ? null : (req.feeds.find((f) => f.name === req.owned)!.data as TypedArray).buffer as ArrayBuffer;
      try {
        const feeds: Record<string, ort.Tensor> = {};
        for (const f of req.feeds) feeds[f.name] = new ort.Tensor(f.type, f.data as never, f.dims);
        const out = await session.run(feeds, req.output);
        // A copy of our own to transfer: ONNX Runtime's output memory is not ours to give away.
        const data = (out.data as TypedArray).slice() as ort.Tensor['data'];
        const buffers = [(data as TypedArray).buffer as ArrayBuffer, ...(returned ? [returned] : [])];
        port.postMessage({ id: req.id, ok: true, dims: out.dims, data, returned } satisfies TeacherReply, buffers);
      } catch (err) {
        port.postMessage({ id: req.id, ok: false, message: String((err as Error).message ?? err) } satisfies TeacherReply);
      }
    });
  });
} catch (err) {
  port.postMessage({ opened: false, message: String((err as Error).message ?? err), user: err instanceof UserError } satisfies TeacherReply);
}
