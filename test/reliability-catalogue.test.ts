/**
 * Reliability: a catalogue of bad inputs (flags, data files, teachers, caches, checkpoints) through
 * the real CLIs. Each must end with exactly one `error: ...` line that names the flag or file, a
 * non-zero exit and no stack trace. With KDCACHE_RELIABILITY_OUT set, every case and its error line is
 * recorded for docs/reliability.md (bench/reliability.ts); test/precompute-errors.test.ts and the other
 * reliability files add theirs the same way.
 */
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { gzipSync } from 'node:zlib';
import { after, before, describe, test } from 'node:test';
import { precomputeLogits } from '../src/precompute/run.js';
import { encodeNpy } from '../src/data/npy.js';
import { FIXTURES, assertOneLineError, randomFloats, tempDir, writeIdxU8, writeNpy } from './helpers/data.js';
import { runAsync as run, pool } from './helpers/reliability.js';

const MLP = path.join(FIXTURES, 'mlp16.onnx');
const N = 200;
let dir: string;
let data: string;
let cache: string;
let student: string;
const p = (name: string) => path.join(dir, name);

type Bin = 'precompute-logits' | 'train-student' | 'kdcache';


interface Case {
  label: string;
  bin: Bin;
  args: () => string[];
  error: RegExp;
}

const pre = (...a: string[]) => ['--device', 'cpu', '--quiet', ...a];
const withData = (...a: string[]) => pre('--teacher', MLP, '--data', data, '--out', p(`out-${a.join('-').replace(/\W+/g, '')}`), ...a);
const train = (...a: string[]) => ['--quiet', '--backend', 'wasm', '--epochs', '1', ...a];
const trainOk = (...a: string[]) => train('--logits', cache, '--data', data, '--student', 'mlp:8', '--out', p(`student-${a.join('-').replace(/\W+/g, '')}`), ...a);

