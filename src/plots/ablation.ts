// Figures of the ablation result files under results/ (one JSON line per run, written by
// test/bench/ablation/run.mjs): variants compared (mean and seed range), and one-knob sweeps.
// docs/results.md and notebook 06 draw their figures with these.

import { existsSync, readFileSync } from "node:fs";
import { baseConfig, baseLayout, COLORS, paletteColor, type Figure, type PlotlyTrace } from "./figure.js";
import { currentStyle } from "./style.js";

/** One line of a results/ablation/*.jsonl file. */
export interface AblationRow {
  variant: string;
  preset: string;
  quant: string;
  seed: number;
  steps: number;
  batch: number;
  tokens: number;
  trainLoss: number;
  heldOutLoss: number;
  wikitextBpb: number | null;
  knobs?: Record<string, unknown>;
}

/** Reads a result file; a missing or empty file is an error that names it. */
export function readAblation(path: string): AblationRow[] {
  if (!existsSync(path)) throw new Error(`readAblation: no result file at ${path}`);
  const rows = readFileSync(path, "utf8")
    .split("\n")
    .filter((l) => l.trim() !== "")
    .map((l, i) => {
      try {
        return JSON.parse(l) as AblationRow;
      } catch {
        throw new Error(`readAblation: ${path} line ${i + 1} is not JSON`);
      }
    });
  if (rows.length === 0) throw new Error(`readAblation: ${path} holds no runs`);
  return rows;
}

export type AblationMetric = "heldOutLoss" | "wikitextBpb" | "trainLoss";

/** Mean, lowest and highest seed of a metric per variant, in first-seen order. */
export function ablationSummary(
  rows: readonly AblationRow[],
  metric: AblationMetric = "heldOutLoss",
): { variant: string; seeds: number; mean: number; min: number; max: number }[] {
  const names = [...new Set(rows.map((r) => r.variant))];
  return names.flatMap((variant) => {
    const xs = rows
      .filter((r) => r.variant === variant)
      .map((r) => r[metric])
      .filter((x): x is number => typeof x === "number" && Number.isFinite(x));
    if (xs.length === 0) return [];
    const mean = xs.reduce((a, b) => a + b, 0) / xs.length;
    return [{ variant, seeds: xs.length, mean, min: Math.min(...xs), max: Math.max(...xs) }];
  });
}

const METRIC_TITLES: Record<AblationMetric, string> = {
  heldOutLoss: "held-out loss (nats/byte)",
  wikitextBpb: "WikiText-2 valid bits per byte",
  trainLoss: "train loss (nats/byte)",
};

export interface AblationChartOptions {
  /** Variants to show, in this order (default: all, in file order). */
  variants?: readonly string[];
  /** Display names of variants (default: the variant names). */
  labels?: Readonly<Record<string, string>>;
  metric?: AblationMetric;
  title?: string;
}

/**
 * One point per variant: the mean over seeds, whiskers from the lowest to the highest seed.
 * Points, not bars: the axis starts near the data (the differences are small against the
 * values), where bar lengths would exaggerate them.
 */
