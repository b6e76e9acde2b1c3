/**
 * Reliability: damaged, edited and mixed caches through the real CLIs. For every corruption,
 * `kdcache verify` reports it and `train-student` refuses before training (or, when it can only be
 * seen while reading, stops with an error naming the shard): never a model trained on wrong targets.
 * Also: a teacher changed after precompute, and NaN/Inf teacher outputs end to end.
 */
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { precomputeLogits } from '../src/precompute/run.js';
import { configId } from '../src/shards/manifest.js';
import { verifyCache } from '../src/shards/manifest.js';
import { sha256Hex } from '../src/util/fsx.js';
import { FIXTURES, assertOneLineError, randomFloats, scrub, tempDir, writeNpy } from './helpers/data.js';
import { runAsync as run, pool, record } from './helpers/reliability.js';

const MLP = path.join(FIXTURES, 'mlp16.onnx');
const N = 3000;
let dir: string;
let data: string;
let labels: string;
/** parquet, labels, 3 shards */
let cacheA: string;
/** arrow, same data and teacher */
let cacheArrow: string;
/** parquet, another --scale: another config_id */
let cacheOther: string;


const shard = (cache: string, i: number, ext = 'parquet') => path.join(cache, 'shards', `shard-${String(i).padStart(5, '0')}.${ext}`);
const readJson = (f: string) => JSON.parse(fs.readFileSync(f, 'utf8'));
const writeJson = (f: string, v: unknown) => fs.writeFileSync(f, JSON.stringify(v, null, 2));
function flip(file: string, at: (len: number) => number): void {
  const b = fs.readFileSync(file);
  b[at(b.length)] ^= 0x5a;
  fs.writeFileSync(file, b);
}
/** Make the manifest agree with a shard file's new bytes (a careful forger, or a confused user). */
function patchRecord(cache: string, i: number): void {
  const m = readJson(path.join(cache, 'manifest.json'));
  const bytes = fs.readFileSync(path.join(cache, m.shards[i].file));
  m.shards[i].bytes = bytes.length;
  m.shards[i].sha256 = sha256Hex(bytes);
  m.totals.bytes = m.shards.reduce((n: number, s: { bytes: number }) => n + s.bytes, 0);
  writeJson(path.join(cache, 'manifest.json'), m);
}
function editManifest(cache: string, edit: (m: any) => void): void {
  const m = readJson(path.join(cache, 'manifest.json'));
  edit(m);
  writeJson(path.join(cache, 'manifest.json'), m);
}

interface Corruption {
  name: string;
  /** the cache to start from (default cacheA) */
  from?: () => string;
  damage: (cache: string) => void;
  /** what train-student must say */
  error: RegExp;
  train?: string[];
  /** the damage is only visible while shards are read (train stops naming the shard) */
  duringTraining?: boolean;
}

