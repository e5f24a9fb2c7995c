// The `primal` command line end to end (bin/primal.js runs the compiled dist/): train with --json,
// list runs, resume, report, bad flags, and dataset download on an offline machine.
import { spawn } from "node:child_process";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { readRun } from "../../src/tracking/runReader.js";
import { native } from "../../src/native.js";
import { ensureDist, repoRoot, wikitextDir } from "../reliability/fixtures/common.js";

const work = mkdtempSync(join(tmpdir(), "primal-cli-"));
const home = join(work, "runs-home");
const bin = join(repoRoot, "bin", "primal.js");

beforeAll(() => ensureDist());
afterAll(() => rmSync(work, { recursive: true, force: true }));

interface Result {
  code: number | null;
  stdout: string;
  stderr: string;
  ms: number;
}

function primal(
  args: string[],
  opts: { env?: Record<string, string | undefined>; timeoutMs?: number } = {},
): Promise<Result> {
  const env: Record<string, string | undefined> = { ...process.env, PRIMAL_WIKITEXT_DIR: wikitextDir, ...opts.env };
  delete env.PRIMAL_HOME;
  if (opts.env?.PRIMAL_HOME) env.PRIMAL_HOME = opts.env.PRIMAL_HOME;
  const t0 = performance.now();
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [bin, ...args], { cwd: work, env, stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (b: Buffer) => (stdout += b.toString()));
    child.stderr.on("data", (b: Buffer) => (stderr += b.toString()));
    const timer = setTimeout(() => child.kill("SIGKILL"), opts.timeoutMs ?? 60_000);
    child.on("error", reject);
    child.on("close", (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr, ms: performance.now() - t0 });
    });
  });
}

const lines = (s: string) => s.split("\n").filter((l) => l.trim() !== "");
const tinyTrain = [
  "train",
  "--preset",
  "tiny",
  "--device",
  "cpu",
  "--threads",
  "1",
  "--eval-tokens",
  "2000",
  "--home",
  home,
];
let runDir = "";

describe("primal train / runs / resume / report", () => {
  it("train --json prints one final JSON line with the contract fields", async () => {
    const r = await primal([...tinyTrain, "--quant", "poltergeist", "--steps", "6", "--json"]);
    expect(r.code, r.stderr).toBe(0);
    const out = lines(r.stdout);
    expect(out).toHaveLength(1);
    const j = JSON.parse(out[0]!);
    for (const k of [
      "tokensPerSec",
      "medianTokensPerSec",
      "trainLoss",
      "valLoss",
      "valPpl",
      "valBpb",
      "peakMemoryBytes",
    ]) {
      expect(typeof j[k], k).toBe("number");
      expect(Number.isFinite(j[k]) && j[k] > 0, k).toBe(true);
    }
    expect(j.valPpl).toBeCloseTo(Math.exp(j.valLoss), 6);
    expect(j.valSet).toBe("wikitext-2/valid");
    expect(j.device).toMatch(/^cpu/);
    expect(j).toMatchObject({ quant: "poltergeist", preset: "tiny", steps: 6, stopped: false });
    expect(j.runDir.startsWith(home)).toBe(true);
    // medianTokensPerSec is the rate of the median recorded step (what primal_bench reports).
    const metrics = readRun(j.runDir).metrics;
    const ms = Array.from(metrics.getChild("stepMs")!.toArray() as ArrayLike<number>).sort((a, b) => a - b);
    const tokens = metrics.getChild("tokens")!.toArray() as ArrayLike<number>;
    expect(ms).toHaveLength(6);
    const expected = (Number(tokens[1]) - Number(tokens[0])) / ((ms[2]! + ms[3]!) / 2 / 1000);
    expect(Math.abs(j.medianTokensPerSec - expected)).toBeLessThanOrEqual(1 + expected * 1e-5);
    runDir = j.runDir;

    const run = readRun(runDir);
    expect(run.meta.status).toBe("finished");
    expect(Array.from(run.metrics.getChild("step")!.toArray())).toEqual([1, 2, 3, 4, 5, 6]);
    // The final evaluation lands on the last metrics row.
    expect(run.metrics.getChild("valLoss")!.get(5)).toBeCloseTo(j.valLoss, 5);
    expect(run.checkpoints.map((c) => c.step)).toEqual([6]);
    // Progress goes to stderr, so stdout stays machine-readable.
    expect(r.stderr).toMatch(/step 6 \(6\/6\) loss/);
  });

  it("runs lists the run (--json, and --home or PRIMAL_HOME)", async () => {
    const r = await primal(["runs", "--home", home, "--json"]);
    expect(r.code, r.stderr).toBe(0);
    const list = JSON.parse(r.stdout);
    expect(list).toHaveLength(1);
    expect(list[0]).toMatchObject({ dir: runDir, preset: "tiny", quant: "poltergeist", status: "finished", step: 6 });
    const viaEnv = await primal(["runs"], { env: { PRIMAL_HOME: home } });
    expect(viaEnv.code, viaEnv.stderr).toBe(0);
    expect(viaEnv.stdout).toContain(list[0].id);
    const none = await primal(["runs", "--home", join(work, "empty-home")]);
    expect(none.stdout).toMatch(/no runs yet/);
  });

  it("resume continues the run from its checkpoint, evaluating only when asked", async () => {
    const r = await primal(["resume", runDir, "--steps", "3", "--json"]);
    expect(r.code, r.stderr).toBe(0);
    const j = JSON.parse(lines(r.stdout).at(-1)!);
    expect(j).toMatchObject({ steps: 3, step: 9, runDir, stopped: false, valSet: null, evalTokens: 0 });
    const run = readRun(runDir);
    expect(Array.from(run.metrics.getChild("step")!.toArray())).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9]);
    expect(run.metrics.getChild("valLoss")!.get(8)).toBeNull();
    expect(run.events.filter((e) => e.kind === "resume").map((e) => e.step)).toEqual([6]);
    expect(run.meta).toMatchObject({ status: "finished", step: 9 });
    // --eval: at the last step, within the run's cap, as train does.
    const e = await primal(["resume", runDir, "--steps", "1", "--eval"]);
    expect(e.code, e.stderr).toBe(0);
    expect(e.stderr).toMatch(/evaluating on the first [\d,]+ tokens of each split/);
    expect(e.stdout).toMatch(/wikitext-2\/valid\s+loss \d+\.\d{4}/);
    expect(readRun(runDir).metrics.getChild("valLoss")!.get(9)).not.toBeNull();
  });

  it("report writes the figures as files and an index page", async () => {
    const r = await primal(["report", runDir, "--formats", "html"]);
    expect(r.code, r.stderr).toBe(0);
    const files = lines(r.stdout);
    expect(files.map((f) => f.split("/").at(-1))).toEqual([
      "loss.html",
      "ghost-scale.html",
      "flip-heatmap.html",
      "occupancy.html",
      "index.html",
    ]);
    const index = readFileSync(files.at(-1)!, "utf8");
    for (const part of ["Configuration and results", "Events", "Samples", 'href="loss.html"', "P.newPlot(el"])
      expect(index).toContain(part);
    expect(index).toMatch(/<script type="text\/javascript" src="plotly-[\d.]+\.min\.js"><\/script>/);
    for (const f of files) {
      expect(f.startsWith(join(runDir, "figures"))).toBe(true);
      expect(statSync(f).size).toBeGreaterThan(1000);
    }
    expect(readFileSync(files[0]!, "utf8")).toMatch(/<html/i);
  });

  it("train without --json prints a readable summary", async () => {
    const r = await primal([...tinyTrain, "--quant", "fp", "--steps", "2", "--name", "human"]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/PRIMAL tiny \/ fp on cpu/);
    expect(r.stdout).toMatch(/wikitext-2\/valid\s+loss \d+\.\d{4}\s+ppl \d+\.\d{2}\s+bpb \d+\.\d{4}/);
    expect(r.stdout).toMatch(/run\s+\S*human/);
    expect(r.stderr).toMatch(/training tiny\/fp on cpu/);
  });
});

