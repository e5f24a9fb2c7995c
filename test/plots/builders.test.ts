import { Float32, Table, Utf8, tableFromArrays, vectorFromArray } from "apache-arrow";
import { describe, expect, it } from "vitest";
import * as plots from "../../src/plots/index.js";
import type { RunData, RunEvent } from "../../src/plots/index.js";
import { tidy } from "../../src/plots/columns.js";
import { join } from "node:path";
import { packageRoot } from "../../src/paths.js";

const KINDS = ["attn.q", "attn.k", "attn.v", "attn.o", "mlp.gate", "mlp.up", "mlp.down"];

/** Metrics table with the data contract's columns; validation every 10 steps. */
function metricsTable(steps: number, offset = 0): Table {
  const step = Int32Array.from({ length: steps }, (_, i) => i + 1);
  const val = Array.from(step, (s) => (s % 10 === 0 ? 3 - s * 0.01 + offset : null));
  return new Table({
    step: vectorFromArray(step),
    time: vectorFromArray(Float64Array.from(step, (s) => 1.7e12 + s * 1000)),
    loss: vectorFromArray(Float32Array.from(step, (s) => 5.5 - Math.log(s) * 0.8 + offset)),
    lr: vectorFromArray(Float32Array.from(step, () => 3e-3)),
    gradNorm: vectorFromArray(Float32Array.from(step, () => 1)),
    tokens: vectorFromArray(Float64Array.from(step, (s) => s * 2048)),
    tokensPerSec: vectorFromArray(Float32Array.from(step, () => 1e4)),
    stepMs: vectorFromArray(Float32Array.from(step, () => 200)),
    peakMemoryBytes: vectorFromArray(Float64Array.from(step, () => 1e8)),
    valLoss: vectorFromArray(val, new Float32()),
    valBpb: vectorFromArray(
      val.map((v) => (v === null ? null : v / Math.LN2)),
      new Float32(),
    ),
  });
}

/** Long-format layers table: `blocks` blocks × 7 matrices × `steps` steps. */
function layersTable(steps: number, blocks: number): Table {
  const L = blocks * 7;
  const n = steps * L;
  const cols = {
    step: new Int32Array(n),
    layer: new Int32Array(n),
    scale: new Float32Array(n),
    flips: new Int32Array(n),
    flipFrac: new Float32Array(n),
    occM2: new Int32Array(n),
    occM1: new Int32Array(n),
    occ0: new Int32Array(n),
    occP1: new Int32Array(n),
    occP2: new Int32Array(n),
  };
  const names: string[] = [];
  let r = 0;
  for (let s = 1; s <= steps; s++) {
    for (let l = 0; l < L; l++, r++) {
      cols.step[r] = s;
      cols.layer[r] = l;
      names.push(`blocks.${Math.floor(l / 7)}.${KINDS[l % 7]}`);
      cols.scale[r] = 1 - 0.01 * s * (1 + l / L);
      cols.flips[r] = 10 * l + s;
      cols.flipFrac[r] = (10 * l + s) / 1000;
      // 1000 weights per layer: -1 and +1 grow, 0 shrinks with the step.
      cols.occM2[r] = 100 + s;
      cols.occM1[r] = 200;
      cols.occ0[r] = 400 - 2 * s;
      cols.occP1[r] = 200;
      cols.occP2[r] = 100 + s;
    }
  }
  const base = tableFromArrays(cols);
  return new Table({
    step: base.getChild("step")!,
    layer: base.getChild("layer")!,
    name: vectorFromArray(names, new Utf8()),
    scale: base.getChild("scale")!,
    flips: base.getChild("flips")!,
    flipFrac: base.getChild("flipFrac")!,
    occM2: base.getChild("occM2")!,
    occM1: base.getChild("occM1")!,
    occ0: base.getChild("occ0")!,
    occP1: base.getChild("occP1")!,
    occP2: base.getChild("occP2")!,
  });
}

const EVENTS: RunEvent[] = [
  { step: 0, kind: "start" },
  { step: 12, kind: "set", knob: "bridge", old: 2 / 3, new: 0.7 },
  { step: 12, kind: "set", knob: "flipRate", old: 0.01, new: 0.02 },
  { step: 15, kind: "set", knob: "bridge", old: 0.7, new: null },
  { step: 20, kind: "checkpoint" },
];

function run(id = "run-a", steps = 20, blocks = 2, offset = 0): RunData {
  return { id, metrics: metricsTable(steps, offset), layers: layersTable(steps, blocks), events: EVENTS };
}

