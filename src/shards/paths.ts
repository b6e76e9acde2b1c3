/**
 * File names inside a cache directory. Manifests and sidecars are data from disk and may be damaged or
 * hostile, so every name taken from them goes through resolveInside before kdcache opens it.
 */
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { UserError, describeFsError } from '../util/errors.js';
import { SHARD_DIR, shardBaseName, shardExtension, type StorageFormat } from './format.js';

/** 'shards/shard-00003.parquet': always '/'-separated, because caches move between machines. */
export function shardRelPath(index: number, format: StorageFormat): string {
  return `${SHARD_DIR}/${shardBaseName(index)}${shardExtension(format)}`;
}

export function sidecarRelPath(index: number): string {
  return `${SHARD_DIR}/${shardBaseName(index)}.json`;
}

/**
 * Why `relPath` is not an acceptable cache-relative name, or undefined when it is. Purely lexical:
 * relative, '/'-separated, no empty, '.' or '..' segments, no NUL or backslash (a Windows separator).
 */
export function relPathProblem(relPath: unknown): string | undefined {
  if (typeof relPath !== 'string' || relPath.length === 0) return 'is not a non-empty string';
  if (relPath.includes('\0')) return 'contains a NUL character';
  if (relPath.includes('\\')) return 'contains a backslash (names are /-separated)';
  if (relPath.startsWith('/') || /^[A-Za-z]:/.test(relPath)) return 'is an absolute path';
  for (const seg of relPath.split('/')) {
    if (seg === '..') return 'escapes the cache directory (..)';
    if (seg === '' || seg === '.') return 'has an empty or "." segment';
  }
  return undefined;
}

/**
 * Absolute path of `relPath` inside `cacheDir`, refusing names that lead outside it: absolute paths,
 * '..' segments, and symbolic links (of the file or any parent) that resolve outside the directory.
 * `source` names the file the path came from, for the error message.
 */
export async function resolveInside(cacheDir: string, relPath: string, source = 'manifest.json'): Promise<string> {
  const problem = relPathProblem(relPath);
  if (problem) {
    throw new UserError(`${source}: file name ${JSON.stringify(relPath)} ${problem}; kdcache only reads and writes inside the cache directory: the file is damaged or was edited, regenerate the cache with precompute-logits`);
  }
  const full = path.join(cacheDir, ...relPath.split('/'));
  const root = await realpathOrSelf(cacheDir);
  const real = await realpathOfExistingPrefix(full);
  const rel = path.relative(root, real);
  if (rel === '' || rel.startsWith('..') || path.isAbsolute(rel)) {
    throw new UserError(`${source}: ${relPath} resolves through a symbolic link to ${real}, outside the cache directory ${cacheDir}; kdcache only reads and writes inside it: replace the link with the real file or directory`);
  }
  return full;
}

async function realpathOrSelf(p: string): Promise<string> {
  try {
    return await fs.realpath(p);
  } catch {
    return path.resolve(p);
  }
}

/** realpath of the longest existing prefix, with the missing tail appended (files not written yet). */
async function realpathOfExistingPrefix(full: string): Promise<string> {
  const tail: string[] = [];
  let p = path.resolve(full);
  for (;;) {
    try {
      return path.join(await fs.realpath(p), ...tail.reverse());
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      // A dangling symlink also gives ENOENT: lstat tells it apart, and it must not be followed later.
      if (code !== 'ENOENT' && code !== 'ENOTDIR') throw err;
      const st = await fs.lstat(p).catch(() => undefined);
      if (st?.isSymbolicLink()) return path.resolve(path.dirname(p), await fs.readlink(p));
      const parent = path.dirname(p);
      if (parent === p) return path.join(p, ...tail.reverse());
      tail.push(path.basename(p));
      p = parent;
    }
  }
}

/** Where shard `index` and its sidecar go, checked to lie inside the cache; see prepareShardFiles. */
export interface ShardPaths {
  shard: string;
  sidecar: string;
}

/**
 * Get the directory and names for shard `index` ready: shards/ created, both paths checked against
 * symbolic links out of the cache, and a sidecar from an earlier run removed (it must not vouch for
 * the shard while it is being replaced). precompute does this while the shard is computed, so the
 * file system round trips are not part of the last shard's write, which nothing overlaps.
 */
export async function prepareShardFiles(cacheDir: string, index: number, format: StorageFormat): Promise<ShardPaths> {
  const dir = path.join(cacheDir, SHARD_DIR);
  await fs.mkdir(dir, { recursive: true }).catch((err) => {
    throw describeFsError(err, dir, 'create the shard directory') ?? err;
  });
  const [shard, sidecar] = await Promise.all([
    resolveInside(cacheDir, shardRelPath(index, format), cacheDir), resolveInside(cacheDir, sidecarRelPath(index), cacheDir),
  ]);
  await fs.rm(sidecar, { force: true });
  return { shard, sidecar };
}
