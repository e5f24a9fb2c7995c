// Measurement (opt-in): what PRIMAL's 8-bit activation quantization, which has no counterpart in
// llama.cpp, costs in loss on WikiText-2 for an exported model. Runs only with
// PRIMAL_EXPORT_MEASURE_RUN=<run dir> (e.g. a `small` poltergeist run of 300 steps) and
// PRIMAL_WIKITEXT_DIR; writes test/artifacts/gguf-act-quant.json. The numbers are in docs/export.md.
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { resolveConfig, type TrainerConfig } from "../../src/config.js";
import { exportRunGGUF, findCheckpoint } from "../../src/export/llamaExport.js";
import { getTokenizer } from "../../src/data/tokenizer.js";
import { loadWikiText } from "../../src/data/wikitext.js";
import { readRunMeta } from "../../src/tracking/runStore.js";
import { ensureNodeLlamaCpp, importNodeLlamaCpp } from "../tools/node-llama-cpp.mjs";
import { LlamaCppModel, logSoftmax, nativeFromCheckpoint } from "./compare.js";

const run = process.env.PRIMAL_EXPORT_MEASURE_RUN;
const wikitext = process.env.PRIMAL_WIKITEXT_DIR;
const why = !run
  ? "set PRIMAL_EXPORT_MEASURE_RUN to a run directory"
  : !wikitext
    ? "set PRIMAL_WIKITEXT_DIR"
    : ensureNodeLlamaCpp().reason;
const out = mkdtempSync(join(tmpdir(), "primal-gguf-measure-"));
afterAll(() => rmSync(out, { recursive: true, force: true }));

describe.skipIf(!!why)(`8-bit activation cost on WikiText-2${why ? ` (skipped: ${why})` : ""}`, () => {
  it("PRIMAL with and without activation quantization vs llama.cpp on the same windows", async () => {
    const WINDOWS = Number(process.env.PRIMAL_EXPORT_MEASURE_WINDOWS ?? "64");
    const meta = readRunMeta(run!);
    const saved = meta.config as Record<string, unknown>;
    const config: TrainerConfig = resolveConfig({
      preset: saved.preset,
      model: saved.model,
      quant: saved.quant,
      actBits: saved.actBits,
      batch: saved.batch,
      knobs: saved.knobs,
      data: saved.data,
      device: "cpu",
      threads: 2,
    } as never);
    const ck = findCheckpoint(run!);
    const tok = getTokenizer(config.data.tokenizer);
    const all = tok.encode(loadWikiText(wikitext, "valid"));
    const cap = Number(process.env.PRIMAL_EXPORT_MEASURE_TOKENS ?? "200000");
    const ids = cap > 0 ? all.subarray(0, cap) : all;
    const T = config.model.seq;
    const V = config.model.vocab;
    const withAct = await nativeFromCheckpoint(config, ck.path, config.actBits);
    const noAct = await nativeFromCheckpoint(config, ck.path, null);
    const lib = await importNodeLlamaCpp();
    const results: Record<string, unknown> = {
      run: meta.id,
      step: ck.step,
      validTokens: ids.length,
      windows: WINDOWS,
      tokensPerWindow: T,
    };
    // Whole valid split, PRIMAL only.
    for (const [name, nt] of [
      ["primalAct8", withAct],
      ["primalNoAct", noAct],
    ] as const) {
      const e = await nt.evaluate(ids, T);
      results[`${name}ValidLoss`] = e.lossSum / e.count;
    }
    for (const type of ["auto", "f32"] as const) {
      const r = exportRunGGUF(run!, { type, out: join(out, `${type}.gguf`), force: true });
      const m = await LlamaCppModel.load(lib, r.path, 2 * T);
      let sumAct = 0,
        sumNo = 0,
        sumLlama = 0,
        n = 0;
      for (let w = 0; w < WINDOWS; w++) {
        const win = ids.subarray(w * T, w * T + T);
        const a = logSoftmax(withAct.logits(win), V);
        const b = logSoftmax(noAct.logits(win), V);
        const c = await m.logProbs(win, V);
        for (let t = 0; t + 1 < T; t++) {
          const y = win[t + 1]! + t * V;
          sumAct -= a[y]!;
          sumNo -= b[y]!;
          sumLlama -= c[y]!;
          n++;
        }
      }
      await m.dispose();
      results[type] = {
        fileType: r.type,
        bytes: r.bytes,
        lossPrimalAct8: sumAct / n,
        lossPrimalNoAct: sumNo / n,
        lossLlama: sumLlama / n,
      };
    }
    withAct.dispose();
    noAct.dispose();
    console.log(JSON.stringify(results, null, 1));
    const dir = join(import.meta.dirname, "..", "artifacts");
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, "gguf-act-quant.json"), JSON.stringify(results, null, 1) + "\n");
    expect(Number.isFinite(results.primalNoActValidLoss as number)).toBe(true);
  }, 1_800_000);
});
