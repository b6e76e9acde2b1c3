/**
 * parquet-wasm, loaded on first use. Compiling its WebAssembly module costs every thread that loads
 * the shard code ~85 ms, while kdcache's own dense shards are written and read without it
 * (parquet-write.ts, parquet-pages.ts). Its Node build is CommonJS: require() returns the same
 * instance an `import` elsewhere would.
 */
import { createRequire } from 'node:module';
import type * as PW from 'parquet-wasm';

let loaded: typeof PW | undefined;

export function parquetWasm(): typeof PW {
  loaded ??= createRequire(import.meta.url)('parquet-wasm') as typeof PW;
  return loaded;
}
