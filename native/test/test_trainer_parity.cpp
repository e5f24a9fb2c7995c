// Whole-trainer CPU <-> CUDA parity (runs only when built with CUDA and a GPU is present).
// Tolerances: the CUDA GEMMs use TF32 tensor cores (10-bit mantissa inputs, fp32 accumulate), so
// losses agree to ~1e-3 relative; a vote differs from the CPU's only where the weight gradient is
// within rounding of zero, which the test bounds as a small fraction of all weights.
#ifdef PRIMAL_HAVE_CUDA
#include <cmath>
#include <cstdio>
#include <memory>
#include <vector>

#include <limits>
#include <string>

#include "primal/backend.h"
#include "primal/op_profile.h"
#include "primal/trainer.h"
#include "testing.h"

using namespace primal;

namespace {

// Every case starts here: without a visible GPU it reports itself skipped (not passed).
void requireGpu() {
  if (cudaDeviceCount() == 0) PRIMAL_SKIP("no GPU");
}

std::vector<int32_t> textLike(size_t n, int vocab) {
  std::vector<int32_t> t(n);
  for (size_t i = 0; i < n; ++i) t[i] = static_cast<int32_t>((i * 31 + (i / 7) * 3 + (i / 53)) % vocab);
  return t;
}

TrainConfig tinyConfig(Quant q) {
  TrainConfig c;
  c.model.vocab = 256;
  c.model.dModel = 64;
  c.model.layers = 2;
  c.model.heads = 4;
  c.model.ffn = 192;
  c.model.seq = 64;
  c.batch = 8;
  c.quant = q;
  c.actBits = q == Quant::FP ? 0 : 8;
  c.seed = 11;
  c.totalSteps = 200;
  return c;
}

}  // namespace

PRIMAL_TEST("cuda/trainer one step: loss, dL/ds and votes match the CPU") {
  requireGpu();
  TrainConfig c = tinyConfig(Quant::Poltergeist);
  Trainer cpu(c, "cpu", 0), gpu(c, "cuda", 0);
  auto data = textLike(100000, 256);
  cpu.setTrainData(data);
  gpu.setTrainData(data);
  float lc = cpu.accumulate(), lg = gpu.accumulate();
  std::printf("     loss cpu %.6f gpu %.6f\n", lc, lg);
  EXPECT_NEAR(lg, lc, 1e-4, 2e-3);
  auto dc = cpu.scaleGrads(), dg = gpu.scaleGrads();
  for (size_t i = 0; i < dc.size(); ++i) EXPECT_NEAR(dg[i], dc[i], 1e-5, 2e-2);
  size_t total = 0, differ = 0;
  for (int l = 0; l < static_cast<int>(cpu.layers().size()); ++l) {
    auto vc = cpu.votes(l), vg = gpu.votes(l);
    for (size_t i = 0; i < vc.size(); ++i) differ += vc[i] != vg[i];
    total += vc.size();
  }
  std::printf("     votes differing: %zu of %zu (%.4f%%)\n", differ, total, 100.0 * differ / total);
  EXPECT_TRUE(differ <= total / 100);
}

PRIMAL_TEST("cuda/trainer 200-step tiny runs track the CPU loss curve") {
  requireGpu();
  for (Quant q : {Quant::FP, Quant::Poltergeist}) {
    TrainConfig c = tinyConfig(q);
    Trainer cpu(c, "cpu", 0), gpu(c, "cuda", 0);
    auto data = textLike(200000, 256);
    cpu.setTrainData(data);
    gpu.setTrainData(data);
    double tc = 0, tg = 0;
    float first = 0;
    for (int s = 0; s < 200; ++s) {
      float a = cpu.trainStep().loss, b = gpu.trainStep().loss;
      if (s == 0) first = a;
      if (s >= 180) {
        tc += a / 20;
        tg += b / 20;
      }
    }
    std::printf("     %s: first %.4f, last-20 mean cpu %.4f gpu %.4f\n", quantName(q), first, tc, tg);
    EXPECT_TRUE(tc < 0.8 * first);
    EXPECT_NEAR(tg, tc, 0.02, 0.05);
  }
}

