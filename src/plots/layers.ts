// Per-layer figures from the long-format layers table (one row per BitLinear layer per step).

import { LAYER_STATS, type StoredLayerStat } from "../tracking/layerStats.js";
import { indexLayers, numbers, tidy, tidyArray } from "./columns.js";
import { addEventMarkers } from "./events.js";
import {
  baseConfig,
  baseLayout,
  COLORS,
  layerColors,
  LEVEL_COLORS,
  LEVEL_NAMES,
  parseLayerName,
  runLabel,
  type Figure,
  type PlotlyTrace,
  type RunData,
} from "./figure.js";
import { currentStyle } from "./style.js";

/** Numeric columns of the layers table: the stored layer statistics (or any other column). */
export type LayerMetric = StoredLayerStat | (string & {});

const LAYER_METRIC_TITLES: Record<string, string> = Object.fromEntries(
  LAYER_STATS.flatMap((s) => ("title" in s ? [[s.name, s.title]] : [])),
);

function layersOf(run: RunData) {
  if (!run.layers) throw new Error(`plots: run ${run.id} has no layers table`);
  return run.layers;
}

export interface LayerLinesOptions {
  logY?: boolean;
  /** Dashed horizontal reference line (e.g. 0.4 for the Ghost Scale). */
  threshold?: number;
  title?: string;
  /** Layers drawn as one group each (see ghostScale): per layer its group label and lead layer, or null. */
  groups?: (names: readonly string[]) => ({ label: string; lead: number } | null)[];
  /**
   * At most this many points per line (default 2000): longer runs are binned into consecutive
   * groups of steps, each point the group's mean at its mean step. 84 layers × 10k steps would
   * otherwise put ~14 MB of JSON into a notebook output.
   */
  maxPoints?: number;
  /** Draw knob changes as dashed vertical lines with a label (default true). */
  events?: boolean;
}

