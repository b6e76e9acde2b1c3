import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { after, before, describe, test } from 'node:test';
import * as arrow from 'apache-arrow';
import * as pw from 'parquet-wasm';
import { COL_LOGITS, type StorageFormat } from '../src/shards/format.js';
import { canonicalJson, configId } from '../src/shards/config-id.js';
import {
  buildManifest, finalizeCache, readManifest, readSidecars, resolveInside, verifyCache,
} from '../src/shards/manifest.js';
import type { Manifest, ShardSidecar } from '../src/shards/manifest-types.js';
import { parquetLayout } from '../src/shards/parquet-props.js';
import { decodeShard, decodeShardWithMeta, denseParquetShard, readShardFile } from '../src/shards/reader.js';
import { shardTable } from '../src/shards/arrow-table.js';
import { zstdAvailable } from '../src/shards/parquet-pages.js';
import { shardMetadata } from '../src/shards/writer.js';
import fc from 'fast-check';
import { encodeShard, writeShard } from '../src/shards/writer.js';
import { type DType, halfToFloat } from '../src/util/dtype.js';
import { UserError } from '../src/util/errors.js';
import { sha256Hex } from '../src/util/fsx.js';
import { fakeConfig, shardColumnsFor, writeFakeCache, type FakeCacheOptions } from './helpers/cache.js';
import { closeDuck, duckQuery, duckQueryJs, sqlPath } from './helpers/duckdb.js';
import { parquetjs } from './helpers/parquetjs-lite.js';
import { withParquetWasm } from './helpers/parquet-wasm.js';
import { assertColumnsEqual, randomShardColumns } from './helpers/shard-columns.js';
import { makeTempDir, removeDir } from './helpers/tmp.js';

const META = { config_id: 'c'.repeat(64), first_row: 0, shard_index: 0 };

function storage(format: StorageFormat, logits_dtype: 'float32' | 'float16' = 'float32', compression: 'zstd' | 'snappy' | 'none' = 'zstd') {
  return { format, compression, logits_dtype };
}

/** Assert `fn` rejects with a one-line UserError whose message matches `pattern`. */
async function rejectsUser(fn: () => Promise<unknown> | unknown, pattern: RegExp): Promise<string> {
  try {
    await fn();
  } catch (err) {
    assert.ok(err instanceof UserError, `expected a UserError, got ${(err as Error)?.stack ?? err}`);
    assert.ok(!err.message.includes('\n'), `error is not one line: ${err.message}`);
    assert.match(err.message, pattern);
    return err.message;
  }
  assert.fail(`expected a UserError matching ${pattern}`);
}

async function parquetEncodings(bytes: Uint8Array): Promise<Record<string, number[]>> {
  const pf = await pw.ParquetFile.fromFile(new Blob([bytes]));
  const out: Record<string, number[]> = {};
  for (const c of pf.metadata().rowGroup(0).columns()) out[c.columnPath().join('.')] = c.encodings();
  return out;
}

let tmp: string;
before(() => {
  tmp = makeTempDir('kdcache-shards-');
});
after(async () => {
  await closeDuck();
  removeDir(tmp);
});

