// A sweep's metric against one swept knob: every point as a marker, and the mean over seeds as a
// line, one color per combination of the other swept fields.
//   const r = await sweep("spec.json"); plots.sweep(r, "knobs.flipRate");

import type { Table } from "apache-arrow";
import { SUMMARY_COLUMNS } from "../tracking/runReader.js";
import { baseConfig, baseLayout, paletteColor, type Figure, type PlotlyTrace } from "./figure.js";

export interface SweepPlotOptions {
  /** Results column to plot (default: the sweep's metric, else finalValLoss, else finalTrainLoss). */
  metric?: string;
  /** Log scale on the knob's axis (e.g. a learning rate). */
  logX?: boolean;
}

/** What plots.sweep accepts: sweep()'s result, or its results table. */
export type SweepLike = Table | { table: Table; metric?: string };

/** Results columns that are not swept fields. */
const NOT_SWEPT = new Set<string>(["point", "key", "status", "runId", ...SUMMARY_COLUMNS]);

const METRIC_COLUMN: Record<string, string> = { loss: "finalTrainLoss", valLoss: "finalValLoss", valBpb: "valBpb" };

function values(t: Table, name: string): unknown[] {
  const c = t.getChild(name);
  if (!c)
    throw new Error(
      `plots.sweep: the results have no column "${name}" (columns: ${t.schema.fields.map((f) => f.name).join(", ")})`,
    );
  return Array.from({ length: t.numRows }, (_, i) => c.get(i) as unknown);
}

export function sweepPlot(result: SweepLike, knob: string, opts: SweepPlotOptions = {}): Figure {
  const table = "table" in result && !("numRows" in result) ? result.table : (result as Table);
  const sweepMetric = "table" in result && !("numRows" in result) ? result.metric : undefined;
  const fields = table.schema.fields.map((f) => f.name);
  const swept = fields.filter((f) => !NOT_SWEPT.has(f));
  if (!swept.includes(knob))
    throw new Error(`plots.sweep: "${knob}" is not a swept field (swept: ${swept.join(", ") || "none"})`);
  const wanted = opts.metric ?? (sweepMetric ? (METRIC_COLUMN[sweepMetric] ?? sweepMetric) : undefined);
  const metric = wanted ?? (values(table, "finalValLoss").some((v) => v !== null) ? "finalValLoss" : "finalTrainLoss");
  const ys = values(table, metric).map((v) => (v === null || v === undefined ? null : Number(v)));
  const xs = values(table, knob);
  const status = fields.includes("status") ? values(table, "status") : [];
  const points = fields.includes("point") ? values(table, "point") : [];
  // Families: the other swept fields except the seed (averaged over).
  const others = swept.filter((f) => f !== knob && f !== "seed");
  const otherVals = others.map((f) => values(table, f));
  const groups = new Map<string, number[]>();
  for (let i = 0; i < table.numRows; i++) {
    const key = others.map((f, j) => `${f}=${String(otherVals[j]![i])}`).join(", ");
    groups.set(key, [...(groups.get(key) ?? []), i]);
  }
  const numericX = xs.every((x) => x === null || typeof x === "number");
  const data: PlotlyTrace[] = [];
  [...groups.entries()].forEach(([key, rows], g) => {
    const color = paletteColor(g);
    const label = key || metric;
    const measured = rows.filter((i) => ys[i] !== null && Number.isFinite(ys[i]!));
    data.push({
      type: "scatter",
      mode: "markers",
      name: `${label}: points`,
      legendgroup: label,
      showlegend: false,
      x: measured.map((i) => xs[i]),
      y: measured.map((i) => ys[i]),
      text: measured.map(
        (i) =>
          `point ${String(points[i] ?? i)}${status[i] && status[i] !== "finished" ? ` (${String(status[i])})` : ""}`,
      ),
      marker: { color, size: 8, opacity: 0.55 },
      hovertemplate: `%{text}<br>${knob} %{x}<br>${metric} %{y:.4f}<extra></extra>`,
    });
    const byX = new Map<string, { x: unknown; ys: number[] }>();
    for (const i of measured) {
      const k = JSON.stringify(xs[i]);
      const e = byX.get(k) ?? { x: xs[i], ys: [] };
      e.ys.push(ys[i]!);
      byX.set(k, e);
    }
    const line = [...byX.values()].sort((a, b) =>
      numericX ? (a.x as number) - (b.x as number) : String(a.x).localeCompare(String(b.x)),
    );
    data.push({
      type: "scatter",
      mode: "lines+markers",
      name: `${label} (mean over seeds)`,
      legendgroup: label,
      x: line.map((e) => e.x),
      y: line.map((e) => e.ys.reduce((a, b) => a + b, 0) / e.ys.length),
      line: { color, width: 2 },
      marker: { color, size: 6, symbol: "diamond" },
    });
  });
  const layout = baseLayout({
    title: `${metric} vs ${knob} · ${table.numRows} points`,
    xTitle: knob,
    yTitle: metric,
    hovermode: "closest",
  });
  if (opts.logX) (layout["xaxis"] as Record<string, unknown>)["type"] = "log";
  if (!numericX) (layout["xaxis"] as Record<string, unknown>)["type"] = "category";
  return { data, layout, config: baseConfig() };
}
