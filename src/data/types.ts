import type { DatasetInfo, FileFingerprint } from '../shards/manifest-types.js';
import type { DType, TypedArray } from '../util/dtype.js';

/** A dataset of N examples of a fixed shape, read in contiguous row ranges. */
export interface Dataset {
  readonly format: DatasetInfo['format'];
  readonly files: string[];
  readonly inputColumn: string | null;
  readonly count: number;
  /** per-example shape as stored, e.g. [28, 28] for IDX images */
  readonly exampleShape: number[];
  readonly dtype: DType;
  /**
   * rows [start, end) as one typed array, C order, length (end - start) * prod(exampleShape). With
   * `scratch`, a reader may return a view of it instead of a fresh array (the caller then owns the
   * result only until it reuses the scratch): repeated fresh 8 MB reads cost GC work.
   */
  read(start: number, end: number, scratch?: ArrayBuffer): Promise<TypedArray>;
  close(): Promise<void>;
}

export interface LabelSet {
  labels: Int32Array;
  source: 'file' | 'column';
  files: string[];
  column: string | null;
}

export type { FileFingerprint };
