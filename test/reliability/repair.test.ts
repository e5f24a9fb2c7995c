// `primal repair RUN`: one flipped bit in a stream no longer makes a run unreadable for ever. The
// repair keeps the intact prefix, sets the damaged original and the checkpoints that would skip
// the lost rows aside (kept, byte for byte), records a "repair" event, and the next resume trains
// the lost steps again: the rebuilt history equals the uninterrupted one.
import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Trainer } from "../../src/trainer.js";
import { readRun } from "../../src/tracking/runReader.js";
import { copyRunDir, ensureDist, repoRoot, tinyConfig } from "./fixtures/common.js";

const home = mkdtempSync(join(tmpdir(), "primal-repair-"));
afterAll(() => rmSync(home, { recursive: true, force: true }));
const bin = join(repoRoot, "bin", "primal.js");

function primal(args: string[]) {
  const r = spawnSync(process.execPath, [bin, ...args], { encoding: "utf8", timeout: 120_000 });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

const lossesByStep = (dir: string): Map<number, number> => {
  const m = readRun(dir).metrics;
  const steps = m.getChild("step")!.toArray() as Int32Array;
  const loss = m.getChild("loss")!.toArray() as Float32Array;
  const out = new Map<number, number>();
  steps.forEach((s, i) => out.set(s, loss[i]!)); // the last row of a step wins
  return out;
};

let base = "";
beforeAll(async () => {
  ensureDist();
  const t = await Trainer.create(tinyConfig(home, { name: "repair", checkpointEvery: 4, keepCheckpoints: 5 }) as never);
  await t.train(12);
  t.dispose();
  base = t.runDir;
});

const copyRun = (): string => copyRunDir(base, home);

describe("primal repair", () => {
  it("rebuilds a run with a flipped bit in metrics.arrows from its intact prefix and its checkpoints", async () => {
    const dir = copyRun();
    const reference = lossesByStep(dir);
    const path = join(dir, "metrics.arrows");
    // The second message (rows of steps 5..8, flushed at the step-8 checkpoint) gets a flipped bit.
    const index = readFileSync(`${path}.index`, "utf8").trim().split("\n");
    const [offset, length] = index[2]!.split(" ").map(Number) as [number, number];
    const bytes = readFileSync(path);
    bytes[offset + length - 5]! ^= 0x20;
    writeFileSync(path, bytes);
    expect(() => readRun(dir)).toThrow(/metrics\.arrows is damaged/);

    const r = primal(["repair", dir]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/metrics\.arrows: kept 4 rows/);
    const run = readRun(dir);
    expect(Array.from(run.metrics.getChild("step")!.toArray() as Int32Array)).toEqual([1, 2, 3, 4]);
    expect(run.checkpoints.map((c) => c.step)).toEqual([4]);
    // Nothing was deleted: the damaged original and the later checkpoints are kept aside.
    const aside = readdirSync(dir).filter((n) => n.startsWith("repair-"));
    expect(aside).toHaveLength(1);
    expect(readFileSync(join(dir, aside[0]!, "metrics.arrows"))).toEqual(bytes);
    expect(readdirSync(join(dir, aside[0]!, "checkpoints")).sort()).toEqual([
      "step-12.safetensors",
      "step-8.safetensors",
    ]);
    const event = run.events.at(-1)!;
    expect(event["kind"]).toBe("repair");
    expect(event).toMatchObject({ resumeFrom: join(dir, "checkpoints", "step-4.safetensors") });

    // The lost steps are trained again, exactly.
    const t = await Trainer.resume(dir);
    expect(t.step).toBe(4);
    await t.train(8);
    t.dispose();
    const after = lossesByStep(dir);
    for (let s = 1; s <= 12; s++) expect(after.get(s), `step ${s}`).toBe(reference.get(s));

    // A second repair finds nothing to do and changes nothing.
    const again = primal(["repair", dir]);
    expect(again.code, again.stderr).toBe(0);
    expect(again.stdout).toMatch(/nothing is damaged/);
  });

  it("keeps every record of a damaged events.jsonl that still verifies", () => {
    const dir = copyRun();
    const path = join(dir, "events.jsonl");
    const text = readFileSync(path, "utf8");
    const lines = text.trimEnd().split("\n");
    const damaged = lines.map((l, i) => (i === 1 ? l.replace('"kind":"', '"kind":"X') : l)).join("\n") + "\n";
    writeFileSync(path, damaged);
    expect(() => readRun(dir)).toThrow(/events\.jsonl is damaged at line 2/);
    const r = primal(["repair", dir, "--json"]);
    expect(r.code, r.stderr).toBe(0);
    const report = JSON.parse(r.stdout) as { repaired: boolean; setAside: string; checkpointsSetAside: string[] };
    expect(report.repaired).toBe(true);
    expect(report.checkpointsSetAside).toEqual([]);
    const run = readRun(dir);
    // All but the damaged record, plus the repair event.
    expect(run.events).toHaveLength(lines.length);
    expect(run.events.at(-1)!["kind"]).toBe("repair");
    expect(readFileSync(join(report.setAside, "events.jsonl"), "utf8")).toBe(damaged);
    expect(run.checkpoints.map((c) => c.step)).toEqual([4, 8, 12]);
    expect(existsSync(join(dir, "lock"))).toBe(false);
  });
});
