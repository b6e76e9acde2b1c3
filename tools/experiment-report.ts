/**
 * docs/results.md for the Fashion-MNIST experiment, written only from the results JSON, so that
 * every number in it comes from a recorded run with its command.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { writeFileAtomic } from '../src/util/fsx.js';
import { mean, sampleStd, welchTest } from './experiment-stats.js';

export interface RunSpec {
  framework: 'tfjs' | 'pytorch';
  student: string;
  epochs: number;
  lr: number;
  batch_size: number;
  shuffle_buffer: number;
  alpha: number;
  /** null for alpha = 0 (no teacher term) */
  temperature: number | null;
  seed: number;
  /** 0: trained on all 60k rows, measured on the test set; > 0: probes, measured on the held-out rows */
  val_fraction: number;
}

export interface RunRecord extends RunSpec {
  key: string;
  accuracy: number | null;
  agreement: number | null;
  val_accuracy: number | null;
  val_agreement: number | null;
  curve: { epoch: number; train_accuracy: number | null; val_accuracy: number | null; val_agreement: number | null }[];
  train_seconds: number;
  seconds: number;
  examples_per_second: number;
  backend: string;
  parameters: number | null;
  command: string;
  finished: string;
}

export interface TeacherStats {
  train_accuracy: number;
  soft_targets: { temperature: number; mean_top_probability: number; mean_second_probability: number; mean_entropy_nats: number }[];
}

export interface Results {
  version: 1;
  dataset?: { dir: string; train_rows: number; test_rows: number; preprocessing: string };
  teacher?: TeacherStats & { file: string; description: string; parameters: number; test_accuracy: number };
  environment?: Record<string, string | number>;
  grid?: {
    student: string; epochs: number; lr: number; batch_size: number; seeds: number[]; temperatures: number[]; alphas: number[];
    baseline_lrs?: number[]; parity: { alpha: number; temperature: number } | null; parity_seeds?: number[];
    shuffle_buffer: number; command: string; quick: boolean;
  };
  invocations: { command: string; started: string; seconds: number; runs: number; precompute_seconds: number }[];
  runs: RunRecord[];
}

export interface ProbeDef {
  name: string;
  question: string;
  students: string[];
  lrs: number[];
  settings: { alpha: number; temperature: number | null }[];
  epochs: number;
  /** the validation curve is reported at these epochs (constant-lr Adam: epoch e of a longer run is an e-epoch run) */
  reportEpochs: number[];
  seeds: number[];
  batchSize: number;
  valFraction: number;
}

const KD = { alpha: 0.9, temperature: 4 };
const ALONE = { alpha: 0, temperature: null };

/**
 * Cheap probes on a validation split of the training data (10% of rows by row hash), never the
 * test set: they choose the grid's student and epochs, the grid is then measured once on test.
 */
export const PROBES: ProbeDef[] = [
  {
    name: 'capacity', question: 'student size (capacity gap) and epochs',
    students: ['mlp:32', 'mlp:128', 'mlp:256', 'mlp:512'], lrs: [1e-3], settings: [ALONE, KD],
    epochs: 30, reportEpochs: [5, 10, 15, 20, 30], seeds: [0, 1], batchSize: 128, valFraction: 0.1,
  },
  {
    name: 'lr', question: 'learning rate',
    students: ['mlp:256'], lrs: [3e-4, 1e-3, 3e-3], settings: [ALONE, KD],
    epochs: 30, reportEpochs: [5, 10, 15, 20, 30], seeds: [0, 1], batchSize: 128, valFraction: 0.1,
  },
];

export interface ReportPaths {
  report: string;
  results: string;
  plot: string;
  plotted: boolean;
  root: string;
}

interface Group {
  label: string;
  runs: RunRecord[];
  acc: number[];
  agree: number[];
}

