// The index.html of `primal report`: one page per run with its configuration, final numbers,
// the figures (interactive, drawn by the plotly.js file beside the page, with links to every
// exported format), the knob changes and other events, and the salad-test samples. It loads
// nothing from the network, so the folder works offline and can be copied anywhere.
import { escapeHtml } from "../display/html.js";
import { figureHtml, figureTitle, plotlyFileName } from "../plots/html.js";
import type { Figure } from "../plots/figure.js";
import type { RunData } from "../tracking/runReader.js";

export interface ReportFigure {
  /** File stem: "loss" → loss.png, loss.svg, … */
  name: string;
  figure: Figure;
  /** The files written for it, relative to the page (e.g. ["loss.png", "loss.pdf"]). */
  files: string[];
}

const CSS = `
body{font-family:Arimo,"Helvetica Neue",Helvetica,Arial,sans-serif;color:#222;margin:0 auto;max-width:1100px;padding:16px 24px 48px}
h1{font-size:22px;margin:8px 0 2px}h2{font-size:17px;margin:28px 0 8px;border-bottom:1px solid #ddd;padding-bottom:4px}
.sub{color:#666;font-size:13px}table{border-collapse:collapse;font-size:13px}
td,th{padding:3px 10px 3px 0;text-align:left;vertical-align:top}th{color:#555;font-weight:normal}
.grid{display:grid;grid-template-columns:max-content 1fr;column-gap:18px}
figure{margin:0 0 28px}figcaption{font-size:13px;color:#555;margin-top:2px}figcaption a{margin-right:10px}
.samples li{margin:6px 0}.samples code{white-space:pre-wrap;background:#f6f6f6;padding:1px 4px}
.events td:first-child,.samples .step{color:#888}
`;

function fmt(v: unknown): string {
  if (v === null || v === undefined) return "—";
  if (typeof v === "number") return Number.isInteger(v) ? v.toLocaleString("en-US") : String(Number(v.toPrecision(4)));
  if (typeof v === "string") return v;
  return JSON.stringify(v);
}

/** An event's details in a line: evaluations as their metrics, other objects one level deep. */
function detail(value: unknown): string {
  if (value === null || typeof value !== "object" || Array.isArray(value)) return fmt(value);
  const o = value as Record<string, unknown>;
  if (typeof o.loss === "number") {
    const tokens = typeof o.tokens === "number" ? o.tokens : o.tokensScored;
    return (
      `loss ${fmt(o.loss)}` +
      (typeof o.bpb === "number" ? `, bpb ${fmt(o.bpb)}` : "") +
      (typeof o.ppl === "number" ? `, ppl ${fmt(o.ppl)}` : "") +
      (typeof tokens === "number" ? ` (${fmt(tokens)} tokens)` : "")
    );
  }
  return Object.entries(o)
    .map(([k, v]) => `${k} ${v !== null && typeof v === "object" ? JSON.stringify(v) : fmt(v)}`)
    .join(", ");
}

function rows(pairs: [string, unknown][]): string {
  return pairs
    .filter(([, v]) => v !== undefined)
    .map(([k, v]) => `<tr><th>${escapeHtml(k)}</th><td>${escapeHtml(fmt(v))}</td></tr>`)
    .join("");
}

/** The last non-null value of a numeric metrics column, with its step. */
function last(run: RunData, column: string): { value: number; step: number } | null {
  const col = run.metrics.getChild(column);
  const steps = run.metrics.getChild("step");
  if (!col || !steps) return null;
  for (let i = run.metrics.numRows - 1; i >= 0; i--) {
    const v = col.get(i) as number | null;
    if (v !== null && Number.isFinite(v)) return { value: v, step: Number(steps.get(i)) };
  }
  return null;
}

function configSummary(run: RunData): string {
  const c = run.meta.config as Record<string, unknown>;
  const model = (c.model ?? {}) as Record<string, unknown>;
  const knobs = (c.knobs ?? {}) as Record<string, unknown>;
  const data = (c.data ?? {}) as Record<string, unknown>;
  const loss = last(run, "loss");
  const val = last(run, "valLoss");
  const bpb = last(run, "valBpb");
  const tps = last(run, "tokensPerSec");
  const general = rows([
    ["run", run.meta.name ?? run.id],
    ["id", run.id],
    ["status", `${run.meta.status} at step ${run.meta.step}`],
    ["created", run.meta.createdAt],
    ["device", run.meta.device],
    ["preset", c.preset],
    [
      "model",
      `${fmt(model.layers)} blocks, d ${fmt(model.dModel)}, ${fmt(model.heads)} heads, ffn ${fmt(model.ffn)}, seq ${fmt(model.seq)}, vocab ${fmt(model.vocab)}`,
    ],
    ["quantizer", c.quant],
    ["batch × accum", `${fmt(c.batch)} × ${fmt(c.accum)}`],
    ["warmup, steps", `${fmt(c.warmup)}, ${fmt(c.steps)}`],
    ["seed", c.seed],
    ["data", data.corpus ?? data.path],
    [
      "versions",
      Object.entries(run.meta.versions ?? {})
        .map(([k, v]) => `${k} ${String(v)}`)
        .join(", "),
    ],
  ]);
  const results = rows([
    ["train loss", loss ? `${fmt(loss.value)} (step ${loss.step})` : undefined],
    ["validation loss", val ? `${fmt(val.value)} (step ${val.step})` : undefined],
    ["validation bits per byte", bpb ? `${fmt(bpb.value)} (step ${bpb.step})` : undefined],
    ["tokens / s", tps ? fmt(Math.round(tps.value)) : undefined],
  ]);
  const knobRows = rows(Object.entries(knobs));
  return (
    `<div class="grid"><table>${general}</table><div><table>${results}</table>` +
    `<h3 style="font-size:14px;margin:14px 0 4px">knobs at creation</h3><table>${knobRows}</table></div></div>`
  );
}

