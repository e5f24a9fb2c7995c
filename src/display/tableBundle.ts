// An Apache Arrow table as a Jupyter MIME bundle: HTML (schema, size, head and tail), a
// Frictionless data resource (JupyterLab / nteract grids) and aligned text.
import { withDisplay, type MimeBundle } from "./mime.js";
import { escapeHtml } from "../plots/html.js";

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

/** The table, displaying itself in Jupyter kernels that follow the Jupyter.display protocol. */
export function displayableTable<T extends ArrowTableLike>(table: T, opts: TableBundleOptions = {}): T {
  return withDisplay(table, () => tableBundle(table, opts));
}
