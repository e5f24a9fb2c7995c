// `primal export RUN --format gguf` end to end, and its bad inputs: a run without checkpoints, a
// missing step, an unsupported type for the run, an existing output (refused unless --force), a
// write that runs out of room (a file size limit in a child shell) - never a file left under the
// final name; Trainer.exportGGUF at the current step.
import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Trainer } from "../../src/trainer.js";
import { ensureDist, repoRoot } from "../reliability/fixtures/common.js";

const work = mkdtempSync(join(tmpdir(), "primal-export-cli-"));
const bin = join(repoRoot, "bin", "primal.js");
afterAll(() => rmSync(work, { recursive: true, force: true }));

function primal(args: string[], shellPrefix = "") {
  const cmd = [process.execPath, bin, ...args].map((a) => `'${a.replace(/'/g, "'\\''")}'`).join(" ");
  const r = spawnSync("bash", ["-c", `${shellPrefix}${cmd}`], { cwd: work, encoding: "utf8", timeout: 120_000 });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

const cfg = (quant: "poltergeist" | "fp", name: string) => ({
  preset: "tiny" as const,
  quant,
  device: "cpu" as const,
  threads: 1,
  home: work,
  name,
  steps: 3,
  warmup: 1,
  sampleEvery: 0,
  checkpointEvery: 0,
  eval: { every: 0, maxTokens: 200 },
});

let polt = "";
let fp = "";
let empty = "";
beforeAll(async () => {
  ensureDist();
  for (const [quant, name] of [
    ["poltergeist", "polt"],
    ["fp", "fp"],
  ] as const) {
    const t = await Trainer.create(cfg(quant, name));
    await t.train(3);
    if (quant === "poltergeist") polt = t.runDir;
    else fp = t.runDir;
    t.dispose();
  }
  const e = await Trainer.create(cfg("poltergeist", "empty"));
  empty = e.runDir;
  e.dispose();
});

describe("primal export", () => {
  it("writes a GGUF file for the latest checkpoint and says what it wrote", () => {
    const r = primal(["export", polt, "--format", "gguf"]);
    expect(r.code, r.stderr).toBe(0);
    const file = join(polt, "export", `${polt.split("/").at(-1)}-step3-auto.gguf`);
    expect(r.stdout).toContain(`wrote ${file}`);
    expect(r.stdout).toMatch(/step 3, type q4_0, .* bytes\/parameter/);
    expect(r.stdout).toMatch(/one fp16 scale per layer/);
    expect(readFileSync(file).toString("ascii", 0, 4)).toBe("GGUF");
    const j = JSON.parse(primal(["export", polt, "--format", "gguf", "--type", "f16", "--step", "3", "--json"]).stdout);
    expect(j.type).toBe("f16");
    expect(j.tensors).toHaveLength(1 + 2 * 9 + 1);
    // auto: bridge-2/3 levels in q4_0, exact up to the fp16 scale (relative error <= 2^-11).
    const a = JSON.parse(primal(["export", polt, "--format", "gguf", "--out", join(work, "a.gguf"), "--json"]).stdout);
    const linear = a.tensors.filter((x: { name: string }) => /attn_q|ffn_down/.test(x.name));
    expect(linear.map((x: { type: string }) => x.type)).toEqual(["q4_0", "q4_0", "q4_0", "q4_0"]);
    for (const x of linear) expect(x.relError).toBeLessThanOrEqual(2 ** -11);
    const norms = a.tensors.filter((x: { name: string }) => x.name.endsWith("norm.weight"));
    for (const x of norms) expect([x.type, x.maxAbsError]).toEqual(["f32", 0]);
  });

  it("refuses an existing output unless --force", () => {
    const out = join(work, "taken.gguf");
    writeFileSync(out, "precious");
    const r = primal(["export", polt, "--format", "gguf", "--out", out]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/already exists; pass --force/);
    expect(readFileSync(out, "utf8")).toBe("precious");
    const f = primal(["export", polt, "--format", "gguf", "--out", out, "--force"]);
    expect(f.code, f.stderr).toBe(0);
    expect(readFileSync(out).toString("ascii", 0, 4)).toBe("GGUF");
  });

  it("explains a run without checkpoints, a missing step, a missing run", () => {
    const a = primal(["export", empty, "--format", "gguf"]);
    expect(a.code).toBe(1);
    expect(a.stderr).toMatch(/has no checkpoints/);
    const b = primal(["export", polt, "--format", "gguf", "--step", "99"]);
    expect(b.code).toBe(1);
    expect(b.stderr).toMatch(/no checkpoint at step 99 \(available: 3\)/);
    const c = primal(["export", join(work, "nope"), "--format", "gguf"]);
    expect(c.code).toBe(1);
    expect(c.stderr).toMatch(/does not exist/);
    const d = primal(["export", polt, "--format", "onnx"]);
    expect(d.code).not.toBe(0);
    expect(d.stderr).toMatch(/--format.*onnx.*invalid|Allowed choices are gguf/);
  });

  it("refuses types that cannot hold the run's weights", () => {
    const a = primal(["export", fp, "--format", "gguf", "--type", "tq2_0", "--out", join(work, "fp-tq.gguf")]);
    expect(a.code).toBe(1);
    expect(a.stderr).toMatch(/unsupported combination: tq2_0 for an fp run/);
    // The default bridge (2/3) puts weights on the ±b levels: ternary types cannot hold them.
    const b = primal(["export", polt, "--format", "gguf", "--type", "tq1_0", "--out", join(work, "polt-tq.gguf")]);
    expect(b.code).toBe(1);
    expect(b.stderr).toMatch(/unsupported combination: tq1_0 holds only ternary weights/);
    expect(existsSync(join(work, "fp-tq.gguf")) || existsSync(join(work, "polt-tq.gguf"))).toBe(false);
  });

  it("a write that runs out of room fails clearly and leaves nothing behind", () => {
    const out = join(work, "full.gguf");
    // ulimit -f (KiB) stops the file at 64 KiB, as a full disk would: the write fails with EFBIG.
    const r = primal(["export", fp, "--format", "gguf", "--type", "f32", "--out", out], "ulimit -f 64; ");
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(
      /writing .*full\.gguf' failed: file size limit reached after \d+ bytes; nothing was written under that name/,
    );
    expect(existsSync(out)).toBe(false);
    expect(readdirSync(work).filter((f) => f.includes("full.gguf"))).toEqual([]);
    const ok = primal(["export", fp, "--format", "gguf", "--type", "f32", "--out", out]);
    expect(ok.code, ok.stderr).toBe(0);
    expect(statSync(out).size).toBeGreaterThan(64 * 1024);
  });
});

describe("Trainer.exportGGUF", () => {
  it("exports the current step, refusing an existing file unless forced", async () => {
    const t = await Trainer.create(cfg("poltergeist", "facade"));
    try {
      await t.train(2);
      const out = join(work, "facade", "model.gguf");
      const a = await t.exportGGUF(out);
      expect([a.step, a.type, a.path]).toEqual([2, "q4_0", out]);
      expect(a.exactness).toMatch(/^linear weights q4_0: PRIMAL's integer levels exactly/);
      await t.train(1);
      await expect(t.exportGGUF(out)).rejects.toThrow(/already exists/);
      const b = await t.exportGGUF(out, { force: true, type: "f16" });
      expect([b.step, b.type]).toEqual([3, "f16"]);
      expect(readFileSync(out).toString("ascii", 0, 4)).toBe("GGUF");
    } finally {
      t.dispose();
    }
  });
});
