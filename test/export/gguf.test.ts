// The GGUF writer and the ggml block packers: byte layout read back by an independent minimal
// reader written here from the specification, fp16 rounding, block contents, atomic writes.
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { GGUFValueType, writeGGUF, type GGUFValue } from "../../src/export/gguf.js";
import {
  GGMLType,
  dequantize,
  f16BitsToF32,
  f32ToF16Bits,
  packQ4_0,
  packTQ1_0,
  packTQ2_0,
  roundToF16,
  typeBytes,
} from "../../src/export/ggmlQuants.js";
import { byteToUnicode, byteVocab, gpt2Vocab } from "../../src/export/ggufVocab.js";

const dir = mkdtempSync(join(tmpdir(), "primal-gguf-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** Reads a GGUF header: metadata (scalars and arrays) and tensor infos. */
function readGGUF(buf: Buffer) {
  let o = 0;
  const u32 = () => ((o += 4), buf.readUInt32LE(o - 4));
  const u64 = () => ((o += 8), Number(buf.readBigUInt64LE(o - 8)));
  const str = () => {
    const n = u64();
    o += n;
    return buf.toString("utf8", o - n, o);
  };
  const scalar = (t: number): unknown => {
    switch (t) {
      case 0:
        return buf.readUInt8(o++);
      case 1:
        return buf.readInt8(o++);
      case 4:
        return u32();
      case 5:
        return ((o += 4), buf.readInt32LE(o - 4));
      case 6:
        return ((o += 4), buf.readFloatLE(o - 4));
      case 7:
        return buf.readUInt8(o++) === 1;
      case 8:
        return str();
      case 10:
        return u64();
      case 12:
        return ((o += 8), buf.readDoubleLE(o - 8));
      default:
        throw new Error(`type ${t} not handled by this reader`);
    }
  };
  const magic = buf.toString("ascii", 0, 4);
  o = 4;
  const version = u32();
  const nt = u64();
  const nkv = u64();
  const kv = new Map<string, unknown>();
  for (let i = 0; i < nkv; i++) {
    const k = str();
    const t = u32();
    if (t === 9) {
      const it = u32();
      const n = u64();
      const arr: unknown[] = [];
      for (let j = 0; j < n; j++) arr.push(scalar(it));
      kv.set(k, arr);
    } else kv.set(k, scalar(t));
  }
  const tensors: { name: string; dims: number[]; type: number; offset: number }[] = [];
  for (let i = 0; i < nt; i++) {
    const name = str();
    const nd = u32();
    const dims = Array.from({ length: nd }, () => u64());
    tensors.push({ name, dims, type: u32(), offset: u64() });
  }
  const align = (kv.get("general.alignment") as number | undefined) ?? 32;
  const dataStart = Math.ceil(o / align) * align;
  return { magic, version, kv, tensors, dataStart };
}

describe("fp16", () => {
  it("rounds to nearest even, keeps subnormals, overflows to inf", () => {
    expect(f32ToF16Bits(1)).toBe(0x3c00);
    expect(f32ToF16Bits(-2)).toBe(0xc000);
    expect(f32ToF16Bits(65504)).toBe(0x7bff);
    expect(f32ToF16Bits(65520)).toBe(0x7c00);
    expect(f32ToF16Bits(2 ** -24)).toBe(0x0001);
    expect(f32ToF16Bits(2 ** -26)).toBe(0);
    expect(f32ToF16Bits(1 + 2 ** -11)).toBe(0x3c00); // tie -> even
    expect(f32ToF16Bits(1 + 3 * 2 ** -11)).toBe(0x3c02); // tie -> even (up)
    expect(f16BitsToF32(0x3555)).toBeCloseTo(0.333251953125, 12);
    for (const x of [0.1, 1 / 3, 1e-4, 123.456, -7.25e-3])
      expect(Math.abs(roundToF16(x) - x) / Math.abs(x)).toBeLessThanOrEqual(2 ** -11);
  });
});

describe("ggml blocks", () => {
  const rnd = (n: number, lo: number, hi: number, seed = 1) => {
    let s = seed;
    const out = new Int8Array(n);
    for (let i = 0; i < n; i++) {
      s = (s * 1103515245 + 12345) >>> 0;
      out[i] = lo + ((s >>> 16) % (hi - lo + 1));
    }
    return out;
  };
  it("sizes: q4_0 18 B / 32, tq2_0 66 B / 256, tq1_0 54 B / 256", () => {
    expect(typeBytes(GGMLType.Q4_0, 64)).toBe(36);
    expect(typeBytes(GGMLType.TQ2_0, 512)).toBe(132);
    expect(typeBytes(GGMLType.TQ1_0, 256)).toBe(54);
    expect(() => typeBytes(GGMLType.TQ2_0, 100)).toThrow(/whole number/);
  });
  it("tq2_0: 2-bit codes q+1 at bit 2n of byte m for value m+32n, scale last", () => {
    const zeros = packTQ2_0(new Int8Array(256), 0.5);
    expect(zeros.subarray(0, 64).every((b) => b === 0x55)).toBe(true);
    expect(new DataView(zeros.buffer).getUint16(64, true)).toBe(f32ToF16Bits(0.5));
    const lv = new Int8Array(256);
    lv[1 + 32 * 3] = 1; // byte 1, bits 6..7 -> 2
    lv[128 + 5] = -1; // second half, byte 32+5, bits 0..1 -> 0
    const b = packTQ2_0(lv, 1);
    expect(b[1]).toBe(0x55 - (1 << 6) + (2 << 6));
    expect(b[37]).toBe(0x54);
  });
  it("tq1_0: five trits per byte, read back as ggml does (x*3^k mod 256, then *3 >> 8)", () => {
    const zeros = packTQ1_0(new Int8Array(256), 1);
    // all-zero levels are trits 1: 11111 in base 3 = 121, stored as ceil(121*256/243) = 128
    expect(zeros.subarray(0, 48).every((b) => b === 128)).toBe(true);
    const lv = rnd(768, -1, 1);
    const d = 0.0421;
    const back = dequantize(GGMLType.TQ1_0, packTQ1_0(lv, d), 768);
    for (let i = 0; i < 768; i++) expect(back[i]).toBe(lv[i]! * roundToF16(d));
  });
  it("q4_0 and tq2_0 round trips are exact up to the fp16 scale", () => {
    const q = rnd(320, -8, 7, 3);
    const back = dequantize(GGMLType.Q4_0, packQ4_0(q, 0.013), 320);
    for (let i = 0; i < 320; i++) expect(back[i]).toBe(q[i]! * roundToF16(0.013));
    const t = rnd(512, -1, 1, 5);
    const back2 = dequantize(GGMLType.TQ2_0, packTQ2_0(t, 3.5), 512);
    for (let i = 0; i < 512; i++) expect(back2[i]).toBe(t[i]! * 3.5);
    expect(() =>
      packTQ2_0(
        Int8Array.from({ length: 256 }, () => 2),
        1,
      ),
    ).toThrow(/outside/);
  });
});

describe("GGUF writer", () => {
  const md = (): Map<string, GGUFValue> =>
    new Map<string, GGUFValue>([
      ["general.architecture", { type: GGUFValueType.STRING, value: "llama" }],
      ["general.alignment", { type: GGUFValueType.UINT32, value: 32 }],
      ["x.f", { type: GGUFValueType.FLOAT32, value: 1.5 }],
      ["x.b", { type: GGUFValueType.BOOL, value: true }],
      ["x.i", { type: GGUFValueType.INT32, value: -3 }],
      ["x.u64", { type: GGUFValueType.UINT64, value: 2n ** 40n }],
      ["x.arr", { type: GGUFValueType.ARRAY, itemType: GGUFValueType.STRING, value: ["a", "ü b", ""] }],
    ]);
  const tensors = () => [
    { name: "a", type: GGMLType.F32, dims: [3], data: new Uint8Array(new Float32Array([1, 2, 3]).buffer) },
    { name: "b.weight", type: GGMLType.TQ2_0, dims: [256, 2], data: packTQ2_0(new Int8Array(512), 1) },
  ];
  it("writes the header, metadata, tensor infos and aligned data", () => {
    const p = join(dir, "w.gguf");
    const n = writeGGUF(p, md(), tensors());
    const buf = readFileSync(p);
    expect(buf.length).toBe(n);
    expect(n % 32).toBe(0);
    const g = readGGUF(buf);
    expect(g.magic).toBe("GGUF");
    expect(g.version).toBe(3);
    expect(g.kv.get("x.f")).toBe(1.5);
    expect(g.kv.get("x.b")).toBe(true);
    expect(g.kv.get("x.i")).toBe(-3);
    expect(g.kv.get("x.u64")).toBe(2 ** 40);
    expect(g.kv.get("x.arr")).toEqual(["a", "ü b", ""]);
    expect(g.tensors.map((t) => [t.name, t.dims, t.type, t.offset])).toEqual([
      ["a", [3], 0, 0],
      ["b.weight", [256, 2], 35, 32],
    ]);
    expect(g.dataStart % 32).toBe(0);
    expect(buf.readFloatLE(g.dataStart + 8)).toBe(3);
    expect(buf[g.dataStart + 32]).toBe(0x55);
  });
  it("refuses an existing file unless forced, and leaves no temporary file", () => {
    const p = join(dir, "exists.gguf");
    writeFileSync(p, "keep");
    expect(() => writeGGUF(p, md(), tensors())).toThrow(/already exists.*--force/);
    expect(readFileSync(p, "utf8")).toBe("keep");
    writeGGUF(p, md(), tensors(), { force: true });
    expect(readFileSync(p).toString("ascii", 0, 4)).toBe("GGUF");
    expect(readdirSync(dir).filter((f) => f.endsWith(".partial"))).toEqual([]);
  });
  it("rejects bad input before writing anything", () => {
    const p = join(dir, "bad.gguf");
    const dup = [...tensors(), tensors()[0]!];
    expect(() => writeGGUF(p, md(), dup)).toThrow(/duplicate tensor name 'a'/);
    const badVal = new Map<string, GGUFValue>([["k", { type: GGUFValueType.UINT32, value: -1 }]]);
    expect(() => writeGGUF(p, badVal, [])).toThrow(/k must be an integer in \[0, 4294967295\]/);
    expect(() => writeGGUF(join(dir, "no", "such", "dir.gguf"), md(), [])).toThrow(/writing .* failed/);
    expect(existsSync(p)).toBe(false);
  });
});

describe("tokenizer vocabularies", () => {
  it("byte vocabulary: 256 printable symbols, one per byte, no merges", () => {
    const v = byteVocab(260);
    expect(v.tokens).toHaveLength(260);
    expect(new Set(v.tokens.slice(0, 256)).size).toBe(256);
    expect(v.tokens[65]).toBe("A");
    expect(v.tokens[32]).toBe("Ġ");
    expect(v.tokens[10]).toBe("Ċ");
    expect(v.tokens[256]).toBe("[PAD256]");
    expect(v.merges).toEqual([]);
    expect(byteToUnicode()[255]).toBe("ÿ");
  });
  it("GPT-2: 50257 tokens, the 50000 merges in rank order", () => {
    const v = gpt2Vocab();
    expect(v.tokens).toHaveLength(50257);
    expect(v.merges).toHaveLength(50000);
    expect(v.merges.slice(0, 5)).toEqual(["Ġ t", "Ġ a", "h e", "i n", "r e"]);
    expect(v.tokens[50256]).toBe("<|endoftext|>");
    expect(v.tokens[262]).toBe("Ġthe");
    expect(v.eos).toBe(50256);
  });
});
