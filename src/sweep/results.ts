// The results of a sweep: one row per point, built from the point records and the runs (the runs
// are the truth; results.arrow is a copy written after each point, for other tools).
import { randomBytes } from "node:crypto";
import { closeSync, fsyncSync, mkdirSync, openSync, renameSync, rmSync, writeSync } from "node:fs";
import { join } from "node:path";
import { Float64, Int32, Table, Utf8, tableToIPC, vectorFromArray, type Vector } from "apache-arrow";
import { readArrowStream } from "../tracking/arrowStream.js";
import { describeError } from "../tracking/errors.js";
import { RUN_FILES, fsyncDir } from "../tracking/files.js";
import { readRunMeta } from "../tracking/runStore.js";
import { summarizeMetrics, type MetricsSummary } from "../tracking/runReader.js";
import { customSchema, metricsSchema } from "../tracking/schemas.js";
import { EXTRA_RUN_FILES } from "../tracking/annotations.js";
import { liveStatus, type LiveStatus } from "../tracking/runStatus.js";
import { displayableTable } from "../display/tableBundle.js";
import { valueColumn } from "../tracking/runsTable.js";
import type { ExpandedSweep } from "./spec.js";
import { pointDir, readPointRecord, sweepDir } from "./records.js";

export type PointStatus = LiveStatus | "pending" | "unreadable";

export interface PointRow {
  point: number;
  key: string;
  status: PointStatus;
  runId: string | null;
  runDir: string | null;
  values: Record<string, unknown>;
  summary: MetricsSummary | null;
  /** Final value of the sweep's metric (null when not measured yet). */
  metric: number | null;
  error?: string;
}

/** Last non-null value of a metrics column, or of a custom metric. */
export function finalMetric(runDir: string, metric: string, summary: MetricsSummary): number | null {
  const builtin: Record<string, number | null> = {
    loss: summary.finalTrainLoss,
    valLoss: summary.finalValLoss,
    valBpb: summary.valBpb,
    tokensPerSec: summary.medianTokensPerSec,
  };
  if (metric in builtin) return builtin[metric] ?? null;
  const custom = readArrowStream(join(runDir, EXTRA_RUN_FILES.custom), { schema: customSchema });
  const names = custom.getChild("name");
  const values = custom.getChild("value");
  if (!names || !values) return null;
  for (let i = custom.numRows - 1; i >= 0; i--) if (names.get(i) === metric) return Number(values.get(i));
  return null;
}

/** The state of every point of the sweep, from its records and runs under `home`. */
export function pointRows(sweep: ExpandedSweep, home: string): PointRow[] {
  return sweep.points.map((p) => {
    const row: PointRow = {
      point: p.index,
      key: p.key,
      status: "pending",
      runId: null,
      runDir: null,
      values: p.values,
      summary: null,
      metric: null,
    };
    const rec = readPointRecord(pointDir(home, sweep.id, p.key));
    if (!rec?.runId) return row;
    const dir = join(home, rec.runId);
    row.runId = rec.runId;
    row.runDir = dir;
    try {
      const meta = readRunMeta(dir);
      row.status = liveStatus(dir, meta).status;
      row.summary = summarizeMetrics(readArrowStream(join(dir, RUN_FILES.metrics), { schema: metricsSchema }));
      row.metric = finalMetric(dir, sweep.spec.metric, row.summary);
    } catch (e) {
      row.status = "unreadable";
      row.error = describeError(e);
    }
    return row;
  });
}

/** Is `a` better than `b` under the sweep's goal (lower is better unless the metric is a rate). */
export function better(a: number, b: number | null, goal: "min" | "max"): boolean {
  return b === null || (goal === "min" ? a < b : a > b);
}

/**
 * The results as an Arrow table: point, key, status, runId, one column per swept field (Float64
 * when all its values are numbers, else Utf8 holding JSON text), then the final and best metrics
 * and, when the sweep's metric is a custom one, its final value.
 */
export function resultsTable(sweep: ExpandedSweep, rows: readonly PointRow[]): Table {
  const cols: Record<string, Vector> = {
    point: vectorFromArray(
      rows.map((r) => r.point),
      new Int32(),
    ),
    key: vectorFromArray(
      rows.map((r) => r.key),
      new Utf8(),
    ),
    status: vectorFromArray(
      rows.map((r) => r.status),
      new Utf8(),
    ),
    runId: vectorFromArray(
      rows.map((r) => r.runId),
      new Utf8(),
    ),
  };
  for (const k of sweep.swept) cols[k] = valueColumn(rows.map((r) => r.values[k]));
  const num = (pick: (s: MetricsSummary) => number | null) =>
    vectorFromArray(
      rows.map((r) => (r.summary ? pick(r.summary) : null)),
      new Float64(),
    );
  cols["finalTrainLoss"] = num((s) => s.finalTrainLoss);
  cols["bestTrainLoss"] = num((s) => s.bestTrainLoss);
  cols["finalValLoss"] = num((s) => s.finalValLoss);
  cols["bestValLoss"] = num((s) => s.bestValLoss);
  cols["valBpb"] = num((s) => s.valBpb);
  cols["tokensPerSec"] = num((s) => s.medianTokensPerSec);
  cols["steps"] = vectorFromArray(
    rows.map((r) => r.summary?.lastStep ?? null),
    new Int32(),
  );
  const m = sweep.spec.metric;
  if (!(m in cols) && !["loss", "valLoss", "valBpb"].includes(m))
    cols[m] = vectorFromArray(
      rows.map((r) => r.metric),
      new Float64(),
    );
  return displayableTable(new Table(cols));
}

/** Writes the results table to `<home>/sweeps/<id>/results.arrow` (Arrow IPC file, atomically). */
export function writeResults(sweep: ExpandedSweep, home: string, table: Table): string {
  const dir = sweepDir(home, sweep.id);
  mkdirSync(dir, { recursive: true });
  const path = join(dir, "results.arrow");
  const tmp = `${path}.tmp-${process.pid}-${randomBytes(4).toString("hex")}`;
  const bytes = tableToIPC(table, "file");
  try {
    const fd = openSync(tmp, "w", 0o644);
    try {
      writeSync(fd, bytes);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    renameSync(tmp, path);
  } catch (e) {
    rmSync(tmp, { force: true });
    throw e;
  }
  fsyncDir(dir);
  return path;
}
