// Small trainer configurations and token streams shared by the trainer test files.
#pragma once
#include <unistd.h>

#include <cstdint>
#include <filesystem>
#include <string>
#include <system_error>
#include <vector>

#include "primal/trainer.h"

namespace primal_test {

// Two blocks, d=16, vocab 32, seq 8, batch 2: a whole step takes well under a millisecond.
inline primal::TrainConfig microConfig(primal::Quant q) {
  primal::TrainConfig c;
  c.model.vocab = 32;
  c.model.dModel = 16;
  c.model.layers = 2;
  c.model.heads = 2;
  c.model.ffn = 24;
  c.model.seq = 8;
  c.batch = 2;
  c.quant = q;
  c.actBits = 0;
  c.seed = 7;
  return c;
}

// A repeating pattern the model can learn quickly.
inline std::vector<int32_t> patternTokens(size_t n, int vocab) {
  std::vector<int32_t> t(n);
  for (size_t i = 0; i < n; ++i) t[i] = static_cast<int32_t>((i * 7 + (i / 5)) % vocab);
  return t;
}

// A file in a folder of this process's own under the system temp folder (no fixed /tmp names,
// so two test runs never share a file); the folder goes when the process ends.
inline std::string scratchFile(const std::string& name) {
  struct Dir {
    std::filesystem::path path =
        std::filesystem::temp_directory_path() / ("primal-core-test-" + std::to_string(::getpid()));
    Dir() { std::filesystem::create_directories(path); }
    ~Dir() {
      std::error_code ec;
      std::filesystem::remove_all(path, ec);
    }
  };
  static Dir dir;
  return (dir.path / name).string();
}

}  // namespace primal_test
