// Figure export: SVG / PNG / PDF rendered by a headless system Chromium driven through
// playwright-core, and standalone HTML pages (built by html.ts). Nothing is ever fetched from
// the network: plotly.js comes from node_modules and is inlined, and the browser's own network
// access is blocked.

import { accessSync, constants as fsConstants, lstatSync, mkdtempSync, rmSync, statSync } from "node:fs";
import { mkdir } from "node:fs/promises";
import { tmpdir } from "node:os";
import { delimiter, dirname, extname, join } from "node:path";
import type { BrowserContext, Page } from "playwright-core";
import { figureJson, type Figure } from "./figure.js";
import { figureDocument, plotlyBundleSource, plotlyFileName, plotlyScriptTag } from "./html.js";
import { writeFileAtomic } from "../tracking/guardedWrite.js";

/** Whether `path` is a regular file (not a link) of `size` bytes: a complete copy of a shared asset. */
function sameSize(path: string, size: number): boolean {
  try {
    const st = lstatSync(path);
    return st.isFile() && st.size === size;
  } catch {
    return false;
  }
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
  throw new ChromiumNotFoundError(
    `No Chromium found (looked for ${BROWSER_NAMES.join(", ")} on PATH). ${INSTALL_HINT}`,
  );
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
  /**
   * HTML: inline plotly.js in the page ("inline", default; 4.8 MB, one file), or write it once
   * as plotly-<version>.min.js beside the page and load it from there ("beside"; pages of a few
   * KB that share it, e.g. a report's figures).
   */
  plotlyJs?: "inline" | "beside";
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
    if (!(Number.isFinite(v) && v > 0))
      throw new Error(`exportFigure: ${k} must be a positive number, got ${String(v)}`);
  }
  return { width: Math.round(width), height: Math.round(height), scale };
}

/** Format named by a path's extension. */
export function formatOf(path: string): ExportFormat {
  const ext = extname(path).toLowerCase().replace(/^\./, "");
  if (ext === "html" || ext === "htm") return "html";
  if (ext === "svg" || ext === "png" || ext === "pdf") return ext;
  throw new Error(
    `exportFigure: cannot tell the format of "${path}": use .html, .svg, .png or .pdf (or pass { format })`,
  );
}

/** Plain JSON copy of the figure for page.evaluate (typed arrays → arrays). */
function plainFigure(fig: Figure): {
  data: unknown[];
  layout: Record<string, unknown>;
  config: Record<string, unknown>;
} {
  return JSON.parse(figureJson(fig)) as {
    data: unknown[];
    layout: Record<string, unknown>;
    config: Record<string, unknown>;
  };
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
        const Plotly = (globalThis as unknown as { Plotly: { toImage(fig: unknown, o: unknown): Promise<string> } })
          .Plotly;
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
          '<!DOCTYPE html><html><head><meta charset="utf-8"><style>' +
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
      writeFileAtomic(path, bytes);
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
export async function withExporter<T>(
  fn: (exporter: FigureExporter) => Promise<T>,
  opts: ExporterOptions = {},
): Promise<T> {
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
    // Written whole (temporary file, rename): a kill or a full disk never leaves a page, or the
    // shared plotly.js that every page of the folder loads, half-written.
    if (rest.plotlyJs === "beside") {
      const js = join(dirname(path), plotlyFileName());
      const source = plotlyBundleSource();
      if (!sameSize(js, Buffer.byteLength(source))) writeFileAtomic(js, source);
      writeFileAtomic(path, figureDocument(fig, { plotlySrc: plotlyFileName() }));
    } else writeFileAtomic(path, figureDocument(fig));
    return path;
  }
  if (exporter) return exporter.export(fig, path, { ...rest, format });
  return withExporter((ex) => ex.export(fig, path, { ...rest, format }));
}
