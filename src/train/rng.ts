/**
 * Seeded PRNG for everything random in training (weight-init seeds, shard order, shuffle buffer).
 * Math.random cannot be seeded or saved in a checkpoint; this can: the whole state is one uint32.
 * mulberry32: tiny, fast, passes the usual statistical batteries well enough for shuffling.
 */
export class Rng {
  private s: number;

  constructor(seed: number) {
    this.s = seed >>> 0;
  }

  get state(): number {
    return this.s;
  }

  set state(value: number) {
    this.s = value >>> 0;
  }

  /** next uint32 */
  nextU32(): number {
    let t = (this.s = (this.s + 0x6d2b79f5) >>> 0);
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (t ^ (t >>> 14)) >>> 0;
  }

  /** uniform in [0, 1) */
  next(): number {
    return this.nextU32() / 4294967296;
  }

  /** uniform integer in [0, n) */
  int(n: number): number {
    // n is far below 2^32 here (buffer sizes, shard counts); the bias of a multiply-shift is < n / 2^32.
    return Math.floor(this.next() * n);
  }
}

/** Mix a few integers into one well-spread uint32 (murmur3 finaliser per step). */
export function mixSeed(...parts: number[]): number {
  let h = 0x9e3779b9;
  for (const p of parts) {
    h = Math.imul(h ^ (p >>> 0), 0x85ebca6b);
    h ^= h >>> 13;
    h = Math.imul(h, 0xc2b2ae35);
    h ^= h >>> 16;
    // Numbers above 2^32 (row indices of huge datasets) contribute their high word too.
    const hi = Math.floor(p / 4294967296);
    if (hi !== 0) h = Math.imul(h ^ hi, 0x27d4eb2f) ^ (h >>> 15);
  }
  return h >>> 0;
}

/**
 * Streams that must not depend on each other get their own generator derived from (seed, epoch,
 * purpose). Resuming at epoch e then reproduces exactly what an uninterrupted run would have done.
 */
export function deriveRng(seed: number, ...parts: number[]): Rng {
  return new Rng(mixSeed(seed, ...parts));
}

export const RNG_PURPOSE = { init: 1, shardOrder: 2, shuffle: 3 } as const;

/** In-place Fisher-Yates shuffle. */
export function shuffleInPlace<T>(items: T[], rng: Rng): T[] {
  for (let i = items.length - 1; i > 0; i--) {
    const j = rng.int(i + 1);
    const tmp = items[i];
    items[i] = items[j];
    items[j] = tmp;
  }
  return items;
}

/** Deterministic [0, 1) value of a row index alone: the same rows are held out whatever the seed. */
export function rowHash01(row: number): number {
  return mixSeed(0x5bd1e995, row) / 4294967296;
}
