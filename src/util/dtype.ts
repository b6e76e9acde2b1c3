/** Element types kdcache reads from datasets and stores in shards. */
export type DType = 'float32' | 'float64' | 'float16' | 'uint8' | 'int8' | 'uint16' | 'int16' | 'uint32' | 'int32' | 'int64';

export type TypedArray =
  | Float32Array | Float64Array | Uint8Array | Int8Array | Uint16Array | Int16Array
  | Uint32Array | Int32Array | BigInt64Array;

export const DTYPE_BYTES: Record<DType, number> = {
  float32: 4, float64: 8, float16: 2, uint8: 1, int8: 1, uint16: 2, int16: 2, uint32: 4, int32: 4, int64: 8,
};

/** float16 is held as raw Uint16 bits in memory. */
export function allocTyped(dtype: DType, length: number): TypedArray {
  switch (dtype) {
    case 'float32': return new Float32Array(length);
    case 'float64': return new Float64Array(length);
    case 'float16': return new Uint16Array(length);
    case 'uint8': return new Uint8Array(length);
    case 'int8': return new Int8Array(length);
    case 'uint16': return new Uint16Array(length);
    case 'int16': return new Int16Array(length);
    case 'uint32': return new Uint32Array(length);
    case 'int32': return new Int32Array(length);
    case 'int64': return new BigInt64Array(length);
  }
}

/** The parts one after another, in one new array of their type; a single part is returned as it is. */
export function concatTyped<T extends TypedArray>(parts: readonly T[]): T {
  if (parts.length === 1) return parts[0];
  const out = new (parts[0].constructor as new (n: number) => T)(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    (out as unknown as { set(a: T, o: number): void }).set(p, at);
    at += p.length;
  }
  return out;
}

/** View `bytes` (little-endian, aligned or not) as a typed array of `dtype`, copying only when unaligned. */
export function viewTyped(dtype: DType, bytes: Uint8Array): TypedArray {
  const size = DTYPE_BYTES[dtype];
  const length = Math.floor(bytes.byteLength / size);
  if (bytes.byteOffset % size !== 0) bytes = bytes.slice(0, length * size);
  const { buffer, byteOffset } = bytes;
  switch (dtype) {
    case 'float32': return new Float32Array(buffer, byteOffset, length);
    case 'float64': return new Float64Array(buffer, byteOffset, length);
    case 'float16': return new Uint16Array(buffer, byteOffset, length);
    case 'uint8': return new Uint8Array(buffer, byteOffset, length);
    case 'int8': return new Int8Array(buffer, byteOffset, length);
    case 'uint16': return new Uint16Array(buffer, byteOffset, length);
    case 'int16': return new Int16Array(buffer, byteOffset, length);
    case 'uint32': return new Uint32Array(buffer, byteOffset, length);
    case 'int32': return new Int32Array(buffer, byteOffset, length);
    case 'int64': return new BigInt64Array(buffer, byteOffset, length);
  }
}

export function product(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

/** IEEE 754 half-precision bits -> number. */
export function halfToFloat(h: number): number {
  const s = h & 0x8000 ? -1 : 1;
  const e = (h >> 10) & 0x1f;
  const f = h & 0x3ff;
  if (e === 0) return s * f * 2 ** -24;
  if (e === 31) return f ? NaN : s * Infinity;
  return s * (1 + f / 1024) * 2 ** (e - 15);
}
