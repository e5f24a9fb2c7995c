/**
 * Reader side of the run store: load one run, list runs, and compare runs as an Arrow table.
 * Everything here is read-only and safe to call while a trainer is still writing the run.
 */
import { existsSync, lstatSync, readdirSync } from "node:fs";
import { basename, join, resolve } from "node:path";
import { Float64, Int32, Table, Utf8, vectorFromArray, type Vector } from "apache-arrow";
import { checkArrowStream, readArrowStream } from "./arrowStream.js";
import { RunStoreError, describeError } from "./errors.js";
import { RUN_FILES, listCheckpoints, readJsonl, readRunFile, type CheckpointInfo } from "./files.js";
import { INDEX_SUFFIX, parseIndex, verifyIndexed } from "./streamIndex.js";
import { readRunMeta, resolveHome, type RunMeta } from "./runStore.js";
import { customSchema, knobTraceSchema, layersSchema, metricsSchema } from "./schemas.js";
import { EXTRA_RUN_FILES, readAnnotations, type RunNote } from "./annotations.js";
import { liveStatus, type LiveStatus } from "./runStatus.js";
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
  /** custom.arrows: metrics logged with t.log() (long format: step, time, name, value). */
  custom: Table;
  /** knobs.arrows: the knobs in effect at every step (long format: step, knob, value). */
  knobs: Table;
  tags: string[];
  notes: RunNote[];
  /** run.json's status, or crashed/abandoned when its writer is gone (runStatus.ts). */
  status: LiveStatus;
  statusReason?: string;
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
  const custom = readArrowStream(join(abs, EXTRA_RUN_FILES.custom), { schema: customSchema });
  const knobs = readArrowStream(join(abs, EXTRA_RUN_FILES.knobs), { schema: knobTraceSchema });
  const notes = readAnnotations(abs);
  const live = liveStatus(abs, meta);
  return {
    dir: abs,
    id: meta.id,
    meta,
    metrics: displayableTable(metrics),
    layers: displayableTable(layers),
    events: events.records,
    samples: samples.records,
    checkpoints: listCheckpoints(abs),
    warnings: [...events.warnings, ...samples.warnings, ...notes.warnings],
    custom: displayableTable(custom),
    knobs: displayableTable(knobs),
    tags: notes.tags,
    notes: notes.notes,
    status: live.status,
    ...(live.reason ? { statusReason: live.reason } : {}),
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
  /**
   * run.json's status, except that a run whose writer died reads "crashed" and one whose writer
   * exited without finishing it "abandoned" (see runStatus.ts); null when run.json is unreadable.
   */
  status: LiveStatus | null;
  /** Why the status is crashed or abandoned. */
  statusReason?: string;
  /** max(run.json step, last metrics step). */
  step: number;
  lastLoss: number | null;
  bestValLoss: number | null;
  /** Val loss and bits per byte of the last evaluation. */
  finalValLoss: number | null;
  valBpb: number | null;
  bestTrainLoss: number | null;
  /** Median tokens/s over the steps. */
  tokensPerSec: number | null;
  /** Current tags (annotations.jsonl). */
  tags: string[];
  /** Number of notes. */
  notes: number;
  /** The sweep point this run trains. */
  sweep?: { id: string; point: number; values: Record<string, unknown> };
  /** Last value of each custom metric (t.log). */
  custom: Record<string, number>;
  /** The run's config as recorded in run.json (empty when unreadable). */
  config: Record<string, unknown>;
  /** Set when the run could not be read completely; the other fields are what could be read. */
  error?: string;
}

function str(v: unknown): string | null {
  return typeof v === "string" ? v : null;
}

/** Last value of every custom metric, in first-logged order. */
function customFinals(table: Table): Record<string, number> {
  const out: Record<string, number> = {};
  const names = table.getChild("name");
  const values = table.getChild("value");
  if (!names || !values) return out;
  for (let i = 0; i < table.numRows; i++) out[names.get(i) as string] = Number(values.get(i));
  return out;
}

