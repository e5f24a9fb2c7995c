// Memory planning: predicts the trainer's allocations for a micro-batch size and recompute mode,
// and picks the first candidate that fits the budget. The prediction mirrors the Trainer
// constructor buffer by buffer; a test checks it equals the bytes actually allocated.
#include <algorithm>
#include <cstdint>

#include "primal/error.h"
#include "primal/trainer.h"

namespace primal {

namespace {

constexpr size_t kF = sizeof(float);

MemoryPlan estimate(const TrainConfig& cfg, int micro, Recompute rc, const Backend& be) {
  const ModelConfig& mc = cfg.model;
  const size_t C = mc.dModel, F = mc.ffn, L = mc.layers, T = mc.seq, V = mc.vocab;
  const size_t Vp = mc.paddedVocab(), N = static_cast<size_t>(micro) * T;
  const bool polt = cfg.quant == Quant::Poltergeist;
  MemoryPlan p;
  p.microBatch = micro;
  p.recompute = rc;
  MemoryReport& r = p.estimate;

  // fp parameters, each with a gradient and two AdamW moments.
  size_t fpElems = Vp * C + 2 * L * C + C;
  const size_t perBlockW = 4 * C * C + 3 * C * F;  // q, k, v, o + gate, up, down
  if (!polt) fpElems += L * perBlockW;
  r.params = fpElems * kF;
  r.grads = fpElems * kF;
  r.optimizer = 2 * fpElems * kF;
  r.ternaryWeights = L * perBlockW;
  size_t codeVote = 0;
  if (polt) {
    codeVote = 2 * L * perBlockW;                          // int8 code + int8 vote
    r.ternaryState = codeVote + 7 * L * 4 * sizeof(float);  // + s, m, v, gamma0 (host side)
  }

  // Activations: one set per block, or one shared set under block recompute; plus the residual
  // streams, the final norm's output and its statistics.
  const size_t sets = rc == Recompute::Block ? 1 : L;
  const size_t perSet = (5 * N * C + 2 * N * F + 2 * N + static_cast<size_t>(micro) * mc.heads * T) * kF;
  r.activations = sets * perSet + (L + 1) * N * C * kF + (N * C + N) * kF;

  const size_t maxW = std::max(C * C, C * F);
  // Gradients of activations (7 [N,C] incl. lnf's, 3 [N,F]), the recomputed norm output and
  // SwiGLU product, per-token losses, one row of logits and the token ids.
  r.scratch = (8 * N * C + 4 * N * F + N) * kF + V * kF + 2 * N * sizeof(int32_t);
  if (cfg.actBits) r.scratch += N * std::max(C, F) * kF;
  if (cfg.quant != Quant::FP) r.scratch += maxW * kF;
  if (polt) r.scratch += maxW * kF;

  ScratchShape sh;
  sh.B = micro;
  sh.T = mc.seq;
  sh.C = mc.dModel;
  sh.H = mc.heads;
  sh.F = mc.ffn;
  sh.V = mc.vocab;
  sh.Vp = static_cast<int>(Vp);
  p.backendScratch = be.scratchBytes(sh);
  p.totalBytes = r.params + r.grads + r.optimizer + codeVote + r.activations + r.scratch + p.backendScratch;
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
