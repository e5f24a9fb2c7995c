// What the bench executables share: the model presets and the synthetic token stream they train on.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "json.h"          // the core's JSON reader (native/src/core)
#include "presets_json.h"  // src/presets.json as kPresetsJson, written by native/CMakeLists.txt
#include "primal/error.h"
#include "primal/philox.h"
#include "primal/trainer.h"

namespace primal_bench {

struct Preset {
  primal::ModelConfig model;
  int batch = 0;  // windows per micro-batch when none is given
};

// A preset of src/presets.json, the table the TypeScript side and the PyTorch peer read too
// (test/engine/presets.test.ts ties them).
inline Preset presetNamed(const std::string& name) {
  const primal::json::Value table = primal::json::parse(kPresetsJson, "src/presets.json");
  if (!table.has(name)) {
    std::string names;
    for (const auto& kv : table.obj) names += (names.empty() ? "" : ", ") + kv.first;
    throw primal::Error("unknown preset '" + name + "' (" + names + ")");
  }
  const primal::json::Value& p = table.at(name);
  const primal::json::Value& m = p.at("model");
  auto i = [](const primal::json::Value& o, const char* k) { return static_cast<int>(o.at(k).num); };
  Preset out;
  out.model.vocab = i(m, "vocab");
  out.model.dModel = i(m, "dModel");
  out.model.layers = i(m, "layers");
  out.model.heads = i(m, "heads");
  out.model.ffn = i(m, "ffn");
  out.model.seq = i(m, "seq");
  out.batch = i(p, "batch");
  return out;
}

inline primal::ModelConfig preset(const std::string& name) { return presetNamed(name).model; }

// 4M uniformly random token ids below `vocab` (Philox, fixed key): the same stream in every bench.
inline std::vector<int32_t> randomTokens(int vocab) {
  std::vector<int32_t> data(1 << 22);
  for (size_t i = 0; i < data.size(); ++i)
    data[i] =
        static_cast<int32_t>(primal::philox4x32_10(static_cast<uint32_t>(i), 0, 0, 7, 3, 4).v[0] % vocab);
  return data;
}

}  // namespace primal_bench
