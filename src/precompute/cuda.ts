import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { constants } from 'node:os';
import * as path from 'node:path';

/** Where onnxruntime-node looks for execution-provider libraries: next to its own libonnxruntime. */
export function ortBinDir(): string {
  const require = createRequire(import.meta.url);
  const pkg = path.dirname(require.resolve('onnxruntime-node/package.json'));
  return path.join(pkg, 'bin', 'napi-v6', process.platform, process.arch);
}

const INSTALL_HINT = 'install the CUDA provider as in the README, section "GPU boxes"';

/**
 * onnxruntime-node reports every CUDA provider failure as "Failed to load shared library"; the cause
 * only reaches ONNX Runtime's own log. Find it ourselves: are the provider files there, and which of
 * their dependencies fails to load? dlopen names the missing library exactly.
 */
export function explainCudaFailure(err: unknown, binDir = ortBinDir()): string {
  const msg = String((err as Error)?.message ?? err);
  if (/driver version is insufficient/.test(msg)) return 'the NVIDIA driver is older than the CUDA runtime the provider needs; update the driver';
  if (/no CUDA-capable device|invalid device ordinal/i.test(msg)) return 'no such CUDA device; check --device cuda:N against nvidia-smi';
  const shared = path.join(binDir, 'libonnxruntime_providers_shared.so');
  const cuda = path.join(binDir, 'libonnxruntime_providers_cuda.so');
  const missing = [shared, cuda].filter((f) => !existsSync(f)).map((f) => path.basename(f));
  if (missing.length > 0) return `the CUDA execution provider is not installed (${missing.join(', ')} missing in ${binDir}); ${INSTALL_HINT}`;
  for (const lib of [shared, cuda]) {
    const problem = dlopenProblem(lib);
    if (!problem) continue;
    const dep = /([\w.+-]+\.so[.\d]*): cannot open shared object file/.exec(problem)?.[1];
    if (dep === 'libcuda.so.1') return 'no NVIDIA driver on this machine (libcuda.so.1 not found); run on a GPU machine or use --device cpu';
    if (dep && dep !== path.basename(lib)) return `${path.basename(lib)} needs ${dep}, which is not found; put the CUDA 13 and cuDNN 9 library directories on LD_LIBRARY_PATH before starting node`;
    return `${path.basename(lib)} cannot be loaded (${problem.split('\n')[0].slice(0, 200)}); it may not match onnxruntime-node ${ortVersionHint()}`;
  }
  return `the CUDA provider loads but the session could not start (${msg.split('\n')[0].slice(0, 160)}); check the GPU with nvidia-smi and that cuDNN 9 is on LD_LIBRARY_PATH`;
}

function dlopenProblem(file: string): string | undefined {
  try {
    process.dlopen({ exports: {} } as NodeJS.Module, file, constants.dlopen.RTLD_NOW | constants.dlopen.RTLD_GLOBAL);
  } catch (err) {
    const m = String((err as Error).message);
    if (m.includes('did not self-register')) return undefined; // loaded fine: it is just not a Node addon
    return m;
  }
  return undefined;
}

function ortVersionHint(): string {
  try {
    const require = createRequire(import.meta.url);
    return (require('onnxruntime-node/package.json') as { version: string }).version;
  } catch {
    return '';
  }
}
