/**
 * Row copies between float32 tables, the hot loop of streaming: rows into and out of the shuffle
 * buffer and gathered into batches. The native addon's moveRows does them when it is built (one
 * call per batch, with the next random slots prefetched); otherwise the same moves run here.
 * Decoded shards may hold pixel rows instead (PixelRows), converted to floats as they move.
 */
import { pixelLut } from '../data/preprocess.js';
import { type AddonBase, loadAddon } from '../util/addon.js';

/**
 * For k in order, with `res`: dst row dstStart+k <- res row slots[k], then res row slots[k] <- src
 * row srcRows[k] (skipped when srcRows[k] < 0). Without `res`: dst row dstStart+k <- src row
 * srcRows[k]. Rows are `width` floats. `src` may be `res` itself (moving the buffer's last row).
 */
export type MoveRows = (dst: Float32Array, dstStart: number, src: Float32Array, srcRows: Int32Array, count: number, width: number,
  res: Float32Array | null, slots: Int32Array | null) => void;

/** dst[to, to + width) <- src[from, from + width) */
export function copyRow(dst: Float32Array, to: number, src: Float32Array, from: number, width: number): void {
  // A few values: a loop is cheaper than allocating a subarray view for set().
  if (width <= 64) for (let j = 0; j < width; j++) dst[to + j] = src[from + j];
  else if (dst === src) dst.copyWithin(to, from, from + width);
  else dst.set(src.subarray(from, from + width), to);
}

export const moveRowsJs: MoveRows = (dst, dstStart, src, srcRows, count, width, res, slots) => {
  for (let k = 0; k < count; k++) {
    const to = (dstStart + k) * width;
    if (!res) {
      copyRow(dst, to, src, srcRows[k] * width, width);
      continue;
    }
    const slot = slots![k] * width;
    copyRow(dst, to, res, slot, width);
    const r = srcRows[k];
    if (r >= 0 && !(src === res && r * width === slot)) copyRow(res, slot, src, r * width, width);
  }
};

/**
 * Raw uint8 rows (pixels) that become model inputs only when they land in a float table:
 * x' = float32(x * mul[c] + add[c]) in float64, c the channel (width / mul.length values each): the
 * values preprocessing gives (src/data/preprocess.ts).
 */
export interface PixelRows {
  u8: Uint8Array;
  mul: Float64Array;
  add: Float64Array;
}

/**
 * MoveRows between pixel tables: dst gets floats; src and the reservoir `res` hold raw bytes (the
 * shuffle buffer of a stream of pixel rows), which are copied as they are.
 */
export type MovePixelRows = (dst: Float32Array, dstStart: number, src: PixelRows, srcRows: Int32Array, count: number, width: number,
  res: Uint8Array | null, slots: Int32Array | null) => void;

export const movePixelRowsJs: MovePixelRows = (dst, dstStart, src, srcRows, count, width, res, slots) => {
  const channels = src.mul.length;
  const plane = width / channels;
  const lut = pixelLut(src.mul, src.add);
  const u8 = src.u8;
  for (let k = 0; k < count; k++) {
    const to = (dstStart + k) * width;
    const from = res ? slots![k] * width : srcRows[k] * width;
    const bytes = res ?? u8;
    for (let c = 0; c < channels; c++) {
      const off = c * 256;
      for (let j = c * plane; j < (c + 1) * plane; j++) dst[to + j] = lut[off + bytes[from + j]];
    }
    const r = srcRows[k];
    if (!res || r < 0 || (u8 === res && r * width === from)) continue;
    if (u8 === res) res.copyWithin(from, r * width, r * width + width);
    else res.set(u8.subarray(r * width, r * width + width), from);
  }
};

let chosenPixels: MovePixelRows | null = null;

/** The addon's movePixelRows when it loads, else movePixelRowsJs. */
export function movePixelRows(): MovePixelRows {
  if (chosenPixels) return chosenPixels;
  const base = loadAddon<AddonBase>();
  return (chosenPixels = base.ok
    ? (dst, dstStart, src, srcRows, count, width, res, slots) => base.addon.movePixelRows(dst, dstStart, src.u8, srcRows, count, width, res, slots, src.mul, src.add)
    : movePixelRowsJs);
}

/** dst rows dstStart.. <- src rows srcRows[0..count), as bytes (filling a pixel shuffle buffer). */
export function copyPixelRows(dst: Uint8Array, dstStart: number, src: Uint8Array, srcRows: Int32Array, count: number, width: number): void {
  for (let k = 0; k < count; k++) dst.set(src.subarray(srcRows[k] * width, srcRows[k] * width + width), (dstStart + k) * width);
}

let chosen: MoveRows | null = null;

/** The addon's moveRows when it loads (KDCACHE_NATIVE=0 turns it off), else moveRowsJs. */
export function moveRows(): MoveRows {
  if (chosen) return chosen;
  const base = loadAddon<AddonBase>();
  return (chosen = base.ok ? base.addon.moveRows.bind(base.addon) : moveRowsJs);
}
