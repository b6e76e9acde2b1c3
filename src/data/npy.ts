import * as fs from 'node:fs/promises';
import type { DType, TypedArray } from '../util/dtype.js';
import { DTYPE_BYTES, allocTyped, product, viewTyped } from '../util/dtype.js';
import { UserError, describeFsError } from '../util/errors.js';
import { checkRange } from './memory.js';
import type { Dataset } from './types.js';

const MAGIC = [0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59]; // \x93NUMPY

const DESCR: Record<string, DType> = {
  '<f4': 'float32', '<f8': 'float64', '|u1': 'uint8', '<u1': 'uint8', '|i1': 'int8', '<i1': 'int8',
  '<u2': 'uint16', '<i2': 'int16', '<u4': 'uint32', '<i4': 'int32', '<i8': 'int64', '|b1': 'uint8',
};

export interface NpyHeader {
  dtype: DType;
  shape: number[];
  dataOffset: number;
}

/** Parse the header of a .npy file (format versions 1-3). Never trusts it beyond the file's size. */
export function parseNpyHeader(head: Uint8Array, file: string, fileSize: number): NpyHeader {
  if (head.length < 10 || MAGIC.some((b, i) => head[i] !== b)) {
    throw new UserError(`${file}: not a .npy file (bad magic); save arrays with numpy.save`);
  }
  const major = head[6];
  if (major < 1 || major > 3) throw new UserError(`${file}: unsupported .npy format version ${major}`);
  const lenBytes = major === 1 ? 2 : 4;
  const view = new DataView(head.buffer, head.byteOffset, head.byteLength);
  if (head.length < 8 + lenBytes) throw new UserError(`${file}: truncated .npy header`);
  const headerLen = lenBytes === 2 ? view.getUint16(8, true) : view.getUint32(8, true);
  const dataOffset = 8 + lenBytes + headerLen;
  if (dataOffset > head.length) throw new UserError(`${file}: truncated .npy header`);
  const text = new TextDecoder('latin1').decode(head.subarray(8 + lenBytes, dataOffset));
  const descr = /'descr'\s*:\s*'([^']*)'/.exec(text)?.[1];
  const fortran = /'fortran_order'\s*:\s*(True|False)/.exec(text)?.[1];
  const shapeText = /'shape'\s*:\s*\(([^)]*)\)/.exec(text)?.[1];
  if (descr === undefined || fortran === undefined || shapeText === undefined) {
    throw new UserError(`${file}: malformed .npy header`);
  }
  const dtype = DESCR[descr];
  if (!dtype) {
    throw new UserError(`${file}: unsupported .npy dtype '${descr}' (supported: little-endian float32, float64, uint8, int8, int16, uint16, int32, uint32, int64); convert with arr.astype(numpy.float32)`);
  }
  if (fortran === 'True') throw new UserError(`${file}: Fortran-order arrays are not supported; save with numpy.save(f, numpy.ascontiguousarray(arr))`);
  const shape = shapeText.split(',').map((s) => s.trim()).filter((s) => s.length > 0).map(Number);
  if (shape.length === 0) throw new UserError(`${file}: a scalar .npy has no examples; expected shape [N, ...]`);
  if (shape.some((d) => !Number.isSafeInteger(d) || d < 0)) throw new UserError(`${file}: malformed shape in .npy header`);
  const need = dataOffset + product(shape) * DTYPE_BYTES[dtype];
  if (!Number.isSafeInteger(need) || need > fileSize) {
    throw new UserError(`${file}: truncated .npy file: header declares shape [${shape.join(', ')}] (${need} bytes) but the file has ${fileSize} bytes`);
  }
  return { dtype, shape, dataOffset };
}

