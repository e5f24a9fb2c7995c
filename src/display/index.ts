// Rich display of library values in Jupyter: the `Symbol.for("Jupyter.display")` protocol
// through which values display themselves, and the MIME bundle of Arrow tables. Figures build
// their own bundle in src/plots (which depends on this module, never the other way).
export { escapeHtml } from "./html.js";
export { isDisplayable, JUPYTER_DISPLAY, withDisplay, type Displayable, type MimeBundle } from "./mime.js";
export {
  displayableTable,
  isArrowTable,
  tableBundle,
  type ArrowTableLike,
  type TableBundleOptions,
} from "./tableBundle.js";
