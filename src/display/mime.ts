// The Jupyter display protocol shared by Deno's kernel and the PRIMAL kernel: a value with a
// `Symbol.for("Jupyter.display")` method returning a MIME bundle displays itself. Figures and
// tables made by this library carry such a method, so they render in any kernel that follows
// the protocol without that kernel knowing about them.

/** A Jupyter MIME bundle: MIME type → content (JSON-able value or string). */
export type MimeBundle = Record<string, unknown>;

/** The well-known symbol of the protocol (`Symbol.for`, so every copy of a library agrees). */
export const JUPYTER_DISPLAY: unique symbol = Symbol.for("Jupyter.display") as never;

/** A value that displays itself (the bundle may come asynchronously, as Deno allows). */
export interface Displayable {
  [JUPYTER_DISPLAY](): MimeBundle | Promise<MimeBundle>;
}

export function isDisplayable(x: unknown): x is Displayable {
  return (
    x !== null &&
    (typeof x === "object" || typeof x === "function") &&
    typeof (x as Partial<Displayable>)[JUPYTER_DISPLAY] === "function"
  );
}

/**
 * Gives `value` a non-enumerable display method (not copied by spreads, ignored by
 * JSON.stringify and structuredClone) and returns it. A method it already has is kept.
 */
export function withDisplay<T extends object>(value: T, bundle: () => MimeBundle | Promise<MimeBundle>): T {
  if (isDisplayable(value)) return value;
  Object.defineProperty(value, JUPYTER_DISPLAY, {
    value: bundle,
    enumerable: false,
    configurable: true,
    writable: true,
  });
  return value;
}
