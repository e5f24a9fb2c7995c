// An Apache Arrow table as a Jupyter MIME bundle: HTML (schema, size, head and tail), a
// Frictionless data resource (JupyterLab / nteract grids) and aligned text.
import { withDisplay, type MimeBundle } from "./mime.js";
import { escapeHtml } from "./html.js";
import { formatBytes } from "../byteSize.js";

/** Minimal structural view of an apache-arrow Table (any copy of the library). */
export interface ArrowTableLike {
  numRows: number;
  numCols: number;
  schema: { fields: { name: string; type: unknown; nullable?: boolean; metadata?: Map<string, string> }[] };
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
  /**
   * Columns shown in HTML/text: a list of names, "all", or (default) the first 10, with the
   * others named below the table. The data resource always has every column.
   */
  columns?: readonly string[] | "all";
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

/** Local time as "2026-11-30 14:05:09" (timestamp columns, in the kernel's time zone). */
function localTime(ms: number): string {
  const d = new Date(ms);
  const p = (x: number) => String(x).padStart(2, "0");
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())} ${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}`;
}

type Field = ArrowTableLike["schema"]["fields"][number];

/** Byte counts: fields marked `unit: bytes` in their metadata, or named "…Bytes". */
export function isBytesField(f: Field): boolean {
  return f.metadata?.get("unit") === "bytes" || /Bytes$/.test(f.name);
}

/** How a column's cells read in HTML and text: timestamps as local time, bytes in KiB/MiB/GiB. */
function cellFormatter(f: Field): (v: unknown) => string {
  if (/^Timestamp/.test(typeName(f.type)))
    return (v) => (typeof v === "number" ? localTime(v) : typeof v === "bigint" ? localTime(Number(v)) : formatCell(v));
  if (isBytesField(f))
    return (v) => (typeof v === "number" && Number.isFinite(v) && v >= 0 ? formatBytes(v) : formatCell(v));
  return formatCell;
}

/** Cell value as short text: numbers to 6 significant digits, long strings and lists cut. */
function formatCell(v: unknown): string {
  if (v === null || v === undefined) return "null";
  if (typeof v === "number") return formatNumber(v);
  if (typeof v === "bigint") return v.toString();
  if (typeof v === "string") return v.length > 80 ? `${v.slice(0, 77)}…` : v;
  if (typeof v === "boolean") return String(v);
  if (v instanceof Date) return v.toISOString();
  if (
    ArrayBuffer.isView(v) ||
    Array.isArray(v) ||
    (typeof v === "object" && typeof (v as { toArray?: unknown }).toArray === "function")
  ) {
    const arr = Array.from(
      (ArrayBuffer.isView(v) || Array.isArray(v)
        ? v
        : (v as { toArray(): ArrayLike<unknown> }).toArray()) as ArrayLike<unknown>,
    );
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

/** Columns shown by default: wider tables would scroll sideways in a notebook. */
const DEFAULT_COLUMNS = 10;

/** The MIME bundle of an Arrow table: HTML (schema, row count, head and tail), a data resource and text. */
export function tableBundle(table: ArrowTableLike, opts: TableBundleOptions = {}): MimeBundle {
  const head = Math.max(0, Math.floor(opts.head ?? 10));
  const tail = Math.max(0, Math.floor(opts.tail ?? 5));
  const dataRows = Math.max(0, Math.floor(opts.dataRows ?? 200));
  const allFields = table.schema.fields;
  const n = table.numRows;
  const allCols = allFields.map((_, j) => table.getChildAt(j));
  const wanted = opts.columns ?? DEFAULT_COLUMNS;
  const shown =
    wanted === "all"
      ? allFields.map((_, j) => j)
      : typeof wanted === "number"
        ? allFields.slice(0, wanted).map((_, j) => j)
        : wanted.map((name) => allFields.findIndex((f) => f.name === name)).filter((j) => j >= 0);
  const fields = shown.map((j) => allFields[j] as Field);
  const cols = shown.map((j) => allCols[j]);
  const hidden = allFields.filter((_, j) => !shown.includes(j)).map((f) => f.name);
  const formats = fields.map(cellFormatter);
  const cell = (i: number, j: number): unknown => cols[j]?.get(i) ?? null;
  const shownCell = (i: number, j: number): string => (formats[j] ?? formatCell)(cell(i, j));
  const { first, last } = rowIndices(n, head, tail);
  const shape = `${n.toLocaleString("en-US")} row${n === 1 ? "" : "s"} × ${allFields.length} column${allFields.length === 1 ? "" : "s"}`;
  const more = hidden.length
    ? `${hidden.length} more column${hidden.length === 1 ? "" : "s"}: ${hidden.join(", ")} (show(table, { columns: "all" }) for every column)`
    : "";

  // HTML: a compact, notebook-styled table; types under the column names.
  const th = fields
    .map(
      (f) =>
        `<th data-column="${escapeHtml(f.name)}" title="${escapeHtml(typeName(f.type))}">${escapeHtml(f.name)}<br><span style="font-weight:normal;color:#888;font-size:0.85em">${escapeHtml(typeName(f.type))}</span></th>`,
    )
    .join("");
  const td = (v: string | null) => (v === null ? `<td style="color:#aaa">null</td>` : `<td>${escapeHtml(v)}</td>`);
  const tr = (i: number) =>
    `<tr><th style="color:#888;font-weight:normal">${i}</th>${fields.map((_, j) => td(cell(i, j) === null ? null : shownCell(i, j))).join("")}</tr>`;
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
    `</tbody></table>` +
    (more
      ? `<div style="font-family:monospace;font-size:0.85em;color:#888;margin-top:2px">${escapeHtml(more)}</div>`
      : "") +
    `</div>`;

  // Text: aligned columns.
  const header = ["", ...fields.map((f) => f.name)];
  const types = ["", ...fields.map((f) => typeName(f.type))];
  const body: string[][] = [];
  for (const i of first) body.push([String(i), ...fields.map((_, j) => shownCell(i, j))]);
  if (last.length) body.push(["…", ...fields.map(() => "…")]);
  for (const i of last) body.push([String(i), ...fields.map((_, j) => shownCell(i, j))]);
  const all = [header, types, ...body];
  const widths = header.map((_, c) => Math.min(40, Math.max(...all.map((r) => (r[c] ?? "").length))));
  const line = (r: string[]) =>
    r
      .map((s, c) => s.slice(0, 40).padStart(widths[c] ?? 0))
      .join("  ")
      .trimEnd();
  const text = [`Arrow Table: ${shape}`, ...all.map(line), ...(more ? [more] : [])].join("\n");

  // Data resource: the first dataRows rows (JupyterLab / nteract render it as a grid).
  const data: Record<string, unknown>[] = [];
  for (let i = 0; i < Math.min(n, dataRows); i++) {
    const row: Record<string, unknown> = {};
    allFields.forEach((f, j) => {
      const v = allCols[j]?.get(i) ?? null;
      row[f.name] =
        /^Timestamp/.test(typeName(f.type)) && typeof v === "number" ? new Date(v).toISOString() : jsonCell(v);
    });
    data.push(row);
  }
  const resource = {
    schema: { fields: allFields.map((f) => ({ name: f.name, type: resourceType(f.type) })) },
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
