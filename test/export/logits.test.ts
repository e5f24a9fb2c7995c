// The native logits(tokens) entry point the export comparison relies on: its log-softmax scores
// the same loss as batchLoss, and bad windows are JS errors.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, expect, it } from "vitest";
import { Trainer } from "../../src/trainer.js";
import { logSoftmax } from "./compare.js";

const home = mkdtempSync(join(tmpdir(), "primal-logits-"));
afterAll(() => rmSync(home, { recursive: true, force: true }));

it("logits(tokens) matches batchLoss and rejects bad windows", async () => {
  const t = await Trainer.create({
    preset: "tiny",
    device: "cpu",
    threads: 1,
    home,
    steps: 3,
    warmup: 1,
    sampleEvery: 0,
    checkpointEvery: 0,
    eval: { every: 0, maxTokens: 200 },
  });
  await t.train(3);
  const T = 40;
  const V = t.config.model.vocab;
  const ids = Int32Array.from({ length: T + 1 }, (_, i) => (i * 37 + 11) % V);
  const inputs = ids.subarray(0, T);
  const targets = ids.subarray(1);
  const lp = logSoftmax(t.native.logits(inputs), V);
  expect(lp.length).toBe(T * V);
  let loss = 0;
  for (let i = 0; i < T; i++) loss -= lp[i * V + targets[i]!]!;
  expect(loss / T).toBeCloseTo(t.native.batchLoss(inputs, targets, 1, T), 4);
  expect(() => t.native.logits(new Int32Array(t.config.model.seq + 1))).toThrow(/T in \[1, 64\]/);
  expect(() => t.native.logits(Int32Array.from([1, V]))).toThrow(/outside the vocabulary/);
  expect(() => t.native.logits(new Int32Array(0))).toThrow(/T in \[1, 64\]/);
  t.dispose();
});
