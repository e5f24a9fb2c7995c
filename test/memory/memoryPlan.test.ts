// Memory budgets end to end: size parsing, config errors, the planner seen from TypeScript, a
// Trainer built under a budget (its measured peak equals the prediction on the CPU), block
// recompute giving the same run, the plan recorded in the run directory, and `primal plan`.
import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Trainer } from "../../src/trainer.js";
import { ConfigError, resolveConfig } from "../../src/config.js";
import { planMemory, planTable } from "../../src/memoryPlan.js";
import { formatBytes, parseByteSize } from "../../src/byteSize.js";
import { readRun } from "../../src/tracking/runReader.js";
import { ensureDist, repoRoot, wikitextDir } from "../reliability/fixtures/common.js";

const home = mkdtempSync(join(tmpdir(), "primal-memplan-"));
afterAll(() => rmSync(home, { recursive: true, force: true }));
beforeAll(() => ensureDist());

const base = {
  preset: "tiny" as const,
  device: "cpu" as const,
  threads: 1,
  home,
  steps: 6,
  warmup: 1,
  sampleEvery: 0,
  checkpointEvery: 0,
  eval: { every: 0, maxTokens: 2000 },
};

describe("sizes", () => {
  it("parses bytes and binary/decimal units exactly", () => {
    expect(parseByteSize(1234)).toBe(1234);
    expect(parseByteSize("10GiB")).toBe(10 * 2 ** 30);
    expect(parseByteSize("512 MiB")).toBe(512 * 2 ** 20);
    expect(parseByteSize("8GB")).toBe(8e9);
    expect(parseByteSize("1.5kib")).toBe(1536);
    expect(parseByteSize("1e9")).toBe(1e9);
    expect(() => parseByteSize("ten gigs", "config.memoryBudget")).toThrow(
      /config\.memoryBudget: 'ten gigs' is not a size/,
    );
    expect(() => parseByteSize("10 GiBs")).toThrow(/not a size/);
    expect(() => parseByteSize(-1)).toThrow(/>= 0/);
    expect(formatBytes(10 * 2 ** 30)).toBe("10.00 GiB");
  });
});

describe("config", () => {
  it("validates microBatch, recompute and memoryBudget", () => {
    expect(() => resolveConfig({ preset: "tiny", batch: 8, microBatch: 3 })).toThrow(
      /config\.microBatch: must divide batch \(8\), got 3/,
    );
    expect(() => resolveConfig({ recompute: "some" as never })).toThrow(
      /config\.recompute: must be one of "none", "block", "auto"/,
    );
    expect(() => resolveConfig({ memoryBudget: "lots" })).toThrow(ConfigError);
    const c = resolveConfig({ memoryBudget: "2GiB" });
    expect(c.memoryBudget).toBe(2 * 2 ** 30);
    expect(c.microBatch).toBe("auto");
    expect(resolveConfig({}).memoryBudget).toBe(0);
  });
});

describe("planner", () => {
  it("lists candidates largest micro-batch first and picks the first that fits", () => {
    const all = planMemory({ ...base, batch: 8, memoryBudget: "1TiB" });
    expect(all.candidates.map((c) => `${c.microBatch}/${c.recompute}`)).toEqual([
      "8/none",
      "8/block",
      "4/none",
      "4/block",
      "2/none",
      "2/block",
      "1/none",
      "1/block",
    ]);
    expect(all.chosen).toBe(0);
    // Each step down the list needs less activation memory.
    const acts = all.candidates.map((c) => c.activations);
    for (let i = 1; i < acts.length; i++) expect(acts[i]!).toBeLessThan(acts[i - 1]!);
    // A budget between two candidates picks the first at or below it.
    const budget = all.candidates[3]!.totalBytes;
    const p = planMemory({ ...base, batch: 8, memoryBudget: budget });
    const want = all.candidates.findIndex((c) => c.totalBytes <= budget);
    expect(p.chosen).toBe(want);
    expect(p.candidates[p.chosen]!.fits).toBe(true);
    const table = planTable(p);
    expect(table.numRows).toBe(8);
    expect(table.getChild("chosen")!.toArray().filter(Boolean)).toHaveLength(1);
  });

  it("ghost-0.1b at seq 1024: batch 32 needs block recompute to stay within 10 GiB", () => {
    const p = planMemory({ preset: "ghost-0.1b", device: "cpu", batch: 32, memoryBudget: "10GiB" });
    expect(p.candidates).toHaveLength(12);
    expect(p.candidates[0]!.fits).toBe(false);
    expect(p.candidates[p.chosen]).toMatchObject({ microBatch: 32, recompute: "block" });
    expect(p.candidates[p.chosen]!.totalBytes).toBeLessThan(10 * 2 ** 30);
  });
});

