// Whole-model checks on the CPU backend: finite-difference gradients of the full tiny model,
// dL/ds of the Ghost Scales, the Poltergeist rules at trainer level, determinism and resume.
#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

#include "primal/philox.h"
#include "primal/trainer.h"
#include "testing.h"
#include "trainer_fixtures.h"

using namespace primal;
using primal_test::microConfig;
using primal_test::patternTokens;

namespace {

std::vector<int32_t> randomTokens(size_t n, int vocab, uint32_t salt) {
  std::vector<int32_t> t(n);
  for (size_t i = 0; i < n; ++i)
    t[i] = static_cast<int32_t>(philox4x32_10(static_cast<uint32_t>(i), salt, 0, 9, 1, 2).v[0] % vocab);
  return t;
}

}  // namespace

PRIMAL_TEST("trainer/fp whole-model gradient matches finite differences") {
  TrainConfig c = microConfig(Quant::FP);
  c.model.initStd = 0.3f;
  Trainer t(c, "cpu", 1);
  const int B = 2, T = 8;
  auto in = randomTokens(B * T, c.model.vocab, 1), tg = randomTokens(B * T, c.model.vocab, 2);
  tg[3] = -1;  // an unscored position
  t.zeroGrad();
  t.forwardBackward(in.data(), tg.data(), B, T);
  int checked = 0;
  for (const std::string& name : t.paramNames()) {
    auto w = t.param(name);
    auto g = t.paramGrad(name);
    for (int k = 0; k < 4; ++k) {
      size_t idx = (name == "wte") ? static_cast<size_t>(in[k] * c.model.dModel + k) : (k * 7919u) % w.size();
      const float orig = w[idx];
      const float eps = 1e-2f;
      w[idx] = orig + eps;
      t.setParam(name, w);
      double lp = t.batchLoss(in.data(), tg.data(), B, T);
      w[idx] = orig - eps;
      t.setParam(name, w);
      double lm = t.batchLoss(in.data(), tg.data(), B, T);
      w[idx] = orig;
      t.setParam(name, w);
      double fd = (lp - lm) / (2 * eps);
      EXPECT_NEAR(g[idx], fd, 2e-3, 5e-2);
      ++checked;
    }
  }
  EXPECT_TRUE(checked > 40);
}

PRIMAL_TEST("trainer/ste gradient is straight-through to the latent weights") {
  // With STE the latent weight gradient equals the gradient w.r.t. the quantized weight, so a
  // finite difference through the quantizer is meaningless; instead compare against an fp
  // trainer whose weights are set to the quantized values.
  TrainConfig c = microConfig(Quant::STE);
  Trainer ste(c, "cpu", 1);
  TrainConfig cf = microConfig(Quant::FP);
  Trainer fp(cf, "cpu", 1);
  for (const std::string& name : ste.paramNames()) fp.setParam(name, ste.param(name));
  for (int i = 0; i < static_cast<int>(ste.layers().size()); ++i)
    fp.setParam(ste.layers()[i].name, ste.weights(i));
  auto in = randomTokens(16, c.model.vocab, 3), tg = randomTokens(16, c.model.vocab, 4);
  ste.zeroGrad();
  fp.zeroGrad();
  double a = ste.forwardBackward(in.data(), tg.data(), 2, 8);
  double b = fp.forwardBackward(in.data(), tg.data(), 2, 8);
  EXPECT_NEAR(a, b, 1e-5, 1e-5);
  auto gs = ste.paramGrad("blocks.1.mlp.up"), gf = fp.paramGrad("blocks.1.mlp.up");
  for (size_t i = 0; i < gs.size(); i += 13) EXPECT_NEAR(gs[i], gf[i], 1e-6, 1e-4);
}

