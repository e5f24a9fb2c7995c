// What a checkpoint's header says about the run, read without a trainer: the metadata strings
// (format, config, knobs, step, tokens, seed, rng, primal.extra, dataCrc32) after their checksums
// are verified. A resume reads it first, to build the trainer from the checked config.
#pragma once
#include <map>
#include <string>

namespace primal {

struct CheckpointMetadata {
  std::map<std::string, std::string> fields;
  // false: written before metadata checksums existed (accepted, but nothing vouches for it).
  bool checked = false;
};

// Throws Error naming the file (and the field, for a checksum that does not match).
CheckpointMetadata readCheckpointMetadata(const std::string& path);

}  // namespace primal
