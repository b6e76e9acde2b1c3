/** Top-k and sequence shards through the real encoder and decoders, and read by DuckDB. */
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { after, before, describe, test } from 'node:test';
import * as arrow from 'apache-arrow';
import type { ShardColumns, StorageFormat } from '../src/shards/format.js';
import { decodeShard } from '../src/shards/reader.js';
import { encodeShard } from '../src/shards/writer.js';
import { scanNonfinite } from '../src/shards/nonfinite.js';
import { toStored } from '../src/sparse/store.js';
import { halfToFloat } from '../src/util/dtype.js';
import { closeDuck, duckQuery, duckQueryJs, sqlPath } from './helpers/duckdb.js';
import { assertColumnsEqual, rng } from './helpers/shard-columns.js';
import { makeTempDir, removeDir } from './helpers/tmp.js';

const META = { config_id: 'c'.repeat(64), first_row: 0, shard_index: 0 };

/** A sequence shard: examples 0..4 with 3, 0, 5, 1, 2 real positions, 50 classes, top-8. */
function sequenceTopk(dtype: 'float32' | 'float16', label = false): ShardColumns {
  const r = rng(21);
  const lengths = [3, 0, 5, 1, 2];
  const rows = lengths.reduce((a, b) => a + b);
  const row = new BigInt64Array(rows);
  const position = new Int32Array(rows);
  let at = 0;
  lengths.forEach((n, ex) => {
    for (let p = 0; p < n; p++, at++) {
      row[at] = BigInt(ex);
      position[at] = p;
    }
  });
  const dense: ShardColumns = {
    rows, row, position, logitsWidth: 50, logitsDtype: 'float32',
    logits: Float32Array.from({ length: rows * 50 }, () => (r() - 0.5) * 12),
    ...(label ? { label: Int32Array.from({ length: rows }, (_, i) => i % 50) } : {}),
  };
  return toStored(dense, { kind: 'topk', k: 8, dtype, teacherOutput: 'logits', reportTemperature: 2 }).cols;
}

let tmp: string;
before(() => {
  tmp = makeTempDir('kdcache-sparse-shards-');
});
after(async () => {
  await closeDuck();
  removeDir(tmp);
});

describe('top-k sequence shards', () => {
  for (const format of ['parquet', 'arrow'] as StorageFormat[]) {
    for (const dtype of ['float32', 'float16'] as const) {
      test(`${format} ${dtype}: every column round-trips bit for bit`, () => {
        const cols = sequenceTopk(dtype, true);
        const bytes = encodeShard(cols, { format, compression: 'zstd', logits_dtype: dtype }, META);
        assertColumnsEqual(decodeShard(bytes, format, 'x'), cols);
      });
    }
  }

  test('DuckDB reads every column: BIGINT row, INTEGER position, INTEGER[] indices, FLOAT[] float16 values, FLOAT logsumexp', async () => {
    const cols = sequenceTopk('float16');
    const file = path.join(tmp, 'topk.parquet');
    fs.writeFileSync(file, encodeShard(cols, { format: 'parquet', compression: 'zstd', logits_dtype: 'float16' }, META));
    const types = await duckQuery(`select column_name, column_type from (describe select * from read_parquet(${sqlPath(file)}))`);
    assert.deepEqual(types, [['row', 'BIGINT'], ['position', 'INTEGER'], ['topk_indices', 'INTEGER[]'], ['topk_logits', 'FLOAT[]'], ['logsumexp', 'FLOAT']]);
    const logical = await duckQueryJs(`select name, logical_type from parquet_schema(${sqlPath(file)}) where name = 'element' or name = 'item'`);
    assert.ok(logical.some(([, t]) => /Float16/i.test(String(t))), `topk_logits stored with the FLOAT16 logical type: ${JSON.stringify(logical)}`);
    const rows = await duckQueryJs(`select row, position, topk_indices, topk_logits, logsumexp from read_parquet(${sqlPath(file)}) order by row, position`);
    assert.equal(rows.length, cols.rows);
    rows.forEach(([row, position, idx, values, lse], i) => {
      assert.equal(row, cols.row[i]);
      assert.equal(position, cols.position![i]);
      assert.deepEqual(idx, [...cols.topkIndices!.subarray(i * 8, i * 8 + 8)]);
      assert.deepEqual(values, [...cols.logits.subarray(i * 8, i * 8 + 8)].map(halfToFloat));
      assert.equal(lse, cols.logsumexp![i]);
    });
    // The exact probability of a stored class from SQL alone:
    const [[p]] = await duckQueryJs(`select exp(topk_logits[1] - logsumexp) from read_parquet(${sqlPath(file)}) order by row, position limit 1`);
    assert.ok(Math.abs((p as number) - Math.exp(halfToFloat(cols.logits[0]) - cols.logsumexp![0])) < 1e-6);
  });

  test('apache-arrow reads an arrow top-k shard with its native types', () => {
    const cols = sequenceTopk('float16');
    const table = arrow.tableFromIPC(encodeShard(cols, { format: 'arrow', compression: 'none', logits_dtype: 'float16' }, META));
    const type = (name: string) => table.schema.fields.find((f) => f.name === name)!.type;
    assert.ok(arrow.DataType.isInt(type('position')));
    assert.equal(String(type('topk_indices')), 'FixedSizeList[8]<Int32>');
    assert.equal(String(type('topk_logits')), 'FixedSizeList[8]<Float16>');
    assert.equal(String(type('logsumexp')), 'Float32');
  });

  test('sampled shards: every column round-trips; DuckDB reads sample_indices, sample_counts, sample_logits', async () => {
    const r = rng(5);
    const rows = 20;
    const dense: ShardColumns = {
      rows, row: BigInt64Array.from({ length: rows }, (_, i) => BigInt(i)), logitsWidth: 40, logitsDtype: 'float32',
      logits: Float32Array.from({ length: rows * 40 }, () => (r() - 0.5) * 6),
    };
    const cols = toStored(dense, { kind: 'sample', k: 10, samples: 10, sampleTemperature: 1, dtype: 'float16', teacherOutput: 'logits', reportTemperature: 2 }).cols;
    for (const format of ['parquet', 'arrow'] as StorageFormat[]) {
      assertColumnsEqual(decodeShard(encodeShard(cols, { format, compression: 'zstd', logits_dtype: 'float16' }, META), format, 'x'), cols);
    }
    assert.ok(decodeShard(encodeShard(cols, { format: 'parquet', compression: 'zstd', logits_dtype: 'float16' }, META), 'parquet', 'x').sampleCounts);
    const file = path.join(tmp, 'sampled.parquet');
    fs.writeFileSync(file, encodeShard(cols, { format: 'parquet', compression: 'zstd', logits_dtype: 'float16' }, META));
    const types = await duckQuery(`select column_name, column_type from (describe select * from read_parquet(${sqlPath(file)}))`);
    assert.deepEqual(types, [['row', 'BIGINT'], ['sample_indices', 'INTEGER[]'], ['sample_counts', 'INTEGER[]'], ['sample_logits', 'FLOAT[]'], ['logsumexp', 'FLOAT']]);
    const sums = await duckQueryJs(`select list_sum(sample_counts) from read_parquet(${sqlPath(file)})`);
    assert.ok(sums.every(([n]) => Number(n) === 10));
  });

  test('a NaN logsumexp flags the row non-finite even when its stored values are finite', () => {
    const cols = sequenceTopk('float32');
    cols.logsumexp![2] = NaN;
    assert.deepEqual(scanNonfinite(cols), { rows: 1, examples: [Number(cols.row[2])] });
  });
});
