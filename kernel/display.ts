// Rich display for the PRIMAL Jupyter kernel: Plotly figures and Apache Arrow tables as
// multi-MIME bundles, sent through tslab's display channel. Outside a kernel (plain Node,
// tests) `show` prints the text/plain part instead, so notebook code also runs as a script.
import { randomBytes } from "node:crypto";
import { createRequire } from "node:module";
import { figureHtml, plotlyVersion } from "../src/plots/export.js";
import { figureJson, type Figure } from "../src/plots/figure.js";

/** A Jupyter MIME bundle: MIME type → content (JSON-able value or string). */
export type MimeBundle = Record<string, unknown>;

/** The content of a display_data / update_display_data message. */
interface DisplayContent {
  data: MimeBundle;
  metadata: Record<string, unknown>;
  transient: { display_id?: string };
}

type WriteDisplayData = (content: DisplayContent, update: boolean) => void;

const requireHere = createRequire(import.meta.url);

// tslab keeps the display sender of the cell being executed in a module-level variable of its
// jupyter module (the same one its own `display` API uses). It is read on every call, because
// tslab replaces it at the start of each cell.
let tslabJupyter: { lastWriteDisplayData: WriteDisplayData | null } | null | undefined;

function writer(): WriteDisplayData | null {
  if (tslabJupyter === undefined) {
    try {
      tslabJupyter = requireHere("tslab/dist/jupyter.js") as { lastWriteDisplayData: WriteDisplayData | null };
    } catch {
      tslabJupyter = null;
    }
  }
  return tslabJupyter?.lastWriteDisplayData ?? null;
}

/** True inside a running PRIMAL/tslab kernel that has started executing a cell. */
export function inKernel(): boolean {
  return writer() !== null;
}

/** Sends one bundle as display_data (or update_display_data for an existing display id). */
export function sendBundle(data: MimeBundle, opts: { displayId?: string; update?: boolean; metadata?: Record<string, unknown> } = {}): boolean {
  const w = writer();
  if (!w) return false;
  const transient = opts.displayId !== undefined ? { display_id: opts.displayId } : {};
  w({ data, metadata: opts.metadata ?? {}, transient }, opts.update === true);
  return true;
}

/**
 * One output area updated in place (Jupyter display ids). The first `update` shows it, later
 * calls replace its content. Outside a kernel, text/plain goes to stdout (first and last only,
 * when `quiet` is set, to keep logs short).
 */
export class DisplayHandle {
  readonly id: string;
  private shown = false;

  constructor(id = randomBytes(8).toString("hex")) {
    this.id = id;
  }

  update(data: MimeBundle): void {
    const sent = sendBundle(data, { displayId: this.id, update: this.shown });
    if (sent) this.shown = true;
    else if (typeof data["text/plain"] === "string") process.stdout.write(`${data["text/plain"]}\n`);
  }
}

// ---------------------------------------------------------------- detection

/** Duck-typed Plotly figure: {data: trace[], layout: object}. */
export function isFigure(x: unknown): x is Figure {
  if (x === null || typeof x !== "object") return false;
  const f = x as { data?: unknown; layout?: unknown };
  return (
    Array.isArray(f.data) &&
    f.data.every((t) => t !== null && typeof t === "object") &&
    f.layout !== null &&
    typeof f.layout === "object" &&
    !Array.isArray(f.layout)
  );
}

/** Minimal structural view of an apache-arrow Table (any copy of the library). */
export interface ArrowTableLike {
  numRows: number;
  numCols: number;
  schema: { fields: { name: string; type: unknown; nullable?: boolean }[] };
  getChildAt(i: number): { get(i: number): unknown } | null;
}

/** Duck-typed Arrow table, so tables from another copy of apache-arrow render too. */
export function isArrowTable(x: unknown): x is ArrowTableLike {
  if (x === null || typeof x !== "object") return false;
  const t = x as Partial<ArrowTableLike> & { getChild?: unknown; batches?: unknown };
  return (
    typeof t.numRows === "number" &&
    typeof t.getChildAt === "function" &&
    typeof t.getChild === "function" &&
    Array.isArray(t.batches) &&
    t.schema !== undefined &&
    Array.isArray(t.schema.fields)
  );
}

// ---------------------------------------------------------------- Plotly

// plotly.js (4.8 MB) goes into the first figure of a kernel session only; later figures call
// window.Plotly, which that first output defined (outputs render in order in the classic
// notebook, in nbconvert's HTML and when a saved notebook is reopened).
let plotlySent = false;

/** Forget that plotly.js was sent (the next figure inlines it again). */
export function resetPlotlyInlining(): void {
  plotlySent = false;
}

function figureTitle(fig: Figure): string {
  const t = fig.layout.title;
  if (typeof t === "string") return t;
  if (t && typeof t === "object" && typeof (t as { text?: unknown }).text === "string") return (t as { text: string }).text;
  return "";
}