/** One line per layer of any numeric layers-table column vs step. */
export function layerLines(run: RunData, metric: LayerMetric, opts: LayerLinesOptions = {}): Figure {
  const table = layersOf(run);
  const idx = indexLayers(table);
  const vals = numbers(table, metric, "layers table");
  const L = idx.layers.length;
  const S = idx.steps.length;
  // Dense layer × step grid; steps a layer did not report stay NaN (→ gaps).
  const grid = Array.from({ length: L }, () => new Float64Array(S).fill(NaN));
  for (let i = 0; i < vals.length; i++)
    (grid[idx.rowLayer[i] as number] as Float64Array)[idx.rowStep[i] as number] = vals[i] as number;

  const per = Math.max(1, Math.ceil(S / Math.max(1, Math.floor(opts.maxPoints ?? 2000))));
  const { x, rows } = per === 1 ? { x: idx.steps.slice(), rows: grid } : binColumns(idx.steps, grid, per);

  const names = idx.layers.map((l) => l.name);
  const colors = layerColors(names);
  const st = currentStyle();
  const paper = st.name === "paper";
  // Tied layers (opts.groups): one legend entry and color per group, the partner dashed.
  const group = opts.groups?.(names);
  const parsed = names.map(parseLayerName);
  // Paper: one legend entry per matrix kind (the first block's line); depth is the lightness.
  const kindOf = (j: number): string | null => {
    const g = group?.[j];
    if (g) return g.label.replace(/^blocks\.\d+ /, "");
    return parsed[j]?.kind ?? null;
  };
  const firstOfKind = new Map<string, number>();
  if (paper)
    names.forEach((_, j) => {
      const k = kindOf(j);
      if (k !== null && !firstOfKind.has(k) && (!group?.[j] || group[j]?.lead === j)) firstOfKind.set(k, j);
    });
  const data: PlotlyTrace[] = idx.layers.map((l, j) => {
    const g = group?.[j];
    const kind = paper ? kindOf(j) : null;
    const legend =
      kind !== null
        ? { name: kind, legendgroup: kind, showlegend: firstOfKind.get(kind) === j }
        : g
          ? { name: g.label, legendgroup: g.label, showlegend: g.lead === j }
          : { name: l.name };
    return {
      type: "scatter",
      mode: "lines",
      ...legend,
      x: tidyArray(x),
      y: tidyArray(rows[j] as Float64Array),
      line: {
        color: colors[g ? g.lead : j],
        width: paper ? st.lineWidth * 0.8 : 1.3,
        ...(g && g.lead !== j ? { dash: "dash" } : {}),
      },
      connectgaps: false,
      ...(g || kind !== null ? { hovertemplate: `${l.name}<br>step %{x}<br>%{y}<extra></extra>` } : {}),
    };
  });

  const layout = baseLayout({
    title: `${opts.title ?? metric}${per > 1 ? ` (mean over ${per} steps)` : ""} · ${runLabel(run)}`,
    xTitle: "step",
    yTitle: LAYER_METRIC_TITLES[metric] ?? metric,
    logY: opts.logY,
    hovermode: "closest",
  });
  if (opts.threshold !== undefined) {
    // Keep the reference line inside the plot, not on its edge: fit the axis to data and line.
    if (!opts.logY) {
      let lo = opts.threshold;
      let hi = opts.threshold;
      for (const r of rows)
        for (const v of r)
          if (Number.isFinite(v)) {
            lo = Math.min(lo, v);
            hi = Math.max(hi, v);
          }
      const pad = 0.06 * (hi - lo || Math.abs(hi) || 1);
      layout.yaxis = { ...(layout.yaxis as Record<string, unknown>), range: [tidy(lo - pad), tidy(hi + pad)] };
    }
    layout.shapes = [
      {
        type: "line",
        xref: "paper",
        yref: "y",
        x0: 0,
        x1: 1,
        y0: opts.threshold,
        y1: opts.threshold,
        line: { color: COLORS.threshold, width: 1, dash: "dot" },
      },
    ];
  }
  if (paper && firstOfKind.size > 0)
    layout.legend = {
      ...(layout.legend as Record<string, unknown>),
      title: { text: "lighter: deeper block", side: "top" },
      // Four entries a row: the seven kinds wrap onto two rows instead of running off the figure.
      entrywidth: 0.25,
      entrywidthmode: "fraction",
    };
  if (opts.events !== false) addEventMarkers(layout, run.events);
  return { data, layout, config: baseConfig() };
}

/** Means over consecutive groups of `per` columns (NaN ignored); x is each group's mean step. */
function binColumns(
  steps: readonly number[],
  grid: Float64Array[],
  per: number,
): { x: number[]; rows: Float64Array[] } {
  const C = Math.ceil(steps.length / per);
  const x = Array.from({ length: C }, (_, c) => {
    const group = steps.slice(c * per, (c + 1) * per);
    return group.reduce((a, b) => a + b, 0) / group.length;
  });
  const rows = grid.map((row) => {
    const out = new Float64Array(C);
    for (let c = 0; c < C; c++) {
      let sum = 0;
      let n = 0;
      for (let s = c * per; s < Math.min(row.length, (c + 1) * per); s++) {
        const v = row[s] as number;
        if (Number.isFinite(v)) {
          sum += v;
          n++;
        }
      }
      out[c] = n > 0 ? sum / n : NaN;
    }
    return out;
  });
  return { x, rows };
}

export interface GhostScaleOptions {
  logY?: boolean;
  /** Draw a dotted reference line at this scale (the seed watches s < 0.4). */
  threshold?: number;
  /** See LayerLinesOptions.maxPoints. */
  maxPoints?: number;
  /** Draw knob changes (default true). */
  events?: boolean;
}

/**
 * Pairs whose scales only enter the model as a product (a scale symmetry): q·k in the attention
 * logits, v·o in the attention output, up·down in the SwiGLU product. Their gradients are
 * equal up to that symmetry, so the two scales of a pair move together.
 */
export const SCALE_SYMMETRY_PAIRS: readonly (readonly [string, string])[] = [
  ["q", "k"],
  ["v", "o"],
  ["up", "down"],
];

