// The training of the Ghost transformer (docs/design.md) over any Backend: weight initialisation,
// the data windows, the step (AdamW for the fp weights, the Ghost Scales' own AdamW, Poltergeist
// flips), evaluation and introspection. The model itself (weights, buffers, forward/backward) is
// model.{h,cpp}; generation is generate.cpp.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>

#include "primal/comm.h"
#include "primal/error.h"
#include "primal/philox.h"
#include "primal/poltergeist.h"
#include "primal/trainer.h"
#include "model.h"

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
  m_ = std::make_unique<Model>(*be_, cfg_);
  Model& m = *m_;
  const ModelConfig& mc = cfg_.model;
  const int Lc = mc.layers;
  const uint64_t seed = cfg_.seed;

  // Initial weights, from the Philox init stream in the model's weight order (paramId = position):
  // N(0, initStd) for the embedding and the BitLinears, ones for the norms. BitLinears start from
  // gamma0 = mean |W0|: Poltergeist codes are the nearest levels of W0 / gamma0.
  uint32_t pid = 0;

  auto initParam = [&](int idx, bool ones) {
    FpParam& p = m.params[idx];
    std::vector<float> host(p.n);
    if (ones) std::fill(host.begin(), host.end(), 1.0f);
    else normalInit(host, mc.initStd, pid, seed);
    ++pid;
    be_->toDevice(p.w, host.data(), sizeof(float) * p.n);
  };

  // The Ghost Scale state of every layer: s = 1, zero moments, gamma0 from W0.
  const size_t nl = m.lin.size();
  std::vector<float> ghost(4 * nl, 0.0f);
  initParam(m.pWte, false);
  for (int b = 0; b < Lc; ++b) {
    std::string pre = "blocks." + std::to_string(b) + ".";
    initParam(m.pNorm1[b], true);
    initParam(m.pNorm2[b], true);
    for (int j = 0; j < 7; ++j) {
      const size_t li = static_cast<size_t>(7 * b + j);
      BitLayer& l = m.lin[li];
      layerInfo_.push_back({pre + kLinearNames[j], l.rows, l.cols});
      std::vector<float> w0(l.n);
      normalInit(w0, mc.initStd, pid, seed);
      ++pid;
      double absSum = 0;
      for (float x : w0) absSum += std::fabs(x);
      const float gamma0 = static_cast<float>(absSum / static_cast<double>(l.n));
      ghost[li] = 1.0f;
      ghost[3 * nl + li] = gamma0;
      if (cfg_.quant == Quant::Poltergeist) {
        std::vector<int8_t> code(l.n);
        for (size_t i = 0; i < l.n; ++i)
          code[i] = polt::nearestCode(w0[i] / gamma0, cfg_.knobs.bridgeLevel(), cfg_.knobs.bridgeOn());
        be_->toDevice(l.code, code.data(), l.n);
      } else {
        be_->toDevice(m.params[l.param].w, w0.data(), sizeof(float) * l.n);
      }
    }
  }
  initParam(m.pNormF, true);
  be_->toDevice(m.ghostS(), ghost.data(), sizeof(float) * ghost.size());
  report_.resize(m.stats.reportBytes());
  be_->sync();
}

Trainer::~Trainer() {
  m_.reset();
  be_.reset();
}

std::string Trainer::deviceName() const { return be_->describe(); }

void Trainer::setKnobs(const Knobs& k) {
  k.validate();
  Model& m = *m_;
  // Turning the bridge off resolves the +-b codes of every Poltergeist layer by the last b
  // (poltergeist.h).
  if (cfg_.quant == Quant::Poltergeist && cfg_.knobs.bridge && !k.bridge) {
    std::vector<int8_t> c(m.dims.bitArena);
    be_->toHost(c.data(), m.codes(), c.size());
    for (auto& x : c) x = polt::resolveBridgeOff(x, *cfg_.knobs.bridge);
    be_->toDevice(m.codes(), c.data(), c.size());
  }
  cfg_.knobs = k;
  m.cfg.knobs = k;
}

void Trainer::setTrainData(std::vector<int32_t> tokens) {
  const int T = cfg_.model.seq;
  if (tokens.size() < static_cast<size_t>(T) + 2)
    throw Error("train data: need at least seq + 2 = " + std::to_string(T + 2) + " tokens, got " +
                std::to_string(tokens.size()));
  m_->checkTokens(tokens.data(), tokens.size(), false, "train data");
  train_ = std::move(tokens);
}

// The B windows of micro-batch chunk `chunk` of step `step`: inputs and their next-token targets,
// (B,T) each. Window g of the step is window g % batch of micro-batch g / batch, whatever the
// chunking, so a memory plan never changes the data. `base` is the first window of this rank
// (rank * accum * batch): R ranks read the windows of one rank with accum R * K.
static void sampleWindows(const std::vector<int32_t>& train, const TrainConfig& cfg, int step, int chunk,
                          uint64_t base, std::vector<int32_t>& in, std::vector<int32_t>& tg) {
  const int B = cfg.microBatch, T = cfg.model.seq;
  const uint32_t k0 = static_cast<uint32_t>(cfg.seed), k1 = static_cast<uint32_t>(cfg.seed >> 32);
  in.resize(static_cast<size_t>(B) * T);
  tg.resize(static_cast<size_t>(B) * T);
  const uint64_t span = train.size() - static_cast<uint64_t>(T);
  for (int j = 0; j < B; ++j) {
    const uint64_t g = base + static_cast<uint64_t>(chunk) * B + j;
    const uint64_t wb = g % static_cast<uint64_t>(cfg.batch), wk = g / static_cast<uint64_t>(cfg.batch);
    Philox4 r = philox4x32_10(static_cast<uint32_t>(wb), static_cast<uint32_t>(wk),
                              static_cast<uint32_t>(step), kStreamData, k0, k1);
    uint64_t start = ((static_cast<uint64_t>(r.v[1]) << 32) | r.v[0]) % span;
    std::memcpy(&in[static_cast<size_t>(j) * T], &train[start], sizeof(int32_t) * T);
    std::memcpy(&tg[static_cast<size_t>(j) * T], &train[start + 1], sizeof(int32_t) * T);
  }
}

