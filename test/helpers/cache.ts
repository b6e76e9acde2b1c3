/**
 * A complete kdcache cache directory without running a teacher: a plausible config.json, random
 * shards written through the real writer, and the real finalize. For tests of readers and trainers.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { COL_INPUT, COL_LABEL, COL_LOGITS, COL_ROW, CONFIG_FILE, FORMAT_VERSION, type ColumnSpec, type Compression, type ShardColumns, type StorageFormat } from '../../src/shards/format.js';
import { configId, finalizeCache } from '../../src/shards/manifest.js';
import type { CacheConfig, Manifest } from '../../src/shards/manifest-types.js';
import { writeShard } from '../../src/shards/writer.js';
import type { DType } from '../../src/util/dtype.js';
import { randomShardColumns } from './shard-columns.js';

export interface FakeCacheOptions {
  rows: number;
  width: number;
  shardRows: number;
  format?: StorageFormat;
  compression?: Compression;
  logitsDtype?: 'float32' | 'float16';
  label?: boolean;
  input?: { dtype: DType; width: number };
  seed?: number;
  /** changes the configuration (and so config_id) without changing anything else */
  variant?: string;
}

const HEX = (c: string): string => c.repeat(64);

export function fakeConfig(o: FakeCacheOptions): CacheConfig {
  const columns: ColumnSpec[] = [{ name: COL_ROW, type: 'int64' }];
  if (o.label) columns.push({ name: COL_LABEL, type: 'int32' });
  columns.push({ name: COL_LOGITS, type: `list<${o.logitsDtype ?? 'float32'}>`, length: o.width });
  if (o.input) columns.push({ name: COL_INPUT, type: `list<${o.input.dtype}>`, length: o.input.width });
  const inputShape = [o.input?.width ?? 4];
  const body = {
    format_version: FORMAT_VERSION,
    teacher: {
      name: `teacher${o.variant ?? ''}.onnx`, sha256: HEX('a'), bytes: 1234,
      input_name: 'x', output_name: 'y', input_names: ['x'], output_names: ['y'],
      input_shape: [-1, ...inputShape], output_shape: [-1, o.width], input_type: 'float32', output_type: 'float32',
      opset: 17, producer: 'test',
    },
    dataset: {
      format: 'npy' as const, files: [{ name: 'x.npy', sha256: HEX('b'), bytes: 99 }], input_column: null,
      count: o.rows, example_shape: inputShape, dtype: o.input?.dtype ?? ('float32' as DType),
    },
    labels: o.label ? { source: 'file' as const, files: [{ name: 'y.npy', sha256: HEX('c'), bytes: 9 }], column: null, count: o.rows, sha256: HEX('d') } : null,
    preprocessing: { input_shape: inputShape, input_type: 'float32' as const, scale: 1, mean: [0], std: [1] },
    output: { shape: [o.width], width: o.width },
    storage: { format: o.format ?? 'parquet', compression: o.compression ?? 'zstd', shard_rows: o.shardRows, logits_dtype: o.logitsDtype ?? 'float32', columns },
    rows: o.rows,
    shard_count: Math.ceil(o.rows / o.shardRows),
  };
  return { ...body, tool: { name: 'kdcache', version: '0.0.0-test' }, config_id: configId(body) };
}

export function shardColumnsFor(o: FakeCacheOptions, index: number): ShardColumns {
  const first = index * o.shardRows;
  return randomShardColumns({
    rows: Math.min(o.rows, first + o.shardRows) - first, width: o.width, firstRow: first, seed: (o.seed ?? 7) * 1000 + index,
    logitsDtype: o.logitsDtype, label: o.label, input: o.input,
  });
}

export interface FakeCache {
  dir: string;
  config: CacheConfig;
  /** what each shard holds, by index */
  columns: ShardColumns[];
  manifest: Manifest | null;
  missing: number[];
}

/** Write config.json and every shard except `skip`, then finalize. */
export async function writeFakeCache(dir: string, o: FakeCacheOptions, opts: { skip?: number[]; finalize?: boolean } = {}): Promise<FakeCache> {
  const config = fakeConfig(o);
  fs.mkdirSync(dir, { recursive: true });
  fs.writeFileSync(path.join(dir, CONFIG_FILE), `${JSON.stringify(config, null, 2)}\n`);
  const columns: ShardColumns[] = [];
  for (let i = 0; i < config.shard_count; i++) {
    columns.push(shardColumnsFor(o, i));
    if (!opts.skip?.includes(i)) await writeShard(dir, i, columns[i], config.storage, config.config_id, 'cpu');
  }
  if (opts.finalize === false) return { dir, config, columns, manifest: null, missing: [] };
  const { manifest, missing } = await finalizeCache(dir);
  return { dir, config, columns, manifest, missing };
}
