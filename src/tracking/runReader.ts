/**
 * Reader side of the run store: load one run, list runs, and compare runs as an Arrow table.
 * Everything here is read-only and safe to call while a trainer is still writing the run.
 */
import { existsSync, readdirSync } from "node:fs";
import { join, resolve } from "node:path";
import { Float64, Int32, Table, Utf8, vectorFromArray, type Vector } from "apache-arrow";
import { checkArrowStream, readArrowStream } from "./arrowStream.js";
import { RunStoreError, describeError } from "./errors.js";
import { RUN_FILES, listCheckpoints, readJsonl, type CheckpointInfo } from "./files.js";
import { readRunMeta, resolveHome, type RunMeta, type RunStatus } from "./runStore.js";
import { layersSchema, metricsSchema } from "./schemas.js";
import { displayableTable } from "../display/tableBundle.js";

export interface RunData {
  /** Absolute run directory. */
  dir: string;
  id: string;
  /** run.json */
  meta: RunMeta;
  /** metrics.arrows (an empty table with the contract schema if the file is missing). */
  metrics: Table;
  /** layers.arrows (same). */
  layers: Table;
  events: Record<string, unknown>[];
  samples: Record<string, unknown>[];
  /** Ascending by step. */
  checkpoints: CheckpointInfo[];
  /** Lines of events/samples that were skipped as invalid (a cut-off last line is not reported). */
  warnings: string[];
}

/**
 * Loads a run directory. Throws RunStoreError when run.json is missing/invalid or an Arrow stream
 * is corrupt; a partly written tail of any file is tolerated.
 */
export function readRun(dir: string): RunData {
  const abs = resolve(dir);
  const meta = readRunMeta(abs);
  const metrics = readArrowStream(join(abs, RUN_FILES.metrics), { schema: metricsSchema });
  const layers = readArrowStream(join(abs, RUN_FILES.layers), { schema: layersSchema });
  const events = readJsonl(join(abs, RUN_FILES.events), RUN_FILES.events);
  const samples = readJsonl(join(abs, RUN_FILES.samples), RUN_FILES.samples);
  return {
    dir: abs,
    id: meta.id,
    meta,
    metrics: displayableTable(metrics),
    layers: displayableTable(layers),
    events: events.records,
    samples: samples.records,
    checkpoints: listCheckpoints(abs),
    warnings: [...events.warnings, ...samples.warnings],
  };
}

/** Values of a numeric column in row order, null for nulls; [] if the column is absent. */
function numbers(table: Table, name: string): (number | null)[] {
  const col = table.getChild(name) as Vector | null;
  if (!col) return [];
  const out: (number | null)[] = [];
  for (const v of col) out.push(v === null || v === undefined ? null : Number(v));
  return out;
}

function lastOf<T>(xs: readonly T[]): T | null {
  return xs.length > 0 ? xs[xs.length - 1]! : null;
}

function minFinite(xs: readonly (number | null)[]): number | null {
  let best: number | null = null;
  for (const x of xs) if (x !== null && Number.isFinite(x) && (best === null || x < best)) best = x;
  return best;
}

function median(xs: readonly (number | null)[]): number | null {
  const v = xs.filter((x): x is number => x !== null && Number.isFinite(x)).sort((a, b) => a - b);
  if (v.length === 0) return null;
  const m = v.length >> 1;
  return v.length % 2 === 1 ? v[m]! : (v[m - 1]! + v[m]!) / 2;
}

/** Headline numbers of a metrics table. "Final" means the last row written. */
export interface MetricsSummary {
  /** Step of the last row, null when there are no rows. */
  lastStep: number | null;
  rows: number;
  finalTrainLoss: number | null;
  bestTrainLoss: number | null;
  /** Val loss of the last evaluation row. */
  finalValLoss: number | null;
  bestValLoss: number | null;
  /** Val bits-per-byte of the last evaluation row. */
  valBpb: number | null;
  medianTokensPerSec: number | null;
}

export function summarizeMetrics(metrics: Table): MetricsSummary {
  const steps = numbers(metrics, "step");
  const loss = numbers(metrics, "loss");
  const valLoss = numbers(metrics, "valLoss");
  const valBpb = numbers(metrics, "valBpb");
  let lastEval = -1;
  for (let i = valLoss.length - 1; i >= 0; i--) {
    if (valLoss[i] !== null) {
      lastEval = i;
      break;
    }
  }
  return {
    lastStep: lastOf(steps),
    rows: metrics.numRows,
    finalTrainLoss: lastOf(loss),
    bestTrainLoss: minFinite(loss),
    finalValLoss: lastEval >= 0 ? valLoss[lastEval]! : null,
    bestValLoss: minFinite(valLoss),
    valBpb: lastEval >= 0 ? (valBpb[lastEval] ?? null) : null,
    medianTokensPerSec: median(numbers(metrics, "tokensPerSec")),
  };
}

export interface RunSummary {
  id: string;
  dir: string;
  name?: string;
  createdAt: string;
  preset: string | null;
  quant: string | null;
  status: RunStatus | null;
  /** max(run.json step, last metrics step). */
  step: number;
  lastLoss: number | null;
  bestValLoss: number | null;
  /** Set when the run could not be read completely; the other fields are what could be read. */
  error?: string;
}

function str(v: unknown): string | null {
  return typeof v === "string" ? v : null;
}

/**
 * Summaries of the runs under `home` (default $PRIMAL_HOME or ./runs), newest first. Directories
 * without run.json are ignored; damaged runs are listed with `error` set.
 */
