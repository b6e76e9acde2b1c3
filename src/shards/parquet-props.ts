/**
 * Parquet writer settings for shards (parquet-wasm). The choices, measured on random float32 logits
 * (bench/parquet-libs.ts has the numbers):
 *  - dictionary encoding off: on float data it only inflates the file and costs time;
 *  - zstd: BYTE_STREAM_SPLIT on the float list values, which makes files ~8% smaller and encoding
 *    faster (zstd then sees four streams of similar bytes instead of interleaved mantissas);
 *  - `row` DELTA_BINARY_PACKED (consecutive ids shrink to almost nothing) with chunk statistics, so
 *    readers can skip row groups by row id; no statistics on the logits, they are never filtered on.
 *
 * parquet-wasm 0.8.0 per-column options only reach top-level columns: a nested leaf such as
 * `logits.list.item` cannot be named (the name is taken as one path segment). List columns therefore
 * get the file-wide encoding, and BYTE_STREAM_SPLIT is only used when every list column holds
 * float32/float64, because DuckDB (1.5) refuses BYTE_STREAM_SPLIT on integer and float16 columns.
 */
import type * as PW from 'parquet-wasm';
import { DTYPE_BYTES } from '../util/dtype.js';
import { COL_LABEL, COL_POSITION, COL_ROW, type Compression, type ShardColumns } from './format.js';
import { parquetWasm } from './parquet-wasm.js';

/** One row group up to this size; above it, row groups of about SPLIT_ROW_GROUP_BYTES. */
export const SINGLE_ROW_GROUP_BYTES = 64 << 20;
export const SPLIT_ROW_GROUP_BYTES = 32 << 20;

export interface ParquetLayout {
  byteStreamSplit: boolean;
  rowGroupRows: number;
}

export function parquetLayout(cols: ShardColumns, compression: Compression): ParquetLayout {
  // topk_indices is a list of int32: no file-wide BYTE_STREAM_SPLIT for top-k shards.
  const floatLists = cols.logitsDtype === 'float32' && !cols.topkIndices && (!cols.input || cols.inputDtype === 'float32' || cols.inputDtype === 'float64');
  const rowBytes = 8 + (cols.label ? 4 : 0) + (cols.position ? 4 : 0) + DTYPE_BYTES[cols.logitsDtype] * cols.logitsWidth
    + (cols.topkIndices ? 4 * cols.logitsWidth + 4 : 0)
    + (cols.input ? DTYPE_BYTES[cols.inputDtype!] * cols.inputWidth! : 0);
  const rowGroupRows = cols.rows * rowBytes <= SINGLE_ROW_GROUP_BYTES
    ? Math.max(1, cols.rows)
    : Math.max(1, Math.floor(SPLIT_ROW_GROUP_BYTES / rowBytes));
  return { byteStreamSplit: compression === 'zstd' && floatLists, rowGroupRows };
}

export function parquetWriterProperties(layout: ParquetLayout, compression: Compression, metadata: Map<string, string>): PW.WriterProperties {
  const pw = parquetWasm();
  const codec: Record<Compression, PW.Compression> = { zstd: pw.Compression.ZSTD, snappy: pw.Compression.SNAPPY, none: pw.Compression.UNCOMPRESSED };
  let b = new pw.WriterPropertiesBuilder()
    .setCompression(codec[compression])
    .setDictionaryEnabled(false)
    .setStatisticsEnabled(pw.EnabledStatistics.None)
    .setColumnStatisticsEnabled(COL_ROW, pw.EnabledStatistics.Chunk)
    .setColumnEncoding(COL_ROW, pw.Encoding.DELTA_BINARY_PACKED)
    // position counts up within each example: delta-packed it costs almost nothing
    .setColumnEncoding(COL_POSITION, pw.Encoding.DELTA_BINARY_PACKED)
    .setMaxRowGroupSize(layout.rowGroupRows)
    .setKeyValueMetadata(metadata);
  if (layout.byteStreamSplit) {
    // File-wide, to reach the nested float leaves; the int32 label is pinned back to PLAIN.
    b = b.setEncoding(pw.Encoding.BYTE_STREAM_SPLIT).setColumnEncoding(COL_LABEL, pw.Encoding.PLAIN);
  }
  return b.build();
}