const fmt = (x: number, d = 2) => (Number.isFinite(x) ? x.toFixed(d) : '–');
const pp = (xs: number[]) => (xs.length === 0 ? '–' : `${fmt(100 * mean(xs))} ± ${fmt(100 * sampleStd(xs))}`);
const signed = (x: number, d = 2) => (Number.isFinite(x) ? `${x >= 0 ? '+' : '−'}${Math.abs(x).toFixed(d)}` : '–');
const settingLabel = (alpha: number, T: number | null) => (alpha === 0 ? 'alone (alpha 0)' : `distilled alpha ${alpha}, T ${T}`);

function group(label: string, runs: RunRecord[]): Group {
  return { label, runs, acc: runs.map((r) => r.accuracy!).filter((x) => x !== null), agree: runs.map((r) => r.agreement!).filter((x) => x !== null) };
}

function table(head: string[], rows: string[][], align?: string[]): string {
  const sep = head.map((_, i) => align?.[i] ?? '---');
  return [head, sep, ...rows].map((r) => `| ${r.join(' | ')} |`).join('\n');
}

/** "beats alone" rule: difference of means larger than the larger of the two sample standard deviations. */
export function beatsBySpread(kd: number[], alone: number[]): boolean {
  return mean(kd) - mean(alone) > Math.max(sampleStd(kd), sampleStd(alone));
}

