/**
 * ggml tensor types and packers for the ones the exporter writes, from the block layouts of
 * ggml's format (all little-endian):
 *   F32   4 bytes per value.
 *   F16   IEEE half, 2 bytes per value.
 *   Q4_0  blocks of 32: f16 d, then 16 bytes; byte j holds value j (low nibble) and value j+16
 *         (high nibble); value = (q - 8) * d.                           18 bytes / 32 = 4.5 bits
 *   TQ2_0 blocks of 256: 64 bytes, then f16 d. Each 128-value half uses 32 bytes; bits 2n..2n+1
 *         of byte m hold value m + 32n as q in {0,1,2}; value = (q - 1) * d.   66 bytes = 2.0625 bits
 *   TQ1_0 blocks of 256: 48 bytes qs, 4 bytes qh, then f16 d. Trits in base 3, five per byte
 *         (four in qh) stored as ceil(t * 256 / 243) so that a trit is read back by multiplying
 *         by 3^k (mod 256) and taking the high bits of x*3. qs[0..32) holds values m + 32n
 *         (n = 0..4), qs[32..48) values 160 + m + 16n, qh[j] values 240 + j + 4n (n = 0..3) with
 *         one extra factor 3.                                             54 bytes = 1.6875 bits
 * The ternary and Q4_0 packers take integer levels and one scale per tensor, because PRIMAL's
 * weights are exactly (integer level) x (per-layer scale): the only rounding is the fp16 scale.
 */

export enum GGMLType {
  F32 = 0,
  F16 = 1,
  Q4_0 = 2,
  TQ1_0 = 34,
  TQ2_0 = 35,
}

/** llama.cpp's llama_ftype ("general.file_type"): what most weight tensors are. */
export enum LlamaFileType {
  ALL_F32 = 0,
  MOSTLY_F16 = 1,
  MOSTLY_Q4_0 = 2,
  MOSTLY_TQ1_0 = 36,
  MOSTLY_TQ2_0 = 37,
}

export interface TypeTraits {
  name: string;
  blockSize: number;
  blockBytes: number;
}

export const TYPE_TRAITS: Record<GGMLType, TypeTraits> = {
  [GGMLType.F32]: { name: "f32", blockSize: 1, blockBytes: 4 },
  [GGMLType.F16]: { name: "f16", blockSize: 1, blockBytes: 2 },
  [GGMLType.Q4_0]: { name: "q4_0", blockSize: 32, blockBytes: 18 },
  [GGMLType.TQ1_0]: { name: "tq1_0", blockSize: 256, blockBytes: 54 },
  [GGMLType.TQ2_0]: { name: "tq2_0", blockSize: 256, blockBytes: 66 },
};

/** Bytes of `n` values of `type` (n a multiple of the block size). */
export function typeBytes(type: GGMLType, n: number): number {
  const t = TYPE_TRAITS[type];
  if (n % t.blockSize !== 0)
    throw new RangeError(`${t.name}: ${n} values are not a whole number of ${t.blockSize}-blocks`);
  return (n / t.blockSize) * t.blockBytes;
}

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

/** float32 -> IEEE binary16 bits, round to nearest even (overflow to inf, subnormals kept). */
export function f32ToF16Bits(x: number): number {
  f32[0] = x;
  const b = u32[0]!;
  const sign = (b >>> 16) & 0x8000;
  const exp = (b >>> 23) & 0xff;
  let mant = b & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant ? 0x200 : 0); // inf / nan
  const e = exp - 127 + 15;
  if (e >= 0x1f) return sign | 0x7c00;
  if (e <= 0) {
    if (e < -10) return sign; // underflows to zero
    mant |= 0x800000; // implicit bit
    const shift = 14 - e; // 24-bit significand down to the subnormal's 10 bits
    const half = 1 << (shift - 1);
    const rest = mant & ((1 << shift) - 1);
    let m = mant >>> shift;
    if (rest > half || (rest === half && m & 1)) m += 1;
    return sign | m;
  }
  let h = (e << 10) | (mant >>> 13);
  const rest = mant & 0x1fff;
  if (rest > 0x1000 || (rest === 0x1000 && h & 1)) h += 1; // may carry into the exponent: correct
  return sign | h;
}

