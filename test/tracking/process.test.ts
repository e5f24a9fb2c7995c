// Tests that need a real second Node process: kill -9 in the middle of writing, and a process
// that exits without closing its store. The child runs plain JS, so the tracking module is
// compiled with tsc into a temp dir first (no TS loader is installed).
import { spawn, spawnSync } from "node:child_process";
import { mkdtempSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { RunStore, readRun } from "../../src/tracking/index.js";

const here = dirname(fileURLToPath(import.meta.url));
const repo = resolve(here, "..", "..");
const fixture = join(here, "fixtures", "writer.mjs");

let work = "";
let dist = "";

beforeAll(() => {
  work = mkdtempSync(join(tmpdir(), "primal-tracking-proc-"));
  dist = join(work, "dist");
  const tsc = join(repo, "node_modules", "typescript", "bin", "tsc");
  const r = spawnSync(
    process.execPath,
    [
      tsc,
      join(repo, "src", "tracking", "index.ts"),
      "--outDir",
      dist,
      // The whole src/ tree as root: tracking's readers import the display helpers beside it.
      "--rootDir",
      join(repo, "src"),
      "--module",
      "NodeNext",
      "--moduleResolution",
      "NodeNext",
      "--target",
      "ES2022",
      "--strict",
      "--skipLibCheck",
      "--types",
      "node",
    ],
    { cwd: repo, encoding: "utf8" },
  );
  if (r.status !== 0) throw new Error(`tsc failed:\n${r.stdout}\n${r.stderr}`);
  // The compiled files import apache-arrow; let Node resolve it from the repo, as ESM.
  symlinkSync(join(repo, "node_modules"), join(work, "node_modules"), "dir");
  writeFileSync(join(work, "package.json"), '{"type":"module"}\n');
}, 120_000);

afterAll(() => {
  if (work) rmSync(work, { recursive: true, force: true });
});

interface ChildResult {
  lines: string[];
  code: number | null;
  signal: NodeJS.Signals | null;
  ms: number;
}

/** Runs the fixture; `killAfterFlushes` > 0 sends SIGKILL once that many flushes were reported. */
function runChild(home: string, mode: "loop" | "exit", killAfterFlushes = 0): Promise<ChildResult> {
  return new Promise((resolvePromise, reject) => {
    const t0 = Date.now();
    const child = spawn(process.execPath, [fixture, join(dist, "tracking"), home, mode], {
      stdio: ["ignore", "pipe", "pipe"],
    });
    const lines: string[] = [];
    let partial = "";
    let stderr = "";
    let flushes = 0;
    const guard = setTimeout(() => child.kill("SIGKILL"), 20_000);
    child.stdout.setEncoding("utf8");
    child.stdout.on("data", (chunk: string) => {
      partial += chunk;
      const parts = partial.split("\n");
      partial = parts.pop() ?? "";
      for (const line of parts) {
        // Once the kill is sent, later lines may describe flushes we did not wait for; keep
        // only what was seen before the kill so the assertion is a lower bound.
        if (killAfterFlushes > 0 && flushes >= killAfterFlushes) continue;
        lines.push(line);
        if (line.startsWith("flushed ")) {
          flushes++;
          if (killAfterFlushes > 0 && flushes === killAfterFlushes) child.kill("SIGKILL");
        }
      }
    });
    child.stderr.on("data", (d: Buffer) => {
      stderr += d.toString();
    });
    child.on("error", reject);
    child.on("close", (code, signal) => {
      clearTimeout(guard);
      if (code !== 0 && signal !== "SIGKILL") reject(new Error(`child failed (${code}): ${stderr}`));
      else resolvePromise({ lines, code, signal, ms: Date.now() - t0 });
    });
  });
}

function steps(table: { getChild(name: string): { toArray(): ArrayLike<number> } | null }): number[] {
  return Array.from(table.getChild("step")!.toArray());
}

describe("a writer process killed with SIGKILL", () => {
  it("keeps every row up to its last flush, and the run can be resumed", async () => {
    const home = join(work, "kill");
    const res = await runChild(home, "loop", 40);
    expect(res.signal).toBe("SIGKILL");
    const dir = res.lines.find((l) => l.startsWith("dir "))!.slice(4);
    const lastSeen = Number(
      res.lines
        .filter((l) => l.startsWith("flushed "))
        .pop()!
        .slice(8),
    );
    expect(lastSeen).toBe(40 * 5 - 1);

    const run = readRun(dir);
    const m = steps(run.metrics);
    // Contiguous from 0, whole flushes only (5 steps each), at least what the parent saw.
    expect(m.length).toBeGreaterThanOrEqual(lastSeen + 1);
    expect(m.length % 5).toBe(0);
    expect(m).toEqual(m.map((_, i) => i));
    const l = steps(run.layers);
    expect(l.length % 15).toBe(0);
    expect(l.length / 3).toBeGreaterThanOrEqual(lastSeen + 1);
    expect(l).toEqual(l.map((_, i) => Math.floor(i / 3)));
    expect(run.meta.status).toBe("running");

    // Resume: the reopened store cuts any partial tail and continues the same streams.
    const store = RunStore.open(dir);
    const next = m.length;
    store.appendMetrics({
      step: next,
      loss: 1,
      lr: 0,
      gradNorm: 0,
      tokens: 0,
      tokensPerSec: 0,
      stepMs: 0,
      peakMemoryBytes: 0,
    });
    store.event("resume", { step: next });
    store.setStatus("finished", next);
    store.close();
    const after = readRun(dir);
    expect(steps(after.metrics)).toEqual([...m, next]);
    expect(after.meta.status).toBe("finished");
    expect(after.events.at(-1)).toMatchObject({ kind: "resume", step: next });
  }, 60_000);
});

describe("a process that ends without closing its store", () => {
  it("exits promptly (unref-ed flush timer) and still writes buffered rows", async () => {
    const home = join(work, "exit");
    const res = await runChild(home, "exit");
    expect(res.code).toBe(0);
    expect(res.lines).toContain("done");
    const dir = res.lines.find((l) => l.startsWith("dir "))!.slice(4);
    const run = readRun(dir);
    expect(steps(run.metrics)).toEqual([0, 1, 2]);
    expect(run.layers.numRows).toBe(9);
  }, 60_000);
});
