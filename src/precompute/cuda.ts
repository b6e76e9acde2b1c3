/**
 * The CUDA execution provider for onnxruntime-node, offline. onnxruntime-node loads provider
 * libraries only from the folder of its own libonnxruntime.so (its install script downloads them
 * there); kdcache can put them there from a local folder or npm tarball, and explain failures exactly.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import * as fs from 'node:fs/promises';
import { createRequire } from 'node:module';
import { constants, tmpdir } from 'node:os';
import * as path from 'node:path';
import type { InferenceSession } from 'onnxruntime-node';
import { UserError } from '../util/errors.js';
import { oneNodeModel } from './onnx-proto.js';

export const PROVIDER_FILES = ['libonnxruntime_providers_shared.so', 'libonnxruntime_providers_cuda.so'] as const;
const OPTIONAL_PROVIDER_FILES = ['libonnxruntime_providers_tensorrt.so'] as const;

/** What the CUDA 13 build of the provider needs, in load order, with what each one is. */
export const CUDA_LIBRARIES: readonly { lib: string; what: string }[] = [
  { lib: 'libcuda.so.1', what: 'NVIDIA driver' },
  { lib: 'libcudart.so.13', what: 'CUDA 13 runtime' },
  { lib: 'libcublasLt.so.13', what: 'cuBLAS (CUDA 13)' },
  { lib: 'libcublas.so.13', what: 'cuBLAS (CUDA 13)' },
  { lib: 'libcurand.so.10', what: 'cuRAND' },
  { lib: 'libcufft.so.12', what: 'cuFFT (loaded on demand)' },
  { lib: 'libcudnn.so.9', what: 'cuDNN 9 (loaded on demand)' },
];

const require = createRequire(import.meta.url);

export function ortVersion(): string {
  return (require('onnxruntime-node/package.json') as { version: string }).version;
}

/** Where onnxruntime-node looks for execution-provider libraries: next to its own libonnxruntime. */
export function ortBinDir(): string {
  const pkg = path.dirname(require.resolve('onnxruntime-node/package.json'));
  return path.join(pkg, 'bin', 'napi-v6', process.platform, process.arch);
}

const INSTALL_HINT = "run 'kdcache cuda install --from <folder or .tgz>' (see \"GPU boxes\" in the README)";

/** null when it loads (or is a non-addon library that loads); else the loader's message. */
export function dlopenProblem(fileOrName: string): string | null {
  try {
    process.dlopen({ exports: {} } as NodeJS.Module, fileOrName, constants.dlopen.RTLD_NOW | constants.dlopen.RTLD_GLOBAL);
  } catch (err) {
    const m = String((err as Error).message);
    if (m.includes('did not self-register')) return null; // loaded fine: it is just not a Node addon
    return m;
  }
  return null;
}

/**
 * dlopenProblem for a provider file. The CUDA provider is linked BIND_NOW against Provider_GetHost,
 * which providers_shared defines and ONNX Runtime sets up before loading the provider; Node unloads
 * providers_shared again (it is not an addon), so here that one symbol stays unresolved. The loader
 * resolves dependencies first, so reaching it means every CUDA library was found. (Keeping
 * providers_shared loaded lets the provider's initialisers run without ONNX Runtime: Node crashed
 * with SIGSEGV on a real H200 box.)
 */
function providerProblem(file: string): string | null {
  const problem = dlopenProblem(file);
  return problem && /undefined symbol: Provider_GetHost\b/.test(problem) ? null : problem;
}

/**
 * onnxruntime-node reports every CUDA provider failure as "Failed to load shared library"; the cause
 * only reaches ONNX Runtime's own log. Find it ourselves: are the provider files there, and which of
 * their dependencies fails to load? dlopen names the missing library exactly.
 */