// Votes change in every backward, before the step knows whether it will be applied. The first
// micro-batch of a step keeps a copy of all votes (voteUndo) and clears the vote arena, which then
// gathers the step's vote change (poltergeist.h); the step's end merges the change into the kept
// votes with one clamp, and a refused step (non-finite loss, gradient norm or Ghost Scale
// gradient) puts the kept votes back instead, so it changes nothing. The step's end does either
// on the device, from the refusal flag stepGate wrote (Backend::poltMergeVotes).
static void keepVotes(Model& m, Backend& be) {
  be.copy(m.voteUndo, m.votes(), m.dims.bitArena);
  be.zero(m.votes(), m.dims.bitArena);
}

// A step the host refuses (a non-finite loss seen by accumulate(), or one the ranks refuse
// together): the step's votes undone, its gradients and statistics dropped.
void Trainer::failStep(const std::string& why) {
  Model& m = *m_;
  if (m.polt() && accumulated_ > 0) be_->copy(m.votes(), m.voteUndo, m.dims.bitArena);
  accumulated_ = 0;  // the votes are restored: zeroGrad must not merge them
  zeroGrad();
  throw Error(why);
}

static std::string lossMessage(double loss, int step) {
  return "non-finite training loss (" + std::to_string(loss) + ") at step " + std::to_string(step) +
         "; the step was not applied and its votes were undone. Lower lr or check the data.";
}

// Forward, loss and backward of micro-batch chunk `chunk` (B,T), its tokens already on the
// device; gradients scaled by gradScale; the loss goes into the step statistics. Nothing comes
// back to the host unless `inspect`: then the chunk's mean loss is read and returned, and a
// non-finite one is refused before backward (it casts no votes).
//
// The step's fp gradient is the sum of its chunks' gradients, each computed from zero and added in
// chunk order (gradSum keeps the sum while a later chunk computes its own). That is also what R
// data-parallel ranks of one chunk each produce with their all-reduce, so two ranks reproduce one
// rank with two chunks bit for bit (a + b = b + a).
double Trainer::chunkForwardBackward(int chunk, int B, int T, float gradScale, bool inspect) {
  Model& m = *m_;
  if (m.polt() && accumulated_ == 0) keepVotes(m, *be_);
  const bool stash = accumulated_ > 0 && m.gradSum.size() > 0;
  if (stash) {
    be_->copy(m.gradSum, m.gradArena, m.gradArena.bytes());
    be_->zero(m.gradArena, m.gradArena.bytes());
  }
  m.chunk = chunk;
  m.forward(B, T);
  m.classifyStep(B * T, gradScale);
  double loss = 0.0;
  if (inspect) {
    StepHead h;
    be_->toHost(&h, m.head(), sizeof h);
    loss = h.lastLoss;
    if (!std::isfinite(loss)) {
      // Counted before refusing, so that the votes kept at the step's start are put back even
      // when this is its first chunk.
      ++accumulated_;
      // A rank alone must not leave the step: the others would wait in the all-reduce. It casts no
      // votes, finishes the step's chunks and every rank refuses the step together in applyStep().
      if (worldSize() == 1) failStep(lossMessage(loss, step_ + 1));
      if (stash) be_->add(m.gradArena, m.gradSum, m.gradArena.size());
      return loss;
    }
  }
  m.backward(B, T);
  if (stash) be_->add(m.gradArena, m.gradSum, m.gradArena.size());
  ++accumulated_;
  return loss;
}

// The windows of chunks [first, first + count) of this step, uploaded in one go.
void Trainer::uploadChunks(int first, int count) {
  Model& m = *m_;
  const int B = cfg_.microBatch, T = cfg_.model.seq;
  const size_t N = static_cast<size_t>(B) * T;
  const uint64_t base = static_cast<uint64_t>(rank()) * static_cast<uint64_t>(chunksPerStep()) * B;
  std::vector<int32_t> in, tg, ci, ct;
  in.reserve(N * count);
  tg.reserve(N * count);
  for (int c = first; c < first + count; ++c) {
    sampleWindows(train_, cfg_, step_, c, base, ci, ct);
    in.insert(in.end(), ci.begin(), ci.end());
    tg.insert(tg.end(), ct.begin(), ct.end());
  }
  be_->toDevice(m.inTok.data() + N * first, in.data(), sizeof(int32_t) * in.size());
  be_->toDevice(m.tgtTok.data() + N * first, tg.data(), sizeof(int32_t) * tg.size());
}

// Every target is scored; the gradient is that of the step's mean loss over all its chunks (of
// every rank).
float Trainer::chunkGradScale() const {
  const float Nt = static_cast<float>(cfg_.microBatch) * static_cast<float>(cfg_.model.seq);
  return 1.0f / (Nt * static_cast<float>(chunksPerStep() * worldSize()));
}

