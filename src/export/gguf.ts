/**
 * A GGUF v3 writer (the file format of llama.cpp/ggml), written from the format specification:
 * "GGUF" magic, version 3, tensor and metadata counts (u64), metadata key/value pairs, tensor
 * infos (name, dims innermost first, ggml type, offset into the data section), padding to the
 * alignment, then the tensor data, each tensor starting at a multiple of the alignment.
 * All integers and floats little-endian.
 *
 * The file is written under a temporary name next to the target and renamed when complete, so
 * an interrupted or failed write (disk full) never leaves a half-written file under the final name.
 */
import { closeSync, existsSync, fsyncSync, openSync, renameSync, unlinkSync, writeSync } from "node:fs";
import { basename, dirname, join } from "node:path";

export const GGUF_VERSION = 3;
export const GGUF_DEFAULT_ALIGNMENT = 32;

/** Metadata value types of the GGUF specification. */
export enum GGUFValueType {
  UINT8 = 0,
  INT8 = 1,
  UINT16 = 2,
  INT16 = 3,
  UINT32 = 4,
  INT32 = 5,
  FLOAT32 = 6,
  BOOL = 7,
  STRING = 8,
  ARRAY = 9,
  UINT64 = 10,
  INT64 = 11,
  FLOAT64 = 12,
}

export type GGUFScalarType = Exclude<GGUFValueType, GGUFValueType.ARRAY>;

export type GGUFValue =
  | { type: GGUFScalarType; value: number | bigint | boolean | string }
  | { type: GGUFValueType.ARRAY; itemType: GGUFScalarType; value: ArrayLike<number | bigint | boolean | string> };

export interface GGUFTensor {
  name: string;
  /** ggml type id (see ggmlTypes.ts). */
  type: number;
  /** Dimensions innermost (contiguous) first, as ggml's ne[]. */
  dims: number[];
  /** The packed data; its length must equal the ggml row size times the outer dims. */
  data: Uint8Array;
}

const utf8 = new TextEncoder();

/** Grows a byte buffer while the header is serialized. */
class ByteSink {
  private buf = new Uint8Array(1 << 16);
  private view = new DataView(this.buf.buffer);
  length = 0;

  private ensure(n: number): void {
    if (this.length + n <= this.buf.length) return;
    let cap = this.buf.length * 2;
    while (cap < this.length + n) cap *= 2;
    const next = new Uint8Array(cap);
    next.set(this.buf.subarray(0, this.length));
    this.buf = next;
    this.view = new DataView(next.buffer);
  }
  u8(v: number): void {
    this.ensure(1);
    this.view.setUint8(this.length, v);
    this.length += 1;
  }
  i8(v: number): void {
    this.ensure(1);
    this.view.setInt8(this.length, v);
    this.length += 1;
  }
  u16(v: number): void {
    this.ensure(2);
    this.view.setUint16(this.length, v, true);
    this.length += 2;
  }
  i16(v: number): void {
    this.ensure(2);
    this.view.setInt16(this.length, v, true);
    this.length += 2;
  }
  u32(v: number): void {
    this.ensure(4);
    this.view.setUint32(this.length, v, true);
    this.length += 4;
  }
  i32(v: number): void {
    this.ensure(4);
    this.view.setInt32(this.length, v, true);
    this.length += 4;
  }
  f32(v: number): void {
    this.ensure(4);
    this.view.setFloat32(this.length, v, true);
    this.length += 4;
  }
  f64(v: number): void {
    this.ensure(8);
    this.view.setFloat64(this.length, v, true);
    this.length += 8;
  }
  u64(v: number | bigint): void {
    this.ensure(8);
    this.view.setBigUint64(this.length, BigInt(v), true);
    this.length += 8;
  }
  i64(v: number | bigint): void {
    this.ensure(8);
    this.view.setBigInt64(this.length, BigInt(v), true);
    this.length += 8;
  }
  bytes(b: Uint8Array): void {
    this.ensure(b.length);
    this.buf.set(b, this.length);
    this.length += b.length;
  }
  /** gguf_string_t: u64 byte length, then UTF-8 bytes (no terminator). */
  string(s: string): void {
    const b = utf8.encode(s);
    this.u64(b.length);
    this.bytes(b);
  }
  pad(alignment: number): void {
    const r = this.length % alignment;
    if (r) this.bytes(new Uint8Array(alignment - r));
  }
  result(): Uint8Array {
    return this.buf.subarray(0, this.length);
  }
}

