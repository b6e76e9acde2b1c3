/**
 * The optional native addon (native/kdcache_native.cc, built by `npm run build` when g++ is
 * present). Loaded at most once per thread; everything that uses it has a JavaScript fallback, so a
 * missing or disabled addon (KDCACHE_NATIVE=0) changes speed: preprocessing stays bit-identical, and
 * training differs only by float summation order.
 */
import * as fs from 'node:fs';
import { createRequire } from 'node:module';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';

/** The addon's functions as the TypeScript side calls them; native/kdcache_native.cc exports the same number. */
export const ADDON_API_VERSION = 11;

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
export const NATIVE_ADDON = path.join(ROOT, 'native', 'build', 'kdcache_native.node');

/** What does not need the BLAS: usable as soon as the addon is loaded. */
export interface AddonBase {
  apiVersion: number;
  /** y[r, c, j] = float32(x[r, c, j] * mul[c] + add[c]) computed in float64, as JavaScript does */
  pixels(x: Uint8Array, y: Float32Array, rows: number, channels: number, plane: number, mul: Float64Array, add: Float64Array): void;
  /** see MoveRows in src/train/row-moves.ts */
  moveRows(dst: Float32Array, dstStart: number, src: Float32Array, srcRows: Int32Array, count: number, width: number,
    res: Float32Array | null, slots: Int32Array | null): void;
  /** see MovePixelRows in src/train/row-moves.ts */
  movePixelRows(dst: Float32Array, dstStart: number, src: Uint8Array, srcRows: Int32Array, count: number, width: number,
    res: Uint8Array | null, slots: Int32Array | null, mul: Float64Array, add: Float64Array): void;
  /** bytes written into dst, or -1 when libzstd cannot be loaded; throws on a damaged frame */
  zstdDecompress(src: Uint8Array, dst: Uint8Array): number;
  /** one zstd frame of src into dst (at least zstdBound(src.length) bytes): its length, or -1 when libzstd cannot be loaded */
  zstdCompress(src: Uint8Array, dst: Uint8Array, level: number): number;
}

export type AddonLoad<T> = { ok: true; addon: T; file: string } | { ok: false; reason: string };

let loaded: AddonLoad<AddonBase> | null = null;

export function loadAddon<T extends AddonBase = AddonBase>(): AddonLoad<T> {
  if (loaded) return loaded as AddonLoad<T>;
  if (process.env.KDCACHE_NATIVE === '0') return (loaded = { ok: false, reason: 'disabled by KDCACHE_NATIVE=0' }) as AddonLoad<T>;
  const file = process.env.KDCACHE_NATIVE_ADDON || NATIVE_ADDON;
  if (!fs.existsSync(file)) {
    return (loaded = { ok: false, reason: `${path.relative(process.cwd(), file) || file} is not built (npm run build builds it when g++ is installed)` }) as AddonLoad<T>;
  }
  try {
    const addon = createRequire(import.meta.url)(file) as AddonBase;
    if (addon.apiVersion !== ADDON_API_VERSION) {
      return (loaded = { ok: false, reason: `${file} is out of date (version ${addon.apiVersion}, expected ${ADDON_API_VERSION}); run npm run build` }) as AddonLoad<T>;
    }
    return (loaded = { ok: true, addon, file }) as AddonLoad<T>;
  } catch (err) {
    return (loaded = { ok: false, reason: (err instanceof Error ? err.message : String(err)).split('\n')[0] }) as AddonLoad<T>;
  }
}