export function ablationChart(rows: readonly AblationRow[], opts: AblationChartOptions = {}): Figure {
  const metric = opts.metric ?? "heldOutLoss";
  const order = opts.variants;
  const s = ablationSummary(order ? rows.filter((r) => order.includes(r.variant)) : rows, metric);
  if (order) s.sort((a, b) => order.indexOf(a.variant) - order.indexOf(b.variant));
  const paper = currentStyle().name === "paper";
  const data: PlotlyTrace[] = [
    {
      type: "scatter",
      mode: "markers",
      name: METRIC_TITLES[metric],
      x: s.map((v) => opts.labels?.[v.variant] ?? v.variant),
      y: s.map((v) => v.mean),
      marker: { color: s.map((_, i) => paletteColor(i)), size: paper ? 8 : 11, symbol: "diamond" },
      error_y: {
        type: "data",
        symmetric: false,
        array: s.map((v) => v.max - v.mean),
        arrayminus: s.map((v) => v.mean - v.min),
        color: "#333",
        thickness: paper ? 1 : 1.5,
        width: paper ? 4 : 7,
      },
      hovertemplate: "%{x}: %{y:.4f}<extra></extra>",
    },
  ];
  const layout = baseLayout({
    title: opts.title ?? "",
    xTitle: "",
    yTitle: METRIC_TITLES[metric],
    hovermode: "closest",
  });
  // The differences are small against the values: start the axis near the data, not at 0.
  const lo = Math.min(...s.map((v) => v.min));
  const hi = Math.max(...s.map((v) => v.max));
  const pad = 0.15 * (hi - lo || Math.abs(hi) || 1);
  layout.yaxis = { ...(layout.yaxis as Record<string, unknown>), range: [lo - pad, hi + pad], nticks: 6 };
  layout.xaxis = { ...(layout.xaxis as Record<string, unknown>), tickangle: 0, showgrid: false };
  layout.showlegend = false;
  return { data, layout, config: baseConfig() };
}

export interface KnobSweepOptions {
  /** The knob's default value, marked with a dotted line. */
  defaultValue?: number;
  metric?: AblationMetric;
  /** Logarithmic x axis (default: true when the values span more than a factor of 5). */
  logX?: boolean;
  title?: string;
}

/** One knob's sweep: the mean over seeds per value (line), each seed's value (dots). */
export function knobSweep(rows: readonly AblationRow[], knob: string, opts: KnobSweepOptions = {}): Figure {
  const metric = opts.metric ?? "heldOutLoss";
  const s = ablationSummary(
    rows.filter((r) => r.variant.startsWith(`${knob}=`)),
    metric,
  );
  if (s.length === 0) throw new Error(`knobSweep: no variants "${knob}=…" in the rows`);
  const points = s.map((v) => ({ ...v, x: Number(v.variant.slice(knob.length + 1)) })).sort((a, b) => a.x - b.x);
  const xs = points.map((p) => p.x);
  const seeds = rows.filter((r) => r.variant.startsWith(`${knob}=`));
  const st = currentStyle();
  const data: PlotlyTrace[] = [
    {
      type: "scatter",
      mode: "lines+markers",
      name: "mean of seeds",
      x: xs,
      y: points.map((p) => p.mean),
      line: { color: COLORS.train, width: st.lineWidth * 1.25 },
      marker: { color: COLORS.train, size: st.name === "paper" ? 5 : 7 },
    },
    {
      type: "scatter",
      mode: "markers",
      name: "each seed",
      x: seeds.map((r) => Number(r.variant.slice(knob.length + 1))),
      y: seeds.map((r) => r[metric]),
      marker: { color: "#888", size: st.name === "paper" ? 3.5 : 5 },
    },
  ];
  const logX = opts.logX ?? Math.max(...xs) / Math.max(Math.min(...xs), Number.MIN_VALUE) > 5;
  const layout = baseLayout({
    title: opts.title ?? "",
    xTitle: knob,
    yTitle: METRIC_TITLES[metric],
    hovermode: "closest",
  });
  layout.xaxis = {
    ...(layout.xaxis as Record<string, unknown>),
    type: logX ? "log" : "linear",
    tickvals: xs,
    ticktext: xs.map((x) => String(x)),
  };
  if (opts.defaultValue !== undefined) {
    layout.shapes = [
      {
        type: "line",
        xref: "x",
        yref: "paper",
        x0: opts.defaultValue,
        x1: opts.defaultValue,
        y0: 0,
        y1: 1,
        line: { dash: "dot", color: COLORS.event, width: 1 },
      },
    ];
    layout.annotations = [
      {
        x: logX ? Math.log10(opts.defaultValue) : opts.defaultValue,
        xref: "x",
        y: 1,
        yref: "paper",
        yanchor: "top",
        xanchor: "left",
        xshift: 3,
        text: "default",
        showarrow: false,
        font: { size: st.smallSize, color: "#555" },
      },
    ];
  }
  return { data, layout, config: baseConfig() };
}
