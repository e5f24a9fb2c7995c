// The Ghost transformer (docs/design.md, "Model"): construction from the weight and buffer tables, memory
// accounting, and the forward/backward pairs. Shapes as in model.h.
#include "model.h"

#include <algorithm>

#include "primal/error.h"

namespace primal {

namespace {

// The Ghost Scale state per BitLinear in the ternary arena: s, its two AdamW moments, gamma0.
constexpr size_t kScaleStateFloats = 4;

size_t alignUp(size_t x, size_t a) { return (x + a - 1) / a * a; }

// The weights in init and checkpoint order (see Model::params).
struct WeightSpec {
  enum Role { Embedding, AttnNorm, MlpNorm, Linear, FinalNorm } role;
  std::string name;
  int rows, cols;  // cols == 0: a vector of `rows`
  size_t elems() const { return static_cast<size_t>(rows) * (cols ? cols : 1); }
};

std::vector<WeightSpec> weightTable(const ModelConfig& mc) {
  const int C = mc.dModel, F = mc.ffn;
  std::vector<WeightSpec> w;
  w.push_back({WeightSpec::Embedding, "wte", mc.paddedVocab(), C});  // (Vp,C)
  for (int b = 0; b < mc.layers; ++b) {
    const std::string pre = "blocks." + std::to_string(b) + ".";
    w.push_back({WeightSpec::AttnNorm, pre + "attn_norm", C, 0});  // (C)
    w.push_back({WeightSpec::MlpNorm, pre + "mlp_norm", C, 0});    // (C)
    for (int j = 0; j < 7; ++j) {
      const int rows = (j == 4 || j == 5) ? F : C, cols = (j == 6) ? F : C;  // (out,in)
      w.push_back({WeightSpec::Linear, pre + kLinearNames[j], rows, cols});
    }
  }
  w.push_back({WeightSpec::FinalNorm, "norm_f", C, 0});  // (C)
  return w;
}

}  // namespace

ModelDims::ModelDims(const TrainConfig& cfg) {
  const ModelConfig& mc = cfg.model;
  B = static_cast<size_t>(cfg.microBatch);
  T = mc.seq;
  N = B * T;
  C = mc.dModel;
  F = mc.ffn;
  H = mc.heads;
  V = mc.vocab;
  L = mc.layers;
  S = cfg.recompute == Recompute::Block ? 1 : L;
  maxW = std::max(C * C, C * F);
  maxCF = std::max(C, F);
  bitW = L * (4 * C * C + 3 * C * F);
  actQuant = cfg.actBits != 0;
  quantized = cfg.quant != Quant::FP;
  polt = cfg.quant == Quant::Poltergeist;
  fpW = 0;
  for (const WeightSpec& w : weightTable(mc))
    if (w.role != WeightSpec::Linear || !polt) fpW += w.elems();
  chunks = cfg.microBatch > 0 ? static_cast<size_t>(cfg.accum) * (cfg.batch / cfg.microBatch) : 1;
  nl = 7 * L;
  const ArenaLayout a = arenaLayout(cfg);
  fpArena = a.fpArena;
  fpDecay = a.fpDecay;
  bitArena = a.bitArena;
  ternaryBytes = 2 * bitArena + kScaleStateFloats * sizeof(float) * nl;
  statsBytes = StepStatsLayout(nl).bytes;
}

// Decaying parameters (the embedding and, for fp/ste, the BitLinears' latent weights) first, then
// the norms; each in weight order. Poltergeist BitLinears take their codes and votes from the
// int8 arenas instead.
ArenaLayout arenaLayout(const TrainConfig& cfg) {
  const bool polt = cfg.quant == Quant::Poltergeist;
  ArenaLayout a;
  const std::vector<WeightSpec> table = weightTable(cfg.model);
  for (const WeightSpec& w : table) {
    if (w.role == WeightSpec::Linear) {
      if (polt) {
        a.bit.push_back(a.bitArena);
        a.bitArena = alignUp(a.bitArena + w.elems(), kBitAlign);
        continue;
      }
      a.bit.push_back(0);
    }
    a.fp.push_back({0, w.elems(), w.role == WeightSpec::Embedding || w.role == WeightSpec::Linear});
  }
  for (bool decay : {true, false}) {
    for (ArenaLayout::Fp& f : a.fp) {
      if (f.decay != decay) continue;
      f.offset = a.fpArena;
      a.fpArena = alignUp(a.fpArena + f.n, kFpAlign);
    }
    if (decay) a.fpDecay = a.fpArena;
  }
  return a;
}

StepStatsLayout::StepStatsLayout(size_t l) : layers(l) {
  static_assert(sizeof(StepHead) % 8 == 0 && alignof(FlipStats) <= 8, "step statistics alignment");
  accBytes = sizeof(StepHead) + sizeof(double) * l;
  report = accBytes;
  rWeight = report + accBytes;
  rFlips = rWeight + sizeof(double) * l;
  rScale = rFlips + sizeof(FlipStats) * l;
  bytes = rScale + sizeof(float) * l;
}

// ---- construction and memory ------------------------------------------------------------------

Model::Model(Backend& backend, const TrainConfig& c) : be(&backend), cfg(c), dims(c), stats(dims.nl) {
  const ModelDims& d = dims;
#define PRIMAL_ALLOC_ONE(name, T, field, elems) name = DBuf<T>(backend, elems);
#define PRIMAL_ALLOC_MANY(name, T, field, copies, elems) \
  for (size_t i = 0; i < (copies); ++i) name.emplace_back(backend, elems);
  PRIMAL_MODEL_BUFFERS(PRIMAL_ALLOC_ONE, PRIMAL_ALLOC_MANY)
#undef PRIMAL_ALLOC_ONE
#undef PRIMAL_ALLOC_MANY
  // Gradients, moments, votes, the Ghost Scale state and the step statistics start at zero
  // (arena padding stays zero for good); weights and codes are the trainer's to initialise.
  be->zero(gradArena, gradArena.bytes());
  be->zero(adamM, adamM.bytes());
  be->zero(adamV, adamV.bytes());
  be->zero(paramArena, paramArena.bytes());
  be->zero(ternary, ternary.bytes());
  be->zero(stepStats, stepStats.bytes());
  const ArenaLayout layout = arenaLayout(cfg);
  size_t fpIndex = 0, linIndex = 0;
  for (const WeightSpec& w : weightTable(cfg.model)) {
    const std::vector<int> shape = w.cols ? std::vector<int>{w.rows, w.cols} : std::vector<int>{w.rows};
    switch (w.role) {
      case WeightSpec::Embedding:
        pWte = addParam(w.name, shape, layout.fp[fpIndex]);
        break;
      case WeightSpec::AttnNorm:
        pNorm1.push_back(addParam(w.name, shape, layout.fp[fpIndex]));
        break;
      case WeightSpec::MlpNorm:
        pNorm2.push_back(addParam(w.name, shape, layout.fp[fpIndex]));
        break;
      case WeightSpec::FinalNorm:
        pNormF = addParam(w.name, shape, layout.fp[fpIndex]);
        break;
      case WeightSpec::Linear: {
        BitLayer l;
        l.rows = w.rows;
        l.cols = w.cols;
        l.n = w.elems();
        l.offset = layout.bit[linIndex++];
        if (polt()) {
          l.code = codes() + l.offset;
          l.vote = votes() + l.offset;
        } else {
          l.param = addParam(w.name, shape, layout.fp[fpIndex]);
        }
        lin.push_back(l);
        break;
      }
    }
    if (w.role != WeightSpec::Linear) ++fpIndex;
    else if (!polt()) ++fpIndex;
  }
  for (const FpParam& p : params) paramSegments.insert(paramSegments.end(), {p.offset, p.offset + p.n});
  if (!polt())
    for (const BitLayer& l : lin) {
      const FpParam& p = params[static_cast<size_t>(l.param)];
      linearSegments.insert(linearSegments.end(), {p.offset, p.offset + p.n});
    }
  prepareWeights();
}

int Model::addParam(const std::string& name, std::vector<int> shape, const ArenaLayout::Fp& at) {
  FpParam p;
  p.name = name;
  p.shape = shape;
  p.n = 1;
  for (int dim : shape) p.n *= static_cast<size_t>(dim);
  PRIMAL_CHECK(p.n == at.n, "model: the arena layout disagrees with the weight table for " + name);
  p.offset = at.offset;
  p.decay = at.decay;
  p.w = paramArena.data() + p.offset;
  p.g = gradArena.data() + p.offset;
  p.m = adamM.data() + p.offset;
  p.v = adamV.data() + p.offset;
  params.push_back(std::move(p));
  return static_cast<int>(params.size()) - 1;
}

MemoryReport Model::memory() const {
  MemoryReport r;
  for (auto& l : lin) r.ternaryWeights += l.n;
#define PRIMAL_COUNT_ONE(name, T, field, elems) r.field += name.bytes();
#define PRIMAL_COUNT_MANY(name, T, field, copies, elems) \
  for (auto& b : name) r.field += b.bytes();
  PRIMAL_MODEL_BUFFERS(PRIMAL_COUNT_ONE, PRIMAL_COUNT_MANY)
#undef PRIMAL_COUNT_ONE
#undef PRIMAL_COUNT_MANY
  return r;
}

MemoryReport Model::plannedMemory(const TrainConfig& cfg, size_t* deviceBytes) {
  MemoryReport r;
  for (const WeightSpec& w : weightTable(cfg.model))
    if (w.role == WeightSpec::Linear) r.ternaryWeights += w.elems();
  const ModelDims d(cfg);
#define PRIMAL_PLAN_ONE(name, T, field, elems) r.field += sizeof(T) * (elems);
#define PRIMAL_PLAN_MANY(name, T, field, copies, elems) r.field += (copies) * sizeof(T) * (elems);
  PRIMAL_MODEL_BUFFERS(PRIMAL_PLAN_ONE, PRIMAL_PLAN_MANY)
#undef PRIMAL_PLAN_ONE
#undef PRIMAL_PLAN_MANY
  if (deviceBytes)
    *deviceBytes = r.params + r.grads + r.optimizer + r.ternaryState + r.activations + r.scratch;
  return r;
}

// ---- inputs -------------------------------------------------------------------------------------

void Model::upload(const std::vector<int32_t>& in, const std::vector<int32_t>& tg) {
  chunk = 0;
  be->toDevice(inTok, in.data(), sizeof(int32_t) * in.size());
  be->toDevice(tgtTok, tg.data(), sizeof(int32_t) * tg.size());
}

void Model::checkTokens(const int32_t* t, size_t n, bool targets, const char* what) const {
  for (size_t i = 0; i < n; ++i) {
    if (t[i] >= V() || (!targets && t[i] < 0))
      throw Error(std::string(what) + ": token id " + std::to_string(t[i]) + " at position " +
                  std::to_string(i) + " is outside the vocabulary [0, " + std::to_string(V()) + ")");
  }
}

// ---- BitLinear ----------------------------------------------------------------------------------

// x (rows,cols) quantized to actBits into qscratch, or x itself when activation quantization is off.
const float* Model::actQ(const float* x, int rows, int cols) {
  if (cfg.actBits == 0) return x;
  be->actQuant(x, qscratch, rows, cols, cfg.actBits);
  return qscratch;
}

const float* Model::weightFor(int li) {
  BitLayer& l = lin[li];
  if (cfg.quant == Quant::FP) return params[l.param].w;
  if (cfg.quant == Quant::STE) {
    char& fresh = steFresh[static_cast<size_t>(li)];
    be->steQuantize(params[l.param].w, wscratch, l.n, steAbs.data() + li, !fresh);
    fresh = 1;
    return wscratch;
  }
  be->poltMaterialize(l.code, wscratch, l.n, ghostGamma0() + li, ghostS() + li, cfg.knobs.bridgeLevel());
  return wscratch;
}

// y (Nt,rows) (+)= x (Nt,cols) . W^T
void Model::linearForward(int li, const float* x, float* y, int Nt, float beta) {
  BitLayer& l = lin[li];
  const float* W = weightFor(li);
  be->gemm(false, true, Nt, l.rows, l.cols, 1.0f, x, l.cols, W, l.cols, beta, y, l.rows);
}

// dx (Nt,cols) (+)= dy (Nt,rows) . W
void Model::linearBackwardData(int li, const float* dy, float* dx, int Nt, float beta) {
  BitLayer& l = lin[li];
  const float* W = weightFor(li);
  be->gemm(false, false, Nt, l.cols, l.rows, 1.0f, dy, l.rows, W, l.cols, beta, dx, l.cols);
}

// G (rows,cols) = dy^T . x; fp/ste accumulate it into the latent weight's gradient, Poltergeist
// votes with it (gscratch) and drops it, accumulating dL/ds.
void Model::linearBackwardWeight(int li, const float* dy, const float* x, int Nt) {
  BitLayer& l = lin[li];
  if (!polt()) {
    be->gemm(true, false, l.rows, l.cols, Nt, 1.0f, dy, l.rows, x, l.cols, 1.0f, params[l.param].g, l.cols);
    return;
  }
  be->gemm(true, false, l.rows, l.cols, Nt, 1.0f, dy, l.rows, x, l.cols, 0.0f, gscratch, l.cols);
  be->poltVote(gscratch, l.code, l.vote, l.n, cfg.knobs.bridgeLevel(), cfg.knobs.deadzone, ghostGamma0() + li,
               ds() + li);
}

// ---- block --------------------------------------------------------------------------------------

// res[b] -> activation set setOf(b) and res[b+1]:
//   x1 = actQ(norm1(res[b]))                  lnS, rstd1
//   q, k, v = rope(x1 Wq^T), rope(x1 Wk^T), x1 Wv^T
//   att = softmax(q k^T / sqrt(D), causal) v    lse
//   resMid = res[b] + actQ(att) Wo^T
//   x2 = actQ(norm2(resMid))                  lnS, rstd2
//   gate, up = x2 Wgate^T, x2 Wup^T
//   res[b+1] = resMid + actQ(silu(gate) * up) Wdown^T   (the product in hS)
// withOutput=false (the recompute before its backward) stops after gate/up: the rest only
// produces res[b+1], already known.
void Model::blockForward(int b, int B, int T, bool withOutput) {
  const int Nt = B * T, Cd = C(), Fd = F(), H = cfg.model.heads, D = Cd / H;
  const float eps = cfg.model.normEps;
  const size_t s = setOf(b);
  const int li = 7 * b;
  be->rmsnormForward(res[b], params[pNorm1[b]].w, lnS, rstd1[s], Nt, Cd, eps);
  const float* x1 = actQ(lnS, Nt, Cd);
  linearForward(li + 0, x1, q[s], Nt, 0.0f);
  linearForward(li + 1, x1, k[s], Nt, 0.0f);
  linearForward(li + 2, x1, v[s], Nt, 0.0f);
  be->rope(q[s], B, T, H, D, cfg.model.ropeTheta, false);
  be->rope(k[s], B, T, H, D, cfg.model.ropeTheta, false);
  be->attentionForward(q[s], k[s], v[s], att[s], lse[s], B, T, H, D);
  be->copy(resMid[s], res[b], sizeof(float) * Nt * Cd);
  linearForward(li + 3, actQ(att[s], Nt, Cd), resMid[s], Nt, 1.0f);
  be->rmsnormForward(resMid[s], params[pNorm2[b]].w, lnS, rstd2[s], Nt, Cd, eps);
  const float* x2 = actQ(lnS, Nt, Cd);
  linearForward(li + 4, x2, gate[s], Nt, 0.0f);
  linearForward(li + 5, x2, up[s], Nt, 0.0f);
  if (!withOutput) return;
  be->swigluForward(gate[s], up[s], hS, static_cast<size_t>(Nt) * Fd);
  be->copy(res[b + 1], resMid[s], sizeof(float) * Nt * Cd);
  linearForward(li + 6, actQ(hS, Nt, Fd), res[b + 1], Nt, 1.0f);
}

// dres (B,T,C) = dL/dres[b+1] -> dL/dres[b], with the weight gradients (or votes) of block b.
// The norm outputs and the SwiGLU product are recomputed into lnS/hS (bit-identical values).
void Model::blockBackward(int b, int B, int T) {
  const int Nt = B * T, Cd = C(), Fd = F(), H = cfg.model.heads, D = Cd / H;
  const float eps = cfg.model.normEps;
  const size_t s = setOf(b);
  const int li = 7 * b;
  // MLP: res[b+1] = resMid + down(q(h)), h = silu(gate) * up recomputed.
  be->swigluForward(gate[s], up[s], hS, static_cast<size_t>(Nt) * Fd);
  linearBackwardData(li + 6, dres, dh, Nt, 0.0f);
  linearBackwardWeight(li + 6, dres, actQ(hS, Nt, Fd), Nt);
  be->swigluBackward(gate[s], up[s], dh, dgate, dup, static_cast<size_t>(Nt) * Fd);
  linearBackwardData(li + 4, dgate, dln, Nt, 0.0f);
  linearBackwardData(li + 5, dup, dln, Nt, 1.0f);
  // ln2 recomputed (rewrites rstd2 with the identical value).
  be->rmsnormForward(resMid[s], params[pNorm2[b]].w, lnS, rstd2[s], Nt, Cd, eps);
  const float* x2 = actQ(lnS, Nt, Cd);
  linearBackwardWeight(li + 4, dgate, x2, Nt);
  linearBackwardWeight(li + 5, dup, x2, Nt);
  be->rmsnormBackward(resMid[s], params[pNorm2[b]].w, rstd2[s], dln, dres, params[pNorm2[b]].g, Nt, Cd);
  // Attention: resMid = res[b] + o(q(att))
  linearBackwardData(li + 3, dres, datt, Nt, 0.0f);
  linearBackwardWeight(li + 3, dres, actQ(att[s], Nt, Cd), Nt);
  be->attentionBackward(q[s], k[s], v[s], att[s], lse[s], datt, dq, dk, dv, B, T, H, D);
  be->rope(dq, B, T, H, D, cfg.model.ropeTheta, true);
  be->rope(dk, B, T, H, D, cfg.model.ropeTheta, true);
  linearBackwardData(li + 0, dq, dln, Nt, 0.0f);
  linearBackwardData(li + 1, dk, dln, Nt, 1.0f);
  linearBackwardData(li + 2, dv, dln, Nt, 1.0f);
  // ln1 recomputed.
  be->rmsnormForward(res[b], params[pNorm1[b]].w, lnS, rstd1[s], Nt, Cd, eps);
  const float* x1 = actQ(lnS, Nt, Cd);
  linearBackwardWeight(li + 0, dq, x1, Nt);
  linearBackwardWeight(li + 1, dk, x1, Nt);
  linearBackwardWeight(li + 2, dv, x1, Nt);
  be->rmsnormBackward(res[b], params[pNorm1[b]].w, rstd1[s], dln, dres, params[pNorm1[b]].g, Nt, Cd);
}

// ---- trunk --------------------------------------------------------------------------------------

// inTok (B,T) -> res[0] = wte[inTok] -> blocks -> lnf = norm_f(res[L]).
void Model::forward(int B, int T) {
  prepareWeights();
  be->embeddingForward(inRows(), params[pWte].w, res[0], B * T, C());
  for (int b = 0; b < L(); ++b) blockForward(b, B, T, true);
  be->rmsnormForward(res[L()], params[pNormF].w, lnf, rstdf, B * T, C(), cfg.model.normEps);
}

// dlnf (B,T,C) (written by the classifier) -> dres through norm_f and every block (in reverse,
// each recomputed first under block recompute) -> the embedding's gradient.
void Model::backward(int B, int T) {
  const int Nt = B * T, Cd = C();
  be->zero(dres, sizeof(float) * Nt * Cd);
  be->rmsnormBackward(res[L()], params[pNormF].w, rstdf, dlnf, dres, params[pNormF].g, Nt, Cd);
  for (int b = L() - 1; b >= 0; --b) {
    if (recomputing()) blockForward(b, B, T, false);
    blockBackward(b, B, T);
  }
  be->embeddingBackward(inRows(), dres, params[pWte].g, Nt, Cd);
}

// ---- classifier ---------------------------------------------------------------------------------

// lnf (Nt,C) . wte^T -> logits (Nt,V) -> losses (Nt) against tgtTok, fused, chunked by the backend.
std::pair<double, double> Model::classify(const std::vector<int32_t>& targets, int Nt, bool withGrad,
                                          float gradScale) {
  be->classifier(lnf, params[pWte].w, tgtRows(), losses, withGrad ? dlnf.data() : nullptr,
                 withGrad ? params[pWte].g : nullptr, Nt, C(), V(), gradScale);
  hostLoss.resize(Nt);
  be->toHost(hostLoss.data(), losses, sizeof(float) * Nt);
  double sum = 0, cnt = 0;
  for (int i = 0; i < Nt; ++i)
    if (targets[i] >= 0) {
      sum += hostLoss[i];
      cnt += 1;
    }
  return {sum, cnt};
}

void Model::classifyStep(int Nt, float gradScale) {
  be->classifier(lnf, params[pWte].w, tgtRows(), losses, dlnf, params[pWte].g, Nt, C(), V(), gradScale);
  be->stepLoss(losses, tgtRows(), Nt, head());
}

void Model::logits(size_t row, float* hostOut) {
  be->logits(lnf.data() + row * C(), params[pWte].w, logitsBuf, 1, C(), V());
  be->toHost(hostOut, logitsBuf, sizeof(float) * V());
}

}  // namespace primal
