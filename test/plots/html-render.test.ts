// Renders the HTML outputs (standalone page, notebook fragments) in headless Chromium to check
// that they draw offline. One browser for the whole file; skipped without Chromium.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import type { Browser, Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import * as plots from "../../src/plots/index.js";

const chromiumPath = plots.findChromium();
const dir = mkdtempSync(join(tmpdir(), "primal-plots-html-"));

const fig: plots.Figure = {
  data: [{ type: "scatter", mode: "lines", name: "train loss", x: [1, 2, 3], y: [5, 4, 3.5] }],
  layout: {
    ...plots.baseLayout({ title: "render check", xTitle: "step" }),
    ...plots.eventMarkers([{ step: 2, kind: "set", knob: "bridge", old: 2 / 3, new: 0.7 }]),
  },
  config: plots.baseConfig(),
};

describe.runIf(chromiumPath !== null)("html outputs render in Chromium", () => {
  let browser: Browser;
  let page: Page;
  const requests: string[] = [];

  beforeAll(async () => {
    const { chromium } = await import("playwright-core");
    browser = await chromium.launch({ executablePath: chromiumPath!, headless: true, args: [...plots.CHROMIUM_ARGS] });
    page = await browser.newPage();
    page.on("request", (r) => {
      if (/^(https?|wss?):/.test(r.url())) requests.push(r.url());
    });
  }, 120_000);
  afterAll(async () => {
    await browser?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it("standalone html draws offline", async () => {
    const path = join(dir, "fig.html");
    await plots.exportFigure(fig, path);
    await page.goto(pathToFileURL(path).href);
    await page.waitForSelector("#primal-figure .main-svg", { timeout: 60_000 });
    expect(await page.locator("#primal-figure .annotation-text").first().textContent()).toBe("bridge 0.667→0.7");
    expect(await page.title()).toBe("render check");
    expect(requests).toEqual([]);
  }, 90_000);

  it("notebook fragments draw, also with CommonJS/RequireJS globals on the page", async () => {
    // A fragment that relies on window.Plotly comes before the one inlining it: it must wait.
    const waiting = plots.figureHtml(fig, { includePlotlyJs: false, divId: "second" });
    const inlining = plots.figureHtml(fig, { includePlotlyJs: true, divId: "first" });
    const loader =
      "<script>window.define = function () { throw new Error('define must not be used'); };" +
      "window.define.amd = {}; window.module = { exports: {} }; window.exports = window.module.exports;</script>";
    const errors: string[] = [];
    page.on("pageerror", (e) => errors.push(e.message));
    // Parsing 4.8 MB of inline script takes long on a busy 2-core machine.
    await page.setContent(
      `<!DOCTYPE html><html><head><meta charset="utf-8">${loader}</head><body>${waiting}${inlining}</body></html>`,
      { timeout: 120_000 },
    );
    await page.waitForSelector("#first .main-svg", { timeout: 60_000 });
    await page.waitForSelector("#second .main-svg", { timeout: 10_000 });
    expect(await page.evaluate(() => typeof (globalThis as unknown as { Plotly?: unknown }).Plotly)).toBe("object");
    expect(errors).toEqual([]);
    expect(requests).toEqual([]);
  }, 90_000);
});