function intIn(v: unknown, lo: number, hi: number, what: string): number {
  if (typeof v !== "number" || !Number.isInteger(v) || v < lo || v > hi)
    throw new RangeError(`gguf: ${what} must be an integer in [${lo}, ${hi}], got ${String(v)}`);
  return v;
}

function writeScalar(s: ByteSink, type: GGUFScalarType, v: unknown, key: string): void {
  switch (type) {
    case GGUFValueType.UINT8:
      return s.u8(intIn(v, 0, 0xff, key));
    case GGUFValueType.INT8:
      return s.i8(intIn(v, -0x80, 0x7f, key));
    case GGUFValueType.UINT16:
      return s.u16(intIn(v, 0, 0xffff, key));
    case GGUFValueType.INT16:
      return s.i16(intIn(v, -0x8000, 0x7fff, key));
    case GGUFValueType.UINT32:
      return s.u32(intIn(v, 0, 0xffffffff, key));
    case GGUFValueType.INT32:
      return s.i32(intIn(v, -0x80000000, 0x7fffffff, key));
    case GGUFValueType.FLOAT32:
    case GGUFValueType.FLOAT64:
      if (typeof v !== "number") throw new TypeError(`gguf: ${key} must be a number`);
      return type === GGUFValueType.FLOAT32 ? s.f32(v) : s.f64(v);
    case GGUFValueType.BOOL:
      if (typeof v !== "boolean") throw new TypeError(`gguf: ${key} must be a boolean`);
      return s.u8(v ? 1 : 0);
    case GGUFValueType.STRING:
      if (typeof v !== "string") throw new TypeError(`gguf: ${key} must be a string`);
      return s.string(v);
    case GGUFValueType.UINT64:
    case GGUFValueType.INT64:
      if (typeof v !== "bigint" && !(typeof v === "number" && Number.isSafeInteger(v)))
        throw new TypeError(`gguf: ${key} must be an integer`);
      return type === GGUFValueType.UINT64 ? s.u64(v) : s.i64(v);
    default:
      throw new TypeError(`gguf: unknown value type ${String(type)} for ${key}`);
  }
}

