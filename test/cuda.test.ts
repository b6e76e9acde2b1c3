import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { cudaSessionProblem, explainCudaFailure, installCudaProvider, linkProviderFromEnv, ortBinDir, providerVersionMatches } from '../src/precompute/cuda.js';
import * as ort from 'onnxruntime-node';
import { oneNodeModel, summarizeOnnx } from '../src/precompute/onnx-proto.js';
import { UserError } from '../src/util/errors.js';
import { assertOneLineError, runCli, tempDir } from './helpers/data.js';

const FAIL = new Error('OrtSessionOptionsAppendExecutionProvider_Cuda: Failed to load shared library');
/** An environment in which no python3 answers, so no pip folders are found. */
const NO_PYTHON = { ...process.env, PATH: '' };
let dir: string;
let hasCc = true;

/** A real shared library with a version string and optional NEEDED entries, built by the system C compiler. */
function buildLib(out: string, version: string, needs: string[] = [], body = 'int kdcache_fake(void) { return 1; }', ldflags: string[] = []): void {
  const src = path.join(dir, 'lib.c');
  fs.writeFileSync(src, `const char ort_version[] = "${version}";\n${body}\n`);
  const stubs: string[] = [];
  for (const n of needs) {
    const stub = path.join(dir, 'stubs', n);
    fs.mkdirSync(path.dirname(stub), { recursive: true });
    execFileSync('cc', ['-shared', '-fPIC', '-o', stub, '-x', 'c', '-', `-Wl,-soname,${n}`], { input: 'int stub_fn(void){return 0;}' });
    stubs.push(`-l:${n}`);
  }
  execFileSync('cc', ['-shared', '-fPIC', '-o', out, src, '-Wl,--no-as-needed', `-L${path.join(dir, 'stubs')}`, ...stubs, ...ldflags]);
  fs.rmSync(path.join(dir, 'stubs'), { recursive: true, force: true }); // the dependency is now missing
}

/** The layout of the CUDA 13 wheels PyTorch brings: a namespace package `nvidia` with lib folders. */
function fakeWheels(): string {
  const site = path.join(dir, 'site');
  for (const [pkg, lib] of [['cu13', 'libcublasLt.so.13'], ['cudnn', 'libcudnn.so.9']]) {
    fs.mkdirSync(path.join(site, 'nvidia', pkg, 'lib'), { recursive: true });
    fs.writeFileSync(path.join(site, 'nvidia', pkg, 'lib', lib), '');
  }
  fs.mkdirSync(path.join(site, 'nvidia', 'unrelated', 'lib'), { recursive: true });
  return site;
}

