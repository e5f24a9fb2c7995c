// CpuBackend quantizers: BitNet STE and the Poltergeist materialize / vote / flip steps
// (DESIGN §4, exact semantics in backend.h). The flip step's arithmetic (p and the vote decay in
// double, Philox counter layout) is written to match the CUDA kernel bit for bit.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>

#include "cpu_backend.h"
#include "cpu_math.h"
#include "primal/error.h"
#include "primal/philox.h"

namespace primal {
namespace cpu {

namespace {

constexpr size_t kElemGrain = 1 << 14;
constexpr int kFlipBlock = 64;  // weights per batch of Philox calls (divides kReduceChunk)

// LUT(c) = sign(c) * (|c| == 2 ? 1 : bridge), for every int8 code (indexed by uint8_t).
struct CodeLut {
  float v[256];
  explicit CodeLut(float bridge, float scale = 1.0f) {
    for (int b = 0; b < 256; ++b) {
      const int c = static_cast<int8_t>(static_cast<uint8_t>(b));
      const float mag = (c == 2 || c == -2) ? 1.0f : bridge;
      const float l = c == 0 ? 0.0f : (c > 0 ? mag : -mag);
      v[b] = scale * l;
    }
  }
  float operator()(int8_t c) const { return v[static_cast<uint8_t>(c)]; }
};

// Next rung from code c toward dir (+1/-1); returns false at the end of the ladder. With the
// bridge off the ladder is -2 <-> 0 <-> +2 and a stray +-1 moves to the nearest of {-2, 0, 2} in
// that direction.
inline bool nextRung(int c, int dir, bool bridgeOn, int* target) {
  if (c < -2 || c > 2) return false;
  int t;
  if (bridgeOn) {
    t = c + dir;
  } else if (dir > 0) {
    t = c < 0 ? 0 : 2;
    if (c == 2) return false;
  } else {
    t = c > 0 ? 0 : -2;
    if (c == -2) return false;
  }
  if (t < -2 || t > 2) return false;
  *target = t;
  return true;
}

// p = min(pMax, flipRate * scale * |vote| / accum) in double, in exactly this order.
inline double flipProbability(int absVote, double rate, double accum, double pMax) {
  const double p = rate * static_cast<double>(absVote) / accum;
  return std::min(pMax, p);
}

}  // namespace

// ---- STE -----------------------------------------------------------------------------------

float CpuBackend::steQuantize(const float* W, float* Wq, size_t n) {
  const double sumAbs = chunkedSum(n, [&](size_t b, size_t e) {
    double acc[4] = {0.0, 0.0, 0.0, 0.0};
    size_t i = b;
    for (; i + 4 <= e; i += 4)
      for (int l = 0; l < 4; ++l) acc[l] += std::fabs(static_cast<double>(W[i + l]));
    for (; i < e; ++i) acc[0] += std::fabs(static_cast<double>(W[i]));
    return (acc[0] + acc[1]) + (acc[2] + acc[3]);
  });
  const float mean = n ? static_cast<float>(sumAbs / static_cast<double>(n)) : 0.0f;
  const float gamma = std::max(mean, 1e-8f);
  pool_.parallelFor(n, [&](size_t b, size_t e) {
    // Round, clamp (a select) and scale in separate passes so each vectorizes. roundHalfEven is
    // exact rintf below 2^22, and anything larger keeps its sign and clamps to +-1 anyway.
    for (size_t i = b; i < e; ++i) {
      float r = roundHalfEven(W[i] / gamma);
      r = r < -1.0f ? -1.0f : r;
      r = 1.0f < r ? 1.0f : r;
      Wq[i] = r;
    }
    for (size_t i = b; i < e; ++i) Wq[i] = gamma * Wq[i];
  }, kElemGrain);
  return gamma;
}

// ---- Poltergeist ---------------------------------------------------------------------------

void CpuBackend::poltMaterialize(const int8_t* code, float* W, size_t n, float scale,
                                 float bridge) {
  const CodeLut lut(bridge, scale);
  pool_.parallelFor(n, [&](size_t b, size_t e) {
    for (size_t i = b; i < e; ++i) W[i] = lut(code[i]);
  }, kElemGrain);
}

double CpuBackend::poltVote(const float* G, const int8_t* code, int8_t* vote, size_t n,
                            float bridge, float deadzone) {
  double thr = 0.0;
  if (deadzone > 0.0f && n > 0) {
    const double rms = std::sqrt(sumSquares(G, n) / static_cast<double>(n));
    thr = static_cast<double>(deadzone) * rms;
  }
  const CodeLut lut(bridge);
  return chunkedSum(n, [&](size_t b, size_t e) {
    double s = 0.0;
    for (size_t i = b; i < e; ++i) {
      const float g = G[i];
      s += static_cast<double>(g) * static_cast<double>(lut(code[i]));
      if (static_cast<double>(std::fabs(g)) > thr) {
        const int sg = g > 0.0f ? 1 : -1;
        const int nv = static_cast<int>(vote[i]) - sg;
        vote[i] = static_cast<int8_t>(std::min(127, std::max(-127, nv)));
      }
    }
    return s;
  });
}

void CpuBackend::poltFlip(int8_t* code, int8_t* vote, size_t n, const FlipParams& P,
                          FlipStats* stats, float* pOut) {
  PRIMAL_CHECK(P.accum >= 1, "poltFlip: accum must be >= 1, got " + std::to_string(P.accum));
  const double rate = static_cast<double>(P.flipRate) * static_cast<double>(P.scale);
  const double accum = static_cast<double>(P.accum);
  const double pMax = static_cast<double>(P.pMax);
  const double keep = static_cast<double>(P.voteKeep);
  PRIMAL_CHECK(std::isfinite(P.voteKeep) && std::isfinite(P.flipRate) && std::isfinite(P.scale),
               "poltFlip: voteKeep, flipRate and scale must be finite");

  const size_t chunks = (n + kReduceChunk - 1) / kReduceChunk;
  if (flipPartials_.size() < chunks) flipPartials_.resize(chunks);
  FlipStats* parts = flipPartials_.data();

  pool_.parallelFor(chunks, [&](size_t c0, size_t c1) {
    for (size_t c = c0; c < c1; ++c) {
      FlipStats st;
      std::memset(&st, 0, sizeof(st));
      const size_t b = c * kReduceChunk;
      const size_t e = std::min(n, b + kReduceChunk);
      for (size_t i0 = b; i0 < e; i0 += kFlipBlock) {
        const int m = static_cast<int>(std::min<size_t>(kFlipBlock, e - i0));
        // Random words for the whole block first: this loop has no branches, so gcc vectorizes
        // the Philox rounds across weights. Blocks of zero votes need none.
        bool anyVote = false;
        for (int l = 0; l < m; ++l) anyVote |= vote[i0 + l] != 0;
        uint32_t rw0[kFlipBlock], rw1[kFlipBlock];
        if (anyVote) {
          for (int l = 0; l < m; ++l) {
            const Philox4 r = philox4x32_10(static_cast<uint32_t>(i0 + l), P.layer, P.step,
                                            kStreamFlip, P.seedLo, P.seedHi);
            rw0[l] = r.v[0];
            rw1[l] = r.v[1];
          }
        }
        for (int l = 0; l < m; ++l) {
          const size_t i = i0 + l;
          const int v = vote[i];
          const int code0 = code[i];
          int codeNow = code0;
          int voteNow = 0;
          const int av = v < 0 ? -v : v;
          const double p = flipProbability(av, rate, accum, pMax);
          if (v != 0) {  // a zero vote can neither flip nor decay
            const float u = philox_u24(rw0[l]);
            const float u2 = philox_u24(rw1[l]);
            const int dir = v > 0 ? 1 : -1;
            int target;
            if (static_cast<double>(u) < p && nextRung(code0, dir, P.bridgeOn, &target)) {
              codeNow = target;
              code[i] = static_cast<int8_t>(target);
              voteNow = 0;
              ++st.transitions[code0 + 2][target + 2];
              if (target > code0)
                ++st.flipsUp;
              else
                ++st.flipsDown;
            } else {
              // Stochastic-rounding decay of the vote that did not flip:
              // floor(|v| * keep + u2). For the non-negative values that survive the clamp,
              // truncation is floor (and avoids a libm call on baseline x86-64).
              double kept = static_cast<double>(av) * keep + static_cast<double>(u2);
              kept = kept < 0.0 ? 0.0 : kept;
              kept = kept > 127.0 ? 127.0 : kept;
              voteNow = dir * static_cast<int>(kept);
            }
            vote[i] = static_cast<int8_t>(voteNow);
          }
          if (pOut) pOut[i] = static_cast<float>(p);
          st.pSum += p;
          st.pMax = std::max(st.pMax, static_cast<float>(p));
          if (codeNow >= -2 && codeNow <= 2) ++st.occupancy[codeNow + 2];
          if (voteNow != 0) ++st.votesNonZero;
          if (voteNow >= 127 || voteNow <= -127) ++st.votesSaturated;
        }
      }
      parts[c] = st;
    }
  });

  if (!stats) return;
  FlipStats total;
  std::memset(&total, 0, sizeof(total));
  for (size_t c = 0; c < chunks; ++c) {
    const FlipStats& s = parts[c];
    for (int a = 0; a < 5; ++a) {
      for (int bb = 0; bb < 5; ++bb) total.transitions[a][bb] += s.transitions[a][bb];
      total.occupancy[a] += s.occupancy[a];
    }
    total.flipsUp += s.flipsUp;
    total.flipsDown += s.flipsDown;
    total.votesNonZero += s.votesNonZero;
    total.votesSaturated += s.votesSaturated;
    total.pSum += s.pSum;
    total.pMax = std::max(total.pMax, s.pMax);
  }
  *stats = total;
}

void CpuBackend::poltProbabilities(const int8_t* vote, float* pOut, size_t n,
                                   const FlipParams& P) {
  PRIMAL_CHECK(P.accum >= 1, "poltProbabilities: accum must be >= 1, got " + std::to_string(P.accum));
  const double rate = static_cast<double>(P.flipRate) * static_cast<double>(P.scale);
  const double accum = static_cast<double>(P.accum);
  const double pMax = static_cast<double>(P.pMax);
  pool_.parallelFor(n, [&](size_t b, size_t e) {
    for (size_t i = b; i < e; ++i) {
      const int v = vote[i];
      const int av = v < 0 ? -v : v;
      pOut[i] = static_cast<float>(flipProbability(av, rate, accum, pMax));
    }
  }, kElemGrain);
}

}  // namespace cpu
}  // namespace primal
