// Runs a whole sweep: every point not finished yet, one at a time in this process or N at a
// time in child processes (`primal sweep SPEC --point K`), with the cores divided between them.
// Aborting the signal stops every point at its next step boundary with a checkpoint, so running
// the sweep again continues where it stopped.
import { spawn, type ChildProcess } from "node:child_process";
import { mkdirSync } from "node:fs";
import { availableParallelism } from "node:os";
import { join } from "node:path";
import type { Table } from "apache-arrow";
import { resolveHome } from "../tracking/runStore.js";
import { writeJsonAtomic } from "../tracking/files.js";
import { packageRoot } from "../paths.js";
import { tableBundle } from "../display/tableBundle.js";
import { withDisplay } from "../display/mime.js";
import { expandSweep, loadSweepSpec, type ExpandedSweep, type SweepPoint, type SweepSpecInput } from "./spec.js";
import { runPoint, type PointResult } from "./runPoint.js";
import { better, pointRows, resultsTable, writeResults, type PointRow } from "./results.js";
import { sweepDir } from "./records.js";

export interface SweepProgress {
  sweepId: string;
  points: number;
  /** Points finished (now or before), failed, and being trained right now. */
  done: number;
  failed: number;
  running: number[];
  /** Steps trained so far in this call, and still to train (over all points). */
  stepsDone: number;
  stepsLeft: number;
  /** Estimated seconds to the end, from this call's pace (null until a step was timed). */
  etaSeconds: number | null;
  /** The best point so far by the sweep's metric. */
  best: { point: number; value: number } | null;
  metric: string;
}

export interface SweepOptions {
  /** Runs home (default PRIMAL_HOME or ./runs). Points may also be run elsewhere on the same home. */
  home?: string;
  /** Points trained at once (child processes when > 1). Default 1. */
  parallel?: number;
  /** CPU threads divided between the parallel points (default: all cores). */
  threads?: number;
  /** Stops every point at its next step boundary (checkpointed: a rerun continues). */
  signal?: AbortSignal;
  onProgress?: (p: SweepProgress) => void;
  /** Called as each point ends (or is skipped). */
  onPoint?: (r: PointResult) => void;
  /** Retrain points whose run failed. Default false (they stay failed). */
  retryFailed?: boolean;
}

/** What sweep() returns: the results table and where everything is. Displays as the table. */
export interface SweepResult {
  sweepId: string;
  /** `<home>/sweeps/<id>/`. */
  dir: string;
  /** results.arrow, the table below as an Arrow IPC file. */
  resultsPath: string;
  /** One row per point: point, key, status, runId, swept fields, final and best metrics. */
  table: Table;
  /** The run directory of every point that has one, by point. */
  runs: string[];
  /** Points finished, failed, stopped (interrupted) and busy (held by another process). */
  done: number;
  failed: number;
  stopped: number;
  busy: number;
  /** The spec's metric and the best point by it. */
  metric: string;
  best: { point: number; value: number; runDir: string } | null;
  seconds: number;
}

function sweepOf(spec: ExpandedSweep | SweepSpecInput | string): ExpandedSweep {
  if (typeof spec === "string") return loadSweepSpec(spec);
  if ("points" in spec && Array.isArray(spec.points) && "swept" in spec) return spec as ExpandedSweep;
  return expandSweep(spec);
}

/** The points of a sweep with their state under `home` (what `primal sweep --list` prints). */
export function sweepStatus(spec: ExpandedSweep | SweepSpecInput | string, home?: string): PointRow[] {
  return pointRows(sweepOf(spec), resolveHome(home));
}