function eventsTable(run: RunData): string {
  const events = run.events.filter((e) => e.kind !== "checkpoint");
  const checkpoints = run.events.length - events.length;
  if (events.length === 0) return "<p>No events.</p>";
  const body = events
    .map((e) => {
      const { step, time, kind, ...rest } = e as { step?: unknown; time?: unknown; kind?: unknown };
      const text =
        kind === "set"
          ? `${fmt((rest as { knob?: unknown }).knob)}: ${fmt((rest as { old?: unknown }).old)} → ${fmt((rest as { new?: unknown }).new)}`
          : Object.entries(rest)
              .map(([k, v]) => (v !== null && typeof v === "object" ? `${k}: ${detail(v)}` : `${k} ${fmt(v)}`))
              .join("; ");
      return `<tr><td>${escapeHtml(fmt(step))}</td><td>${escapeHtml(String(time ?? ""))}</td><td>${escapeHtml(String(kind))}</td><td>${escapeHtml(text)}</td></tr>`;
    })
    .join("");
  return (
    `<table class="events"><tr><th>step</th><th>time</th><th>kind</th><th></th></tr>${body}</table>` +
    (checkpoints ? `<p class="sub">and ${checkpoints} checkpoint event${checkpoints === 1 ? "" : "s"}</p>` : "")
  );
}

function samplesList(run: RunData): string {
  if (run.samples.length === 0) return "<p>No samples (the salad test was off).</p>";
  return (
    '<ul class="samples">' +
    run.samples
      .map((s) => {
        const r = s as { step?: unknown; prompt?: unknown; text?: unknown; temperature?: unknown };
        return `<li><span class="step">step ${escapeHtml(fmt(r.step))}</span> <code><b>${escapeHtml(String(r.prompt ?? ""))}</b>${escapeHtml(String(r.text ?? ""))}</code></li>`;
      })
      .join("") +
    "</ul>"
  );
}

/** The report page; plotly.js is loaded from plotly-<version>.min.js beside it. */
export function reportPage(run: RunData, figures: readonly ReportFigure[]): string {
  const title = run.meta.name ?? run.id;
  const figs = figures
    .map((f) => {
      const height = typeof f.figure.layout.height === "number" ? `${f.figure.layout.height}px` : "460px";
      const png = f.files.find((x) => x.endsWith(".png"));
      const links = f.files.map((x) => `<a href="${escapeHtml(x)}">${escapeHtml(x.split(".").pop() ?? x)}</a>`);
      return (
        `<figure id="${escapeHtml(f.name)}">` +
        figureHtml(f.figure, { includePlotlyJs: false, divId: `fig-${f.name}`, height }) +
        (png
          ? `<noscript><img src="${escapeHtml(png)}" alt="${escapeHtml(figureTitle(f.figure))}" style="max-width:100%"></noscript>`
          : "") +
        `<figcaption>${escapeHtml(figureTitle(f.figure) || f.name)} · ${links.join(" ")}</figcaption></figure>`
      );
    })
    .join("\n");
  return (
    '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n' +
    `<title>${escapeHtml(title)} · PRIMAL report</title>\n<style>${CSS}</style>\n` +
    `<script type="text/javascript" src="${escapeHtml(plotlyFileName())}"></script>\n</head>\n<body>\n` +
    `<h1>${escapeHtml(title)}</h1><div class="sub">PRIMAL run report · ${escapeHtml(run.id)}</div>\n` +
    `<h2>Configuration and results</h2>\n${configSummary(run)}\n` +
    `<h2>Figures</h2>\n${figs}\n` +
    `<h2>Events</h2>\n${eventsTable(run)}\n` +
    `<h2>Samples</h2>\n${samplesList(run)}\n` +
    "</body>\n</html>\n"
  );
}