/** Difference in hue (degrees) of two #rrggbb colours. */
function hueDistance(a: string, b: string): number {
  const hue = (hex: string) => {
    const n = parseInt(hex.slice(1), 16);
    const [r, g, b2] = [((n >> 16) & 255) / 255, ((n >> 8) & 255) / 255, (n & 255) / 255];
    const max = Math.max(r, g, b2);
    const d = max - Math.min(r, g, b2);
    if (d === 0) return 0;
    const h = max === r ? ((g - b2) / d) % 6 : max === g ? (b2 - r) / d + 2 : (r - g) / d + 4;
    return (h * 60 + 360) % 360;
  };
  const d = Math.abs(hue(a) - hue(b));
  return Math.min(d, 360 - d);
}

function isPlainJson(fig: plots.Figure): boolean {
  // What the notebook's application/vnd.plotly.v1+json output receives.
  return JSON.stringify(JSON.parse(JSON.stringify(fig))) === JSON.stringify(fig) && plots.figureJson(fig).length > 0;
}

describe("figure helpers", () => {
  it("formats knob values for event labels", () => {
    expect(plots.formatValue(2 / 3)).toBe("0.667");
    expect(plots.formatValue(0.7)).toBe("0.7");
    expect(plots.formatValue(null)).toBe("off");
    expect(plots.formatValue(300)).toBe("300");
    expect(plots.formatValue(3e-4)).toBe("3e-4");
  });

  it("colors layers by matrix kind and depth", () => {
    expect(plots.parseLayerName("blocks.3.mlp.up")).toEqual({ block: 3, kind: "up" });
    const c = plots.layerColors(["blocks.0.attn.q", "blocks.1.attn.q", "blocks.0.mlp.up", "embed"]);
    expect(new Set(c).size).toBe(4);
    // The kind's colour for the first block, lighter (same hue) for the deeper one.
    expect(c[0]).toBe(plots.KIND_COLORS.q!.toLowerCase());
    expect(c[1]).not.toBe(c[0]);
    expect(c[3]).toBe(plots.paletteColor(3));
    // Seven kinds, seven distinct colours from the colour-blind-safe palette; gate and up far apart.
    const kinds = Object.values(plots.KIND_COLORS);
    expect(new Set(kinds).size).toBe(7);
    for (const k of kinds) expect(plots.PALETTE).toContain(k);
    expect(hueDistance(plots.KIND_COLORS.gate!, plots.KIND_COLORS.up!)).toBeGreaterThan(45);
  });

  it("labels runs by name or a short alias, never the machine id unless asked", () => {
    const id = "2026-11-26T14-03-12-poltergeist-small-ab12";
    expect(plots.runAlias(id)).toBe("poltergeist-small");
    expect(
      plots.runLabels([{ id }, { id: "2026-11-26T15-00-00-poltergeist-small-cd34" }, { id: "x", name: "mine" }]),
    ).toEqual(["poltergeist-small", "poltergeist-small (2)", "mine"]);
    expect(plots.runLabel({ id, meta: { name: "quick" } })).toBe("quick");
    plots.style("notebook", { runIds: true });
    try {
      expect(plots.runLabel({ id, name: "quick" })).toBe(`quick (${id})`);
    } finally {
      plots.style("notebook");
    }
  });

  it("rounds numbers to 7 significant digits for compact JSON", () => {
    expect(tidy(Math.fround(0.1))).toBe(0.1);
    expect(tidy(Math.fround(1.75))).toBe(1.75);
    expect(tidy(Math.fround(2 / 3))).toBe(0.6666667);
    expect(tidy(-Math.fround(0.0123456789))).toBe(-0.01234568);
    expect(tidy(123456789.25)).toBe(123456800);
    expect(tidy(1.5e-30)).toBe(1.5e-30);
    expect(tidy(42)).toBe(42);
    expect(tidy(NaN)).toBeNull();
    expect(tidy(Infinity)).toBeNull();
  });

  it("serialises typed arrays as plain arrays", () => {
    const json = plots.figureJson({ data: [{ y: new Float32Array([1, 2]) as unknown as unknown[] }], layout: {} });
    expect(JSON.parse(json).data[0].y).toEqual([1, 2]);
  });
});

