// The knobs: the training settings a user may change between steps (Trainer.set, `primal train`
// flags), owned by the core. Each knob is one member of Knobs and one row of kKnobFields, side by
// side in this file, and nothing else lists them: validation, the binding (names, conversion, the
// table TypeScript builds its zod schema and defaults from), the checkpoint metadata and
// t.knobs() all read the table. docs/design.md ("Knobs") says what each one does.
#pragma once
#include <cstddef>
#include <limits>
#include <optional>

namespace primal {

// The level a stray +-1 code is materialized at while the bridge is off. Turning the bridge off
// resolves every +-1 code, so only setCodes() can make one; it then weighs half of a +-2 code,
// halfway between the rungs it can move to (poltergeist.h, nextRung).
inline constexpr float kBridgeOffLevel = 0.5f;

struct Knobs {
  std::optional<float> bridge = 2.0f / 3.0f;  // level of the +-1 codes; nullopt: the bridge is off
  float flipRate = 0.01f;
  float pMax = 0.5f;
  float voteKeep = 0.95f;
  float deadzone = 0.0f;
  float lr = 3e-3f;
  float scaleLr = 1e-2f;
#ifdef PRIMAL_TEST_KNOB
  float testKnob = 0.25f;
#endif

  // What the kernels are handed (op inputs, not knobs): the ladder (bridge on: -2..+2 one rung at
  // a time; off: -2, 0, +2) and the level of a +-1 code.
  bool bridgeOn() const { return bridge.has_value(); }
  float bridgeLevel() const { return bridge.value_or(kBridgeOffLevel); }
  void validate() const;  // throws Error naming the knob and its range
};

// A knob's allowed values: [min, max], either end excluded when open; max may be infinite.
struct KnobRange {
  double min, max;
  bool minOpen, maxOpen;
};
inline constexpr double kUnbounded = std::numeric_limits<double>::infinity();
constexpr KnobRange atLeast(double a) { return {a, kUnbounded, false, false}; }
constexpr KnobRange within(double a, double b) { return {a, b, false, false}; }
constexpr KnobRange between(double a, double b) { return {a, b, true, true}; }

struct KnobField {
  const char* name;                       // as JavaScript, checkpoints and events name it
  float Knobs::*value;                    // a knob that is always a number, or
  std::optional<float> Knobs::*nullable;  // one that can be off (null)
  KnobRange range;
  const char* doc;  // one line
};
constexpr KnobField knob(const char* name, float Knobs::*m, KnobRange r, const char* doc) {
  return {name, m, nullptr, r, doc};
}
constexpr KnobField knobOrOff(const char* name, std::optional<float> Knobs::*m, KnobRange r,
                              const char* doc) {
  return {name, nullptr, m, r, doc};
}

inline constexpr KnobField kKnobFields[] = {
    knobOrOff(
        "bridge", &Knobs::bridge, between(0, 1),
        "level b of the +-1 codes (weights -1, -b, 0, +b, +1); null turns it off: +-1 codes resolve to +-2 "
        "when b >= 0.5, else 0, and the ladder is -2 <-> 0 <-> +2"),
    knob("flipRate", &Knobs::flipRate, atLeast(0),
         "flip probability per unit of Ghost Scale and agreeing vote: p = min(pMax, flipRate * s * |vote| / "
         "K)"),
    knob("pMax", &Knobs::pMax, within(0, 1), "the most a weight's flip probability can be in one step"),
    knob("voteKeep", &Knobs::voteKeep, within(0, 1),
         "share of a vote kept at each step where the weight did not flip (stochastic rounding)"),
    knob("deadzone", &Knobs::deadzone, atLeast(0), "a gradient votes only where |G| > deadzone * rms(G)"),
    knob("lr", &Knobs::lr, atLeast(0), "peak learning rate of the fp parameters (AdamW, warmup + cosine)"),
    knob("scaleLr", &Knobs::scaleLr, atLeast(0), "peak learning rate of the Ghost Scales (same schedule)"),
#ifdef PRIMAL_TEST_KNOB
    knob("testKnob", &Knobs::testKnob, within(0, 1), "test builds only: a knob that nothing reads"),
#endif
};

// A member without its row would be invisible to JavaScript and checkpoints: refuse to build.
constexpr size_t knobTableBytes() {
  size_t n = 0;
  for (const KnobField& f : kKnobFields) n += f.value ? sizeof(float) : sizeof(std::optional<float>);
  return n;
}
static_assert(sizeof(Knobs) == knobTableBytes(), "every member of Knobs needs its row in kKnobFields");

// The shortest decimal that reads back as exactly `v` in fp32 (0.8f -> 0.8): how knob values
// leave the core, so JavaScript and checkpoints show what was set rather than 0.800000011920929.
double shortestDecimal(float v);

}  // namespace primal