export function explainCudaFailure(err: unknown, binDir = ortBinDir(), env: NodeJS.ProcessEnv = process.env): string {
  const msg = String((err as Error)?.message ?? err);
  if (/driver version is insufficient/.test(msg)) return 'the NVIDIA driver is older than the CUDA runtime the provider needs; update the driver';
  if (/no CUDA-capable device|invalid device ordinal/i.test(msg)) return 'no such CUDA device; check --device cuda:N against nvidia-smi';
  const missing = PROVIDER_FILES.filter((f) => !existsSync(path.join(binDir, f)));
  if (missing.length > 0) return `the CUDA execution provider is not installed (${missing.join(', ')} missing in ${binDir}); ${INSTALL_HINT}`;
  for (const name of PROVIDER_FILES) {
    const lib = path.join(binDir, name);
    const problem = providerProblem(lib);
    if (!problem) continue;
    const dep = /([\w.+-]+\.so[.\d]*): cannot open shared object file/.exec(problem)?.[1];
    if (dep && dep !== name) {
      // Often the libraries are on the machine, in pip's nvidia-* packages, just not on the loader's path.
      const unloadable = CUDA_LIBRARIES.map((l) => l.lib).filter((l) => dlopenProblem(l) !== null);
      const dirs = findCudaLibraryDirs(unloadable.includes(dep) ? unloadable : [dep], env);
      if (dirs.some((d) => existsSync(path.join(d, dep)))) return `${name} needs ${dep}, which is not on the loader's path; the missing CUDA libraries are in ${dirs.join(', ')}: ${ldLibraryPathLine(dirs, env)} before starting node`;
      if (dep === 'libcuda.so.1') return 'no NVIDIA driver on this machine (libcuda.so.1 not found); run on a GPU machine or use --device cpu';
      return `${name} needs ${dep}, which is not found; put the CUDA 13 and cuDNN 9 library directories on LD_LIBRARY_PATH before starting node ('kdcache cuda check' lists what is missing)`;
    }
    return `${name} cannot be loaded (${problem.split('\n')[0].slice(0, 200)}); it may not be the build for onnxruntime-node ${ortVersion()}`;
  }
  return `the CUDA provider loads but the session could not start (${msg.split('\n')[0].slice(0, 160)}); run 'kdcache cuda check' and check the GPU with nvidia-smi`;
}

/**
 * KDCACHE_ORT_CUDA_DIR names a folder holding the provider libraries; link them next to
 * libonnxruntime.so so that onnxruntime-node finds them. Returns a notice when it linked something.
 */
export async function linkProviderFromEnv(env: NodeJS.ProcessEnv = process.env, binDir = ortBinDir()): Promise<string | null> {
  const dir = env.KDCACHE_ORT_CUDA_DIR;
  if (!dir) return null;
  const present = PROVIDER_FILES.every((f) => existsSync(path.join(binDir, f)));
  if (present) return null;
  const missing = PROVIDER_FILES.filter((f) => !existsSync(path.join(dir, f)));
  if (missing.length > 0) throw new UserError(`KDCACHE_ORT_CUDA_DIR=${dir}: ${missing.join(', ')} not found there; point it at the folder holding the ONNX Runtime ${ortVersion()} CUDA provider libraries`);
  for (const f of [...PROVIDER_FILES, ...OPTIONAL_PROVIDER_FILES]) {
    const src = path.resolve(dir, f);
    if (!existsSync(src)) continue;
    const dst = path.join(binDir, f);
    await fs.rm(dst, { force: true });
    try {
      await fs.symlink(src, dst);
    } catch (err) {
      throw new UserError(`KDCACHE_ORT_CUDA_DIR: cannot link ${f} into ${binDir} (${(err as NodeJS.ErrnoException).code}); make node_modules writable or run 'kdcache cuda install'`);
    }
  }
  return `linked the CUDA provider from KDCACHE_ORT_CUDA_DIR=${dir} into ${binDir}`;
}

