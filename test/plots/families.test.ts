// Figures for families of runs: compareRuns with groupBy (mean ± band over seeds) and sweep (a
// metric against a swept knob, mean over seeds), checked on hand-made runs with known numbers.
import { Float64, Int32, Table, Utf8, tableFromArrays, vectorFromArray } from "apache-arrow";
import { describe, expect, it } from "vitest";
import * as plots from "../../src/plots/index.js";
import { runFamilies } from "../../src/plots/seedBands.js";

function run(id: string, seed: number, flipRate: number, losses: number[], custom?: [number, number][]) {
  const steps = losses.map((_, i) => i + 1);
  return {
    id,
    meta: { name: id, config: { preset: "tiny", seed, knobs: { flipRate }, name: id, threads: 2 } },
    metrics: tableFromArrays({
      step: Int32Array.from(steps),
      time: Float64Array.from(steps, (s) => 1000 * s),
      loss: Float32Array.from(losses),
      tokens: Float64Array.from(steps, (s) => 100 * s),
    }),
    layers: tableFromArrays({ step: Int32Array.from([]), scale: Float32Array.from([]) }),
    events: [],
    ...(custom
      ? {
          custom: new Table({
            step: vectorFromArray(
              custom.map((c) => c[0]),
              new Int32(),
            ),
            time: vectorFromArray(
              custom.map((c) => c[0] * 1000),
              new Float64(),
            ),
            name: vectorFromArray(
              custom.map(() => "probe"),
              new Utf8(),
            ),
            value: vectorFromArray(
              custom.map((c) => c[1]),
              new Float64(),
            ),
          }),
        }
      : {}),
  };
}

describe("plots.compareRuns with groupBy", () => {
  const runs = [run("a1", 1, 0.01, [4, 3, 2]), run("a2", 2, 0.01, [6, 5, 4]), run("b1", 1, 0.05, [5, 5, 5])];

  it("groups runs that differ only by seed (name and threads do not count)", () => {
    const fams = runFamilies(runs, "seed");
    expect(fams.map((f) => [f.label, f.runs.map((r) => r.id)])).toEqual([
      ["knobs.flipRate=0.01", ["a1", "a2"]],
      ["knobs.flipRate=0.05", ["b1"]],
    ]);
  });

  it("draws the mean with a ±1 sd band, and a min–max band on request", () => {
    const f = plots.compareRuns(runs, { groupBy: "seed" });
    const [lo, hi, mean, single] = f.data;
    expect(mean!.name).toBe("knobs.flipRate=0.01 (mean of 2)");
    expect(mean!.y).toEqual([5, 4, 3]);
    const sd = Math.SQRT2; // sample sd of {4, 6}
    expect((lo!.y as number[]).map((v) => +v.toFixed(6))).toEqual([5 - sd, 4 - sd, 3 - sd].map((v) => +v.toFixed(6)));
    expect((hi!.y as number[]).map((v) => +v.toFixed(6))).toEqual([5 + sd, 4 + sd, 3 + sd].map((v) => +v.toFixed(6)));
    expect(hi!.fill).toBe("tonexty");
    // A family of one run has no band.
    expect(single!.name).toBe("knobs.flipRate=0.05");
    expect(f.data).toHaveLength(4);
    const mm = plots.compareRuns(runs, { groupBy: "seed", band: "minmax" });
    expect(mm.data[0]!.y).toEqual([4, 3, 2]);
    expect(mm.data[1]!.y).toEqual([6, 5, 4]);
    // x by tokens
    expect(plots.compareRuns(runs, { groupBy: "seed", x: "tokens" }).data[2]!.x).toEqual([100, 200, 300]);
  });

  it("plots a custom metric like a built-in one", () => {
    const r = [
      run(
        "c1",
        1,
        0.01,
        [1, 1, 1],
        [
          [1, 0.5],
          [3, 0.7],
        ],
      ),
      run(
        "c2",
        2,
        0.01,
        [1, 1, 1],
        [
          [1, 0.7],
          [3, 0.9],
        ],
      ),
    ];
    const f = plots.compareRuns(r, { metric: "custom.probe" });
    expect(f.data.map((t) => [t.name, t.x, t.y])).toEqual([
      ["c1", [1, 3], [0.5, 0.7]],
      ["c2", [1, 3], [0.7, 0.9]],
    ]);
    const g = plots.compareRuns(r, { metric: "probe", groupBy: "seed" });
    expect(g.data[2]!.y!.map((v) => +(v as number).toFixed(6))).toEqual([0.6, 0.8]);
  });
});

describe("plots.sweep", () => {
  const table = tableFromArrays({
    point: Int32Array.from([0, 1, 2, 3]),
    status: ["finished", "finished", "finished", "failed"],
    "knobs.flipRate": Float64Array.from([0.01, 0.01, 0.05, 0.05]),
    seed: Float64Array.from([1, 2, 1, 2]),
    finalValLoss: Float64Array.from([3, 2, 1, NaN]),
    finalTrainLoss: Float64Array.from([3.5, 2.5, 1.5, 1.2]),
  });

  it("draws every measured point and the mean over seeds per knob value", () => {
    const f = plots.sweep({ table, metric: "valLoss" }, "knobs.flipRate");
    const [pts, mean] = f.data;
    expect(pts!.x).toEqual([0.01, 0.01, 0.05]);
    expect(mean!.x).toEqual([0.01, 0.05]);
    expect(mean!.y).toEqual([2.5, 1]);
    expect((f.layout["title"] as { text: string }).text).toBe("finalValLoss vs knobs.flipRate · 4 points");
    expect(plots.sweep(table, "knobs.flipRate", { metric: "finalTrainLoss" }).data[1]!.y).toEqual([3, 1.35]);
    expect(() => plots.sweep(table, "knobs.lr")).toThrow(/not a swept field/);
  });
});
