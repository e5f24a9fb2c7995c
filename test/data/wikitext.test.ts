import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, afterEach, describe, expect, it } from "vitest";
import { findWikiTextFile, loadWikiText, WIKITEXT_DIR_ENV } from "../../src/data/wikitext.js";
import { CACHE_DIR_ENV } from "../../src/data/paths.js";
import { cleanupTempDirs, fixtureWikiTextDir, REAL_WIKITEXT_DIR, REAL_WIKITEXT_SKIP, tempDir } from "./helpers.js";

afterAll(cleanupTempDirs);

const savedEnv = { wiki: process.env[WIKITEXT_DIR_ENV], cache: process.env[CACHE_DIR_ENV] };
afterEach(() => {
  for (const [key, value] of [
    [WIKITEXT_DIR_ENV, savedEnv.wiki],
    [CACHE_DIR_ENV, savedEnv.cache],
  ] as const) {
    if (value === undefined) delete process.env[key];
    else process.env[key] = value;
  }
});

describe.skipIf(!REAL_WIKITEXT_DIR)(`WikiText-2 itself ${REAL_WIKITEXT_SKIP}`, () => {
  it("loads valid and test (tokenized release) with their published sizes", () => {
    const valid = loadWikiText(REAL_WIKITEXT_DIR, "valid");
    expect(Buffer.byteLength(valid)).toBe(1121681);
    expect(valid.startsWith(" \n = Homarus gammarus = \n")).toBe(true);
    expect(Buffer.byteLength(loadWikiText(REAL_WIKITEXT_DIR, "test"))).toBe(1256449);
  });
});

describe("WikiText-2 directory (our own text in its layout)", () => {
  const dir = fixtureWikiTextDir();
  it("loads valid and test (tokenized release)", () => {
    expect(loadWikiText(dir, "valid").startsWith(" \n = ")).toBe(true);
    expect(loadWikiText(dir, "test")).not.toBe(loadWikiText(dir, "valid"));
    expect(findWikiTextFile(dir, "valid")).toMatchObject({ variant: "tokens", split: "valid" });
  });

  it("defaults to the valid split and reads $PRIMAL_WIKITEXT_DIR", () => {
    process.env[WIKITEXT_DIR_ENV] = dir;
    expect(loadWikiText()).toBe(loadWikiText(dir, "valid"));
  });

  it("says which files it looked for when a split is missing", () => {
    const onlyValid = tempDir();
    writeFileSync(join(onlyValid, "valid.txt"), loadWikiText(dir, "valid"));
    expect(() => loadWikiText(onlyValid, "train")).toThrow(
      /train split not found .*train\.txt.*wiki\.train\.tokens.*wiki\.train\.raw.*PRIMAL_WIKITEXT_DIR/,
    );
  });
});

describe("WikiText-2 layouts", () => {
  it("reads the raw release, also from the zip's subdirectory", () => {
    const dir = tempDir();
    mkdirSync(join(dir, "wikitext-2-raw"));
    writeFileSync(join(dir, "wikitext-2-raw", "wiki.valid.raw"), " \n = Raw valid = \n naïve text \n");
    writeFileSync(join(dir, "wikitext-2-raw", "wiki.test.raw"), " \n = Raw test = \n");
    expect(loadWikiText(dir, "valid")).toBe(" \n = Raw valid = \n naïve text \n");
    expect(loadWikiText(dir, "test")).toBe(" \n = Raw test = \n");
    expect(findWikiTextFile(dir, "valid").variant).toBe("raw");
  });

  it("prefers the tokenized release unless raw is asked for", () => {
    const dir = tempDir();
    writeFileSync(join(dir, "wiki.valid.tokens"), "tokens <unk>\n");
    writeFileSync(join(dir, "wiki.valid.raw"), "raw text\n");
    expect(loadWikiText(dir, "valid")).toBe("tokens <unk>\n");
    expect(loadWikiText(dir, "valid", { variant: "raw" })).toBe("raw text\n");
  });

  it("explains a missing directory and how to set it", () => {
    const missing = join(tempDir(), "nowhere");
    expect(() => loadWikiText(missing)).toThrow(
      /WikiText-2 directory not found: .*nowhere \(from the directory argument\)/,
    );
    process.env[WIKITEXT_DIR_ENV] = missing;
    expect(() => loadWikiText()).toThrow(/from \$PRIMAL_WIKITEXT_DIR.*fetchDataset/);
    delete process.env[WIKITEXT_DIR_ENV];
    process.env[CACHE_DIR_ENV] = tempDir();
    expect(() => loadWikiText()).toThrow(/wikitext-2 \(from the default location\)/);
  });

  it("rejects an empty or non-UTF-8 file", () => {
    const dir = tempDir();
    writeFileSync(join(dir, "valid.txt"), "\n");
    expect(() => loadWikiText(dir)).toThrow(/WikiText-2 file is empty/);
    writeFileSync(join(dir, "test.txt"), Buffer.from([0x20, 0xff]));
    expect(() => loadWikiText(dir, "test")).toThrow(/not valid UTF-8/);
  });
});
