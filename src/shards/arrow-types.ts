/** kdcache element types <-> Arrow types. float16 travels as raw Uint16 bits on both sides. */
import * as arrow from 'apache-arrow';
import type { DType } from '../util/dtype.js';

export function arrowTypeOf(dtype: DType): arrow.Int | arrow.Float {
  switch (dtype) {
    case 'float16': return new arrow.Float16();
    case 'float32': return new arrow.Float32();
    case 'float64': return new arrow.Float64();
    case 'int8': return new arrow.Int8();
    case 'uint8': return new arrow.Uint8();
    case 'int16': return new arrow.Int16();
    case 'uint16': return new arrow.Uint16();
    case 'int32': return new arrow.Int32();
    case 'uint32': return new arrow.Uint32();
    case 'int64': return new arrow.Int64();
  }
}

/** The DType of a numeric Arrow type, or undefined for anything kdcache does not store (uint64, ...). */
export function dtypeOfArrow(type: arrow.DataType): DType | undefined {
  if (arrow.DataType.isFloat(type)) {
    const p = (type as arrow.Float).precision;
    return p === arrow.Precision.HALF ? 'float16' : p === arrow.Precision.SINGLE ? 'float32' : 'float64';
  }
  if (arrow.DataType.isInt(type)) {
    const { bitWidth, isSigned } = type as arrow.Int;
    const name = `${isSigned ? 'int' : 'uint'}${bitWidth}`;
    return name === 'uint64' ? undefined : (name as DType);
  }
  return undefined;
}
