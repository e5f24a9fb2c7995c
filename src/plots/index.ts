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

/** The builder, its figures displaying themselves (Symbol.for("Jupyter.display")). */
function displaying<A extends unknown[]>(build: (...args: A) => Figure): (...args: A) => Figure {
  return (...args: A) => displayableFigure(build(...args));
}

export const compareRuns = displaying(run.compareRuns);
export const loss = displaying(run.loss);
export const flipHeatmap = displaying(layers.flipHeatmap);
export const ghostScale = displaying(layers.ghostScale);
export const layerLines = displaying(layers.layerLines);
export const occupancy = displaying(layers.occupancy);
export const flipProbabilityHistogram = displaying(buffers.flipProbabilityHistogram);
export const voteHistogram = displaying(buffers.voteHistogram);

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
