// Rich display bundles (Plotly figures, Arrow tables, live training output) without a kernel.
import { tableFromArrays } from "apache-arrow";
import { afterEach, describe, expect, it, vi } from "vitest";
import {
  figureBundle,
  inKernel,
  isArrowTable,
  isFigure,
  richBundle,
  setDisplay,
  show,
  tableBundle,
} from "../../kernel/display.js";
import { findChromium } from "../../src/plots/export.js";
import { progressBundle } from "../../kernel/training.js";
import type { Figure } from "../../src/plots/figure.js";

const PLOTLY_MIME = "application/vnd.plotly.v1+json";

function lineFigure(n = 5): Figure {
  return {
    // Builders may put typed arrays into traces; bundles must turn them into JSON arrays.
    data: [
      {
        type: "scatter",
        mode: "lines",
        name: "train loss",
        x: Float64Array.from({ length: n }, (_, i) => i + 1) as unknown as number[],
        y: Array.from({ length: n }, (_, i) => 5 - i * 0.1),
      },
    ],
    layout: { title: { text: "loss · demo" } },
    config: { responsive: true },
  };
}

afterEach(() => {
  vi.restoreAllMocks();
});

describe("detection", () => {
  it("recognises Plotly figures and Arrow tables, and nothing else", () => {
    expect(isFigure(lineFigure())).toBe(true);
    expect(isFigure({ data: [], layout: {} })).toBe(true);
    expect(isFigure({ data: [1], layout: {} })).toBe(false);
    expect(isFigure({ data: [], layout: [] })).toBe(false);
    expect(isFigure(null)).toBe(false);
    const table = tableFromArrays({ a: Int32Array.from([1, 2]) });
    expect(isArrowTable(table)).toBe(true);
    expect(isArrowTable({ numRows: 2 })).toBe(false);
    expect(isFigure(table)).toBe(false);
    expect(richBundle({ steps: 3 })).toBeNull();
    expect(richBundle("text")).toBeNull();
  });

  it("is not in a kernel here", () => {
    expect(inKernel()).toBe(false);
  });
});

describe("figureBundle", () => {
  it("carries Plotly JSON and text: data, no code and no plotly.js", () => {
    const b = figureBundle(lineFigure(4));
    expect(Object.keys(b).sort()).toEqual([PLOTLY_MIME, "text/plain"].sort());
    const json = b[PLOTLY_MIME] as { data: { x: number[]; name: string }[]; layout: unknown; config: unknown };
    // Typed arrays become plain JSON arrays.
    expect(json.data[0]?.x).toEqual([1, 2, 3, 4]);
    expect(json.data[0]?.name).toBe("train loss");
    expect(json.config).toEqual({ responsive: true });
    expect(b["text/plain"]).toContain('"loss · demo"');
    expect(b["text/plain"]).toContain('scatter "train loss"');
    // Every figure the same, whatever was displayed before: nothing depends on the page's history.
    expect(JSON.stringify(figureBundle(lineFigure(4)))).toBe(JSON.stringify(b));
    expect(JSON.stringify(b).length).toBeLessThan(5_000);
  });
});

describe("tableBundle", () => {
  const table = tableFromArrays({
    step: Int32Array.from({ length: 100 }, (_, i) => i + 1),
    loss: Float32Array.from({ length: 100 }, (_, i) => 5 / (i + 1)),
    name: Array.from({ length: 100 }, (_, i) => `blocks.${i % 2}.mlp.up`),
  });

  it("renders schema, size, head and tail as HTML", () => {
    const b = tableBundle(table, { head: 3, tail: 2 });
    const html = b["text/html"] as string;
    expect(html).toContain("100 rows × 3 columns");
    for (const col of ["step", "loss", "name"]) expect(html).toContain(`data-column="${col}"`);
    expect(html).toContain("Int32");
    expect(html).toContain("Float32");
    const rows = html.match(/<tr>/g) ?? [];
    // header + 3 head + gap + 2 tail
    expect(rows.length).toBe(1 + 3 + 1 + 2);
    expect(html).toContain("<td>100</td>");
    expect(html).toContain("<td>…</td>");
    const text = b["text/plain"] as string;
    expect(text.split("\n")[0]).toBe("Arrow Table: 100 rows × 3 columns");
    expect(text).toContain("blocks.1.mlp.up");
  });

  it("adds a data resource with Table Schema types", () => {
    const b = tableBundle(table, { dataRows: 10 });
    const res = b["application/vnd.dataresource+json"] as {
      schema: { fields: { name: string; type: string }[] };
      data: Record<string, unknown>[];
    };
    expect(res.schema.fields).toEqual([
      { name: "step", type: "integer" },
      { name: "loss", type: "number" },
      { name: "name", type: "string" },
    ]);
    expect(res.data).toHaveLength(10);
    expect(res.data[0]).toEqual({ step: 1, loss: 5, name: "blocks.0.mlp.up" });
  });

  it("shows small tables whole and escapes HTML", () => {
    const t = tableFromArrays({ label: ["<b>&</b>", "x"] });
    const html = tableBundle(t)["text/html"] as string;
    expect(html).toContain("&#60;b&#62;&#38;&#60;/b&#62;");
    expect(html).not.toContain("<td>…</td>");
    expect(html).toContain("2 rows × 1 column");
  });
});