/** The header (everything before the tensor data) and each tensor's offset in the data section. */
export function serializeHeader(
  metadata: ReadonlyMap<string, GGUFValue>,
  tensors: readonly GGUFTensor[],
  alignment = GGUF_DEFAULT_ALIGNMENT,
): { header: Uint8Array; offsets: number[]; dataBytes: number } {
  if (!Number.isInteger(alignment) || alignment < 1 || alignment % 8 !== 0)
    throw new RangeError(`gguf: alignment must be a positive multiple of 8, got ${alignment}`);
  const declared = metadata.get("general.alignment");
  if (declared && declared.value !== alignment)
    throw new Error("gguf: general.alignment disagrees with the alignment used");
  const s = new ByteSink();
  s.u32(0x46554747); // "GGUF" read as a little-endian u32
  s.u32(GGUF_VERSION);
  s.u64(tensors.length);
  s.u64(metadata.size);
  for (const [key, v] of metadata) {
    if (key.length === 0) throw new Error("gguf: empty metadata key");
    s.string(key);
    s.u32(v.type);
    if (v.type === GGUFValueType.ARRAY) {
      if (v.itemType === (GGUFValueType.ARRAY as number))
        throw new Error(`gguf: ${key}: nested arrays are not supported`);
      s.u32(v.itemType);
      s.u64(v.value.length);
      for (let i = 0; i < v.value.length; i++) writeScalar(s, v.itemType, v.value[i], `${key}[${i}]`);
    } else {
      writeScalar(s, v.type, v.value, key);
    }
  }
  const names = new Set<string>();
  const offsets: number[] = [];
  let off = 0;
  for (const t of tensors) {
    if (names.has(t.name)) throw new Error(`gguf: duplicate tensor name '${t.name}'`);
    names.add(t.name);
    if (utf8.encode(t.name).length > 64) throw new Error(`gguf: tensor name '${t.name}' is longer than 64 bytes`);
    if (t.dims.length < 1 || t.dims.length > 4) throw new Error(`gguf: tensor '${t.name}' must have 1 to 4 dims`);
    s.string(t.name);
    s.u32(t.dims.length);
    for (const d of t.dims) s.u64(intIn(d, 1, Number.MAX_SAFE_INTEGER, `${t.name} dim`));
    s.u32(t.type);
    s.u64(off);
    offsets.push(off);
    off += t.data.length;
    off += (alignment - (off % alignment)) % alignment;
  }
  s.pad(alignment);
  return { header: s.result(), offsets, dataBytes: off };
}

export interface WriteOptions {
  /** Replace an existing file at `path` (default: refuse). */
  force?: boolean;
  alignment?: number;
}

/** The temporary name a write goes to before the rename. */
export function tempPathFor(path: string): string {
  return join(dirname(path), `.${basename(path)}.${process.pid}.partial`);
}

/**
 * Writes a GGUF file atomically: to a temporary file in the same directory, fsynced, then renamed
 * over `path`. Returns the number of bytes written. On any failure the temporary file is removed
 * and the error says what happened (ENOSPC: disk full).
 */
export function writeGGUF(
  path: string,
  metadata: ReadonlyMap<string, GGUFValue>,
  tensors: readonly GGUFTensor[],
  opts: WriteOptions = {},
): number {
  const alignment = opts.alignment ?? GGUF_DEFAULT_ALIGNMENT;
  if (!opts.force && existsSync(path))
    throw new Error(`'${path}' already exists; pass --force (force: true) to replace it`);
  const { header, offsets } = serializeHeader(metadata, tensors, alignment);
  const tmp = tempPathFor(path);
  let fd: number | undefined;
  let written = 0;
  const put = (b: Uint8Array) => {
    let o = 0;
    while (o < b.length) o += writeSync(fd!, b, o, b.length - o);
    written += b.length;
  };
  try {
    fd = openSync(tmp, "wx");
    put(header);
    const base = header.length;
    for (let i = 0; i < tensors.length; i++) {
      const gap = base + offsets[i]! - written;
      if (gap > 0) put(new Uint8Array(gap));
      put(tensors[i]!.data);
    }
    const tail = (alignment - (written % alignment)) % alignment;
    if (tail) put(new Uint8Array(tail));
    fsyncSync(fd);
    closeSync(fd);
    fd = undefined;
    renameSync(tmp, path);
    return written;
  } catch (e) {
    if (fd !== undefined) {
      try {
        closeSync(fd);
      } catch {
        // already failing; the unlink below matters more
      }
    }
    try {
      unlinkSync(tmp);
    } catch {
      // never created
    }
    const code = (e as NodeJS.ErrnoException).code;
    if (code === "ENOSPC" || code === "EDQUOT" || code === "EFBIG")
      throw new Error(
        `writing '${path}' failed: ${code === "EFBIG" ? "file size limit reached" : "disk full"} after ${written} bytes; nothing was written under that name`,
        { cause: e },
      );
    throw new Error(`writing '${path}' failed: ${(e as Error).message}`, { cause: e });
  }
}