function traceSummary(fig: Figure): string {
  const names = fig.data.map((t, i) => `${String(t.type ?? "scatter")}${t.name !== undefined ? ` "${String(t.name)}"` : ` #${i}`}`);
  const shown = names.slice(0, 6).join(", ");
  return names.length > 6 ? `${shown}, … (${names.length - 6} more)` : shown;
}

export interface FigureBundleOptions {
  /** Inline plotly.js in the HTML part: true, false, or "auto" (once per kernel session). Default "auto". */
  includePlotlyJs?: boolean | "auto";
}

/** The MIME bundle of a figure: Plotly JSON, an offline HTML fallback and a text summary. */
export function figureBundle(fig: Figure, opts: FigureBundleOptions = {}): MimeBundle {
  const mode = opts.includePlotlyJs ?? "auto";
  const include = mode === "auto" ? !plotlySent : mode;
  // JSON round trip: typed arrays become arrays and non-finite numbers null, as in exports.
  const json = JSON.parse(figureJson(fig)) as Record<string, unknown>;
  const html = figureHtml(fig, { includePlotlyJs: include });
  if (mode === "auto" && include) plotlySent = true;
  const title = figureTitle(fig);
  const text =
    `Plotly figure${title ? ` "${title}"` : ""}: ${fig.data.length} trace${fig.data.length === 1 ? "" : "s"}` +
    (fig.data.length ? ` (${traceSummary(fig)})` : "") +
    ` [plotly.js ${plotlyVersion()}]`;
  return {
    "application/vnd.plotly.v1+json": json,
    "text/html": html,
    "text/plain": text,
  };
}

// ---------------------------------------------------------------- Arrow tables

export interface TableBundleOptions {
  /** Rows shown from the start of the table in HTML/text (default 10). */
  head?: number;
  /** Rows shown from the end (default 5). */
  tail?: number;
  /** Rows put in application/vnd.dataresource+json (default 200, from the start). */
  dataRows?: number;
}

function typeName(type: unknown): string {
  const s = String(type);
  return s === "[object Object]" ? "unknown" : s;
}

/** Frictionless Table Schema type of an Arrow type. */
function resourceType(type: unknown): string {
  const s = typeName(type);
  const dict = /^Dictionary<[^,]+,\s*(.+)>$/.exec(s);
  if (dict) return resourceType(dict[1]);
  if (/^u?int(8|16|32|64)$/i.test(s)) return "integer";
  if (/^float(16|32|64)?$/i.test(s) || /^decimal/i.test(s)) return "number";
  if (/^(large)?utf8$/i.test(s)) return "string";
  if (/^bool$/i.test(s)) return "boolean";
  if (/^(timestamp|date)/i.test(s)) return "datetime";
  return "any";
}

function formatNumber(v: number): string {
  if (Number.isInteger(v)) return String(v);
  if (!Number.isFinite(v)) return String(v);
  const a = Math.abs(v);
  if (a !== 0 && (a < 1e-4 || a >= 1e7)) return v.toExponential(4);
  return String(Number(v.toPrecision(6)));
}

/** Cell value as short text: numbers to 6 significant digits, long strings and lists cut. */
function formatCell(v: unknown): string {
  if (v === null || v === undefined) return "null";
  if (typeof v === "number") return formatNumber(v);
  if (typeof v === "bigint") return v.toString();
  if (typeof v === "string") return v.length > 80 ? `${v.slice(0, 77)}…` : v;
  if (typeof v === "boolean") return String(v);
  if (v instanceof Date) return v.toISOString();
  if (ArrayBuffer.isView(v) || Array.isArray(v) || (typeof v === "object" && typeof (v as { toArray?: unknown }).toArray === "function")) {
    const arr = Array.from((ArrayBuffer.isView(v) || Array.isArray(v) ? v : (v as { toArray(): ArrayLike<unknown> }).toArray()) as ArrayLike<unknown>);
    const items = arr.slice(0, 8).map(formatCell).join(", ");
    return `[${items}${arr.length > 8 ? `, … ${arr.length} items` : ""}]`;
  }
  try {
    const s = JSON.stringify(v, (_k, x: unknown) => (typeof x === "bigint" ? x.toString() : x));
    return s.length > 80 ? `${s.slice(0, 77)}…` : s;
  } catch {
    return String(v);
  }
}

/** JSON-safe cell value for the data resource. */
function jsonCell(v: unknown): unknown {
  if (v === null || v === undefined) return null;
  if (typeof v === "number") return Number.isFinite(v) ? v : null;
  if (typeof v === "bigint") return Number(v);
  if (typeof v === "string" || typeof v === "boolean") return v;
  if (v instanceof Date) return v.toISOString();
  return formatCell(v);
}

function escapeHtml(s: string): string {
  return s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

function rowIndices(n: number, head: number, tail: number): { first: number[]; last: number[] } {
  if (n <= head + tail) return { first: Array.from({ length: n }, (_, i) => i), last: [] };
  return {
    first: Array.from({ length: head }, (_, i) => i),
    last: Array.from({ length: tail }, (_, i) => n - tail + i),
  };
}

/** The MIME bundle of an Arrow table: HTML (schema, row count, head and tail), a data resource and text. */
export function tableBundle(table: ArrowTableLike, opts: TableBundleOptions = {}): MimeBundle {
  const head = Math.max(0, Math.floor(opts.head ?? 10));
  const tail = Math.max(0, Math.floor(opts.tail ?? 5));
  const dataRows = Math.max(0, Math.floor(opts.dataRows ?? 200));
  const fields = table.schema.fields;
  const n = table.numRows;
  const cols = fields.map((_, j) => table.getChildAt(j));
  const cell = (i: number, j: number): unknown => cols[j]?.get(i) ?? null;
  const { first, last } = rowIndices(n, head, tail);
  const shape = `${n.toLocaleString("en-US")} row${n === 1 ? "" : "s"} × ${fields.length} column${fields.length === 1 ? "" : "s"}`;

  // HTML: a compact, notebook-styled table; types under the column names.
  const th = fields
    .map((f) => `<th data-column="${escapeHtml(f.name)}" title="${escapeHtml(typeName(f.type))}">${escapeHtml(f.name)}<br><span style="font-weight:normal;color:#888;font-size:0.85em">${escapeHtml(typeName(f.type))}</span></th>`)
    .join("");
  const td = (v: unknown) =>
    v === null || v === undefined ? `<td style="color:#aaa">null</td>` : `<td>${escapeHtml(formatCell(v))}</td>`;
  const tr = (i: number) =>
    `<tr><th style="color:#888;font-weight:normal">${i}</th>${fields.map((_, j) => td(cell(i, j))).join("")}</tr>`;
  const gap = last.length
    ? `<tr><th style="color:#888;font-weight:normal">…</th>${fields.map(() => "<td>…</td>").join("")}</tr>`
    : "";
  const html =
    `<div class="primal-arrow-table">` +
    `<div style="font-family:monospace;font-size:0.9em;color:#555;margin-bottom:4px">Arrow Table · ${escapeHtml(shape)}</div>` +
    `<table class="dataframe" border="1"><thead><tr><th></th>${th}</tr></thead><tbody>` +
    first.map(tr).join("") +
    gap +
    last.map(tr).join("") +
    `</tbody></table></div>`;

  // Text: aligned columns.
  const header = ["", ...fields.map((f) => f.name)];
  const types = ["", ...fields.map((f) => typeName(f.type))];
  const body: string[][] = [];
  for (const i of first) body.push([String(i), ...fields.map((_, j) => formatCell(cell(i, j)))]);
  if (last.length) body.push(["…", ...fields.map(() => "…")]);
  for (const i of last) body.push([String(i), ...fields.map((_, j) => formatCell(cell(i, j)))]);
  const all = [header, types, ...body];
  const widths = header.map((_, c) => Math.min(40, Math.max(...all.map((r) => (r[c] ?? "").length))));
  const line = (r: string[]) => r.map((s, c) => s.slice(0, 40).padStart(widths[c] ?? 0)).join("  ").trimEnd();
  const text = [`Arrow Table: ${shape}`, ...all.map(line)].join("\n");

  // Data resource: the first dataRows rows (JupyterLab / nteract render it as a grid).
  const data: Record<string, unknown>[] = [];
  for (let i = 0; i < Math.min(n, dataRows); i++) {
    const row: Record<string, unknown> = {};
    fields.forEach((f, j) => {
      row[f.name] = jsonCell(cell(i, j));
    });
    data.push(row);
  }
  const resource = {
    schema: { fields: fields.map((f) => ({ name: f.name, type: resourceType(f.type) })) },
    data,
  };
  return {
    "application/vnd.dataresource+json": resource,
    "text/html": html,
    "text/plain": text,
  };
}

// ---------------------------------------------------------------- show

export type ShowOptions = FigureBundleOptions & TableBundleOptions;

/** The MIME bundle `show` would send for a value, or null when it has no rich form. */
export function richBundle(value: unknown, opts: ShowOptions = {}): MimeBundle | null {
  if (isFigure(value)) return figureBundle(value, opts);
  if (isArrowTable(value)) return tableBundle(value, opts);
  return null;
}

/**
 * Displays a value richly in the notebook: a Plotly figure (interactive, also offline in the
 * classic notebook), an Arrow table (schema, size, head and tail), or a MIME bundle given as
 * `{ "text/html": ..., "text/plain": ... }` with `{ raw: true }`. Anything else is printed.
 */
export function show(value: unknown, opts: ShowOptions & { raw?: boolean } = {}): void {
  const bundle = opts.raw ? (value as MimeBundle) : richBundle(value, opts);
  if (bundle === null) {
    console.log(value);
    return;
  }
  if (!sendBundle(bundle)) {
    const text = bundle["text/plain"];
    process.stdout.write(`${typeof text === "string" ? text : JSON.stringify(value)}\n`);
  }
}