const corruptions: Corruption[] = [
  { name: 'byte flipped in the middle of a parquet shard', damage: (c) => flip(shard(c, 1), (n) => n >> 1), error: /shard-00001\.parquet: sha256 differs from manifest/ },
  { name: 'byte flipped in the parquet footer', damage: (c) => flip(shard(c, 2), (n) => n - 9), error: /shard-00002\.parquet: sha256 differs/ },
  { name: 'byte flipped in the PAR1 magic', damage: (c) => flip(shard(c, 0), () => 0), error: /shard-00000\.parquet: sha256 differs/ },
  { name: 'byte flipped in an arrow shard\'s logits (uncompressed)', from: () => cacheArrow, damage: (c) => flip(shard(c, 1, 'arrow'), (n) => n - 3000), error: /shard-00001\.arrow: sha256 differs/ },
  { name: 'arrow logits byte flipped, --skip-checksums: caught when the shard is read', from: () => cacheArrow, damage: (c) => flip(shard(c, 1, 'arrow'), (n) => n - 3000),
    train: ['--skip-checksums'], error: /shard-00001\.arrow: sha256 differs from manifest/, duringTraining: true },
  { name: 'parquet byte flipped, --skip-checksums: caught when the shard is read', damage: (c) => flip(shard(c, 1), (n) => n >> 1),
    train: ['--skip-checksums'], error: /shard-00001\.parquet: (sha256 differs|cannot decode)/, duringTraining: true },
  { name: 'shard truncated to half', damage: (c) => fs.truncateSync(shard(c, 1), fs.statSync(shard(c, 1)).size >> 1), error: /shard-00001\.parquet: \d+ bytes, the manifest says \d+ \(truncated or replaced\)/ },
  { name: 'shard truncated by one byte, --skip-checksums', damage: (c) => fs.truncateSync(shard(c, 2), fs.statSync(shard(c, 2)).size - 1), train: ['--skip-checksums'], error: /shard-00002\.parquet: \d+ bytes, the manifest says/ },
  { name: 'shard emptied (0 bytes)', damage: (c) => fs.writeFileSync(shard(c, 0), ''), error: /shard-00000\.parquet: 0 bytes, the manifest says/ },
  { name: 'garbage appended to a shard', damage: (c) => fs.appendFileSync(shard(c, 2), Buffer.alloc(17, 7)), error: /shard-00002\.parquet: \d+ bytes, the manifest says/ },
  { name: 'shard deleted', damage: (c) => fs.rmSync(shard(c, 1)), error: /shard-00001\.parquet: missing/ },
  { name: 'shard replaced by a directory', damage: (c) => { fs.rmSync(shard(c, 1)); fs.mkdirSync(shard(c, 1)); }, error: /shard-00001\.parquet: not a regular file/ },
  { name: 'truncated shard with its manifest record edited to match', damage: (c) => { fs.truncateSync(shard(c, 1), 100); patchRecord(c, 1); }, error: /shard-00001\.parquet: (Parquet file is truncated|cannot read Parquet footer|not a Parquet file)/ },
  { name: 'manifest.json deleted', damage: (c) => fs.rmSync(path.join(c, 'manifest.json')), error: /manifest\.json: missing, the cache is not finished/ },
  { name: 'manifest.json truncated (not JSON)', damage: (c) => fs.truncateSync(path.join(c, 'manifest.json'), 200), error: /manifest\.json: not valid JSON/ },
  { name: 'manifest rows edited', damage: (c) => editManifest(c, (m) => { m.rows += 1; }), error: /manifest\.json: field shard_count must be|manifest\.json: field shards\[2\]\.rows must be/ },
  { name: 'manifest shard size edited', damage: (c) => editManifest(c, (m) => { m.shards[0].bytes += 1; m.totals.bytes += 1; }), error: /shard-00000\.parquet: \d+ bytes, the manifest says/ },
  { name: 'manifest shard sha256 edited', damage: (c) => editManifest(c, (m) => { m.shards[2].sha256 = 'f'.repeat(64); }), error: /shard-00002\.parquet: sha256 differs/ },
  { name: 'manifest path "../outside.parquet"', damage: (c) => editManifest(c, (m) => { m.shards[1].file = '../outside.parquet'; }), error: /manifest\.json: field shards\[1\]\.file must be a path inside the cache directory \(it escapes/ },
  { name: 'manifest absolute path "/etc/passwd"', damage: (c) => editManifest(c, (m) => { m.shards[0].file = '/etc/passwd'; }), error: /field shards\[0\]\.file must be a path inside the cache directory \(it is an absolute path\)/ },
  { name: 'manifest names another shard\'s file', damage: (c) => editManifest(c, (m) => { m.shards[1].file = m.shards[2].file; }), error: /field shards\[1\]\.file must be "shards\/shard-00001\.parquet"/ },
  { name: 'manifest config_id edited', damage: (c) => editManifest(c, (m) => { m.config_id = '0'.repeat(64); }), error: /manifest\.json: config_id does not match the configuration it records/ },
  { name: 'manifest preprocessing edited (scale)', damage: (c) => editManifest(c, (m) => { m.preprocessing.scale = 0.5; }), error: /config_id does not match the configuration it records/ },
  { name: 'manifest teacher sha256 edited', damage: (c) => editManifest(c, (m) => { m.teacher.sha256 = 'e'.repeat(64); }), error: /config_id does not match/ },
  { name: 'manifest edited and its config_id recomputed', damage: (c) => editManifest(c, (m) => { m.preprocessing.scale = 0.5; m.config_id = configId(m); }),
    error: /config\.json: describes another configuration than manifest\.json|belongs to another cache/ },
  { name: 'manifest marked incomplete', damage: (c) => editManifest(c, (m) => { m.complete = false; }), error: /the cache is incomplete/ },
  { name: 'manifest nonfinite count edited', damage: (c) => editManifest(c, (m) => { m.shards[0].nonfinite_rows = 5; }), error: /field totals\.nonfinite_rows must be the sum/ },
  { name: 'manifest shard record removed', damage: (c) => editManifest(c, (m) => { m.shards.pop(); }), error: /manifest\.json: field (shards must be 3 shard records|totals\.bytes)/ },
  { name: 'shard from another cache copied in (records patched)', damage: (c) => { fs.copyFileSync(shard(cacheOther, 1), shard(c, 1)); patchRecord(c, 1); }, error: /shard-00001\.parquet: belongs to another cache/ },
  { name: 'shard from another cache copied in', damage: (c) => fs.copyFileSync(shard(cacheOther, 2), shard(c, 2)), error: /shard-00002\.parquet: (sha256 differs|\d+ bytes, the manifest says)/ },
  { name: 'shard duplicated under another name (records patched)', damage: (c) => { fs.copyFileSync(shard(c, 0), shard(c, 1)); patchRecord(c, 1); }, error: /shard-00001\.parquet: holds rows from 0, the manifest expects 1000: shard files were renamed or mixed/ },
  { name: 'two shards swapped (records patched)', damage: (c) => {
    const [a, b] = [fs.readFileSync(shard(c, 0)), fs.readFileSync(shard(c, 2))];
    fs.writeFileSync(shard(c, 0), b);
    fs.writeFileSync(shard(c, 2), a);
    patchRecord(c, 0);
    patchRecord(c, 2);
  }, error: /shard-00000\.parquet: holds rows from 2000, the manifest expects 0/ },
  { name: 'config.json from another cache', damage: (c) => fs.copyFileSync(path.join(cacheOther, 'config.json'), path.join(c, 'config.json')), error: /config\.json: describes another configuration than manifest\.json/ },
  { name: 'config.json edited', damage: (c) => editManifestFile(path.join(c, 'config.json'), (x) => { x.rows += 0; x.preprocessing.mean = [1]; }), error: /config\.json: config_id does not match the configuration it records/ },
  { name: 'shard replaced by a symlink to a copy outside the cache', damage: (c) => {
    const outside = path.join(dir, `outside-${path.basename(c)}.parquet`);
    fs.copyFileSync(shard(c, 0), outside);
    fs.rmSync(shard(c, 0));
    fs.symlinkSync(outside, shard(c, 0));
  }, error: /shard-00000\.parquet resolves through a symbolic link to .* outside the cache directory/ },
  { name: 'shards/ replaced by a symlink to a copy outside the cache', damage: (c) => {
    const outside = path.join(dir, `outside-${path.basename(c)}`);
    fs.renameSync(path.join(c, 'shards'), outside);
    fs.symlinkSync(outside, path.join(c, 'shards'));
  }, error: /resolves through a symbolic link to .* outside the cache directory/ },
  { name: 'data file changed after precompute (--data)', damage: () => {}, train: ['--data', 'CHANGED_DATA'], error: /--data .*: not the data the cache was made from/ },
  { name: 'labels changed after precompute (--labels)', damage: () => {}, train: ['--labels', 'CHANGED_LABELS'], error: /--labels .*: these labels differ from the ones the cache was made with/ },
  { name: 'teacher file changed after precompute (--teacher)', damage: () => {}, train: ['--teacher', 'CHANGED_TEACHER'], error: /--teacher .*mlp16\.onnx: not the teacher this cache was made with/ },
];

function editManifestFile(file: string, edit: (x: any) => void): void {
  const x = readJson(file);
  edit(x);
  writeJson(file, x);
}

let changed: Record<string, string>;

before(async () => {
  dir = tempDir('kdcache-corrupt-');
  data = path.join(dir, 'x.npy');
  writeNpy(data, randomFloats(N * 16, 31), [N, 16]);
  labels = path.join(dir, 'y.npy');
  writeNpy(labels, Int32Array.from({ length: N }, (_, i) => (i * 5) % 4), [N]);
  const common = { teacher: MLP, data, labels, shardRows: 1000, device: 'cpu', quiet: true } as const;
  cacheA = (await precomputeLogits({ ...common, out: path.join(dir, 'A') })).out;
  cacheArrow = (await precomputeLogits({ ...common, out: path.join(dir, 'arrow'), format: 'arrow' })).out;
  cacheOther = (await precomputeLogits({ ...common, out: path.join(dir, 'other'), scale: 0.5 })).out;
  // Files that changed after precompute: a flipped data byte, one label moved, a re-exported teacher.
  const x = fs.readFileSync(data);
  x[x.length - 1] ^= 1;
  changed = { CHANGED_DATA: path.join(dir, 'x-changed.npy'), CHANGED_LABELS: path.join(dir, 'y-changed.npy'), CHANGED_TEACHER: path.join(dir, 'retrained', 'mlp16.onnx') };
  fs.writeFileSync(changed.CHANGED_DATA, x);
  writeNpy(changed.CHANGED_LABELS, Int32Array.from({ length: N }, (_, i) => ((i * 5) % 4 + (i === 7 ? 1 : 0)) % 4), [N]);
  fs.mkdirSync(path.dirname(changed.CHANGED_TEACHER));
  fs.copyFileSync(path.join(FIXTURES, 'mlp16_batch1.onnx'), changed.CHANGED_TEACHER);
});
after(() => fs.rmSync(dir, { recursive: true, force: true }));

describe('corrupt caches through the real CLIs', () => {
  test('every corruption is detected: verify reports it, train-student refuses with one line naming it', async () => {
    const results = await pool(corruptions, 2, async (c, i) => {
      const cache = path.join(dir, `case-${i}`);
      fs.cpSync((c.from ?? (() => cacheA))(), cache, { recursive: true });
      c.damage(cache);
      const out = path.join(dir, `case-${i}-student`);
      const extra = (c.train ?? []).map((a) => changed[a] ?? a);
      const dataArgs = extra.includes('--data') ? [] : ['--data', data];
      const r = await run('train-student', ['--logits', cache, ...dataArgs, '--student', 'mlp:8', '--epochs', '1', '--alpha', '0.5', '--backend', 'wasm', '--out', out, '--quiet', ...extra]);
      let error: string;
      try {
        error = scrub(assertOneLineError(r, c.error, `train-student: ${c.name}`));
      } catch (err) {
        return { name: c.name, detected: false, why: (err as Error).message.split('\n').slice(0, 3).join(' ') };
      }
      // Nothing trained on it: no model, no summary.
      const trained = ['model.json', 'summary.json'].filter((f) => fs.existsSync(path.join(out, f)));
      const v = c.train?.some((a) => a.startsWith('CHANGED_')) ? null : await verifyCache(cache, { checksums: true }).catch((e: Error) => e);
      const verifyDetected = v === null ? null : v instanceof Error ? /\S/.test(v.message) : !v.ok;
      fs.rmSync(cache, { recursive: true, force: true });
      return { name: c.name, detected: trained.length === 0 && verifyDetected !== false, error, trained, verifyDetected, when: c.duringTraining ? 'while reading' : 'before training' };
    });
    record('corruptions', { tried: results.length, detected: results.filter((r) => r.detected).length, cases: results });
    assert.deepEqual(results.filter((r) => !r.detected), []);
  });

  test('teacher changed after precompute: verify --teacher and a rerun into the same --out refuse it', async () => {
    const v = await run('kdcache', ['verify', cacheA, '--teacher', changed.CHANGED_TEACHER, '--quiet']);
    assertOneLineError(v, /--teacher .*mlp16\.onnx: not the teacher this cache was made with .*rerun precompute-logits/, 'kdcache verify --teacher: a re-exported teacher');
    const ok = await run('kdcache', ['verify', cacheA, '--teacher', MLP, '--quiet']);
    assert.equal(ok.code, 0, ok.stderr);
    assert.match(ok.stdout, /matches --teacher/);
    const copy = path.join(dir, 'rerun-teacher');
    fs.cpSync(cacheA, copy, { recursive: true });
    const r = await run('precompute-logits', ['--teacher', changed.CHANGED_TEACHER, '--data', data, '--labels', labels, '--out', copy, '--shard-rows', '1000', '--device', 'cpu', '--quiet']);
    assertOneLineError(r, /--out .*: holds a cache made with a different teacher \(different model file\)/, 'precompute-logits: rerun into a cache with a re-exported teacher');
  });

  test('config.json edited by hand: the same command restores it instead of writing a broken manifest', async () => {
    const copy = path.join(dir, 'config-edit');
    fs.cpSync(cacheA, copy, { recursive: true });
    fs.rmSync(path.join(copy, 'manifest.json'));
    editManifestFile(path.join(copy, 'config.json'), (x) => { x.preprocessing.scale = 2; });
    const fin = await run('kdcache', ['finalize', copy]);
    assertOneLineError(fin, /config\.json: config_id does not match the configuration it records \(the file was edited\)/, 'kdcache finalize: config.json edited by hand');
    const r = await run('precompute-logits', ['--teacher', MLP, '--data', data, '--labels', labels, '--out', copy, '--shard-rows', '1000', '--device', 'cpu', '--quiet']);
    assert.equal(r.code, 0, r.stderr);
    const v = await verifyCache(copy, { checksums: true });
    assert.deepEqual(v.problems, []);
    assert.deepEqual(readJson(path.join(copy, 'manifest.json')).shards, readJson(path.join(cacheA, 'manifest.json')).shards);
  });
});

describe('NaN/Inf teacher outputs', () => {
  const NAN = path.join(FIXTURES, 'nan_teacher.onnx');
  const BAD_ROWS = [5, 1500, 2000, 2999];
  let nanData: string;
  before(() => {
    // Log(x[:, :4]): -1 gives NaN, 0 gives -Inf.
    const x = new Float32Array(N * 16).fill(1.5);
    x[5 * 16] = -1;
    x[1500 * 16 + 1] = 0;
    x[2000 * 16 + 2] = -2;
    x[2999 * 16 + 3] = 0;
    nanData = path.join(dir, 'nan-x.npy');
    writeNpy(nanData, x, [N, 16]);
  });
  const args = (out: string, extra: string[] = []) => ['--teacher', NAN, '--data', nanData, '--out', out, '--shard-rows', '1000', '--device', 'cpu', ...extra];
  const warning = new RegExp(`warning: 4 rows have NaN/Inf teacher outputs \\(rows ${BAD_ROWS.join(', ')}\\)`);

  test('precompute reports count and rows with exit code 3, also under --quiet and after a resume', async () => {
    const out = path.join(dir, 'nan-cache');
    const full = await run('precompute-logits', args(out, ['--quiet']));
    assert.equal(full.code, 3, full.stderr);
    assert.match(full.stderr, warning);
    // A run killed after some shards, then resumed: the resumed run still reports every bad row.
    const part = path.join(dir, 'nan-part');
    assert.equal((await run('precompute-logits', args(part, ['--partition', '0/3', '--quiet']))).code, 3);
    const resumed = await run('precompute-logits', args(part, ['--quiet']));
    assert.equal(resumed.code, 3, resumed.stderr);
    assert.match(resumed.stderr, warning);
    const again = await run('precompute-logits', args(out, ['--quiet']));
    assert.equal(again.code, 3, 'a rerun of the complete cache reports them too');
    assert.equal(readJson(path.join(out, 'manifest.json')).totals.nonfinite_rows, 4);
    record('nonfinite', { rows: BAD_ROWS, precomputeWarning: full.stderr.trim().split('\n').find((l) => l.startsWith('warning:')) });
  });

  test('train-student says how many rows it leaves out and records it; they never reach the loss', async () => {
    const cache = path.join(dir, 'nan-cache');
    const out = path.join(dir, 'nan-student');
    const r = await run('train-student', ['--logits', cache, '--data', nanData, '--student', 'mlp:8', '--epochs', '1', '--backend', 'wasm', '--out', out]);
    assert.equal(r.code, 0, r.stderr);
    const notice = r.stderr.split('\n').find((l) => l.startsWith('notice: 4 cached rows have NaN/Inf teacher logits'));
    assert.ok(notice, r.stderr);
    const s = readJson(path.join(out, 'summary.json'));
    assert.equal(s.nonfinite_rows_skipped, 4);
    assert.equal(s.train.examples, N - 4);
    assert.ok(Number.isFinite(s.train.loss));
    record('nonfinite', { trainNotice: notice, trainedExamples: s.train.examples });
  });
});