PRIMAL_TEST("cuda/trainer step contract: one host sync per step (4 chunks), the CPU's losses, refusals") {
  requireGpu();
  auto data = textLike(100000, 256);
  for (Quant q : {Quant::FP, Quant::STE, Quant::Poltergeist}) {
    TrainConfig c = tinyConfig(q);
    c.accum = 2;
    c.microBatch = 4;  // 4 chunks per step
    std::unique_ptr<Trainer> gpuOwner;
    {
      primal_test::EnvScope env("PRIMAL_CUDA_PROFILE", "1");
      gpuOwner = std::make_unique<Trainer>(c, "cuda", 0);
    }
    Trainer& gpu = *gpuOwner;
    Trainer cpu(c, "cpu", 0);
    gpu.setTrainData(data);
    cpu.setTrainData(data);
    ProfilingBackend* prof = profilerOf(gpu.backend());
    EXPECT_TRUE(prof != nullptr);
    gpu.trainStep();
    cpu.trainStep();
    prof->resetProfile();
    for (int i = 0; i < 3; ++i) {
      const StepResult rg = gpu.trainStep(), rc = cpu.trainStep();
      prof->endStep();
      // A few steps apart from the CPU: TF32 gradients move Adam's updates of near-zero gradients.
      EXPECT_NEAR(rg.loss, rc.loss, 1e-4, 5e-3);
      EXPECT_NEAR(rg.gradNorm, rc.gradNorm, 1e-4, 3e-2);
      EXPECT_EQ(rg.tokens, rc.tokens);
      for (size_t l = 0; l < rg.layers.size(); ++l)
        EXPECT_NEAR(rg.layers[l].scale, rc.layers[l].scale, 1e-5, 1e-2);
    }
    const OpProfileReport r = prof->report();
    std::printf("     %s: %.1f host syncs per step\n", quantName(q), static_cast<double>(r.hostSyncs) / 3.0);
    EXPECT_TRUE(r.hostSyncs <= 2u * 3u);
    // A step refused on the device (a non-finite loss) changes nothing, as on the CPU.
    const auto scales0 = gpu.scales();
    const double tokens0 = gpu.tokensSeen();
    std::vector<std::vector<int8_t>> codes0, votes0;
    if (q == Quant::Poltergeist)
      for (int l = 0; l < static_cast<int>(gpu.layers().size()); ++l) {
        codes0.push_back(gpu.codes(l));
        votes0.push_back(gpu.votes(l));
      }
    const auto wte = gpu.param("wte"), norm0 = gpu.param("norm_f");
    std::vector<float> bad(wte.size(), std::numeric_limits<float>::infinity());
    gpu.setParam("wte", bad);
    std::string err;
    try {
      gpu.trainStep();
    } catch (const std::exception& e) {
      err = e.what();
    }
    EXPECT_TRUE(err.find("non-finite training loss") != std::string::npos);
    gpu.setParam("wte", wte);
    EXPECT_EQ(gpu.step(), 4);
    EXPECT_EQ(gpu.tokensSeen(), tokens0);
    EXPECT_TRUE(gpu.scales() == scales0);
    EXPECT_TRUE(gpu.param("norm_f") == norm0);
    for (float g : gpu.scaleGrads()) EXPECT_EQ(g, 0.0f);
    if (q == Quant::Poltergeist)
      for (int l = 0; l < static_cast<int>(gpu.layers().size()); ++l) {
        EXPECT_TRUE(gpu.codes(l) == codes0[l]);
        EXPECT_TRUE(gpu.votes(l) == votes0[l]);
      }
    EXPECT_EQ(gpu.trainStep().step, 5);
  }
}

PRIMAL_TEST("cuda/trainer same seed gives bit-identical GPU runs") {
  requireGpu();
  TrainConfig c = tinyConfig(Quant::Poltergeist);
  Trainer a(c, "cuda", 0), b(c, "cuda", 0);
  auto data = textLike(100000, 256);
  a.setTrainData(data);
  b.setTrainData(data);
  for (int s = 0; s < 10; ++s) EXPECT_EQ(a.trainStep().loss, b.trainStep().loss);
  for (int l = 0; l < static_cast<int>(a.layers().size()); ++l) EXPECT_TRUE(a.codes(l) == b.codes(l));
}

