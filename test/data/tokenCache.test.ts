import { copyFileSync, readdirSync, readFileSync, statSync, truncateSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, afterEach, describe, expect, it } from "vitest";
import { CACHE_DIR_ENV } from "../../src/data/paths.js";
import {
  loadOrBuildTokenCache,
  loadOrBuildTokens,
  TOKEN_CACHE_MAGIC,
  tokenCachePath,
} from "../../src/data/tokenCache.js";
import { byteTokenizer, gpt2Tokenizer, type Tokenizer } from "../../src/data/tokenizer.js";
import { cleanupTempDirs, tempDir } from "./helpers.js";

afterAll(cleanupTempDirs);
const savedCacheEnv = process.env[CACHE_DIR_ENV];
afterEach(() => {
  if (savedCacheEnv === undefined) delete process.env[CACHE_DIR_ENV];
  else process.env[CACHE_DIR_ENV] = savedCacheEnv;
});

const TEXT = "State of the Union — naïve café 東京 🚀\n".repeat(50);

/** Wraps a tokenizer and counts encode calls, to tell cache hits from rebuilds. */
function counting(base: Tokenizer): Tokenizer & { calls: number } {
  const t = {
    calls: 0,
    id: base.id,
    vocabSize: base.vocabSize,
    encode(text: string) {
      t.calls++;
      return base.encode(text);
    },
    decode: (tokens: ArrayLike<number>) => base.decode(tokens),
    tokenBytes: (token: number) => base.tokenBytes(token),
  };
  return t;
}

