/**
 * Append-only Arrow IPC *stream* files for a fixed schema, and a tolerant reader for them.
 *
 * File layout: one schema message, then one record-batch message per flush, and an end-of-stream
 * marker only after `close()`. Every message is produced by apache-arrow's own IPC writer
 * (`tableToIPC(…, 'stream')`); to append a batch we serialize a one-batch stream and copy out
 * just its record-batch message, so the file stays a single valid stream that pyarrow, polars and
 * apache-arrow read without knowing it was written in pieces. Each message goes to disk in one
 * write, so a process killed at any moment leaves at most one partial message at the tail; the
 * reader ignores it and the appender cuts it off when the file is reopened.
 */
import { closeSync, constants, fstatSync, fsyncSync, ftruncateSync, readFileSync, writeSync } from "node:fs";
import { basename, resolve } from "node:path";
import {
  type Builder,
  Data,
  DataType,
  Field,
  MessageHeader,
  RecordBatch,
  RecordBatchReader,
  Schema,
  Struct,
  Table,
  Type,
  makeBuilder,
  makeData,
  tableToIPC,
} from "apache-arrow";
import { RunStoreError, describeError } from "./errors.js";
import { openRunFile, readRunFile } from "./files.js";
import { writeError } from "./guardedWrite.js";
import { scanStream, type StreamScan } from "./ipcScan.js";
import {
  INDEX_SUFFIX,
  formatIndexLine,
  messageCrc,
  parseIndex,
  verifyIndexed,
  type IndexEntry,
} from "./streamIndex.js";

export { scanStream } from "./ipcScan.js";
export type { ScannedMessage, StreamScan } from "./ipcScan.js";

// ---------------------------------------------------------------------------------------------
// Columns: apache-arrow builders hold the rows until a flush; the checks keep bad values out
// before anything of a row or call is stored (a builder would store a null in any column).
// ---------------------------------------------------------------------------------------------

/** Values accepted for one column by `appendColumns`: an array per row, or one value for all. */
export type ColumnInput = ArrayLike<number> | readonly (string | null)[] | number | string | null;

function columnError(field: Field, what: string): TypeError {
  return new TypeError(`column "${field.name}" (${String(field.type)}): ${what}`);
}

class Column {
  private readonly builder: Builder;
  private readonly kind: "number" | "string";

  constructor(readonly field: Field) {
    const t = field.type as DataType;
    const numeric =
      (DataType.isInt(t) && t.bitWidth === 32 && t.isSigned) ||
      (DataType.isFloat(t) && (t.precision === 1 || t.precision === 2));
    if (!numeric && !DataType.isUtf8(t)) {
      throw new TypeError(
        `ArrowAppender: unsupported column type ${String(t)} for "${field.name}" (Int32, Float32, Float64, Utf8 only)`,
      );
    }
    this.kind = numeric ? "number" : "string";
    this.builder = makeBuilder({ type: t, nullValues: [null, undefined] });
  }

  /** Throws (before anything is stored) when `v` does not fit this column. */
  check(v: unknown): void {
    if (v === null || v === undefined) {
      if (!this.field.nullable) throw columnError(this.field, "value is required");
    } else if (typeof v !== this.kind) {
      throw columnError(this.field, `expected a ${this.kind}, got ${typeof v}`);
    }
  }

  checkMany(src: ColumnInput | undefined, n: number): void {
    if (src === null || src === undefined || typeof src === "number" || typeof src === "string") {
      this.check(src);
      return;
    }
    if (src.length !== n) throw columnError(this.field, `expected ${n} values, got ${src.length}`);
    // Typed arrays hold numbers by construction.
    if (!(ArrayBuffer.isView(src) && this.kind === "number")) for (let i = 0; i < n; i++) this.check(src[i]);
  }

  push(v: unknown): void {
    this.builder.append(v);
  }

  /** `src` was validated by `checkMany` already. */
  pushMany(src: ColumnInput, n: number): void {
    if (src === null || typeof src === "number" || typeof src === "string") {
      for (let i = 0; i < n; i++) this.builder.append(src);
    } else {
      for (let i = 0; i < n; i++) this.builder.append((src as ArrayLike<unknown>)[i]);
    }
  }

  /** Returns the buffered rows as Data and empties the builder. */
  take(): Data {
    return this.builder.flush();
  }
}

// ---------------------------------------------------------------------------------------------
// Message encoding through apache-arrow's writer.
// ---------------------------------------------------------------------------------------------

