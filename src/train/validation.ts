/**
 * Validation data: either rows of the cache held out by row index (they have teacher logits, so
 * agreement and KL are reported too), or a separate labelled dataset (accuracy only: no teacher).
 *
 * Held-out rule: row r is held out when rowHash01(r) < fraction, a hash of the row index alone.
 * It does not depend on --seed or on the shard layout, so the same rows are held out in every run
 * over the same data, and the split is spread evenly over the whole dataset.
 */
import { loadLabels, openDataset } from '../data/open.js';
import type { Dataset } from '../data/types.js';
import { product } from '../util/dtype.js';
import { UserError } from '../util/errors.js';
import { datasetSource, type InputTransform } from './cache.js';
import { rowHash01 } from './rng.js';
import type { ChunkSource } from './stream.js';

export function isHeldOut(row: number, fraction: number): boolean {
  return fraction > 0 && rowHash01(row) < fraction;
}

export function countHeldOut(rows: number, fraction: number): number {
  if (!(fraction > 0)) return 0;
  let n = 0;
  for (let r = 0; r < rows; r++) if (rowHash01(r) < fraction) n++;
  return n;
}

export interface ValData {
  source: ChunkSource;
  rows: number;
  close(): Promise<void>;
}

export async function openValData(
  flags: { valData: string; valLabels?: string; valLabelColumn?: string; inputColumn?: string | null },
  transform: InputTransform,
  classes: number,
): Promise<ValData> {
  const ds: Dataset = await openDataset(flags.valData, flags.inputColumn ? { inputColumn: flags.inputColumn } : {});
  try {
    const width = product(transform.pre.input_shape);
    if (product(ds.exampleShape) !== width) {
      throw new UserError(`--val-data ${flags.valData}: examples have shape [${ds.exampleShape}] (${product(ds.exampleShape)} values), the cache's inputs have [${transform.pre.input_shape}] (${width}); pass validation data of the same kind`);
    }
    const set = await loadLabels({ labels: flags.valLabels, labelColumn: flags.valLabelColumn, data: flags.valData });
    const labels = set!.labels;
    const what = flags.valLabels ? `--val-labels ${flags.valLabels}` : `--val-label-column ${flags.valLabelColumn}`;
    if (labels.length !== ds.count) throw new UserError(`${what}: ${labels.length} labels for ${ds.count} examples in ${flags.valData}; they must match one to one`);
    checkLabelRange(labels, classes, what);
    return { source: datasetSource(ds, transform, labels), rows: ds.count, close: () => ds.close() };
  } catch (err) {
    await ds.close();
    throw err;
  }
}

export function checkLabelRange(labels: Int32Array, classes: number, what: string): void {
  for (let i = 0; i < labels.length; i++) {
    if (!(labels[i] >= 0 && labels[i] < classes)) {
      throw new UserError(`${what}: label ${labels[i]} at index ${i} is outside the teacher's ${classes} classes [0, ${classes - 1}]`);
    }
  }
}
