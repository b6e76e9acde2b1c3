import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

/**
 * Physical cores this process may run on, the intra-op thread count ONNX Runtime documents as its
 * default. kdcache passes it explicitly: on this project's 2-vCPU VM, whose sysfs has no CPU topology,
 * ONNX Runtime's own default ran one thread (784-1200-1200-10, batch 256: 36.9k rows/s, the same as
 * intraOpNumThreads 1, against 61.1k with 2). `cpuinfo` is /proc/cpuinfo's text (read when omitted);
 * without core ids in it (other systems), every usable CPU counts. `available` is the CPUs the process
 * may use: its affinity, and a container's CPU limit (cpuQuota), which os.availableParallelism() does
 * not count: a job limited to 2 CPUs on a 64-core node gets 2 threads, not 32 that share 2 CPUs.
 */
export function physicalCores(cpuinfo?: string, available = usableCpus()): number {
  const text = cpuinfo ?? readText('/proc/cpuinfo');
  const cores = new Set<string>();
  for (const block of text.split(/\n[ \t]*\n/)) {
    if (!/^processor\s*:/m.test(block)) continue;
    const socket = /^physical id\s*:\s*(\d+)/m.exec(block)?.[1];
    const core = /^core id\s*:\s*(\d+)/m.exec(block)?.[1];
    if (socket === undefined || core === undefined) return Math.max(1, available);
    cores.add(`${socket}:${core}`);
  }
  return Math.max(1, Math.min(cores.size || available, available));
}

/** CPUs this process may use: its affinity mask, capped by a container's CPU limit. */
export function usableCpus(): number {
  return Math.max(1, Math.min(os.availableParallelism(), cpuQuota()));
}

/**
 * The CPUs a cgroup CPU limit allows (Kubernetes `resources.limits.cpu`, `docker --cpus`), rounded
 * up; Infinity without a limit. cgroup v2's cpu.max, else v1's CFS quota, looked up under the
 * process's own cgroup and at the root of the mount (where a container sees its own).
 */
export function cpuQuota(read: (file: string) => string = readText): number {
  const own = read('/proc/self/cgroup');
  const v2 = /^0::(\S*)$/m.exec(own)?.[1] ?? '/';
  for (const dir of new Set([path.posix.join('/sys/fs/cgroup', v2), '/sys/fs/cgroup'])) {
    const [quota, period] = read(`${dir}/cpu.max`).trim().split(/\s+/);
    if (period !== undefined) return limit(Number(quota), Number(period));
  }
  const v1 = /^\d+:([^:]*\bcpu\b[^:]*):(\S*)$/m.exec(own);
  const mount = `/sys/fs/cgroup/${v1?.[1] ?? 'cpu'}`;
  for (const dir of new Set([path.posix.join(mount, v1?.[2] ?? '/'), mount])) {
    const quota = read(`${dir}/cpu.cfs_quota_us`).trim();
    if (quota !== '') return limit(Number(quota), Number(read(`${dir}/cpu.cfs_period_us`)));
  }
  return Infinity;
}

/** quota/period CPUs, rounded up; "max" (NaN) or -1 is no limit. */
function limit(quota: number, period: number): number {
  return quota > 0 && period > 0 ? Math.max(1, Math.ceil(quota / period)) : Infinity;
}

function readText(file: string): string {
  try {
    return fs.readFileSync(file, 'utf8');
  } catch {
    return '';
  }
}
