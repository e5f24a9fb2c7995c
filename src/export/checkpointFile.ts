/**
 * Reads the tensors and metadata of a PRIMAL checkpoint (safetensors: u64 header length, a JSON
 * header with dtype/shape/data_offsets per tensor and "__metadata__" strings, then raw bytes)
 * without building a trainer, so exporting needs neither the native addon nor the training data.
 */
import { closeSync, constants, fstatSync, openSync, readSync } from "node:fs";
import { crc32 } from "node:zlib";

export interface CheckpointModel {
  vocab: number;
  dModel: number;
  layers: number;
  heads: number;
  ffn: number;
  seq: number;
  ropeTheta: number;
  normEps: number;
}

export interface CheckpointMeta {
  model: CheckpointModel;
  quant: "fp" | "ste" | "poltergeist";
  actBits: number;
  step: number;
  /** The bridge value in use, or null when the bridge is off. */
  bridge: number | null;
}

/**
 * The level a stray ±1 code weighs while the bridge is off (kBridgeOffLevel in
 * native/include/primal/knobs.h): only setCodes() can leave one there.
 */
export const BRIDGE_OFF_LEVEL = 0.5;

interface TensorEntry {
  dtype: string;
  shape: number[];
  data_offsets: [number, number];
}

const DTYPE_BYTES: Record<string, number> = { F32: 4, I8: 1, U8: 1, I32: 4 };
/** The native loader's bound is smaller and model-dependent; this one only keeps parsing cheap. */
const MAX_HEADER = 100 * 1024 * 1024;
const MAX_STEP = 1_000_000_000;
const QUANTS: readonly CheckpointMeta["quant"][] = ["fp", "ste", "poltergeist"];

function isObject(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === "object" && !Array.isArray(v);
}

function parseJson(text: string, what: string): unknown {
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new Error(`${what}: invalid JSON (${e instanceof Error ? e.message : String(e)})`, { cause: e });
  }
}

function readFully(fd: number, buf: Buffer, at: number, what: string): void {
  let got = 0;
  while (got < buf.length) {
    const n = readSync(fd, buf, got, buf.length - got, at + got);
    if (n <= 0) throw new Error(`${what} is truncated (short read at byte ${at + got})`);
    got += n;
  }
}

/** The metadata the export needs, each field checked with its name in the error. */
function parseMeta(text: (k: string) => string, what: string): CheckpointMeta {
  const config = parseJson(text("config"), `${what}: metadata 'config'`);
  if (!isObject(config) || !isObject(config["model"])) throw new Error(`${what}: metadata lacks the model config`);
  const m = config["model"];
  const int = (k: string, max: number): number => {
    const v = m[k];
    if (typeof v !== "number" || !Number.isSafeInteger(v) || v < 1 || v > max)
      throw new Error(`${what}: config field 'model.${k}' must be an integer in [1, ${max}], got ${JSON.stringify(v)}`);
    return v;
  };
  const pos = (k: string): number => {
    const v = m[k];
    if (typeof v !== "number" || !Number.isFinite(v) || v <= 0)
      throw new Error(`${what}: config field 'model.${k}' must be a positive number, got ${JSON.stringify(v)}`);
    return v;
  };
  const model: CheckpointModel = {
    vocab: int("vocab", 1 << 24),
    dModel: int("dModel", 1 << 16),
    layers: int("layers", 4096),
    heads: int("heads", 4096),
    ffn: int("ffn", 1 << 18),
    seq: int("seq", 1 << 24),
    ropeTheta: pos("ropeTheta"),
    normEps: pos("normEps"),
  };
  if (model.dModel % model.heads !== 0)
    throw new Error(`${what}: config 'model.dModel' ${model.dModel} is not a multiple of 'model.heads' ${model.heads}`);
  const quant = config["quant"];
  if (!QUANTS.includes(quant as CheckpointMeta["quant"]))
    throw new Error(`${what}: config field 'quant' must be one of ${QUANTS.join(", ")}, got ${JSON.stringify(quant)}`);
  const actBits = config["actBits"] ?? 0;
  if (typeof actBits !== "number" || !Number.isInteger(actBits) || actBits < 0 || actBits > 32)
    throw new Error(`${what}: config field 'actBits' must be an integer in [0, 32], got ${JSON.stringify(actBits)}`);
  const knobs = parseJson(text("knobs"), `${what}: metadata 'knobs'`);
  if (!isObject(knobs)) throw new Error(`${what}: metadata 'knobs' is not a JSON object`);
  const bridge = knobs["bridge"];
  if (bridge !== undefined && bridge !== null && (typeof bridge !== "number" || !(bridge > 0 && bridge < 1)))
    throw new Error(`${what}: knob 'bridge' must be null or a number in (0, 1), got ${JSON.stringify(bridge)}`);
  if (knobs["bridgeOn"] !== undefined && typeof knobs["bridgeOn"] !== "boolean")
    throw new Error(`${what}: knob 'bridgeOn' must be true or false, got ${JSON.stringify(knobs["bridgeOn"])}`);
  const stepText = text("step");
  if (!/^\d{1,10}$/.test(stepText) || Number(stepText) > MAX_STEP)
    throw new Error(`${what}: metadata 'step' must be an integer in [0, ${MAX_STEP}], got '${stepText}'`);
  return {
    model,
    quant: quant as CheckpointMeta["quant"],
    actBits,
    step: Number(stepText),
    // bridgeOn: written beside the bridge by checkpoints from before it could be null.
    bridge: knobs["bridgeOn"] === false || bridge === undefined || bridge === null ? null : bridge,
  };
}

