// Figure types and shared styling for the Plotly figure builders.
//
// A Figure is plain JSON in Plotly's own schema ({data, layout, config}). Nothing here imports
// plotly.js: the notebook hands the JSON to the front end (application/vnd.plotly.v1+json) and
// the exporter hands it to a headless browser, so the library never loads the 4.8 MB bundle
// just to build a figure.

import type { Table } from "apache-arrow";

/** One Plotly trace. Only the keys the builders use are spelled out; any Plotly attribute is allowed. */
export interface PlotlyTrace {
  type?: string;
  name?: string;
  x?: unknown[];
  y?: unknown[];
  z?: unknown[][];
  mode?: string;
  [attribute: string]: unknown;
}

/** A Plotly figure as plain JSON. */
export interface Figure {
  data: PlotlyTrace[];
  layout: Record<string, unknown>;
  config?: Record<string, unknown>;
}

/** One line of events.jsonl (see the run store contract); only `step`/`kind` are required. */
export interface RunEvent {
  step: number;
  kind: string;
  knob?: string;
  old?: unknown;
  new?: unknown;
  [key: string]: unknown;
}

/**
 * What the builders need from a run: the metrics table (one row per step), the layers table
 * (long format, one row per BitLinear layer per step) and the events. Structural on purpose:
 * any run object with these fields works.
 */
export interface RunData {
  id: string;
  name?: string | undefined;
  /** run.json; only its name is used (for labels). */
  meta?: { name?: string | undefined } | undefined;
  metrics: Table;
  layers: Table;
  /** events.jsonl records; read defensively, so loosely typed records (as parsed JSON) are accepted. */
  events?: readonly RunEvent[] | readonly Record<string, unknown>[] | undefined;
}

/** Categorical palette (for runs, or layers whose names we cannot parse). */
export const PALETTE: readonly string[] = [
  "#1f6fb4",
  "#e8710a",
  "#2a9d3c",
  "#c8312f",
  "#8a5cc2",
  "#8c564b",
  "#d45fb4",
  "#6b6b6b",
  "#a5a512",
  "#17a6b8",
];

/** Fixed colors for the training-loss figure's roles. */
export const COLORS = {
  train: "#1f6fb4",
  val: "#e8710a",
  event: "#7a7a7a",
  threshold: "#c8312f",
} as const;

/** Code level colors, from -1 to +1 (diverging: blue negative, grey zero, red positive). */
export const LEVEL_COLORS: readonly string[] = ["#1f4e8c", "#7fb0dd", "#b8b8b8", "#ec9a86", "#b2182b"];
/** Display names of code levels -2..+2 (the data contract's naming). */
export const LEVEL_NAMES: readonly string[] = ["-1", "-b", "0", "+b", "+1"];

/** Color of the i-th item of a categorical series (runs, unnamed layers). */
export function paletteColor(i: number): string {
  const n = PALETTE.length;
  return PALETTE[((i % n) + n) % n] as string;
}

// Hue per BitLinear matrix kind, so the 7 matrices of a block are told apart at a glance and
// the same matrix in different blocks shares a hue (lightness then encodes depth).
const KIND_HUES: Record<string, number> = {
  q: 210,
  k: 250,
  v: 180,
  o: 285,
  gate: 30,
  up: 0,
  down: 120,
};

/** Parses "blocks.3.mlp.up" / "blocks.0.attn.q" into block index and matrix kind. */
export function parseLayerName(name: string): { block: number; kind: string } | null {
  const m = /^(?:.*\.)?blocks?\.(\d+)\.(?:[A-Za-z_]+\.)*([A-Za-z_]+)$/.exec(name);
  if (!m) return null;
  return { block: Number(m[1]), kind: m[2] as string };
}

/**
 * One color per layer: hue by matrix kind (q, k, v, o, gate, up, down), darker for earlier
 * blocks, lighter for deeper ones. Falls back to the categorical palette by position when a
 * name does not follow the "blocks.N.….kind" pattern.
 */
export function layerColors(names: readonly string[]): string[] {
  const parsed = names.map(parseLayerName);
  const blocks = parsed.reduce((m, p) => (p ? Math.max(m, p.block) : m), 0) + 1;
  return names.map((_, i) => {
    const p = parsed[i];
    const hue = p ? KIND_HUES[p.kind] : undefined;
    if (!p || hue === undefined) return paletteColor(i);
    const t = blocks > 1 ? p.block / (blocks - 1) : 0;
    const lightness = Math.round(30 + 35 * t);
    return `hsl(${hue}, 65%, ${lightness}%)`;
  });
}

export interface LayoutOptions {
  title?: string | undefined;
  xTitle?: string | undefined;
  yTitle?: string | undefined;
  logY?: boolean | undefined;
  hovermode?: string | false | undefined;
}

function axis(title: string | undefined, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    title: { text: title ?? "" },
    gridcolor: "#ebebeb",
    zeroline: false,
    showline: true,
    linecolor: "#9a9a9a",
    ticks: "outside",
    tickcolor: "#9a9a9a",
    automargin: true,
    ...extra,
  };
}

/** The common light theme every builder starts from. Width/height are left to the display or exporter. */
export function baseLayout(opts: LayoutOptions = {}): Record<string, unknown> {
  return {
    title: { text: opts.title ?? "", x: 0.01, xanchor: "left", font: { size: 16 } },
    font: { family: "Helvetica Neue, Helvetica, Arial, sans-serif", size: 12, color: "#222" },
    paper_bgcolor: "#ffffff",
    plot_bgcolor: "#ffffff",
    margin: { l: 64, r: 24, t: 56, b: 52 },
    xaxis: axis(opts.xTitle),
    yaxis: axis(opts.yTitle, opts.logY ? { type: "log" } : {}),
    legend: { bgcolor: "rgba(255,255,255,0.7)", bordercolor: "#dddddd", borderwidth: 1 },
    hovermode: opts.hovermode ?? "x unified",
  };
}

/** Default Plotly config: responsive in notebooks, no Plotly logo, no link to the cloud editor. */
export function baseConfig(): Record<string, unknown> {
  return { responsive: true, displaylogo: false, showLink: false };
}

/**
 * JSON text of a figure. Typed arrays (which JSON.stringify would turn into {"0":…} objects)
 * become plain arrays, and non-finite numbers become null (Plotly draws a gap).
 */
export function figureJson(fig: Figure): string {
  return JSON.stringify({ data: fig.data, layout: fig.layout, config: fig.config ?? {} }, (_key, value: unknown) => {
    if (ArrayBuffer.isView(value) && !(value instanceof DataView)) {
      return Array.from(value as unknown as ArrayLike<number | bigint>, (v) => (typeof v === "bigint" ? Number(v) : v));
    }
    return value;
  });
}

/** Human-readable knob value for event annotations: 3 significant digits, null shown as "off". */
export function formatValue(v: unknown): string {
  if (v === null) return "off";
  if (v === undefined) return "?";
  if (typeof v === "number") {
    if (!Number.isFinite(v)) return String(v);
    if (Number.isInteger(v)) return String(v);
    const a = Math.abs(v);
    if (a !== 0 && (a < 1e-3 || a >= 1e5)) return v.toExponential(2).replace(/\.?0+e/, "e");
    return String(Number(v.toPrecision(3)));
  }
  if (typeof v === "string") return v;
  return JSON.stringify(v);
}
