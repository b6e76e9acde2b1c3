import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, test } from 'node:test';
import { defaultIntraOpThreads, openTeacher } from '../src/precompute/teacher.js';
import { cpuQuota, physicalCores } from '../src/util/cpus.js';
import { FIXTURES } from './helpers/data.js';

/** /proc/cpuinfo's blocks, one per logical CPU: [physical id, core id], or null for a block without them. */
function cpuinfo(cpus: ([number, number] | null)[]): string {
  return cpus.map((c, i) => [`processor\t: ${i}`, 'vendor_id\t: AuthenticAMD', ...(c ? [`physical id\t: ${c[0]}`, `core id\t\t: ${c[1]}`] : [])].join('\n')).join('\n\n') + '\n\n';
}

describe('physicalCores', () => {
  test('one per core, not per hyperthread, across sockets', () => {
    assert.equal(physicalCores(cpuinfo([[0, 0], [0, 1]]), 2), 2);
    assert.equal(physicalCores(cpuinfo([[0, 0], [0, 1], [0, 0], [0, 1]]), 4), 2);
    assert.equal(physicalCores(cpuinfo([[0, 0], [0, 1], [1, 0], [1, 1]]), 4), 4);
  });
  test('never more than the CPUs this process may use', () => {
    assert.equal(physicalCores(cpuinfo([[0, 0], [0, 1], [0, 2], [0, 3]]), 3), 3);
  });
  test('without core ids, or without /proc/cpuinfo, every usable CPU counts', () => {
    assert.equal(physicalCores(cpuinfo([null, null, null]), 3), 3);
    assert.equal(physicalCores('', 6), 6);
  });
});

/** ONNX Runtime's intra-op pool: threads it starts besides the calling one. */
function threadCount(): number {
  return fs.readdirSync('/proc/self/task').length;
}

describe('the teacher session', { skip: !fs.existsSync('/proc/self/task') && 'needs /proc' }, () => {
  test('uses defaultIntraOpThreads (one per physical core here) unless --threads says otherwise', async () => {
    const model = path.join(FIXTURES, 'mlp16.onnx');
    // Opened once first, so the threads Node starts on first use (file reads) are already there.
    const one = await openTeacher(model, { device: { kind: 'cpu', deviceId: 0 }, threads: 1 });
    const withOne = threadCount();
    await one.session.release();
    const auto = await openTeacher(model, { device: { kind: 'cpu', deviceId: 0 } });
    const withDefault = threadCount();
    await auto.session.release();
    // ONNX Runtime's own default started no pool thread on a 2-core VM without CPU topology in sysfs.
    assert.equal(withDefault - withOne, defaultIntraOpThreads() - 1);
  });
});

describe('cpuQuota', () => {
  const files = (map: Record<string, string>) => (file: string) => map[file] ?? '';
  test('cgroup v2: cpu.max of the process\'s cgroup, or of the root a container sees', () => {
    assert.equal(cpuQuota(files({ '/proc/self/cgroup': '0::/kubepods/pod1/c1\n', '/sys/fs/cgroup/kubepods/pod1/c1/cpu.max': '250000 100000\n' })), 3);
    assert.equal(cpuQuota(files({ '/proc/self/cgroup': '0::/\n', '/sys/fs/cgroup/cpu.max': '100000 100000\n' })), 1);
    assert.equal(cpuQuota(files({ '/proc/self/cgroup': '0::/\n', '/sys/fs/cgroup/cpu.max': '50000 100000\n' })), 1);
    assert.equal(cpuQuota(files({ '/proc/self/cgroup': '0::/\n', '/sys/fs/cgroup/cpu.max': 'max 100000\n' })), Infinity);
  });
  test('cgroup v1: the CFS quota of the cpu controller', () => {
    const own = '4:memory:/docker/abc\n3:cpu,cpuacct:/docker/abc\n2:cpuacct:/x\n0::/\n';
    assert.equal(cpuQuota(files({ '/proc/self/cgroup': own, '/sys/fs/cgroup/cpu,cpuacct/docker/abc/cpu.cfs_quota_us': '400000\n', '/sys/fs/cgroup/cpu,cpuacct/docker/abc/cpu.cfs_period_us': '100000\n' })), 4);
    assert.equal(cpuQuota(files({ '/proc/self/cgroup': own, '/sys/fs/cgroup/cpu,cpuacct/cpu.cfs_quota_us': '150000', '/sys/fs/cgroup/cpu,cpuacct/cpu.cfs_period_us': '100000' })), 2);
    assert.equal(cpuQuota(files({ '/proc/self/cgroup': '1:cpu:/\n', '/sys/fs/cgroup/cpu/cpu.cfs_quota_us': '-1\n', '/sys/fs/cgroup/cpu/cpu.cfs_period_us': '100000\n' })), Infinity);
  });
  test('no cgroup files: no limit', () => {
    assert.equal(cpuQuota(files({})), Infinity);
  });
});

describe('defaultIntraOpThreads', () => {
  test('ORT_INTRA_OP_NUM_THREADS when it is a positive integer, else one per physical core', () => {
    assert.equal(defaultIntraOpThreads({ ORT_INTRA_OP_NUM_THREADS: '3' }), 3);
    for (const v of [undefined, '0', '-2', '1.5', 'four']) assert.equal(defaultIntraOpThreads({ ORT_INTRA_OP_NUM_THREADS: v }), physicalCores(), String(v));
  });
});
