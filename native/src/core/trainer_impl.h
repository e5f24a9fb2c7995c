// Internal state of primal::Trainer, shared by the trainer and checkpoint translation units.
#pragma once
#include <algorithm>
#include <cmath>
#include <string>
#include <utility>
#include <vector>

#include "primal/error.h"
#include "primal/trainer.h"

namespace primal {

inline const char* const kLinearNames[7] = {"attn.q", "attn.k", "attn.v", "attn.o",
                                            "mlp.gate", "mlp.up", "mlp.down"};

// Device buffer owned by the backend.
template <typename T>
struct DBuf {
  Backend* be = nullptr;
  T* p = nullptr;
  size_t n = 0;
  void alloc(Backend* b, size_t count) {
    be = b;
    n = count;
    p = count ? static_cast<T*>(b->alloc(count * sizeof(T))) : nullptr;
  }
  void release() {
    if (p) be->free(p);
    p = nullptr;
    n = 0;
  }
  size_t bytes() const { return n * sizeof(T); }
};

struct FpParam {
  std::string name;
  std::vector<int> shape;
  size_t n = 0;
  bool decay = false;
  DBuf<float> w, g, m, v;
};

struct BitLayer {
  int rows = 0, cols = 0;
  size_t n = 0;
  int param = -1;  // fp/ste: index of its latent weight in params
  DBuf<int8_t> code, vote;
  float s = 1.0f, sM = 0.0f, sV = 0.0f, gamma0 = 1.0f;
  double ds = 0.0;
};

// Kept per block for backward. The norm outputs and the SwiGLU product are not kept: backward
// recomputes them (element-wise, from resMid/the block input with their rstd, and from gate/up)
// into the shared lnS/hS buffers, bit-identically, for about a third less activation memory.
struct BlockActs {
  DBuf<float> resMid, q, k, v, att, gate, up, rstd1, rstd2, lse;
};

struct Trainer::Impl {
  Backend* be = nullptr;
  TrainConfig cfg;
  int N = 0;  // B*T capacity
  std::vector<FpParam> params;
  int pWte = 0, pNormF = 0;
  std::vector<int> pNorm1, pNorm2;
  std::vector<BitLayer> lin;  // 7 per block
  std::vector<BlockActs> acts;
  std::vector<DBuf<float>> res;  // L+1 residual streams
  DBuf<float> lnf, rstdf, dlnf, dres, dln, dq, dk, dv, datt, dgate, dup, dh, qscratch, wscratch,
      gscratch, losses, logitsBuf;
  DBuf<float> lnS, hS;  // norm output and SwiGLU product of the block at hand (recomputed)
  DBuf<int32_t> inTok, tgtTok;
  std::vector<float> hostLoss;

  ~Impl() {
    for (auto& p : params) {
      p.w.release(); p.g.release(); p.m.release(); p.v.release();
    }
    for (auto& l : lin) {
      l.code.release(); l.vote.release();
    }
    for (auto& a : acts) {
      for (DBuf<float>* b : {&a.resMid, &a.q, &a.k, &a.v, &a.att, &a.gate, &a.up, &a.rstd1,
                             &a.rstd2, &a.lse})
        b->release();
    }
    for (auto& r : res) r.release();
    for (DBuf<float>* b : {&lnf, &rstdf, &dlnf, &dres, &dln, &dq, &dk, &dv, &datt, &dgate, &dup, &dh,
                           &qscratch, &wscratch, &gscratch, &losses, &logitsBuf, &lnS, &hS})
      b->release();
    inTok.release();
    tgtTok.release();
  }

  int C() const { return cfg.model.dModel; }
  int F() const { return cfg.model.ffn; }
  int L() const { return cfg.model.layers; }
  int V() const { return cfg.model.vocab; }
  bool polt() const { return cfg.quant == Quant::Poltergeist; }

  int addParam(const std::string& name, std::vector<int> shape, bool decay) {
    FpParam p;
    p.name = name;
    p.shape = shape;
    p.n = 1;
    for (int d : shape) p.n *= static_cast<size_t>(d);
    p.decay = decay;
    p.w.alloc(be, p.n);
    p.g.alloc(be, p.n);
    p.m.alloc(be, p.n);
    p.v.alloc(be, p.n);
    be->zero(p.g.p, p.g.bytes());
    be->zero(p.m.p, p.m.bytes());
    be->zero(p.v.p, p.v.bytes());
    params.push_back(std::move(p));
    return static_cast<int>(params.size()) - 1;
  }

  const float* actQ(const float* x, int rows, int cols) {
    if (cfg.actBits == 0) return x;
    be->actQuant(x, qscratch.p, rows, cols, cfg.actBits);
    return qscratch.p;
  }

  // The weight used by forward/backward for BitLinear `li`, materialized when quantized.
  const float* weightFor(int li) {
    BitLayer& l = lin[li];
    if (cfg.quant == Quant::FP) return params[l.param].w.p;
    if (cfg.quant == Quant::STE) {
      be->steQuantize(params[l.param].w.p, wscratch.p, l.n);
      return wscratch.p;
    }
    const Knobs& k = cfg.knobs;
    be->poltMaterialize(l.code.p, wscratch.p, l.n, l.gamma0 * l.s, k.bridge);
    return wscratch.p;
  }

