/**
 * Row copies between float32 tables, the hot loop of streaming: rows into and out of the shuffle
 * buffer and gathered into batches. The native addon's moveRows does them when it is built (one
 * call per batch, with the next random slots prefetched); otherwise the same moves run here.
 */
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

let chosen: MoveRows | null = null;

/** The addon's moveRows when it loads (KDCACHE_NATIVE=0 turns it off), else moveRowsJs. */
export function moveRows(): MoveRows {
  if (chosen) return chosen;
  const base = loadAddon<AddonBase>();
  return (chosen = base.ok ? base.addon.moveRows.bind(base.addon) : moveRowsJs);
}
