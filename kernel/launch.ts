// The PRIMAL kernel process: tslab's TypeScript kernel, assembled from tslab's own parts
// (converter, executor, Jupyter server) with this package's extension around them:
//   - `import { Trainer, plots } from "primal"` resolves and type-checks from any directory;
//   - type errors are warnings, and `{ name }` shorthands work across cells (see typecheck.ts);
//   - a cell whose value is a Plotly figure or an Arrow table renders richly;
//   - `await t.train(n)` shows live progress, and an interrupt stops training at the next
//     step boundary instead of only abandoning the cell's await (tslab's default).
// Started by Jupyter through kernel.json: node launch.js <connection_file>.

import { existsSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { richBundle, sendBundle } from "./display.js";
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
  createExecutor(rootDir: string, convs: ConverterSet, console: { log: (...a: unknown[]) => void; error: (...a: unknown[]) => void }): Executor;
  JupyterHandlerImpl: new (executor: Executor, isJs: boolean) => object;
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
  const jupyter = requireHere(join(dist, "jupyter.js")) as Pick<TslabParts, "JupyterHandlerImpl" | "ZmqServer">;
  const ts = requireTslab("@tslab/typescript-for-tslab") as TslabParts["ts"];
  return { ...converter, ...executor, ...jupyter, ts };
}

function connectionFile(argv: string[]): string {
  const args = argv.slice(2);
  const i = args.indexOf("--config-path");
  const file = i >= 0 ? args[i + 1] : args.find((a) => !a.startsWith("-"));
  if (!file) {
    process.stderr.write("usage: node launch.js <connection_file>  (started by Jupyter; see `primal kernel install`)\n");
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
  const srv = server as { handleExecute?: (sock: unknown, msg: TslabMessage) => Promise<void>; connInfo?: { key: string }; iopub?: unknown };
  const h = handler as { handleExecuteImpl?: (req: object, ...rest: unknown[]) => Promise<unknown>; execCount?: number };
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
    return strictTypes ? expanded : softenTypeErrors(expanded, tslab.ts);
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
  // rich MIME bundles instead. (hooks: the training hooks, loaded below.)
  let hooks: typeof import("./training.js") | null = null;
  const cellConsole = {
    log: (...args: unknown[]) => {
      if (args.length === 1) {
        // `await t.train(n)` as the last line: its live output already is the summary.
        if (hooks?.takeShownSummary(args[0])) return;
        try {
          const bundle = richBundle(args[0]);
          if (bundle && sendBundle(bundle)) return;
        } catch (e) {
          console.error("rich display failed:", e);
        }
      }
      console.log(...args);
    },
    error: (...args: unknown[]) => console.error(...args),
  };
  const executor = tslab.createExecutor(process.cwd(), convs, cellConsole);

  // Training hooks (live progress, interrupt registry). The kernel still starts without them
  // (e.g. the native addon is not built): cells then report the import error themselves.
  try {
    hooks = await import("./training.js");
    hooks.installTrainingHooks();
  } catch (e) {
    process.stderr.write(`primal kernel: training hooks unavailable: ${e instanceof Error ? e.message : String(e)}\n`);
  }
  const execute = executor.execute.bind(executor);
  executor.execute = (src: string) => {
    hooks?.beginExecution();
    return execute(src);
  };

  const handler = new tslab.JupyterHandlerImpl(executor, false);
  const server = new tslab.ZmqServer(handler, configPath);

  announceExecutions(server, handler);

  // Jupyter's interrupt (interrupt_mode "signal"). While trainers train, stop them at the next
  // step boundary: the cell's `await t.train()` then resolves with a stopped summary and
  // everything recorded so far is kept. A second interrupt before they stop, or an interrupt
  // with nothing training, abandons the cell's await as tslab does.
  let stopping = false;
  process.on("SIGINT", () => {
    if (hooks && !stopping && hooks.interruptTraining() > 0) {
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
    hooks?.interruptTraining();
    close();
    setTimeout(() => process.exit(0), 1000).unref();
  };

  await server.init();
}

main().catch((e: unknown) => {
  process.stderr.write(`primal kernel failed to start: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
  process.exit(1);
});