  // y[N,rows] (+)= x[N,cols] . W^T
  void linearFwd(int li, const float* x, float* y, int Nt, float beta) {
    BitLayer& l = lin[li];
    const float* W = weightFor(li);
    be->gemm(false, true, Nt, l.rows, l.cols, 1.0f, x, l.cols, W, l.cols, beta, y, l.rows);
  }
  // dx[N,cols] (+)= dy[N,rows] . W
  void linearBwdData(int li, const float* dy, float* dx, int Nt, float beta) {
    BitLayer& l = lin[li];
    const float* W = weightFor(li);
    be->gemm(false, false, Nt, l.cols, l.rows, 1.0f, dy, l.rows, W, l.cols, beta, dx, l.cols);
  }
  // Weight gradient G = dy^T . x; fp/ste accumulate it, Poltergeist votes with it and drops it.
  void linearBwdWeight(int li, const float* dy, const float* x, int Nt) {
    BitLayer& l = lin[li];
    if (!polt()) {
      be->gemm(true, false, l.rows, l.cols, Nt, 1.0f, dy, l.rows, x, l.cols, 1.0f,
               params[l.param].g.p, l.cols);
      return;
    }
    be->gemm(true, false, l.rows, l.cols, Nt, 1.0f, dy, l.rows, x, l.cols, 0.0f, gscratch.p, l.cols);
    double sum = be->poltVote(gscratch.p, l.code.p, l.vote.p, l.n, cfg.knobs.bridge, cfg.knobs.deadzone);
    l.ds += static_cast<double>(l.gamma0) * sum;
  }

  bool recomputing() const { return cfg.recompute == Recompute::Block; }
  // The activation set of block b: its own, or the one shared set under block recompute.
  BlockActs& actsOf(int b) { return acts[recomputing() ? 0 : static_cast<size_t>(b)]; }

  // Forward through the final norm; tokens already on the device in inTok.
  void forwardTrunk(int B, int T) {
    be->embeddingForward(inTok.p, params[pWte].w.p, res[0].p, B * T, C());
    for (int b = 0; b < L(); ++b) blockForward(b, B, T, true);
    be->rmsnormForward(res[L()].p, params[pNormF].w.p, lnf.p, rstdf.p, B * T, C(), cfg.model.normEps);
  }

  // One block from res[b] into its activation set. withOutput=false (the recompute before its
  // backward) stops after gate/up: the rest only produces res[b+1], already known.
  void blockForward(int b, int B, int T, bool withOutput) {
    const int Nt = B * T, Cd = C(), Fd = F(), H = cfg.model.heads, D = Cd / H;
    const float eps = cfg.model.normEps;
    {
      BlockActs& a = actsOf(b);
      const int li = 7 * b;
      be->rmsnormForward(res[b].p, params[pNorm1[b]].w.p, lnS.p, a.rstd1.p, Nt, Cd, eps);
      const float* x1 = actQ(lnS.p, Nt, Cd);
      linearFwd(li + 0, x1, a.q.p, Nt, 0.0f);
      linearFwd(li + 1, x1, a.k.p, Nt, 0.0f);
      linearFwd(li + 2, x1, a.v.p, Nt, 0.0f);
      be->rope(a.q.p, B, T, H, D, cfg.model.ropeTheta, false);
      be->rope(a.k.p, B, T, H, D, cfg.model.ropeTheta, false);
      be->attentionForward(a.q.p, a.k.p, a.v.p, a.att.p, a.lse.p, B, T, H, D);
      be->copy(a.resMid.p, res[b].p, sizeof(float) * Nt * Cd);
      linearFwd(li + 3, actQ(a.att.p, Nt, Cd), a.resMid.p, Nt, 1.0f);
      be->rmsnormForward(a.resMid.p, params[pNorm2[b]].w.p, lnS.p, a.rstd2.p, Nt, Cd, eps);
      const float* x2 = actQ(lnS.p, Nt, Cd);
      linearFwd(li + 4, x2, a.gate.p, Nt, 0.0f);
      linearFwd(li + 5, x2, a.up.p, Nt, 0.0f);
      if (!withOutput) return;
      be->swigluForward(a.gate.p, a.up.p, hS.p, static_cast<size_t>(Nt) * Fd);
      be->copy(res[b + 1].p, a.resMid.p, sizeof(float) * Nt * Cd);
      linearFwd(li + 6, actQ(hS.p, Nt, Fd), res[b + 1].p, Nt, 1.0f);
    }
  }