/** Runs a sweep (a spec object, an expanded sweep or a spec file path); see docs/tracking.md. */
export async function sweep(
  spec: ExpandedSweep | SweepSpecInput | string,
  opts: SweepOptions = {},
): Promise<SweepResult> {
  const t0 = performance.now();
  const s = sweepOf(spec);
  const home = resolveHome(opts.home);
  const parallel = Math.max(1, Math.min(opts.parallel ?? 1, s.points.length));
  if (!Number.isInteger(parallel)) throw new Error(`sweep: parallel must be a positive integer, got ${opts.parallel}`);
  const cores = opts.threads ?? availableParallelism();
  const threads = Math.max(1, Math.floor(cores / parallel));
  const dir = sweepDir(home, s.id);
  mkdirSync(dir, { recursive: true });
  // The spec as run, its name filled in: child processes and later `--point K` calls expand it.
  const specPath = join(dir, "spec.json");
  writeJsonAtomic(specPath, { ...s.spec, name: s.name });

  const goal = s.spec.goal;
  let rows = pointRows(s, home);
  const finished = (r: PointRow) => r.status === "finished";
  const failedRow = (r: PointRow) => r.status === "failed" && !opts.retryFailed;
  const todo = s.points.filter((p) => !finished(rows[p.index]!) && !failedRow(rows[p.index]!));
  const stepOf = new Map<number, number>();
  for (const r of rows) stepOf.set(r.point, r.summary?.lastStep ?? 0);
  const stepsLeftAtStart = todo.reduce((a, p) => a + Math.max(0, p.config.steps - (stepOf.get(p.index) ?? 0)), 0);

  let best: SweepProgress["best"] = null;
  for (const r of rows)
    if (finished(r) && r.metric !== null && better(r.metric, best?.value ?? null, goal))
      best = { point: r.point, value: r.metric };
  const results: PointResult[] = [];
  let stepsDone = 0;
  let trainingSince: number | null = null;
  const running = new Set<number>();
  const progress = (): SweepProgress => {
    const elapsed = trainingSince === null ? 0 : (performance.now() - trainingSince) / 1000;
    const left = Math.max(0, stepsLeftAtStart - stepsDone);
    return {
      sweepId: s.id,
      points: s.points.length,
      done: rows.filter(finished).length,
      failed: rows.filter((r) => r.status === "failed").length,
      running: [...running].sort((a, b) => a - b),
      stepsDone,
      stepsLeft: left,
      etaSeconds: stepsDone > 0 ? (elapsed / stepsDone) * left : null,
      best,
      metric: s.spec.metric,
    };
  };
  const report = () => opts.onProgress?.(progress());
  const onStep = () => {
    trainingSince ??= performance.now();
    stepsDone++;
    report();
  };
  const ended = (r: PointResult) => {
    running.delete(r.index);
    results.push(r);
    rows = pointRows(s, home);
    const row = rows[r.index]!;
    if (finished(row) && row.metric !== null && better(row.metric, best?.value ?? null, goal))
      best = { point: row.point, value: row.metric };
    writeResults(s, home, resultsTable(s, rows));
    opts.onPoint?.(r);
    report();
  };
  report();

  const queue = [...todo];
  if (parallel === 1) {
    for (const p of queue) {
      if (opts.signal?.aborted) break;
      running.add(p.index);
      report();
      ended(
        await runPoint(s, p, {
          home,
          threads,
          ...(opts.signal ? { signal: opts.signal } : {}),
          ...(opts.retryFailed ? { retryFailed: true } : {}),
          onStep,
        }),
      );
    }
  } else {
    await runChildren(s, queue, parallel, {
      specPath,
      home,
      threads,
      ...(opts.signal ? { signal: opts.signal } : {}),
      retryFailed: !!opts.retryFailed,
      onStart: (p) => {
        running.add(p.index);
        report();
      },
      onStep,
      onEnd: ended,
    });
  }

  rows = pointRows(s, home);
  const table = resultsTable(s, rows);
  const resultsPath = writeResults(s, home, table);
  const bestRow = best ? rows[best.point] : undefined;
  const result: SweepResult = {
    sweepId: s.id,
    dir,
    resultsPath,
    table,
    runs: rows.filter((r) => r.runDir !== null).map((r) => r.runDir as string),
    done: rows.filter(finished).length,
    // Points whose run failed, and points that failed before they had a run.
    failed: new Set([
      ...rows.filter((r) => r.status === "failed").map((r) => r.point),
      ...results.filter((r) => r.outcome === "failed").map((r) => r.index),
    ]).size,
    stopped: results.filter((r) => r.outcome === "stopped").length,
    busy: results.filter((r) => r.outcome === "busy").length,
    metric: s.spec.metric,
    best: best && bestRow?.runDir ? { ...best, runDir: bestRow.runDir } : null,
    seconds: (performance.now() - t0) / 1000,
  };
  return withDisplay(result, () => tableBundle(table));
}

interface ChildOptions {
  specPath: string;
  home: string;
  threads: number;
  signal?: AbortSignal;
  retryFailed: boolean;
  onStart: (p: SweepPoint) => void;
  onStep: () => void;
  onEnd: (r: PointResult) => void;
}

/** Messages a point's child process sends over its IPC channel. */
export type WorkerMessage = { kind: "step"; point: number; step: number } | { kind: "result"; result: PointResult };

/** Runs the points in up to `parallel` child processes (`primal sweep SPEC --point K --worker`). */
async function runChildren(s: ExpandedSweep, queue: SweepPoint[], parallel: number, o: ChildOptions): Promise<void> {
  const bin = join(packageRoot(), "bin", "primal.js");
  const children = new Set<ChildProcess>();
  const stopAll = () => {
    // A child stops at its next step boundary and checkpoints (as with Ctrl-C on one point).
    for (const c of children) c.kill("SIGTERM");
  };
  o.signal?.addEventListener("abort", stopAll, { once: true });
  const runOne = (p: SweepPoint) =>
    new Promise<void>((resolvePoint) => {
      const args = [bin, "sweep", o.specPath, "--point", String(p.index), "--home", o.home, "--worker"];
      args.push("--threads", String(o.threads));
      if (o.retryFailed) args.push("--retry-failed");
      const child = spawn(process.execPath, args, { stdio: ["ignore", "ignore", "pipe", "ipc"] });
      children.add(child);
      o.onStart(p);
      let stderr = "";
      let result: PointResult | null = null;
      child.stderr!.on("data", (b: Buffer) => {
        stderr = (stderr + b.toString()).slice(-4000);
      });
      child.on("message", (m: WorkerMessage) => {
        if (m.kind === "step") o.onStep();
        else if (m.kind === "result") result = m.result;
      });
      child.on("close", (code, signal) => {
        children.delete(child);
        o.onEnd(
          result ?? {
            index: p.index,
            key: p.key,
            outcome: o.signal?.aborted ? "stopped" : "failed",
            steps: 0,
            error: `the point's process ended (${signal ?? `exit code ${code}`}) without a result: ${stderr.trim().split("\n").slice(-3).join(" | ")}`,
          },
        );
        resolvePoint();
      });
    });
  const lanes = Array.from({ length: parallel }, async () => {
    for (;;) {
      if (o.signal?.aborted) return;
      const p = queue.shift();
      if (!p) return;
      await runOne(p);
    }
  });
  try {
    await Promise.all(lanes);
  } finally {
    o.signal?.removeEventListener("abort", stopAll);
  }
}
