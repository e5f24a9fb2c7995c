// Benchmark (not a test): time from a training step to its point on the board's live chart.
// A tiny run trains in a child process and reports when each step ended; a headless Chromium
// (Debian's, through playwright-core) shows the board and notes when each step's point appears
// on the loss chart. Both use this machine's clock. Usage:
//   node test/bench/tracking/live-latency.mjs [steps=150]   (needs npx tsc -p tsconfig.json)
/* global window, document, requestAnimationFrame */
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { chromium } from "playwright-core";

const root = join(import.meta.dirname, "..", "..", "..");
const { startBoard } = await import(join(root, "dist", "src", "board", "server.js"));
const { findChromium, CHROMIUM_ARGS } = await import(join(root, "dist", "src", "plots", "export.js"));
const steps = Number(process.argv[2] ?? 150);
const work = mkdtempSync(join(tmpdir(), "primal-bench-live-"));
const home = join(work, "runs");
const board = await startBoard({ home, port: 0 });
const ctx = await chromium.launchPersistentContext(join(work, "profile"), {
  executablePath: findChromium(),
  headless: true,
  args: [...CHROMIUM_ARGS],
});
const page = await ctx.newPage();
await page.goto(board.url);
// Note the first time each step is on the loss chart.
await page.evaluate(() => {
  window.__seen = {};
  const tick = () => {
    const gd = document.querySelector(".chart[data-metric='loss']");
    const xs = gd && gd.data && gd.data[0] ? gd.data[0].x : [];
    const now = Date.now();
    for (const x of xs) if (!(x in window.__seen)) window.__seen[x] = now;
    requestAnimationFrame(tick);
  };
  tick();
});

const script = `
  const { Trainer } = await import(${JSON.stringify(join(root, "dist", "src", "index.js"))});
  const t = await Trainer.create({ home: ${JSON.stringify(home)}, preset: "tiny", batch: 32, device: "cpu", threads: 1,
    steps: ${steps}, warmup: 2, sampleEvery: 0, checkpointEvery: 0, eval: { every: 0, maxTokens: 1000 } });
  await t.train(${steps}, { onStep: (m) => process.stdout.write(JSON.stringify({ step: m.step, t: Date.now(), ms: m.stepMs }) + "\\n") });
  t.dispose();`;
const child = spawn(process.execPath, ["--input-type=module", "-e", script], { stdio: ["ignore", "pipe", "inherit"] });
const ended = {};
let stepMs = [];
let buf = "";
child.stdout.on("data", (b) => {
  buf += b.toString();
  const lines = buf.split("\n");
  buf = lines.pop();
  for (const l of lines) {
    const j = JSON.parse(l);
    ended[j.step] = j.t;
    stepMs.push(j.ms);
  }
});
await new Promise((r) => child.on("close", r));
await page.waitForTimeout(3000);
const seen = await page.evaluate(() => window.__seen);
const lat = [];
// The first steps come before the page's first chart of the run; the last one waits for dispose().
for (let s = 10; s < steps; s++) if (seen[s] !== undefined && ended[s] !== undefined) lat.push(seen[s] - ended[s]);
lat.sort((a, b) => a - b);
const q = (p) => lat[Math.min(lat.length - 1, Math.floor(p * lat.length))];
stepMs.sort((a, b) => a - b);
console.log(
  JSON.stringify({
    steps,
    measured: lat.length,
    medianStepMs: Math.round(stepMs[stepMs.length >> 1]),
    latencyMs: { median: q(0.5), p90: q(0.9), max: lat[lat.length - 1], min: lat[0] },
  }),
);
await ctx.close();
await board.close();
rmSync(work, { recursive: true, force: true });
