// Executes every notebook in notebooks/ on the installed PRIMAL kernel with nbconvert (as a
// user would), checks the outputs (Plotly bundles, Arrow tables, live training summaries,
// exported files), and renders executed notebooks to HTML in headless Chromium to see that
// the plots really draw offline.
import { execFile } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { installKernel } from "../../kernel/install.js";
import { CHROMIUM_ARGS, findChromium } from "../../src/plots/export.js";
import { findPython } from "../kernel/python.js";
import { packageRoot } from "../../src/paths.js";
import { ensureNodeLlamaCpp } from "../tools/node-llama-cpp.mjs";

const run = promisify(execFile);
const ROOT = packageRoot();
const NOTEBOOKS = join(ROOT, "notebooks");
const ARTIFACTS = join(ROOT, "test", "artifacts");
const launcher = join(ROOT, "dist", "kernel", "launch.js");
const PLOTLY = "application/vnd.plotly.v1+json";


// ---------------------------------------------------------------- notebook JSON

type MultiLine = string | string[];
interface NbOutput {
  output_type: string;
  name?: string;
  text?: MultiLine;
  data?: Record<string, unknown>;
  ename?: string;
}
interface NbCell {
  cell_type: string;
  source: MultiLine;
  outputs?: NbOutput[];
}
interface Notebook {
  cells: NbCell[];
  metadata: { kernelspec?: { name: string } };
}
interface Fig {
  data: { type?: string; name?: string; x?: unknown[]; y?: unknown[]; z?: unknown[][] }[];
  layout: { title?: { text?: string }; shapes?: { x0?: number; type?: string }[]; annotations?: { text?: string; x?: number }[] };
}

