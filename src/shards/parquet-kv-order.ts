/**
 * parquet-wasm hands key-value metadata to the Rust writer through a HashMap, so the order of the
 * entries in the footer, and with it the file's sha256, changes from one call to the next. Shards must
 * be byte-identical for identical input (resumed and partitioned runs are compared by checksum), so
 * after encoding, the kdcache entries are put back in sorted order. They are consecutive Thrift
 * structs in the footer's key_value_metadata list and each encodes independently of its position, so
 * permuting them in place leaves a valid file of the same length.
 */
import { T, encodeThrift } from './thrift-compact.js';

/** Thrift compact encoding of KeyValue { 1: string key, 2: string value }. */
function encodeKeyValue(key: string, value: string): Uint8Array {
  return encodeThrift([[1, T.binary(key)], [2, T.binary(value)]]);
}

function indexOf(hay: Uint8Array, needle: Uint8Array, from: number, to: number): number {
  outer: for (let i = from; i + needle.length <= to; i++) {
    for (let j = 0; j < needle.length; j++) if (hay[i + j] !== needle[j]) continue outer;
    return i;
  }
  return -1;
}

/** Reorder `metadata`'s entries in the footer of `file` (in place) into sorted key order. */
export function sortFooterKeyValues(file: Uint8Array, metadata: ReadonlyMap<string, string>): void {
  const end = file.byteLength - 8;
  const footerLen = new DataView(file.buffer, file.byteOffset, file.byteLength).getUint32(end, true);
  const start = end - footerLen;
  const entries = [...metadata].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)).map(([k, v]) => encodeKeyValue(k, v));
  const found = entries.map((e) => {
    const at = indexOf(file, e, start, end);
    if (at < 0 || indexOf(file, e, at + 1, end) >= 0) throw new Error('parquet footer: key-value entry not found exactly once');
    return at;
  });
  const first = Math.min(...found);
  const total = entries.reduce((n, e) => n + e.length, 0);
  const sortedOffsets = [...found].sort((a, b) => a - b);
  // Consecutive means each entry ends where the next begins, whatever the current order.
  const byOffset = sortedOffsets.map((o) => entries[found.indexOf(o)]);
  let at = first;
  for (const [i, o] of sortedOffsets.entries()) {
    if (o !== at) throw new Error('parquet footer: kdcache key-value entries are not consecutive');
    at += byOffset[i].length;
  }
  if (at - first !== total) throw new Error('parquet footer: unexpected key-value layout');
  let w = first;
  for (const e of entries) {
    file.set(e, w);
    w += e.length;
  }
}