PRIMAL_TEST("cuda/trainer memory plan: block recompute is bit-identical; the plan bounds the peak") {
  requireGpu();
  auto data = textLike(100000, 256);
  for (Quant q : {Quant::FP, Quant::Poltergeist}) {
    TrainConfig c = tinyConfig(q);
    c.recompute = Recompute::None;
    TrainConfig cr = c;
    cr.recompute = Recompute::Block;
    Trainer a(c, "cuda", 0), b(cr, "cuda", 0);
    a.setTrainData(data);
    b.setTrainData(data);
    for (int s = 0; s < 5; ++s) EXPECT_EQ(a.trainStep().loss, b.trainStep().loss);
    if (q == Quant::Poltergeist)
      for (int l = 0; l < static_cast<int>(a.layers().size()); ++l) EXPECT_TRUE(a.votes(l) == b.votes(l));
    for (Trainer* t : {&a, &b}) {
      // The trainer's own buffers are predicted exactly; backend scratch is an upper bound.
      auto plan = planMemory(t->config(), t->backend());
      const MemoryPlan& p = plan.candidates[plan.chosen];
      const size_t peak = t->backend().peakBytes();
      std::printf("     %s recompute %s: planned %zu, peak %zu, backend scratch bound %zu\n", quantName(q),
                  recomputeName(t->config().recompute), t->plannedBytes(), peak, p.backendScratch);
      EXPECT_TRUE(peak <= t->plannedBytes());
      EXPECT_TRUE(peak + p.backendScratch >= t->plannedBytes());
    }
  }
  // A budget below the unchunked plan picks a smaller plan that still trains.
  TrainConfig c = tinyConfig(Quant::Poltergeist);
  c.memoryBudget = 1ull << 40;
  auto be = makeCudaBackend(0);
  auto all = planMemory(c, *be);
  c.memoryBudget = all.candidates[2].totalBytes;
  Trainer t(c, "cuda", 0);
  EXPECT_TRUE(t.plannedBytes() <= c.memoryBudget);
  t.setTrainData(data);
  EXPECT_TRUE(std::isfinite(t.trainStep().loss));
  EXPECT_TRUE(t.backend().peakBytes() <= c.memoryBudget);
}

PRIMAL_TEST("cuda/bf16 trainer one step: loss within 2e-2 of the CPU (PRIMAL_GEMM=bf16)") {
  requireGpu();
  for (Quant q : {Quant::Poltergeist, Quant::FP}) {
    TrainConfig c = tinyConfig(q);
    Trainer cpu(c, "cpu", 0);
    std::unique_ptr<Trainer> gpu;
    {
      primal_test::EnvScope e("PRIMAL_GEMM", "bf16");
      gpu = std::make_unique<Trainer>(c, "cuda", 0);
    }
    auto data = textLike(100000, 256);
    cpu.setTrainData(data);
    gpu->setTrainData(data);
    const float lc = cpu.accumulate(), lg = gpu->accumulate();
    std::printf("     %s on %s: loss cpu %.6f gpu %.6f\n", quantName(q), gpu->deviceName().c_str(), lc, lg);
    EXPECT_TRUE(std::isfinite(lg));
    EXPECT_NEAR(lg, lc, 0.0, 2e-2);
  }
}

PRIMAL_TEST("cuda/trainer out of memory becomes an exception and the process survives") {
  requireGpu();
  TrainConfig c = tinyConfig(Quant::Poltergeist);
  c.model.seq = 4096;
  c.batch = 4096;  // activations far beyond any GPU
  bool threw = false;
  try {
    Trainer t(c, "cuda", 0);
  } catch (const std::exception& e) {
    threw = true;
    std::printf("     %s\n", e.what());
  }
  EXPECT_TRUE(threw);
  TrainConfig ok = tinyConfig(Quant::Poltergeist);
  Trainer t(ok, "cuda", 0);  // still usable afterwards
  t.setTrainData(textLike(10000, 256));
  EXPECT_TRUE(std::isfinite(t.trainStep().loss));
}
#endif
