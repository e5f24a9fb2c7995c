// Memory planning and the execution plans it picks: the prediction equals what the trainer
// allocates, block recompute changes nothing but memory, chunked micro-batches keep the data and
// the fp gradient, and a budget picks the first plan that fits (or fails clearly).
#include <cmath>
#include <string>
#include <utility>
#include <vector>

#include "core/model.h"
#include "primal/error.h"
#include "primal/philox.h"
#include "primal/trainer.h"
#include "testing.h"

using namespace primal;

namespace {

TrainConfig planConfig(Quant q) {
  TrainConfig c;
  c.model.vocab = 40;
  c.model.dModel = 16;
  c.model.layers = 3;
  c.model.heads = 2;
  c.model.ffn = 40;
  c.model.seq = 8;
  c.batch = 4;
  c.quant = q;
  c.actBits = q == Quant::FP ? 0 : 8;
  c.seed = 11;
  return c;
}

std::vector<int32_t> pattern(size_t n, int vocab) {
  std::vector<int32_t> t(n);
  for (size_t i = 0; i < n; ++i) t[i] = static_cast<int32_t>((i * 5 + (i / 7)) % vocab);
  return t;
}

const MemoryPlan& chosenPlan(const MemoryPlanning& p) {
  if (p.chosen < 0) throw primal_test::Failure{"no plan chosen"};
  return p.candidates[p.chosen];
}

}  // namespace

PRIMAL_TEST("memory/the plan predicts exactly the bytes the trainer allocates") {
  int checked = 0;
  for (Quant q : {Quant::FP, Quant::STE, Quant::Poltergeist})
    for (int micro : {1, 2, 4})
      for (Recompute rc : {Recompute::None, Recompute::Block}) {
        TrainConfig c = planConfig(q);
        c.microBatch = micro;
        c.recompute = rc;
        Trainer t(c, "cpu", 1);
        EXPECT_EQ(t.config().microBatch, micro);
        EXPECT_TRUE(t.config().recompute == rc);
        EXPECT_EQ(t.backend().bytesInUse(), t.plannedBytes());
        t.setTrainData(pattern(2000, c.model.vocab));
        t.trainStep();
        t.trainStep();
        EXPECT_EQ(t.backend().peakBytes(), t.plannedBytes());
        // The categories of the prediction agree with the trainer's own report.
        auto plan = planMemory(c, t.backend());
        const MemoryReport& e = chosenPlan(plan).estimate;
        MemoryReport m = t.memory();
        EXPECT_EQ(e.params, m.params);
        EXPECT_EQ(e.optimizer, m.optimizer);
        EXPECT_EQ(e.grads, m.grads);
        EXPECT_EQ(e.ternaryState, m.ternaryState);
        EXPECT_EQ(e.activations, m.activations);
        EXPECT_EQ(e.scratch, m.scratch);
        ++checked;
      }
  EXPECT_EQ(checked, 18);
}

PRIMAL_TEST("memory/block recompute is bit-identical and keeps one block of activations") {
  for (Quant q : {Quant::FP, Quant::STE, Quant::Poltergeist}) {
    TrainConfig c = planConfig(q);
    c.accum = 2;
    c.recompute = Recompute::None;
    TrainConfig cr = c;
    cr.recompute = Recompute::Block;
    Trainer a(c, "cpu", 2), b(cr, "cpu", 2);
    a.setTrainData(pattern(3000, c.model.vocab));
    b.setTrainData(pattern(3000, c.model.vocab));
    for (int s = 0; s < 6; ++s) {
      StepResult ra = a.trainStep(), rb = b.trainStep();
      EXPECT_EQ(ra.loss, rb.loss);
      EXPECT_EQ(ra.gradNorm, rb.gradNorm);
      for (size_t l = 0; l < ra.layers.size(); ++l) EXPECT_EQ(ra.layers[l].scale, rb.layers[l].scale);
    }
    for (const std::string& n : a.paramNames()) EXPECT_TRUE(a.param(n) == b.param(n));
    if (q == Quant::Poltergeist)
      for (int l = 0; l < static_cast<int>(a.layers().size()); ++l) {
        EXPECT_TRUE(a.codes(l) == b.codes(l));
        EXPECT_TRUE(a.votes(l) == b.votes(l));
      }
    // Evaluation runs through the same shared buffers.
    auto ev = pattern(300, c.model.vocab);
    auto ea = a.evaluate(ev.data(), ev.size(), 0), eb = b.evaluate(ev.data(), ev.size(), 0);
    EXPECT_EQ(ea.lossSum, eb.lossSum);
    const size_t L = static_cast<size_t>(c.model.layers);
    EXPECT_TRUE(b.memory().activations < a.memory().activations);
    // L block sets + residual streams vs 1 set + the same streams.
    const size_t perSet = (a.memory().activations - b.memory().activations) / (L - 1);
    EXPECT_EQ(a.memory().activations - b.memory().activations, perSet * (L - 1));
  }
}