/** One tensor entry of the header, checked: dtype, shape, and offsets inside the data section. */
function parseEntry(name: string, v: unknown, dataLen: number, what: string): TensorEntry {
  const bad = (why: string) => new Error(`${what}: tensor '${name}' ${why}`);
  if (!isObject(v)) throw bad("is not a JSON object");
  const dtype = v["dtype"];
  if (typeof dtype !== "string") throw bad("has no dtype");
  const shape = v["shape"];
  if (!Array.isArray(shape) || !shape.every((d) => typeof d === "number" && Number.isSafeInteger(d) && d >= 0))
    throw bad("has an invalid shape (expected an array of non-negative integers)");
  const offs = v["data_offsets"];
  if (
    !Array.isArray(offs) ||
    offs.length !== 2 ||
    !offs.every((o) => typeof o === "number" && Number.isSafeInteger(o) && o >= 0) ||
    offs[0] > offs[1]
  )
    throw bad("has invalid data_offsets (expected [begin, end] with 0 <= begin <= end)");
  const [a, b] = offs as [number, number];
  if (b > dataLen)
    throw bad(`data lies outside the file (bytes ${a}..${b} of a ${dataLen}-byte data section; truncated?)`);
  const width = DTYPE_BYTES[dtype];
  if (width !== undefined) {
    const count = (shape as number[]).reduce((p, d) => p * d, 1);
    if (count * width !== b - a) throw bad(`has ${b - a} bytes of data for shape [${shape.join(",")}] of ${dtype}`);
  }
  return { dtype, shape: shape as number[], data_offsets: [a, b] };
}

/**
 * The tensor data must be one contiguous run of all tensors filling the data section, and match
 * the CRC-32 in the header (the same rule the native loader applies on resume).
 */
function verifyData(
  fd: number,
  entries: Map<string, TensorEntry>,
  dataStart: number,
  dataLen: number,
  expected: string,
  what: string,
): void {
  const spans = [...entries.values()].map((e) => e.data_offsets).sort((x, y) => x[0] - y[0]);
  let end = 0;
  for (const [a, b] of spans) {
    if (a !== end) throw new Error(`${what} is damaged: its tensor data is not contiguous at byte ${end}`);
    end = b;
  }
  let crc = 0;
  const chunk = Buffer.alloc(Math.min(16 << 20, Math.max(1, dataLen)));
  for (let at = 0; at < dataLen;) {
    const n = Math.min(chunk.length, dataLen - at);
    const part = chunk.subarray(0, n);
    readFully(fd, part, dataStart + at, what);
    crc = crc32(part, crc);
    at += n;
  }
  const got = (crc >>> 0).toString(16).padStart(8, "0");
  if (end !== dataLen || got !== expected)
    throw new Error(
      `${what} is damaged: its tensor data does not match the checksum in its header (dataCrc32 ${expected}, data has ${got})`,
    );
}

export class CheckpointFile {
  readonly path: string;
  readonly meta: CheckpointMeta;
  private readonly fd: number;
  private readonly entries: Map<string, TensorEntry>;
  private readonly dataStart: number;

  private constructor(
    path: string,
    fd: number,
    meta: CheckpointMeta,
    entries: Map<string, TensorEntry>,
    dataStart: number,
  ) {
    this.path = path;
    this.fd = fd;
    this.meta = meta;
    this.entries = entries;
    this.dataStart = dataStart;
  }

