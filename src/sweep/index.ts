// Sweeps: families of ordinary runs from one spec (docs/tracking.md).
export {
  expandSweep,
  loadSweepSpec,
  sweepSpecSchema,
  SweepSpecError,
  type ExpandedSweep,
  type SweepPoint,
  type SweepSpec,
  type SweepSpecInput,
} from "./spec.js";
export { sweep, sweepStatus, type SweepOptions, type SweepProgress, type SweepResult } from "./runner.js";
export { runPoint, type PointOutcome, type PointResult, type RunPointOptions } from "./runPoint.js";
export { pointRows, resultsTable, type PointRow, type PointStatus } from "./results.js";
