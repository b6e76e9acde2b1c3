import { createHash, randomBytes } from 'node:crypto';
import * as fsSync from 'node:fs';
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { describeFsError, UserError } from './errors.js';

/**
 * Temporary names start with '.' and end in '.tmp-<pid>-<random>' so that no glob for finished files
 * (`*.parquet`, `*.arrow`, `*.json`) can match a file that is still being written.
 */
export function tempPathFor(finalPath: string): string {
  const dir = path.dirname(finalPath);
  return path.join(dir, `.${path.basename(finalPath)}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`);
}

export function isTempName(name: string): boolean {
  return name.startsWith('.') && /\.tmp-\d+-[0-9a-f]{8}$/.test(name);
}

/**
 * Write a file so that it is either absent or complete under its final name: write a temporary file,
 * fsync it, rename it into place, fsync the directory. A kill at any moment leaves at most a temp file.
 */
export async function writeFileAtomic(finalPath: string, data: Uint8Array | string): Promise<void> {
  await writeFilesAtomic([[finalPath, data]]);
}

/**
 * writeFileAtomic for files that go together, in one directory: all are written and fsynced, then
 * renamed into place in the order given, then the directory is fsynced once. A kill before the
 * last rename can leave the earlier files in place without the later ones, never a later one alone
 * as far as the file system keeps renames in order (ext4 and xfs journal them in order); readers
 * check a sidecar against the size of its shard either way.
 *
 * The system calls are made synchronously. Callers are a writer thread or a step that waits for the
 * write anyway, and each asynchronous call is a round trip through libuv's thread pool and back
 * through the event loop: next to a teacher that keeps every core busy, each of those wake-ups
 * waits for a time slice. Measured on a 2-core VM, the last shard's write (which nothing overlaps)
 * took 13-16 ms that way and 9-11 ms this way (medians of 9 runs).
 */
export async function writeFilesAtomic(files: readonly (readonly [finalPath: string, data: Uint8Array | string])[]): Promise<void> {
  const temps = files.map(([finalPath]) => tempPathFor(finalPath));
  let renamed = 0;
  let written = 0;
  try {
    for (; written < files.length; written++) writeSynced(temps[written], files[written][1]);
    for (; renamed < files.length; renamed++) fsSync.renameSync(temps[renamed], files[renamed][0]);
  } catch (err) {
    // The temp file being written when the error came exists too (it was opened, then failed).
    for (const t of temps.slice(renamed, written + 1)) removeQuietly(t);
    throw describeFsError(err, files[Math.min(renamed, files.length - 1)][0], 'write') ?? err;
  }
  for (const dir of new Set(files.map(([finalPath]) => path.dirname(finalPath)))) syncDir(dir);
}

/**
 * Create `finalPath` with `data` only if it does not exist yet (atomic across processes: link(2)
 * fails with EEXIST). Returns false when another writer got there first.
 */
export async function createFileExclusive(finalPath: string, data: Uint8Array | string): Promise<boolean> {
  const tmp = tempPathFor(finalPath);
  try {
    writeSynced(tmp, data);
    try {
      fsSync.linkSync(tmp, finalPath);
      return true;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'EEXIST') return false;
      throw err;
    }
  } catch (err) {
    throw describeFsError(err, finalPath, 'write') ?? err;
  } finally {
    removeQuietly(tmp);
    syncDir(path.dirname(finalPath));
  }
}

/** Clean-up after a failure or a link: the error being reported, or the link made, is what matters. */
function removeQuietly(file: string): void {
  try {
    fsSync.rmSync(file, { force: true });
  } catch {
    // left for removeStaleTemps on the next run
  }
}

