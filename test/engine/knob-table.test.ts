// Adding a knob is one edit: a build of the addon with PRIMAL_TEST_KNOB (one row and one member in
// native/include/primal/knobs.h, nothing else) has a knob 'testKnob' that zod validates, the
// addon converts, the core range-checks, checkpoints store, a resume restores and t.knobs()
// reports, with no TypeScript edit. The test builds that addon beside the normal one (ninja keeps
// it up to date in seconds after the first build) and loads it in this test file's own process.
import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

const root = join(import.meta.dirname, "..", "..");
const outDir = join(root, "build", "testknob");
const addon = join(outDir, "Release", "primal_native.node");
const home = mkdtempSync(join(tmpdir(), "primal-testknob-"));
afterAll(() => rmSync(home, { recursive: true, force: true }));

type Facade = typeof import("../../src/index.js");
let primal: Facade;

beforeAll(async () => {
  const cmakeJs = join(root, "node_modules", "cmake-js", "bin", "cmake-js");
  const r = spawnSync(
    process.execPath,
    [
      cmakeJs,
      "compile",
      "--out",
      outDir,
      "--target",
      "primal_native",
      "--CDPRIMAL_TEST_KNOB=ON",
      "--CDPRIMAL_CUDA=OFF",
      "--CDPRIMAL_MPI=OFF",
      "--CDPRIMAL_TESTS=OFF",
    ],
    { cwd: root, encoding: "utf8", timeout: 1_200_000 },
  );
  if (r.status !== 0) throw new Error(`building the test-knob addon failed:\n${r.stdout}\n${r.stderr}`);
  // This file's process loads the test build instead of build/Release (src/native.ts).
  process.env.PRIMAL_NATIVE = addon;
  primal = await import("../../src/index.js");
}, 1_200_000);

const config = (extra: Record<string, unknown> = {}) => ({
  preset: "tiny" as const,
  device: "cpu" as const,
  threads: 1,
  home,
  steps: 20,
  sampleEvery: 0,
  checkpointEvery: 0,
  eval: { every: 0, maxTokens: 500 },
  ...extra,
});

describe("a knob added to the core's table", () => {
  it("is in the addon's table and in zod, with its range and default", () => {
    const field = primal.knobFields().find((f) => f.name === "testKnob");
    expect(field).toMatchObject({ nullable: false, min: 0, max: 1, minOpen: false, maxOpen: false, default: 0.25 });
    expect(Object.keys(primal.knobsSchema().shape)).toContain("testKnob");
    expect(primal.defaultKnobs().testKnob).toBe(0.25);
    expect(primal.resolveConfig({ knobs: { testKnob: 0.5 } }).knobs.testKnob).toBe(0.5);
    expect(() => primal.resolveConfig({ knobs: { testKnob: 2 } })).toThrow(
      /config\.knobs\.testKnob: Too big: expected number to be <=1/,
    );
  });

  it("is set, range-checked by the core, stored in checkpoints, restored on resume and read back by t.knobs()", async () => {
    const t = await primal.Trainer.create(config({ knobs: { testKnob: 0.5 } }));
    let runDir = "";
    try {
      expect(t.knobs().testKnob).toBe(0.5);
      await t.train(1);
      expect(t.set({ testKnob: 0.75 }).testKnob).toBe(0.75);
      expect(() => t.set({ testKnob: -1 })).toThrow(/set: testKnob: Too small/);
      // The core's own check, behind zod.
      expect(() => t.native.setKnobs({ testKnob: 3 })).toThrow(/testKnob: must be in \[0, 1\], got 3/);
      expect(t.knobs().testKnob).toBe(0.75);
      await t.save();
      runDir = t.runDir;
    } finally {
      t.dispose();
    }
    const events = readFileSync(join(runDir, "events.jsonl"), "utf8")
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(events.filter((e) => e.kind === "set")).toEqual([
      expect.objectContaining({ step: 1, knob: "testKnob", old: 0.5, new: 0.75 }),
    ]);
    const header = readFileSync(join(runDir, "checkpoints", "step-1.safetensors")).toString("latin1", 0, 20000);
    expect(header).toContain('\\"testKnob\\":0.75');
    const r = await primal.Trainer.resume(runDir);
    try {
      expect(r.knobs().testKnob).toBe(0.75);
    } finally {
      r.dispose();
    }
  });
});
