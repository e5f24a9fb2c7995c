// The contracts the TypeScript side shares with the core hold: the layer statistics the addon
// reports are exactly the ones src/layerStats.ts lists (and the run store and plots use), the
// config the facade sends for an empty input carries the core's own defaults, and the knobs are
// the core's own table, from which the zod schema is built; resume rebuilds a run's config from
// what run.json saved.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { Trainer } from "../../src/trainer.js";
import { native, type NativeTrainer, type NativeTrainerConfig } from "../../src/native.js";
import { nativeConfig, resolveConfig, savedConfigInput } from "../../src/config.js";
import { defaultKnobs, knobFields, knobsSchema } from "../../src/knobs.js";
import { LAYER_STATS, STORED_LAYER_STATS } from "../../src/tracking/layerStats.js";
import { layersSchema } from "../../src/tracking/schemas.js";

const BASE: NativeTrainerConfig = {
  model: { vocab: 256, dModel: 64, layers: 2, heads: 4, ffn: 192, seq: 32 },
  quant: "poltergeist",
  actBits: 8,
  batch: 4,
  accum: 1,
  seed: 3,
  warmup: 2,
  totalSteps: 20,
  knobs: {},
  device: "cpu",
  threads: 1,
};

const arrayType = (a: unknown) => (a instanceof Float32Array ? "f32" : a instanceof Int32Array ? "i32" : String(a));

describe("layer statistics", () => {
  let nt: NativeTrainer;
  afterAll(() => nt?.dispose());

  it("the addon's list is src/layerStats.ts, in order and type", () => {
    expect(native().layerStats).toEqual(LAYER_STATS.map((s) => ({ name: s.name, type: s.type })));
  });

  it("layerStats() and a step's report return exactly those columns", () => {
    nt = new (native().NativeTrainer)(BASE);
    nt.setTrainData(Int32Array.from({ length: 4000 }, (_, i) => (i * 7 + (i >> 3)) % 256));
    const expected = LAYER_STATS.map((s) => [s.name, s.type]);
    const layers = nt.info().layers.length;
    for (const cols of [nt.layerStats(), (nt.accumulate(), nt.applyStep()).layers]) {
      expect(Object.keys(cols)).toEqual(LAYER_STATS.map((s) => s.name));
      expect(Object.entries(cols).map(([k, v]) => [k, arrayType(v)])).toEqual(expected);
      for (const v of Object.values(cols)) expect(v).toHaveLength(layers);
    }
  });

  it("the run store's layers stream holds the stored statistics with their types", () => {
    const fields = layersSchema.fields.map((f) => [f.name, String(f.type)]);
    const typeName = { f32: "Float32", i32: "Int32" } as const;
    expect(fields).toEqual([
      ["step", "Int32"],
      ["layer", "Int32"],
      ["name", "Utf8"],
      ...STORED_LAYER_STATS.map((n) => [n, typeName[LAYER_STATS.find((s) => s.name === n)!.type]]),
    ]);
  });
});

