// `primal report RUN`: the standard figures of a run, written with one headless browser.
import { mkdirSync } from "node:fs";
import { join, resolve } from "node:path";
import { readRun } from "../tracking/runReader.js";
import * as plots from "../plots/index.js";

const FORMATS = ["html", "svg", "png", "pdf"] as const;

export async function writeReport(runDir: string, outDir: string | undefined, formats: string[]): Promise<string[]> {
  const run = readRun(resolve(runDir));
  for (const f of formats)
    if (!(FORMATS as readonly string[]).includes(f))
      throw new Error(`report: unknown format '${f}' (allowed: ${FORMATS.join(", ")})`);
  const out = resolve(outDir ?? join(runDir, "figures"));
  mkdirSync(out, { recursive: true });
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
        if (f === "html" || !exporter) await plots.exportFigure(fig, path, { plotlyJs: "beside" });
        else await exporter.export(fig, path);
        written.push(path);
      }
  };
  if (needsBrowser) await plots.withExporter((ex) => write(ex));
  else await write();
  return written;
}
