// Plotly figure builders and figure export. In notebooks this module is `plots`:
//   plots.loss(t.run, { smooth: true }); await plots.exportFigure(fig, "loss.png", { scale: 2 });

export {
  baseConfig,
  baseLayout,
  COLORS,
  figureJson,
  formatValue,
  layerColors,
  LEVEL_COLORS,
  LEVEL_NAMES,
  PALETTE,
  paletteColor,
  parseLayerName,
  type Figure,
  type LayoutOptions,
  type PlotlyTrace,
  type RunData,
  type RunEvent,
} from "./figure.js";
import { displayableFigure } from "../display/figureBundle.js";
export { displayMode, DISPLAY_MODES, setDisplay, type DisplayMode } from "../display/figureBundle.js";
import type { Figure } from "./figure.js";
import * as buffers from "./buffers.js";
import * as layers from "./layers.js";
import * as run from "./run.js";
import { compareRunsWithBands, type BandOptions } from "./seedBands.js";
import { sweepPlot } from "./sweepPlot.js";
import type { RunData } from "./figure.js";
import type { Table } from "apache-arrow";
import { customMetricNames, LAYER_SERIES } from "../tracking/series.js";

/** compareRuns of run.ts draws metrics columns; other series (layers, custom) go to seedBands.ts. */
const isOtherSeries = (runs: readonly RunData[], metric: string) =>
  !runs.every((r) => r.metrics.getChild(metric) !== null) &&
  (metric in LAYER_SERIES ||
    runs.some((r) => customMetricNames((r as { custom?: Table }).custom).includes(metric.replace(/^custom\./, ""))));

/** The builder, its figures displaying themselves (Symbol.for("Jupyter.display")). */
function displaying<A extends unknown[]>(build: (...args: A) => Figure): (...args: A) => Figure {
  return (...args: A) => displayableFigure(build(...args));
}

/**
 * One metric of several runs overlaid; with `groupBy` (e.g. "seed") runs that differ only in
 * that field are drawn as their mean ± a band (seedBands.ts). Custom metrics (t.log), ghostScale
 * and flipRate work either way.
 */
export const compareRuns = displaying((runs: readonly RunData[], opts: BandOptions = {}) =>
  opts.groupBy !== undefined || isOtherSeries(runs, opts.metric ?? "loss")
    ? compareRunsWithBands(runs, { ...opts, groupBy: opts.groupBy === undefined ? null : opts.groupBy })
    : run.compareRuns(runs, opts),
);
/** A sweep's metric against one swept knob, mean over seeds (sweepPlot.ts). */
export const sweep = displaying(sweepPlot);
export const loss = displaying(run.loss);
export const flipHeatmap = displaying(layers.flipHeatmap);
export const ghostScale = displaying(layers.ghostScale);
export const layerLines = displaying(layers.layerLines);
export const occupancy = displaying(layers.occupancy);
export const flipProbabilityHistogram = displaying(buffers.flipProbabilityHistogram);
export const voteHistogram = displaying(buffers.voteHistogram);

export { runFamilies, type BandOptions } from "./seedBands.js";
export { type SweepLike, type SweepPlotOptions } from "./sweepPlot.js";
export { eventMarkers, type CompareOptions, type LossOptions, type RunMetric } from "./run.js";
export {
  scaleSymmetryGroups,
  SCALE_SYMMETRY_PAIRS,
  type GhostScaleOptions,
  type HeatmapOptions,
  type LayerLinesOptions,
  type LayerMetric,
  type OccupancyOptions,
} from "./layers.js";
export { type FlipProbabilityOptions, type VoteHistogramOptions } from "./buffers.js";
export {
  CHROMIUM_ARGS,
  ChromiumNotFoundError,
  createExporter,
  exportFigure,
  findChromium,
  formatOf,
  resolveChromium,
  withExporter,
  type ExportFormat,
  type ExporterOptions,
  type ExportOptions,
  type FigureExporter,
  type ImageOptions,
} from "./export.js";
export {
  figureDocument,
  figureHtml,
  plotlyBundlePath,
  plotlyFileName,
  plotlyBundleSource,
  plotlyScriptTag,
  plotlyVersion,
  type FigureHtmlOptions,
} from "./html.js";
