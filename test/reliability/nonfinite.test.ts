// A loss that blows up: train() rejects naming the problem and the last good checkpoint, the run
// records the failure, and that checkpoint resumes to finite losses.
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { Trainer } from "../../src/trainer.js";
import { readRun } from "../../src/tracking/runReader.js";
import { tinyConfig } from "./fixtures/common.js";

const home = mkdtempSync(join(tmpdir(), "primal-nonfinite-"));
afterAll(() => rmSync(home, { recursive: true, force: true }));

describe("non-finite loss", () => {
  for (const quant of ["poltergeist", "fp"] as const) {
    it(`${quant}: lr 1e30 fails cleanly and the last good checkpoint still trains`, async () => {
      const t = await Trainer.create(tinyConfig(home, { name: `blowup-${quant}`, quant, checkpointEvery: 4 }) as never);
      const good: number[] = [];
      await t.train(8, { onStep: (m) => good.push(m.loss) });
      const lastGood = join(t.runDir, "checkpoints", "step-8.safetensors");
      // One AdamW step at lr 1e30 moves every fp weight by ~1e30: the next forward overflows.
      t.set({ lr: 1e30 });
      const seen: number[] = [];
      const err = await t.train(20, { onStep: (m) => seen.push(m.step) }).then(
        () => null,
        (e: unknown) => e as Error,
      );
      expect(err).toBeInstanceOf(Error);
      expect(err!.message).toMatch(/non-finite/);
      expect(err!.message).toMatch(/the step was not applied/);
      expect(err!.message).toContain(`last good checkpoint: ${lastGood}`);
      // It failed before the next checkpoint hook (step 12), so step-8 is the newest one.
      expect(Math.max(...seen)).toBeLessThan(12);
      const failedAt = t.step + 1;

      const run = t.run;
      const errors = run.events.filter((e) => e.kind === "error");
      expect(errors).toHaveLength(1);
      expect(errors[0]).toMatchObject({
        step: t.step,
        message: expect.stringMatching(new RegExp(`non-finite .* at step ${failedAt}`)),
      });
      expect(run.meta.status).toBe("failed");
      expect(run.meta.step).toBe(t.step);
      expect(run.checkpoints.map((c) => c.step)).toEqual([4, 8]);
      // Every step that did complete is recorded, including the one right before the failure.
      expect(Array.from(run.metrics.getChild("step")!.toArray())).toEqual(
        Array.from({ length: t.step }, (_, i) => i + 1),
      );
      expect(t.isTraining).toBe(false);

      // The failed trainer is still usable: reload the good state and train on.
      await t.native.load(lastGood);
      expect(t.native.getKnobs().lr).toBeCloseTo(3e-3, 6);
      const reloaded: number[] = [];
      await t.train(3, { onStep: (m) => reloaded.push(m.loss) });
      t.dispose();

      // And a fresh process would resume it the same way.
      // Step 11 was checkpointed after the reload, so going back to step 8 is a branch.
      await expect(Trainer.resume(lastGood)).rejects.toThrow(/older than the run's newest checkpoint step-11.*--fork/);
      const r = await Trainer.resume(lastGood, { fork: true });
      expect(r.step).toBe(8);
      expect(r.native.getKnobs().lr).toBeCloseTo(3e-3, 6);
      const resumed: number[] = [];
      await r.train(5, { onStep: (m) => resumed.push(m.loss) });
      r.dispose();
      expect(resumed.every(Number.isFinite)).toBe(true);
      expect(resumed.slice(0, 3)).toEqual(reloaded);
      const events = readFileSync(join(r.runDir, "events.jsonl"), "utf8")
        .trim()
        .split("\n")
        .map((l) => JSON.parse(l));
      expect(events.filter((e) => e.kind === "resume").map((e) => e.step)).toEqual([8]);
      expect(readRun(r.runDir).meta.step).toBe(13);
    });
  }
});