/** Does the provider library carry this onnxruntime version string? undefined when it cannot tell. */
export function providerVersionMatches(file: string, version = ortVersion()): boolean | undefined {
  const bytes = readFileSync(file);
  if (bytes.indexOf(Buffer.from(`${version}\0`)) >= 0) return true;
  const other = /\b1\.(\d{2})\.(\d+)\0/.exec(bytes.toString('latin1'));
  return other ? false : undefined;
}

/**
 * Copy the provider libraries from a folder, or from an npm tarball such as
 * `npm pack com.github.asus4.onnxruntime.linux-x64-gpu@0.4.9` (ONNX Runtime 1.29.0, CUDA 13),
 * into onnxruntime-node's bin folder. Each file lands under a temp name and is renamed into place.
 */
export async function installCudaProvider(from: string, binDir = ortBinDir()): Promise<{ installed: string[]; versionOk: boolean | undefined }> {
  let src = from;
  let cleanup: string | undefined;
  const st = await fs.stat(from).catch(() => { throw new UserError(`--from ${from}: no such file or directory`); });
  if (st.isFile()) {
    if (!/\.(tgz|tar\.gz|tar)$/.test(from)) throw new UserError(`--from ${from}: expected a folder or a .tgz/.tar (for example from 'npm pack com.github.asus4.onnxruntime.linux-x64-gpu@0.4.9')`);
    cleanup = await fs.mkdtemp(path.join(tmpdir(), 'kdcache-cuda-'));
    try {
      execFileSync('tar', ['-xf', from, '-C', cleanup, '--wildcards', '*libonnxruntime_providers_*.so'], { stdio: 'pipe' });
    } catch (err) {
      await fs.rm(cleanup, { recursive: true, force: true });
      throw new UserError(`--from ${from}: no libonnxruntime_providers_*.so in this archive (${String((err as { stderr?: Buffer }).stderr ?? '').trim().split('\n')[0]})`);
    }
    src = cleanup;
  }
  try {
    const found = await findProviderDir(src);
    if (!found) throw new UserError(`--from ${from}: ${PROVIDER_FILES.join(' and ')} not found in it`);
    const versionOk = providerVersionMatches(path.join(found, 'libonnxruntime_providers_cuda.so'));
    if (versionOk === false) throw new UserError(`--from ${from}: these provider libraries are not ONNX Runtime ${ortVersion()}, the version onnxruntime-node here uses; get the matching build`);
    const installed: string[] = [];
    for (const f of [...PROVIDER_FILES, ...OPTIONAL_PROVIDER_FILES]) {
      const s = path.join(found, f);
      if (!existsSync(s)) continue;
      const dst = path.join(binDir, f);
      const tmp = path.join(binDir, `.${f}.tmp-${process.pid}`);
      await fs.copyFile(s, tmp);
      await fs.rename(tmp, dst);
      installed.push(dst);
    }
    return { installed, versionOk };
  } finally {
    if (cleanup) await fs.rm(cleanup, { recursive: true, force: true });
  }
}

async function findProviderDir(root: string, depth = 0): Promise<string | null> {
  if (PROVIDER_FILES.every((f) => existsSync(path.join(root, f)))) return root;
  if (depth > 6) return null;
  for (const e of await fs.readdir(root, { withFileTypes: true })) {
    if (e.isDirectory()) {
      const hit = await findProviderDir(path.join(root, e.name), depth + 1);
      if (hit) return hit;
    }
  }
  return null;
}

export interface CudaCheckItem {
  what: string;
  ok: boolean;
  detail: string;
  /** the shared library this item is about, for the CUDA and cuDNN libraries */
  lib?: string;
}

