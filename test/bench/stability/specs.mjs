#!/usr/bin/env node
// Writes the sweep specs of the stability study (docs/results.md, "Does STE diverge at small
// batches while Poltergeist holds?"): quantizer × batch × step-size multiplier m × seed, one
// explicit point each, seed outermost so that a sweep cut short still covers the whole map once.
//   node test/bench/stability/specs.mjs [--out results/stability]
// The variants and what m scales in each: variants.mjs.
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { variantFields } from "./variants.mjs";

const args = process.argv.slice(2);
const out = args.includes("--out")
  ? args[args.indexOf("--out") + 1]
  : join(import.meta.dirname, "..", "..", "..", "results", "stability");

function spec({ name, base, seeds, cells }) {
  const points = [];
  for (const seed of seeds)
    for (const { batches, variants, ms } of cells)
      for (const batch of batches)
        for (const variant of variants)
          for (const m of ms) {
            const f = variantFields(variant, m);
            if (f) points.push({ batch, ...f, seed });
          }
  return { name, base, points, metric: "valLoss", goal: "min", tags: ["stability"] };
}

const ALL = [0.5, 1, 3, 10, 30];
const ENDS = [1, 10, 30]; // batch 16, and the reference variants: the default and the two largest steps
const tiny = spec({
  name: "stability-tiny",
  base: {
    preset: "tiny",
    device: "cpu",
    steps: 500,
    warmup: 30,
    sampleEvery: 0,
    checkpointEvery: 250,
    keepCheckpoints: 1,
    eval: { every: 0, maxTokens: 16384 },
    data: { corpus: "sotu" },
  },
  seeds: [1, 2, 3],
  cells: [
    { batches: [1, 2, 4], variants: ["ste", "poltergeist"], ms: ALL },
    { batches: [16], variants: ["ste", "poltergeist"], ms: ENDS },
    { batches: [1], variants: ["bridgeOff", "fp", "lrOnly"], ms: ALL },
    { batches: [16], variants: ["bridgeOff", "fp", "lrOnly"], ms: ENDS },
  ],
});
writeFileSync(join(out, "tiny.json"), JSON.stringify(tiny, null, 2) + "\n");
console.log(`${join(out, "tiny.json")}: ${tiny.points.length} points`);

// `small` over the part of the tiny map where the quantizers differ: batch 1 at the default step
// and the two largest, with fp at the largest as the reference (a small step at batch 1 costs
// about a second on the shared 2-core machine, so batch 4 and the other steps are left out).
const small = spec({
  name: "stability-small",
  base: { ...tiny.base, preset: "small", checkpointEvery: 100 },
  seeds: [1, 2, 3],
  cells: [
    { batches: [1], variants: ["ste", "poltergeist"], ms: ENDS },
    { batches: [1], variants: ["fp"], ms: [30] },
  ],
});
writeFileSync(join(out, "small.json"), JSON.stringify(small, null, 2) + "\n");
console.log(`${join(out, "small.json")}: ${small.points.length} points`);

// The seed report does not say it clipped gradients; the trainer clips their norm at 1 by default.
// The most telling tiny cells again with clipping off.
const noclip = spec({
  name: "stability-tiny-noclip",
  base: { ...tiny.base, gradClip: 0 },
  seeds: [1, 2, 3],
  cells: [{ batches: [1], variants: ["ste", "poltergeist", "fp"], ms: [1, 30] }],
});
writeFileSync(join(out, "tiny-noclip.json"), JSON.stringify(noclip, null, 2) + "\n");
console.log(`${join(out, "tiny-noclip.json")}: ${noclip.points.length} points`);
