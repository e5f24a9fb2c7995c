// The trainer's own rules, each predicted from its formula rather than read back: a refused step
// changes nothing, the Ghost Scale's AdamW, the warmup + cosine schedule, gradient clipping,
// decoupled weight decay on 2-D weights only, initial codes from W0/gamma0, and what checkpoints
// must agree on.
#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "core/model.h"
#include "primal/error.h"
#include "primal/poltergeist.h"
#include "primal/trainer.h"
#include "testing.h"
#include "trainer_fixtures.h"

namespace primal {
struct TrainerTestAccess {
  static Model& model(Trainer& t) { return *t.m_; }
};
}  // namespace primal

using namespace primal;
using primal_test::microConfig;
using primal_test::patternTokens;

namespace {

std::vector<std::vector<int8_t>> allVotes(Trainer& t) {
  std::vector<std::vector<int8_t>> v;
  for (size_t l = 0; l < t.layers().size(); ++l) v.push_back(t.votes(static_cast<int>(l)));
  return v;
}

std::vector<std::vector<int8_t>> allCodes(Trainer& t) {
  std::vector<std::vector<int8_t>> v;
  for (size_t l = 0; l < t.layers().size(); ++l) v.push_back(t.codes(static_cast<int>(l)));
  return v;
}

template <typename F>
std::string errorOf(F&& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

}  // namespace

PRIMAL_TEST("trainer/a non-finite loss in a later chunk undoes the step's earlier votes") {
  TrainConfig c = microConfig(Quant::Poltergeist);
  c.accum = 2;
  Trainer t(c, "cpu", 1);
  t.setTrainData(patternTokens(4000, c.model.vocab));
  t.trainStep();
  const auto votes0 = allVotes(t), codes0 = allCodes(t);
  t.accumulate();  // chunk 1 votes
  EXPECT_TRUE(allVotes(t) != votes0);
  std::vector<float> wte = t.param("wte");
  std::vector<float> bad = wte;
  for (float& x : bad) x = std::numeric_limits<float>::infinity();
  t.setParam("wte", bad);
  const std::string err = errorOf([&] { t.accumulate(); });
  EXPECT_TRUE(err.find("non-finite training loss") != std::string::npos);
  EXPECT_TRUE(err.find("votes were undone") != std::string::npos);
  EXPECT_TRUE(allVotes(t) == votes0);
  EXPECT_TRUE(allCodes(t) == codes0);
  EXPECT_EQ(t.step(), 1);
  // The trainer goes on as if the refused step never started.
  t.setParam("wte", wte);
  EXPECT_EQ(t.trainStep().step, 2);
  // In the step's first chunk too: the votes kept at its start come back.
  const auto votes2 = allVotes(t);
  t.setParam("wte", bad);
  EXPECT_TRUE(errorOf([&] { t.accumulate(); }).find("non-finite training loss") != std::string::npos);
  EXPECT_TRUE(allVotes(t) == votes2);
  t.setParam("wte", wte);
}

PRIMAL_TEST("trainer/trainStep decides a refused step on the device: nothing changes, not even tokens") {
  for (Quant q : {Quant::Poltergeist, Quant::STE}) {
    TrainConfig c = microConfig(q);
    c.accum = 2;
    c.microBatch = 1;  // 4 chunks: the bad loss comes in the first, later chunks still run
    Trainer t(c, "cpu", 1);
    t.setTrainData(patternTokens(4000, c.model.vocab));
    t.trainStep();
    const auto scales0 = t.scales();
    const double tokens0 = t.tokensSeen();
    std::vector<std::vector<float>> p0;
    for (const std::string& n : t.paramNames()) p0.push_back(t.param(n));
    std::vector<std::vector<int8_t>> votes0, codes0;
    if (q == Quant::Poltergeist) {
      votes0 = allVotes(t);
      codes0 = allCodes(t);
    }
    const std::vector<float> wte = t.param("wte");
    std::vector<float> bad = wte;
    for (float& x : bad) x = std::numeric_limits<float>::infinity();
    t.setParam("wte", bad);
    const std::string err = errorOf([&] { t.trainStep(); });
    EXPECT_TRUE(err.find("non-finite training loss") != std::string::npos);
    EXPECT_TRUE(err.find("at step 2") != std::string::npos);
    t.setParam("wte", wte);
    EXPECT_EQ(t.step(), 1);
    EXPECT_EQ(t.tokensSeen(), tokens0);
    EXPECT_TRUE(t.scales() == scales0);
    for (float g : t.scaleGrads()) EXPECT_EQ(g, 0.0f);
    size_t i = 0;
    for (const std::string& n : t.paramNames()) {
      EXPECT_TRUE(t.param(n) == p0[i]);
      EXPECT_TRUE(n != "wte" || t.paramGrad(n) == std::vector<float>(wte.size(), 0.0f));
      ++i;
    }
    if (q == Quant::Poltergeist) {
      EXPECT_TRUE(allVotes(t) == votes0);
      EXPECT_TRUE(allCodes(t) == codes0);
    }
    // The next step is the step that was refused, from the same state.
    const StepResult r = t.trainStep();
    EXPECT_EQ(r.step, 2);
    EXPECT_TRUE(std::isfinite(r.loss));
  }
}

PRIMAL_TEST("trainer/a non-finite Ghost Scale gradient refuses the step and changes nothing") {
  TrainConfig c = microConfig(Quant::Poltergeist);
  Trainer t(c, "cpu", 1);
  t.setTrainData(patternTokens(4000, c.model.vocab));
  t.trainStep();
  const auto votes0 = allVotes(t), codes0 = allCodes(t);
  const auto scales0 = t.scales();
  const auto wte0 = t.param("wte");
  t.accumulate();
  Model& m = TrainerTestAccess::model(t);
  const double nan = std::numeric_limits<double>::quiet_NaN();
  m.be->toDevice(m.ds() + 3, &nan, sizeof nan);  // dL/ds lives in the step statistics
  const std::string err = errorOf([&] { t.applyStep(); });
  EXPECT_TRUE(err.find("non-finite Ghost Scale gradient") != std::string::npos);
  EXPECT_TRUE(err.find(t.layers()[3].name) != std::string::npos);
  EXPECT_EQ(t.tokensSeen(), static_cast<double>(c.batch * c.model.seq));  // only the first step's
  EXPECT_TRUE(allVotes(t) == votes0);
  EXPECT_TRUE(allCodes(t) == codes0);
  EXPECT_TRUE(t.scales() == scales0);
  EXPECT_TRUE(t.param("wte") == wte0);
  EXPECT_EQ(t.step(), 1);
  for (float g : t.scaleGrads()) EXPECT_EQ(g, 0.0f);
  EXPECT_EQ(t.trainStep().step, 2);
  for (float s : t.scales()) EXPECT_TRUE(std::isfinite(s) && s > c.scaleMin);
}

PRIMAL_TEST("trainer/a non-finite gradient norm undoes the step's votes") {
  TrainConfig c = microConfig(Quant::Poltergeist);
  Trainer t(c, "cpu", 1);
  t.setTrainData(patternTokens(4000, c.model.vocab));
  t.trainStep();
  const auto votes0 = allVotes(t);
  t.accumulate();
  EXPECT_TRUE(allVotes(t) != votes0);
  Model& m = TrainerTestAccess::model(t);
  std::vector<float> g(m.params[m.pNormF].n, std::numeric_limits<float>::quiet_NaN());
  m.be->toDevice(m.params[m.pNormF].g, g.data(), g.size() * sizeof(float));
  const std::string err = errorOf([&] { t.applyStep(); });
  EXPECT_TRUE(err.find("non-finite gradient norm") != std::string::npos);
  EXPECT_TRUE(allVotes(t) == votes0);
  EXPECT_EQ(t.step(), 1);
}

PRIMAL_TEST("trainer/accumulate and applyStep keep to the step's K chunks") {
  TrainConfig c = microConfig(Quant::Poltergeist);
  c.accum = 2;
  Trainer t(c, "cpu", 1);
  t.setTrainData(patternTokens(4000, c.model.vocab));
  EXPECT_TRUE(errorOf([&] { t.applyStep(); }).find("no micro-batch") != std::string::npos);
  t.accumulate();
  EXPECT_TRUE(errorOf([&] { t.applyStep(); }).find("1 of the step's 2") != std::string::npos);
  t.accumulate();
  EXPECT_TRUE(errorOf([&] { t.accumulate(); }).find("call applyStep() first") != std::string::npos);
  const StepResult r = t.applyStep();
  EXPECT_EQ(r.step, 1);
  EXPECT_EQ(r.tokens, 2.0 * c.batch * c.model.seq);  // 2 chunks of microBatch (= batch) windows
}

PRIMAL_TEST("trainer/forwardBackward adds the batch's mean-loss gradient and counts in the step") {
  TrainConfig c = microConfig(Quant::FP);
  Trainer t(c, "cpu", 1);
  const int B = 2, T = 8;
  std::vector<int32_t> in = patternTokens(B * T, c.model.vocab), tg(in.begin() + 1, in.end());
  tg.push_back(3);
  tg[5] = -1;  // unscored
  const double loss = t.forwardBackward(in.data(), tg.data(), B, T);
  EXPECT_NEAR(loss, t.batchLoss(in.data(), tg.data(), B, T), 1e-6, 1e-6);
  const StepResult r = t.applyStep();
  EXPECT_NEAR(r.loss, loss, 1e-6, 1e-6);
  EXPECT_EQ(r.tokens, static_cast<double>(B * T - 1));
}

PRIMAL_TEST("trainer/the Ghost Scale AdamW: lr x schedule, bias correction, no decay, the floor") {
  TrainConfig c = microConfig(Quant::Poltergeist);
  c.warmup = 3;
  c.totalSteps = 10;
  c.weightDecay = 0.5f;  // must not reach the scales
  Trainer t(c, "cpu", 1);
  t.setTrainData(patternTokens(4000, c.model.vocab));
  const size_t L = t.layers().size();
  std::vector<double> m(L, 0), v(L, 0);
  for (int step = 0; step < 5; ++step) {
    const std::vector<float> s0 = t.scales();
    t.accumulate();
    const std::vector<float> g = t.scaleGrads();
    const StepResult r = t.applyStep();
    const double factor = r.lr / c.knobs.lr;
    const double slr = static_cast<double>(static_cast<float>(c.knobs.scaleLr * static_cast<float>(factor)));
    const int tt = step + 1;
    for (size_t l = 0; l < L; ++l) {
      m[l] = c.beta1 * m[l] + (1 - c.beta1) * g[l];
      v[l] = c.beta2 * v[l] + (1 - c.beta2) * static_cast<double>(g[l]) * g[l];
      const double mhat = m[l] / (1 - std::pow(c.beta1, tt)), vhat = v[l] / (1 - std::pow(c.beta2, tt));
      const double want = std::max<double>(c.scaleMin, s0[l] - slr * mhat / (std::sqrt(vhat) + c.adamEps));
      EXPECT_NEAR(t.scales()[l], want, 1e-7, 1e-5);
      EXPECT_EQ(r.layers[l].dscale, g[l]);
    }
  }
  // The floor: a scale pushed below scaleMin stays at scaleMin.
  t.setScale(0, c.scaleMin);
  Model& mdl = TrainerTestAccess::model(t);
  t.accumulate();
  const double huge = 1e6;  // a huge positive gradient pushes s down
  mdl.be->toDevice(mdl.ds(), &huge, sizeof huge);
  t.applyStep();
  EXPECT_EQ(t.scales()[0], c.scaleMin);
}

PRIMAL_TEST("trainer/learning rate: linear warmup, then cosine to minLrRatio") {
  TrainConfig c = microConfig(Quant::FP);
  c.warmup = 4;
  c.totalSteps = 12;
  c.minLrRatio = 0.1f;
  Trainer t(c, "cpu", 1);
  t.setTrainData(patternTokens(4000, c.model.vocab));
  const double pi = 3.14159265358979323846;
  for (int step = 0; step < 15; ++step) {
    double f;
    if (step < c.warmup) f = (step + 1.0) / c.warmup;
    else {
      const double prog = std::min(1.0, static_cast<double>(step - c.warmup) / (c.totalSteps - c.warmup));
      f = c.minLrRatio + (1.0 - c.minLrRatio) * 0.5 * (1.0 + std::cos(pi * prog));
    }
    EXPECT_NEAR(t.trainStep().lr, c.knobs.lr * f, 0, 1e-6);
  }
}

PRIMAL_TEST("trainer/gradient clipping scales the gradient AdamW sees; decay only on 2-D weights") {
  TrainConfig c = microConfig(Quant::FP);
  c.gradClip = 1e-3f;  // far below the gradient norm: clipping is active
  c.weightDecay = 0.25f;
  c.warmup = 0;
  Trainer t(c, "cpu", 1);
  t.setTrainData(patternTokens(4000, c.model.vocab));
  Model& m = TrainerTestAccess::model(t);
  t.accumulate();
  // The 1-D norm weights get no gradient here, the 2-D ones keep theirs.
  std::vector<std::vector<float>> g, p0;
  for (auto& p : m.params) {
    if (p.shape.size() == 1) m.be->zero(p.g, sizeof(float) * p.n);
    g.push_back(t.paramGrad(p.name));
    p0.push_back(t.param(p.name));
  }
  double sq = 0;
  for (auto& gi : g)
    for (float x : gi) sq += static_cast<double>(x) * x;
  const double norm = std::sqrt(sq);
  const StepResult r = t.applyStep();
  EXPECT_NEAR(r.gradNorm, norm, 0, 1e-5);
  const float clip = static_cast<float>(c.gradClip / (norm + 1e-6));
  for (size_t i = 0; i < m.params.size(); ++i) {
    FpParam& p = m.params[i];
    EXPECT_EQ(p.decay, p.shape.size() == 2);
    std::vector<float> mom(p.n);
    m.be->toHost(mom.data(), p.m, sizeof(float) * p.n);
    const std::vector<float> p1 = t.param(p.name);
    for (size_t j = 0; j < p.n; j += 7) {
      EXPECT_NEAR(mom[j], (1 - c.beta1) * (g[i][j] * clip), 1e-12, 1e-5);
      if (p.shape.size() == 1) EXPECT_EQ(p1[j], p0[i][j]);  // no gradient, no decay: unchanged
    }
  }
}

PRIMAL_TEST("trainer/initial codes are the nearest levels of W0 / gamma0, gamma0 = mean |W0|") {
  for (bool bridgeOn : {true, false}) {
    TrainConfig fc = microConfig(Quant::FP), pc = microConfig(Quant::Poltergeist);
    if (!bridgeOn) pc.knobs.bridge.reset();
    Trainer fp(fc, "cpu", 1), pg(pc, "cpu", 1);
    for (size_t l = 0; l < pg.layers().size(); ++l) {
      const std::vector<float> w0 = fp.param(pg.layers()[l].name);  // same seed, same W0
      double abs = 0;
      for (float x : w0) abs += std::fabs(x);
      const float gamma0 = static_cast<float>(abs / w0.size());
      EXPECT_EQ(pg.gamma0()[l], gamma0);
      const std::vector<int8_t> codes = pg.codes(static_cast<int>(l));
      for (size_t i = 0; i < w0.size(); ++i)
        EXPECT_EQ(codes[i], polt::nearestCode(w0[i] / gamma0, pc.knobs.bridgeLevel(), bridgeOn));
    }
  }
}

PRIMAL_TEST("trainer/a checkpoint must match every field that changes the model or its data") {
  TrainConfig c = microConfig(Quant::Poltergeist);
  c.actBits = 8;
  Trainer a(c, "cpu", 1);
  const std::string path = primal_test::scratchFile("rules_fields.safetensors");
  a.save(path);
  struct Case {
    const char* field;
    void (*change)(TrainConfig&);
  };
  const Case cases[] = {
      {"seq", [](TrainConfig& x) { x.model.seq = 16; }},
      {"ropeTheta", [](TrainConfig& x) { x.model.ropeTheta = 500.0f; }},
      {"normEps", [](TrainConfig& x) { x.model.normEps = 1e-6f; }},
      {"actBits", [](TrainConfig& x) { x.actBits = 4; }},
      {"batch", [](TrainConfig& x) { x.batch = 4; }},
      {"accum", [](TrainConfig& x) { x.accum = 3; }},
  };
  for (const Case& k : cases) {
    TrainConfig other = c;
    k.change(other);
    Trainer b(other, "cpu", 1);
    const std::string err = errorOf([&] { b.load(path); });
    EXPECT_TRUE(err.find(std::string("trained with ") + k.field) != std::string::npos);
    EXPECT_EQ(b.step(), 0);
  }
  Trainer same(c, "cpu", 1);
  EXPECT_TRUE(errorOf([&] { same.load(path); }).empty());
  std::remove(path.c_str());
}

PRIMAL_TEST("trainer/activation quantization is straight-through in backward") {
  // With 16-bit activations the forward barely changes, so a straight-through backward gives
  // (nearly) the gradients of the unquantized model; a backward that differentiated the rounding
  // would give zero upstream of every quantizer instead.
  TrainConfig q16 = microConfig(Quant::STE), q0 = microConfig(Quant::STE);
  q16.actBits = 16;
  q0.actBits = 0;
  Trainer a(q16, "cpu", 1), b(q0, "cpu", 1);
  const int B = 2, T = 8;
  std::vector<int32_t> in = patternTokens(B * T + 1, q0.model.vocab);
  std::vector<int32_t> tg(in.begin() + 1, in.end());
  in.pop_back();
  a.forwardBackward(in.data(), tg.data(), B, T);
  b.forwardBackward(in.data(), tg.data(), B, T);
  for (const char* name :
       {"wte", "blocks.0.attn_norm", "blocks.0.mlp_norm", "blocks.0.attn.q", "blocks.1.mlp.up"}) {
    const std::vector<float> ga = a.paramGrad(name), gb = b.paramGrad(name);
    double num = 0, den = 0;
    for (size_t i = 0; i < ga.size(); ++i) {
      num += (ga[i] - gb[i]) * static_cast<double>(ga[i] - gb[i]);
      den += static_cast<double>(gb[i]) * gb[i];
    }
    EXPECT_TRUE(den > 0);
    EXPECT_TRUE(std::sqrt(num / den) < 1e-3);
  }
}

PRIMAL_TEST("trainer/the deadzone knob keeps only the larger gradients' votes") {
  TrainConfig c = microConfig(Quant::Poltergeist);
  Trainer a(c, "cpu", 1), b(c, "cpu", 1);
  Knobs k = c.knobs;
  k.deadzone = 0.5f;
  b.setKnobs(k);
  for (Trainer* t : {&a, &b}) {
    t->setTrainData(patternTokens(4000, c.model.vocab));
    t->accumulate();
  }
  size_t castA = 0, castB = 0;
  for (size_t l = 0; l < a.layers().size(); ++l) {
    const auto va = a.votes(static_cast<int>(l)), vb = b.votes(static_cast<int>(l));
    for (size_t i = 0; i < va.size(); ++i) {
      castA += va[i] != 0;
      castB += vb[i] != 0;
      if (vb[i] != 0) EXPECT_EQ(vb[i], va[i]);  // a vote kept by the deadzone is the same vote
    }
  }
  // Gradients within half their RMS of zero cast no vote: a real share, but far from all.
  EXPECT_TRUE(castB < castA * 0.9);
  EXPECT_TRUE(castB > castA * 0.2);
}

PRIMAL_TEST("trainer/another actBits loads only when asked for (evaluation with or without it)") {
  TrainConfig c = microConfig(Quant::Poltergeist);
  c.actBits = 8;
  Trainer a(c, "cpu", 1);
  const std::string path = primal_test::scratchFile("rules_actbits.safetensors");
  a.save(path);
  TrainConfig off = c;
  off.actBits = 0;
  Trainer b(off, "cpu", 1);
  EXPECT_TRUE(errorOf([&] { b.load(path); }).find("actBits") != std::string::npos);
  EXPECT_TRUE(errorOf([&] { b.load(path, true); }).empty());
  EXPECT_TRUE(b.codes(0) == a.codes(0));
  TrainConfig seq = off;
  seq.model.seq = 16;
  Trainer d(seq, "cpu", 1);
  EXPECT_TRUE(errorOf([&] { d.load(path, true); }).find("seq") != std::string::npos);
  std::remove(path.c_str());
}