describe('encodeShard/decodeShard round trip', () => {
  const variants: { name: string; label: boolean; input?: { dtype: DType; width: number } }[] = [
    { name: 'logits only', label: false },
    { name: 'label + uint8 input', label: true, input: { dtype: 'uint8', width: 7 } },
    { name: 'label + float32 input', label: true, input: { dtype: 'float32', width: 5 } },
  ];
  for (const format of ['parquet', 'arrow'] as const) {
    for (const logitsDtype of ['float32', 'float16'] as const) {
      for (const v of variants) {
        test(`${format} ${logitsDtype} ${v.name}: bit-exact`, () => {
          const cols = randomShardColumns({ rows: 37, width: 10, firstRow: 370, seed: 3, logitsDtype, label: v.label, input: v.input, nonfiniteRows: [371, 380] });
          const bytes = encodeShard(cols, storage(format, logitsDtype), { config_id: META.config_id, first_row: 370, shard_index: 10 });
          const { cols: back, meta } = decodeShardWithMeta(bytes, format, 'x');
          assertColumnsEqual(back, cols);
          assert.deepEqual(meta, { config_id: META.config_id, first_row: 370, shard_index: 10 });
        });
      }
    }
  }

  for (const format of ['parquet', 'arrow'] as const) {
    test(`${format}: every input dtype round-trips`, () => {
      for (const dtype of ['float32', 'float64', 'float16', 'uint8', 'int8', 'uint16', 'int16', 'uint32', 'int32', 'int64'] as const) {
        const cols = randomShardColumns({ rows: 9, width: 3, seed: 11, input: { dtype, width: 4 } });
        assertColumnsEqual(decodeShard(encodeShard(cols, storage(format), META), format, dtype), cols);
      }
    });

    test(`${format}: decodes from an unaligned buffer`, () => {
      const cols = randomShardColumns({ rows: 20, width: 6, label: true });
      const bytes = encodeShard(cols, storage(format), META);
      const shifted = new Uint8Array(bytes.byteLength + 3);
      shifted.set(bytes, 3);
      assertColumnsEqual(decodeShard(shifted.subarray(3), format, 'x'), cols);
    });

    test(`${format}: same columns give the same bytes, every time`, () => {
      // parquet-wasm's metadata HashMap reorders key-value entries at random: run it often enough to see it.
      const hashes = new Set<string>();
      for (let i = 0; i < 30; i++) hashes.add(sha256Hex(encodeShard(randomShardColumns({ rows: 50, width: 8, seed: 5 }), storage(format), META)));
      assert.equal(hashes.size, 1);
    });
  }

  for (const compression of ['zstd', 'snappy', 'none'] as const) {
    test(`parquet ${compression} round-trips`, () => {
      const cols = randomShardColumns({ rows: 100, width: 16, label: true, input: { dtype: 'uint8', width: 4 } });
      assertColumnsEqual(decodeShard(encodeShard(cols, storage('parquet', 'float32', compression), META), 'parquet', 'x'), cols);
    });
  }

  test('parquet zstd: BYTE_STREAM_SPLIT on float lists only when DuckDB can read it; delta row ids; no dictionary', async () => {
    const BSS = pw.Encoding.BYTE_STREAM_SPLIT;
    const plain = await parquetEncodings(encodeShard(randomShardColumns({ rows: 10, width: 4, label: true }), storage('parquet'), META));
    assert.ok(plain['logits.list.item'].includes(BSS), `logits encodings ${plain['logits.list.item']}`);
    assert.ok(plain.row.includes(pw.Encoding.DELTA_BINARY_PACKED));
    assert.ok(!plain.label.includes(BSS), 'label must not be BYTE_STREAM_SPLIT (DuckDB refuses it on ints)');
    for (const enc of Object.values(plain)) assert.ok(!enc.includes(pw.Encoding.RLE_DICTIONARY));
    const withU8 = await parquetEncodings(encodeShard(randomShardColumns({ rows: 10, width: 4, input: { dtype: 'uint8', width: 2 } }), storage('parquet'), META));
    assert.ok(!withU8['input.list.item'].includes(BSS) && !withU8['logits.list.item'].includes(BSS));
    const half = await parquetEncodings(encodeShard(randomShardColumns({ rows: 10, width: 4, logitsDtype: 'float16' }), storage('parquet', 'float16'), META));
    assert.ok(!half['logits.list.item'].includes(BSS));
    const snappy = await parquetEncodings(encodeShard(randomShardColumns({ rows: 10, width: 4 }), storage('parquet', 'float32', 'snappy'), META));
    assert.ok(!snappy['logits.list.item'].includes(BSS));
  });

  test('parquet: shards over 64 MiB are split into ~32 MiB row groups and decode as one array', async () => {
    const layout = parquetLayout(randomShardColumns({ rows: 2, width: 4096 }), 'zstd');
    assert.equal(layout.rowGroupRows, 2);
    const cols = randomShardColumns({ rows: 4500, width: 4096, seed: 2 }); // 73.7 MB of logits
    assert.equal(parquetLayout(cols, 'none').rowGroupRows, Math.floor((32 << 20) / (8 + 4 * 4096)));
    const bytes = encodeShard(cols, storage('parquet', 'float32', 'none'), META);
    const pf = await pw.ParquetFile.fromFile(new Blob([bytes]));
    assert.equal(pf.metadata().numRowGroups(), 3);
    assertColumnsEqual(decodeShard(bytes, 'parquet', 'big'), cols);
  });

  test('arrow: a file of several record batches decodes into contiguous arrays', () => {
    const a = randomShardColumns({ rows: 5, width: 3, seed: 1, label: true });
    const b = randomShardColumns({ rows: 4, width: 3, seed: 2, firstRow: 5, label: true });
    const ta = arrow.tableFromIPC(encodeShard(a, storage('arrow'), META));
    const tb = arrow.tableFromIPC(encodeShard(b, storage('arrow'), META));
    const both = new arrow.Table(ta.schema, [...ta.batches, ...tb.batches]);
    const cols = decodeShard(arrow.tableToIPC(both, 'file'), 'arrow', 'two');
    assert.equal(cols.rows, 9);
    assert.deepEqual([...cols.row], [0n, 1n, 2n, 3n, 4n, 5n, 6n, 7n, 8n]);
    assert.deepEqual([...cols.logits], [...a.logits, ...b.logits]);
    assert.deepEqual([...cols.label!], [...a.label!, ...b.label!]);
  });

  test('encodeShard refuses columns of the wrong shape (caller bug, not a user error)', () => {
    const cols = randomShardColumns({ rows: 4, width: 3 });
    assert.throws(() => encodeShard({ ...cols, logitsWidth: 4 }, storage('parquet'), META), /logits must be/);
    assert.throws(() => encodeShard(cols, storage('parquet', 'float16'), META), /storage spec says float16/);
  });
});

describe('other readers read our shards', () => {
  test('DuckDB reads a parquet shard: row, label, logits, logits::FLOAT[w], input, metadata', async () => {
    for (const compression of ['zstd', 'snappy', 'none'] as const) {
      const cols = randomShardColumns({ rows: 30, width: 4, firstRow: 60, label: true, input: { dtype: 'uint8', width: 3 } });
      const file = path.join(tmp, `duck-${compression}.parquet`);
      fs.writeFileSync(file, encodeShard(cols, storage('parquet', 'float32', compression), { config_id: META.config_id, first_row: 60, shard_index: 2 }));
      const rows = await duckQueryJs(`select row, label, logits, logits::FLOAT[4] as fixed, input from read_parquet(${sqlPath(file)}) order by row`);
      assert.equal(rows.length, 30);
      rows.forEach(([row, label, logits, fixed, input], i) => {
        assert.equal(row, BigInt(60 + i));
        assert.equal(label, cols.label![i]);
        assert.deepEqual(logits, [...cols.logits.subarray(i * 4, i * 4 + 4)]);
        assert.deepEqual(fixed, logits);
        assert.deepEqual(input, [...cols.input!.subarray(i * 3, i * 3 + 3)]);
      });
      const kv = await duckQuery(`select decode(key), decode(value) from parquet_kv_metadata(${sqlPath(file)}) where decode(key) like 'kdcache.%' order by 1`);
      assert.deepEqual(kv, [['kdcache.config_id', META.config_id], ['kdcache.first_row', '60'], ['kdcache.shard_index', '2']]);
    }
  });

  test('DuckDB reads float16 logits from parquet as FLOAT with the same values', async () => {
    const cols = randomShardColumns({ rows: 25, width: 6, logitsDtype: 'float16', seed: 9 });
    const file = path.join(tmp, 'duck-f16.parquet');
    fs.writeFileSync(file, encodeShard(cols, storage('parquet', 'float16'), META));
    const rows = await duckQueryJs(`select row, logits from read_parquet(${sqlPath(file)}) order by row`);
    rows.forEach(([, logits], i) => {
      assert.deepEqual(logits, [...cols.logits.subarray(i * 6, i * 6 + 6)].map(halfToFloat));
    });
  });

  test('DuckDB reads float32 inputs stored with BYTE_STREAM_SPLIT', async () => {
    const cols = randomShardColumns({ rows: 12, width: 4, input: { dtype: 'float32', width: 5 } });
    const file = path.join(tmp, 'duck-f32in.parquet');
    fs.writeFileSync(file, encodeShard(cols, storage('parquet'), META));
    const rows = await duckQueryJs(`select input from read_parquet(${sqlPath(file)}) order by row`);
    rows.forEach(([input], i) => assert.deepEqual(input, [...cols.input!.subarray(i * 5, i * 5 + 5)]));
  });

  test('apache-arrow tableFromIPC reads an arrow shard: FixedSizeList<Float32>, values, metadata', () => {
    const cols = randomShardColumns({ rows: 11, width: 5, label: true });
    const table = arrow.tableFromIPC(encodeShard(cols, storage('arrow'), META));
    assert.equal(table.numRows, 11);
    const type = table.schema.fields.find((f) => f.name === COL_LOGITS)!.type;
    assert.ok(arrow.DataType.isFixedSizeList(type) && type.listSize === 5 && arrow.DataType.isFloat(type.children[0].type));
    assert.deepEqual([...table.getChild('logits')!.get(3)!], [...cols.logits.subarray(15, 20)]);
    assert.equal(table.getChild('row')!.get(10), 10n);
    assert.equal(table.getChild('label')!.get(4), cols.label![4]);
    assert.equal(table.schema.metadata.get('kdcache.config_id'), META.config_id);
  });
});

