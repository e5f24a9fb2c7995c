// Plotly figure builders, their style and figure export. In notebooks this module is `plots`:
//   plots.loss(t.run, { smooth: true }); await plots.exportFigure(fig, "loss.png");
//   plots.style("paper");   // figures built from now on: 3.5 in wide, print fonts, PNG at 300 dpi
//
// A new builder: build the layout with baseLayout() (fonts, sizes, legend of the active style),
// label runs with runLabels(), colour them with paletteColor() (layers: layerColors()), add
// knob changes to step-axis figures with addEventMarkers(), and wrap it with displaying() below.

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
  runAlias,
  runLabel,
  runLabels,
  type Figure,
  type LayoutOptions,
  type PlotlyTrace,
  type RunData,
  type RunEvent,
} from "./figure.js";
import { displayableFigure } from "./display.js";
export {
  displayableFigure,
  displayMode,
  DISPLAY_MODES,
  figureBundle,
  figureBundleStatic,
  figureDisplayBundle,
  isFigure,
  PLOTLY_MIME,
  setDisplay,
  type DisplayMode,
} from "./display.js";
export {
  currentStyle,
  FONT_FAMILY,
  KIND_COLORS,
  style,
  STYLE_NAMES,
  withStyle,
  type FigureStyle,
  type StyleName,
  type StyleOptions,
} from "./style.js";
import type { Figure } from "./figure.js";
import * as ablation from "./ablation.js";
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
export function displaying<A extends unknown[]>(build: (...args: A) => Figure): (...args: A) => Figure {
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
export const ablationChart = displaying(ablation.ablationChart);
export const knobSweep = displaying(ablation.knobSweep);

export { runFamilies, type BandOptions } from "./seedBands.js";
export { type SweepLike, type SweepPlotOptions } from "./sweepPlot.js";
export { addEventMarkers, eventMarkers } from "./events.js";
export { type CompareOptions, type LossOptions, type RunMetric } from "./run.js";
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
  ablationSummary,
  readAblation,
  type AblationChartOptions,
  type AblationMetric,
  type AblationRow,
  type KnobSweepOptions,
} from "./ablation.js";
export {
  CHROMIUM_ARGS,
  ChromiumNotFoundError,
  closeSharedExporter,
  createExporter,
  exportFigure,
  exportFigures,
  figureDpi,
  findChromium,
  formatOf,
  pngWithDpi,
  resolveChromium,
  sharedExporter,
  withExporter,
  writePlotlyBeside,
  type ExportFormat,
  type ExportManyOptions,
  type ExporterOptions,
  type ExportOptions,
  type FigureExporter,
  type FigureFile,
  type ImageOptions,
} from "./export.js";
export {
  figureDocument,
  figureHtml,
  figureTitle,
  plotlyBundlePath,
  plotlyFileName,
  plotlyBundleSource,
  plotlyScriptTag,
  plotlyVersion,
  type FigureHtmlOptions,
} from "./html.js";