/** Each layer's scale-symmetry group ("blocks.0 q·k") and the index of the group's first layer. */
export function scaleSymmetryGroups(names: readonly string[]): ({ label: string; lead: number } | null)[] {
  const parsed = names.map(parseLayerName);
  return parsed.map((p) => {
    if (!p) return null;
    const pair = SCALE_SYMMETRY_PAIRS.find((x) => x.includes(p.kind));
    if (!pair) return null;
    const lead = parsed.findIndex((o) => o !== null && o.block === p.block && o.kind === pair[0]);
    const partner = parsed.findIndex((o) => o !== null && o.block === p.block && o.kind === pair[1]);
    if (lead < 0 || partner < 0) return null;
    return { label: `blocks.${p.block} ${pair[0]}·${pair[1]}`, lead };
  });
}

/**
 * Ghost Scale s (γ for ste, rms(W) for fp) per layer vs step. The pairs of SCALE_SYMMETRY_PAIRS
 * share a legend entry and color (the partner dashed): only their product matters, so they
 * overlap by construction rather than hiding lines.
 */
export function ghostScale(run: RunData, opts: GhostScaleOptions = {}): Figure {
  return layerLines(run, "scale", { ...opts, title: "Ghost Scale", groups: scaleSymmetryGroups });
}

export interface HeatmapOptions {
  /** Layers-table column to show; default "flipFrac". */
  metric?: LayerMetric;
  /** Color by log10 of the value (zeros become blank). */
  logZ?: boolean;
  /**
   * At most this many step columns (default 1500): longer runs are binned into consecutive
   * groups of steps and each cell shows the group's mean, keeping the figure small.
   */
  maxColumns?: number;
  /** Draw knob changes (default true). */
  events?: boolean;
}

/** Heatmap layer × step of a per-layer metric (default: fraction of weights flipped). */
export function flipHeatmap(run: RunData, opts: HeatmapOptions = {}): Figure {
  const metric = opts.metric ?? "flipFrac";
  const table = layersOf(run);
  const idx = indexLayers(table);
  const vals = numbers(table, metric, "layers table");
  const L = idx.layers.length;
  const S = idx.steps.length;
  const maxCols = Math.max(1, Math.floor(opts.maxColumns ?? 1500));
  const per = Math.max(1, Math.ceil(S / maxCols));
  const C = Math.ceil(S / per);

  const sum = Array.from({ length: L }, () => new Float64Array(C));
  const cnt = Array.from({ length: L }, () => new Float64Array(C));
  for (let i = 0; i < vals.length; i++) {
    const v = vals[i] as number;
    if (!Number.isFinite(v)) continue;
    const l = idx.rowLayer[i] as number;
    const c = Math.floor((idx.rowStep[i] as number) / per);
    (sum[l] as Float64Array)[c] += v;
    (cnt[l] as Float64Array)[c] += 1;
  }
  const z = sum.map((row, l) =>
    Array.from(row, (s, c) => {
      const n = (cnt[l] as Float64Array)[c] as number;
      if (n === 0) return null;
      const mean = s / n;
      return opts.logZ ? (mean > 0 ? tidy(Math.log10(mean)) : null) : tidy(mean);
    }),
  );
  const x = Array.from({ length: C }, (_, c) => idx.steps[c * per] as number);
  // Paper figures are narrow: "blocks.3.mlp.up" becomes "3 up" (block, matrix).
  const paper = currentStyle().name === "paper";
  const y = idx.layers.map((l) => {
    const p = paper ? parseLayerName(l.name) : null;
    return p ? `${p.block} ${p.kind}` : l.name;
  });
  const label = LAYER_METRIC_TITLES[metric] ?? metric;

  const data: PlotlyTrace[] = [
    {
      type: "heatmap",
      name: metric,
      x,
      y,
      z,
      colorscale: "Viridis",
      colorbar: { title: { text: opts.logZ ? `log10 ${metric}` : metric, side: "right" } },
      hovertemplate: `step %{x}<br>%{y}<br>${opts.logZ ? "log10 " : ""}${metric} %{z}<extra></extra>`,
      hoverongaps: false,
    },
  ];
  const layout = baseLayout({
    title: `${label}${per > 1 ? ` (mean over ${per} steps)` : ""} · ${runLabel(run)}`,
    xTitle: "step",
    yTitle: paper ? "block, matrix" : "",
    hovermode: "closest",
  });
  // Layer 0 at the top, reading down the network like the model definition.
  layout.yaxis = {
    ...(layout.yaxis as Record<string, unknown>),
    autorange: "reversed",
    type: "category",
    showline: false,
    ticks: "",
  };
  layout.xaxis = { ...(layout.xaxis as Record<string, unknown>), showgrid: false };
  if (opts.events !== false) addEventMarkers(layout, run.events);
  return { data, layout, config: baseConfig() };
}

