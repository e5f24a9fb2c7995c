// The model presets (docs/design.md, "Presets"). src/presets.json is the one table: this module,
// the C++ benchmarks (native/bench/bench_common.h, which CMake compiles the file into) and the
// PyTorch peer (test/bench/peer/presets.py) all read it; test/engine/presets.test.ts ties them.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import type { NativeModelConfig } from "./native.js";
import { packageRoot } from "./paths.js";

/** The names in src/presets.json, typed for editors (the test ties the two). */
export type PresetName = "tiny" | "small" | "ghost-0.1b";

export interface Preset {
  model: NativeModelConfig;
  tokenizer: "bytes" | "gpt2";
  /** Windows per micro-batch when the config names no batch. */
  batch: number;
}

export const PRESETS = JSON.parse(readFileSync(join(packageRoot(), "src", "presets.json"), "utf8")) as Record<
  PresetName,
  Preset
>;

export const PRESET_NAMES = Object.keys(PRESETS) as PresetName[];
