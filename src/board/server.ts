// `primal board`: a live dashboard over a run home, read-only. Hono routes the HTTP API, its
// server-sent events push "these runs changed" as chokidar sees files change, and the page
// (assets/) draws with the plotly.js and apache-arrow installed with the package (no CDN).
// Figures are built here with the same builders as the notebook's plots.
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { join, relative, sep } from "node:path";
import { serve, type ServerType } from "@hono/node-server";
import { Hono, type Context } from "hono";
import { streamSSE } from "hono/streaming";
import { watch, type FSWatcher } from "chokidar";
import { tableFromArrays, tableToIPC, type Table } from "apache-arrow";
import { packageRoot } from "../paths.js";
import { plotlyBundlePath } from "../plots/html.js";
import { figureJson, type Figure, type RunData } from "../plots/figure.js";
import { compareRunsWithBands } from "../plots/seedBands.js";
import { sweepPlot } from "../plots/sweepPlot.js";
import { resolveHome } from "../tracking/runStore.js";
import { runsTable } from "../tracking/runsTable.js";
import { customMetricNames } from "../tracking/series.js";
import { knobHistory } from "../tracking/runReader.js";
import { STORED_LAYER_STATS } from "../tracking/layerStats.js";
import { expandSweep, type ExpandedSweep } from "../sweep/spec.js";
import { pointRows, resultsTable } from "../sweep/results.js";
import { SWEEPS_DIR } from "../sweep/records.js";
import { RunCache } from "./runCache.js";

export interface BoardOptions {
  /** Runs home (default PRIMAL_HOME or ./runs). */
  home?: string;
  /** Port (default 6006; 0 picks a free one). */
  port?: number;
  /** Address to bind (default 127.0.0.1: this machine only). */
  host?: string;
  /** Poll files instead of file-system events (network file systems). */
  poll?: boolean;
}

export interface BoardServer {
  url: string;
  host: string;
  port: number;
  home: string;
  close(): Promise<void>;
}

const ASSETS: Record<string, { file: string; type: string }> = {
  "board.js": { file: "board.js", type: "text/javascript; charset=utf-8" },
  "board.css": { file: "board.css", type: "text/css; charset=utf-8" },
};

function assetDir(): string {
  return join(packageRoot(), "src", "board", "assets");
}

/** The browser bundles installed with the package, served under fixed names. */
function vendorFiles(): Record<string, { path: string; type: string }> {
  const req = createRequire(import.meta.url);
  const arrowDir = join(req.resolve("apache-arrow"), "..");
  return {
    "plotly.min.js": { path: plotlyBundlePath(), type: "text/javascript; charset=utf-8" },
    "arrow.min.js": { path: join(arrowDir, "Arrow.es2015.min.js"), type: "text/javascript; charset=utf-8" },
  };
}

const LOOPBACK = new Set(["127.0.0.1", "localhost", "::1", "[::1]"]);

function arrowResponse(c: Context, table: Table): Response {
  return c.body(tableToIPC(table, "stream"), 200, {
    "content-type": "application/vnd.apache.arrow.stream",
    "cache-control": "no-store",
  });
}

function figureResponse(c: Context, fig: Figure): Response {
  return c.body(figureJson(fig), 200, { "content-type": "application/json", "cache-control": "no-store" });
}

/** The metrics a chart can show for these runs: built-ins, then custom ones by first use. */
function chartMetrics(runs: readonly RunData[]): string[] {
  const names = ["loss", "valLoss", "ghostScale", "flipRate", "lr", "gradNorm", "tokensPerSec"];
  for (const r of runs)
    for (const n of customMetricNames((r as { custom?: Table }).custom))
      if (!names.includes(`custom.${n}`)) names.push(`custom.${n}`);
  return names;
}

