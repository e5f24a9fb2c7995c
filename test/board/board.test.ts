// `primal board` in a real browser (Debian's Chromium through playwright-core) over a home holding
// finished, running (a live writer process), crashed (killed -9), abandoned and corrupt runs, a
// sweep, and a symbolic link to a run outside the home. Also the HTTP API's refusals: paths that
// climb out of the home (plain, encoded, through a link), writes, foreign Host headers.
import { spawn, type ChildProcess } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { request } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { chromium, type BrowserContext, type Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { CHROMIUM_ARGS, findChromium } from "../../src/plots/export.js";
import { RunStore } from "../../src/tracking/runStore.js";
import { expandSweep } from "../../src/sweep/spec.js";
import { pointDir, writePointRecord } from "../../src/sweep/records.js";
import { startBoard, type BoardServer } from "../../src/board/server.js";
import { ensureDist, distIndex, repoRoot } from "../reliability/fixtures/common.js";

const chromiumPath = findChromium();
const work = mkdtempSync(join(tmpdir(), "primal-board-"));
const home = join(work, "runs");
const artifacts = join(repoRoot, "test", "artifacts");
const names = Array.from({ length: 14 }, (_, i) => `blocks.${Math.floor(i / 7)}.attn.l${i % 7}`);

function makeRun(
  name: string,
  seed: number,
  opts: {
    steps?: number;
    status?: "finished" | "running";
    tags?: string[];
    flipRate?: number;
    sweep?: { point: number; key: string; values: Record<string, unknown> };
  } = {},
): RunStore {
  const s = RunStore.create({
    home,
    name,
    config: {
      preset: "tiny",
      quant: "poltergeist",
      seed,
      steps: opts.steps ?? 30,
      knobs: { flipRate: opts.flipRate ?? 0.01, bridge: 2 / 3 },
    },
    versions: { primal: "test", native: "none" },
    device: "cpu",
    seed,
    ...(opts.tags ? { tags: opts.tags } : {}),
    ...(opts.sweep ? { sweep: { id: "demo", ...opts.sweep } } : {}),
  });
  const steps = opts.steps ?? 30;
  for (let step = 1; step <= steps; step++) {
    const loss = 5 * Math.exp(-step / 12) + 2 + 0.05 * seed * Math.sin(step);
    s.appendMetrics({
      step,
      loss,
      lr: 1e-3,
      gradNorm: 1,
      tokens: step * 512,
      tokensPerSec: 5000,
      stepMs: 20,
      peakMemoryBytes: 1e6,
      time: Date.now() - (steps - step) * 1000,
      valLoss: step % 10 === 0 ? loss + 0.1 : null,
    });
    s.appendLayers({
      step,
      names,
      scale: new Float32Array(14).fill(1 + step / 100),
      flipFrac: new Float32Array(14).fill(0.01 + seed / 1000),
    });
    s.recordKnobs(step, { flipRate: step > 20 ? 0.02 : 0.01, bridge: 2 / 3 });
    if (step % 5 === 0) s.logCustom(step, { probe: step / steps });
  }
  s.event("set", { step: 20, knob: "flipRate", old: 0.01, new: 0.02 });
  s.sample({ step: 30, prompt: "The future of AI is", text: " bright", temperature: 0.8, topK: 40, seed: 1 });
  s.setStatus(opts.status ?? "finished", steps);
  return s;
}

/** A writer in another process: creates a run and appends a step every 300 ms until killed. */
function liveWriter(name: string, mode: "live" | "crash"): Promise<{ child: ChildProcess; dir: string }> {
  const code = `
    const { RunStore } = await import(${JSON.stringify(distIndex)});
    const s = RunStore.create({ home: ${JSON.stringify(home)}, name: ${JSON.stringify(name)}, config: { preset: "tiny", quant: "poltergeist", seed: 9, steps: 1000 },
      versions: { primal: "t", native: "n" }, device: "cpu", seed: 9, arrow: { flushIntervalMs: 0 } });
    let step = 0;
    const row = () => { step++; s.appendMetrics({ step, loss: 6 - Math.log(step + 1) / 3, lr: 1e-3, gradNorm: 1, tokens: step * 512, tokensPerSec: 5000, stepMs: 20, peakMemoryBytes: 1e6 }); s.flush(); };
    for (let i = 0; i < 5; i++) row();
    process.stdout.write(s.dir + "\\n");
    if (${JSON.stringify(mode)} === "live") setInterval(row, 300); else setInterval(() => {}, 1000);`;
  const child = spawn(process.execPath, ["--input-type=module", "-e", code], { stdio: ["ignore", "pipe", "inherit"] });
  return new Promise((resolve, reject) => {
    child.stdout!.once("data", (b: Buffer) => resolve({ child, dir: b.toString().trim() }));
    child.once("error", reject);
  });
}

function raw(port: number, path: string, opts: { method?: string; host?: string } = {}): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = request(
      { host: "127.0.0.1", port, path, method: opts.method ?? "GET", headers: opts.host ? { host: opts.host } : {} },
      (res) => {
        res.resume();
        resolve(res.statusCode ?? 0);
      },
    );
    req.on("error", reject);
    req.end();
  });
}