export interface OccupancyOptions {
  /** One layer by name ("blocks.3.mlp.up") or index; default: all layers summed. */
  layer?: string | number;
  /** Draw knob changes (default true). */
  events?: boolean;
}

const OCC_COLUMNS = ["occM2", "occM1", "occ0", "occP1", "occP2"] as const satisfies readonly StoredLayerStat[];

/** Stacked area of code level occupancy fractions (-1, -b, 0, +b, +1) over steps. */
export function occupancy(run: RunData, opts: OccupancyOptions = {}): Figure {
  const table = layersOf(run);
  const idx = indexLayers(table);
  const S = idx.steps.length;
  let only: number | null = null;
  if (opts.layer !== undefined) {
    const pos = idx.layers.findIndex((l) =>
      typeof opts.layer === "number" ? l.key === opts.layer : l.name === opts.layer,
    );
    if (pos < 0) {
      throw new Error(
        `plots: no layer ${JSON.stringify(opts.layer)} in run ${run.id} (layers: ${idx.layers
          .slice(0, 8)
          .map((l) => l.name)
          .join(", ")}${idx.layers.length > 8 ? ", …" : ""})`,
      );
    }
    only = pos;
  }

  const counts = OCC_COLUMNS.map(() => new Float64Array(S));
  OCC_COLUMNS.forEach((col, k) => {
    const v = numbers(table, col, "layers table");
    const acc = counts[k] as Float64Array;
    for (let i = 0; i < v.length; i++) {
      if (only !== null && idx.rowLayer[i] !== only) continue;
      const x = v[i] as number;
      if (Number.isFinite(x)) acc[idx.rowStep[i] as number] += x;
    }
  });
  const total = new Float64Array(S);
  for (const c of counts) for (let s = 0; s < S; s++) total[s] += c[s] as number;

  const data: PlotlyTrace[] = OCC_COLUMNS.map((_, k) => ({
    type: "scatter",
    mode: "lines",
    name: LEVEL_NAMES[k] as string,
    x: idx.steps.slice(),
    y: Array.from(counts[k] as Float64Array, (c, s) =>
      (total[s] as number) > 0 ? tidy(c / (total[s] as number)) : null,
    ),
    stackgroup: "occupancy",
    line: { color: LEVEL_COLORS[k], width: 0.5 },
    fillcolor: LEVEL_COLORS[k],
    hovertemplate: "%{y:.2%}",
  }));
  const scope = only === null ? "all layers" : (idx.layers[only] as { name: string }).name;
  const layout = baseLayout({
    title: `code level occupancy · ${scope} · ${runLabel(run)}`,
    xTitle: "step",
    yTitle: "fraction of weights",
  });
  layout.yaxis = { ...(layout.yaxis as Record<string, unknown>), range: [0, 1], tickformat: ".0%" };
  // Legend top to bottom in the same order as the stack (+1 on top).
  layout.legend = { ...(layout.legend as Record<string, unknown>), traceorder: "reversed" };
  if (opts.events !== false) addEventMarkers(layout, run.events);
  return { data, layout, config: baseConfig() };
}
