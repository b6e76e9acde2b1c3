/**
 * Compare the logits of two caches of the same dataset (e.g. made on CPU and on CUDA):
 * prints max absolute and max relative difference and top-1 agreement, saves JSON.
 *
 *   node dist/bench/compare-caches.js <cacheA> <cacheB> [--name cpu-vs-cuda]
 */
import { readManifest } from '../src/shards/manifest.js';
import { readShardFile } from '../src/shards/reader.js';
import { argmax } from '../src/train/losses.js';
import { saveResult } from './common.js';

export interface CacheDiff { rows: number; max_abs: number; max_rel: number; top1_agreement: number }

export async function compareCaches(a: string, b: string): Promise<CacheDiff> {
  const [ma, mb] = [await readManifest(a), await readManifest(b)];
  if (ma.rows !== mb.rows || ma.output.width !== mb.output.width) throw new Error(`caches differ in shape: ${ma.rows}x${ma.output.width} vs ${mb.rows}x${mb.output.width}`);
  if (ma.teacher.sha256 !== mb.teacher.sha256) throw new Error('caches come from different teachers');
  const w = ma.output.width;
  const la = await allLogits(a, ma);
  const lb = await allLogits(b, mb);
  let maxAbs = 0;
  let maxRel = 0;
  let agree = 0;
  for (let r = 0; r < ma.rows; r++) {
    let rowScale = 0;
    for (let j = 0; j < w; j++) rowScale = Math.max(rowScale, Math.abs(la[r * w + j]));
    for (let j = 0; j < w; j++) {
      const d = Math.abs(la[r * w + j] - lb[r * w + j]);
      maxAbs = Math.max(maxAbs, d);
      // Relative to the row's largest logit: per-element relative error explodes near zero.
      maxRel = Math.max(maxRel, d / Math.max(rowScale, 1e-12));
    }
    if (argmax(la, r * w, w) === argmax(lb, r * w, w)) agree++;
  }
  return { rows: ma.rows, max_abs: maxAbs, max_rel: maxRel, top1_agreement: agree / ma.rows };
}

async function allLogits(dir: string, m: Awaited<ReturnType<typeof readManifest>>): Promise<Float32Array> {
  const out = new Float32Array(m.rows * m.output.width);
  for (const rec of m.shards) {
    const cols = await readShardFile(dir, rec, m.storage.format, { expectConfigId: m.config_id });
    out.set(cols.logits as Float32Array, rec.first_row * m.output.width);
  }
  return out;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const [a, b] = process.argv.slice(2, 4);
  const name = process.argv.includes('--name') ? process.argv[process.argv.indexOf('--name') + 1] : 'compare-caches';
  const diff = await compareCaches(a, b);
  console.log(JSON.stringify(diff));
  saveResult(name, { a, b, ...diff });
}
