// A Plotly figure as a Jupyter MIME bundle: Plotly JSON (JupyterLab, VS Code, nteract render it
// natively), an offline HTML fallback (the classic notebook, nbconvert) and a text summary.
// Figures made by `plots` carry it as their `Symbol.for("Jupyter.display")` method.
import { figureJson, type Figure } from "../plots/figure.js";
import { figureHtml, figureTitle, plotlyVersion } from "../plots/html.js";
import { withDisplay, type MimeBundle } from "./mime.js";

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
  const names = fig.data.map((t, i) => `${String(t.type ?? "scatter")}${t.name !== undefined ? ` "${String(t.name)}"` : ` #${i}`}`);
  const shown = names.slice(0, 6).join(", ");
  return names.length > 6 ? `${shown}, … (${names.length - 6} more)` : shown;
}

export interface FigureBundleOptions {
  /** Inline plotly.js in the HTML part: true, false, or "auto" (once per kernel session). Default "auto". */
  includePlotlyJs?: boolean | "auto";
}

/** The MIME bundle of a figure: Plotly JSON, an offline HTML fallback and a text summary. */
export function figureBundle(fig: Figure, opts: FigureBundleOptions = {}): MimeBundle {
  const mode = opts.includePlotlyJs ?? "auto";
  const include = mode === "auto" ? !plotlySent : mode;
  // JSON round trip: typed arrays become arrays and non-finite numbers null, as in exports.
  const json = JSON.parse(figureJson(fig)) as Record<string, unknown>;
  const html = figureHtml(fig, { includePlotlyJs: include });
  if (mode === "auto" && include) plotlySent = true;
  const title = figureTitle(fig);
  const text =
    `Plotly figure${title ? ` "${title}"` : ""}: ${fig.data.length} trace${fig.data.length === 1 ? "" : "s"}` +
    (fig.data.length ? ` (${traceSummary(fig)})` : "") +
    ` [plotly.js ${plotlyVersion()}]`;
  return {
    "application/vnd.plotly.v1+json": json,
    "text/html": html,
    "text/plain": text,
  };
}

/** The figure, displaying itself in Jupyter kernels that follow the Jupyter.display protocol. */
export function displayableFigure<T extends Figure>(fig: T): T {
  return withDisplay(fig, () => figureBundle(fig));
}