describe("loss", () => {
  it("has train and validation traces and marks knob changes", () => {
    const fig = plots.loss(run());
    expect(fig.data.map((t) => t.name)).toEqual(["train loss", "val loss"]);
    const [train, val] = fig.data;
    expect(train!.type).toBe("scatter");
    expect(train!.x).toHaveLength(20);
    expect(train!.y).toHaveLength(20);
    expect(train!.x![0]).toBe(1);
    expect(val!.x).toEqual([10, 20]);
    expect(val!.y).toHaveLength(2);
    expect(val!.y![0]).toBeCloseTo(2.9, 5);

    const shapes = fig.layout.shapes as Record<string, unknown>[];
    const annotations = fig.layout.annotations as Record<string, unknown>[];
    // Two distinct steps with "set" events; start/checkpoint are not drawn.
    expect(shapes).toHaveLength(2);
    expect(shapes.map((s) => s.x0)).toEqual([12, 15]);
    expect(shapes[0]).toMatchObject({ type: "line", yref: "paper", y0: 0, y1: 1, line: { dash: "dash" } });
    expect(annotations).toHaveLength(2);
    expect(annotations[0]!.text).toBe("bridge 0.667→0.7<br>flipRate 0.01→0.02");
    expect(annotations[1]!.text).toBe("bridge 0.7→off");
    expect(annotations[0]!.x).toBe(12);
    expect(isPlainJson(fig)).toBe(true);
  });

  it("adds a smoothed line and a log axis on request", () => {
    const fig = plots.loss(run(), { smooth: 0.8, logY: true });
    expect(fig.data.map((t) => t.name)).toEqual(["train loss", "train loss (EMA 0.8)", "val loss"]);
    expect(fig.data[0]!.opacity).toBeLessThan(1);
    const raw = fig.data[0]!.y as number[];
    const smooth = fig.data[1]!.y as number[];
    expect(smooth).toHaveLength(20);
    // Bias-corrected EMA starts at the first value.
    expect(smooth[0]).toBeCloseTo(raw[0]!, 5);
    expect(smooth[19]).toBeGreaterThan(raw[19]!); // lags behind a falling loss
    expect((fig.layout.yaxis as Record<string, unknown>).type).toBe("log");
    expect(plots.loss(run(), { smooth: true }).data[1]!.name).toBe("train loss (EMA 0.9)");
    expect(() => plots.loss(run(), { smooth: 1.5 })).toThrow(/smooth/);
  });

  it("works without events or validation", () => {
    const r = run();
    const fig = plots.loss({ id: "x", metrics: r.metrics.select(["step", "loss"]), layers: r.layers });
    expect(fig.data).toHaveLength(1);
    expect(fig.layout.shapes).toBeUndefined();
    expect(plots.loss(run(), { events: false }).layout.shapes).toBeUndefined();
  });

  it("names the missing column", () => {
    const r = run();
    expect(() => plots.loss({ ...r, metrics: r.metrics.select(["step"]) })).toThrow(/no column "loss"/);
  });
});

