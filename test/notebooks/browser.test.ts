// The notebooks as a user meets them: Debian's classic Notebook server on 127.0.0.1 driving the
// installed kernel (and its Notebook extension), opened in headless Chromium (playwright-core).
// Notebook 01 is run with Cell → Run All: Plotly draws its SVG, Arrow tables render, the
// training output updates in place. Then the figures must survive whatever the page went
// through: a reload with the kernel still running (and Run All again), a second tab, reopening
// the saved file with no kernel running, and the same file untrusted (static images, not a
// blank). Last, a long `train` is stopped from the toolbar's interrupt button and the next
// cell runs. Screenshots go to test/artifacts/browser (git-ignored).
import { spawn, type ChildProcess } from "node:child_process";
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Browser, Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { installKernel } from "../../kernel/install.js";
import { packageRoot } from "../../src/paths.js";
import { CHROMIUM_ARGS, findChromium } from "../../src/plots/export.js";
import { findPython } from "../kernel/python.js";

const ROOT = packageRoot();
const ARTIFACTS = join(ROOT, "test", "artifacts", "browser");
const launcher = join(ROOT, "dist", "kernel", "launch.js");
const python = existsSync(launcher) ? findPython(["notebook", "jupyter_client"]) : null;
const chromium = findChromium();
const why = !existsSync(launcher)
  ? "dist/ is not built"
  : !python
    ? "no Python with the classic Notebook server (Debian: apt-get install jupyter-notebook)"
    : !chromium
      ? "no Chromium"
      : "";

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const port = (srv.address() as { port: number }).port;
      srv.close(() => resolve(port));
    });
  });
}

/** A notebook of code cells on the primal kernelspec. */
function notebook(cells: string[]): string {
  return JSON.stringify({
    cells: cells.map((source) => ({ cell_type: "code", execution_count: null, metadata: {}, outputs: [], source })),
    metadata: { kernelspec: { display_name: "PRIMAL (TypeScript)", language: "typescript", name: "primal" } },
    nbformat: 4,
    nbformat_minor: 5,
  });
}

/** Opens a notebook and waits until its kernel is connected. */
async function open(page: Page, base: string, name: string): Promise<void> {
  await page.goto(`${base}/notebooks/${name}`);
  await page.waitForFunction(
    () => {
      const nb = (window as unknown as { Jupyter?: { notebook?: { kernel?: { is_connected?: () => boolean; info_reply?: unknown } } } }).Jupyter?.notebook;
      return nb?.kernel?.is_connected?.() === true && nb.kernel.info_reply !== undefined;
    },
    undefined,
    { timeout: 120_000 },
  );
}

/** Resolves when `n` figures are drawn by plotly.js (an SVG with traces in each) and returns their trace counts. */
async function figuresDrawn(page: Page, n: number, timeout = 60_000): Promise<number[]> {
  await page.waitForFunction(
    (count) =>
      [...document.querySelectorAll(".js-plotly-plot")].filter((p) => p.querySelector(".main-svg .scatterlayer .trace"))
        .length >= count,
    n,
    { timeout, polling: 250 },
  );
  return page.$$eval(".js-plotly-plot", (els) => els.map((e) => e.querySelectorAll(".main-svg .scatterlayer .trace").length));
}

/** Screenshot of the first element matching `selector` (the notebook scrolls inside its own panel). */
async function shoot(page: Page, selector: string, file: string): Promise<void> {
  const el = await page.$(selector);
  if (!el) throw new Error(`nothing matches ${selector}`);
  await el.scrollIntoViewIfNeeded();
  await el.screenshot({ path: join(ARTIFACTS, file) });
}

/** Saves the notebook through the page, as File → Save does, and waits until it is written. */
async function save(page: Page): Promise<void> {
  await page.evaluate(
    () =>
      (window as unknown as { Jupyter: { notebook: { save_notebook(): Promise<unknown> } } }).Jupyter.notebook.save_notebook(),
  );
}

/** Cell → Run All through the menu, as a user does. */
async function runAll(page: Page): Promise<void> {
  await page.click("#celllink");
  await page.click("#run_all_cells");
}