export function boardApp(home: string): { app: Hono; cache: RunCache } {
  const cache = new RunCache(home);
  const vendor = vendorFiles();
  const app = new Hono();

  // Read-only: anything but GET/HEAD is refused before routing.
  app.use("*", async (c, next) => {
    if (c.req.method !== "GET" && c.req.method !== "HEAD") return c.text("read-only", 405);
    await next();
    c.header("x-content-type-options", "nosniff");
  });

  app.get("/favicon.ico", (c) => c.body(null, 204));
  app.get("/", (c) => c.html(readFileSync(join(assetDir(), "index.html"), "utf8")));
  app.get("/assets/:name", (c) => {
    const a = ASSETS[c.req.param("name")];
    if (!a) return c.text("not found", 404);
    return c.body(readFileSync(join(assetDir(), a.file)), 200, { "content-type": a.type });
  });
  app.get("/vendor/:name", (c) => {
    const v = vendor[c.req.param("name")];
    if (!v) return c.text("not found", 404);
    return c.body(readFileSync(v.path), 200, { "content-type": v.type, "cache-control": "max-age=3600" });
  });

  app.get("/api/runs", (c) => arrowResponse(c, runsTable(cache.list())));
  app.get("/api/sweeps", (c) => c.json(cache.sweepIds()));

  app.get("/api/run/:id", (c) => {
    const loaded = cache.load(c.req.param("id"));
    if (!loaded) return c.json({ error: "no such run" }, 404);
    if (!loaded.ok) return c.json({ id: loaded.id, corrupt: true, error: loaded.error });
    const r = loaded.run;
    const knobs = [...knobHistory(r.knobs)].map(([knob, h]) => ({ knob, history: h }));
    return c.json({
      id: r.id,
      meta: r.meta,
      status: r.status,
      statusReason: r.statusReason ?? null,
      tags: r.tags,
      notes: r.notes,
      events: r.events.filter((e) => e["kind"] !== "checkpoint"),
      samples: r.samples.slice(-20),
      checkpoints: r.checkpoints.map((k) => ({ step: k.step, file: relative(r.dir, k.path).split(sep).join("/") })),
      knobs,
      metrics: chartMetrics([r]),
      rows: r.metrics.numRows,
      warnings: r.warnings,
    });
  });

  // Per-layer statistics at the run's last step (Arrow).
  app.get("/api/run/:id/layers", (c) => {
    const loaded = cache.load(c.req.param("id"));
    if (!loaded) return c.json({ error: "no such run" }, 404);
    if (!loaded.ok) return c.json({ error: loaded.error }, 422);
    const l = loaded.run.layers;
    const step = l.getChild("step");
    if (!step || l.numRows === 0) return c.json({ error: "no layer statistics yet" }, 404);
    const last = Number(step.get(l.numRows - 1));
    let first = l.numRows - 1;
    while (first > 0 && Number(step.get(first - 1)) === last) first--;
    const slice = l.slice(first, l.numRows);
    const names = Array.from({ length: slice.numRows }, (_, i) => String(slice.getChild("name")!.get(i)));
    const cols: Record<string, Float64Array> = {};
    for (const k of STORED_LAYER_STATS) {
      const col = slice.getChild(k);
      if (col) cols[k] = Float64Array.from({ length: slice.numRows }, (_, i) => Number(col.get(i)));
    }
    return arrowResponse(c, tableFromArrays({ step: Int32Array.from(names, () => last), name: names, ...cols }));
  });

  // A chart over runs: ?runs=a,b&metric=loss&x=step&smooth=0.6&bands=1
  app.get("/api/chart", (c) => {
    const ids = (c.req.query("runs") ?? "").split(",").filter((s) => s !== "");
    const metric = c.req.query("metric") ?? "loss";
    const x = c.req.query("x");
    const smooth = Number(c.req.query("smooth") ?? "0");
    const runs: RunData[] = [];
    const skipped: string[] = [];
    for (const id of ids.slice(0, 200)) {
      const loaded = cache.load(id);
      if (loaded?.ok) runs.push(loaded.run);
      else skipped.push(id);
    }
    const fig = compareRunsWithBands(runs, {
      metric,
      x: x === "tokens" || x === "time" ? x : "step",
      ...(smooth > 0 && smooth < 1 ? { smooth } : {}),
      groupBy: c.req.query("bands") === "1" ? "seed" : null,
    });
    if (skipped.length) fig.layout["meta"] = { skipped };
    return figureResponse(c, fig);
  });

  app.get("/api/metrics", (c) => {
    const ids = (c.req.query("runs") ?? "").split(",").filter((s) => s !== "");
    const runs: RunData[] = [];
    for (const id of ids.slice(0, 200)) {
      const loaded = cache.load(id);
      if (loaded?.ok) runs.push(loaded.run);
    }
    return c.json(chartMetrics(runs));
  });

  app.get("/api/sweep/:id", (c) => {
    const dir = cache.sweepDir(c.req.param("id"));
    if (!dir) return c.json({ error: "no such sweep" }, 404);
    let s: ExpandedSweep;
    try {
      s = expandSweep(JSON.parse(readFileSync(join(dir, "spec.json"), "utf8")));
    } catch (e) {
      return c.json({ error: `the sweep's spec cannot be read: ${e instanceof Error ? e.message : String(e)}` }, 422);
    }
    const rows = pointRows(s, home);
    const table = resultsTable(s, rows);
    const knobs = s.swept.filter((k) => k !== "seed");
    const figures = (knobs.length ? knobs : s.swept).map((k) =>
      JSON.parse(figureJson(sweepPlot({ table, metric: s.spec.metric }, k))),
    );
    return c.json({
      id: s.id,
      metric: s.spec.metric,
      swept: s.swept,
      points: rows.map((r) => ({
        point: r.point,
        status: r.status,
        runId: r.runId,
        values: r.values,
        metric: r.metric,
        error: r.error ?? null,
      })),
      figures,
    });
  });

  return { app, cache };
}

