/** parquet.thrift enum values, as the page reader (parquet-pages.ts) and writer (parquet-write.ts) use them. */

// Type
export const INT32 = 1;
export const INT64 = 2;
export const FLOAT = 4;
export const DOUBLE = 5;
export const FIXED_LEN_BYTE_ARRAY = 7;
// FieldRepetitionType
export const REQUIRED = 0;
export const OPTIONAL = 1;
export const REPEATED = 2;
// ConvertedType
export const CONVERTED_LIST = 3;
export const CONVERTED_UINT_8 = 11;
// Encoding
export const PLAIN = 0;
export const RLE = 3;
export const DELTA_BINARY_PACKED = 5;
export const BYTE_STREAM_SPLIT = 9;
// CompressionCodec
export const UNCOMPRESSED = 0;
export const SNAPPY = 1;
export const ZSTD = 6;
// PageType
export const DATA_PAGE = 0;
export const DATA_PAGE_V2 = 3;
