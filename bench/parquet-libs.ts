/**
 * Parquet/Arrow libraries for logit shards, measured in one run: write and read throughput (MB/s of
 * logits) and file size for random float32 logits plus an int64 row id, 60,000 x 10 and 20,000 x 1000.
 *
 *   write = build from typed arrays + encode + write the file
 *   read  = read the file + decode into one Float32Array of logits (and the row ids); kdcache's own
 *           shards are read by its page reader (src/shards/parquet-pages.ts) and, for comparison, by
 *           parquet-wasm
 *
 * Every file is read back bit-exactly by its own reader, and every Parquet file is read by DuckDB
 * (sampled rows exact, all rows counted, list lengths checked). Best of N runs; parquetjs-lite is run
 * once on fewer rows because it is ~100x slower. Results: bench/results/parquet-libs.json.
 *
 *   npx tsc -p . && node dist/bench/parquet-libs.js
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as arrow from 'apache-arrow';
import { parquetRead } from 'hyparquet';
import { parquetWriteBuffer } from 'hyparquet-writer';
import * as pw from 'parquet-wasm';
import { shardTable } from '../src/shards/arrow-table.js';
import type { ShardColumns, StorageFormat } from '../src/shards/format.js';
import { parquetLayout, parquetWriterProperties } from '../src/shards/parquet-props.js';
import { decodeShard } from '../src/shards/reader.js';
import { encodeShard, shardMetadata } from '../src/shards/writer.js';
import { closeDuck, duckQueryJs, sqlPath } from '../test/helpers/duckdb.js';
import { parquetjs } from '../test/helpers/parquetjs-lite.js';
import { withParquetWasm } from '../test/helpers/parquet-wasm.js';
import { randomShardColumns } from '../test/helpers/shard-columns.js';
import { makeTempDir, removeDir } from '../test/helpers/tmp.js';
import { machine, ROOT, saveResult, table } from './common.js';

interface Decoded {
  row: BigInt64Array;
  logits: Float32Array;
}

interface Lib {
  name: string;
  ext: 'parquet' | 'arrow';
  /** rows to use for a shape (slow libraries get fewer) */
  rows(shape: Shape): number;
  runs: number;
  write(cols: ShardColumns, file: string): Promise<void> | void;
  read(file: string, width: number): Promise<Decoded> | Decoded;
}

interface Shape {
  rows: number;
  width: number;
}

const META = { config_id: '0'.repeat(64), first_row: 0, shard_index: 0 };

/**
 * kdcache's encoder: its direct Parquet writer (src/shards/parquet-write.ts) or parquet-wasm; read by
 * its own page reader (src/shards/parquet-pages.ts) or by parquet-wasm.
 */
function kdcacheLib(name: string, format: StorageFormat, compression: 'zstd' | 'snappy' | 'none', writer: 'direct' | 'parquet-wasm', reader: 'pages' | 'parquet-wasm'): Lib {
  return {
    name, ext: format, runs: 5, rows: (s) => s.rows,
    write(cols, file) {
      const encode = () => encodeShard(cols, { format, compression, logits_dtype: 'float32' }, META);
      fs.writeFileSync(file, writer === 'parquet-wasm' ? withParquetWasm(encode) : encode());
    },
    read(file) {
      const decode = () => decodeShard(fs.readFileSync(file), format, file) as Decoded;
      return reader === 'parquet-wasm' ? withParquetWasm(decode) : decode();
    },
  };
}

/** kdcache's writer minus BYTE_STREAM_SPLIT: the reference the zstd encoding choice is measured against. */
const zstdPlain: Lib = {
  name: 'apache-arrow + parquet-wasm, ZSTD, PLAIN', ext: 'parquet', runs: 5, rows: (s) => s.rows,
  write(cols, file) {
    const props = parquetWriterProperties({ ...parquetLayout(cols, 'zstd'), byteStreamSplit: false }, 'zstd', shardMetadata(META));
    fs.writeFileSync(file, pw.writeParquet(pw.Table.fromIPCStream(arrow.tableToIPC(shardTable(cols, new Map()), 'stream')), props));
  },
  read: (file) => decodeShard(fs.readFileSync(file), 'parquet', file) as Decoded,
};

const HYPARQUET_SCHEMA = [
  { name: 'root', num_children: 2 },
  { name: 'row', type: 'INT64', repetition_type: 'REQUIRED' },
  { name: 'logits', repetition_type: 'REQUIRED', converted_type: 'LIST', num_children: 1 },
  { name: 'list', repetition_type: 'REPEATED', num_children: 1 },
  { name: 'element', type: 'FLOAT', repetition_type: 'REQUIRED' },
] as const;

