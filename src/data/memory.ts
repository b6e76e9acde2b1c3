import type { DType, TypedArray } from '../util/dtype.js';
import { product } from '../util/dtype.js';
import type { Dataset } from './types.js';

export function checkRange(file: string, start: number, end: number, count: number): void {
  if (!(Number.isInteger(start) && Number.isInteger(end) && start >= 0 && end <= count && start <= end)) {
    throw new RangeError(`${file}: rows [${start}, ${end}) outside [0, ${count})`);
  }
}

/** A dataset already decoded into one typed array (gzip IDX, Parquet/Arrow columns): reads are views. */
export function inMemoryDataset(format: Dataset['format'], file: string, inputColumn: string | null, shape: number[], dtype: DType, values: TypedArray): Dataset {
  const [count, ...exampleShape] = shape;
  const width = product(exampleShape);
  return {
    format, files: [file], inputColumn, count, exampleShape, dtype,
    async read(start, end) {
      checkRange(file, start, end, count);
      return values.subarray(start * width, end * width) as TypedArray;
    },
    async close() {},
  };
}
