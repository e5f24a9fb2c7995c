// The Jupyter display protocol shared by Deno's kernel and the PRIMAL kernel: a value with a
// `Symbol.for("Jupyter.display")` method returning a MIME bundle displays itself. Figures and
// tables made by this library carry such a method, so they render in any kernel that follows
// the protocol without that kernel knowing about them.
/** The well-known symbol of the protocol (`Symbol.for`, so every copy of a library agrees). */
export const JUPYTER_DISPLAY = Symbol.for("Jupyter.display");
export function isDisplayable(x) {
  return x !== null && (typeof x === "object" || typeof x === "function") && typeof x[JUPYTER_DISPLAY] === "function";
}
/**
 * Gives `value` a non-enumerable display method (not copied by spreads, ignored by
 * JSON.stringify and structuredClone) and returns it. A method it already has is kept.
 */
export function withDisplay(value, bundle) {
  if (isDisplayable(value)) return value;
  Object.defineProperty(value, JUPYTER_DISPLAY, {
    value: bundle,
    enumerable: false,
    configurable: true,
    writable: true,
  });
  return value;
}
