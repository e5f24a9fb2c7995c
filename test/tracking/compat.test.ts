// Backward compatibility: a run written by the earlier run store (fixtures/old-run, without
// annotations, custom metrics, knob traces or lock heartbeats) still lists, reads, plots, shows
// on the board's API and resumes; the resumed run gains the new files.
import { cpSync, existsSync, mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { Trainer } from "../../src/trainer.js";
import { compareRuns, listRuns, readRun } from "../../src/tracking/runReader.js";
import { runs } from "../../src/tracking/runsTable.js";
import * as plots from "../../src/plots/index.js";
import { boardApp } from "../../src/board/server.js";

const fixture = join(import.meta.dirname, "fixtures", "old-run");
const home = mkdtempSync(join(tmpdir(), "primal-compat-"));
cpSync(fixture, home, { recursive: true });
rmSync(join(home, "README.md"));
const id = readdirSync(home).find((d) => d.includes("old-writer"))!;
const dir = join(home, id);
afterAll(() => rmSync(home, { recursive: true, force: true }));

describe("a run written before this version", () => {
  it("lists and reads, with no tags, notes, custom metrics or knob traces", () => {
    const [r] = listRuns(home);
    expect(r).toMatchObject({ id, status: "finished", step: 6, tags: [], notes: 0, custom: {} });
    expect(r!.error).toBeUndefined();
    expect(r!.sweep).toBeUndefined();
    const run = readRun(dir);
    expect(run.metrics.numRows).toBe(6);
    expect(run.custom.numRows).toBe(0);
    expect(run.knobs.numRows).toBe(0);
    expect(run.status).toBe("finished");
    expect(runs({ home }).getChild("status")!.get(0)).toBe("finished");
    expect(compareRuns([dir]).numRows).toBe(1);
  });

  it("plots: loss, compared with bands, Ghost Scale series", () => {
    const run = readRun(dir);
    expect(plots.loss(run).data[0]!.x).toHaveLength(6);
    const f = plots.compareRuns([run, run], { groupBy: "seed" });
    expect(f.data.find((t) => t.fill === "tonexty")).toBeDefined();
    const g = plots.compareRuns([run], { metric: "ghostScale" });
    expect(g.data[0]!.y).toHaveLength(6);
  });

  it("the board's API serves it", async () => {
    const { app } = boardApp(home);
    const res = await app.request(`/api/run/${id}`);
    expect(res.status).toBe(200);
    const body = (await res.json()) as { status: string; tags: string[]; metrics: string[] };
    expect(body.status).toBe("finished");
    expect(body.metrics).toContain("ghostScale");
    const chart = await app.request(`/api/chart?runs=${id}&metric=loss`);
    expect(((await chart.json()) as { data: unknown[] }).data).toHaveLength(1);
  });

  it("resumes, and then records the knobs of every new step", async () => {
    const t = await Trainer.resume(dir, { threads: 1 });
    expect(t.step).toBe(6);
    await t.train(2);
    t.tag("resumed");
    t.dispose();
    const run = readRun(dir);
    expect(run.meta.status).toBe("finished");
    expect(run.metrics.numRows).toBe(8);
    expect(existsSync(join(dir, "knobs.arrows"))).toBe(true);
    expect(new Set(run.knobs.toArray().map((r) => r.step))).toEqual(new Set([7, 8]));
    expect(run.tags).toEqual(["resumed"]);
  }, 120_000);
});