describe("layer figures", () => {
  it("ghostScale has one line per layer, scale-symmetry pairs drawn as one group", () => {
    const fig = plots.ghostScale(run(), { threshold: 0.4 });
    expect(fig.data).toHaveLength(14);
    // q and k of a block: one legend entry and color, the partner dashed.
    const q = fig.data[0] as Record<string, unknown>;
    const k = fig.data[1] as Record<string, unknown>;
    expect(q.name).toBe("blocks.0 q·k");
    expect([q.legendgroup, q.showlegend, k.legendgroup, k.showlegend]).toEqual([
      "blocks.0 q·k",
      true,
      "blocks.0 q·k",
      false,
    ]);
    expect((k.line as { dash?: string; color: string }).dash).toBe("dash");
    expect((k.line as { color: string }).color).toBe((q.line as { color: string }).color);
    expect(fig.data[13]!.name).toBe("blocks.1 up·down");
    expect(fig.data.filter((t) => (t as { showlegend?: boolean }).showlegend !== false).map((t) => t.name)).toContain(
      "blocks.1.mlp.gate",
    );
    // The 0.4 line lies inside the fitted y range.
    const range = (fig.layout.yaxis as { range: [number, number] }).range;
    expect(range[0]).toBeLessThan(0.4);
    expect(range[1]).toBeGreaterThan(0.99);
    for (const t of fig.data) {
      expect(t.type).toBe("scatter");
      expect(t.x).toHaveLength(20);
      expect(t.y).toHaveLength(20);
    }
    expect(fig.data[0]!.y![0]).toBeCloseTo(0.99, 5);
    // The threshold line, then the two knob changes (steps 12 and 15).
    const shapes = fig.layout.shapes as { x0: number; yref: string }[];
    expect(shapes).toHaveLength(3);
    expect(shapes[0]!.yref).toBe("y");
    expect(shapes.slice(1).map((sh) => sh.x0)).toEqual([12, 15]);
    expect(isPlainJson(fig)).toBe(true);
  });

  it("every step-axis figure marks the knob changes", () => {
    for (const fig of [
      plots.loss(run()),
      plots.ghostScale(run()),
      plots.layerLines(run(), "flipFrac"),
      plots.flipHeatmap(run()),
      plots.occupancy(run()),
    ]) {
      const shapes = (fig.layout.shapes ?? []) as { x0: number; line: { dash: string } }[];
      expect(shapes.filter((sh) => sh.line.dash === "dash").map((sh) => sh.x0)).toEqual([12, 15]);
      const labels = (fig.layout.annotations as { text: string }[]).map((a) => a.text);
      expect(labels).toEqual(["bridge 0.667→0.7<br>flipRate 0.01→0.02", "bridge 0.7→off"]);
      expect(plots.ghostScale(run(), { events: false }).layout.annotations).toBeUndefined();
    }
  });

  it("the paper style: print sizes and fonts, one legend entry per matrix kind, no run ids", () => {
    const id = "2026-11-26T14-03-12-poltergeist-small-ab12";
    const r = { ...run(), id };
    const [one, two, ghost, compare] = [
      plots.withStyle("paper", {}, () => plots.loss(r)),
      plots.withStyle("paper", { columns: 2 }, () => plots.loss(r)),
      plots.withStyle("paper", {}, () => plots.ghostScale(r)),
      plots.withStyle("paper", {}, () =>
        plots.compareRuns([r, { ...run(), id: "2026-11-26T15-00-00-ste-small-ab13" }]),
      ),
    ];
    expect(plots.currentStyle().name).toBe("notebook");
    expect([one!.layout.width, two!.layout.width]).toEqual([336, 672]); // 3.5 in and 7 in at 96 px/in
    expect((one!.layout.font as { size: number; family: string }).size).toBeCloseTo(10.67, 1); // 8 pt
    expect((one!.layout.font as { family: string }).family.startsWith("Arimo")).toBe(true);
    expect(one!.layout.meta).toEqual({ style: "paper", dpi: 300 });
    expect(JSON.stringify([one, ghost, compare])).not.toContain(id);
    expect((one!.layout.title as { text: string }).text).toBe("loss · poltergeist-small");
    const legend = ghost!.data.filter((t) => (t as { showlegend?: boolean }).showlegend !== false).map((t) => t.name);
    expect(legend).toEqual(["q·k", "v·o", "gate", "up·down"]);
    expect(compare!.data.filter((t) => !t.name?.endsWith("knob change")).map((t) => t.name)).toEqual([
      "poltergeist-small",
      "ste-small",
    ]);
    expect(() => plots.style("poster" as never)).toThrow(/"notebook" or "paper"/);
  });

  it("flipHeatmap is layer × step", () => {
    const fig = plots.flipHeatmap(run(), { metric: "flipFrac" });
    expect(fig.data).toHaveLength(1);
    const h = fig.data[0]!;
    expect(h.type).toBe("heatmap");
    expect(h.x).toHaveLength(20);
    expect(h.y).toHaveLength(14);
    expect(h.z).toHaveLength(14);
    expect(h.z![0]).toHaveLength(20);
    expect(h.z![3]![4]).toBeCloseTo((30 + 5) / 1000, 6);
    expect((fig.layout.yaxis as Record<string, unknown>).autorange).toBe("reversed");
  });

  it("flipHeatmap bins long runs", () => {
    const fig = plots.flipHeatmap(run(), { metric: "flips", maxColumns: 5 });
    const h = fig.data[0]!;
    expect(h.x).toEqual([1, 5, 9, 13, 17]);
    // Layer 0, steps 1..4: flips 1..4, mean 2.5.
    expect(h.z![0]![0]).toBe(2.5);
    expect(plots.flipHeatmap(run(), { logZ: true }).data[0]!.z![0]![0]).toBeCloseTo(Math.log10(0.001), 5);
  });

  it("occupancy stacks the five levels as fractions", () => {
    const fig = plots.occupancy(run());
    expect(fig.data.map((t) => t.name)).toEqual(["-1", "-b", "0", "+b", "+1"]);
    for (const t of fig.data) {
      expect(t.stackgroup).toBe("occupancy");
      expect(t.y).toHaveLength(20);
    }
    for (let s = 0; s < 20; s++) {
      const total = fig.data.reduce((acc, t) => acc + (t.y![s] as number), 0);
      expect(total).toBeCloseTo(1, 5);
    }
    expect(fig.data[0]!.y![0]).toBeCloseTo(101 / 1000, 6);
    const one = plots.occupancy(run(), { layer: "blocks.1.mlp.up" });
    expect(one.data[2]!.y![9]).toBeCloseTo(380 / 1000, 6);
    expect(JSON.stringify(one.layout.title)).toContain("blocks.1.mlp.up");
    expect(plots.occupancy(run(), { layer: 3 }).data[0]!.y).toHaveLength(20);
    expect(() => plots.occupancy(run(), { layer: "blocks.9.mlp.up" })).toThrow(/no layer/);
  });
});

