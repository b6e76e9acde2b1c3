/** Model feeds for integer (token) inputs and mask/lengths inputs derived from the pad id. */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { preprocessInto, uint8IntoJs } from '../src/data/preprocess.js';
import { loadAddon } from '../src/util/addon.js';
import { BatchFeeder, realPositions } from '../src/precompute/feeds.js';
import type { Preprocessing } from '../src/shards/manifest-types.js';

const tokens = BigInt64Array.from([5n, 6n, 0n, 0n, /* ex 1 */ 0n, 7n, 8n, 9n, /* ex 2 */ 1n, 2n, 3n, 4n]);
const pre = (extra: Partial<Preprocessing>): Preprocessing => ({ input_shape: [4], input_type: 'int64', scale: 1, mean: [0], std: [1], ...extra });

describe('real positions', () => {
  test('mask models: every position whose token is not the pad id (left padding too)', () => {
    assert.deepEqual([...realPositions(tokens, 3, pre({ pad_id: 0 }))], [1, 1, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1]);
  });

  test('lengths models: the positions before the first pad', () => {
    const p = pre({ pad_id: 0, mask_input: { name: 'lengths', kind: 'lengths', type: 'int64' } });
    assert.deepEqual([...realPositions(tokens, 3, p)], [1, 1, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1]);
  });

  test('without a pad id every position is real', () => {
    assert.deepEqual([...realPositions(tokens, 3, pre({}))], new Array(12).fill(1));
  });
});

describe('feeds', () => {
  test('int64 ids pass through; a fixed-batch model gets pad-id rows; the mask input follows the padding', () => {
    const f = new BatchFeeder('tokens', pre({ pad_id: 0, mask_input: { name: 'attention_mask', kind: 'mask', type: 'int64' } }), 4, [-1, -1]);
    const feeds = f.feeds(tokens, 3, 4);
    assert.deepEqual(feeds.tokens.dims, [4, 4]);
    assert.equal(feeds.tokens.type, 'int64');
    assert.deepEqual([...(feeds.tokens.data as BigInt64Array)], [...tokens, 0n, 0n, 0n, 0n]);
    assert.deepEqual(feeds.attention_mask.dims, [4, 4]);
    assert.deepEqual([...(feeds.attention_mask.data as BigInt64Array)].map(Number), [1, 1, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0]);
  });

  test('int32 models get int32 ids; lengths inputs of rank 1 or 2; bool and float masks', () => {
    const lengths = new BatchFeeder('ids', pre({ input_type: 'int32', pad_id: 0, mask_input: { name: 'lengths', kind: 'lengths', type: 'int32' } }), 3, [-1]);
    const a = lengths.feeds(Uint16Array.from([5, 6, 0, 0, 7, 0, 0, 0, 1, 2, 3, 4]), 3, 3);
    assert.equal(a.ids.type, 'int32');
    assert.deepEqual([...(a.ids.data as Int32Array)], [5, 6, 0, 0, 7, 0, 0, 0, 1, 2, 3, 4]);
    assert.deepEqual(a.lengths.dims, [3]);
    assert.deepEqual([...(a.lengths.data as Int32Array)], [2, 1, 4]);
    const rank2 = new BatchFeeder('ids', pre({ input_type: 'int32', pad_id: 0, mask_input: { name: 'len', kind: 'lengths', type: 'int64' } }), 3, [-1, 1]);
    assert.deepEqual(rank2.feeds(Uint16Array.from([5, 6, 0, 0, 7, 0, 0, 0, 1, 2, 3, 4]), 3, 3).len.dims, [3, 1]);
    const bool = new BatchFeeder('tokens', pre({ pad_id: 0, mask_input: { name: 'mask', kind: 'mask', type: 'bool' } }), 3, [-1, -1]).feeds(tokens, 3, 3);
    assert.equal(bool.mask.type, 'bool');
    const float = new BatchFeeder('tokens', pre({ pad_id: 0, mask_input: { name: 'mask', kind: 'mask', type: 'float32' } }), 3, [-1, -1]).feeds(tokens, 3, 3);
    assert.deepEqual([...(float.mask.data as Float32Array)].slice(0, 4), [1, 1, 0, 0]);
  });

  test('float32 inputs are preprocessed; padding rows of a fixed batch are zeros', () => {
    const f = new BatchFeeder('x', { input_shape: [2], input_type: 'float32', scale: 2, mean: [1], std: [1] }, 2, null);
    const feeds = f.feeds(Float32Array.from([1, 2]), 1, 2);
    assert.deepEqual([...(feeds.x.data as Float32Array)], [1, 3, 0, 0]);
  });
});

describe('float preprocessing', () => {
  const addon = loadAddon();
  test('the native pixel path is the one tested above', { skip: addon.ok ? false : `addon not available: ${addon.ok ? '' : addon.reason}` }, () => {
    assert.ok(addon.ok);
  });

  // The uint8 path is a lookup table; it must give the bits of the formula itself (float64, then float32).
  for (const channels of [1, 3]) {
    test(`uint8 pixels, ${channels} channel(s): bit-identical to (x * scale - mean) / std`, () => {
      const shape = [channels, 2, 3];
      const p: Preprocessing = { input_shape: shape, input_type: 'float32', scale: 1 / 255, mean: [0.485, 0.456, 0.406].slice(0, channels), std: [0.229, 0.224, 0.225].slice(0, channels) };
      const rows = 3;
      const width = channels * 6;
      const src = Uint8Array.from({ length: rows * width }, (_, i) => (i * 97 + 13) % 256);
      src[0] = 0;
      src[1] = 255;
      const got = preprocessInto(src, rows, p);
      const want = new Float32Array(rows * width);
      for (let i = 0; i < want.length; i++) {
        const c = Math.floor((i % width) / 6);
        want[i] = src[i] * (p.scale / p.std[c]) + -p.mean[c] / p.std[c];
      }
      assert.deepEqual(got, want);
      // and the same as the generic path (the values as int32), and as the JavaScript fallback
      assert.deepEqual(preprocessInto(Int32Array.from(src), rows, p), want);
      const mul = Float64Array.from(p.std, (sd) => p.scale / sd);
      const add = Float64Array.from(p.std, (sd, c) => -p.mean[c] / sd);
      assert.deepEqual(uint8IntoJs(src, rows, channels, 6, mul, add, new Float32Array(rows * width)), want);
    });
  }
});
