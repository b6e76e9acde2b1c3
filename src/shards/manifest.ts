/**
 * The cache's bookkeeping: sidecars -> manifest.json (written last, only when every row is covered),
 * and the checks that a manifest and the shards it names are intact before anyone trains on them.
 */
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { describeFsError, UserError } from '../util/errors.js';
import { readJsonFile, removeStaleTemps, sha256File, writeFileAtomic } from '../util/fsx.js';
import { combineFidelity } from '../sparse/fidelity.js';
import { configId } from './config-id.js';
import { CONFIG_FILE, MANIFEST_FILE, REGENERATE, SHARD_DIR, type ShardRecord } from './format.js';
import { checkJson, FieldError } from './json-check.js';
import type { CacheConfig, Manifest, ShardSidecar } from './manifest-types.js';
import { resolveInside } from './paths.js';
import { checkConfig, checkManifest, checkRecordAgainstConfig, checkSidecarShape, expectedShardRows } from './schemas.js';

export { canonicalJson, configId, CONFIG_ID_FIELDS } from './config-id.js';
export { relPathProblem, resolveInside, shardRelPath, sidecarRelPath } from './paths.js';
export { expectedShardRows } from './schemas.js';

const REBUILD = 'the file is damaged or was edited: regenerate the cache with precompute-logits';

/** A cache path that is missing or is a file gets one line saying so, not an error about a file inside it. */
async function requireCacheDir(cacheDir: string): Promise<void> {
  const st = await fs.stat(cacheDir).catch((err: NodeJS.ErrnoException) => err);
  if (st instanceof Error) {
    if (st.code === 'ENOENT' || st.code === 'ENOTDIR') throw new UserError(`${cacheDir}: no such cache directory; pass the --out directory of precompute-logits`);
    throw describeFsError(st, cacheDir, 'open the cache') ?? st;
  }
  if (!st.isDirectory()) throw new UserError(`${cacheDir}: not a directory; pass the --out directory of precompute-logits`);
}

export async function readConfig(cacheDir: string): Promise<CacheConfig> {
  await requireCacheDir(cacheDir);
  const file = path.join(cacheDir, CONFIG_FILE);
  const value = await readJsonFile<unknown>(file);
  checkJson(value, checkConfig, file, REBUILD);
  if (configId(value as CacheConfig) !== (value as CacheConfig).config_id) {
    throw new UserError(`${file}: config_id does not match the configuration it records (the file was edited); re-run precompute-logits with the same arguments to restore it`);
  }
  return value as CacheConfig;
}

export interface SidecarScan {
  /** sidecars of this configuration whose shard file is present with the recorded size, by index */
  valid: ShardSidecar[];
  /** sidecars written for another configuration: the directory mixes two caches */
  foreign: { file: string; config_id: string }[];
  /** damaged sidecars, or sidecars whose shard is missing or has the wrong size; their shards must be recomputed */
  invalid: { file: string; reason: string }[];
}

const SIDECAR_NAME = /^shard-(\d{5,})\.json$/;

/** List and check shards/*.json against `config`. Does not hash shards (see verifyCache). */
export async function readSidecars(cacheDir: string, config: CacheConfig): Promise<SidecarScan> {
  const scan: SidecarScan = { valid: [], foreign: [], invalid: [] };
  const dir = path.join(cacheDir, SHARD_DIR);
  let names: string[];
  try {
    names = await fs.readdir(await resolveInside(cacheDir, SHARD_DIR, cacheDir)); // a shards/ linking outside is refused
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return scan;
    throw describeFsError(err, dir, 'list shards') ?? err;
  }
  for (const name of names.sort()) {
    const m = SIDECAR_NAME.exec(name);
    if (!m) continue;
    const rel = `${SHARD_DIR}/${name}`;
    const reason = await sidecarProblem(cacheDir, rel, Number(m[1]), config, scan);
    if (reason) scan.invalid.push({ file: rel, reason });
  }
  scan.valid.sort((a, b) => a.index - b.index);
  return scan;
}

