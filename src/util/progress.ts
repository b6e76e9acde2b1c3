/**
 * Progress for long work: a redrawn bar on a TTY, a plain line every few seconds otherwise (batch
 * logs stay readable), nothing with quiet. Writes to stderr so stdout stays clean for results.
 */
export interface Progress {
  update(done: number, extra?: string): void;
  done(finalLine?: string): void;
}

export interface ProgressOptions {
  label: string;
  total: number;
  unit: string;
  quiet?: boolean;
  stream?: NodeJS.WriteStream;
  /** seconds between plain lines when not a TTY */
  interval?: number;
}

export function formatDuration(seconds: number): string {
  if (!Number.isFinite(seconds) || seconds < 0) return '--';
  if (seconds < 60) return `${seconds.toFixed(seconds < 10 ? 1 : 0)}s`;
  const m = Math.floor(seconds / 60);
  const s = Math.round(seconds % 60);
  if (m < 60) return `${m}m${String(s).padStart(2, '0')}s`;
  return `${Math.floor(m / 60)}h${String(m % 60).padStart(2, '0')}m`;
}

export function formatCount(n: number): string {
  if (n >= 1e9) return `${(n / 1e9).toFixed(2)}G`;
  if (n >= 1e6) return `${(n / 1e6).toFixed(2)}M`;
  if (n >= 1e4) return `${(n / 1e3).toFixed(1)}k`;
  return String(Math.round(n));
}

export function formatBytes(n: number): string {
  if (n >= 1 << 30) return `${(n / (1 << 30)).toFixed(2)} GiB`;
  if (n >= 1 << 20) return `${(n / (1 << 20)).toFixed(1)} MiB`;
  if (n >= 1 << 10) return `${(n / (1 << 10)).toFixed(1)} KiB`;
  return `${n} B`;
}

export function createProgress(opts: ProgressOptions): Progress {
  const stream = opts.stream ?? process.stderr;
  const tty = Boolean(stream.isTTY);
  const interval = (opts.interval ?? 5) * 1000;
  const start = Date.now();
  let last = 0;
  let lastLen = 0;
  const line = (done: number, extra?: string): string => {
    const secs = (Date.now() - start) / 1000;
    const rate = done / Math.max(secs, 1e-9);
    const eta = rate > 0 ? (opts.total - done) / rate : Infinity;
    const pct = opts.total > 0 ? (100 * done) / opts.total : 100;
    const parts = [`${opts.label}`, `${formatCount(done)}/${formatCount(opts.total)} ${opts.unit}`, `${pct.toFixed(1)}%`, `${formatCount(rate)} ${opts.unit}/s`, `ETA ${formatDuration(eta)}`];
    if (extra) parts.push(extra);
    return parts.join('  ');
  };
  return {
    update(done, extra) {
      if (opts.quiet) return;
      const now = Date.now();
      if (tty) {
        if (now - last < 100 && done < opts.total) return;
        last = now;
        const width = 24;
        const filled = opts.total > 0 ? Math.round((width * done) / opts.total) : width;
        const text = `[${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${line(done, extra)}`;
        stream.write(`\r${text}${' '.repeat(Math.max(0, lastLen - text.length))}`);
        lastLen = text.length;
      } else if (now - last >= interval) {
        last = now;
        stream.write(`${line(done, extra)}\n`);
      }
    },
    done(finalLine) {
      if (opts.quiet) return;
      if (tty && lastLen > 0) stream.write('\n');
      if (finalLine) stream.write(`${finalLine}\n`);
    },
  };
}
