#!/usr/bin/env node
// Builds native/kdcache_native.cc into native/build/kdcache_native.node: the BLAS-backed kernels
// that make tfjs students train at native speed (see src/train/kernels/native.ts).
//
// Needs only a C++ compiler and Node's headers: the BLAS (OpenBLAS) is opened at run time, so it is
// not needed to build. When either is missing this prints one line and exits 0: kdcache then
// trains on pure wasm, which always works. `npm run build` runs this after tsc (npm skips install
// scripts here, so the build is an explicit step). Set KDCACHE_NATIVE=0 to skip it.
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const source = path.join(root, 'native', 'kdcache_native.cc');
const outDir = path.join(root, 'native', 'build');
const output = path.join(outDir, 'kdcache_native.node');
const quiet = process.argv.includes('--quiet');
const force = process.argv.includes('--force');

function say(line) {
  if (!quiet) process.stderr.write(`${line}\n`);
}

function nodeHeaders() {
  const candidates = [
    process.env.KDCACHE_NODE_HEADERS,
    process.env.npm_config_nodedir && path.join(process.env.npm_config_nodedir, 'include', 'node'),
    path.join(path.dirname(process.execPath), '..', 'include', 'node'),
    '/usr/include/node',
    '/usr/local/include/node',
  ].filter(Boolean);
  return candidates.find((dir) => fs.existsSync(path.join(dir, 'node_api.h'))) ?? null;
}

function compiler() {
  for (const cxx of [process.env.CXX, 'c++', 'g++', 'clang++'].filter(Boolean)) {
    const r = spawnSync(cxx, ['--version'], { encoding: 'utf8' });
    if (r.status === 0) return cxx;
  }
  return null;
}

function main() {
  if (process.env.KDCACHE_NATIVE === '0') {
    say('native kernels: skipped (KDCACHE_NATIVE=0)');
    return;
  }
  if (!force && fs.existsSync(output) && fs.statSync(output).mtimeMs >= Math.max(fs.statSync(source).mtimeMs, fs.statSync(fileURLToPath(import.meta.url)).mtimeMs)) return;
  const headers = nodeHeaders();
  const cxx = compiler();
  if (!headers || !cxx) {
    say(`native kernels: not built (${!cxx ? 'no C++ compiler; install g++' : 'no Node headers (node_api.h)'}); training uses the pure wasm backend`);
    return;
  }
  fs.mkdirSync(outDir, { recursive: true });
  const tmp = `${output}.${process.pid}.tmp`;
  const args = [
    // -ffp-contract=off: no fused multiply-adds, so float32 results match tfjs's op by op;
    // -fno-math-errno lets sqrt vectorize (it only drops errno, never changes a value)
    '-O3', '-std=c++17', '-ffp-contract=off', '-fno-math-errno', '-shared', '-fPIC', '-fvisibility=hidden', '-pthread',
    '-DNAPI_VERSION=8', '-DNODE_GYP_MODULE_NAME=kdcache_native',
    `-I${headers}`, source, '-o', tmp, '-ldl',
  ];
  const r = spawnSync(cxx, args, { encoding: 'utf8' });
  if (r.status !== 0) {
    fs.rmSync(tmp, { force: true });
    // An addon left from older sources would not match the JS that calls it.
    fs.rmSync(output, { force: true });
    const first = `${r.stderr ?? ''}${r.error?.message ?? ''}`.split('\n').find((l) => /error/i.test(l)) ?? 'compiler failed';
    say(`native kernels: not built (${cxx}: ${first.trim()}); training uses the pure wasm backend`);
    return;
  }
  fs.renameSync(tmp, output);
  say(`native kernels: built ${path.relative(root, output)}`);
}

main();