/** Sorts one sidecar into `scan` (valid or foreign), or returns why it is invalid. */
async function sidecarProblem(cacheDir: string, rel: string, index: number, config: CacheConfig, scan: SidecarScan): Promise<string | undefined> {
  let value: unknown;
  try {
    value = await readJsonFile<unknown>(path.join(cacheDir, ...rel.split('/')));
    checkJson(value, checkSidecarShape, rel, REBUILD);
  } catch (err) {
    if (err instanceof UserError) return err.message;
    throw err;
  }
  const sc = value as ShardSidecar;
  if (sc.config_id !== config.config_id) {
    scan.foreign.push({ file: rel, config_id: sc.config_id });
    return undefined;
  }
  if (sc.index !== index) return `${rel}: records shard ${sc.index}, its name says ${index}`;
  try {
    checkRecordAgainstConfig(sc, config, '');
  } catch (err) {
    if (err instanceof FieldError) return `${rel}: ${err.message}`;
    throw err;
  }
  let size: number;
  try {
    size = (await fs.stat(await resolveInside(cacheDir, sc.file, rel))).size;
  } catch (err) {
    if (err instanceof UserError) return err.message;
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return `${sc.file}: missing, its sidecar ${rel} exists`;
    throw err;
  }
  if (size !== sc.bytes) return `${sc.file}: ${size} bytes, its sidecar says ${sc.bytes}`;
  scan.valid.push(sc);
  return undefined;
}

/** Indexes 0..shard_count-1 with no sidecar of this configuration. */
export function missingShards(config: CacheConfig, sidecars: readonly ShardSidecar[]): number[] {
  const have = new Set(sidecars.filter((s) => s.config_id === config.config_id).map((s) => s.index));
  const missing: number[] = [];
  for (let i = 0; i < config.shard_count; i++) if (!have.has(i)) missing.push(i);
  return missing;
}

/**
 * The manifest for `config` from its shard sidecars. complete is true only when the sidecars, sorted
 * by index, are exactly shards 0..shard_count-1 of this configuration, so every row 0..rows-1 is
 * covered exactly once.
 */
export function buildManifest(config: CacheConfig, sidecars: readonly ShardSidecar[]): Manifest {
  const sorted = [...sidecars].sort((a, b) => a.index - b.index);
  const { shard_rows } = config.storage;
  const complete = sorted.length === config.shard_count && sorted.every((s, i) =>
    s.config_id === config.config_id && s.index === i && s.first_row === i * shard_rows
    && s.rows === expectedShardRows(config.rows, shard_rows, i));
  const shards: ShardRecord[] = sorted.map((s) => ({
    file: s.file, index: s.index, first_row: s.first_row, rows: s.rows, bytes: s.bytes, sha256: s.sha256, nonfinite_rows: s.nonfinite_rows,
    ...(s.positions !== undefined ? { positions: s.positions } : {}),
    ...(s.fidelity !== undefined ? { fidelity: s.fidelity } : {}),
  }));
  const totals: Manifest['totals'] = {
    bytes: shards.reduce((n, s) => n + s.bytes, 0),
    nonfinite_rows: shards.reduce((n, s) => n + s.nonfinite_rows, 0),
  };
  if (config.storage.layout === 'sequence') totals.positions = shards.reduce((n, s) => n + (s.positions ?? 0), 0);
  if (config.storage.kind !== undefined) totals.fidelity = combineFidelity(shards.flatMap((s) => (s.fidelity ? [s.fidelity] : [])));
  return {
    ...config,
    complete,
    execution_providers: [...new Set(sorted.map((s) => s.execution_provider))].sort(),
    shards,
    totals,
  };
}

export interface FinalizeResult extends Omit<SidecarScan, 'valid'> {
  /** the manifest written, or null when shards are missing (nothing is written then) */
  manifest: Manifest | null;
  missing: number[];
}