function hasPython(): boolean {
  try {
    execFileSync('python3', ['--version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

before(() => {
  dir = tempDir();
  try {
    execFileSync('cc', ['--version'], { stdio: 'ignore' });
  } catch {
    hasCc = false;
  }
});
after(() => fs.rmSync(dir, { recursive: true, force: true }));

describe('CUDA provider diagnosis', () => {
  test('no provider files: says it is not installed and how to install', () => {
    const empty = path.join(dir, 'empty');
    fs.mkdirSync(empty);
    assert.match(explainCudaFailure(FAIL, empty), /not installed \(libonnxruntime_providers_shared\.so, libonnxruntime_providers_cuda\.so missing in .*empty\).*kdcache cuda install/);
  });

  test('provider present but a CUDA library missing: names the library', (t) => {
    if (!hasCc) return t.skip('no C compiler');
    const bin = path.join(dir, 'bin-missing-cublas');
    fs.mkdirSync(bin);
    buildLib(path.join(bin, 'libonnxruntime_providers_shared.so'), '1.29.0');
    buildLib(path.join(bin, 'libonnxruntime_providers_cuda.so'), '1.29.0', ['libcublasLt.so.13']);
    assert.match(explainCudaFailure(FAIL, bin, NO_PYTHON), /libonnxruntime_providers_cuda\.so needs libcublasLt\.so\.13, which is not found; put the CUDA 13 and cuDNN 9 library directories on LD_LIBRARY_PATH/);
  });

  test('a CUDA library that pip\'s nvidia-* packages hold: the error says where and how to reach it', (t) => {
    if (!hasCc || !hasPython()) return t.skip('no C compiler or python3');
    const bin = path.join(dir, 'bin-pip-cublas');
    fs.mkdirSync(bin);
    buildLib(path.join(bin, 'libonnxruntime_providers_shared.so'), '1.29.0');
    buildLib(path.join(bin, 'libonnxruntime_providers_cuda.so'), '1.29.0', ['libcublasLt.so.13']);
    const cu13 = path.join(fakeWheels(), 'nvidia', 'cu13', 'lib');
    const msg = explainCudaFailure(FAIL, bin, { ...process.env, PYTHONPATH: path.join(dir, 'site'), LD_LIBRARY_PATH: '' });
    assert.ok(msg.startsWith(`libonnxruntime_providers_cuda.so needs libcublasLt.so.13, which is not on the loader's path; the missing CUDA libraries are in ${cu13}`), msg);
    assert.match(msg, /: export LD_LIBRARY_PATH=\S*cu13\/lib\S* before starting node$/);
  });

  test('no driver: says so', (t) => {
    if (!hasCc) return t.skip('no C compiler');
    const bin = path.join(dir, 'bin-no-driver');
    fs.mkdirSync(bin);
    buildLib(path.join(bin, 'libonnxruntime_providers_shared.so'), '1.29.0');
    buildLib(path.join(bin, 'libonnxruntime_providers_cuda.so'), '1.29.0', ['libcuda.so.1']);
    assert.match(explainCudaFailure(FAIL, bin, NO_PYTHON), /no NVIDIA driver on this machine \(libcuda\.so\.1 not found\)/);
  });

  test('a provider that calls into providers_shared (Provider_GetHost, as the real one does) counts as loadable', (t) => {
    if (!hasCc) return t.skip('no C compiler');
    const bin = path.join(dir, 'bin-host-symbol');
    fs.mkdirSync(bin);
    // As the real pair: providers_shared defines Provider_GetHost; the provider is linked BIND_NOW
    // (-z now), so the symbol must resolve when it loads, not when it is first called.
    buildLib(path.join(bin, 'libonnxruntime_providers_shared.so'), '1.29.0', [], 'void *Provider_GetHost(void) { return 0; }');
    buildLib(path.join(bin, 'libonnxruntime_providers_cuda.so'), '1.29.0', [], 'void *Provider_GetHost(void);\nvoid *kdcache_fake(void) { return Provider_GetHost(); }', ['-Wl,-z,now']);
    assert.match(explainCudaFailure(FAIL, bin), /the CUDA provider loads but the session could not start/);
  });

  test('driver too old and bad device ordinal are recognised', () => {
    assert.match(explainCudaFailure(new Error('CUDA failure 35: CUDA driver version is insufficient for CUDA runtime version')), /older than the CUDA runtime/);
    assert.match(explainCudaFailure(new Error('CUDA failure 101: invalid device ordinal')), /no such CUDA device/);
  });
});

describe('the one-node model kdcache cuda check runs on the GPU', () => {
  test('is a valid ONNX model that ONNX Runtime runs: Relu of its input', async () => {
    const bytes = oneNodeModel(5);
    assert.deepEqual(summarizeOnnx(bytes), { irVersion: 8, producer: null, opset: 13, externalLocations: [] });
    const s = await ort.InferenceSession.create(bytes, { executionProviders: ['cpu'] });
    const y = await s.run({ x: new ort.Tensor('float32', Float32Array.from([-3, -0.25, 0, 0.25, 300]), [5]) });
    assert.deepEqual([...(y.y.data as Float32Array)], [0, 0, 0, 0.25, 300]);
    await s.release();
  });

  test('where the CUDA provider is absent, running it there gives the same explanation as --device cuda', async (t) => {
    if (fs.existsSync(path.join(ortBinDir(), 'libonnxruntime_providers_cuda.so'))) return t.skip('a CUDA provider is installed here');
    assert.match(await cudaSessionProblem() ?? 'ran', /^the CUDA execution provider is not installed \(libonnxruntime_providers_shared\.so, libonnxruntime_providers_cuda\.so missing in .*\); run 'kdcache cuda install/);
  });
});

describe('kdcache cuda install / KDCACHE_ORT_CUDA_DIR', () => {
  test('installs from an npm-style tarball, refuses another ONNX Runtime version', async (t) => {
    if (!hasCc) return t.skip('no C compiler');
    const pkg = path.join(dir, 'pkg', 'package', 'Plugins', 'Linux', 'x64');
    fs.mkdirSync(pkg, { recursive: true });
    buildLib(path.join(pkg, 'libonnxruntime_providers_shared.so'), '1.29.0');
    buildLib(path.join(pkg, 'libonnxruntime_providers_cuda.so'), '1.29.0');
    const tgz = path.join(dir, 'provider.tgz');
    execFileSync('tar', ['-czf', tgz, '-C', path.join(dir, 'pkg'), 'package']);
    const bin = path.join(dir, 'ortbin');
    fs.mkdirSync(bin);
    const r = await installCudaProvider(tgz, bin);
    assert.equal(r.versionOk, true);
    assert.deepEqual(fs.readdirSync(bin).sort(), ['libonnxruntime_providers_cuda.so', 'libonnxruntime_providers_shared.so']);

    buildLib(path.join(pkg, 'libonnxruntime_providers_cuda.so'), '1.22.0');
    assert.equal(providerVersionMatches(path.join(pkg, 'libonnxruntime_providers_cuda.so')), false);
    await assert.rejects(installCudaProvider(path.join(dir, 'pkg'), bin), (e: unknown) => e instanceof UserError && /not ONNX Runtime 1\.29\.0/.test((e as Error).message));
  });

  test('KDCACHE_ORT_CUDA_DIR links the provider into place; a wrong folder is a clear error', async (t) => {
    if (!hasCc) return t.skip('no C compiler');
    const src = path.join(dir, 'cuda-dir');
    fs.mkdirSync(src);
    buildLib(path.join(src, 'libonnxruntime_providers_shared.so'), '1.29.0');
    buildLib(path.join(src, 'libonnxruntime_providers_cuda.so'), '1.29.0');
    const bin = path.join(dir, 'ortbin2');
    fs.mkdirSync(bin);
    assert.match(String(await linkProviderFromEnv({ KDCACHE_ORT_CUDA_DIR: src }, bin)), /linked the CUDA provider/);
    assert.equal(fs.readlinkSync(path.join(bin, 'libonnxruntime_providers_cuda.so')), path.join(src, 'libonnxruntime_providers_cuda.so'));
    assert.equal(await linkProviderFromEnv({}, bin), null);
    await assert.rejects(linkProviderFromEnv({ KDCACHE_ORT_CUDA_DIR: dir }, path.join(dir, 'empty')), /KDCACHE_ORT_CUDA_DIR=.*not found there/);
  });

  test('kdcache cuda check points at pip\'s nvidia-* library folders holding what is missing', (t) => {
    if (!hasPython()) return t.skip('no python3');
    const site = fakeWheels();
    const r = runCli('kdcache', ['cuda', 'check'], { PYTHONPATH: site, LD_LIBRARY_PATH: '' });
    const cu13 = path.join(site, 'nvidia', 'cu13', 'lib');
    const cudnn = path.join(site, 'nvidia', 'cudnn', 'lib');
    assert.ok(r.stdout.includes(`hint: the missing libraries are in ${cu13}, ${cudnn}; before starting node: export LD_LIBRARY_PATH=${cu13}:${cudnn}\n`), r.stdout);
    assert.equal(r.code, 2);
  });

  test('kdcache cuda check on a machine without the provider lists what is missing', () => {
    const r = runCli('kdcache', ['cuda', 'check']);
    assert.match(r.stdout, /MISSING\s+provider libonnxruntime_providers_cuda\.so/);
    assertOneLineError(r, /--device cuda cannot work here: \d+ item\(s\) missing/);
  });
});
