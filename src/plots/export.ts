// Figure export: standalone offline HTML, and SVG / PNG / PDF rendered by a headless system
// Chromium driven through playwright-core. Nothing is ever fetched from the network: plotly.js
// comes from node_modules and is inlined, and the browser's own network access is blocked.

import { randomUUID } from "node:crypto";
import { accessSync, constants as fsConstants, mkdtempSync, readFileSync, rmSync, statSync } from "node:fs";
import { mkdir, writeFile } from "node:fs/promises";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { delimiter, dirname, extname, join } from "node:path";
import type { BrowserContext, Page } from "playwright-core";
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

function escapeHtml(s: string): string {
  return s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

function figureTitle(fig: Figure): string {
  const t = fig.layout.title;
  if (typeof t === "string") return t;
  if (t && typeof t === "object" && typeof (t as { text?: unknown }).text === "string") return (t as { text: string }).text;
  return "figure";
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
  const height =
    opts.height ?? (typeof fig.layout.height === "number" ? `${fig.layout.height}px` : "450px");
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

/** A complete standalone HTML page (plotly.js inlined, works offline) showing the figure full-window. */
export function figureDocument(fig: Figure, opts: { title?: string } = {}): string {
  const title = opts.title ?? figureTitle(fig);
  const height = typeof fig.layout.height === "number" ? `${fig.layout.height}px` : "calc(100vh - 16px)";
  return (
    "<!DOCTYPE html>\n<html>\n<head>\n<meta charset=\"utf-8\">\n" +
    `<title>${escapeHtml(title)}</title>\n` +
    "<style>html,body{margin:0;padding:0;background:#fff}body{padding:8px 0}</style>\n" +
    plotlyScriptTag() +
    "\n</head>\n<body>\n" +
    figureHtml(fig, { includePlotlyJs: false, divId: "primal-figure", height }) +
    "\n</body>\n</html>\n"
  );
}

// ---------------------------------------------------------------- Chromium

/** Thrown when static export needs Chromium and none is usable. */
export class ChromiumNotFoundError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "ChromiumNotFoundError";
  }
}

const INSTALL_HINT =
  "Static figure export (.svg, .png, .pdf) renders with a headless Chromium. Install one " +
  "(Debian/Ubuntu: `sudo apt-get install chromium`) or set PRIMAL_CHROMIUM to the browser's " +
  "executable. Export to .html works without a browser.";

function isExecutableFile(p: string): boolean {
  try {
    if (!statSync(p).isFile()) return false;
    accessSync(p, fsConstants.X_OK);
    return true;
  } catch {
    return false;
  }
}

const BROWSER_NAMES = ["chromium", "chromium-browser", "google-chrome", "google-chrome-stable"];

/**
 * The Chromium to use: $PRIMAL_CHROMIUM, else $CHROMIUM_PATH, else the first of chromium,
 * chromium-browser, google-chrome, google-chrome-stable on PATH. Never downloads one.
 * Throws ChromiumNotFoundError with installation advice.
 */
export function resolveChromium(env: NodeJS.ProcessEnv = process.env): string {
  for (const key of ["PRIMAL_CHROMIUM", "CHROMIUM_PATH"]) {
    const value = env[key];
    if (value !== undefined && value !== "") {
      if (isExecutableFile(value)) return value;
      throw new ChromiumNotFoundError(`${key} is set to "${value}", which is not an executable file. ${INSTALL_HINT}`);
    }
  }
  const dirs = (env.PATH ?? "").split(delimiter).filter((d) => d !== "");
  const exts = process.platform === "win32" ? ["", ".exe"] : [""];
  for (const name of BROWSER_NAMES) {
    for (const dir of dirs) {
      for (const ext of exts) {
        const candidate = join(dir, name + ext);
        if (isExecutableFile(candidate)) return candidate;
      }
    }
  }
  throw new ChromiumNotFoundError(`No Chromium found (looked for ${BROWSER_NAMES.join(", ")} on PATH). ${INSTALL_HINT}`);
}

/** Like resolveChromium, but null instead of an error. */
export function findChromium(env: NodeJS.ProcessEnv = process.env): string | null {
  try {
    return resolveChromium(env);
  } catch {
    return null;
  }
}