describe("Trainer under a budget", () => {
  it("runs the chosen plan, measures the predicted peak and records it", async () => {
    const all = planMemory({ ...base, batch: 8, memoryBudget: "1TiB" });
    const budget = all.candidates[2]!.totalBytes; // 4/none fits; 8/none and 8/block may not
    const t = await Trainer.create({ ...base, batch: 8, memoryBudget: budget, name: "budget" });
    const chosen = planMemory({ ...base, batch: 8, memoryBudget: budget });
    const c = chosen.candidates[chosen.chosen]!;
    expect(t.plan).toMatchObject({ microBatch: c.microBatch, recompute: c.recompute, plannedBytes: c.totalBytes });
    expect(t.plan.chunksPerStep).toBe(8 / c.microBatch);
    await t.train(3);
    const mem = t.memory();
    expect(mem.devicePeak).toBe(mem.planned);
    expect(mem.devicePeak).toBeLessThanOrEqual(budget);
    const dir = t.runDir;
    t.dispose();
    const run = readRun(dir);
    expect(run.meta.config).toMatchObject({
      memoryBudget: budget,
      plan: { microBatch: c.microBatch, recompute: c.recompute },
    });
    const start = run.events.find((e) => e.kind === "start") as unknown as { plan: { plannedBytes: number } };
    expect(start.plan.plannedBytes).toBe(c.totalBytes);
  });

  it("block recompute trains the identical run", async () => {
    const losses: number[][] = [];
    for (const recompute of ["none", "block"] as const) {
      const t = await Trainer.create({ ...base, seed: 5, recompute, name: `rc-${recompute}` });
      expect(t.plan.recompute).toBe(recompute);
      const seen: number[] = [];
      await t.train(4, { onStep: (m) => seen.push(m.loss) });
      losses.push(seen);
      t.dispose();
    }
    expect(losses[1]).toEqual(losses[0]);
  });

  it("refuses a budget nothing fits, before creating a run", async () => {
    const sub = mkdtempSync(join(home, "refuse-"));
    await expect(Trainer.create({ ...base, home: sub, memoryBudget: 1000 })).rejects.toThrow(
      /memoryBudget .* is too small: the leanest plan \(microBatch 1, recompute block\) needs/,
    );
    expect(readdirSync(sub)).toEqual([]);
  });
});

describe("primal plan", () => {
  const bin = join(repoRoot, "bin", "primal.js");
  it("prints the candidates and marks the chosen one", () => {
    const r = spawnSync(
      process.execPath,
      [bin, "plan", "--preset", "ghost-0.1b", "--batch", "32", "--device", "cpu", "--memory-budget", "10GiB"],
      { encoding: "utf8" },
    );
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(/budget 10\.00 GiB/);
    expect(r.stdout).toMatch(/→\s+32\s+block/);
    const j = spawnSync(process.execPath, [bin, "plan", "--preset", "tiny", "--device", "cpu", "--json"], {
      encoding: "utf8",
    });
    expect(j.status).toBe(0);
    const p = JSON.parse(j.stdout) as { chosen: number; candidates: unknown[] };
    expect(p.chosen).toBe(0);
    expect(p.candidates).toHaveLength(1);
  });
  it("exits 1 with a hint when nothing fits, and 1 with a message on a bad size", () => {
    const r = spawnSync(
      process.execPath,
      [bin, "plan", "--preset", "tiny", "--device", "cpu", "--memory-budget", "1KiB"],
      { encoding: "utf8" },
    );
    expect(r.status).toBe(1);
    expect(r.stdout).toMatch(/nothing fits the budget/);
    const bad = spawnSync(process.execPath, [bin, "plan", "--memory-budget", "huge"], { encoding: "utf8" });
    expect(bad.status).toBe(1);
    expect(bad.stderr).toMatch(/config\.memoryBudget: 'huge' is not a size/);
  });
  it("train --memory-budget reports the plan in its JSON line", () => {
    const r = spawnSync(
      process.execPath,
      [
        bin,
        "train",
        "--preset",
        "tiny",
        "--steps",
        "3",
        "--device",
        "cpu",
        "--json",
        "--recompute",
        "block",
        "--micro-batch",
        "4",
        "--eval-tokens",
        "500",
        "--sample-every",
        "0",
        "--home",
        join(home, "cli"),
      ],
      { encoding: "utf8", env: { ...process.env, PRIMAL_WIKITEXT_DIR: wikitextDir } },
    );
    expect(r.status, r.stderr).toBe(0);
    const out = JSON.parse(r.stdout.trim().split("\n").pop()!) as Record<string, unknown>;
    expect(out).toMatchObject({ microBatch: 4, recompute: "block" });
    expect(out.peakMemoryBytes).toBe(out.plannedMemoryBytes);
    expect(existsSync(out.runDir as string)).toBe(true);
  });
});
