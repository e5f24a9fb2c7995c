// The one parser for numeric command-line flags. Number() would take "" as 0, "0x10" as 16 and
// "1e1" as 10, so a typo or a shell quirk would become a silently different run; here only plain
// decimal notation passes, and integers must be written as integers.

const INT_RE = /^[+-]?\d+$/;
const NUM_RE = /^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$/;

export interface IntRange {
  min?: number;
  max?: number;
}

/** An integer flag (`--steps 300`), or undefined when the flag was not given. */
export function intFlag(name: string, v: string | undefined, range: IntRange = {}): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!INT_RE.test(v) || !Number.isSafeInteger(n)) throw new Error(`--${name} must be an integer, got '${v}'`);
  const { min, max } = range;
  if ((min !== undefined && n < min) || (max !== undefined && n > max)) {
    const what =
      max === undefined && min === 0
        ? "a non-negative integer"
        : max === undefined && min === 1
          ? "a positive integer"
          : min !== undefined && max !== undefined
            ? `an integer in [${min}, ${max}]`
            : min !== undefined
              ? `an integer >= ${min}`
              : `an integer <= ${max}`;
    throw new Error(`--${name} must be ${what}, got '${v}'`);
  }
  return n;
}

/** A number flag (`--lr 3e-4`), or undefined when the flag was not given. */
export function numFlag(name: string, v: string | undefined): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!NUM_RE.test(v) || !Number.isFinite(n)) throw new Error(`--${name} must be a number, got '${v}'`);
  return n;
}
