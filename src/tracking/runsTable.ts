// `runs()`: the runs of a home as one Arrow table (one row per run), for filtering, sorting and
// plotting in a notebook or any Arrow reader.
import { Float64, Int32, Table, Utf8, vectorFromArray, type Vector } from "apache-arrow";
import { displayableTable } from "../display/tableBundle.js";
import { flattenConfig, listRuns, type RunQuery, type RunSummary } from "./runReader.js";

export interface RunsOptions extends RunQuery {
  /** Runs home (default PRIMAL_HOME or ./runs). */
  home?: string;
}

/**
 * A column of config values: Float64 when every value is a number (or missing), else Utf8 with
 * strings as they are and other values as JSON.
 */
export function valueColumn(values: readonly unknown[]): Vector {
  if (values.every((v) => v === undefined || v === null || typeof v === "number"))
    return vectorFromArray(
      values.map((v) => (typeof v === "number" ? v : null)),
      new Float64(),
    );
  return vectorFromArray(
    values.map((v) => (v === undefined || v === null ? null : typeof v === "string" ? v : JSON.stringify(v))),
    new Utf8(),
  );
}

const METRICS = ["finalTrainLoss", "bestTrainLoss", "finalValLoss", "bestValLoss", "valBpb", "tokensPerSec"] as const;

/**
 * Columns: id, name, status, createdAt, step, tags (comma-separated), sweep, point, then every
 * config field flattened to dotted keys (Float64 where all values are numbers, else Utf8 with
 * JSON for non-strings), then finalTrainLoss, bestTrainLoss, finalValLoss, bestValLoss, valBpb,
 * tokensPerSec, `custom.<name>` (last value of each logged metric), dir and error.
 */
export function runsTable(runs: readonly RunSummary[]): Table {
  const text = (pick: (r: RunSummary) => string | null | undefined) =>
    vectorFromArray(
      runs.map((r) => pick(r) ?? null),
      new Utf8(),
    );
  const num = (pick: (r: RunSummary) => number | null | undefined) =>
    vectorFromArray(
      runs.map((r) => {
        const v = pick(r);
        return typeof v === "number" ? v : null;
      }),
      new Float64(),
    );
  const cols: Record<string, Vector> = {
    id: text((r) => r.id),
    name: text((r) => r.name),
    status: text((r) => r.status),
    createdAt: text((r) => r.createdAt),
    step: vectorFromArray(
      runs.map((r) => r.step),
      new Int32(),
    ),
    tags: text((r) => r.tags.join(",")),
    sweep: text((r) => r.sweep?.id),
    point: vectorFromArray(
      runs.map((r) => r.sweep?.point ?? null),
      new Int32(),
    ),
  };
  const flat = runs.map((r) => flattenConfig(r.config));
  const keys: string[] = [];
  for (const f of flat) for (const k of f.keys()) if (!keys.includes(k)) keys.push(k);
  for (const k of keys) {
    const name = k in cols || (METRICS as readonly string[]).includes(k) ? `config.${k}` : k;
    cols[name] = valueColumn(flat.map((f) => f.get(k)));
  }
  cols["finalTrainLoss"] = num((r) => r.lastLoss);
  cols["bestTrainLoss"] = num((r) => r.bestTrainLoss);
  cols["finalValLoss"] = num((r) => r.finalValLoss);
  cols["bestValLoss"] = num((r) => r.bestValLoss);
  cols["valBpb"] = num((r) => r.valBpb);
  cols["tokensPerSec"] = num((r) => r.tokensPerSec);
  const customNames: string[] = [];
  for (const r of runs) for (const n of Object.keys(r.custom)) if (!customNames.includes(n)) customNames.push(n);
  for (const n of customNames) cols[`custom.${n}`] = num((r) => r.custom[n]);
  cols["dir"] = text((r) => r.dir);
  cols["error"] = text((r) => r.error);
  return displayableTable(new Table(cols));
}

/** The runs of a home as an Arrow table (see runsTable), narrowed and sorted by the query. */
export function runs(opts: RunsOptions = {}): Table {
  const { home, ...query } = opts;
  return runsTable(listRuns(home, query));
}