/** The schema message alone (no EOS), exactly as apache-arrow's stream writer emits it. */
export function encodeSchemaMessage(schema: Schema): Uint8Array {
  const bytes = tableToIPC(new Table(schema), "stream");
  const scan = scanStream(bytes, "apache-arrow writer output");
  const first = scan.messages[0];
  if (!first || first.type !== MessageHeader.Schema) {
    throw new Error("apache-arrow stream writer did not start with a schema message");
  }
  return bytes.slice(0, first.end);
}

/** The record-batch message(s) for `batch`, without the schema message and EOS. */
export function encodeBatchMessages(batch: RecordBatch): Uint8Array {
  const bytes = tableToIPC(new Table(batch.schema, [batch]), "stream");
  const scan = scanStream(bytes, "apache-arrow writer output");
  const first = scan.messages[0];
  if (!first || first.type !== MessageHeader.Schema || scan.messages.length < 2) {
    throw new Error("apache-arrow stream writer produced an unexpected message sequence");
  }
  return bytes.slice(first.end, scan.validEnd);
}

function sameSchema(a: Schema, b: Schema): boolean {
  if (a.fields.length !== b.fields.length) return false;
  return a.fields.every((f, i) => {
    const g = b.fields[i]!;
    return f.name === g.name && f.nullable === g.nullable && String(f.type) === String(g.type);
  });
}

function describeSchema(s: Schema): string {
  return s.fields.map((f) => `${f.name}:${String(f.type)}${f.nullable ? "?" : ""}`).join(", ");
}

// ---------------------------------------------------------------------------------------------
// Appender
// ---------------------------------------------------------------------------------------------

export interface ArrowAppenderOptions {
  /** Flush once this many rows are buffered (default 256). */
  flushRows?: number;
  /**
   * Flush buffered rows at least this often, in milliseconds (default 2000): checked on every
   * append and by an unref'd timer, so idle rows still reach the disk. 0 disables both.
   */
  flushIntervalMs?: number;
  /** Name used in error messages (default: the file's base name). */
  label?: string;
}

const liveAppenders = new Set<ArrowAppender>();
/** Stream files this process has appended to (absolute paths): see ReadArrowStreamOptions.trusted. */
const writtenHere = new Set<string>();
let exitHookInstalled = false;

/** On a normal process exit, write rows that were appended but not yet flushed. */
function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.once("exit", () => {
    for (const a of liveAppenders) {
      try {
        a.flush();
      } catch {
        // Nothing useful can be done with an error while the process is exiting.
      }
    }
  });
}

function writeFully(fd: number, bytes: Uint8Array, position: number): void {
  // One write call in practice; the loop only covers a short write from the OS.
  let done = 0;
  while (done < bytes.length) {
    done += writeSync(fd, bytes, done, bytes.length - done, position + done);
  }
}

/** An encoded record-batch message waiting to be written (kept until it is on disk). */
interface QueuedMessage {
  bytes: Uint8Array;
  rows: number;
}

/** Reads a stream file and its index and decides where valid data ends. */
interface ExistingStream {
  scan: StreamScan;
  /** Index entries to keep (verified), plus entries for complete messages the index lacked. */
  entries: IndexEntry[];
  /** Whether the index file must be rewritten from `entries` (missing, or lines to add/cut). */
  rewriteIndex: boolean;
}

function inspectExisting(bytes: Uint8Array, indexText: string | null, label: string): ExistingStream {
  let entries: IndexEntry[] = [];
  let indexedEnd = 0;
  let rewriteIndex = indexText === null;
  if (indexText !== null) {
    const parsed = parseIndex(indexText, label);
    entries = parsed.entries;
    if (parsed.validEnd !== Buffer.byteLength(indexText)) rewriteIndex = true;
    indexedEnd = verifyIndexed(bytes, entries, label);
  }
  const scan = scanStream(bytes, label);
  if (scan.validEnd < indexedEnd) {
    throw new RunStoreError(
      `${label} is damaged: its messages end at byte ${scan.validEnd} but its index covers ${indexedEnd} bytes`,
      {
        file: label,
        offset: scan.validEnd,
      },
    );
  }
  // Complete messages after the indexed part: the writer died between a message and its index
  // line (or the file predates the index). They parsed, so they are kept and indexed.
  for (const m of scan.messages) {
    if (m.start < indexedEnd) continue;
    entries.push({
      offset: m.start,
      length: m.end - m.start,
      rows: m.rows,
      crc: messageCrc(bytes.subarray(m.start, m.end)),
    });
    rewriteIndex = true;
  }
  return { scan, entries, rewriteIndex };
}

