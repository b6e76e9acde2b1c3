/**
 * Does a student distilled from a top-k cache match the teacher as well as one distilled from the
 * dense cache? Two teachers (--teacher):
 *   wide     test/fixtures/wide_teacher.onnx: random weights, 32 -> 32 -> 2048 classes on N(0, 1)
 *            inputs. A deliberately hard case: its tail is heavy and has no structure.
 *   triples  bench/models/fmnist_triples_1000.onnx (tools/make_triples_teacher.py): the trained
 *            Fashion-MNIST teacher over three images side by side, 1000 classes (the garment
 *            triple), output = joint log-probability. Real confusions in a real trained tail.
 * The same student is
 * trained from the dense float32 cache, from top-k float16 caches (each --tail) and from sampled
 * caches (--sample k draws at the training temperature), same seed, data and hyperparameters, and
 * scored by top-1 agreement with the teacher on held-out inputs.
 *
 *   node dist/bench/topk-agreement.js [--teacher wide|triples] [--train 20000] [--test 5000] [--epochs 8]
 *        [--seeds 0,1] [--k 32] [--temperature 1,2] [--tails bucket,uniform,ignore] [--student mlp:512]
 *        [--sample yes|no] [--dense yes|no] [--name <result file name>]
 *
 * bench/results/topk-agreement-triples-sampled.json came from
 *   --teacher triples --train 60000 --test 10000 --epochs 10 --seeds 0,1,2 --temperature 4
 *   --tails '' --student mlp:256 --dense no --name topk-agreement-triples-sampled
 * (its dense figures are in topk-agreement-triples.json: same seeds and setup), and
 * bench/results/topk-agreement-triples-k64.json from
 *   --teacher triples --train 60000 --test 10000 --epochs 10 --seeds 0,1,2 --temperature 4
 *   --tails ignore --k 64 --student mlp:256 --sample no --dense yes --name topk-agreement-triples-k64
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { readIdx } from '../src/data/idx.js';
import { encodeNpy } from '../src/data/npy.js';
import { precomputeLogits } from '../src/precompute/run.js';
import { evaluateModel } from '../src/train/evaluate.js';
import { trainStudent } from '../src/train/run.js';
import type { TailMode } from '../src/train/sparse-targets.js';
import { Rng } from '../src/train/rng.js';
import { MODELS, ROOT, machine, runPythonTool, saveResult, table } from './common.js';

const arg = (name: string, dflt: string) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? process.argv[i + 1] : dflt;
};
const TRAIN = Number(arg('train', '20000'));
const TEST = Number(arg('test', '5000'));
const EPOCHS = Number(arg('epochs', '8'));
const SEEDS = arg('seeds', '0,1').split(',').map(Number);
const K = Number(arg('k', '32'));
const TEMPERATURES = arg('temperature', '1,2').split(',').map(Number);
const TAILS = arg('tails', 'bucket,uniform,ignore').split(',').filter(Boolean) as TailMode[];
const STUDENT = arg('student', 'mlp:512');
const SAMPLE = arg('sample', 'yes') === 'yes';
const DENSE = arg('dense', 'yes') === 'yes';
const TEACHER_KIND = arg('teacher', 'wide');
if (TEACHER_KIND !== 'wide' && TEACHER_KIND !== 'triples') throw new Error('--teacher must be wide or triples');
const TEACHER = TEACHER_KIND === 'wide' ? path.join(ROOT, 'test/fixtures/wide_teacher.onnx') : path.join(MODELS, 'fmnist_triples_1000.onnx');
const TEACHER_NOTE = TEACHER_KIND === 'wide'
  ? 'test/fixtures/wide_teacher.onnx (32 -> 32 -> 2048 classes, logit std ~5)'
  : 'bench/models/fmnist_triples_1000.onnx (data/teacher.onnx on 3 images, 1000 classes, joint log-probabilities)';
const INPUTS_NOTE = TEACHER_KIND === 'wide'
  ? 'N(0, 1)^32, seeded'
  : 'Fashion-MNIST triples, uint8 [N, 2352], scale 1/255: train triples from the train images, test triples from the test images (60k/10k from /usr/share/datasets/fashion-mnist, else the bundled 10k/2k), images drawn uniformly with a seeded generator';

/** Uniform draws in the open interval (0, 1) (Box-Muller takes a log), from the project's Rng. */
function uniform(seed: number): () => number {
  const rng = new Rng(seed);
  return () => (rng.nextU32() + 0.5) / 4294967296;
}

