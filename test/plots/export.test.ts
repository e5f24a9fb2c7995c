import { Float32, Table, vectorFromArray } from "apache-arrow";
import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import * as plots from "../../src/plots/index.js";
import { packageRoot } from "../../src/paths.js";

const chromium = plots.findChromium();
const dir = mkdtempSync(join(tmpdir(), "primal-plots-export-"));

function lossFigure(): plots.Figure {
  const step = Int32Array.from({ length: 30 }, (_, i) => i + 1);
  const metrics = new Table({
    step: vectorFromArray(step),
    loss: vectorFromArray(Float32Array.from(step, (s) => 5.5 - Math.log(s))),
    valLoss: vectorFromArray(
      Array.from(step, (s) => (s % 10 === 0 ? 4.5 - Math.log(s) : null)),
      new Float32(),
    ),
  });
  return plots.loss({
    id: "export-test",
    metrics,
    layers: new Table({}),
    events: [{ step: 15, kind: "set", knob: "bridge", old: 2 / 3, new: 0.7 }],
  });
}

afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe("html export (no browser needed)", () => {
  it("writes a standalone offline page", async () => {
    const path = join(dir, "sub", "loss.html");
    expect(await plots.exportFigure(lossFigure(), path)).toBe(path);
    const html = readFileSync(path, "utf8");
    expect(html.startsWith("<!DOCTYPE html>")).toBe(true);
    expect(html).toContain(plots.plotlyBundleSource());
    expect(html).toContain('"train loss"');
    expect(html).toContain("bridge 0.667→0.7");
    expect(html).not.toMatch(/<script[^>]*\ssrc\s*=\s*["']?(https?:)?\/\//i);
    expect(html).not.toMatch(/<link[^>]*href\s*=\s*["']?https?:/i);
  });

  it("pages can share one plotly.js written beside them", async () => {
    const a = join(dir, "shared", "a.html");
    const b = join(dir, "shared", "b.html");
    await plots.exportFigure(lossFigure(), a, { plotlyJs: "beside" });
    await plots.exportFigure(lossFigure(), b, { plotlyJs: "beside" });
    const js = join(dir, "shared", plots.plotlyFileName());
    expect(readFileSync(js, "utf8")).toBe(plots.plotlyBundleSource());
    const html = readFileSync(b, "utf8");
    expect(html).toContain(`<script type="text/javascript" src="${plots.plotlyFileName()}"></script>`);
    expect(html).not.toContain(plots.plotlyBundleSource().slice(0, 200));
    expect(html.length).toBeLessThan(50_000);
  });

  it("figureHtml fragments inline plotly.js only when asked", () => {
    const fig = lossFigure();
    const bare = plots.figureHtml(fig, { includePlotlyJs: false, divId: "my-div" });
    expect(bare).toContain('id="my-div"');
    expect(bare).toContain("newPlot(");
    expect(bare).not.toContain("require(");
    expect(bare.length).toBeLessThan(20000);
    const full = plots.figureHtml(fig, { includePlotlyJs: true });
    expect(full).toContain(plots.plotlyBundleSource());
    expect(full).toMatch(/id="primal-plot-[0-9a-f-]+"/);
  });

  it("escapes text that would end the script", () => {
    const fig: plots.Figure = { data: [{ type: "scatter", y: [1], name: "</script><b>x</b>" }], layout: {} };
    const html = plots.figureHtml(fig, { includePlotlyJs: false });
    expect(html).not.toContain("</script><b>");
    expect(html.match(/<\/script>/g)).toHaveLength(1);
  });

  it("caches the bundle and knows its version", () => {
    expect(plots.plotlyBundleSource()).toBe(plots.plotlyBundleSource());
    expect(plots.plotlyVersion()).toMatch(/^\d+\.\d+\.\d+$/);
  });

  it("rejects unknown extensions", async () => {
    await expect(plots.exportFigure(lossFigure(), join(dir, "x.jpeg"))).rejects.toThrow(
      /\.html, \.svg, \.png or \.pdf/,
    );
  });
});

describe.runIf(chromium === null)("static export without Chromium", () => {
  it("throws a clear error", async () => {
    await expect(plots.exportFigure(lossFigure(), join(dir, "x.png"))).rejects.toThrow(plots.ChromiumNotFoundError);
    await expect(plots.exportFigure(lossFigure(), join(dir, "x.svg"))).rejects.toThrow(/apt-get install chromium/);
  });
});

/** Dots per inch recorded in a PNG's pHYs chunk (null without one). */
function pngDpi(png: Buffer): number | null {
  for (let off = 8; off < png.length;) {
    const len = png.readUInt32BE(off);
    if (png.toString("ascii", off + 4, off + 8) === "pHYs") return png.readUInt32BE(off + 8) * 0.0254;
    off += 12 + len;
  }
  return null;
}

describe.runIf(chromium !== null)("the shared browser", () => {
  afterAll(async () => {
    await plots.closeSharedExporter();
  });

  it("is started once and reused by exportFigure", async () => {
    const a = plots.sharedExporter();
    expect(plots.sharedExporter()).toBe(a);
    await plots.exportFigure(lossFigure(), join(dir, "shared-1.png"));
    await plots.exportFigure(lossFigure(), join(dir, "shared-2.svg"));
    expect(plots.sharedExporter()).toBe(a);
    // Closing the shared exporter's handle does not end it for others.
    await (await a).close();
    await plots.exportFigure(lossFigure(), join(dir, "shared-3.png"));
    expect(readFileSync(join(dir, "shared-3.png")).subarray(1, 4).toString()).toBe("PNG");
  }, 120_000);

  it("exportFigures writes many files in order and reports progress", async () => {
    const seen: string[] = [];
    const files = ["m1.png", "m2.svg", "m3.html"].map((f) => ({ figure: lossFigure(), path: join(dir, "many", f) }));
    const out = await plots.exportFigures(files, {
      onProgress: (done, total, path) => seen.push(`${done}/${total} ${path}`),
    });
    expect(out).toEqual(files.map((f) => f.path));
    expect(seen).toEqual(files.map((f, i) => `${i + 1}/3 ${f.path}`));
  }, 120_000);

  it.skipIf(!existsSync(join(packageRoot(), "dist", "src", "plots", "export.js")))(
    `does not keep a script alive: it exits right after its last export${!existsSync(join(packageRoot(), "dist", "src", "plots", "export.js")) ? " (skipped: dist/ not built)" : ""}`,
    () => {
      const script =
        `import { exportFigure } from ${JSON.stringify(pathToFileURL(join(packageRoot(), "dist", "src", "plots", "export.js")).href)};\n` +
        `await exportFigure({ data: [{ y: [1, 3, 2] }], layout: {} }, ${JSON.stringify(join(dir, "script.png"))});\n` +
        `console.log("exported");\n`;
      const r = spawnSync(process.execPath, ["--input-type=module", "-e", script], {
        encoding: "utf8",
        timeout: 90_000,
      });
      expect(r.error).toBeUndefined();
      expect(r.stderr).toBe("");
      expect(r.stdout).toContain("exported");
      expect(r.status).toBe(0);
    },
    120_000,
  );
});

describe.runIf(chromium !== null)("static export with Chromium", () => {
  let ex: plots.FigureExporter;
  beforeAll(async () => {
    ex = await plots.createExporter();
  }, 120_000);
  afterAll(async () => {
    await ex?.close();
  });

  it("writes svg", async () => {
    const path = join(dir, "loss.svg");
    await plots.exportFigure(lossFigure(), path, { exporter: ex, width: 640, height: 400 });
    const svg = readFileSync(path, "utf8");
    expect(svg.startsWith("<svg")).toBe(true);
    expect(svg).toContain("main-svg");
    expect(svg).toContain('width="640"');
    expect(svg).toContain("train loss");
    expect(svg).toContain("bridge 0.667→0.7");
    // The font it uses travels with it.
    expect(svg).toMatch(/^<svg[^>]*><style>@font-face\{font-family:"Arimo"/);
    expect(svg).toContain("data:font/woff2;base64,");
  }, 60_000);

  it("paper-style figures export at print size: 3.5 in at 300 dpi, vector PDF with the font embedded", async () => {
    const fig = plots.withStyle("paper", {}, () => lossFigure());
    expect(fig.layout.width).toBe(336);
    const png = await ex.toPng(fig);
    expect(png.readUInt32BE(16)).toBe(1050);
    expect(pngDpi(png)).toBeCloseTo(300, 0);
    const pdf = (await ex.toPdf(fig)).toString("latin1");
    const box = /\/MediaBox\s*\[\s*0 0 ([\d.]+) ([\d.]+)\s*\]/.exec(pdf);
    expect(Number(box?.[1])).toBeCloseTo(252, 0); // 3.5 in = 252 pt
    expect(pdf).toMatch(/\/FontFile2|\/FontFile3|\/FontFile\b/);
    expect(pdf).toMatch(/\/BaseFont\s*\/[A-Z]{6}\+Arimo/);
    // Text stays text: no raster image of the whole figure.
    expect(pdf).not.toMatch(/\/Subtype\s*\/Image/);
  }, 60_000);

  it("writes png at width·scale pixels", async () => {
    const path = join(dir, "loss.png");
    await plots.exportFigure(lossFigure(), path, { exporter: ex, width: 600, height: 350, scale: 2 });
    const png = readFileSync(path);
    expect([...png.subarray(0, 8)]).toEqual([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
    expect(png.readUInt32BE(16)).toBe(1200);
    expect(png.readUInt32BE(20)).toBe(700);
  }, 60_000);

  it("writes pdf", async () => {
    const path = join(dir, "loss.pdf");
    await plots.exportFigure(lossFigure(), path, { exporter: ex });
    const pdf = readFileSync(path);
    expect(pdf.subarray(0, 5).toString("latin1")).toBe("%PDF-");
    // One page of exactly 900×500 CSS px = 675×375 pt.
    const text = pdf.toString("latin1");
    expect(text.match(/\/Type\s*\/Page[^s]/g)).toHaveLength(1);
    const box = /\/MediaBox\s*\[\s*0 0 ([\d.]+) ([\d.]+)\s*\]/.exec(text);
    expect(Number(box?.[1])).toBeCloseTo(675, 0);
    expect(Number(box?.[2])).toBeCloseTo(375, 0);
  }, 60_000);

  it("exports other figures and takes the format from options", async () => {
    const heat: plots.Figure = {
      data: [
        {
          type: "heatmap",
          z: [
            [1, 2],
            [3, 4],
          ],
        },
      ],
      layout: { width: 300, height: 200 },
    };
    // Default scale 2, recorded in the file as 192 dpi (pHYs, pixels per metre).
    const png = await ex.toPng(heat);
    expect(png.readUInt32BE(16)).toBe(600);
    expect(pngDpi(png)).toBeCloseTo(192, 0);
    const path = join(dir, "heat.out");
    await ex.export(heat, path, { format: "svg" });
    expect(readFileSync(path, "utf8").startsWith("<svg")).toBe(true);
  }, 60_000);
});
