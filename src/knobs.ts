// The knobs as TypeScript sees them. The core owns them: their names, ranges and defaults are the
// table in native/include/primal/knobs.h, which the addon reports (`knobFields`), and this module
// builds the zod schema and the defaults from that table, so TypeScript keeps no list of its own.
// A knob added to the table is accepted by `Trainer.set`, stored in checkpoints and returned by
// `t.knobs()` with no edit here (test/engine/knob-table.test.ts builds one to prove it).
import { z } from "zod";
import { native } from "./native.js";

/** One row of the core's knob table. */
export interface KnobField {
  name: string;
  /** A nullable knob is off when null (the bridge). */
  nullable: boolean;
  min: number;
  /** Infinity: no upper bound. */
  max: number;
  minOpen: boolean;
  maxOpen: boolean;
  default: number | null;
  doc: string;
}

/** The built-in knobs, typed for editors; a knob the core adds later is typed `number | null`. */
interface BuiltinKnobs {
  /** Level b of the ±1 codes, in (0, 1); null turns the bridge off. */
  bridge: number | null;
  flipRate: number;
  pMax: number;
  voteKeep: number;
  deadzone: number;
  lr: number;
  scaleLr: number;
}

/** Knob values by name, as the core holds them (docs/design.md, "Knobs"). */
export type Knobs = BuiltinKnobs & { [knob: string]: number | null };

/** The core's knob table (names, ranges, defaults, one line of doc each), in its order. */
export function knobFields(): readonly KnobField[] {
  return native().knobFields;
}

function fieldSchema(f: KnobField): z.ZodType<number | null> {
  let n = z.number();
  n = f.minOpen ? n.gt(f.min) : n.gte(f.min);
  if (Number.isFinite(f.max)) n = f.maxOpen ? n.lt(f.max) : n.lte(f.max);
  return f.nullable ? n.nullable() : n;
}

let schema: z.ZodObject<Record<string, z.ZodType<number | null>>, z.core.$strict> | undefined;

/** Every knob, validated: the zod schema of the core's table (strict: an unknown name is refused). */
export function knobsSchema(): z.ZodObject<Record<string, z.ZodType<number | null>>, z.core.$strict> {
  schema ??= z.strictObject(Object.fromEntries(knobFields().map((f) => [f.name, fieldSchema(f)])));
  return schema;
}

/** The knobs a trainer starts with when the config names none: the core's defaults. */
export function defaultKnobs(): Knobs {
  return Object.fromEntries(knobFields().map((f) => [f.name, f.default])) as Knobs;
}

/** Validates knob values a user passes (any subset); errors name the knob and the range. */
export function parseKnobs(input: unknown, what: string): Partial<Knobs> {
  if (input === null || typeof input !== "object" || Array.isArray(input))
    throw new Error(`${what}: expected an object of knobs`);
  const parsed = knobsSchema().partial().safeParse(input);
  if (!parsed.success)
    throw new Error(
      parsed.error.issues
        .map((i) => {
          const keys = (i as { keys?: string[] }).keys;
          return i.code === "unrecognized_keys" && keys
            ? `${what}: unknown knob(s) ${keys.map((k) => JSON.stringify(k)).join(", ")} (knobs: ${knobFields()
                .map((f) => f.name)
                .join(", ")})`
            : `${what}: ${i.path.join(".") || "knobs"}: ${i.message}`;
        })
        .join("\n"),
    );
  return parsed.data as Partial<Knobs>;
}
