#!/usr/bin/env node
// Reads the runs of a stability sweep (test/bench/stability/specs.mjs) and writes the compact
// result files of docs/results.md, "Does STE diverge at small batches while Poltergeist holds?":
//   <out>-runs.jsonl   one line per run: its cell, status, which divergence criteria it met, the
//                      step-0 and worst training loss, the final held-out loss, gradient-norm and
//                      flip statistics;
//   <out>-cells.json   per cell (variant × batch × step-size multiplier m): seeds, fraction
//                      diverged, held-out loss mean and spread over the seeds that did not
//                      diverge, worst loss after warmup; with the commit, the commands and the
//                      unigram entropy of the training split;
//   <out>-curves.json  per-step training loss, downsampled (mean and max of each bucket, so a
//                      spike stays visible), of every run of the cells named by --curves.
//   node test/bench/stability/summarize.mjs --home DIR --spec SPEC.json --out results/stability/tiny
//        --commit SHA --command "primal sweep …" [--curves ste:1:10,poltergeist:1:10] [--buckets 200]
// Needs the compiled package (dist/).
import { existsSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { commandLine, flags, ROOT } from "./cli.mjs";

const { readRun, getTokenizer } = await import(join(ROOT, "dist", "src", "index.js"));
const { loadSotuCorpus } = await import(join(ROOT, "dist", "src", "data", "corpus.js"));

const argv = process.argv.slice(2);
const arg = flags(argv);
const home = arg("home");
const specPath = arg("spec");
const out = arg("out");
const commit = arg("commit");
const command = arg("command");
const curveCells = arg("curves", "")
  .split(",")
  .filter(Boolean)
  .map((c) => {
    const [variant, batch, m] = c.split(":");
    return { variant, batch: Number(batch), m: Number(m) };
  });
const buckets = Number(arg("buckets", "200"));

const DEFAULT = { lr: 3e-3, flipRate: 0.01, scaleLr: 0.01 };

/** The unigram entropy (nats per token) of the embedded corpus's training split, exactly. */
function unigramEntropy() {
  const tokens = getTokenizer("bytes").encode(loadSotuCorpus().train);
  const counts = new Float64Array(256);
  for (const t of tokens) counts[t]++;
  let h = 0;
  for (const n of counts) if (n > 0) h -= (n / tokens.length) * Math.log(n / tokens.length);
  return { entropy: h, tokens: tokens.length };
}

/** Which variant of the map a run config is, and its step-size multiplier. */
function cellOf(config) {
  const k = config.knobs;
  const m = Number((k.lr / DEFAULT.lr).toPrecision(6));
  if (config.quant !== "poltergeist") return { variant: config.quant, m };
  const scaled = Math.abs(k.flipRate / DEFAULT.flipRate - m) < 1e-9 && Math.abs(k.scaleLr / DEFAULT.scaleLr - m) < 1e-9;
  if (k.bridge === null) return { variant: scaled ? "bridgeOff" : "bridgeOffLrOnly", m };
  return { variant: scaled ? "poltergeist" : "lrOnly", m };
}

const column = (table, name) => {
  const col = table.getChild(name);
  return col ? Array.from(col, (v) => (v === null || v === undefined ? null : Number(v))) : [];
};

const mean = (xs) => xs.reduce((a, b) => a + b, 0) / xs.length;
const cv = (xs) => {
  const mu = mean(xs);
  return Math.sqrt(mean(xs.map((x) => (x - mu) ** 2))) / mu;
};
const round = (x, d = 4) => (x === null || x === undefined || !Number.isFinite(x) ? x : Number(x.toFixed(d)));

const { entropy, tokens: trainTokens } = unigramEntropy();
const spec = JSON.parse(readFileSync(specPath, "utf8"));
const sweepId = (spec.name ?? "sweep").toLowerCase().replace(/[^a-z0-9]+/g, "-");
const pointsDir = join(home, "sweeps", sweepId, "points");

const runs = [];
const curves = [];
const missing = [];
for (const key of readdirSync(pointsDir)) {
  // A point being started has its folder (its lock) before its record.
  if (!existsSync(join(pointsDir, key, "point.json"))) continue;
  const rec = JSON.parse(readFileSync(join(pointsDir, key, "point.json"), "utf8"));
  if (!rec.runId || !existsSync(join(home, rec.runId, "run.json"))) {
    missing.push(rec.values);
    continue;
  }
  const run = readRun(join(home, rec.runId));
  const cfg = run.meta.config;
  const { variant, m } = cellOf(cfg);
  const steps = column(run.metrics, "step");
  const loss = column(run.metrics, "loss");
  const gradNorm = column(run.metrics, "gradNorm");
  const valLoss = column(run.metrics, "valLoss").filter((v) => v !== null);
  // One row per step; an evaluation after the last step may add a second row for that step.
  const perStep = new Map();
  steps.forEach((s, i) => {
    if (!perStep.has(s)) perStep.set(s, { loss: loss[i], gradNorm: gradNorm[i] });
  });
  const ordered = [...perStep.entries()].sort((a, b) => a[0] - b[0]);
  const status = run.meta.status;
  const finished = status === "finished" && run.meta.step >= cfg.steps;
  if (!finished && status !== "failed") {
    missing.push(rec.values);
    continue;
  }
  const step0 = ordered[0]?.[1].loss ?? null;
  const afterWarmup = ordered.filter(([s]) => s > cfg.warmup).map(([, r]) => r.loss);
  const worst = afterWarmup.length ? Math.max(...afterWarmup.map((x) => (Number.isFinite(x) ? x : Infinity))) : null;
  const finalVal = valLoss.length ? valLoss[valLoss.length - 1] : null;
  const reasons = [];
  if (status === "failed") reasons.push("failed");
  if (worst !== null && step0 !== null && worst > step0) reasons.push("aboveStep0");
  if (finalVal !== null && finalVal > entropy) reasons.push("aboveUnigram");
  // Gradient-norm noise: coefficient of variation of the per-step norm over the second half of
  // the run (the first half's trend would dominate it).
  const half = ordered.filter(([s]) => s > cfg.steps / 2).map(([, r]) => r.gradNorm);
  const flipFrac = [];
  if (cfg.quant === "poltergeist") {
    const lsteps = column(run.layers, "step");
    const flips = column(run.layers, "flips");
    const byStep = new Map();
    lsteps.forEach((s, i) => byStep.set(s, (byStep.get(s) ?? 0) + flips[i]));
    const total = run.layers.numRows ? weightsOf(cfg) : 1;
    for (const [s, f] of byStep) if (s > cfg.warmup) flipFrac.push(f / total);
  }
  const row = {
    variant,
    batch: cfg.batch,
    m,
    seed: cfg.seed,
    quant: cfg.quant,
    knobs: cfg.knobs,
    steps: cfg.steps,
    status,
    ...(run.meta.error ? { error: run.meta.error } : {}),
    stepsTrained: ordered.length,
    diverged: reasons.length > 0,
    reasons,
    step0Loss: round(step0),
    worstLossAfterWarmup: round(worst),
    finalTrainLoss: round(mean(ordered.slice(-50).map(([, r]) => r.loss))),
    finalValLoss: round(finalVal),
    gradNormMean2ndHalf: half.length ? round(mean(half)) : null,
    gradNormCV2ndHalf: half.length ? round(cv(half)) : null,
    ...(flipFrac.length ? { flipFracPerStep: Number(mean(flipFrac).toPrecision(4)) } : {}),
    runId: rec.runId,
  };
  runs.push(row);
  if (curveCells.some((c) => c.variant === variant && c.batch === cfg.batch && Math.abs(c.m - m) < 1e-9)) {
    const per = Math.max(1, Math.ceil(ordered.length / buckets));
    const step = [];
    const meanLoss = [];
    const maxLoss = [];
    for (let i = 0; i < ordered.length; i += per) {
      const chunk = ordered.slice(i, i + per).map(([, r]) => r.loss);
      step.push(ordered[Math.min(i + per, ordered.length) - 1][0]);
      meanLoss.push(round(mean(chunk)));
      maxLoss.push(round(Math.max(...chunk)));
    }
    curves.push({ variant, batch: cfg.batch, m, seed: cfg.seed, status, stepsPerBucket: per, step, meanLoss, maxLoss });
  }
}

/** Ternary weights of a run's model (every BitLinear layer: 4 attention and 3 MLP matrices per block). */
function weightsOf(cfg) {
  const { dModel: d, ffn, layers } = cfg.model;
  return layers * (4 * d * d + 3 * d * ffn);
}

const cellKey = (r) => `${r.variant}|${r.batch}|${r.m}`;
const groups = new Map();
for (const r of runs) {
  if (!groups.has(cellKey(r))) groups.set(cellKey(r), []);
  groups.get(cellKey(r)).push(r);
}
const cells = [...groups.values()].map((rs) => {
  const ok = rs.filter((r) => !r.diverged && r.finalValLoss !== null).map((r) => r.finalValLoss);
  const worst = rs.map((r) => r.worstLossAfterWarmup).filter((x) => x !== null);
  return {
    variant: rs[0].variant,
    batch: rs[0].batch,
    m: rs[0].m,
    lr: rs[0].knobs.lr,
    seeds: rs.map((r) => r.seed).sort((a, b) => a - b),
    diverged: rs.filter((r) => r.diverged).length,
    divergedFraction: round(rs.filter((r) => r.diverged).length / rs.length, 3),
    reasons: [...new Set(rs.flatMap((r) => r.reasons))],
    valLossMean: ok.length ? round(mean(ok)) : null,
    valLossSpread: ok.length ? round(Math.max(...ok) - Math.min(...ok)) : null,
    worstLossAfterWarmup: worst.length ? round(Math.max(...worst)) : null,
    gradNormCV2ndHalf: round(mean(rs.map((r) => r.gradNormCV2ndHalf).filter((x) => x !== null))),
    ...(rs[0].flipFracPerStep !== undefined
      ? { flipFracPerStep: Number(mean(rs.map((r) => r.flipFracPerStep)).toPrecision(4)) }
      : {}),
  };
});
const order = ["ste", "poltergeist", "bridgeOff", "lrOnly", "bridgeOffLrOnly", "fp"];
const sortRows = (a, b) => order.indexOf(a.variant) - order.indexOf(b.variant) || a.batch - b.batch || a.m - b.m;
cells.sort(sortRows);
runs.sort((a, b) => sortRows(a, b) || a.seed - b.seed);
curves.sort((a, b) => sortRows(a, b) || a.seed - b.seed);

const meta = {
  sweep: sweepId,
  preset: spec.base.preset,
  // The trainer's default clips the gradient norm at 1; 0 turns clipping off.
  gradClip: spec.base.gradClip ?? 1,
  commit,
  commands: [command, commandLine("test/bench/stability/summarize.mjs", argv)],
  unigramEntropy: round(entropy, 4),
  trainTokens,
  divergence:
    "failed (non-finite loss/gradient) | a training loss after warmup above the step-0 loss | final held-out loss above the unigram entropy of the training split",
  runs: runs.length,
  notFinished: missing,
};
writeFileSync(`${out}-runs.jsonl`, runs.map((r) => JSON.stringify(r)).join("\n") + "\n");
writeFileSync(`${out}-cells.json`, JSON.stringify({ ...meta, cells }, null, 1) + "\n");
if (curveCells.length) writeFileSync(`${out}-curves.json`, JSON.stringify({ ...meta, curves }) + "\n");
console.log(
  `${runs.length} runs (${missing.length} not finished), ${cells.length} cells; unigram entropy ${entropy.toFixed(4)} nats/byte`,
);
console.log("variant      batch  m     div  val mean  spread  worst");
for (const c of cells)
  console.log(
    `${c.variant.padEnd(12)} ${String(c.batch).padStart(5)} ${String(c.m).padStart(4)}  ${c.diverged}/${c.seeds.length}  ${String(c.valLossMean).padStart(7)}  ${String(c.valLossSpread).padStart(6)}  ${c.worstLossAfterWarmup}`,
  );

// The doc's table: one row per variant and batch, one column per step multiplier; each entry the
// held-out mean ± spread over the seeds that did not diverge, the worst training loss after
// warmup over all seeds (▲) and, where any seed diverged, how many.
if (argv.includes("--markdown")) {
  const ms = [...new Set(cells.map((c) => c.m))].sort((a, b) => a - b);
  const rows = [...new Set(cells.map((c) => `${c.variant}|${c.batch}`))];
  console.log(`\n| variant | batch | ${ms.map((m) => `${m}×`).join(" | ")} |`);
  console.log(`| --- | --- | ${ms.map(() => "---").join(" | ")} |`);
  for (const row of rows) {
    const [variant, batch] = row.split("|");
    const entries = ms.map((m) => {
      const c = cells.find((x) => x.variant === variant && String(x.batch) === batch && x.m === m);
      if (!c) return "";
      const mean = c.valLossMean === null ? "–" : `${c.valLossMean.toFixed(3)} ±${c.valLossSpread.toFixed(3)}`;
      const div = c.diverged ? ` **${c.diverged}/${c.seeds.length} div.**` : "";
      return `${mean} ▲${c.worstLossAfterWarmup.toFixed(2)}${div}`;
    });
    console.log(`| ${variant} | ${batch} | ${entries.join(" | ")} |`);
  }
}
