// Model presets of DESIGN §2: (vocab, d_model, layers, heads, ffn, seq).
import type { NativeModelConfig } from "./native.js";

export type PresetName = "tiny" | "small" | "ghost-0.1b";

export interface Preset {
  model: NativeModelConfig;
  tokenizer: "bytes" | "gpt2";
  batch: number;
}

export const PRESETS: Record<PresetName, Preset> = {
  tiny: { model: { vocab: 256, dModel: 64, layers: 2, heads: 4, ffn: 192, seq: 64 }, tokenizer: "bytes", batch: 8 },
  small: { model: { vocab: 256, dModel: 256, layers: 4, heads: 4, ffn: 704, seq: 128 }, tokenizer: "bytes", batch: 16 },
  "ghost-0.1b": {
    model: { vocab: 50257, dModel: 768, layers: 12, heads: 12, ffn: 2048, seq: 1024 },
    tokenizer: "gpt2",
    batch: 8,
  },
};

export const PRESET_NAMES = Object.keys(PRESETS) as PresetName[];
