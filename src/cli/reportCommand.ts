// `primal report RUN`: the standard figures of a run, written with one headless browser.
import { accessSync, constants, existsSync, mkdirSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { readRun } from "../tracking/runReader.js";
import { refuseSymlink } from "../tracking/files.js";
import { ensureDir } from "../tracking/guardedWrite.js";
import * as plots from "../plots/index.js";

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

export async function writeReport(runDir: string, outDir: string | undefined, formats: string[]): Promise<string[]> {
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
  const figures: [string, plots.Figure][] = [
    ["loss", plots.loss(run, { smooth: true })],
    ["ghost-scale", plots.ghostScale(run)],
    ["flip-heatmap", plots.flipHeatmap(run)],
    ["occupancy", plots.occupancy(run)],
  ];
  const written: string[] = [];
  const needsBrowser = formats.some((f) => f !== "html");
  const write = async (exporter?: plots.FigureExporter) => {
    for (const [name, fig] of figures)
      for (const f of formats) {
        const path = join(out, `${name}.${f}`);
        // The HTML pages share one plotly.js beside them instead of 4.8 MB each.
        if (inRun) refuseSymlink(path);
        if (f === "html" || !exporter) await plots.exportFigure(fig, path, { plotlyJs: "beside" });
        else await exporter.export(fig, path);
        written.push(path);
      }
  };
  if (needsBrowser) await plots.withExporter((ex) => write(ex));
  else await write();
  return written;
}
