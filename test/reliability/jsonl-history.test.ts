// events.jsonl and samples.jsonl lose nothing without a word: a last record whose newline was
// damaged is kept or set aside beside the file when a resume reopens the run (never cut off), a
// record changed after it was written is refused by name like a damaged Arrow message, and files
// written before records carried checksums still read.
import { mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Trainer } from "../../src/trainer.js";
import { listRuns, readRun } from "../../src/tracking/runReader.js";
import { copyRunDir, tinyConfig } from "./fixtures/common.js";

const home = mkdtempSync(join(tmpdir(), "primal-jsonl-"));
afterAll(() => rmSync(home, { recursive: true, force: true }));

let base = "";
beforeAll(async () => {
  const t = await Trainer.create(tinyConfig(home, { name: "jsonl", checkpointEvery: 3, sampleEvery: 3 }) as never);
  await t.train(6);
  t.dispose();
  base = t.runDir;
});

const copyRun = (): string => copyRunDir(base, home);

/** Every byte of `needle` is still somewhere in the run folder (the file itself or a file beside it). */
function keptSomewhere(dir: string, file: string, needle: string): boolean {
  return readdirSync(dir)
    .filter((n) => n.startsWith(file))
    .some((n) => readFileSync(join(dir, n), "utf8").includes(needle));
}

describe("the last record of a JSONL file", () => {
  for (const file of ["events.jsonl", "samples.jsonl"]) {
    it(`${file}: a damaged final newline does not make resume delete the last record`, async () => {
      const dir = copyRun();
      const path = join(dir, file);
      const bytes = readFileSync(path);
      expect(bytes[bytes.length - 1]).toBe(0x0a);
      const lines = bytes.toString("utf8").trimEnd().split("\n");
      const last = lines[lines.length - 1]!;
      bytes[bytes.length - 1] = 0x0b; // one flipped bit: the newline becomes a vertical tab
      writeFileSync(path, bytes);
      const t = await Trainer.resume(dir);
      t.dispose();
      expect(keptSomewhere(dir, file, last), `${file}: the last record is gone`).toBe(true);
      // The resume says what it set aside.
      const resume = readRun(dir)
        .events.filter((e) => e["kind"] === "resume")
        .at(-1)!;
      expect(JSON.stringify(resume)).toMatch(new RegExp(`${file.replace(".", "\\.")}\\.tail-`));
    });
  }

  it("a whole record that only lacks its newline stays in the file", async () => {
    const dir = copyRun();
    const path = join(dir, "samples.jsonl");
    const bytes = readFileSync(path);
    writeFileSync(path, bytes.subarray(0, bytes.length - 1));
    expect(readRun(dir).samples).toHaveLength(2);
    const t = await Trainer.resume(dir);
    t.dispose();
    expect(readFileSync(path).subarray(0, bytes.length)).toEqual(bytes);
  });
});

describe("a record changed after it was written", () => {
  it("is refused by name, by readers and by resume, instead of being read as if nothing happened", async () => {
    const dir = copyRun();
    const path = join(dir, "events.jsonl");
    const text = readFileSync(path, "utf8");
    // A checkpoint event at step 3 now claims step 2: still valid JSON, so only a checksum sees it.
    const changed = text.replace(/"step":3(,"time":"[^"]*","kind":"checkpoint")/, '"step":2$1');
    expect(changed).not.toBe(text);
    writeFileSync(path, changed);
    expect(() => readRun(dir)).toThrow(/events\.jsonl is damaged at line \d+ \(byte \d+\)/);
    expect(listRuns(home).find((r) => r.dir === dir)?.error).toMatch(/events\.jsonl is damaged/);
    await expect(Trainer.resume(dir)).rejects.toThrow(/events\.jsonl is damaged at line \d+/);
    // Nothing was cut or rewritten.
    expect(readFileSync(path, "utf8")).toBe(changed);
  });

  it("files written before records carried checksums still read", () => {
    const dir = copyRun();
    writeFileSync(
      join(dir, "events.jsonl"),
      '{"step":0,"time":"2026-01-01T00:00:00.000Z","kind":"start"}\n{"step":3,"time":"2026-01-01T00:00:01.000Z","kind":"checkpoint"}\n',
    );
    expect(readRun(dir).events.map((e) => e["kind"])).toEqual(["start", "checkpoint"]);
  });
});
