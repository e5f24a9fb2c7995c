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
export { compareRuns, eventMarkers, loss, type CompareOptions, type LossOptions, type RunMetric } from "./run.js";
export {
  flipHeatmap,
  ghostScale,
  layerLines,
  occupancy,
  type GhostScaleOptions,
  type HeatmapOptions,
  type LayerLinesOptions,
  type LayerMetric,
  type OccupancyOptions,
} from "./layers.js";
export {
  flipProbabilityHistogram,
  voteHistogram,
  type FlipProbabilityOptions,
  type VoteHistogramOptions,
} from "./buffers.js";
export {
  CHROMIUM_ARGS,
  ChromiumNotFoundError,
  createExporter,
  exportFigure,
  figureDocument,
  figureHtml,
  findChromium,
  formatOf,
  plotlyBundlePath,
  plotlyBundleSource,
  plotlyScriptTag,
  plotlyVersion,
  resolveChromium,
  withExporter,
  type ExportFormat,
  type ExporterOptions,
  type ExportOptions,
  type FigureExporter,
  type FigureHtmlOptions,
  type ImageOptions,
} from "./export.js";
