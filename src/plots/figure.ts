// Figure types and shared styling for the Plotly figure builders.
//
// A Figure is plain JSON in Plotly's own schema ({data, layout, config}). Nothing here imports
// plotly.js: the notebook hands the JSON to the front end (application/vnd.plotly.v1+json) and
// the exporter hands it to a headless browser, so the library never loads the 4.8 MB bundle
// just to build a figure.

import type { Table } from "apache-arrow";
import { currentStyle, KIND_COLORS, PALETTE } from "./style.js";

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

export { PALETTE };

/** Fixed colors for the training-loss figure's roles (from the colour-blind-safe palette). */
export const COLORS = {
  train: "#0072B2",
  val: "#D55E00",
  event: "#6b6b6b",
  threshold: "#D55E00",
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

/** Parses "blocks.3.mlp.up" / "blocks.0.attn.q" into block index and matrix kind. */
export function parseLayerName(name: string): { block: number; kind: string } | null {
  const m = /^(?:.*\.)?blocks?\.(\d+)\.(?:[A-Za-z_]+\.)*([A-Za-z_]+)$/.exec(name);
  if (!m) return null;
  return { block: Number(m[1]), kind: m[2] as string };
}

/** `hex` mixed with white: 0 keeps it, 1 is white. */
function lighten(hex: string, amount: number): string {
  const n = parseInt(hex.slice(1), 16);
  const mix = (c: number) => Math.round(c + (255 - c) * amount);
  const [r, g, b] = [mix((n >> 16) & 255), mix((n >> 8) & 255), mix(n & 255)];
  return `#${((1 << 24) | (r << 16) | (g << 8) | b).toString(16).slice(1)}`;
}

/**
 * One color per layer: the hue of its matrix kind (KIND_COLORS: q, k, v, o, gate, up, down),
 * full strength for the first block and lighter for deeper ones. Falls back to the
 * categorical palette by position when a name does not follow the "blocks.N.….kind" pattern.
 */
export function layerColors(names: readonly string[]): string[] {
  const parsed = names.map(parseLayerName);
  const blocks = parsed.reduce((m, p) => (p ? Math.max(m, p.block) : m), 0) + 1;
  return names.map((_, i) => {
    const p = parsed[i];
    const base = p ? KIND_COLORS[p.kind] : undefined;
    if (!p || base === undefined) return paletteColor(i);
    const t = blocks > 1 ? p.block / (blocks - 1) : 0;
    return lighten(base, 0.55 * t);
  });
}

/**
 * Labels for runs: the run's name (else a short alias from its id, e.g. "poltergeist-small"),
 * never the machine id unless the style asks (`style(name, { runIds: true })`). Runs that
 * would share a label are numbered ("quickstart", "quickstart (2)").
 */
export function runLabels(runs: readonly Pick<RunData, "id" | "name" | "meta">[]): string[] {
  const withIds = currentStyle().runIds;
  const base = runs.map((run) => {
    const name = run.name ?? run.meta?.name;
    const short = name && name !== run.id ? name : runAlias(run.id);
    return withIds && short !== run.id ? `${short} (${run.id})` : short;
  });
  const seen = new Map<string, number>();
  return base.map((label) => {
    const k = (seen.get(label) ?? 0) + 1;
    seen.set(label, k);
    return k === 1 ? label : `${label} (${k})`;
  });
}

/** The label of one run (see runLabels). */
export function runLabel(run: Pick<RunData, "id" | "name" | "meta">): string {
  return runLabels([run])[0] as string;
}

/** "2026-11-26T14-03-12-poltergeist-small-ab12" → "poltergeist-small"; other ids unchanged. */
export function runAlias(id: string): string {
  const m = /^\d{4}-\d\d-\d\dT\d\d-\d\d-\d\d-(.+)-[0-9a-f]{4}$/.exec(id);
  return m ? (m[1] as string) : id;
}

export interface LayoutOptions {
  title?: string | undefined;
  xTitle?: string | undefined;
  yTitle?: string | undefined;
  logY?: boolean | undefined;
  hovermode?: string | false | undefined;
}

function axis(title: string | undefined, extra: Record<string, unknown> = {}): Record<string, unknown> {
  const st = currentStyle();
  return {
    title: { text: title ?? "" },
    gridcolor: "#ebebeb",
    zeroline: false,
    showline: true,
    linecolor: "#9a9a9a",
    ticks: "outside",
    tickcolor: "#9a9a9a",
    ...(st.name === "paper" ? { ticklen: 3, gridwidth: 0.5, linecolor: "#444", tickcolor: "#444" } : {}),
    automargin: true,
    ...extra,
  };
}

/**
 * The common light theme every builder starts from, in the active style (see style.ts). The
 * notebook style leaves width/height to the display or exporter; the paper style fixes them
 * (3.5 or 7 in), sets print font sizes, puts the legend in one row under the title and records
 * its print resolution in layout.meta.dpi (the exporter's default PNG resolution).
 */
export function baseLayout(opts: LayoutOptions = {}): Record<string, unknown> {
  const st = currentStyle();
  const paper = st.name === "paper";
  return {
    title: {
      text: opts.title ?? "",
      x: paper ? 0 : 0.01,
      xanchor: "left",
      ...(paper ? { xref: "paper", y: 1, yref: "container", yanchor: "top", pad: { t: 4 } } : {}),
      font: { size: st.titleSize },
    },
    font: { family: st.fontFamily, size: st.fontSize, color: "#222" },
    paper_bgcolor: "#ffffff",
    plot_bgcolor: "#ffffff",
    // Paper figures without a title (the caption says it) keep only a thin top margin.
    margin: paper && !opts.title ? { ...st.margin, t: 10 } : { ...st.margin },
    ...(st.width !== null ? { width: st.width } : {}),
    ...(st.height !== null ? { height: st.height } : {}),
    xaxis: axis(opts.xTitle),
    yaxis: axis(opts.yTitle, opts.logY ? { type: "log" } : {}),
    legend: paper
      ? {
          orientation: "h",
          x: 0,
          xanchor: "left",
          y: 1,
          yanchor: "bottom",
          font: { size: st.smallSize },
          bgcolor: "rgba(255,255,255,0)",
          itemwidth: 30,
          tracegroupgap: 0,
        }
      : { bgcolor: "rgba(255,255,255,0.7)", bordercolor: "#dddddd", borderwidth: 1 },
    hovermode: opts.hovermode ?? "x unified",
    ...(paper ? { meta: { style: "paper", dpi: st.pngDpi } } : {}),
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
