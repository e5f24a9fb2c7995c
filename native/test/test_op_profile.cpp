// The op profiler (primal/op_profile.h) on the CPU backend: it changes nothing the trainer
// computes, counts every op and host synchronisation of a step the same way each step, and
// attributes the work the shapes imply.
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "primal/op_profile.h"
#include "primal/trainer.h"
#include "testing.h"
#include "trainer_fixtures.h"

using namespace primal;

namespace {

// The shared micro model with 8-bit activations on the quantized layers (so actQuant is profiled).
TrainConfig profConfig(Quant q) {
  TrainConfig c = primal_test::microConfig(q);
  c.model.vocab = 40;
  c.actBits = q == Quant::FP ? 0 : 8;
  c.seed = 11;
  return c;
}

std::vector<int32_t> cycleTokens(size_t n, int vocab) {
  std::vector<int32_t> t(n);
  for (size_t i = 0; i < n; ++i) t[i] = static_cast<int32_t>((i * 5 + i / 3) % vocab);
  return t;
}

const OpStat* find(const OpProfileReport& r, const char* name) {
  for (const OpStat& o : r.ops)
    if (o.name == name) return &o;
  return nullptr;
}

}  // namespace

PRIMAL_TEST("trainer/op profile: same losses as unprofiled, same counts every step") {
  for (Quant q : {Quant::Poltergeist, Quant::STE, Quant::FP}) {
    TrainConfig c = profConfig(q);
    std::vector<float> plain, profiled;
    {
      Trainer t(c, "cpu", 1);
      EXPECT_TRUE(profilerOf(t.backend()) == nullptr);
      t.setTrainData(cycleTokens(2000, c.model.vocab));
      for (int i = 0; i < 3; ++i) plain.push_back(t.trainStep().loss);
    }
    primal_test::EnvScope env("PRIMAL_PROFILE", "1");
    Trainer t(c, "cpu", 1);
    ProfilingBackend* p = profilerOf(t.backend());
    EXPECT_TRUE(p != nullptr);
    t.setTrainData(cycleTokens(2000, c.model.vocab));
    p->resetProfile();
    std::vector<OpProfileReport> after;
    for (int i = 0; i < 3; ++i) {
      profiled.push_back(t.trainStep().loss);
      p->endStep();
      after.push_back(p->report());
    }
    for (int i = 0; i < 3; ++i) EXPECT_TRUE(std::memcmp(&plain[i], &profiled[i], sizeof(float)) == 0);

    const OpProfileReport& r = after.back();
    EXPECT_EQ(r.steps, 3u);
    EXPECT_TRUE(r.clock == "steady_clock");
    EXPECT_TRUE(r.busyMs >= 0 && r.spanMs >= 0);
    // Step 1 and steps 2-3 do the same work: every op's calls grow by the same amount each step.
    for (const OpStat& o : r.ops) {
      const OpStat* first = find(after[0], o.name.c_str());
      const OpStat* second = find(after[1], o.name.c_str());
      EXPECT_TRUE(first != nullptr && second != nullptr);
      EXPECT_EQ(o.calls - second->calls, second->calls - first->calls);
      EXPECT_TRUE(o.ms >= 0);
    }
    EXPECT_EQ(r.hostSyncs - after[1].hostSyncs, after[1].hostSyncs - after[0].hostSyncs);
    EXPECT_TRUE(r.hostSyncs > 0);

    // Work implied by the shapes: causal attention forward is 2*B*H*T^2*D per call.
    const OpStat* af = find(r, "attentionForward");
    EXPECT_TRUE(af != nullptr);
    EXPECT_EQ(af->calls, static_cast<uint64_t>(3 * c.model.layers));
    const double B = c.batch, H = c.model.heads, T = c.model.seq, D = c.model.dModel / c.model.heads;
    EXPECT_NEAR(af->flops, 3.0 * c.model.layers * 2.0 * B * H * T * T * D, 0, 1e-12);
    const OpStat* g = find(r, "gemm");
    EXPECT_TRUE(g != nullptr && g->calls > 0 && g->flops > 0 && g->bytes > 0);
    EXPECT_TRUE(find(r, "classifierTrain") != nullptr);
    EXPECT_TRUE(find(r, "adamw") != nullptr);
    if (q == Quant::Poltergeist) {
      const OpStat* flip = find(r, "poltFlip");
      EXPECT_TRUE(flip != nullptr);
      EXPECT_EQ(flip->calls, static_cast<uint64_t>(3 * 7 * c.model.layers));
    }
    const std::string json = p->reportJson();
    EXPECT_TRUE(json.find("\"op\":\"gemm\"") != std::string::npos);
    EXPECT_TRUE(json.find("\"hostSyncsPerStep\"") != std::string::npos);
  }
}

PRIMAL_TEST("trainer/op profile: a small clock pool resolves early and loses no op") {
  TrainConfig c = profConfig(Quant::Poltergeist);
  primal_test::EnvScope env("PRIMAL_PROFILE", "1");
  Trainer ref(c, "cpu", 1);
  ref.setTrainData(cycleTokens(2000, c.model.vocab));
  ProfilingBackend* pr = profilerOf(ref.backend());
  EXPECT_TRUE(pr != nullptr);
  pr->resetProfile();
  ref.trainStep();
  pr->endStep();

  // The same ops through a profiler whose clock holds 2 pairs: many resolutions, same table.
  ProfilingBackend small(makeCpuBackend(1), std::make_unique<SteadyOpClock>(4));
  std::vector<float> x(64, 1.5f), y(64, 0.5f);
  for (int i = 0; i < 10; ++i) small.add(y.data(), x.data(), y.size());
  (void)small.sumSquares(y.data(), y.size());
  small.endStep();
  const OpProfileReport r = small.report();
  EXPECT_TRUE(r.resolves >= 5);
  EXPECT_EQ(find(r, "add")->calls, 10u);
  EXPECT_EQ(find(r, "add")->bytes, 10.0 * 3 * 4 * 64);
  EXPECT_EQ(r.hostSyncs, 1u);
  EXPECT_NEAR(y[0], 15.5, 0, 0);
  EXPECT_TRUE(pr->report().ops.size() > 5);
}

PRIMAL_TEST("trainer/op profile: a step waits for the device at most twice, however many chunks") {
  primal_test::EnvScope env("PRIMAL_PROFILE", "1");
  for (Quant q : {Quant::FP, Quant::STE, Quant::Poltergeist})
    for (int micro : {2, 1}) {
      TrainConfig c = profConfig(q);
      c.accum = 2;
      c.microBatch = micro;  // 2 or 4 chunks per step
      Trainer t(c, "cpu", 1);
      ProfilingBackend* p = profilerOf(t.backend());
      EXPECT_TRUE(p != nullptr);
      t.setTrainData(cycleTokens(2000, c.model.vocab));
      t.trainStep();
      p->resetProfile();
      for (int i = 0; i < 3; ++i) {
        t.trainStep();
        p->endStep();
      }
      const OpProfileReport r = p->report();
      std::string by;
      for (const auto& s : r.syncsByOp) by += " " + s.first + "=" + std::to_string(s.second);
      std::printf("     %s, %d chunks: %.1f host syncs per step (%s )\n", quantName(q), t.chunksPerStep(),
                  static_cast<double>(r.hostSyncs) / 3.0, by.c_str());
      EXPECT_TRUE(r.hostSyncs <= 2u * 3u);
    }
}
