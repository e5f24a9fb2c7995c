// Runs one sweep point in this process: a new run, or the resume of the point's interrupted run,
// or nothing when it is finished. The point's lock makes sure two processes (a rerun beside a
// still-running sweep, two array tasks given the same K) never train the same point at once.
import { existsSync, mkdirSync } from "node:fs";
import { join } from "node:path";
import { Trainer, type StepMetrics } from "../trainer.js";
import { RunStoreError } from "../tracking/errors.js";
import { listCheckpoints, RUN_FILES } from "../tracking/files.js";
import { RunLock } from "../tracking/runLock.js";
import { readRunMeta } from "../tracking/runStore.js";
import { annotateRun } from "../tracking/annotations.js";
import { isInterrupted } from "../interrupted.js";
import type { ExpandedSweep, SweepPoint } from "./spec.js";
import { pointDir, readPointRecord, writePointRecord, type PointRecord } from "./records.js";

export type PointOutcome =
  /** Trained to its last step by this call. */
  | "finished"
  /** Already finished before this call: skipped. */
  | "done"
  | "failed"
  /** Interrupted (the signal): resumes from its checkpoint on the next run. */
  | "stopped"
  /** Another process is working on it. */
  | "busy";

export interface PointResult {
  index: number;
  key: string;
  outcome: PointOutcome;
  runDir?: string;
  /** Steps trained by this call. */
  steps: number;
  error?: string;
}

export interface RunPointOptions {
  home: string;
  /** CPU threads for the point's trainer (the sweep divides the cores between parallel points). */
  threads?: number;
  signal?: AbortSignal;
  /** Retrain points whose run failed (by resuming it from its last checkpoint). Default false. */
  retryFailed?: boolean;
  onStep?: (m: StepMetrics, point: SweepPoint) => void;
  /** Called once the point has a run (new or resumed), before training. */
  onStart?: (point: SweepPoint, runDir: string, step: number) => void;
}

export async function runPoint(sweep: ExpandedSweep, point: SweepPoint, opts: RunPointOptions): Promise<PointResult> {
  const base = { index: point.index, key: point.key, steps: 0 };
  const dir = pointDir(opts.home, sweep.id, point.key);
  let lock: RunLock;
  try {
    mkdirSync(dir, { recursive: true });
    lock = RunLock.acquire(dir);
  } catch (e) {
    if (e instanceof RunStoreError) return { ...base, outcome: "busy", error: e.message };
    throw e;
  }
  try {
    const rec: PointRecord = readPointRecord(dir) ?? { index: point.index, key: point.key, values: point.values };
    rec.index = point.index;
    let runDir = rec.runId ? join(opts.home, rec.runId) : null;
    if (runDir && !existsSync(join(runDir, RUN_FILES.meta))) runDir = null;
    if (runDir) {
      const meta = readRunMeta(runDir);
      const planned = typeof meta.config["steps"] === "number" ? meta.config["steps"] : point.config.steps;
      if (meta.status === "finished" && meta.step >= planned) return { ...base, outcome: "done", runDir };
      if (meta.status === "failed" && !opts.retryFailed)
        return { ...base, outcome: "failed", runDir, ...(meta.error ? { error: meta.error } : {}) };
      if (listCheckpoints(runDir).length === 0) {
        // Killed before its first checkpoint: nothing to resume from. A fresh run replaces it,
        // and the old one says so.
        annotateRun(runDir, [
          { kind: "note", text: "replaced in its sweep by a new run: it stopped before its first checkpoint" },
          { kind: "tag", tag: "sweep-replaced" },
        ]);
        rec.replaced = [...(rec.replaced ?? []), rec.runId!];
        delete rec.runId;
        writePointRecord(dir, rec);
        runDir = null;
      }
    }
    const threads = opts.threads !== undefined && point.input.threads === undefined ? { threads: opts.threads } : {};
    let trainer: Trainer;
    try {
      if (runDir) {
        trainer = await Trainer.resume(runDir, threads);
      } else {
        trainer = await Trainer.create(
          { ...point.input, home: opts.home, ...threads },
          {
            sweep: { id: sweep.id, point: point.index, key: point.key, values: point.values },
            tags: sweep.spec.tags,
          },
        );
        rec.runId = trainer.store.id;
        writePointRecord(dir, rec);
      }
    } catch (e) {
      // One point that cannot start (its run held by another writer, bad data) fails alone.
      const error = e instanceof Error ? e.message : String(e);
      const held = e instanceof RunStoreError && /is being written by/.test(error);
      return { ...base, outcome: held ? "busy" : "failed", ...(runDir ? { runDir } : {}), error };
    }
    const result: PointResult = { ...base, outcome: "finished", runDir: trainer.runDir };
    try {
      opts.onStart?.(point, trainer.runDir, trainer.step);
      const remaining = trainer.config.steps - trainer.step;
      if (remaining > 0) {
        const summary = await trainer.train(remaining, {
          evaluateAtEnd: true,
          ...(opts.signal ? { signal: opts.signal } : {}),
          ...(opts.onStep ? { onStep: (m: StepMetrics) => opts.onStep!(m, point) } : {}),
        });
        result.steps = summary.steps;
        if (summary.stopped || summary.step < trainer.config.steps) result.outcome = "stopped";
      } else if (!opts.signal?.aborted) {
        // Killed after its last step, before its final evaluation.
        await trainer.evaluate(opts.signal ? { signal: opts.signal } : {});
      } else result.outcome = "stopped";
    } catch (e) {
      if (isInterrupted(e)) result.outcome = "stopped";
      else {
        result.outcome = "failed";
        result.error = e instanceof Error ? e.message : String(e);
      }
    } finally {
      // dispose() finishes a run left "running"; a point stopped before it trained a step is not.
      if (result.outcome === "stopped") {
        // A point stopped before its first checkpoint gets one, so the rerun resumes it.
        if (trainer.store.latestCheckpoint() === null) await trainer.save().catch(() => undefined);
        if (trainer.store.info.status === "running") {
          trainer.store.event("stop", { step: trainer.step });
          trainer.store.setStatus("stopped", trainer.step);
        }
      }
      trainer.dispose();
    }
    return result;
  } finally {
    lock.release();
  }
}
