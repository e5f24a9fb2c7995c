// The installed kernel driven by a real Jupyter client (python3 jupyter_client), from a
// directory outside the package: imports resolve, type errors warn, figures and tables render,
// and a Jupyter interrupt stops `await t.train(n)` at the next step boundary without losing
// anything, after which training continues.
import { execFileSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { findChromium } from "../../src/plots/export.js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { installKernel } from "../../kernel/install.js";
import { packageRoot } from "../../src/paths.js";
import { findPython } from "./python.js";

const CLIENT = fileURLToPath(new URL("../notebooks/kernel_client.py", import.meta.url));
const launcher = join(packageRoot(), "dist", "kernel", "launch.js");
const ARTIFACTS = join(packageRoot(), "test", "artifacts");

interface Output {
  type: string;
  t: number;
  content: { name?: string; text?: string; data?: Record<string, unknown> };
}
interface CellResult {
  status: string;
  seconds: number;
  interrupted_at: number | null;
  outputs: Output[];
}

const python = existsSync(launcher) ? findPython(["jupyter_client"]) : null;

describe.skipIf(!python)("PRIMAL kernel under jupyter_client", () => {
  let tmp: string;
  let results: CellResult[];
  let clientSeconds = 0;

  beforeAll(async () => {
    tmp = mkdtempSync(join(tmpdir(), "primal-kernel-client-"));
    const prefix = join(tmp, "prefix");
    await installKernel({ prefix });
    const notebookDir = join(tmp, "notebook-dir"); // not inside the package: resolution via the kernelspec
    execFileSync("mkdir", ["-p", notebookDir]);
    const script = {
      kernel: "primal",
      cwd: notebookDir,
      startup_timeout: 90,
      cells: [
        {
          code: [
            'import { Trainer, plots } from "primal";',
            'import { show } from "primal/kernel";',
            'const t = await Trainer.create({ preset: "tiny", device: "cpu", threads: 2, sampleEvery: 0, checkpointEvery: 0, steps: 100000, eval: { maxTokens: 0 } });',
            "t.step",
          ].join("\n"),
          timeout: 120,
        },
        // Interrupt once the live output shows training under way.
        {
          code: "await t.train(1000000)",
          timeout: 120,
          interrupt_after: 2,
          interrupt_when: 'data-status=\\"running\\" data-step=\\"',
        },
        {
          code: [
            "const before = t.step;",
            "const s2 = await t.train(2);",
            "const m = t.run.metrics;",
            'JSON.stringify({ before, after: s2.step, stopped: s2.stopped, rows: m.numRows, lastStep: m.getChild("step")!.get(m.numRows - 1), events: t.run.events.map((e) => e.kind) })',
          ].join("\n"),
          timeout: 120,
        },
        { code: "plots.loss(t.run)", timeout: 60 },
        {
          code: 'import { tableFromArrays } from "apache-arrow";\nconst layers = t.layers();\nconst extra = tableFromArrays({ x: Int32Array.from([1, 2, 3]) });\nshow(extra);\nlayers',
          timeout: 60,
        },
        { code: 'const wrong: number = "still runs";\nwrong', timeout: 60 },
        // Nothing training: the interrupt abandons the await, as in tslab.
        { code: "await new Promise((r) => setTimeout(r, 60000))", timeout: 60, interrupt_after: 1.5 },
        // The whole validation split (about 1M tokens): interrupted once its progress shows.
        // tslab aborts requests that arrive within 200 ms of an error (stop-on-error): wait a bit.
        {
          code: "await t.evaluate()",
          timeout: 120,
          delay: 0.5,
          interrupt_after: 0.5,
          interrupt_when: 'class=\\"primal-eval\\" data-status=\\"running\\"',
        },
        { code: "const s3 = await t.train(3);\ns3.steps", timeout: 60, delay: 0.5 },
        // A loop of train() calls updates one output.
        { code: "for (let i = 0; i < 3; i++) await t.train(2);\nt.step", timeout: 60 },
        // A user error: its message and the cell's own frames, not the kernel's.
        {
          code: "function check(x: number) {\n  if (x > 1) throw new RangeError(`x is too big: ${x}`);\n}\ncheck(5)",
          timeout: 60,
        },
        { code: "t.dispose();\n'disposed'", timeout: 60, delay: 0.5 },
        // An object shorthand naming a variable of an earlier cell.
        { code: "JSON.stringify({ wrong })", timeout: 60 },
      ],
    };
    const scriptPath = join(tmp, "script.json");
    writeFileSync(scriptPath, JSON.stringify(script));
    const t0 = performance.now();
    const out = execFileSync(python as string, [CLIENT, scriptPath], {
      env: {
        ...process.env,
        JUPYTER_PATH: join(prefix, "share", "jupyter"),
        JUPYTER_RUNTIME_DIR: join(tmp, "runtime"),
        PRIMAL_HOME: join(tmp, "runs"),
        PYDEVD_DISABLE_FILE_VALIDATION: "1",
      },
      encoding: "utf8",
      maxBuffer: 64 * 1024 * 1024,
      timeout: 280_000,
    });
    clientSeconds = (performance.now() - t0) / 1000;
    results = (JSON.parse(out) as { cells: CellResult[] }).cells;
    // Kept for diagnosis when an assertion fails (test/artifacts is git-ignored).
    mkdirSync(ARTIFACTS, { recursive: true });
    writeFileSync(join(ARTIFACTS, "kernel-client-session.json"), JSON.stringify({ script, results }, null, 1));
  }, 300_000);

  afterAll(() => {
    if (tmp) rmSync(tmp, { recursive: true, force: true });
    console.log(`kernel client session: ${clientSeconds.toFixed(1)} s`);
  });

  const text = (r: CellResult, stream = "stdout") =>
    r.outputs
      .filter((o) => o.type === "stream" && o.content.name === stream)
      .map((o) => o.content.text)
      .join("");
  const displays = (r: CellResult) =>
    r.outputs.filter((o) => o.type === "display_data" || o.type === "update_display_data");

  it("imports primal and primal/kernel from a directory outside the package", () => {
    const r = results[0] as CellResult;
    expect(r.status).toBe("ok");
    expect(text(r, "stderr")).toBe("");
    expect(text(r).trim()).toBe("0");
  });

  it("stops training at a step boundary on interrupt and shows a stopped summary", () => {
    const r = results[1] as CellResult;
    expect(r.interrupted_at).not.toBeNull();
    expect(r.status).toBe("ok");
    // The cell ends promptly after the interrupt (a tiny step takes tens of ms).
    expect(r.seconds - (r.interrupted_at as number)).toBeLessThan(5);
    const updates = displays(r);
    expect(updates[0]?.type).toBe("display_data");
    expect(updates.slice(1).every((o) => o.type === "update_display_data")).toBe(true);
    const last = updates.at(-1)?.content.data as Record<string, string>;
    expect(last["text/html"]).toContain('data-status="stopped"');
    expect(last["text/plain"]).toMatch(/^interrupted at step \d+ after \d+ of 1000000 steps/);
    // The summary is the output; the returned object is not printed again.
    expect(text(r)).toBe("");
  });

  it("continues training in the next cell with nothing lost", () => {
    const r = results[2] as CellResult;
    expect(r.status).toBe("ok");
    const v = JSON.parse(text(r).trim()) as {
      before: number;
      after: number;
      stopped: boolean;
      rows: number;
      lastStep: number;
      events: string[];
    };
    expect(v.before).toBeGreaterThan(0);
    expect(v.after).toBe(v.before + 2);
    expect(v.stopped).toBe(false);
    expect(v.rows).toBe(v.after);
    expect(v.lastStep).toBe(v.after);
    expect(v.events).toContain("stop");
  });

  it("renders a figure value as a Plotly bundle and a table value as an Arrow table", () => {
    const fig = displays(results[3] as CellResult)[0]?.content.data as Record<string, unknown>;
    // Data only: the Plotly JSON, a PNG made by the kernel's headless browser (when there is one), text.
    expect(Object.keys(fig).sort()).toEqual(
      findChromium()
        ? ["application/vnd.plotly.v1+json", "image/png", "text/plain"]
        : ["application/vnd.plotly.v1+json", "text/plain"],
    );
    const plotly = fig["application/vnd.plotly.v1+json"] as { data: { name: string; x: number[] }[] };
    expect(plotly.data[0]?.name).toBe("train loss");
    // apache-arrow (a dependency of primal) imports from the notebook directory too.
    const tables = displays(results[4] as CellResult);
    expect(results[4]?.status).toBe("ok");
    expect(text(results[4] as CellResult, "stderr")).toBe("");
    expect(tables).toHaveLength(2);
    expect(tables[0]?.content.data?.["text/plain"]).toMatch(/^Arrow Table: 3 rows × 1 column/);
    const table = tables[1]?.content.data as Record<string, unknown>;
    expect(table["text/html"]).toContain('data-column="scale"');
    expect(table["text/plain"]).toMatch(/^Arrow Table: 14 rows/);
    expect(table["application/vnd.dataresource+json"]).toBeDefined();
  });

  it("reports type errors as muted warnings and still runs the cell", () => {
    const r = results[5] as CellResult;
    expect(r.status).toBe("ok");
    expect(text(r, "stderr")).toBe("");
    const warning = displays(r)[0]?.content.data as Record<string, string>;
    expect(warning["text/plain"]).toContain("type warning 1:7");
    expect(warning["text/html"]).toContain('class="primal-warning"');
    expect(text(r).trim()).toBe("still runs");
  });

  it("abandons a non-training await on interrupt with a one-line notice, and the kernel stays usable", () => {
    const r = results[6] as CellResult;
    expect(r.interrupted_at).not.toBeNull();
    expect(r.status).toBe("error");
    expect(r.seconds).toBeLessThan(10);
    expect(text(r, "stderr")).toBe("");
    expect(displays(r).map((o) => o.content.data?.["text/plain"])).toEqual([expect.stringMatching(/^⏹ interrupted/)]);
    expect(text(results[11] as CellResult).trim()).toBe("disposed");
  });

  it("resolves `{ name }` shorthands to variables of earlier cells", () => {
    expect(text(results[12] as CellResult).trim()).toBe('{"wrong":"still runs"}');
  });

  it("shows evaluation progress, and an interrupt cancels the native evaluation", () => {
    const r = results[7] as CellResult;
    expect(r.interrupted_at).not.toBeNull();
    expect(r.status).toBe("error");
    expect(text(r, "stderr")).toBe("");
    const outs = displays(r).map((o) => o.content.data as Record<string, string>);
    const progress = outs.filter((d) => d["text/html"]?.includes("primal-eval"));
    expect(progress[0]?.["text/plain"]).toMatch(/^evaluating/);
    expect(progress.at(-1)?.["text/html"]).toContain('data-status="interrupted"');
    expect(outs.at(-1)?.["text/plain"]).toMatch(/^⏹ evaluation was interrupted/);
    // The next call does not wait for an evaluation still running natively.
    const next = results[8] as CellResult;
    expect(next.status).toBe("ok");
    expect(text(next).trim()).toBe("3");
    expect(displays(next).some((o) => String(o.content.data?.["text/plain"]).includes("waiting"))).toBe(false);
  });

  it("updates one output for a loop of train() calls", () => {
    const r = results[9] as CellResult;
    expect(r.status).toBe("ok");
    const outs = displays(r);
    expect(outs.filter((o) => o.type === "display_data")).toHaveLength(1);
    expect(String(outs.at(-1)?.content.data?.["text/plain"])).toMatch(/^trained 6 steps: .* · 3 calls/);
  });

  it("shows a user error as its message and the cell's frames only", () => {
    const r = results[10] as CellResult;
    expect(r.status).toBe("error");
    const err = text(r, "stderr");
    expect(err).toMatch(/^RangeError: x is too big: 5\n/);
    expect(err).toContain("evalmachine.<anonymous>");
    expect(err).not.toMatch(/tslab|node:internal|launch\.js/);
    expect(err).toContain("PRIMAL_FULL_TRACE=1");
  });
});
