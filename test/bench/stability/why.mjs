#!/usr/bin/env node
// Why do the quantizers differ in stability (docs/results.md)? Measures on a few runs what the
// seed report blamed for STE's divergence:
// (a) how many ternary weights change level per step. STE: the level rint(clamp(W/γ, -1, 1)) of
//     every latent weight, read before and after each step (the trainer's weights() are γ times
//     it); Poltergeist: its codes before and after each step (the flips), checked against the
//     flip counts of the step's layer statistics. Also the churn of the second half of the run:
//     level changes summed over its steps (gross) against the weights whose level differs
//     between its first and last step (net);
// (b) gradient noise at batch 1 against 16, at a fixed checkpoint (step --noise-step of the cell's
//     batch-16 run): the gradient norm of --noise-samples independent single windows and of as
//     many independent batches of 16 windows, each from the same state, and from them the
//     gradient noise scale B = tr(Σ)/|G|² (E|g_b|² = |G|² + tr(Σ)/b). For Poltergeist the
//     gradient norm covers its fp parameters only (embedding, norms); the sign noise its ternary
//     weights see is measured by their votes instead: the correlation between the vote signs
//     two independent batches cast (1: always agree, 0: independent).
// The runs repeat the sweep's points exactly (same config, seed and thread count; --compare-home
// checks the per-step loss against the sweep's run of the same point).
//   node test/bench/stability/why.mjs --preset tiny --steps 500 --seed 1 --noise-step 250
//        --cells ste:1:1,ste:16:1,poltergeist:1:1,poltergeist:16:1,fp:16:1 [--noise-samples 48]
//        [--eval-tokens 16384] [--compare-home DIR] [--merge EARLIER.json] --commit SHA
//        --out results/stability/tiny-why.json
// Needs the compiled package (dist/).
import { copyFileSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync, existsSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { commandLine, flags, ROOT } from "./cli.mjs";
import { variantConfig } from "./variants.mjs";

const { Trainer, native, readRun, resolveConfig } = await import(join(ROOT, "dist", "src", "index.js"));
const { nativeConfig } = await import(join(ROOT, "dist", "src", "config.js"));
const { loadTrainingData } = await import(join(ROOT, "dist", "src", "trainingData.js"));

const argv = process.argv.slice(2);
const arg = flags(argv);
const preset = arg("preset", "tiny");
const steps = Number(arg("steps", "500"));
const seed = Number(arg("seed", "1"));
const noiseStep = Number(arg("noise-step", String(steps / 2)));
const samples = Number(arg("noise-samples", "48"));
const evalTokens = Number(arg("eval-tokens", "16384"));
const compareHome = arg("compare-home", "");
const out = arg("out");
const commit = arg("commit");
const cells = arg("cells")
  .split(",")
  .map((c) => {
    const [variant, batch, m] = c.split(":");
    return { variant, batch: Number(batch), m: Number(m) };
  });

const home = mkdtempSync(join(tmpdir(), "primal-why-"));
const mean = (xs) => xs.reduce((a, b) => a + b, 0) / xs.length;
const cv = (xs) => {
  const mu = mean(xs);
  return Math.sqrt(mean(xs.map((x) => (x - mu) ** 2))) / mu;
};
const sig = (x, d = 4) => (x === null || !Number.isFinite(x) ? x : Number(x.toPrecision(d)));

/** The trainer config of a cell: the sweep's base (test/bench/stability/specs.mjs) plus the variant. */
function cellConfig(cell) {
  const v = variantConfig(cell.variant, cell.m);
  return {
    preset,
    device: "cpu",
    threads: 1,
    steps,
    warmup: 30,
    seed,
    batch: cell.batch,
    quant: v.quant,
    knobs: v.knobs,
    sampleEvery: 0,
    checkpointEvery: 0,
    eval: { every: 0, maxTokens: evalTokens },
    data: { corpus: "sotu" },
    home,
  };
}

/** Every layer's ternary level: STE's sign(γ·q) = q, Poltergeist's code (−2..2, ±1 the bridge). */
function levels(t) {
  const nt = t.native;
  const n = nt.info().layers.length;
  const out = [];
  for (let l = 0; l < n; l++) {
    if (t.config.quant === "poltergeist") out.push(nt.codes(l));
    else out.push(Int8Array.from(nt.weights(l), (w) => Math.sign(w)));
  }
  return out;
}

function compareLevels(a, b) {
  let changed = 0;
  let reversed = 0;
  let total = 0;
  for (let l = 0; l < a.length; l++) {
    const x = a[l];
    const y = b[l];
    total += x.length;
    for (let i = 0; i < x.length; i++) {
      if (x[i] !== y[i]) {
        changed++;
        if (x[i] * y[i] < 0) reversed++;
      }
    }
  }
  return { changed, reversed, total };
}

/** The per-step loss of the sweep's run of the same point, if the sweep's home has it. */
function sweepLosses(cfg) {
  if (!compareHome) return null;
  for (const id of readdirSync(compareHome)) {
    const metaPath = join(compareHome, id, "run.json");
    if (!existsSync(metaPath)) continue;
    const c = JSON.parse(readFileSync(metaPath, "utf8")).config;
    if (c.preset !== cfg.preset || c.quant !== cfg.quant || c.batch !== cfg.batch || c.seed !== cfg.seed) continue;
    if (c.steps !== cfg.steps || JSON.stringify(c.knobs) !== JSON.stringify({ ...c.knobs, ...cfg.knobs })) continue;
    const run = readRun(join(compareHome, id));
    if (run.meta.status !== "finished") continue;
    return Array.from(run.metrics.getChild("loss"));
  }
  return null;
}

const runs = [];
const checkpoints = new Map();
for (const cell of cells) {
  const cfg = cellConfig(cell);
  const t = await Trainer.create(cfg);
  const measureLevels = cfg.quant !== "fp";
  const perStep = [];
  const losses = [];
  let before = measureLevels ? levels(t) : null;
  let mid = null;
  let grossSecondHalf = 0;
  let statsFlipsMismatch = 0;
  const t0 = performance.now();
  try {
    for (let s = 1; s <= steps; s++) {
      let stepFlips = 0;
      await t.train(1, {
        onStep: (m) => {
          losses.push(m.loss);
          if (cfg.quant === "poltergeist") stepFlips = Array.from(m.layers.flips).reduce((a, b) => a + b, 0);
        },
      });
      if (measureLevels) {
        const after = levels(t);
        const c = compareLevels(before, after);
        if (cfg.quant === "poltergeist" && c.changed !== stepFlips) statsFlipsMismatch++;
        perStep.push({ step: s, changed: c.changed, reversed: c.reversed, total: c.total });
        if (s > noiseStep) grossSecondHalf += c.changed;
        before = after;
      }
      if (s === noiseStep) {
        if (measureLevels) mid = before;
        if (cell.batch === 16) {
          // A copy: the run manages (and may prune) its own checkpoints.
          const path = join(home, `${cell.variant}-${cell.m}-step${s}.safetensors`);
          copyFileSync(await t.save(), path);
          checkpoints.set(`${cell.variant}:${cell.m}`, { path, cfg });
        }
      }
    }
    const ev = await t.evaluate();
    const reference = sweepLosses(cfg);
    const afterWarmup = perStep.filter((p) => p.step > cfg.warmup);
    const frac = (sel, key = "changed") => (sel.length ? mean(sel.map((p) => p[key] / p.total)) : null);
    const phase = (a, b) => frac(afterWarmup.filter((p) => p.step > a && p.step <= b));
    const per = Math.max(1, Math.ceil(perStep.length / 100));
    const curve = { step: [], changeFrac: [] };
    for (let i = 0; i < perStep.length; i += per) {
      const chunk = perStep.slice(i, i + per);
      curve.step.push(chunk[chunk.length - 1].step);
      curve.changeFrac.push(sig(mean(chunk.map((p) => p.changed / p.total))));
    }
    const net = mid ? compareLevels(mid, before).changed : null;
    runs.push({
      ...cell,
      quant: cfg.quant,
      knobs: t.config.knobs,
      weights: perStep[0]?.total ?? null,
      finalValLoss: sig(ev.validation.loss),
      ...(measureLevels
        ? {
            levelChangeFracPerStep: sig(frac(afterWarmup)),
            levelChangeFracByPhase: {
              [`${cfg.warmup + 1}-100`]: sig(phase(cfg.warmup, 100)),
              [`101-${noiseStep}`]: sig(phase(100, noiseStep)),
              [`${noiseStep + 1}-${steps}`]: sig(phase(noiseStep, steps)),
            },
            signReversalFracPerStep: sig(frac(afterWarmup, "reversed")),
            secondHalf: { gross: grossSecondHalf, net, grossOverNet: net ? sig(grossSecondHalf / net) : null },
            ...(cfg.quant === "poltergeist" ? { stepsWhereCodeChangesDifferFromFlipStats: statsFlipsMismatch } : {}),
            curve,
          }
        : {}),
      ...(reference
        ? { sweepRunMaxAbsLossDiff: sig(Math.max(...reference.map((l, i) => Math.abs(l - losses[i]))), 3) }
        : {}),
      seconds: Math.round((performance.now() - t0) / 1000),
    });
    console.log(JSON.stringify({ ...runs[runs.length - 1], curve: undefined }));
  } finally {
    t.dispose();
  }
}

/** mulberry32: a seeded generator for the sample positions. */
function rng(s) {
  let a = s >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let x = Math.imul(a ^ (a >>> 15), 1 | a);
    x = (x + Math.imul(x ^ (x >>> 7), 61 | x)) ^ x;
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296;
  };
}