/**
 * Appends rows of a fixed schema to an Arrow IPC stream file and its sidecar index. One writer per
 * file (the run lock guarantees it for run directories).
 *
 * A write never leaves a damaged file behind: rows are encoded into a message that stays queued
 * until the message and its index line are both on disk; if either write fails (disk full, I/O
 * error) both files are truncated back to their last good length, the rows stay queued for the
 * next flush, and the error is thrown.
 */
export class ArrowAppender {
  readonly path: string;
  readonly indexPath: string;
  readonly schema: Schema;
  private readonly label: string;
  private readonly columns: Column[];
  private readonly flushRows: number;
  private readonly flushIntervalMs: number;
  private fd: number | null;
  private indexFd: number;
  private position: number;
  private indexPosition: number;
  private pending = 0;
  private readonly queue: QueuedMessage[] = [];
  private lastFlushAt = Date.now();
  private timer: ReturnType<typeof setInterval> | null = null;
  private deferredError: unknown = undefined;
  private rowsOnDisk: number;

  private constructor(
    path: string,
    schema: Schema,
    fds: { fd: number; indexFd: number; position: number; indexPosition: number },
    rowsOnDisk: number,
    options: ArrowAppenderOptions,
  ) {
    this.path = path;
    this.indexPath = `${path}${INDEX_SUFFIX}`;
    this.schema = schema;
    this.label = options.label ?? basename(path);
    this.fd = fds.fd;
    this.indexFd = fds.indexFd;
    this.position = fds.position;
    this.indexPosition = fds.indexPosition;
    this.rowsOnDisk = rowsOnDisk;
    this.flushRows = Math.max(1, options.flushRows ?? 256);
    this.flushIntervalMs = Math.max(0, options.flushIntervalMs ?? 2000);
    this.columns = schema.fields.map((f) => new Column(f));
    if (this.flushIntervalMs > 0) {
      this.timer = setInterval(() => this.onTimer(), this.flushIntervalMs);
      this.timer.unref(); // never keeps Node alive
    }
    liveAppenders.add(this);
    installExitHook();
  }

  /**
   * Opens `path` for appending: creates it with a schema message, or continues an existing
   * stream of the same schema after cutting off a partly written last message or an EOS marker.
   * Throws RunStoreError when the existing file is damaged (a message that does not match its
   * checksum in the index, or bytes that cannot be a stream) or has a different schema; such a
   * file is left untouched.
   */
  static open(path: string, schema: Schema, options: ArrowAppenderOptions = {}): ArrowAppender {
    // Validate the column types before touching the file.
    schema.fields.forEach((f) => new Column(f));
    const label = options.label ?? basename(path);
    const indexPath = `${path}${INDEX_SUFFIX}`;
    const fd = openRunFile(path, constants.O_RDWR | constants.O_CREAT);
    let indexFd: number | null = null;
    try {
      indexFd = openRunFile(indexPath, constants.O_RDWR | constants.O_CREAT);
      const size = fstatSync(fd).size;
      const indexSize = fstatSync(indexFd).size;
      let position = 0;
      let rows = 0;
      let entries: IndexEntry[] = [];
      let rewriteIndex = true;
      if (size > 0) {
        // An empty index next to a non-empty stream: the stream predates the index (or the
        // writer died before the first index line); its complete messages get indexed now.
        const existing = inspectExisting(readFileSync(fd), indexSize > 0 ? readFileSync(indexFd, "utf8") : null, label);
        const scan = existing.scan;
        if (scan.schema !== null) {
          if (!sameSchema(scan.schema, schema)) {
            throw new RunStoreError(
              `${label} has a different schema: file has [${describeSchema(scan.schema)}], expected [${describeSchema(schema)}]`,
              { file: label },
            );
          }
          position = scan.validEnd;
          rows = scan.messages.reduce((s, m) => s + (m.type === MessageHeader.RecordBatch ? m.rows : 0), 0);
          entries = existing.entries;
          rewriteIndex = existing.rewriteIndex;
        }
        // else: only a partial schema message (the writer died while creating the file): start over.
      }
      if (size > position) ftruncateSync(fd, position);
      if (position === 0) {
        const msg = encodeSchemaMessage(schema);
        writeFully(fd, msg, 0);
        position = msg.length;
        entries = [{ offset: 0, length: msg.length, rows: 0, crc: messageCrc(msg) }];
        rewriteIndex = true;
      }
      let indexPosition = indexSize;
      if (rewriteIndex) {
        const text = entries.map(formatIndexLine).join("");
        ftruncateSync(indexFd, 0);
        writeFully(indexFd, Buffer.from(text), 0);
        indexPosition = Buffer.byteLength(text);
      }
      writtenHere.add(resolve(path));
      return new ArrowAppender(path, schema, { fd, indexFd, position, indexPosition }, rows, options);
    } catch (e) {
      closeSync(fd);
      if (indexFd !== null) closeSync(indexFd);
      throw writeError(path, e, "open for appending");
    }
  }