const joined = (t: MultiLine | unknown): string => (Array.isArray(t) ? t.join("") : typeof t === "string" ? t : "");
const outputsOf = (nb: Notebook): NbOutput[] => nb.cells.flatMap((c) => c.outputs ?? []);
const figuresOf = (nb: Notebook): Fig[] => outputsOf(nb).flatMap((o) => (o.data?.[PLOTLY] ? [o.data[PLOTLY] as Fig] : []));
const htmlOf = (nb: Notebook): string[] => outputsOf(nb).flatMap((o) => (o.data?.["text/html"] ? [joined(o.data["text/html"])] : []));
const figure = (nb: Notebook, titleStart: string): Fig => {
  const f = figuresOf(nb).find((x) => (x.layout.title?.text ?? "").startsWith(titleStart));
  if (!f) throw new Error(`no figure titled "${titleStart}…" (have: ${figuresOf(nb).map((x) => x.layout.title?.text).join(" | ")})`);
  return f;
};
const arrowTables = (nb: Notebook): string[] => htmlOf(nb).filter((h) => h.includes('class="primal-arrow-table"'));
/** Every column of a rendered table: the shown ones, then those named in its "N more columns" note. */
const columnsOf = (html: string): string[] => [
  ...[...html.matchAll(/data-column="([^"]+)"/g)].map((m) => m[1] as string),
  ...(/\d+ more columns?: (.*?) \(show\(/.exec(html)?.[1]?.split(", ") ?? []),
];
const trainSummaries = (nb: Notebook): string[] => htmlOf(nb).filter((h) => h.includes('class="primal-train"'));

function expectClean(nb: Notebook): void {
  const outs = outputsOf(nb);
  expect(outs.filter((o) => o.output_type === "error")).toEqual([]);
  const stderr = nb.cells.flatMap((c) =>
    (c.outputs ?? [])
      .filter((o) => o.output_type === "stream" && o.name === "stderr")
      .map((o) => `cell «${joined(c.source).slice(0, 80)}»: ${joined(o.text)}`),
  );
  expect(stderr).toEqual([]);
  // Cells are numbered (the kernel announces each execution) and every code cell ran (a cell
  // after a failure would be aborted and keep no number).
  const counts = nb.cells.filter((c) => c.cell_type === "code").map((c) => (c as { execution_count?: number }).execution_count);
  expect(counts).toEqual(counts.map((_, i) => i + 1));
  // A figure's output is data: Plotly JSON, a PNG (when there is a browser) and text; never
  // HTML or script, and never plotly.js.
  for (const o of outputsOf(nb).filter((x) => x.data?.[PLOTLY])) {
    const keys = Object.keys(o.data ?? {}).sort();
    expect(keys).toEqual(findChromium() ? [PLOTLY, "image/png", "text/plain"] : [PLOTLY, "text/plain"]);
  }
  expect(htmlOf(nb).filter((h) => h.length > 1_000_000)).toEqual([]);
}

// ---------------------------------------------------------------- suite

const python = existsSync(launcher) ? findPython(["jupyter_client", "nbconvert", "nbclient"]) : null;

describe.skipIf(!python)("notebooks executed on the PRIMAL kernel", () => {
  let tmp: string;
  let outDir: string;
  let home: string;
  let env: NodeJS.ProcessEnv;
  const seconds: Record<string, number> = {};
  const executed: Record<string, Notebook> = {};

  beforeAll(async () => {
    tmp = mkdtempSync(join(tmpdir(), "primal-notebooks-"));
    outDir = join(tmp, "executed");
    home = join(tmp, "runs");
    const prefix = join(tmp, "prefix");
    await installKernel({ prefix });
    env = {
      ...process.env,
      JUPYTER_PATH: join(prefix, "share", "jupyter"),
      JUPYTER_RUNTIME_DIR: join(tmp, "runtime"),
      PRIMAL_HOME: home,
      PYDEVD_DISABLE_FILE_VALIDATION: "1",
    };
  });

  afterAll(() => {
    const total = Object.values(seconds).reduce((a, b) => a + b, 0);
    console.log(`notebook execution (s): ${JSON.stringify(seconds)} total ${total.toFixed(1)}`);
    if (tmp) rmSync(tmp, { recursive: true, force: true });
  });

  async function execute(name: string): Promise<Notebook> {
    const t0 = performance.now();
    const { stderr } = await run(
      python as string,
      [
        "-m",
        "nbconvert",
        "--to",
        "notebook",
        "--execute",
        // Keep going past a failing cell so the test can report its stderr (tslab reports
        // errors there, not as error outputs); expectClean() then fails with the message.
        "--allow-errors",
        "--ExecutePreprocessor.kernel_name=primal",
        "--ExecutePreprocessor.timeout=600",
        "--output-dir",
        outDir,
        join(NOTEBOOKS, `${name}.ipynb`),
      ],
      { env, maxBuffer: 64 * 1024 * 1024 },
    ).catch((e: { stderr?: string; message: string }) => {
      throw new Error(`nbconvert failed for ${name}: ${(e.stderr ?? e.message).slice(-4000)}`);
    });
    seconds[name] = Number(((performance.now() - t0) / 1000).toFixed(1));
    expect(stderr).toContain(`Writing`);
    const nb = JSON.parse(readFileSync(join(outDir, `${name}.ipynb`), "utf8")) as Notebook;
    executed[name] = nb;
    return nb;
  }

  it("has the seven notebooks, all on the primal kernelspec", () => {
    const names = readdirSync(NOTEBOOKS).filter((f) => f.endsWith(".ipynb")).sort();
    expect(names).toEqual(["01-quickstart.ipynb", "02-inside-poltergeist.ipynb", "03-bridge-tweak.ipynb", "04-write-up.ipynb", "05-export.ipynb", "06-results.ipynb", "07-sweeps.ipynb"]);
    for (const n of names) {
      const nb = JSON.parse(readFileSync(join(NOTEBOOKS, n), "utf8")) as Notebook;
      expect(nb.metadata.kernelspec?.name).toBe("primal");
      // Committed without outputs.
      expect(outputsOf(nb)).toEqual([]);
    }
  });

  it("01-quickstart: trains, plots loss and Ghost Scale", async () => {
    const nb = await execute("01-quickstart");
    expectClean(nb);
    const summary = trainSummaries(nb);
    expect(summary).toHaveLength(1);
    expect(summary[0]).toContain('data-status="finished"');
    expect(summary[0]).toContain('data-step="80"');

    const loss = figure(nb, "loss · quickstart");
    const train = loss.data.find((t) => t.name === "train loss");
    expect(train?.x).toEqual(Array.from({ length: 80 }, (_, i) => i + 1));
    expect(train?.y).toHaveLength(80);
    expect(loss.data.some((t) => t.name?.startsWith("train loss (EMA"))).toBe(true);
    const val = loss.data.find((t) => t.name === "val loss");
    expect(val?.x).toEqual([40, 80]);

    const ghost = figure(nb, "Ghost Scale");
    expect(ghost.data).toHaveLength(14); // 2 blocks × 7 BitLinear matrices
    // Scale-symmetry pairs share a legend entry (see notebook 02).
    expect(ghost.data.map((t) => t.name)).toContain("blocks.1 up·down");
    expect(ghost.data.every((t) => t.x?.length === 80)).toBe(true);
    expect(ghost.layout.shapes?.[0]).toMatchObject({ type: "line" });

    const [history] = arrowTables(nb);
    expect(columnsOf(history as string)).toEqual(["step", "time", "loss", "lr", "gradNorm", "tokens", "tokensPerSec", "stepMs", "peakMemoryBytes", "valLoss", "valBpb"]);
    expect(history).toContain("80 rows × 11 columns");
    const evalText = outputsOf(nb).map((o) => joined(o.text)).join("");
    expect(evalText).toContain(env.PRIMAL_WIKITEXT_DIR ? "WikiText-2 valid" : "corpus validation split");

    // The memory plan of ghost-0.1b at batch 32: 12 candidates (6 micro-batch sizes x 2 modes).
    const plan = arrowTables(nb).find((h) => columnsOf(h).includes("backendScratch"));
    expect(columnsOf(plan as string).slice(0, 5)).toEqual(["microBatch", "recompute", "chosen", "fits", "totalBytes"]);
    expect(plan).toContain("12 rows");
  }, 600_000);

  it("02-inside-poltergeist: vote and flip-probability tables, occupancy, histograms", async () => {
    const nb = await execute("02-inside-poltergeist");
    expectClean(nb);
    const tables = arrowTables(nb);
    const layers = tables.find((h) => columnsOf(h).includes("voteActive"));
    expect(columnsOf(layers as string)).toEqual(expect.arrayContaining(["layer", "name", "scale", "dscale", "flips", "pMean", "pMax", "fracM1", "frac0", "fracP1", "voteSaturated"]));
    expect(layers).toContain("14 rows");
    const buffers = tables.filter((h) => columnsOf(h).join() === "row,col,value");
    expect(buffers.map((h) => /Arrow Table · ([\d,]+) rows/.exec(h)?.[1])).toEqual(["12,288", "2,000", "1,000"]);
    expect(buffers[0]).toContain("Int8"); // votes
    expect(buffers[1]).toContain("Float32"); // flip probabilities

    const votes = figure(nb, "votes · blocks.1.mlp.up");
    expect(votes.data[0]?.type).toBe("bar");
    expect(votes.data[0]?.x).toHaveLength(255);
    expect((votes.data[0]?.y as number[]).reduce((a, b) => a + b, 0)).toBe(12288);
    expect(figure(nb, "flip probability · blocks.1.mlp.up").data[0]?.type).toBe("bar");
    expect(figure(nb, "Ghost Scale").data.filter((t) => t.name === "blocks.0 q·k")).toHaveLength(2);
    const occAll = figure(nb, "code level occupancy · all layers");
    expect(occAll.data.map((t) => t.name)).toEqual(["-1", "-b", "0", "+b", "+1"]);
    expect(occAll.data[0]?.x).toHaveLength(50);
    expect(figure(nb, "code level occupancy · blocks.1.mlp.up").data).toHaveLength(5);
    const heat = figuresOf(nb).find((f) => f.data[0]?.type === "heatmap");
    expect(heat?.data[0]?.z).toHaveLength(14);
    // The custom analysis over the raw buffers printed one row per code level.
    expect(outputsOf(nb).map((o) => joined(o.text)).join("")).toContain("meanAbsVote");
  }, 600_000);

  it("03-bridge-tweak: compares runs and marks the bridge change on the loss plot", async () => {
    const nb = await execute("03-bridge-tweak");
    expectClean(nb);
    expect(trainSummaries(nb).filter((h) => h.includes('data-status="finished"'))).toHaveLength(4);
    const compareAll = figure(nb, "loss · 2 runs");
    // The knob change is a marker on the tweaked run's line.
    const marker = compareAll.data.find((t) => t.name?.endsWith("knob change"));
    expect(marker?.x).toEqual([40]);
    const compare = { ...compareAll, data: compareAll.data.filter((t) => !t.name?.endsWith("knob change")) };
    expect(compare.data.map((t) => t.name?.split(" ")[0])).toEqual(["bridge-kept", "bridge-0.8"]);
    expect(compare.data.every((t) => t.x?.length === 80)).toBe(true);
    const loss = figure(nb, "loss · bridge-0.8");
    expect(loss.layout.shapes?.map((s) => s.x0)).toEqual([40]);
    const label = loss.layout.annotations?.[0];
    expect(label?.x).toBe(40);
    expect(label?.text).toBe("bridge 0.667→0.8");
    // Identical until the change: same seed, same data.
    const [kept, tweaked] = compare.data as { y: number[] }[];
    expect(tweaked?.y.slice(0, 40)).toEqual(kept?.y.slice(0, 40));
  }, 600_000);

  it("04-write-up: exports figures to html, svg, png and pdf", async () => {
    const nb = await execute("04-write-up");
    expectClean(nb);
    const runDir = readdirSync(home)
      .map((d) => join(home, d))
      .find((d) => existsSync(join(d, "run.json")) && (JSON.parse(readFileSync(join(d, "run.json"), "utf8")) as { name?: string }).name === "write-up");
    expect(runDir).toBeDefined();
    const figs = join(runDir as string, "figures");
    const names = ["loss", "ghost-scale", "occupancy", "flip-heatmap"];
    for (const n of names) {
      const html = readFileSync(join(figs, `${n}.html`), "utf8");
      expect(html.startsWith("<!DOCTYPE html>")).toBe(true);
      expect(html).toContain("Plotly.newPlot");
    }
    const loss = readFileSync(join(figs, "loss.html"), "utf8");
    expect(loss).toContain("flipRate 0.01→0.02");
    if (!findChromium()) {
      console.warn("no Chromium: static exports not checked");
      return;
    }
    for (const n of names) {
      expect(readFileSync(join(figs, `${n}.svg`), "utf8")).toMatch(/^<svg[^>]*xmlns="http:\/\/www\.w3\.org\/2000\/svg"/);
      expect(readFileSync(join(figs, `${n}.svg`), "utf8")).toContain('font-family:"Arimo"');
      const png = readFileSync(join(figs, `${n}.png`));
      expect(png.subarray(0, 8)).toEqual(Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]));
      expect(png.readUInt32BE(16)).toBe(1050); // paper style: 3.5 in at 300 dpi
      expect(png.toString("latin1", 37, 41)).toBe("pHYs"); // right after IHDR: the resolution
      expect(Math.round(png.readUInt32BE(41) * 0.0254)).toBe(300);
      expect(readFileSync(join(figs, `${n}.pdf`)).subarray(0, 5).toString("ascii")).toBe("%PDF-");
    }
    const images = outputsOf(nb).filter((o) => o.data?.["image/png"] || o.data?.["image/svg+xml"]);
    expect(images).toHaveLength(2);
    const listing = outputsOf(nb).find((o) => o.data?.["text/markdown"]);
    expect(joined(listing?.data?.["text/markdown"])).toContain("| loss.pdf |");
  }, 600_000);

  it("05-export: exports a GGUF file and, when node-llama-cpp is installed, compares it in llama.cpp", async () => {
    // The notebook finds the copy installed on demand for the tests (skips its comparison without one).
    ensureNodeLlamaCpp();
    const nb = await execute("05-export");
    expectClean(nb);
    const md = outputsOf(nb).map((o) => joined(o.data?.["text/markdown"])).filter((x) => x !== "");
    expect(md[0]).toMatch(/\*\*bridge-off\.gguf\*\*: [\d.]+ MB, type tq2_0/);
    expect(md[0]).toContain("| blk.0.attn_q.weight | tq2_0 |");
    expect(md[0]).toContain("| blk.0.ffn_down.weight | tq2_0 |");
    if (md[1]?.includes("Comparison skipped")) {
      console.warn(`the notebook skipped its llama.cpp comparison: ${md[1]}`);
      return;
    }
    expect(md[2]).toMatch(/token ids of the text \| \d+ \| identical/);
    const diff = Number(/Δ log p.*\| ([\d.e+-]+) \|$/m.exec(md[2] ?? "")?.[1]);
    expect(diff).toBeLessThan(0.1);
  }, 600_000);

  it("06-results: draws the ablation figures from the committed result files", async () => {
    const nb = await execute("06-results");
    expectClean(nb);
    const bars = figure(nb, "Ablation (tiny)");
    expect(bars.data[0]?.x).toEqual(["default", "frozen", "bridgeOff", "ste", "fp"]);
    const y = bars.data[0]?.y as number[];
    // The committed results: flips beat frozen codes by far more than the seed spread.
    expect(y[1]! - y[0]!).toBeGreaterThan(0.2);
    for (const knob of ["flipRate", "voteKeep", "scaleLr", "pMax"]) expect(figure(nb, `${knob} sweep (tiny)`).data).toHaveLength(2);
    // The stability study (results/stability): a map panel per variant, and the level changes.
    expect(figure(nb, "Stability map (tiny)").data.filter((d) => d.type === "heatmap")).toHaveLength(5);
    expect(figure(nb, "Weights changing level per step (tiny)").data.length).toBeGreaterThanOrEqual(4);
    expect(figure(nb, "Stability map (small)").data.filter((d) => d.type === "heatmap")).toHaveLength(3);
    expect(figure(nb, "Training loss (small), batch 1, step 10× default").data).toHaveLength(4);
    // The long runs (results/long): both quantizers and the annealed flip rate, 3000 steps, six
    // evaluations each.
    const long = figure(nb, "Long runs (small): evaluations");
    expect(long.data).toHaveLength(6);
    expect(long.data.every((t) => (t.x as number[]).length === 6)).toBe(true);
    const stepsOf = figure(nb, "Long runs (small): training loss").data.map((t) => t.name);
    expect(stepsOf).toEqual([
      "Poltergeist (3000/3000 steps)",
      "STE (3000/3000 steps)",
      "Poltergeist, flip rate annealed (3000/3000 steps)",
    ]);
    expect(arrowTables(nb).length).toBeGreaterThanOrEqual(1);
  }, 300_000);

  it("07-sweeps: runs a sweep from a cell, compares seeds with bands, queries and reruns", async () => {
    const nb = await execute("07-sweeps");
    expectClean(nb);
    const tables = arrowTables(nb);
    // The results table: one row per point, the swept fields and the final metrics.
    expect(columnsOf(tables[0] as string).slice(0, 6)).toEqual(["point", "key", "status", "runId", "knobs.flipRate", "seed"]);
    expect(tables[0]).toContain("4 rows");
    expect((tables[0] as string).match(/finished/g)?.length).toBeGreaterThanOrEqual(4);
    const bands = figure(nb, "loss · 2 families of 4 runs");
    expect(bands.data.filter((t) => (t as { fill?: string }).fill === "tonexty")).toHaveLength(2);
    expect(bands.data.filter((t) => t.name?.endsWith("(mean of 2)"))).toHaveLength(2);
    expect(figure(nb, "finalValLoss vs knobs.flipRate").data[1]?.x).toEqual([0.01, 0.05]);
    expect(columnsOf(tables[1] as string)).toEqual(expect.arrayContaining(["id", "status", "tags", "sweep", "bestValLoss"]));
    // tslab prints a cell's primitive value as a stream, objects as display data.
    const text = outputsOf(nb)
      .map((o) => joined(o.data?.["text/plain"]) + joined(o.text))
      .join("\n");
    expect(text).toContain("4/4 points done, 0 stopped");
  }, 600_000);

  it.skipIf(!findChromium())("renders executed notebooks as HTML, each figure as its PNG, in headless Chromium", async () => {
    for (const n of ["01-quickstart", "03-bridge-tweak"]) {
      if (!executed[n]) throw new Error(`${n} was not executed`);
    }
    const htmlDir = join(tmp, "html");
    // The classic notebook's template, and JupyterLab's.
    for (const [n, template] of [["01-quickstart", "classic"], ["03-bridge-tweak", "lab"]] as const) {
      await run(python as string, ["-m", "nbconvert", "--to", "html", "--template", template, "--output-dir", htmlDir, join(outDir, `${n}.ipynb`)], { env, maxBuffer: 64 * 1024 * 1024 });
    }
    mkdirSync(ARTIFACTS, { recursive: true });
    const { chromium } = await import("playwright-core");
    const profile = mkdtempSync(join(tmp, "chromium-profile-"));
    const context = await chromium.launchPersistentContext(profile, {
      executablePath: findChromium() as string,
      headless: true,
      // A fresh profile directory (Playwright passes it as --user-data-dir).
      args: [...CHROMIUM_ARGS],
      viewport: { width: 1200, height: 900 },
      offline: true,
    });
    try {
      // Offline: everything the page needs is inlined (or a local file).
      await context.route(/^(https?|wss?):/, (route) => route.abort());
      const page = context.pages()[0] ?? (await context.newPage());
      const pageErrors: string[] = [];
      page.on("pageerror", (e) => pageErrors.push(String(e)));

      await page.goto(pathToFileURL(join(htmlDir, "01-quickstart.html")).href, { waitUntil: "load", timeout: 120_000 });
      // nbconvert shows each figure as its PNG: loaded, with the figure's size.
      await page.waitForFunction(
        () => [...document.querySelectorAll<HTMLImageElement>("img")].filter((i) => i.complete && i.naturalWidth >= 900).length >= 2,
        null,
        { timeout: 60_000 },
      );
      const q = await page.evaluate(() => ({
        images: [...document.querySelectorAll<HTMLImageElement>("img")].filter((i) => i.src.startsWith("data:image/png")).map((i) => i.naturalWidth),
        tables: document.querySelectorAll(".primal-arrow-table table").length,
        summaries: document.querySelectorAll('.primal-train[data-status="finished"]').length,
        scripts: [...document.querySelectorAll("script")].filter((s) => (s.textContent ?? "").includes("Plotly.newPlot")).length,
      }));
      expect(q.images).toEqual([900, 900]);
      expect(q.tables).toBe(2); // the metrics history and the memory plan
      expect(q.summaries).toBe(1);
      expect(q.scripts).toBe(0);
      const first = (await page.$$("img[src^='data:image/png']"))[0];
      await first?.scrollIntoViewIfNeeded();
      await first?.screenshot({ path: join(ARTIFACTS, "notebook-01-loss.png") });
      await page.screenshot({ path: join(ARTIFACTS, "notebook-01-page.png") });
      await (await page.$(".primal-train"))?.screenshot({ path: join(ARTIFACTS, "notebook-01-train.png") });
      await (await page.$(".primal-arrow-table"))?.screenshot({ path: join(ARTIFACTS, "notebook-01-table.png") });

      await page.goto(pathToFileURL(join(htmlDir, "03-bridge-tweak.html")).href, { waitUntil: "load", timeout: 120_000 });
      await page.waitForFunction(
        () => [...document.querySelectorAll<HTMLImageElement>("img[src^='data:image/png']")].filter((i) => i.complete && i.naturalWidth > 0).length >= 3,
        null,
        { timeout: 60_000 },
      );
      const lossPlot = (await page.$$("img[src^='data:image/png']"))[1];
      await lossPlot?.scrollIntoViewIfNeeded();
      await lossPlot?.screenshot({ path: join(ARTIFACTS, "notebook-03-loss-event.png") });
      expect(pageErrors).toEqual([]);
    } finally {
      await context.close();
    }
    for (const f of ["notebook-01-loss.png", "notebook-01-page.png", "notebook-01-train.png", "notebook-01-table.png", "notebook-03-loss-event.png"]) {
      expect(readFileSync(join(ARTIFACTS, f)).subarray(1, 4).toString("ascii")).toBe("PNG");
    }
  }, 300_000);
});