/**
 * Checks a stream the listing does not decode (layers, knobs). By default only what is cheap: the
 * index's lines against their own checksums and the file against the length the index covers (a
 * truncated file). With `full`, every indexed message against its checksum too (native CRC-32,
 * but it reads the whole file: for 1,000 runs, their whole telemetry). A stream without an index
 * (written before indexes existed) gets the full framing check when `full` is set. Decoding
 * readers (readRun, resume, the board's run page) always verify every message.
 */
function checkUndecodedStream(path: string, full: boolean): void {
  const label = basename(path);
  const index = readRunFile(`${path}${INDEX_SUFFIX}`)?.toString("utf8");
  if (index === undefined || index === "") {
    if (full) checkArrowStream(path);
    return;
  }
  const entries = parseIndex(index, label).entries;
  if (full) {
    const bytes = readRunFile(path);
    if (bytes !== null) verifyIndexed(bytes, entries, label);
    return;
  }
  const last = entries[entries.length - 1];
  const covered = last ? last.offset + last.length : 0;
  let size = 0;
  try {
    size = lstatSync(path).size;
  } catch {
    size = 0;
  }
  if (size < covered)
    throw new RunStoreError(`${label} is damaged: it has ${size} bytes but its index covers ${covered}`, {
      file: label,
      offset: size,
    });
}

/** Summary of one run directory (never throws for a damaged run: `error` says what is wrong). */
export function summarizeRun(dir: string, name = basename(dir), opts: { check?: boolean } = {}): RunSummary {
  const full = opts.check === true;
  const base: RunSummary = {
    id: name,
    dir,
    createdAt: "",
    preset: null,
    quant: null,
    status: null,
    step: 0,
    lastLoss: null,
    bestValLoss: null,
    finalValLoss: null,
    valBpb: null,
    bestTrainLoss: null,
    tokensPerSec: null,
    tags: [],
    notes: 0,
    custom: {},
    config: {},
  };
  let meta: RunMeta;
  try {
    meta = readRunMeta(dir);
  } catch (e) {
    return { ...base, error: describeError(e) };
  }
  const config = isPlainObject(meta.config) ? meta.config : {};
  const live = liveStatus(dir, meta);
  const summary: RunSummary = {
    ...base,
    id: meta.id,
    ...(meta.name !== undefined ? { name: meta.name } : {}),
    createdAt: meta.createdAt ?? "",
    preset: str(config["preset"]),
    quant: str(config["quant"]),
    status: live.status,
    ...(live.reason ? { statusReason: live.reason } : {}),
    step: typeof meta.step === "number" ? meta.step : 0,
    config,
  };
  const sw = meta.sweep;
  if (isPlainObject(sw) && typeof sw.id === "string" && typeof sw.point === "number")
    summary.sweep = { id: sw.id, point: sw.point, values: isPlainObject(sw.values) ? sw.values : {} };
  // Every stream is checked (checksums and framing), so a damaged one is flagged here rather
  // than found by the next resume or report.
  const problems: string[] = [];
  const attempt = (f: () => void) => {
    try {
      f();
    } catch (e) {
      if (!(e instanceof RunStoreError)) throw e;
      problems.push(e.message);
    }
  };
  attempt(() => {
    const m = summarizeMetrics(readArrowStream(join(dir, RUN_FILES.metrics), { schema: metricsSchema }));
    summary.lastLoss = m.finalTrainLoss;
    summary.bestValLoss = m.bestValLoss;
    summary.finalValLoss = m.finalValLoss;
    summary.valBpb = m.valBpb;
    summary.bestTrainLoss = m.bestTrainLoss;
    summary.tokensPerSec = m.medianTokensPerSec;
    if (m.lastStep !== null && m.lastStep > summary.step) summary.step = m.lastStep;
  });
  attempt(() => checkUndecodedStream(join(dir, RUN_FILES.layers), full));
  attempt(() => {
    summary.custom = customFinals(readArrowStream(join(dir, EXTRA_RUN_FILES.custom), { schema: customSchema }));
  });
  attempt(() => checkArrowStream(join(dir, EXTRA_RUN_FILES.knobs)));
  for (const f of [RUN_FILES.events, RUN_FILES.samples]) attempt(() => void readJsonl(join(dir, f), f));
  attempt(() => {
    const a = readAnnotations(dir);
    summary.tags = a.tags;
    summary.notes = a.notes.length;
  });
  if (problems.length > 0) summary.error = problems.join("; ");
  return summary;
}

