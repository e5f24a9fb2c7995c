// Same seed, config and data give bit-identical training for every quantizer; another seed
// gives another run.
import { describe, expect, it } from "vitest";
import { native, type NativeTrainer, type QuantName } from "../../src/native.js";

const text = Buffer.from(
  "It is a truth universally acknowledged, that a ghost in possession of a good vote must be in want of a flip. ".repeat(
    60,
  ),
  "latin1",
);
const data = Int32Array.from(text);

function make(quant: QuantName, seed: number): NativeTrainer {
  const { NativeTrainer: Native } = native();
  const nt = new Native({
    model: { vocab: 256, dModel: 64, layers: 2, heads: 4, ffn: 192, seq: 32 },
    quant,
    actBits: quant === "fp" ? null : 8,
    batch: 4,
    accum: 2,
    seed,
    warmup: 2,
    totalSteps: 20,
    knobs: { flipRate: 0.05 },
    device: "cpu",
    threads: 2,
  });
  nt.setTrainData(data);
  return nt;
}

const flipsSeen = new WeakMap<NativeTrainer, number>();

async function run(nt: NativeTrainer, steps: number): Promise<number[]> {
  const losses: number[] = [];
  await nt.train(steps, (s) => {
    losses.push(s.loss);
    flipsSeen.set(nt, (flipsSeen.get(nt) ?? 0) + s.layers.flips.reduce((x, y) => x + y, 0));
  });
  return losses;
}

function allCodes(nt: NativeTrainer): Int8Array[] {
  return nt.info().layers.map((_, l) => nt.codes(l));
}

describe("determinism", () => {
  for (const quant of ["fp", "ste", "poltergeist"] as QuantName[]) {
    it(`${quant}: same seed is bit-identical, another seed differs`, async () => {
      const a = make(quant, 11),
        b = make(quant, 11),
        c = make(quant, 12);
      try {
        const la = await run(a, 8),
          lb = await run(b, 8),
          lc = await run(c, 8);
        expect(la).toHaveLength(8);
        expect(lb).toEqual(la); // toEqual on numbers is exact (Object.is)
        expect(lc).not.toEqual(la);
        expect(lc[0]).not.toBe(la[0]);
        for (let l = 0; l < a.info().layers.length; l++) expect(b.weights(l)).toEqual(a.weights(l));
        if (quant === "poltergeist") {
          const ca = allCodes(a);
          expect(allCodes(b)).toEqual(ca);
          expect(b.info().layers.map((_, l) => b.votes(l))).toEqual(a.info().layers.map((_, l) => a.votes(l)));
          expect(Array.from(b.scales())).toEqual(Array.from(a.scales()));
          expect(allCodes(c)).not.toEqual(ca);
          // Flips actually happened, so identical codes are not trivially the init.
          expect(flipsSeen.get(a)).toBeGreaterThan(0);
          expect(flipsSeen.get(b)).toBe(flipsSeen.get(a));
        }
        // Evaluation and generation are deterministic too.
        const probe = data.subarray(0, 500);
        expect(await b.evaluate(probe, 32)).toEqual(await a.evaluate(probe, 32));
        const prompt = data.subarray(0, 5);
        expect(await b.generate(prompt, 20, 0.9, 20, 4)).toEqual(await a.generate(prompt, 20, 0.9, 20, 4));
      } finally {
        a.dispose();
        b.dispose();
        c.dispose();
      }
    });
  }

  it("splitting train() into several calls does not change the run", async () => {
    // The state after N steps depends only on (seed, config, data), not on how steps were chunked.
    const a = make("poltergeist", 21),
      b = make("poltergeist", 21);
    try {
      const la = await run(a, 6);
      const lb = [...(await run(b, 2)), ...(await run(b, 1)), ...(await run(b, 3))];
      expect(lb).toEqual(la);
      expect(allCodes(b)).toEqual(allCodes(a));
    } finally {
      a.dispose();
      b.dispose();
    }
  });
});
