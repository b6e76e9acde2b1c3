/**
 * Convolution geometry for the replacement kernels: tfjs's attributes (strides, pad, dilations,
 * rounding) resolved by tfjs's own computeConv2DInfo, so every padding mode means exactly what it
 * means in tfjs, then flattened into the 15 integers the kernels take.
 */
import * as tf from '@tensorflow/tfjs';

/** [batch, inH, inW, inC, outH, outW, outC, kH, kW, strideH, strideW, dilH, dilW, padTop, padLeft] */
export type ConvDims = Int32Array;

export interface ConvAttrs {
  strides: number | [number, number];
  pad: 'valid' | 'same' | number | tf.backend_util.ExplicitPadding;
  dilations?: number | [number, number];
  dimRoundingMode?: 'floor' | 'round' | 'ceil';
  dataFormat?: string;
}

/** null when the layout is not NHWC (the replacement kernels only handle channels-last). */
export function convDims(xShape: readonly number[], filterShape: readonly number[], attrs: ConvAttrs, depthwise: boolean): ConvDims | null {
  if (attrs.dataFormat !== undefined && attrs.dataFormat !== 'NHWC' && attrs.dataFormat !== 'channelsLast') return null;
  const info = tf.backend_util.computeConv2DInfo(
    xShape as [number, number, number, number], filterShape as [number, number, number, number], attrs.strides,
    attrs.dilations ?? 1, attrs.pad, attrs.dimRoundingMode, depthwise, 'channelsLast');
  return Int32Array.from([
    info.batchSize, info.inHeight, info.inWidth, info.inChannels, info.outHeight, info.outWidth, info.outChannels,
    info.filterHeight, info.filterWidth, info.strideHeight, info.strideWidth, info.dilationHeight, info.dilationWidth,
    info.padInfo.top, info.padInfo.left,
  ]);
}

/** Output shape [batch, outH, outW, outC] of a convolution with these dims. */
export function convOutShape(d: ConvDims): number[] {
  return [d[0], d[4], d[5], d[6]];
}