export function listRuns(home?: string): RunSummary[] {
  const root = resolveHome(home);
  if (!existsSync(root)) return [];
  const out: RunSummary[] = [];
  for (const entry of readdirSync(root, { withFileTypes: true })) {
    if (!entry.isDirectory()) continue;
    const dir = join(root, entry.name);
    if (!existsSync(join(dir, RUN_FILES.meta))) continue;
    let meta: RunMeta;
    try {
      meta = readRunMeta(dir);
    } catch (e) {
      out.push({
        id: entry.name,
        dir,
        createdAt: "",
        preset: null,
        quant: null,
        status: null,
        step: 0,
        lastLoss: null,
        bestValLoss: null,
        error: describeError(e),
      });
      continue;
    }
    const config = meta.config ?? {};
    const summary: RunSummary = {
      id: meta.id,
      dir,
      ...(meta.name !== undefined ? { name: meta.name } : {}),
      createdAt: meta.createdAt ?? "",
      preset: str(config["preset"]),
      quant: str(config["quant"]),
      status: meta.status ?? null,
      step: typeof meta.step === "number" ? meta.step : 0,
      lastLoss: null,
      bestValLoss: null,
    };
    // Every stream is checked (checksums and framing), so a damaged one is flagged here rather
    // than found by the next resume or report.
    const problems: string[] = [];
    try {
      const m = summarizeMetrics(readArrowStream(join(dir, RUN_FILES.metrics), { schema: metricsSchema }));
      summary.lastLoss = m.finalTrainLoss;
      summary.bestValLoss = m.bestValLoss;
      if (m.lastStep !== null && m.lastStep > summary.step) summary.step = m.lastStep;
    } catch (e) {
      if (!(e instanceof RunStoreError)) throw e;
      problems.push(e.message);
    }
    try {
      checkArrowStream(join(dir, RUN_FILES.layers));
    } catch (e) {
      if (!(e instanceof RunStoreError)) throw e;
      problems.push(e.message);
    }
    for (const f of [RUN_FILES.events, RUN_FILES.samples]) {
      try {
        readJsonl(join(dir, f), f);
      } catch (e) {
        if (!(e instanceof RunStoreError)) throw e;
        problems.push(e.message);
      }
    }
    if (problems.length > 0) summary.error = problems.join("; ");
    out.push(summary);
  }
  return out.sort((a, b) =>
    a.createdAt === b.createdAt ? (a.id < b.id ? 1 : -1) : a.createdAt < b.createdAt ? 1 : -1,
  );
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === "object" && !Array.isArray(v);
}

/** Flattens nested objects to dotted keys; arrays and scalars are leaves. */
export function flattenConfig(
  obj: Record<string, unknown>,
  prefix = "",
  out = new Map<string, unknown>(),
): Map<string, unknown> {
  for (const [k, v] of Object.entries(obj)) {
    const key = prefix ? `${prefix}.${k}` : k;
    if (isPlainObject(v) && Object.keys(v).length > 0) flattenConfig(v, key, out);
    else out.set(key, v);
  }
  return out;
}

function configText(v: unknown): string | null {
  if (v === undefined) return null;
  return typeof v === "string" ? v : JSON.stringify(v);
}

const SUMMARY_COLUMNS = [
  "finalTrainLoss",
  "bestTrainLoss",
  "finalValLoss",
  "bestValLoss",
  "valBpb",
  "tokensPerSec",
  "steps",
] as const;

/**
 * One row per run: `id`, then each config field (dotted key, as text) whose value differs
 * between the runs, then finalTrainLoss, bestTrainLoss, finalValLoss, bestValLoss, valBpb (of
 * the last evaluation), tokensPerSec (median over steps), steps (last step). A config key that
 * collides with one of these names gets a "config." prefix.
 */
export function compareRuns(dirs: readonly string[]): Table {
  const runs = dirs.map((d) => readRun(d));
  const flat = runs.map((r) => flattenConfig(isPlainObject(r.meta.config) ? r.meta.config : {}));
  const keys: string[] = [];
  const seen = new Set<string>();
  for (const f of flat) {
    for (const k of f.keys()) {
      if (!seen.has(k)) {
        seen.add(k);
        keys.push(k);
      }
    }
  }
  const differing = keys.filter((k) => new Set(flat.map((f) => configText(f.get(k)))).size > 1);
  const reserved = new Set<string>(["id", ...SUMMARY_COLUMNS]);
  const stats = runs.map((r) => summarizeMetrics(r.metrics));

  const columns: Record<string, Vector> = {
    id: vectorFromArray(
      runs.map((r) => r.id),
      new Utf8(),
    ),
  };
  for (const k of differing) {
    const name = reserved.has(k) ? `config.${k}` : k;
    columns[name] = vectorFromArray(
      flat.map((f) => configText(f.get(k))),
      new Utf8(),
    );
  }
  const num = (pick: (s: (typeof stats)[number]) => number | null): Vector =>
    vectorFromArray(stats.map(pick), new Float64());
  columns["finalTrainLoss"] = num((s) => s.finalTrainLoss);
  columns["bestTrainLoss"] = num((s) => s.bestTrainLoss);
  columns["finalValLoss"] = num((s) => s.finalValLoss);
  columns["bestValLoss"] = num((s) => s.bestValLoss);
  columns["valBpb"] = num((s) => s.valBpb);
  columns["tokensPerSec"] = num((s) => s.medianTokensPerSec);
  columns["steps"] = vectorFromArray(
    runs.map((r, i) => stats[i]!.lastStep ?? (typeof r.meta.step === "number" ? r.meta.step : null)),
    new Int32(),
  );
  return displayableTable(new Table(columns));
}