PRIMAL_TEST("memory/chunked micro-batches see the same windows and give the same fp update") {
  for (Quant q : {Quant::FP, Quant::STE}) {
    TrainConfig c = planConfig(q);
    c.accum = 2;
    c.microBatch = 4;
    Trainer whole(c, "cpu", 1);
    TrainConfig c2 = c;
    c2.microBatch = 1;
    Trainer chunked(c2, "cpu", 1);
    EXPECT_EQ(whole.chunksPerStep(), 2);
    EXPECT_EQ(chunked.chunksPerStep(), 8);
    auto data = pattern(4000, c.model.vocab);
    whole.setTrainData(data);
    chunked.setTrainData(data);
    for (int s = 0; s < 4; ++s) {
      StepResult a = whole.trainStep(), b = chunked.trainStep();
      // Same windows: the mean loss agrees to float rounding of the averaging order.
      EXPECT_NEAR(b.loss, a.loss, 1e-6, 1e-5);
      EXPECT_NEAR(b.gradNorm, a.gradNorm, 1e-7, 1e-4);
      EXPECT_NEAR(b.tokens, a.tokens, 0, 0);
    }
    for (const std::string& n : whole.paramNames()) {
      auto wa = whole.param(n), wb = chunked.param(n);
      for (size_t i = 0; i < wa.size(); ++i) EXPECT_NEAR(wb[i], wa[i], 1e-6, 1e-4);
    }
  }
  // Poltergeist: the same windows and the same dL/ds; votes are cast per chunk (up to 8 here).
  TrainConfig c = planConfig(Quant::Poltergeist);
  c.microBatch = 4;
  TrainConfig c2 = c;
  c2.microBatch = 1;
  Trainer whole(c, "cpu", 1), chunked(c2, "cpu", 1);
  auto data = pattern(4000, c.model.vocab);
  whole.setTrainData(data);
  chunked.setTrainData(data);
  double la = whole.accumulate(), lb = 0;
  for (int i = 0; i < 4; ++i) lb += chunked.accumulate() / 4.0;
  EXPECT_NEAR(lb, la, 1e-6, 1e-5);
  auto ga = whole.scaleGrads(), gb = chunked.scaleGrads();
  for (size_t l = 0; l < ga.size(); ++l) EXPECT_NEAR(gb[l], ga[l], 1e-6, 1e-3);
  int maxVote = 0;
  for (int l = 0; l < static_cast<int>(chunked.layers().size()); ++l)
    for (int8_t v : chunked.votes(l)) maxVote = std::max(maxVote, std::abs(static_cast<int>(v)));
  EXPECT_EQ(maxVote, 4);
}

PRIMAL_TEST("memory/a budget picks the first plan that fits, in the documented order") {
  TrainConfig c = planConfig(Quant::Poltergeist);
  auto be = makeCpuBackend(1);
  // Without a budget: the full batch, no recompute, and a single candidate.
  MemoryPlanning free = planMemory(c, *be);
  EXPECT_EQ(free.candidates.size(), static_cast<size_t>(1));
  EXPECT_EQ(chosenPlan(free).microBatch, 4);
  EXPECT_TRUE(chosenPlan(free).recompute == Recompute::None);
  // With a budget: (4,none) (4,block) (2,none) (2,block) (1,none) (1,block).
  c.memoryBudget = 1ull << 40;
  MemoryPlanning all = planMemory(c, *be);
  EXPECT_EQ(all.candidates.size(), static_cast<size_t>(6));
  const int wantMicro[6] = {4, 4, 2, 2, 1, 1};
  for (int i = 0; i < 6; ++i) {
    EXPECT_EQ(all.candidates[i].microBatch, wantMicro[i]);
    EXPECT_TRUE(all.candidates[i].recompute == (i % 2 ? Recompute::Block : Recompute::None));
  }
  EXPECT_EQ(all.chosen, 0);
  // Each budget just at a candidate's size picks the first candidate at or below it.
  for (size_t i = 0; i < all.candidates.size(); ++i) {
    c.memoryBudget = all.candidates[i].totalBytes;
    MemoryPlanning p = planMemory(c, *be);
    int want = -1;
    for (size_t j = 0; j < all.candidates.size() && want < 0; ++j)
      if (all.candidates[j].totalBytes <= c.memoryBudget) want = static_cast<int>(j);
    EXPECT_EQ(p.chosen, want);
    Trainer t(c, "cpu", 1);
    EXPECT_EQ(t.config().microBatch, all.candidates[want].microBatch);
    EXPECT_TRUE(t.config().recompute == all.candidates[want].recompute);
    EXPECT_TRUE(t.backend().peakBytes() <= c.memoryBudget);
  }
  // A fixed recompute mode or micro-batch is honoured; only the other is searched.
  c.memoryBudget = 1ull << 40;
  c.recompute = Recompute::Block;
  MemoryPlanning fixedRc = planMemory(c, *be);
  for (auto& p : fixedRc.candidates) EXPECT_TRUE(p.recompute == Recompute::Block);
  EXPECT_EQ(fixedRc.candidates.size(), static_cast<size_t>(3));
  // Too small: a clear error naming the leanest plan; nothing is allocated.
  c.recompute = Recompute::Auto;
  c.memoryBudget = 4096;
  bool threw = false;
  try {
    Trainer t(c, "cpu", 1);
  } catch (const Error& e) {
    threw = true;
    const std::string msg = e.what();
    EXPECT_TRUE(msg.find("memoryBudget") != std::string::npos);
    EXPECT_TRUE(msg.find("microBatch 1, recompute block") != std::string::npos);
  }
  EXPECT_TRUE(threw);
}

