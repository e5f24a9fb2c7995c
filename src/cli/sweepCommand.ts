// `primal sweep SPEC`: run a sweep (all points not finished yet), list its points, or run one
// point (for a scheduler's job array). See docs/tracking.md.
import cliProgress from "cli-progress";
import { Option, type Command } from "commander";
import { loadSweepSpec } from "../sweep/spec.js";
import { sweep, type SweepProgress } from "../sweep/runner.js";
import { runPoint, type PointResult } from "../sweep/runPoint.js";
import { pointRows, resultsTable, writeResults } from "../sweep/results.js";
import { resolveHome } from "../tracking/runStore.js";
import { intFlag } from "./numberFlags.js";
import type { WorkerMessage } from "../sweep/runner.js";

interface SweepFlags {
  parallel?: string;
  home?: string;
  json?: boolean;
  list?: boolean;
  point?: string;
  threads?: string;
  retryFailed?: boolean;
  worker?: boolean;
}

const fmtSecs = (s: number | null) =>
  s === null
    ? "?"
    : s >= 3600
      ? `${(s / 3600).toFixed(1)} h`
      : s >= 60
        ? `${Math.round(s / 60)} min`
        : `${Math.round(s)} s`;

/** Ctrl-C / SIGTERM stop the points at their next step boundary; a second one exits at once. */
function stopSignal(): AbortSignal {
  const ac = new AbortController();
  const on = (sig: NodeJS.Signals) => {
    if (ac.signal.aborted) process.exit(sig === "SIGINT" ? 130 : 143);
    if (!process.send)
      process.stderr.write(`\n${sig}: stopping every point at its next step boundary (again to abort)\n`);
    ac.abort();
  };
  process.on("SIGINT", on);
  process.on("SIGTERM", on);
  // A worker whose parent died (its IPC channel closed) stops too, checkpointed.
  process.on("disconnect", () => ac.abort());
  return ac.signal;
}

function progressDisplay(enabled: boolean): { update(p: SweepProgress): void; stop(): void } {
  if (!enabled) return { update() {}, stop() {} };
  const best = (p: SweepProgress) => (p.best ? `${p.metric} ${p.best.value.toFixed(4)} (#${p.best.point})` : "-");
  if (process.stderr.isTTY) {
    const bar = new cliProgress.SingleBar(
      {
        stream: process.stderr,
        format: "sweep |{bar}| {done}/{points} points | {failed} failed | running {running} | best {best} | ETA {eta}",
        hideCursor: true,
      },
      cliProgress.Presets.shades_classic,
    );
    let started = false;
    return {
      update(p) {
        const payload = {
          done: p.done,
          points: p.points,
          failed: p.failed,
          running: p.running.length ? p.running.map((i) => `#${i}`).join(",") : "-",
          best: best(p),
          eta: fmtSecs(p.etaSeconds),
        };
        const total = Math.max(1, p.stepsDone + p.stepsLeft);
        if (!started) {
          bar.start(total, p.stepsDone, payload);
          started = true;
        } else {
          bar.setTotal(total);
          bar.update(p.stepsDone, payload);
        }
      },
      stop() {
        if (started) bar.stop();
      },
    };
  }
  let last = "";
  return {
    update(p) {
      const line = `sweep ${p.sweepId}: ${p.done}/${p.points} points done, ${p.failed} failed, running ${p.running.map((i) => `#${i}`).join(",") || "-"}, best ${best(p)}, ETA ${fmtSecs(p.etaSeconds)}`;
      // One line per change of the points' state (not per step): logs stay short.
      const key = `${p.done}/${p.failed}/${p.running.join(",")}`;
      if (key !== last) {
        last = key;
        process.stderr.write(line + "\n");
      }
    },
    stop() {},
  };
}