/** Everything --device cuda needs, checked one by one, so a user sees exactly what is missing. */
export function checkCuda(binDir = ortBinDir()): CudaCheckItem[] {
  const items: CudaCheckItem[] = [];
  for (const f of PROVIDER_FILES) {
    const p = path.join(binDir, f);
    items.push({ what: `provider ${f}`, ok: existsSync(p), detail: existsSync(p) ? p : `missing in ${binDir}; ${INSTALL_HINT}` });
  }
  const cudaSo = path.join(binDir, 'libonnxruntime_providers_cuda.so');
  if (existsSync(cudaSo)) {
    const v = providerVersionMatches(cudaSo);
    items.push({ what: `provider version = onnxruntime-node ${ortVersion()}`, ok: v !== false, detail: v === true ? 'match' : v === false ? 'MISMATCH: install the provider build of the same version' : 'could not tell' });
  }
  for (const { lib, what } of CUDA_LIBRARIES) {
    const problem = dlopenProblem(lib);
    items.push({ what: `${what} (${lib})`, ok: !problem, detail: problem ? 'not found: add its folder to LD_LIBRARY_PATH (set before node starts) or install it' : 'loads', lib });
  }
  if (items.every((i) => i.ok)) {
    for (const f of PROVIDER_FILES) {
      const problem = providerProblem(path.join(binDir, f));
      items.push({ what: `load ${f}`, ok: !problem, detail: problem ? problem.split('\n')[0].slice(0, 200) : 'loads' });
    }
  }
  return items;
}

/**
 * The last word: a one-node model run by ONNX Runtime on the CUDA provider. null when it ran and gave
 * the right answer; else why not, explained as --device cuda would.
 */
export async function cudaSessionProblem(deviceId = 0): Promise<string | null> {
  // teacher.js quiets ONNX Runtime's own log as for --device cuda (KDCACHE_DEBUG=1 keeps it).
  await import('./teacher.js');
  const ort = await import('onnxruntime-node');
  const x = Float32Array.from([-2, -0.5, 0.5, 3]);
  let session: InferenceSession | undefined;
  try {
    session = await ort.InferenceSession.create(oneNodeModel(x.length), { executionProviders: [{ name: 'cuda', deviceId }] });
    const y = (await session.run({ x: new ort.Tensor('float32', x, [x.length]) })).y.data as Float32Array;
    return y.every((v, i) => v === Math.max(0, x[i])) ? null : `ran, but Relu gave [${[...y].join(', ')}]`;
  } catch (err) {
    return explainCudaFailure(err);
  } finally {
    await session?.release();
  }
}

/** The shell line that puts `dirs` first on the loader's path, keeping what is already there. */
export function ldLibraryPathLine(dirs: readonly string[], env: NodeJS.ProcessEnv = process.env): string {
  return `export LD_LIBRARY_PATH=${dirs.join(':')}${env.LD_LIBRARY_PATH ? ':$LD_LIBRARY_PATH' : ''}`;
}

/**
 * Folders that hold any of `libs`: the lib folders of pip's nvidia-* packages (PyTorch brings them;
 * the CUDA 13 wheels share nvidia/cu13/lib), found by asking the python3 on PATH where its
 * `nvidia` package is, and the driver folder of NVIDIA's containers. PyTorch finds its copies by
 * itself; the system loader, and so ONNX Runtime's provider, does not look there.
 */
export function findCudaLibraryDirs(libs: readonly string[], env: NodeJS.ProcessEnv = process.env): string[] {
  let roots: string[] = [];
  try {
    const out = execFileSync('python3', ['-c', 'import nvidia; print("\\n".join(nvidia.__path__))'], { env, encoding: 'utf8', timeout: 10_000, stdio: ['ignore', 'pipe', 'ignore'] });
    roots = out.split('\n').filter(Boolean);
  } catch {
    // no python3, or no nvidia packages: only the fixed folders below
  }
  const candidates = roots.flatMap((root) => {
    try {
      return readdirSync(root, { withFileTypes: true }).filter((e) => e.isDirectory()).map((e) => path.join(root, e.name, 'lib')).sort();
    } catch {
      return [];
    }
  });
  candidates.push('/usr/local/nvidia/lib64', '/usr/local/cuda/lib64');
  return [...new Set(candidates.filter((d) => libs.some((l) => existsSync(path.join(d, l)))))];
}
