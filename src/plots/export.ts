// Figure export: SVG / PNG / PDF rendered by a headless system Chromium driven through
// playwright-core (in a worker thread, see exportWorker.ts), and standalone HTML pages (built
// by html.ts). Nothing is ever fetched from the network: plotly.js and the font come from
// node_modules and are inlined, and the browser's own network access is blocked. One browser
// serves the whole process (sharedExporter).

import { accessSync, constants as fsConstants, lstatSync, mkdtempSync, readFileSync, rmSync, statSync } from "node:fs";
import { mkdir } from "node:fs/promises";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { delimiter, dirname, extname, join } from "node:path";
import { Worker } from "node:worker_threads";
import { crc32 } from "node:zlib";
import { figureJson, type Figure } from "./figure.js";
import { figureDocument, plotlyBundlePath, plotlyBundleSource, plotlyFileName } from "./html.js";
import { exportWorkerMain, type ExportWorkerData, type RenderReply, type RenderRequest } from "./exportWorker.js";
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
  /**
   * PNG pixel density: the image is width·scale × height·scale pixels. Default: the figure's
   * print resolution (paper style: 300 dpi, scale 3.125), else 2. The PNG records its
   * resolution (96·scale dpi), so it is placed at its CSS size in inches.
   */
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
  /** Use this exporter instead of the process's shared one. */
  exporter?: FigureExporter;
}

export interface ExporterOptions {
  /** Browser executable; default resolveChromium(). */
  chromiumPath?: string;
  /** Timeout for browser start and page loads, ms; default 60000. */
  timeoutMs?: number;
}

/** One headless browser with plotly.js loaded, reused for many exports. */
export interface FigureExporter {
  toSvg(fig: Figure, opts?: ImageOptions): Promise<string>;
  toPng(fig: Figure, opts?: ImageOptions): Promise<Buffer>;
  toPdf(fig: Figure, opts?: ImageOptions): Promise<Buffer>;
  /** Writes the figure to `path` in the format of its extension; resolves with the path. */
  export(fig: Figure, path: string, opts?: Omit<ExportOptions, "exporter">): Promise<string>;
  /** Ends the browser. The shared exporter (sharedExporter) is ended by closeSharedExporter() or at exit. */
  close(): Promise<void>;
}

/** The print resolution a figure asks for (layout.meta.dpi, set by the paper style), or null. */
export function figureDpi(fig: Figure): number | null {
  const meta = fig.layout.meta as { dpi?: unknown } | undefined;
  return meta && typeof meta.dpi === "number" && meta.dpi > 0 ? meta.dpi : null;
}