describe("config defaults and fields", () => {
  const core = native().configDefaults;
  // Fields the user config does not expose: the core's default is the only one.
  const CORE_ONLY = ["beta1", "beta2"];
  const CORE_ONLY_MODEL = ["ropeTheta", "normEps", "initStd"];
  // Set by the preset (or the machine), so there is no single default to share.
  const PER_PRESET = ["model", "batch", "device", "threads"];

  const same = (ts: unknown, c: unknown) =>
    typeof ts === "number" && typeof c === "number" ? Math.fround(ts) === c : ts === c;

  it("what the facade sends for an empty config equals the core's defaults", () => {
    const sent = nativeConfig(resolveConfig({})) as unknown as Record<string, unknown>;
    const differing = Object.entries(sent)
      .filter(([k]) => !PER_PRESET.includes(k) && k !== "knobs")
      .filter(([k, v]) => !same(v, (core as unknown as Record<string, unknown>)[k]))
      .map(
        ([k, v]) =>
          `${k}: ts ${JSON.stringify(v)}, core ${JSON.stringify((core as unknown as Record<string, unknown>)[k])}`,
      );
    expect(differing).toEqual([]);
    // Every core field is sent by the facade or is one of the core-only ones.
    const sentKeys = new Set(Object.keys(sent));
    expect(Object.keys(core).filter((k) => !sentKeys.has(k) && !CORE_ONLY.includes(k))).toEqual([]);
    const sentModel = sent.model as Record<string, unknown>;
    expect(Object.keys(core.model).filter((k) => !(k in sentModel) && !CORE_ONLY_MODEL.includes(k))).toEqual([]);
  });

  it("the knobs: zod's schema and the defaults are the core's table", () => {
    const names = native().knobFields.map((f) => f.name);
    expect(names).toEqual(["bridge", "flipRate", "pMax", "voteKeep", "deadzone", "lr", "scaleLr"]);
    expect(Object.keys(knobsSchema().shape)).toEqual(names);
    expect(defaultKnobs()).toEqual(core.knobs);
    expect(resolveConfig({}).knobs).toEqual(core.knobs);
    expect(core.knobs.bridge).toBe(0.6666667); // fp32 2/3, shown as its shortest decimal
  });

  it("zod and the core agree on every knob's range, at both ends", () => {
    const nt = new (native().NativeTrainer)(BASE);
    try {
      for (const f of knobFields()) {
        const zodOk = (v: number | null) =>
          knobsSchema()
            .partial()
            .safeParse({ [f.name]: v }).success;
        const coreOk = (v: number | null) => {
          try {
            nt.setKnobs({ [f.name]: v });
            return true;
          } catch (e) {
            expect((e as Error).message, f.name).toMatch(new RegExp(`^${f.name}: must be`));
            return false;
          }
        };
        // null: "off" for a nullable knob; for any other a type error, which zod alone refuses.
        const values: (number | null)[] = [f.min, f.min - 1e-3, f.min + 1e-3, NaN, ...(f.nullable ? [null] : [])];
        if (Number.isFinite(f.max)) values.push(f.max, f.max + 1e-3, f.max - 1e-3);
        else values.push(1e30, Infinity);
        for (const v of values) expect([f.name, v, zodOk(v)]).toEqual([f.name, v, coreOk(v)]);
        nt.setKnobs({ [f.name]: f.default });
      }
    } finally {
      nt.dispose();
    }
  });

  it("wrong types in any listed field are a JavaScript exception naming it", () => {
    const make = (cfg: unknown) => new (native().NativeTrainer)(cfg as NativeTrainerConfig);
    for (const k of Object.keys(core).filter((k) => !["model", "knobs"].includes(k)))
      expect(() => make({ ...BASE, [k]: {} }), k).toThrow(new RegExp(`config\\.${k}`));
    for (const k of Object.keys(core.model))
      expect(() => make({ ...BASE, model: { ...BASE.model, [k]: "x" } }), k).toThrow(
        new RegExp(`config\\.model\\.${k}`),
      );
    // Knobs reach the binding only through zod, which names them.
    for (const k of Object.keys(core.knobs))
      expect(() => resolveConfig({ knobs: { [k]: "x" } } as never), k).toThrow(new RegExp(`config\\.knobs\\.${k}`));
    expect(() => resolveConfig({ knobs: { ghostly: 1 } } as never)).toThrow(
      /config\.knobs: unknown field\(s\) ghostly/,
    );
  });

  it("a saved config resolves to itself (what resume rebuilds from)", () => {
    const config = resolveConfig({
      preset: "tiny",
      quant: "ste",
      steps: 7,
      knobs: { lr: 1e-3 },
      microBatch: 2,
      batch: 4,
    });
    const saved = JSON.parse(JSON.stringify({ ...config, backend: "cpu", plan: { microBatch: 2 } })) as Record<
      string,
      unknown
    >;
    expect(resolveConfig(savedConfigInput(saved))).toEqual(config);
  });

  it("resume rebuilds the run's config from run.json; only the device side can be overridden", async () => {
    const home = mkdtempSync(join(tmpdir(), "primal-contracts-"));
    try {
      const t = await Trainer.create({
        preset: "tiny",
        device: "cpu",
        threads: 1,
        home,
        quant: "ste",
        steps: 40,
        warmup: 3,
        seed: 9,
        knobs: { lr: 2e-3 },
        sampleEvery: 0,
        sampleTopK: 5,
        checkpointEvery: 0,
        eval: { every: 0, maxTokens: 500 },
      });
      await t.train(1); // leaves a checkpoint at step 1
      const { runDir, config } = t;
      t.dispose();
      const r = await Trainer.resume(runDir, { memoryBudget: "1TiB", device: undefined });
      try {
        expect(r.step).toBe(1);
        expect(r.config).toEqual({ ...config, memoryBudget: 2 ** 40 });
      } finally {
        r.dispose();
      }
    } finally {
      rmSync(home, { recursive: true, force: true });
    }
  });
});
