/**
 * Framing scan of an Arrow IPC stream: finds where each complete message starts and ends,
 * where the valid data stops (a partly written tail is not an error), and proves that each
 * message's flatbuffer metadata is safe to hand to apache-arrow.
 *
 * Why a pre-check: apache-arrow decodes flatbuffers without bounds checks (an out-of-range read
 * yields 0), so a corrupt vector length or a cyclic `children` reference in the metadata can make
 * its decoder loop for billions of iterations. The verifier below walks exactly the offsets the
 * decoder will follow (same signed arithmetic as the flatbuffers JS runtime) and rejects anything
 * out of bounds, too deep or too large, so decoding afterwards is bounded by the file length.
 */
import { Message, MessageHeader, MetadataVersion, type Schema } from "apache-arrow";
import { RunStoreError, describeError } from "./errors.js";

/** One complete message found in a stream. */
export interface ScannedMessage {
  /** Offset of the message's first byte (its continuation marker or length prefix). */
  start: number;
  /** Offset just past the message body. */
  end: number;
  type: MessageHeader;
  bodyLength: number;
  /** Row count, for record batches. */
  rows: number;
}

export interface StreamScan {
  /** Schema from the first message; null when the bytes hold no complete schema message. */
  schema: Schema | null;
  /** Complete messages, the schema message first. */
  messages: ScannedMessage[];
  /** End of the last complete message (EOS marker excluded): where appending continues. */
  validEnd: number;
  /** True when an end-of-stream marker follows `validEnd`. */
  eos: boolean;
  /** Bytes after `validEnd` that are neither data nor the EOS marker (a partly written tail). */
  partialTailBytes: number;
}

const CONTINUATION = 0xffffffff | 0;
/** Nesting limit for Field.children: real schemas are a few levels deep. */
const MAX_FIELD_DEPTH = 32;

class FlatbufferInvalid extends Error {}

/** The parts of apache-arrow's decoded RecordBatch header that the scan checks. */
interface BatchMeta {
  length: number;
  nodes: { length: number; nullCount: number }[];
  buffers: { offset: number; length: number }[];
}

interface FbTable {
  pos: number;
  vt: number;
  vtSize: number;
}

/**
 * Minimal flatbuffer verifier for the Arrow Message schema (Message.fbs / Schema.fbs). Offsets
 * are read as signed, like the flatbuffers JS runtime does, so the verified positions are exactly
 * the positions the decoder will read.
 */
class MessageVerifier {
  private readonly dv: DataView;
  private budget: number;

  constructor(private readonly bytes: Uint8Array) {
    this.dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    // Every legitimately decoded object occupies at least 4 bytes, so this bounds the decoder's
    // total work even for DAG-shaped metadata that reuses one subtree many times.
    this.budget = 1024 + bytes.length;
  }

  private fail(what: string): never {
    throw new FlatbufferInvalid(what);
  }

  private spend(n: number): void {
    this.budget -= n;
    if (this.budget < 0) this.fail("metadata references too many objects");
  }

  private i32(p: number): number {
    if (p < 0 || p + 4 > this.bytes.length) this.fail(`offset ${p} out of bounds`);
    return this.dv.getInt32(p, true);
  }

  private i16(p: number): number {
    if (p < 0 || p + 2 > this.bytes.length) this.fail(`offset ${p} out of bounds`);
    return this.dv.getInt16(p, true);
  }

  private u8(p: number): number {
    if (p < 0 || p + 1 > this.bytes.length) this.fail(`offset ${p} out of bounds`);
    return this.bytes[p]!;
  }

  table(pos: number): FbTable {
    this.spend(1);
    const vt = pos - this.i32(pos);
    const vtSize = this.i16(vt);
    if (vtSize < 4 || vtSize % 2 !== 0 || vt + vtSize > this.bytes.length) this.fail("bad vtable");
    return { pos, vt, vtSize };
  }

  /** Absolute position of a field's inline value, or 0 when absent; checks `size` bytes fit. */
  field(t: FbTable, slot: number, size: number): number {
    if (slot >= t.vtSize) return 0;
    const off = this.i16(t.vt + slot);
    if (off === 0) return 0;
    if (off < 0) this.fail("negative field offset");
    const p = t.pos + off;
    if (p + size > this.bytes.length) this.fail("field out of bounds");
    return p;
  }