  /** Rows appended but not yet written (including rows of a flush that failed). */
  get bufferedRows(): number {
    return this.pending + this.queue.reduce((s, q) => s + q.rows, 0);
  }

  /** Rows in complete record batches on disk (including those found when the file was opened). */
  get writtenRows(): number {
    return this.rowsOnDisk;
  }

  get closed(): boolean {
    return this.fd === null;
  }

  private ensureOpen(): void {
    if (this.deferredError !== undefined) {
      const e = this.deferredError;
      this.deferredError = undefined;
      throw e;
    }
    if (this.fd === null) throw new Error(`ArrowAppender for ${this.label} is closed`);
  }

  private onTimer(): void {
    if (this.bufferedRows === 0 || this.fd === null) return;
    try {
      this.flush();
    } catch (e) {
      // A timer must not crash the process; the error surfaces at the next append/flush/close.
      this.deferredError = e;
    }
  }

  private maybeFlush(): void {
    if (this.pending >= this.flushRows) this.flush();
    else if (this.flushIntervalMs > 0 && Date.now() - this.lastFlushAt >= this.flushIntervalMs) this.flush();
  }

  /** Appends one row; keys are column names. Missing nullable columns become null. */
  append(row: Readonly<Record<string, unknown>>): void {
    this.ensureOpen();
    for (const c of this.columns) c.check(row[c.field.name]);
    for (const c of this.columns) c.push(row[c.field.name]);
    this.pending += 1;
    this.maybeFlush();
  }

  /**
   * Appends `length` rows given column-wise (typed arrays, arrays, or one scalar repeated for
   * every row). All rows of one call always land in the same record batch.
   */
  appendColumns(cols: Readonly<Record<string, ColumnInput | undefined>>, length: number): void {
    this.ensureOpen();
    if (!Number.isSafeInteger(length) || length < 0) throw new TypeError(`invalid row count ${length}`);
    if (length === 0) return;
    for (const c of this.columns) c.checkMany(cols[c.field.name], length);
    for (const c of this.columns) c.pushMany(cols[c.field.name] ?? null, length);
    this.pending += length;
    this.maybeFlush();
  }

  /** Writes one queued message and its index line, or restores both files and throws. */
  private writeMessage(q: QueuedMessage): void {
    const fd = this.fd!;
    const line = Buffer.from(
      formatIndexLine({ offset: this.position, length: q.bytes.length, rows: q.rows, crc: messageCrc(q.bytes) }),
    );
    try {
      writeFully(fd, q.bytes, this.position);
      writeFully(this.indexFd, line, this.indexPosition);
    } catch (e) {
      // Cut both files back to their last good length so the stream never holds a partial or
      // stale message; if even that fails the reader still treats the tail as a cut write.
      try {
        ftruncateSync(fd, this.position);
        ftruncateSync(this.indexFd, this.indexPosition);
      } catch {
        // Reported below through the original error.
      }
      const rows = this.bufferedRows;
      throw new RunStoreError(
        `cannot write ${q.rows} rows to ${this.label}: ${describeError(e)}; the file was cut back to its last complete message and ${rows} rows stay buffered (retried on the next flush)`,
        { file: this.label, offset: this.position, cause: e },
      );
    }
    this.position += q.bytes.length;
    this.indexPosition += line.length;
    this.rowsOnDisk += q.rows;
  }

  /**
   * Writes the buffered rows as one record batch (plus any batch a failed flush left queued).
   * Returns the rows written. On failure the rows stay buffered and RunStoreError is thrown.
   */
  flush(): number {
    this.ensureOpen();
    this.lastFlushAt = Date.now();
    const n = this.pending;
    if (n > 0) {
      const children = this.columns.map((c) => c.take());
      this.pending = 0;
      const data = makeData({ type: new Struct(this.schema.fields), length: n, nullCount: 0, children });
      this.queue.push({ bytes: encodeBatchMessages(new RecordBatch(this.schema, data)), rows: n });
    }
    let written = 0;
    while (this.queue.length > 0) {
      const q = this.queue[0]!;
      this.writeMessage(q);
      this.queue.shift();
      written += q.rows;
    }
    return written;
  }