float Trainer::accumulate() {
  if (train_.empty()) throw Error("no training data: call setTrainData() first");
  if (accumulated_ >= chunksPerStep())
    throw Error("accumulate: all " + std::to_string(chunksPerStep()) +
                " micro-batch chunk(s) of this step are accumulated; call applyStep() first");
  if (comm_ && !consistencyChecked_) checkRanksAgree();
  const int chunk = accumulated_;
  uploadChunks(chunk, 1);
  return static_cast<float>(
      chunkForwardBackward(chunk, cfg_.microBatch, cfg_.model.seq, chunkGradScale(), /*inspect=*/true));
}

// Learning-rate multiplier of `step`: linear warmup, then cosine down to minLrRatio.
static float lrFactor(const TrainConfig& cfg, int step) {
  if (cfg.warmup > 0 && step < cfg.warmup) return static_cast<float>(step + 1) / cfg.warmup;
  int span = std::max(1, cfg.totalSteps - cfg.warmup);
  double prog = std::min(1.0, static_cast<double>(step - cfg.warmup) / span);
  double c = 0.5 * (1.0 + std::cos(3.14159265358979323846 * prog));
  return static_cast<float>(cfg.minLrRatio + (1.0 - cfg.minLrRatio) * c);
}

static FlipParams flipParamsFor(const TrainConfig& cfg, int layer, int step, int accum) {
  FlipParams fp;
  fp.seedLo = static_cast<uint32_t>(cfg.seed);
  fp.seedHi = static_cast<uint32_t>(cfg.seed >> 32);
  fp.layer = static_cast<uint32_t>(layer);
  fp.step = static_cast<uint32_t>(step);
  fp.flipRate = cfg.knobs.flipRate;
  fp.pMax = cfg.knobs.pMax;
  fp.voteKeep = cfg.knobs.voteKeep;
  fp.accum = accum;
  fp.bridgeOn = cfg.knobs.bridgeOn();
  return fp;
}

// The update, queued on the device in one go from the step's accumulators: the gradient norm,
// the decision (stepGate: refuse, or the clip factor), AdamW over the fp arena, the votes merged
// (or restored when refused), the Ghost Scales' AdamW and the flips; then the report is copied
// out, the accumulators and gradients cleared, and the host reads the report: the step's one
// round trip. A refused step changes nothing on the device (every update reads the flag) and is
// told here with the same errors accumulate() gives.
StepResult Trainer::applyStep() {
  if (accumulated_ == 0) throw Error("applyStep: no micro-batch accumulated since the last step");
  if (!explicitStep_ && accumulated_ != chunksPerStep())
    throw Error("applyStep: " + std::to_string(accumulated_) + " of the step's " +
                std::to_string(chunksPerStep()) +
                " micro-batch chunk(s) accumulated; call accumulate() again");
  Model& m = *m_;
  const size_t nl = m.lin.size();
  const int nli = static_cast<int>(nl);
  // Data parallel: every rank holds the sums over all ranks from here on (the same on each).
  bool votesMerged = false;
  if (comm_) votesMerged = reduceStep();
  const int K = accumulated_ * worldSize();
  const float factor = lrFactor(cfg_, step_);
  const Knobs& k = cfg_.knobs;
  const float lr = k.lr * factor;
  const int t = step_ + 1;
  StepHead* head = m.head();
  be_->sumSegments(m.gradArena, m.paramSegments.data(), static_cast<int>(m.params.size()), false, nullptr,
                   &head->gradSq);
  be_->stepGate(head, m.ds(), nli, cfg_.gradClip);
  if (votesMerged) {
    // The int32 vote path merged on the host: a refusal must restore them there too.
    StepHead h;
    be_->toHost(&h, head, sizeof h);
    if (h.refused) failStep(refusalMessage(h, h.refused & kRefuseScale ? dsOf(h.badLayer) : 0.0));
  }
  be_->adamw(m.paramArena, m.gradArena, m.adamM, m.adamV, m.dims.fpArena, m.dims.fpDecay,
             AdamParams{lr, cfg_.beta1, cfg_.beta2, cfg_.adamEps, cfg_.weightDecay, t}, head);
  if (m.polt()) {
    if (!votesMerged) be_->poltMergeVotes(m.votes(), m.voteUndo, m.dims.bitArena, head);
    polt::GhostScaleRule rule;
    rule.beta1 = cfg_.beta1;
    rule.beta2 = cfg_.beta2;
    rule.eps = cfg_.adamEps;
    rule.lr = k.scaleLr * factor;
    rule.scaleMin = cfg_.scaleMin;
    rule.bc1 = 1.0 - std::pow(static_cast<double>(cfg_.beta1), t);
    rule.bc2 = 1.0 - std::pow(static_cast<double>(cfg_.beta2), t);
    be_->ghostScaleStep(m.ghostS(), m.ghostM(), m.ghostV(), m.ds(), nli, rule, head);
    for (size_t i = 0; i < nl; ++i) {
      BitLayer& l = m.lin[i];
      be_->poltFlip(l.code, l.vote, l.n, flipParamsFor(cfg_, static_cast<int>(i), step_, K), m.ghostS() + i,
                    head, m.reportFlips() + i, nullptr);
    }
  } else {
    // fp: rms of each updated weight; ste: its gamma (mean |W|), from per-layer sums.
    be_->sumSegments(m.paramArena, m.linearSegments.data(), nli, cfg_.quant == Quant::STE, m.reportWeight(),
                     nullptr);
  }
  be_->copy(m.reportScale(), m.ghostS(), sizeof(float) * nl);
  be_->copy(m.report(), m.stepStats, m.stats.accBytes);
  be_->zero(m.stepStats, m.stats.accBytes);
  be_->zero(m.gradArena, m.gradArena.bytes());
  be_->toHost(report_.data(), m.report(), report_.size());

  const uint8_t* rep = report_.data();
  StepHead h;
  std::memcpy(&h, rep, sizeof h);
  accumulated_ = 0;
  explicitStep_ = false;
  if (h.refused) {
    double badDs = 0;
    if (h.refused & kRefuseScale)
      std::memcpy(&badDs, rep + sizeof(StepHead) + sizeof(double) * static_cast<size_t>(h.badLayer),
                  sizeof badDs);
    throw Error(refusalMessage(h, badDs));
  }
  StepResult r;
  r.lr = lr;
  r.gradNorm = static_cast<float>(std::sqrt(h.gradSq));
  r.loss = static_cast<float>(h.lossSum / K);
  tokens_ += h.tokens;
  r.layers.resize(nl);
  const size_t rep0 = m.stats.report;
  for (size_t i = 0; i < nl; ++i) {
    const BitLayer& l = m.lin[i];
    LayerStep& ls = r.layers[i];
    ls.weights = l.n;
    double ds = 0;
    std::memcpy(&ds, rep + sizeof(StepHead) + sizeof(double) * i, sizeof ds);
    float s = 0;
    std::memcpy(&s, rep + (m.stats.rScale - rep0) + sizeof(float) * i, sizeof s);
    if (m.polt()) {
      ls.dscale = static_cast<float>(ds);
      ls.scale = s;
      std::memcpy(&ls.flips, rep + (m.stats.rFlips - rep0) + sizeof(FlipStats) * i, sizeof(FlipStats));
    } else {
      double w = 0;
      std::memcpy(&w, rep + (m.stats.rWeight - rep0) + sizeof(double) * i, sizeof w);
      ls.scale = layerScale(w, l.n);
    }
  }
  if (comm_) {  // 20 bits of what this step left behind: the gradient norm and the Ghost Scales
    uint32_t hash = 2166136261u;
    auto mix = [&hash](float f) {
      uint32_t b;
      std::memcpy(&b, &f, sizeof b);
      hash = (hash ^ b) * 16777619u;
    };
    mix(r.gradNorm);
    for (size_t i = 0; i < nl; ++i) {
      float s = 0;
      std::memcpy(&s, rep + (m.stats.rScale - rep0) + sizeof(float) * i, sizeof s);
      mix(s);
    }
    digest_ = hash & 0xFFFFFu;
  }
  ++step_;
  r.step = step_;
  r.tokens = tokens_;
  r.peakBytes = be_->peakBytes();
  return r;
}

