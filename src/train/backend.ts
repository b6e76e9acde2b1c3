/**
 * Choosing the tfjs backend. `auto` prefers native TensorFlow (tfjs-node-gpu, tfjs-node) when one
 * is installed, then wasm, then the pure-JS cpu backend. tfjs-node cannot be installed offline (its
 * install downloads libtensorflow), so it is only ever loaded optionally.
 */
import * as tf from '@tensorflow/tfjs';
import { UserError } from '../util/errors.js';
import { installWasmKernels } from './wasm-kernels.js';

export type BackendChoice = 'auto' | 'tensorflow' | 'wasm' | 'cpu';
export const BACKEND_CHOICES: readonly BackendChoice[] = ['auto', 'tensorflow', 'wasm', 'cpu'];

export interface BackendInfo {
  /** the tfjs backend name now active: 'tensorflow', 'wasm' or 'cpu' */
  name: string;
  /** the package it came from */
  source: string;
  /** one line for the user: what loaded and why */
  message: string;
}

export interface BackendOptions {
  /** the student has convolutions (matters on wasm without the replacement kernel) */
  needsConv?: boolean;
}

const NATIVE_PACKAGES = ['@tensorflow/tfjs-node-gpu', '@tensorflow/tfjs-node'];

export async function initBackend(choice: BackendChoice, opts: BackendOptions = {}): Promise<BackendInfo> {
  if (choice === 'tensorflow' || choice === 'auto') {
    for (const pkg of NATIVE_PACKAGES) {
      if (await tryImport(pkg) && await trySetBackend('tensorflow')) {
        return { name: 'tensorflow', source: pkg, message: `backend: tensorflow (${pkg})` };
      }
    }
    if (choice === 'tensorflow') {
      throw new UserError('--backend tensorflow: neither @tensorflow/tfjs-node-gpu nor @tensorflow/tfjs-node is installed (their install downloads libtensorflow, which needs network access); use --backend wasm or auto');
    }
  }
  if (choice === 'wasm' || choice === 'auto') {
    if (await tryImport('@tensorflow/tfjs-backend-wasm') && await trySetBackend('wasm')) {
      // KDCACHE_WASM_STOCK_MATMUL=1 keeps wasm's own (slow when transposed) matmul, for benchmarks.
      const patched = installWasmKernels({ matmul: process.env.KDCACHE_WASM_STOCK_MATMUL !== '1' });
      const note = patched.length > 0 ? ` with ${patched.join(', ')} replaced` : '';
      return { name: 'wasm', source: '@tensorflow/tfjs-backend-wasm', message: `backend: wasm (@tensorflow/tfjs-backend-wasm${note})` };
    }
    if (choice === 'wasm') throw new UserError('--backend wasm: @tensorflow/tfjs-backend-wasm failed to load; reinstall dependencies (npm ci) or use --backend cpu');
  }
  await tf.setBackend('cpu');
  await tf.ready();
  silenceCpuNodeHint();
  const why = choice === 'auto' ? ' (no faster backend loaded)' : '';
  const convNote = opts.needsConv ? '; convolutions are slow on this backend' : '';
  return { name: 'cpu', source: '@tensorflow/tfjs-backend-cpu', message: `backend: cpu${why}${convNote}` };
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