describe('decodeShard reads Parquet written by other tools', () => {
  const logitsOf = (i: number): number[] => [i, i + 0.5, -i - 1, 1 / 3].map(Math.fround);

  for (const [kind, schema, rowOf] of [
    ['repeated FLOAT', { row: { type: 'INT64' }, label: { type: 'INT32' }, logits: { type: 'FLOAT', repeated: true } },
      (i: number) => ({ row: i, label: i % 3, logits: logitsOf(i) })],
    ['LIST group (list/element)', { row: { type: 'INT64' }, label: { type: 'INT32' }, logits: { type: 'LIST', fields: { list: { repeated: true, fields: { element: { type: 'FLOAT' } } } } } },
      (i: number) => ({ row: i, label: i % 3, logits: { list: logitsOf(i).map((element) => ({ element })) } })],
  ] as const) {
    test(`parquetjs-lite ${kind}, several row groups`, async () => {
      const file = path.join(tmp, `pjl-${kind.replace(/\W+/g, '-')}.parquet`);
      const w = await parquetjs.ParquetWriter.openFile(new parquetjs.ParquetSchema(schema as Record<string, unknown>), file, { useDataPageV2: false });
      w.setRowGroupSize(4);
      for (let i = 0; i < 10; i++) await w.appendRow((rowOf as (i: number) => Record<string, unknown>)(i));
      await w.close();
      const cols = decodeShard(fs.readFileSync(file), 'parquet', file);
      assert.equal(cols.rows, 10);
      assert.equal(cols.logitsWidth, 4);
      assert.equal(cols.logitsDtype, 'float32');
      assert.deepEqual([...cols.row], Array.from({ length: 10 }, (_, i) => BigInt(i)));
      assert.deepEqual([...cols.label!], Array.from({ length: 10 }, (_, i) => i % 3));
      assert.deepEqual([...cols.logits], Array.from({ length: 10 }, (_, i) => logitsOf(i)).flat());
    });
  }

  test('DuckDB-written parquet (BIGINT, FLOAT[], int32 row ids, doubles) decodes', async () => {
    const file = path.join(tmp, 'duck-written.parquet');
    await duckQuery(`copy (select i::INTEGER as row, [i::FLOAT, -i::FLOAT, 0.25::FLOAT] as logits from range(7) t(i)) to ${sqlPath(file)} (format parquet)`);
    const cols = decodeShard(fs.readFileSync(file), 'parquet', file);
    assert.deepEqual([...cols.row], Array.from({ length: 7 }, (_, i) => BigInt(i)));
    assert.deepEqual([...cols.logits], Array.from({ length: 7 }, (_, i) => [i, -i, 0.25]).flat());
    const dbl = path.join(tmp, 'duck-double.parquet');
    await duckQuery(`copy (select i as row, [i / 4, 1.5]::DOUBLE[] as logits from range(3) t(i)) to ${sqlPath(dbl)} (format parquet)`);
    const d = decodeShard(fs.readFileSync(dbl), 'parquet', dbl);
    assert.equal(d.logitsDtype, 'float32');
    assert.deepEqual([...d.logits], [0, 1.5, 0.25, 1.5, 0.5, 1.5]);
  });

  test('bad files: ragged lists, nulls, missing columns, non-Parquet, arrow stream', async () => {
    const ragged = path.join(tmp, 'ragged.parquet');
    await duckQuery(`copy (select i as row, case when i = 2 then [1.0::FLOAT] else [1.0::FLOAT, 2.0::FLOAT] end as logits from range(4) t(i)) to ${sqlPath(ragged)} (format parquet)`);
    await rejectsUser(() => decodeShard(fs.readFileSync(ragged), 'parquet', 'ragged.parquet'), /^ragged\.parquet: column "logits" has rows of 2 and of 1 values \(row 2\)/);
    const nulls = path.join(tmp, 'nulls.parquet');
    await duckQuery(`copy (select i as row, case when i = 1 then null else [1.0::FLOAT] end as logits from range(3) t(i)) to ${sqlPath(nulls)} (format parquet)`);
    await rejectsUser(() => decodeShard(fs.readFileSync(nulls), 'parquet', 'nulls.parquet'), /^nulls\.parquet: column "logits" has null values/);
    const nullItems = path.join(tmp, 'null-items.parquet');
    await duckQuery(`copy (select i as row, [1.0::FLOAT, null] as logits from range(3) t(i)) to ${sqlPath(nullItems)} (format parquet)`);
    await rejectsUser(() => decodeShard(fs.readFileSync(nullItems), 'parquet', 'n.parquet'), /column "logits" has null list elements/);
    const noLogits = path.join(tmp, 'nologits.parquet');
    await duckQuery(`copy (select i as row from range(3) t(i)) to ${sqlPath(noLogits)} (format parquet)`);
    await rejectsUser(() => decodeShard(fs.readFileSync(noLogits), 'parquet', 'nologits.parquet'), /^nologits\.parquet: no column "logits" \(columns: row\)/);
    await rejectsUser(() => decodeShard(new TextEncoder().encode('hello, not parquet'), 'parquet', 'text.parquet'), /^text\.parquet: not a Parquet file/);
    await rejectsUser(() => decodeShard(new Uint8Array(0), 'arrow', 'empty.arrow'), /^empty\.arrow: not an Arrow IPC file/);
    const table = arrow.tableFromIPC(encodeShard(randomShardColumns({ rows: 2, width: 2 }), storage('arrow'), META));
    await rejectsUser(() => decodeShard(arrow.tableToIPC(table, 'stream'), 'arrow', 's.arrow'), /^s\.arrow: an Arrow IPC stream, expected an Arrow IPC file/);
    const pq = encodeShard(randomShardColumns({ rows: 50, width: 8 }), storage('parquet'), META);
    await rejectsUser(() => decodeShard(pq.subarray(0, pq.length - 100), 'parquet', 't.parquet'), /^t\.parquet: Parquet file is truncated/);
    const damaged = pq.slice();
    damaged.fill(0x55, damaged.length - 300, damaged.length - 8); // the footer, magic kept
    await rejectsUser(() => decodeShard(damaged, 'parquet', 'd.parquet'), /^d\.parquet: cannot decode Parquet data/);
  });
});

