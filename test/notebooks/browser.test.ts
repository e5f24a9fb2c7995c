// The notebooks as a user meets them: Debian's classic Notebook server on 127.0.0.1 driving the
// installed kernel, opened in headless Chromium (playwright-core). Notebook 01 is run with
// Cell → Run All: Plotly draws its SVG, Arrow tables render, the training output updates in
// place. Then a long `train` is stopped from the toolbar's interrupt button and the next cell
// runs. Screenshots go to test/artifacts/browser (git-ignored).
import { spawn, type ChildProcess } from "node:child_process";
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
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

  it("Run All on notebook 01: Plotly SVG, Arrow tables, one training output updated in place", async () => {
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
    await page.waitForSelector(".js-plotly-plot .main-svg", { timeout: 30_000 });
    const plots = await page.$$eval(".js-plotly-plot", (els) => els.map((e) => e.querySelectorAll(".main-svg .scatterlayer .trace").length));
    expect(plots.length).toBe(2);
    expect(plots.every((n) => n > 0)).toBe(true);
    // Arrow tables: the history (80 rows) and the memory plan, with typed headers.
    const tables = await page.$$eval(".primal-arrow-table", (els) => els.map((e) => e.textContent ?? ""));
    expect(tables.some((t) => t.includes("80 rows × 11 columns"))).toBe(true);
    expect(tables.some((t) => t.includes("12 rows"))).toBe(true);
    // No errors, nothing on stderr.
    expect(await page.$$(".output_error, .output_stderr")).toHaveLength(0);
    await page.close();
  }, 600_000);

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
