/**
 * float32 <-> IEEE 754 binary16 ("half"), held as raw Uint16 bits (Node 20 has no Float16Array).
 * Conversion to half rounds to nearest, ties to even, exactly as hardware and numpy do: values
 * from 65520 up become Inf, values below 2^-25 become (signed) zero, subnormals are rounded, NaN
 * stays NaN (quiet, sign and top payload bits kept).
 */
import { halfToFloat } from './dtype.js';

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

/** |x| >= 65520 rounds to Inf: the midpoint between 65504 (largest half) and 2^16 rounds to even, up. */
const OVERFLOW = 0x477ff000;
/** Smallest normal half, 2^-14, as float32 bits. */
const MIN_NORMAL = 0x38800000;
/** Rebias the exponent from 127 to 15. */
const REBIAS = (127 - 15) << 23;

/** Round the float32 nearest to `x` to half precision; returns the half's bits. */
export function floatToHalf(x: number): number {
  f32[0] = x;
  return bitsToHalf(u32[0]);
}

function bitsToHalf(bits: number): number {
  const sign = (bits >>> 16) & 0x8000;
  const abs = bits & 0x7fffffff;
  if (abs >= 0x7f800000) return abs === 0x7f800000 ? sign | 0x7c00 : sign | 0x7e00 | ((abs >>> 13) & 0x3ff);
  if (abs >= OVERFLOW) return sign | 0x7c00;
  if (abs >= MIN_NORMAL) {
    // Drop 13 mantissa bits with round-half-even; a carry out of the mantissa bumps the exponent,
    // which is what rounding up to the next binade means.
    const h = (abs - REBIAS) >>> 13;
    const rest = abs & 0x1fff;
    return sign | (rest > 0x1000 || (rest === 0x1000 && (h & 1) === 1) ? h + 1 : h);
  }
  // Subnormal half (or zero): the value in units of 2^-24, rounded half to even. f32[0] * 2^24 is
  // exact in a double, so the tie test is exact.
  f32[0] = 0;
  u32[0] = abs;
  const scaled = f32[0] * 16777216;
  let m = Math.floor(scaled);
  const frac = scaled - m;
  if (frac > 0.5 || (frac === 0.5 && (m & 1) === 1)) m++;
  return sign | m; // m may reach 0x400, the smallest normal: the bit pattern carries over correctly
}

/** Convert a whole array; `out` may be given to avoid an allocation. */
export function floatsToHalves(src: ArrayLike<number>, out: Uint16Array = new Uint16Array(src.length)): Uint16Array {
  if (src instanceof Float32Array) {
    const bits = new Uint32Array(src.buffer, src.byteOffset, src.length);
    for (let i = 0; i < bits.length; i++) out[i] = bitsToHalf(bits[i]);
    return out;
  }
  for (let i = 0; i < src.length; i++) out[i] = floatToHalf(src[i]);
  return out;
}

let table: Float32Array | null = null;

/** Half bits -> float32 through a 256 KiB table (every half is exact in float32). */
export function halvesToFloats(src: Uint16Array, out: Float32Array = new Float32Array(src.length)): Float32Array {
  if (!table) {
    table = new Float32Array(65536);
    for (let h = 0; h < 65536; h++) table[h] = halfToFloat(h);
  }
  const t = table;
  for (let i = 0; i < src.length; i++) out[i] = t[src[i]];
  return out;
}
