/**
 * The direct Parquet writer for dense shards against parquet-wasm, which wrote every shard before
 * it: DuckDB, parquet-wasm and kdcache's page reader must see the same table in both files.
 */
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { after, before, describe, test } from 'node:test';
import fc from 'fast-check';
import * as pw from 'parquet-wasm';
import type { ShardColumns } from '../src/shards/format.js';
import { parquetLayout } from '../src/shards/parquet-props.js';
import { zstdAvailable } from '../src/shards/parquet-pages.js';
import { writeDenseParquet } from '../src/shards/parquet-write.js';
import { decodeShard, denseParquetShard } from '../src/shards/reader.js';
import { ThriftReader } from '../src/shards/thrift-compact.js';
import { encodeShard, shardMetadata } from '../src/shards/writer.js';
import type { DType } from '../src/util/dtype.js';
import { closeDuck, duckQueryJs, sqlPath } from './helpers/duckdb.js';
import { withParquetWasm } from './helpers/parquet-wasm.js';
import { assertColumnsEqual, randomShardColumns } from './helpers/shard-columns.js';
import { makeTempDir, removeDir } from './helpers/tmp.js';

const META = { config_id: 'c'.repeat(64), first_row: 4000, shard_index: 4 };
const metadata = shardMetadata(META);

let tmp: string;
before(() => {
  tmp = makeTempDir('kdcache-pqwrite-');
});
after(async () => {
  await closeDuck();
  removeDir(tmp);
});

/** The same shard as parquet-wasm writes it. */
function viaParquetWasm(cols: ShardColumns, compression: 'zstd' | 'none'): Uint8Array {
  return withParquetWasm(() => encodeShard(cols, { format: 'parquet', compression, logits_dtype: 'float32' }, META));
}

function readWithParquetWasm(bytes: Uint8Array): ShardColumns {
  return withParquetWasm(() => decodeShard(bytes, 'parquet', 'x'));
}

let files = 0;
function save(bytes: Uint8Array): string {
  const file = path.join(tmp, `s${files++}.parquet`);
  fs.writeFileSync(file, bytes);
  return file;
}

async function duck(file: string, sql: string): Promise<unknown[][]> {
  return duckQueryJs(sql.replaceAll('$F', sqlPath(file)));
}

/** What a reader can tell apart: column types, encodings and codecs per column, key-value metadata. */
async function described(file: string): Promise<unknown> {
  const kv = await duck(file, "SELECT decode(key), decode(value) FROM parquet_kv_metadata($F) WHERE decode(key) != 'ARROW:schema' ORDER BY 1");
  return {
    types: await duck(file, 'SELECT column_name, column_type FROM (DESCRIBE SELECT * FROM read_parquet($F))'),
    chunks: await duck(file, 'SELECT path_in_schema, type, encodings, compression FROM parquet_metadata($F) ORDER BY row_group_id, column_id'),
    schema: await duck(file, 'SELECT name, type, repetition_type, num_children, converted_type, logical_type FROM parquet_schema($F)'),
    kv,
  };
}

function expectedRows(cols: ShardColumns): unknown[][] {
  const out: unknown[][] = [];
  const list = (v: ArrayLike<number>, w: number, r: number) => Array.from({ length: w }, (_, j) => v[r * w + j]);
  for (let r = 0; r < cols.rows; r++) {
    const row: unknown[] = [cols.row[r]];
    if (cols.label) row.push(cols.label[r]);
    row.push(list(cols.logits, cols.logitsWidth, r));
    if (cols.input) row.push(list(cols.input as ArrayLike<number>, cols.inputWidth!, r));
    out.push(row);
  }
  return out;
}

