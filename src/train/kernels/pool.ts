/**
 * Pooling gradients (NHWC) in plain loops over typed arrays addressed by element offsets (the wasm
 * heap is used in place). tfjs-backend-wasm's MaxPoolGrad walks every input element and re-scans
 * the windows around it, which made it the largest cost of a CNN training step; this scans each
 * window once, keeping the running maximum of all channels at a time (channels are contiguous).
 * Semantics are tfjs's: the first maximum of a window in row-major order gets the gradient
 * (strict >, starting from -Infinity, so a window of NaN/-Infinity passes none), and overlapping
 * windows add up.
 */
import * as tf from '@tensorflow/tfjs';

/** [batch, inH, inW, channels, outH, outW, filterH, filterW, strideH, strideW, dilH, dilW, padTop, padLeft] (effective filter sizes) */
export type PoolDims = Int32Array;

export interface PoolAttrs {
  filterSize: number | [number, number];
  strides: number | [number, number];
  pad: 'valid' | 'same' | number | tf.backend_util.ExplicitPadding;
  dimRoundingMode?: 'floor' | 'round' | 'ceil';
}

export function poolDims(xShape: readonly number[], attrs: PoolAttrs): PoolDims {
  const info = tf.backend_util.computePool2DInfo(xShape as [number, number, number, number], attrs.filterSize, attrs.strides, 1, attrs.pad, attrs.dimRoundingMode);
  return Int32Array.from([
    info.batchSize, info.inHeight, info.inWidth, info.inChannels, info.outHeight, info.outWidth,
    info.effectiveFilterHeight, info.effectiveFilterWidth, info.strideHeight, info.strideWidth, info.dilationHeight, info.dilationWidth,
    info.padInfo.top, info.padInfo.left,
  ]);
}

/** dx of max pooling: dy goes to the position of each window's maximum in x. */
export function maxPoolBackprop(d: PoolDims, x: Float32Array, xOff: number, dy: Float32Array, dyOff: number, dx: Float32Array, dxOff: number): void {
  const [nb, ih, iw, c, oh, ow, fh, fw, sh, sw, dh, dw, pt, pl] = d;
  dx.fill(0, dxOff, dxOff + nb * ih * iw * c);
  const best = new Float32Array(c);
  const at = new Int32Array(c);
  for (let b = 0; b < nb; b++) {
    const xb = xOff + b * ih * iw * c;
    const dxb = dxOff + b * ih * iw * c;
    for (let y = 0; y < oh; y++) {
      for (let xo = 0; xo < ow; xo++) {
        best.fill(-Infinity);
        at.fill(-1);
        for (let fy = 0; fy < fh; fy += dh) {
          const iy = y * sh - pt + fy;
          if (iy < 0 || iy >= ih) continue;
          for (let fx = 0; fx < fw; fx += dw) {
            const ix = xo * sw - pl + fx;
            if (ix < 0 || ix >= iw) continue;
            const p = (iy * iw + ix) * c;
            for (let ch = 0; ch < c; ch++) {
              const v = x[xb + p + ch];
              if (v > best[ch]) {
                best[ch] = v;
                at[ch] = p + ch;
              }
            }
          }
        }
        const g = dyOff + ((b * oh + y) * ow + xo) * c;
        for (let ch = 0; ch < c; ch++) if (at[ch] >= 0) dx[dxb + at[ch]] += dy[g + ch];
      }
    }
  }
}
