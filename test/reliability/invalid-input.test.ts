// Invalid configs and calls fail with errors that say what to fix, without crashing the process or
// breaking a trainer that is in use.
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Trainer } from "../../src/trainer.js";
import { ConfigError } from "../../src/config.js";
import { native } from "../../src/native.js";
import { tinyConfig } from "./fixtures/common.js";

const home = mkdtempSync(join(tmpdir(), "primal-invalid-"));
const create = (extra: Record<string, unknown>) => Trainer.create(tinyConfig(home, extra) as never);
let t: Trainer;

beforeAll(async () => {
  t = await create({ name: "valid" });
  await t.train(2);
});
afterAll(() => {
  t?.dispose();
  rmSync(home, { recursive: true, force: true });
});

describe("Trainer.create with a bad config", () => {
  it("names the field and the allowed values", async () => {
    await expect(create({ preset: "huge" })).rejects.toThrow(
      /config\.preset: must be one of "tiny", "small", "ghost-0\.1b"/,
    );
    await expect(create({ preset: "huge" })).rejects.toBeInstanceOf(ConfigError);
    await expect(create({ quant: "int4" })).rejects.toThrow(/config\.quant: must be one of "fp", "ste", "poltergeist"/);
    await expect(create({ knobs: { bridge: 2 } })).rejects.toThrow(/config\.knobs\.bridge/);
    await expect(create({ knobs: { flipRate: -1, nope: 3 } })).rejects.toThrow(
      /config\.knobs\.flipRate[\s\S]*unknown field\(s\) nope/,
    );
    await expect(create({ knobs: { lr: Number.NaN } })).rejects.toThrow(/config\.knobs\.lr/);
    await expect(create({ steps: 0 })).rejects.toThrow(/config\.steps/);
    await expect(create({ device: "tpu" })).rejects.toThrow(/config\.device: must be one of "cpu", "cuda", "auto"/);
    await expect(create({ model: { heads: 3 } })).rejects.toThrow(/config\.model\.heads/);
    await expect(create({ data: { tokenizer: "gpt2" } })).rejects.toThrow(/gpt2 needs model\.vocab >= 50257/);
  });

  it("device cuda without a usable CUDA backend says so", async () => {
    const cuda = native().cudaInfo();
    if (cuda.built && cuda.devices > 0) return; // a GPU machine: nothing to refuse
    await expect(create({ device: "cuda" })).rejects.toThrow(/cuda/i);
    await expect(create({ device: "cuda" })).rejects.toThrow(
      cuda.built ? /no CUDA GPU is visible/ : /no CUDA backend.*use device 'cpu'/,
    );
  });

  it("missing, empty and too small corpora are named", async () => {
    const missing = join(home, "no-such-corpus.txt");
    await expect(create({ data: { corpus: missing } })).rejects.toThrow(
      new RegExp(`corpus path not found: .*no-such-corpus\\.txt`),
    );
    const empty = join(home, "empty.txt");
    writeFileSync(empty, "");
    await expect(create({ data: { corpus: empty } })).rejects.toThrow(/corpus file is empty/);
    const oneLine = join(home, "one-line.txt");
    writeFileSync(oneLine, "hello world\n");
    await expect(create({ data: { corpus: oneLine } })).rejects.toThrow(/at least 2 non-blank lines/);
    // Two short lines split fine but leave fewer training tokens than one window of seq 64.
    const short = join(home, "short.txt");
    writeFileSync(short, "a tiny corpus\nwith two lines\nand a third\n");
    await expect(create({ data: { corpus: short } })).rejects.toThrow(/has \d+ tokens; seq 64 needs at least 66/);
    await expect(create({ data: { wikitextDir: join(home, "no-wikitext") } })).rejects.toThrow(
      /WikiText-2 directory not found/,
    );
  });
});

describe("bad calls on a live trainer", () => {
  it("unknown layers, bad knobs and bad data are refused", async () => {
    expect(() => t.votes("no.such.layer")).toThrow(/unknown layer 'no\.such\.layer'.*blocks\.0\.attn\.q/);
    expect(() => t.codes(99)).toThrow(/layer index out of range \[0, 14\)/);
    expect(() => t.set({ bridge: 2 })).toThrow(/set: bridge: .*<1/);
    expect(() => t.set({ nope: 1 } as never)).toThrow(/set: .*"nope"/);
    expect(() => t.set({ lr: Number.NaN })).toThrow(/set: lr/);
    expect(() => t.set(null as never)).toThrow(/set: expected an object/);
    expect(() => t.native.setKnobs({ pMax: 2 })).toThrow(/pMax/);
    expect(() => t.native.setTrainData(new Int32Array([999999]))).toThrow(/need at least seq \+ 2 = 66 tokens, got 1/);
    const data = new Int32Array(200).fill(65);
    data[100] = 999999;
    expect(() => t.native.setTrainData(data)).toThrow(
      /token id 999999 at position 100 is outside the vocabulary \[0, 256\)/,
    );
    data[100] = -1;
    expect(() => t.native.setTrainData(data)).toThrow(/token id -1 .* outside the vocabulary/);
    expect(() => t.native.setTrainData([1, 2, 3] as never)).toThrow(/Int32Array/);
    await expect(t.train(-1)).rejects.toThrow(/non-negative integer/);
    await expect(t.train(1.5)).rejects.toThrow(/non-negative integer/);
    // None of that changed the trainer.
    expect(t.knobs().bridge).toBeCloseTo(2 / 3, 6); // the core's fp32 value
    expect(t.step).toBe(2);
    await t.train(1);
    expect(t.step).toBe(3);
  });

  it("one training call at a time", async () => {
    const first = t.train(4);
    await expect(t.train(1)).rejects.toThrow(/already training/);
    await expect(t.save()).rejects.toThrow(/the trainer is training/);
    // The native promise methods refuse synchronously here (a throw, not a rejection).
    expect(() => t.native.load(join(home, "x.safetensors"))).toThrow(/load: the trainer is training/);
    expect(() => t.native.setTrainData(new Int32Array(100))).toThrow(/training/);
    expect(() => t.dispose()).toThrow(/stop\(\) and await train\(\) first/);
    const s = await first;
    expect(s.steps).toBe(4);
    expect(t.step).toBe(7);
  });

  it("a disposed trainer says so", async () => {
    const d = await create({ name: "disposed" });
    d.dispose();
    await expect(d.train(1)).rejects.toThrow(/disposed/);
    expect(() => d.set({ bridge: 0.5 })).toThrow(/disposed/);
    expect(() => d.layers()).toThrow(/disposed/);
    expect(() => d.votes(0)).toThrow(/disposed/);
    expect(() => d.native).toThrow(/disposed/);
    expect(() => d.step).toThrow(/disposed/);
    await expect(d.evaluate()).rejects.toThrow(/disposed/);
    await expect(d.sample("x")).rejects.toThrow(/disposed/);
    await expect(d.save()).rejects.toThrow(/disposed/);
    expect(() => d.dispose()).not.toThrow(); // idempotent
  });
});
