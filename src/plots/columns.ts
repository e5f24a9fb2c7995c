// Reading Arrow columns into plain numbers for the figure builders (internal helpers).

import type { Table, Vector } from "apache-arrow";

export function columnNames(table: Table): string[] {
  return table.schema.fields.map((f) => f.name);
}

export function getColumn(table: Table, name: string, what = "table"): Vector {
  const v = table.getChild(name);
  if (!v) {
    throw new Error(`plots: the ${what} has no column "${name}" (columns: ${columnNames(table).join(", ") || "none"})`);
  }
  return v;
}

/** Numeric column as float64; `valid` marks non-null rows (null when the column has no nulls). */
export function readNumbers(
  table: Table,
  name: string,
  what?: string,
): { values: Float64Array; valid: Uint8Array | null } {
  const vec = getColumn(table, name, what);
  const n = vec.length;
  const values = new Float64Array(n);
  if (vec.nullCount === 0) {
    // toArray() concatenates the chunks into one typed array: the fast path.
    const arr = vec.toArray() as ArrayLike<number | bigint>;
    for (let i = 0; i < n; i++) values[i] = Number(arr[i]);
    return { values, valid: null };
  }
  const valid = new Uint8Array(n);
  let i = 0;
  for (const x of vec as Iterable<number | bigint | null>) {
    if (x === null || x === undefined) values[i] = NaN;
    else {
      values[i] = Number(x);
      valid[i] = 1;
    }
    i++;
  }
  return { values, valid };
}

/** Numeric column as float64 with nulls read as NaN. */
export function numbers(table: Table, name: string, what?: string): Float64Array {
  return readNumbers(table, name, what).values;
}

/** Numbers from a plain array-like, or from the first matching (or only) column of a table. */
export function numbersFrom(
  input: ArrayLike<number> | Table,
  candidates: readonly string[],
  what: string,
): ArrayLike<number> {
  if (!isTable(input)) return input;
  for (const name of candidates) {
    const v = input.getChild(name);
    if (v) return v.toArray() as ArrayLike<number>;
  }
  if (input.numCols === 1) return (input.getChildAt(0) as Vector).toArray() as ArrayLike<number>;
  throw new Error(
    `plots: expected the ${what} as a typed array or a table with a column ${candidates.map((c) => `"${c}"`).join(" or ")} ` +
      `(columns: ${columnNames(input).join(", ") || "none"})`,
  );
}

export function isTable(x: unknown): x is Table {
  return typeof x === "object" && x !== null && "schema" in x && typeof (x as Table).getChild === "function";
}

/**
 * A number made compact for JSON: 7 significant digits (the precision of the Float32 telemetry;
 * keeps notebook outputs small), non-finite values become null so Plotly draws a gap.
 */
export function tidy(x: number): number | null {
  if (!Number.isFinite(x)) return null;
  if (Number.isInteger(x)) return x;
  // Round via an exact power of ten (a parsed literal): n / 10^k is the double nearest to the
  // decimal, which JSON then prints short. Much faster than toPrecision on large figures.
  const k = 6 - Math.floor(Math.log10(Math.abs(x)));
  if (k > 22 || k < -22) return Number(x.toPrecision(7));
  if (k >= 0) {
    const p = POW10[k] as number;
    return Math.round(x * p) / p;
  }
  const p = POW10[-k] as number;
  return Math.round(x / p) * p;
}

const POW10: readonly number[] = Array.from({ length: 23 }, (_, k) => Number(`1e${k}`));

export function tidyArray(a: ArrayLike<number>): (number | null)[] {
  const out = new Array<number | null>(a.length);
  for (let i = 0; i < a.length; i++) out[i] = tidy(a[i] as number);
  return out;
}

/**
 * Exponential moving average with bias correction (as TensorBoard's smoothing): early points are
 * not dragged toward zero. Non-finite inputs are skipped (they stay gaps) and do not poison the average.
 */
export function ema(values: ArrayLike<number>, alpha: number): Float64Array {
  const out = new Float64Array(values.length);
  let acc = 0;
  let weight = 0;
  for (let i = 0; i < values.length; i++) {
    const x = values[i] as number;
    if (!Number.isFinite(x)) {
      out[i] = NaN;
      continue;
    }
    acc = alpha * acc + (1 - alpha) * x;
    weight = alpha * weight + (1 - alpha);
    out[i] = acc / weight;
  }
  return out;
}

/** Smoothing option → EMA factor: true means 0.9, a number in [0, 1) is used as is, else none. */
export function smoothingFactor(smooth: boolean | number | undefined): number | null {
  if (smooth === undefined || smooth === false) return null;
  const a = smooth === true ? 0.9 : smooth;
  if (!(a >= 0 && a < 1))
    throw new Error(`plots: smooth must be true or an EMA factor in [0, 1), got ${String(smooth)}`);
  return a === 0 ? null : a;
}

export interface LayerIndex {
  /** Sorted distinct steps. */
  steps: number[];
  /** Layers sorted by index (or by first appearance when the table has no "layer" column). */
  layers: { key: number; name: string }[];
  /** Per row: position of the row's step in `steps` and of its layer in `layers`. */
  rowStep: Int32Array;
  rowLayer: Int32Array;
}

/** Groups the long-format layers table by step and by layer. */
export function indexLayers(layers: Table): LayerIndex {
  const n = layers.numRows;
  const stepVals = numbers(layers, "step", "layers table");
  const layerCol = layers.getChild("layer");
  const nameCol = layers.getChild("name");
  if (!layerCol && !nameCol) throw new Error('plots: the layers table needs a "layer" or a "name" column');

  // Distinct steps: sort a copy, then drop repeats.
  const sorted = Float64Array.from(stepVals).sort();
  const steps: number[] = [];
  for (let i = 0; i < sorted.length; i++) if (i === 0 || sorted[i] !== sorted[i - 1]) steps.push(sorted[i] as number);
  const stepPos = new Map<number, number>();
  steps.forEach((s, i) => stepPos.set(s, i));
  const rowStep = new Int32Array(n);
  // Rows come grouped by step (all layers of step s, then s+1): look the position up once per group.
  let lastStep = NaN;
  let lastPos = 0;
  for (let i = 0; i < n; i++) {
    const s = stepVals[i] as number;
    if (s !== lastStep) {
      lastStep = s;
      lastPos = stepPos.get(s) as number;
    }
    rowStep[i] = lastPos;
  }

  // Layers keyed by the "layer" index when present, else by name (in order of appearance).
  const rowKey = new Int32Array(n);
  const found = new Map<number, string>();
  if (layerCol) {
    const idx = numbers(layers, "layer");
    for (let i = 0; i < n; i++) {
      const k = idx[i] as number;
      rowKey[i] = k;
      if (!found.has(k)) found.set(k, nameCol ? String(nameCol.get(i)) : `layer ${k}`);
    }
  } else {
    const byName = new Map<string, number>();
    for (let i = 0; i < n; i++) {
      const name = String(nameCol!.get(i));
      let k = byName.get(name);
      if (k === undefined) {
        k = byName.size;
        byName.set(name, k);
        found.set(k, name);
      }
      rowKey[i] = k;
    }
  }
  const list = Array.from(found, ([key, name]) => ({ key, name })).sort((a, b) => a.key - b.key);
  const layerPos = new Map<number, number>();
  list.forEach((l, i) => layerPos.set(l.key, i));
  const rowLayer = new Int32Array(n);
  for (let i = 0; i < n; i++) rowLayer[i] = layerPos.get(rowKey[i] as number) as number;
  return { steps, layers: list, rowStep, rowLayer };
}
