/**
 * Multithreaded wasm under Node. tfjs-backend-wasm ships a threaded SIMD build whose matrix
 * products, convolutions and elementwise ops run on XNNPACK's thread pool, but under Node it never
 * loads it (tfjs issue #3830): its pthread workers are started from blob: URLs, which Node cannot
 * run. Here the 'wasm' backend is registered with that build, its workers started from a file
 * (wasm-pthread-worker.cjs). The pool size comes from emscripten_num_logical_cores, which tfjs
 * halves (it assumes two hardware threads per core), so the instantiation reports twice the wanted
 * count. XNNPACK cuts a product into output tiles, each summed by one thread in the usual order, so
 * results are bit-identical to one thread's.
 */
import * as fs from 'node:fs';
import { createRequire } from 'node:module';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import * as tf from '@tensorflow/tfjs';

const require = createRequire(import.meta.url);
const BUILD = 'tfjs-backend-wasm-threaded-simd';
const WORKER = path.join(path.dirname(fileURLToPath(import.meta.url)), 'wasm-pthread-worker.cjs');
const WASM_PRIORITY = 2;
/** tfjs-backend-wasm caps XNNPACK's pool at 8 threads (its build starts 8 workers). */
const MAX_THREADS = 8;

interface EmscriptenModule {
  cwrap(name: string, returns: string | null, args: string[]): (...args: number[]) => number;
  PThread?: { runningWorkers: { unref(): void }[] };
  tfjs?: Record<string, (...args: number[]) => number>;
}
type Factory = (config: Record<string, unknown>) => Promise<EmscriptenModule>;
type BackendFactory = () => tf.KernelBackend | Promise<tf.KernelBackend>;
interface WasmPackage { BackendWasm: new (module: EmscriptenModule) => tf.KernelBackend }

/** The part of the WebAssembly global used here (the project compiles without DOM types). */
interface WebAssemblyApi {
  Memory: new (descriptor: { initial: number; maximum: number; shared: boolean }) => { buffer: ArrayBufferLike };
  instantiate(binary: Uint8Array, imports: object): Promise<{ instance: unknown; module: unknown }>;
}
const wasmApi = (globalThis as unknown as { WebAssembly: WebAssemblyApi }).WebAssembly;

/** Whether this Node can run wasm threads at all (shared memory and atomics). */
function wasmThreadsSupported(): boolean {
  try {
    return new wasmApi.Memory({ initial: 1, maximum: 1, shared: true }).buffer instanceof SharedArrayBuffer;
  } catch {
    return false;
  }
}

/** The wasm build of this process: its thread count, and tfjs's own registration to fall back to. */
let chosen: { threads: number; shipped: BackendFactory } | null = null;

/**
 * Choose, once per process, which build tfjs's 'wasm' backend is: the threaded one with `threads`
 * threads, or with `threads` 1 the shipped single-threaded one; the caller then sets the backend
 * (wasmThreadCount says what it runs on). The first choice stands for the process: a second
 * instance of tfjs-backend-wasm in one process aborts, and the two builds side by side gave wrong
 * results (both measured).
 */
export function chooseWasmBuild(threads: number): void {
  if (chosen) return;
  const shipped = tf.findBackendFactory('wasm');
  if (!shipped) return;
  chosen = { threads: threads > 1 && wasmThreadsSupported() ? Math.min(threads, MAX_THREADS) : 1, shipped };
  if (chosen.threads > 1) {
    const pkg = require('@tensorflow/tfjs-backend-wasm') as WasmPackage;
    const count = chosen.threads;
    tf.removeBackend('wasm');
    tf.registerBackend('wasm', () => startThreaded(pkg, count), WASM_PRIORITY);
  }
}

/** The thread count of this process's wasm build (1 until a threaded build has been chosen). */
export function wasmThreadCount(): number {
  return chosen?.threads ?? 1;
}

/** The shipped build after the threaded one failed to start. */
export function fallBackToShippedBuild(): void {
  if (!chosen || chosen.threads === 1) return;
  tf.removeBackend('wasm');
  tf.registerBackend('wasm', chosen.shipped, WASM_PRIORITY);
  chosen.threads = 1;
}

async function startThreaded(pkg: WasmPackage, threads: number): Promise<tf.KernelBackend> {
  const module = await loadThreaded(threads);
  const backend = new pkg.BackendWasm(module); // starts XNNPACK's pool
  // What XNNPACK actually started, for the report.
  if (chosen) chosen.threads = module.tfjs!.getThreadsCount();
  // A running pthread's worker holds the event loop open; the pool idles between kernels and
  // must not keep the process alive after the work is done.
  for (const worker of module.PThread?.runningWorkers ?? []) worker.unref();
  return backend;
}

async function loadThreaded(threads: number): Promise<EmscriptenModule> {
  const main = require.resolve(`@tensorflow/tfjs-backend-wasm/wasm-out/${BUILD}.js`);
  const dir = path.dirname(main);
  const factory = require(main) as Factory;
  const binary = fs.readFileSync(path.join(dir, `${BUILD}.wasm`));
  let failed: (err: unknown) => void = () => {};
  const failure = new Promise<never>((_, reject) => (failed = reject));
  const module = await Promise.race([failure, factory({
    locateFile: (file: string) => (file.endsWith('.worker.js') ? WORKER : path.join(dir, file)),
    mainScriptUrlOrBlob: main,
    instantiateWasm: (imports: { env: Record<string, unknown> }, receive: (instance: unknown, module: unknown) => void) => {
      imports.env = { ...imports.env, emscripten_num_logical_cores: () => 2 * threads };
      wasmApi.instantiate(binary, imports).then((r) => receive(r.instance, r.module), failed);
      return {};
    },
  })]);
  const fn = (name: string, returns: string | null, args: string[] = []) => module.cwrap(name, returns, args);
  // What tfjs's own loader attaches before handing the module to BackendWasm.
  module.tfjs = {
    init: fn('init', null),
    initWithThreadsCount: fn('init_with_threads_count', null, ['number']),
    getThreadsCount: fn('get_threads_count', 'number'),
    registerTensor: fn('register_tensor', null, ['number', 'number', 'number']),
    disposeData: fn('dispose_data', null, ['number']),
    dispose: fn('dispose', null),
  };
  return module;
}