/** Write manifest.json if every shard is present; otherwise report what is missing. */
export async function finalizeCache(cacheDir: string): Promise<FinalizeResult> {
  const config = await readConfig(cacheDir);
  // A run killed while writing config.json or manifest.json left its temp file here, not in shards/.
  await removeStaleTemps(cacheDir);
  const scan = await readSidecars(cacheDir, config);
  const manifest = buildManifest(config, scan.valid);
  if (manifest.complete) await writeFileAtomic(path.join(cacheDir, MANIFEST_FILE), `${JSON.stringify(manifest, null, 2)}\n`);
  return { manifest: manifest.complete ? manifest : null, missing: missingShards(config, scan.valid), foreign: scan.foreign, invalid: scan.invalid };
}

/** Read and check manifest.json; a missing, damaged or incomplete manifest is a UserError. */
export async function readManifest(cacheDir: string): Promise<Manifest> {
  const file = path.join(cacheDir, MANIFEST_FILE);
  await requireCacheDir(cacheDir);
  try {
    await fs.access(file);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
      throw new UserError(`${file}: missing, the cache is not finished; run precompute-logits with the same arguments (or 'kdcache finalize ${cacheDir}' once every partition is done) to complete it`);
    }
  }
  const value = await readJsonFile<unknown>(file);
  checkJson(value, checkManifest, file, REBUILD);
  const m = value as Manifest;
  if (!m.complete) {
    throw new UserError(`${file}: the cache is incomplete (${m.shards.length} of ${m.shard_count} shards); run precompute-logits with the same arguments to complete it`);
  }
  return m;
}

/**
 * Refuse `file` unless it is the very teacher the cache was made with: the manifest records its
 * sha256, so a model re-exported or retrained after precompute is caught before its logits are used.
 */
export async function checkTeacherFile(m: Manifest, file: string): Promise<void> {
  let fp: { sha256: string; bytes: number };
  try {
    if ((await fs.stat(file)).isDirectory()) throw new UserError(`--teacher ${file}: is a directory; give the .onnx file`);
    fp = await sha256File(file);
  } catch (err) {
    if (err instanceof UserError) throw err.message.startsWith('--teacher') ? err : new UserError(`--teacher ${err.message}`);
    const e = describeFsError(err, file, 'read the teacher');
    throw e ? new UserError(`--teacher ${e.message}`) : err;
  }
  if (fp.sha256 !== m.teacher.sha256 || fp.bytes !== m.teacher.bytes) {
    throw new UserError(`--teacher ${file}: not the teacher this cache was made with (this file: ${fp.bytes} bytes, sha256 ${fp.sha256.slice(0, 12)}...; ` +
      `cache: ${m.teacher.name}, ${m.teacher.bytes} bytes, sha256 ${m.teacher.sha256.slice(0, 12)}...); the model changed after precompute: rerun precompute-logits with it (a new --out, or --overwrite)`);
  }
}

export interface VerifyProblem {
  /** the file at fault, relative to the cache directory */
  file: string;
  /** what is wrong and what to do, one line */
  message: string;
}

export interface VerifyReport {
  ok: boolean;
  manifest: Manifest | null;
  shards: number;
  /** shards whose size, metadata (and sha256 with checksums) were checked */
  checked: number;
  /** bytes hashed */
  bytes: number;
  checksums: boolean;
  problems: VerifyProblem[];
}

export interface VerifyProgress {
  done: number;
  total: number;
  bytes: number;
  file: string;
}

/** `<file>: <message>` lines, for printing. */
export function problemLines(report: VerifyReport): string[] {
  return report.problems.map((p) => `${p.file}: ${p.message}`);
}

/**
 * Check a finished cache: manifest structure and coverage, config_id, and for every shard presence,
 * size, embedded config_id/first_row, and (with checksums) sha256. Problems are collected, not thrown.
 */