export async function writeReport(data: Results, p: ReportPaths): Promise<void> {
  const g = data.grid;
  const out: string[] = [];
  const relDoc = (f: string) => path.relative(path.dirname(p.report), f);
  const relRoot = (f: string) => path.relative(p.root, f);
  const t = data.teacher!;

  out.push('# Knowledge distillation on Fashion-MNIST: measured results', '');
  out.push(`Generated by \`tools/experiment-fashion-mnist.ts\` from the raw results in [${relRoot(p.results)}](${relDoc(p.results)}) ` +
    '(every run with its exact command, timings and backend). Do not edit by hand: rerun the command below and it is rewritten.', '');
  if (g?.quick) out.push('**This is a `--quick` smoke-test report (1 epoch): its numbers say nothing about distillation.**', '');

  if (!g) {
    out.push('No grid has been run yet.', '');
    out.push(...probeSection(data));
  } else {
    const sameRecipe = (r: RunRecord) => r.framework === 'tfjs' && r.val_fraction === 0 && r.student === g.student && r.epochs === g.epochs &&
      r.batch_size === g.batch_size && g.seeds.includes(r.seed);
    const gridRuns = data.runs.filter((r) => sameRecipe(r) && r.lr === g.lr);
    const pick = (alpha: number, T: number | null, runs = gridRuns) => runs.filter((r) => r.alpha === alpha && (alpha === 0 || r.temperature === T));
    const alone = group(settingLabel(0, null), pick(0, null));
    const baselines = (g.baseline_lrs ?? []).map((lr) => ({ lr, g: group(`alone (alpha 0), lr ${lr}`, data.runs.filter((r) => sameRecipe(r) && r.lr === lr && r.alpha === 0)) }))
      .filter((b) => b.g.acc.length > 0);
    // The strictest baseline: the student alone at whichever tried lr gave it the best mean.
    const bestAlone = [{ lr: g.lr, g: alone }, ...baselines].sort((a, b) => mean(b.g.acc) - mean(a.g.acc))[0];
    const kd = g.temperatures.flatMap((T) => g.alphas.map((alpha) => ({ alpha, T, g: group(settingLabel(alpha, T), pick(alpha, T)) })));
    const allRuns = [...gridRuns, ...baselines.flatMap((b) => b.g.runs)];
    const backends = [...new Set(allRuns.map((r) => r.backend))];
    const env = data.environment ?? {};
    const params = gridRuns.find((r) => r.parameters !== null)?.parameters;
    const gridSeconds = allRuns.reduce((s, r) => s + r.seconds, 0);
    const grid = g;

    out.push('## Setup', '');
    out.push(`- **Data**: Fashion-MNIST, all ${data.dataset?.train_rows.toLocaleString('en-US')} training and ${data.dataset?.test_rows.toLocaleString('en-US')} test images (Debian package \`dataset-fashion-mnist\`, \`${data.dataset?.dir}\`), input ${data.dataset?.preprocessing}.`);
    out.push(`- **Teacher**: \`${t.file}\`, ${t.description}; ${t.parameters.toLocaleString('en-US')} parameters. Its logits were cached once with \`precompute-logits\` (train and test caches); test accuracy from the cached logits **${fmt(100 * t.test_accuracy)}%**, train accuracy ${fmt(100 * t.train_accuracy)}%.`);
    out.push(`- **Student**: \`${g.student}\` (${describeStudent(g.student)}${params ? `, ${params.toLocaleString('en-US')} parameters` : ''}), Glorot-uniform kernels, zero biases; raw logits out.`);
    out.push(`- **Loss**: alpha·T²·KL(softmax(z_t/T) ‖ softmax(z_s/T)) + (1 − alpha)·CE(y, z_s), both terms means over the batch; alpha 0 is the student alone (labels only).`);
    out.push(`- **Training**: Adam (lr ${g.lr}, beta1 0.9, beta2 0.999, epsilon 1e-7: tfjs defaults), batch ${g.batch_size}, **${plural(g.epochs, 'epoch')}**, constant learning rate, a fresh random order of all 60,000 rows every epoch (shuffle buffer ${g.shuffle_buffer.toLocaleString('en-US')}), no validation or early stopping: the student after the last epoch is evaluated once on the 10,000 test images with \`kdcache evaluate\` (accuracy, and top-1 agreement with the teacher from the test cache).` +
      (baselines.length ? ` The student alone is also trained at lr ${baselines.map((b) => b.lr).join(', ')}, so that distillation is compared with the baseline at its own best learning rate, not only at the one that suits distillation.` : ''));
    out.push(`- **Seeds**: ${g.seeds.join(', ')} per setting (the seed sets weight init and data order). Mean ± sample standard deviation (n − 1) over seeds.`);
    out.push(`- **Backend**: ${backends.join('; ') || '–'}; tfjs ${env.tfjs}, Node ${env.node}; ${env.cpu}, ${env.cores} cores, shared with other jobs; the experiment runs one training at a time${Number(env.niceness) > 0 ? ` at niceness ${env.niceness}` : ''}.`);
    out.push(`- **Runtime**: ${allRuns.length} tfjs runs, ${fmt(gridSeconds / 60, 1)} min of training + evaluation in total (${fmt(gridSeconds / Math.max(allRuns.length, 1), 0)} s per run, ${fmt(mean(allRuns.map((r) => r.examples_per_second)) / 1000, 1)}k examples/s on average); the whole invocation, with caches and PyTorch runs, is listed under "Reproduce".`);
    out.push('');

    out.push('## Results', '');
    out.push(`Command: \`${g.command}\``, '');
    const aloneMean = mean(alone.acc);
    const dash = '–';
    const rows: string[][] = [
      ['teacher (ONNX, cached test logits)', dash, dash, dash, `${fmt(100 * t.test_accuracy)}`, dash, dash, dash, dash, dash],
      ['student alone', '0', dash, String(g.lr), pp(alone.acc), dash, pp(alone.agree), dash, dash, dash],
      ...baselines.map((b) => ['student alone', '0', dash, String(b.lr), pp(b.g.acc), signed(100 * (mean(b.g.acc) - aloneMean)), pp(b.g.agree), dash, dash, dash]),
    ];
    type Verdict = { alpha: number; T: number; diff: number; diffBest: number; beats: boolean; beatsBest: boolean; worse: boolean; p: number; n: number };
    const verdicts: Verdict[] = [];
    for (const k of kd) {
      const diff = 100 * (mean(k.g.acc) - aloneMean);
      const spread = 100 * Math.max(sampleStd(k.g.acc), sampleStd(alone.acc));
      const w = welchTest(k.g.acc, alone.acc);
      const enough = k.g.acc.length >= 2 && alone.acc.length >= 2;
      const beats = enough && beatsBySpread(k.g.acc, alone.acc);
      const beatsBest = enough && bestAlone.g.acc.length >= 2 && beatsBySpread(k.g.acc, bestAlone.g.acc);
      const worse = enough && -diff > spread;
      verdicts.push({ alpha: k.alpha, T: k.T, diff, diffBest: 100 * (mean(k.g.acc) - mean(bestAlone.g.acc)), beats, beatsBest, worse, p: w?.pGreater ?? NaN, n: k.g.acc.length });
      rows.push(['distilled', String(k.alpha), String(k.T), String(g.lr), pp(k.g.acc), signed(diff), pp(k.g.agree), beats ? '**yes**' : worse ? 'no (worse)' : 'no',
        baselines.length ? (beatsBest ? '**yes**' : 'no') : dash, w ? fmt(w.pGreater, 3) : dash]);
    }
    const bestLabel = `best alone (lr ${bestAlone.lr})`;
    out.push(table(['model', 'alpha', 'T', 'lr', 'test accuracy % (mean ± std)', 'Δ vs alone at same lr (pp)', 'agreement with teacher %', 'beats alone (same lr) by > seed spread?', `beats ${bestLabel} by > seed spread?`, 'Welch p vs alone (same lr)'], rows,
      ['---', '---:', '---:', '---:', '---:', '---:', '---:', ':---:', ':---:', '---:']));
    out.push('');
    out.push(`n = ${alone.acc.length} seeds for alone; ${[...new Set(kd.map((k) => k.g.acc.length))].join('/')} per distilled setting. ` +
      '**Rule**: distilled "beats" a baseline by more than the seed spread when mean(distilled) − mean(baseline) > max(std(distilled), std(baseline)). ' +
      `The Welch p-value (unequal variances, one-sided: distilled > alone) is a second opinion; with ${g.seeds.length} seeds per side it has little power, and ${kd.length} settings are compared with one baseline, so a single p near 0.05 is weak evidence.`, '');

    if (p.plotted) {
      out.push(`![test accuracy against temperature](${relDoc(p.plot)})`, '');
      out.push(`*Test accuracy (mean ± std over seeds) against temperature, one line per alpha; grey band: student alone at the same lr (mean ± std)${baselines.length ? '; dotted: student alone at the other lr' : ''}; dashed, top: teacher. Made by \`${PYTHON_PLOT} --results ${relRoot(p.results)} --out ${relRoot(p.plot)}\`.*`, '');
    }

    out.push('## Conclusion', '');
    const winners = verdicts.filter((v) => v.beats);
    const strictWinners = verdicts.filter((v) => v.beatsBest);
    const losers = verdicts.filter((v) => v.worse);
    const best = [...verdicts].sort((a, b) => b.diff - a.diff)[0];
    const recipe = `the \`${grid.student}\` student, lr ${grid.lr}, batch ${grid.batch_size}, ${plural(grid.epochs, 'epoch')}`;
    if (winners.length > 0) {
      out.push(`With ${recipe}, **the distilled student beats the student alone by more than the seed spread at ${winners.length} of ${verdicts.length} settings**: ` +
        winners.map((v) => `alpha ${v.alpha}, T ${v.T} (${signed(v.diff)} pp, Welch p ${fmt(v.p, 3)})`).join('; ') + '.');
    } else {
      out.push(`With ${recipe}, **the distilled student does not beat the student alone by more than the seed spread at any of the ${verdicts.length} settings**.`);
    }
    if (baselines.length) {
      out.push(`Against the student alone at its best tried learning rate (lr ${bestAlone.lr}, ${pp(bestAlone.g.acc)}%), distillation wins by more than the seed spread at ${strictWinners.length} of ${verdicts.length} settings` +
        (strictWinners.length ? `: ${strictWinners.map((v) => `alpha ${v.alpha}, T ${v.T} (${signed(v.diffBest)} pp)`).join('; ')}.` : '.'));
    }
    if (best) out.push(`The largest difference is alpha ${best.alpha}, T ${best.T}: ${signed(best.diff)} pp over the student alone at the same lr (${fmt(aloneMean * 100)}%); the teacher has ${fmt(100 * t.test_accuracy)}%.`);
    const rest = verdicts.filter((v) => !v.beats && !v.worse);
    if (rest.length > 0) out.push(`Within the seed spread of alone (no measurable effect): ${rest.map((v) => `alpha ${v.alpha}, T ${v.T} (${signed(v.diff)})`).join('; ')}.`);
    if (losers.length > 0) out.push(`Worse than alone by more than the seed spread: ${losers.map((v) => `alpha ${v.alpha}, T ${v.T} (${signed(v.diff)} pp)`).join('; ')}.`);
    const strong = verdicts.filter((v) => v.p < 0.05);
    out.push(`Welch one-sided p < 0.05 (vs alone at the same lr) at: ${strong.length ? strong.map((v) => `alpha ${v.alpha}, T ${v.T}`).join('; ') : 'no setting'}.`);
    out.push('');

    out.push('### Teacher soft targets', '');
    out.push('How much the cached teacher says besides the label, on the training set, at each temperature (mean over the 60,000 rows):', '');
    out.push(table(['T', 'top-class probability', 'second-class probability', 'entropy (nats; uniform = 2.30)'],
      t.soft_targets.map((s) => [String(s.temperature), fmt(s.mean_top_probability, 3), fmt(s.mean_second_probability, 3), fmt(s.mean_entropy_nats, 3)]), ['---:', '---:', '---:', '---:']));
    out.push('');

    const notes = path.join(path.dirname(p.results), 'discussion.md');
    if (fs.existsSync(notes)) {
      out.push(fs.readFileSync(notes, 'utf8').trim(), '');
    }

    out.push(...probeSection(data));
    out.push(...paritySection(data, g));
  }

  out.push('## Reproduce', '');
  out.push('```bash');
  out.push('apt-get install dataset-fashion-mnist python3-matplotlib python3-torch   # data; plot; PyTorch parity (Debian python3)');
  out.push('npm ci');
  if (g) out.push(`${g.command}   # caches, grid, parity, this report and the plot; resumes if killed`);
  if (data.runs.some((r) => r.val_fraction > 0)) out.push('npm run experiment:fashion-mnist -- --probes   # the probes (validation split of the training data)');
  out.push('```', '');
  const example = (pred: (r: RunRecord) => boolean) => data.runs.find(pred)?.command;
  const one = [
    ['one grid run (student alone)', example((r) => r.framework === 'tfjs' && r.val_fraction === 0 && r.alpha === 0)],
    ['one grid run (distilled)', example((r) => r.framework === 'tfjs' && r.val_fraction === 0 && r.alpha > 0)],
    ['one PyTorch parity run', example((r) => r.framework === 'pytorch')],
    ['one probe run', example((r) => r.val_fraction > 0)],
  ].filter(([, c]) => c);
  if (one.length) {
    out.push('Single runs by hand (every run\'s own command is in the JSON, field `command`; the caches are made by the experiment, or by `precompute-logits --teacher data/teacher.onnx --scale 1/255` on the same files):', '');
    for (const [what, cmd] of one) out.push(`- ${what}:`, '', '  ```bash', `  ${cmd}`, '  ```', '');
  }
  if (data.invocations?.length) {
    out.push('Invocations recorded in the JSON:', '');
    out.push(table(['started', 'command', 'runs', 'minutes'], data.invocations.map((i) => [i.started.slice(0, 16).replace('T', ' '), `\`${i.command}\``, String(i.runs), fmt(i.seconds / 60, 1)])));
    out.push('');
  }

  fs.mkdirSync(path.dirname(p.report), { recursive: true });
  await writeFileAtomic(p.report, `${out.join('\n').replace(/\n{3,}/g, '\n\n').trim()}\n`);
}

