// The seed experiment on the GPU (issue: reproduce the seed on ghost-0.1b): ghost-0.1b, GPT-2 BPE,
// the embedded SOTU corpus, seq 1024, trained under poltergeist, then STE and fp for the same
// number of steps (equal tokens) from the same seed and data; evaluated on WikiText-2 valid and
// test (perplexity, bits per byte); the salad test every 50 steps; the Ghost Scale trajectories.
// Poltergeist runs first under a hard time budget (RUN_S); the others train as many steps as it
// reached, each still under RUN_S. Writes two compact files:
//   $RESULTS/ghost-seed.json           per quantizer: steps, tokens/s, peak memory, losses, eval,
//                                      salad samples, Ghost Scales every SCALE_EVERY steps
//   $RESULTS/ghost-seed-metrics.jsonl  one row per step (quant, step, loss, lr, gradNorm, tok/s)
// Needs dist/, the addon built with CUDA, PRIMAL_CACHE_DIR (GPT-2 token caches) and
// PRIMAL_WIKITEXT_DIR (valid and test), all carried in .gpu-pack (pack-node.sh).
//   RUN_S=120 SCHEDULE_STEPS=2000 RESULTS=out/results node test/bench/gpu/ghost-seed.mjs
import { appendFileSync, mkdirSync, mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pathToFileURL } from "node:url";

const root = join(import.meta.dirname, "..", "..", "..");
const load = (p) => import(pathToFileURL(join(root, "dist", "src", p)).href);
const { Trainer, resolveConfig, getTokenizer } = await load("index.js");
const { loadWikiText } = await load("data/wikitext.js");
const { loadOrBuildTokens } = await load("data/tokenCache.js");
const { evalMetrics } = await load("data/evalMetrics.js");

const env = (k, d) => (process.env[k] !== undefined && process.env[k] !== "" ? process.env[k] : d);
// PRESET and DEVICE exist to try the script on a CPU with a tiny model; the experiment is the default.
const PRESET = env("PRESET", "ghost-0.1b");
const DEVICE = env("DEVICE", "cuda");
const RUN_S = Number(env("RUN_S", "120"));
const SCHEDULE_STEPS = Number(env("SCHEDULE_STEPS", "2000"));
const SEED = Number(env("SEED", "1"));
const LR = env("LR", "");
const SCALE_EVERY = Number(env("SCALE_EVERY", "10"));
const QUANTS = env("QUANTS", "poltergeist,ste,fp").split(",");
const RESULTS = env("RESULTS", join(root, "gpu-results", "results"));
const WIKI = env("PRIMAL_WIKITEXT_DIR", "");
if (!WIKI) throw new Error("ghost-seed: PRIMAL_WIKITEXT_DIR must name the WikiText-2 folder (valid and test)");
mkdirSync(RESULTS, { recursive: true });
const metricsFile = join(RESULTS, "ghost-seed-metrics.jsonl");
const summaryFile = join(RESULTS, "ghost-seed.json");
writeFileSync(metricsFile, "");
const home = mkdtempSync(join(tmpdir(), "primal-ghost-seed-"));

const summary = {
  preset: PRESET,
  what: "seed experiment: poltergeist vs ste vs fp, equal steps, same seed and data",
  commit: env("PRIMAL_GIT_COMMIT", "unknown"),
  runS: RUN_S,
  scheduleSteps: SCHEDULE_STEPS,
  seed: SEED,
  command: `RUN_S=${RUN_S} SCHEDULE_STEPS=${SCHEDULE_STEPS} SEED=${SEED}${LR ? ` LR=${LR}` : ""} node test/bench/gpu/ghost-seed.mjs`,
  runs: {},
};
const save = () => writeFileSync(summaryFile, JSON.stringify(summary, null, 1) + "\n");

