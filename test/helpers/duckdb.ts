/** One in-memory DuckDB per test process, for checking that other tools read our files. */
import { DuckDBInstance, type DuckDBConnection } from '@duckdb/node-api';

let conn: Promise<DuckDBConnection> | undefined;

function connection(): Promise<DuckDBConnection> {
  conn ??= DuckDBInstance.create(':memory:').then((db) => db.connect());
  return conn;
}

/** Rows of a query as arrays of JS values (BIGINT -> bigint, LIST -> DuckDBListValue, ...). */
export async function duckQuery(sql: string): Promise<unknown[][]> {
  const reader = await (await connection()).runAndReadAll(sql);
  return reader.getRows() as unknown[][];
}

/** Rows as JSON-friendly values (lists become arrays, BIGINT stays bigint). */
export async function duckQueryJs(sql: string): Promise<unknown[][]> {
  const reader = await (await connection()).runAndReadAll(sql);
  return reader.getRowsJS() as unknown[][];
}

/** SQL string literal for a file path. */
export function sqlPath(p: string): string {
  return `'${p.replace(/'/g, "''")}'`;
}

export async function closeDuck(): Promise<void> {
  if (!conn) return;
  const c = await conn;
  conn = undefined;
  c.closeSync();
}
