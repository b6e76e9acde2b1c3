import * as fs from 'node:fs/promises';
import { type Table, type Vector, tableFromIPC, Type } from 'apache-arrow';
import { type DType, type TypedArray, concatTyped } from '../util/dtype.js';
import { UserError, describeFsError } from '../util/errors.js';
import { parquetWasm } from '../shards/parquet-wasm.js';
import { tableFromIpcBytes } from '../util/arrow-ipc.js';
import { inMemoryDataset } from './memory.js';
import { toLabels } from './npy.js';
import type { Dataset } from './types.js';

/** Parquet or Arrow IPC (file or stream) -> Arrow table. The whole file is decoded. */
export async function readTableFile(file: string, columns?: string[]): Promise<Table> {
  let bytes: Uint8Array;
  try {
    bytes = new Uint8Array(await fs.readFile(file));
  } catch (err) {
    throw describeFsError(err, file, 'read the data') ?? err;
  }
  const isParquet = bytes.length >= 8 && String.fromCharCode(...bytes.subarray(0, 4)) === 'PAR1';
  try {
    if (isParquet) {
      const wasmTable = parquetWasm().readParquet(bytes, columns ? { columns } : undefined);
      return tableFromIPC(wasmTable.intoIPCStream());
    }
    return tableFromIpcBytes(bytes);
  } catch (err) {
    const what = isParquet ? 'Parquet' : 'Arrow IPC';
    throw new UserError(`${file}: cannot read as ${what} (${String((err as Error).message ?? err).split('\n')[0]}); expected a Parquet or Arrow IPC file`);
  }
}

function arrowDType(typeId: Type, bitWidth: number | undefined, precision: number | undefined, file: string, column: string): DType {
  switch (typeId) {
    case Type.Float: return precision === 1 ? 'float32' : precision === 2 ? 'float64' : fail();
    case Type.Int:
      switch (bitWidth) {
        case 8: return 'uint8';
        case 16: return 'int16';
        case 32: return 'int32';
        case 64: return 'int64';
      }
  }
  return fail();
  function fail(): never {
    throw new UserError(`${file}: column '${column}' holds ${Type[typeId]} values; expected lists of int or float numbers`);
  }
}

/**
 * A list or fixed-size-list column of numbers -> one contiguous typed array and the row width.
 * Rows must all have the same length and no nulls, else inputs and rows could not stay aligned.
 */
export function flattenListColumn(vector: Vector, column: string, file: string): { values: TypedArray; width: number; dtype: DType } {
  const typeId = vector.type.typeId as Type;
  if (typeId !== Type.List && typeId !== Type.FixedSizeList) {
    throw new UserError(`${file}: column '${column}' is ${String(vector.type)}, expected a list of numbers per row`);
  }
  if (vector.nullCount > 0) throw new UserError(`${file}: column '${column}' has ${vector.nullCount} null rows; fill or drop them first`);
  const rows = vector.length;
  const parts: TypedArray[] = [];
  let width = -1;
  let dtype: DType | undefined;
  for (const data of vector.data) {
    const child = data.children[0];
    const childType = child.type as { typeId: Type; bitWidth?: number; isSigned?: boolean; precision?: number };
    const dt = arrowDType(childType.typeId, childType.bitWidth, childType.precision, file, column);
    const resolved: DType = dt === 'uint8' && childType.isSigned ? 'int8' : dt === 'int16' && !childType.isSigned ? 'uint16' : dt === 'int32' && !childType.isSigned ? 'uint32' : dt;
    if (dtype && dtype !== resolved) throw new UserError(`${file}: column '${column}' changes element type between batches`);
    dtype = resolved;
    if (child.nullCount > 0) throw new UserError(`${file}: column '${column}' has null elements inside its lists`);
    let start: number;
    let end: number;
    if (typeId === Type.FixedSizeList) {
      const size = (data.type as { listSize: number }).listSize;
      if (width >= 0 && width !== size) throw new UserError(`${file}: column '${column}' rows have different lengths`);
      width = size;
      start = data.offset * size;
      end = (data.offset + data.length) * size;
    } else {
      const offsets = data.valueOffsets as Int32Array;
      for (let i = 0; i < data.length; i++) {
        const len = offsets[data.offset + i + 1] - offsets[data.offset + i];
        if (width < 0) width = len;
        else if (len !== width) {
          throw new UserError(`${file}: column '${column}' rows have different lengths (${width} and ${len}); every example must have the same size`);
        }
      }
      start = offsets[data.offset];
      end = offsets[data.offset + data.length];
    }
    const values = child.values as TypedArray;
    parts.push(values.subarray(child.offset + start, child.offset + end) as TypedArray);
  }
  if (rows === 0 || dtype === undefined) throw new UserError(`${file}: column '${column}' is empty`);
  const values = concatTyped(parts);
  // A damaged file can declare more rows than its value buffer holds; Arrow clamps the views silently.
  if (values.length !== rows * width) {
    throw new UserError(`${file}: column '${column}' holds ${values.length} values for ${rows} rows of ${width}; the file is damaged`);
  }
  return { values, width, dtype };
}

function requireColumn(table: Table, column: string, file: string): Vector {
  const vector = table.getChild(column);
  if (!vector) {
    const names = table.schema.fields.map((f) => f.name).join(', ');
    throw new UserError(`${file}: no column '${column}'; columns are: ${names}`);
  }
  return vector;
}

export async function openTable(file: string, inputColumn: string | undefined, format: 'parquet' | 'arrow'): Promise<Dataset> {
  if (!inputColumn) throw new UserError(`--input-column is required for ${format} data (${file}): name the list column that holds each example`);
  const table = await readTableFile(file, format === 'parquet' ? [inputColumn] : undefined);
  const { values, width, dtype } = flattenListColumn(requireColumn(table, inputColumn, file), inputColumn, file);
  return inMemoryDataset(format, file, inputColumn, [table.numRows, width], dtype, values);
}

export async function readLabelColumn(file: string, column: string): Promise<Int32Array> {
  const table = await readTableFile(file, file.endsWith('.parquet') ? [column] : undefined);
  const vector = requireColumn(table, column, file);
  const typeId = vector.type.typeId as Type;
  if (typeId !== Type.Int) throw new UserError(`${file}: label column '${column}' is ${String(vector.type)}; expected integers`);
  if (vector.nullCount > 0) throw new UserError(`${file}: label column '${column}' has ${vector.nullCount} nulls`);
  return toLabels(vector.toArray() as TypedArray, `${file} column '${column}'`);
}
