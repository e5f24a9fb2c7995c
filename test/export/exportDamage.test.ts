// Export trusts a checkpoint no more than resume does: a flipped bit in the tensor data is refused
// by its checksum (exit 1, nothing written), and crafted safetensors headers (null or reversed
// offsets, bad shapes and dtypes, broken metadata JSON, lying model fields, tensors of the wrong
// size) get an error naming the checkpoint and the field, never an internal message.
import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Trainer } from "../../src/trainer.js";
import { exportRunGGUF } from "../../src/export/llamaExport.js";
import { ensureDist, repoRoot } from "../reliability/fixtures/common.js";
import { buildSafetensors, parseSafetensors, tensors } from "../reliability/fixtures/safetensors.js";

const work = mkdtempSync(join(tmpdir(), "primal-export-damage-"));
afterAll(() => rmSync(work, { recursive: true, force: true }));

let run = "";
let ckpt = "";
let good = Buffer.alloc(0);
beforeAll(async () => {
  ensureDist();
  const t = await Trainer.create({
    preset: "tiny",
    quant: "poltergeist",
    device: "cpu",
    threads: 1,
    home: work,
    name: "damage",
    steps: 3,
    warmup: 1,
    sampleEvery: 0,
    checkpointEvery: 0,
    eval: { every: 0, maxTokens: 200 },
  });
  await t.train(3);
  t.dispose();
  run = t.runDir;
  ckpt = join(run, "checkpoints", "step-3.safetensors");
  good = readFileSync(ckpt);
});

function exportError(bytes: Buffer): string {
  writeFileSync(ckpt, bytes);
  try {
    exportRunGGUF(run, { out: join(work, "out.gguf"), force: true });
    return "(exported)";
  } catch (e) {
    return e instanceof Error ? e.message : String(e);
  } finally {
    writeFileSync(ckpt, good);
  }
}

describe("export of a damaged checkpoint", () => {
  it("a flipped bit in the tensor data fails the checksum: exit 1 and no file", () => {
    const p = parseSafetensors(good);
    const b = Buffer.from(good);
    b[8 + p.headerLength + Math.floor(p.data.length / 3)]! ^= 0x04;
    writeFileSync(ckpt, b);
    try {
      const r = spawnSync(process.execPath, [join(repoRoot, "bin", "primal.js"), "export", run, "--format", "gguf"], {
        encoding: "utf8",
        timeout: 120_000,
      });
      expect(r.status, r.stdout).toBe(1);
      expect(r.stderr).toMatch(
        /checkpoint '.*step-3\.safetensors' is damaged: its tensor data does not match the checksum in its header/,
      );
      expect(existsSync(join(run, "export")) ? readdirSync(join(run, "export")) : []).toEqual([]);
    } finally {
      writeFileSync(ckpt, good);
    }
    // The intact file exports.
    expect(exportRunGGUF(run, { out: join(work, "ok.gguf") }).step).toBe(3);
  });

  it("crafted headers and entries give errors that name the checkpoint and the field", () => {
    const p = parseSafetensors(good);
    const first = tensors(p)[0]![0];
    const craft = (edit: (h: Record<string, unknown>, md: Record<string, string>) => void, keepCrc = false) => {
      const h = structuredClone(p.header) as Record<string, unknown>;
      const md = h["__metadata__"] as Record<string, string>;
      // Without the checksum the structural checks are what stands between the file and the export.
      if (!keepCrc) delete md["dataCrc32"];
      edit(h, md);
      return buildSafetensors(h, p.data);
    };
    const entry = (h: Record<string, unknown>, name: string) => h[name] as Record<string, unknown>;
    const cases: [string, Buffer, RegExp][] = [
      ["null offsets", craft((h) => (entry(h, first).data_offsets = null)), /tensor '.*' has invalid data_offsets/],
      ["reversed offsets", craft((h) => (entry(h, first).data_offsets = [8, 4])), /has invalid data_offsets/],
      ["negative offsets", craft((h) => (entry(h, first).data_offsets = [-8, 4])), /has invalid data_offsets/],
      ["offsets past the end", craft((h) => (entry(h, first).data_offsets = [0, 1e12])), /data lies outside the file/],
      ["a string shape", craft((h) => (entry(h, first).shape = "64x256")), /has an invalid shape/],
      ["no dtype", craft((h) => delete entry(h, first).dtype), /has no dtype/],
      ["an entry that is a number", craft((h) => (h[first] = 7)), /tensor '.*' is not a JSON object/],
      ["config not JSON", craft((_, md) => (md.config = "{nope")), /metadata 'config': invalid JSON/],
      [
        "a string vocab",
        craft((_, md) => (md.config = md.config!.replace(/"vocab":\d+/, '"vocab":"256"'))),
        /config field 'model\.vocab' must be an integer/,
      ],
      [
        "heads that do not divide dModel",
        craft((_, md) => (md.config = md.config!.replace(/"heads":\d+/, '"heads":5'))),
        /is not a multiple of 'model\.heads'/,
      ],
      ["knobs not JSON", craft((_, md) => (md.knobs = "[")), /metadata 'knobs': invalid JSON/],
      ["a bridge of 7", craft((_, md) => (md.knobs = md.knobs!.replace(/"bridge":[^,]+/, '"bridge":7'))), /bridge/],
      ["a step that is not a number", craft((_, md) => (md.step = "12abc")), /metadata 'step' must be an integer/],
      ["metadata that is a string", craft((h) => (h["__metadata__"] = "x")), /not a primal checkpoint/],
      [
        "a code tensor of the wrong size",
        craft((h) => {
          const name = "code.blocks.0.attn.q";
          const e = entry(h, name);
          const [a] = e.data_offsets as [number, number];
          e.shape = [1, 64];
          e.data_offsets = [a, a + 64];
        }),
        /tensor 'code\.blocks\.0\.attn\.q' holds 64 values; this model needs \d+/,
      ],
      ["a header that is an array", buildSafetensors([1, 2], p.data), /the header is not a JSON object/],
      [
        "a header that is not JSON",
        Buffer.concat([good.subarray(0, 8), Buffer.alloc(p.headerLength, 0x7b), p.data]),
        /header: invalid JSON/,
      ],
      [
        "a tensor moved by one byte",
        craft((h) => {
          const e = entry(h, first);
          const [a, b] = e.data_offsets as [number, number];
          e.data_offsets = [a + 1, b + 1];
        }, true),
        /is damaged: its tensor data is not contiguous|does not match the checksum/,
      ],
    ];
    for (const [what, bytes, expected] of cases) {
      const msg = exportError(bytes);
      expect(msg, what).toMatch(/^checkpoint '.*step-3\.safetensors'/);
      expect(msg, what).toMatch(expected);
      expect(msg, what).not.toMatch(/Cannot read properties|is not a function|is not iterable|Invalid array length/);
    }
    expect(existsSync(join(work, "out.gguf"))).toBe(false);
  });
});
