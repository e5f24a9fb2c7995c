// Knob changes ("set" events) drawn on every figure whose x axis is the step.

import { COLORS, formatValue, type RunData, type RunEvent } from "./figure.js";
import { currentStyle } from "./style.js";

/**
 * Knob changes as dashed vertical lines (layout.shapes) with labels such as "bridge 0.667→0.7"
 * (layout.annotations). Events at the same step share one line and one label (one text line per
 * knob), so a `set({bridge, flipRate})` reads as one change. Labels cycle through four heights so
 * that changes a few steps apart do not print on top of each other.
 */
export function eventMarkers(events: RunData["events"]): {
  shapes: Record<string, unknown>[];
  annotations: Record<string, unknown>[];
} {
  const byStep = new Map<number, string[]>();
  for (const e of (events ?? []) as readonly Partial<RunEvent>[]) {
    const step = e.step;
    if (e.kind !== "set" || typeof step !== "number" || !Number.isFinite(step)) continue;
    const knob = typeof e.knob === "string" ? e.knob : "set";
    const text = `${knob} ${formatValue(e.old)}→${formatValue(e.new)}`;
    const list = byStep.get(step) ?? [];
    list.push(text);
    byStep.set(step, list);
  }
  const shapes: Record<string, unknown>[] = [];
  const annotations: Record<string, unknown>[] = [];
  const steps = Array.from(byStep.keys()).sort((a, b) => a - b);
  // Paper figures are narrow: labels run up along their line, so that they neither cover the
  // data nor widen the axis (Plotly widens an axis to fit a label).
  const paper = currentStyle().name === "paper";
  steps.forEach((step, k) => {
    shapes.push({
      type: "line",
      xref: "x",
      yref: "paper",
      x0: step,
      x1: step,
      y0: 0,
      y1: 1,
      line: { color: COLORS.event, width: currentStyle().name === "paper" ? 1 : 1.5, dash: "dash" },
      layer: "above",
    });
    annotations.push({
      x: step,
      xref: "x",
      y: paper ? 1 : 1 - (k % 4) * 0.08,
      yref: "paper",
      yanchor: "top",
      xanchor: paper ? "right" : "left",
      xshift: paper ? -1 : 3,
      ...(paper ? { textangle: -90 } : {}),
      text: (byStep.get(step) as string[]).join("<br>"),
      showarrow: false,
      align: paper ? "right" : "left",
      font: { size: currentStyle().smallSize, color: "#444" },
      bgcolor: "rgba(255,255,255,0.8)",
    });
  });
  return { shapes, annotations };
}

/** Adds the knob-change lines and labels of `events` to a layout's shapes and annotations. */
export function addEventMarkers(layout: Record<string, unknown>, events: RunData["events"]): void {
  const { shapes, annotations } = eventMarkers(events);
  if (shapes.length === 0) return;
  layout.shapes = [...((layout.shapes as unknown[] | undefined) ?? []), ...shapes];
  layout.annotations = [...((layout.annotations as unknown[] | undefined) ?? []), ...annotations];
}
