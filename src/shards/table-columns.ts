/**
 * Arrow table -> ShardColumns. Accepts what kdcache writes (FixedSizeList) and what other writers
 * produce for the same data (Parquet LIST read back as List, with any group naming; nullable columns
 * without nulls; int32 row ids), and returns flat typed arrays: one chunk is returned as a view, more
 * chunks are concatenated once.
 */
import * as arrow from 'apache-arrow';
import { UserError } from '../util/errors.js';
import { allocTyped, concatTyped, type DType, type TypedArray } from '../util/dtype.js';
import { dtypeOfArrow } from './arrow-types.js';
import {
  COL_INPUT, COL_LABEL, COL_LOGITS, COL_LOGSUMEXP, COL_POSITION, COL_ROW, COL_SAMPLE_COUNTS, COL_SAMPLE_INDICES, COL_SAMPLE_LOGITS,
  COL_TOPK_INDICES, COL_TOPK_LOGITS, type ShardColumns,
} from './format.js';

const NOT_A_SHARD = 'it is not a kdcache shard or it is damaged: regenerate it with precompute-logits';

export function columnsFromTable(table: arrow.Table, file: string): ShardColumns {
  const fail = (msg: string): never => {
    throw new UserError(`${file}: ${msg}; ${NOT_A_SHARD}`);
  };
  const column = (name: string, required: boolean): Column | undefined => {
    const vec = table.getChild(name);
    if (!vec) return required ? fail(`no column "${name}" (columns: ${table.schema.fields.map((f) => f.name).join(', ') || 'none'})`) : undefined;
    for (const d of vec.data) if (d.nullCount > 0) fail(`column "${name}" has null values`);
    return { type: vec.type, chunks: vec.data };
  };
  const rows = table.numRows;
  const row = toBigInt64(integers(column(COL_ROW, true)!.chunks, COL_ROW, fail));
  const labelData = column(COL_LABEL, false);
  const label = labelData && toInt32(integers(labelData.chunks, COL_LABEL, fail), fail);

  const positionData = column(COL_POSITION, false);
  const position = positionData && toInt32(integers(positionData.chunks, COL_POSITION, fail), fail, COL_POSITION);

  // Top-k and sampled shards have no dense logits column; their values live in topk_/sample_logits.
  const sampled = table.getChild(COL_SAMPLE_INDICES) !== null;
  const sparse = sampled || table.getChild(COL_TOPK_INDICES) !== null;
  const indicesName = sampled ? COL_SAMPLE_INDICES : COL_TOPK_INDICES;
  const valuesName = sampled ? COL_SAMPLE_LOGITS : sparse ? COL_TOPK_LOGITS : COL_LOGITS;
  const logits = flattenList(column(valuesName, true)!, valuesName, fail);
  let logitsValues: Float32Array | Uint16Array;
  let logitsDtype: 'float32' | 'float16';
  if (logits.dtype === 'float32' || logits.dtype === 'float16') {
    logitsValues = logits.values as Float32Array | Uint16Array;
    logitsDtype = logits.dtype;
  } else if (logits.dtype === 'float64') {
    // Other tools often write doubles; training works in float32 anyway.
    logitsValues = Float32Array.from(logits.values as Float64Array);
    logitsDtype = 'float32';
  } else {
    return fail(`column "${valuesName}" holds ${logits.dtype} values, expected float32 or float16`);
  }
  const cols: ShardColumns = { rows, row, logits: logitsValues, logitsWidth: logits.width, logitsDtype };
  if (sparse) {
    cols.topkIndices = intList(column(indicesName, true)!, indicesName, logits.width, valuesName, fail);
    if (sampled) cols.sampleCounts = intList(column(COL_SAMPLE_COUNTS, true)!, COL_SAMPLE_COUNTS, logits.width, valuesName, fail);
    cols.logsumexp = floats(column(COL_LOGSUMEXP, true)!.chunks, fail);
  }
  if (position) cols.position = position;
  if (label) cols.label = label;
  const inputData = column(COL_INPUT, false);
  if (inputData) {
    const input = flattenList(inputData, COL_INPUT, fail);
    cols.input = input.values;
    cols.inputWidth = input.width;
    cols.inputDtype = input.dtype;
  }
  checkLengths(cols, fail);
  return cols;
}

/** Arrow clamps views to the buffers a file really has; a damaged file declaring more rows shows here. */
function checkLengths(c: ShardColumns, fail: Fail): void {
  const want: [string, number, number][] = [
    [COL_ROW, c.row.length, c.rows],
    [COL_LOGITS, c.logits.length, c.rows * c.logitsWidth],
  ];
  if (c.label) want.push([COL_LABEL, c.label.length, c.rows]);
  if (c.position) want.push([COL_POSITION, c.position.length, c.rows]);
  if (c.topkIndices) want.push([COL_TOPK_INDICES, c.topkIndices.length, c.rows * c.logitsWidth]);
  if (c.logsumexp) want.push([COL_LOGSUMEXP, c.logsumexp.length, c.rows]);
  if (c.input) want.push([COL_INPUT, c.input.length, c.rows * c.inputWidth!]);
  for (const [name, got, expected] of want) {
    if (got !== expected) fail(`column "${name}" holds ${got} values, ${c.rows} rows need ${expected}`);
  }
}