// The error for a refused step: the first reason in the order the step meets them (the loss,
// then the gradient norm, then a Ghost Scale gradient).
std::string Trainer::refusalMessage(const StepHead& h, double badDs) const {
  const std::string at = " at step " + std::to_string(step_ + 1);
  if (h.refused & kRefuseLoss) return lossMessage(h.badLoss, step_ + 1);
  if (h.refused & kRefuseNorm)
    return "non-finite gradient norm" + at + "; the step was not applied and its votes were undone";
  const size_t li = static_cast<size_t>(h.badLayer);
  return "non-finite Ghost Scale gradient (" + std::to_string(badDs) + ") in " +
         (li < layerInfo_.size() ? layerInfo_[li].name : std::string("?")) + at +
         "; the step was not applied and its votes were undone";
}

double Trainer::dsOf(int layer) const {
  double v = 0;
  if (layer >= 0 && static_cast<size_t>(layer) < m_->lin.size()) be_->toHost(&v, m_->ds() + layer, sizeof v);
  return v;
}

// The statistic fp and ste report as a layer's scale, from the sum over its weight: fp the rms
// sqrt(sum W^2 / n), ste the gamma of steQuantize, max(sum |W| / n, 1e-8).
float Trainer::layerScale(double sum, size_t n) const {
  if (cfg_.quant == Quant::STE) return std::max(static_cast<float>(sum / static_cast<double>(n)), 1e-8f);
  return static_cast<float>(std::sqrt(sum / static_cast<double>(n)));
}

StepResult Trainer::trainStep() {
  auto t0 = std::chrono::steady_clock::now();
  if (train_.empty()) throw Error("no training data: call setTrainData() first");
  if (accumulated_ != 0) zeroGrad();
  if (comm_ && !consistencyChecked_) checkRanksAgree();
  const int K = chunksPerStep();
  try {
    uploadChunks(0, K);
    for (int c = 0; c < K; ++c)
      chunkForwardBackward(c, cfg_.microBatch, cfg_.model.seq, chunkGradScale(), /*inspect=*/false);
  } catch (...) {
    zeroGrad();
    throw;
  }
  StepResult r = applyStep();
  r.stepMs = std::chrono::duration<float, std::milli>(std::chrono::steady_clock::now() - t0).count();
  return r;
}

void Trainer::zeroGrad() {
  Model& m = *m_;
  // The votes already cast stay (merged into the kept ones); only gradients are dropped.
  if (m.polt() && accumulated_ > 0) be_->poltMergeVotes(m.votes(), m.voteUndo, m.dims.bitArena, nullptr);
  be_->zero(m.gradArena, m.gradArena.bytes());
  be_->zero(m.stepStats, m.stats.accBytes);
  accumulated_ = 0;
  explicitStep_ = false;
}