/** IEEE binary16 bits -> number. */
export function f16BitsToF32(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const e = (h >>> 10) & 0x1f;
  const m = h & 0x3ff;
  if (e === 0) return sign * m * 2 ** -24;
  if (e === 0x1f) return m ? Number.NaN : sign * Number.POSITIVE_INFINITY;
  return sign * (1 + m / 1024) * 2 ** (e - 15);
}

/** The value a float becomes after a round trip through fp16. */
export function roundToF16(x: number): number {
  return f16BitsToF32(f32ToF16Bits(x));
}

export function packF32(values: Float32Array): Uint8Array {
  const out = new Uint8Array(values.length * 4);
  const dv = new DataView(out.buffer);
  for (let i = 0; i < values.length; i++) dv.setFloat32(i * 4, values[i]!, true);
  return out;
}

export function packF16(values: Float32Array): Uint8Array {
  const out = new Uint8Array(values.length * 2);
  const dv = new DataView(out.buffer);
  for (let i = 0; i < values.length; i++) dv.setUint16(i * 2, f32ToF16Bits(values[i]!), true);
  return out;
}

function checkLevels(levels: Int8Array, lo: number, hi: number, what: string): void {
  for (let i = 0; i < levels.length; i++) {
    const q = levels[i]!;
    if (q < lo || q > hi) throw new RangeError(`${what}: level ${q} at ${i} is outside [${lo}, ${hi}]`);
  }
}

/** Q4_0 from integer levels in [-8, 7] and one scale d: value = level * fp16(d). */
export function packQ4_0(levels: Int8Array, d: number): Uint8Array {
  checkLevels(levels, -8, 7, "q4_0");
  const nb = typeBytes(GGMLType.Q4_0, levels.length) / 18;
  const out = new Uint8Array(nb * 18);
  const dv = new DataView(out.buffer);
  const dh = f32ToF16Bits(d);
  for (let b = 0; b < nb; b++) {
    const o = b * 18;
    const x = b * 32;
    dv.setUint16(o, dh, true);
    for (let j = 0; j < 16; j++) out[o + 2 + j] = (levels[x + j]! + 8) | ((levels[x + j + 16]! + 8) << 4);
  }
  return out;
}

/** TQ2_0 from ternary levels (-1, 0, 1) and one scale d: value = level * fp16(d). */
export function packTQ2_0(levels: Int8Array, d: number): Uint8Array {
  checkLevels(levels, -1, 1, "tq2_0");
  const nb = typeBytes(GGMLType.TQ2_0, levels.length) / 66;
  const out = new Uint8Array(nb * 66);
  const dv = new DataView(out.buffer);
  const dh = f32ToF16Bits(d);
  for (let b = 0; b < nb; b++) {
    const o = b * 66;
    for (let half = 0; half < 2; half++) {
      const x = b * 256 + half * 128;
      for (let m = 0; m < 32; m++) {
        let q = 0;
        for (let n = 0; n < 4; n++) q |= (levels[x + m + 32 * n]! + 1) << (2 * n);
        out[o + half * 32 + m] = q;
      }
    }
    dv.setUint16(o + 64, dh, true);
  }
  return out;
}

/** Trits t_0..t_{k-1} (most significant first) as the byte ceil(value * 256 / 243). */
function tritByte(trits: number[]): number {
  let q = 0;
  for (const t of trits) q = q * 3 + t;
  return Math.floor((q * 256 + 242) / 243);
}

