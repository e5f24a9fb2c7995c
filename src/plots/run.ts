// Run-level figures from the metrics table: training loss with knob events, runs compared.

import { ema, numbers, readNumbers, smoothingFactor, tidyArray } from "./columns.js";
import { addEventMarkers, eventMarkers } from "./events.js";
import {
  baseConfig,
  baseLayout,
  COLORS,
  paletteColor,
  runLabel,
  runLabels,
  type Figure,
  type PlotlyTrace,
  type RunData,
} from "./figure.js";
import { currentStyle } from "./style.js";

export { eventMarkers };

export interface LossOptions {
  /** Logarithmic loss axis. */
  logY?: boolean;
  /** EMA smoothing of the train loss: true (factor 0.9) or a factor in [0, 1). The raw line stays, faded. */
  smooth?: boolean | number;
  /** Draw "set" events (knob changes) as dashed vertical lines with a label. Default true. */
  events?: boolean;
}

/** Train loss vs step (optionally EMA-smoothed), validation loss where measured, and knob changes. */
export function loss(run: RunData, opts: LossOptions = {}): Figure {
  const m = run.metrics;
  const step = numbers(m, "step", "metrics table");
  const train = numbers(m, "loss", "metrics table");
  const alpha = smoothingFactor(opts.smooth);
  const st = currentStyle();
  const lw = st.lineWidth;

  const data: PlotlyTrace[] = [
    {
      type: "scatter",
      mode: "lines",
      name: "train loss",
      x: Array.from(step),
      y: tidyArray(train),
      line: { color: COLORS.train, width: alpha === null ? lw : lw * 0.6 },
      opacity: alpha === null ? 1 : 0.3,
    },
  ];
  if (alpha !== null) {
    data.push({
      type: "scatter",
      mode: "lines",
      name: `train loss (EMA ${alpha})`,
      x: Array.from(step),
      y: tidyArray(ema(train, alpha)),
      line: { color: COLORS.train, width: lw * 1.25 },
    });
  }

  if (m.getChild("valLoss")) {
    const { values, valid } = readNumbers(m, "valLoss");
    const xs: number[] = [];
    const ys: number[] = [];
    for (let i = 0; i < values.length; i++) {
      if ((valid === null || valid[i] === 1) && Number.isFinite(values[i])) {
        xs.push(step[i] as number);
        ys.push(values[i] as number);
      }
    }
    if (xs.length > 0) {
      data.push({
        type: "scatter",
        mode: "lines+markers",
        name: "val loss",
        x: xs,
        y: tidyArray(ys),
        line: { color: COLORS.val, width: lw },
        marker: { color: COLORS.val, size: st.name === "paper" ? 5 : 7 },
      });
    }
  }

  const layout = baseLayout({
    title: `loss · ${runLabel(run)}`,
    xTitle: "step",
    yTitle: "loss (nats/token)",
    logY: opts.logY,
  });
  if (opts.events !== false) addEventMarkers(layout, run.events);
  return { data, layout, config: baseConfig() };
}

/** Columns of the metrics table that compareRuns can overlay. */
export type RunMetric =
  | "loss"
  | "valLoss"
  | "valBpb"
  | "lr"
  | "gradNorm"
  | "tokens"
  | "tokensPerSec"
  | "stepMs"
  | "peakMemoryBytes"
  | (string & {});

export interface CompareOptions {
  metric?: RunMetric;
  /** x axis: optimizer step (default), cumulative tokens, or minutes since the run's first row. */
  x?: "step" | "tokens" | "time";
  logY?: boolean;
  /** EMA smoothing as in loss(); applied to dense metrics, not to the sparse validation ones. */
  smooth?: boolean | number;
}

const METRIC_TITLES: Record<string, string> = {
  loss: "train loss (nats/token)",
  valLoss: "validation loss (nats/token)",
  valBpb: "validation bits per byte",
  lr: "learning rate",
  gradNorm: "gradient norm",
  tokens: "tokens trained",
  tokensPerSec: "tokens / s",
  stepMs: "step time (ms)",
  peakMemoryBytes: "peak memory (bytes)",
};

