// Rich display for the PRIMAL Jupyter kernel: figures (src/plots/display.ts) and Apache Arrow
// tables (src/display) build their own MIME bundles, sent here as display_data, and output
// areas updated in place. The launcher connects the display channel; outside a kernel (plain
// Node, tests) `show` prints the text/plain part instead, so notebook code also runs as a script.
import { randomBytes } from "node:crypto";
import {
  isArrowTable,
  isDisplayable,
  JUPYTER_DISPLAY,
  tableBundle,
  type MimeBundle,
  type TableBundleOptions,
} from "../src/display/index.js";
import { figureDisplayBundle, isFigure } from "../src/plots/display.js";

export {
  displayableTable,
  isArrowTable,
  isDisplayable,
  JUPYTER_DISPLAY,
  tableBundle,
  type ArrowTableLike,
  type Displayable,
  type MimeBundle,
  type TableBundleOptions,
} from "../src/display/index.js";
export {
  displayableFigure,
  displayMode,
  figureBundle,
  figureBundleStatic,
  isFigure,
  setDisplay,
  type DisplayMode,
} from "../src/plots/display.js";

export type ShowOptions = TableBundleOptions;

/**
 * The MIME bundle of a value, or null when it has no rich form. Table options (head rows, …)
 * apply to Arrow tables; otherwise a value's own display method comes first, then figures and
 * Arrow tables from other copies of the libraries are recognised by shape.
 */
export function richBundle(value: unknown, opts: ShowOptions = {}): MimeBundle | Promise<MimeBundle> | null {
  const hasOpts = Object.keys(opts).length > 0;
  if (!(hasOpts && isArrowTable(value)) && isDisplayable(value)) return value[JUPYTER_DISPLAY]();
  if (isFigure(value)) return figureDisplayBundle(value);
  if (isArrowTable(value)) return tableBundle(value, opts);
  return null;
}

/** The content of a display_data / update_display_data message. */
export interface DisplayContent {
  data: MimeBundle;
  metadata: Record<string, unknown>;
  transient: { display_id?: string };
}

/** Sends display content for the cell being executed; null outside a cell. */
export type DisplayChannel = () => ((content: DisplayContent, update: boolean) => void) | null;

let channel: DisplayChannel = () => null;

/** Called by the kernel launcher (the one module that knows the kernel's internals). */
export function setDisplayChannel(c: DisplayChannel): void {
  channel = c;
}

function writer(): ((content: DisplayContent, update: boolean) => void) | null {
  return channel();
}

/** True inside a running PRIMAL/tslab kernel that has started executing a cell. */
export function inKernel(): boolean {
  return writer() !== null;
}

/** Sends one bundle as display_data (or update_display_data for an existing display id). */
export function sendBundle(
  data: MimeBundle,
  opts: { displayId?: string; update?: boolean; metadata?: Record<string, unknown> } = {},
): boolean {
  const w = writer();
  if (!w) return false;
  const transient = opts.displayId !== undefined ? { display_id: opts.displayId } : {};
  w({ data, metadata: opts.metadata ?? {}, transient }, opts.update === true);
  return true;
}

/**
 * One output area updated in place (Jupyter display ids). The first `update` shows it, later
 * calls replace its content. Outside a kernel, text/plain goes to stdout (first and last only,
 * when `quiet` is set, to keep logs short).
 */
export class DisplayHandle {
  readonly id: string;
  private shown = false;

  constructor(id = randomBytes(8).toString("hex")) {
    this.id = id;
  }

  update(data: MimeBundle): void {
    const sent = sendBundle(data, { displayId: this.id, update: this.shown });
    if (sent) this.shown = true;
    else if (typeof data["text/plain"] === "string") process.stdout.write(`${data["text/plain"]}\n`);
  }
}

// ---------------------------------------------------------------- show

/**
 * Displays a value richly in the notebook: a Plotly figure (interactive, also offline in the
 * classic notebook), an Arrow table (schema, size, head and tail), or a MIME bundle given as
 * `{ "text/html": ..., "text/plain": ... }` with `{ raw: true }`. Anything else is printed.
 */
export function show(value: unknown, opts: ShowOptions & { raw?: boolean } = {}): void {
  const bundle = opts.raw ? (value as MimeBundle) : richBundle(value, opts);
  if (bundle === null) {
    console.log(value);
    return;
  }
  displayBundle(bundle);
}

/** Bundles still being made (static figures), which the cell waits for before it ends. */
const pending = new Set<Promise<void>>();

/** Sends a bundle, or prints its text outside a kernel; a promised bundle is sent when ready. */
export function displayBundle(bundle: MimeBundle | Promise<MimeBundle>): void {
  if (bundle instanceof Promise) {
    const done = bundle.then(displayBundle, (e: unknown) => {
      process.stderr.write(`display failed: ${e instanceof Error ? e.message : String(e)}\n`);
    });
    pending.add(done);
    void done.finally(() => pending.delete(done));
    return;
  }
  if (!sendBundle(bundle)) {
    const text = bundle["text/plain"];
    process.stdout.write(`${typeof text === "string" ? text : JSON.stringify(bundle)}\n`);
  }
}

/** Resolves when every promised bundle was sent (the launcher awaits it at the end of a cell). */
export async function settleDisplays(): Promise<void> {
  while (pending.size > 0) await Promise.allSettled([...pending]);
}
