// Histograms of whole optimizer buffers of one layer (votes, flip probabilities).
// The buffers can hold tens of millions of values, so they are binned here and only the
// counts go into the figure, never the raw values.

import type { Table } from "apache-arrow";
import { numbersFrom, tidy } from "./columns.js";
import { baseConfig, baseLayout, LEVEL_COLORS, type Figure } from "./figure.js";

function pct(x: number): string {
  return `${(100 * x).toFixed(x >= 0.1 || x === 0 ? 1 : 2)}%`;
}

function compactCount(n: number): string {
  if (n >= 1e6) return `${(n / 1e6).toFixed(2)}M`;
  if (n >= 1e4) return `${(n / 1e3).toFixed(1)}k`;
  return String(n);
}

export interface VoteHistogramOptions {
  /** Logarithmic count axis; default true (zero votes usually dwarf the tails). */
  logY?: boolean;
}

/** Histogram of a layer's int8 votes over -127..127, colored by sign. */
export function voteHistogram(
  votes: Int8Array | ArrayLike<number> | Table,
  layerName = "",
  opts: VoteHistogramOptions = {},
): Figure {
  const v = numbersFrom(votes, ["vote", "votes", "value"], "votes");
  const counts = new Float64Array(255);
  for (let i = 0; i < v.length; i++) {
    // Votes saturate at ±127 by design; an int8 -128 (never produced) lands in the -127 bin.
    const x = Math.max(-127, Math.min(127, Math.trunc(v[i] as number)));
    counts[x + 127] += 1;
  }
  const n = v.length;
  const zero = counts[127] as number;
  const saturated = (counts[0] as number) + (counts[254] as number);
  const x = Array.from({ length: 255 }, (_, i) => i - 127);
  const colors = x.map((val) => (val < 0 ? LEVEL_COLORS[0] : val > 0 ? LEVEL_COLORS[4] : LEVEL_COLORS[2]));
  const title =
    `votes${layerName ? ` · ${layerName}` : ""} · n=${compactCount(n)}` +
    (n > 0 ? ` · |vote|≥1 ${pct((n - zero) / n)} · saturated ${pct(saturated / n)}` : "");
  const layout = baseLayout({
    title,
    xTitle: "vote",
    yTitle: "weights",
    logY: opts.logY ?? true,
    hovermode: "closest",
  });
  // Fitted to the votes present (at least ±8), not to the ±127 the int8 could hold.
  let reach = 8;
  for (let i = 0; i < 255; i++) if ((counts[i] as number) > 0) reach = Math.max(reach, Math.abs(i - 127));
  layout.xaxis = { ...(layout.xaxis as Record<string, unknown>), range: [-reach - 1.5, reach + 1.5] };
  layout.bargap = 0;
  return {
    data: [
      {
        type: "bar",
        name: layerName || "votes",
        x,
        y: Array.from(counts),
        marker: { color: colors, line: { width: 0 } },
        hovertemplate: "vote %{x}: %{y} weights<extra></extra>",
      },
    ],
    layout,
    config: baseConfig(),
  };
}

export interface FlipProbabilityOptions {
  /** Number of bins between 0 and the upper edge; default 50. */
  bins?: number;
  /** Upper edge of the histogram (e.g. the pMax knob); default the largest p. */
  pMax?: number;
  layerName?: string;
  /** Logarithmic count axis; default true. */
  logY?: boolean;
  /** Put p = 0 (weights without votes) into the first bin; default false, they are only counted in the title. */
  includeZeros?: boolean;
}

/** Σp rounded for a title: "332", "1.2k", "0.41". */
function expectedFlips(sum: number): string {
  if (sum >= 1e4) return compactCount(Math.round(sum));
  if (sum >= 10) return String(Math.round(sum));
  return String(Number(sum.toPrecision(2)));
}

/** Histogram of a layer's flip probabilities p; the title gives the share of p = 0 and Σp (expected flips). */
export function flipProbabilityHistogram(
  p: Float32Array | ArrayLike<number> | Table,
  opts: FlipProbabilityOptions = {},
): Figure {
  const values = numbersFrom(p, ["p", "value", "prob", "probability", "flipProbability"], "flip probabilities");
  const bins = Math.max(1, Math.floor(opts.bins ?? 50));
  let max = 0;
  let zeros = 0;
  let sum = 0;
  for (let i = 0; i < values.length; i++) {
    const x = values[i] as number;
    if (!Number.isFinite(x)) continue;
    if (x > max) max = x;
    if (x <= 0) zeros++;
    sum += x;
  }
  const hi = opts.pMax !== undefined && opts.pMax > 0 ? opts.pMax : max > 0 ? max : 1;
  const width = hi / bins;
  const counts = new Float64Array(bins);
  for (let i = 0; i < values.length; i++) {
    const x = values[i] as number;
    if (!Number.isFinite(x)) continue;
    if (x <= 0 && !opts.includeZeros) continue;
    // Values above the edge (pMax lowered after the buffer was read) go to the last bin.
    const b = Math.min(bins - 1, Math.max(0, Math.floor(x / width)));
    counts[b] += 1;
  }
  const n = values.length;
  const centers = Array.from({ length: bins }, (_, b) => tidy((b + 0.5) * width) as number);
  const title =
    `flip probability${opts.layerName ? ` · ${opts.layerName}` : ""} · n=${compactCount(n)}` +
    (n > 0 ? ` · p=0 ${pct(zeros / n)} · expected flips Σp ≈ ${expectedFlips(sum)}` : "");
  const layout = baseLayout({ title, xTitle: "p", yTitle: "weights", logY: opts.logY ?? true, hovermode: "closest" });
  layout.xaxis = { ...(layout.xaxis as Record<string, unknown>), range: [0, hi] };
  layout.bargap = 0.02;
  return {
    data: [
      {
        type: "bar",
        name: opts.layerName || "p",
        x: centers,
        y: Array.from(counts),
        width: tidy(width),
        marker: { color: "#8a5cc2" },
        hovertemplate: "p ≈ %{x}: %{y} weights<extra></extra>",
      },
    ],
    layout,
    config: baseConfig(),
  };
}
