// A full disk while a run is written (a 2 MiB tmpfs as the runs home): nothing already on disk is
// damaged, rows that could not be written stay buffered and are written once there is space, the
// run ends "failed" with the reason, and it resumes. Also: `report` on a read-only run folder.
import { execFileSync } from "node:child_process";
import {
  existsSync,
  mkdtempSync,
  readFileSync,
  readdirSync,
  rmSync,
  statSync,
  truncateSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { Trainer } from "../../src/trainer.js";
import { ArrowAppender, readArrowStream } from "../../src/tracking/arrowStream.js";
import { listRuns, readRun } from "../../src/tracking/runReader.js";
import { metricsSchema } from "../../src/tracking/schemas.js";
import { writeReport } from "../../src/cli/reportCommand.js";
import { plotlyBundleSource, plotlyFileName } from "../../src/plots/html.js";
import { tinyConfig } from "./fixtures/common.js";
import { mountTmpfs, type Tmpfs } from "./fixtures/tmpfs.js";

const mounted = mountTmpfs("2m");
const fs: Tmpfs | null = "skip" in mounted ? null : mounted;
const skipReason = "skip" in mounted ? mounted.skip : "";
if (skipReason) console.warn(`disk-full tests skipped: ${skipReason}`);
afterAll(() => fs?.unmount());

/** Fills the file system up to `leave` free bytes with one filler file; returns its path. */
function fill(dir: string, leave: number, name = "filler"): string {
  const path = join(dir, name);
  const free = Number(
    execFileSync("df", ["--output=avail", "-B1", dir], { encoding: "utf8" }).trim().split("\n").at(-1),
  );
  writeFileSync(path, Buffer.alloc(Math.max(0, free - leave)));
  return path;
}

/** A tmpfs of its own for one test (so earlier tests' runs take none of its room). */
async function onTmpfs(size: string, body: (dir: string) => Promise<void>): Promise<void> {
  const own = mountTmpfs(size) as Tmpfs;
  try {
    await body(own.dir);
  } finally {
    own.unmount();
  }
}

/** Fills the file system completely: one filler, then small ones until not a byte more fits. */
function fillUp(dir: string): string[] {
  const fillers = [fill(dir, 0)];
  for (let i = 0; i < 64; i++) {
    const p = join(dir, `filler-${i}`);
    try {
      writeFileSync(p, Buffer.alloc(4096));
      fillers.push(p);
    } catch {
      rmSync(p, { force: true });
      break;
    }
  }
  return fillers;
}

const status = (dir: string) =>
  JSON.parse(readFileSync(join(dir, "run.json"), "utf8")) as { status: string; error?: string };

const row = (step: number) => ({
  step,
  time: 0,
  loss: 3,
  lr: 1e-3,
  gradNorm: 1,
  tokens: step,
  tokensPerSec: 1,
  stepMs: 1,
  peakMemoryBytes: 0,
});

describe.skipIf(!fs)(`disk full (${skipReason || "2 MiB tmpfs"})`, () => {
  it("a flush that hits ENOSPC leaves the stream whole, keeps its rows and writes them once there is space", () => {
    const dir = join(fs!.dir, "appender");
    execFileSync("mkdir", ["-p", dir]);
    const path = join(dir, "metrics.arrows");
    const a = ArrowAppender.open(path, metricsSchema, { flushIntervalMs: 0, flushRows: 1_000_000 });
    for (let s = 1; s <= 10; s++) a.append(row(s));
    a.flush();
    const filler = fill(fs!.dir, 2048);
    for (let s = 11; s <= 400; s++) a.append(row(s)); // ~20 KB as one message: does not fit
    expect(() => a.flush()).toThrow(/cannot write 390 rows to metrics\.arrows: .*ENOSPC.*390 rows stay buffered/);
    expect(a.bufferedRows).toBe(390);
    // What is on disk is exactly the first batch, and it reads.
    expect(Array.from(readArrowStream(path).getChild("step")!.toArray() as Int32Array)).toEqual(
      Array.from({ length: 10 }, (_, i) => i + 1),
    );
    // A retry while still full fails the same way and changes nothing.
    a.append(row(401));
    expect(() => a.flush()).toThrow(/ENOSPC/);
    expect(readArrowStream(path).numRows).toBe(10);
    rmSync(filler);
    expect(a.flush()).toBe(391);
    a.close();
    expect(Array.from(readArrowStream(path).getChild("step")!.toArray() as Int32Array)).toEqual(
      Array.from({ length: 401 }, (_, i) => i + 1),
    );
  });

  it("training into a full disk fails with the reason in run.json, loses nothing on disk, and resumes once there is space", async () => {
    const home = join(fs!.dir, "runs");
    const t = await Trainer.create(
      tinyConfig(home, { name: "full", checkpointEvery: 5, keepCheckpoints: 2, steps: 100000 }) as never,
    );
    const dir = t.runDir;
    const filler = fill(fs!.dir, 1_200_000);
    const err = await t.train(100000).then(
      () => null,
      (e: unknown) => e as Error,
    );
    expect(err?.message).toMatch(/ENOSPC|No space left|disk full/);
    const run = readRun(dir);
    expect(run.meta.status).toBe("failed");
    expect(run.meta.error).toMatch(/ENOSPC|No space left|disk full/);
    const steps = Array.from(run.metrics.getChild("step")!.toArray() as Int32Array);
    expect(steps).toEqual(Array.from({ length: steps.length }, (_, i) => i + 1));
    const layerSteps = Array.from(run.layers.getChild("step")!.toArray() as Int32Array);
    expect(layerSteps.length % 14).toBe(0);
    expect(layerSteps.filter((_, i) => i % 14 === 0)).toEqual(
      Array.from({ length: layerSteps.length / 14 }, (_, i) => i + 1),
    );
    // Every row up to the newest checkpoint is there (a resume continues after it).
    const newest = run.checkpoints.at(-1)!.step;
    expect(steps.length).toBeGreaterThanOrEqual(newest);
    expect(readdirSync(join(dir, "checkpoints")).filter((n) => n.endsWith(".tmp"))).toEqual([]);
    expect(listRuns(home)[0]!.error).toBeUndefined();
    t.dispose();

    rmSync(filler);
    const r = await Trainer.resume(dir);
    expect(r.step).toBe(newest);
    await r.train(3);
    r.dispose();
    const after = readRun(dir);
    expect(after.meta.status).toBe("finished");
    expect(Array.from(after.metrics.getChild("step")!.toArray() as Int32Array).slice(-3)).toEqual([
      newest + 1,
      newest + 2,
      newest + 3,
    ]);
  });

  it("run creation on a full disk names the file and leaves no empty lock", async () => {
    await onTmpfs("8m", async (root) => {
      const home = join(root, "create-home");
      execFileSync("mkdir", ["-p", home]);
      const fillers = fillUp(root);
      try {
        const err = await Trainer.create(tinyConfig(home, { name: "nospace" }) as never).then(
          () => null,
          (e: unknown) => e as Error,
        );
        expect(err?.message).toMatch(/ENOSPC/);
        // The message says which file could not be written, with its folder.
        expect(err?.message).toMatch(
          /\/lock\b|\b(run\.json|metrics\.arrows(\.index)?|layers\.arrows(\.index)?|events\.jsonl|samples\.jsonl|checkpoints) in \//,
        );
        for (const run of readdirSync(home)) {
          expect(existsSync(join(home, run, "lock")), `${run}/lock`).toBe(false);
          if (existsSync(join(home, run, "run.json"))) expect(status(join(home, run)).status).not.toBe("running");
        }
      } finally {
        for (const f of fillers) rmSync(f, { force: true });
      }
    });
  });

  it("resume on a full disk names the file and leaves no empty lock", async () => {
    await onTmpfs("8m", async (root) => {
      const home = join(root, "resume-home");
      const t = await Trainer.create(tinyConfig(home, { name: "resume-full", checkpointEvery: 2 }) as never);
      await t.train(2);
      t.dispose();
      const fillers = fillUp(root);
      try {
        const err = await Trainer.resume(t.runDir).then(
          () => null,
          (e: unknown) => e as Error,
        );
        expect(err?.message).toMatch(/ENOSPC/);
        expect(err?.message).toContain(t.runDir);
        expect(existsSync(join(t.runDir, "lock"))).toBe(false);
      } finally {
        for (const f of fillers) rmSync(f, { force: true });
      }
      const r = await Trainer.resume(t.runDir);
      expect(r.step).toBe(2);
      r.dispose();
    });
  });

  it("a failed write leaves run.json 'failed' with the reason, even on a completely full disk", async () => {
    await onTmpfs("8m", async (root) => {
      const home = join(root, "status-home");
      const t = await Trainer.create(tinyConfig(home, { name: "status", checkpointEvery: 0 }) as never);
      await t.train(2);
      const fillers = fillUp(root);
      try {
        // A checkpoint saved outside train() does not fit: the run says so.
        await expect(t.save()).rejects.toThrow(/No space left|ENOSPC/);
        expect(status(t.runDir)).toMatchObject({
          status: "failed",
          error: expect.stringMatching(/step-2\.safetensors.*(No space left|ENOSPC)/),
        });
        // Training on fails too, and run.json says so although not a byte more fits.
        await expect(t.train(50)).rejects.toThrow(/ENOSPC|No space/);
        expect(status(t.runDir).status).toBe("failed");
        try {
          t.dispose();
        } catch (e) {
          expect((e as Error).message).toMatch(/ENOSPC/);
        }
        expect(status(t.runDir).status).toBe("failed");
      } finally {
        for (const f of fillers) rmSync(f, { force: true });
      }
      expect(existsSync(join(t.runDir, "lock"))).toBe(false);
    });
  });

  it("report on a full disk names the file and never leaves a cut-off plotly.js", async () => {
    await onTmpfs("8m", async (root) => {
      const home = join(root, "report-home");
      const t = await Trainer.create(tinyConfig(home, { name: "report-full", checkpointEvery: 0 }) as never);
      await t.train(2);
      t.dispose();
      const fillers = [fill(root, 1_000_000, "report-filler")]; // room for a page, not for plotly.js
      try {
        await expect(writeReport(t.runDir, undefined, ["html"])).rejects.toThrow(
          /cannot write (plotly-.*\.min\.js|\w+\.html) in .*figures: ENOSPC/,
        );
        const js = join(t.runDir, "figures", plotlyFileName());
        if (existsSync(js)) expect(statSync(js).size).toBe(Buffer.byteLength(plotlyBundleSource()));
        expect(readdirSync(join(t.runDir, "figures")).filter((n) => n.includes(".tmp"))).toEqual([]);
      } finally {
        for (const f of fillers) rmSync(f, { force: true });
      }
      const files = await writeReport(t.runDir, undefined, ["html"]);
      // Four figures and the index page that shows them.
      expect(files).toHaveLength(5);
      expect(files.at(-1)).toMatch(/index\.html$/);
    });
  });

  it("report on a read-only run folder says so", async () => {
    // A tmpfs of its own: a remount to read-only needs no file open on it.
    const ro = mountTmpfs("8m") as Tmpfs;
    const home = join(ro.dir, "ro");
    const t = await Trainer.create(tinyConfig(home, { name: "ro", checkpointEvery: 0 }) as never);
    await t.train(3);
    t.dispose();
    ro.remount("ro");
    try {
      await expect(writeReport(t.runDir, undefined, ["html"])).rejects.toThrow(
        /report: cannot write figures to .*figures \(EROFS: the folder is read-only\); pass --out DIR/,
      );
      // Reading still works on a read-only folder (readers never take the lock).
      expect(readRun(t.runDir).metrics.numRows).toBe(3);
      expect(JSON.parse(readFileSync(join(t.runDir, "run.json"), "utf8")).status).toBe("finished");
    } finally {
      ro.unmount();
    }
  });
});

describe("shared report assets", () => {
  it("a plotly.js cut short by a killed report is written again, whole", async () => {
    const home = mkdtempSync(join(tmpdir(), "primal-assets-"));
    try {
      const t = await Trainer.create(tinyConfig(home, { name: "assets", checkpointEvery: 0 }) as never);
      await t.train(2);
      t.dispose();
      await writeReport(t.runDir, undefined, ["html"]);
      const js = join(t.runDir, "figures", plotlyFileName());
      const full = statSync(js).size;
      expect(full).toBe(Buffer.byteLength(plotlyBundleSource()));
      truncateSync(js, 0); // what a kill during the old plain write left behind
      await writeReport(t.runDir, undefined, ["html"]);
      expect(statSync(js).size).toBe(full);
    } finally {
      rmSync(home, { recursive: true, force: true });
    }
  });
});