/** Resolves when every code cell has run (a number in its prompt, none "*"). */
async function allRan(page: Page, timeout: number): Promise<void> {
  await page.waitForFunction(
    () => {
      type Cell = { cell_type: string; input_prompt_number?: number | string | null };
      const cells = (window as unknown as { Jupyter: { notebook: { get_cells(): Cell[] } } }).Jupyter.notebook.get_cells();
      return cells.every((c) => c.cell_type !== "code" || typeof c.input_prompt_number === "number");
    },
    undefined,
    { timeout, polling: 250 },
  );
}

describe.skipIf(why !== "")(`classic Notebook in headless Chromium${why ? ` (skipped: ${why})` : ""}`, () => {
  let tmp: string;
  let server: ChildProcess | undefined;
  let browser: Browser | undefined;
  let base: string;

  beforeAll(async () => {
    tmp = mkdtempSync(join(tmpdir(), "primal-browser-"));
    const prefix = join(tmp, "prefix");
    await installKernel({ prefix });
    const nbDir = join(tmp, "notebooks");
    mkdirSync(nbDir);
    copyFileSync(join(ROOT, "notebooks", "01-quickstart.ipynb"), join(nbDir, "01-quickstart.ipynb"));
    writeFileSync(
      join(nbDir, "interrupt.ipynb"),
      notebook([
        'import { Trainer } from "primal";\nconst t = await Trainer.create({ preset: "tiny", device: "cpu", threads: 2, sampleEvery: 0, checkpointEvery: 0, steps: 100000 });\nt.step',
        "await t.train(1000000)",
        "`after the interrupt: step ${t.step}`",
      ]),
    );
    const port = await freePort();
    base = `http://127.0.0.1:${port}`;
    const jupyter = (d: string) => join(tmp, "jupyter", d);
    server = spawn(
      python as string,
      ["-m", "notebook", "--no-browser", "--ip=127.0.0.1", `--port=${port}`, "--port-retries=0", `--notebook-dir=${nbDir}`, "--NotebookApp.token=", "--NotebookApp.password=", ...(process.getuid?.() === 0 ? ["--allow-root"] : [])],
      {
        env: {
          ...process.env,
          JUPYTER_PATH: join(prefix, "share", "jupyter"),
          // The Notebook extension that draws figures is enabled under the prefix's etc/jupyter.
          JUPYTER_CONFIG_PATH: join(prefix, "etc", "jupyter"),
          JUPYTER_CONFIG_DIR: jupyter("config"),
          JUPYTER_DATA_DIR: jupyter("data"),
          JUPYTER_RUNTIME_DIR: jupyter("runtime"),
          IPYTHONDIR: jupyter("ipython"),
          PRIMAL_HOME: join(tmp, "runs"),
          PYDEVD_DISABLE_FILE_VALIDATION: "1",
        },
        stdio: ["ignore", "ignore", "pipe"],
      },
    );
    let log = "";
    server.stderr?.on("data", (b: Buffer) => (log += b.toString()));
    // Up when its API answers.
    for (let i = 0; ; i++) {
      try {
        if ((await fetch(`${base}/api`)).ok) break;
      } catch {
        // not yet
      }
      if (i > 300 || server.exitCode !== null) throw new Error(`the notebook server did not start:\n${log.slice(-3000)}`);
      await new Promise((r) => setTimeout(r, 200));
    }
    const { chromium: pw } = await import("playwright-core");
    browser = await pw.launch({ executablePath: chromium as string, args: [...CHROMIUM_ARGS], headless: true });
    mkdirSync(ARTIFACTS, { recursive: true });
  }, 180_000);

  afterAll(async () => {
    await browser?.close();
    if (server && server.exitCode === null) {
      // Shut the kernels down through the API, then the server.
      try {
        const kernels = (await (await fetch(`${base}/api/kernels`)).json()) as { id: string }[];
        await Promise.all(kernels.map((k) => fetch(`${base}/api/kernels/${k.id}`, { method: "DELETE" })));
      } catch {
        // the server is going anyway
      }
      server.kill("SIGTERM");
      await new Promise((r) => server?.once("exit", r));
    }
    if (tmp) rmSync(tmp, { recursive: true, force: true });
  }, 60_000);

  it("Run All on notebook 01 (Plotly SVG, Arrow tables, one live training output); the figures survive a reload, Run All again and a second tab", async () => {
    const page = await (browser as Browser).newPage({ viewport: { width: 1280, height: 900 } });
    await open(page, base, "01-quickstart.ipynb");
    // Watch the training output while it runs: how many there are and what they show.
    await page.evaluate(() => {
      const w = window as unknown as { __train: string[] };
      w.__train = [];
      setInterval(() => {
        const els = [...document.querySelectorAll<HTMLElement>(".primal-train")];
        w.__train.push(`${els.length}|${els.map((e) => `${e.dataset.status}@${e.dataset.step}`).join(",")}`);
      }, 100);
    });
    await runAll(page);
    await allRan(page, 480_000);
    await page.screenshot({ path: join(ARTIFACTS, "01-quickstart.png"), fullPage: true });

    const seen = await page.evaluate(() => (window as unknown as { __train: string[] }).__train);
    // Never two training outputs; the one output showed several running steps, then finished.
    expect(seen.every((s) => Number(s.split("|")[0]) <= 1)).toBe(true);
    const running = new Set(seen.filter((s) => s.includes("running@")).map((s) => s.split("|")[1]));
    expect(running.size).toBeGreaterThan(1);
    expect(seen.at(-1)).toBe("1|finished@80");

    // Plotly drew the loss and Ghost Scale figures (SVG inside the output).
    const plots = await figuresDrawn(page, 2, 30_000);
    expect(plots.length).toBe(2);
    expect(plots.every((n) => n > 0)).toBe(true);
    // Arrow tables: the history (80 rows) and the memory plan, with typed headers.
    const tables = await page.$$eval(".primal-arrow-table", (els) => els.map((e) => e.textContent ?? ""));
    expect(tables.some((t) => t.includes("80 rows × 11 columns"))).toBe(true);
    expect(tables.some((t) => t.includes("12 rows"))).toBe(true);
    // No errors, nothing on stderr.
    expect(await page.$$(".output_error, .output_stderr")).toHaveLength(0);

    // Saved, the notebook stays light: each figure is its JSON and a PNG, no plotly.js.
    await save(page);
    const file = join(tmp, "notebooks", "01-quickstart.ipynb");
    const saved = JSON.parse(readFileSync(file, "utf8")) as { cells: { outputs?: { data?: Record<string, unknown> }[] }[] };
    const figures = saved.cells.flatMap((c) => c.outputs ?? []).filter((o) => o.data?.["application/vnd.plotly.v1+json"]);
    expect(figures).toHaveLength(2);
    for (const f of figures) expect(Object.keys(f.data ?? {}).sort()).toEqual(["application/vnd.plotly.v1+json", "image/png", "text/plain"]);
    console.log(`notebook 01 saved after Run All: ${(statSync(file).size / 1024).toFixed(0)} KB`);
    expect(statSync(file).size).toBeLessThan(1_000_000);

    // Reload with the kernel still running: the saved figures draw again, and so does a second Run All.
    await page.reload();
    await open(page, base, "01-quickstart.ipynb");
    expect(await figuresDrawn(page, 2)).toHaveLength(2);
    await shoot(page, ".js-plotly-plot", "01-after-reload.png");
    await runAll(page);
    await page.waitForFunction(() => document.querySelectorAll(".js-plotly-plot").length === 0, undefined, { timeout: 60_000 }).catch(() => undefined);
    await allRan(page, 480_000);
    const again = await figuresDrawn(page, 2, 60_000);
    expect(again).toHaveLength(2);
    expect(again.every((n) => n > 0)).toBe(true);
    await shoot(page, ".js-plotly-plot", "01-reload-run-all.png");
    expect(await page.$$(".output_error, .output_stderr")).toHaveLength(0);
    await save(page);

    // A second tab on the same notebook, the first still open.
    const second = await (browser as Browser).newPage({ viewport: { width: 1280, height: 900 } });
    await open(second, base, "01-quickstart.ipynb");
    expect(await figuresDrawn(second, 2)).toHaveLength(2);
    await shoot(second, ".js-plotly-plot", "01-second-tab.png");
    await second.close();
    // File → Close and Halt: the kernel stops (through the page, which sends the XSRF token).
    await page.evaluate(
      () =>
        new Promise<void>((resolve) =>
          (window as unknown as { Jupyter: { notebook: { session: { delete(ok: () => void, err: () => void): void } } } }).Jupyter.notebook.session.delete(
            () => resolve(),
            () => resolve(),
          ),
        ),
    );
    await page.close();
  }, 1_200_000);

  it("the saved notebook reopened with no kernel running draws its figures; untrusted, it shows their images", async () => {
    // The previous test closed and halted the notebook: no kernel runs, the figures must come
    // from the saved file alone.
    for (let i = 0; ((await (await fetch(`${base}/api/kernels`)).json()) as unknown[]).length > 0; i++) {
      if (i > 150) throw new Error("the kernel did not stop");
      await new Promise((r) => setTimeout(r, 200));
    }
    const page = await (browser as Browser).newPage({ viewport: { width: 1280, height: 900 } });
    await page.goto(`${base}/notebooks/01-quickstart.ipynb`);
    expect(await figuresDrawn(page, 2)).toHaveLength(2);
    await shoot(page, ".js-plotly-plot", "01-reopened.png");
    await page.close();

    // Changed outside the Notebook, the file is no longer signed: untrusted. The figures' code
    // path is not taken, their PNGs show instead.
    const file = join(tmp, "notebooks", "01-quickstart.ipynb");
    const nb = JSON.parse(readFileSync(file, "utf8")) as { metadata: Record<string, unknown> };
    nb.metadata.edited_elsewhere = true;
    writeFileSync(file, JSON.stringify(nb));
    const untrusted = await (browser as Browser).newPage({ viewport: { width: 1280, height: 900 } });
    await untrusted.goto(`${base}/notebooks/01-quickstart.ipynb`);
    await untrusted.waitForFunction(
      () => (window as unknown as { Jupyter?: { notebook?: { _fully_loaded?: boolean } } }).Jupyter?.notebook?._fully_loaded === true,
      undefined,
      { timeout: 60_000 },
    );
    expect(await untrusted.evaluate(() => (window as unknown as { Jupyter: { notebook: { trusted: boolean } } }).Jupyter.notebook.trusted)).toBe(false);
    await untrusted.waitForFunction(() => [...document.querySelectorAll<HTMLImageElement>(".output_png img")].filter((i) => i.complete && i.naturalWidth > 0).length >= 2, undefined, { timeout: 30_000 });
    const images = await untrusted.$$eval(".output_png img", (els) => els.map((e) => (e as HTMLImageElement).naturalWidth));
    expect(images.length).toBeGreaterThanOrEqual(2);
    expect(await untrusted.$$(".js-plotly-plot")).toHaveLength(0);
    await shoot(untrusted, ".output_png", "01-untrusted.png");
    await untrusted.close();
  }, 300_000);

  it("the toolbar's interrupt stops a long train within seconds, and the next cell runs", async () => {
    const page = await (browser as Browser).newPage({ viewport: { width: 1280, height: 900 } });
    await open(page, base, "interrupt.ipynb");
    await runAll(page);
    await page.waitForSelector('.primal-train[data-status="running"]:not([data-step="0"])', { timeout: 120_000 });
    const t0 = Date.now();
    await page.click('button[data-jupyter-action="jupyter-notebook:interrupt-kernel"]');
    await page.waitForSelector('.primal-train[data-status="stopped"]', { timeout: 30_000 });
    console.log(`interrupt → stopped output: ${((Date.now() - t0) / 1000).toFixed(1)} s`);
    await allRan(page, 60_000);
    await page.screenshot({ path: join(ARTIFACTS, "interrupt.png"), fullPage: true });
    const texts = await page.$$eval(".output_area", (els) => els.map((e) => e.textContent ?? ""));
    expect(texts.some((t) => /interrupted at step \d+ after \d+ of 1000000 steps/.test(t))).toBe(true);
    expect(texts.some((t) => /after the interrupt: step \d+/.test(t))).toBe(true);
    expect(await page.$$(".output_error, .output_stderr")).toHaveLength(0);
    await page.close();
  }, 300_000);
});
