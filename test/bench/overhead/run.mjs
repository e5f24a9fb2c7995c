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
//        [--cache-layer-names]   (experiment: patch in the proposed fix for the per-step info() call)
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
    "cache-layer-names": { type: "boolean", default: false },
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

// ---- instrumentation of the facade's main-thread work ------------------------------------------
// record: the per-step work (metrics row, layer columns, any flush it triggers); names: the part
// of it spent in layerNames() (a NativeTrainer.info() call that waits for the trainer lock);
// flush: appender flushes outside record() (the 2 s timer, the end of train()).
const timers = { record: 0, names: 0, flush: 0, checkpoint: 0, checkpoints: 0 };
let inRecord = false;
function timed(proto, name, bucket, when = () => true) {
  const orig = proto[name];
  proto[name] = function (...a) {
    if (!when()) return orig.apply(this, a);
    const t0 = performance.now();
    try {
      return orig.apply(this, a);
    } finally {
      timers[bucket] += performance.now() - t0;
    }
  };
}
timed(ArrowAppender.prototype, "flush", "flush", () => !inRecord);
timed(Trainer.prototype, "layerNames", "names", () => inRecord);
{
  const orig = Trainer.prototype.record;
  Trainer.prototype.record = function (...a) {
    inRecord = true;
    const t0 = performance.now();
    try {
      return orig.apply(this, a);
    } finally {
      timers.record += performance.now() - t0;
      inRecord = false;
    }
  };
}
if (args["cache-layer-names"]) {
  // Experiment: the fix proposed for the per-step info() call (layer names never change).
  const orig = Trainer.prototype.layerNames;
  Trainer.prototype.layerNames = function () {
    return (this.cachedLayerNames ??= orig.call(this));
  };
}
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
let lastRaw;
const onStep = () => {
  seen++;
};
{
  // Keep the raw native step of the last record() call for the synthetic measurement below.
  const orig = Trainer.prototype.record;
  Trainer.prototype.record = function (s, ...a) {
    lastRaw = s;
    return orig.call(this, s, ...a);
  };
}
await facade.train(Number(args.warmup), { onStep });
await bare.train(Number(args.warmup));

const median = (xs) => {
  const v = [...xs].sort((a, b) => a - b);
  const m = v.length >> 1;
  return v.length % 2 ? v[m] : (v[m - 1] + v[m]) / 2;
};

const perStep = { facade: [], native: [], facadeLoop: [] };
let jsMs = 0;
let waitMs = 0;
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
      waitMs += timers.names - before.names;
      jsMs += timers.record - before.record - (timers.names - before.names) + (timers.flush - before.flush);
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

// Noise-free bound: the same record() code path, called in a tight loop while nothing trains
// (no lock to wait for, no worker competing for the core): 200 steps, flushes included.
const tokensPerStep = cfg.batch * cfg.accum * cfg.model.seq;
const synthSteps = 200;
const base = facade.native.info().step;
const s0 = performance.now();
for (let i = 1; i <= synthSteps; i++) facade.record({ ...lastRaw, step: base + i }, tokensPerStep);
facade.flush();
const synth = (performance.now() - s0) / synthSteps;

// Rounds run back to back, so pairing them cancels slow drifts of a shared machine's load.
const paired = median(perStep.facadeLoop.map((x, i) => (x / perStep.native[i] - 1) * 100));
const n = median(perStep.native);
const f = median(perStep.facade);
const fl = median(perStep.facadeLoop);
const js = jsMs / jsSteps;
const wait = waitMs / jsSteps;
const pct = (x) => `${x >= 0 ? "+" : ""}${x.toFixed(2)}%`;
const fmt = (x) => x.toFixed(2);
const info = facade.info();
console.log(
  `PRIMAL JS-side overhead: ${args.preset}/poltergeist on ${info.device}, ${steps} steps x ${rounds} rounds (after ${args.warmup} warm-up), medians`,
);
console.log(`  native NativeTrainer.train   ${fmt(n)} ms/step   [${perStep.native.map(fmt).join(", ")}]`);
console.log(
  `  Trainer.train, loop only     ${fmt(fl)} ms/step   [${perStep.facadeLoop.map(fmt).join(", ")}]   overhead ${pct(((fl - n) / n) * 100)}`,
);
console.log(`  paired by round (median of per-round ratios), loop only: overhead ${pct(paired)}`);
console.log(
  `  Trainer.train, with the end-of-call checkpoint  ${fmt(f)} ms/step   overhead ${pct(((f - n) / n) * 100)} (checkpoint ${fmt(timers.checkpoint / timers.checkpoints)} ms per call)`,
);
console.log(
  `  main-thread JS work per step (record + flushes, without lock waits): ${js.toFixed(3)} ms = ${((js / n) * 100).toFixed(3)}% of a native step (upper bound; overlaps the next step)`,
);
console.log(
  `  main thread blocked per step in layerNames() -> info() waiting for the trainer lock: ${wait.toFixed(1)} ms = ${((wait / n) * 100).toFixed(1)}% of a step${args["cache-layer-names"] ? " (names cached: --cache-layer-names)" : ""}`,
);
console.log(
  `  record() alone, tight loop of ${synthSteps} steps incl. flushes (noise-free bound): ${synth.toFixed(3)} ms/step = ${((synth / n) * 100).toFixed(3)}% of a native step`,
);
console.log(
  `  same state after the runs: ${same && lossCheck[0] === lossCheck[1] ? "yes" : `NO (${lossCheck.join(" vs ")})`}; onStep calls ${seen}`,
);
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
    overheadPairedPct: paired,
    overheadWithCheckpointPct: ((f - n) / n) * 100,
    checkpointMsPerCall: timers.checkpoint / timers.checkpoints,
    jsMsPerStep: js,
    jsPct: (js / n) * 100,
    lockWaitMsPerStep: wait,
    recordTightLoopMsPerStep: synth,
    recordTightLoopPct: (synth / n) * 100,
    cacheLayerNames: args["cache-layer-names"],
  }),
);
facade.dispose();
bare.dispose();
rmSync(home, { recursive: true, force: true });