const hyparquetLib: Lib = {
  name: 'hyparquet-writer / hyparquet, SNAPPY', ext: 'parquet', runs: 2, rows: (s) => s.rows,
  write(cols, file) {
    // hyparquet-writer takes one JS array per list row: this conversion is part of its cost.
    const lists: number[][] = [];
    for (let r = 0; r < cols.rows; r++) lists.push(Array.from(cols.logits.subarray(r * cols.logitsWidth, (r + 1) * cols.logitsWidth)));
    const buf = parquetWriteBuffer({
      columnData: [{ name: 'row', data: cols.row }, { name: 'logits', data: lists }],
      schema: HYPARQUET_SCHEMA as never, codec: 'SNAPPY', statistics: false, rowGroupSize: 1 << 30,
    });
    fs.writeFileSync(file, new Uint8Array(buf));
  },
  async read(file, width) {
    const bytes = fs.readFileSync(file);
    const buf = bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength);
    let rows: unknown[] = [];
    let lists: number[][] = [];
    await parquetRead({
      file: buf, columns: ['row', 'logits'],
      onChunk: (c) => {
        if (c.columnName === 'row') rows = rows.concat(Array.from(c.columnData as ArrayLike<unknown>));
        else lists = lists.concat(Array.from(c.columnData as ArrayLike<number[]>));
      },
    });
    return flatten(rows, lists, width);
  },
};

const parquetjsLib: Lib = {
  name: 'parquetjs-lite, SNAPPY', ext: 'parquet', runs: 1,
  // ~1-2 MB/s: full size would take minutes per shape.
  rows: (s) => (s.width >= 1000 ? 2_000 : s.rows),
  async write(cols, file) {
    const schema = new parquetjs.ParquetSchema({
      row: { type: 'INT64' },
      logits: { type: 'FLOAT', repeated: true, compression: 'SNAPPY' },
    });
    const w = await parquetjs.ParquetWriter.openFile(schema, file, { useDataPageV2: false });
    w.setRowGroupSize(Math.max(1, Math.floor((8 << 20) / (4 * cols.logitsWidth))));
    for (let r = 0; r < cols.rows; r++) {
      await w.appendRow({ row: cols.row[r], logits: Array.from(cols.logits.subarray(r * cols.logitsWidth, (r + 1) * cols.logitsWidth)) });
    }
    await w.close();
  },
  async read(file, width) {
    const reader = await parquetjs.ParquetReader.openFile(file);
    const cursor = reader.getCursor();
    const rows: unknown[] = [];
    const lists: number[][] = [];
    for (let rec = await cursor.next(); rec; rec = await cursor.next()) {
      rows.push(rec.row);
      lists.push(rec.logits as number[]);
    }
    await reader.close();
    return flatten(rows, lists, width);
  },
};

function flatten(rows: unknown[], lists: number[][], width: number): Decoded {
  const logits = new Float32Array(lists.length * width);
  lists.forEach((l, r) => {
    if (l.length !== width) throw new Error(`row ${r}: ${l.length} values, expected ${width}`);
    logits.set(l, r * width);
  });
  return { row: BigInt64Array.from(rows, (v) => BigInt(v as number | bigint)), logits };
}

const LIBS: Lib[] = [
  parquetjsLib,
  hyparquetLib,
  kdcacheLib('apache-arrow + parquet-wasm, SNAPPY (kdcache --compression snappy)', 'parquet', 'snappy', 'parquet-wasm', 'pages'),
  zstdPlain,
  kdcacheLib('apache-arrow + parquet-wasm, ZSTD, BYTE_STREAM_SPLIT, read by parquet-wasm', 'parquet', 'zstd', 'parquet-wasm', 'parquet-wasm'),
  kdcacheLib('apache-arrow + parquet-wasm, ZSTD, BYTE_STREAM_SPLIT, read by kdcache pages', 'parquet', 'zstd', 'parquet-wasm', 'pages'),
  kdcacheLib('kdcache direct writer, ZSTD, BYTE_STREAM_SPLIT (kdcache default), read by kdcache pages', 'parquet', 'zstd', 'direct', 'pages'),
  kdcacheLib('Arrow IPC file (apache-arrow, uncompressed)', 'arrow', 'none', 'direct', 'pages'),
];

const SHAPES: Shape[] = [{ rows: 60_000, width: 10 }, { rows: 20_000, width: 1000 }];

function bitExact(a: Decoded, b: ShardColumns): boolean {
  const bytes = (x: ArrayBufferView) => Buffer.from(x.buffer, x.byteOffset, x.byteLength);
  return bytes(a.logits).equals(bytes(b.logits)) && bytes(a.row).equals(bytes(b.row));
}