/** Flags for a quiet, offline, throwaway headless browser. */
export const CHROMIUM_ARGS: readonly string[] = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
];

// ---------------------------------------------------------------- exporter

export type ExportFormat = "html" | "svg" | "png" | "pdf";

export interface ImageOptions {
  /** CSS pixels; default layout.width, else 900. */
  width?: number;
  /** CSS pixels; default layout.height, else 500. */
  height?: number;
  /** PNG pixel density: the image is width·scale × height·scale pixels. Default 1. */
  scale?: number;
}

export interface ExportOptions extends ImageOptions {
  /** Format instead of the one the file extension names. */
  format?: ExportFormat;
  /** Reuse this exporter's browser instead of starting one for this call. */
  exporter?: FigureExporter;
}

export interface ExporterOptions {
  /** Browser executable; default resolveChromium(). */
  chromiumPath?: string;
  /** Timeout for browser start and page loads, ms; default 60000. */
  timeoutMs?: number;
}

/** One headless browser with plotly.js loaded, reused for many exports. Call close() when done. */
export interface FigureExporter {
  toSvg(fig: Figure, opts?: ImageOptions): Promise<string>;
  toPng(fig: Figure, opts?: ImageOptions): Promise<Buffer>;
  toPdf(fig: Figure, opts?: ImageOptions): Promise<Buffer>;
  /** Writes the figure to `path` in the format of its extension; resolves with the path. */
  export(fig: Figure, path: string, opts?: Omit<ExportOptions, "exporter">): Promise<string>;
  close(): Promise<void>;
}

function imageSize(fig: Figure, opts: ImageOptions): { width: number; height: number; scale: number } {
  const width = opts.width ?? (typeof fig.layout.width === "number" ? fig.layout.width : 900);
  const height = opts.height ?? (typeof fig.layout.height === "number" ? fig.layout.height : 500);
  const scale = opts.scale ?? 1;
  for (const [k, v] of Object.entries({ width, height, scale })) {
    if (!(Number.isFinite(v) && v > 0)) throw new Error(`exportFigure: ${k} must be a positive number, got ${String(v)}`);
  }
  return { width: Math.round(width), height: Math.round(height), scale };
}

/** Format named by a path's extension. */
export function formatOf(path: string): ExportFormat {
  const ext = extname(path).toLowerCase().replace(/^\./, "");
  if (ext === "html" || ext === "htm") return "html";
  if (ext === "svg" || ext === "png" || ext === "pdf") return ext;
  throw new Error(`exportFigure: cannot tell the format of "${path}": use .html, .svg, .png or .pdf (or pass { format })`);
}

/** Plain JSON copy of the figure for page.evaluate (typed arrays → arrays). */
function plainFigure(fig: Figure): { data: unknown[]; layout: Record<string, unknown>; config: Record<string, unknown> } {
  return JSON.parse(figureJson(fig)) as { data: unknown[]; layout: Record<string, unknown>; config: Record<string, unknown> };
}