describe("buffer histograms", () => {
  it("voteHistogram bins -127..127 from an Int8Array", () => {
    const votes = new Int8Array([0, 0, 0, 1, -1, 127, -127, 5]);
    const fig = plots.voteHistogram(votes, "blocks.0.mlp.up");
    const t = fig.data[0]!;
    expect(t.type).toBe("bar");
    expect(t.x).toHaveLength(255);
    expect(t.x![0]).toBe(-127);
    expect(t.x![254]).toBe(127);
    const y = t.y as number[];
    expect(y[127]).toBe(3);
    expect(y[128]).toBe(1);
    expect(y[0]).toBe(1);
    expect(y[254]).toBe(1);
    expect(y.reduce((a, b) => a + b, 0)).toBe(8);
    const title = JSON.stringify(fig.layout.title);
    expect(title).toContain("blocks.0.mlp.up");
    expect(title).toContain("saturated 25.0%");
  });

  it("voteHistogram accepts a table", () => {
    const table = tableFromArrays({ vote: new Int8Array([3, 3, -2]) });
    const y = plots.voteHistogram(table, "x").data[0]!.y as number[];
    expect(y[130]).toBe(2);
    expect(y[125]).toBe(1);
    expect(() => plots.voteHistogram(tableFromArrays({ a: new Int8Array(1), b: new Int8Array(1) }), "x")).toThrow(
      /vote/,
    );
    // The trainer's buffer tables: one row per weight with its matrix coordinates.
    const buffer = tableFromArrays({
      row: new Int32Array([0, 0, 1]),
      col: new Int32Array([0, 1, 0]),
      value: new Int8Array([-127, 0, 0]),
    });
    const yb = plots.voteHistogram(buffer, "x").data[0]!.y as number[];
    expect(yb[0]).toBe(1);
    expect(yb[127]).toBe(2);
  });

  it("flipProbabilityHistogram bins p and reports zeros", () => {
    const p = new Float32Array([0, 0, 0.1, 0.2, 0.5, 0.5]);
    const fig = plots.flipProbabilityHistogram(p, { bins: 5, pMax: 0.5, layerName: "blocks.0.attn.q" });
    const t = fig.data[0]!;
    expect(t.x).toHaveLength(5);
    expect(t.y).toEqual([0, 1, 1, 0, 2]);
    expect(JSON.stringify(fig.layout.title)).toContain("p=0 33.3%");
    const withZeros = plots.flipProbabilityHistogram(tableFromArrays({ p }), { bins: 5, includeZeros: true });
    expect((withZeros.data[0]!.y as number[])[0]).toBe(2);
    const buffer = tableFromArrays({ row: new Int32Array(6), col: Int32Array.from([0, 1, 2, 3, 4, 5]), value: p });
    expect(plots.flipProbabilityHistogram(buffer, { bins: 5, pMax: 0.5 }).data[0]!.y).toEqual([0, 1, 1, 0, 2]);
  });
});

