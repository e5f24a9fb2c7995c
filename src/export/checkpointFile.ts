/**
 * Reads the tensors and metadata of a PRIMAL checkpoint (safetensors: u64 header length, a JSON
 * header with dtype/shape/data_offsets per tensor and "__metadata__" strings, then raw bytes)
 * without building a trainer, so exporting needs neither the native addon nor the training data.
 */
import { closeSync, fstatSync, openSync, readSync } from "node:fs";

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

  static open(path: string): CheckpointFile {
    const what = `checkpoint '${path}'`;
    let fd: number;
    try {
      fd = openSync(path, "r");
    } catch (e) {
      throw new Error(`${what} cannot be opened: ${(e as Error).message}`, { cause: e });
    }
    try {
      const size = fstatSync(fd).size;
      const lenBuf = Buffer.alloc(8);
      if (size < 8 || readSync(fd, lenBuf, 0, 8, 0) !== 8) throw new Error(`${what} is truncated`);
      const hl = Number(lenBuf.readBigUInt64LE(0));
      if (hl <= 0 || hl > size - 8 || hl > 100 * 1024 * 1024)
        throw new Error(`${what} has a bad header length: not a checkpoint`);
      const hb = Buffer.alloc(hl);
      readSync(fd, hb, 0, hl, 8);
      const header = JSON.parse(hb.toString("utf8")) as Record<string, unknown>;
      const md = header.__metadata__ as Record<string, string> | undefined;
      if (!md || md.format !== "primal-checkpoint-1") throw new Error(`${what} is not a primal checkpoint`);
      const config = JSON.parse(md.config ?? "{}") as {
        model?: CheckpointModel;
        quant?: CheckpointMeta["quant"];
        actBits?: number;
      };
      // bridgeOn: written beside the bridge by checkpoints from before it could be null.
      const knobs = JSON.parse(md.knobs ?? "{}") as { bridge?: number | null; bridgeOn?: boolean };
      if (!config.model || !config.quant) throw new Error(`${what}: metadata lacks the model config`);
      const meta: CheckpointMeta = {
        model: config.model,
        quant: config.quant,
        actBits: config.actBits ?? 0,
        step: Number(md.step ?? "0"),
        bridge: knobs.bridgeOn === false || knobs.bridge === undefined ? null : knobs.bridge,
      };
      const entries = new Map<string, TensorEntry>();
      for (const [k, v] of Object.entries(header)) if (k !== "__metadata__") entries.set(k, v as TensorEntry);
      const dataStart = 8 + hl;
      for (const [k, e] of entries) {
        if (e.data_offsets[1] + dataStart > size)
          throw new Error(`${what} is truncated (tensor ${k} ends past the end of the file)`);
      }
      return new CheckpointFile(path, fd, meta, entries, dataStart);
    } catch (e) {
      closeSync(fd);
      throw e;
    }
  }

  has(name: string): boolean {
    return this.entries.has(name);
  }

  private raw(name: string, dtype: string, count?: number): { buf: Buffer; shape: number[] } {
    const e = this.entries.get(name);
    if (!e) throw new Error(`checkpoint '${this.path}' has no tensor '${name}'`);
    if (e.dtype !== dtype) throw new Error(`checkpoint tensor '${name}' is ${e.dtype}, expected ${dtype}`);
    const full = e.data_offsets[1] - e.data_offsets[0];
    const bytes = count === undefined ? full : count * DTYPE_BYTES[dtype]!;
    if (bytes > full) throw new Error(`checkpoint tensor '${name}' is smaller than needed`);
    const buf = Buffer.alloc(bytes);
    let got = 0;
    while (got < bytes) {
      const n = readSync(this.fd, buf, got, bytes - got, this.dataStart + e.data_offsets[0] + got);
      if (n <= 0) throw new Error(`checkpoint '${this.path}': short read of '${name}'`);
      got += n;
    }
    return { buf, shape: e.shape };
  }

  /** An F32 tensor (or its first `count` values). */
  f32(name: string, count?: number): { data: Float32Array; shape: number[] } {
    const { buf, shape } = this.raw(name, "F32", count);
    const data = new Float32Array(buf.length / 4);
    for (let i = 0; i < data.length; i++) data[i] = buf.readFloatLE(i * 4);
    return { data, shape };
  }

  i8(name: string): { data: Int8Array; shape: number[] } {
    const { buf, shape } = this.raw(name, "I8");
    return { data: new Int8Array(buf.buffer, buf.byteOffset, buf.length), shape };
  }

  close(): void {
    closeSync(this.fd);
  }
}