// Validates and uploads one explicit batch, then runs the forward trunk.
static std::vector<int32_t> explicitBatch(Model& m, const TrainConfig& cfg, const char* what,
                                          const int32_t* inputs, const int32_t* targets, int B, int T) {
  if (B < 1 || B > cfg.microBatch || T < 1 || T > cfg.model.seq)
    throw Error(std::string(what) + ": B must be in [1, " + std::to_string(cfg.microBatch) +
                "] (the micro-batch) and T in [1, " + std::to_string(cfg.model.seq) + "]");
  const int Nt = B * T;
  m.checkTokens(inputs, Nt, false, "inputs");
  m.checkTokens(targets, Nt, true, "targets");
  std::vector<int32_t> in(inputs, inputs + Nt), tg(targets, targets + Nt);
  m.upload(in, tg);
  return tg;
}

double Trainer::forwardBackward(const int32_t* inputs, const int32_t* targets, int B, int T) {
  Model& m = *m_;
  if (accumulated_ > 0 && !explicitStep_)
    throw Error("forwardBackward: the step already holds accumulate() chunks; call applyStep() first");
  if (worldSize() > 1)
    throw Error(
        "forwardBackward: explicit batches are not summed over data-parallel ranks; use accumulate()");
  auto tg = explicitBatch(m, cfg_, "forwardBackward", inputs, targets, B, T);
  double cnt = 0;
  for (int32_t t : tg) cnt += t >= 0;
  explicitStep_ = true;
  return chunkForwardBackward(0, B, T, static_cast<float>(1.0 / std::max(1.0, cnt)), /*inspect=*/true);
}

double Trainer::batchLoss(const int32_t* inputs, const int32_t* targets, int B, int T) {
  Model& m = *m_;
  auto tg = explicitBatch(m, cfg_, "batchLoss", inputs, targets, B, T);
  m.forward(B, T);
  auto ls = m.classify(tg, B * T, false, 0.0f);
  return ls.second > 0 ? ls.first / ls.second : 0.0;
}

Trainer::EvalResult Trainer::evaluate(const int32_t* tokens, size_t n, int window,
                                      std::atomic<bool>* cancel) {
  Model& m = *m_;
  const int T = window <= 0 ? cfg_.model.seq : window;
  if (T > cfg_.model.seq)
    throw Error("evaluate: window must be <= seq (" + std::to_string(cfg_.model.seq) + ")");
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
    m.forward(nb, T);
    auto ls = m.classify(tg, nb * T, false, 0.0f);
    res.lossSum += ls.first;
    res.count += ls.second;
  }
  return res;
}

int Trainer::layerIndex(const std::string& name) const {
  for (size_t i = 0; i < layerInfo_.size(); ++i)
    if (layerInfo_[i].name == name) return static_cast<int>(i);
  std::string list;
  for (size_t i = 0; i < layerInfo_.size() && i < 7; ++i) list += (i ? ", " : "") + layerInfo_[i].name;
  throw Error("unknown layer '" + name + "'; layers are named blocks.<0.." +
              std::to_string(cfg_.model.layers - 1) +
              ">.<attn.q|attn.k|attn.v|attn.o|mlp.gate|mlp.up|mlp.down>, e.g. " + list);
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
  be_->toHost(out.data(), l.code, l.n);
  return out;
}

std::vector<int8_t> Trainer::votes(int layer) {
  checkLayer(layer, m_->lin.size());
  requirePolt(cfg_.quant, "votes");
  auto& l = m_->lin[layer];
  std::vector<int8_t> out(l.n);
  be_->toHost(out.data(), l.vote, l.n);
  if (accumulated_ > 0) {  // mid-step: the kept votes plus the change so far
    std::vector<int8_t> start(l.n);
    be_->toHost(start.data(), m_->voteUndo.data() + l.offset, l.n);
    for (size_t i = 0; i < l.n; ++i) out[i] = static_cast<int8_t>(polt::mergeVote(start[i], out[i]));
  }
  return out;
}

std::vector<float> Trainer::flipProbabilities(int layer) {
  checkLayer(layer, m_->lin.size());
  requirePolt(cfg_.quant, "flip probabilities");
  auto& l = m_->lin[layer];
  DBuf<float> p(*be_, l.n);
  std::vector<float> out(l.n);
  DBuf<int8_t> merged;
  const int8_t* vote = l.vote;
  if (accumulated_ > 0) {  // mid-step: the votes as the step would merge them now
    merged = DBuf<int8_t>(*be_, l.n);
    be_->copy(merged, l.vote, l.n);
    be_->poltMergeVotes(merged, m_->voteUndo.data() + l.offset, l.n, nullptr);
    vote = merged;
  }
  be_->poltProbabilities(vote, p, l.n,
                         flipParamsFor(cfg_, layer, step_, accumulated_ > 0 ? accumulated_ : chunksPerStep()),
                         m_->ghostS() + layer);
  be_->toHost(out.data(), p, sizeof(float) * l.n);
  return out;
}

std::vector<float> Trainer::weights(int layer) {
  checkLayer(layer, m_->lin.size());
  auto& l = m_->lin[layer];
  m_->prepareWeights();
  const float* w = m_->weightFor(layer);
  std::vector<float> out(l.n);
  be_->toHost(out.data(), w, sizeof(float) * l.n);
  return out;
}

