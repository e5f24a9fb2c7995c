// The plain numeric fields of ModelConfig and TrainConfig under their JavaScript names. The binding
// reads configs through these tables and reports the defaults from them (the TypeScript side is
// tested against those defaults), so a new numeric field is one line here next to its member in
// trainer.h. Fields with a richer shape (quant, actBits, microBatch, recompute, memoryBudget, seed)
// are handled by name in the binding. The knobs have their own table, in knobs.h.
#pragma once

#include "primal/trainer.h"

namespace primal {

template <typename S>
struct NumField {
  const char* name;
  int S::*i;    // an int member, or
  float S::*f;  // a float member
  bool required;
};

template <typename S>
constexpr NumField<S> intMember(const char* name, int S::*m, bool required = false) {
  return {name, m, nullptr, required};
}
template <typename S>
constexpr NumField<S> floatMember(const char* name, float S::*m) {
  return {name, nullptr, m, false};
}

inline constexpr NumField<ModelConfig> kModelFields[] = {
    intMember("vocab", &ModelConfig::vocab, true),     intMember("dModel", &ModelConfig::dModel, true),
    intMember("layers", &ModelConfig::layers, true),   intMember("heads", &ModelConfig::heads, true),
    intMember("ffn", &ModelConfig::ffn, true),         intMember("seq", &ModelConfig::seq, true),
    floatMember("ropeTheta", &ModelConfig::ropeTheta), floatMember("normEps", &ModelConfig::normEps),
    floatMember("initStd", &ModelConfig::initStd),
};

inline constexpr NumField<TrainConfig> kTrainFields[] = {
    intMember("batch", &TrainConfig::batch),
    intMember("accum", &TrainConfig::accum),
    intMember("warmup", &TrainConfig::warmup),
    intMember("totalSteps", &TrainConfig::totalSteps),
    floatMember("minLrRatio", &TrainConfig::minLrRatio),
    floatMember("beta1", &TrainConfig::beta1),
    floatMember("beta2", &TrainConfig::beta2),
    floatMember("weightDecay", &TrainConfig::weightDecay),
    floatMember("gradClip", &TrainConfig::gradClip),
};

}  // namespace primal