let board: BoardServer;
let live: { child: ChildProcess; dir: string };
let crashedDir = "";
let ctx: BrowserContext | undefined;
let page: Page;
const ids: Record<string, string> = {};

beforeAll(async () => {
  ensureDist();
  mkdirSync(home, { recursive: true });
  mkdirSync(artifacts, { recursive: true });
  // A sweep of two seeds (its records as `primal sweep` writes them), each point a finished run.
  const spec = {
    name: "demo",
    base: { preset: "tiny", steps: 30 },
    grid: { "knobs.flipRate": [0.01, 0.05] },
    seeds: [1, 2],
  };
  const sw = expandSweep(spec);
  mkdirSync(join(home, "sweeps", "demo"), { recursive: true });
  writeFileSync(join(home, "sweeps", "demo", "spec.json"), JSON.stringify(spec));
  for (const p of sw.points) {
    const r = makeRun(`demo #${p.index}`, p.config.seed, {
      flipRate: p.config.knobs.flipRate,
      tags: ["baseline"],
      sweep: { point: p.index, key: p.key, values: p.values },
    });
    r.close();
    writePointRecord(pointDir(home, "demo", p.key), { index: p.index, key: p.key, values: p.values, runId: r.id });
    ids[`demo${p.index}`] = r.id;
  }
  const abandoned = makeRun("left-open", 3, { status: "running" });
  abandoned.close();
  ids["abandoned"] = abandoned.id;
  // Corrupt: a run.json cut short, and a metrics stream damaged in the middle.
  mkdirSync(join(home, "2026-01-01T00-00-00-half-written-0000"));
  writeFileSync(join(home, "2026-01-01T00-00-00-half-written-0000", "run.json"), '{"id": "half", "config": {');
  const damaged = makeRun("damaged", 4);
  damaged.close();
  const m = readFileSync(join(damaged.dir, "metrics.arrows"));
  m[m.length >> 1] ^= 0xff;
  writeFileSync(join(damaged.dir, "metrics.arrows"), m);
  ids["damaged"] = damaged.id;
  // A link inside the home to a run outside it: never served.
  const outside = join(work, "outside");
  mkdirSync(outside);
  const secret = RunStore.create({
    home: outside,
    name: "secret",
    config: { preset: "tiny" },
    versions: { primal: "t", native: "n" },
    device: "cpu",
    seed: 1,
  });
  secret.close();
  symlinkSync(secret.dir, join(home, "linked-run"));
  const crash = await liveWriter("crashed", "crash");
  crash.child.kill("SIGKILL");
  await new Promise((r) => crash.child.once("close", r));
  crashedDir = crash.dir;
  live = await liveWriter("training", "live");
  board = await startBoard({ home, port: 0 });
  if (chromiumPath) {
    ctx = await chromium.launchPersistentContext(mkdtempSync(join(work, "profile-")), {
      executablePath: chromiumPath,
      headless: true,
      args: [...CHROMIUM_ARGS],
      viewport: { width: 1400, height: 1000 },
    });
    page = await ctx.newPage();
  }
}, 120_000);

afterAll(async () => {
  live?.child.kill("SIGKILL");
  await ctx?.close();
  await board?.close();
  rmSync(work, { recursive: true, force: true });
});

