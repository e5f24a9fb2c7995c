#!/usr/bin/env node
// Compacts long training runs (docs/results.md, "the longer horizon") into one result file: each
// run's config, its per-step training loss downsampled (mean and max of each bucket of steps) and
// every evaluation it recorded (held-out split and WikiText-2: loss, bits per byte, tokens), with
// the exact commands and commit that made the runs.
//   node test/bench/stability/long.mjs --runs RUN_DIR,RUN_DIR --commit SHA --commands FILE
//        --out results/long/small-3000steps.json [--bucket 10]
// FILE holds the training command lines, one a line. Needs the compiled package (dist/).
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { commandLine, flags, ROOT } from "./cli.mjs";

const { readRun } = await import(join(ROOT, "dist", "src", "index.js"));

const argv = process.argv.slice(2);
const arg = flags(argv);
const dirs = arg("runs").split(",");
const bucket = Number(arg("bucket", "10"));
const commands = readFileSync(arg("commands"), "utf8")
  .split("\n")
  .map((l) => l.trim())
  .filter(Boolean);
const r4 = (x) => (x === null || !Number.isFinite(x) ? x : Number(x.toFixed(4)));

const runs = dirs.map((dir) => {
  const run = readRun(dir);
  const c = run.meta.config;
  const perStep = new Map();
  const steps = run.metrics.getChild("step");
  const loss = run.metrics.getChild("loss");
  for (let i = 0; i < run.metrics.numRows; i++) if (!perStep.has(steps.get(i))) perStep.set(steps.get(i), loss.get(i));
  const ordered = [...perStep.entries()].sort((a, b) => a[0] - b[0]);
  const curve = { step: [], meanLoss: [], maxLoss: [] };
  for (let i = 0; i < ordered.length; i += bucket) {
    const chunk = ordered.slice(i, i + bucket).map(([, l]) => l);
    curve.step.push(ordered[Math.min(i + bucket, ordered.length) - 1][0]);
    curve.meanLoss.push(r4(chunk.reduce((a, b) => a + b, 0) / chunk.length));
    curve.maxLoss.push(r4(Math.max(...chunk)));
  }
  const evals = run.events
    .filter((e) => e.kind === "eval")
    .map((e) => ({
      step: e.step,
      validation: e.validation
        ? { loss: r4(e.validation.loss), bpb: r4(e.validation.bpb), tokens: e.validation.tokens }
        : null,
      wikitext: e.wikitext ? { loss: r4(e.wikitext.loss), bpb: r4(e.wikitext.bpb), tokens: e.wikitext.tokens } : null,
    }));
  return {
    name: run.meta.name,
    id: run.meta.id,
    status: run.meta.status,
    stepsDone: ordered.length,
    preset: c.preset,
    quant: c.quant,
    batch: c.batch,
    steps: c.steps,
    warmup: c.warmup,
    seed: c.seed,
    threads: c.threads,
    knobs: c.knobs,
    evalMaxTokens: c.eval.maxTokens,
    stepsPerBucket: bucket,
    curve,
    evals,
  };
});

const result = {
  commit: arg("commit"),
  commands: [...commands, commandLine("test/bench/stability/long.mjs", argv)],
  runs,
};
writeFileSync(arg("out"), JSON.stringify(result) + "\n");
for (const r of runs) {
  console.log(`${r.name}: ${r.status}, ${r.stepsDone}/${r.steps} steps`);
  for (const e of r.evals)
    console.log(`  step ${e.step}: held-out ${e.validation?.loss} nats/byte, WikiText-2 ${e.wikitext?.bpb} bpb`);
}
