// HTML for Plotly figures: the offline plotly.js bundle, a figure fragment for notebook
// outputs and a standalone page. Shared by notebook display and file export.

import { randomUUID } from "node:crypto";
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { escapeHtml } from "../display/html.js";
import { figureJson, type Figure } from "./figure.js";

// ---------------------------------------------------------------- plotly.js bundle

let bundleCache: string | null = null;

/** Path of the minified plotly.js bundle installed with the package. */
export function plotlyBundlePath(): string {
  return createRequire(import.meta.url).resolve("plotly.js-dist-min");
}

/** The minified plotly.js source (read once, then cached). */
export function plotlyBundleSource(): string {
  if (bundleCache === null) bundleCache = readFileSync(plotlyBundlePath(), "utf8");
  return bundleCache;
}

/** File name of the shared plotly.js written beside exported pages. */
export function plotlyFileName(): string {
  return `plotly-${plotlyVersion()}.min.js`;
}

/** Version of the bundled plotly.js, e.g. "3.7.0". */
export function plotlyVersion(): string {
  const m = /plotly\.js v(\d+\.\d+\.\d+)/.exec(plotlyBundleSource().slice(0, 200));
  return m ? (m[1] as string) : "unknown";
}

/** Text is placed inside a <script> element: a literal "</script" would end it early. */
function scriptSafe(js: string): string {
  return js.replace(/<\/(script)/gi, "<\\/$1").replace(/<!--/g, "<\\!--");
}

/** JSON literal safe inside <script> (no "<", "&" or line separators that end or break it). */
function jsonForScript(json: string): string {
  return json
    .replace(/</g, "\\u003c")
    .replace(/>/g, "\\u003e")
    .replace(/&/g, "\\u0026")
    .replace(/\u2028/g, "\\u2028")
    .replace(/\u2029/g, "\\u2029");
}

/**
 * plotly.js wrapped so it always defines window.Plotly: `module`, `exports` and `define` are
 * shadowed, so a page with CommonJS globals or RequireJS (the classic notebook) does not
 * capture the bundle as a module instead of a global.
 */
export function plotlyScriptTag(): string {
  return (
    '<script type="text/javascript">(function (module, exports, define) {\n' +
    scriptSafe(plotlyBundleSource()) +
    "\n}).call(typeof self !== 'undefined' ? self : this);</script>"
  );
}

export { escapeHtml };

/** The figure's layout title as plain text ("" when it has none). */
export function figureTitle(fig: Figure): string {
  const t = fig.layout.title;
  if (typeof t === "string") return t;
  if (t && typeof t === "object" && typeof (t as { text?: unknown }).text === "string")
    return (t as { text: string }).text;
  return "";
}

export interface FigureHtmlOptions {
  /** Inline the whole plotly.js bundle before the figure; when false the page must already have window.Plotly. */
  includePlotlyJs: boolean;
  /** id of the figure's <div>; default a random unique id. */
  divId?: string;
  /** CSS height of the div; default layout.height in px, else 450px. */
  height?: string;
}

/**
 * HTML fragment drawing a figure: a <div> and a script calling Plotly.newPlot. Plain script,
 * no require(): when plotly.js is not loaded yet (it is inlined by an earlier output) it waits
 * for window.Plotly for up to 10 s and then writes a message in the div.
 */
export function figureHtml(fig: Figure, opts: FigureHtmlOptions): string {
  const id = opts.divId ?? `primal-plot-${randomUUID()}`;
  const height = opts.height ?? (typeof fig.layout.height === "number" ? `${fig.layout.height}px` : "450px");
  const script =
    "(function () {\n" +
    `  var fig = ${jsonForScript(figureJson(fig))};\n` +
    `  var el = document.getElementById(${jsonForScript(JSON.stringify(id))});\n` +
    "  var tries = 0;\n" +
    "  function draw() {\n" +
    "    var P = window.Plotly;\n" +
    "    if (P && P.newPlot) { P.newPlot(el, fig.data, fig.layout, fig.config); return; }\n" +
    "    if (++tries > 200) { el.textContent = 'plotly.js is not loaded in this page, so the figure cannot be drawn.'; return; }\n" +
    "    setTimeout(draw, 50);\n" +
    "  }\n" +
    "  draw();\n" +
    "})();";
  return (
    (opts.includePlotlyJs ? plotlyScriptTag() + "\n" : "") +
    `<div id="${escapeHtml(id)}" class="primal-plot" style="width:100%;height:${escapeHtml(height)};"></div>\n` +
    `<script type="text/javascript">${scriptSafe(script)}</script>`
  );
}

/**
 * A complete HTML page showing the figure full-window: standalone with plotly.js inlined
 * (4.8 MB, works offline), or with `plotlySrc` loading plotly.js from that URL (e.g. one shared
 * copy beside several pages, see exportFigure's `plotlyJs: "beside"`).
 */
export function figureDocument(fig: Figure, opts: { title?: string; plotlySrc?: string } = {}): string {
  const title = opts.title ?? (figureTitle(fig) || "figure");
  const height = typeof fig.layout.height === "number" ? `${fig.layout.height}px` : "calc(100vh - 16px)";
  return (
    '<!DOCTYPE html>\n<html>\n<head>\n<meta charset="utf-8">\n' +
    `<title>${escapeHtml(title)}</title>\n` +
    "<style>html,body{margin:0;padding:0;background:#fff}body{padding:8px 0}</style>\n" +
    (opts.plotlySrc !== undefined
      ? `<script type="text/javascript" src="${escapeHtml(opts.plotlySrc)}"></script>`
      : plotlyScriptTag()) +
    "\n</head>\n<body>\n" +
    figureHtml(fig, { includePlotlyJs: false, divId: "primal-figure", height }) +
    "\n</body>\n</html>\n"
  );
}