describe("the board's HTTP API", () => {
  it("prints a loopback URL and refuses paths out of the home, writes and foreign hosts", async () => {
    expect(board.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/$/);
    const p = board.port;
    expect(await raw(p, "/api/runs")).toBe(200);
    expect(await raw(p, `/api/run/${ids["demo0"]}`)).toBe(200);
    for (const path of [
      "/api/run/..",
      "/api/run/%2e%2e",
      "/api/run/..%2F..%2Fetc%2Fpasswd",
      "/api/run/%2E%2E%2F%2E%2E",
      "/api/run/../../etc/passwd",
      "/api/run/linked-run",
      "/api/run/linked-run/layers",
      "/api/sweep/..%2F..",
      "/assets/..%2F..%2Fpackage.json",
      "/assets/../../package.json",
      "/vendor/..%2Fpackage.json",
      "/../../../etc/passwd",
      "/%2e%2e/%2e%2e/etc/passwd",
    ])
      expect(await raw(p, path), path).toBe(404);
    expect(await raw(p, "/api/runs", { method: "POST" })).toBe(405);
    expect(await raw(p, "/api/runs", { method: "DELETE" })).toBe(405);
    expect(await raw(p, "/api/runs", { host: "evil.example:80" })).toBe(403);
    const list = await (await fetch(`${board.url}api/runs`)).arrayBuffer();
    expect(Buffer.from(list).includes(Buffer.from("secret"))).toBe(false);
  });
});

describe("board() for a notebook cell", () => {
  it("starts once per home and displays as an inline frame with a link", async () => {
    const { board: embed } = await import("../../src/board/index.js");
    const { JUPYTER_DISPLAY } = await import("../../src/display/mime.js");
    const b = await embed({ home, page: `run/${ids["demo0"]}`, height: 500 });
    try {
      expect(b.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/$/);
      expect(b.pageUrl).toBe(`${b.url}?embed=1#/run/${ids["demo0"]}`);
      const bundle = (b as unknown as Record<symbol, () => Record<string, string>>)[JUPYTER_DISPLAY]!();
      expect(bundle["text/html"]).toContain(`<iframe src="${b.pageUrl}"`);
      expect(bundle["text/html"]).toContain("height:500px");
      expect(bundle["text/plain"]).toContain(b.url);
      expect((await fetch(b.pageUrl)).status).toBe(200);
      // A second call reuses the running server.
      expect((await embed({ home })).port).toBe(b.port);
    } finally {
      await b.close();
    }
  });
});

