// How much room keeping K checkpoints needs: at most K on disk plus the temporary file of the one
// being written, also after a resume (the checkpoint resumed from counts toward K), and temporary
// files left by a killed save do not pile up.
import { readdirSync, rmSync, mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { Trainer } from "../../src/trainer.js";
import { readRun } from "../../src/tracking/runReader.js";
import { tinyConfig } from "./fixtures/common.js";

const home = mkdtempSync(join(tmpdir(), "primal-room-"));
afterAll(() => rmSync(home, { recursive: true, force: true }));

const files = (dir: string) => readdirSync(join(dir, "checkpoints")).filter((n) => n.startsWith("step-"));

describe("keeping K checkpoints", () => {
  it("never holds more than K checkpoint files, after a resume too, and leftovers of a killed save are removed", async () => {
    const t = await Trainer.create(tinyConfig(home, { name: "room", checkpointEvery: 2, keepCheckpoints: 2 }) as never);
    let most = 0;
    const count = () => (most = Math.max(most, files(t.runDir).length));
    await t.train(6, { onStep: count });
    t.dispose();
    expect(files(t.runDir).sort()).toEqual(["step-4.safetensors", "step-6.safetensors"]);
    // A save killed mid-write leaves its temporary file (as large as a checkpoint).
    writeFileSync(join(t.runDir, "checkpoints", "step-7.safetensors.tmp"), Buffer.alloc(300_000));
    const r = await Trainer.resume(t.runDir);
    await r.train(6, { onStep: () => (most = Math.max(most, files(r.runDir).length)) });
    r.dispose();
    // The checkpoint resumed from (step 6) is kept and counts toward the 2.
    expect(files(t.runDir).sort()).toEqual(["step-12.safetensors", "step-6.safetensors"]);
    expect(most).toBeLessThanOrEqual(2);
    const resume = readRun(t.runDir).events.find((e) => e["kind"] === "resume")!;
    expect(resume["removedTemps"]).toEqual([join(t.runDir, "checkpoints", "step-7.safetensors.tmp")]);
  });
});