const PYTHON_PLOT = '/usr/bin/python3 tools/plot_results.py';
const plural = (n: number, word: string) => `${n} ${word}${n === 1 ? '' : 's'}`;

function describeStudent(spec: string): string {
  const [kind, sizes = ''] = spec.split(':');
  const n = sizes.split(',').filter(Boolean);
  if (kind === 'mlp') return `784 → ${n.map((h) => `${h} ReLU → `).join('')}10 MLP`;
  if (kind === 'cnn') return `${n.map((c) => `conv3×3(${c})-ReLU-maxpool2`).join(', ')}, dense(10)`;
  return spec;
}

function probeSection(data: Results): string[] {
  const out: string[] = [];
  const probeRuns = data.runs.filter((r) => r.val_fraction > 0);
  if (probeRuns.length === 0) return out;
  out.push('## Probes: why and when distillation helps', '');
  out.push('Command: `npm run experiment:fashion-mnist -- --probes` (all probes; `--probe NAME` for one).', '');
  out.push('The probes train on the 90% of the training rows outside a fixed validation split (rows whose hash of the row index is below 0.1, ' +
    '`train-student --val-fraction 0.1`) and are measured on that split, **not on the test set**; they were used to choose the grid\'s student and epochs. ' +
    'The learning rate is constant, so the validation accuracy after epoch e of a longer run is that of an e-epoch run with the same seed: one run gives the whole curve. ' +
    'Cells: validation accuracy % (mean ± std over seeds) and, in brackets, distilled − alone in pp. ' +
    'The last column is the running training accuracy over the last epoch: its gap to the validation accuracy shows how much a student overfits the labels.', '');
  for (const probe of PROBES) {
    const runs = probeRuns.filter((r) => probe.students.includes(r.student) && probe.lrs.includes(r.lr) && r.epochs === probe.epochs &&
      r.batch_size === probe.batchSize && r.val_fraction === probe.valFraction && probe.seeds.includes(r.seed));
    if (runs.length === 0) continue;
    out.push(`### ${probe.name}: ${probe.question}`, '');
    out.push(`\`npm run experiment:fashion-mnist -- --probe ${probe.name}\`: ${probe.students.map((s) => `\`${s}\``).join(', ')}; lr ${probe.lrs.join(', ')}; batch ${probe.batchSize}; ` +
      `${probe.settings.map((s) => settingLabel(s.alpha, s.temperature)).join(' and ')}; ${probe.epochs} epochs; seeds ${probe.seeds.join(', ')}.`, '');
    const at = (rs: RunRecord[], e: number) => rs.map((r) => r.curve.find((c) => c.epoch === e)?.val_accuracy).filter((x): x is number => typeof x === 'number');
    const rows: string[][] = [];
    for (const student of probe.students) {
      for (const lr of probe.lrs) {
        const sel = (s: { alpha: number; temperature: number | null }) => runs.filter((r) => r.student === student && r.lr === lr && r.alpha === s.alpha && (s.alpha === 0 || r.temperature === s.temperature));
        const alone = sel(ALONE);
        for (const s of probe.settings) {
          const rs = sel(s);
          if (rs.length === 0) continue;
          rows.push([`\`${student}\``, String(lr), settingLabel(s.alpha, s.temperature), String(rs.length), ...probe.reportEpochs.map((e) => {
            const v = at(rs, e);
            if (v.length === 0) return '–';
            const d = s.alpha > 0 && at(alone, e).length > 0 ? ` (${signed(100 * (mean(v) - mean(at(alone, e))))})` : '';
            return `${pp(v)}${d}`;
          }), fmtTrain(rs)]);
        }
      }
    }
    out.push(table(['student', 'lr', 'loss', 'seeds', ...probe.reportEpochs.map((e) => `epoch ${e}`), `train acc. during epoch ${probe.epochs}`], rows));
    out.push('', `Backends: ${[...new Set(runs.map((r) => r.backend))].join('; ')}.`);
    out.push('');
  }
  return out;
}

