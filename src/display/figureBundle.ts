// A Plotly figure as a Jupyter MIME bundle: Plotly JSON (JupyterLab, VS Code, nteract render it
// natively), an offline HTML fallback (the classic notebook, nbconvert) and a text summary.
// Figures made by `plots` carry it as their `Symbol.for("Jupyter.display")` method.
import { figureJson, type Figure } from "../plots/figure.js";
import { figureHtml, figureTitle, plotlyVersion } from "../plots/html.js";
import type { FigureExporter } from "../plots/export.js";
import { withDisplay, type MimeBundle } from "./mime.js";

/**
 * How figures go into notebooks (`plots.setDisplay`, or $PRIMAL_DISPLAY for the kernel):
 * - "inline" (default): Plotly JSON plus HTML with plotly.js inlined once per session; the
 *   classic Notebook draws it offline; the first figure adds ~4.8 MB to the saved notebook.
 * - "mime": the Plotly JSON only (JupyterLab, VS Code, nteract draw it natively); kilobytes
 *   per figure; the classic Notebook shows the text summary.
 * - "static": "mime" plus a PNG (headless Chromium) for GitHub, nbviewer and the classic Notebook.
 */
export type DisplayMode = "inline" | "mime" | "static";
export const DISPLAY_MODES: readonly DisplayMode[] = ["inline", "mime", "static"];
export const DISPLAY_ENV = "PRIMAL_DISPLAY";

let mode: DisplayMode | undefined;

/** Sets how figures display from now on; returns the previous mode. */
export function setDisplay(m: DisplayMode): DisplayMode {
  if (!DISPLAY_MODES.includes(m))
    throw new Error(
      `setDisplay: mode must be one of ${DISPLAY_MODES.map((x) => `"${x}"`).join(", ")}, got ${JSON.stringify(m)}`,
    );
  const before = displayMode();
  mode = m;
  return before;
}

export function displayMode(): DisplayMode {
  if (mode) return mode;
  const env = process.env[DISPLAY_ENV];
  return env && (DISPLAY_MODES as readonly string[]).includes(env) ? (env as DisplayMode) : "inline";
}

/** Duck-typed Plotly figure: {data: trace[], layout: object}. */
export function isFigure(x: unknown): x is Figure {
  if (x === null || typeof x !== "object") return false;
  const f = x as { data?: unknown; layout?: unknown };
  return (
    Array.isArray(f.data) &&
    f.data.every((t) => t !== null && typeof t === "object") &&
    f.layout !== null &&
    typeof f.layout === "object" &&
    !Array.isArray(f.layout)
  );
}

// plotly.js (4.8 MB) goes into the first figure of a kernel session only; later figures call
// window.Plotly, which that first output defined (outputs render in order in the classic
// notebook, in nbconvert's HTML and when a saved notebook is reopened).
let plotlySent = false;

/** Forget that plotly.js was sent (the next figure inlines it again). */
export function resetPlotlyInlining(): void {
  plotlySent = false;
}

function traceSummary(fig: Figure): string {
  const names = fig.data.map(
    (t, i) => `${String(t.type ?? "scatter")}${t.name !== undefined ? ` "${String(t.name)}"` : ` #${i}`}`,
  );
  const shown = names.slice(0, 6).join(", ");
  return names.length > 6 ? `${shown}, … (${names.length - 6} more)` : shown;
}

export interface FigureBundleOptions {
  /** Inline plotly.js in the HTML part: true, false, or "auto" (once per kernel session). Default "auto". */
  includePlotlyJs?: boolean | "auto";
  /** Display mode for this figure instead of the current one ("static" needs figureBundleStatic). */
  display?: DisplayMode;
}

/** The MIME bundle of a figure: Plotly JSON, an offline HTML fallback and a text summary. */
export function figureBundle(fig: Figure, opts: FigureBundleOptions = {}): MimeBundle {
  const display = opts.display ?? displayMode();
  if (display !== "inline") {
    return { "application/vnd.plotly.v1+json": JSON.parse(figureJson(fig)) as unknown, "text/plain": figureText(fig) };
  }
  const mode = opts.includePlotlyJs ?? "auto";
  const include = mode === "auto" ? !plotlySent : mode;
  // JSON round trip: typed arrays become arrays and non-finite numbers null, as in exports.
  const json = JSON.parse(figureJson(fig)) as Record<string, unknown>;
  const html = figureHtml(fig, { includePlotlyJs: include });
  if (mode === "auto" && include) plotlySent = true;
  return {
    "application/vnd.plotly.v1+json": json,
    "text/html": html,
    "text/plain": figureText(fig),
  };
}

function figureText(fig: Figure): string {
  const title = figureTitle(fig);
  return (
    `Plotly figure${title ? ` "${title}"` : ""}: ${fig.data.length} trace${fig.data.length === 1 ? "" : "s"}` +
    (fig.data.length ? ` (${traceSummary(fig)})` : "") +
    ` [plotly.js ${plotlyVersion()}]`
  );
}

// One headless browser for all static figures of a session, started on first use.
let exporter: Promise<FigureExporter> | null = null;

/** The "static" bundle: Plotly JSON, a PNG of the figure and the text summary. */
export async function figureBundleStatic(fig: Figure): Promise<MimeBundle> {
  exporter ??= import("../plots/export.js").then(async (m) => {
    const ex = await m.createExporter();
    // Close the browser with the process (the kernel's shutdown, or the end of a script).
    process.once("exit", () => void ex.close());
    return ex;
  });
  let ex: FigureExporter;
  try {
    ex = await exporter;
  } catch (e) {
    exporter = null;
    throw e;
  }
  const png = await ex.toPng(fig);
  return { ...figureBundle(fig, { display: "mime" }), "image/png": png.toString("base64") };
}

/** The bundle in the current display mode: a promise in "static" mode (rendering takes a browser). */
export function figureDisplayBundle(fig: Figure): MimeBundle | Promise<MimeBundle> {
  return displayMode() === "static" ? figureBundleStatic(fig) : figureBundle(fig);
}

/** The figure, displaying itself in Jupyter kernels that follow the Jupyter.display protocol. */
export function displayableFigure<T extends Figure>(fig: T): T {
  return withDisplay(fig, () => figureDisplayBundle(fig));
}