const cases: Case[] = [
  // precompute-logits: data files
  { label: '--data is a directory', bin: 'precompute-logits', args: () => pre('--teacher', MLP, '--data', p('dir.npy'), '--out', p('o1')), error: /dir\.npy: is a directory, expected a \.npy file/ },
  { label: '--data of an unknown format', bin: 'precompute-logits', args: () => pre('--teacher', MLP, '--data', p('x.csv'), '--out', p('o2')), error: /x\.csv: unknown data format; use \.npy, IDX/ },
  { label: '--data .npy with no rows', bin: 'precompute-logits', args: () => pre('--teacher', MLP, '--data', p('empty.npy'), '--out', p('o3')), error: /empty\.npy: the dataset has no examples/ },
  { label: '--data .npy whose header claims 2^40 rows', bin: 'precompute-logits', args: () => pre('--teacher', MLP, '--data', p('huge.npy'), '--out', p('o4')), error: /huge\.npy: truncated \.npy file: header declares shape \[1099511627776, 16\]/ },
  { label: '--data .npy in Fortran order', bin: 'precompute-logits', args: () => pre('--teacher', MLP, '--data', p('fortran.npy'), '--out', p('o5')), error: /fortran\.npy: Fortran-order arrays are not supported/ },
  { label: '--data .npy with a newline in its dtype string', bin: 'precompute-logits', args: () => pre('--teacher', MLP, '--data', p('newline.npy'), '--out', p('o6')), error: /newline\.npy: unsupported \.npy dtype '<f\\n4'/ },
  { label: '--data IDX with a bad magic number', bin: 'precompute-logits', args: () => pre('--teacher', MLP, '--data', p('bad.idx3-ubyte'), '--out', p('o7')), error: /bad\.idx3-ubyte: not an IDX file \(bad magic\)/ },
  { label: '--data gzip IDX whose header claims more than gzip can hold', bin: 'precompute-logits', args: () => pre('--teacher', MLP, '--data', p('bomb.idx3-ubyte.gz'), '--out', p('o8')), error: /bomb\.idx3-ubyte\.gz: IDX header declares \d+ bytes, more than a \d+-byte gzip file can hold/ },
  { label: '--data .arrow that is not Arrow', bin: 'precompute-logits', args: () => pre('--teacher', MLP, '--data', p('junk.arrow'), '--out', p('o9'), '--input-column', 'x'), error: /junk\.arrow: cannot read as Arrow IPC/ },
  { label: '--data .parquet without --input-column', bin: 'precompute-logits', args: () => pre('--teacher', MLP, '--data', p('in.parquet'), '--out', p('o10')), error: /--input-column is required for parquet data/ },
  { label: '--input-column on .npy data', bin: 'precompute-logits', args: () => withData('--input-column', 'x'), error: /--input-column applies to Parquet\/Arrow data, not npy/ },
  { label: '--labels is a directory', bin: 'precompute-logits', args: () => withData('--labels', p('dir.npy')), error: /dir\.npy: is a directory, expected a \.npy file/ },
  { label: '--labels with fractional values', bin: 'precompute-logits', args: () => withData('--labels', p('frac-labels.npy')), error: /frac-labels\.npy: label at index 0 is 0\.5; labels must be non-negative integer class indices/ },
  { label: '--labels of two dimensions', bin: 'precompute-logits', args: () => withData('--labels', p('labels2d.npy')), error: /labels2d\.npy: labels must be a 1-d array of class indices, got shape \[200, 2\]/ },
  { label: '--labels and --label-column together', bin: 'precompute-logits', args: () => withData('--labels', p('labels.npy'), '--label-column', 'y'), error: /--labels and --label-column are exclusive/ },
  // precompute-logits: teachers
  { label: '--teacher truncated to half its size', bin: 'precompute-logits', args: () => pre('--teacher', p('half.onnx'), '--data', data, '--out', p('o11')), error: /--teacher .*half\.onnx: (not an ONNX model|onnxruntime cannot load this model)/ },
  { label: '--teacher empty file', bin: 'precompute-logits', args: () => pre('--teacher', p('empty.onnx'), '--data', data, '--out', p('o12')), error: /--teacher .*empty\.onnx: not an ONNX model/ },
  { label: '--teacher with external data hidden in a sparse initializer (../../etc/passwd)', bin: 'precompute-logits', args: () => pre('--teacher', path.join(FIXTURES, 'sparse_escape.onnx'), '--data', data, '--out', p('o13')), error: /refuses external data '\.\.\/\.\.\/etc\/passwd' outside the model's directory/ },
  { label: '--teacher whose external data file is a symlink leading outside its directory', bin: 'precompute-logits', args: () => pre('--teacher', p('linked/external_ok.onnx'), '--data', data, '--out', p('o14')), error: /refuses external data 'external_ok\.bin' outside the model's directory/ },
  { label: '--teacher whose external data file is missing', bin: 'precompute-logits', args: () => pre('--teacher', p('nobin/external_ok.onnx'), '--data', data, '--out', p('o15')), error: /external data file 'external_ok\.bin' is missing; copy it next to the model/ },
  { label: '--out whose shards/ is a symlink leading outside it', bin: 'precompute-logits', args: () => pre('--teacher', MLP, '--data', data, '--out', p('linked-new')), error: /linked-new: shards resolves through a symbolic link to .*elsewhere, outside the cache directory/ },
  // precompute-logits: flags
  { label: '--batch-size 0', bin: 'precompute-logits', args: () => withData('--batch-size', '0'), error: /--batch-size 0: expected a positive integer/ },
  { label: '--shard-rows -5', bin: 'precompute-logits', args: () => withData('--shard-rows', '-5'), error: /--shard-rows -5: expected a positive integer/ },
  { label: '--partition abc', bin: 'precompute-logits', args: () => withData('--partition', 'abc'), error: /--partition abc: expected i\/n/ },
  { label: '--partitions without an index', bin: 'precompute-logits', args: () => withData('--partitions', '4'), error: /--partitions n needs a partition index/ },
  { label: '--input-shape of another rank than the teacher\'s input', bin: 'precompute-logits', args: () => withData('--input-shape', '4,4'), error: /--teacher mlp16\.onnx: inference failed on input \[\d+, 4, 4\] \(Invalid rank for input: x.*\); check --input-shape/ },
  { label: '--std 0', bin: 'precompute-logits', args: () => withData('--std', '0'), error: /--std: values must be non-zero/ },
  { label: '--mean with more values than channels', bin: 'precompute-logits', args: () => withData('--mean', '1,2,3'), error: /--mean: 3 values for 1 channels/ },
  { label: '--format csv', bin: 'precompute-logits', args: () => withData('--format', 'csv'), error: /Invalid values: Argument: format, Given: "csv", Choices: "parquet", "arrow"; see precompute-logits --help/ },
  { label: 'a misspelt flag (--tempreature)', bin: 'precompute-logits', args: () => withData('--tempreature', '4'), error: /Unknown argument: tempreature/ },
  // train-student
  { label: '--logits is a file', bin: 'train-student', args: () => train('--logits', data, '--student', 'mlp:8', '--out', p('s1')), error: /--logits .*x\.npy: not a directory/ },
  { label: '--logits is an empty directory', bin: 'train-student', args: () => train('--logits', p('emptydir'), '--student', 'mlp:8', '--out', p('s2')), error: /--logits .*emptydir: not a kdcache cache \(no manifest\.json\)/ },
  { label: '--student cnn:0', bin: 'train-student', args: () => trainOk('--student', 'cnn:0'), error: /--student/ },
  { label: '--student naming a missing model.json', bin: 'train-student', args: () => trainOk('--student', p('nope/model.json')), error: /nope\/model\.json/ },
  { label: '--alpha 2', bin: 'train-student', args: () => trainOk('--alpha', '2'), error: /--alpha 2: must be in \[0, 1\]/ },
  { label: '--temperature 0', bin: 'train-student', args: () => trainOk('--temperature', '0'), error: /--temperature 0: must be a positive number/ },
  { label: '--epochs fast', bin: 'train-student', args: () => trainOk('--epochs', 'fast'), error: /--epochs fast: expected a number/ },
  { label: '--val-fraction 1', bin: 'train-student', args: () => trainOk('--val-fraction', '1'), error: /--val-fraction 1: must be in \[0, 1\)/ },
  { label: '--data is a directory', bin: 'train-student', args: () => trainOk('--data', p('dir.npy')), error: /dir\.npy: (is a directory|.*is a directory)/ },
  { label: '--labels of the wrong length', bin: 'train-student', args: () => trainOk('--labels', p('short-labels.npy')), error: /--labels .*short-labels\.npy: 199 labels, but the cache's dataset has 200 rows/ },
  { label: '--teacher that does not exist', bin: 'train-student', args: () => trainOk('--teacher', p('nope.onnx')), error: /--teacher .*nope\.onnx: no such file or directory/ },
  { label: '--out holding another run, without --resume', bin: 'train-student', args: () => train('--logits', cache, '--data', data, '--student', 'mlp:8', '--out', student), error: /--out .*: already holds a training run \(checkpoint after epoch 1\); pass --resume/ },
  { label: '--resume with a checkpoint state.json edited into the wrong shape', bin: 'train-student', args: () => train('--logits', cache, '--data', data, '--student', 'mlp:8', '--out', p('bad-state'), '--resume', '--epochs', '2'), error: /state\.json: field run must be an object.*delete .*checkpoint to start over/ },
  { label: '--resume with a truncated optimizer.bin', bin: 'train-student', args: () => train('--logits', cache, '--data', data, '--student', 'mlp:8', '--out', p('bad-opt'), '--resume', '--epochs', '2'), error: /optimizer\.bin: 10 bytes, the checkpoint describes \d+; the checkpoint is damaged/ },
  { label: '--resume with a checkpoint made with other options', bin: 'train-student', args: () => train('--logits', cache, '--data', data, '--student', 'mlp:8', '--out', student, '--resume', '--epochs', '2', '--seed', '5'), error: /--resume: the checkpoint in .* was made with different options: --seed/ },
  // kdcache
  { label: 'kdcache verify on a file', bin: 'kdcache', args: () => ['verify', data], error: /x\.npy: not a directory; pass the --out directory of precompute-logits/ },
  { label: 'kdcache verify on a missing directory', bin: 'kdcache', args: () => ['verify', p('nope')], error: /nope: no such cache directory/ },
  { label: 'kdcache finalize on a missing directory', bin: 'kdcache', args: () => ['finalize', p('nope')], error: /nope: no such cache directory/ },
  { label: 'kdcache finalize with shards missing', bin: 'kdcache', args: () => ['finalize', p('partial')], error: /partial: 1 shard\(s\) missing \(1\); run the partitions that own them/ },
  { label: 'kdcache finalize on a cache whose shards/ is a symlink leading outside it', bin: 'kdcache', args: () => ['finalize', p('linked-out')], error: /linked-out: shards resolves through a symbolic link to .*elsewhere, outside the cache directory/ },
  { label: 'kdcache inspect on an empty directory', bin: 'kdcache', args: () => ['inspect', p('emptydir')], error: /emptydir\/(manifest|config)\.json: (missing|no such file)/ },
  { label: 'kdcache verify --teacher with another model', bin: 'kdcache', args: () => ['verify', cache, '--teacher', path.join(FIXTURES, 'two_io.onnx'), '--quiet'], error: /--teacher .*two_io\.onnx: not the teacher this cache was made with/ },
  { label: 'kdcache evaluate with a missing model', bin: 'kdcache', args: () => ['evaluate', '--model', p('nope'), '--data', data, '--labels', p('labels.npy'), '--quiet', '--backend', 'wasm'], error: /nope/ },
  { label: 'kdcache with an unknown command', bin: 'kdcache', args: () => ['frobnicate'], error: /Unknown argument: frobnicate|give a command/ },
];

before(async () => {
  dir = tempDir('kdcache-catalogue-');
  data = p('x.npy');
  writeNpy(data, randomFloats(N * 16, 51), [N, 16]);
  writeNpy(p('labels.npy'), Int32Array.from({ length: N }, (_, i) => i % 4), [N]);
  writeNpy(p('short-labels.npy'), Int32Array.from({ length: N - 1 }, (_, i) => i % 4), [N - 1]);
  writeNpy(p('frac-labels.npy'), Float32Array.from({ length: N }, () => 0.5), [N]);
  writeNpy(p('labels2d.npy'), new Int32Array(N * 2), [N, 2]);
  fs.mkdirSync(p('dir.npy'));
  fs.mkdirSync(p('emptydir'));
  fs.writeFileSync(p('x.csv'), 'a,b\n1,2\n');
  writeNpy(p('empty.npy'), new Float32Array(0), [0, 16]);
  const npyText = (shape: string, extra = '') => {
    const b = Buffer.from(encodeNpy(randomFloats(4 * 16), 'float32', [4, 16]));
    const len = b.readUInt16LE(8);
    const header = b.subarray(10, 10 + len).toString('latin1').replace("'shape': (4, 16)", `'shape': ${shape}`).replace('False', extra || 'False');
    const h = Buffer.alloc(10);
    b.copy(h, 0, 0, 8);
    h.writeUInt16LE(header.length, 8);
    return Buffer.concat([h, Buffer.from(header, 'latin1'), b.subarray(10 + len)]);
  };
  fs.writeFileSync(p('huge.npy'), npyText('(1099511627776, 16)'));
  fs.writeFileSync(p('fortran.npy'), npyText('(4, 16)', 'True'));
  fs.writeFileSync(p('newline.npy'), Buffer.from(npyText('(4, 16)').toString('latin1').replace("'<f4'", "'<f\n4'"), 'latin1'));
  fs.writeFileSync(p('bad.idx3-ubyte'), Buffer.from([1, 2, 3, 4, 5, 6, 7, 8]));
  // A 2-d IDX claiming 65535 x 65535 bytes in a few hundred bytes of gzip.
  const head = Buffer.from([0, 0, 8, 2, 0, 0, 0xff, 0xff, 0, 0, 0xff, 0xff]);
  fs.writeFileSync(p('bomb.idx3-ubyte.gz'), gzipSync(Buffer.concat([head, Buffer.alloc(100)])));
  writeIdxU8(p('ok.idx3-ubyte'), new Uint8Array(16), [1, 16]);
  fs.writeFileSync(p('junk.arrow'), 'not arrow at all');
  fs.writeFileSync(p('in.parquet'), 'PAR1 not really PAR1');
  const onnx = fs.readFileSync(MLP);
  fs.writeFileSync(p('half.onnx'), onnx.subarray(0, onnx.length >> 1));
  fs.writeFileSync(p('empty.onnx'), '');
  // The same model with its external data replaced by a link to a file outside its directory, or missing.
  for (const sub of ['linked', 'nobin']) {
    fs.mkdirSync(p(sub));
    fs.copyFileSync(path.join(FIXTURES, 'external_ok.onnx'), p(`${sub}/external_ok.onnx`));
  }
  fs.copyFileSync(path.join(FIXTURES, 'external_ok.bin'), p('outside.bin'));
  fs.symlinkSync(p('outside.bin'), p('linked/external_ok.bin'));

  cache = p('cache');
  await precomputeLogits({ teacher: MLP, data, labels: p('labels.npy'), out: cache, shardRows: 100, device: 'cpu', quiet: true });
  await precomputeLogits({ teacher: MLP, data, out: p('partial'), shardRows: 100, partition: '0/2', device: 'cpu', quiet: true });
  // A shards/ that links elsewhere, holding a file named like a stale temp file: it must survive.
  fs.mkdirSync(p('linked-out'));
  fs.mkdirSync(p('elsewhere'));
  fs.writeFileSync(p('elsewhere/.victim.tmp-999999-deadbeef'), 'not kdcache\'s');
  fs.symlinkSync(p('elsewhere'), p('linked-out/shards'));
  fs.copyFileSync(p('partial/config.json'), p('linked-out/config.json'));
  fs.mkdirSync(p('linked-new'));
  fs.symlinkSync(p('elsewhere'), p('linked-new/shards'));
  // One finished run, and two copies of it with a damaged checkpoint.
  student = p('student');
  const r = await run('train-student', train('--logits', cache, '--data', data, '--student', 'mlp:8', '--out', student));
  if (r.code !== 0) throw new Error(r.stderr);
  for (const [name, damage] of [
    ['bad-state', (ck: string) => fs.writeFileSync(path.join(ck, 'state.json'), JSON.stringify({ ...JSON.parse(fs.readFileSync(path.join(ck, 'state.json'), 'utf8')), run: 'x' }))],
    ['bad-opt', (ck: string) => fs.truncateSync(path.join(ck, 'optimizer.bin'), 10)],
  ] as const) {
    fs.cpSync(student, p(name), { recursive: true });
    damage(p(`${name}/checkpoint/epoch-000001`));
  }
});
after(() => fs.rmSync(dir, { recursive: true, force: true }));

describe('catalogue of bad inputs through the real CLIs', () => {
  test(`${cases.length} bad inputs, each one line naming the flag or file`, async () => {
    const failures = (await pool(cases, 2, async (c) => {
      const r = await run(c.bin, c.args());
      try {
        assertOneLineError(r, c.error, `${c.bin}: ${c.label}`);
        return null;
      } catch (err) {
        return `${c.bin}: ${c.label}: ${(err as Error).message}`;
      }
    })).filter((f) => f !== null);
    if (failures.length) throw new Error(failures.join('\n'));
    assert.ok(fs.existsSync(p('elsewhere/.victim.tmp-999999-deadbeef')), 'a file outside the cache was removed');
  });
});
