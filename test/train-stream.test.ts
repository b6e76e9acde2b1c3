import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { ExampleTable } from '../src/train/examples.js';
import { Rng, deriveRng, mixSeed, rowHash01, shuffleInPlace } from '../src/train/rng.js';
import { type MovePixelRows, type MoveRows, movePixelRowsJs, moveRowsJs } from '../src/train/row-moves.js';
import { ShuffleBuffer } from '../src/train/shuffle-buffer.js';
import { type ChunkSource, memorySource, streamBatches } from '../src/train/stream.js';
import { countHeldOut, isHeldOut } from '../src/train/validation.js';
import { loadAddon } from '../src/util/addon.js';

const D = 3;
const K = 2;

/** Chunks of consecutive rows; x = [row, row + 0.5, -row], t = [row, -row], y = row % 5. */
function makeChunks(sizes: number[]): ExampleTable[] {
  let next = 0;
  return sizes.map((n) => {
    const t = new ExampleTable(n, D, K);
    for (let i = 0; i < n; i++, next++) {
      t.x.set([next, next + 0.5, -next], i * D);
      t.t.set([next, -next], i * K);
      t.y[i] = next % 5;
      t.row[i] = next;
    }
    t.length = n;
    return t;
  });
}

async function collect(source: ChunkSource, order: number[], opts: Parameters<typeof streamBatches>[2]) {
  const rows: number[] = [];
  const sizes: number[] = [];
  for await (const b of streamBatches(source, order, opts)) {
    sizes.push(b.length);
    for (let i = 0; i < b.length; i++) {
      const r = b.row[i];
      // every field of a row travels together
      assert.deepEqual([...b.x.subarray(i * D, i * D + D)], [r, r + 0.5, -r]);
      assert.deepEqual([...b.t.subarray(i * K, i * K + K)], [r, -r]);
      assert.equal(b.y[i], r % 5);
      rows.push(r);
    }
  }
  return { rows, sizes };
}

describe('rng', () => {
  test('seeded, reproducible, state can be saved and restored', () => {
    const a = new Rng(42);
    const b = new Rng(42);
    const seqA = Array.from({ length: 5 }, () => a.nextU32());
    assert.deepEqual(Array.from({ length: 5 }, () => b.nextU32()), seqA);
    const saved = a.state;
    const x = a.next();
    a.state = saved;
    assert.equal(a.next(), x);
    assert.notDeepEqual(Array.from({ length: 5 }, () => new Rng(43).nextU32()), seqA);
    for (let i = 0; i < 1000; i++) {
      const v = a.int(7);
      assert.ok(Number.isInteger(v) && v >= 0 && v < 7);
    }
  });

  test('derived streams differ by purpose and epoch; row hash is uniform-ish and seed-free', () => {
    assert.notEqual(deriveRng(1, 0, 2).nextU32(), deriveRng(1, 0, 3).nextU32());
    assert.notEqual(deriveRng(1, 0, 2).nextU32(), deriveRng(1, 1, 2).nextU32());
    assert.notEqual(mixSeed(5, 2 ** 32 + 1), mixSeed(5, 1), 'high word of large rows matters');
    const n = countHeldOut(100_000, 0.1);
    assert.ok(n > 9_500 && n < 10_500, `held out ${n} of 100000 at 0.1`);
    assert.equal(isHeldOut(12345, 0.3), rowHash01(12345) < 0.3);
    assert.equal(isHeldOut(12345, 0), false);
  });

  test('shuffleInPlace is a seeded permutation', () => {
    const a = shuffleInPlace([...Array(50).keys()], new Rng(7));
    assert.deepEqual([...a].sort((x, y) => x - y), [...Array(50).keys()]);
    assert.deepEqual(shuffleInPlace([...Array(50).keys()], new Rng(7)), a);
    assert.notDeepEqual(a, [...Array(50).keys()]);
  });
});

/** The reservoir one row at a time, as the buffer's doc describes it: the reference for addRows/drain. */
function referenceShuffle(src: ExampleTable, capacity: number, rng: Rng): number[] {
  const held: number[] = [];
  const out: number[] = [];
  for (let i = 0; i < src.length; i++) {
    if (held.length < capacity) held.push(src.row[i]);
    else {
      const slot = rng.int(held.length);
      out.push(held[slot]);
      held[slot] = src.row[i];
    }
  }
  while (held.length > 0) {
    const slot = rng.int(held.length);
    out.push(held[slot]);
    held[slot] = held[held.length - 1];
    held.pop();
  }
  return out;
}