  /** Target of an offset field (table, vector, string or union value), or 0 when absent. */
  private ref(t: FbTable, slot: number): number {
    const p = this.field(t, slot, 4);
    if (p === 0) return 0;
    const target = p + this.i32(p);
    if (target < 0 || target + 4 > this.bytes.length) this.fail("reference out of bounds");
    return target;
  }

  subtable(t: FbTable, slot: number): FbTable | null {
    const r = this.ref(t, slot);
    return r === 0 ? null : this.table(r);
  }

  /** Checks a vector of `elemSize`-byte elements; returns its element count and start. */
  vector(t: FbTable, slot: number, elemSize: number): { start: number; n: number } | null {
    const r = this.ref(t, slot);
    if (r === 0) return null;
    const n = this.i32(r);
    if (n < 0 || r + 4 + n * elemSize > this.bytes.length) this.fail("vector out of bounds");
    this.spend(n);
    return { start: r + 4, n };
  }

  tableVector(t: FbTable, slot: number): FbTable[] {
    const v = this.vector(t, slot, 4);
    if (v === null) return [];
    const out: FbTable[] = [];
    for (let i = 0; i < v.n; i++) {
      const p = v.start + 4 * i;
      out.push(this.table(p + this.i32(p)));
    }
    return out;
  }

  byteField(t: FbTable, slot: number): number {
    const p = this.field(t, slot, 1);
    return p === 0 ? 0 : this.u8(p);
  }

  // --- Arrow tables (slot = 4 + 2 * field index, per the .fbs declarations) ---

  message(): MessageHeader {
    const root = this.table(this.i32(0));
    this.field(root, 4, 2); // version
    const headerType = this.byteField(root, 6);
    const header = this.subtable(root, 8);
    this.field(root, 10, 8); // bodyLength
    this.keyValues(root, 12);
    if (header === null) this.fail("message has no header");
    switch (headerType) {
      case MessageHeader.Schema:
        this.schema(header);
        break;
      case MessageHeader.RecordBatch:
        this.recordBatch(header);
        break;
      case MessageHeader.DictionaryBatch: {
        this.field(header, 4, 8); // id
        const data = this.subtable(header, 6);
        if (data === null) this.fail("dictionary batch has no data");
        this.recordBatch(data);
        this.field(header, 8, 1); // isDelta
        break;
      }
      default:
        this.fail(`unsupported message type ${headerType}`);
    }
    return headerType as MessageHeader;
  }

  private keyValues(t: FbTable, slot: number): void {
    for (const kv of this.tableVector(t, slot)) {
      this.vector(kv, 4, 1); // key
      this.vector(kv, 6, 1); // value
    }
  }

  private schema(t: FbTable): void {
    this.field(t, 4, 2); // endianness
    for (const f of this.tableVector(t, 6)) this.fieldDef(f, 0);
    this.keyValues(t, 8);
    this.vector(t, 10, 8); // features
  }

  private fieldDef(t: FbTable, depth: number): void {
    if (depth > MAX_FIELD_DEPTH) this.fail("schema nested too deeply");
    this.vector(t, 4, 1); // name
    this.field(t, 6, 1); // nullable
    const typeType = this.byteField(t, 8);
    const type = this.subtable(t, 10);
    if (type !== null) {
      if (typeType === 14) this.vector(type, 6, 4); // Union.typeIds
      if (typeType === 10) this.vector(type, 6, 1); // Timestamp.timezone
    }
    const dict = this.subtable(t, 12);
    if (dict !== null) {
      this.field(dict, 4, 8); // id
      this.subtable(dict, 6); // indexType (Int)
      this.field(dict, 8, 1); // isOrdered
      this.field(dict, 10, 2); // dictionaryKind
    }
    for (const c of this.tableVector(t, 14)) this.fieldDef(c, depth + 1);
    this.keyValues(t, 16);
  }

  private recordBatch(t: FbTable): void {
    this.field(t, 4, 8); // length
    this.vector(t, 6, 16); // nodes (struct FieldNode)
    this.vector(t, 8, 16); // buffers (struct Buffer)
    const comp = this.subtable(t, 10);
    if (comp !== null) {
      this.field(comp, 4, 1);
      this.field(comp, 6, 1);
    }
    this.vector(t, 12, 8); // variadicBufferCounts
  }
}

function isSafeCount(n: number): boolean {
  return Number.isSafeInteger(n) && n >= 0;
}

/**
 * Scans `bytes` as an Arrow IPC stream. Never loops more than once per complete message (each
 * iteration advances by at least 5 bytes). Throws RunStoreError("<label> is corrupt at byte N:
 * …") for bytes that cannot be a stream; a message cut short by the end of the data only ends
 * the scan (reported through `partialTailBytes`).
 */
