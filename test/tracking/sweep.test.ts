// Sweeps: the spec's expansion, and real sweeps of tiny runs: one killed mid-way (the parent with
// SIGKILL, its point processes stop at a step boundary) and run again, one aborted in-process and
// run again. Every point ends up trained exactly once, by one run, and the results table agrees
// with the runs.
import { spawn } from "node:child_process";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { tableFromIPC } from "apache-arrow";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { expandSweep, SweepSpecError } from "../../src/sweep/spec.js";
import { sweep } from "../../src/sweep/runner.js";
import { listRuns, readRun } from "../../src/tracking/runReader.js";
import { ensureDist, repoRoot } from "../reliability/fixtures/common.js";

const work = mkdtempSync(join(tmpdir(), "primal-sweep-"));
afterAll(() => rmSync(work, { recursive: true, force: true }));

const tinyBase = {
  preset: "tiny",
  device: "cpu",
  steps: 12,
  warmup: 2,
  sampleEvery: 0,
  checkpointEvery: 2,
  eval: { maxTokens: 2048 },
};

describe("sweep spec", () => {
  it("expands points, a grid, random samples and seeds, deterministically", () => {
    const spec = {
      name: "Spec Test",
      base: tinyBase,
      points: [{ knobs: { bridge: null } }],
      grid: { "knobs.flipRate": [0.01, 0.05], quant: ["poltergeist", "ste"] },
      random: {
        count: 3,
        seed: 5,
        params: { "knobs.lr": { min: 1e-3, max: 1e-2, scale: "log" }, "knobs.pMax": { choice: [0.3, 0.5] } },
      },
      seeds: [1, 2],
    };
    const a = expandSweep(spec);
    expect(a.id).toBe("spec-test");
    expect(a.points).toHaveLength((1 + 4 + 3) * 2);
    expect(a.points[0]!.values).toEqual({ "knobs.bridge": null, seed: 1 });
    expect(a.points[1]!.values).toEqual({ "knobs.bridge": null, seed: 2 });
    expect(a.points[2]!.values).toEqual({ "knobs.flipRate": 0.01, quant: "poltergeist", seed: 1 });
    expect(a.points[2]!.config.knobs.flipRate).toBe(0.01);
    expect(a.points[2]!.config.seed).toBe(1);
    expect(a.swept).toEqual(["knobs.bridge", "seed", "knobs.flipRate", "quant", "knobs.lr", "knobs.pMax"]);
    for (const p of a.points.slice(10)) {
      const lr = p.values["knobs.lr"] as number;
      expect(lr).toBeGreaterThanOrEqual(1e-3);
      expect(lr).toBeLessThanOrEqual(1e-2);
      expect([0.3, 0.5]).toContain(p.values["knobs.pMax"]);
    }
    // The same spec gives the same points, keys and names.
    const b = expandSweep(structuredClone(spec));
    expect(b.points.map((p) => [p.key, p.values, p.input.name])).toEqual(
      a.points.map((p) => [p.key, p.values, p.input.name]),
    );
    expect(new Set(a.points.map((p) => p.key)).size).toBe(a.points.length);
    expect(a.points[3]!.input.name).toBe("Spec Test #3");
  });

  it("names the point and the field of a bad value, and refuses points that train the same config", () => {
    expect(() => expandSweep({ base: tinyBase, grid: { "knobs.flipRate": [0.01, -1] } })).toThrow(
      /sweep point 1 \(\{"knobs.flipRate":-1\}\): config\.knobs\.flipRate/,
    );
    expect(() => expandSweep({ base: tinyBase, grid: { seed: [1, 1] } })).toThrow(
      /points 0 and 1 train the same config/,
    );
    expect(() => expandSweep({ base: tinyBase, grid: { home: ["a", "b"] } })).toThrow(SweepSpecError);
    expect(() => expandSweep({ base: tinyBase, gird: {} })).toThrow(/unrecognized|gird/i);
  });
});

/** Runs of `home` that belong to sweep `id`, by point. */
function sweepRuns(home: string, id: string) {
  return listRuns(home, { sweep: id }).sort((a, b) => a.sweep!.point - b.sweep!.point);
}

function checkResults(home: string, id: string, points: number, steps: number): void {
  const runs = sweepRuns(home, id);
  // Exactly one run per point, each finished at its last step.
  expect(runs.map((r) => r.sweep!.point)).toEqual(Array.from({ length: points }, (_, i) => i));
  for (const r of runs) {
    expect(r.status, r.id).toBe("finished");
    expect(r.step).toBe(steps);
    // Every step's loss is kept (one row per step; a resume may repeat the steps after its checkpoint).
    const m = readRun(r.dir).metrics;
    const s = Array.from(m.getChild("step")!.toArray() as Int32Array);
    expect(new Set(s)).toEqual(new Set(Array.from({ length: steps }, (_, i) => i + 1)));
  }
  const t = tableFromIPC(readFileSync(join(home, "sweeps", id, "results.arrow")));
  expect(t.numRows).toBe(points);
  const rows = t.toArray().map((r) => r.toJSON() as Record<string, unknown>);
  rows.forEach((row, i) => {
    const run = runs[i]!;
    expect(row["point"]).toBe(i);
    expect(row["status"]).toBe("finished");
    expect(row["runId"]).toBe(run.id);
    expect(row["steps"]).toBe(steps);
    expect(row["finalTrainLoss"]).toBeCloseTo(run.lastLoss!, 6);
    expect(row["finalValLoss"]).toBeCloseTo(run.finalValLoss!, 6);
    // The swept fields, as the run recorded them and as its config has them.
    for (const [k, v] of Object.entries(run.sweep!.values)) {
      expect(row[k]).toBe(v);
      const inConfig = k.split(".").reduce<unknown>((o, part) => (o as Record<string, unknown>)[part], run.config);
      expect(inConfig).toBe(v);
    }
  });
}