/** Narrows a run listing: config or summary fields, tags, sweep, and a sort. */
export interface RunQuery {
  /**
   * Conditions `KEY=VALUE` (also `!=`, `<`, `<=`, `>`, `>=`, and `~` for "contains"). KEY is a
   * summary field (status, name, id, preset, quant, step, sweep, a metric such as bestValLoss),
   * `custom.NAME`, or a config path such as `quant` or `knobs.flipRate`. All must hold.
   */
  filter?: readonly string[] | Readonly<Record<string, unknown>>;
  /** Runs carrying every one of these tags. */
  tag?: string | readonly string[];
  /** Runs of this sweep. */
  sweep?: string;
  /**
   * Sort by this field (any KEY above), ascending, missing values last; a leading "-" sorts
   * descending. Default: newest first.
   */
  sort?: string;
  /**
   * Verify every message of the streams a listing does not decode (layers, knobs) against its
   * checksum, which reads all their bytes. Default false: their index and length are checked.
   */
  check?: boolean;
}

/** The value a query KEY names in a run summary (undefined when the run has none). */
export function summaryField(r: RunSummary, key: string): unknown {
  switch (key) {
    case "sweep":
      return r.sweep?.id;
    case "point":
      return r.sweep?.point;
    case "loss":
    case "finalTrainLoss":
      return r.lastLoss;
    case "tags":
      return r.tags.join(",");
  }
  if (key.startsWith("custom.")) return r.custom[key.slice(7)];
  if (key in r && key !== "config" && key !== "custom") return (r as unknown as Record<string, unknown>)[key];
  let at: unknown = r.config;
  for (const part of key.split(".")) {
    if (!isPlainObject(at)) return undefined;
    at = at[part];
  }
  return at;
}

const COND_RE = /^([^=<>!~]+?)(==|=|!=|<=|>=|<|>|~)(.*)$/s;

function parseValue(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}

function matches(actual: unknown, op: string, wanted: unknown): boolean {
  if (op === "~") return actual !== undefined && actual !== null && String(actual).includes(String(wanted));
  const num = (v: unknown) => (typeof v === "number" ? v : typeof v === "string" && v.trim() !== "" ? Number(v) : NaN);
  if (op === "=" || op === "==" || op === "!=") {
    let eq: boolean;
    if (typeof actual === "number" && typeof wanted === "number")
      // Knobs are fp32 in the core: 0.05 recorded either way is the same setting.
      eq = actual === wanted || Math.fround(actual) === Math.fround(wanted);
    else if (wanted === null) eq = actual === null || actual === undefined;
    else eq = actual !== undefined && (typeof actual === "string" ? actual : JSON.stringify(actual)) === String(wanted);
    return op === "!=" ? !eq : eq;
  }
  const a = num(actual);
  const b = num(wanted);
  if (!Number.isFinite(a) || !Number.isFinite(b)) return false;
  return op === "<" ? a < b : op === "<=" ? a <= b : op === ">" ? a > b : a >= b;
}

/** Parses `KEY=VALUE` (and the other operators) or throws a message naming the condition. */
export function parseCondition(text: string): { key: string; op: string; value: unknown } {
  const m = COND_RE.exec(text);
  if (!m) throw new Error(`filter '${text}': expected KEY=VALUE (or !=, <, <=, >, >=, ~)`);
  return { key: m[1]!.trim(), op: m[2]!, value: m[3]!.trim() === "" ? "" : parseValue(m[3]!.trim()) };
}

