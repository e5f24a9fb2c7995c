// Memory planning: predicts the trainer's allocations for a micro-batch size and recompute mode,
// and picks the first candidate that fits the budget. The model's part of the prediction walks the
// same weight and buffer tables the model allocates from (Model::plannedMemory); a test checks it
// equals the bytes actually allocated.
#include <cstdint>

#include "model.h"
#include "primal/error.h"
#include "primal/trainer.h"

namespace primal {

namespace {

MemoryPlan estimate(const TrainConfig& cfg, int micro, Recompute rc, const Backend& be) {
  TrainConfig planned = cfg;
  planned.microBatch = micro;
  planned.recompute = rc;
  MemoryPlan p;
  p.microBatch = micro;
  p.recompute = rc;
  size_t modelBytes = 0;
  p.estimate = Model::plannedMemory(planned, &modelBytes);
  const ModelConfig& mc = cfg.model;
  ScratchShape sh;
  sh.B = micro;
  sh.T = mc.seq;
  sh.C = mc.dModel;
  sh.H = mc.heads;
  sh.F = mc.ffn;
  sh.V = mc.vocab;
  sh.Vp = mc.paddedVocab();
  sh.L = mc.layers;
  p.backendScratch = be.scratchBytes(sh);
  p.totalBytes = modelBytes + p.backendScratch;
  return p;
}

}  // namespace

MemoryPlanning planMemory(const TrainConfig& cfg, const Backend& backend) {
  cfg.validate();
  MemoryPlanning out;
  std::vector<int> micros;
  if (cfg.microBatch > 0) {
    micros.push_back(cfg.microBatch);
  } else {
    for (int m = cfg.batch; m >= 1; --m)
      if (cfg.batch % m == 0) micros.push_back(m);
    if (cfg.memoryBudget == 0) micros.resize(1);  // no budget: the full batch
  }
  std::vector<Recompute> modes;
  if (cfg.recompute != Recompute::Auto) modes.push_back(cfg.recompute);
  else if (cfg.memoryBudget == 0) modes.push_back(Recompute::None);
  else modes = {Recompute::None, Recompute::Block};
  for (int m : micros)
    for (Recompute rc : modes) {
      MemoryPlan p = estimate(cfg, m, rc, backend);
      p.fits = cfg.memoryBudget == 0 || p.totalBytes <= cfg.memoryBudget;
      if (p.fits && out.chosen < 0) out.chosen = static_cast<int>(out.candidates.size());
      out.candidates.push_back(p);
    }
  return out;
}

}  // namespace primal