describe("token cache", () => {
  it("tokenizes once, then reuses the file", () => {
    const cacheDir = tempDir();
    const tok = counting(byteTokenizer());
    const first = loadOrBuildTokenCache({ text: TEXT, tokenizer: tok, cacheDir, name: "sotu-train" });
    expect(first).toMatchObject({ reused: false, rebuildReason: "missing" });
    expect(first.path).toBe(join(cacheDir, "tokens", "sotu-train.bytes.tok"));
    expect(Array.from(first.tokens)).toEqual(Array.from(byteTokenizer().encode(TEXT)));
    const mtime = statSync(first.path).mtimeMs;

    const second = loadOrBuildTokenCache({ text: TEXT, tokenizer: tok, cacheDir, name: "sotu-train" });
    expect(second.reused).toBe(true);
    expect(tok.calls).toBe(1);
    expect(statSync(first.path).mtimeMs).toBe(mtime);
    expect(second.tokens).toEqual(first.tokens);
    expect(loadOrBuildTokens({ text: TEXT, tokenizer: tok, cacheDir, name: "sotu-train" })).toEqual(first.tokens);
    expect(tok.calls).toBe(1);
  });

  it("stores uint16 tokens behind the documented header", () => {
    const cacheDir = tempDir();
    const { path, tokens } = loadOrBuildTokenCache({ text: TEXT, tokenizer: gpt2Tokenizer(), cacheDir, name: "g" });
    const file = readFileSync(path);
    expect(file.subarray(0, 8).toString("latin1")).toBe(TOKEN_CACHE_MAGIC);
    expect(file.readUInt32LE(8)).toBe(1); // version
    const headerLen = file.readUInt32LE(12);
    expect(file.readUInt32LE(16)).toBe(2); // bytes per token
    expect(file.readUInt32LE(20)).toBe(50257);
    expect(Number(file.readBigUInt64LE(24))).toBe(tokens.length);
    expect(file.length).toBe(headerLen + 2 * tokens.length);
    expect(file.readUInt16LE(headerLen)).toBe(tokens[0]);
    expect(Math.max(...tokens)).toBeGreaterThan(255);
    const again = loadOrBuildTokenCache({ text: TEXT, tokenizer: gpt2Tokenizer(), cacheDir, name: "g" });
    expect(again.reused).toBe(true);
    expect(again.tokens).toEqual(tokens);
  });

  it("rebuilds when the source text changes", () => {
    const cacheDir = tempDir();
    const tok = counting(byteTokenizer());
    loadOrBuildTokens({ text: TEXT, tokenizer: tok, cacheDir, name: "c" });
    const changed = loadOrBuildTokenCache({ text: TEXT + "!", tokenizer: tok, cacheDir, name: "c" });
    expect(changed).toMatchObject({ reused: false, rebuildReason: "source changed" });
    expect(changed.tokens.length).toBe(Buffer.byteLength(TEXT) + 1);
    expect(tok.calls).toBe(2);
    expect(loadOrBuildTokenCache({ text: TEXT + "!", tokenizer: tok, cacheDir, name: "c" }).reused).toBe(true);
  });

  it("rebuilds when the tokenizer changes", () => {
    const cacheDir = tempDir();
    const bytes = loadOrBuildTokenCache({ text: TEXT, tokenizer: byteTokenizer(), cacheDir, name: "c" });
    const gpt2 = counting(gpt2Tokenizer());
    // Each tokenizer has its own file ...
    const g = loadOrBuildTokenCache({ text: TEXT, tokenizer: gpt2, cacheDir, name: "c" });
    expect(g.path).not.toBe(bytes.path);
    expect(g.tokens).toEqual(gpt2Tokenizer().encode(TEXT));
    // ... and a file made by another tokenizer is never trusted, even under the right name.
    copyFileSync(bytes.path, g.path);
    const rebuilt = loadOrBuildTokenCache({ text: TEXT, tokenizer: gpt2, cacheDir, name: "c" });
    expect(rebuilt.reused).toBe(false);
    expect(rebuilt.rebuildReason).toMatch(/tokenizer changed \(cache: bytes\/256, now: gpt2\/50257\)/);
    expect(rebuilt.tokens).toEqual(g.tokens);
    expect(gpt2.calls).toBe(2);
  });

  it("detects corrupt or truncated files and rebuilds them", () => {
    const cacheDir = tempDir();
    const tok = counting(byteTokenizer());
    const req = { text: TEXT, tokenizer: tok, cacheDir, name: "x" };
    const good = loadOrBuildTokenCache(req);
    const original = readFileSync(good.path);
    const headerLen = original.readUInt32LE(12);

    const damage: [string, (b: Buffer) => Buffer | void, RegExp][] = [
      ["payload bit flip", (b) => void (b[headerLen + 10]! ^= 1), /payload checksum mismatch/],
      ["header bit flip", (b) => void (b[40]! ^= 0x80), /header checksum mismatch/],
      ["token count edited", (b) => void (b[24]! ^= 1), /header checksum mismatch/],
      ["bad magic", (b) => void b.write("XXXXXXXX", 0, "latin1"), /bad magic/],
      ["garbage", () => Buffer.from("hello"), /shorter than a header/],
      ["empty", () => Buffer.alloc(0), /shorter than a header/],
    ];
    for (const [what, mutate, reason] of damage) {
      const copy = Buffer.from(original);
      writeFileSync(good.path, mutate(copy) ?? copy);
      const r = loadOrBuildTokenCache(req);
      expect(r.reused, what).toBe(false);
      expect(r.rebuildReason, what).toMatch(reason);
      expect(r.tokens, what).toEqual(good.tokens);
      expect(readFileSync(good.path).equals(original), what).toBe(true);
    }
    truncateSync(good.path, original.length - 3);
    const r = loadOrBuildTokenCache(req);
    expect(r.rebuildReason).toMatch(/truncated/);
    expect(r.tokens).toEqual(good.tokens);
    expect(loadOrBuildTokenCache(req).reused).toBe(true);
    expect(tok.calls).toBe(1 + damage.length + 1);
    expect(readdirSync(join(cacheDir, "tokens"))).toEqual(["x.bytes.tok"]); // no temp files
  });

  it("handles empty text and odd names, and defaults to $PRIMAL_CACHE_DIR", () => {
    const cacheDir = tempDir();
    process.env[CACHE_DIR_ENV] = cacheDir;
    const r = loadOrBuildTokenCache({ text: "", tokenizer: byteTokenizer(), name: "my corpus/valid" });
    expect(r.tokens).toHaveLength(0);
    expect(r.path).toBe(tokenCachePath(cacheDir, "my corpus/valid", "bytes"));
    expect(r.path).toBe(join(cacheDir, "tokens", "my_corpus_valid.bytes.tok"));
    expect(loadOrBuildTokenCache({ text: "", tokenizer: byteTokenizer(), name: "my corpus/valid" }).reused).toBe(true);
  });
});