describe("compareRuns", () => {
  it("overlays one trace per run", () => {
    const runs = [run("a"), run("b", 15, 1, 0.5)];
    const fig = plots.compareRuns(runs, { metric: "loss" });
    expect(fig.data.map((t) => t.name)).toEqual(["a", "a: knob change", "b", "b: knob change"]);
    expect(fig.data[0]!.x).toHaveLength(20);
    expect(fig.data[2]!.x).toHaveLength(15);
    // Different colors and dash patterns, so shared prefixes stay visible.
    expect((fig.data[0]!.line as { dash: string }).dash).not.toBe((fig.data[2]!.line as { dash: string }).dash);
    // The knob change sits on its run's line.
    const mark = fig.data[1]!;
    const i = (fig.data[0]!.x as number[]).indexOf((mark.x as number[])[0] as number);
    expect(i).toBeGreaterThanOrEqual(0);
    expect((mark.y as number[])[0]).toBe((fig.data[0]!.y as number[])[i]);

    const val = plots.compareRuns(runs, { metric: "valLoss", x: "tokens" });
    expect(val.data[0]!.x).toEqual([10 * 2048, 20 * 2048]);
    expect(val.data.find((t) => t.name === "b")!.y).toHaveLength(1);
    expect(val.data[0]!.mode).toBe("lines+markers");

    const time = plots.compareRuns(runs, { metric: "loss", x: "time", smooth: true });
    expect(time.data[0]!.x![1]).toBeCloseTo(1 / 60, 6);
    expect(() => plots.compareRuns(runs, { metric: "nope" })).toThrow(/no column "nope"/);
  });
});

describe("axes and titles fitted to the data", () => {
  it("voteHistogram spans the votes present; the flip-probability title rounds Σp", () => {
    const fig = plots.voteHistogram(Int8Array.from([-15, -3, 0, 0, 2, 11]));
    expect((fig.layout.xaxis as { range: number[] }).range).toEqual([-16.5, 16.5]);
    const p = plots.flipProbabilityHistogram(Float32Array.from({ length: 1000 }, (_, i) => (i % 3 === 0 ? 0 : 0.4969)));
    const title = (p.layout.title as { text: string }).text;
    expect(title).toContain("expected flips Σp ≈ 331");
  });
});

describe("large runs", () => {
  it("layer lines are binned to maxPoints", () => {
    const fig = plots.ghostScale(run(), { maxPoints: 4 });
    expect(fig.data).toHaveLength(14);
    // 20 steps in groups of 5: mean steps 3, 8, 13, 18.
    expect(fig.data[0]!.x).toEqual([3, 8, 13, 18]);
    // Layer 0: scale = 1 - 0.01·s, mean over steps 1..5 = 0.97.
    expect(fig.data[0]!.y![0]).toBeCloseTo(0.97, 5);
    expect(JSON.stringify(fig.layout.title)).toContain("mean over 5 steps");
  });
});

describe("ablation figures (the committed result files)", () => {
  const file = join(packageRoot(), "results", "ablation", "tiny-150steps.jsonl");

  it("reads a result file and summarises each variant over its seeds", () => {
    const rows = plots.readAblation(file);
    const s = plots.ablationSummary(rows).find((v) => v.variant === "default");
    expect(s?.seeds).toBe(2);
    expect(s!.min).toBeLessThanOrEqual(s!.mean);
    expect(s!.max).toBeGreaterThanOrEqual(s!.mean);
    expect(() => plots.readAblation(join(packageRoot(), "results", "nope.jsonl"))).toThrow(
      /no result file at .*nope\.jsonl/,
    );
  });

  it("ablationChart: the mean per variant, whiskers to the lowest and highest seed, in the order asked", () => {
    const rows = plots.readAblation(file);
    const fig = plots.ablationChart(rows, { variants: ["frozen", "default"], labels: { default: "Poltergeist" } });
    const t = fig.data[0] as { x: string[]; y: number[]; error_y: { array: number[]; arrayminus: number[] } };
    expect(t.x).toEqual(["frozen", "Poltergeist"]);
    const d = plots.ablationSummary(rows).find((v) => v.variant === "default")!;
    expect(t.y[1]).toBeCloseTo(d.mean, 12);
    expect(t.error_y.array[1]! + t.y[1]!).toBeCloseTo(d.max, 12);
    expect(t.y[1]! - t.error_y.arrayminus[1]!).toBeCloseTo(d.min, 12);
    expect(isPlainJson(fig)).toBe(true);
  });

  it("knobSweep: values in order on a log axis, each seed, the default marked", () => {
    const fig = plots.knobSweep(plots.readAblation(file), "flipRate", { defaultValue: 0.01 });
    expect(fig.data[0]!.x).toEqual([0.005, 0.01, 0.02, 0.05, 0.1]);
    expect(fig.data[1]!.x).toHaveLength(10);
    expect((fig.layout.xaxis as { type: string }).type).toBe("log");
    expect((fig.layout.shapes as { x0: number }[])[0]!.x0).toBe(0.01);
    expect(() => plots.knobSweep(plots.readAblation(file), "nope")).toThrow(/no variants "nope=…"/);
  });
});