PRIMAL_TEST("trainer/poltergeist dL/ds matches finite differences") {
  TrainConfig c = microConfig(Quant::Poltergeist);
  c.model.initStd = 0.3f;
  Trainer t(c, "cpu", 1);
  auto in = randomTokens(16, c.model.vocab, 5), tg = randomTokens(16, c.model.vocab, 6);
  t.zeroGrad();
  t.forwardBackward(in.data(), tg.data(), 2, 8);
  auto ds = t.scaleGrads();
  auto s = t.scales();
  for (int l = 0; l < static_cast<int>(s.size()); ++l) {
    const float eps = 1e-2f;
    t.setScale(l, s[l] + eps);
    double lp = t.batchLoss(in.data(), tg.data(), 2, 8);
    t.setScale(l, s[l] - eps);
    double lm = t.batchLoss(in.data(), tg.data(), 2, 8);
    t.setScale(l, s[l]);
    EXPECT_NEAR(ds[l], (lp - lm) / (2 * eps), 2e-3, 5e-2);
  }
}

PRIMAL_TEST("trainer/votes change only in backward, codes only at the step") {
  TrainConfig c = microConfig(Quant::Poltergeist);
  c.knobs.flipRate = 1.0f;  // make flips likely so the step visibly changes codes
  Trainer t(c, "cpu", 1);
  t.setTrainData(patternTokens(4000, c.model.vocab));
  const int L = static_cast<int>(t.layers().size());
  std::vector<std::vector<int8_t>> c0, v0;
  for (int l = 0; l < L; ++l) {
    c0.push_back(t.codes(l));
    v0.push_back(t.votes(l));
  }
  // Forward only: nothing changes.
  auto in = patternTokens(16, c.model.vocab);
  std::vector<int32_t> tg(in.begin() + 1, in.end());
  tg.push_back(0);
  t.batchLoss(in.data(), tg.data(), 2, 8);
  for (int l = 0; l < L; ++l) {
    EXPECT_TRUE(t.codes(l) == c0[l]);
    EXPECT_TRUE(t.votes(l) == v0[l]);
  }
  // Backward: votes move, codes do not; every vote is -sign(G) so |vote| <= 1 after one pass.
  t.accumulate();
  bool votesMoved = false;
  for (int l = 0; l < L; ++l) {
    EXPECT_TRUE(t.codes(l) == c0[l]);
    auto v = t.votes(l);
    for (auto x : v) EXPECT_TRUE(x >= -1 && x <= 1);
    votesMoved = votesMoved || v != v0[l];
  }
  EXPECT_TRUE(votesMoved);
  // The step: codes change, every changed code moved exactly one rung and its vote is 0.
  std::vector<std::vector<int8_t>> v1;
  for (int l = 0; l < L; ++l) v1.push_back(t.votes(l));
  StepResult r = t.applyStep();
  uint64_t flips = 0;
  for (int l = 0; l < L; ++l) {
    auto cn = t.codes(l), vn = t.votes(l);
    for (size_t i = 0; i < cn.size(); ++i) {
      if (cn[i] != c0[l][i]) {
        ++flips;
        EXPECT_EQ(std::abs(cn[i] - c0[l][i]), 1);
        EXPECT_EQ((cn[i] - c0[l][i]) > 0, v1[l][i] > 0);
        EXPECT_EQ(vn[i], 0);
      }
    }
    flips -= r.layers[l].flips.flipsUp + r.layers[l].flips.flipsDown;
  }
  EXPECT_EQ(flips, 0u);  // telemetry counts exactly the changed codes
}

PRIMAL_TEST("trainer/votes saturate at +-127 over many backward passes") {
  TrainConfig c = microConfig(Quant::Poltergeist);
  Trainer t(c, "cpu", 1);
  auto in = patternTokens(16, c.model.vocab);
  std::vector<int32_t> tg(in.begin() + 1, in.end());
  tg.push_back(0);
  for (int i = 0; i < 140; ++i) t.forwardBackward(in.data(), tg.data(), 2, 8);
  auto v = t.votes(0);
  int sat = 0;
  for (auto x : v) {
    EXPECT_TRUE(x >= -127 && x <= 127);
    sat += (x == 127 || x == -127);
  }
  EXPECT_TRUE(sat > 0);
  t.zeroGrad();
}