describe('shuffle buffer', () => {
  test('every row exactly once, never more than capacity rows held, same order as the row-by-row reservoir', () => {
    const [src] = makeChunks([1000]);
    const buf = new ShuffleBuffer(64, D, K, new Rng(1));
    const out = new ExampleTable(1000, D, K);
    const all = Int32Array.from(src.row.subarray(0, 1000));
    // uneven runs, as streamBatches makes them when batches fill mid-chunk
    const sizes = [1, 30, 100, 7, 500];
    for (let p = 0, j = 0; p < 1000; j++) {
      const want = Math.min(sizes[j % sizes.length], 1000 - p);
      const batch = new ExampleTable(want, D, K);
      const used = buf.addRows(src, all, p, want, batch);
      assert.ok(used > 0 && buf.size <= 64);
      for (let i = 0; i < batch.length; i++) out.append(batch, i);
      p += used;
    }
    assert.equal(out.length, 1000 - 64, 'one row out per row in once full');
    while (buf.drain(out) > 0);
    assert.equal(buf.size, 0);
    const rows = [...out.row.subarray(0, out.length)];
    assert.deepEqual([...rows].sort((a, b) => a - b), [...Array(1000).keys()]);
    assert.deepEqual(rows, referenceShuffle(src, 64, new Rng(1)));
    for (let i = 0; i < out.length; i++) {
      const r = out.row[i];
      assert.deepEqual([...out.x.subarray(i * D, i * D + D)], [r, r + 0.5, -r]);
      assert.deepEqual([...out.t.subarray(i * K, i * K + K)], [r, -r]);
      assert.equal(out.y[i], r % 5);
    }
  });

  test('the native moveRows makes exactly the moves of moveRowsJs, wide and narrow rows', (t) => {
    const addon = loadAddon();
    if (!addon.ok) return t.skip(`native addon: ${addon.reason}`);
    for (const width of [3, 10, 784]) {
      const rng = new Rng(width);
      const fill = (n: number) => Float32Array.from({ length: n * width }, () => rng.next());
      const src = fill(50);
      const res = fill(20);
      const rows = Int32Array.from({ length: 40 }, (_, k) => (k % 7 === 3 ? -1 : rng.int(50)));
      const slots = Int32Array.from({ length: 40 }, () => rng.int(20));
      const run = (move: MoveRows, withRes: boolean) => {
        const dst = new Float32Array(45 * width);
        const r = res.slice();
        move(dst, 5, src, withRes ? rows : rows.map(Math.abs), 40, width, withRes ? r : null, withRes ? slots : null);
        return [dst, r];
      };
      assert.deepEqual(run(addon.addon.moveRows.bind(addon.addon), true), run(moveRowsJs, true));
      assert.deepEqual(run(addon.addon.moveRows.bind(addon.addon), false), run(moveRowsJs, false));
      // the buffer as its own source: its last rows move into the taken slots
      const self = (move: MoveRows) => {
        const r = res.slice();
        const dst = new Float32Array(3 * width);
        move(dst, 0, r, Int32Array.of(19, -1, 17), 3, width, r, Int32Array.of(4, 18, 4));
        return [dst, r];
      };
      assert.deepEqual(self(addon.addon.moveRows.bind(addon.addon)), self(moveRowsJs));
    }
    assert.throws(() => addon.addon.moveRows(new Float32Array(4), 0, new Float32Array(4), Int32Array.of(9), 1, 4, null, null), /out of range/);
  });
});