  /**
   * Opens and validates a checkpoint: every header field the export uses is checked (a crafted
   * file gets an error naming the field, never an internal one), and the tensor data is verified
   * against `__metadata__.dataCrc32` like a resume does (checkpoints written before the checksum
   * existed have none and are read unverified).
   */
  static open(path: string): CheckpointFile {
    const what = `checkpoint '${path}'`;
    let fd: number;
    try {
      // Non-blocking: a FIFO named like a checkpoint must not hang the export.
      fd = openSync(path, constants.O_RDONLY | constants.O_NONBLOCK);
    } catch (e) {
      throw new Error(`${what} cannot be opened: ${(e as Error).message}`, { cause: e });
    }
    try {
      const st = fstatSync(fd);
      if (!st.isFile()) throw new Error(`${what} is not a regular file`);
      const size = st.size;
      const lenBuf = Buffer.alloc(8);
      if (size < 8 || readSync(fd, lenBuf, 0, 8, 0) !== 8) throw new Error(`${what} is truncated: ${size} bytes`);
      const hl = Number(lenBuf.readBigUInt64LE(0));
      if (hl <= 0 || hl > size - 8 || hl > MAX_HEADER)
        throw new Error(
          `${what} has a bad header length (${hl} bytes for a file of ${size}): not a safetensors checkpoint, or truncated`,
        );
      const hb = Buffer.alloc(hl);
      readFully(fd, hb, 8, what);
      const header = parseJson(hb.toString("utf8"), `${what} header`);
      if (!isObject(header)) throw new Error(`${what}: the header is not a JSON object`);
      const md = header["__metadata__"];
      if (!isObject(md) || md["format"] !== "primal-checkpoint-1")
        throw new Error(`${what} is not a primal checkpoint (missing __metadata__.format = primal-checkpoint-1)`);
      const metaText = (k: string): string => {
        const v = md[k];
        if (typeof v !== "string") throw new Error(`${what}: metadata field '${k}' is missing or not a string`);
        return v;
      };
      const meta = parseMeta(metaText, what);
      const dataStart = 8 + hl;
      const dataLen = size - dataStart;
      const entries = new Map<string, TensorEntry>();
      for (const [k, v] of Object.entries(header)) {
        if (k === "__metadata__") continue;
        entries.set(k, parseEntry(k, v, dataLen, what));
      }
      if (md["dataCrc32"] !== undefined) verifyData(fd, entries, dataStart, dataLen, metaText("dataCrc32"), what);
      return new CheckpointFile(path, fd, meta, entries, dataStart);
    } catch (e) {
      closeSync(fd);
      throw e;
    }
  }

  has(name: string): boolean {
    return this.entries.has(name);
  }

  private raw(name: string, dtype: string, count?: number, exact = false): { buf: Buffer; shape: number[] } {
    const e = this.entries.get(name);
    if (!e) throw new Error(`checkpoint '${this.path}' has no tensor '${name}'`);
    if (e.dtype !== dtype)
      throw new Error(`checkpoint '${this.path}': tensor '${name}' has dtype ${e.dtype}, expected ${dtype}`);
    const full = e.data_offsets[1] - e.data_offsets[0];
    const bytes = count === undefined ? full : count * DTYPE_BYTES[dtype]!;
    if (bytes > full || (exact && bytes !== full))
      throw new Error(
        `checkpoint '${this.path}': tensor '${name}' holds ${full / DTYPE_BYTES[dtype]!} values; this model needs ${exact ? "" : "at least "}${bytes / DTYPE_BYTES[dtype]!}`,
      );
    const buf = Buffer.alloc(bytes);
    let got = 0;
    while (got < bytes) {
      const n = readSync(this.fd, buf, got, bytes - got, this.dataStart + e.data_offsets[0] + got);
      if (n <= 0) throw new Error(`checkpoint '${this.path}': short read of '${name}'`);
      got += n;
    }
    return { buf, shape: e.shape };
  }

  /** An F32 tensor (or its first `count` values; all of it, exactly `count`, with `exact`). */
  f32(name: string, count?: number, exact = false): { data: Float32Array; shape: number[] } {
    const { buf, shape } = this.raw(name, "F32", count, exact);
    const data = new Float32Array(buf.length / 4);
    for (let i = 0; i < data.length; i++) data[i] = buf.readFloatLE(i * 4);
    return { data, shape };
  }

  /** An I8 tensor of exactly `count` values (when given). */
  i8(name: string, count?: number): { data: Int8Array; shape: number[] } {
    const { buf, shape } = this.raw(name, "I8", count, count !== undefined);
    return { data: new Int8Array(buf.buffer, buf.byteOffset, buf.length), shape };
  }

  close(): void {
    closeSync(this.fd);
  }
}