/** Starts the dashboard; resolves once it listens. */
export async function startBoard(opts: BoardOptions = {}): Promise<BoardServer> {
  const home = resolveHome(opts.home);
  const host = opts.host ?? "127.0.0.1";
  const { app } = boardApp(home);

  // Live updates: every change of a run's files (or of a sweep's records) is sent to every page
  // as one "change" event naming the runs, at most every 150 ms.
  const clients = new Set<(ids: string[]) => void>();
  let pending = new Set<string>();
  let timer: NodeJS.Timeout | null = null;
  const watcher: FSWatcher = watch(home, {
    ignoreInitial: true,
    depth: 3,
    followSymlinks: false,
    usePolling: !!opts.poll,
    interval: 500,
    // Checkpoints are large and not shown; skip their folders.
    ignored: (p: string) => p.includes(`${sep}checkpoints${sep}`) || p.endsWith(`${sep}checkpoints`),
  });
  watcher.on("all", (_event, path) => {
    const rel = relative(home, path).split(sep);
    const id = rel[0] === SWEEPS_DIR ? `${SWEEPS_DIR}/${rel[1] ?? ""}` : rel[0];
    if (!id) return;
    pending.add(id);
    timer ??= setTimeout(() => {
      timer = null;
      const ids = [...pending];
      pending = new Set();
      for (const send of clients) send(ids);
    }, 150);
  });
  watcher.on("error", () => undefined);

  app.get("/api/events", (c) =>
    streamSSE(c, async (stream) => {
      let open = true;
      const send = (ids: string[]) => {
        void stream.writeSSE({ event: "change", data: JSON.stringify(ids) }).catch(() => undefined);
      };
      clients.add(send);
      stream.onAbort(() => {
        open = false;
        clients.delete(send);
      });
      await stream.writeSSE({ event: "hello", data: "{}" });
      // A comment every 15 s keeps proxies from closing an idle stream.
      while (open) {
        await stream.sleep(15000);
        if (open) await stream.write(": keep-alive\n\n").catch(() => undefined);
      }
    }),
  );

  // DNS rebinding: a page on another site resolving its name to 127.0.0.1 must not read runs.
  const guarded = new Hono();
  guarded.use("*", async (c, next) => {
    const hostHeader = (c.req.header("host") ?? "").replace(/:\d+$/, "");
    if (LOOPBACK.has(host) && !LOOPBACK.has(hostHeader)) return c.text("forbidden host", 403);
    await next();
  });
  guarded.route("/", app);

  const server: ServerType = await new Promise((resolveServer, reject) => {
    const s = serve({ fetch: guarded.fetch, port: opts.port ?? 6006, hostname: host }, () => resolveServer(s));
    s.once("error", reject);
  });
  const address = server.address();
  const port = typeof address === "object" && address ? address.port : (opts.port ?? 6006);
  const shownHost = host.includes(":") ? `[${host}]` : host;
  return {
    url: `http://${shownHost}:${port}/`,
    host,
    port,
    home,
    async close() {
      clients.clear();
      if (timer) clearTimeout(timer);
      await watcher.close();
      await new Promise<void>((r) => {
        (server as unknown as { closeAllConnections?: () => void }).closeAllConnections?.();
        server.close(() => r());
      });
    },
  };
}
