/**
 * Depthwise convolution gradients (NHWC, filter [kH, kW, inC, multiplier]) in plain loops over
 * typed arrays: tfjs-backend-wasm has no DepthwiseConv2dNativeBackpropInput/Filter, so depthwise
 * and separable convolutions could not train on it. Arrays are addressed by element offsets so
 * that the wasm heap can be used in place. Same arithmetic as the native kernels.
 */
import type { ConvDims } from './conv-dims.js';

/** dx = dL/dx of y[b, oh, ow, c*m + q] = sum_{kh,kw} x[b, ih, iw, c] * w[kh, kw, c, q]. */
export function depthwiseBackpropInput(d: ConvDims, dy: Float32Array, dyOff: number, w: Float32Array, wOff: number, dx: Float32Array, dxOff: number): void {
  const [nb, ih, iw, ci, oh, ow, co, kh, kw, sh, sw, dh, dw, pt, pl] = d;
  const m = co / ci;
  dx.fill(0, dxOff, dxOff + nb * ih * iw * ci);
  for (let b = 0; b < nb; b++) {
    for (let y = 0; y < oh; y++) {
      for (let x = 0; x < ow; x++) {
        const g = dyOff + ((b * oh + y) * ow + x) * co;
        for (let fy = 0; fy < kh; fy++) {
          const iy = y * sh + fy * dh - pt;
          if (iy < 0 || iy >= ih) continue;
          for (let fx = 0; fx < kw; fx++) {
            const ix = x * sw + fx * dw - pl;
            if (ix < 0 || ix >= iw) continue;
            const o = dxOff + ((b * ih + iy) * iw + ix) * ci;
            const f = wOff + (fy * kw + fx) * co;
            if (m === 1) {
              for (let c = 0; c < ci; c++) dx[o + c] += dy[g + c] * w[f + c];
            } else {
              for (let c = 0; c < ci; c++) {
                let s = 0;
                for (let q = 0; q < m; q++) s += dy[g + c * m + q] * w[f + c * m + q];
                dx[o + c] += s;
              }
            }
          }
        }
      }
    }
  }
}

/** dw = dL/dw, shape [kH, kW, inC, multiplier]. */
export function depthwiseBackpropFilter(d: ConvDims, x: Float32Array, xOff: number, dy: Float32Array, dyOff: number, dwOut: Float32Array, dwOff: number): void {
  const [nb, ih, iw, ci, oh, ow, co, kh, kw, sh, sw, dh, dw, pt, pl] = d;
  const m = co / ci;
  // Accumulate in float64: a filter tap sums over every output position of the batch.
  const acc = new Float64Array(kh * kw * co);
  for (let b = 0; b < nb; b++) {
    for (let y = 0; y < oh; y++) {
      for (let xo = 0; xo < ow; xo++) {
        const g = dyOff + ((b * oh + y) * ow + xo) * co;
        for (let fy = 0; fy < kh; fy++) {
          const iy = y * sh + fy * dh - pt;
          if (iy < 0 || iy >= ih) continue;
          for (let fx = 0; fx < kw; fx++) {
            const ix = xo * sw + fx * dw - pl;
            if (ix < 0 || ix >= iw) continue;
            const o = xOff + ((b * ih + iy) * iw + ix) * ci;
            const f = (fy * kw + fx) * co;
            if (m === 1) {
              for (let c = 0; c < ci; c++) acc[f + c] += x[o + c] * dy[g + c];
            } else {
              for (let c = 0; c < ci; c++) {
                const xv = x[o + c];
                for (let q = 0; q < m; q++) acc[f + c * m + q] += xv * dy[g + c * m + q];
              }
            }
          }
        }
      }
    }
  }
  for (let i = 0; i < acc.length; i++) dwOut[dwOff + i] = acc[i];
}
