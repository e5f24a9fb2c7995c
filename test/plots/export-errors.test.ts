// Chromium discovery and its errors; no browser is started here.
import { chmodSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { delimiter, join } from "node:path";
import { afterAll, afterEach, describe, expect, it } from "vitest";
import * as plots from "../../src/plots/index.js";

const dir = mkdtempSync(join(tmpdir(), "primal-plots-chromium-"));
const fig: plots.Figure = { data: [{ type: "scatter", y: [1, 2] }], layout: {} };
const saved = { PRIMAL_CHROMIUM: process.env.PRIMAL_CHROMIUM, CHROMIUM_PATH: process.env.CHROMIUM_PATH };

afterEach(() => {
  for (const [k, v] of Object.entries(saved)) {
    if (v === undefined) delete process.env[k];
    else process.env[k] = v;
  }
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe("chromium discovery", () => {
  it("PRIMAL_CHROMIUM pointing nowhere gives a clear error", async () => {
    const missing = join(dir, "no-such-chromium");
    process.env.PRIMAL_CHROMIUM = missing;
    const attempt = plots.exportFigure(fig, join(dir, "x.png"));
    await expect(attempt).rejects.toThrow(plots.ChromiumNotFoundError);
    await expect(plots.exportFigure(fig, join(dir, "x.pdf"))).rejects.toThrow(missing);
    await expect(plots.exportFigure(fig, join(dir, "x.svg"))).rejects.toThrow(/apt-get install chromium/);
    await expect(plots.exportFigure(fig, join(dir, "x.svg"))).rejects.toThrow(/PRIMAL_CHROMIUM/);
    // HTML export needs no browser.
    await expect(plots.exportFigure(fig, join(dir, "x.html"))).resolves.toBe(join(dir, "x.html"));
  });

  it("withExporter fails before calling back", async () => {
    process.env.PRIMAL_CHROMIUM = join(dir, "no-such-chromium");
    let called = false;
    await expect(
      plots.withExporter(async () => {
        called = true;
      }),
    ).rejects.toThrow(plots.ChromiumNotFoundError);
    expect(called).toBe(false);
  });

  it("a directory or non-executable file is refused", () => {
    const plain = join(dir, "plain");
    writeFileSync(plain, "");
    chmodSync(plain, 0o644);
    expect(() => plots.resolveChromium({ PRIMAL_CHROMIUM: dir })).toThrow(/not an executable file/);
    expect(() => plots.resolveChromium({ CHROMIUM_PATH: plain })).toThrow(/CHROMIUM_PATH/);
    expect(plots.findChromium({ PRIMAL_CHROMIUM: plain })).toBeNull();
  });

  it("searches PATH for the usual names, PRIMAL_CHROMIUM first", () => {
    const bin = join(dir, "bin");
    const other = join(dir, "other");
    for (const [d, name] of [
      [bin, "chromium-browser"],
      [other, "google-chrome"],
    ] as const) {
      mkdirSync(d, { recursive: true });
      writeFileSync(join(d, name), "#!/bin/sh\n");
      chmodSync(join(d, name), 0o755);
    }
    expect(plots.resolveChromium({ PATH: [join(dir, "empty"), bin, other].join(delimiter) })).toBe(
      join(bin, "chromium-browser"),
    );
    expect(plots.resolveChromium({ PATH: other })).toBe(join(other, "google-chrome"));
    expect(plots.resolveChromium({ PATH: bin, PRIMAL_CHROMIUM: join(other, "google-chrome") })).toBe(
      join(other, "google-chrome"),
    );
    expect(() => plots.resolveChromium({ PATH: join(dir, "empty") })).toThrow(/No Chromium found/);
  });

  it("a file that is not a browser fails to launch with the path in the message", async () => {
    const fake = join(dir, "fake-chromium");
    writeFileSync(fake, "#!/bin/sh\nexit 3\n");
    chmodSync(fake, 0o755);
    await expect(plots.createExporter({ chromiumPath: fake, timeoutMs: 15_000 })).rejects.toThrow(
      /could not start Chromium at/,
    );
  }, 30_000);
});