type Fail = (msg: string) => never;
interface Column {
  type: arrow.DataType;
  chunks: readonly arrow.Data[];
}

/** The values of an integer column as one array (a view when there is one chunk). */
function integers(chunks: readonly arrow.Data[], name: string, fail: Fail): TypedArray[] {
  return chunks.map((d) => {
    if (!arrow.DataType.isInt(d.type)) fail(`column "${name}" has type ${d.type}, expected integers`);
    return (d.values as TypedArray).subarray(0, d.length);
  });
}

// Outputs are sized by the values present, never by the row count a (possibly damaged) file declares;
// checkLengths then compares the two.
const total = (parts: TypedArray[]) => parts.reduce((n, p) => n + p.length, 0);

function toBigInt64(parts: TypedArray[]): BigInt64Array {
  if (parts.length === 1 && parts[0] instanceof BigInt64Array) return parts[0];
  const out = new BigInt64Array(total(parts));
  let at = 0;
  for (const p of parts) {
    if (p instanceof BigInt64Array) out.set(p, at);
    else for (let i = 0; i < p.length; i++) out[at + i] = BigInt(p[i]);
    at += p.length;
  }
  return out;
}

/** A list of integers per row with `width` items, as one Int32Array. */
function intList(col: Column, name: string, width: number, valuesName: string, fail: Fail): Int32Array {
  const list = flattenList(col, name, fail);
  if (list.width !== width) fail(`column "${name}" has ${list.width} items per row, "${valuesName}" ${width}`);
  if (!['int32', 'int64', 'int16', 'uint16', 'uint8', 'int8'].includes(list.dtype)) fail(`column "${name}" holds ${list.dtype} values, expected int32`);
  return list.values instanceof Int32Array ? list.values : Int32Array.from(list.values as ArrayLike<number>, Number);
}

/** A float column (float32, or float64 from other writers) as one Float32Array. */
function floats(chunks: readonly arrow.Data[], fail: Fail): Float32Array {
  const parts = chunks.map((d) => {
    if (!arrow.DataType.isFloat(d.type) || (d.type as arrow.Float).precision === arrow.Precision.HALF) fail(`column "${COL_LOGSUMEXP}" has type ${d.type}, expected float32`);
    return (d.values as Float32Array | Float64Array).subarray(0, d.length);
  });
  if (parts.length === 1 && parts[0] instanceof Float32Array) return parts[0];
  const out = new Float32Array(total(parts));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

function toInt32(parts: TypedArray[], fail: Fail, name = COL_LABEL): Int32Array {
  if (parts.length === 1 && parts[0] instanceof Int32Array) return parts[0];
  const out = new Int32Array(total(parts));
  let at = 0;
  for (const p of parts) {
    for (let i = 0; i < p.length; i++) {
      const v = Number(p[i]);
      if (v !== (v | 0)) fail(`column "${name}" has value ${v}, outside the int32 range`);
      out[at + i] = v;
    }
    at += p.length;
  }
  return out;
}

/** A list column whose rows all have the same length, as one flat row-major array. */
function flattenList({ type, chunks }: Column, name: string, fail: Fail): { values: TypedArray; width: number; dtype: DType } {
  const isList = arrow.DataType.isFixedSizeList(type) || arrow.DataType.isList(type) || arrow.DataType.isLargeList(type);
  if (!isList) return fail(`column "${name}" has type ${type}, expected a list of numbers`);
  const dtype = dtypeOfArrow(type.children[0].type);
  if (!dtype) return fail(`column "${name}" holds ${type.children[0].type} values, expected numbers`);
  let width = arrow.DataType.isFixedSizeList(type) ? type.listSize : -1;
  const parts: TypedArray[] = [];
  let firstRow = 0;
  for (const d of chunks) {
    const t = d.type;
    const child = d.children[0];
    if (child.nullCount > 0) fail(`column "${name}" has null list elements`);
    let start: number;
    let end: number;
    if (arrow.DataType.isFixedSizeList(t)) {
      const size = (t as arrow.FixedSizeList).listSize;
      if (width >= 0 && width !== size) fail(`column "${name}" has lists of ${width} and of ${size} values`);
      width = size;
      // A FixedSizeList's child is sliced with its parent: its values start at this chunk's first row.
      start = 0;
      end = d.length * size;
    } else {
      // valueOffsets are sliced with the list; they index the (unsliced) child's values.
      const offsets = d.valueOffsets as Int32Array | BigInt64Array;
      start = Number(offsets[0]);
      end = Number(offsets[d.length]);
      for (let i = 0; i < d.length; i++) {
        const n = Number(offsets[i + 1]) - Number(offsets[i]);
        if (width < 0) width = n;
        else if (n !== width) fail(`column "${name}" has rows of ${width} and of ${n} values (row ${firstRow + i}); every row must have the same length`);
      }
    }
    parts.push((child.values as TypedArray).subarray(start, end));
    firstRow += d.length;
  }
  return { values: parts.length === 0 ? allocTyped(dtype, 0) : concatTyped(parts), width: Math.max(width, 0), dtype };
}

