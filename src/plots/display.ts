// A Plotly figure as a Jupyter MIME bundle. Figures made by `plots` carry it as their
// `Symbol.for("Jupyter.display")` method (src/display/mime.ts).
//
// The bundle holds data, never code: the Plotly JSON (drawn interactively by JupyterLab's and
// VS Code's Plotly renderers, and in the classic Notebook by the extension `primal kernel
// install` enables, which loads plotly.js from the Notebook server), a PNG of the figure (what
// an untrusted notebook, nbconvert, GitHub or nbviewer show) and a text summary. So a figure
// draws the same after a page reload, in a second tab, or when the saved notebook is opened
// again with or without a kernel, and a saved notebook carries tens of kilobytes per figure,
// not the 4.8 MB plotly.js.
import { withDisplay, type MimeBundle } from "../display/mime.js";
import { figureJson, type Figure } from "./figure.js";
import { figureTitle, plotlyVersion } from "./html.js";

export const PLOTLY_MIME = "application/vnd.plotly.v1+json";

/**
 * What a figure's output carries (`plots.setDisplay`, or $PRIMAL_DISPLAY for the kernel):
 * - "static" (default): Plotly JSON, a PNG (headless Chromium; left out, with the reason in
 *   the text, when there is none) and a text summary;
 * - "mime": Plotly JSON and the text summary only (smallest; no browser needed).
 */
export type DisplayMode = "static" | "mime";
export const DISPLAY_MODES: readonly DisplayMode[] = ["static", "mime"];
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
  return env && (DISPLAY_MODES as readonly string[]).includes(env) ? (env as DisplayMode) : "static";
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

function traceSummary(fig: Figure): string {
  const names = fig.data.map(
    (t, i) => `${String(t.type ?? "scatter")}${t.name !== undefined ? ` "${String(t.name)}"` : ` #${i}`}`,
  );
  const shown = names.slice(0, 6).join(", ");
  return names.length > 6 ? `${shown}, … (${names.length - 6} more)` : shown;
}

function figureText(fig: Figure): string {
  const title = figureTitle(fig);
  return (
    `Plotly figure${title ? ` "${title}"` : ""}: ${fig.data.length} trace${fig.data.length === 1 ? "" : "s"}` +
    (fig.data.length ? ` (${traceSummary(fig)})` : "") +
    ` [plotly.js ${plotlyVersion()}]`
  );
}

/** The data part of a figure's bundle: Plotly JSON and the text summary. */
export function figureBundle(fig: Figure): MimeBundle {
  // JSON round trip: typed arrays become arrays and non-finite numbers null, as in exports.
  return { [PLOTLY_MIME]: JSON.parse(figureJson(fig)) as unknown, "text/plain": figureText(fig) };
}

/**
 * The "static" bundle: figureBundle plus a PNG rendered by the process's shared headless
 * browser. Without a browser, or when rendering fails, the PNG is left out and the text says
 * why: the figure still draws wherever the Plotly JSON is understood.
 */
export async function figureBundleStatic(fig: Figure): Promise<MimeBundle> {
  const bundle = figureBundle(fig);
  try {
    const { sharedExporter } = await import("./export.js");
    const png = await (await sharedExporter()).toPng(fig, { scale: 1 });
    return { ...bundle, "image/png": png.toString("base64") };
  } catch (e) {
    const why = e instanceof Error ? e.message.split("\n")[0] : String(e);
    return { ...bundle, "text/plain": `${String(bundle["text/plain"])}\n(no static image: ${why})` };
  }
}

/** The bundle in the current display mode: a promise in "static" mode (rendering takes a browser). */
export function figureDisplayBundle(fig: Figure): MimeBundle | Promise<MimeBundle> {
  return displayMode() === "static" ? figureBundleStatic(fig) : figureBundle(fig);
}

/** The figure, displaying itself in Jupyter kernels that follow the Jupyter.display protocol. */
export function displayableFigure<T extends Figure>(fig: T): T {
  return withDisplay(fig, () => figureDisplayBundle(fig));
}