PRIMAL_TEST("trainer/bridge change applies to the very next forward; null resolves +-1") {
  TrainConfig c = microConfig(Quant::Poltergeist);
  Trainer t(c, "cpu", 1);
  auto codes = t.codes(0);
  auto w = t.weights(0);
  const float unit = t.gamma0()[0] * t.scales()[0];
  for (size_t i = 0; i < codes.size(); ++i) {
    float expect =
        codes[i] == 0 ? 0.0f : (codes[i] > 0 ? 1.0f : -1.0f) * (std::abs(codes[i]) == 2 ? 1.0f : 2.0f / 3.0f);
    EXPECT_NEAR(w[i], unit * expect, 1e-7, 1e-6);
  }
  auto in = randomTokens(16, c.model.vocab, 8), tg = randomTokens(16, c.model.vocab, 9);
  double before = t.batchLoss(in.data(), tg.data(), 2, 8);
  Knobs k = t.knobs();
  k.bridge = 0.9f;
  t.setKnobs(k);
  auto w2 = t.weights(0);
  for (size_t i = 0; i < codes.size(); ++i)
    if (std::abs(codes[i]) == 1) EXPECT_NEAR(w2[i], unit * 0.9f * (codes[i] > 0 ? 1 : -1), 1e-7, 1e-6);
  double after = t.batchLoss(in.data(), tg.data(), 2, 8);
  EXPECT_TRUE(before != after);
  // Bridge off with b >= 0.5: +-1 codes become +-2.
  k.bridge.reset();
  t.setKnobs(k);
  auto c3 = t.codes(0);
  for (size_t i = 0; i < codes.size(); ++i) {
    if (std::abs(codes[i]) == 1) EXPECT_EQ(c3[i], codes[i] * 2);
    else EXPECT_EQ(c3[i], codes[i]);
  }
  // And with b < 0.5 they become 0.
  Trainer t2(c, "cpu", 1);
  Knobs k2 = t2.knobs();
  k2.bridge = 0.3f;
  t2.setKnobs(k2);
  auto codes2 = t2.codes(1);
  k2.bridge.reset();
  t2.setKnobs(k2);
  auto c4 = t2.codes(1);
  for (size_t i = 0; i < codes2.size(); ++i) EXPECT_EQ(c4[i], std::abs(codes2[i]) == 1 ? 0 : codes2[i]);
}

PRIMAL_TEST("trainer/flip probability uses s and K") {
  TrainConfig c = microConfig(Quant::Poltergeist);
  c.accum = 2;
  Trainer t(c, "cpu", 1);
  std::vector<int8_t> v(t.layers()[0].rows * t.layers()[0].cols);
  for (size_t i = 0; i < v.size(); ++i) v[i] = static_cast<int8_t>(static_cast<int>(i % 255) - 127);
  t.setVotes(0, v);
  t.setScale(0, 1.5f);
  auto p = t.flipProbabilities(0);  // K = accum = 2 with nothing accumulated
  for (size_t i = 0; i < v.size(); ++i) {
    double e = std::min(0.5, (0.01 * static_cast<double>(1.5f)) * std::abs(v[i]) / 2.0);
    EXPECT_NEAR(p[i], e, 1e-7, 1e-6);
  }
}

PRIMAL_TEST("trainer/same seed gives bit-identical losses and codes") {
  for (Quant q : {Quant::FP, Quant::STE, Quant::Poltergeist}) {
    TrainConfig c = microConfig(q);
    c.actBits = q == Quant::FP ? 0 : 8;
    Trainer a(c, "cpu", 2), b(c, "cpu", 2);
    a.setTrainData(patternTokens(5000, c.model.vocab));
    b.setTrainData(patternTokens(5000, c.model.vocab));
    for (int s = 0; s < 8; ++s) {
      float la = a.trainStep().loss, lb = b.trainStep().loss;
      EXPECT_EQ(la, lb);
    }
    if (q == Quant::Poltergeist)
      for (int l = 0; l < static_cast<int>(a.layers().size()); ++l) EXPECT_TRUE(a.codes(l) == b.codes(l));
  }
}

