/** parquetjs-lite has no type declarations; this is the small typed surface tests and benches use. */
import { createRequire } from 'node:module';

export interface ParquetjsWriter {
  appendRow(row: Record<string, unknown>): Promise<void>;
  setMetadata(key: string, value: string): void;
  setRowGroupSize(rows: number): void;
  close(): Promise<void>;
}
export interface ParquetjsReader {
  getCursor(columns?: string[]): { next(): Promise<Record<string, unknown> | null> };
  getRowCount(): number | bigint;
  close(): Promise<void>;
}
interface ParquetjsModule {
  ParquetSchema: new (schema: Record<string, unknown>) => object;
  ParquetWriter: { openFile(schema: object, file: string, opts?: Record<string, unknown>): Promise<ParquetjsWriter> };
  ParquetReader: { openFile(file: string): Promise<ParquetjsReader> };
}

export const parquetjs = createRequire(import.meta.url)('parquetjs-lite') as ParquetjsModule;

export const PARQUETJS_VERSION = (createRequire(import.meta.url)('parquetjs-lite/package.json') as { version: string }).version;