async function evalSplit(t, split) {
  const tokenizer = getTokenizer(resolveConfig({ preset: PRESET }).data.tokenizer);
  const tokens = loadOrBuildTokens({ text: loadWikiText(WIKI, split), tokenizer, name: `wikitext-2-${split}` });
  let bytes = 0;
  for (let i = 1; i < tokens.length; i++) bytes += tokenizer.tokenBytes(tokens[i]);
  const r = await t.native.evaluate(tokens, resolveConfig({ preset: PRESET }).model.seq);
  return { ...evalMetrics({ lossSumNats: r.lossSum, tokensScored: r.count, bytesScored: bytes }), tokens: r.count };
}

let targetSteps = SCHEDULE_STEPS;
for (const quant of QUANTS) {
  const run = { quant, status: "running", samples: [], scales: [], losses: [] };
  summary.runs[quant] = run;
  save();
  const t0 = Date.now();
  let t;
  try {
    t = await Trainer.create({
      preset: PRESET,
      quant,
      device: DEVICE,
      seed: SEED,
      steps: SCHEDULE_STEPS,
      warmup: Math.min(100, Math.floor(SCHEDULE_STEPS / 10)),
      sampleEvery: 50,
      checkpointEvery: 0,
      eval: { every: 0, maxTokens: 0 },
      data: { wikitextDir: WIKI },
      ...(LR ? { knobs: { lr: Number(LR) } } : {}),
      home,
      name: `ghost-seed-${quant}`,
    });
    run.device = t.device;
    run.plan = t.plan;
    run.params = t.info().paramCount;
    const deadline = Date.now() + RUN_S * 1000;
    let peak = 0;
    const tokPerSec = [];
    const s = await t.train(targetSteps, {
      onStep: (m) => {
        peak = Math.max(peak, m.peakMemoryBytes);
        tokPerSec.push(m.tokensPerSec);
        run.losses.push([m.step, m.loss]);
        appendFileSync(
          metricsFile,
          JSON.stringify({
            quant,
            step: m.step,
            loss: m.loss,
            lr: m.lr,
            gradNorm: m.gradNorm,
            tokensPerSec: m.tokensPerSec,
            stepMs: m.stepMs,
          }) + "\n",
        );
        if (m.step % SCALE_EVERY === 0 && m.layers?.scale)
          run.scales.push([m.step, Array.from(m.layers.scale, (x) => Number(x.toPrecision(6)))]);
        if (Date.now() >= deadline) t.stop();
      },
      onSample: (rec) => run.samples.push({ step: rec.step, text: rec.text }),
    });
    run.steps = s.step;
    run.stopped = s.stopped;
    run.trainSeconds = s.seconds;
    run.tokensPerSec = s.tokensPerSec;
    // Median of the per-step rates after the first 10 steps (start-up excluded).
    const steady = tokPerSec.slice(10).sort((a, b) => a - b);
    run.tokensPerSecMedian = steady.length ? steady[Math.floor(steady.length / 2)] : s.tokensPerSec;
    run.peakMemoryBytes = peak;
    run.finalLoss = s.loss;
    const ev = await t.evaluate();
    run.eval = { validation: ev.validation, wikitextValid: ev.wikitext, wikitextTest: await evalSplit(t, "test") };
    run.status = "ok";
    if (quant === QUANTS[0]) targetSteps = s.step; // equal tokens for the others
  } catch (e) {
    run.status = "failed";
    run.error = String(e?.stack ?? e).slice(0, 2000);
  } finally {
    t?.dispose();
    run.seconds = (Date.now() - t0) / 1000;
    save();
  }
  console.log(
    JSON.stringify({
      quant,
      status: run.status,
      steps: run.steps,
      tokensPerSec: run.tokensPerSecMedian,
      finalLoss: run.finalLoss,
      wikitextValidPpl: run.eval?.wikitextValid?.ppl,
      wikitextTestPpl: run.eval?.wikitextTest?.ppl,
      error: run.error?.slice(0, 300),
    }),
  );
}
process.exitCode = Object.values(summary.runs).every((r) => r.status === "ok") ? 0 : 1;
