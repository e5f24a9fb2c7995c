// The Trainer facade end to end on the tiny preset: config errors, training with run records,
// knob events, introspection tables, evaluation, sampling, checkpoint and resume.
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { Trainer } from "../../src/trainer.js";
import { ConfigError, resolveConfig } from "../../src/config.js";
import { fixtureWikiTextDir } from "../fixtures/wikitext.js";

const home = mkdtempSync(join(tmpdir(), "primal-facade-"));
const wikitext = fixtureWikiTextDir();
afterAll(() => rmSync(home, { recursive: true, force: true }));

const base = {
  preset: "tiny" as const,
  device: "cpu" as const,
  home,
  steps: 40,
  warmup: 5,
  sampleEvery: 10,
  sampleTokens: 16,
  checkpointEvery: 20,
  eval: { every: 0, maxTokens: 4000 },
  data: { corpus: "sotu", wikitextDir: wikitext },
};

describe("config validation", () => {
  it("names the field and the allowed values", () => {
    expect(() => resolveConfig({ preset: "huge" as never })).toThrow(
      /config\.preset: must be one of "tiny", "small", "ghost-0\.1b"/,
    );
    expect(() => resolveConfig({ quant: "int4" as never })).toThrow(
      /config\.quant: must be one of "fp", "ste", "poltergeist"/,
    );
    expect(() => resolveConfig({ knobs: { bridge: 1.5 } })).toThrow(/config\.knobs\.bridge/);
    expect(() => resolveConfig({ bogus: 1 } as never)).toThrow(/unknown field\(s\) bogus/);
    expect(() => resolveConfig({ preset: "tiny", model: { heads: 3 } })).toThrow(ConfigError);
  });
  it("fills preset defaults", () => {
    const c = resolveConfig({ preset: "ghost-0.1b", quant: "fp" });
    expect(c.model.vocab).toBe(50257);
    expect(c.data.tokenizer).toBe("gpt2");
    expect(c.actBits).toBeNull();
    expect(resolveConfig({}).knobs.bridge).toBeCloseTo(2 / 3, 6);
  });
});

describe("Trainer", () => {
  it("trains, records, evaluates, samples, and resumes bit-identically", async () => {
    const t = await Trainer.create({ ...base, seed: 3 });
    const seen: number[] = [];
    const s1 = await t.train(20, { onStep: (m) => seen.push(m.loss) });
    expect(s1.steps).toBe(20);
    expect(seen).toHaveLength(20);
    expect(s1.lastSample?.text.length).toBeGreaterThan(0);
    t.set({ bridge: 0.8, flipRate: 0.02 });
    expect(t.knobs().bridge).toBe(0.8);
    const layers = t.layers();
    expect(layers.numRows).toBe(14);
    expect(layers.schema.fields.map((f) => f.name)).toEqual(
      expect.arrayContaining(["name", "scale", "flips", "pMean", "voteActive"]),
    );
    const votes = t.votes("blocks.1.mlp.up", { limit: 100 });
    expect(votes.numRows).toBe(100);
    expect(t.flipProbabilities(0).numRows).toBe(64 * 64);
    const ev = await t.evaluate();
    expect(ev.wikitext?.ppl).toBeGreaterThan(1);
    expect(ev.wikitext?.bpb).toBeGreaterThan(0);
    expect(ev.validation?.loss).toBeLessThan(Math.log(256));
    await t.train(20);
    const ref: number[] = [];
    await t.train(5, { onStep: (m) => ref.push(m.loss) });
    const runDir = t.runDir;
    const hist = t.history();
    // 45 steps, plus a second row for step 20: its row was written before the step-20 checkpoint,
    // so the evaluation after it adds a row carrying valLoss (readers keep the last per step).
    expect(hist.numRows).toBe(46);
    expect(hist.getChild("valLoss")!.get(20)).toBeCloseTo(ev.wikitext!.loss, 5);
    t.dispose();

    const events = readFileSync(join(runDir, "events.jsonl"), "utf8")
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l));
    const sets = events.filter((e) => e.kind === "set");
    expect(sets).toEqual(
      expect.arrayContaining([
        expect.objectContaining({ step: 20, knob: "bridge", new: 0.8 }),
        expect.objectContaining({ step: 20, knob: "flipRate", old: 0.01, new: 0.02 }),
      ]),
    );
    const samples = readFileSync(join(runDir, "samples.jsonl"), "utf8").trim().split("\n");
    expect(samples.length).toBeGreaterThanOrEqual(4);

    // Resume from the checkpoint at step 40 and replay the last 5 steps: step-45 exists, so this
    // is a branch and needs fork (step-45 is moved aside, not deleted).
    const r = await Trainer.resume(join(runDir, "checkpoints", "step-40.safetensors"), { fork: true });
    expect(r.step).toBe(40);
    expect(r.knobs().bridge).toBeCloseTo(0.8, 6);
    const again: number[] = [];
    await r.train(5, { onStep: (m) => again.push(m.loss) });
    expect(again).toEqual(ref);
    r.dispose();
  });

  it("two trainers in one process do not share state", async () => {
    const a = await Trainer.create({ ...base, seed: 5, quant: "poltergeist" });
    const b = await Trainer.create({ ...base, seed: 5, quant: "poltergeist" });
    await a.train(3);
    expect(b.step).toBe(0);
    const la: number[] = [],
      lb: number[] = [];
    await Promise.all([a.train(3, { onStep: (m) => la.push(m.loss) }), b.train(3, { onStep: (m) => lb.push(m.loss) })]);
    expect(a.step).toBe(6);
    expect(b.step).toBe(3);
    a.set({ bridge: 0.5 });
    expect(b.knobs().bridge).toBeCloseTo(2 / 3, 6);
    a.dispose();
    b.dispose();
  });
});
