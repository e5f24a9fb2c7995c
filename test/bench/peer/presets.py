"""The model presets, read from src/presets.json: the one table that PRIMAL's TypeScript side
(src/presets.ts) and its C++ benchmarks (native/bench/bench_common.h) read too, tied together by
test/engine/presets.test.ts. Standard library only, so it loads without torch."""
import json
import os

PRESETS_JSON = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..", "src", "presets.json")


def padded_vocab(vocab):
    # Rows of the embedding: vocab rounded up to a multiple of 64 above 256, as the core pads it
    # (ModelConfig::paddedVocab; 50257 -> 50304, as llm.c does), so the tied head's matmul is well
    # shaped; the loss still covers the real tokens only.
    return vocab if vocab <= 256 else (vocab + 63) // 64 * 64


def load(path=PRESETS_JSON):
    """name -> (vocab, padded vocab, d_model, layers, heads, ffn, seq)."""
    with open(path, encoding="utf-8") as f:
        table = json.load(f)
    return {
        name: (m["vocab"], padded_vocab(m["vocab"]), m["dModel"], m["layers"], m["heads"], m["ffn"], m["seq"])
        for name, m in ((name, p["model"]) for name, p in table.items())
    }


PRESETS = load()

if __name__ == "__main__":
    print(json.dumps(PRESETS))
