// train(n, { signal }) and evaluate({ signal, onProgress }) on the tiny preset: aborting stops
// training at a step boundary and cancels a native evaluation; evaluation in chunks scores the
// same windows as one native call.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { Trainer } from "../../src/trainer.js";
import { EvaluationInterrupted, TrainingInterrupted } from "../../src/interrupted.js";
import type { EvalProgress } from "../../src/host.js";

const home = mkdtempSync(join(tmpdir(), "primal-abort-"));
afterAll(() => rmSync(home, { recursive: true, force: true }));

const make = () =>
  Trainer.create({
    preset: "tiny",
    device: "cpu",
    threads: 1,
    home,
    sampleEvery: 0,
    checkpointEvery: 0,
    eval: { every: 0, maxTokens: 60_000 },
    data: { corpus: "sotu", cacheDir: join(home, "cache") },
  });

describe("AbortSignal", () => {
  it("stops train() at the next step boundary, and refuses to start when already aborted", async () => {
    const t = await make();
    const ac = new AbortController();
    const s = await t.train(100_000, { signal: ac.signal, onStep: (m) => m.step === 3 && ac.abort() });
    expect(s.stopped).toBe(true);
    expect(s.step).toBeGreaterThanOrEqual(3);
    expect(s.step).toBeLessThan(100);
    expect(t.run.events.map((e) => e.kind)).toContain("stop");
    await expect(t.train(2, { signal: ac.signal })).rejects.toThrow(TrainingInterrupted);
    const again = await t.train(2);
    expect(again).toMatchObject({ steps: 2, stopped: false, step: s.step + 2 });
    t.dispose();
  });

  it("evaluates in chunks with progress, like one native call; an abort cancels it", async () => {
    const t = await make();
    await t.train(2);
    const seen: EvalProgress[] = [];
    const r = await t.evaluate({ onProgress: (p) => seen.push(p) });
    const tokens = (t as unknown as { data: { validation: { tokens: Int32Array } } }).data.validation.tokens;
    const whole = await t.native.evaluate(tokens, t.config.model.seq);
    expect(r.validation?.tokens).toBe(whole.count);
    expect(r.validation?.tokens).toBe(tokens.length - 1);
    expect(r.validation?.loss).toBeCloseTo(whole.lossSum / whole.count, 10);
    // The corpus split comes first (WikiText-2 follows when PRIMAL_WIKITEXT_DIR names it).
    const val = seen.filter((p) => p.splitIndex === 0);
    expect(val.length).toBeGreaterThan(2);
    expect(val.at(-1)).toMatchObject({ done: tokens.length - 1, total: tokens.length - 1 });
    for (let i = 1; i < val.length; i++) expect(val[i]!.done).toBeGreaterThanOrEqual(val[i - 1]!.done);

    const ac = new AbortController();
    await expect(t.evaluate({ signal: ac.signal, onProgress: (p) => p.done > 0 && ac.abort() })).rejects.toThrow(
      EvaluationInterrupted,
    );
    // Nothing is left running: the trainer trains and evaluates again at once.
    await t.train(1);
    const after = await t.evaluate();
    expect(after.validation?.tokens).toBe(tokens.length - 1);
    t.dispose();
  });

  it("stop() cancels a native evaluation call", async () => {
    const t = await make();
    const tokens = Int32Array.from({ length: 400_000 }, (_, i) => (i * 7) % 256);
    const running = t.native.evaluate(tokens, t.config.model.seq);
    t.native.stop();
    await expect(running).rejects.toThrow(/evaluation cancelled/);
    t.dispose();
  });
});