describe('parquet-pages: dense shards read without parquet-wasm', () => {
  /** What parquet-wasm (the general reader) makes of the same bytes. */
  const viaParquetWasm = (bytes: Uint8Array) => withParquetWasm(() => decodeShardWithMeta(bytes, 'parquet', 'x'));
  const meta = { config_id: META.config_id, first_row: 530, shard_index: 10 };

  test('every dense layout kdcache writes: read directly, same columns and metadata as parquet-wasm', () => {
    const inputs = [undefined, { dtype: 'uint8', width: 7 }, { dtype: 'float32', width: 5 }, { dtype: 'int16', width: 3 }, { dtype: 'float64', width: 2 }, { dtype: 'int64', width: 2 }, { dtype: 'uint32', width: 1 }] as const;
    let n = 0;
    for (const compression of ['zstd', 'snappy', 'none'] as const) {
      for (const logitsDtype of ['float32', 'float16'] as const) {
        for (const input of inputs) {
          for (const label of [false, true]) {
            const cols = randomShardColumns({ rows: 53, width: 10, firstRow: 530, seed: ++n, logitsDtype, label, input, nonfiniteRows: [531, 540] });
            const bytes = encodeShard(cols, storage('parquet', logitsDtype, compression), meta);
            const fast = denseParquetShard(bytes);
            const what = `${compression} ${logitsDtype} ${input?.dtype ?? 'no'} input ${label ? 'label' : ''}`;
            // zstd pages need the addon and libzstd; without them parquet-wasm reads those files
            if (compression === 'zstd' && !zstdAvailable()) {
              assert.equal(fast, null, what);
              continue;
            }
            assert.ok(fast, `${what}: not read directly`);
            assertColumnsEqual(fast.cols, cols);
            assert.deepEqual(fast, viaParquetWasm(bytes), what);
          }
        }
      }
    }
  });

  test('several row groups and pages, data pages v1 and v2, one-value lists, a single row', () => {
    for (const [rows, width, rowGroupRows, pageBytes] of [[1000, 10, 333, 1024], [40, 1, 7, 64], [1, 3, 1, 1 << 20]] as const) {
      for (const version of [pw.WriterVersion.V1, pw.WriterVersion.V2]) {
        for (const compression of ['zstd', 'snappy', 'none'] as const) {
          // file-wide BYTE_STREAM_SPLIT reaches every list, so with zstd the inputs are floats, as kdcache writes them
          const cols = randomShardColumns({ rows, width, seed: rows + width, label: true, input: { dtype: compression === 'zstd' ? 'float32' : 'uint8', width: 2 } });
          let b = new pw.WriterPropertiesBuilder().setCompression(compression === 'zstd' ? pw.Compression.ZSTD : compression === 'snappy' ? pw.Compression.SNAPPY : pw.Compression.UNCOMPRESSED)
            .setDictionaryEnabled(false).setMaxRowGroupSize(rowGroupRows).setDataPageSizeLimit(pageBytes).setWriteBatchSize(16)
            .setWriterVersion(version).setKeyValueMetadata(shardMetadata(META)).setColumnEncoding('row', pw.Encoding.DELTA_BINARY_PACKED);
          if (compression === 'zstd') b = b.setEncoding(pw.Encoding.BYTE_STREAM_SPLIT).setColumnEncoding('label', pw.Encoding.PLAIN);
          const bytes = pw.writeParquet(pw.Table.fromIPCStream(arrow.tableToIPC(shardTable(cols, new Map()), 'stream')), b.build());
          const fast = denseParquetShard(bytes);
          const what = `${rows} rows x ${width}, row groups of ${rowGroupRows}, pages of ${pageBytes} B, writer ${version}, ${compression}`;
          if (compression === 'zstd' && !zstdAvailable()) continue;
          assert.ok(fast, `${what}: not read directly`);
          assertColumnsEqual(fast.cols, cols);
          assert.deepEqual(fast, viaParquetWasm(bytes), what);
        }
      }
    }
  });

  test('files from other writers: read directly or left to parquet-wasm, never read differently', async () => {
    const files: string[] = [];
    const duck = path.join(tmp, 'pages-duck.parquet');
    await duckQuery(`copy (select i::BIGINT as row, (i % 5)::INTEGER as label, [i::FLOAT, -i::FLOAT, 0.25::FLOAT] as logits from range(3000) t(i)) to ${sqlPath(duck)} (format parquet, row_group_size 1000)`);
    files.push(duck);
    const duckV2 = path.join(tmp, 'pages-duck-v2.parquet');
    await duckQuery(`copy (select i::BIGINT as row, [i::FLOAT, 1.5::FLOAT] as logits from range(500) t(i)) to ${sqlPath(duckV2)} (format parquet, parquet_version v2, compression zstd)`);
    files.push(duckV2);
    for (const useDataPageV2 of [false, true]) {
      const file = path.join(tmp, `pages-pjl-${useDataPageV2}.parquet`);
      const schema = { row: { type: 'INT64' }, label: { type: 'INT32' }, logits: { type: 'LIST', fields: { list: { repeated: true, fields: { element: { type: 'FLOAT' } } } } } };
      const w = await parquetjs.ParquetWriter.openFile(new parquetjs.ParquetSchema(schema as Record<string, unknown>), file, { useDataPageV2 });
      w.setRowGroupSize(4);
      for (let i = 0; i < 10; i++) await w.appendRow({ row: i, label: i % 3, logits: { list: [i, 0.5].map((element) => ({ element })) } });
      await w.close();
      files.push(file);
    }
    let direct = 0;
    for (const file of files) {
      const bytes = fs.readFileSync(file);
      const fast = denseParquetShard(bytes);
      if (!fast) continue;
      direct++;
      assert.deepEqual(fast, viaParquetWasm(bytes), file);
    }
    assert.ok(direct >= 2, `only ${direct} of ${files.length} files were read directly`);
  });

  test('ragged lists, null lists and null items are left to parquet-wasm, which refuses them', async () => {
    const cases: [string, string, RegExp][] = [
      // 6 values over 3 rows: only the repetition levels show the rows differ
      ['ragged', `select i as row, case i when 0 then [1.0::FLOAT] when 1 then [1.0::FLOAT, 2.0, 3.0] else [1.0::FLOAT, 2.0] end as logits from range(3) t(i)`, /has rows of 1 and of 3 values/],
      ['null-list', `select i as row, case when i = 1 then null else [1.0::FLOAT] end as logits from range(3) t(i)`, /has null values/],
      ['null-item', `select i as row, [1.0::FLOAT, null] as logits from range(3) t(i)`, /has null list elements/],
    ];
    for (const [name, sql, message] of cases) {
      const file = path.join(tmp, `pages-${name}.parquet`);
      await duckQuery(`copy (${sql}) to ${sqlPath(file)} (format parquet)`);
      const bytes = fs.readFileSync(file);
      assert.equal(denseParquetShard(bytes), null, name);
      await rejectsUser(() => decodeShard(bytes, 'parquet', name), message);
    }
  });

  test('damaged bytes: never throws, and agrees with parquet-wasm whenever both read the file', () => {
    for (const compression of ['zstd', 'none'] as const) {
      const good = encodeShard(randomShardColumns({ rows: 64, width: 5, label: true, input: { dtype: 'uint8', width: 3 } }), storage('parquet', 'float32', compression), META);
      fc.assert(fc.property(fc.array(fc.tuple(fc.nat(good.length - 1), fc.nat(255)), { minLength: 1, maxLength: 4 }), (edits) => {
        const bytes = good.slice();
        for (const [at, v] of edits) bytes[at] = v;
        const fast = denseParquetShard(bytes);
        if (!fast) return;
        let slow: ReturnType<typeof viaParquetWasm> | null = null;
        try {
          slow = viaParquetWasm(bytes);
        } catch (err) {
          assert.ok(err instanceof UserError, String(err));
        }
        if (slow) assert.deepEqual(fast, slow);
      }), { seed: 7, numRuns: 400 });
    }
  });
});