PRIMAL_TEST("trainer/checkpoint resume continues bit-identically") {
  for (Quant q : {Quant::FP, Quant::Poltergeist}) {
    TrainConfig c = microConfig(q);
    c.accum = 2;
    auto data = patternTokens(5000, c.model.vocab);
    Trainer a(c, "cpu", 2);
    a.setTrainData(data);
    for (int s = 0; s < 5; ++s) a.trainStep();
    const std::string path = primal_test::scratchFile(std::string("ckpt_") + quantName(q) + ".safetensors");
    a.save(path, "{\"note\":\"x\"}");
    std::vector<float> ref;
    for (int s = 0; s < 5; ++s) ref.push_back(a.trainStep().loss);
    TrainConfig c2 = c;
    c2.seed = 999;  // restored from the checkpoint
    Trainer b(c2, "cpu", 2);
    b.setTrainData(data);
    EXPECT_TRUE(b.load(path) == "{\"note\":\"x\"}");
    EXPECT_EQ(b.step(), 5);
    for (int s = 0; s < 5; ++s) EXPECT_EQ(b.trainStep().loss, ref[s]);
    if (q == Quant::Poltergeist)
      for (int l = 0; l < static_cast<int>(a.layers().size()); ++l) {
        EXPECT_TRUE(a.codes(l) == b.codes(l));
        EXPECT_TRUE(a.votes(l) == b.votes(l));
      }
    std::remove(path.c_str());
  }
}

PRIMAL_TEST("trainer/corrupt checkpoints give clear errors and leave state intact") {
  TrainConfig c = microConfig(Quant::Poltergeist);
  Trainer a(c, "cpu", 1);
  const std::string path = primal_test::scratchFile("ckpt_corrupt.safetensors");
  a.save(path);
  std::FILE* f = std::fopen(path.c_str(), "rb");
  std::vector<char> bytes;
  int ch;
  while ((ch = std::fgetc(f)) != EOF) bytes.push_back(static_cast<char>(ch));
  std::fclose(f);
  auto codes = a.codes(0);
  auto tryLoad = [&](const std::vector<char>& b) -> std::string {
    std::FILE* g = std::fopen(path.c_str(), "wb");
    std::fwrite(b.data(), 1, b.size(), g);
    std::fclose(g);
    try {
      a.load(path);
    } catch (const std::exception& e) {
      return e.what();
    }
    return "";
  };
  EXPECT_TRUE(tryLoad(std::vector<char>(bytes.begin(), bytes.begin() + bytes.size() / 2)).find("truncated") !=
              std::string::npos);
  EXPECT_TRUE(tryLoad(std::vector<char>(bytes.begin(), bytes.begin() + 5)).find("truncated") !=
              std::string::npos);
  auto bad = bytes;
  bad[12] = '#';
  EXPECT_TRUE(!tryLoad(bad).empty());
  TrainConfig other = c;
  other.model.dModel = 32;
  Trainer o(other, "cpu", 1);
  o.save(path);
  std::string msg;
  try {
    a.load(path);
  } catch (const std::exception& e) {
    msg = e.what();
  }
  EXPECT_TRUE(msg.find("different model") != std::string::npos);
  std::remove(path.c_str());
  EXPECT_TRUE(a.codes(0) == codes);
}

PRIMAL_TEST("trainer/every quantizer learns a repeating pattern") {
  for (Quant q : {Quant::FP, Quant::STE, Quant::Poltergeist}) {
    TrainConfig c = microConfig(q);
    c.model.vocab = 32;
    c.model.dModel = 32;
    c.model.ffn = 64;
    c.model.seq = 16;
    c.batch = 8;
    c.actBits = q == Quant::FP ? 0 : 8;
    c.totalSteps = 150;
    c.warmup = 10;
    Trainer t(c, "cpu", 2);
    t.setTrainData(patternTokens(20000, c.model.vocab));
    float first = 0, last = 0;
    for (int s = 0; s < 150; ++s) {
      float l = t.trainStep().loss;
      if (s == 0) first = l;
      last = l;
    }
    std::printf("     %s: loss %.3f -> %.3f\n", quantName(q), first, last);
    EXPECT_TRUE(last < 0.5f * first);
  }
}
