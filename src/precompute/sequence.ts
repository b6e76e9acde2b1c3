/**
 * The sequence layout at precompute time: a batch's [n, T, C] output becomes one table row per
 * real position, (row, position, C values), in (row, position) order. Padding positions are
 * dropped here so that they never reach the shard.
 */

export interface PositionRows {
  row: BigInt64Array;
  position: Int32Array;
  /** C values per stored position */
  logits: Float32Array;
}

/**
 * Append the real positions of examples [firstRow, firstRow + n) to `out` from table row `at`;
 * `src` holds their n * T * C outputs, `real` n * T flags. Returns the next free table row.
 */
export function appendPositions(out: PositionRows, at: number, src: Float32Array | Float64Array, real: Uint8Array, n: number, t: number, c: number, firstRow: number): number {
  for (let e = 0; e < n; e++) {
    const id = BigInt(firstRow + e);
    for (let p = 0; p < t; p++) {
      if (real[e * t + p] === 0) continue;
      out.row[at] = id;
      out.position[at] = p;
      const from = (e * t + p) * c;
      if (src instanceof Float32Array) out.logits.set(src.subarray(from, from + c), at * c);
      else for (let j = 0; j < c; j++) out.logits[at * c + j] = src[from + j];
      at++;
    }
  }
  return at;
}
