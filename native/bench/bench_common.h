// What the bench executables share: the model presets (src/presets.ts holds the same table) and
// the synthetic token stream they train on.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "primal/error.h"
#include "primal/philox.h"
#include "primal/trainer.h"

namespace primal_bench {

inline primal::ModelConfig preset(const std::string& p) {
  primal::ModelConfig m;
  if (p == "tiny") {
    m.vocab = 256;
    m.dModel = 64;
    m.layers = 2;
    m.heads = 4;
    m.ffn = 192;
    m.seq = 64;
  } else if (p == "small") {
    m.vocab = 256;
    m.dModel = 256;
    m.layers = 4;
    m.heads = 4;
    m.ffn = 704;
    m.seq = 128;
  } else if (p == "ghost-0.1b") {
    m.vocab = 50257;
    m.dModel = 768;
    m.layers = 12;
    m.heads = 12;
    m.ffn = 2048;
    m.seq = 1024;
  } else {
    throw primal::Error("unknown preset '" + p + "' (tiny, small, ghost-0.1b)");
  }
  return m;
}

// 4M uniformly random token ids below `vocab` (Philox, fixed key): the same stream in every bench.
inline std::vector<int32_t> randomTokens(int vocab) {
  std::vector<int32_t> data(1 << 22);
  for (size_t i = 0; i < data.size(); ++i)
    data[i] =
        static_cast<int32_t>(primal::philox4x32_10(static_cast<uint32_t>(i), 0, 0, 7, 3, 4).v[0] % vocab);
  return data;
}

}  // namespace primal_bench
