// The headless browser behind figure export, run in a worker thread (see export.ts): one
// Chromium with plotly.js and the embedded font loaded, answering render requests.
//
// Why a worker: an open browser connection keeps Node's event loop alive, so a browser kept
// for reuse in the main thread would stop a script from ever exiting. A worker that is
// unref'd while idle lets the process end on its own; Chromium, driven through a pipe, exits
// with it.
//
// `exportWorkerMain` is started from its own source text (Function#toString), so it must not
// refer to anything outside its body: everything it needs comes in workerData.

/** What the worker needs; all paths absolute. */
export interface ExportWorkerData {
  playwright: string;
  chromium: string;
  args: readonly string[];
  profile: string;
  timeoutMs: number;
  plotlyPath: string;
  /** @font-face rules (with data: URLs) loaded into the page and embedded into SVGs that use them. */
  fontCss: { family: string; css: string; sample: string }[];
}

/** One render request; `fig` is plain JSON. */
export interface RenderRequest {
  id: number;
  op: "svg" | "png" | "pdf" | "close";
  fig?: unknown;
  width?: number;
  height?: number;
  scale?: number;
}

export interface RenderReply {
  id: number;
  ok: boolean;
  result?: string | Uint8Array;
  error?: string;
}

export function exportWorkerMain(): void {
  /* eslint-disable @typescript-eslint/no-require-imports */
  const { parentPort, workerData } = require("node:worker_threads") as typeof import("node:worker_threads");
  const fs = require("node:fs") as typeof import("node:fs");
  const data = workerData as ExportWorkerData;
  const { chromium } = require(data.playwright) as typeof import("playwright-core");
  /* eslint-enable @typescript-eslint/no-require-imports */
  const port = parentPort as NonNullable<typeof parentPort>;
  const fontStyle = data.fontCss.map((f) => f.css).join("\n");

  type Ctx = Awaited<ReturnType<typeof chromium.launchPersistentContext>>;
  type Pg = Awaited<ReturnType<Ctx["newPage"]>>;
  let context: Ctx | undefined;
  let page: Pg | undefined;

  const start = async (): Promise<void> => {
    context = await chromium.launchPersistentContext(data.profile, {
      executablePath: data.chromium,
      headless: true,
      args: [...data.args],
      timeout: data.timeoutMs,
      offline: true,
    });
    context.setDefaultTimeout(data.timeoutMs);
    // Belt and braces with `offline`: any http(s)/ws request a figure might trigger is refused.
    await context.route(/^(https?|wss?):/, (route) => route.abort());
    page = context.pages()[0] ?? (await context.newPage());
    // plotly.js wrapped so that it defines window.Plotly whatever globals the page has.
    const plotly = fs.readFileSync(data.plotlyPath, "utf8").replace(/<\/(script)/gi, "<\\/$1");
    await page.setContent(
      `<!DOCTYPE html><html><head><meta charset="utf-8"><style>${fontStyle}</style>` +
        `<script>(function (module, exports, define) {\n${plotly}\n}).call(self);</script></head><body></body></html>`,
      { waitUntil: "load" },
    );
    // Fonts load lazily: load them before Plotly measures any text with them.
    const ok = await page.evaluate(async (fonts) => {
      for (const f of fonts) await document.fonts.load(`12px "${f.family}"`, f.sample);
      return typeof (globalThis as unknown as { Plotly?: unknown }).Plotly === "object";
    }, data.fontCss);
    if (!ok) throw new Error("plotly.js did not load in the headless browser");
  };

  /**
   * One round trip into the page: Plotly draws the SVG, the page embeds the @font-face rules of
   * the fonts it uses (so it shows the same anywhere) and, for a PNG, draws that SVG on a canvas.
   * (Plotly's own PNG draws the SVG as an image, which cannot see the page's web fonts, so its
   * text would fall back to a system font.)
   */
  const render = async (req: RenderRequest, format: "svg" | "png"): Promise<string> =>
    (page as Pg).evaluate(
      async ({ f, width, height, scale, format, fonts }) => {
        const P = (globalThis as unknown as { Plotly: { toImage(fig: unknown, o: unknown): Promise<string> } }).Plotly;
        let svg = await P.toImage(f, { format: "svg", width, height, scale: 1, imageDataOnly: true });
        const used = fonts.filter((x) => svg.includes(x.family));
        if (used.length > 0)
          svg = svg.replace(/^(<svg[^>]*>)/, `$1<style>${used.map((x) => x.css).join("\n")}</style>`);
        if (format === "svg") return svg;
        const url = URL.createObjectURL(new Blob([svg], { type: "image/svg+xml" }));
        try {
          const img = new Image();
          img.src = url;
          await img.decode();
          const canvas = document.createElement("canvas");
          canvas.width = Math.round(width * scale);
          canvas.height = Math.round(height * scale);
          (canvas.getContext("2d") as CanvasRenderingContext2D).drawImage(img, 0, 0, canvas.width, canvas.height);
          return canvas.toDataURL("image/png").slice("data:image/png;base64,".length);
        } finally {
          URL.revokeObjectURL(url);
        }
      },
      {
        f: req.fig,
        width: req.width ?? 900,
        height: req.height ?? 500,
        scale: req.scale ?? 1,
        format,
        fonts: data.fontCss,
      },
    );

  // PDFs are printed from a page of their own, kept for the next one.
  let pdfPage: Pg | undefined;

  const handle = async (req: RenderRequest): Promise<string | Uint8Array> => {
    if (req.op === "svg") return render(req, "svg");
    if (req.op === "png") return Buffer.from(await render(req, "png"), "base64");
    // Vector PDF: the SVG printed on one page of exactly the figure's size, fonts embedded.
    const svg = await render(req, "svg");
    pdfPage ??= await (context as Ctx).newPage();
    await pdfPage.setContent(
      `<!DOCTYPE html><html><head><meta charset="utf-8"><style>${fontStyle}\n` +
        `@page{size:${req.width}px ${req.height}px;margin:0}html,body{margin:0;padding:0}svg{display:block}` +
        `</style></head><body>${svg}</body></html>`,
      { waitUntil: "load" },
    );
    await pdfPage.evaluate(() => document.fonts.ready.then(() => undefined));
    const pdf = await pdfPage.pdf({
      width: `${req.width}px`,
      height: `${req.height}px`,
      printBackground: true,
      margin: { top: "0", right: "0", bottom: "0", left: "0" },
      pageRanges: "1",
    });
    return new Uint8Array(pdf);
  };

  const started = start();
  started.then(
    () => port.postMessage({ id: 0, ok: true } satisfies RenderReply),
    (e: unknown) =>
      port.postMessage({ id: 0, ok: false, error: String((e as Error)?.message ?? e) } satisfies RenderReply),
  );
  // Requests are answered one at a time, in order: one page renders one figure at a time.
  let queue: Promise<void> = started.catch(() => undefined);
  port.on("message", (req: RenderRequest) => {
    queue = queue.then(async () => {
      if (req.op === "close") {
        try {
          await context?.close();
        } finally {
          fs.rmSync(data.profile, { recursive: true, force: true });
          port.postMessage({ id: req.id, ok: true } satisfies RenderReply);
          port.close();
        }
        return;
      }
      try {
        if (!page) throw new Error("the headless browser did not start");
        const result = await handle(req);
        port.postMessage({ id: req.id, ok: true, result } satisfies RenderReply);
      } catch (e) {
        port.postMessage({ id: req.id, ok: false, error: String((e as Error)?.message ?? e) } satisfies RenderReply);
      }
    });
  });
}