const RUN_DASHES = ["solid", "dash", "dot", "dashdot"];

/** The x value (step, tokens or minutes) of the metrics row at `step`; NaN when absent. */
function xAtStep(steps: Float64Array, xs: Float64Array, step: number): number {
  for (let i = 0; i < steps.length; i++) if (steps[i] === step) return xs[i] as number;
  return NaN;
}

/**
 * One metric of several runs overlaid, one colored line per run (each its own dash pattern,
 * so identical prefixes stay visible), with a diamond where a run's knobs changed.
 */
export function compareRuns(runs: readonly RunData[], opts: CompareOptions = {}): Figure {
  const metric = opts.metric ?? "loss";
  const xKind = opts.x ?? "step";
  const alpha = smoothingFactor(opts.smooth);
  const data: PlotlyTrace[] = [];
  const labels = runLabels(runs);
  const st = currentStyle();

  runs.forEach((run, r) => {
    const label = labels[r] as string;
    const m = run.metrics;
    const { values, valid } = readNumbers(m, metric, `metrics table of run ${run.id}`);
    let xs: Float64Array;
    if (xKind === "step") xs = numbers(m, "step", `metrics table of run ${run.id}`);
    else if (xKind === "tokens") xs = numbers(m, "tokens", `metrics table of run ${run.id}`);
    else {
      const t = numbers(m, "time", `metrics table of run ${run.id}`);
      const t0 = t.length > 0 ? (t[0] as number) : 0;
      xs = t.map((v) => (v - t0) / 60000);
    }
    const sparse = valid !== null;
    const keepX: number[] = [];
    const keepY: number[] = [];
    for (let i = 0; i < values.length; i++) {
      if (valid !== null && valid[i] !== 1) continue;
      keepX.push(xs[i] as number);
      keepY.push(values[i] as number);
    }
    const color = paletteColor(r);
    const smoothed = alpha !== null && !sparse;
    const ys = smoothed ? ema(keepY, alpha) : keepY;
    data.push({
      type: "scatter",
      mode: sparse ? "lines+markers" : "lines",
      name: label,
      legendgroup: label,
      x: tidyArray(keepX),
      y: tidyArray(ys),
      // A dash pattern per run: runs that share a prefix (a knob changed later) stay visible.
      line: { color, width: st.lineWidth * 1.1, dash: RUN_DASHES[r % RUN_DASHES.length] },
      marker: { color, size: st.name === "paper" ? 4 : 6 },
    });
    // Knob changes of this run: a marker on its line, labelled with the change.
    const steps = numbers(m, "step", `metrics table of run ${run.id}`);
    const mx: number[] = [];
    const my: number[] = [];
    const mt: string[] = [];
    const changes = eventMarkers(run.events).annotations;
    for (const a of changes) {
      const step = a.x as number;
      const at = xAtStep(steps, xs, step);
      const row = keepX.indexOf(at);
      if (row < 0) continue;
      mx.push(keepX[row] as number);
      my.push(ys[row] as number);
      mt.push(`${label} @ step ${step}: ${String(a.text).replace(/<br>/g, ", ")}`);
    }
    if (mx.length)
      data.push({
        type: "scatter",
        mode: "markers",
        name: `${label}: knob change`,
        legendgroup: label,
        showlegend: false,
        x: tidyArray(mx),
        y: tidyArray(my),
        text: mt,
        marker: { color, size: st.name === "paper" ? 7 : 11, symbol: "diamond", line: { color: "#222", width: 1 } },
        hovertemplate: "%{text}<extra></extra>",
      });
  });

  const xTitle = xKind === "step" ? "step" : xKind === "tokens" ? "tokens" : "time (minutes)";
  const layout = baseLayout({
    title: `${metric} · ${runs.length} run${runs.length === 1 ? "" : "s"}`,
    xTitle,
    yTitle: METRIC_TITLES[metric] ?? metric,
    logY: opts.logY,
    hovermode: "closest",
  });
  return { data, layout, config: baseConfig() };
}