void Trainer::setCodes(int layer, const std::vector<int8_t>& c) {
  checkLayer(layer, m_->lin.size());
  requirePolt(cfg_.quant, "codes");
  auto& l = m_->lin[layer];
  if (c.size() != l.n)
    throw Error("setCodes: expected " + std::to_string(l.n) + " codes, got " + std::to_string(c.size()));
  for (int8_t x : c)
    if (x < -2 || x > 2) throw Error("setCodes: codes must be in [-2, 2]");
  be_->toDevice(l.code, c.data(), l.n);
}

void Trainer::setVotes(int layer, const std::vector<int8_t>& v) {
  checkLayer(layer, m_->lin.size());
  requirePolt(cfg_.quant, "votes");
  auto& l = m_->lin[layer];
  if (v.size() != l.n)
    throw Error("setVotes: expected " + std::to_string(l.n) + " votes, got " + std::to_string(v.size()));
  for (int8_t x : v)
    if (x < -127) throw Error("setVotes: votes must be in [-127, 127]");
  if (accumulated_ > 0) {  // mid-step: these become the kept votes, with no change yet
    be_->toDevice(m_->voteUndo.data() + l.offset, v.data(), l.n);
    be_->zero(l.vote, l.n);
    return;
  }
  be_->toDevice(l.vote, v.data(), l.n);
}

std::vector<float> Trainer::scales() const {
  const Model& m = *m_;
  const size_t nl = m.lin.size();
  std::vector<float> out(nl);
  if (cfg_.quant == Quant::Poltergeist) {
    be_->toHost(out.data(), m.ghostS(), sizeof(float) * nl);
    return out;
  }
  // The report's per-layer sums are free between steps (the last report is already read).
  std::vector<double> sums(nl);
  be_->sumSegments(m.paramArena, m.linearSegments.data(), static_cast<int>(nl), cfg_.quant == Quant::STE,
                   m.reportWeight(), nullptr);
  be_->toHost(sums.data(), m.reportWeight(), sizeof(double) * nl);
  for (size_t i = 0; i < nl; ++i) out[i] = layerScale(sums[i], m.lin[i].n);
  return out;
}

std::vector<float> Trainer::scaleGrads() const {
  const size_t nl = m_->lin.size();
  std::vector<double> ds(nl);
  be_->toHost(ds.data(), m_->ds(), sizeof(double) * nl);
  return std::vector<float>(ds.begin(), ds.end());
}

void Trainer::setScale(int layer, float s) {
  checkLayer(layer, m_->lin.size());
  requirePolt(cfg_.quant, "Ghost Scales");
  if (!(s > 0) || !std::isfinite(s)) throw Error("setScale: the scale must be a positive finite number");
  be_->toDevice(m_->ghostS() + layer, &s, sizeof s);
}

std::vector<float> Trainer::gamma0() const {
  std::vector<float> out(m_->lin.size());
  be_->toHost(out.data(), m_->ghostGamma0(), sizeof(float) * out.size());
  return out;
}

std::vector<LayerStep> Trainer::layerStats() {
  std::vector<LayerStep> out(m_->lin.size());
  const auto sc = scales(), dsc = scaleGrads();
  for (size_t i = 0; i < m_->lin.size(); ++i) {
    BitLayer& l = m_->lin[i];
    LayerStep& ls = out[i];
    ls.scale = sc[i];
    ls.dscale = dsc[i];
    ls.weights = l.n;
    if (cfg_.quant != Quant::Poltergeist) continue;
    auto c = codes(static_cast<int>(i));
    auto v = votes(static_cast<int>(i));
    auto p = flipProbabilities(static_cast<int>(i));
    for (size_t j = 0; j < l.n; ++j) {
      ls.flips.occupancy[c[j] + 2]++;
      if (v[j] != 0) ls.flips.votesNonZero++;
      if (v[j] == polt::kVoteMax || v[j] == -polt::kVoteMax) ls.flips.votesSaturated++;
      ls.flips.pSum += p[j];
      ls.flips.pMax = std::max(ls.flips.pMax, p[j]);
    }
  }
  return out;
}

