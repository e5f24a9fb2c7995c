/** Experiment tracking: the on-disk run store (see docs/run-store.md). */
export { RunStoreError } from "./errors.js";
export {
  ArrowAppender,
  encodeBatchMessages,
  encodeSchemaMessage,
  readArrowStream,
  readArrowStreamBytes,
  scanStream,
  type ArrowAppenderOptions,
  type ColumnInput,
  type ReadArrowStreamOptions,
  type ScannedMessage,
  type StreamScan,
} from "./arrowStream.js";
export {
  LAYER_FLOAT_COLUMNS,
  LAYER_INT_COLUMNS,
  appendLayerColumns,
  appendMetricsRow,
  layersSchema,
  metricsSchema,
  type LayerColumns,
  type LayerFloatColumn,
  type LayerIntColumn,
  type LayerRow,
  type MetricsInput,
  type MetricsRow,
} from "./schemas.js";
export { LAYER_STATS, STORED_LAYER_STATS, type LayerStatName, type StoredLayerStat } from "./layerStats.js";
export { RUN_FILES, listCheckpoints, type CheckpointInfo } from "./files.js";
export { LOCK_FILE, RunLock, type LockOwner } from "./runLock.js";
export { INDEX_SUFFIX } from "./streamIndex.js";
export {
  RunStore,
  readRunMeta,
  resolveHome,
  type CreateRunOptions,
  type EventKind,
  type OpenRunOptions,
  type RunMeta,
  type RunStatus,
  type RunVersions,
  type SampleInput,
} from "./runStore.js";
export { repairRun, type RepairReport, type StreamRepair } from "./repair.js";
export {
  compareRuns,
  flattenConfig,
  listRuns,
  readRun,
  summarizeMetrics,
  type MetricsSummary,
  type RunData,
  type RunSummary,
} from "./runReader.js";
