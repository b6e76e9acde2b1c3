/**
 * Choosing the tfjs backend. `auto` takes the fastest that loads: native TensorFlow (tfjs-node-gpu,
 * tfjs-node) when installed, then `native` (the wasm backend with its matrix products and
 * convolutions on the machine's BLAS, see kernels/native.ts), then pure `wasm`, then the pure-JS
 * `cpu` backend. tfjs-node cannot be installed offline (its install downloads libtensorflow), so it
 * is only ever loaded optionally; `native` needs `npm run build` to have found a C++ compiler and
 * OpenBLAS to be installed; `wasm` and `cpu` always work.
 */
import * as tf from '@tensorflow/tfjs';
import { usableCpus } from '../util/cpus.js';
import { UserError } from '../util/errors.js';
import { registerAdamKernel } from './kernels/adam.js';
import { loadNative } from './kernels/native.js';
import { configureWasmKernels } from './wasm-kernels.js';
import { chooseWasmBuild, fallBackToShippedBuild, wasmThreadCount } from './wasm-threads.js';

import type { BackendChoice } from './backend-choices.js';

export { BACKEND_CHOICES, type BackendChoice } from './backend-choices.js';

export interface BackendInfo {
  /** what runs: 'tensorflow', 'native', 'wasm' or 'cpu' */
  name: string;
  /** the tfjs backend underneath ('native' runs on tfjs's 'wasm') */
  tfBackend: string;
  /** the package it came from */
  source: string;
  /** one line for the user: what loaded and why */
  message: string;
}

export interface BackendOptions {
  /** the student has convolutions (they are slow on the cpu backend) */
  needsConv?: boolean;
}

const NATIVE_PACKAGES = ['@tensorflow/tfjs-node-gpu', '@tensorflow/tfjs-node'];
const WASM = '@tensorflow/tfjs-backend-wasm';
const CORES = usableCpus();

export async function initBackend(choice: BackendChoice, opts: BackendOptions = {}): Promise<BackendInfo> {
  registerAdamKernel('cpu');
  if (choice === 'tensorflow' || choice === 'auto') {
    for (const pkg of NATIVE_PACKAGES) {
      if (await tryImport(pkg) && await trySetBackend('tensorflow')) {
        return { name: 'tensorflow', tfBackend: 'tensorflow', source: pkg, message: `backend: tensorflow (${pkg})` };
      }
    }
    if (choice === 'tensorflow') {
      throw new UserError('--backend tensorflow: neither @tensorflow/tfjs-node-gpu nor @tensorflow/tfjs-node is installed (their install downloads libtensorflow, which needs network access); use --backend native, wasm or auto');
    }
  }
  let nativeNote = '';
  if (choice === 'native' || choice === 'auto' || choice === 'wasm') {
    const native = choice === 'wasm' ? null : loadNative();
    let wasmOk = await tryImport(WASM);
    if (wasmOk) {
      // The native kernels bring their own threads: they run on the single-threaded build. The
      // build is chosen by the first backend set up in the process (see chooseWasmBuild).
      chooseWasmBuild(native?.ok ? 1 : Number(process.env.KDCACHE_THREADS) || CORES);
      wasmOk = await trySetBackend('wasm');
      if (!wasmOk && wasmThreadCount() > 1) {
        fallBackToShippedBuild();
        wasmOk = await trySetBackend('wasm');
      }
    }
    if (!wasmOk && choice !== 'auto') throw new UserError(`--backend ${choice}: ${WASM} failed to load; reinstall dependencies (npm ci) or use --backend cpu`);
    if (wasmOk && native) {
      if (native.ok) {
        configureWasmKernels('native', native.info.addon);
        const { blas, config, threads } = native.info;
        return {
          name: 'native', tfBackend: 'wasm', source: `${WASM} + ${blas}`,
          message: `backend: native (wasm + ${config.split(' ').slice(0, 2).join(' ') || blas} kernels, ${threads} threads)`,
        };
      }
      if (choice === 'native') throw new UserError(`--backend native: ${native.reason}; or use --backend wasm`);
      nativeNote = `; native kernels unavailable: ${native.reason}`;
    }
    if (wasmOk) {
      // KDCACHE_WASM_STOCK_MATMUL=1 keeps wasm's own (slow when transposed) matmul, for benchmarks.
      const stock = process.env.KDCACHE_WASM_STOCK_MATMUL === '1';
      configureWasmKernels(stock ? 'stock' : 'wasm');
      const wasmThreads = wasmThreadCount();
      return { name: 'wasm', tfBackend: 'wasm', source: WASM, message: `backend: wasm (pure wasm, ${wasmThreads === 1 ? '1 thread' : `${wasmThreads} threads`}${stock ? ', shipped matmul' : ''}${nativeNote})` };
    }
  }
  await tf.setBackend('cpu');
  await tf.ready();
  silenceCpuNodeHint();
  const why = choice === 'auto' ? ' (no faster backend loaded)' : '';
  const convNote = opts.needsConv ? '; convolutions are slow on this backend' : '';
  return { name: 'cpu', tfBackend: 'cpu', source: '@tensorflow/tfjs-backend-cpu', message: `backend: cpu${why}${convNote}` };
}

export interface BackendStatus {
  name: Exclude<BackendChoice, 'auto'>;
  available: boolean;
  /** what it is, or why it does not load */
  detail: string;
}

/**
 * Every training backend and whether it loads here, in `auto`'s order of preference. Leaves the
 * last available one active; meant for `kdcache backends` and benchmarks, not for training code.
 */
export async function listBackends(): Promise<BackendStatus[]> {
  const out: BackendStatus[] = [];
  // A process keeps the wasm build of its first wasm backend (chooseWasmBuild): wasm is probed
  // before native so that its line shows the build a `--backend wasm` run gets.
  for (const name of ['tensorflow', 'wasm', 'native', 'cpu'] as const) {
    try {
      const info = await initBackend(name);
      out.push({ name, available: info.name === name, detail: info.message.replace(/^backend: /, '') });
    } catch (err) {
      out.push({ name, available: false, detail: (err instanceof Error ? err.message : String(err)).replace(/^--backend \w+: /, '') });
    }
  }
  const order = ['tensorflow', 'native', 'wasm', 'cpu'];
  return out.sort((a, b) => order.indexOf(a.name) - order.indexOf(b.name));
}

async function tryImport(specifier: string): Promise<boolean> {
  try {
    await import(specifier);
    return true;
  } catch {
    return false;
  }
}

async function trySetBackend(name: string): Promise<boolean> {
  try {
    if (!(await tf.setBackend(name))) return false;
    await tf.ready();
    return tf.getBackend() === name;
  } catch {
    return false;
  }
}

/**
 * The cpu backend prints a multi-line "install tfjs-node" banner on first use under Node. We
 * already tell the user which backend runs and why; the banner would only break the progress output.
 */
function silenceCpuNodeHint(): void {
  const backend = tf.backend() as unknown as { firstUse?: boolean };
  if ('firstUse' in backend) backend.firstUse = false;
}
