/**
 * Reading Arrow IPC bytes that may be damaged, for the shard reader and Parquet/Arrow input data.
 * apache-arrow trusts a file's metadata in two ways that fuzzing turned into hangs:
 *
 * - flatbuffers does not check offsets: a read past the end of the buffer returns 0. A schema that
 *   claims a vector of 2^28 fields has arrow decode millions of empty fields (seconds to hours,
 *   gigabytes) before anything fails. Bounds-checked reads (installed on import) make such a file
 *   fail at its first impossible offset, in time proportional to its size.
 * - tableFromIPC reads a file's record batches in a loop that restarts on a Schema message, so a
 *   footer block pointing back at the schema loops forever. tableFromIpcBytes asks for each batch
 *   by index instead, which requires a RecordBatch message there.
 */
import * as arrow from 'apache-arrow';
import * as flatbuffers from 'flatbuffers';

type Reader = (this: flatbuffers.ByteBuffer, offset: number) => unknown;
const READS: [string, number][] = [
  ['readInt8', 1], ['readUint8', 1], ['readInt16', 2], ['readUint16', 2], ['readInt32', 4], ['readUint32', 4],
  ['readInt64', 8], ['readUint64', 8], ['readFloat32', 4], ['readFloat64', 8],
];
const proto = flatbuffers.ByteBuffer.prototype as unknown as Record<string, Reader> & { kdcacheGuarded?: boolean };

if (!proto.kdcacheGuarded) {
  proto.kdcacheGuarded = true;
  for (const [name, size] of READS) {
    const read = proto[name];
    proto[name] = function (this: flatbuffers.ByteBuffer, offset: number) {
      if (!(offset >= 0 && offset + size <= this.capacity())) throw new RangeError(`flatbuffer read of ${size} bytes at ${offset} is outside the ${this.capacity()}-byte buffer`);
      return read.call(this, offset);
    };
  }
}

/** An Arrow IPC file or stream as a Table; damaged input throws (never loops). */
export function tableFromIpcBytes(bytes: Uint8Array): arrow.Table {
  const reader = arrow.RecordBatchReader.from(bytes);
  reader.open();
  if (!reader.isFile()) return new arrow.Table(reader.readAll());
  const batches: arrow.RecordBatch[] = [];
  for (let i = 0; i < reader.numRecordBatches; i++) {
    const batch = reader.readRecordBatch(i);
    if (!batch) throw new Error(`record batch ${i} of ${reader.numRecordBatches} is missing`);
    batches.push(batch);
  }
  return new arrow.Table(reader.schema, batches);
}
