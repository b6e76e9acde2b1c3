/**
 * ShardColumns -> Arrow table, shared by the Parquet and Arrow IPC encoders. Buffers are wrapped, not
 * copied: list columns are built straight from the flat typed arrays (per-row arrays would cost more
 * than the whole Parquet encode).
 */
import * as arrow from 'apache-arrow';
import type { DType, TypedArray } from '../util/dtype.js';
import {
  COL_INPUT, COL_LABEL, COL_LOGITS, COL_LOGSUMEXP, COL_POSITION, COL_ROW, COL_SAMPLE_COUNTS, COL_SAMPLE_INDICES, COL_SAMPLE_LOGITS,
  COL_TOPK_INDICES, COL_TOPK_LOGITS, type ShardColumns,
} from './format.js';
import { arrowTypeOf } from './arrow-types.js';

export function shardTable(cols: ShardColumns, metadata: Map<string, string>): arrow.Table {
  checkColumns(cols);
  const fields: arrow.Field[] = [];
  const children: arrow.Data[] = [];
  const add = (name: string, type: arrow.DataType, data: arrow.Data): void => {
    fields.push(new arrow.Field(name, type, false));
    children.push(data);
  };
  add(COL_ROW, new arrow.Int64(), arrow.makeData({ type: new arrow.Int64(), length: cols.rows, data: cols.row }));
  if (cols.position) add(COL_POSITION, new arrow.Int32(), arrow.makeData({ type: new arrow.Int32(), length: cols.rows, data: cols.position }));
  if (cols.label) add(COL_LABEL, new arrow.Int32(), arrow.makeData({ type: new arrow.Int32(), length: cols.rows, data: cols.label }));
  if (cols.topkIndices) {
    const sampled = cols.sampleCounts !== undefined;
    const idx = fixedList('int32', cols.logitsWidth, cols.rows, cols.topkIndices);
    add(sampled ? COL_SAMPLE_INDICES : COL_TOPK_INDICES, idx.type, idx);
    if (sampled) {
      const counts = fixedList('int32', cols.logitsWidth, cols.rows, cols.sampleCounts!);
      add(COL_SAMPLE_COUNTS, counts.type, counts);
    }
    const values = fixedList(cols.logitsDtype, cols.logitsWidth, cols.rows, cols.logits);
    add(sampled ? COL_SAMPLE_LOGITS : COL_TOPK_LOGITS, values.type, values);
    add(COL_LOGSUMEXP, new arrow.Float32(), arrow.makeData({ type: new arrow.Float32(), length: cols.rows, data: cols.logsumexp! }));
  } else {
    const logits = fixedList(cols.logitsDtype, cols.logitsWidth, cols.rows, cols.logits);
    add(COL_LOGITS, logits.type, logits);
  }
  if (cols.input) {
    const input = fixedList(cols.inputDtype!, cols.inputWidth!, cols.rows, cols.input);
    add(COL_INPUT, input.type, input);
  }
  const schema = new arrow.Schema(fields, metadata);
  const struct = arrow.makeData({ type: new arrow.Struct(fields), length: cols.rows, nullCount: 0, children });
  return new arrow.Table([new arrow.RecordBatch(schema, struct)]);
}

function fixedList(dtype: DType, width: number, rows: number, values: TypedArray): arrow.Data<arrow.FixedSizeList> {
  const valueType = arrowTypeOf(dtype);
  const type = new arrow.FixedSizeList(width, new arrow.Field('item', valueType, false));
  const child = arrow.makeData<arrow.Float>({ type: valueType as arrow.Float, length: rows * width, nullCount: 0, data: values as never });
  return arrow.makeData<arrow.FixedSizeList>({ type, length: rows, nullCount: 0, child });
}

// instanceof rather than constructor names, so subclasses such as Buffer are accepted.
const ARRAY_OF: Record<DType, abstract new (...args: never[]) => TypedArray> = {
  float32: Float32Array, float64: Float64Array, float16: Uint16Array, uint8: Uint8Array, int8: Int8Array,
  uint16: Uint16Array, int16: Int16Array, uint32: Uint32Array, int32: Int32Array, int64: BigInt64Array,
};

/** Shape mistakes here are caller bugs, not user errors: plain Error. */
export function checkColumns(cols: ShardColumns): void {
  const bad = (what: string): never => {
    throw new Error(`ShardColumns: ${what}`);
  };
  if (!Number.isSafeInteger(cols.rows) || cols.rows < 0) bad(`rows ${cols.rows}`);
  if (!(cols.row instanceof BigInt64Array) || cols.row.length !== cols.rows) bad(`row must be a BigInt64Array of ${cols.rows}`);
  if (cols.label && (!(cols.label instanceof Int32Array) || cols.label.length !== cols.rows)) bad(`label must be an Int32Array of ${cols.rows}`);
  if (cols.position && (!(cols.position instanceof Int32Array) || cols.position.length !== cols.rows)) bad(`position must be an Int32Array of ${cols.rows}`);
  if (Boolean(cols.topkIndices) !== Boolean(cols.logsumexp)) bad('topkIndices and logsumexp go together');
  if (cols.topkIndices && (!(cols.topkIndices instanceof Int32Array) || cols.topkIndices.length !== cols.rows * cols.logitsWidth)) {
    bad(`topkIndices must be an Int32Array of rows * logitsWidth = ${cols.rows * cols.logitsWidth}`);
  }
  if (cols.sampleCounts && (!cols.topkIndices || !(cols.sampleCounts instanceof Int32Array) || cols.sampleCounts.length !== cols.rows * cols.logitsWidth)) {
    bad(`sampleCounts must be an Int32Array of rows * logitsWidth = ${cols.rows * cols.logitsWidth}, with topkIndices`);
  }
  if (cols.logsumexp && (!(cols.logsumexp instanceof Float32Array) || cols.logsumexp.length !== cols.rows)) bad(`logsumexp must be a Float32Array of ${cols.rows}`);
  if (!Number.isSafeInteger(cols.logitsWidth) || cols.logitsWidth < 1) bad(`logitsWidth ${cols.logitsWidth}`);
  if (!(cols.logits instanceof ARRAY_OF[cols.logitsDtype]) || cols.logits.length !== cols.rows * cols.logitsWidth) {
    bad(`logits must be a ${ARRAY_OF[cols.logitsDtype].name} of rows * logitsWidth = ${cols.rows * cols.logitsWidth}`);
  }
  if (cols.input) {
    const { inputDtype, inputWidth } = cols;
    if (!inputDtype || !(inputDtype in ARRAY_OF)) bad(`inputDtype ${inputDtype}`);
    if (!Number.isSafeInteger(inputWidth) || inputWidth! < 1) bad(`inputWidth ${inputWidth}`);
    if (!(cols.input instanceof ARRAY_OF[inputDtype!]) || cols.input.length !== cols.rows * inputWidth!) {
      bad(`input must be a ${ARRAY_OF[inputDtype!].name} of rows * inputWidth = ${cols.rows * inputWidth!}`);
    }
  }
}