describe("show outside a kernel", () => {
  it("prints the text/plain part", () => {
    const writes: string[] = [];
    vi.spyOn(process.stdout, "write").mockImplementation((chunk: string | Uint8Array) => {
      writes.push(String(chunk));
      return true;
    });
    show(tableFromArrays({ a: Int32Array.from([7]) }));
    show({ "text/plain": "raw text", "text/html": "<b>raw</b>" }, { raw: true });
    expect(writes.join("")).toContain("Arrow Table: 1 row × 1 column");
    expect(writes.join("")).toContain("raw text");
  });
});

describe("progressBundle", () => {
  const base = {
    runId: "run-1",
    startStep: 10,
    target: 20,
    done: 5,
    step: 15,
    loss: 2.5,
    tokensPerSec: 12345,
    elapsed: 2,
    eta: 6,
    sample: { step: 15, prompt: "The future", text: " is  bright\nand", temperature: 0.8, topK: 40, seed: 1 },
    runDir: "/runs/run-1",
  };

  it("shows step, loss, tokens/s, ETA and the latest sample while running", () => {
    const b = progressBundle({ ...base, status: "running" });
    const text = b["text/plain"] as string;
    expect(text).toContain("training step 15 (5/20)");
    expect(text).toContain("loss 2.5000");
    expect(text).toContain("12.3k tok/s");
    expect(text).toContain("ETA 0:06");
    expect(text).toContain("sample @15: The future is bright and");
    expect(b["text/html"]).toContain('data-status="running"');
    expect(b["text/html"]).toContain("width:25.0%");
  });

  it("becomes a summary when finished or interrupted", () => {
    expect(progressBundle({ ...base, status: "finished", done: 10, step: 20 })["text/plain"]).toContain(
      "trained 10 steps: step 10 → 20",
    );
    const stopped = progressBundle({ ...base, status: "stopped", interrupted: true });
    expect(stopped["text/plain"]).toContain("interrupted at step 15 after 5 of 20 steps");
    expect(stopped["text/plain"]).toContain("/runs/run-1");
    expect(progressBundle({ ...base, status: "failed", error: "loss is NaN" })["text/html"]).toContain("loss is NaN");
  });
});

describe("the Jupyter.display protocol", () => {
  it("figures and tables made by the library display themselves (as in Deno's kernel)", async () => {
    const plots = await import("../../src/plots/index.js");
    const { weightTable } = await import("../../src/tables.js");
    const fig = plots.voteHistogram(tableFromArrays({ value: Int8Array.from([-3, 0, 2, 5]) }));
    const display = (fig as unknown as Record<symbol, () => Record<string, unknown>>)[Symbol.for("Jupyter.display")];
    expect(typeof display).toBe("function");
    setDisplay("mime"); // synchronous (the default, "static", promises a bundle with a PNG)
    const bundle = display!.call(fig);
    setDisplay("static");
    expect(Object.keys(bundle)).toContain(PLOTLY_MIME);
    // Not enumerable: JSON and spreads of a figure are unchanged.
    expect(Object.keys({ ...fig })).toEqual(Object.keys(fig));
    expect(JSON.parse(JSON.stringify(fig))).not.toHaveProperty("Symbol(Jupyter.display)");
    const table = weightTable(Int8Array.from([1, 0, -1, 1]), 2);
    const tb = (table as unknown as Record<symbol, () => Record<string, unknown>>)[Symbol.for("Jupyter.display")]!.call(
      table,
    );
    expect(tb["text/plain"]).toMatch(/^Arrow Table: 4 rows × 3 columns/);
  });

  it("richBundle uses a value's own display method", () => {
    const value = { [Symbol.for("Jupyter.display")]: () => ({ "text/markdown": "**hi**" }) };
    expect(richBundle(value)).toEqual({ "text/markdown": "**hi**" });
  });
});

