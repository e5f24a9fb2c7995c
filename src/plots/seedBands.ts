// Families of runs: runs that differ only in a grouping field (the seed, by default) drawn as
// their mean with a band (± one standard deviation, or min–max), one color per family.
//   plots.compareRuns(runs, { groupBy: "seed" })

import type { Table } from "apache-arrow";
import { ema, numbers, smoothingFactor, tidyArray } from "./columns.js";
import { baseConfig, baseLayout, paletteColor, type Figure, type PlotlyTrace, type RunData } from "./figure.js";
import { metricSeries, SERIES_TITLES } from "../tracking/series.js";
import type { CompareOptions } from "./run.js";

export interface BandOptions extends CompareOptions {
  /**
   * Config field(s) the runs of one family may differ in (dotted paths); default "seed". null:
   * every run is its own family (one line per run, for metrics compareRuns cannot read).
   */
  groupBy?: string | readonly string[] | null;
  /** "std": mean ± one standard deviation (default); "minmax": the range of the runs. */
  band?: "std" | "minmax";
}

/** Config fields that say how or where a run ran, not what it trained: never split families. */
const BOOKKEEPING = new Set([
  "name",
  "home",
  "threads",
  "device",
  "plan",
  "backend",
  "worldSize",
  "distributed",
  "data.cacheDir",
]);

type BandRun = RunData & {
  meta?: { name?: string | undefined; config?: Record<string, unknown> } | undefined;
  custom?: Table;
};

function flat(obj: unknown, prefix = "", out = new Map<string, string>()): Map<string, string> {
  if (obj !== null && typeof obj === "object" && !Array.isArray(obj)) {
    for (const [k, v] of Object.entries(obj as Record<string, unknown>)) {
      const key = prefix ? `${prefix}.${k}` : k;
      if (v !== null && typeof v === "object" && !Array.isArray(v)) flat(v, key, out);
      else out.set(key, JSON.stringify(v));
    }
  }
  return out;
}

function rgba(hex: string, alpha: number): string {
  const n = parseInt(hex.slice(1), 16);
  return `rgba(${(n >> 16) & 255},${(n >> 8) & 255},${n & 255},${alpha})`;
}

interface Family {
  key: string;
  label: string;
  runs: BandRun[];
}