describe('writeShard', () => {
  test('writes the shard then its sidecar; bytes, sha256 and nonfinite rows match the file', async () => {
    const dir = path.join(tmp, 'write');
    const st = { ...fakeConfig({ rows: 30, width: 4, shardRows: 10 }).storage };
    const cols = randomShardColumns({ rows: 10, width: 4, firstRow: 10, nonfiniteRows: [12, 13, 19] });
    const sc = await writeShard(dir, 1, cols, st, 'e'.repeat(64), 'cuda');
    const file = path.join(dir, 'shards/shard-00001.parquet');
    const bytes = fs.readFileSync(file);
    assert.equal(sc.file, 'shards/shard-00001.parquet');
    assert.equal(sc.bytes, bytes.length);
    assert.equal(sc.sha256, sha256Hex(bytes));
    assert.equal(sc.first_row, 10);
    assert.equal(sc.rows, 10);
    assert.equal(sc.nonfinite_rows, 3);
    assert.deepEqual(sc.nonfinite_examples, [12, 13, 19]);
    assert.equal(sc.execution_provider, 'cuda');
    assert.deepEqual(JSON.parse(fs.readFileSync(path.join(dir, 'shards/shard-00001.json'), 'utf8')), sc);
    assert.deepEqual(fs.readdirSync(path.join(dir, 'shards')).sort(), ['shard-00001.json', 'shard-00001.parquet'], 'no temp files left');
  });

  test('nonfinite examples stop at 100; float16 Inf/NaN are counted', async () => {
    const dir = path.join(tmp, 'write-nf');
    const st = fakeConfig({ rows: 300, width: 3, shardRows: 300, logitsDtype: 'float16', format: 'arrow' }).storage;
    const bad = Array.from({ length: 150 }, (_, i) => i * 2);
    const sc = await writeShard(dir, 0, randomShardColumns({ rows: 300, width: 3, logitsDtype: 'float16', nonfiniteRows: bad }), st, 'e'.repeat(64), 'cpu');
    assert.equal(sc.nonfinite_rows, 150);
    assert.deepEqual(sc.nonfinite_examples, bad.slice(0, 100));
    assert.equal(sc.file, 'shards/shard-00000.arrow');
  });

  test('refuses row ids that do not start at index * shard_rows', async () => {
    const st = fakeConfig({ rows: 30, width: 4, shardRows: 10 }).storage;
    await assert.rejects(writeShard(path.join(tmp, 'w2'), 2, randomShardColumns({ rows: 10, width: 4, firstRow: 10 }), st, 'e'.repeat(64), 'cpu'), /expected 20/);
  });
});

