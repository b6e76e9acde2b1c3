import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

/** A fresh directory under the system temp dir (realpath'd: macOS /tmp is a symlink). */
export function makeTempDir(prefix = 'kdcache-'): string {
  return fs.mkdtempSync(path.join(fs.realpathSync(os.tmpdir()), prefix));
}

export function removeDir(dir: string): void {
  fs.rmSync(dir, { recursive: true, force: true });
}

/** Run `fn` with a temp dir that is removed afterwards, also when `fn` throws. */
export async function withTempDir<T>(fn: (dir: string) => Promise<T> | T, prefix?: string): Promise<T> {
  const dir = makeTempDir(prefix);
  try {
    return await fn(dir);
  } finally {
    removeDir(dir);
  }
}