/** TQ1_0 from ternary levels (-1, 0, 1) and one scale d: value = level * fp16(d). */
export function packTQ1_0(levels: Int8Array, d: number): Uint8Array {
  checkLevels(levels, -1, 1, "tq1_0");
  const nb = typeBytes(GGMLType.TQ1_0, levels.length) / 54;
  const out = new Uint8Array(nb * 54);
  const dv = new DataView(out.buffer);
  const dh = f32ToF16Bits(d);
  for (let b = 0; b < nb; b++) {
    const o = b * 54;
    const x = b * 256;
    const t = (i: number) => levels[x + i]! + 1;
    for (let m = 0; m < 32; m++) out[o + m] = tritByte([0, 1, 2, 3, 4].map((n) => t(m + 32 * n)));
    for (let m = 0; m < 16; m++) out[o + 32 + m] = tritByte([0, 1, 2, 3, 4].map((n) => t(160 + m + 16 * n)));
    // Four trits and a trailing zero trit, so the first one is the most significant of five.
    for (let j = 0; j < 4; j++) out[o + 48 + j] = tritByte([...[0, 1, 2, 3].map((n) => t(240 + j + 4 * n)), 0]);
    dv.setUint16(o + 52, dh, true);
  }
  return out;
}

/** Reads back values of a packed tensor (the inverse of the packers; used by tests and checks). */
export function dequantize(type: GGMLType, data: Uint8Array, n: number): Float32Array {
  const out = new Float32Array(n);
  const dv = new DataView(data.buffer, data.byteOffset, data.byteLength);
  if (data.length !== typeBytes(type, n))
    throw new RangeError(`dequantize: ${data.length} bytes for ${n} values of ${TYPE_TRAITS[type].name}`);
  switch (type) {
    case GGMLType.F32:
      for (let i = 0; i < n; i++) out[i] = dv.getFloat32(i * 4, true);
      return out;
    case GGMLType.F16:
      for (let i = 0; i < n; i++) out[i] = f16BitsToF32(dv.getUint16(i * 2, true));
      return out;
    case GGMLType.Q4_0:
      for (let b = 0; b < n / 32; b++) {
        const d = f16BitsToF32(dv.getUint16(b * 18, true));
        for (let j = 0; j < 16; j++) {
          const byte = data[b * 18 + 2 + j]!;
          out[b * 32 + j] = ((byte & 15) - 8) * d;
          out[b * 32 + j + 16] = ((byte >> 4) - 8) * d;
        }
      }
      return out;
    case GGMLType.TQ2_0:
      for (let b = 0; b < n / 256; b++) {
        const d = f16BitsToF32(dv.getUint16(b * 66 + 64, true));
        for (let half = 0; half < 2; half++)
          for (let m = 0; m < 32; m++) {
            const byte = data[b * 66 + half * 32 + m]!;
            for (let k = 0; k < 4; k++) out[b * 256 + half * 128 + m + 32 * k] = (((byte >> (2 * k)) & 3) - 1) * d;
          }
      }
      return out;
    case GGMLType.TQ1_0: {
      // Trit k of a byte: ((byte * 3^k mod 256) * 3) >> 8.
      const trit = (byte: number, k: number) => ((((byte * 3 ** k) & 0xff) * 3) >> 8) - 1;
      for (let b = 0; b < n / 256; b++) {
        const o = b * 54;
        const x = b * 256;
        const d = f16BitsToF32(dv.getUint16(o + 52, true));
        for (let m = 0; m < 32; m++) for (let k = 0; k < 5; k++) out[x + m + 32 * k] = trit(data[o + m]!, k) * d;
        for (let m = 0; m < 16; m++)
          for (let k = 0; k < 5; k++) out[x + 160 + m + 16 * k] = trit(data[o + 32 + m]!, k) * d;
        for (let j = 0; j < 4; j++)
          for (let k = 0; k < 4; k++) out[x + 240 + j + 4 * k] = trit(data[o + 48 + j]!, k) * d;
      }
      return out;
    }
  }
}