describe('cache: finalize, read, verify', () => {
  const opts: FakeCacheOptions = { rows: 25, width: 4, shardRows: 10, label: true };
  const cacheDir = (name: string) => path.join(tmp, name);

  test('finalize writes a complete manifest only when every shard is present', async () => {
    const dir = cacheDir('finalize');
    const partial = await writeFakeCache(dir, opts, { skip: [1] });
    assert.equal(partial.manifest, null);
    assert.deepEqual(partial.missing, [1]);
    assert.ok(!fs.existsSync(path.join(dir, 'manifest.json')));
    await writeShard(dir, 1, partial.columns[1], partial.config.storage, partial.config.config_id, 'cpu');
    const done = await finalizeCache(dir);
    assert.deepEqual(done.missing, []);
    assert.equal(done.manifest?.complete, true);
    const m = await readManifest(dir);
    assert.deepEqual(m, done.manifest);
    assert.deepEqual(m.shards.map((s) => [s.index, s.first_row, s.rows]), [[0, 0, 10], [1, 10, 10], [2, 20, 5]]);
    assert.equal(m.totals.bytes, m.shards.reduce((n, s) => n + fs.statSync(path.join(dir, s.file)).size, 0));
    assert.deepEqual(m.execution_providers, ['cpu']);
    assert.equal(configId(m), m.config_id);
    for (const rec of m.shards) {
      assertColumnsEqual(await readShardFile(dir, rec, 'parquet', { expectConfigId: m.config_id }), partial.columns[rec.index]);
    }
  });

  test('sidecars: foreign config reported, missing shard file makes a sidecar invalid', async () => {
    const dir = cacheDir('sidecars');
    const c = await writeFakeCache(dir, opts, { finalize: false });
    const other = fakeConfig({ ...opts, variant: 'B' });
    await writeShard(dir, 1, shardColumnsFor(opts, 1), other.storage, other.config_id, 'cpu');
    fs.rmSync(path.join(dir, 'shards/shard-00002.parquet'));
    fs.writeFileSync(path.join(dir, 'shards/shard-00003.json'), '{ not json');
    const scan = await readSidecars(dir, c.config);
    assert.deepEqual(scan.valid.map((s) => s.index), [0]);
    assert.deepEqual(scan.foreign, [{ file: 'shards/shard-00001.json', config_id: other.config_id }]);
    assert.deepEqual(scan.invalid.map((s) => s.file), ['shards/shard-00002.json', 'shards/shard-00003.json']);
    assert.match(scan.invalid[0].reason, /shards\/shard-00002\.parquet: missing/);
    const fin = await finalizeCache(dir);
    assert.equal(fin.manifest, null);
    assert.deepEqual(fin.missing, [1, 2]);
    assert.equal(fin.foreign.length, 1);
  });

  test('buildManifest: complete only for exact coverage by this configuration', () => {
    const config = fakeConfig(opts);
    const sc = (index: number, patch: Partial<ShardSidecar> = {}): ShardSidecar => ({
      file: `shards/shard-0000${index}.parquet`, index, first_row: index * 10, rows: index === 2 ? 5 : 10, bytes: 100, sha256: 'f'.repeat(64),
      nonfinite_rows: 0, config_id: config.config_id, execution_provider: index ? 'cpu' : 'cuda', nonfinite_examples: [], ...patch,
    });
    const full = buildManifest(config, [sc(2), sc(0), sc(1)]);
    assert.equal(full.complete, true);
    assert.deepEqual(full.shards.map((s) => s.index), [0, 1, 2]);
    assert.deepEqual(full.execution_providers, ['cpu', 'cuda']);
    assert.deepEqual(full.totals, { bytes: 300, nonfinite_rows: 0 });
    assert.ok(!('config_id' in full.shards[0]), 'records carry no sidecar-only fields');
    assert.equal(buildManifest(config, [sc(0), sc(1)]).complete, false);
    assert.equal(buildManifest(config, [sc(0), sc(1), sc(1)]).complete, false);
    assert.equal(buildManifest(config, [sc(0), sc(1), sc(2, { rows: 4 })]).complete, false);
    assert.equal(buildManifest(config, [sc(0), sc(1), sc(2, { config_id: 'a'.repeat(64) })]).complete, false);
    assert.equal(buildManifest(config, [sc(0), sc(1), sc(2), sc(3)]).complete, false);
  });

  describe('corruption', () => {
    let dir: string;
    let m: Manifest;
    before(async () => {
      dir = cacheDir('corrupt-src');
      await writeFakeCache(dir, opts);
      m = await readManifest(dir);
    });
    const copy = (name: string): string => {
      const d = cacheDir(name);
      fs.cpSync(dir, d, { recursive: true });
      return d;
    };

    test('a clean cache verifies, with progress per shard', async () => {
      const seen: number[] = [];
      const r = await verifyCache(dir, { checksums: true, onProgress: (p) => seen.push(p.done) });
      assert.deepEqual(r.problems, []);
      assert.equal(r.ok, true);
      assert.equal(r.checked, 3);
      assert.equal(r.bytes, m.totals.bytes);
      assert.deepEqual(seen, [1, 2, 3]);
    });

    test('flipped byte: sha256 error naming the shard; verify lists it', async () => {
      const d = copy('flip');
      const f = path.join(d, 'shards/shard-00001.parquet');
      const bytes = fs.readFileSync(f);
      bytes[100] ^= 0x01;
      fs.writeFileSync(f, bytes);
      await rejectsUser(() => readShardFile(d, m.shards[1], 'parquet', {}),
        /^shards\/shard-00001\.parquet: sha256 differs from manifest \(file changed or corrupted\); re-run precompute-logits with the same arguments to regenerate it$/);
      const r = await verifyCache(d, { checksums: true });
      assert.equal(r.ok, false);
      assert.deepEqual(r.problems.map((p) => p.file), ['shards/shard-00001.parquet']);
      assert.match(r.problems[0].message, /sha256 differs/);
      // Without checksums only size and metadata are checked: a same-size flip goes unnoticed there.
      assert.equal((await verifyCache(d, { checksums: false })).ok, true);
    });

    test('truncated shard: size error', async () => {
      const d = copy('trunc');
      const f = path.join(d, 'shards/shard-00002.parquet');
      fs.truncateSync(f, 50);
      await rejectsUser(() => readShardFile(d, m.shards[2], 'parquet', {}), /^shards\/shard-00002\.parquet: 50 bytes, the manifest says \d+ \(truncated or replaced\)/);
      const r = await verifyCache(d, { checksums: false });
      assert.deepEqual(r.problems.map((p) => p.file), ['shards/shard-00002.parquet']);
    });

    test('missing shard', async () => {
      const d = copy('missing');
      fs.rmSync(path.join(d, 'shards/shard-00000.parquet'));
      await rejectsUser(() => readShardFile(d, m.shards[0], 'parquet', {}), /^shards\/shard-00000\.parquet: missing; re-run precompute-logits/);
      const r = await verifyCache(d, { checksums: true });
      assert.deepEqual(r.problems.map((p) => [p.file, p.message.split(';')[0]]), [['shards/shard-00000.parquet', 'missing']]);
    });

    test('shard from another config (manifest record patched to match): refused by config_id', async () => {
      const d = copy('foreign');
      const otherDir = cacheDir('foreign-other');
      await writeFakeCache(otherDir, { ...opts, variant: 'B' });
      fs.copyFileSync(path.join(otherDir, 'shards/shard-00001.parquet'), path.join(d, 'shards/shard-00001.parquet'));
      const bytes = fs.readFileSync(path.join(d, 'shards/shard-00001.parquet'));
      const patched = { ...m, shards: m.shards.map((s) => (s.index === 1 ? { ...s, bytes: bytes.length, sha256: sha256Hex(bytes) } : s)) };
      patched.totals = { ...m.totals, bytes: patched.shards.reduce((n, s) => n + s.bytes, 0) };
      fs.writeFileSync(path.join(d, 'manifest.json'), JSON.stringify(patched));
      await rejectsUser(() => readShardFile(d, patched.shards[1], 'parquet', { expectConfigId: m.config_id }), /^shards\/shard-00001\.parquet: belongs to another cache/);
      const r = await verifyCache(d, { checksums: true });
      assert.deepEqual(r.problems.map((p) => p.file), ['shards/shard-00001.parquet']);
      assert.match(r.problems[0].message, /belongs to another cache/);
    });

    test('shards swapped (records patched to match): refused by first_row', async () => {
      const d = copy('swap');
      const a = path.join(d, 'shards/shard-00000.parquet');
      const b = path.join(d, 'shards/shard-00001.parquet');
      const [ba, bb] = [fs.readFileSync(a), fs.readFileSync(b)];
      fs.writeFileSync(a, bb);
      fs.writeFileSync(b, ba);
      const rec = { ...m.shards[0], bytes: bb.length, sha256: sha256Hex(bb) };
      await rejectsUser(() => readShardFile(d, rec, 'parquet', { expectConfigId: m.config_id }), /^shards\/shard-00000\.parquet: holds rows from 10, the manifest expects 0/);
    });

    test('symlink to a file outside the cache is refused', async () => {
      const d = copy('symlink');
      const outside = path.join(tmp, 'outside.parquet');
      fs.copyFileSync(path.join(d, 'shards/shard-00000.parquet'), outside);
      fs.rmSync(path.join(d, 'shards/shard-00000.parquet'));
      fs.symlinkSync(outside, path.join(d, 'shards/shard-00000.parquet'));
      await rejectsUser(() => readShardFile(d, m.shards[0], 'parquet', {}), /symbolic link .* outside the cache directory/);
      const r = await verifyCache(d, { checksums: true });
      assert.deepEqual(r.problems.map((p) => p.file), ['shards/shard-00000.parquet']);
    });

    test('config.json of another configuration is reported', async () => {
      const d = copy('config-mix');
      fs.writeFileSync(path.join(d, 'config.json'), JSON.stringify(fakeConfig({ ...opts, variant: 'B' })));
      const r = await verifyCache(d, { checksums: false });
      assert.deepEqual(r.problems.map((p) => p.file), ['config.json']);
    });

    describe('hostile or damaged manifest.json', () => {
      const cases: [string, (m: Record<string, any>) => unknown, RegExp][] = [
        ['../ path', (x) => { x.shards[0].file = '../outside.parquet'; }, /field shards\[0\]\.file must be a path inside the cache directory \(it escapes the cache directory/],
        ['absolute path', (x) => { x.shards[1].file = '/etc/passwd'; }, /field shards\[1\]\.file must be a path inside the cache directory \(it is an absolute path\)/],
        ['other name inside', (x) => { x.shards[1].file = 'shards/shard-00002.parquet'; }, /field shards\[1\]\.file must be "shards\/shard-00001\.parquet"/],
        ['rows as string', (x) => { x.rows = '25'; }, /field rows must be an integer/],
        ['negative rows', (x) => { x.rows = -1; }, /field rows must be an integer from 0/],
        ['huge rows', (x) => { x.rows = 1e300; }, /field rows must be an integer/],
        ['fractional bytes', (x) => { x.shards[0].bytes = 1.5; }, /field shards\[0\]\.bytes must be an integer/],
        ['wrong shard_count', (x) => { x.shard_count = 4; }, /field shard_count must be ceil\(rows \/ storage\.shard_rows\) = 3/],
        ['zero shard_rows', (x) => { x.storage.shard_rows = 0; }, /field storage\.shard_rows must be an integer from 1/],
        ['bad sha256', (x) => { x.shards[2].sha256 = 'xyz'; }, /field shards\[2\]\.sha256 must be a sha256/],
        ['totals mismatch', (x) => { x.totals.bytes += 1; }, /field totals\.bytes must be the sum/],
        ['missing output', (x) => { delete x.output; }, /field output must be an object \(found nothing\)/],
        ['width != product(shape)', (x) => { x.output.width = 5; }, /field output\.width must be the product of output\.shape/],
        ['shard missing from complete list', (x) => { x.shards.pop(); x.totals = { bytes: x.shards.reduce((n: number, s: any) => n + s.bytes, 0), nonfinite_rows: 0 }; }, /field shards must be 3 shard records/],
        ['index out of order', (x) => { [x.shards[0], x.shards[1]] = [x.shards[1], x.shards[0]]; }, /field shards\[0\]\.(file|index|first_row)/],
        ['rows of a shard', (x) => { x.shards[2].rows = 10; }, /field shards\[2\]\.rows must be 5/],
        ['unknown format', (x) => { x.storage.format = 'csv'; }, /field storage\.format must be one of "parquet", "arrow"/],
        ['other format version', (x) => { x.format_version = 99; }, /field format_version must be 1/],
        ['not an object', () => [1, 2, 3], /field \(top level\) must be an object \(found an array of 3\)/],
        ['incomplete', (x) => { x.complete = false; }, /the cache is incomplete/],
        ['teacher only under "__proto__"', (x) => { Object.defineProperty(x, '__proto__', { value: { teacher: x.teacher }, enumerable: true }); delete x.teacher; }, /field teacher must be an object \(found nothing\)/],
      ];
      for (const [name, mutate, pattern] of cases) {
        test(name, async () => {
          const d = cacheDir(`hostile-${name.replace(/\W+/g, '-')}`);
          fs.cpSync(dir, d, { recursive: true });
          const x = JSON.parse(fs.readFileSync(path.join(d, 'manifest.json'), 'utf8'));
          const replaced = mutate(x);
          fs.writeFileSync(path.join(d, 'manifest.json'), JSON.stringify(replaced ?? x));
          const msg = await rejectsUser(() => readManifest(d), pattern);
          assert.ok(msg.startsWith(path.join(d, 'manifest.json')), `names the file: ${msg}`);
          const r = await verifyCache(d, { checksums: false });
          assert.equal(r.ok, false);
          assert.equal(r.problems[0].file, 'manifest.json');
        });
      }

      test('not JSON, and missing', async () => {
        const d = copy('hostile-notjson');
        fs.writeFileSync(path.join(d, 'manifest.json'), '{"format_version": 1, ');
        await rejectsUser(() => readManifest(d), /manifest\.json: not valid JSON/);
        fs.rmSync(path.join(d, 'manifest.json'));
        await rejectsUser(() => readManifest(d), /manifest\.json: missing, the cache is not finished/);
        await rejectsUser(() => readManifest(path.join(d, 'nope')), /nope: no such cache directory/);
      });
    });
  });
});

describe('resolveInside', () => {
  test('accepts names inside, refuses escapes', async () => {
    const dir = cacheDir0();
    assert.equal(await resolveInside(dir, 'shards/shard-00000.parquet'), path.join(dir, 'shards', 'shard-00000.parquet'));
    for (const bad of ['../x', 'shards/../../x', '/etc/passwd', 'C:/x', 'shards\\x', '', 'a//b', './x', 'x\0y']) {
      await rejectsUser(() => resolveInside(dir, bad), /^manifest\.json: file name .* kdcache only reads and writes inside the cache directory/);
    }
  });

  test('refuses a symlinked directory leading outside', async () => {
    const dir = cacheDir0();
    const outside = makeTempDir('kdcache-outside-');
    try {
      fs.symlinkSync(outside, path.join(dir, 'shards'));
      await rejectsUser(() => resolveInside(dir, 'shards/shard-00000.parquet'), /resolves through a symbolic link/);
      fs.rmSync(path.join(dir, 'shards'));
      fs.mkdirSync(path.join(dir, 'real'));
      fs.symlinkSync(path.join(dir, 'real'), path.join(dir, 'shards'));
      assert.equal(await resolveInside(dir, 'shards/x.parquet'), path.join(dir, 'shards', 'x.parquet'), 'a link inside the cache is fine');
      fs.symlinkSync('/nonexistent/target', path.join(dir, 'real', 'dangling'));
      await rejectsUser(() => resolveInside(dir, 'shards/dangling'), /resolves through a symbolic link/);
    } finally {
      removeDir(outside);
    }
  });

  let n = 0;
  function cacheDir0(): string {
    const d = path.join(tmp, `resolve-${n++}`);
    fs.mkdirSync(d);
    return d;
  }
});

describe('configId', () => {
  test('independent of key order, sensitive to content, ignores tool and manifest fields', () => {
    const c = fakeConfig({ rows: 10, width: 3, shardRows: 5 });
    const reverseKeys = (v: unknown): unknown => Array.isArray(v) ? v.map(reverseKeys)
      : v && typeof v === 'object' ? Object.fromEntries(Object.entries(v).reverse().map(([k, x]) => [k, reverseKeys(x)])) : v;
    const reordered = reverseKeys(c) as typeof c;
    assert.notEqual(JSON.stringify(reordered), JSON.stringify(c));
    assert.equal(configId(reordered), c.config_id);
    const newerTool: typeof c = { ...c, tool: { name: 'kdcache', version: '9.9.9' } };
    assert.equal(configId(newerTool), c.config_id);
    assert.equal(configId({ ...c, complete: true, shards: [] } as never), c.config_id);
    assert.notEqual(configId({ ...c, rows: 11 }), c.config_id);
    assert.notEqual(configId({ ...c, storage: { ...c.storage, compression: 'snappy' } }), c.config_id);
    assert.equal(canonicalJson({ b: 1, a: [2, { d: null, c: 'x' }] }), '{"a":[2,{"c":"x","d":null}],"b":1}');
    assert.throws(() => canonicalJson({ a: NaN }), /non-finite/);
  });

  test("matches precompute's buildConfig", async () => {
    const { buildConfig } = await import('../src/precompute/config.js');
    const c = fakeConfig({ rows: 10, width: 3, shardRows: 5, label: true });
    const built = buildConfig({
      teacher: c.teacher, dataset: c.dataset, labels: c.labels, preprocessing: c.preprocessing,
      outputShape: c.output.shape, storage: c.storage, rows: c.rows,
    });
    assert.equal(configId(built), built.config_id);
    assert.equal(built.config_id, c.config_id);
  });
});

describe('arrow-format cache', () => {
  test('finalize, verify and read an arrow cache with float16 logits and inputs', async () => {
    const dir = path.join(tmp, 'arrow-cache');
    const c = await writeFakeCache(dir, { rows: 23, width: 5, shardRows: 8, format: 'arrow', logitsDtype: 'float16', input: { dtype: 'uint8', width: 6 } });
    assert.equal(c.manifest?.complete, true);
    assert.equal((await verifyCache(dir, { checksums: true })).ok, true);
    const m = await readManifest(dir);
    assert.deepEqual(m.shards.map((s) => s.file), ['shards/shard-00000.arrow', 'shards/shard-00001.arrow', 'shards/shard-00002.arrow']);
    for (const rec of m.shards) assertColumnsEqual(await readShardFile(dir, rec, 'arrow', { expectConfigId: m.config_id }), c.columns[rec.index]);
  });
});
