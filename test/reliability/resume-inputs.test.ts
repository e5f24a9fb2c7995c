// What a resume takes from a run folder it did not write: the corpus file named in run.json is
// read only when it is an embedded corpus or lies inside the run (anything else must be passed
// explicitly), and a checkpoint trained on another number of ranks is not continued silently with
// another number of windows per step.
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { Trainer } from "../../src/trainer.js";
import { tinyConfig } from "./fixtures/common.js";

const home = mkdtempSync(join(tmpdir(), "primal-resume-inputs-"));
afterAll(() => rmSync(home, { recursive: true, force: true }));

const text = Array.from({ length: 400 }, (_, i) => `line ${i}: the ghosts vote in the attic at dawn.`).join("\n");

describe("the corpus named in run.json", () => {
  it("a file outside the run is not read unless it is passed explicitly", async () => {
    const outside = join(home, "outside", "private.txt");
    mkdirSync(join(home, "outside"));
    writeFileSync(outside, text);
    const t = await Trainer.create(
      tinyConfig(join(home, "runs"), { data: { corpus: outside }, checkpointEvery: 2 }) as never,
    );
    await t.train(2);
    t.dispose();
    await expect(Trainer.resume(t.runDir)).rejects.toThrow(
      /run\.json names the corpus '.*private\.txt', which is not an embedded corpus .* pass it explicitly: primal resume .* --data/,
    );
    const r = await Trainer.resume(t.runDir, { corpus: outside });
    expect(r.step).toBe(2);
    await r.train(1);
    r.dispose();
  });

  it("a file inside the run (a relative path, taken from the run folder) is read", async () => {
    const cwd = process.cwd();
    const src = mkdtempSync(join(home, "cwd-"));
    writeFileSync(join(src, "corpus.txt"), text);
    process.chdir(src);
    let dir = "";
    try {
      const t = await Trainer.create(
        tinyConfig(join(home, "runs2"), { data: { corpus: "corpus.txt" }, checkpointEvery: 2 }) as never,
      );
      await t.train(2);
      t.dispose();
      dir = t.runDir;
    } finally {
      process.chdir(cwd);
    }
    expect(JSON.parse(readFileSync(join(dir, "run.json"), "utf8")).config.data.corpus).toBe("corpus.txt");
    copyFileSync(join(src, "corpus.txt"), join(dir, "corpus.txt"));
    rmSync(join(src, "corpus.txt"));
    const r = await Trainer.resume(dir);
    expect(r.step).toBe(2);
    r.dispose();
  });

  it("the embedded corpus needs nothing", async () => {
    const t = await Trainer.create(tinyConfig(join(home, "runs3"), { checkpointEvery: 2 }) as never);
    await t.train(2);
    t.dispose();
    const r = await Trainer.resume(t.runDir);
    r.dispose();
  });
});

describe("the world size of a checkpoint", () => {
  it("another number of ranks is refused unless asked for, saying what changes", async () => {
    const { checkWorldSize, savedWorldSize } = await import("../../src/resumeGuards.js");
    const { parseCheckpointExtra } = await import("../../src/resumeCheckpoint.js");
    const extra = (text: string) => parseCheckpointExtra(text, "ck");
    expect(savedWorldSize(extra('{"worldSize":2}'), { worldSize: 1 })).toBe(2);
    expect(savedWorldSize(extra('{"config":{}}'), { worldSize: 4 })).toBe(4);
    expect(savedWorldSize(extra('{"worldSize":"2"}'), {})).toBe(1);
    expect(savedWorldSize(extra("{}"), {})).toBe(1);
    expect(() => checkWorldSize(2, 1, 4, false, "ck")).toThrow(
      /trained on 2 ranks x 4 = 8 windows per step; this resume has 1 rank x 4 = 4 windows per step, so each step would train on fewer tokens.*--change-world-size/,
    );
    expect(() => checkWorldSize(2, 1, 4, true, "ck")).not.toThrow();
    expect(() => checkWorldSize(1, 1, 4, false, "ck")).not.toThrow();
  });

  it("a checkpoint records the world size it was trained with", async () => {
    const t = await Trainer.create(tinyConfig(join(home, "runs4"), { checkpointEvery: 2 }) as never);
    await t.train(2);
    t.dispose();
    const bytes = readFileSync(join(t.runDir, "checkpoints", "step-2.safetensors"));
    const header = JSON.parse(bytes.subarray(8, 8 + Number(bytes.readBigUInt64LE(0))).toString("utf8"));
    expect(JSON.parse(header.__metadata__["primal.extra"])).toMatchObject({ worldSize: 1 });
  });
});