describe.skipIf(!chromiumPath)("the board in Chromium", () => {
  const statuses = async () =>
    Object.fromEntries(
      await page.$$eval("tr[data-run-id]", (rows) =>
        rows.map((r) => [r.getAttribute("data-run-id"), r.getAttribute("data-status")]),
      ),
    ) as Record<string, string>;

  it("lists every run with its status, corrupt ones as such", async () => {
    await page.goto(board.url);
    await page.waitForSelector("tr[data-run-id]");
    await page.waitForFunction(() => document.querySelectorAll(".chart[data-traces]").length >= 4, null, {
      timeout: 30_000,
    });
    const s = await statuses();
    expect(Object.keys(s)).toHaveLength(9);
    for (let i = 0; i < 4; i++) expect(s[ids[`demo${i}`]!]).toBe("finished");
    expect(s[ids["abandoned"]!]).toBe("abandoned");
    expect(s[ids["damaged"]!]).toBe("corrupt");
    expect(s["2026-01-01T00-00-00-half-written-0000"]).toBe("corrupt");
    expect(Object.entries(s).find(([id]) => crashedDir.endsWith(id))?.[1]).toBe("crashed");
    expect(Object.entries(s).find(([id]) => live.dir.endsWith(id))?.[1]).toBe("running");
    expect(Object.keys(s)).not.toContain("linked-run");
    await page.screenshot({ path: join(artifacts, "board-runs.png"), fullPage: true });
  }, 60_000);

  it("draws traces on the charts, and seed bands on request", async () => {
    const traces = await page.$$eval(".chart[data-metric='loss'] .scatterlayer .trace", (t) => t.length);
    expect(traces).toBeGreaterThan(0);
    const data = await page.evaluate(
      () =>
        (document.querySelector(".chart[data-metric='loss']") as unknown as { data: { name: string; x: number[] }[] })
          .data,
    );
    expect(data.some((t) => t.name === "demo #0")).toBe(true);
    await page.fill("#filter", "sweep:demo");
    await page.check("#bands");
    await page.waitForFunction(
      () => {
        const d = (
          document.querySelector(".chart[data-metric='loss']") as unknown as {
            data?: { name: string; fill?: string }[];
          }
        ).data;
        return !!d && d.some((t) => t.fill === "tonexty");
      },
      null,
      { timeout: 20_000 },
    );
    const names = await page.evaluate(() =>
      (
        document.querySelector(".chart[data-metric='loss']") as unknown as {
          data: { name: string; showlegend?: boolean }[];
        }
      ).data
        .filter((t) => t.showlegend !== false)
        .map((t) => t.name),
    );
    expect(names).toEqual(["knobs.flipRate=0.01 (mean of 2)", "knobs.flipRate=0.05 (mean of 2)"]);
    await page.screenshot({ path: join(artifacts, "board-bands.png"), fullPage: true });
    await page.uncheck("#bands");
  }, 60_000);

  it("narrows the table with a filter", async () => {
    await page.fill("#filter", "tag:baseline");
    await page.waitForFunction(() => document.querySelectorAll("tr[data-run-id]").length === 4);
    await page.fill("#filter", "status:crashed");
    await page.waitForFunction(() => document.querySelectorAll("tr[data-run-id]").length === 1);
    await page.fill("#filter", "knobs.flipRate=0.05 seed=2");
    await page.waitForFunction(() => document.querySelectorAll("tr[data-run-id]").length === 1);
    await page.fill("#filter", "");
    await page.waitForFunction(() => document.querySelectorAll("tr[data-run-id]").length === 9);
  }, 60_000);

  it("a run that is training gains points without a reload", async () => {
    await page.fill("#filter", "status:running");
    const points = () =>
      page.evaluate(() => {
        const d = (document.querySelector(".chart[data-metric='loss']") as unknown as { data?: { x: number[] }[] })
          .data;
        return d && d[0] ? d[0].x.length : 0;
      });
    await page.waitForFunction(
      () => {
        const d = (document.querySelector(".chart[data-metric='loss']") as unknown as { data?: { name: string }[] })
          .data;
        return !!d && d.length === 1 && d[0]!.name === "training";
      },
      null,
      { timeout: 20_000 },
    );
    const before = await points();
    await page.waitForFunction(
      (n) => {
        const d = (document.querySelector(".chart[data-metric='loss']") as unknown as { data?: { x: number[] }[] })
          .data;
        return !!d && !!d[0] && d[0].x.length >= n + 3;
      },
      before,
      { timeout: 20_000 },
    );
    expect(await points()).toBeGreaterThanOrEqual(before + 3);
    // The training run has no evaluation yet: its valLoss chart says so instead of empty axes.
    await page.waitForSelector(".chart[data-metric='valLoss'][data-empty='true']", { timeout: 20_000 });
    expect(await page.textContent(".chart[data-metric='valLoss']")).toContain("no values yet");
    expect(await page.getAttribute(".chart[data-metric='loss']", "data-empty")).toBe("false");
    await page.fill("#filter", "");
  }, 60_000);

  it("shows a run page (config, knob changes, samples, layers) and a sweep page", async () => {
    await page.goto(`${board.url}#/run/${ids["demo1"]}`);
    await page.waitForSelector("#knob-events");
    await page.waitForSelector("table.layers");
    expect(await page.textContent("#knob-events")).toContain("flipRate");
    expect(await page.textContent("main")).toContain("bright");
    await page.waitForFunction(() => document.querySelectorAll(".chart[data-traces]").length >= 4, null, {
      timeout: 30_000,
    });
    await page.screenshot({ path: join(artifacts, "board-run.png"), fullPage: true });
    await page.goto(`${board.url}#/run/${ids["damaged"]}`);
    await page.waitForSelector("#run-error");
    expect(await page.textContent("#run-error")).toMatch(/metrics\.arrows is damaged/);
    await page.goto(`${board.url}#/sweep/demo`);
    await page.waitForSelector("tr[data-point]");
    await page.waitForFunction(() => document.querySelectorAll(".chart[data-traces]").length >= 1, null, {
      timeout: 30_000,
    });
    expect(await page.$$eval("tr[data-point]", (r) => r.length)).toBe(4);
    const fig = await page.evaluate(
      () => (document.querySelector(".chart") as unknown as { data: { x: number[] }[] }).data,
    );
    expect(fig[0]!.x).toEqual([0.01, 0.01, 0.05, 0.05]);
    await page.screenshot({ path: join(artifacts, "board-sweep.png"), fullPage: true });
  }, 60_000);
});
