// Text generation (the salad test): the model's forward pass over the last seq tokens, then one
// token drawn from the logits of the last position. Its own Philox key (the caller's seed, stream
// kStreamSample) keeps it off the training streams.
#include <algorithm>
#include <cmath>
#include <numeric>

#include "model.h"
#include "primal/error.h"
#include "primal/philox.h"
#include "primal/trainer.h"

namespace primal {

namespace {

// The next token from logits lg (V): greedy when temperature <= 0 or topK == 1, else a draw from
// softmax(lg / temperature) over the topK largest (all when topK <= 0), ties by lower id. Draw
// `index` uses Philox counter (index, 0, 0, kStreamSample) under key (k0, k1).
int sampleToken(const std::vector<float>& lg, std::vector<int>& idx, float temperature, int topK,
                uint32_t index, uint32_t k0, uint32_t k1) {
  const int V = static_cast<int>(lg.size());
  if (temperature <= 0 || topK == 1)
    return static_cast<int>(std::max_element(lg.begin(), lg.end()) - lg.begin());
  std::iota(idx.begin(), idx.end(), 0);
  const int k = (topK > 0 && topK < V) ? topK : V;
  std::partial_sort(idx.begin(), idx.begin() + k, idx.end(),
                    [&](int a, int b) { return lg[a] > lg[b] || (lg[a] == lg[b] && a < b); });
  double mx = lg[idx[0]], z = 0;
  std::vector<double> pr(k);
  for (int j = 0; j < k; ++j) {
    pr[j] = std::exp((lg[idx[j]] - mx) / temperature);
    z += pr[j];
  }
  Philox4 r = philox4x32_10(index, 0, 0, kStreamSample, k0, k1);
  double u = philox_u24(r.v[0]) * z, acc = 0;
  for (int j = 0; j < k; ++j) {
    acc += pr[j];
    if (u < acc) return idx[j];
  }
  return idx[k - 1];
}

}  // namespace

std::vector<int32_t> Trainer::generate(const std::vector<int32_t>& prompt, int n, float temperature, int topK,
                                       uint64_t seed) {
  Model& m = *m_;
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
    m.forward(1, T);
    m.logits(static_cast<size_t>(T - 1), lg.data());
    const int next = sampleToken(lg, idx, temperature, topK, static_cast<uint32_t>(out.size()), k0, k1);
    out.push_back(next);
    ctx.push_back(next);
  }
  return out;
}

}  // namespace primal
