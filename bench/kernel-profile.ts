/**
 * Where a training step spends its time, kernel by kernel: every kernel registered for a tfjs
 * backend is wrapped with a timer (synchronous kernels, so wall time between entry and exit is the
 * kernel's own time; nested kernel calls are charged to the outer kernel only).
 */
import * as tf from '@tensorflow/tfjs';

export interface KernelTimes {
  /** ms and calls per kernel name, since the last reset */
  byKernel: Map<string, { ms: number; calls: number }>;
  reset(): void;
  /** total ms inside kernels since the last reset */
  total(): number;
  restore(): void;
}

export function profileKernels(backendName: string): KernelTimes {
  const byKernel = new Map<string, { ms: number; calls: number }>();
  const originals: tf.KernelConfig[] = [];
  let depth = 0;
  for (const k of tf.getKernelsForBackend(backendName)) {
    originals.push(k);
    const inner = k.kernelFunc;
    const name = k.kernelName;
    tf.unregisterKernel(name, backendName);
    tf.registerKernel({
      ...k,
      kernelFunc: ((args: Parameters<tf.KernelFunc>[0]) => {
        if (depth > 0) return inner(args);
        depth++;
        const t0 = performance.now();
        try {
          return inner(args);
        } finally {
          depth--;
          const e = byKernel.get(name) ?? { ms: 0, calls: 0 };
          e.ms += performance.now() - t0;
          e.calls++;
          byKernel.set(name, e);
        }
      }) as tf.KernelFunc,
    });
  }
  return {
    byKernel,
    reset: () => byKernel.clear(),
    total: () => [...byKernel.values()].reduce((a, b) => a + b.ms, 0),
    restore: () => {
      for (const k of originals) {
        tf.unregisterKernel(k.kernelName, backendName);
        tf.registerKernel(k);
      }
    },
  };
}

/** The top kernels as rows: name, ms per step, share of kernel time, calls per step. */
export function topKernels(t: KernelTimes, steps: number, top = 12): { kernel: string; ms_per_step: number; share: number; calls_per_step: number }[] {
  const total = t.total();
  return [...t.byKernel.entries()].sort((a, b) => b[1].ms - a[1].ms).slice(0, top).map(([kernel, e]) => ({
    kernel, ms_per_step: Math.round((e.ms / steps) * 100) / 100, share: Math.round((e.ms / total) * 1000) / 1000, calls_per_step: Math.round((e.calls / steps) * 10) / 10,
  }));
}
