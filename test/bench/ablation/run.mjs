#!/usr/bin/env node
// Ablation: does Poltergeist learn through its flips? Trains each variant for the same tokens
// from the same seeds on the embedded corpus and reports held-out loss (nats/byte) and, when
// PRIMAL_WIKITEXT_DIR is set, WikiText-2 valid bits per byte; one JSON line per run, then a
// mean ± spread table.
//   node test/bench/ablation/run.mjs [--preset small] [--steps 300] [--batch 16] [--seeds 1,2,3]
//        [--variants default,frozen,bridgeOff,ste,fp] [--threads 2] [--eval-tokens 20000]
//        [--knobs '{"flipRate":0.05}'] [--sweep flipRate=0.005,0.01,0.02] [--out results.jsonl]
// --sweep adds one Poltergeist variant per value of one knob ("flipRate=0.02", ...).
// Needs the compiled package (npm install builds dist/).
import { appendFileSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const root = join(import.meta.dirname, "..", "..", "..");
const { Trainer } = await import(join(root, "dist", "src", "index.js"));

const args = Object.fromEntries(
  process.argv.slice(2).reduce((acc, a, i, all) => (a.startsWith("--") ? [...acc, [a.slice(2), all[i + 1]]] : acc), []),
);
const preset = args.preset ?? "small";
const steps = Number(args.steps ?? 300);
const batch = Number(args.batch ?? 16);
const threads = Number(args.threads ?? 2);
const evalTokens = Number(args["eval-tokens"] ?? 20000);
const seeds = (args.seeds ?? "1,2,3").split(",").map(Number);
const extraKnobs = args.knobs ? JSON.parse(args.knobs) : {};

/** The variants: what each changes from default Poltergeist. */
export const VARIANTS = {
  default: { quant: "poltergeist", knobs: {} },
  frozen: { quant: "poltergeist", knobs: { flipRate: 0 } }, // codes stay at their initial values
  bridgeOff: { quant: "poltergeist", knobs: { bridge: null } },
  ste: { quant: "ste", knobs: {} },
  fp: { quant: "fp", knobs: {} },
};
if (args.sweep) {
  const [knob, values] = args.sweep.split("=");
  for (const value of values.split(","))
    VARIANTS[`${knob}=${value}`] = { quant: "poltergeist", knobs: { [knob]: Number(value) } };
}
const variants = (
  args.variants ??
  Object.keys(VARIANTS)
    .filter((k) => !args.sweep || k.includes("="))
    .join(",")
).split(",");

const home = mkdtempSync(join(tmpdir(), "primal-ablation-"));
const rows = [];
try {
  for (const name of variants) {
    const v = VARIANTS[name];
    if (!v) throw new Error(`unknown variant ${name}; one of ${Object.keys(VARIANTS).join(", ")}`);
    for (const seed of seeds) {
      const t0 = performance.now();
      const t = await Trainer.create({
        preset,
        quant: v.quant,
        device: "cpu",
        threads,
        batch,
        steps,
        seed,
        home,
        knobs: { ...(v.quant === "poltergeist" ? extraKnobs : {}), ...v.knobs },
        sampleEvery: 0,
        checkpointEvery: 0,
        eval: { every: 0, maxTokens: evalTokens },
        data: { corpus: "sotu" },
      });
      try {
        const s = await t.train(steps);
        const ev = await t.evaluate();
        const row = {
          variant: name,
          preset,
          quant: v.quant,
          knobs: t.config.knobs,
          seed,
          steps,
          batch,
          tokens: steps * batch * t.config.model.seq,
          trainLoss: s.loss,
          heldOutLoss: ev.validation?.loss ?? null,
          wikitextBpb: ev.wikitext?.bpb ?? null,
          seconds: (performance.now() - t0) / 1000,
        };
        rows.push(row);
        console.log(JSON.stringify(row));
        if (args.out) appendFileSync(args.out, JSON.stringify(row) + "\n");
      } finally {
        t.dispose();
      }
    }
  }
} finally {
  rmSync(home, { recursive: true, force: true });
}

const stats = (xs) => {
  const m = xs.reduce((a, b) => a + b, 0) / xs.length;
  return { mean: m, spread: Math.max(...xs) - Math.min(...xs) };
};
console.log("\n| variant | held-out loss (nats/byte) mean | spread | WikiText-2 valid bpb mean | spread |");
console.log("| --- | --- | --- | --- | --- |");
for (const name of variants) {
  const r = rows.filter((x) => x.variant === name);
  const h = stats(r.map((x) => x.heldOutLoss));
  const w = r.every((x) => x.wikitextBpb !== null) ? stats(r.map((x) => x.wikitextBpb)) : null;
  console.log(
    `| ${name} | ${h.mean.toFixed(4)} | ${h.spread.toFixed(4)} | ${w ? w.mean.toFixed(4) : "n/a"} | ${w ? w.spread.toFixed(4) : "n/a"} |`,
  );
}
