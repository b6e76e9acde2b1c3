import * as path from 'node:path';
import type { CommandModule } from 'yargs';
import { checkTeacherFile, finalizeCache, problemLines, readConfig, readManifest, verifyCache } from '../shards/manifest.js';
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
      `preprocess  input [${m.preprocessing.input_shape.join(', ')}]  scale ${m.preprocessing.scale}  mean [${m.preprocessing.mean.join(', ')}]  std [${m.preprocessing.std.join(', ')}]`,
      `output      [${m.output.shape.join(', ')}] per example, stored raw (temperature is applied at training time)`,
      `storage     ${m.storage.format} ${m.storage.compression}, ${m.storage.logits_dtype}, ${m.shards.length} shards of ${m.storage.shard_rows} rows, ${formatBytes(m.totals.bytes)} (${(m.totals.bytes / m.rows).toFixed(1)} B/row)`,
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
        console.log(`row ${cols.row[i]}${cols.label ? `  label ${cols.label[i]}` : ''}  logits [${vals.join(', ')}${w > show ? `, ... (${w})` : ''}]`);
      }
    }
  },
};