/** A .npy dataset read with positioned reads: memory stays proportional to the rows asked for. */
export async function openNpy(file: string): Promise<Dataset> {
  let fh: fs.FileHandle;
  try {
    fh = await fs.open(file, 'r');
  } catch (err) {
    throw describeFsError(err, file, 'read the data') ?? err;
  }
  let header: NpyHeader;
  try {
    // open(2) succeeds on a directory; fstat tells it apart before a read fails without a file name.
    const st = await fh.stat();
    if (!st.isFile()) throw new UserError(`${file}: ${st.isDirectory() ? 'is a directory' : 'not a regular file'}, expected a .npy file`);
    const head = new Uint8Array(Math.min(st.size, 65536 + 12));
    await fh.read(head, 0, head.length, 0);
    header = parseNpyHeader(head, file, st.size);
  } catch (err) {
    await fh.close();
    throw describeFsError(err, file, 'read the data') ?? err;
  }
  const [count, ...exampleShape] = header.shape;
  const rowBytes = product(exampleShape) * DTYPE_BYTES[header.dtype];
  return {
    format: 'npy',
    files: [file],
    inputColumn: null,
    count,
    exampleShape,
    dtype: header.dtype,
    async read(start, end, scratch) {
      checkRange(file, start, end, count);
      const need = (end - start) * rowBytes;
      const out = scratch && scratch.byteLength >= need ? viewTyped(header.dtype, new Uint8Array(scratch, 0, need)) : allocTyped(header.dtype, (end - start) * product(exampleShape));
      const bytes = new Uint8Array(out.buffer, out.byteOffset, out.byteLength);
      let done = 0;
      while (done < bytes.length) {
        const { bytesRead } = await fh.read(bytes, done, bytes.length - done, header.dataOffset + start * rowBytes + done);
        if (bytesRead === 0) throw new UserError(`${file}: file shrank while reading (truncated); check the file`);
        done += bytesRead;
      }
      return out;
    },
    close: () => fh.close(),
  };
}

/** Load a whole 1-d .npy of integers as labels. */
export async function readNpyLabels(file: string): Promise<Int32Array> {
  const ds = await openNpy(file);
  try {
    if (ds.exampleShape.length > 1 || (ds.exampleShape.length === 1 && ds.exampleShape[0] !== 1)) {
      throw new UserError(`${file}: labels must be a 1-d array of class indices, got shape [${[ds.count, ...ds.exampleShape].join(', ')}]`);
    }
    return toLabels(await ds.read(0, ds.count), file);
  } finally {
    await ds.close();
  }
}

export function toLabels(values: TypedArray, file: string): Int32Array {
  const out = new Int32Array(values.length);
  for (let i = 0; i < values.length; i++) {
    const v = Number(values[i]);
    if (!Number.isInteger(v) || v < 0 || v > 0x7fffffff) {
      throw new UserError(`${file}: label at index ${i} is ${v}; labels must be non-negative integer class indices`);
    }
    out[i] = v;
  }
  return out;
}

const DESCR_OF: Partial<Record<DType, string>> = {
  float32: '<f4', float64: '<f8', uint8: '|u1', int8: '|i1', uint16: '<u2', int16: '<i2', uint32: '<u4', int32: '<i4', int64: '<i8',
};

/** Encode a C-order .npy (format 1.0); `descr` overrides the numpy type string (tests use it for bad types). */
export function encodeNpy(data: TypedArray, dtype: DType, shape: number[], descr?: string): Uint8Array {
  const d = descr ?? DESCR_OF[dtype];
  if (!d) throw new Error(`cannot encode ${dtype} as .npy`);
  let header = `{'descr': '${d}', 'fortran_order': False, 'shape': (${shape.join(', ')}${shape.length === 1 ? ',' : ''}), }`;
  header += ' '.repeat((64 - ((10 + header.length + 1) % 64)) % 64) + '\n';
  const out = new Uint8Array(10 + header.length + data.byteLength);
  out.set(MAGIC, 0);
  out[6] = 1;
  new DataView(out.buffer).setUint16(8, header.length, true);
  for (let i = 0; i < header.length; i++) out[10 + i] = header.charCodeAt(i);
  out.set(new Uint8Array(data.buffer, data.byteOffset, data.byteLength), 10 + header.length);
  return out;
}