describe('direct Parquet writer for dense shards', () => {
  const compressions = zstdAvailable() ? (['zstd', 'none'] as const) : (['none'] as const);
  for (const compression of compressions) {
    for (const input of [undefined, { dtype: 'float32' as DType, width: 5 }, { dtype: 'uint8' as DType, width: 7 }]) {
      for (const label of [false, true]) {
        const name = `${compression}, ${label ? 'labels' : 'no labels'}, ${input ? `${input.dtype} inputs` : 'no inputs'}`;
        test(`${name}: DuckDB, parquet-wasm and the page reader read the table parquet-wasm wrote`, async () => {
          const cols = randomShardColumns({ rows: 333, width: 10, firstRow: META.first_row, label, input, seed: 3, nonfiniteRows: [4001, 4010] });
          const direct = writeDenseParquet(cols, compression, metadata);
          assert.ok(direct, 'a dense shard is written directly');
          const wasm = viaParquetWasm(cols, compression);
          assertColumnsEqual(readWithParquetWasm(direct), cols);
          assertColumnsEqual((denseParquetShard(direct) ?? assert.fail('the page reader reads it')).cols, cols);
          const [fd, fw] = [save(direct), save(wasm)];
          assert.deepEqual(await described(fd), await described(fw));
          assert.deepEqual(await duck(fd, 'SELECT * FROM read_parquet($F)'), expectedRows(cols));
          // The row ids' chunk statistics let readers skip row groups by id.
          assert.deepEqual(await duck(fd, "SELECT stats_min_value, stats_max_value FROM parquet_metadata($F) WHERE path_in_schema = 'row'"), [['4000', '4332']]);
        });
      }
    }
  }

  test('pages of whole rows up to ~1 MiB and row groups: every reader sees every row', async () => {
    // 1000-wide logits are 4000 bytes a row: 262 rows a page; 45,000 row ids make three pages of at most 20,000.
    const wide = randomShardColumns({ rows: 700, width: 1000, firstRow: 100, label: true, seed: 9 });
    const long = randomShardColumns({ rows: 45_000, width: 1, firstRow: 7, label: true, input: { dtype: 'uint8', width: 3 }, seed: 4 });
    for (const [cols, rowGroupRows] of [[wide, 300], [long, 45_000], [long, 16_000]] as const) {
      const layout = { ...parquetLayout(cols, compressions[0]), rowGroupRows };
      const bytes = writeDenseParquet(cols, compressions[0], metadata, layout) ?? assert.fail('written directly');
      const file = save(bytes);
      const pages = await pw.ParquetFile.fromFile(new Blob([bytes]));
      assert.equal(pages.metadata().numRowGroups(), Math.ceil(cols.rows / rowGroupRows));
      assertColumnsEqual(readWithParquetWasm(bytes), cols);
      assertColumnsEqual((denseParquetShard(bytes) ?? assert.fail('the page reader reads it')).cols, cols);
      assert.deepEqual(await duck(file, 'SELECT * FROM read_parquet($F)'), expectedRows(cols));
      const stats = await duck(file, "SELECT stats_min_value, stats_max_value FROM parquet_metadata($F) WHERE path_in_schema = 'row' ORDER BY row_group_id");
      assert.deepEqual(stats, Array.from({ length: Math.ceil(cols.rows / rowGroupRows) }, (_, g) => [
        String(Number(cols.row[0]) + g * rowGroupRows), String(Number(cols.row[0]) + Math.min(cols.rows, (g + 1) * rowGroupRows) - 1)]));
    }
    // Walk the logits chunk's page headers: several pages, each of whole rows.
    const bytes = writeDenseParquet(wide, 'none', metadata, { ...parquetLayout(wide, 'none'), rowGroupRows: 700 })!;
    const [[start, size]] = await duck(save(bytes), "SELECT data_page_offset, total_compressed_size FROM parquet_metadata($F) WHERE path_in_schema LIKE 'logits%'");
    const values: number[] = [];
    for (let at = Number(start); at < Number(start) + Number(size);) {
      const header = new ThriftReader(bytes, at);
      const page = header.struct();
      values.push((page.get(5) as Map<number, number>).get(1)!);
      at = header.pos + (page.get(3) as number);
    }
    assert.ok(values.length >= 3 && values.every((n) => n % 1000 === 0 && n * 4 <= 1 << 20), `values per page: ${values}`);
    assert.equal(values.reduce((a, b) => a + b), 700 * 1000);
  });

  test('random shapes (fast-check): parquet-wasm and the page reader read back every value', () => {
    fc.assert(fc.property(
      fc.record({
        rows: fc.integer({ min: 1, max: 2500 }), width: fc.integer({ min: 1, max: 300 }), first: fc.nat(1_000_000), label: fc.boolean(),
        input: fc.constantFrom(undefined, 'float32', 'uint8'), inputWidth: fc.integer({ min: 1, max: 40 }), compression: fc.constantFrom(...compressions),
        seed: fc.nat(1000),
      }),
      (o) => {
        const cols = randomShardColumns({
          rows: o.rows, width: o.width, firstRow: o.first, label: o.label, seed: o.seed,
          ...(o.input ? { input: { dtype: o.input as DType, width: o.inputWidth } } : {}),
        });
        // Small pages and row groups too, so page and group boundaries fall anywhere in the rows.
        const layout = { ...parquetLayout(cols, o.compression), rowGroupRows: 1 + (o.seed % o.rows) };
        for (const bytes of [writeDenseParquet(cols, o.compression, metadata), writeDenseParquet(cols, o.compression, metadata, layout)]) {
          assert.ok(bytes);
          assertColumnsEqual(readWithParquetWasm(bytes), cols);
          assertColumnsEqual((denseParquetShard(bytes) ?? assert.fail('the page reader reads it')).cols, cols);
        }
      },
    ), { seed: 11, numRuns: 40 });
  });

  test('one row, one value, and the bytes are the same every time', () => {
    const cols = randomShardColumns({ rows: 1, width: 1, firstRow: 12, seed: 2 });
    const a = writeDenseParquet(cols, compressions[0], metadata)!;
    assertColumnsEqual(readWithParquetWasm(a), cols);
    assert.deepEqual(writeDenseParquet(cols, compressions[0], metadata), a);
  });

  test('shards parquet-wasm writes keep their bytes too (its footer metadata order is random; kdcache sorts it)', () => {
    const hashes = new Set<string>();
    for (let i = 0; i < 30; i++) hashes.add(Buffer.from(viaParquetWasm(randomShardColumns({ rows: 50, width: 8, seed: 5 }), 'zstd')).toString('base64'));
    assert.equal(hashes.size, 1);
  });

  test('layouts it does not cover are left to parquet-wasm', () => {
    const base = { rows: 20, width: 4, firstRow: 0 };
    const topk = randomShardColumns(base);
    topk.topkIndices = new Int32Array(80);
    topk.logsumexp = new Float32Array(20);
    const sequence = randomShardColumns(base);
    sequence.position = new Int32Array(20);
    const gaps = randomShardColumns(base);
    gaps.row[5] = 99n;
    for (const [what, cols, compression] of [
      ['float16 logits', randomShardColumns({ ...base, logitsDtype: 'float16' }), 'zstd'],
      ['int16 inputs', randomShardColumns({ ...base, input: { dtype: 'int16', width: 2 } }), 'zstd'],
      ['top-k', topk, 'zstd'],
      ['sequence positions', sequence, 'zstd'],
      ['row ids with a gap', gaps, 'zstd'],
      ['snappy', randomShardColumns(base), 'snappy'],
    ] as const) {
      assert.equal(writeDenseParquet(cols, compression, metadata), null, what);
    }
  });
});
