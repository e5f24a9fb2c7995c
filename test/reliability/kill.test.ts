// kill -9 in the middle of training: the run directory stays readable (a cut Arrow tail is
// ignored), and resuming from the newest checkpoint replays exactly the steps an uninterrupted
// run would have taken (CPU training is deterministic).
import { spawn } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Trainer } from "../../src/trainer.js";
import { readRun } from "../../src/tracking/runReader.js";
import { ensureDist, tinyConfig } from "./fixtures/common.js";

const home = mkdtempSync(join(tmpdir(), "primal-kill-"));
const fixture = join(import.meta.dirname, "fixtures", "train-child.mjs");

beforeAll(() => ensureDist());
afterAll(() => rmSync(home, { recursive: true, force: true }));

interface ChildResult {
  dir: string;
  steps: number[];
  signal: NodeJS.Signals | null;
}

/** Runs the fixture and SIGKILLs it once `killWhen(step)` says so (or after `killAfterMs`). */
function trainAndKill(
  config: object,
  blockAt: number,
  killWhen: (step: number) => boolean,
  killAfterMs = 0,
): Promise<ChildResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [fixture, JSON.stringify(config), String(blockAt)], {
      stdio: ["ignore", "pipe", "pipe"],
    });
    let dir = "";
    const steps: number[] = [];
    let out = "";
    let err = "";
    const guard = setTimeout(() => child.kill("SIGKILL"), 50_000);
    child.stderr.on("data", (b: Buffer) => (err += b.toString()));
    child.stdout.on("data", (b: Buffer) => {
      out += b.toString();
      let nl: number;
      while ((nl = out.indexOf("\n")) >= 0) {
        const line = out.slice(0, nl);
        out = out.slice(nl + 1);
        if (line.startsWith("dir ")) {
          dir = line.slice(4);
          if (killAfterMs > 0) setTimeout(() => child.kill("SIGKILL"), killAfterMs);
        } else if (line.startsWith("step ")) {
          const s = Number(line.split(" ")[1]);
          steps.push(s);
          if (killWhen(s)) child.kill("SIGKILL");
        }
      }
    });
    child.on("error", reject);
    child.on("exit", (code, signal) => {
      clearTimeout(guard);
      if (signal !== "SIGKILL") reject(new Error(`child exited with code ${code} before the kill:\n${err}`));
      else resolve({ dir, steps, signal });
    });
  });
}

/** Steps of a column in row order. */
function stepsOf(table: { getChild(name: string): { toArray(): ArrayLike<number> } | null }): number[] {
  return Array.from(table.getChild("step")?.toArray() ?? []);
}

describe("kill -9 during training", () => {
  it("leaves a readable run that resumes bit-identically from the newest checkpoint", async () => {
    const config = tinyConfig(home, { name: "killed", checkpointEvery: 10, steps: 200 });
    const child = await trainAndKill(config, 25, (s) => s === 25);
    expect(child.signal).toBe("SIGKILL");
    expect(child.steps.slice(0, 25)).toEqual(Array.from({ length: 25 }, (_, i) => i + 1));

    // The reader copes with whatever the kill left: rows are a prefix of the steps trained,
    // layer rows come 14 per step, and the checkpoints are exactly 10 and 20.
    const run = readRun(child.dir);
    expect(run.meta.status).toBe("running");
    const mSteps = stepsOf(run.metrics);
    expect(mSteps).toEqual(Array.from({ length: mSteps.length }, (_, i) => i + 1));
    expect(mSteps.length).toBeLessThanOrEqual(25);
    const lSteps = stepsOf(run.layers);
    expect(lSteps.length % 14).toBe(0);
    expect(lSteps.length / 14).toBeLessThanOrEqual(25);
    expect(lSteps.filter((_, i) => i % 14 === 0)).toEqual(Array.from({ length: lSteps.length / 14 }, (_, i) => i + 1));
    expect(run.checkpoints.map((c) => c.step)).toEqual([10, 20]);
    expect(run.events.filter((e) => e.kind === "checkpoint").map((e) => e.step)).toEqual([10, 20]);
    expect(readdirSync(join(child.dir, "checkpoints")).filter((n) => n.endsWith(".tmp"))).toEqual([]);

    // The same config, never interrupted, in this process.
    const ref = await Trainer.create({ ...config, name: "reference" } as never);
    const refLoss: number[] = [];
    await ref.train(25, { onStep: (m) => refLoss.push(m.loss) });
    ref.dispose();

    const r = await Trainer.resume(child.dir);
    expect(r.step).toBe(20);
    const again: number[] = [];
    await r.train(5, { onStep: (m) => again.push(m.loss) });
    expect(r.step).toBe(25);
    r.dispose();
    expect(again).toEqual(refLoss.slice(20, 25));

    // After the resume the streams are whole again and end with steps 21..25.
    const after = readRun(child.dir);
    expect(stepsOf(after.metrics).slice(-5)).toEqual([21, 22, 23, 24, 25]);
    expect(Array.from(after.metrics.getChild("loss")!.toArray()).slice(-5)).toEqual(again.map((x) => Math.fround(x)));
    expect(stepsOf(after.layers).length).toBe(lSteps.length + 5 * 14);
    expect(after.events.some((e) => e.kind === "resume" && e.step === 20)).toBe(true);
    expect(after.meta.status).toBe("finished");
    expect(after.meta.step).toBe(25);
  });

  it("survives kills at arbitrary moments, including mid-checkpoint", async () => {
    // A checkpoint every step makes it likely that some kill lands inside a save; the rename
    // protocol must still leave only whole checkpoints behind.
    for (const delay of [300, 550, 800]) {
      const config = tinyConfig(home, { name: `anytime-${delay}`, checkpointEvery: 1, steps: 500 });
      const child = await trainAndKill(config, 0, () => false, delay);
      if (!child.dir) continue; // killed before the run existed: nothing to check
      const run = readRun(child.dir);
      const mSteps = stepsOf(run.metrics);
      expect(mSteps).toEqual(Array.from({ length: mSteps.length }, (_, i) => i + 1));
      if (run.checkpoints.length === 0) {
        await expect(Trainer.resume(child.dir)).rejects.toThrow(/no checkpoint yet/);
        continue;
      }
      const r = await Trainer.resume(child.dir);
      expect(r.step).toBe(run.checkpoints[run.checkpoints.length - 1]!.step);
      const losses: number[] = [];
      await r.train(2, { onStep: (m) => losses.push(m.loss) });
      expect(losses.every(Number.isFinite)).toBe(true);
      r.dispose();
      expect(existsSync(join(child.dir, "run.json"))).toBe(true);
      expect(JSON.parse(readFileSync(join(child.dir, "run.json"), "utf8")).status).toBe("finished");
    }
  });
});
