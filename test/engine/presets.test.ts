// One preset table: src/presets.json. The TypeScript presets, the C++ benchmarks (the file compiled
// into native/bench/bench_common.h) and the PyTorch peer (test/bench/peer/presets.py) all read it;
// this checks each reader sees the same presets.
import { spawnSync } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { PRESETS, PRESET_NAMES } from "../../src/presets.js";
import { nativeConfig, resolveConfig } from "../../src/config.js";
import { native } from "../../src/native.js";

const root = join(import.meta.dirname, "..", "..");
const table = JSON.parse(readFileSync(join(root, "src", "presets.json"), "utf8")) as Record<
  string,
  { model: Record<string, number>; tokenizer: string; batch: number }
>;
const names = Object.keys(table);

describe("the preset table", () => {
  it("is what the TypeScript presets and configs hold", () => {
    expect(PRESETS).toEqual(table);
    expect([...PRESET_NAMES].sort()).toEqual([...names].sort());
    for (const name of PRESET_NAMES) {
      const c = resolveConfig({ preset: name });
      expect([name, c.model, c.batch, c.data.tokenizer]).toEqual([
        name,
        table[name]!.model,
        table[name]!.batch,
        table[name]!.tokenizer,
      ]);
    }
  });

  it("is compiled into the C++ benchmarks, which build the same model as the trainer", () => {
    const generated = join(root, "build", "native", "generated", "presets_json.h");
    const bench = [join(root, "build", "native", "primal_bench"), join(root, "build", "Release", "primal_bench")].find(
      existsSync,
    );
    expect(bench, "primal_bench is built by npm install").toBeDefined();
    const header = readFileSync(generated, "utf8");
    const embedded = /R"presets\(([\s\S]*)\)presets"/.exec(header)![1]!;
    expect(embedded).toBe(readFileSync(join(root, "src", "presets.json"), "utf8"));
    const run = (...args: string[]) => {
      const r = spawnSync(bench!, args, { encoding: "utf8", timeout: 120_000 });
      return JSON.parse(r.stdout.trim().split("\n").at(-1)!) as { error?: string; paramCount?: number; seq?: number };
    };
    expect(run("--preset", "nope").error).toBe(`unknown preset 'nope' (${[...names].sort().join(", ")})`);
    const row = run("--preset", "tiny", "--quant", "fp", "--batch", "1", "--steps", "1", "--warmup", "0");
    const nt = new (native().NativeTrainer)(nativeConfig(resolveConfig({ preset: "tiny", quant: "fp" }), "cpu"));
    try {
      expect(row.paramCount).toBe(nt.info().paramCount);
      expect(row.seq).toBe(table.tiny!.model.seq);
    } finally {
      nt.dispose();
    }
  });

  it("is what the PyTorch peer reads", (ctx) => {
    const r = spawnSync("python3", [join(root, "test", "bench", "peer", "presets.py")], { encoding: "utf8" });
    if (r.error) ctx.skip(`python3 is not installed (${r.error.message})`);
    expect(r.status, r.stderr).toBe(0);
    const peer = JSON.parse(r.stdout) as Record<string, number[]>;
    const padded = (v: number) => (v <= 256 ? v : Math.ceil(v / 64) * 64);
    expect(peer).toEqual(
      Object.fromEntries(
        names.map((n) => {
          const m = table[n]!.model;
          return [n, [m.vocab!, padded(m.vocab!), m.dModel, m.layers, m.heads, m.ffn, m.seq]];
        }),
      ),
    );
  });
});
