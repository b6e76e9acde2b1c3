import { createReadStream } from 'node:fs';
import * as fs from 'node:fs/promises';
import { createGunzip } from 'node:zlib';
import type { DType, TypedArray } from '../util/dtype.js';
import { DTYPE_BYTES, allocTyped, product } from '../util/dtype.js';
import { UserError, describeFsError } from '../util/errors.js';
import { inMemoryDataset } from './memory.js';
import type { Dataset } from './types.js';

/** IDX type codes (LeCun's MNIST format); multi-byte values are big-endian. */
const IDX_TYPES: Record<number, DType> = { 0x08: 'uint8', 0x09: 'int8', 0x0b: 'int16', 0x0c: 'int32', 0x0d: 'float32', 0x0e: 'float64' };

/** gzip cannot expand more than ~1032:1; a header claiming more is lying. */
const MAX_GZIP_RATIO = 1100;

export interface IdxHeader {
  dtype: DType;
  shape: number[];
  dataOffset: number;
  dataBytes: number;
}

export function parseIdxHeader(head: Uint8Array, file: string): IdxHeader {
  if (head.length < 4 || head[0] !== 0 || head[1] !== 0) {
    throw new UserError(`${file}: not an IDX file (bad magic); expected MNIST-style IDX, plain or .gz`);
  }
  const dtype = IDX_TYPES[head[2]];
  if (!dtype) throw new UserError(`${file}: unsupported IDX element type 0x${head[2].toString(16)}`);
  const ndim = head[3];
  if (ndim < 1) throw new UserError(`${file}: IDX file declares no dimensions`);
  const dataOffset = 4 + 4 * ndim;
  if (head.length < dataOffset) throw new UserError(`${file}: truncated IDX header`);
  const view = new DataView(head.buffer, head.byteOffset, head.byteLength);
  const shape: number[] = [];
  for (let i = 0; i < ndim; i++) shape.push(view.getUint32(4 + 4 * i, false));
  const dataBytes = product(shape) * DTYPE_BYTES[dtype];
  if (!Number.isSafeInteger(dataBytes)) throw new UserError(`${file}: IDX header declares an impossible size`);
  return { dtype, shape, dataOffset, dataBytes };
}

function isGzip(file: string, head: Uint8Array): boolean {
  return (head[0] === 0x1f && head[1] === 0x8b) || file.endsWith('.gz');
}

/**
 * Read a whole IDX file (plain or gzip) into a native-endian typed array. The declared size is checked
 * against what the file can hold before anything that large is allocated.
 */
export async function readIdx(file: string): Promise<{ header: IdxHeader; data: TypedArray }> {
  let stat;
  try {
    stat = await fs.stat(file);
  } catch (err) {
    throw describeFsError(err, file, 'read the data') ?? err;
  }
  if (stat.isDirectory()) throw new UserError(`${file}: is a directory, expected an IDX file`);
  const fh = await fs.open(file, 'r');
  const probe = new Uint8Array(2);
  await fh.read(probe, 0, 2, 0);
  await fh.close();
  const gz = isGzip(file, probe);
  const raw = gz ? await gunzipBounded(file, stat.size) : new Uint8Array(await fs.readFile(file));
  const header = parseIdxHeader(raw.subarray(0, 4 + 4 * 255), file);
  const available = raw.length - header.dataOffset;
  if (available < header.dataBytes) {
    throw new UserError(`${file}: truncated IDX file: header declares shape [${header.shape.join(', ')}] (${header.dataBytes} bytes of data) but only ${Math.max(0, available)} are present`);
  }
  const body = raw.subarray(header.dataOffset, header.dataOffset + header.dataBytes);
  return { header, data: fromBigEndian(header.dtype, body) };
}

/** Inflate a gzip file, refusing before allocation when the IDX header declares more than gzip could hold. */
async function gunzipBounded(file: string, compressedSize: number): Promise<Uint8Array> {
  const limit = compressedSize * MAX_GZIP_RATIO + 4096;
  const chunks: Buffer[] = [];
  let total = 0;
  let expected = -1;
  const stream = createReadStream(file).pipe(createGunzip());
  try {
    for await (const chunk of stream) {
      chunks.push(chunk as Buffer);
      total += (chunk as Buffer).length;
      if (expected < 0 && total >= 4) {
        const head = Buffer.concat(chunks);
        const ndim = head[3];
        if (head.length >= 4 + 4 * ndim) {
          const h = parseIdxHeader(head, file);
          expected = h.dataOffset + h.dataBytes;
          if (expected > limit) {
            throw new UserError(`${file}: IDX header declares ${h.dataBytes} bytes, more than a ${compressedSize}-byte gzip file can hold; the file is corrupt`);
          }
        }
      }
      if (expected >= 0 && total > expected + (1 << 20)) break; // trailing garbage: ignore, stop reading
    }
  } catch (err) {
    stream.destroy();
    if (err instanceof UserError) throw err;
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'Z_BUF_ERROR' || code === 'Z_DATA_ERROR' || code === 'Z_NEED_DICT') {
      throw new UserError(`${file}: corrupt or truncated gzip data (${(err as Error).message}); re-download or regenerate the file`);
    }
    throw describeFsError(err, file, 'read the data') ?? err;
  }
  return new Uint8Array(Buffer.concat(chunks, total));
}

function fromBigEndian(dtype: DType, body: Uint8Array): TypedArray {
  const size = DTYPE_BYTES[dtype];
  const n = body.length / size;
  const out = allocTyped(dtype, n);
  if (size === 1) {
    (out as Uint8Array).set(body);
    return out;
  }
  const view = new DataView(body.buffer, body.byteOffset, body.byteLength);
  for (let i = 0; i < n; i++) {
    const o = i * size;
    switch (dtype) {
      case 'int16': (out as Int16Array)[i] = view.getInt16(o, false); break;
      case 'int32': (out as Int32Array)[i] = view.getInt32(o, false); break;
      case 'float32': (out as Float32Array)[i] = view.getFloat32(o, false); break;
      case 'float64': (out as Float64Array)[i] = view.getFloat64(o, false); break;
      default: throw new Error(`unreachable IDX dtype ${dtype}`);
    }
  }
  return out;
}

export async function openIdx(file: string): Promise<Dataset> {
  const { header, data } = await readIdx(file);
  return inMemoryDataset('idx', file, null, header.shape, header.dtype, data);
}
