import * as path from 'node:path';
import type { CommandModule } from 'yargs';
import { checkTeacherFile, finalizeCache, problemLines, readConfig, readManifest, verifyCache } from '../shards/manifest.js';
import type { FidelityRecord, StorageSpec } from '../shards/format.js';
import type { Preprocessing } from '../shards/manifest-types.js';
import { readShardFile } from '../shards/reader.js';
import { halfToFloat } from '../util/dtype.js';
import { UserError } from '../util/errors.js';
import { createProgress, formatBytes, formatCount } from '../util/progress.js';

export const verifyCommand: CommandModule<object, { dir: string; checksums: boolean; quiet: boolean; teacher?: string }> = {
  command: 'verify <dir>',
  describe: 'check a cache: manifest, coverage of every row, every shard\'s size and sha256',
  builder: (y) => y
    .positional('dir', { type: 'string', demandOption: true, describe: 'cache directory' })
    .option('checksums', { type: 'boolean', default: true, describe: 'hash every shard (--no-checksums: sizes and metadata only)' })
    .option('teacher', { type: 'string', describe: 'also check that this .onnx file is the teacher the cache was made with (sha256)' })
    .option('quiet', { type: 'boolean', default: false }),
  handler: async (a) => {
    let progress: ReturnType<typeof createProgress> | undefined;
    const report = await verifyCache(a.dir, {
      checksums: a.checksums,
      onProgress: (p) => {
        progress ??= createProgress({ label: 'verify', total: p.total, unit: 'shards', quiet: a.quiet });
        progress.update(p.done);
      },
    });
    progress?.done();
    for (const line of problemLines(report)) process.stderr.write(`${path.join(a.dir, line)}\n`);
    if (!report.ok) throw new UserError(`${a.dir}: ${report.problems.length} problem(s) found (listed above); re-run precompute-logits with the same arguments to repair the cache`);
    const m = report.manifest!;
    if (a.teacher) await checkTeacherFile(m, a.teacher);
    console.log(`ok: ${a.dir}: ${formatCount(m.rows)} rows, ${m.shards.length} shards, ${formatBytes(m.totals.bytes)}, every row present once, ` +
      `${report.checksums ? 'all sha256 match' : 'sizes and metadata match (checksums skipped)'}; teacher ${m.teacher.name} ${m.teacher.sha256.slice(0, 12)}${a.teacher ? ' (matches --teacher)' : ''}`);
  },
};

export const finalizeCommand: CommandModule<object, { dir: string }> = {
  command: 'finalize <dir>',
  describe: 'write manifest.json once every partition has finished its shards',
  builder: (y) => y.positional('dir', { type: 'string', demandOption: true, describe: 'cache directory' }),
  handler: async (a) => {
    const r = await finalizeCache(a.dir);
    if (!r.manifest) {
      const list = r.missing.slice(0, 10).join(', ') + (r.missing.length > 10 ? ', ...' : '');
      throw new UserError(`${a.dir}: ${r.missing.length} shard(s) missing (${list}); run the partitions that own them, then finalize again`);
    }
    console.log(`ok: wrote ${path.join(a.dir, 'manifest.json')}: ${formatCount(r.manifest.rows)} rows in ${r.manifest.shards.length} shards`);
  },
};

function preprocessText(p: Preprocessing): string {
  const base = p.input_type === 'float32' ? `scale ${p.scale}  mean [${p.mean.join(', ')}]  std [${p.std.join(', ')}]` : `${p.input_type} ids fed as they are`;
  const pad = p.pad_id !== undefined ? `  pad id ${p.pad_id} (not stored)` : '';
  const mask = p.mask_input ? `  ${p.mask_input.kind} input '${p.mask_input.name}' ${p.mask_input.type}` : '';
  return `${base}${pad}${mask}`;
}

function teacherOutputText(s: StorageSpec): string {
  const o = s.teacher_output;
  return o ? `; the teacher outputs ${o.output === 'probs' ? 'probabilities' : 'log-probabilities'}${o.detected ? ' (detected)' : ''}, stored as log-probabilities` : '';
}

function fidelityText(f: FidelityRecord, t: number, what = 'top-k'): string {
  return `retained mass ${f.mass_mean.toFixed(4)} mean / ${f.mass_min.toFixed(4)} min at T=1, ${f.mass_t_mean.toFixed(4)} / ${f.mass_t_min.toFixed(4)} at T=${t}; ` +
    `KL(full || ${what} + uniform tail) ${f.kl_mean.toExponential(3)} at T=1, ${f.kl_t_mean.toExponential(3)} at T=${t} (${f.kl_rows} sampled rows)`;
}