describe('pixel rows', () => {
  const W = 12;
  /** x = float32(v * mul[c] + add[c]) in float64, as preprocessing computes it */
  const affine = { mul: Float64Array.of(1 / 255, 2 / 255, 1 / 51), add: Float64Array.of(0, -0.5, -2.25) };
  /** Chunks holding pixels, and the same chunks converted to floats by the formula itself. */
  function pixelChunks(sizes: number[]): { pix: ExampleTable[]; floats: ExampleTable[] } {
    let next = 0;
    const pix: ExampleTable[] = [];
    const floats: ExampleTable[] = [];
    for (const n of sizes) {
      const u8 = Uint8Array.from({ length: n * W }, (_, i) => (((next * W + i) * 2654435761) >>> 24));
      const p = new ExampleTable(n, W, K, { pixels: { u8, ...affine } });
      const f = new ExampleTable(n, W, K, { x: Float32Array.from(u8, (v, i) => v * affine.mul[Math.floor((i % W) / 4)] + affine.add[Math.floor((i % W) / 4)]) });
      for (const t of [p, f]) {
        for (let i = 0; i < n; i++) {
          t.t.set([next + i, -(next + i)], i * K);
          t.y[i] = (next + i) % 5;
          t.row[i] = next + i;
        }
        t.length = n;
      }
      next += n;
      pix.push(p);
      floats.push(f);
    }
    return { pix, floats };
  }

  test('a stream of pixel chunks gives exactly the batches of the same chunks as floats, pixels kept in the shuffle buffer', async () => {
    const { pix, floats } = pixelChunks([100, 37, 250, 1, 80]);
    assert.deepEqual(pix[2].xView(), floats[2].xView(), 'xView converts');
    const pixSource = { ...memorySource(pix, true), pixels: affine };
    for (const shuffleBuffer of [0, 64]) {
      const opts = () => ({ batchSize: 50, shuffleBuffer, rng: new Rng(3) });
      const a: Float32Array[] = [];
      const b: Float32Array[] = [];
      for await (const batch of streamBatches(pixSource, [3, 0, 4, 2, 1], opts())) a.push(batch.xView().slice(), batch.tView().slice(), Float32Array.from(batch.row.subarray(0, batch.length)));
      for await (const batch of streamBatches(memorySource(floats, true), [3, 0, 4, 2, 1], opts())) b.push(batch.xView().slice(), batch.tView().slice(), Float32Array.from(batch.row.subarray(0, batch.length)));
      assert.equal(a.length, 30);
      assert.deepEqual(a, b);
    }
    // the pixel buffer refuses float chunks rather than mixing kinds
    const mixed = { ...memorySource([pix[0], floats[1]], true), pixels: affine };
    await assert.rejects(async () => { for await (const _ of streamBatches(mixed, [0, 1], { batchSize: 50, shuffleBuffer: 64, rng: new Rng(1) })); }, /cannot be mixed/);
  });

  test('the native movePixelRows makes exactly the moves of movePixelRowsJs', (t) => {
    const addon = loadAddon();
    if (!addon.ok) return t.skip(`native addon: ${addon.reason}`);
    const native: MovePixelRows = (dst, at, src, rows, count, width, res, slots) => addon.addon.movePixelRows(dst, at, src.u8, rows, count, width, res, slots, src.mul, src.add);
    for (const width of [3, 12, 784 * 3]) {
      const rng = new Rng(width);
      const src = { u8: Uint8Array.from({ length: 50 * width }, () => rng.int(256)), ...affine };
      const res = Uint8Array.from({ length: 20 * width }, () => rng.int(256));
      const rows = Int32Array.from({ length: 40 }, (_, k) => (k % 7 === 3 ? -1 : rng.int(50)));
      const slots = Int32Array.from({ length: 40 }, () => rng.int(20));
      const run = (move: MovePixelRows, withRes: boolean) => {
        const dst = new Float32Array(45 * width);
        const r = res.slice();
        move(dst, 5, src, withRes ? rows : rows.map(Math.abs), 40, width, withRes ? r : null, withRes ? slots : null);
        return [dst, r];
      };
      assert.deepEqual(run(native, true), run(movePixelRowsJs, true));
      assert.deepEqual(run(native, false), run(movePixelRowsJs, false));
      // the buffer as its own source (the drain at the end of a pass)
      const self = (move: MovePixelRows) => {
        const r = res.slice();
        const dst = new Float32Array(3 * width);
        move(dst, 0, { ...src, u8: r }, Int32Array.of(19, -1, 17), 3, width, r, Int32Array.of(4, 18, 4));
        return [dst, r];
      };
      assert.deepEqual(self(native), self(movePixelRowsJs));
    }
    assert.throws(() => native(new Float32Array(12), 0, { u8: new Uint8Array(12), ...affine }, Int32Array.of(9), 1, 12, null, null), /out of range/);
  });
});

