// The plain numeric fields of ModelConfig, TrainConfig and Knobs under their JavaScript names.
// The binding reads configs and knobs through these tables and reports the defaults from them
// (the TypeScript side is tested against those defaults), so a new numeric field is one line
// here next to its member in trainer.h. Fields with a richer shape (quant, actBits, microBatch,
// recompute, memoryBudget, seed, bridge) are handled by name in the binding.
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

// Every knob but the bridge (a number or null, handled by name).
inline constexpr NumField<Knobs> kKnobFields[] = {
    floatMember("flipRate", &Knobs::flipRate),
    floatMember("pMax", &Knobs::pMax),
    floatMember("voteKeep", &Knobs::voteKeep),
    floatMember("deadzone", &Knobs::deadzone),
    floatMember("lr", &Knobs::lr),
    floatMember("scaleLr", &Knobs::scaleLr),
};

}  // namespace primal
