/**
 * Zero-copy access to tensors of the tfjs wasm backend (tfjs 4.22.0 internals, pinned and tested):
 * a tensor's bytes live at `dataIdMap.get(dataId).memoryOffset` in the module's heap. Kernels read
 * inputs and write outputs there directly; a heap view must be taken after the last allocation of
 * a kernel, because growing the heap replaces its ArrayBuffer.
 */
import type * as tf from '@tensorflow/tfjs';

export type TensorInfo = tf.TensorInfo;

export interface WasmBackend {
  makeOutput(shape: number[], dtype: tf.DataType): TensorInfo;
  typedArrayFromHeap(info: TensorInfo): Float32Array;
  disposeData(dataId: object): boolean;
  dataIdMap: { get(dataId: object): { memoryOffset: number } | undefined };
  wasm: { HEAPU8: Uint8Array };
}

export interface KernelArgs {
  inputs: Record<string, TensorInfo | undefined>;
  backend: WasmBackend;
  attrs: Record<string, unknown>;
}

export type KernelFn = (args: KernelArgs) => TensorInfo;

let heapView: Float32Array | null = null;

/** The whole wasm heap as floats (re-made when the heap has grown). */
export function heapF32(backend: WasmBackend): Float32Array {
  const buffer = backend.wasm.HEAPU8.buffer;
  if (heapView === null || heapView.buffer !== buffer) heapView = new Float32Array(buffer);
  return heapView;
}

/** Where a float32 tensor starts in heapF32, in elements. */
export function offsetOf(backend: WasmBackend, info: TensorInfo): number {
  const data = backend.dataIdMap.get(info.dataId);
  if (!data) throw new Error('wasm kernel: tensor data not found (disposed?)');
  if (data.memoryOffset % 4 !== 0) throw new Error('wasm kernel: misaligned tensor');
  return data.memoryOffset / 4;
}

export function size(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}
