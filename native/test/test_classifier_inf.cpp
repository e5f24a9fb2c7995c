// The CPU classifier when some logits are -inf (a GEMM that overflowed): they add nothing to the
// softmax, so losses and gradients stay finite; a -inf logit at the target is an infinite loss,
// never NaN. (The CUDA classifier's online softmax turned a -inf into NaN; its parity case, with
// inputs built the same way, is in test_cuda_parity.cpp.)
#include <algorithm>
#include <cmath>
#include <limits>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "primal/backend.h"
#include "testing.h"

namespace {

// x[n][0] = 1e30 and table[v][0] = -1e10 for every v % 8 == 0: those logits are -1e40, which
// overflows to -inf in fp32; column 0 of the other vocabulary rows is 0, so their logits are
// finite (the rest of x and table are small random values).
struct InfLogits {
  int N = 48, C = 16, V = 200;
  std::vector<float> x, table;
  std::vector<int32_t> targets;
  InfLogits() {
    std::mt19937 g(7);
    std::normal_distribution<float> d(0.0f, 0.5f);
    x.resize(static_cast<size_t>(N) * C);
    table.resize(static_cast<size_t>(V) * C);
    for (auto& v : x) v = d(g);
    for (auto& v : table) v = d(g);
    for (int n = 0; n < N; ++n) x[static_cast<size_t>(n) * C] = 1e30f;
    for (int v = 0; v < V; ++v) table[static_cast<size_t>(v) * C] = v % 8 == 0 ? -1e10f : 0.0f;
    targets.resize(N);
    for (int n = 0; n < N; ++n) targets[n] = (n * 37) % V | 1;  // odd: a finite logit
    targets[5] = -1;                                            // unscored
  }
};

}  // namespace

PRIMAL_TEST("cpu/classifier: -inf logits add nothing (finite loss and gradients); a -inf target is +inf") {
  auto be = primal::makeCpuBackend(1);
  InfLogits c;
  const int N = c.N, C = c.C, V = c.V;
  std::vector<float> lg(static_cast<size_t>(N) * V);
  be->logits(c.x.data(), c.table.data(), lg.data(), N, C, V);
  int infs = 0;
  for (int n = 0; n < N; ++n)
    for (int v = 0; v < V; ++v) {
      const float l = lg[static_cast<size_t>(n) * V + v];
      if (v % 8 == 0) {
        EXPECT_TRUE(std::isinf(l) && l < 0);
        ++infs;
      } else {
        EXPECT_TRUE(std::isfinite(l));
      }
    }
  EXPECT_EQ(infs, N * ((V + 7) / 8));

  std::vector<float> losses(N), dx(static_cast<size_t>(N) * C), dtable(static_cast<size_t>(V) * C, 0.0f);
  be->classifier(c.x.data(), c.table.data(), c.targets.data(), losses.data(), dx.data(), dtable.data(), N, C,
                 V, 1.0f / N);
  for (int n = 0; n < N; ++n) {
    if (c.targets[n] < 0) {
      EXPECT_EQ(losses[n], 0.0f);
      continue;
    }
    // Reference in double over the finite logits only.
    const float* row = lg.data() + static_cast<size_t>(n) * V;
    double m = -std::numeric_limits<double>::infinity();
    for (int v = 0; v < V; ++v)
      if (std::isfinite(row[v])) m = std::max(m, static_cast<double>(row[v]));
    double s = 0.0;
    for (int v = 0; v < V; ++v)
      if (std::isfinite(row[v])) s += std::exp(static_cast<double>(row[v]) - m);
    const double want = m + std::log(s) - row[c.targets[n]];
    EXPECT_NEAR(losses[n], want, 1e-5, 1e-5);
  }
  for (float v : dx) EXPECT_TRUE(std::isfinite(v));
  for (float v : dtable) EXPECT_TRUE(std::isfinite(v));

  // The target's own logit is -inf: probability 0, an infinite loss (not NaN).
  std::vector<int32_t> t0(N, 8);
  std::vector<float> l0(N);
  be->classifier(c.x.data(), c.table.data(), t0.data(), l0.data(), nullptr, nullptr, N, C, V, 1.0f);
  for (float l : l0) EXPECT_TRUE(std::isinf(l) && l > 0);
}
