import * as path from 'node:path';
import type { FileFingerprint } from '../shards/manifest-types.js';
import { UserError } from '../util/errors.js';
import { sha256File } from '../util/fsx.js';
import { openIdx, readIdx } from './idx.js';
import { openNpy, readNpyLabels, toLabels } from './npy.js';
import type { Dataset, LabelSet } from './types.js';

export type DataFormat = Dataset['format'];

/**
 * The Parquet/Arrow reader, loaded only for such data: it brings apache-arrow, which a precompute run
 * over .npy or IDX data no longer loads on its main thread (importing the pipeline: 85-93 ms without
 * it, 214-240 ms with it).
 */
const tableReader = () => import('./table.js');

export function detectFormat(file: string): DataFormat {
  const name = file.toLowerCase().replace(/\.gz$/, '');
  if (name.endsWith('.npy')) return 'npy';
  if (name.endsWith('.parquet') || name.endsWith('.pq')) return 'parquet';
  if (name.endsWith('.arrow') || name.endsWith('.feather') || name.endsWith('.ipc') || name.endsWith('.arrows')) return 'arrow';
  if (/ubyte$|\.idx\d?$|-idx\d-/.test(name) || name.includes('idx')) return 'idx';
  throw new UserError(`${file}: unknown data format; use .npy, IDX (MNIST-style, plain or .gz), .parquet or .arrow`);
}

export async function openDataset(file: string, opts: { inputColumn?: string } = {}): Promise<Dataset> {
  const format = detectFormat(file);
  if (format !== 'parquet' && format !== 'arrow' && opts.inputColumn) {
    throw new UserError(`--input-column applies to Parquet/Arrow data, not ${format} (${file})`);
  }
  const ds = format === 'npy' ? await openNpy(file)
    : format === 'idx' ? await openIdx(file)
    : await (await tableReader()).openTable(file, opts.inputColumn, format);
  if (ds.count === 0) throw new UserError(`${file}: the dataset has no examples`);
  return ds;
}

/** Labels from a separate file (--labels) or from a column of the data file (--label-column). */
export async function loadLabels(opts: { labels?: string; labelColumn?: string; data?: string }): Promise<LabelSet | null> {
  if (opts.labels && opts.labelColumn) throw new UserError('--labels and --label-column are exclusive: give one');
  if (opts.labelColumn) {
    if (!opts.data) throw new UserError('--label-column needs --data');
    const fmt = detectFormat(opts.data);
    if (fmt !== 'parquet' && fmt !== 'arrow') throw new UserError(`--label-column applies to Parquet/Arrow data; for ${fmt} data give --labels <file>`);
    return { labels: await (await tableReader()).readLabelColumn(opts.data, opts.labelColumn), source: 'column', files: [opts.data], column: opts.labelColumn };
  }
  if (!opts.labels) return null;
  const file = opts.labels;
  const fmt = detectFormat(file);
  let labels: Int32Array;
  if (fmt === 'npy') labels = await readNpyLabels(file);
  else if (fmt === 'idx') {
    const { header, data } = await readIdx(file);
    if (header.shape.length !== 1) throw new UserError(`${file}: labels must be a 1-d IDX file, got shape [${header.shape.join(', ')}]`);
    labels = toLabels(data, file);
  } else throw new UserError(`${file}: --labels takes .npy or IDX; for Parquet/Arrow use --label-column`);
  return { labels, source: 'file', files: [file], column: null };
}

export async function fingerprintFiles(files: string[]): Promise<FileFingerprint[]> {
  const out: FileFingerprint[] = [];
  for (const file of files) {
    const { sha256, bytes } = await sha256File(file);
    out.push({ name: path.basename(file), sha256, bytes });
  }
  return out;
}