describe("primal sweep, killed and run again", () => {
  beforeAll(() => ensureDist());

  it("finishes every point exactly once, and the results table matches the runs", async () => {
    const home = join(work, "cli");
    const specPath = join(work, "cli-spec.json");
    writeFileSync(
      specPath,
      JSON.stringify({
        name: "kill-test",
        base: { ...tinyBase, threads: 1 },
        grid: { "knobs.flipRate": [0.01, 0.05] },
        seeds: [1, 2],
      }),
    );
    const bin = join(repoRoot, "bin", "primal.js");
    // First attempt: killed (SIGKILL, no chance to clean up) once a point has trained a few steps.
    const first = spawn(
      process.execPath,
      [bin, "sweep", specPath, "--home", home, "--parallel", "2", "--threads", "2", "--json"],
      {
        stdio: "ignore",
      },
    );
    const firstExit = new Promise((r) => first.on("close", r));
    const deadline = Date.now() + 120_000;
    let killedMidway = false;
    while (Date.now() < deadline) {
      const dirs = existsSync(home) ? readdirSync(home).filter((d) => d !== "sweeps") : [];
      const progressed = dirs.some((d) => existsSync(join(home, d, "checkpoints", "step-4.safetensors")));
      if (progressed) {
        first.kill("SIGKILL");
        killedMidway = true;
        break;
      }
      await new Promise((r) => setTimeout(r, 100));
    }
    await firstExit;
    expect(killedMidway).toBe(true);
    // The point processes notice their parent is gone and stop at a step boundary, checkpointed.
    await new Promise<void>((resolve) => {
      const until = Date.now() + 60_000;
      const poll = () => {
        const busy = listRuns(home).some((r) => r.status === "running");
        if (!busy || Date.now() > until) resolve();
        else setTimeout(poll, 200);
      };
      poll();
    });
    const mid = sweepRuns(home, "kill-test");
    expect(mid.length).toBeGreaterThan(0);
    expect(mid.some((r) => r.status !== "finished")).toBe(true);
    expect(mid.every((r) => r.status !== "running")).toBe(true);

    // Second attempt: runs what is left and prints the JSON line.
    const out = await new Promise<string>((resolve, reject) => {
      const c = spawn(
        process.execPath,
        [bin, "sweep", specPath, "--home", home, "--parallel", "2", "--threads", "2", "--json"],
        {
          stdio: ["ignore", "pipe", "pipe"],
        },
      );
      let stdout = "";
      let stderr = "";
      c.stdout.on("data", (b: Buffer) => (stdout += b.toString()));
      c.stderr.on("data", (b: Buffer) => (stderr += b.toString()));
      c.on("close", (code) => (code === 0 ? resolve(stdout) : reject(new Error(`exit ${code}: ${stderr}`))));
    });
    const lines = out.trim().split("\n");
    expect(lines).toHaveLength(1);
    const j = JSON.parse(lines[0]!);
    expect(j).toMatchObject({ sweepId: "kill-test", done: 4, failed: 0, points: 4 });
    expect(j.runs).toHaveLength(4);
    checkResults(home, "kill-test", 4, 12);
    // The interrupted runs were resumed, not started over: no point has a second run.
    expect(listRuns(home).filter((r) => r.sweep?.id === "kill-test")).toHaveLength(4);
    expect(mid.every((r) => j.runs.includes(r.dir))).toBe(true);

    // A third run has nothing left to do.
    const again = await sweep(specPath, { home });
    expect(again.done).toBe(4);
    expect(again.stopped).toBe(0);
    expect(listRuns(home).filter((r) => r.sweep?.id === "kill-test")).toHaveLength(4);
  }, 400_000);

  it("sweep() in-process: an abort stops it at a step boundary and a rerun resumes", async () => {
    const home = join(work, "api");
    const spec = { name: "api-test", base: { ...tinyBase, threads: 1 }, grid: { "knobs.pMax": [0.4, 0.6] } };
    const ac = new AbortController();
    let steps = 0;
    const progress: number[] = [];
    const first = await sweep(spec, {
      home,
      signal: ac.signal,
      onProgress: (p) => {
        progress.push(p.done);
        if (p.stepsDone > steps) steps = p.stepsDone;
        if (p.stepsDone >= 5) ac.abort();
      },
    });
    expect(first.stopped).toBe(1);
    expect(first.done).toBe(0);
    expect(readRun(first.runs[0]!).meta.status).toBe("stopped");
    const second = await sweep(spec, { home });
    expect(second.done).toBe(2);
    expect(second.table.numRows).toBe(2);
    expect(second.best).not.toBeNull();
    checkResults(home, "api-test", 2, 12);
  }, 300_000);
});
