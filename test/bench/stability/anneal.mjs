#!/usr/bin/env node
// The long Poltergeist run of docs/results.md ("the longer horizon") with the flip rate on the
// learning-rate schedule: before every chunk of steps, flipRate = base × lr / peak lr, from the lr
// of the chunk's last step (so it warms up and anneals with the learning rate, a chunk late).
// Everything else is the config of an existing run (its run.json), so the two compare directly.
//   node test/bench/stability/anneal.mjs --like RUN_DIR --home DIR --name NAME [--chunk 5] [--threads 2]
// Needs the compiled package (dist/). Prints one JSON line per evaluation and a final summary.
import { join } from "node:path";
import { flags, ROOT } from "./cli.mjs";

const { Trainer, readRun } = await import(join(ROOT, "dist", "src", "index.js"));

const arg = flags(process.argv.slice(2));
const like = readRun(arg("like")).meta.config;
const chunk = Number(arg("chunk", "5"));
const base = like.knobs.flipRate;
const peak = like.knobs.lr;

const { model: _model, plan: _plan, backend: _backend, worldSize: _worldSize, ...config } = like;
const t = await Trainer.create({
  ...config,
  name: arg("name"),
  home: arg("home"),
  threads: Number(arg("threads", "2")),
  device: "cpu",
  // The first chunk starts at the first warmup step's share of the peak.
  knobs: { ...like.knobs, flipRate: base / like.warmup },
});
try {
  t.note(`flipRate follows the learning-rate schedule: ${base} x lr / ${peak}, set every ${chunk} steps`);
  let lastLr = peak / like.warmup;
  while (t.step < like.steps) {
    t.set({ flipRate: (base * lastLr) / peak });
    const s = await t.train(Math.min(chunk, like.steps - t.step), {
      onStep: (m) => (lastLr = m.lr),
    });
    if (s.eval) console.log(JSON.stringify({ step: s.step, eval: s.eval }));
  }
  console.log(JSON.stringify({ runDir: t.runDir, step: t.step }));
} finally {
  t.dispose();
}
