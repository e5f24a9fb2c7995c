// The PRIMAL kernel process: tslab's TypeScript kernel, assembled from tslab's own parts
// (converter, executor, Jupyter server) with this package's extension around them:
//   - `import { Trainer, plots } from "primal"` resolves and type-checks from any directory;
//   - type errors are warnings, and `{ name }` shorthands work across cells (see typecheck.ts);
//   - a cell whose value is a Plotly figure or an Arrow table renders richly;
//   - `await t.train(n)` and `await t.evaluate()` show live progress, and an interrupt aborts
//     the cell's signal, which stops training at the next step boundary and evaluation at the
//     next window instead of only abandoning the cell's await (tslab's default);
//   - interrupts show as a one-line notice, errors with the cell's own frames only.
// This is the one module that knows tslab's internals; the rest of the kernel and the library
// talk to it through display.ts's channel and the library's host hooks.
// Started by Jupyter through kernel.json: node launch.js <connection_file>.

import { existsSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { isInterrupted } from "../src/interrupted.js";
import { escapeHtml } from "../src/display/html.js";
import {
  displayBundle,
  richBundle,
  sendBundle,
  setDisplayChannel,
  settleDisplays,
  type DisplayContent,
  type MimeBundle,
} from "./display.js";
import * as hooks from "./training.js";
import { dependencyDirs, mountVirtualModules, type FileSystemHost } from "./modules.js";
import { softenTypeErrors, withExpandedShorthands, type Converter, type TsApi } from "./typecheck.js";

type Executor = {
  execute(src: string): Promise<boolean>;
  interrupt(): void;
  close(): void;
  [key: string]: unknown;
};

interface TslabParts {
  createConverter(opts: { isJS: boolean; isBrowser: boolean }): Converter;
  createExecutor(
    rootDir: string,
    convs: ConverterSet,
    console: { log: (...a: unknown[]) => void; error: (...a: unknown[]) => void },
  ): Executor;
  JupyterHandlerImpl: new (executor: Executor, isJs: boolean) => object;
  /** The display sender of the cell being executed (tslab replaces it at the start of each cell). */
  readonly lastWriteDisplayData: ((content: DisplayContent, update: boolean) => void) | null;
  ZmqServer: new (handler: object, configPath: string) => { init(): Promise<void>; close(): void };
  ts: TsApi & { sys: FileSystemHost };
}

interface ConverterSet {
  readonly node: Converter;
  readonly browser: Converter;
  close(): void;
}

const here = dirname(fileURLToPath(import.meta.url));
/** dist/kernel → package root. */
const packageRoot = resolve(here, "..", "..");
const requireHere = createRequire(import.meta.url);

function loadTslab(): TslabParts {
  // Always this package's tslab (never one found from the notebook directory, which tslab's
  // own launcher prefers): the display channel and the hooks must share its module instances.
  const tslabMain = requireHere.resolve("tslab");
  const requireTslab = createRequire(tslabMain);
  const dist = dirname(tslabMain);
  const converter = requireHere(join(dist, "converter.js")) as Pick<TslabParts, "createConverter">;
  const executor = requireHere(join(dist, "executor.js")) as Pick<TslabParts, "createExecutor">;
  const jupyter = requireHere(join(dist, "jupyter.js")) as Pick<
    TslabParts,
    "JupyterHandlerImpl" | "ZmqServer" | "lastWriteDisplayData"
  >;
  const ts = requireTslab("@tslab/typescript-for-tslab") as TslabParts["ts"];
  return {
    ...converter,
    ...executor,
    JupyterHandlerImpl: jupyter.JupyterHandlerImpl,
    ZmqServer: jupyter.ZmqServer,
    // Read through the module on every access: tslab reassigns it per cell.
    get lastWriteDisplayData() {
      return jupyter.lastWriteDisplayData;
    },
    ts,
  };
}

/** A muted one-line (or few-line) message in the cell: notices and type warnings. */
function notice(text: string, kind: "notice" | "warning" = "notice"): void {
  const color = kind === "notice" ? "#8a5a00" : "#777";
  const bundle: MimeBundle = {
    "text/html": `<pre class="primal-${kind}" style="color:${color};background:none;margin:2px 0;font-size:12px;white-space:pre-wrap">${escapeHtml(text.trimEnd())}</pre>`,
    "text/plain": text.trimEnd(),
  };
  if (!sendBundle(bundle)) process.stdout.write(`${text.trimEnd()}\n`);
}

/** The frames of a stack that lie in cell code (tslab runs cells as "evalmachine.<anonymous>"). */
function cellFrames(stack: string): string[] {
  return stack.split("\n").filter((l) => /^\s+at /.test(l) && l.includes("evalmachine."));
}

/**
 * How a failed cell reads: an interrupt is a one-line notice; an error is its message and the
 * cell's own frames (PRIMAL_FULL_TRACE=1: the whole stack, as Node prints it).
 */
function reportError(e: Error): void {
  if (isInterrupted(e)) {
    notice(`⏹ ${e.message}`);
    return;
  }
  if (e.message === "Interrupted asynchronously") {
    notice("⏹ interrupted: the cell stopped waiting (nothing was training or evaluating)");
    return;
  }
  if (process.env.PRIMAL_FULL_TRACE === "1") {
    console.error(e);
    return;
  }
  const frames = cellFrames(e.stack ?? "");
  const cause =
    e.cause instanceof Error && !e.message.includes(e.cause.message) ? `\ncaused by: ${e.cause.message}` : "";
  process.stderr.write(
    `${e.name}: ${e.message}${cause}\n` +
      (frames.length ? `${frames.join("\n")}\n` : "") +
      "(set PRIMAL_FULL_TRACE=1 in the kernel's environment for the full stack)\n",
  );
}

function connectionFile(argv: string[]): string {
  const args = argv.slice(2);
  const i = args.indexOf("--config-path");
  const file = i >= 0 ? args[i + 1] : args.find((a) => !a.startsWith("-"));
  if (!file) {
    process.stderr.write(
      "usage: node launch.js <connection_file>  (started by Jupyter; see `primal kernel install`)\n",
    );
    process.exit(2);
  }
  return file;
}

interface TslabMessage {
  content: { code?: string; execution_count?: number };
  header: { msg_type: string };
  createReply(): TslabMessage & { signAndSend(key: string, sock: unknown): void };
}

/**
 * Publishes execute_input (code + execution count) when a cell starts, which tslab does not:
 * nbclient/nbconvert number cells ("In [3]") from it. Cosmetic, so any failure is ignored.
 */
function announceExecutions(server: object, handler: object): void {
  const srv = server as {
    handleExecute?: (sock: unknown, msg: TslabMessage) => Promise<void>;
    connInfo?: { key: string };
    iopub?: unknown;
  };
  const h = handler as {
    handleExecuteImpl?: (req: object, ...rest: unknown[]) => Promise<unknown>;
    execCount?: number;
  };
  const handleExecute = srv.handleExecute;
  const handleExecuteImpl = h.handleExecuteImpl;
  if (typeof handleExecute !== "function" || typeof handleExecuteImpl !== "function") return;
  // The request content object is passed from the server to the handler: key the message by it.
  const requests = new WeakMap<object, TslabMessage>();
  srv.handleExecute = function (sock, msg) {
    requests.set(msg.content, msg);
    return handleExecute.call(srv, sock, msg);
  };
  h.handleExecuteImpl = function (req, ...rest) {
    const msg = requests.get(req);
    if (msg && srv.connInfo && typeof h.execCount === "number") {
      try {
        const m = msg.createReply();
        m.header.msg_type = "execute_input";
        // handleExecuteImpl numbers this execution execCount + 1.
        m.content = { code: msg.content.code ?? "", execution_count: h.execCount + 1 };
        m.signAndSend(srv.connInfo.key, srv.iopub);
      } catch {
        // numbering is cosmetic
      }
    }
    return handleExecuteImpl.call(h, req, ...rest);
  };
}

async function main(): Promise<void> {
  const configPath = connectionFile(process.argv);
  const tslab = loadTslab();
  const strictTypes = process.env.PRIMAL_STRICT_TYPES === "1";

  // Types of "primal", "primal/kernel" and the package's dependencies from any notebook
  // directory (see modules.ts).
  if (existsSync(join(packageRoot, "package.json"))) {
    mountVirtualModules(tslab.ts.sys, {
      packages: { primal: packageRoot },
      searchDirs: dependencyDirs(packageRoot),
      files: { "primal/kernel.d.ts": 'export * from "./dist/kernel/index.js";\n' },
    });
  }

  let nodeConv: Converter | undefined;
  let browserConv: Converter | undefined;
  const wrap = (c: Converter) => {
    const expanded = withExpandedShorthands(c, tslab.ts);
    return strictTypes ? expanded : softenTypeErrors(expanded, tslab.ts, { warn: (text) => notice(text, "warning") });
  };
  const convs: ConverterSet = {
    get node() {
      nodeConv ??= wrap(tslab.createConverter({ isJS: false, isBrowser: false }));
      return nodeConv;
    },
    get browser() {
      browserConv ??= wrap(tslab.createConverter({ isJS: false, isBrowser: true }));
      return browserConv;
    },
    close() {
      nodeConv?.close();
      browserConv?.close();
    },
  };
  // Build the TypeScript program now (hundreds of ms) rather than in the first cell.
  void convs.node;

  // The executor prints a cell's last value with console.log: figures and tables go out as
  // rich MIME bundles instead: values with a Symbol.for("Jupyter.display") method, figures
  // and Arrow tables.
  setDisplayChannel(() => tslab.lastWriteDisplayData);
  hooks.installTrainingHooks((text) => notice(text));
  const cellConsole = {
    log: (...args: unknown[]) => {
      if (args.length === 1) {
        // `await t.train(n)` as the last line: its live output already is the summary.
        if (hooks.takeShownSummary(args[0])) return;
        try {
          const bundle = richBundle(args[0]);
          if (bundle) {
            // In a cell a bundle is always sent (a promised one before the cell ends).
            displayBundle(bundle);
            return;
          }
        } catch (e) {
          console.error("rich display failed:", e);
        }
      }
      console.log(...args);
    },
    error: (...args: unknown[]) => {
      if (args.length === 1 && args[0] instanceof Error) reportError(args[0]);
      else console.error(...args);
    },
  };
  const executor = tslab.createExecutor(process.cwd(), convs, cellConsole);

  const execute = executor.execute.bind(executor);
  executor.execute = async (src: string) => {
    hooks.beginExecution();
    const ok = await execute(src);
    // Static figures render in a headless browser: their PNGs belong to this cell.
    await settleDisplays();
    return ok;
  };

  const handler = new tslab.JupyterHandlerImpl(executor, false);
  const server = new tslab.ZmqServer(handler, configPath);

  announceExecutions(server, handler);

  // Jupyter's interrupt (interrupt_mode "signal") aborts the cell's signal. While trainers
  // train or evaluate, they stop at the next step boundary or window: the cell's
  // `await t.train()` then resolves with a stopped summary and everything recorded so far is
  // kept. A second interrupt before they stop, or an interrupt with nothing running, abandons
  // the cell's await as tslab does.
  let stopping = false;
  process.on("SIGINT", () => {
    if (!stopping && hooks.interruptTraining() > 0) {
      stopping = true;
      void hooks.settleTraining().finally(() => {
        stopping = false;
      });
      return;
    }
    executor.interrupt();
  });
  process.on("uncaughtException", (err) => {
    console.error("UncaughtException:", err);
  });
  process.on("unhandledRejection", (reason) => {
    console.error("UnhandledPromiseRejection:", reason);
  });

  // On shutdown_request tslab closes its sockets; native worker threads or open handles must
  // not keep the process alive after that (Jupyter would wait, then kill it).
  const close = server.close.bind(server);
  server.close = () => {
    hooks.interruptTraining();
    close();
    setTimeout(() => process.exit(0), 1000).unref();
  };

  await server.init();
}

main().catch((e: unknown) => {
  process.stderr.write(`primal kernel failed to start: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
  process.exit(1);
});
