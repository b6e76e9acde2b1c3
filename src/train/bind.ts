/**
 * Binding a cache to the data it was made from. Inputs and labels are joined to the teacher's
 * logits by row index, so they must be the very same data: files are compared by sha256 and row
 * count against the manifest, labels by the sha256 of their int32 array. Any mismatch is an error,
 * never a silent misalignment.
 */
import * as path from 'node:path';
import { fingerprintFiles, loadLabels, openDataset } from '../data/open.js';
import type { Dataset } from '../data/types.js';
import { COL_LABEL } from '../shards/format.js';
import type { Manifest } from '../shards/manifest-types.js';
import { product } from '../util/dtype.js';
import { UserError } from '../util/errors.js';
import { sha256Hex } from '../util/fsx.js';
import { cacheHasInputs } from './cache.js';

export interface DataFlags {
  data?: string;
  labels?: string;
  labelColumn?: string;
}

export interface DataBinding {
  /** null: inputs come from the shards' input column */
  dataset: Dataset | null;
  /** labels for every dataset row when the shards carry none */
  labels: Int32Array | null;
  /** whether examples will have labels (from the shards or from `labels`) */
  hasLabels: boolean;
}

export function labelsSha256(labels: Int32Array): string {
  return sha256Hex(new Uint8Array(labels.buffer, labels.byteOffset, labels.byteLength));
}

function short(sha: string): string {
  return `${sha.slice(0, 12)}…`;
}

export async function bindData(manifest: Manifest, cacheDir: string, flags: DataFlags): Promise<DataBinding> {
  const dataset = flags.data ? await openMatchingDataset(manifest, flags.data) : null;
  if (!dataset && !cacheHasInputs(manifest)) {
    const names = manifest.dataset.files.map((f) => f.name).join(', ');
    throw new UserError(`--logits ${cacheDir}: the cache does not store inputs (precompute-logits ran without --store-inputs); pass --data <the dataset it was made from: ${names}>`);
  }
  try {
    const shardLabels = manifest.labels !== null && manifest.storage.columns.some((c) => c.name === COL_LABEL);
    let labels: Int32Array | null = null;
    if (flags.labels || flags.labelColumn) {
      const set = await loadLabels({ labels: flags.labels, labelColumn: flags.labelColumn, data: flags.data });
      const given = set!.labels;
      const what = flags.labels ? `--labels ${flags.labels}` : `--label-column ${flags.labelColumn}`;
      if (given.length !== manifest.dataset.count) {
        throw new UserError(`${what}: ${given.length} labels, but the cache's dataset has ${manifest.dataset.count} rows; pass the labels of the data the cache was made from`);
      }
      if (manifest.labels && labelsSha256(given) !== manifest.labels.sha256) {
        throw new UserError(`${what}: these labels differ from the ones the cache was made with (sha256 ${short(labelsSha256(given))}, cache ${short(manifest.labels.sha256)}); leave out the flag to use the cache's labels, or pass the same labels`);
      }
      if (!shardLabels) labels = given;
    }
    return { dataset, labels, hasLabels: shardLabels || labels !== null };
  } catch (err) {
    await dataset?.close();
    throw err;
  }
}

async function openMatchingDataset(manifest: Manifest, file: string): Promise<Dataset> {
  const expected = manifest.dataset.files;
  if (expected.length !== 1) {
    throw new UserError(`--data ${file}: the cache was made from ${expected.length} data files (${expected.map((f) => f.name).join(', ')}); train from the inputs stored in the cache instead (leave out --data)`);
  }
  const [fp] = await fingerprintFiles([file]);
  const want = expected[0];
  if (fp.sha256 !== want.sha256 || fp.bytes !== want.bytes) {
    throw new UserError(`--data ${file}: not the data the cache was made from (this file: ${fp.bytes} bytes, sha256 ${short(fp.sha256)}; cache: ${want.name}, ${want.bytes} bytes, sha256 ${short(want.sha256)}); pass the same file precompute-logits read`);
  }
  const ds = await openDataset(file, manifest.dataset.input_column ? { inputColumn: manifest.dataset.input_column } : {});
  const width = product(manifest.preprocessing.input_shape);
  if (ds.count !== manifest.dataset.count || product(ds.exampleShape) !== width) {
    await ds.close();
    throw new UserError(`--data ${file}: ${ds.count} examples of shape [${ds.exampleShape}], the cache expects ${manifest.dataset.count} of ${width} values; pass the same file precompute-logits read (${path.basename(want.name)})`);
  }
  return ds;
}