MemoryReport Trainer::memory() const {
  MemoryReport r = m_->memory();
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

static FpParam& findParam(Model& m, const std::string& name) {
  for (auto& p : m.params)
    if (p.name == name) return p;
  throw Error("unknown parameter '" + name + "'");
}

std::vector<float> Trainer::param(const std::string& name) {
  FpParam& p = findParam(*m_, name);
  std::vector<float> out(p.n);
  be_->toHost(out.data(), p.w, sizeof(float) * p.n);
  return out;
}

void Trainer::setParam(const std::string& name, const std::vector<float>& v) {
  FpParam& p = findParam(*m_, name);
  if (v.size() != p.n) throw Error("setParam: size mismatch for " + name);
  be_->toDevice(p.w, v.data(), sizeof(float) * p.n);
}

std::vector<float> Trainer::paramGrad(const std::string& name) {
  FpParam& p = findParam(*m_, name);
  std::vector<float> out(p.n);
  be_->toHost(out.data(), p.g, sizeof(float) * p.n);
  return out;
}

std::vector<float> Trainer::logits(const int32_t* tokens, int T) {
  Model& m = *m_;
  std::vector<int32_t> none(static_cast<size_t>(std::max(T, 0)), -1);
  explicitBatch(m, cfg_, "logits", tokens, none.data(), 1, T);
  m.forward(1, T);
  const int V = m.V();
  std::vector<float> out(static_cast<size_t>(T) * V);
  for (int t = 0; t < T; ++t) m.logits(static_cast<size_t>(t), out.data() + static_cast<size_t>(t) * V);
  return out;
}

// ---- data parallel (docs/distributed.md) ------------------------------------------------------

int Trainer::worldSize() const { return comm_ ? comm_->worldSize() : 1; }
int Trainer::rank() const { return comm_ ? comm_->rank() : 0; }

void Trainer::setCommunicator(std::shared_ptr<Communicator> c) {
  if (accumulated_ != 0)
    throw Error("setCommunicator: " + std::to_string(accumulated_) +
                " micro-batch(es) are accumulated but not applied; call applyStep() first");
  if (c && c->deviceMemory() && be_->name() != "cuda")
    throw Error("distributed '" + c->backend() + "' works on CUDA device memory; this trainer runs on '" +
                be_->name() + "' (use --distributed mpi on the CPU)");
  comm_ = std::move(c);
  consistencyChecked_ = false;
  digest_ = 0;
}

void Trainer::reduce(void* buf, size_t count, int type, bool device) {
  const CommType t = static_cast<CommType>(type);
  const size_t bytes = count * commTypeBytes(t);
  if (count == 0) return;
  // Backend memory is host memory on the CPU backend.
  const bool onDevice = device && be_->name() == "cuda";
  if (onDevice == comm_->deviceMemory()) {
    comm_->allReduceSum(buf, count, t);
  } else if (comm_->deviceMemory()) {  // host buffer, device communicator
    DBuf<uint8_t> d(*be_, bytes);
    be_->toDevice(d, buf, bytes);
    be_->sync();
    comm_->allReduceSum(d, count, t);
    be_->toHost(buf, d, bytes);
  } else {  // device buffer, host communicator (MPI with the CUDA backend)
    std::vector<uint8_t> h(bytes);
    be_->toHost(h.data(), buf, bytes);
    comm_->allReduceSum(h.data(), count, t);
    be_->toDevice(buf, h.data(), bytes);
  }
}

void Trainer::bcast(void* buf, size_t bytes, int root, bool device) {
  if (bytes == 0) return;
  const bool onDevice = device && be_->name() == "cuda";
  if (onDevice == comm_->deviceMemory()) {
    comm_->broadcast(buf, bytes, root);
  } else if (comm_->deviceMemory()) {
    DBuf<uint8_t> d(*be_, bytes);
    be_->toDevice(d, buf, bytes);
    be_->sync();
    comm_->broadcast(d, bytes, root);
    be_->toHost(buf, d, bytes);
  } else {
    std::vector<uint8_t> h(bytes);
    be_->toHost(h.data(), buf, bytes);
    comm_->broadcast(h.data(), bytes, root);
    be_->toDevice(buf, h.data(), bytes);
  }
}

// Once, before the first distributed chunk: every rank must train the same model on the same data
// from the same step, or the all-reduced sums would mix different things without any error.
void Trainer::checkRanksAgree() {
  uint64_t hash = 1469598103934665603ull;  // FNV-1a over the training tokens
  for (int32_t t : train_) {
    hash ^= static_cast<uint32_t>(t);
    hash *= 1099511628211ull;
  }
  const ModelConfig& mc = cfg_.model;
  const std::vector<std::pair<const char*, int64_t>> mine = {
      {"seed", static_cast<int64_t>(cfg_.seed)},
      {"batch", cfg_.batch},
      {"accum", cfg_.accum},
      {"microBatch", cfg_.microBatch},
      {"quant", static_cast<int64_t>(cfg_.quant)},
      {"vocab", mc.vocab},
      {"dModel", mc.dModel},
      {"layers", mc.layers},
      {"heads", mc.heads},
      {"ffn", mc.ffn},
      {"seq", mc.seq},
      {"training tokens", static_cast<int64_t>(train_.size())},
      {"training data (hash)", static_cast<int64_t>(hash)},
      {"step", step_}};
  std::vector<int64_t> root(mine.size());
  for (size_t i = 0; i < mine.size(); ++i) root[i] = mine[i].second;
  bcast(root.data(), sizeof(int64_t) * root.size(), 0, false);
  std::string differ;
  for (size_t i = 0; i < mine.size(); ++i)
    if (root[i] != mine[i].second)
      differ += std::string(differ.empty() ? "" : ", ") + mine[i].first +
                " (rank 0: " + std::to_string(root[i]) + ", rank " + std::to_string(rank()) + ": " +
                std::to_string(mine[i].second) + ")";
  int32_t bad = differ.empty() ? 0 : 1;
  reduce(&bad, 1, static_cast<int>(CommType::Int32), false);
  if (bad > 0)
    throw Error(comm_->backend() + " rank " + std::to_string(rank()) + " of " + std::to_string(worldSize()) +
                ": the ranks do not train the same run (" + std::to_string(bad) +
                " rank(s) differ from rank 0" + (differ.empty() ? "" : ": " + differ) +
                "); every rank needs the same config, seed, data and checkpoint");
  consistencyChecked_ = true;
}

// The step's sums over all ranks: loss, tokens, refusals and the state digest with the Ghost
// Scale gradients (double, read from and written back to the step's accumulators), the fp
// gradients (float) and the vote changes (int8 while R*K <= 127 — each rank's change lies in
// [-K, K] — else int32, merged here on the host). Distributed steps wait for the device here.
bool Trainer::reduceStep() {
  Model& m = *m_;
  const size_t nl = m.lin.size();
  const int R = worldSize();
  std::vector<uint8_t> acc(m.stats.accBytes);
  be_->toHost(acc.data(), m.stepStats, acc.size());
  StepHead h;
  std::memcpy(&h, acc.data(), sizeof h);
  std::vector<double> ds(nl);
  std::memcpy(ds.data(), acc.data() + sizeof(StepHead), sizeof(double) * nl);
  // digest_ (and its square) check that the last step left every rank in the same state: all
  // ranks hold the same value exactly when (sum)^2 == R * (sum of squares); exact in double for
  // 20-bit values and R <= 64, and every rank reaches the same verdict.
  const double dg = static_cast<double>(digest_);
  const bool mineRefused = (h.refused & kRefuseLoss) != 0;
  std::vector<double> sc = {h.lossSum, h.tokens, mineRefused ? 1.0 : 0.0, dg, dg * dg};
  sc.insert(sc.end(), ds.begin(), ds.end());
  reduce(sc.data(), sc.size(), static_cast<int>(CommType::Double), false);
  if (R <= 64 && sc[3] * sc[3] != static_cast<double>(R) * sc[4])
    failStep("the ranks no longer hold the same model before step " + std::to_string(step_ + 1) +
             " (their last updates differed); stop and resume from the last checkpoint");
  if (sc[2] > 0)
    failStep(std::to_string(static_cast<int>(sc[2])) + " of " + std::to_string(R) + " ranks refused step " +
             std::to_string(step_ + 1) +
             (mineRefused ? ": " + lossMessage(h.badLoss, step_ + 1)
                          : " (rank " + std::to_string(rank()) + " was fine)"));
  h.lossSum = sc[0];
  h.tokens = sc[1];
  std::memcpy(acc.data(), &h, sizeof h);
  std::memcpy(acc.data() + sizeof(StepHead), sc.data() + 5, sizeof(double) * nl);
  be_->toDevice(m.stepStats, acc.data(), acc.size());
  const bool int8Votes = R * accumulated_ <= polt::kVoteMax;
  // The fp gradients and int8 vote changes in one batched all-reduce when the communicator works on
  // the trainer's memory (MPI on the CPU, NCCL on CUDA); else buffer by buffer through the host.
  if ((be_->name() == "cuda") == comm_->deviceMemory()) {
    be_->sync();
    std::vector<CommBuffer> bufs;
    for (auto& p : m.params) bufs.push_back({p.g, p.n, CommType::Float});
    if (m.polt() && int8Votes)
      for (auto& l : m.lin) bufs.push_back({l.vote, l.n, CommType::Int8});
    comm_->allReduceSumMany(bufs);
  } else {
    for (auto& p : m.params) reduce(p.g, p.n, static_cast<int>(CommType::Float), true);
    if (m.polt() && int8Votes)
      for (auto& l : m.lin) reduce(l.vote, l.n, static_cast<int>(CommType::Int8), true);
  }
  if (!m.polt() || int8Votes) return false;
  for (auto& l : m.lin) {
    std::vector<int8_t> d8(l.n), start(l.n);
    be_->toHost(d8.data(), l.vote, l.n);
    be_->toHost(start.data(), m.voteUndo.data() + l.offset, l.n);
    std::vector<int32_t> d32(d8.begin(), d8.end());
    reduce(d32.data(), d32.size(), static_cast<int>(CommType::Int32), false);
    for (size_t i = 0; i < l.n; ++i) d8[i] = static_cast<int8_t>(polt::mergeVote(start[i], d32[i]));
    be_->toDevice(l.vote, d8.data(), l.n);
  }
  return true;
}

void Trainer::broadcastState(int root) {
  if (!comm_) throw Error("broadcastState: no communicator (setCommunicator first)");
  if (accumulated_ != 0)
    throw Error("broadcastState: " + std::to_string(accumulated_) +
                " micro-batch(es) are accumulated but not applied; call applyStep() first");
  Model& m = *m_;
  be_->sync();
  // The fp arenas and the ternary arena (codes, votes, Ghost Scale state) as they are.
  bcast(m.paramArena, m.paramArena.bytes(), root, true);
  bcast(m.adamM, m.adamM.bytes(), root, true);
  bcast(m.adamV, m.adamV.bytes(), root, true);
  bcast(m.ternary, m.ternary.bytes(), root, true);
  be_->zero(m.stepStats, m.stats.accBytes);
  Knobs k = cfg_.knobs;
  bcast(&k, sizeof(k), root, false);
  cfg_.knobs = k;
  m.cfg.knobs = k;
  double counters[2] = {static_cast<double>(step_), tokens_};
  bcast(counters, sizeof(counters), root, false);
  step_ = static_cast<int>(counters[0]);
  tokens_ = counters[1];
  consistencyChecked_ = false;
  digest_ = 0;
  be_->sync();
}

WireBytes wireBytesPerStep(const TrainConfig& cfg, int worldSize) {
  TrainConfig c = cfg;
  if (c.microBatch <= 0 || c.batch % c.microBatch != 0) c.microBatch = c.batch;
  const ModelDims d(c);
  WireBytes w;
  w.grads = d.fpW * sizeof(float);
  w.scalars = (5 + 7 * d.L) * sizeof(double);
  const size_t K = d.chunks;
  w.int32Votes = static_cast<size_t>(worldSize) * K > static_cast<size_t>(polt::kVoteMax);
  w.votes = d.polt ? d.bitW * (w.int32Votes ? sizeof(int32_t) : sizeof(int8_t)) : 0;
  w.total = w.grads + w.scalars + w.votes;
  return w;
}

}  // namespace primal