describe("primal with bad input", () => {
  const runCount = () => (existsSync(home) ? readdirSync(home).length : 0);

  it("bad flags exit non-zero with a message and create no run", async () => {
    const before = runCount();
    const cases: [string[], RegExp][] = [
      [[...tinyTrain, "--quant", "int4"], /'int4' is invalid\. Allowed choices are fp, ste, poltergeist/],
      [[...tinyTrain, "--steps", "x"], /--steps must be an integer, got 'x'/],
      [[...tinyTrain, "--steps", "0"], /config\.steps/],
      [[...tinyTrain, "--lr", "fast"], /--lr must be a number, got 'fast'/],
      [[...tinyTrain, "--bridge", "1.5"], /config\.knobs\.bridge/],
      [[...tinyTrain, "--data", join(work, "missing.txt")], /corpus path not found/],
      [["train", "--preset", "huge"], /'huge' is invalid\. Allowed choices are tiny, small, ghost-0\.1b/],
      [["resume", runDir, "--steps", "x"], /--steps must be an integer, got 'x'/],
      [["resume", runDir, "--steps", ""], /--steps must be an integer, got ''/],
      [["resume", runDir, "--steps", "-1"], /--steps must be a non-negative integer/],
      [[...tinyTrain, "--lr", ""], /--lr must be a number, got ''/],
      [[...tinyTrain, "--lr", "0x10"], /--lr must be a number, got '0x10'/],
      [[...tinyTrain, "--threads", "1000"], /config\.threads: at most \d+ \(the cores of this machine/],
      [["resume", join(work, "nope"), "--steps", "1"], /resume: '.*nope' does not exist/],
      [["resume", runDir], /required option '--steps <n>' not specified/],
      [["report", runDir, "--formats", "gif"], /unknown format 'gif' \(allowed: html, svg, png, pdf\)/],
      [["report", join(work, "nope")], /run\.json/],
      [["frobnicate"], /unknown command 'frobnicate'/],
    ];
    if (!native().cudaInfo().built) cases.push([[...tinyTrain, "--device", "cuda"], /no CUDA backend/]);
    for (const [args, pattern] of cases) {
      const r = await primal(args);
      expect(r.code, args.join(" ")).not.toBe(0);
      expect(r.stderr, args.join(" ")).toMatch(pattern);
      expect(r.stdout, args.join(" ")).toBe("");
    }
    expect(runCount()).toBe(before);
  });

  it("data fetch fails fast and clearly when offline", async (ctx) => {
    const dir = join(work, "wikitext");
    const r = await primal(["data", "fetch", "wikitext-2", "--dir", dir], { timeoutMs: 45_000 });
    if (r.code === null) ctx.skip("data fetch did not finish in 45 s (slow network); not an offline machine");
    if (r.code === 0) {
      // An online machine: the files arrived and were verified.
      expect(existsSync(join(dir, "valid.txt"))).toBe(true);
      return;
    }
    expect(r.stderr).toMatch(/could not download wikitext-2 file/);
    expect(r.stderr).toMatch(/PRIMAL_WIKITEXT_DIR/);
    expect(r.ms).toBeLessThan(30_000);
  });
});
