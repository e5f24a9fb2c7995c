// The sweep spec (docs/tracking.md): a base trainer config plus points given as a list, a grid
// and/or random samples, optionally crossed with seeds. Expanding a spec is deterministic, so
// `--list`, `--point K` and a rerun all see the same points in the same order.
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import { basename } from "node:path";
import { z } from "zod";
import { resolveConfig, type TrainerConfig, type TrainerConfigInput } from "../config.js";
import { slug } from "../tracking/runStore.js";

/** A JSON value a point may set a config field to. */
type Json = null | boolean | number | string | Json[] | { [k: string]: Json };
const json: z.ZodType<Json> = z.lazy(() =>
  z.union([z.null(), z.boolean(), z.number(), z.string(), z.array(json), z.record(z.string(), json)]),
);

const rangeSchema = z.union([
  z
    .object({
      min: z.number(),
      max: z.number(),
      scale: z.enum(["linear", "log"]).default("linear"),
      int: z.boolean().default(false),
    })
    .strict()
    .refine((r) => r.max >= r.min, { message: "max must be >= min" })
    .refine((r) => r.scale !== "log" || r.min > 0, { message: "a log range needs min > 0" }),
  z.object({ choice: z.array(json).min(1) }).strict(),
]);

export const sweepSpecSchema = z
  .object({
    /** Names the sweep (its id is this name as a slug); default: the spec file's name. */
    name: z.string().min(1).optional(),
    /** The trainer config every point starts from (any field of the trainer config). */
    base: z.record(z.string(), json).default({}),
    /** Explicit points: each an object of config fields (dotted keys or nested objects). */
    points: z.array(z.record(z.string(), json)).optional(),
    /** Every combination of these values (dotted config paths → lists of values). */
    grid: z.record(z.string(), z.array(json).min(1)).optional(),
    /** `count` random points, each field drawn from its range or choice list with `seed`. */
    random: z
      .object({
        count: z.number().int().min(1),
        seed: z.number().int().min(0).default(0),
        params: z.record(z.string(), rangeSchema),
      })
      .strict()
      .optional(),
    /** Crosses every point with these seeds (the same as a grid over "seed"). */
    seeds: z.array(z.number().int().min(0)).min(1).optional(),
    /** Metric for "best so far" and for sorting results: a metrics column or a custom metric. */
    metric: z.string().default("valLoss"),
    /** Whether a lower ("min", default) or higher ("max") value of the metric is better. */
    goal: z.enum(["min", "max"]).default("min"),
    /** Tags given to every run of the sweep. */
    tags: z.array(z.string().min(1)).default([]),
  })
  .strict();

export type SweepSpecInput = z.input<typeof sweepSpecSchema>;
export type SweepSpec = z.output<typeof sweepSpecSchema>;

/** One point of a sweep: what it sets, and the full validated config it trains. */
export interface SweepPoint {
  /** Position in the expanded list (what `--point K` takes). */
  index: number;
  /** Hash of the point's resolved config: the same config is the same point in a rerun. */
  key: string;
  /** The fields this point sets over the base, dotted keys. */
  values: Record<string, Json>;
  config: TrainerConfig;
  /** The config as given to Trainer.create (base + values, name set). */
  input: TrainerConfigInput;
}

export interface ExpandedSweep {
  /** The sweep's id: a slug of its name. Its records live in `<home>/sweeps/<id>/`. */
  id: string;
  name: string;
  spec: SweepSpec;
  points: SweepPoint[];
  /** Dotted keys that vary between points, in first-seen order. */
  swept: string[];
}

export class SweepSpecError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "SweepSpecError";
  }
}

function isObject(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === "object" && !Array.isArray(v);
}

/** Nested objects become dotted keys ("knobs": {"flipRate": x} → "knobs.flipRate"). */
function flatten(obj: Record<string, Json>, prefix = "", out: Record<string, Json> = {}): Record<string, Json> {
  for (const [k, v] of Object.entries(obj)) {
    const key = prefix ? `${prefix}.${k}` : k;
    if (isObject(v) && Object.keys(v).length > 0) flatten(v as Record<string, Json>, key, out);
    else out[key] = v;
  }
  return out;
}

function setPath(target: Record<string, unknown>, path: string, value: Json): void {
  const parts = path.split(".");
  let at = target;
  for (const p of parts.slice(0, -1)) {
    if (!isObject(at[p])) at[p] = {};
    at = at[p] as Record<string, unknown>;
  }
  at[parts[parts.length - 1]!] = structuredClone(value);
}

