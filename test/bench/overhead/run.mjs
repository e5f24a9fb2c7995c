#!/usr/bin/env node
// JS-side overhead of Trainer.train (run store recording + onStep) over the bare native
// NativeTrainer.train, on the same config and seed. Two measurements:
//   1. wall time per step, facade vs native, alternating rounds, medians;
//   2. the main-thread time spent in the facade's per-step work (record(): metrics row + layer
//      columns into the Arrow appenders, and appender flushes), timed with performance.now() —
//      a noise-free upper bound, since that work overlaps the worker's next step.
// The checkpoint Trainer.train writes at the end of every call is a deliberate durability cost,
// timed and reported on its own rather than spread over the steps.
// Usage: node test/bench/overhead/run.mjs [--preset small] [--steps 10] [--warmup 2] [--rounds 5] [--threads 2] [--device cpu]
// Needs dist/ (npm run build:ts) and the native addon.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { parseArgs } from "node:util";

const root = join(import.meta.dirname, "..", "..", "..");
const load = (p) => import(pathToFileURL(join(root, "dist", "src", p)).href);
const { Trainer } = await load("trainer.js");
const { resolveConfig, nativeConfig } = await load("config.js");
const { native } = await load("native.js");
const { loadTrainingData } = await load("trainingData.js");
const { ArrowAppender } = await load("tracking/arrowStream.js");

const { values: args } = parseArgs({
  options: {
    preset: { type: "string", default: "small" },
    steps: { type: "string", default: "10" },
    warmup: { type: "string", default: "2" },
    rounds: { type: "string", default: "5" },
    threads: { type: "string", default: "2" },
    device: { type: "string", default: "cpu" },
  },
});
const steps = Number(args.steps);
const rounds = Number(args.rounds);
const home = mkdtempSync(join(tmpdir(), "primal-overhead-"));

const input = {
  preset: args.preset,
  quant: "poltergeist",
  device: args.device,
  threads: Number(args.threads),
  seed: 1,
  steps: 10_000,
  home,
  sampleEvery: 0,
  checkpointEvery: 0,
  eval: { every: 0, maxTokens: 1 },
};

// ---- instrumentation of the facade's main-thread work (outermost region only) ----------------
const timers = { record: 0, flush: 0, checkpoint: 0, checkpoints: 0 };
let depth = 0;
function timed(proto, name, bucket) {
  const orig = proto[name];
  proto[name] = function (...a) {
    if (depth > 0) return orig.apply(this, a);
    depth++;
    const t0 = performance.now();
    try {
      return orig.apply(this, a);
    } finally {
      timers[bucket] += performance.now() - t0;
      depth--;
    }
  };
}
timed(Trainer.prototype, "record", "record"); // metrics row + appendLayers (+ any flush inside)
timed(ArrowAppender.prototype, "flush", "flush"); // flushes outside record(): 2 s timer, end of train
{
  const orig = Trainer.prototype.checkpoint;
  Trainer.prototype.checkpoint = async function (...a) {
    const t0 = performance.now();
    try {
      return await orig.apply(this, a);
    } finally {
      timers.checkpoint += performance.now() - t0;
      timers.checkpoints++;
    }
  };
}

// ---- the two trainers --------------------------------------------------------------------------
const facade = await Trainer.create(input);
const cfg = resolveConfig(input);
const data = await loadTrainingData(cfg);
const { NativeTrainer } = native();
const bare = new NativeTrainer(nativeConfig(cfg));
bare.setTrainData(data.train);

let seen = 0;
const onStep = () => {
  seen++;
};
await facade.train(Number(args.warmup), { onStep });
await bare.train(Number(args.warmup));

const median = (xs) => {
  const v = [...xs].sort((a, b) => a - b);
  const m = v.length >> 1;
  return v.length % 2 ? v[m] : (v[m - 1] + v[m]) / 2;
};

const perStep = { facade: [], native: [], facadeLoop: [] };
let jsMs = 0;
let jsSteps = 0;
for (let r = 0; r < rounds; r++) {
  const order = r % 2 === 0 ? ["facade", "native"] : ["native", "facade"];
  for (const which of order) {
    if (which === "facade") {
      const before = { ...timers };
      const t0 = performance.now();
      await facade.train(steps, { onStep });
      const wall = performance.now() - t0;
      const ckpt = timers.checkpoint - before.checkpoint;
      perStep.facade.push(wall / steps);
      perStep.facadeLoop.push((wall - ckpt) / steps);
      jsMs += timers.record - before.record + (timers.flush - before.flush);
      jsSteps += steps;
    } else {
      const t0 = performance.now();
      await bare.train(steps);
      perStep.native.push((performance.now() - t0) / steps);
    }
  }
}

// Same config, same seed, same number of steps: both must be in the same state.
const same = facade.native.info().step === bare.info().step;
const lossCheck = [];
await facade.train(1, { onStep: (m) => lossCheck.push(m.loss) });
await bare.train(1, (s) => lossCheck.push(s.loss));

const n = median(perStep.native);
const f = median(perStep.facade);
const fl = median(perStep.facadeLoop);
const js = jsMs / jsSteps;
const pct = (x) => `${x >= 0 ? "+" : ""}${x.toFixed(2)}%`;
const fmt = (x) => x.toFixed(2);
const info = facade.info();
console.log(`PRIMAL JS-side overhead: ${args.preset}/poltergeist on ${info.device}, ${steps} steps x ${rounds} rounds (after ${args.warmup} warm-up), medians`);
console.log(`  native NativeTrainer.train   ${fmt(n)} ms/step   [${perStep.native.map(fmt).join(", ")}]`);
console.log(`  Trainer.train, loop only     ${fmt(fl)} ms/step   [${perStep.facadeLoop.map(fmt).join(", ")}]   overhead ${pct(((fl - n) / n) * 100)}`);
console.log(`  Trainer.train, with the end-of-call checkpoint  ${fmt(f)} ms/step   overhead ${pct(((f - n) / n) * 100)} (checkpoint ${fmt(timers.checkpoint / timers.checkpoints)} ms per call)`);
console.log(`  main-thread JS work per step (record + flushes): ${js.toFixed(3)} ms = ${((js / n) * 100).toFixed(3)}% of a native step (upper bound; overlaps the next step)`);
console.log(`  same state after the runs: ${same && lossCheck[0] === lossCheck[1] ? "yes" : `NO (${lossCheck.join(" vs ")})`}; onStep calls ${seen}`);
console.log(
  JSON.stringify({
    preset: args.preset,
    device: info.device,
    steps,
    rounds,
    nativeMsPerStep: n,
    facadeLoopMsPerStep: fl,
    facadeMsPerStep: f,
    overheadLoopPct: ((fl - n) / n) * 100,
    overheadWithCheckpointPct: ((f - n) / n) * 100,
    checkpointMsPerCall: timers.checkpoint / timers.checkpoints,
    jsMsPerStep: js,
    jsPct: (js / n) * 100,
  }),
);
facade.dispose();
bare.dispose();
rmSync(home, { recursive: true, force: true });