/** Starts headless Chromium with plotly.js loaded. Throws ChromiumNotFoundError when there is no browser. */
export async function createExporter(opts: ExporterOptions = {}): Promise<FigureExporter> {
  const executablePath = opts.chromiumPath ?? resolveChromium();
  const timeout = opts.timeoutMs ?? 60_000;
  // Loaded lazily: notebooks that only display figures never pay for playwright.
  const { chromium } = await import("playwright-core");
  // A fresh profile per exporter: no state leaks between runs, nothing shared with a user's browser.
  const profile = mkdtempSync(join(tmpdir(), "primal-chromium-"));
  let context: BrowserContext;
  try {
    context = await chromium.launchPersistentContext(profile, {
      executablePath,
      headless: true,
      args: [...CHROMIUM_ARGS],
      timeout,
      offline: true,
    });
  } catch (err) {
    rmSync(profile, { recursive: true, force: true });
    const msg = err instanceof Error ? err.message.split("\n")[0] : String(err);
    throw new Error(`exportFigure: could not start Chromium at "${executablePath}": ${msg}`, { cause: err });
  }
  context.setDefaultTimeout(timeout);
  // Belt and braces with `offline`: any http(s)/ws request a figure might trigger is refused.
  await context.route(/^(https?|wss?):/, (route) => route.abort());

  let plotlyPage: Promise<Page> | null = null;
  const page = (): Promise<Page> => {
    plotlyPage ??= (async () => {
      const p = context.pages()[0] ?? (await context.newPage());
      await p.setContent(
        `<!DOCTYPE html><html><head><meta charset="utf-8">${plotlyScriptTag()}</head><body></body></html>`,
        { waitUntil: "load" },
      );
      const ok = await p.evaluate(() => typeof (globalThis as unknown as { Plotly?: unknown }).Plotly === "object");
      if (!ok) throw new Error("exportFigure: plotly.js did not load in the headless browser");
      return p;
    })();
    return plotlyPage;
  };

  async function toImage(fig: Figure, format: "svg" | "png", o: ImageOptions): Promise<string> {
    const { width, height, scale } = imageSize(fig, o);
    const p = await page();
    return p.evaluate(
      async ({ f, options }) => {
        const Plotly = (globalThis as unknown as { Plotly: { toImage(fig: unknown, o: unknown): Promise<string> } }).Plotly;
        return Plotly.toImage(f, options);
      },
      { f: plainFigure(fig), options: { format, width, height, scale, imageDataOnly: true } },
    );
  }

  let closed = false;
  const exporter: FigureExporter = {
    async toSvg(fig, o = {}) {
      return toImage(fig, "svg", o);
    },
    async toPng(fig, o = {}) {
      return Buffer.from(await toImage(fig, "png", o), "base64");
    },
    async toPdf(fig, o = {}) {
      // Vector PDF: the SVG rendering printed on a page of exactly the figure's size.
      const { width, height } = imageSize(fig, o);
      const svg = await toImage(fig, "svg", { width, height });
      const p = await context.newPage();
      try {
        await p.setContent(
          "<!DOCTYPE html><html><head><meta charset=\"utf-8\"><style>" +
            `@page{size:${width}px ${height}px;margin:0}html,body{margin:0;padding:0}svg{display:block}` +
            `</style></head><body>${svg}</body></html>`,
          { waitUntil: "load" },
        );
        return await p.pdf({
          width: `${width}px`,
          height: `${height}px`,
          printBackground: true,
          margin: { top: "0", right: "0", bottom: "0", left: "0" },
          pageRanges: "1",
        });
      } finally {
        await p.close();
      }
    },
    async export(fig, path, o = {}) {
      const format = o.format ?? formatOf(path);
      let bytes: string | Buffer;
      if (format === "html") bytes = figureDocument(fig);
      else if (format === "svg") bytes = await exporter.toSvg(fig, o);
      else if (format === "png") bytes = await exporter.toPng(fig, o);
      else bytes = await exporter.toPdf(fig, o);
      await mkdir(dirname(path), { recursive: true });
      await writeFile(path, bytes);
      return path;
    },
    async close() {
      if (closed) return;
      closed = true;
      try {
        await context.close();
      } finally {
        rmSync(profile, { recursive: true, force: true });
      }
    },
  };
  return exporter;
}

/** Runs `fn` with one exporter (one browser) and closes it afterwards, also on error. */
export async function withExporter<T>(fn: (exporter: FigureExporter) => Promise<T>, opts: ExporterOptions = {}): Promise<T> {
  const exporter = await createExporter(opts);
  try {
    return await fn(exporter);
  } finally {
    await exporter.close();
  }
}

/**
 * Writes a figure to `path`; the format comes from the extension (.html, .svg, .png, .pdf) or
 * opts.format. HTML needs no browser; the static formats start a headless Chromium for this call
 * unless opts.exporter (see createExporter / withExporter) is given. Resolves with the path.
 */
export async function exportFigure(fig: Figure, path: string, opts: ExportOptions = {}): Promise<string> {
  const { exporter, ...rest } = opts;
  const format = rest.format ?? formatOf(path);
  if (format === "html") {
    await mkdir(dirname(path), { recursive: true });
    await writeFile(path, figureDocument(fig));
    return path;
  }
  if (exporter) return exporter.export(fig, path, { ...rest, format });
  return withExporter((ex) => ex.export(fig, path, { ...rest, format }));
}
