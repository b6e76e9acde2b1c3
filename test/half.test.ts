import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { halfToFloat } from '../src/util/dtype.js';
import { floatToHalf, floatsToHalves, halvesToFloats } from '../src/util/half.js';
import { rng } from './helpers/shard-columns.js';

/** Reference rounding by search over every finite half: nearest value, ties to the even bit pattern. */
const POSITIVE = Float64Array.from({ length: 0x7c00 }, (_, h) => halfToFloat(h));
function referenceHalf(x: number): number {
  if (Number.isNaN(x)) return 0x7e00;
  const sign = x < 0 || Object.is(x, -0) ? 0x8000 : 0;
  const a = Math.abs(Math.fround(x));
  if (a >= 65520) return sign | 0x7c00;
  let lo = 0;
  let hi = 0x7bff;
  while (lo < hi) {
    const mid = (lo + hi + 1) >> 1;
    if (POSITIVE[mid] <= a) lo = mid;
    else hi = mid - 1;
  }
  if (lo === 0x7bff || POSITIVE[lo] === a) return sign | lo;
  const down = a - POSITIVE[lo];
  const up = POSITIVE[lo + 1] - a;
  return sign | (down < up || (down === up && lo % 2 === 0) ? lo : lo + 1);
}

describe('float32 -> float16', () => {
  test('every half round-trips exactly (zeros, subnormals, normals, infinities)', () => {
    for (let h = 0; h < 0x10000; h++) {
      if ((h & 0x7c00) === 0x7c00 && (h & 0x3ff) !== 0) continue; // NaNs: checked below
      assert.equal(floatToHalf(halfToFloat(h)), h, `half 0x${h.toString(16)}`);
    }
  });

  test('midpoints between neighbouring halves round to the even one; a hair above rounds up', () => {
    for (let h = 0; h < 0x7bff; h++) {
      const mid = (halfToFloat(h) + halfToFloat(h + 1)) / 2; // exact in float32 for every pair
      assert.equal(Math.fround(mid), mid);
      assert.equal(floatToHalf(mid), h % 2 === 0 ? h : h + 1, `midpoint after 0x${h.toString(16)}`);
      assert.equal(floatToHalf(-mid), 0x8000 | (h % 2 === 0 ? h : h + 1));
      const above = Math.fround(mid * (1 + 2 ** -22));
      if (above > mid && above < halfToFloat(h + 1)) assert.equal(floatToHalf(above), h + 1);
    }
  });

  test('edges: overflow at 65520, underflow below 2^-25, signed zero, NaN', () => {
    assert.equal(floatToHalf(65504), 0x7bff);
    assert.equal(floatToHalf(65519.99), 0x7bff);
    assert.equal(floatToHalf(65520), 0x7c00);
    assert.equal(floatToHalf(-1e6), 0xfc00);
    assert.equal(floatToHalf(Infinity), 0x7c00);
    assert.equal(floatToHalf(-Infinity), 0xfc00);
    assert.equal(floatToHalf(2 ** -24), 0x0001);
    assert.equal(floatToHalf(2 ** -25), 0x0000, 'exactly half the smallest subnormal: ties to even (zero)');
    assert.equal(floatToHalf(Math.fround(2 ** -25 * 1.01)), 0x0001);
    assert.equal(floatToHalf(1e-10), 0);
    assert.equal(floatToHalf(-1e-10), 0x8000);
    assert.equal(floatToHalf(-0), 0x8000);
    assert.equal(floatToHalf(2 ** -14 - 2 ** -25), 0x0400, 'largest subnormal midpoint rounds up into the normals');
    const nan = floatToHalf(NaN);
    assert.equal(nan & 0x7c00, 0x7c00);
    assert.notEqual(nan & 0x3ff, 0);
    assert.ok(Number.isNaN(halfToFloat(nan)));
  });

  test('random float32 values match the reference search', () => {
    const r = rng(11);
    const f = new Float32Array(1);
    const bits = new Uint32Array(f.buffer);
    for (let i = 0; i < 200_000; i++) {
      bits[0] = Math.floor(r() * 2 ** 32);
      if (Number.isNaN(f[0])) continue;
      assert.equal(floatToHalf(f[0]), referenceHalf(f[0]), `float32 bits 0x${bits[0].toString(16)}`);
    }
    for (let i = 0; i < 50_000; i++) {
      const x = Math.fround((r() - 0.5) * 2 ** Math.floor(r() * 40 - 28));
      assert.equal(floatToHalf(x), referenceHalf(x), `${x}`);
    }
  });

  test('array conversions agree with the scalar ones', () => {
    const r = rng(3);
    const src = Float32Array.from({ length: 5000 }, () => (r() - 0.5) * 100);
    const halves = floatsToHalves(src);
    assert.deepEqual([...halves], [...src].map(floatToHalf));
    assert.deepEqual([...floatsToHalves([...src])], [...halves]);
    assert.deepEqual([...halvesToFloats(halves)], [...halves].map(halfToFloat));
  });
});
