/**
 * Arrow schemas of the run store's two streams (the data contract in docs/run-store.md) and the
 * helpers that append rows to them.
 */
import { Field, Float32, Float64, Int32, Schema, Utf8, type DataType } from "apache-arrow";
import type { ArrowAppender, ColumnInput } from "./arrowStream.js";
import { I32_LAYER_STATS, STORED_LAYER_STATS, type LayerStatI32, type StoredLayerStat } from "./layerStats.js";

function f(name: string, type: DataType, nullable = false): Field {
  return new Field(name, type, nullable);
}

/** `metrics.arrows`: one row per optimizer step. */
export const metricsSchema = new Schema([
  f("step", new Int32()),
  f("time", new Float64()),
  f("loss", new Float32()),
  f("lr", new Float32()),
  f("gradNorm", new Float32()),
  f("tokens", new Float64()),
  f("tokensPerSec", new Float32()),
  f("stepMs", new Float32()),
  f("peakMemoryBytes", new Float64()),
  f("valLoss", new Float32(), true),
  f("valBpb", new Float32(), true),
]);

/** Column order of `layers.arrows` after step/layer/name: the stored layer statistics. */
const LAYER_ORDER = STORED_LAYER_STATS;

/** Int32 columns of `layers.arrows` after step/layer/name. */
export const LAYER_INT_COLUMNS = LAYER_ORDER.filter((n): n is StoredLayerStat & LayerStatI32 => isI32(n));

/** Float32 columns of `layers.arrows` after step/layer/name. */
export const LAYER_FLOAT_COLUMNS = LAYER_ORDER.filter((n): n is Exclude<StoredLayerStat, LayerStatI32> => !isI32(n));

export type LayerIntColumn = (typeof LAYER_INT_COLUMNS)[number];
export type LayerFloatColumn = (typeof LAYER_FLOAT_COLUMNS)[number];

function isI32(name: string): boolean {
  return (I32_LAYER_STATS as readonly string[]).includes(name);
}

/** `layers.arrows`: long format, one row per BitLinear layer per step. */
export const layersSchema = new Schema([
  f("step", new Int32()),
  f("layer", new Int32()),
  f("name", new Utf8()),
  ...LAYER_ORDER.map((name) => f(name, isI32(name) ? new Int32() : new Float32())),
]);

/** One row of `metrics.arrows`. */
export interface MetricsRow {
  step: number;
  /** Unix time in milliseconds. */
  time: number;
  /** Mean train loss of the step, nats/token. */
  loss: number;
  lr: number;
  gradNorm: number;
  /** Cumulative tokens trained. */
  tokens: number;
  tokensPerSec: number;
  stepMs: number;
  peakMemoryBytes: number;
  /** Only on evaluation steps. */
  valLoss: number | null;
  valBpb: number | null;
}

/** What callers pass to append a metrics row: `time` defaults to now, val fields to null. */
export type MetricsInput = Omit<MetricsRow, "time" | "valLoss" | "valBpb"> & {
  time?: number;
  valLoss?: number | null;
  valBpb?: number | null;
};

/** One row of `layers.arrows`. */
export type LayerRow = { step: number; layer: number; name: string } & Record<
  LayerIntColumn | LayerFloatColumn,
  number
>;

/**
 * The per-layer statistics of one step, column-wise (index i = layer i). Only `step`, `names` and
 * `scale` are required; any other statistic left out is written as 0 (what fp/ste runs have).
 */
export type LayerColumns = {
  step: number;
  names: readonly string[];
  /** Layer indices; defaults to 0..names.length-1. */
  layer?: ArrayLike<number>;
  scale: ArrayLike<number>;
} & Partial<Record<Exclude<LayerIntColumn | LayerFloatColumn, "scale">, ArrayLike<number>>>;

/** Appends one metrics row (validated: every non-val field must be a number). */
export function appendMetricsRow(appender: ArrowAppender, row: MetricsInput): void {
  appender.append({
    ...row,
    time: row.time ?? Date.now(),
    valLoss: row.valLoss ?? null,
    valBpb: row.valBpb ?? null,
  });
}

/** Appends one step's per-layer rows; every column must have names.length entries. */
export function appendLayerColumns(appender: ArrowAppender, cols: LayerColumns): void {
  const n = cols.names.length;
  const input: Record<string, ColumnInput | undefined> = {
    step: cols.step,
    layer: cols.layer ?? Int32Array.from({ length: n }, (_, i) => i),
    name: cols.names,
  };
  for (const name of LAYER_ORDER) input[name] = cols[name] ?? 0;
  appender.appendColumns(input, n);
}

/**
 * `custom.arrows`: metrics a user logs with `t.log()`, long format (one row per name per call),
 * so new names never change the schema: step:Int32, time:Float64 (unix ms), name:Utf8,
 * value:Float64.
 */
export const customSchema = new Schema([
  f("step", new Int32()),
  f("time", new Float64()),
  f("name", new Utf8()),
  f("value", new Float64()),
]);

/**
 * `knobs.arrows`: the effective knobs at every step, long format (one row per knob per step) so
 * that a knob added later never changes the schema: step:Int32, knob:Utf8, value:Float64 (null
 * for a knob that is off, e.g. bridge).
 */
export const knobTraceSchema = new Schema([
  f("step", new Int32()),
  f("knob", new Utf8()),
  f("value", new Float64(), true),
]);
