// The Ghost transformer (DESIGN §2) and its training step (DESIGN §4–§5) over any Backend.
// Activations kept for backward per block: residual after attention, q/k/v (after RoPE), attention
// output, gate/up and the norm/attention statistics. Norm outputs, the SwiGLU product, quantized
// activations and materialized BitLinear weights are recomputed on use, so a Poltergeist layer
// costs 2 bytes per weight of state (code + vote) and one shared scratch.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <numeric>

#include "primal/error.h"
#include "primal/philox.h"
#include "primal/trainer.h"
#include "trainer_impl.h"

namespace primal {

namespace {

// Standard normals for parameter init from the Philox init stream (host only, so CPU and CUDA
// runs start from identical weights).
void normalInit(std::vector<float>& out, float stdv, uint32_t paramId, uint64_t seed) {
  const uint32_t k0 = static_cast<uint32_t>(seed), k1 = static_cast<uint32_t>(seed >> 32);
  const double twoPi = 6.283185307179586476925286766559;
  for (size_t i = 0; i < out.size(); i += 4) {
    Philox4 r = philox4x32_10(static_cast<uint32_t>(i / 4), paramId, 0, kStreamInit, k0, k1);
    for (int pair = 0; pair < 2; ++pair) {
      double u1 = (static_cast<double>(r.v[2 * pair]) + 1.0) / 4294967296.0;  // (0, 1]
      double u2 = static_cast<double>(r.v[2 * pair + 1]) / 4294967296.0;
      double rad = std::sqrt(-2.0 * std::log(u1));
      double z0 = rad * std::cos(twoPi * u2), z1 = rad * std::sin(twoPi * u2);
      if (i + 2 * pair < out.size()) out[i + 2 * pair] = static_cast<float>(z0 * stdv);
      if (i + 2 * pair + 1 < out.size()) out[i + 2 * pair + 1] = static_cast<float>(z1 * stdv);
    }
  }
}

int8_t nearestCode(float x, float b, bool bridgeOn) {
  float a = std::fabs(x);
  int mag;
  if (bridgeOn) mag = a < 0.5f * b ? 0 : (a < 0.5f * (1.0f + b) ? 1 : 2);
  else mag = a < 0.5f ? 0 : 2;
  return static_cast<int8_t>(x < 0 ? -mag : mag);
}

}  // namespace


// ----------------------------------------------------------------------------------------------

Trainer::Trainer(const TrainConfig& cfg, const std::string& backend, int threads) : cfg_(cfg) {
  cfg_.validate();
  be_ = makeBackend(backend, threads);
  {
    // Resolve the execution plan before anything large is allocated.
    MemoryPlanning pl = planMemory(cfg_, *be_);
    if (pl.chosen < 0) {
      const MemoryPlan* best = &pl.candidates.front();
      for (const MemoryPlan& c : pl.candidates)
        if (c.totalBytes < best->totalBytes) best = &c;
      auto gib = [](size_t b) {
        return std::to_string(static_cast<double>(b) / (1024.0 * 1024.0 * 1024.0)).substr(0, 6) + " GiB";
      };
      throw Error("memoryBudget " + gib(cfg_.memoryBudget) + " is too small: the leanest plan (microBatch " +
                  std::to_string(best->microBatch) + ", recompute " + recomputeName(best->recompute) +
                  ") needs " + gib(best->totalBytes) + " (parameters, optimizer and gradients " +
                  gib(best->estimate.params + best->estimate.optimizer + best->estimate.grads) +
                  ", activations " + gib(best->estimate.activations) + ")");
    }
    const MemoryPlan& chosen = pl.candidates[pl.chosen];
    cfg_.microBatch = chosen.microBatch;
    cfg_.recompute = chosen.recompute;
    plannedBytes_ = chosen.totalBytes;
  }
  m_ = std::make_unique<Impl>();
  Impl& m = *m_;
  m.be = be_.get();
  m.cfg = cfg_;
  const ModelConfig& mc = cfg_.model;
  const int Cd = mc.dModel, Fd = mc.ffn, Lc = mc.layers, T = mc.seq, B = cfg_.microBatch;
  m.N = B * T;
  const size_t N = static_cast<size_t>(m.N);
  const uint64_t seed = cfg_.seed;
  uint32_t pid = 0;

  auto initParam = [&](int idx, bool ones) {
    FpParam& p = m.params[idx];
    std::vector<float> host(p.n);
    if (ones) std::fill(host.begin(), host.end(), 1.0f);
    else normalInit(host, mc.initStd, pid, seed);
    ++pid;
    be_->toDevice(p.w.p, host.data(), sizeof(float) * p.n);
  };

  m.pWte = m.addParam("wte", {mc.paddedVocab(), Cd}, true);
  initParam(m.pWte, false);
  m.lin.resize(static_cast<size_t>(7 * Lc));
  size_t maxW = 0;
  for (int b = 0; b < Lc; ++b) {
    std::string pre = "blocks." + std::to_string(b) + ".";
    m.pNorm1.push_back(m.addParam(pre + "attn_norm", {Cd}, false));
    initParam(m.pNorm1.back(), true);
    m.pNorm2.push_back(m.addParam(pre + "mlp_norm", {Cd}, false));
    initParam(m.pNorm2.back(), true);
    for (int j = 0; j < 7; ++j) {
      BitLayer& l = m.lin[7 * b + j];
      l.rows = (j == 4 || j == 5) ? Fd : Cd;
      l.cols = (j == 6) ? Fd : Cd;
      l.n = static_cast<size_t>(l.rows) * l.cols;
      maxW = std::max(maxW, l.n);
      layerInfo_.push_back({pre + kLinearNames[j], l.rows, l.cols});
      std::vector<float> w0(l.n);
      normalInit(w0, mc.initStd, pid, seed);
      ++pid;
      double absSum = 0;
      for (float x : w0) absSum += std::fabs(x);
      l.gamma0 = static_cast<float>(absSum / static_cast<double>(l.n));
      if (cfg_.quant == Quant::Poltergeist) {
        std::vector<int8_t> code(l.n);
        for (size_t i = 0; i < l.n; ++i)
          code[i] = nearestCode(w0[i] / l.gamma0, cfg_.knobs.bridge, cfg_.knobs.bridgeOn);
        l.code.alloc(be_.get(), l.n);
        l.vote.alloc(be_.get(), l.n);
        be_->toDevice(l.code.p, code.data(), l.n);
        be_->zero(l.vote.p, l.n);
      } else {
        l.param = m.addParam(pre + kLinearNames[j], {l.rows, l.cols}, true);
        be_->toDevice(m.params[l.param].w.p, w0.data(), sizeof(float) * l.n);
      }
    }
  }
  m.pNormF = m.addParam("norm_f", {Cd}, false);
  initParam(m.pNormF, true);

  // Activations and workspaces (memory_plan.cpp predicts exactly these).
  m.acts.resize(cfg_.recompute == Recompute::Block ? 1 : Lc);
  const size_t lseN = static_cast<size_t>(B) * mc.heads * T;
  for (auto& a : m.acts) {
    for (DBuf<float>* bf : {&a.resMid, &a.q, &a.k, &a.v, &a.att}) bf->alloc(be_.get(), N * Cd);
    for (DBuf<float>* bf : {&a.gate, &a.up}) bf->alloc(be_.get(), N * Fd);
    a.rstd1.alloc(be_.get(), N);
    a.rstd2.alloc(be_.get(), N);
    a.lse.alloc(be_.get(), lseN);
  }
  m.res.resize(Lc + 1);
  for (auto& r : m.res) r.alloc(be_.get(), N * Cd);
  for (DBuf<float>* bf : {&m.lnf, &m.dlnf, &m.dres, &m.dln, &m.dq, &m.dk, &m.dv, &m.datt, &m.lnS})
    bf->alloc(be_.get(), N * Cd);
  for (DBuf<float>* bf : {&m.dgate, &m.dup, &m.dh, &m.hS}) bf->alloc(be_.get(), N * Fd);
  m.rstdf.alloc(be_.get(), N);
  m.losses.alloc(be_.get(), N);
  if (cfg_.actBits) m.qscratch.alloc(be_.get(), N * std::max(Cd, Fd));
  if (cfg_.quant != Quant::FP) m.wscratch.alloc(be_.get(), maxW);
  if (cfg_.quant == Quant::Poltergeist) m.gscratch.alloc(be_.get(), maxW);
  m.logitsBuf.alloc(be_.get(), static_cast<size_t>(mc.vocab));
  m.inTok.alloc(be_.get(), N);
  m.tgtTok.alloc(be_.get(), N);
  be_->sync();
}

Trainer::~Trainer() {
  m_.reset();
  be_.reset();
}

std::string Trainer::deviceName() const { return be_->describe(); }

void Trainer::setKnobs(const Knobs& k) {
  k.validate();
  Impl& m = *m_;
  // Turning the bridge off resolves the +-b codes of every Poltergeist layer (DESIGN §4).
  if (cfg_.quant == Quant::Poltergeist && cfg_.knobs.bridgeOn && !k.bridgeOn) {
    const int8_t mag = cfg_.knobs.bridge >= 0.5f ? 2 : 0;
    for (auto& l : m.lin) {
      std::vector<int8_t> c(l.n);
      be_->toHost(c.data(), l.code.p, l.n);
      for (auto& x : c)
        if (x == 1 || x == -1) x = static_cast<int8_t>(x > 0 ? mag : -mag);
      be_->toDevice(l.code.p, c.data(), l.n);
    }
  }
  Knobs nk = k;
  if (!nk.bridgeOn) nk.bridge = cfg_.knobs.bridge;  // keep the last value for when it comes back
  cfg_.knobs = nk;
  m.cfg.knobs = nk;
}

void Trainer::setTrainData(std::vector<int32_t> tokens) {
  const int T = cfg_.model.seq;
  if (tokens.size() < static_cast<size_t>(T) + 2)
    throw Error("train data: need at least seq + 2 = " + std::to_string(T + 2) + " tokens, got " +
                std::to_string(tokens.size()));
  m_->checkTokens(tokens.data(), tokens.size(), false, "train data");
  train_ = std::move(tokens);
}

float Trainer::accumulate() {
  if (train_.empty()) throw Error("no training data: call setTrainData() first");
  Impl& m = *m_;
  const int B = cfg_.microBatch, T = cfg_.model.seq, Nt = B * T;
  const uint32_t k0 = static_cast<uint32_t>(cfg_.seed), k1 = static_cast<uint32_t>(cfg_.seed >> 32);
  std::vector<int32_t> in(Nt), tg(Nt);
  const uint64_t span = train_.size() - static_cast<uint64_t>(T);
  for (int j = 0; j < B; ++j) {
    // Window g of the step is window g % batch of micro-batch g / batch, whatever the chunking,
    // so a memory plan never changes the data.
    const uint64_t g = static_cast<uint64_t>(accumulated_) * B + j;
    const uint64_t wb = g % static_cast<uint64_t>(cfg_.batch), wk = g / static_cast<uint64_t>(cfg_.batch);
    Philox4 r = philox4x32_10(static_cast<uint32_t>(wb), static_cast<uint32_t>(wk),
                              static_cast<uint32_t>(step_), kStreamData, k0, k1);
    uint64_t start = ((static_cast<uint64_t>(r.v[1]) << 32) | r.v[0]) % span;
    std::memcpy(&in[static_cast<size_t>(j) * T], &train_[start], sizeof(int32_t) * T);
    std::memcpy(&tg[static_cast<size_t>(j) * T], &train_[start + 1], sizeof(int32_t) * T);
  }
  m.upload(in, tg);
  m.forwardTrunk(B, T);
  const float gradScale = 1.0f / (static_cast<float>(Nt) * static_cast<float>(chunksPerStep()));
  // One fused pass gives the loss and its gradient; the loss is checked before backward, so a
  // non-finite loss leaves votes untouched (the partial fp gradients are dropped).
  be_->classifier(m.lnf.p, m.params[m.pWte].w.p, m.tgtTok.p, m.losses.p, m.dlnf.p,
                  m.params[m.pWte].g.p, Nt, m.C(), m.V(), gradScale);
  m.hostLoss.resize(Nt);
  be_->toHost(m.hostLoss.data(), m.losses.p, sizeof(float) * Nt);
  double sum = 0;
  for (int i = 0; i < Nt; ++i) sum += m.hostLoss[i];
  const double loss = sum / Nt;
  if (!std::isfinite(loss)) {
    zeroGrad();
    throw Error("non-finite training loss (" + std::to_string(loss) + ") at step " +
                std::to_string(step_ + 1) + "; the step was not applied. Lower lr or check the data.");
  }
  m.backward(B, T);
  ++accumulated_;
  accLoss_ += loss;
  tokens_ += Nt;
  return static_cast<float>(loss);
}

static FlipParams flipParamsFor(const TrainConfig& cfg, int layer, int step, float s, int accum) {
  FlipParams fp;
  fp.seedLo = static_cast<uint32_t>(cfg.seed);
  fp.seedHi = static_cast<uint32_t>(cfg.seed >> 32);
  fp.layer = static_cast<uint32_t>(layer);
  fp.step = static_cast<uint32_t>(step);
  fp.flipRate = cfg.knobs.flipRate;
  fp.pMax = cfg.knobs.pMax;
  fp.voteKeep = cfg.knobs.voteKeep;
  fp.scale = s;
  fp.accum = accum;
  fp.bridgeOn = cfg.knobs.bridgeOn;
  return fp;
}

StepResult Trainer::applyStep() {
  if (accumulated_ == 0) throw Error("applyStep: no micro-batch accumulated since the last step");
  Impl& m = *m_;
  StepResult r;
  const float factor = m.lrFactor(step_);
  const Knobs& k = cfg_.knobs;
  r.lr = k.lr * factor;
  // Global gradient norm of the fp parameters, then clipping folded into AdamW's gradScale.
  double sq = 0;
  for (auto& p : m.params) sq += be_->sumSquares(p.g.p, p.n);
  const double norm = std::sqrt(sq);
  if (!std::isfinite(norm)) {
    zeroGrad();
    throw Error("non-finite gradient norm at step " + std::to_string(step_ + 1) +
                "; the step was not applied");
  }
  r.gradNorm = static_cast<float>(norm);
  float clip = 1.0f;
  if (cfg_.gradClip > 0 && norm > cfg_.gradClip) clip = static_cast<float>(cfg_.gradClip / (norm + 1e-6));
  const int t = step_ + 1;
  for (auto& p : m.params)
    be_->adamw(p.w.p, p.g.p, p.m.p, p.v.p, p.n, r.lr, cfg_.beta1, cfg_.beta2, cfg_.adamEps,
               p.decay ? cfg_.weightDecay : 0.0f, t, clip);
  r.layers.resize(m.lin.size());
  if (m.polt()) {
    const float slr = k.scaleLr * factor;
    const double bc1 = 1.0 - std::pow(static_cast<double>(cfg_.beta1), t);
    const double bc2 = 1.0 - std::pow(static_cast<double>(cfg_.beta2), t);
    for (size_t i = 0; i < m.lin.size(); ++i) {
      BitLayer& l = m.lin[i];
      // Ghost Scale: AdamW without weight decay, clamped to stay positive.
      const float g = static_cast<float>(l.ds);
      l.sM = cfg_.beta1 * l.sM + (1 - cfg_.beta1) * g;
      l.sV = cfg_.beta2 * l.sV + (1 - cfg_.beta2) * g * g;
      const double upd = (l.sM / bc1) / (std::sqrt(l.sV / bc2) + cfg_.adamEps);
      l.s = std::max(cfg_.scaleMin, static_cast<float>(l.s - slr * upd));
      LayerStep& ls = r.layers[i];
      be_->poltFlip(l.code.p, l.vote.p, l.n, flipParamsFor(cfg_, static_cast<int>(i), step_, l.s, accumulated_),
                    &ls.flips, nullptr);
      ls.scale = l.s;
      ls.dscale = g;
      ls.weights = l.n;
      l.ds = 0;
    }
  } else {
    for (size_t i = 0; i < m.lin.size(); ++i) {
      BitLayer& l = m.lin[i];
      LayerStep& ls = r.layers[i];
      ls.weights = l.n;
      if (cfg_.quant == Quant::STE) ls.scale = be_->steQuantize(m.params[l.param].w.p, m.wscratch.p, l.n);
      else ls.scale = static_cast<float>(std::sqrt(be_->sumSquares(m.params[l.param].w.p, l.n) / l.n));
    }
  }
  for (auto& p : m.params) be_->zero(p.g.p, p.g.bytes());
  r.loss = static_cast<float>(accLoss_ / accumulated_);
  ++step_;
  r.step = step_;
  r.tokens = tokens_;
  accumulated_ = 0;
  accLoss_ = 0;
  be_->sync();
  r.peakBytes = be_->peakBytes();
  return r;
}

StepResult Trainer::trainStep() {
  auto t0 = std::chrono::steady_clock::now();
  if (accumulated_ != 0) zeroGrad();
  for (int i = 0, n = chunksPerStep(); i < n; ++i) {
    try {
      accumulate();
    } catch (...) {
      zeroGrad();
      throw;
    }
  }
  StepResult r = applyStep();
  r.stepMs = std::chrono::duration<float, std::milli>(std::chrono::steady_clock::now() - t0).count();
  return r;
}

void Trainer::zeroGrad() {
  Impl& m = *m_;
  for (auto& p : m.params) be_->zero(p.g.p, p.g.bytes());
  for (auto& l : m.lin) l.ds = 0;
  accumulated_ = 0;
  accLoss_ = 0;
}

// Validates and uploads one explicit batch, then runs the forward trunk.
static std::vector<int32_t> explicitBatch(Trainer::Impl& m, const TrainConfig& cfg, const char* what,
                                          const int32_t* inputs, const int32_t* targets, int B, int T) {
  if (B < 1 || B > cfg.microBatch || T < 1 || T > cfg.model.seq)
    throw Error(std::string(what) + ": B must be in [1, " + std::to_string(cfg.microBatch) +
                "] (the micro-batch) and T in [1, " + std::to_string(cfg.model.seq) + "]");
  const int Nt = B * T;
  m.checkTokens(inputs, Nt, false, "inputs");
  m.checkTokens(targets, Nt, true, "targets");
  std::vector<int32_t> in(inputs, inputs + Nt), tg(targets, targets + Nt);
  m.upload(in, tg);
  m.forwardTrunk(B, T);
  return tg;
}

double Trainer::forwardBackward(const int32_t* inputs, const int32_t* targets, int B, int T) {
  Impl& m = *m_;
  auto tg = explicitBatch(m, cfg_, "forwardBackward", inputs, targets, B, T);
  double cnt = 0;
  for (int32_t t : tg) cnt += t >= 0;
  auto ls = m.classify(tg, B * T, true, static_cast<float>(1.0 / std::max(1.0, cnt)));
  m.backward(B, T);
  ++accumulated_;
  return ls.second > 0 ? ls.first / ls.second : 0.0;
}

double Trainer::batchLoss(const int32_t* inputs, const int32_t* targets, int B, int T) {
  Impl& m = *m_;
  auto tg = explicitBatch(m, cfg_, "batchLoss", inputs, targets, B, T);
  auto ls = m.classify(tg, B * T, false, 0.0f);
  return ls.second > 0 ? ls.first / ls.second : 0.0;
}

Trainer::EvalResult Trainer::evaluate(const int32_t* tokens, size_t n, int window,
                                      std::atomic<bool>* cancel) {
  Impl& m = *m_;
  const int T = window <= 0 ? cfg_.model.seq : window;
  if (T > cfg_.model.seq) throw Error("evaluate: window must be <= seq (" + std::to_string(cfg_.model.seq) + ")");
  m.checkTokens(tokens, n, false, "evaluation tokens");
  EvalResult res;
  if (n < 2) return res;
  const int B = cfg_.microBatch;
  // Window i covers tokens [i*T, i*T + T]: every token after the first is scored once.
  size_t start = 0;
  std::vector<int32_t> in(static_cast<size_t>(B) * T), tg(static_cast<size_t>(B) * T);
  while (start + 1 < n) {
    if (cancel && cancel->load()) throw Error("evaluation cancelled");
    int nb = 0;
    std::fill(in.begin(), in.end(), 0);
    std::fill(tg.begin(), tg.end(), -1);
    while (nb < B && start + 1 < n) {
      const size_t len = std::min(static_cast<size_t>(T), n - 1 - start);
      for (size_t j = 0; j < len; ++j) {
        in[static_cast<size_t>(nb) * T + j] = tokens[start + j];
        tg[static_cast<size_t>(nb) * T + j] = tokens[start + j + 1];
      }
      start += len;
      ++nb;
    }
    m.upload(in, tg);
    m.forwardTrunk(nb, T);
    auto ls = m.classify(tg, nb * T, false, 0.0f);
    res.lossSum += ls.first;
    res.count += ls.second;
  }
  return res;
}

std::vector<int32_t> Trainer::generate(const std::vector<int32_t>& prompt, int n, float temperature,
                                       int topK, uint64_t seed) {
  Impl& m = *m_;
  if (prompt.empty()) throw Error("generate: the prompt must contain at least one token");
  if (n < 0 || n > 100000) throw Error("generate: n must be in [0, 100000]");
  m.checkTokens(prompt.data(), prompt.size(), false, "prompt");
  std::vector<int32_t> ctx = prompt, out;
  const int V = m.V(), S = cfg_.model.seq;
  std::vector<float> lg(V);
  std::vector<int> idx(V);
  const uint32_t k0 = static_cast<uint32_t>(seed), k1 = static_cast<uint32_t>(seed >> 32);
  for (int t = 0; t < n; ++t) {
    const int T = static_cast<int>(std::min<size_t>(ctx.size(), S));
    std::vector<int32_t> in(ctx.end() - T, ctx.end()), tg(T, -1);
    m.upload(in, tg);
    m.forwardTrunk(1, T);
    be_->logits(m.lnf.p + static_cast<size_t>(T - 1) * m.C(), m.params[m.pWte].w.p, m.logitsBuf.p, 1, m.C(), V);
    be_->toHost(lg.data(), m.logitsBuf.p, sizeof(float) * V);
    int next = 0;
    if (temperature <= 0 || topK == 1) {
      next = static_cast<int>(std::max_element(lg.begin(), lg.end()) - lg.begin());
    } else {
      std::iota(idx.begin(), idx.end(), 0);
      const int k = (topK > 0 && topK < V) ? topK : V;
      std::partial_sort(idx.begin(), idx.begin() + k, idx.end(), [&](int a, int b) {
        return lg[a] > lg[b] || (lg[a] == lg[b] && a < b);
      });
      double mx = lg[idx[0]], z = 0;
      std::vector<double> pr(k);
      for (int j = 0; j < k; ++j) {
        pr[j] = std::exp((lg[idx[j]] - mx) / temperature);
        z += pr[j];
      }
      Philox4 r = philox4x32_10(static_cast<uint32_t>(out.size()), 0, 0, kStreamSample, k0, k1);
      double u = philox_u24(r.v[0]) * z, acc = 0;
      next = idx[k - 1];
      for (int j = 0; j < k; ++j) {
        acc += pr[j];
        if (u < acc) {
          next = idx[j];
          break;
        }
      }
    }
    out.push_back(next);
    ctx.push_back(next);
  }
  return out;
}

int Trainer::layerIndex(const std::string& name) const {
  for (size_t i = 0; i < layerInfo_.size(); ++i)
    if (layerInfo_[i].name == name) return static_cast<int>(i);
  std::string list;
  for (size_t i = 0; i < layerInfo_.size() && i < 7; ++i) list += (i ? ", " : "") + layerInfo_[i].name;
  throw Error("unknown layer '" + name + "'; layers are named blocks.<0.." +
              std::to_string(cfg_.model.layers - 1) + ">.<attn.q|attn.k|attn.v|attn.o|mlp.gate|mlp.up|mlp.down>, e.g. " + list);
}

static void checkLayer(int layer, size_t count) {
  if (layer < 0 || static_cast<size_t>(layer) >= count)
    throw Error("layer index " + std::to_string(layer) + " out of range [0, " + std::to_string(count) + ")");
}

static void requirePolt(Quant q, const char* what) {
  if (q != Quant::Poltergeist)
    throw Error(std::string(what) + " exist only for the poltergeist quantizer (this run uses '" +
                quantName(q) + "')");
}

std::vector<int8_t> Trainer::codes(int layer) {
  checkLayer(layer, m_->lin.size());
  requirePolt(cfg_.quant, "codes");
  auto& l = m_->lin[layer];
  std::vector<int8_t> out(l.n);
  be_->toHost(out.data(), l.code.p, l.n);
  return out;
}

std::vector<int8_t> Trainer::votes(int layer) {
  checkLayer(layer, m_->lin.size());
  requirePolt(cfg_.quant, "votes");
  auto& l = m_->lin[layer];
  std::vector<int8_t> out(l.n);
  be_->toHost(out.data(), l.vote.p, l.n);
  return out;
}


std::vector<float> Trainer::flipProbabilities(int layer) {
  checkLayer(layer, m_->lin.size());
  requirePolt(cfg_.quant, "flip probabilities");
  auto& l = m_->lin[layer];
  DBuf<float> p;
  p.alloc(be_.get(), l.n);
  std::vector<float> out(l.n);
  try {
    be_->poltProbabilities(l.vote.p, p.p, l.n,
                           flipParamsFor(cfg_, layer, step_, l.s, accumulated_ > 0 ? accumulated_ : chunksPerStep()));
    be_->toHost(out.data(), p.p, sizeof(float) * l.n);
  } catch (...) {
    p.release();
    throw;
  }
  p.release();
  return out;
}

std::vector<float> Trainer::weights(int layer) {
  checkLayer(layer, m_->lin.size());
  auto& l = m_->lin[layer];
  const float* w = m_->weightFor(layer);
  std::vector<float> out(l.n);
  be_->toHost(out.data(), w, sizeof(float) * l.n);
  return out;
}

void Trainer::setCodes(int layer, const std::vector<int8_t>& c) {
  checkLayer(layer, m_->lin.size());
  requirePolt(cfg_.quant, "codes");
  auto& l = m_->lin[layer];
  if (c.size() != l.n) throw Error("setCodes: expected " + std::to_string(l.n) + " codes, got " + std::to_string(c.size()));
  for (int8_t x : c)
    if (x < -2 || x > 2) throw Error("setCodes: codes must be in [-2, 2]");
  be_->toDevice(l.code.p, c.data(), l.n);
}

void Trainer::setVotes(int layer, const std::vector<int8_t>& v) {
  checkLayer(layer, m_->lin.size());
  requirePolt(cfg_.quant, "votes");
  auto& l = m_->lin[layer];
  if (v.size() != l.n) throw Error("setVotes: expected " + std::to_string(l.n) + " votes, got " + std::to_string(v.size()));
  for (int8_t x : v)
    if (x < -127) throw Error("setVotes: votes must be in [-127, 127]");
  be_->toDevice(l.vote.p, v.data(), l.n);
}

std::vector<float> Trainer::scales() const {
  std::vector<float> out;
  for (size_t i = 0; i < m_->lin.size(); ++i) {
    const BitLayer& l = m_->lin[i];
    if (cfg_.quant == Quant::Poltergeist) out.push_back(l.s);
    else if (cfg_.quant == Quant::STE) out.push_back(be_->steQuantize(m_->params[l.param].w.p, m_->wscratch.p, l.n));
    else out.push_back(static_cast<float>(std::sqrt(be_->sumSquares(m_->params[l.param].w.p, l.n) / l.n)));
  }
  return out;
}

std::vector<float> Trainer::scaleGrads() const {
  std::vector<float> out;
  for (auto& l : m_->lin) out.push_back(static_cast<float>(l.ds));
  return out;
}

void Trainer::setScale(int layer, float s) {
  checkLayer(layer, m_->lin.size());
  requirePolt(cfg_.quant, "Ghost Scales");
  if (!(s > 0) || !std::isfinite(s)) throw Error("setScale: the scale must be a positive finite number");
  m_->lin[layer].s = s;
}

std::vector<float> Trainer::gamma0() const {
  std::vector<float> out;
  for (auto& l : m_->lin) out.push_back(l.gamma0);
  return out;
}

std::vector<LayerStep> Trainer::layerStats() {
  std::vector<LayerStep> out(m_->lin.size());
  auto sc = scales();
  for (size_t i = 0; i < m_->lin.size(); ++i) {
    BitLayer& l = m_->lin[i];
    LayerStep& ls = out[i];
    ls.scale = sc[i];
    ls.dscale = static_cast<float>(l.ds);
    ls.weights = l.n;
    if (cfg_.quant != Quant::Poltergeist) continue;
    auto c = codes(static_cast<int>(i));
    auto v = votes(static_cast<int>(i));
    auto p = flipProbabilities(static_cast<int>(i));
    for (size_t j = 0; j < l.n; ++j) {
      ls.flips.occupancy[c[j] + 2]++;
      if (v[j] != 0) ls.flips.votesNonZero++;
      if (v[j] == 127 || v[j] == -127) ls.flips.votesSaturated++;
      ls.flips.pSum += p[j];
      ls.flips.pMax = std::max(ls.flips.pMax, p[j]);
    }
  }
  return out;
}

MemoryReport Trainer::memory() const {
  MemoryReport r;
  const Impl& m = *m_;
  for (auto& p : m.params) {
    r.params += p.w.bytes();
    r.grads += p.g.bytes();
    r.optimizer += p.m.bytes() + p.v.bytes();
  }
  for (auto& l : m.lin) {
    if (cfg_.quant == Quant::Poltergeist) {
      r.ternaryState += l.code.bytes() + l.vote.bytes() + 4 * sizeof(float);  // s, m, v, gamma0
    }
    r.ternaryWeights += l.n;
  }
  for (auto& a : m.acts)
    for (const DBuf<float>* b : {&a.resMid, &a.q, &a.k, &a.v, &a.att, &a.gate, &a.up, &a.rstd1,
                                 &a.rstd2, &a.lse})
      r.activations += b->bytes();
  for (auto& x : m.res) r.activations += x.bytes();
  r.activations += m.lnf.bytes() + m.rstdf.bytes();
  for (const DBuf<float>* b : {&m.dlnf, &m.dres, &m.dln, &m.dq, &m.dk, &m.dv, &m.datt, &m.dgate, &m.dup,
                               &m.dh, &m.qscratch, &m.wscratch, &m.gscratch, &m.losses, &m.logitsBuf,
                               &m.lnS, &m.hS})
    r.scratch += b->bytes();
  r.scratch += m.inTok.bytes() + m.tgtTok.bytes();
  r.deviceInUse = be_->bytesInUse();
  r.devicePeak = be_->peakBytes();
  return r;
}

size_t Trainer::paramCount() const {
  size_t n = 0;
  for (auto& p : m_->params) n += p.n;
  if (cfg_.quant == Quant::Poltergeist)
    for (auto& l : m_->lin) n += l.n;
  // Padded embedding rows are not model parameters.
  n -= static_cast<size_t>(cfg_.model.paddedVocab() - cfg_.model.vocab) * cfg_.model.dModel;
  return n;
}

std::vector<std::string> Trainer::paramNames() const {
  std::vector<std::string> out;
  for (auto& p : m_->params) out.push_back(p.name);
  return out;
}

static FpParam& findParam(Trainer::Impl& m, const std::string& name) {
  for (auto& p : m.params)
    if (p.name == name) return p;
  throw Error("unknown parameter '" + name + "'");
}

std::vector<float> Trainer::param(const std::string& name) {
  FpParam& p = findParam(*m_, name);
  std::vector<float> out(p.n);
  be_->toHost(out.data(), p.w.p, p.w.bytes());
  return out;
}

void Trainer::setParam(const std::string& name, const std::vector<float>& v) {
  FpParam& p = findParam(*m_, name);
  if (v.size() != p.n) throw Error("setParam: size mismatch for " + name);
  be_->toDevice(p.w.p, v.data(), p.w.bytes());
}

std::vector<float> Trainer::paramGrad(const std::string& name) {
  FpParam& p = findParam(*m_, name);
  std::vector<float> out(p.n);
  be_->toHost(out.data(), p.g.p, p.g.bytes());
  return out;
}

std::vector<float> Trainer::logits(const int32_t* tokens, int T) {
  Impl& m = *m_;
  std::vector<int32_t> none(static_cast<size_t>(std::max(T, 0)), -1);
  explicitBatch(m, cfg_, "logits", tokens, none.data(), 1, T);
  const int C = m.C(), V = m.V();
  std::vector<float> out(static_cast<size_t>(T) * V);
  for (int t = 0; t < T; ++t) {
    be_->logits(m.lnf.p + static_cast<size_t>(t) * C, m.params[m.pWte].w.p, m.logitsBuf.p, 1, C, V);
    be_->toHost(out.data() + static_cast<size_t>(t) * V, m.logitsBuf.p, sizeof(float) * V);
  }
  return out;
}

}  // namespace primal