export async function verifyCache(cacheDir: string, opts: { checksums: boolean; onProgress?: (p: VerifyProgress) => void }): Promise<VerifyReport> {
  const report: VerifyReport = { ok: false, manifest: null, shards: 0, checked: 0, bytes: 0, checksums: opts.checksums, problems: [] };
  const problem = (file: string, message: string): void => {
    report.problems.push({ file, message });
  };
  await requireCacheDir(cacheDir); // not a problem of the cache: the wrong path was given
  let m: Manifest;
  try {
    m = await readManifest(cacheDir);
  } catch (err) {
    if (!(err instanceof UserError)) throw err;
    problem(MANIFEST_FILE, stripPrefix(err.message, path.join(cacheDir, MANIFEST_FILE)));
    return report;
  }
  report.manifest = m;
  report.shards = m.shards.length;
  if (configId(m) !== m.config_id) problem(MANIFEST_FILE, `config_id does not match the configuration it records (the manifest was edited); ${REBUILD}`);
  await checkConfigFile(cacheDir, m, problem);

  for (const rec of m.shards) {
    await verifyShard(cacheDir, m, rec, opts.checksums, report, problem);
    opts.onProgress?.({ done: rec.index + 1, total: m.shards.length, bytes: report.bytes, file: rec.file });
  }
  report.ok = report.problems.length === 0;
  return report;
}

async function checkConfigFile(cacheDir: string, m: Manifest, problem: (file: string, message: string) => void): Promise<void> {
  try {
    const config = await readConfig(cacheDir);
    if (config.config_id !== m.config_id) {
      problem(CONFIG_FILE, `describes another configuration than manifest.json (config_id ${config.config_id.slice(0, 12)}... vs ${m.config_id.slice(0, 12)}...): the directory mixes two caches; regenerate it with precompute-logits`);
    }
  } catch (err) {
    if (!(err instanceof UserError)) throw err;
    // config.json is only needed to resume precompute; a cache copied without it is still usable.
    if ((await fs.stat(path.join(cacheDir, CONFIG_FILE)).catch(() => null)) !== null) problem(CONFIG_FILE, stripPrefix(err.message, path.join(cacheDir, CONFIG_FILE)));
  }
}

async function verifyShard(cacheDir: string, m: Manifest, rec: ShardRecord, checksums: boolean, report: VerifyReport, problem: (file: string, message: string) => void): Promise<void> {
  let abs: string;
  try {
    abs = await resolveInside(cacheDir, rec.file);
  } catch (err) {
    if (!(err instanceof UserError)) throw err;
    return problem(rec.file, stripPrefix(err.message, MANIFEST_FILE));
  }
  const st = await fs.stat(abs).catch((err: NodeJS.ErrnoException) => err);
  if (st instanceof Error) {
    if (st.code === 'ENOENT') return problem(rec.file, `missing; ${REGENERATE}`);
    return problem(rec.file, stripPrefix(describeFsError(st, rec.file, 'read')?.message ?? st.message, rec.file));
  }
  if (!st.isFile()) return problem(rec.file, `not a regular file; ${REGENERATE}`);
  if (st.size !== rec.bytes) return problem(rec.file, `${st.size} bytes, the manifest says ${rec.bytes} (truncated or replaced); ${REGENERATE}`);
  try {
    if (checksums) {
      const { sha256, bytes } = await sha256File(abs);
      report.bytes += bytes;
      if (sha256 !== rec.sha256) return problem(rec.file, `sha256 differs from manifest (file changed or corrupted); ${REGENERATE}`);
    }
    // The shard reader brings apache-arrow, which precompute-logits does not otherwise load on this thread.
    const { metaProblem, readShardMeta } = await import('./reader.js');
    const meta = await readShardMeta(abs, m.storage.format, rec.file);
    const bad = metaProblem(meta, rec, m.config_id);
    if (bad) return problem(rec.file, `${bad}; ${REGENERATE}`);
    report.checked++;
  } catch (err) {
    if (!(err instanceof UserError)) throw err;
    problem(rec.file, stripPrefix(err.message, rec.file));
  }
}

function stripPrefix(message: string, file: string): string {
  return message.startsWith(`${file}: `) ? message.slice(file.length + 2) : message;
}
