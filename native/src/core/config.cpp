// Validation of configs and knobs: every message names the field and the allowed values.
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "json.h"
#include "primal/error.h"
#include "primal/trainer.h"

namespace primal {

const char* quantName(Quant q) {
  switch (q) {
    case Quant::FP:
      return "fp";
    case Quant::STE:
      return "ste";
    case Quant::Poltergeist:
      return "poltergeist";
  }
  return "?";
}

Quant parseQuant(const std::string& s) {
  if (s == "fp") return Quant::FP;
  if (s == "ste") return Quant::STE;
  if (s == "poltergeist") return Quant::Poltergeist;
  throw Error("quant: unknown quantizer '" + s + "' (allowed: fp, ste, poltergeist)");
}

const char* recomputeName(Recompute r) {
  switch (r) {
    case Recompute::None:
      return "none";
    case Recompute::Block:
      return "block";
    case Recompute::Auto:
      return "auto";
  }
  return "?";
}

Recompute parseRecompute(const std::string& s) {
  if (s == "none") return Recompute::None;
  if (s == "block") return Recompute::Block;
  if (s == "auto") return Recompute::Auto;
  throw Error("recompute: unknown mode '" + s + "' (allowed: none, block, auto)");
}

static void positive(const char* field, long long v, long long max) {
  if (v <= 0 || v > max)
    throw Error(std::string(field) + ": must be an integer in [1, " + std::to_string(max) + "], got " +
                std::to_string(v));
}

void ModelConfig::validate() const {
  positive("model.vocab", vocab, 1 << 20);
  positive("model.dModel", dModel, 16384);
  positive("model.layers", layers, 256);
  positive("model.heads", heads, 256);
  positive("model.ffn", ffn, 65536);
  positive("model.seq", seq, 65536);
  if (dModel % heads != 0)
    throw Error("model.heads: dModel (" + std::to_string(dModel) + ") must be divisible by heads (" +
                std::to_string(heads) + ")");
  if ((dModel / heads) % 2 != 0)
    throw Error("model.heads: the head dimension dModel/heads must be even for RoPE, got " +
                std::to_string(dModel / heads));
  if (!(ropeTheta > 0) || !(normEps > 0) || !(initStd > 0))
    throw Error("model: ropeTheta, normEps and initStd must be positive");
}

double shortestDecimal(float v) {
  if (!std::isfinite(v)) return static_cast<double>(v);
  char buf[32];
  for (int prec = 1; prec <= 9; ++prec) {
    std::snprintf(buf, sizeof buf, "%.*g", prec, static_cast<double>(v));
    if (std::strtof(buf, nullptr) == v) break;
  }
  return std::strtod(buf, nullptr);
}

// "in (0, 1)", "in [0, 1]", ">= 0", "> 0".
static std::string rangeText(const KnobRange& r) {
  const std::string lo = json::number(r.min);
  if (r.max == kUnbounded) return (r.minOpen ? "> " : ">= ") + lo;
  return std::string("in ") + (r.minOpen ? "(" : "[") + lo + ", " + json::number(r.max) +
         (r.maxOpen ? ")" : "]");
}

void Knobs::validate() const {
  for (const KnobField& f : kKnobFields) {
    const std::optional<float> v = f.value ? std::optional<float>(this->*f.value) : this->*f.nullable;
    if (!v) continue;  // off
    const double x = *v;
    const KnobRange& r = f.range;
    const bool ok =
        std::isfinite(x) && (r.minOpen ? x > r.min : x >= r.min) && (r.maxOpen ? x < r.max : x <= r.max);
    if (ok) continue;
    const std::string got =
        std::isfinite(x) ? json::number(shortestDecimal(*v)) : (std::isnan(x) ? "NaN" : "infinity");
    throw Error(std::string(f.name) + ": must be " + (f.nullable ? "a number " : "") + rangeText(r) +
                (f.nullable ? " or null (off)" : "") + ", got " + got);
  }
}

void TrainConfig::validate() const {
  model.validate();
  knobs.validate();
  if (actBits != 0 && (actBits < 2 || actBits > 16))
    throw Error("actBits: must be null (off) or an integer in [2, 16], got " + std::to_string(actBits));
  positive("batch", batch, 1 << 16);
  positive("accum", accum, 1 << 16);
  if (microBatch < 0 || microBatch > batch || (microBatch > 0 && batch % microBatch != 0))
    throw Error("microBatch: must divide batch (" + std::to_string(batch) + "), or be 0/auto, got " +
                std::to_string(microBatch));
  if (static_cast<long long>(accum) * batch > (1 << 24))
    throw Error("batch * accum: at most 16777216 windows per step");
  if (warmup < 0) throw Error("warmup: must be >= 0");
  positive("totalSteps", totalSteps, 1 << 30);
  if (!(minLrRatio >= 0 && minLrRatio <= 1)) throw Error("minLrRatio: must be in [0, 1]");
  if (!(beta1 >= 0 && beta1 < 1) || !(beta2 >= 0 && beta2 < 1)) throw Error("beta1/beta2: must be in [0, 1)");
  if (!(adamEps > 0)) throw Error("adamEps: must be > 0");
  if (!(weightDecay >= 0)) throw Error("weightDecay: must be >= 0");
  if (!std::isfinite(gradClip)) throw Error("gradClip: must be finite (<= 0 turns clipping off)");
  if (!(scaleMin > 0)) throw Error("scaleMin: must be > 0");
}

}  // namespace primal
