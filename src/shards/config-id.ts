import type { CacheConfig } from './manifest-types.js';
import { sha256Hex } from '../util/fsx.js';

/**
 * The fields that determine a cache's contents. The tool version is left out on purpose: a patch
 * release must not invalidate existing caches. Anything else (config_id itself, manifest-only fields
 * such as shards or complete) is ignored, so configId(manifest) re-derives the id of a manifest.
 */
export const CONFIG_ID_FIELDS = [
  'format_version', 'teacher', 'dataset', 'labels', 'preprocessing', 'output', 'storage', 'rows', 'shard_count',
] as const;

export type ConfigIdFields = Pick<CacheConfig, (typeof CONFIG_ID_FIELDS)[number]>;

/** JSON with object keys sorted (by UTF-16 code units), no whitespace: equal values give equal text. */
export function canonicalJson(value: unknown): string {
  if (value === null || typeof value === 'boolean' || typeof value === 'string') return JSON.stringify(value);
  if (typeof value === 'number') {
    // JSON has no NaN/Infinity; JSON.stringify would silently turn them into null and collide.
    if (!Number.isFinite(value)) throw new Error(`canonicalJson: non-finite number ${value}`);
    return JSON.stringify(value);
  }
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`;
  if (typeof value === 'object' && (Object.getPrototypeOf(value) === Object.prototype || Object.getPrototypeOf(value) === null)) {
    const obj = value as Record<string, unknown>;
    const keys = Object.keys(obj).filter((k) => obj[k] !== undefined).sort();
    return `{${keys.map((k) => `${JSON.stringify(k)}:${canonicalJson(obj[k])}`).join(',')}}`;
  }
  throw new Error(`canonicalJson: cannot encode ${Object.prototype.toString.call(value)}`);
}

/** sha256 (hex) of the canonical JSON of the config's content fields. */
export function configId(config: ConfigIdFields): string {
  const body: Record<string, unknown> = {};
  for (const k of CONFIG_ID_FIELDS) body[k] = config[k];
  return sha256Hex(canonicalJson(body));
}
