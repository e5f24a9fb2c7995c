// Writers as separate processes: two resumes of one run at once, a kill -9 timed at the moment a
// checkpoint is renamed into place, and SIGTERM from a scheduler. The children run the compiled
// package (dist/), like the CLI and kill tests.
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync, watch } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Trainer } from "../../src/trainer.js";
import { readRun } from "../../src/tracking/runReader.js";
import { ensureDist, repoRoot, tinyConfig } from "./fixtures/common.js";

const home = mkdtempSync(join(tmpdir(), "primal-writers-"));
const bin = join(repoRoot, "bin", "primal.js");
const fixture = join(import.meta.dirname, "fixtures", "train-child.mjs");

beforeAll(() => ensureDist());
afterAll(() => rmSync(home, { recursive: true, force: true }));

interface Result {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** Runs `primal …`; `onStderr` sees the output as it comes (and gets the child to signal it). */
function primal(args: string[], onStderr?: (text: string, kill: (s: NodeJS.Signals) => void) => void): Promise<Result> {
  const env = { ...process.env };
  delete env.PRIMAL_WIKITEXT_DIR;
  delete env.PRIMAL_HOME;
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [bin, ...args], { cwd: home, env, stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    const guard = setTimeout(() => child.kill("SIGKILL"), 90_000);
    child.stdout.on("data", (b: Buffer) => (stdout += b.toString()));
    child.stderr.on("data", (b: Buffer) => {
      stderr += b.toString();
      onStderr?.(stderr, (s) => child.kill(s));
    });
    child.on("error", reject);
    child.on("close", (code, signal) => {
      clearTimeout(guard);
      resolve({ code, signal, stdout, stderr });
    });
  });
}

const stepsOf = (t: { getChild(n: string): { toArray(): ArrayLike<number> } | null }) =>
  Array.from(t.getChild("step")!.toArray());
const range = (from: number, to: number) => Array.from({ length: to - from + 1 }, (_, i) => from + i);

async function tinyRun(name: string, steps: number): Promise<string> {
  const t = await Trainer.create(tinyConfig(home, { name, checkpointEvery: 10 }) as never);
  await t.train(steps);
  t.dispose();
  return t.runDir;
}

describe("two writers on one run", () => {
  it("a second resume while the run is being trained is refused, naming the holder", async () => {
    const dir = await tinyRun("held", 10);
    const holder = await Trainer.resume(dir);
    try {
      const r = await primal(["resume", dir, "--steps", "5"]);
      expect(r.code).toBe(1);
      expect(r.stderr).toMatch(
        new RegExp(`primal: run .* is being written by pid ${process.pid} on .* \\(lock file .*lock\\)`),
      );
      await holder.train(5);
    } finally {
      holder.dispose();
    }
    const run = readRun(dir);
    expect(stepsOf(run.metrics)).toEqual(range(1, 15));
    expect(run.events.filter((e) => e.kind === "resume")).toHaveLength(1);
  });

  it("two resumes started together: one trains, the other is refused, and the history stays readable", async () => {
    const dir = await tinyRun("race", 10);
    const [a, b] = await Promise.all([
      primal(["resume", dir, "--steps", "60", "--json"]),
      primal(["resume", dir, "--steps", "40", "--json"]),
    ]);
    const results = [a, b];
    for (const r of results) {
      if (r.code !== 0) expect(r.stderr).toMatch(/is being written by pid \d+/);
    }
    const ok = results.filter((r) => r.code === 0);
    expect(ok.length).toBeGreaterThanOrEqual(1);
    // Readable, and what it holds is the first 10 steps then each successful resume's steps in turn.
    const run = readRun(dir);
    expect(run.events.filter((e) => e.kind === "resume")).toHaveLength(ok.length);
    const steps = stepsOf(run.metrics);
    expect(steps.slice(0, 10)).toEqual(range(1, 10));
    expect(steps.length).toBeGreaterThan(10);
    expect(run.layers.numRows).toBe(14 * steps.length);
  });
});

describe("kill -9 at the checkpoint rename", () => {
  it("every row up to a checkpoint is on disk the moment the checkpoint exists (held-back row included)", async () => {
    for (const at of [10, 20, 30]) {
      const config = tinyConfig(home, { name: `rename-${at}`, checkpointEvery: 10, steps: 500 });
      const dir = await new Promise<string>((resolve, reject) => {
        const child = spawn(process.execPath, [fixture, JSON.stringify(config), "0"], {
          stdio: ["ignore", "pipe", "pipe"],
        });
        let out = "";
        let runDir = "";
        let err = "";
        const guard = setTimeout(() => child.kill("SIGKILL"), 60_000);
        child.stderr.on("data", (b: Buffer) => (err += b.toString()));
        child.stdout.on("data", (b: Buffer) => {
          out += b.toString();
          const m = /^dir (.*)$/m.exec(out);
          if (m && !runDir) {
            runDir = m[1]!;
            // The kill lands as soon as the rename makes the checkpoint visible.
            const w = watch(join(runDir, "checkpoints"), (_event, name) => {
              if (name === `step-${at}.safetensors`) {
                child.kill("SIGKILL");
                w.close();
              }
            });
          }
        });
        child.on("error", reject);
        child.on("exit", (_code, signal) => {
          clearTimeout(guard);
          if (signal !== "SIGKILL") reject(new Error(`child was not killed:\n${err}`));
          else resolve(runDir);
        });
      });
      const run = readRun(dir);
      const newest = run.checkpoints.at(-1)!.step;
      expect(newest).toBeGreaterThanOrEqual(at);
      const steps = stepsOf(run.metrics);
      expect(steps.slice(0, newest), `killed at step-${at}`).toEqual(range(1, newest));
      const layerSteps = stepsOf(run.layers).filter((_, i) => i % 14 === 0);
      expect(layerSteps.slice(0, newest), `killed at step-${at}`).toEqual(range(1, newest));
      // Resuming continues right after the checkpoint: nothing is missing afterwards either.
      const r = await Trainer.resume(dir);
      await r.train(2);
      r.dispose();
      const last = new Map<number, number>();
      for (const s of stepsOf(readRun(dir).metrics)) last.set(s, s);
      expect([...last.keys()].sort((x, y) => x - y).slice(0, newest + 2)).toEqual(range(1, newest + 2));
    }
  });
});

describe("SIGTERM", () => {
  it("stops training like Ctrl-C: a checkpoint, a stop event and status stopped", async () => {
    const h = join(home, "sigterm");
    let sent = false;
    const r = await primal(
      [
        "train",
        "--preset",
        "tiny",
        "--device",
        "cpu",
        "--threads",
        "1",
        "--steps",
        "100000",
        "--eval-tokens",
        "500",
        "--checkpoint-every",
        "0",
        "--home",
        h,
        "--name",
        "term",
      ],
      (text, kill) => {
        // "training … run <dir>" comes right before train() starts; let it run a few steps.
        if (!sent && /^training .* run /m.test(text)) {
          sent = true;
          setTimeout(() => kill("SIGTERM"), 1500);
        }
      },
    );
    expect(sent).toBe(true);
    expect(r.signal).toBeNull();
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/SIGTERM: stopping at the next step boundary/);
    const run = readRun(join(h, (await import("node:fs")).readdirSync(h)[0]!));
    expect(run.meta.status).toBe("stopped");
    expect(run.events.some((e) => e.kind === "stop")).toBe(true);
    expect(run.checkpoints.at(-1)!.step).toBe(run.meta.step);
  });
});
