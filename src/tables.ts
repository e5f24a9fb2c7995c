// Introspection results as Apache Arrow tables built straight from typed arrays (no
// per-element JavaScript objects, so a 1.5M-weight layer costs a few copies, not a million objects).
import {
  Field,
  Schema,
  Table,
  TimestampMillisecond,
  tableFromArrays,
  vectorFromArray,
  type Vector,
} from "apache-arrow";
import type { LayerColumns } from "./native.js";
import { displayableTable } from "./display/tableBundle.js";

export interface BufferTableOptions {
  /** Keep at most this many rows (a deterministic strided subsample when smaller than the layer). */
  limit?: number;
  /** Keep a random subset of this many rows, chosen with `seed` (reproducible). */
  sample?: number;
  seed?: number;
}

/** Row indices to keep: all, a stride (limit) or a seeded sample without replacement. */
function selectRows(n: number, opts: BufferTableOptions): Uint32Array | null {
  if (opts.sample !== undefined && opts.sample < n) {
    // Floyd's algorithm keeps the selection O(sample) and reproducible from the seed.
    let s = (opts.seed ?? 1) >>> 0 || 1;
    const rand = () => {
      s ^= s << 13;
      s >>>= 0;
      s ^= s >>> 17;
      s ^= s << 5;
      s >>>= 0;
      return s / 4294967296;
    };
    const chosen = new Set<number>();
    for (let j = n - opts.sample; j < n; j++) {
      const t = Math.floor(rand() * (j + 1));
      chosen.add(chosen.has(t) ? j : t);
    }
    return Uint32Array.from([...chosen].sort((a, b) => a - b));
  }
  if (opts.limit !== undefined && opts.limit < n) {
    const out = new Uint32Array(opts.limit);
    const stride = n / opts.limit;
    for (let i = 0; i < opts.limit; i++) out[i] = Math.floor(i * stride);
    return out;
  }
  return null;
}

type Values = Int8Array | Float32Array;

/** One row per weight of a [rows, cols] layer: row, col, value. */
export function weightTable(values: Values, cols: number, opts: BufferTableOptions = {}): Table {
  const pick = selectRows(values.length, opts);
  const n = pick ? pick.length : values.length;
  const row = new Int32Array(n);
  const col = new Int32Array(n);
  const value = values instanceof Int8Array ? new Int8Array(n) : new Float32Array(n);
  for (let i = 0; i < n; i++) {
    const idx = pick ? pick[i] : i;
    row[i] = Math.floor(idx / cols);
    col[i] = idx % cols;
    value[i] = values[idx];
  }
  return displayableTable(tableFromArrays({ row, col, value }));
}

/** One row per BitLinear layer with its telemetry (docs/design.md, "Telemetry"). */
export function layerTable(names: string[], cols: LayerColumns, extra: Record<string, Float32Array> = {}): Table {
  const layer = Int32Array.from(names.keys());
  const total = (i: number) => cols.occM2[i] + cols.occM1[i] + cols.occ0[i] + cols.occP1[i] + cols.occP2[i] || 1;
  const frac = (a: Int32Array) => Float32Array.from(a, (v, i) => v / total(i));
  return displayableTable(
    tableFromArrays({
      layer,
      name: names,
      weights: cols.weights,
      scale: cols.scale,
      dscale: cols.dscale,
      ...extra,
      flips: cols.flips,
      flipFrac: cols.flipFrac,
      flipsUp: cols.flipsUp,
      flipsDown: cols.flipsDown,
      pMean: cols.pMean,
      pMax: cols.pMax,
      fracM1: frac(cols.occM2),
      fracMb: frac(cols.occM1),
      frac0: frac(cols.occ0),
      fracPb: frac(cols.occP1),
      fracP1: frac(cols.occP2),
      voteActive: cols.voteActive,
      voteSaturated: cols.voteSaturated,
    }),
  );
}

/**
 * The table with epoch-millisecond columns as Arrow timestamps (exact; notebooks show them as
 * local time) and byte-count columns marked `unit: bytes` (shown in KiB/MiB/GiB).
 */
export function withUnits(table: Table, units: { timestamps?: readonly string[]; bytes?: readonly string[] }): Table {
  const ts = new Set(units.timestamps ?? []);
  const bytes = new Set(units.bytes ?? []);
  const columns: Record<string, Vector> = {};
  for (const f of table.schema.fields) {
    const col = table.getChild(f.name);
    if (!col) continue;
    columns[f.name] = ts.has(f.name)
      ? vectorFromArray(
          Array.from({ length: col.length }, (_, i) => col.get(i) as number | null),
          new TimestampMillisecond(),
        )
      : col;
  }
  const rebuilt = new Table(columns);
  const fields = rebuilt.schema.fields.map((f) =>
    bytes.has(f.name) ? new Field(f.name, f.type, f.nullable, new Map([["unit", "bytes"]])) : f,
  );
  return displayableTable(new Table(new Schema(fields, table.schema.metadata), rebuilt.batches));
}