/** DuckDB: row count, list lengths, row id range, and a few rows compared exactly. */
async function duckCheck(file: string, cols: ShardColumns): Promise<string> {
  const w = cols.logitsWidth;
  const [[count, minLen, maxLen, minRow, maxRow]] = await duckQueryJs(
    `select count(*), min(len(logits)), max(len(logits)), min(row), max(row) from read_parquet(${sqlPath(file)})`);
  if (Number(count) !== cols.rows || Number(minLen) !== w || Number(maxLen) !== w || Number(minRow) !== 0 || Number(maxRow) !== cols.rows - 1) {
    return `fail: count ${count}, list lengths ${minLen}..${maxLen}, rows ${minRow}..${maxRow}`;
  }
  const sample = [0, 1, cols.rows >> 1, cols.rows - 1];
  const got = await duckQueryJs(`select row, logits::FLOAT[${w}] from read_parquet(${sqlPath(file)}) where row in (${sample.join(',')}) order by row`);
  for (const [i, r] of sample.entries()) {
    const expected = Array.from(cols.logits.subarray(r * w, (r + 1) * w));
    const [row, logits] = got[i] ?? [];
    if (Number(row) !== r || JSON.stringify(logits) !== JSON.stringify(expected)) return `fail: row ${r} differs`;
  }
  return 'pass';
}

function version(pkg: string): string {
  return (JSON.parse(fs.readFileSync(path.join(ROOT, 'node_modules', pkg, 'package.json'), 'utf8')) as { version: string }).version;
}

async function main(): Promise<void> {
  const dir = makeTempDir('kdcache-bench-');
  const started = performance.now();
  const results: Record<string, unknown>[] = [];
  try {
    for (const shape of SHAPES) {
      const full = randomShardColumns({ rows: shape.rows, width: shape.width, seed: 42 });
      for (const lib of LIBS) {
        const rows = lib.rows(shape);
        const cols = rows === full.rows ? full : { ...full, rows, row: full.row.subarray(0, rows), logits: full.logits.subarray(0, rows * shape.width) };
        const file = path.join(dir, `${shape.width}-${LIBS.indexOf(lib)}.${lib.ext}`);
        const mb = (rows * shape.width * 4) / 1e6;
        let writeMs = Infinity;
        let readMs = Infinity;
        let exact = true;
        for (let run = 0; run < lib.runs; run++) {
          fs.rmSync(file, { force: true });
          let t = performance.now();
          await lib.write(cols, file);
          writeMs = Math.min(writeMs, performance.now() - t);
          t = performance.now();
          const back = await lib.read(file, shape.width);
          readMs = Math.min(readMs, performance.now() - t);
          exact &&= bitExact(back, cols);
        }
        const bytes = fs.statSync(file).size;
        const duckdb = lib.ext === 'parquet' ? await duckCheck(file, cols) : 'n/a (Arrow IPC)';
        const r = {
          library: lib.name, rows, width: shape.width, logits_mb: +mb.toFixed(2), runs: lib.runs,
          write_ms: +writeMs.toFixed(1), read_ms: +readMs.toFixed(1),
          write_mb_s: +(mb / (writeMs / 1000)).toFixed(1), read_mb_s: +(mb / (readMs / 1000)).toFixed(1),
          file_bytes: bytes, bytes_per_row: +(bytes / rows).toFixed(2), size_vs_raw: +(bytes / (rows * (8 + 4 * shape.width))).toFixed(3),
          roundtrip_bit_exact: exact, duckdb,
        };
        results.push(r);
        process.stderr.write(`${shape.rows}x${shape.width} ${lib.name}: write ${r.write_mb_s} MB/s, read ${r.read_mb_s} MB/s, ${bytes} bytes, duckdb ${duckdb}\n`);
        fs.rmSync(file, { force: true });
      }
    }
  } finally {
    await closeDuck();
    removeDir(dir);
  }
  const out = {
    bench: 'parquet-libs',
    date: new Date().toISOString(),
    machine: machine(),
    versions: Object.fromEntries(['apache-arrow', 'parquet-wasm', 'hyparquet', 'hyparquet-writer', 'parquetjs-lite', '@duckdb/node-api'].map((p) => [p, version(p)])),
    notes: [
      'logits are uniform random float32 in [-10, 10): close to incompressible, a worst case for every codec',
      'parquetjs-lite runs once on 2,000 rows for width 1000 (it writes ~1-2 MB/s); all others use the full row counts',
      'MB/s counts logits bytes (rows * width * 4) only; write includes building the library\'s input from typed arrays',
      'kdcache rows use the real encodeShard/decodeShard; 20,000 x 1000 (80 MB) is split into ~32 MB row groups',
    ],
    seconds: +((performance.now() - started) / 1000).toFixed(1),
    results,
  };
  const saved = saveResult('parquet-libs', out);
  const head = ['library', 'rows x width', 'write MB/s', 'read MB/s', 'file MB', 'size/raw', 'exact', 'DuckDB'];
  const body = results.map((r) => [r.library, `${r.rows} x ${r.width}`, r.write_mb_s, r.read_mb_s, ((r.file_bytes as number) / 1e6).toFixed(2), r.size_vs_raw, r.roundtrip_bit_exact ? 'yes' : 'NO', r.duckdb] as (string | number)[]);
  process.stdout.write(`${table([head, ...body])}\n\nparquetjs-lite: 2,000 rows at width 1000 (too slow for 20,000). ${out.seconds} s total. Saved ${saved}\n`);
}

await main();