/** Groups runs whose configs agree on everything but `groupBy` (and bookkeeping fields). */
export function runFamilies(runs: readonly BandRun[], groupBy: string | readonly string[] | null = "seed"): Family[] {
  if (groupBy === null) return runs.map((r) => ({ key: r.id, label: r.meta?.name ?? r.name ?? r.id, runs: [r] }));
  const by = typeof groupBy === "string" ? [groupBy] : [...groupBy];
  const configs = runs.map((r) => flat(r.meta?.config ?? {}));
  const keep = (k: string) => !BOOKKEEPING.has(k) && !by.some((b) => k === b || k.startsWith(`${b}.`));
  const keys = [...new Set(configs.flatMap((c) => [...c.keys()]))].filter(keep).sort();
  const families = new Map<string, Family>();
  runs.forEach((r, i) => {
    const key = keys.map((k) => `${k}=${configs[i]!.get(k) ?? "∅"}`).join("|");
    const f = families.get(key) ?? { key, label: "", runs: [] };
    f.runs.push(r);
    families.set(key, f);
  });
  const list = [...families.values()];
  // A family's label: the fields that tell it apart from the others.
  const differing = keys.filter((k) => new Set(configs.map((c) => c.get(k))).size > 1);
  for (const f of list) {
    const c = flat(f.runs[0]!.meta?.config ?? {});
    const parts = differing.map((k) => `${k}=${c.get(k) === undefined ? "∅" : String(JSON.parse(c.get(k)!))}`);
    f.label = parts.join(", ") || f.runs[0]!.meta?.name?.replace(/ #\d+$/, "") || f.runs[0]!.id;
  }
  // Families in the order of their labels (numbers by value): the same colors every time.
  return list.sort((a, b) => a.label.localeCompare(b.label, "en", { numeric: true }));
}

/** One metric of several families of runs: the mean of each family with a band around it. */
export function compareRunsWithBands(runs: readonly BandRun[], opts: BandOptions = {}): Figure {
  const metric = opts.metric ?? "loss";
  const xKind = opts.x ?? "step";
  const alpha = smoothingFactor(opts.smooth);
  const families = runFamilies(runs, opts.groupBy === undefined ? "seed" : opts.groupBy);
  const data: PlotlyTrace[] = [];

  families.forEach((fam, g) => {
    // Per step: the (smoothed) value of every run of the family that has the step.
    const at = new Map<number, { ys: number[]; xs: number[] }>();
    for (const run of fam.runs) {
      const s = metricSeries(run, metric);
      const steps = numbers(s, "step");
      let ys: ArrayLike<number> = numbers(s, metric);
      if (alpha !== null && metric !== "valLoss" && metric !== "valBpb") ys = ema(ys, alpha);
      const t = numbers(s, "time");
      const tok = numbers(s, "tokens");
      const t0 = t.length > 0 ? (t[0] as number) : 0;
      for (let i = 0; i < steps.length; i++) {
        const x = xKind === "step" ? steps[i]! : xKind === "tokens" ? tok[i]! : (t[i]! - t0) / 60000;
        const e = at.get(steps[i]!) ?? { ys: [], xs: [] };
        e.ys.push(ys[i]!);
        e.xs.push(x);
        at.set(steps[i]!, e);
      }
    }
    const steps = [...at.keys()].sort((a, b) => a - b);
    const xs: number[] = [];
    const mean: number[] = [];
    const lo: number[] = [];
    const hi: number[] = [];
    for (const s of steps) {
      const { ys, xs: xv } = at.get(s)!;
      const finite = ys.filter(Number.isFinite);
      if (finite.length === 0) continue;
      const m = finite.reduce((a, b) => a + b, 0) / finite.length;
      let l = m;
      let h = m;
      if (opts.band === "minmax") {
        l = Math.min(...finite);
        h = Math.max(...finite);
      } else if (finite.length > 1) {
        const sd = Math.sqrt(finite.reduce((a, b) => a + (b - m) ** 2, 0) / (finite.length - 1));
        l = m - sd;
        h = m + sd;
      }
      xs.push(xv.reduce((a, b) => a + b, 0) / xv.length);
      mean.push(m);
      lo.push(l);
      hi.push(h);
    }
    const color = paletteColor(g);
    const n = fam.runs.length;
    const group = `family-${g}`;
    const bandName = opts.band === "minmax" ? "min–max" : "±1 sd";
    // The band: an invisible lower edge, then the upper edge filled down to it.
    const edge = (y: number[], fill: boolean) => ({
      type: "scatter",
      mode: "lines",
      name: `${fam.label} ${bandName}`,
      legendgroup: group,
      showlegend: false,
      x: tidyArray(xs),
      y: tidyArray(y),
      line: { width: 0, color },
      ...(fill ? { fill: "tonexty", fillcolor: rgba(color, 0.2) } : {}),
      hoverinfo: "skip",
    });
    if (n > 1) data.push(edge(lo, false), edge(hi, true));
    data.push({
      type: "scatter",
      mode: xs.length < 30 ? "lines+markers" : "lines",
      name: n > 1 ? `${fam.label} (mean of ${n})` : fam.label,
      legendgroup: group,
      x: tidyArray(xs),
      y: tidyArray(mean),
      line: { color, width: 2 },
      marker: { color, size: 5 },
    });
  });

  const by = typeof opts.groupBy === "string" ? opts.groupBy : (opts.groupBy ?? ["seed"]).join(", ");
  const layout = baseLayout({
    title:
      opts.groupBy === null
        ? `${metric} · ${runs.length} run${runs.length === 1 ? "" : "s"}`
        : `${metric} · ${families.length} famil${families.length === 1 ? "y" : "ies"} of ${runs.length} runs (mean ${opts.band === "minmax" ? "and min–max" : "± 1 sd"} over ${by})`,
    xTitle: xKind === "step" ? "step" : xKind === "tokens" ? "tokens" : "time (minutes)",
    yTitle: SERIES_TITLES[metric] ?? metric,
    logY: opts.logY,
    hovermode: "x unified",
  });
  return { data, layout, config: baseConfig() };
}