export const inspectCommand: CommandModule<object, { dir: string; rows: number; json: boolean }> = {
  command: 'inspect <dir>',
  describe: 'print what a cache holds and its first rows',
  builder: (y) => y
    .positional('dir', { type: 'string', demandOption: true, describe: 'cache directory' })
    .option('rows', { type: 'number', default: 3, describe: 'rows to print' })
    .option('json', { type: 'boolean', default: false, describe: 'print the whole manifest as JSON' }),
  handler: async (a) => {
    let m;
    try {
      m = await readManifest(a.dir);
    } catch (err) {
      // An unfinished cache still has a config worth showing.
      const c = await readConfig(a.dir).catch(() => { throw err; });
      console.log(`${a.dir}: incomplete cache (no complete manifest.json): ${formatCount(c.rows)} rows planned in ${c.shard_count} shards`);
      return;
    }
    if (a.json) {
      console.log(JSON.stringify(m, null, 2));
      return;
    }
    const t = m.teacher;
    console.log([
      `cache       ${a.dir}  (format v${m.format_version}, kdcache ${m.tool.version}, complete: ${m.complete})`,
      `teacher     ${t.name}  sha256 ${t.sha256}  ${formatBytes(t.bytes)}  opset ${t.opset ?? '?'}  ${t.producer ?? ''}`,
      `            ${t.input_name} [${t.input_shape.join(', ')}] ${t.input_type} -> ${t.output_name} [${t.output_shape.join(', ')}] ${t.output_type}`,
      `provider    ${m.execution_providers.join(', ')}`,
      `dataset     ${m.dataset.files.map((f) => f.name).join(', ')}  (${m.dataset.format}, ${formatCount(m.dataset.count)} x [${m.dataset.example_shape.join(', ')}] ${m.dataset.dtype})`,
      `labels      ${m.labels ? `${m.labels.files.map((f) => f.name).join(', ')}${m.labels.column ? ` column ${m.labels.column}` : ''}` : 'none'}`,
      `preprocess  input [${m.preprocessing.input_shape.join(', ')}]  ${preprocessText(m.preprocessing)}`,
      `output      [${m.output.shape.join(', ')}] per example, stored raw (temperature is applied at training time)${teacherOutputText(m.storage)}`,
      `storage     ${m.storage.format} ${m.storage.compression}, ${m.storage.logits_dtype}, ${m.shards.length} shards of ${m.storage.shard_rows} rows, ${formatBytes(m.totals.bytes)} (${(m.totals.bytes / m.rows).toFixed(1)} B/row${m.totals.positions !== undefined ? `, ${formatCount(m.totals.positions)} positions, ${(m.totals.bytes / Math.max(m.totals.positions, 1)).toFixed(1)} B/position` : ''})`,
      ...(m.storage.layout === 'sequence' ? ['layout      sequence: one row per real position (row, position)'] : []),
      ...(m.totals.fidelity ? [m.storage.kind === 'sample'
        ? `sampled     ${m.storage.samples} draws per row at T=${m.storage.sample_temperature}, up to ${m.storage.k} distinct of ${m.storage.classes} classes; the drawn classes' ${fidelityText(m.totals.fidelity, m.storage.report_temperature!, 'drawn classes')}`
        : `top-k       k = ${m.storage.k} of ${m.storage.classes} classes; ${fidelityText(m.totals.fidelity, m.storage.report_temperature!)}`] : []),
      `columns     ${m.storage.columns.map((c) => `${c.name}: ${c.type}`).join(', ')}`,
      `non-finite  ${m.totals.nonfinite_rows} rows`,
    ].join('\n'));
    if (a.rows > 0 && m.shards.length > 0) {
      const cols = await readShardFile(a.dir, m.shards[0], m.storage.format, { expectConfigId: m.config_id });
      const w = cols.logitsWidth;
      const show = Math.min(w, 8);
      for (let i = 0; i < Math.min(a.rows, cols.rows); i++) {
        const vals: string[] = [];
        for (let j = 0; j < show; j++) {
          const v = cols.logits[i * w + j];
          vals.push((cols.logitsDtype === 'float16' ? halfToFloat(v) : v).toFixed(3));
        }
        const where = `row ${cols.row[i]}${cols.position ? ` position ${cols.position[i]}` : ''}${cols.label ? `  label ${cols.label[i]}` : ''}`;
        const classes = cols.topkIndices ? `  classes [${[...cols.topkIndices.subarray(i * w, i * w + show)].join(', ')}${w > show ? ', ...' : ''}]` : '';
        const counts = cols.sampleCounts ? `  counts [${[...cols.sampleCounts.subarray(i * w, i * w + show)].join(', ')}${w > show ? ', ...' : ''}]` : '';
        const lse = cols.logsumexp ? `  logsumexp ${cols.logsumexp[i].toFixed(3)}` : '';
        console.log(`${where}${classes}${counts}  ${cols.sampleCounts ? 'logits' : cols.topkIndices ? 'top-k logits' : 'logits'} [${vals.join(', ')}${w > show ? `, ... (${w})` : ''}]${lse}`);
      }
    }
  },
};
