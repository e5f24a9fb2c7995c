// Small batches and large steps (docs/results.md, "Does STE diverge at small batches while
// Poltergeist holds?"). On the CPU at these scales STE did not diverge, but at batch 1 its final
// loss grows with the step size (as fp's does) while Poltergeist's stays flat, and the seed
// report's explanation, many weights changing level at every step, does not fit: Poltergeist
// changes far more levels per step than STE and ends lower. Both are guarded at the map's most
// telling cell, batch 1 and 30× the default step (STE: lr; Poltergeist: lr, flipRate, scaleLr),
// shortened to 150 steps. Measured there (seeds 1-5, test/bench/stability, the same protocol):
// held-out loss STE 2.848-2.983 (spread 0.135), Poltergeist 2.486-2.547 (spread 0.061), the gap
// per seed 0.32-0.46; weights changing level per step after warmup STE 0.50-0.86%, Poltergeist
// 13.3-16.3%. The margins asked here (0.2 nats/byte; 5×) exceed the seed spreads and stay well
// inside the measured gaps.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { Trainer } from "../../src/trainer.js";

const home = mkdtempSync(join(tmpdir(), "primal-stability-"));
afterAll(() => rmSync(home, { recursive: true, force: true }));

const STEPS = 150;
const WARMUP = 30;
const M = 30;

/** Held-out loss and the mean fraction of ternary weights changing level per step after warmup. */
async function run(quant: "ste" | "poltergeist"): Promise<{ heldOut: number; levelChanges: number }> {
  const knobs = quant === "ste" ? { lr: 3e-3 * M } : { lr: 3e-3 * M, flipRate: 0.01 * M, scaleLr: 0.01 * M };
  const t = await Trainer.create({
    preset: "tiny",
    quant,
    device: "cpu",
    threads: 1,
    batch: 1,
    steps: STEPS,
    warmup: WARMUP,
    seed: 1,
    home,
    knobs,
    sampleEvery: 0,
    checkpointEvery: 0,
    eval: { every: 0, maxTokens: 8192 },
    data: { corpus: "sotu" },
  });
  try {
    const layers = t.native.info().layers;
    const weights = layers.reduce((n, l) => n + l.rows * l.cols, 0);
    // STE's level of a weight is rint(clamp(W/γ, -1, 1)): the sign of the γ-scaled weight the
    // forward pass uses. Poltergeist's level changes are its flips.
    const levels = () => layers.map((_, l) => Int8Array.from(t.native.weights(l), Math.sign));
    let before = quant === "ste" ? levels() : [];
    let changed = 0;
    for (let s = 1; s <= STEPS; s++) {
      let flips = 0;
      await t.train(1, { onStep: (m) => (flips = Array.from(m.layers.flips).reduce((a, b) => a + b, 0)) });
      if (quant === "ste") {
        const after = levels();
        if (s > WARMUP) after.forEach((a, l) => a.forEach((x, i) => (changed += x !== before[l]![i] ? 1 : 0)));
        before = after;
      } else if (s > WARMUP) changed += flips;
    }
    const ev = await t.evaluate();
    return { heldOut: ev.validation!.loss, levelChanges: changed / (STEPS - WARMUP) / weights };
  } finally {
    t.dispose();
  }
}

describe("batch 1, 30× the default step (tiny, 150 steps)", () => {
  it("Poltergeist ends below STE, while changing many more weight levels per step", async () => {
    const ste = await run("ste");
    const polt = await run("poltergeist");
    console.log(
      `[stability] held-out loss: STE ${ste.heldOut.toFixed(4)}, Poltergeist ${polt.heldOut.toFixed(4)} nats/byte; ` +
        `levels changed per step: STE ${(ste.levelChanges * 100).toFixed(2)}%, Poltergeist ${(polt.levelChanges * 100).toFixed(2)}%`,
    );
    expect(Number.isFinite(ste.heldOut)).toBe(true);
    expect(ste.heldOut - polt.heldOut).toBeGreaterThan(0.2);
    expect(polt.levelChanges).toBeGreaterThan(5 * ste.levelChanges);
  }, 180_000);
});