export function addSweepCommand(program: Command, fail: (e: unknown) => never): void {
  program
    .command("sweep <spec>")
    .description("run a sweep: every point of SPEC.json not finished yet (a rerun continues where it stopped)")
    .option("--parallel <n>", "points trained at once, each in its own process (threads divided between them)", "1")
    .option("--home <dir>", "runs directory (default PRIMAL_HOME or ./runs)")
    .option("--json", "print one final JSON line: sweepId, runs, done, failed")
    .option("--list", "print the points (index, status, run, values) and exit")
    .option("--point <k>", "run only point K (for a job array: one point per task)")
    .option("--threads <n>", "CPU threads in all (divided between parallel points)")
    .option("--retry-failed", "retrain points whose run failed")
    // Internal: a point run by a parallel sweep reports over its IPC channel.
    .addOption(new Option("--worker").hideHelp())
    .action(async (specPath: string, flags: SweepFlags) => {
      try {
        const s = loadSweepSpec(specPath);
        const home = resolveHome(flags.home);
        const json = !!flags.json;
        const threads = intFlag("threads", flags.threads, { min: 0 });
        if (flags.list) {
          const rows = pointRows(s, home);
          if (json) {
            process.stdout.write(
              JSON.stringify(
                rows.map((r) => ({ point: r.point, key: r.key, status: r.status, runDir: r.runDir, values: r.values })),
              ) + "\n",
            );
          } else {
            for (const r of rows)
              process.stdout.write(`${r.point}\t${r.status}\t${r.runId ?? "-"}\t${JSON.stringify(r.values)}\n`);
          }
          return;
        }
        if (flags.point !== undefined) {
          const k = intFlag("point", flags.point, { min: 0 })!;
          const point = s.points[k];
          if (!point)
            throw new Error(`--point must be 0..${s.points.length - 1} (the sweep has ${s.points.length} points)`);
          const signal = stopSignal();
          // After the parent is gone the channel is closed: sending then would throw.
          const send = (m: WorkerMessage) => {
            if (process.connected) process.send?.(m);
          };
          let lastSent = 0;
          const r: PointResult = await runPoint(s, point, {
            home,
            signal,
            ...(threads !== undefined ? { threads } : {}),
            ...(flags.retryFailed ? { retryFailed: true } : {}),
            onStep: (m) => {
              if (flags.worker) send({ kind: "step", point: k, step: m.step });
              else if (!json && performance.now() - lastSent > 5000) {
                lastSent = performance.now();
                process.stderr.write(`point ${k}: step ${m.step} loss ${m.loss.toFixed(4)}\n`);
              }
            },
            onStart: (_p, runDir, step) => {
              if (!json && !flags.worker)
                process.stderr.write(`point ${k} ${JSON.stringify(point.values)}: run ${runDir} at step ${step}\n`);
            },
          });
          if (flags.worker) {
            send({ kind: "result", result: r });
            if (process.connected) process.disconnect();
            return;
          }
          writeResults(s, home, resultsTable(s, pointRows(s, home)));
          const out = { sweepId: s.id, point: k, outcome: r.outcome, runDir: r.runDir ?? null, error: r.error ?? null };
          process.stdout.write(
            json
              ? JSON.stringify(out) + "\n"
              : `point ${k}: ${r.outcome}${r.runDir ? ` (${r.runDir})` : ""}${r.error ? `: ${r.error}` : ""}\n`,
          );
          if (r.outcome === "failed") process.exitCode = 1;
          return;
        }
        const parallel = intFlag("parallel", flags.parallel, { min: 1 })!;
        if (parallel < 1) throw new Error("--parallel must be at least 1");
        const signal = stopSignal();
        if (!json)
          process.stderr.write(`sweep ${s.id}: ${s.points.length} points, ${parallel} at a time; runs in ${home}\n`);
        const display = progressDisplay(!json);
        let result;
        try {
          result = await sweep(s, {
            home,
            parallel,
            signal,
            ...(threads !== undefined ? { threads } : {}),
            ...(flags.retryFailed ? { retryFailed: true } : {}),
            onProgress: (p) => display.update(p),
            onPoint: (r) => {
              if (r.outcome === "failed" && !json) {
                display.stop();
                process.stderr.write(`point ${r.index} failed: ${r.error ?? "?"}\n`);
              }
            },
          });
        } finally {
          display.stop();
        }
        if (json) {
          process.stdout.write(
            JSON.stringify({
              sweepId: result.sweepId,
              runs: result.runs,
              done: result.done,
              failed: result.failed,
              stopped: result.stopped,
              points: s.points.length,
              results: result.resultsPath,
              best: result.best,
              seconds: Number(result.seconds.toFixed(2)),
            }) + "\n",
          );
        } else {
          process.stdout.write(
            [
              `sweep ${result.sweepId}: ${result.done}/${s.points.length} points done, ${result.failed} failed` +
                (result.stopped ? `, ${result.stopped} stopped (run the same command again to continue)` : ""),
              result.best
                ? `  best ${result.metric} ${result.best.value.toFixed(4)}: point ${result.best.point} (${result.best.runDir})`
                : "",
              `  results ${result.resultsPath}`,
              `  runs    npx primal runs --sweep ${result.sweepId}`,
            ]
              .filter((l) => l !== "")
              .join("\n") + "\n",
          );
        }
        if (result.failed > 0) process.exitCode = 1;
        // Stopped by Ctrl-C or SIGTERM: the usual exit codes, so scripts see the interruption.
        else if (signal.aborted && result.stopped > 0) process.exitCode = 130;
      } catch (e) {
        fail(e);
      }
    });
}