describe("tables in human units", () => {
  it("shows timestamps as local time and bytes in GiB/MiB while the data stays exact", async () => {
    const { withUnits } = await import("../../src/tables.js");
    const ms = 1796004704818;
    const table = withUnits(
      tableFromArrays({
        time: Float64Array.from([ms]),
        peakMemoryBytes: Float64Array.from([16862658884]),
        weights: Float64Array.from([3 * 2 ** 20]),
      }),
      {
        timestamps: ["time"],
        bytes: ["weights"],
      },
    );
    expect(String(table.schema.fields[0]?.type)).toBe("Timestamp<MILLISECOND>");
    expect(table.getChild("time")?.get(0)).toBe(ms);
    expect(table.getChild("peakMemoryBytes")?.get(0)).toBe(16862658884);
    const b = tableBundle(table);
    const d = new Date(ms);
    const p = (x: number) => String(x).padStart(2, "0");
    const local = `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())} ${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}`;
    expect(b["text/html"]).toContain(`<td>${local}</td>`);
    expect(b["text/html"]).toContain("<td>15.70 GiB</td>");
    expect(b["text/html"]).toContain("<td>3.0 MiB</td>");
    const resource = b["application/vnd.dataresource+json"] as { data: Record<string, unknown>[] };
    expect(resource.data[0]).toEqual({
      time: new Date(ms).toISOString(),
      peakMemoryBytes: 16862658884,
      weights: 3 * 2 ** 20,
    });
  });

  it("shows the first 10 columns of a wide table and names the rest; all columns on request", () => {
    const cols: Record<string, Int32Array> = {};
    for (let i = 0; i < 14; i++) cols[`c${i}`] = Int32Array.from([i]);
    const table = tableFromArrays(cols);
    const b = tableBundle(table);
    expect((b["text/html"] as string).match(/data-column=/g)).toHaveLength(10);
    expect(b["text/plain"]).toContain('4 more columns: c10, c11, c12, c13 (show(table, { columns: "all" })');
    expect(b["text/plain"]).toMatch(/^Arrow Table: 1 row × 14 columns/);
    expect((tableBundle(table, { columns: "all" })["text/html"] as string).match(/data-column=/g)).toHaveLength(14);
    expect(
      (tableBundle(table, { columns: ["c3", "c1"] })["text/html"] as string).match(/data-column="(c\d+)"/g),
    ).toEqual(['data-column="c3"', 'data-column="c1"']);
    const resource = b["application/vnd.dataresource+json"] as { schema: { fields: unknown[] } };
    expect(resource.schema.fields).toHaveLength(14);
  });
});

describe("display modes", () => {
  afterEach(() => {
    setDisplay("static");
  });

  it("mime sends only the Plotly JSON and text; unknown modes are refused", async () => {
    const plots = await import("../../src/plots/index.js");
    expect(setDisplay("mime")).toBe("static");
    const fig = plots.voteHistogram(Int8Array.from([1, -2]));
    const b = richBundle(fig) as Record<string, unknown>;
    expect(Object.keys(b).sort()).toEqual([PLOTLY_MIME, "text/plain"]);
    expect(JSON.stringify(b).length).toBeLessThan(20_000);
    expect(() => setDisplay("inline" as never)).toThrow(/"static", "mime"/);
  });

  it.skipIf(!findChromium())(
    `static (the default) adds a PNG rendered by the shared headless Chromium${!findChromium() ? " (skipped: no Chromium)" : ""}`,
    async () => {
      const plots = await import("../../src/plots/index.js");
      const pending = richBundle(plots.voteHistogram(Int8Array.from([1, -2, 3])));
      expect(pending).toBeInstanceOf(Promise);
      const b = (await pending) as Record<string, string>;
      expect(Object.keys(b).sort()).toEqual([PLOTLY_MIME, "image/png", "text/plain"]);
      const png = Buffer.from(b["image/png"] as string, "base64");
      expect(png.subarray(1, 4).toString()).toBe("PNG");
      expect(png.readUInt32BE(16)).toBe(900); // CSS size: light enough to save in a notebook
      await plots.closeSharedExporter();
    },
    120_000,
  );

  it("static without a browser keeps the JSON and says why there is no image", async () => {
    const plots = await import("../../src/plots/index.js");
    const before = process.env.PRIMAL_CHROMIUM;
    process.env.PRIMAL_CHROMIUM = "/nonexistent/chromium";
    try {
      await plots.closeSharedExporter();
      const b = (await plots.figureBundleStatic(plots.voteHistogram(Int8Array.from([1])))) as Record<string, string>;
      expect(Object.keys(b).sort()).toEqual([PLOTLY_MIME, "text/plain"]);
      expect(b["text/plain"]).toContain("no static image: PRIMAL_CHROMIUM is set to");
    } finally {
      if (before === undefined) delete process.env.PRIMAL_CHROMIUM;
      else process.env.PRIMAL_CHROMIUM = before;
    }
  });
});
