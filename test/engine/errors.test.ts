// Invalid input reaching the binding raises a JavaScript exception (or a rejected promise) with
// a message that names the problem; nothing aborts the process, and the trainer stays usable.
import { afterAll, describe, expect, it } from "vitest";
import { native, type NativeTrainer, type NativeTrainerConfig } from "../../src/native.js";

const MODEL = { vocab: 256, dModel: 64, layers: 2, heads: 4, ffn: 192, seq: 32 };
const BASE: NativeTrainerConfig = {
  model: MODEL,
  quant: "poltergeist",
  actBits: 8,
  batch: 4,
  accum: 1,
  seed: 1,
  warmup: 2,
  totalSteps: 20,
  knobs: {},
  device: "cpu",
  threads: 1,
};

function create(cfg: unknown): NativeTrainer {
  const { NativeTrainer: Native } = native();
  return new Native(cfg as NativeTrainerConfig);
}

const tokens = (n: number, mod = 256) => Int32Array.from({ length: n }, (_, i) => (i * 7) % mod);

describe("bad configs throw clear errors", () => {
  const cases: [string, unknown, RegExp][] = [
    ["no config", undefined, /config object required/],
    ["model missing", { ...BASE, model: undefined }, /config\.model must be an object/],
    ["model field missing", { ...BASE, model: { ...MODEL, vocab: undefined } }, /config\.model\.vocab is required/],
    ["model field a string", { ...BASE, model: { ...MODEL, ffn: "192" } }, /config\.model\.ffn must be a number/],
    ["non-integer", { ...BASE, model: { ...MODEL, dModel: 64.5 } }, /config\.model\.dModel must be an integer/],
    ["negative", { ...BASE, model: { ...MODEL, layers: -1 } }, /model\.layers: must be an integer in \[1, /],
    ["zero", { ...BASE, model: { ...MODEL, seq: 0 } }, /model\.seq: must be an integer/],
    ["NaN", { ...BASE, model: { ...MODEL, heads: NaN } }, /config\.model\.heads must be finite/],
    [
      "heads not dividing dModel",
      { ...BASE, model: { ...MODEL, heads: 5 } },
      /model\.heads: dModel \(64\) must be divisible by heads \(5\)/,
    ],
    ["odd head dimension", { ...BASE, model: { ...MODEL, dModel: 36, heads: 4 } }, /head dimension .* must be even/],
    ["unknown quant", { ...BASE, quant: "int4" }, /unknown quantizer 'int4' \(allowed: fp, ste, poltergeist\)/],
    ["quant not a string", { ...BASE, quant: 3 }, /config\.quant must be one of/],
    ["actBits too small", { ...BASE, actBits: 1 }, /actBits: must be null \(off\) or an integer in \[2, 16\]/],
    ["actBits too large", { ...BASE, actBits: 17 }, /actBits/],
    ["actBits non-integer", { ...BASE, actBits: 4.5 }, /config\.actBits must be an integer/],
    ["batch 0", { ...BASE, batch: 0 }, /batch: must be an integer in \[1, /],
    ["accum 0", { ...BASE, accum: 0 }, /accum: must be an integer/],
    ["negative seed", { ...BASE, seed: -1 }, /config\.seed must be a non-negative integer/],
    ["fractional seed", { ...BASE, seed: 1.5 }, /config\.seed must be a non-negative integer/],
    ["negative warmup", { ...BASE, warmup: -1 }, /warmup/],
    // Knob names and types are zod's (src/knobs.ts, tested in test/engine/contracts.test.ts); the
    // core's ranges are the last line.
    ["bridge out of range", { ...BASE, knobs: { bridge: 1 } }, /bridge: must be a number in \(0, 1\) or null/],
    ["unknown device", { ...BASE, device: "tpu" }, /unknown device 'tpu'/],
    [
      "microBatch not dividing batch",
      { ...BASE, batch: 4, microBatch: 3 },
      /microBatch: must divide batch \(4\), or be 0\/auto, got 3/,
    ],
    ["microBatch above batch", { ...BASE, batch: 4, microBatch: 8 }, /microBatch: must divide batch/],
    [
      "unknown recompute",
      { ...BASE, recompute: "most" },
      /recompute: unknown mode 'most' \(allowed: none, block, auto\)/,
    ],
    ["recompute not a string", { ...BASE, recompute: 1 }, /config\.recompute must be 'none', 'block' or 'auto'/],
    [
      "negative memoryBudget",
      { ...BASE, memoryBudget: -1 },
      /config\.memoryBudget must be a whole number of bytes >= 0/,
    ],
    [
      "memoryBudget too small",
      { ...BASE, memoryBudget: 1000 },
      /memoryBudget .* is too small: the leanest plan \(microBatch 1, recompute block\) needs/,
    ],
  ];
  for (const [name, cfg, msg] of cases) {
    it(name, () => {
      expect(() => create(cfg)).toThrow(msg);
    });
  }
});

describe("bad calls on a live trainer", () => {
  const nt = create(BASE);
  afterAll(() => nt.dispose());
  const n0 = 64 * 64;

  it("training data must be an Int32Array of in-vocabulary ids, long enough", () => {
    expect(() => nt.setTrainData([1, 2, 3] as unknown as Int32Array)).toThrow(/must be an Int32Array of token ids/);
    expect(() => nt.setTrainData(new Uint32Array(100) as unknown as Int32Array)).toThrow(/Int32Array/);
    expect(() => nt.setTrainData(new Float32Array(100) as unknown as Int32Array)).toThrow(/Int32Array/);
    const bad = tokens(1000);
    bad[417] = 256;
    expect(() => nt.setTrainData(bad)).toThrow(/token id 256 at position 417 is outside the vocabulary \[0, 256\)/);
    bad[417] = -1;
    expect(() => nt.setTrainData(bad)).toThrow(/token id -1 at position 417/);
    expect(() => nt.setTrainData(tokens(10))).toThrow(/need at least seq \+ 2 = 34 tokens, got 10/);
  });

  it("steps need training data", async () => {
    expect(() => nt.accumulate()).toThrow(/no training data: call setTrainData\(\) first/);
    await expect(nt.train(1)).rejects.toThrow(/no training data/);
    expect(() => nt.applyStep()).toThrow(/no micro-batch accumulated/);
    expect(nt.info().step).toBe(0);
    nt.setTrainData(tokens(5000));
  });

  it("layers by unknown name or bad index", () => {
    expect(() => nt.codes("blocks.9.mlp.up")).toThrow(
      /unknown layer 'blocks\.9\.mlp\.up'; layers are named blocks\.<0\.\.1>/,
    );
    expect(() => nt.votes("mlp")).toThrow(/unknown layer 'mlp'/);
    expect(() => nt.codes(14)).toThrow(/layer index out of range \[0, 14\)/);
    expect(() => nt.weights(-1)).toThrow(/out of range/);
    expect(() => nt.flipProbabilities(1.5)).toThrow(/layer index must be an integer/);
    expect(() => nt.codes({} as unknown as number)).toThrow(
      /layer must be a name like 'blocks\.0\.mlp\.up' or an index/,
    );
    expect(() => (nt.codes as () => Int8Array)()).toThrow(/layer name or index required/);
    expect(nt.codes("blocks.1.mlp.down")).toHaveLength(64 * 192);
  });

  it("setCodes / setVotes / setScale validate values and lengths", () => {
    const codes = nt.codes(0);
    expect(() => nt.setCodes(0, new Int8Array(n0).fill(3))).toThrow(/setCodes: codes must be in \[-2, 2\]/);
    const one = Int8Array.from(codes);
    one[100] = -3;
    expect(() => nt.setCodes(0, one)).toThrow(/codes must be in \[-2, 2\]/);
    expect(() => nt.setCodes(0, new Int8Array(5))).toThrow(/setCodes: expected 4096 codes, got 5/);
    expect(() => nt.setCodes(0, Array.from(codes) as unknown as Int8Array)).toThrow(/codes must be an Int8Array/);
    expect(() => nt.setCodes(0, new Uint8Array(n0) as unknown as Int8Array)).toThrow(/Int8Array/);
    expect(nt.codes(0)).toEqual(codes); // a rejected write changes nothing
    const votes = nt.votes(0);
    expect(() => nt.setVotes(0, new Int8Array(n0).fill(-128))).toThrow(/setVotes: votes must be in \[-127, 127\]/);
    expect(() => nt.setVotes(0, new Int8Array(n0 + 1))).toThrow(/setVotes: expected 4096 votes, got 4097/);
    expect(nt.votes(0)).toEqual(votes);
    nt.setVotes(0, new Int8Array(n0).fill(127)); // the edges themselves are fine
    nt.setVotes(0, new Int8Array(n0).fill(-127));
    nt.setVotes(0, votes);
    const s = nt.scales()[0];
    expect(() => nt.setScale(0, 0)).toThrow(/setScale: the scale must be a positive finite number/);
    expect(() => nt.setScale(0, -1)).toThrow(/positive finite/);
    expect(() => nt.setScale(0, NaN)).toThrow(/positive finite/);
    expect(() => nt.setScale(0, Infinity)).toThrow(/positive finite/);
    expect(() => nt.setScale(0, "1" as unknown as number)).toThrow(/setScale\(layer, s\) requires a number/);
    expect(() => nt.setScale("nope", 1)).toThrow(/unknown layer 'nope'/);
    expect(nt.scales()[0]).toBe(s);
  });

  it("knobs: the core refuses out-of-range values, and a value of the wrong type is an exception", () => {
    const k = nt.getKnobs();
    expect(() => nt.setKnobs({ bridge: 1.5 })).toThrow(
      /bridge: must be a number in \(0, 1\) or null \(off\), got 1\.5/,
    );
    expect(() => nt.setKnobs({ bridge: 0 })).toThrow(/bridge/);
    expect(() => nt.setKnobs({ bridge: "2/3" as never })).toThrow(/number/);
    expect(() => nt.setKnobs({ pMax: 2 })).toThrow(/pMax: must be in \[0, 1\]/);
    expect(() => nt.setKnobs({ voteKeep: -0.1 })).toThrow(/voteKeep: must be in \[0, 1\]/);
    expect(() => nt.setKnobs({ flipRate: -1 })).toThrow(/flipRate: must be >= 0/);
    expect(() => nt.setKnobs({ lr: NaN })).toThrow(/lr: must be >= 0, got NaN/);
    expect(() => nt.setKnobs({ lr: Infinity })).toThrow(/lr: must be >= 0, got infinity/);
    expect(() => nt.setKnobs({ lr: "x" as never })).toThrow(/number/);
    // A rejected change leaves every knob as it was (validation happens before any is applied).
    expect(() => nt.setKnobs({ flipRate: 0.5, pMax: 9 })).toThrow(/pMax/);
    expect(nt.getKnobs()).toEqual(k);
  });

  it("train / evaluate / generate / batchLoss reject bad arguments", async () => {
    expect(() => nt.train(-1)).toThrow(/train: n must be a non-negative integer/);
    expect(() => nt.train(1.5)).toThrow(/non-negative integer/);
    expect(() => nt.train(NaN)).toThrow(/non-negative integer/);
    expect(() => nt.train("3" as unknown as number)).toThrow(/train\(n, onStep\?\) requires a step count/);
    expect(nt.isTraining()).toBe(false);

    expect(() => nt.evaluate([1, 2, 3] as unknown as Int32Array)).toThrow(/tokens must be an Int32Array/);
    expect(() => (nt.evaluate as () => unknown)()).toThrow(/requires tokens/);
    await expect(nt.evaluate(Int32Array.from([1, 999]))).rejects.toThrow(
      /evaluation tokens: token id 999 at position 1 is outside the vocabulary/,
    );
    await expect(nt.evaluate(tokens(100), 33)).rejects.toThrow(/evaluate: window must be <= seq \(32\)/);
    await expect(nt.evaluate(new Int32Array(0))).resolves.toEqual({ lossSum: 0, count: 0 });

    const prompt = Int32Array.from([72, 105]);
    expect(() => nt.generate([1] as unknown as Int32Array, 3)).toThrow(/prompt must be an Int32Array/);
    expect(() => (nt.generate as (p: Int32Array) => unknown)(prompt)).toThrow(/generate\(prompt: Int32Array, n/);
    expect(() => nt.generate(prompt, "3" as unknown as number)).toThrow(/generate: n must be a non-negative integer/);
    expect(() => nt.generate(prompt, 3, 1, 0, -1)).toThrow(/generate: seed must be a non-negative integer/);
    expect(() => nt.generate(prompt, 3, 1, 0, 0.5)).toThrow(/seed must be a non-negative integer/);
    // A seed that is not a number is refused, not read as seed 0.
    for (const seed of ["7", null, {}, 7n, true])
      expect(() => nt.generate(prompt, 3, 1, 0, seed as never), String(seed)).toThrow(
        /generate: seed must be a non-negative integer/,
      );
    expect(() => nt.generate(prompt, 3, 1, 0, 2 ** 53)).toThrow(/seed must be a non-negative integer/);
    await expect(nt.generate(new Int32Array(0), 3)).rejects.toThrow(/the prompt must contain at least one token/);
    expect(() => nt.generate(prompt, -1)).toThrow(/generate: n must be a non-negative integer/);
    await expect(nt.generate(Int32Array.from([300]), 2)).rejects.toThrow(
      /prompt: token id 300 at position 0 is outside the vocabulary/,
    );
    await expect(nt.generate(prompt, 0)).resolves.toHaveLength(0);

    const four = tokens(4);
    expect(() => nt.batchLoss(four, four, -2, -2)).toThrow(
      /batchLoss: B must be in \[1, 4\] \(the micro-batch\) and T in \[1, 32\]/,
    );
    expect(() => nt.batchLoss(four, four, 2, 3)).toThrow(/must both hold B\*T tokens/);
    expect(() => nt.batchLoss(tokens(5 * 32), tokens(5 * 32), 5, 32)).toThrow(
      /B must be in \[1, 4\] \(the micro-batch\)/,
    );
    expect(() => nt.batchLoss(Int32Array.from([1, 2]), Int32Array.from([1, 400]), 1, 2)).toThrow(
      /targets: token id 400/,
    );
    expect(() => nt.batchLoss(four, four as unknown as Int32Array, 1, 4)).not.toThrow();
  });

  it("the poltergeist buffers are refused for other quantizers", () => {
    const fp = create({ ...BASE, quant: "fp", actBits: null });
    try {
      expect(() => fp.codes(0)).toThrow(/codes exist only for the poltergeist quantizer \(this run uses 'fp'\)/);
      expect(() => fp.votes(0)).toThrow(/poltergeist/);
      expect(() => fp.flipProbabilities(0)).toThrow(/poltergeist/);
      expect(fp.weights(0)).toHaveLength(n0); // weights exist for every quantizer
    } finally {
      fp.dispose();
    }
  });

  it("after all that the trainer still trains", async () => {
    const s = await nt.train(2);
    expect(s).toMatchObject({ steps: 2, stopped: false });
    expect(Number.isFinite(s.lastLoss)).toBe(true);
  });
});

describe("calls after dispose", () => {
  it("throw 'the trainer has been disposed' and a second dispose is harmless", async () => {
    const nt = create(BASE);
    nt.setTrainData(tokens(1000));
    nt.dispose();
    const msg = /the trainer has been disposed/;
    expect(() => nt.info()).toThrow(msg);
    expect(() => nt.codes(0)).toThrow(msg);
    expect(() => nt.setKnobs({ lr: 1e-3 })).toThrow(msg);
    expect(() => nt.getKnobs()).toThrow(msg);
    expect(() => nt.accumulate()).toThrow(msg);
    expect(() => nt.setTrainData(tokens(1000))).toThrow(msg);
    expect(() => nt.train(1)).toThrow(msg);
    expect(() => nt.evaluate(tokens(10))).toThrow(msg);
    expect(() => nt.generate(Int32Array.from([1]), 1)).toThrow(msg);
    expect(() => nt.save("unused.safetensors")).toThrow(msg);
    expect(() => nt.load("unused.safetensors")).toThrow(msg);
    expect(() => nt.memory()).toThrow(msg);
    expect(nt.stop()).toBe(false);
    expect(nt.isTraining()).toBe(false);
    expect(() => nt.dispose()).not.toThrow();
  });
});
