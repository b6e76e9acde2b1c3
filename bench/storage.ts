/**
 * Bytes per position of a sequence teacher's cache: dense float32, dense float16 and top-k
 * (k = 8, 32, 128) float16 Parquet (zstd), with what each keeps of the teacher: retained probability
 * mass at T = 1 and T = 2 and KL(full || reconstruction) (uniform tail for top-k; for float16 the
 * rounded logits). Run through the real precompute-logits pipeline.
 *
 * Two teachers with a 4096-token vocabulary: test/fixtures/seq_teacher.onnx (random weights, logit
 * std ~1: a nearly flat distribution, top-32 keeps little of it, unlike any trained model) and
 * test/fixtures/seq_mask_teacher.onnx (logit std ~5: peaked like a trained language model).
 *
 *   node dist/bench/storage.js [--examples 256] [--seq 32]
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { encodeNpy } from '../src/data/npy.js';
import { precomputeLogits } from '../src/precompute/run.js';
import { readManifest } from '../src/shards/manifest.js';
import { readShardFile } from '../src/shards/reader.js';
import { rowLogSumExp } from '../src/sparse/topk.js';
import { concatTyped } from '../src/util/dtype.js';
import { halvesToFloats } from '../src/util/half.js';
import { ROOT, machine, saveResult, table } from './common.js';

const arg = (name: string, dflt: number) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? Number(process.argv[i + 1]) : dflt;
};
const EXAMPLES = arg('examples', 256);
const SEQ = arg('seq', 32);
const VOCAB = 4096;
const TEACHERS = [
  { name: 'seq_teacher (flat, logit std ~1)', file: 'seq_teacher.onnx' },
  { name: 'seq_mask_teacher (peaked, logit std ~5)', file: 'seq_mask_teacher.onnx' },
];
const VARIANTS: { name: string; dtype: 'float32' | 'float16'; topK?: number }[] = [
  { name: 'dense float32', dtype: 'float32' },
  { name: 'dense float16', dtype: 'float16' },
  { name: 'top-8 float16', dtype: 'float16', topK: 8 },
  { name: 'top-32 float16', dtype: 'float16', topK: 32 },
  { name: 'top-128 float16', dtype: 'float16', topK: 128 },
];

interface Row {
  teacher: string;
  variant: string;
  positions: number;
  bytes: number;
  bytes_per_position: number;
  mass_mean: number;
  mass_min: number;
  mass_t2_mean: number;
  kl_mean: number;
  kl_t2_mean: number;
  kl_rows: number;
  precompute_seconds: number;
}

/** Every dense row of a cache as float32 (float16 decoded). */
async function denseRows(cache: string): Promise<Float32Array> {
  const m = await readManifest(cache);
  const parts: Float32Array[] = [];
  for (const rec of m.shards) {
    const cols = await readShardFile(cache, rec, m.storage.format, {});
    parts.push(cols.logitsDtype === 'float16' ? halvesToFloats(cols.logits as Uint16Array) : Float32Array.from(cols.logits as Float32Array));
  }
  return concatTyped(parts);
}

/** KL(softmax(a/T) || softmax(b/T)) averaged over every `every`-th row. */
function meanKl(a: Float32Array, b: Float32Array, c: number, t: number, every: number): { kl: number; rows: number } {
  let sum = 0;
  let rows = 0;
  for (let r = 0; r * c < a.length; r += every) {
    const la = rowLogSumExp(a, r * c, c, t);
    const lb = rowLogSumExp(b, r * c, c, t);
    let kl = 0;
    for (let j = r * c; j < (r + 1) * c; j++) {
      const lp = a[j] / t - la;
      kl += Math.exp(lp) * (lp - (b[j] / t - lb));
    }
    sum += Math.max(kl, 0);
    rows++;
  }
  return { kl: sum / rows, rows };
}

async function main(): Promise<void> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kdcache-bench-storage-'));
  try {
    // Token ids drawn uniformly (no padding): every position is stored.
    const tokens = new BigInt64Array(EXAMPLES * SEQ);
    let s = 12345;
    for (let i = 0; i < tokens.length; i++) {
      s = (Math.imul(s, 1103515245) + 12345) >>> 0;
      tokens[i] = BigInt(1 + (s % (VOCAB - 1)));
    }
    const data = path.join(dir, 'tokens.npy');
    fs.writeFileSync(data, encodeNpy(tokens, 'int64', [EXAMPLES, SEQ]));
    const rows: Row[] = [];
    for (const teacher of TEACHERS) {
      let full: Float32Array | null = null;
      for (const v of VARIANTS) {
        const out = path.join(dir, `${teacher.file}-${v.name.replace(/\W+/g, '-')}`);
        const started = performance.now();
        const res = await precomputeLogits({
          teacher: path.join(ROOT, 'test/fixtures', teacher.file), data: path.join(dir, 'tokens.npy'), out,
          dtype: v.dtype, topK: v.topK, reportTemperature: v.topK ? 2 : undefined, device: 'cpu', quiet: true,
        });
        const seconds = (performance.now() - started) / 1000;
        const m = res.manifest!;
        const positions = m.totals.positions!;
        let quality: Pick<Row, 'mass_mean' | 'mass_min' | 'mass_t2_mean' | 'kl_mean' | 'kl_t2_mean' | 'kl_rows'>;
        if (m.totals.fidelity) {
          const f = m.totals.fidelity;
          quality = { mass_mean: f.mass_mean, mass_min: f.mass_min, mass_t2_mean: f.mass_t_mean, kl_mean: f.kl_mean, kl_t2_mean: f.kl_t_mean, kl_rows: f.kl_rows };
        } else {
          const rowsNow = await denseRows(out);
          full ??= rowsNow;
          const k1 = meanKl(full, rowsNow, VOCAB, 1, 64);
          const k2 = meanKl(full, rowsNow, VOCAB, 2, 64);
          quality = { mass_mean: 1, mass_min: 1, mass_t2_mean: 1, kl_mean: k1.kl, kl_t2_mean: k2.kl, kl_rows: k1.rows };
        }
        rows.push({
          teacher: teacher.name, variant: v.name, positions, bytes: m.totals.bytes, bytes_per_position: m.totals.bytes / positions,
          ...quality, precompute_seconds: seconds,
        });
        process.stderr.write(`${teacher.file} ${v.name}: ${(m.totals.bytes / positions).toFixed(1)} B/position\n`);
        fs.rmSync(out, { recursive: true, force: true });
      }
    }
    console.log(table([
      ['teacher', 'variant', 'B/position', 'mass T=1 (mean/min)', 'mass T=2', 'KL T=1', 'KL T=2'],
      ...rows.map((r) => [r.teacher, r.variant, r.bytes_per_position.toFixed(1), `${r.mass_mean.toFixed(3)} / ${r.mass_min.toFixed(3)}`, r.mass_t2_mean.toFixed(3), r.kl_mean.toExponential(2), r.kl_t2_mean.toExponential(2)]),
    ]));
    const file = saveResult('storage', {
      bench: 'storage', date: new Date().toISOString(), machine: machine(),
      setup: {
        examples: EXAMPLES, seq: SEQ, vocab: VOCAB, format: 'parquet', compression: 'zstd',
        notes: 'bytes = all shard files / stored positions; KL for top-k is KL(full || top-k + uniform tail) on every 64th position (the manifest fidelity stats); for dense float16 it is KL(float32 || float16 logits)',
      },
      results: rows,
    });
    console.log(`saved ${file}`);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

await main();
