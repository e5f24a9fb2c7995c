import { readFileSync } from "node:fs";
import { join } from "node:path";
import { Tiktoken } from "js-tiktoken/lite";
import gpt2Ranks from "js-tiktoken/ranks/gpt2";
import { describe, expect, it } from "vitest";
import { byteTokenizer, getTokenizer, gpt2Tokenizer, type TokenizerName } from "../../src/data/tokenizer.js";
import { utf8Length } from "../../src/data/utf8.js";
import { fixtureWikiTextDir, REAL_WIKITEXT_DIR, REAL_WIKITEXT_SKIP } from "./helpers.js";

const SAMPLE = "naïve café — 東京 🚀";
const MIXED =
  "The quick brown fox's 3 dogs don't   jump.\n\n  Über-naïve: 東京タワー, 🚀🚀 'll 're\t\ttabs\r\nCRLF <|endoftext|> end ";

function sumTokenBytes(name: TokenizerName, tokens: Int32Array): number {
  const tok = getTokenizer(name);
  let n = 0;
  for (const t of tokens) n += tok.tokenBytes(t);
  return n;
}

describe("byteTokenizer", () => {
  const tok = byteTokenizer();

  it("has a 256-byte vocabulary and id 'bytes'", () => {
    expect(tok.id).toBe("bytes");
    expect(tok.vocabSize).toBe(256);
  });

  it("encodes UTF-8 bytes", () => {
    expect(Array.from(tok.encode("A€"))).toEqual([0x41, 0xe2, 0x82, 0xac]);
    expect(tok.encode("")).toHaveLength(0);
    const t = tok.encode(SAMPLE);
    expect(t).toBeInstanceOf(Int32Array);
    expect(t.length).toBe(Buffer.byteLength(SAMPLE));
    expect(Math.max(...t)).toBeLessThan(256);
  });

  it("round-trips non-ASCII text", () => {
    for (const s of [SAMPLE, MIXED, ""]) expect(tok.decode(tok.encode(s))).toBe(s);
    expect(tok.decode([0x68, 0x69])).toBe("hi");
  });

  it("counts one byte per token and rejects ids outside the vocabulary", () => {
    expect(tok.tokenBytes(0)).toBe(1);
    expect(tok.tokenBytes(255)).toBe(1);
    expect(() => tok.tokenBytes(256)).toThrow(RangeError);
    expect(() => tok.decode([300])).toThrow(/outside the bytes vocabulary/);
  });
});

describe("gpt2Tokenizer", () => {
  const tok = gpt2Tokenizer();

  it("has the GPT-2 vocabulary", () => {
    expect(tok.id).toBe("gpt2");
    expect(tok.vocabSize).toBe(50257);
    expect(gpt2Tokenizer()).toBe(tok); // built once
  });

  it("gives the known GPT-2 ids", () => {
    expect(Array.from(tok.encode("Hello world"))).toEqual([15496, 995]);
    expect(Array.from(tok.encode(" the"))).toEqual([262]);
    expect(tok.encode("")).toHaveLength(0);
  });

  it("round-trips non-ASCII text", () => {
    for (const s of [SAMPLE, MIXED, "a", "\n\n\n"]) expect(tok.decode(tok.encode(s))).toBe(s);
  });

  it("encodes '<|endoftext|>' in text as plain text, never as the control token", () => {
    const t = tok.encode("a<|endoftext|>b");
    expect(Array.from(t)).not.toContain(50256);
    expect(tok.decode(t)).toBe("a<|endoftext|>b");
    expect(tok.decode([50256])).toBe("<|endoftext|>");
    expect(tok.tokenBytes(50256)).toBe(13);
  });

  it("matches js-tiktoken's own encoder", () => {
    const ref = new Tiktoken(gpt2Ranks);
    for (const s of [SAMPLE, MIXED, "Hello world", "  leading spaces\n \n trailing  "]) {
      expect(Array.from(tok.encode(s))).toEqual(ref.encode(s, [], []));
    }
  });

  it("rejects ids outside the vocabulary", () => {
    expect(() => tok.tokenBytes(50257)).toThrow(RangeError);
    expect(() => tok.tokenBytes(-1)).toThrow(RangeError);
    expect(() => tok.decode([1, 2.5])).toThrow(RangeError);
  });
});

describe("tokenBytes", () => {
  it.each(["bytes", "gpt2"] as const)("sums to the UTF-8 length of the text (%s)", (name) => {
    for (const s of [SAMPLE, MIXED]) {
      expect(sumTokenBytes(name, getTokenizer(name).encode(s))).toBe(Buffer.byteLength(s));
    }
  });

  it("utf8Length agrees with Buffer.byteLength", () => {
    for (const s of [SAMPLE, MIXED, "", "\ud800x"]) expect(utf8Length(s)).toBe(Buffer.byteLength(s));
  });
});

describe("getTokenizer", () => {
  it("returns the tokenizer by name and rejects unknown names", () => {
    expect(getTokenizer("bytes").id).toBe("bytes");
    expect(getTokenizer("gpt2").id).toBe("gpt2");
    expect(() => getTokenizer("llama" as TokenizerName)).toThrow(/unknown tokenizer "llama"/);
  });
});

describe("tokenizers on text in WikiText-2's format", () => {
  const text = readFileSync(join(fixtureWikiTextDir(), "valid.txt"), "utf8");

  it("gpt2: same ids as js-tiktoken (<unk>, @-@, headings), round trip", () => {
    const tokens = gpt2Tokenizer().encode(text);
    const ref = new Tiktoken(gpt2Ranks).encode(text, [], []);
    expect(tokens.length).toBe(ref.length);
    expect(tokens.every((v, i) => v === ref[i])).toBe(true);
    expect(sumTokenBytes("gpt2", tokens)).toBe(Buffer.byteLength(text));
    expect(gpt2Tokenizer().decode(tokens)).toBe(text);
  });
});

describe.skipIf(!REAL_WIKITEXT_DIR)(`tokenizers on WikiText-2 valid ${REAL_WIKITEXT_SKIP}`, () => {
  const text = REAL_WIKITEXT_DIR ? readFileSync(join(REAL_WIKITEXT_DIR, "valid.txt"), "utf8") : "";

  it("gpt2: same ids as js-tiktoken, bytes add up, round trip", { timeout: 120_000 }, () => {
    const t0 = performance.now();
    const tokens = gpt2Tokenizer().encode(text);
    const ms = performance.now() - t0;
    console.log(`gpt2 encode of WikiText-2 valid: ${tokens.length} tokens in ${ms.toFixed(0)} ms`);
    const ref = new Tiktoken(gpt2Ranks).encode(text, [], []);
    expect(tokens.length).toBe(ref.length);
    expect(tokens.every((v, i) => v === ref[i])).toBe(true);
    expect(sumTokenBytes("gpt2", tokens)).toBe(1121681);
    expect(gpt2Tokenizer().decode(tokens)).toBe(text);
  });

  it("bytes: one token per byte", () => {
    const t0 = performance.now();
    const tokens = byteTokenizer().encode(text);
    console.log(
      `bytes encode of WikiText-2 valid: ${tokens.length} tokens in ${(performance.now() - t0).toFixed(0)} ms`,
    );
    expect(tokens.length).toBe(1121681);
  });
});