export function scanStream(bytes: Uint8Array, label: string, options: { trustedEnd?: number } = {}): StreamScan {
  // Messages ending by `trustedEnd` were written by this process and still match the CRC in the
  // index it wrote: apache-arrow's own output, so its flatbuffers need no verifying.
  const trustedEnd = options.trustedEnd ?? 0;
  const len = bytes.length;
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const messages: ScannedMessage[] = [];
  let schema: Schema | null = null;
  let pos = 0;
  let eos = false;

  const corrupt = (at: number, why: string, cause?: unknown): never => {
    throw new RunStoreError(`${label} is corrupt at byte ${at}: ${why}`, {
      file: label,
      offset: at,
      cause,
    });
  };

  while (pos < len) {
    if (len - pos < 4) break; // partial prefix
    let header = 4;
    let metaLen = dv.getInt32(pos, true);
    if (metaLen === CONTINUATION) {
      if (len - pos < 8) break;
      metaLen = dv.getInt32(pos + 4, true);
      header = 8;
    }
    if (metaLen === 0) {
      eos = true;
      break;
    }
    if (metaLen < 0) corrupt(pos, `invalid metadata length ${metaLen}`);
    const metaStart = pos + header;
    if (metaStart + metaLen > len) break; // metadata cut short
    const meta = bytes.slice(metaStart, metaStart + metaLen);

    let verified: MessageHeader | null = null;
    if (metaStart + metaLen > trustedEnd) {
      try {
        verified = new MessageVerifier(meta).message();
      } catch (e) {
        if (e instanceof FlatbufferInvalid) corrupt(pos, `invalid message metadata (${e.message})`);
        throw e;
      }
    }
    let msg: Message;
    try {
      msg = Message.decode(meta);
    } catch (e) {
      return corrupt(pos, `undecodable message metadata (${describeError(e)})`, e);
    }
    const type: MessageHeader = verified ?? msg.headerType;
    if (msg.version < MetadataVersion.V4 || msg.version > MetadataVersion.V5) {
      corrupt(pos, `unsupported metadata version ${String(msg.version)}`);
    }
    const bodyLength = msg.bodyLength;
    if (!isSafeCount(bodyLength)) corrupt(pos, `invalid body length ${String(bodyLength)}`);
    const end = metaStart + metaLen + bodyLength;
    if (end > len) break; // body cut short

    let rows = 0;
    try {
      if (type === MessageHeader.Schema) {
        if (messages.length > 0) corrupt(pos, "a second schema message inside the stream");
        schema = msg.header() as Schema;
      } else {
        if (messages.length === 0) corrupt(pos, "stream does not start with a schema message");
        const rb =
          type === MessageHeader.RecordBatch ? (msg.header() as BatchMeta) : (msg.header() as { data: BatchMeta }).data;
        // Lengths must be plausible for the body size; this also bounds any per-row work later.
        const maxRows = 8 * bodyLength + 64;
        rows = rb.length;
        if (!isSafeCount(rows) || rows > maxRows) corrupt(pos, `implausible row count ${String(rows)}`);
        for (const node of rb.nodes) {
          if (
            !isSafeCount(node.length) ||
            node.length > maxRows ||
            !isSafeCount(node.nullCount) ||
            node.nullCount > node.length
          ) {
            corrupt(pos, "implausible field node");
          }
        }
        for (const buf of rb.buffers) {
          if (!isSafeCount(buf.offset) || !isSafeCount(buf.length) || buf.offset + buf.length > bodyLength) {
            corrupt(pos, "buffer outside the message body");
          }
        }
      }
    } catch (e) {
      if (e instanceof RunStoreError) throw e;
      corrupt(pos, `undecodable message header (${describeError(e)})`, e);
    }
    messages.push({ start: pos, end, type, bodyLength, rows });
    pos = end;
  }

  const validEnd = messages.length > 0 ? messages[messages.length - 1]!.end : 0;
  if (messages.length === 0 && !eos && len > 0) {
    // Nothing complete: accept only the start of a continuation-prefixed message (a writer killed
    // while writing the schema); anything else is not an Arrow stream at all.
    for (let i = 0; i < Math.min(4, len); i++) {
      if (bytes[i] !== 0xff) corrupt(0, "not an Arrow IPC stream (no continuation marker)");
    }
  }
  return { schema, messages, validEnd, eos, partialTailBytes: eos ? 0 : len - validEnd };
}