PRIMAL_TEST("memory/ghost-0.1b at seq 1024: batch 16 fits 10 GiB as is, batch 32 with block recompute") {
  TrainConfig c;
  c.model.vocab = 50257;
  c.model.dModel = 768;
  c.model.layers = 12;
  c.model.heads = 12;
  c.model.ffn = 2048;
  c.model.seq = 1024;
  c.quant = Quant::Poltergeist;
  c.memoryBudget = 10ull << 30;
  auto be = makeCpuBackend(1);  // no backend scratch on the CPU; the CUDA planner adds its own
  c.batch = 16;
  MemoryPlanning p16 = planMemory(c, *be);
  EXPECT_EQ(p16.chosen, 0);
  // Room for the CUDA backend's workspaces (about 1 GiB on an 80 GB GPU).
  EXPECT_TRUE(p16.candidates[0].totalBytes < (9ull << 30));
  c.batch = 32;
  MemoryPlanning p = planMemory(c, *be);
  const MemoryPlan& none32 = p.candidates[0];
  const MemoryPlan& block32 = p.candidates[1];
  EXPECT_TRUE(!none32.fits);
  EXPECT_EQ(p.chosen, 1);
  EXPECT_TRUE(block32.recompute == Recompute::Block);
  EXPECT_EQ(block32.microBatch, 32);
  EXPECT_TRUE(block32.totalBytes < (6ull << 30));
  // Poltergeist state: 2 bytes per ternary weight.
  EXPECT_EQ(block32.estimate.ternaryState - 7 * 12 * 16, 2 * block32.estimate.ternaryWeights);
}

PRIMAL_TEST("memory/a device buffer frees itself and moves its ownership") {
  auto be = makeBackend("cpu", 1);
  const size_t base = be->bytesInUse();
  {
    DBuf<float> a(*be, 100);
    EXPECT_EQ(be->bytesInUse(), base + 400);
    DBuf<float> b = std::move(a);
    EXPECT_TRUE(a.data() == nullptr);
    EXPECT_EQ(a.bytes(), static_cast<size_t>(0));
    EXPECT_EQ(b.bytes(), static_cast<size_t>(400));
    EXPECT_EQ(be->bytesInUse(), base + 400);
    b = DBuf<float>(*be, 10);  // the old 100 floats are freed
    EXPECT_EQ(be->bytesInUse(), base + 40);
    std::vector<DBuf<int8_t>> many;
    for (int i = 0; i < 5; ++i) many.emplace_back(*be, 3);
    EXPECT_EQ(be->bytesInUse(), base + 55);
  }
  EXPECT_EQ(be->bytesInUse(), base);
}

PRIMAL_TEST("memory/the model's own report equals the planned one, buffer table and weights alike") {
  for (Quant q : {Quant::FP, Quant::STE, Quant::Poltergeist})
    for (Recompute rc : {Recompute::None, Recompute::Block}) {
      TrainConfig c = planConfig(q);
      c.microBatch = 2;
      c.recompute = rc;
      auto be = makeBackend("cpu", 1);
      size_t planned = 0;
      const MemoryReport want = Model::plannedMemory(c, &planned);
      const size_t before = be->bytesInUse();
      {
        Model m(*be, c);
        EXPECT_EQ(be->bytesInUse() - before, planned);
        const MemoryReport got = m.memory();
        EXPECT_EQ(got.params, want.params);
        EXPECT_EQ(got.grads, want.grads);
        EXPECT_EQ(got.optimizer, want.optimizer);
        EXPECT_EQ(got.ternaryState, want.ternaryState);
        EXPECT_EQ(got.ternaryWeights, want.ternaryWeights);
        EXPECT_EQ(got.activations, want.activations);
        EXPECT_EQ(got.scratch, want.scratch);
      }
      EXPECT_EQ(be->bytesInUse(), before);  // everything freed with the model
    }
}
