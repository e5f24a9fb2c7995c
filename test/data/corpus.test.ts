import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import {
  DOCUMENT_SEPARATOR,
  loadCorpus,
  loadSotuCorpus,
  loadTextCorpus,
  validationIndices,
} from "../../src/data/corpus.js";
import { cleanupTempDirs, tempDir } from "./helpers.js";

afterAll(cleanupTempDirs);

describe("validationIndices", () => {
  it("holds out every 10th document, or the last of 2-9", () => {
    expect(validationIndices(0)).toEqual([]);
    expect(validationIndices(1)).toEqual([]);
    expect(validationIndices(2)).toEqual([1]);
    expect(validationIndices(9)).toEqual([8]);
    expect(validationIndices(10)).toEqual([9]);
    expect(validationIndices(25)).toEqual([9, 19]);
  });
});

describe("default corpus (State of the Union)", () => {
  const c = loadSotuCorpus();

  it("splits 233 addresses into 210 train and 23 validation", () => {
    expect(c.name).toBe("sotu");
    expect(c.source).toMatch(/^@stdlib\/datasets-sotu@\d/);
    expect(c.documents).toBe(233);
    expect(c.trainDocuments).toHaveLength(210);
    expect(c.validationDocuments).toHaveLength(23);
    expect(c.train.length).toBeGreaterThan(8_000_000);
    expect(c.validation.length).toBeGreaterThan(500_000);
  });

  it("is deterministic: fixed order by year, every 10th held out", () => {
    expect(c.trainDocuments[0]).toBe("1790 George Washington");
    expect(c.validationDocuments.slice(0, 2)).toEqual(["1799 John Adams", "1809 James Madison"]);
    expect(c.validationDocuments.at(-1)).toBe("2018 Donald J Trump");
    expect(loadCorpus()).toBe(c);
    expect(loadCorpus("sotu")).toBe(c);
  });

  it("has disjoint splits", () => {
    const train = new Set(c.trainDocuments);
    expect(c.validationDocuments.some((d) => train.has(d))).toBe(false);
    for (const doc of c.validation.split(DOCUMENT_SEPARATOR)) {
      expect(doc.trim().length).toBeGreaterThan(0);
      expect(c.train.includes(doc)).toBe(false);
    }
  });
});

describe("loadTextCorpus", () => {
  it("splits a single file by lines: last 10% is validation", () => {
    const dir = tempDir();
    const lines = Array.from({ length: 25 }, (_, i) => `line ${i + 1} — ünïcode`);
    const file = join(dir, "my-notes.txt");
    writeFileSync(file, lines.join("\n") + "\n\n");
    const c = loadTextCorpus(file);
    expect(c.name).toBe("my-notes");
    expect(c.documents).toBe(1);
    expect(c.train).toBe(lines.slice(0, 23).join("\n"));
    expect(c.validation).toBe(lines.slice(23).join("\n"));
    expect(c.trainDocuments).toEqual(["my-notes.txt (lines 1-23)"]);
    expect(c.validationDocuments).toEqual(["my-notes.txt (lines 24-25)"]);
    expect(loadTextCorpus(file)).toEqual(c);
  });

  it("holds out at least one line", () => {
    const dir = tempDir();
    writeFileSync(join(dir, "two.txt"), "first\nsecond");
    const c = loadTextCorpus(join(dir, "two.txt"));
    expect([c.train, c.validation]).toEqual(["first", "second"]);
  });

  it("splits a directory by file, in sorted path order, recursively", () => {
    const dir = tempDir();
    mkdirSync(join(dir, "sub"));
    const names: string[] = [];
    for (let i = 0; i < 12; i++) {
      const name = i < 6 ? `doc${String(i).padStart(2, "0")}.txt` : `sub/doc${String(i).padStart(2, "0")}.txt`;
      names.push(name);
      writeFileSync(join(dir, name), `text of ${name}\n`);
    }
    writeFileSync(join(dir, "blank.txt"), "  \n"); // skipped: blank
    writeFileSync(join(dir, "ignored.md"), "not a .txt file");
    const c = loadTextCorpus(dir);
    expect(c.documents).toBe(12);
    expect(c.validationDocuments).toEqual(["sub/doc09.txt"]);
    expect(c.trainDocuments).toEqual(names.filter((n) => n !== "sub/doc09.txt"));
    expect(c.validation).toBe("text of sub/doc09.txt");
    expect(c.train.startsWith(`text of doc00.txt${DOCUMENT_SEPARATOR}text of doc01.txt`)).toBe(true);
    expect(c.train.includes("ignored")).toBe(false);
  });

  it("holds out the last file of a small directory and splits a lone file by lines", () => {
    const dir = tempDir();
    for (const n of ["b.txt", "a.txt", "c.txt"]) writeFileSync(join(dir, n), `${n} body\n`);
    const c = loadTextCorpus(dir);
    expect(c.trainDocuments).toEqual(["a.txt", "b.txt"]);
    expect(c.validationDocuments).toEqual(["c.txt"]);

    const one = tempDir();
    writeFileSync(join(one, "only.txt"), "l1\nl2\nl3\n");
    expect(loadTextCorpus(one)).toMatchObject({ train: "l1\nl2", validation: "l3", documents: 1 });
  });

  it("explains bad inputs", () => {
    const dir = tempDir();
    expect(() => loadTextCorpus(join(dir, "nope.txt"))).toThrow(/corpus path not found: .*nope\.txt/);
    writeFileSync(join(dir, "empty.txt"), "\n \n");
    expect(() => loadTextCorpus(join(dir, "empty.txt"))).toThrow(/corpus file is empty/);
    writeFileSync(join(dir, "one-line.txt"), "just one line\n");
    expect(() => loadTextCorpus(join(dir, "one-line.txt"))).toThrow(/at least 2 non-blank lines/);
    writeFileSync(join(dir, "latin1.txt"), Buffer.from([0x63, 0x61, 0x66, 0xe9, 0x0a, 0x78]));
    expect(() => loadTextCorpus(join(dir, "latin1.txt"))).toThrow(/latin1\.txt is not valid UTF-8 .*offset 3/);

    const noTxt = tempDir();
    writeFileSync(join(noTxt, "a.md"), "x");
    expect(() => loadTextCorpus(noTxt)).toThrow(/no \.txt files found/);
    const blank = tempDir();
    writeFileSync(join(blank, "a.txt"), "");
    writeFileSync(join(blank, "b.txt"), "\n");
    expect(() => loadTextCorpus(blank)).toThrow(/all 2 \.txt files are blank/);
    const badDir = tempDir();
    writeFileSync(join(badDir, "ok.txt"), "fine\n");
    writeFileSync(join(badDir, "bad.txt"), Buffer.from([0xc3, 0x28]));
    expect(() => loadTextCorpus(badDir)).toThrow(/bad\.txt is not valid UTF-8 .*offset 0/);
  });
});
