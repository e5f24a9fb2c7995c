// Rich display of library values in Jupyter: MIME bundles for figures and Arrow tables, and
// the `Symbol.for("Jupyter.display")` protocol through which they display themselves.
import { figureBundle, figureDisplayBundle, isFigure, type FigureBundleOptions } from "./figureBundle.js";
import { isDisplayable, JUPYTER_DISPLAY, type MimeBundle } from "./mime.js";
import { isArrowTable, tableBundle, type TableBundleOptions } from "./tableBundle.js";

export {
  DISPLAY_ENV,
  DISPLAY_MODES,
  displayableFigure,
  displayMode,
  figureBundle,
  figureBundleStatic,
  figureDisplayBundle,
  isFigure,
  resetPlotlyInlining,
  setDisplay,
  type DisplayMode,
  type FigureBundleOptions,
} from "./figureBundle.js";
export { isDisplayable, JUPYTER_DISPLAY, withDisplay, type Displayable, type MimeBundle } from "./mime.js";
export {
  displayableTable,
  isArrowTable,
  tableBundle,
  type ArrowTableLike,
  type TableBundleOptions,
} from "./tableBundle.js";

export type ShowOptions = FigureBundleOptions & TableBundleOptions;

/**
 * The MIME bundle of a value, or null when it has no rich form. Options (head rows, plotly.js
 * inlining) apply to figures and tables; otherwise a value's own display method comes first,
 * then figures and Arrow tables from other copies of the libraries are recognised by shape.
 */
export function richBundle(value: unknown, opts: ShowOptions = {}): MimeBundle | Promise<MimeBundle> | null {
  const hasOpts = Object.keys(opts).length > 0;
  if (!hasOpts && isDisplayable(value)) return value[JUPYTER_DISPLAY]();
  if (isFigure(value)) return hasOpts ? figureBundle(value, opts) : figureDisplayBundle(value);
  if (isArrowTable(value)) return tableBundle(value, opts);
  if (isDisplayable(value)) return value[JUPYTER_DISPLAY]();
  return null;
}
