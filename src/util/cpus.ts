import * as fs from 'node:fs';
import * as os from 'node:os';

/**
 * Physical cores this process may run on, the intra-op thread count ONNX Runtime documents as its
 * default. kdcache passes it explicitly: on this project's 2-vCPU VM, whose sysfs has no CPU topology,
 * ONNX Runtime's own default ran one thread (784-1200-1200-10, batch 256: 36.9k rows/s, the same as
 * intraOpNumThreads 1, against 61.1k with 2). `cpuinfo` is /proc/cpuinfo's text (read when omitted);
 * without core ids in it (other systems), every core the process may use counts.
 */
export function physicalCores(cpuinfo?: string, available = os.availableParallelism()): number {
  const text = cpuinfo ?? readCpuinfo();
  const cores = new Set<string>();
  for (const block of text.split(/\n[ \t]*\n/)) {
    if (!/^processor\s*:/m.test(block)) continue;
    const socket = /^physical id\s*:\s*(\d+)/m.exec(block)?.[1];
    const core = /^core id\s*:\s*(\d+)/m.exec(block)?.[1];
    if (socket === undefined || core === undefined) return available;
    cores.add(`${socket}:${core}`);
  }
  return Math.max(1, Math.min(cores.size || available, available));
}

function readCpuinfo(): string {
  try {
    return fs.readFileSync('/proc/cpuinfo', 'utf8');
  } catch {
    return '';
  }
}