function imageSize(fig: Figure, opts: ImageOptions): { width: number; height: number; scale: number } {
  const width = opts.width ?? (typeof fig.layout.width === "number" ? fig.layout.width : 900);
  const height = opts.height ?? (typeof fig.layout.height === "number" ? fig.layout.height : 500);
  const dpi = figureDpi(fig);
  const scale = opts.scale ?? (dpi !== null ? dpi / 96 : 2);
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

/**
 * A PNG with a pHYs chunk saying `dpi` (after IHDR, replacing one already there), so that
 * word processors and LaTeX place it at its intended size.
 */
export function pngWithDpi(png: Buffer, dpi: number): Buffer {
  const sig = 8;
  const ihdrEnd = sig + 8 + png.readUInt32BE(sig) + 4;
  const ppm = Math.round(dpi / 0.0254);
  const body = Buffer.alloc(13);
  body.write("pHYs", 0, "ascii");
  body.writeUInt32BE(ppm, 4);
  body.writeUInt32BE(ppm, 8);
  body[12] = 1; // unit: metre
  const chunk = Buffer.alloc(4 + 13 + 4);
  chunk.writeUInt32BE(9, 0);
  body.copy(chunk, 4);
  chunk.writeUInt32BE(crc32(body), 17);
  // Drop an existing pHYs chunk.
  const rest: Buffer[] = [];
  for (let off = ihdrEnd; off < png.length;) {
    const len = png.readUInt32BE(off);
    const type = png.toString("ascii", off + 4, off + 8);
    if (type !== "pHYs") rest.push(png.subarray(off, off + 12 + len));
    off += 12 + len;
  }
  return Buffer.concat([png.subarray(0, ihdrEnd), chunk, ...rest]);
}

// ---------------------------------------------------------------- fonts

const FONT_FAMILY_NAME = "Arimo";
// Arimo (SIL Open Font License, metric-compatible with Arial), latin and greek subsets.
const FONT_FILES: { file: string; range: string; sample: string }[] = [
  {
    file: "arimo-latin-400-normal.woff2",
    range:
      "U+0000-00FF,U+0131,U+0152-0153,U+02BB-02BC,U+02C6,U+02DA,U+02DC,U+0304,U+0308,U+0329,U+2000-206F,U+20AC,U+2122,U+2191,U+2193,U+2212,U+2215,U+FEFF,U+FFFD",
    sample: "Ab1",
  },
  {
    file: "arimo-greek-400-normal.woff2",
    range: "U+0370-0377,U+037A-037F,U+0384-038A,U+038C,U+038E-03A1,U+03A3-03FF",
    sample: "γΣ",
  },
];

let fontCssCache: ExportWorkerData["fontCss"] | null = null;

/** @font-face rules of the embedded font (data: URLs), or none when the font package is missing. */
function fontCss(): ExportWorkerData["fontCss"] {
  if (fontCssCache) return fontCssCache;
  const req = createRequire(import.meta.url);
  const rules: ExportWorkerData["fontCss"] = [];
  for (const f of FONT_FILES) {
    let bytes: Buffer;
    try {
      bytes = readFileSync(req.resolve(`@fontsource/arimo/files/${f.file}`));
    } catch {
      continue; // text then falls back to the next family of the figure's font list
    }
    rules.push({
      family: FONT_FAMILY_NAME,
      sample: f.sample,
      css:
        `@font-face{font-family:"${FONT_FAMILY_NAME}";font-style:normal;font-weight:400;` +
        `src:url(data:font/woff2;base64,${bytes.toString("base64")}) format("woff2");unicode-range:${f.range}}`,
    });
  }
  fontCssCache = rules;
  return rules;
}

// ---------------------------------------------------------------- the browser worker

/** Plain JSON copy of the figure (typed arrays → arrays) for the worker. */
function plainFigure(fig: Figure): unknown {
  return JSON.parse(figureJson(fig)) as unknown;
}

/** A headless browser in a worker thread (see exportWorker.ts); unref'd while idle. */
class BrowserWorker {
  private readonly worker: Worker;
  private readonly pending = new Map<number, { resolve: (r: RenderReply) => void; reject: (e: Error) => void }>();
  private nextId = 1;
  private dead: Error | null = null;
  readonly ready: Promise<void>;
  private readonly profile: string;
  private readonly cleanup = () => rmSync(this.profile, { recursive: true, force: true });

  constructor(executablePath: string, timeoutMs: number) {
    // A fresh profile per browser: no state leaks between runs, nothing shared with a user's browser.
    this.profile = mkdtempSync(join(tmpdir(), "primal-chromium-"));
    const data: ExportWorkerData = {
      playwright: createRequire(import.meta.url).resolve("playwright-core"),
      chromium: executablePath,
      args: CHROMIUM_ARGS,
      profile: this.profile,
      timeoutMs,
      plotlyPath: plotlyBundlePath(),
      fontCss: fontCss(),
    };
    // esbuild may wrap functions in __name(); the worker's source must run without it.
    const source = `const __name = (f) => f;\n(${exportWorkerMain.toString()})();`;
    // The source is CommonJS: a parent started with --input-type=module must not pass that on.
    const execArgv = process.execArgv.filter((a) => !a.startsWith("--input-type"));
    this.worker = new Worker(source, { eval: true, workerData: data, execArgv });
    // The profile goes with the process, whether or not close() was called.
    process.once("exit", this.cleanup);
    let started!: () => void;
    let failed!: (e: Error) => void;
    this.ready = new Promise<void>((res, rej) => {
      started = res;
      failed = rej;
    });
    this.pending.set(0, {
      resolve: (r) => (r.ok ? started() : failed(new Error(r.error ?? "unknown error"))),
      reject: failed,
    });
    this.worker.on("message", (r: RenderReply) => {
      const p = this.pending.get(r.id);
      if (!p) return;
      this.pending.delete(r.id);
      this.idleCheck();
      p.resolve(r);
    });
    const fail = (e: Error) => {
      this.dead ??= e;
      for (const p of this.pending.values()) p.reject(e);
      this.pending.clear();
      process.removeListener("exit", this.cleanup);
      this.cleanup();
    };
    this.worker.on("error", (e) => fail(e instanceof Error ? e : new Error(String(e))));
    this.worker.on("exit", () => fail(new Error("the headless browser has been closed")));
  }

  get alive(): boolean {
    return this.dead === null;
  }

  private closing = false;

  /** Keeps the process alive only while requests are pending (or while closing, until the worker ends). */
  private idleCheck(): void {
    if (this.pending.size === 0 && !this.closing) this.worker.unref();
    else this.worker.ref();
  }

  async request(req: Omit<RenderRequest, "id">): Promise<RenderReply> {
    if (this.dead) throw this.dead;
    const id = this.nextId++;
    const reply = new Promise<RenderReply>((resolve, reject) => this.pending.set(id, { resolve, reject }));
    this.idleCheck();
    this.worker.postMessage({ ...req, id } satisfies RenderRequest);
    return reply;
  }

  async close(): Promise<void> {
    if (this.dead) return;
    this.closing = true;
    const exited = new Promise<void>((res) => this.worker.once("exit", () => res()));
    await this.request({ op: "close" }).catch(() => undefined);
    await exited;
  }
}

function rendered(reply: RenderReply, what: string): string | Uint8Array {
  if (!reply.ok || reply.result === undefined) throw new Error(`exportFigure: ${what} failed: ${reply.error}`);
  return reply.result;
}

/** Starts headless Chromium with plotly.js loaded. Throws ChromiumNotFoundError when there is no browser. */
export async function createExporter(opts: ExporterOptions = {}): Promise<FigureExporter> {
  const executablePath = opts.chromiumPath ?? resolveChromium();
  const browser = new BrowserWorker(executablePath, opts.timeoutMs ?? 60_000);
  try {
    await browser.ready;
  } catch (err) {
    await browser.close();
    const msg = err instanceof Error ? err.message.split("\n")[0] : String(err);
    throw new Error(`exportFigure: could not start Chromium at "${executablePath}": ${msg}`, { cause: err });
  }
  return exporterOn(browser);
}

function exporterOn(browser: BrowserWorker): FigureExporter {
  const image = async (fig: Figure, op: "svg" | "png" | "pdf", o: ImageOptions) => {
    const { width, height, scale } = imageSize(fig, o);
    const reply = await browser.request({ op, fig: plainFigure(fig), width, height, scale });
    return { bytes: rendered(reply, op.toUpperCase()), scale };
  };
  const exporter: FigureExporter = {
    async toSvg(fig, o = {}) {
      return String((await image(fig, "svg", o)).bytes);
    },
    async toPng(fig, o = {}) {
      const { bytes, scale } = await image(fig, "png", o);
      return pngWithDpi(Buffer.from(bytes as Uint8Array), 96 * scale);
    },
    async toPdf(fig, o = {}) {
      return Buffer.from((await image(fig, "pdf", o)).bytes as Uint8Array);
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
    close: () => browser.close(),
  };
  return exporter;
}

let shared: { browser: BrowserWorker; exporter: Promise<FigureExporter> } | null = null;

/**
 * The process's one headless browser, started on first use and reused by every export and
 * every static figure display after it: the first export pays for starting Chromium (a few
 * seconds), later ones take a fraction of a second. It does not keep the process alive while
 * idle and ends with the process (or closeSharedExporter()).
 */
export function sharedExporter(opts: ExporterOptions = {}): Promise<FigureExporter> {
  if (shared && shared.browser.alive) return shared.exporter;
  const executablePath = opts.chromiumPath ?? resolveChromium();
  const browser = new BrowserWorker(executablePath, opts.timeoutMs ?? 60_000);
  const exporter = browser.ready.then(
    () => {
      const ex = exporterOn(browser);
      // Its owner is the process: close() from one caller must not end it for the others.
      return { ...ex, close: async () => undefined };
    },
    (err: unknown) => {
      shared = null;
      const msg = err instanceof Error ? err.message.split("\n")[0] : String(err);
      throw new Error(`exportFigure: could not start Chromium at "${executablePath}": ${msg}`, { cause: err });
    },
  );
  shared = { browser, exporter };
  return exporter;
}

/** Ends the shared browser (a later export starts a new one). */
export async function closeSharedExporter(): Promise<void> {
  const s = shared;
  shared = null;
  await s?.browser.close();
}

/** Runs `fn` with its own exporter (one browser) and closes it afterwards, also on error. */
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
 * opts.format. HTML needs no browser; the static formats use the process's shared headless
 * browser (sharedExporter) unless opts.exporter is given. Resolves with the path.
 */
export async function exportFigure(fig: Figure, path: string, opts: ExportOptions = {}): Promise<string> {
  const { exporter, ...rest } = opts;
  const format = rest.format ?? formatOf(path);
  if (format === "html") {
    await mkdir(dirname(path), { recursive: true });
    // Written whole (temporary file, rename): a kill or a full disk never leaves a page, or the
    // shared plotly.js that every page of the folder loads, half-written.
    if (rest.plotlyJs === "beside") {
      await writePlotlyBeside(dirname(path));
      writeFileAtomic(path, figureDocument(fig, { plotlySrc: plotlyFileName() }));
    } else writeFileAtomic(path, figureDocument(fig));
    return path;
  }
  return (exporter ?? (await sharedExporter())).export(fig, path, { ...rest, format });
}

/** Writes plotly-<version>.min.js into `dir` unless a complete copy is there; returns its path. */
export async function writePlotlyBeside(dir: string): Promise<string> {
  const js = join(dir, plotlyFileName());
  const source = plotlyBundleSource();
  // A copy cut short by a kill or a full disk is rewritten; the write is whole or nothing.
  if (!sameSize(js, Buffer.byteLength(source))) writeFileAtomic(js, source);
  return js;
}

/** One file of exportFigures. */
export interface FigureFile {
  figure: Figure;
  path: string;
  options?: Omit<ExportOptions, "exporter">;
}

export interface ExportManyOptions {
  /** Called after each file: how many are written, of how many, and the last path. */
  onProgress?: (done: number, total: number, path: string) => void;
  exporter?: FigureExporter;
}

/** Writes many figures with one browser, in order, reporting progress; resolves with the paths. */
export async function exportFigures(files: readonly FigureFile[], opts: ExportManyOptions = {}): Promise<string[]> {
  const written: string[] = [];
  for (const f of files) {
    const path = await exportFigure(f.figure, f.path, {
      ...f.options,
      ...(opts.exporter ? { exporter: opts.exporter } : {}),
    });
    written.push(path);
    opts.onProgress?.(written.length, files.length, path);
  }
  return written;
}