  // Backward from dlnf (written by the classifier) down to the embedding.
  void backward(int B, int T) {
    const int Nt = B * T, Cd = C(), Fd = F(), H = cfg.model.heads, D = Cd / H;
    be->zero(dres.p, sizeof(float) * Nt * Cd);
    be->rmsnormBackward(res[L()].p, params[pNormF].w.p, rstdf.p, dlnf.p, dres.p, params[pNormF].g.p, Nt, Cd);
    for (int b = L() - 1; b >= 0; --b) {
      if (recomputing()) blockForward(b, B, T, false);
      BlockActs& a = actsOf(b);
      const int li = 7 * b;
      // MLP: res[b+1] = resMid + down(q(h)), h = silu(gate) * up recomputed.
      be->swigluForward(a.gate.p, a.up.p, hS.p, static_cast<size_t>(Nt) * Fd);
      linearBwdData(li + 6, dres.p, dh.p, Nt, 0.0f);
      linearBwdWeight(li + 6, dres.p, actQ(hS.p, Nt, Fd), Nt);
      be->swigluBackward(a.gate.p, a.up.p, dh.p, dgate.p, dup.p, static_cast<size_t>(Nt) * Fd);
      linearBwdData(li + 4, dgate.p, dln.p, Nt, 0.0f);
      linearBwdData(li + 5, dup.p, dln.p, Nt, 1.0f);
      // ln2 recomputed (rewrites rstd2 with the identical value).
      be->rmsnormForward(a.resMid.p, params[pNorm2[b]].w.p, lnS.p, a.rstd2.p, Nt, Cd, cfg.model.normEps);
      const float* x2 = actQ(lnS.p, Nt, Cd);
      linearBwdWeight(li + 4, dgate.p, x2, Nt);
      linearBwdWeight(li + 5, dup.p, x2, Nt);
      be->rmsnormBackward(a.resMid.p, params[pNorm2[b]].w.p, a.rstd2.p, dln.p, dres.p, params[pNorm2[b]].g.p, Nt, Cd);
      // Attention: resMid = res[b] + o(q(att))
      linearBwdData(li + 3, dres.p, datt.p, Nt, 0.0f);
      linearBwdWeight(li + 3, dres.p, actQ(a.att.p, Nt, Cd), Nt);
      be->attentionBackward(a.q.p, a.k.p, a.v.p, a.att.p, a.lse.p, datt.p, dq.p, dk.p, dv.p, B, T, H, D);
      be->rope(dq.p, B, T, H, D, cfg.model.ropeTheta, true);
      be->rope(dk.p, B, T, H, D, cfg.model.ropeTheta, true);
      linearBwdData(li + 0, dq.p, dln.p, Nt, 0.0f);
      linearBwdData(li + 1, dk.p, dln.p, Nt, 1.0f);
      linearBwdData(li + 2, dv.p, dln.p, Nt, 1.0f);
      be->rmsnormForward(res[b].p, params[pNorm1[b]].w.p, lnS.p, a.rstd1.p, Nt, Cd, cfg.model.normEps);
      const float* x1 = actQ(lnS.p, Nt, Cd);
      linearBwdWeight(li + 0, dq.p, x1, Nt);
      linearBwdWeight(li + 1, dk.p, x1, Nt);
      linearBwdWeight(li + 2, dv.p, x1, Nt);
      be->rmsnormBackward(res[b].p, params[pNorm1[b]].w.p, a.rstd1.p, dln.p, dres.p, params[pNorm1[b]].g.p, Nt, Cd);
    }
    be->embeddingBackward(inTok.p, dres.p, params[pWte].g.p, Nt, Cd);
  }

  // Classifier over the current lnf; returns the loss sum (nats) and scored count.
  std::pair<double, double> classify(const std::vector<int32_t>& targets, int Nt, bool withGrad,
                                     float gradScale) {
    be->classifier(lnf.p, params[pWte].w.p, tgtTok.p, losses.p, withGrad ? dlnf.p : nullptr,
                   withGrad ? params[pWte].g.p : nullptr, Nt, C(), V(), gradScale);
    hostLoss.resize(Nt);
    be->toHost(hostLoss.data(), losses.p, sizeof(float) * Nt);
    double sum = 0, cnt = 0;
    for (int i = 0; i < Nt; ++i)
      if (targets[i] >= 0) {
        sum += hostLoss[i];
        cnt += 1;
      }
    return {sum, cnt};
  }

  void upload(const std::vector<int32_t>& in, const std::vector<int32_t>& tg) {
    be->toDevice(inTok.p, in.data(), sizeof(int32_t) * in.size());
    be->toDevice(tgtTok.p, tg.data(), sizeof(int32_t) * tg.size());
  }

  void checkTokens(const int32_t* t, size_t n, bool targets, const char* what) const {
    for (size_t i = 0; i < n; ++i) {
      if (t[i] >= V() || (!targets && t[i] < 0))
        throw Error(std::string(what) + ": token id " + std::to_string(t[i]) + " at position " +
                    std::to_string(i) + " is outside the vocabulary [0, " + std::to_string(V()) + ")");
    }
  }

  float lrFactor(int step) const {
    if (cfg.warmup > 0 && step < cfg.warmup) return static_cast<float>(step + 1) / cfg.warmup;
    int span = std::max(1, cfg.totalSteps - cfg.warmup);
    double prog = std::min(1.0, static_cast<double>(step - cfg.warmup) / span);
    double c = 0.5 * (1.0 + std::cos(3.14159265358979323846 * prog));
    return static_cast<float>(cfg.minLrRatio + (1.0 - cfg.minLrRatio) * c);
  }
};

}  // namespace primal