/** JSON with sorted keys: equal values give equal text. */
export function canonicalJson(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(canonicalJson).join(",")}]`;
  if (isObject(v))
    return `{${Object.keys(v)
      .sort()
      .filter((k) => v[k] !== undefined)
      .map((k) => `${JSON.stringify(k)}:${canonicalJson(v[k])}`)
      .join(",")}}`;
  return JSON.stringify(v);
}

export function sweepSlug(text: string): string {
  return slug(text, "sweep");
}

/** mulberry32: a small seeded generator, so random points are the same on every machine. */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function draw(range: z.output<typeof rangeSchema>, next: () => number): Json {
  if ("choice" in range)
    return range.choice[Math.min(range.choice.length - 1, Math.floor(next() * range.choice.length))]!;
  const u = next();
  let x =
    range.scale === "log"
      ? Math.exp(Math.log(range.min) + u * (Math.log(range.max) - Math.log(range.min)))
      : range.min + u * (range.max - range.min);
  if (range.int) x = Math.min(range.max, Math.floor(x));
  // Six significant digits: readable in tables and file names, identical on every machine.
  return range.int ? x : Number(x.toPrecision(6));
}

function gridProduct(grid: Record<string, Json[]>): Record<string, Json>[] {
  let out: Record<string, Json>[] = [{}];
  for (const [key, values] of Object.entries(grid)) out = out.flatMap((p) => values.map((v) => ({ ...p, [key]: v })));
  return out;
}

/** Fields that say where a run goes, not what it trains: a spec may not set them per point. */
const NOT_SWEPT = new Set(["home", "name"]);

/** Validates a spec and expands it into its points, each with a validated config. */
export function expandSweep(input: unknown, fallbackName = "sweep"): ExpandedSweep {
  const parsed = sweepSpecSchema.safeParse(input);
  if (!parsed.success)
    throw new SweepSpecError(
      parsed.error.issues
        .map((i) => `sweep spec${i.path.length ? "." + i.path.join(".") : ""}: ${i.message}`)
        .join("\n"),
    );
  const spec = parsed.data;
  const name = spec.name ?? fallbackName;
  let sets: Record<string, Json>[] = [];
  for (const p of spec.points ?? []) sets.push(flatten(p));
  if (spec.grid) sets.push(...gridProduct(spec.grid));
  if (spec.random) {
    const next = rng(spec.random.seed);
    for (let i = 0; i < spec.random.count; i++) {
      const p: Record<string, Json> = {};
      for (const [key, range] of Object.entries(spec.random.params)) p[key] = draw(range, next);
      sets.push(p);
    }
  }
  if (sets.length === 0) sets = [{}];
  if (spec.seeds) {
    const seeds = spec.seeds;
    sets = sets.flatMap((p) => seeds.map((seed) => ({ ...p, seed })));
  }

  const swept: string[] = [];
  for (const s of sets) for (const k of Object.keys(s)) if (!swept.includes(k)) swept.push(k);
  for (const k of swept)
    if (NOT_SWEPT.has(k)) throw new SweepSpecError(`sweep spec: "${k}" cannot vary between points`);

  const seen = new Map<string, number>();
  const points = sets.map((values, index): SweepPoint => {
    const cfg = structuredClone(spec.base) as Record<string, unknown>;
    for (const [k, v] of Object.entries(values)) setPath(cfg, k, v);
    delete cfg["home"];
    let config: TrainerConfig;
    try {
      config = resolveConfig(cfg as TrainerConfigInput);
    } catch (e) {
      throw new SweepSpecError(
        `sweep point ${index} (${canonicalJson(values)}): ${e instanceof Error ? e.message : String(e)}`,
      );
    }
    // The key covers what the point trains; its name and home are bookkeeping.
    const { name: _n, home: _h, ...trained } = config;
    const key = createHash("sha256").update(canonicalJson(trained)).digest("hex").slice(0, 12);
    const dup = seen.get(key);
    if (dup !== undefined)
      throw new SweepSpecError(`sweep points ${dup} and ${index} train the same config (${canonicalJson(values)})`);
    seen.set(key, index);
    const runName = typeof cfg["name"] === "string" ? `${cfg["name"]} #${index}` : `${name} #${index}`;
    return { index, key, values, config, input: { ...(cfg as TrainerConfigInput), name: runName } };
  });
  return { id: sweepSlug(name), name, spec, points, swept };
}

/** Reads and expands a spec file; the sweep's name defaults to the file name without `.json`. */
export function loadSweepSpec(path: string): ExpandedSweep {
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(path, "utf8"));
  } catch (e) {
    throw new SweepSpecError(`cannot read sweep spec ${path}: ${e instanceof Error ? e.message : String(e)}`);
  }
  return expandSweep(raw, basename(path).replace(/\.json$/i, ""));
}
