import { describe, expect, it } from "vitest";
import { decodeUtf8Strict, firstInvalidUtf8Offset } from "../../src/data/utf8.js";

describe("strict UTF-8", () => {
  it("accepts valid text and drops a BOM", () => {
    const bytes = new Uint8Array([0xef, 0xbb, 0xbf, ...Buffer.from("naïve 東京 🚀")]);
    expect(firstInvalidUtf8Offset(bytes)).toBe(-1);
    expect(decodeUtf8Strict(bytes, "x")).toBe("naïve 東京 🚀");
  });

  it("finds the first invalid byte", () => {
    const cases: [number[], number][] = [
      [[0x61, 0xff], 1], // never valid
      [[0x61, 0x62, 0xc3], 2], // truncated 2-byte sequence
      [[0xc0, 0x80], 0], // overlong
      [[0xed, 0xa0, 0x80], 0], // UTF-16 surrogate
      [[0xf4, 0x90, 0x80, 0x80], 0], // above U+10FFFF
      [[0xe2, 0x82, 0x41], 0], // bad continuation
    ];
    for (const [bytes, at] of cases) {
      expect(firstInvalidUtf8Offset(new Uint8Array(bytes))).toBe(at);
      expect(() => decodeUtf8Strict(new Uint8Array(bytes), "f.txt")).toThrow(`offset ${at}`);
    }
  });
});