  /** Flushes, then forces the stream and its index to stable storage (fsync). */
  sync(): void {
    this.flush();
    fsyncSync(this.fd!);
    fsyncSync(this.indexFd);
  }

  /**
   * Flushes, writes the end-of-stream marker and closes the file. Idempotent. If the final flush
   * fails the files are still closed (holding only complete messages) and the error is thrown.
   */
  close(): void {
    if (this.fd === null) return;
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    liveAppenders.delete(this);
    const fd = this.fd;
    try {
      this.deferredError = undefined;
      this.flush();
      const eos = new Uint8Array([0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0]);
      try {
        writeFully(fd, eos, this.position);
      } catch {
        // The marker is optional for every reader; never leave half of it behind.
        ftruncateSync(fd, this.position);
      }
    } finally {
      this.fd = null;
      closeSync(fd);
      closeSync(this.indexFd);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Reader
// ---------------------------------------------------------------------------------------------

function checkOffsets(offsets: ArrayLike<number | bigint>, from: number, count: number, limit: number): boolean {
  if (offsets.length < from + count + 1) return false;
  let prev = Number(offsets[from]!);
  if (prev < 0) return false;
  for (let i = from + 1; i <= from + count; i++) {
    const cur = Number(offsets[i]!);
    if (cur < prev) return false;
    prev = cur;
  }
  return prev <= limit;
}

/**
 * Checks that a loaded column's buffers are large enough for its declared length, so code that
 * iterates the table never reads past them. Returns a problem description or null.
 */
function checkData(d: Data, depth = 0): string | null {
  if (depth > 64) return "nesting too deep";
  const n = d.offset + d.length;
  const bitmap = d.nullBitmap as Uint8Array | undefined;
  if (d.nullCount > 0 && bitmap && bitmap.length > 0 && bitmap.length * 8 < n) return "validity bitmap too short";
  const values = d.values as ArrayLike<unknown> | undefined;
  const valuesLen = values?.length ?? 0;
  switch (d.typeId) {
    case Type.Int:
    case Type.Float:
    case Type.Date:
    case Type.Time:
    case Type.Timestamp:
    case Type.Duration:
    case Type.Interval:
    case Type.Decimal:
    case Type.FixedSizeBinary:
      if (valuesLen < n * d.stride) return "values buffer too short";
      break;
    case Type.Bool:
      if (valuesLen * 8 < n) return "values buffer too short";
      break;
    case Type.Utf8:
    case Type.Binary:
    case Type.LargeUtf8:
    case Type.LargeBinary:
      if (!checkOffsets(d.valueOffsets as ArrayLike<number | bigint>, d.offset, d.length, valuesLen))
        return "invalid value offsets";
      break;
    case Type.List:
    case Type.LargeList: {
      const childLen = d.children[0] ? d.children[0].offset + d.children[0].length : 0;
      if (!checkOffsets(d.valueOffsets as ArrayLike<number | bigint>, d.offset, d.length, childLen))
        return "invalid list offsets";
      break;
    }
    case Type.Struct:
      for (const c of d.children) if (c.length < n) return "struct child too short";
      break;
    case Type.Dictionary:
      if (valuesLen < n) return "dictionary indices too short";
      break;
    default:
      break;
  }
  for (const c of d.children) {
    const p = checkData(c, depth + 1);
    if (p) return p;
  }
  return null;
}

export interface ReadArrowStreamOptions {
  /**
   * Schema to use when the file is missing, empty or holds only part of its schema message (a
   * writer killed while creating it): an empty table with this schema is returned then.
   */
  schema?: Schema;
  /** Name used in error messages (default: the file's base name). */
  label?: string;
  /**
   * Text of the sidecar index (`<file>.index`). When given, every indexed message must match its
   * checksum: damage in the middle is refused with RunStoreError, only bytes after the indexed
   * part may be a cut tail. readArrowStream reads it from beside the file.
   */
  index?: string;
  /**
   * The indexed messages were written by this process (readArrowStream knows): once they match
   * their checksums their flatbuffers are apache-arrow's own output and are not verified again.
   */
  trusted?: boolean;
}

/**
 * Parses Arrow IPC stream bytes into a Table. A partly written last message and a missing EOS are
 * fine; bytes that cannot be a stream throw RunStoreError("<label> is corrupt at byte N: …").
 * Work is bounded by the byte length.
 */
export function readArrowStreamBytes(bytes: Uint8Array, options: ReadArrowStreamOptions = {}): Table {
  const label = options.label ?? "Arrow stream";
  // A private, 8-byte aligned copy: typed-array views over the body need aligned offsets.
  const buf = new Uint8Array(bytes.length);
  buf.set(bytes);
  let indexedEnd = 0;
  if (options.index !== undefined && options.index !== "") {
    indexedEnd = verifyIndexed(buf, parseIndex(options.index, label).entries, label);
  }
  const scan = scanStream(buf, label, options.trusted ? { trustedEnd: indexedEnd } : {});
  if (scan.validEnd < indexedEnd) {
    throw new RunStoreError(
      `${label} is damaged: its messages end at byte ${scan.validEnd} but its index covers ${indexedEnd} bytes`,
      {
        file: label,
        offset: scan.validEnd,
      },
    );
  }
  if (scan.schema === null) {
    if (options.schema) return new Table(options.schema);
    throw new RunStoreError(`${label} has no complete schema message`, { file: label, offset: 0 });
  }
  const batchStarts = scan.messages.filter((m) => m.type === MessageHeader.RecordBatch).map((m) => m.start);
  const batches: RecordBatch[] = [];
  try {
    const reader = RecordBatchReader.from(buf.subarray(0, scan.validEnd));
    for (const batch of reader) batches.push(batch);
    // With no record-batch message apache-arrow yields one empty placeholder batch; drop it.
    if (batchStarts.length === 0) batches.length = 0;
  } catch (e) {
    const at = batchStarts[batches.length] ?? 0;
    throw new RunStoreError(`${label} is corrupt at byte ${at}: ${describeError(e)}`, {
      file: label,
      offset: at,
      cause: e,
    });
  }
  batches.forEach((batch, i) => {
    const at = batchStarts[i] ?? 0;
    const problem =
      batch.data.children.length !== scan.schema!.fields.length
        ? "column count differs from the schema"
        : batch.data.children
            .map((c) => (c.length < batch.numRows ? "column shorter than the batch" : checkData(c)))
            .find((p) => p !== null);
    if (problem) throw new RunStoreError(`${label} is corrupt at byte ${at}: ${problem}`, { file: label, offset: at });
  });
  const schema = scan.schema;
  const odd = batches.findIndex((b) => !sameSchema(b.schema, schema));
  if (odd >= 0) {
    // apache-arrow marks a field nullable when a batch has nulls in it, so this catches nulls
    // in a non-nullable column as well as any other disagreement with the schema message.
    const at = batchStarts[odd] ?? 0;
    throw new RunStoreError(
      `${label} is corrupt at byte ${at}: record batch does not match the schema (nulls in a non-nullable column?)`,
      {
        file: label,
        offset: at,
      },
    );
  }
  try {
    return new Table(schema, batches);
  } catch (e) {
    throw new RunStoreError(`${label} is corrupt: ${describeError(e)}`, { file: label, cause: e });
  }
}

/**
 * Reads an Arrow IPC stream file written by ArrowAppender (or any stream writer) as one Table.
 * See readArrowStreamBytes for what is tolerated.
 */
export function readArrowStream(path: string, options: ReadArrowStreamOptions = {}): Table {
  const label = options.label ?? basename(path);
  // An index line is written after its message, so the index is read first: then it never
  // covers bytes that a concurrent writer appended after we read the stream.
  const index = options.index ?? readRunFile(`${path}${INDEX_SUFFIX}`)?.toString("utf8");
  const bytes = readRunFile(path);
  if (bytes === null) {
    if (options.schema) return new Table(options.schema);
    throw new RunStoreError(`cannot read ${label}: it does not exist`, { file: label });
  }
  const trusted = writtenHere.has(resolve(path));
  return readArrowStreamBytes(bytes, { ...options, label, trusted, ...(index !== undefined ? { index } : {}) });
}

/**
 * Checks a stream file without decoding its rows: every indexed message against its checksum,
 * and the framing of the rest (a cut tail is fine). Throws RunStoreError naming the damage; a
 * missing file passes.
 */
export function checkArrowStream(path: string): void {
  const label = basename(path);
  const index = readRunFile(`${path}${INDEX_SUFFIX}`)?.toString("utf8");
  const bytes = readRunFile(path);
  if (bytes === null) return;
  inspectExisting(bytes, index === undefined || index === "" ? null : index, label);
}
