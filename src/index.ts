// Public API of the primal package (what a notebook cell imports).
export { Trainer } from "./trainer.js";
export type {
  StepMetrics,
  TrainOptions,
  TrainSummary,
  EvaluationResult,
  EvaluateOptions,
  SampleOptions,
  SampleRecord,
  ExecutionPlan,
} from "./trainer.js";
export { Interrupted, TrainingInterrupted, EvaluationInterrupted, isInterrupted } from "./interrupted.js";
export {
  setHostHooks,
  hostHooks,
  type HostHooks,
  type TrainObserver,
  type EvalObserver,
  type EvalProgress,
} from "./host.js";
export { JUPYTER_DISPLAY, type Displayable, type MimeBundle } from "./display/mime.js";
export { resolveConfig, configSchema, ConfigError } from "./config.js";
export { knobsSchema, knobFields, defaultKnobs } from "./knobs.js";
export type { Knobs, KnobField } from "./knobs.js";
export type { TrainerConfig, TrainerConfigInput } from "./config.js";
export { PRESETS, PRESET_NAMES } from "./presets.js";
export { planMemory, planTable } from "./memoryPlan.js";
export type { MemoryPlanning } from "./memoryPlan.js";
export { parseByteSize, formatBytes } from "./byteSize.js";
export type { PresetName } from "./presets.js";
export type { LayerColumns, NativeMemory, NativeMemoryPlan, RecomputeMode } from "./native.js";
export { weightTable, layerTable } from "./tables.js";
export * as plots from "./plots/index.js";
export { exportFigure } from "./plots/export.js";
export { readRun, listRuns, compareRuns } from "./tracking/runReader.js";
export { RunStore } from "./tracking/runStore.js";
export { repairRun, type RepairReport } from "./tracking/repair.js";
export { getTokenizer } from "./data/tokenizer.js";
export { exportRunGGUF, GGUF_EXPORT_TYPES } from "./export/llamaExport.js";
export type { GGUFExportOptions, GGUFExportResult, GGUFExportType } from "./export/llamaExport.js";
export { loadNodeLlamaCpp } from "./export/nodeLlamaCpp.js";
export {
  sweep,
  sweepStatus,
  expandSweep,
  loadSweepSpec,
  SweepSpecError,
  type SweepOptions,
  type SweepProgress,
  type SweepResult,
  type SweepSpecInput,
} from "./sweep/index.js";
export type { RunMetadata, LogOptions } from "./trainer.js";
export { runs, runsTable, type RunsOptions } from "./tracking/runsTable.js";
export type { RunQuery, RunSummary } from "./tracking/runReader.js";
export { readAnnotations, annotateRun } from "./tracking/annotations.js";
export { board, type BoardEmbed, type BoardOptions, type BoardServer, type EmbedOptions } from "./board/index.js";