/** Applies a query to summaries (see RunQuery). */
export function queryRunSummaries(runs: readonly RunSummary[], q: RunQuery = {}): RunSummary[] {
  const conds = Array.isArray(q.filter)
    ? (q.filter as readonly string[]).map(parseCondition)
    : Object.entries(q.filter ?? {}).map(([key, value]) => ({ key, op: "=", value }));
  const tags = q.tag === undefined ? [] : typeof q.tag === "string" ? [q.tag] : [...q.tag];
  let out = runs.filter(
    (r) =>
      (q.sweep === undefined || r.sweep?.id === q.sweep) &&
      tags.every((t) => r.tags.includes(t)) &&
      conds.every((c) => matches(summaryField(r, c.key), c.op, c.value)),
  );
  if (q.sort) {
    const desc = q.sort.startsWith("-");
    const key = desc ? q.sort.slice(1) : q.sort;
    const keyed = out.map((r) => ({ r, v: summaryField(r, key) }));
    const missing = (v: unknown) => v === undefined || v === null || (typeof v === "number" && Number.isNaN(v));
    keyed.sort((a, b) => {
      if (missing(a.v) || missing(b.v)) return missing(a.v) ? (missing(b.v) ? 0 : 1) : -1;
      const c = typeof a.v === "number" && typeof b.v === "number" ? a.v - b.v : String(a.v).localeCompare(String(b.v));
      return desc ? -c : c;
    });
    out = keyed.map((k) => k.r);
  }
  return out;
}

/**
 * Summaries of the runs under `home` (default $PRIMAL_HOME or ./runs), newest first, narrowed
 * and sorted by `query`. Directories without run.json are ignored; damaged runs are listed with
 * `error` set.
 */
export function listRuns(home?: string, query: RunQuery = {}): RunSummary[] {
  const root = resolveHome(home);
  if (!existsSync(root)) return [];
  const out: RunSummary[] = [];
  for (const entry of readdirSync(root, { withFileTypes: true })) {
    if (!entry.isDirectory()) continue;
    const dir = join(root, entry.name);
    if (!existsSync(join(dir, RUN_FILES.meta))) continue;
    out.push(summarizeRun(dir, entry.name, { check: query.check === true }));
  }
  out.sort((a, b) => (a.createdAt === b.createdAt ? (a.id < b.id ? 1 : -1) : a.createdAt < b.createdAt ? 1 : -1));
  return queryRunSummaries(out, query);
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

/** The summary columns of a runs table and of a sweep's results (after its own columns). */
export const SUMMARY_COLUMNS = [
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
  // Knobs changed mid-run (t.set): the value in effect at the end, for every knob that changed
  // in any of the runs, so the comparison does not read only the values the runs started with.
  const traces = runs.map((r) => knobHistory(r.knobs));
  const changed: string[] = [];
  for (const t of traces) for (const [k, h] of t) if (h.length > 1 && !changed.includes(k)) changed.push(k);
  for (const k of changed) {
    columns[`knobs.${k}@end`] = vectorFromArray(
      traces.map((t, i) => {
        const h = t.get(k);
        if (h && h.length > 0) return h[h.length - 1]!.value;
        const v = flat[i]!.get(`knobs.${k}`);
        return typeof v === "number" ? v : null;
      }),
      new Float64(),
    );
    columns[`knobs.${k} changes`] = vectorFromArray(
      traces.map((t) => (t.get(k) ?? []).map((c) => `${c.value ?? "off"}@${c.step}`).join(" → ") || null),
      new Utf8(),
    );
  }
  return displayableTable(new Table(columns));
}

/** Per knob, the values it took and the first step of each (from knobs.arrows; empty for older runs). */
export function knobHistory(knobs: Table): Map<string, { step: number; value: number | null }[]> {
  const out = new Map<string, { step: number; value: number | null }[]>();
  const step = knobs.getChild("step");
  const knob = knobs.getChild("knob");
  const value = knobs.getChild("value");
  if (!step || !knob || !value) return out;
  for (let i = 0; i < knobs.numRows; i++) {
    const k = knob.get(i) as string;
    const v = value.get(i) as number | null;
    const h = out.get(k) ?? [];
    const last = h[h.length - 1];
    if (
      !last ||
      !(last.value === v || (last.value !== null && v !== null && Math.fround(last.value) === Math.fround(v)))
    )
      h.push({ step: Number(step.get(i)), value: v === null ? null : Number(v) });
    out.set(k, h);
  }
  return out;
}