function fmtTrain(rs: RunRecord[]): string {
  const v = rs.map((r) => r.curve[r.curve.length - 1]?.train_accuracy).filter((x): x is number => typeof x === 'number');
  return v.length ? pp(v) : '–';
}

function paritySection(data: Results, g: NonNullable<Results['grid']>): string[] {
  const out: string[] = [];
  if (!g.parity) return out;
  const seeds = g.parity_seeds ?? g.seeds;
  const recipe = (fw: RunSpec['framework']) => data.runs.filter((r) => r.framework === fw && r.val_fraction === 0 && r.student === g.student &&
    r.epochs === g.epochs && r.lr === g.lr && r.batch_size === g.batch_size && seeds.includes(r.seed));
  const tfjs = recipe('tfjs');
  const torch = recipe('pytorch');
  out.push('## Parity with PyTorch', '');
  if (torch.length === 0) {
    out.push('No PyTorch runs recorded (they need Debian\'s `/usr/bin/python3` with torch: `apt-get install python3-torch`).', '');
    return out;
  }
  out.push('`tools/torch_student.py` trains the same student in PyTorch with the same recipe: same layers and init scheme (Glorot-uniform kernels, zero biases), ' +
    'same loss and batch-mean reduction, Adam with the tfjs defaults (epsilon 1e-7, not PyTorch\'s 1e-8), same batch size, epochs and learning rate, pixel/255 inputs, ' +
    'a fresh random permutation every epoch, and **the same teacher logits**: the experiment exports the tfjs train cache to `out/experiment/teacher-train-logits.npy` and the script reads it. ' +
    `The tfjs numbers are grid runs (seeds ${seeds.join(', ')}); the seeds of the two frameworks are unrelated random streams, so only the distributions are compared. Target: means within ±0.5 pp.`, '');
  const settings = [{ alpha: 0, temperature: null as number | null }, { alpha: g.parity.alpha, temperature: g.parity.temperature as number | null }];
  const rows: string[][] = [];
  for (const s of settings) {
    const pick = (rs: RunRecord[]) => rs.filter((r) => r.alpha === s.alpha && (s.alpha === 0 || r.temperature === s.temperature));
    const a = pick(tfjs);
    const b = pick(torch);
    const acc = (rs: RunRecord[]) => rs.map((r) => r.accuracy!);
    const diff = 100 * (mean(acc(a)) - mean(acc(b)));
    const w = welchTest(acc(a), acc(b));
    const twoSided = w ? 2 * Math.min(w.pGreater, 1 - w.pGreater) : NaN;
    rows.push([settingLabel(s.alpha, s.temperature), `${pp(acc(a))} (n=${a.length})`, `${pp(acc(b))} (n=${b.length})`, signed(diff),
      Math.abs(diff) <= 0.5 ? '**yes**' : 'no', fmt(twoSided, 2), `${pp(a.map((r) => r.agreement!))} / ${pp(b.map((r) => r.agreement!))}`,
      `${fmt(mean(a.map((r) => r.train_seconds)), 0)} s / ${fmt(mean(b.map((r) => r.train_seconds)), 0)} s`]);
  }
  out.push(table(['setting', 'tfjs test acc. %', 'PyTorch test acc. %', 'tfjs − PyTorch (pp)', 'within ±0.5 pp?', 'Welch p (two-sided)', 'agreement % tfjs / PyTorch', 'train time per run tfjs / PyTorch'], rows,
    ['---', '---:', '---:', '---:', ':---:', '---:', '---:', '---:']));
  out.push('');
  out.push(`PyTorch: ${[...new Set(torch.map((r) => r.backend))].join('; ')}. Each PyTorch run's command is in the JSON; for example:`, '');
  out.push('```bash', torch[torch.length - 1].command, '```', '');
  return out;
}