describe('streamBatches', () => {
  const chunks = makeChunks([100, 37, 250, 1, 80]);
  const source = memorySource(chunks, true);
  const total = 468;

  test('no shuffle: rows in chunk order, full batches then a partial one', async () => {
    const { rows, sizes } = await collect(source, [0, 1, 2, 3, 4], { batchSize: 50, shuffleBuffer: 0 });
    assert.deepEqual(rows, [...Array(total).keys()]);
    assert.deepEqual(sizes, [...Array(9).fill(50), 18]);
  });

  test('shuffled: every row exactly once per epoch, seeded order reproducible, different seeds differ', async () => {
    const order = shuffleInPlace([0, 1, 2, 3, 4], new Rng(3));
    const a = await collect(source, order, { batchSize: 32, shuffleBuffer: 60, rng: new Rng(9) });
    assert.deepEqual([...a.rows].sort((x, y) => x - y), [...Array(total).keys()]);
    assert.ok(a.sizes.slice(0, -1).every((s) => s === 32));
    const b = await collect(source, order, { batchSize: 32, shuffleBuffer: 60, rng: new Rng(9) });
    assert.deepEqual(b.rows, a.rows);
    const c = await collect(source, order, { batchSize: 32, shuffleBuffer: 60, rng: new Rng(10) });
    assert.notDeepEqual(c.rows, a.rows);
  });

  test('keep/onSkip: filtered rows are left out of batches and seen by onSkip exactly once', async () => {
    const skipped: number[] = [];
    const { rows } = await collect(source, [4, 3, 2, 1, 0], {
      batchSize: 16, shuffleBuffer: 40, rng: new Rng(1),
      keep: (t, i) => t.row[i] % 3 !== 0,
      onSkip: (t, i) => skipped.push(t.row[i]),
    });
    const all = [...Array(total).keys()];
    assert.deepEqual([...rows].sort((x, y) => x - y), all.filter((r) => r % 3 !== 0));
    assert.deepEqual([...skipped].sort((x, y) => x - y), all.filter((r) => r % 3 === 0));
  });

  test('reads one chunk ahead while the current one is consumed; bounded to one in flight', async () => {
    const events: string[] = [];
    let inFlight = 0;
    let maxInFlight = 0;
    const slow: ChunkSource = {
      ...source,
      async load(i) {
        inFlight++;
        maxInFlight = Math.max(maxInFlight, inFlight);
        events.push(`start ${i}`);
        await new Promise((r) => setTimeout(r, 5));
        events.push(`done ${i}`);
        inFlight--;
        return chunks[i];
      },
    };
    for await (const b of streamBatches(slow, [0, 2], { batchSize: 10, shuffleBuffer: 0 })) {
      if (b.row[0] === 0) events.push('first batch');
    }
    assert.ok(events.indexOf('start 2') < events.indexOf('first batch'), `read-ahead did not start before the first batch: ${events.join(', ')}`);
    assert.equal(maxInFlight, 1);
  });

  test('nextOrder: the next pass starts from chunks read during this one; rows and order unchanged', async () => {
    const loads: number[] = [];
    const counting: ChunkSource = { ...source, load: async (i) => { loads.push(i); return chunks[i]; } };
    const orders = [[2, 0, 4, 1, 3], [1, 3, 0, 2, 4], [4, 2, 3, 0, 1]];
    const plain = [];
    for (const [e, order] of orders.entries()) plain.push(await collect(source, order, { batchSize: 32, shuffleBuffer: 60, rng: new Rng(e) }));
    for (const [e, order] of orders.entries()) {
      const got = await collect(counting, order, { batchSize: 32, shuffleBuffer: 60, rng: new Rng(e), nextOrder: orders[e + 1] });
      assert.deepEqual(got, plain[e], `pass ${e}`);
    }
    assert.deepEqual(loads, orders.flat(), 'every chunk read once per pass, in pass order');

    // A pass in between with another order (evaluation) drops the early reads; nothing is lost.
    loads.length = 0;
    await collect(counting, [0, 1], { batchSize: 32, shuffleBuffer: 60, rng: new Rng(1), nextOrder: [3, 4] });
    await collect(counting, [2], { batchSize: 32, shuffleBuffer: 0 });
    const after = await collect(counting, [3, 4], { batchSize: 32, shuffleBuffer: 60, rng: new Rng(2) });
    assert.deepEqual(after, await collect(source, [3, 4], { batchSize: 32, shuffleBuffer: 60, rng: new Rng(2) }));
    assert.deepEqual(loads, [0, 1, 3, 4, 2, 3, 4]);
  });

  test('two shuffled passes over one source at once do not share a shuffle buffer', async () => {
    const a = streamBatches(source, [0, 1, 2, 3, 4], { batchSize: 8, shuffleBuffer: 60, rng: new Rng(5) });
    const b = streamBatches(source, [0, 1, 2, 3, 4], { batchSize: 8, shuffleBuffer: 60, rng: new Rng(5) });
    const rowsA: number[] = [];
    const rowsB: number[] = [];
    for (;;) {
      const [x, y] = [await a.next(), await b.next()];
      if (!x.done) rowsA.push(...x.value.row.subarray(0, x.value.length));
      if (!y.done) rowsB.push(...y.value.row.subarray(0, y.value.length));
      if (x.done && y.done) break;
    }
    assert.deepEqual(rowsA, rowsB);
    assert.deepEqual([...rowsA].sort((p, q) => p - q), [...Array(total).keys()]);
  });

  test('a failing read-ahead surfaces as the stream error, not an unhandled rejection', async () => {
    const failing: ChunkSource = {
      ...source,
      load: async (i) => {
        if (i === 1) throw new Error('shard 1 is broken');
        return chunks[i];
      },
    };
    await assert.rejects(async () => {
      for await (const _ of streamBatches(failing, [0, 1], { batchSize: 10, shuffleBuffer: 0 })) {
        await new Promise((r) => setTimeout(r, 1)); // give the rejection time to happen unobserved
      }
    }, /shard 1 is broken/);
  });
});
