// CpuBackend quantizers: BitNet STE and the Poltergeist materialize / vote / flip steps. The rule
// itself (levels, votes, p, rungs, decay, Philox counters) is primal/poltergeist.h, shared with the
// CUDA kernels; this file adds the loops, the thread split and the statistics.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>

#include "cpu_backend.h"
#include "cpu_math.h"
#include "primal/error.h"
#include "primal/philox.h"
#include "primal/poltergeist.h"

namespace primal {
namespace cpu {

namespace {

constexpr size_t kElemGrain = 1 << 14;
constexpr int kFlipBlock = 64;  // weights per batch of Philox calls (divides kReduceChunk)

// scale * level(c) for every int8 code (indexed by uint8_t).
struct CodeLut {
  float v[256];
  explicit CodeLut(float bridge, float scale = 1.0f) {
    for (int b = 0; b < 256; ++b)
      v[b] = scale * polt::level(static_cast<int8_t>(static_cast<uint8_t>(b)), bridge);
  }
  float operator()(int8_t c) const { return v[static_cast<uint8_t>(c)]; }
};

}  // namespace

// ---- STE -----------------------------------------------------------------------------------

void CpuBackend::steQuantize(const float* W, float* Wq, size_t n, double* absSum, bool computeAbs) {
  // Chunk by chunk from W's start, as sumSegments sums a segment (the same bits).
  if (computeAbs) *absSum = chunkedSum(n, [&](size_t b, size_t e) { return absSumRange(W, b, e); });
  const float mean = n ? static_cast<float>(*absSum / static_cast<double>(n)) : 0.0f;
  const float gamma = std::max(mean, 1e-8f);
  pool_.parallelFor(
      n,
      [&](size_t b, size_t e) {
        // Round, clamp (a select) and scale in separate passes so each vectorizes. roundHalfEven is
        // exact rintf below 2^22, and anything larger keeps its sign and clamps to +-1 anyway.
        for (size_t i = b; i < e; ++i) {
          float r = roundHalfEven(W[i] / gamma);
          r = r < -1.0f ? -1.0f : r;
          r = 1.0f < r ? 1.0f : r;
          Wq[i] = r;
        }
        for (size_t i = b; i < e; ++i) Wq[i] = gamma * Wq[i];
      },
      kElemGrain);
}

// ---- Poltergeist ---------------------------------------------------------------------------

void CpuBackend::poltMaterialize(const int8_t* code, float* W, size_t n, const float* gamma0, const float* s,
                                 float bridge) {
  const CodeLut lut(bridge, *gamma0 * *s);
  pool_.parallelFor(
      n,
      [&](size_t b, size_t e) {
        for (size_t i = b; i < e; ++i) W[i] = lut(code[i]);
      },
      kElemGrain);
}

void CpuBackend::poltMergeVotes(int8_t* vote, const int8_t* start, size_t n, const StepHead* head) {
  if (head && head->refused) {
    std::memcpy(vote, start, n);
    return;
  }
  pool_.parallelFor(
      n,
      [&](size_t b, size_t e) {
        for (size_t i = b; i < e; ++i) vote[i] = static_cast<int8_t>(polt::mergeVote(start[i], vote[i]));
      },
      kElemGrain);
}

void CpuBackend::poltVote(const float* G, const int8_t* code, int8_t* vote, size_t n, float bridge,
                          float deadzone, const float* gamma0, double* ds) {
  double thr = 0.0;
  if (deadzone > 0.0f && n > 0) thr = polt::voteThreshold(deadzone, sumSquares(G, n), static_cast<double>(n));
  const CodeLut lut(bridge);
  const double sum = chunkedSum(n, [&](size_t b, size_t e) {
    double s = 0.0;
    for (size_t i = b; i < e; ++i) {
      const float g = G[i];
      s += static_cast<double>(g) * static_cast<double>(lut(code[i]));
      vote[i] = static_cast<int8_t>(polt::castVote(vote[i], g, thr));
    }
    return s;
  });
  *ds += static_cast<double>(*gamma0) * sum;
}

void CpuBackend::ghostScaleStep(float* s, float* m, float* v, const double* ds, int layers,
                                const polt::GhostScaleRule& rule, const StepHead* head) {
  if (head && head->refused) return;
  for (int l = 0; l < layers; ++l) polt::ghostScaleAdamW(s[l], m[l], v[l], ds[l], rule);
}

// A rule with the step's constants (the CPU and CUDA backends build it the same way).
static polt::FlipRule ruleOf(const FlipParams& P, float scale) {
  return polt::flipRuleFor(P.flipRate, scale, P.accum, P.pMax, P.voteKeep, P.bridgeOn);
}

void CpuBackend::poltFlip(int8_t* code, int8_t* vote, size_t n, const FlipParams& P, const float* scale,
                          const StepHead* head, FlipStats* stats, float* pOut) {
  PRIMAL_CHECK(P.accum >= 1, "poltFlip: accum must be >= 1, got " + std::to_string(P.accum));
  if (head && head->refused) return;
  PRIMAL_CHECK(std::isfinite(P.voteKeep) && std::isfinite(P.flipRate) && std::isfinite(*scale),
               "poltFlip: voteKeep, flipRate and scale must be finite");
  const polt::FlipRule rule = ruleOf(P, *scale);

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
            const Philox4 r =
                polt::flipRandom(static_cast<uint32_t>(i0 + l), P.layer, P.step, P.seedLo, P.seedHi);
            rw0[l] = r.v[0];
            rw1[l] = r.v[1];
          }
        }
        for (int l = 0; l < m; ++l) {
          const size_t i = i0 + l;
          const int v = vote[i];
          const int code0 = code[i];
          const int av = v < 0 ? -v : v;
          const double p = polt::flipProbability(av, rule);
          polt::FlipOutcome o{code0, 0, false};
          if (v != 0) {  // zero votes drew no random words (and would not move)
            o = polt::flipWeight(code0, v, p, philox_u24(rw0[l]), philox_u24(rw1[l]), rule);
            if (o.flipped) {
              code[i] = static_cast<int8_t>(o.code);
              ++st.transitions[code0 + 2][o.code + 2];
              if (o.code > code0) ++st.flipsUp;
              else ++st.flipsDown;
            }
            vote[i] = static_cast<int8_t>(o.vote);
          }
          if (pOut) pOut[i] = static_cast<float>(p);
          st.pSum += p;
          st.pMax = std::max(st.pMax, static_cast<float>(p));
          if (o.code >= -2 && o.code <= 2) ++st.occupancy[o.code + 2];
          if (o.vote != 0) ++st.votesNonZero;
          if (o.vote >= polt::kVoteMax || o.vote <= -polt::kVoteMax) ++st.votesSaturated;
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

void CpuBackend::poltProbabilities(const int8_t* vote, float* pOut, size_t n, const FlipParams& P,
                                   const float* scale) {
  PRIMAL_CHECK(P.accum >= 1, "poltProbabilities: accum must be >= 1, got " + std::to_string(P.accum));
  const polt::FlipRule rule = ruleOf(P, *scale);
  pool_.parallelFor(
      n,
      [&](size_t b, size_t e) {
        for (size_t i = b; i < e; ++i) {
          const int v = vote[i];
          pOut[i] = static_cast<float>(polt::flipProbability(v < 0 ? -v : v, rule));
        }
      },
      kElemGrain);
}

}  // namespace cpu
}  // namespace primal