const noise = [];
for (const [key, { path, cfg }] of checkpoints) {
  const [variant, m] = key.split(":");
  const resolved = resolveConfig({ ...cfg, home: undefined });
  const nt = new (native().NativeTrainer)(nativeConfig(resolved, "cpu"));
  const data = await loadTrainingData(resolved);
  const T = resolved.model.seq;
  const next = rng(1234);
  const polt = resolved.quant === "poltergeist";
  const nLayers = nt.info().layers.length;
  const measure = async (single) => {
    const norms = [];
    const voteSums = polt
      ? Array.from({ length: nLayers }, (_, l) => new Int32Array(nt.info().layers[l].rows * nt.info().layers[l].cols))
      : null;
    for (let i = 0; i < samples; i++) {
      await nt.load(path);
      // A single window: training data of T + 2 tokens (the least the trainer takes), so every
      // window of the batch starts at 0 or 1 of it: one text, its targets shared but for one,
      // and the batch gradient is (up to that shift) the window's gradient. A batch: the
      // training split from a random offset, which moves every window the step's data picks.
      const start = Math.floor(next() * (data.train.length - 2 * T - 2));
      nt.setTrainData(single ? data.train.slice(start, start + T + 2) : data.train.slice(start));
      const kept = polt ? Array.from({ length: nLayers }, (_, l) => nt.votes(l)) : null;
      for (let k = nt.info().chunksPerStep; k > 0; k--) nt.accumulate();
      if (polt)
        for (let l = 0; l < nLayers; l++) {
          const v = nt.votes(l);
          const sum = voteSums[l];
          for (let j = 0; j < v.length; j++) sum[j] += Math.sign(v[j] - kept[l][j]);
        }
      norms.push(nt.applyStep().gradNorm);
    }
    const meanSq = mean(norms.map((g) => g * g));
    let corr = null;
    if (polt) {
      // Mean over weights of the correlation of two samples' vote signs: (S² − Σd²) / (N(N−1)),
      // with S the sum of a weight's N vote signs (Σd² = N where every sample voted).
      let acc = 0;
      let n = 0;
      for (const sum of voteSums)
        for (const s of sum) {
          acc += (s * s - samples) / (samples * (samples - 1));
          n++;
        }
      corr = acc / n;
    }
    return {
      samples,
      gradNormMean: sig(mean(norms)),
      gradNormCV: sig(cv(norms)),
      gradNormMeanSq: sig(meanSq),
      voteSignCorrelation: sig(corr, 3),
    };
  };
  const b1 = await measure(true);
  const b16 = await measure(false);
  // E|g_b|² = |G|² + tr(Σ)/b for b = 1 and 16.
  const G2 = (16 * b16.gradNormMeanSq - b1.gradNormMeanSq) / 15;
  const trSigma = ((b1.gradNormMeanSq - b16.gradNormMeanSq) * 16) / 15;
  noise.push({
    variant,
    m: Number(m),
    quant: resolved.quant,
    checkpointStep: noiseStep,
    gradientCovers:
      resolved.quant === "poltergeist"
        ? "embedding and norms"
        : resolved.quant === "ste"
          ? "every parameter (latent ternary weights included)"
          : "every parameter",
    batch1: b1,
    batch16: b16,
    meanSqRatio1over16: sig(b1.gradNormMeanSq / b16.gradNormMeanSq),
    G2: sig(G2),
    trSigma: sig(trSigma),
    noiseScale: sig(trSigma / G2),
  });
  console.log(JSON.stringify(noise[noise.length - 1]));
  nt.dispose();
}

// --merge: add these cells to an earlier result file (same preset, steps, seed and commit).
const merged = arg("merge", "") ? JSON.parse(readFileSync(arg("merge"), "utf8")) : null;
if (merged && (merged.preset !== preset || merged.steps !== steps || merged.seed !== seed || merged.commit !== commit))
  throw new Error(`--merge: ${arg("merge")} is for another preset, steps, seed or commit`);
const result = {
  preset,
  steps,
  seed,
  commit,
  commands: [...(merged?.commands ?? []), commandLine("test/bench/stability/why.mjs", argv)],
  runs: [...(merged?.runs ?? []), ...runs],
  noise: [...(merged?.noise ?? []), ...noise],
};
writeFileSync(out, JSON.stringify(result, null, 1) + "\n");
rmSync(home, { recursive: true, force: true });
console.log(`wrote ${out}`);
