// One metric of a run as a series over steps: a built-in metrics column, a per-step aggregate of
// the layer telemetry (Ghost Scale, flip rate) or a custom metric logged with t.log(). Used by the
// figures for families of runs and by the dashboard, so both plot the same numbers.
import { Float64, Int32, Table, vectorFromArray, type Vector } from "apache-arrow";

/** Metrics every run has (metrics.arrows), plus aggregates of layers.arrows. */
export const METRIC_SERIES = ["loss", "valLoss", "valBpb", "lr", "gradNorm", "tokensPerSec", "stepMs"] as const;
export const LAYER_SERIES = {
  /** Mean Ghost Scale over the BitLinear layers. */
  ghostScale: "scale",
  /** Mean fraction of weights whose code flipped in the step. */
  flipRate: "flipFrac",
} as const;

export const SERIES_TITLES: Record<string, string> = {
  loss: "train loss (nats/token)",
  valLoss: "validation loss (nats/token)",
  valBpb: "validation bits per byte",
  lr: "learning rate",
  gradNorm: "gradient norm",
  tokensPerSec: "tokens / s",
  stepMs: "step time (ms)",
  ghostScale: "Ghost Scale (mean over layers)",
  flipRate: "flip rate (fraction per step)",
};

/** What a series needs from a run: its tables (readRun gives all four; custom is optional). */
export interface SeriesSource {
  metrics: Table;
  layers?: Table;
  custom?: Table;
}

function column(t: Table | undefined, name: string): Vector | null {
  return (t?.getChild(name) as Vector | null | undefined) ?? null;
}

/**
 * The series of `metric` ("loss", "ghostScale", "custom.NAME" or a bare custom name) as a table
 * with columns step (Int32), tokens, time (unix ms) and `metric` (Float64), one row per step
 * (the last row written wins, as after a resume), ascending by step, nulls dropped. Tokens and
 * time of layer and custom series come from the metrics row of the same step.
 */
export function metricSeries(run: SeriesSource, metric: string): Table {
  const m = run.metrics;
  const mStep = column(m, "step");
  const at = new Map<number, number>();
  if (mStep) for (let i = 0; i < m.numRows; i++) at.set(Number(mStep.get(i)), i);
  const tokensOf = (step: number) => {
    const i = at.get(step);
    const v = i === undefined ? null : column(m, "tokens")?.get(i);
    return v === null || v === undefined ? null : Number(v);
  };
  const timeOf = (step: number) => {
    const i = at.get(step);
    const v = i === undefined ? null : column(m, "time")?.get(i);
    return v === null || v === undefined ? null : Number(v);
  };
  const byStep = new Map<number, { value: number; time: number | null }>();

  if ((METRIC_SERIES as readonly string[]).includes(metric) || (column(m, metric) && !(metric in LAYER_SERIES))) {
    const v = column(m, metric);
    if (v && mStep)
      for (let i = 0; i < m.numRows; i++) {
        const x = v.get(i);
        if (x !== null && x !== undefined)
          byStep.set(Number(mStep.get(i)), { value: Number(x), time: timeOf(Number(mStep.get(i))) });
      }
  } else if (metric in LAYER_SERIES) {
    const l = run.layers;
    const step = column(l, "step");
    const v = column(l, LAYER_SERIES[metric as keyof typeof LAYER_SERIES]);
    const sums = new Map<number, { sum: number; n: number }>();
    if (l && step && v)
      for (let i = 0; i < l.numRows; i++) {
        const s = Number(step.get(i));
        const e = sums.get(s) ?? { sum: 0, n: 0 };
        // A resumed run repeats steps: the later rows restart the sum.
        if (e.n > 0 && i > 0 && Number(step.get(i - 1)) !== s) {
          e.sum = 0;
          e.n = 0;
        }
        e.sum += Number(v.get(i));
        e.n++;
        sums.set(s, e);
      }
    for (const [s, e] of sums) byStep.set(s, { value: e.sum / e.n, time: timeOf(s) });
  } else {
    const name = metric.startsWith("custom.") ? metric.slice(7) : metric;
    const c = run.custom;
    const step = column(c, "step");
    const names = column(c, "name");
    const values = column(c, "value");
    const times = column(c, "time");
    if (c && step && names && values)
      for (let i = 0; i < c.numRows; i++)
        if (names.get(i) === name)
          byStep.set(Number(step.get(i)), { value: Number(values.get(i)), time: times ? Number(times.get(i)) : null });
  }

  const steps = [...byStep.keys()].sort((a, b) => a - b);
  return new Table({
    step: vectorFromArray(steps, new Int32()),
    tokens: vectorFromArray(
      steps.map((s) => tokensOf(s)),
      new Float64(),
    ),
    time: vectorFromArray(
      steps.map((s) => byStep.get(s)!.time ?? timeOf(s)),
      new Float64(),
    ),
    [metric]: vectorFromArray(
      steps.map((s) => byStep.get(s)!.value),
      new Float64(),
    ),
  });
}

/** Names of the custom metrics a run logged, in first-logged order. */
export function customMetricNames(custom: Table | undefined): string[] {
  const names = column(custom, "name");
  const out: string[] = [];
  if (!custom || !names) return out;
  const seen = new Set<string>();
  for (let i = 0; i < custom.numRows; i++) {
    const n = names.get(i) as string;
    if (!seen.has(n)) {
      seen.add(n);
      out.push(n);
    }
  }
  return out;
}
