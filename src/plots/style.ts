// Figure styles: "notebook" (the default: sized by the notebook or the exporter) and "paper"
// (one- or two-column print sizes, print font sizes, PNG at 300 dpi). Builders read the active
// style through baseLayout(), runLabels() and eventMarkers(), so any builder that uses them
// follows `plots.style(...)`.
//
// Sizes are CSS pixels, 96 to the inch, which is what Plotly, the browser's PDF printer and SVG
// viewers assume: a 3.5 in column is 336 px, 8 pt type is 10.67 px.

export type StyleName = "notebook" | "paper";
export const STYLE_NAMES: readonly StyleName[] = ["notebook", "paper"];

export interface StyleOptions {
  /** Paper: one column (3.5 in wide, the default) or two columns (7 in). */
  columns?: 1 | 2;
  /** Label runs with their machine id beside the name (default false: name or a short alias). */
  runIds?: boolean;
}

export interface FigureStyle {
  readonly name: StyleName;
  readonly columns: 1 | 2;
  readonly runIds: boolean;
  /** Font family of every text; Arimo (metric-compatible with Arial) is embedded in exports. */
  readonly fontFamily: string;
  /** Font sizes, CSS px: axis and tick labels, titles, legends and annotations. */
  readonly fontSize: number;
  readonly titleSize: number;
  readonly smallSize: number;
  /** Fixed figure size, CSS px, or null to let the notebook or the exporter size it. */
  readonly width: number | null;
  readonly height: number | null;
  readonly margin: { l: number; r: number; t: number; b: number };
  /** Width of data lines, px. */
  readonly lineWidth: number;
  /** PNG export resolution in dots per inch, when not given (scale = dpi / 96). */
  readonly pngDpi: number;
}

const PX_PER_PT = 96 / 72;
const PX_PER_IN = 96;
/** Text first in Arimo (embedded in exports), then what a browser is likely to have. */
export const FONT_FAMILY = "Arimo, Helvetica Neue, Helvetica, Arial, sans-serif";

const NOTEBOOK: FigureStyle = {
  name: "notebook",
  columns: 1,
  runIds: false,
  fontFamily: FONT_FAMILY,
  fontSize: 12,
  titleSize: 16,
  smallSize: 11,
  width: null,
  height: null,
  margin: { l: 64, r: 24, t: 56, b: 52 },
  lineWidth: 1.6,
  pngDpi: 192,
};

function paper(columns: 1 | 2, runIds: boolean): FigureStyle {
  return {
    name: "paper",
    columns,
    runIds,
    fontFamily: FONT_FAMILY,
    fontSize: Math.round(8 * PX_PER_PT * 100) / 100,
    titleSize: Math.round(9 * PX_PER_PT * 100) / 100,
    smallSize: Math.round(7 * PX_PER_PT * 100) / 100,
    width: columns === 1 ? 3.5 * PX_PER_IN : 7 * PX_PER_IN,
    height: columns === 1 ? 2.6 * PX_PER_IN : 3 * PX_PER_IN,
    margin: { l: 40, r: 8, t: 26, b: 32 },
    lineWidth: 1.2,
    pngDpi: 300,
  };
}

let active: FigureStyle = NOTEBOOK;

/**
 * Sets the style of the figures built from now on and returns it: `style("paper")` for
 * one-column print figures, `style("paper", { columns: 2 })` for two-column ones,
 * `style("notebook")` back to the default. Without arguments, returns the active style.
 */
export function style(name?: StyleName, opts: StyleOptions = {}): FigureStyle {
  if (name === undefined) return active;
  if (!STYLE_NAMES.includes(name))
    throw new Error(`plots.style: style must be "notebook" or "paper", got ${JSON.stringify(name)}`);
  const columns = opts.columns ?? 1;
  if (columns !== 1 && columns !== 2) throw new Error(`plots.style: columns must be 1 or 2, got ${String(columns)}`);
  const runIds = opts.runIds === true;
  active = name === "paper" ? paper(columns, runIds) : { ...NOTEBOOK, runIds };
  return active;
}

/** The active style (what builders read). */
export function currentStyle(): FigureStyle {
  return active;
}

/** Runs `fn` with a style active, then restores the previous one (also on error). */
export function withStyle<T>(name: StyleName, opts: StyleOptions, fn: () => T): T {
  const before = active;
  style(name, opts);
  try {
    return fn();
  } finally {
    active = before;
  }
}

// ---------------------------------------------------------------- colors

/**
 * Okabe & Ito's colour-blind-safe palette (Color Universal Design), in an order where
 * neighbours differ most; yellow last (weak on white).
 */
export const PALETTE: readonly string[] = [
  "#0072B2", // blue
  "#D55E00", // vermillion
  "#009E73", // bluish green
  "#CC79A7", // reddish purple
  "#E69F00", // orange
  "#56B4E9", // sky blue
  "#000000", // black
  "#F0E442", // yellow
];

/**
 * One hue per BitLinear matrix kind, from the same palette, so the seven matrices of a block
 * are told apart by colour-blind readers too. The pairs drawn as one in ghostScale (q·k, v·o,
 * up·down) take the first member's colour; gate and up·down are far apart (purple, vermillion).
 */
export const KIND_COLORS: Readonly<Record<string, string>> = {
  q: "#0072B2",
  k: "#56B4E9",
  v: "#009E73",
  o: "#000000",
  gate: "#CC79A7",
  up: "#D55E00",
  down: "#E69F00",
};