/** N(0, 1) inputs from a seeded generator (Box-Muller). */
function gaussian(n: number, seed: number): Float32Array {
  const u = uniform(seed);
  const out = new Float32Array(n);
  for (let i = 0; i < n; i += 2) {
    const r = Math.sqrt(-2 * Math.log(u()));
    const a = 2 * Math.PI * u();
    out[i] = r * Math.cos(a);
    if (i + 1 < n) out[i + 1] = r * Math.sin(a);
  }
  return out;
}

/** `n` rows of three Fashion-MNIST images drawn uniformly (with replacement) from an IDX file. */
async function triples(file: string, n: number, seed: number): Promise<Uint8Array> {
  const images = (await readIdx(file)).data as Uint8Array;
  const count = images.length / 784;
  const u = uniform(seed);
  const out = new Uint8Array(n * 3 * 784);
  for (let i = 0; i < n * 3; i++) {
    const k = Math.floor(u() * count);
    out.set(images.subarray(k * 784, (k + 1) * 784), i * 784);
  }
  return out;
}

interface Run {
  cache: string;
  kind: 'dense' | 'topk' | 'sample';
  tail: TailMode | null;
  temperature: number;
  seed: number;
  agreement: number;
  kl: number;
  train_seconds: number;
}

async function main(): Promise<void> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kdcache-bench-topk-'));
  const log = (line: string) => process.stderr.write(`${line}\n`);
  try {
    const trainX = path.join(dir, 'train.npy');
    const testX = path.join(dir, 'test.npy');
    let scale: number | undefined;
    if (TEACHER_KIND === 'wide') {
      fs.writeFileSync(trainX, encodeNpy(gaussian(TRAIN * 32, 1), 'float32', [TRAIN, 32]));
      fs.writeFileSync(testX, encodeNpy(gaussian(TEST * 32, 2), 'float32', [TEST, 32]));
    } else {
      if (!fs.existsSync(TEACHER)) runPythonTool('make_triples_teacher.py');
      // The full 60k/10k set when Debian's dataset-fashion-mnist is installed, else the bundled subset.
      const full = '/usr/share/datasets/fashion-mnist';
      const idx = (split: 'train' | 'test') => fs.existsSync(full)
        ? path.join(full, `${split === 'train' ? 'train' : 't10k'}-images-idx3-ubyte.gz`)
        : path.join(ROOT, `data/fashion-mnist-${split}-images.idx3-ubyte.gz`);
      fs.writeFileSync(trainX, encodeNpy(await triples(idx('train'), TRAIN, 1), 'uint8', [TRAIN, 3 * 784]));
      fs.writeFileSync(testX, encodeNpy(await triples(idx('test'), TEST, 2), 'uint8', [TEST, 3 * 784]));
      scale = 1 / 255;
    }
    const pre = { ...(scale ? { scale } : {}), device: 'cpu' as const, quiet: true };
    const caches = {
      dense: path.join(dir, 'dense'),
      topk: path.join(dir, `top${K}`),
      test: path.join(dir, 'test-dense'),
    };
    await precomputeLogits({ teacher: TEACHER, data: trainX, out: caches.dense, ...pre });
    const sparse = await precomputeLogits({ teacher: TEACHER, data: trainX, out: caches.topk, topK: K, dtype: 'float16', ...pre });
    await precomputeLogits({ teacher: TEACHER, data: testX, out: caches.test, ...pre });
    const sampled = new Map<number, string>();
    for (const t of TEMPERATURES) {
      const out = path.join(dir, `sample${K}-T${t}`);
      if (SAMPLE) await precomputeLogits({ teacher: TEACHER, data: trainX, out, sample: K, sampleTemperature: t, dtype: 'float16', ...pre });
      sampled.set(t, out);
    }
    const sizes: Record<string, number> = Object.fromEntries(Object.entries(caches).map(([k, d]) => [k, JSON.parse(fs.readFileSync(path.join(d, 'manifest.json'), 'utf8')).totals.bytes]));
    if (SAMPLE) for (const [t, d] of sampled) sizes[`sample_T${t}`] = JSON.parse(fs.readFileSync(path.join(d, 'manifest.json'), 'utf8')).totals.bytes;
    log(`caches: dense ${sizes.dense} B, top-${K} ${sizes.topk} B; top-${K} retained mass ${sparse.fidelity!.mass_mean.toFixed(4)} (min ${sparse.fidelity!.mass_min.toFixed(4)})`);

    const runs: Run[] = [];
    const configs: { cache: 'dense' | 'topk' | 'sample'; tail: TailMode | null }[] = [
      ...(DENSE ? [{ cache: 'dense' as const, tail: null }] : []),
      ...TAILS.map((tail) => ({ cache: 'topk' as const, tail })),
      ...(SAMPLE ? [{ cache: 'sample' as const, tail: null }] : []),
    ];
    for (const temperature of TEMPERATURES) {
      for (const seed of SEEDS) {
        for (const c of configs) {
          const out = path.join(dir, `s-${c.cache}-${c.tail}-${temperature}-${seed}`);
          const s = await trainStudent({
            logits: c.cache === 'sample' ? sampled.get(temperature)! : caches[c.cache], data: trainX, out, student: STUDENT, alpha: 1, temperature, epochs: EPOCHS, batchSize: 128, lr: 2e-3, seed,
            ...(c.tail ? { tail: c.tail } : {}), skipChecksums: true, quiet: true,
          });
          const ev = await evaluateModel({ model: out, data: testX, logits: caches.test, quiet: true });
          runs.push({ kind: c.cache, cache: c.cache === 'dense' ? 'dense float32' : c.cache === 'sample' ? `${K} draws at T=${temperature} float16` : `top-${K} float16`, tail: c.tail, temperature, seed, agreement: ev.agreement!, kl: ev.kl!, train_seconds: s.train_seconds });
          log(`T=${temperature} seed ${seed} ${c.cache}${c.tail ? ` tail=${c.tail}` : ''}: agreement ${(ev.agreement! * 100).toFixed(2)}%, KL ${ev.kl!.toFixed(4)} (${s.train_seconds.toFixed(0)} s)`);
          fs.rmSync(out, { recursive: true, force: true });
        }
      }
    }
    // Per temperature and config: mean over seeds, and the mean paired difference to dense.
    const summary: Record<string, unknown>[] = [];
    for (const temperature of TEMPERATURES) {
      const dense = runs.filter((r) => r.temperature === temperature && r.kind === 'dense');
      for (const c of configs) {
        const mine = runs.filter((r) => r.temperature === temperature && r.kind === c.cache && r.tail === c.tail);
        const mean = mine.reduce((a, r) => a + r.agreement, 0) / mine.length;
        const diff = dense.length ? mine.reduce((a, r) => a + r.agreement - dense.find((d) => d.seed === r.seed)!.agreement, 0) / mine.length : NaN;
        summary.push({
          temperature, cache: mine[0].cache, tail: c.tail, seeds: mine.length,
          agreement_mean: mean, agreement_minus_dense_pp: diff * 100, kl_mean: mine.reduce((a, r) => a + r.kl, 0) / mine.length,
        });
      }
    }
    console.log(table([
      ['T', 'cache', 'tail', 'agreement (mean)', 'minus dense (pp)', 'KL vs teacher'],
      ...summary.map((s) => [String(s.temperature), String(s.cache), String(s.tail ?? '-'), `${((s.agreement_mean as number) * 100).toFixed(2)}%`, (s.agreement_minus_dense_pp as number).toFixed(2), (s.kl_mean as number).toFixed(4)]),
    ]));
    const file = saveResult(arg('name', TEACHER_KIND === 'wide' ? 'topk-agreement' : 'topk-agreement-triples'), {
      bench: 'topk-agreement', date: new Date().toISOString(), machine: machine(),
      setup: {
        teacher: TEACHER_NOTE, inputs: INPUTS_NOTE, train: TRAIN, test: TEST,
        student: STUDENT, epochs: EPOCHS, batch_size: 128, lr: 2e-3, alpha: 1, k: K, topk_dtype: 'float16',
        cache_bytes: sizes, topk_fidelity: sparse.fidelity,
        agreement: 'top-1 agreement of the student with the teacher on the held-out inputs (kdcache evaluate with the dense test cache)',
      },
      summary,
      runs,
    });
    console.log(`saved ${file}`);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

await main();