function writeSynced(file: string, data: Uint8Array | string): void {
  const fd = fsSync.openSync(file, 'w');
  try {
    const stall = stallFor(file);
    if (stall > 0) {
      // Half the bytes, then a pause: a kill now leaves the worst case, a half-written temp file.
      const bytes = typeof data === 'string' ? Buffer.from(data) : data;
      fsSync.writeSync(fd, bytes.subarray(0, bytes.length >> 1));
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, stall);
      fsSync.writeFileSync(fd, bytes.subarray(bytes.length >> 1));
    } else fsSync.writeFileSync(fd, data);
    fsSync.fsyncSync(fd);
  } finally {
    fsSync.closeSync(fd);
  }
}

/**
 * Fault injection for the reliability tests (test/reliability-kill.test.ts), which must SIGKILL a
 * process while a given file is half written; real writes are over too fast to hit. With
 * KDCACHE_TEST_STALL_WRITES=<ms>:<regexp>, writes of files whose final name matches pause halfway.
 */
function stallFor(tempFile: string): number {
  const spec = process.env.KDCACHE_TEST_STALL_WRITES;
  if (!spec) return 0;
  const m = /^(\d+):(.*)$/.exec(spec);
  const finalName = path.basename(tempFile).replace(/^\./, '').replace(/\.tmp-\d+-[0-9a-f]{8}$/, '');
  return m && new RegExp(m[2]).test(finalName) ? Number(m[1]) : 0;
}

/**
 * mkdir -p that fails with the real cause: a recursive mkdir on a read-only mount says ENOENT, so the
 * missing components are created one at a time. Errors are Node's, for the caller to describe.
 */
export async function makeDirs(dir: string): Promise<void> {
  const missing: string[] = [];
  let cur = path.resolve(dir);
  while (!(await fs.stat(cur).then((st) => st.isDirectory(), () => false))) {
    missing.unshift(cur);
    const parent = path.dirname(cur);
    if (parent === cur) break;
    cur = parent;
  }
  for (const d of missing) {
    try {
      await fs.mkdir(d);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    }
  }
}

export function syncDir(dir: string): void {
  try {
    const fd = fsSync.openSync(dir, 'r');
    try { fsSync.fsyncSync(fd); } finally { fsSync.closeSync(fd); }
  } catch {
    // Some file systems refuse fsync on directories; the rename is still atomic there.
  }
}

export function sha256Hex(data: Uint8Array | string): string {
  return createHash('sha256').update(data).digest('hex');
}

export async function sha256File(file: string): Promise<{ sha256: string; bytes: number }> {
  const hash = createHash('sha256');
  let bytes = 0;
  // One buffer, read into again and again: a stream's fresh 1 MB chunks are garbage that V8
  // collects later, in full collections during inference ("external memory pressure").
  const buf = Buffer.allocUnsafe(1 << 20);
  let fh: fs.FileHandle | undefined;
  try {
    fh = await fs.open(file, 'r');
    for (;;) {
      const { bytesRead } = await fh.read(buf, 0, buf.length, bytes);
      if (bytesRead === 0) break;
      hash.update(buf.subarray(0, bytesRead));
      bytes += bytesRead;
    }
  } catch (err) {
    throw describeFsError(err, file, 'read') ?? err;
  } finally {
    await fh?.close();
  }
  return { sha256: hash.digest('hex'), bytes };
}

/** Remove temp files left by killed writers. Only names matching our temp pattern are touched. */
export async function removeStaleTemps(dir: string): Promise<number> {
  let removed = 0;
  for (const name of await fs.readdir(dir).catch(() => [] as string[])) {
    if (!isTempName(name)) continue;
    const pid = Number(/\.tmp-(\d+)-/.exec(name)?.[1]);
    if (pid !== process.pid && isAlive(pid)) continue; // a concurrent writer still owns it
    await fs.rm(path.join(dir, name), { force: true });
    removed++;
  }
  return removed;
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

export async function readJsonFile<T>(file: string): Promise<T> {
  let text: string;
  try {
    text = await fs.readFile(file, 'utf8');
  } catch (err) {
    throw describeFsError(err, file, 'read') ?? err;
  }
  try {
    return JSON.parse(text) as T;
  } catch {
    throw new UserError(`${file}: not valid JSON (the file is damaged; regenerate it)`);
  }
}
