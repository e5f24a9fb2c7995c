// `primal report RUN`: the standard figures of a run in each format, written with the
// process's one headless browser, and an index.html that shows them with the run's
// configuration, events and samples.
import { accessSync, constants, existsSync, mkdirSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { readRun } from "../tracking/runReader.js";
import { refuseSymlink } from "../tracking/files.js";
import { ensureDir, writeFileAtomic } from "../tracking/guardedWrite.js";
import * as plots from "../plots/index.js";
import { reportPage } from "./reportPage.js";

const FORMATS = ["html", "svg", "png", "pdf"] as const;

/** Why the nearest existing folder at or above `dir` cannot be written to (an errno code), or null. */
function writeProblem(dir: string): string | null {
  for (let d = dir; ; d = dirname(d)) {
    if (existsSync(d)) {
      try {
        accessSync(d, constants.W_OK);
        return null;
      } catch (e) {
        return (e as NodeJS.ErrnoException).code ?? null;
      }
    }
    if (dirname(d) === d) return null;
  }
}

export interface ReportOptions {
  /** Output folder; default <run>/figures. */
  outDir?: string | undefined;
  /** Any of html, svg, png, pdf (index.html is always written). */
  formats: string[];
  /** Figure style; default "notebook". */
  style?: plots.StyleName;
  /** Paper style: 1 (3.5 in) or 2 (7 in) columns. */
  columns?: 1 | 2;
  /** Called after each file written: done, total, path. */
  onProgress?: (done: number, total: number, path: string) => void;
}

/**
 * Writes the standard figures of a run in each format and an index.html that shows them with
 * the run's configuration, events and samples. Resolves with the files written, index.html last.
 */
export async function writeReport(runDir: string, opts: ReportOptions): Promise<string[]>;
/** The older form: output folder and formats. */
export async function writeReport(runDir: string, outDir: string | undefined, formats: string[]): Promise<string[]>;
export async function writeReport(
  runDir: string,
  optsOrOut: ReportOptions | string | undefined,
  formatList?: string[],
): Promise<string[]> {
  const opts: ReportOptions =
    typeof optsOrOut === "object" ? optsOrOut : { outDir: optsOrOut, formats: formatList ?? ["html", "png"] };
  const { outDir, formats } = opts;
  const run = readRun(resolve(runDir));
  for (const f of formats)
    if (!(FORMATS as readonly string[]).includes(f))
      throw new Error(`report: unknown format '${f}' (allowed: ${FORMATS.join(", ")})`);
  const out = resolve(outDir ?? join(runDir, "figures"));
  // Inside a run directory nothing is written through a link: a shared or copied run could
  // otherwise point figures/ (or figures/loss.html) at any file of the user's.
  const inRun = outDir === undefined;
  if (inRun) refuseSymlink(out);
  try {
    if (inRun) ensureDir(resolve(runDir), out);
    else mkdirSync(out, { recursive: true });
    accessSync(out, constants.W_OK);
  } catch (e) {
    // A recursive mkdir on a read-only file system reports ENOENT; ask the nearest existing
    // folder for the real reason.
    const code = writeProblem(out) ?? (e as NodeJS.ErrnoException).code ?? String(e);
    throw new Error(
      `report: cannot write figures to ${out} (${code}${code === "EROFS" || code === "EACCES" ? ": the folder is read-only" : ""}); pass --out DIR to write them elsewhere`,
      { cause: e },
    );
  }
  const figures = plots.withStyle(opts.style ?? "notebook", { columns: opts.columns ?? 1 }, () => [
    { name: "loss", figure: plots.loss(run, { smooth: true }) },
    { name: "ghost-scale", figure: plots.ghostScale(run) },
    { name: "flip-heatmap", figure: plots.flipHeatmap(run) },
    { name: "occupancy", figure: plots.occupancy(run) },
  ]);
  const files: plots.FigureFile[] = figures.flatMap(({ name, figure }) =>
    // The HTML pages share one plotly.js beside them instead of 4.8 MB each.
    formats.map((f) => ({ figure, path: join(out, `${name}.${f}`), options: { plotlyJs: "beside" as const } })),
  );
  const total = files.length + 1;
  for (const f of files) if (inRun) refuseSymlink(f.path);
  const written = await plots.exportFigures(files, {
    onProgress: (done, _n, path) => opts.onProgress?.(done, total, path),
  });
  // The page, and the one plotly.js it and the HTML figures share.
  const index = join(out, "index.html");
  if (inRun) {
    refuseSymlink(index);
    refuseSymlink(join(out, plots.plotlyFileName()));
  }
  await plots.writePlotlyBeside(out);
  writeFileAtomic(
    index,
    reportPage(
      run,
      figures.map(({ name, figure }) => ({ name, figure, files: formats.map((f) => `${name}.${f}`) })),
    ),
  );
  written.push(index);
  opts.onProgress?.(total, total, index);
  return written;
}
