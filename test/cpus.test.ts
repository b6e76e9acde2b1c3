import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, test } from 'node:test';
import { openTeacher } from '../src/precompute/teacher.js';
import { physicalCores } from '../src/util/cpus.js';
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
  test('uses one intra-op thread per physical core unless --threads says otherwise', async () => {
    const model = path.join(FIXTURES, 'mlp16.onnx');
    // Opened once first, so the threads Node starts on first use (file reads) are already there.
    const one = await openTeacher(model, { device: { kind: 'cpu', deviceId: 0 }, threads: 1 });
    const withOne = threadCount();
    await one.session.release();
    const auto = await openTeacher(model, { device: { kind: 'cpu', deviceId: 0 } });
    const withDefault = threadCount();
    await auto.session.release();
    // ONNX Runtime's own default started no pool thread on a 2-core VM without CPU topology in sysfs.
    assert.equal(withDefault - withOne, physicalCores() - 1);
  });
});
