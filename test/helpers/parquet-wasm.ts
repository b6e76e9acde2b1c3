/** Run `fn` with every Parquet read and write left to parquet-wasm (KDCACHE_PARQUET_PAGES=0). */
export function withParquetWasm<T>(fn: () => T): T {
  process.env.KDCACHE_PARQUET_PAGES = '0';
  try {
    return fn();
  } finally {
    delete process.env.KDCACHE_PARQUET_PAGES;
  }
}
