// The Poltergeist rule (docs/poltergeist.md), in one place. Every function here is PRIMAL_HD: the CPU
// backend (src/cpu/cpu_quant.cpp), the CUDA kernels (src/cuda/kernels_quant.cu) and the trainer
// (src/core/trainer.cpp: initial codes, bridge off) call these same lines, so the two backends
// cannot drift apart. The backends only add the loops, the parallel split and the statistics.
//
// State of one BitLinear layer with n weights:
//   code[i]  int8 in {-2, -1, 0, +1, +2}   the weight's rung on the ladder
//   vote[i]  int8 in [-127, +127]         gradient-sign votes gathered since the code last moved
//   s        float                       the learnable Ghost Scale (trained by Adam elsewhere)
//   gamma0   float                       mean|W0| of the initial fp weights
//
// Levels (the "LUT"): level(c) = sign(c) * (|c| == 2 ? 1 : bridge), so the ladder is
//   -1  -bridge  0  +bridge  +1      for codes -2 -1 0 +1 +2,
// and the effective weight is W[i] = (gamma0 * s) * level(code[i]).
//
// Bridge: a knob in (0, 1), or off. With the bridge on, a move is one rung of
// -2 <-> -1 <-> 0 <-> +1 <-> +2. With the bridge off the ladder is -2 <-> 0 <-> +2: turning it off
// resolves every +-1 code to +-2 when the last bridge value was >= 0.5, else to 0
// (resolveBridgeOff); a stray +-1 that is still there (set by hand through setCodes) moves to the
// nearest ladder level in the vote's direction (+1 up -> +2, +1 down -> 0, -1 up -> 0,
// -1 down -> -2).
//
// Backward (each micro-batch), per weight with gradient G = dL/dW (votes only, codes stay):
//   delta = clamp(delta - sign(G), -127, 127)  where |G| > deadzone * rms(G), rms over all n
//   weights (deadzone 0: every non-zero G votes; a NaN G never votes), and
//   dL/ds += gamma0 * sum_i G[i] * level(code[i]) (the sum in double).
// `delta` is the step's vote change: it starts at 0 with the step, and the step's votes are
//   vote = mergeVote(vote at step start, delta) = clamp(start + delta, -127, 127)
// (one clamp, at the end of the step, before the flip). With K <= 127 micro-batches the change
// never saturates, so a step's votes are clamp(start + sum of the K signs) whatever the order of
// the micro-batches; that is what lets R data-parallel ranks sum their changes (an all-reduce
// of deltas, exact in int8 while R*K <= 127) and land on the votes of one rank that ran all R*K
// micro-batches (docs/distributed.md). A clamp after every micro-batch would not: saturating
// adds are not associative (126 +1 +1 -1 = 126, 126 + (1+1-1) = 127).
//
// Optimizer step (after the Ghost Scale update), per weight i of layer l at 0-based step t:
//   p  = min(pMax, flipRate * s * |vote| / K), evaluated in double exactly as
//        ((double)flipRate * (double)s) * |vote| / K; K = the micro-batches (chunks, under a
//        memory plan) that voted since the last step, s = the Ghost Scale after this step's update;
//   r  = Philox4x32-10(counter (i, l, t, 0), key (seed lo, seed hi)) (stream 0 of philox.h is
//        reserved for this); u = u24(r0), u2 = u24(r1);
//   if vote != 0 and u < p and the next rung toward sign(vote) exists:
//        code = that rung, vote = 0                         (a flip);
//   otherwise every non-zero vote decays by stochastic rounding:
//        vote = sign(vote) * floor(|vote| * voteKeep + u2)   in double, clamped to [0, 127].
//   A code at +-2 pushed outward does not move: no flip, its vote decays like any other.
//
// The Ghost Scale s of each layer has its own AdamW without weight decay (ghostScaleAdamW), from
// the step's dL/ds, clamped to stay >= scaleMin; the flip step reads s after that update.
//
// Initialisation: code = the nearest level of W0 / gamma0 with midpoint thresholds
// (|x| < bridge/2 -> 0, < (1 + bridge)/2 -> +-1, else +-2; bridge off: |x| < 1/2 -> 0 else +-2).
//
// Determinism: all of this is plain IEEE arithmetic in a fixed order, so CPU and CUDA give the
// same codes, votes and p from the same inputs (the gradients themselves differ between the
// backends by GEMM rounding). Device code uses explicitly rounded double operations (__dmul_rn,
// ...) so FMA contraction cannot change a result; host code is built with -ffp-contract=off
// (native/CMakeLists.txt). Tests: native/test/test_cpu_ops.cpp (cpu/polt*), test_cuda_parity.cpp
// (CPU vs CUDA, bit for bit) and test/engine/poltergeist.test.ts (an independent JS reference).
#pragma once
#include <cmath>
#include <cstdint>

#include "primal/philox.h"

namespace primal {
namespace polt {

constexpr int kCodeMax = 2;    // codes lie in [-kCodeMax, kCodeMax]
constexpr int kVoteMax = 127;  // votes saturate at +-kVoteMax

// Exactly rounded double operations on both sides (no FMA contraction on the device).
PRIMAL_HD double mulRn(double a, double b) {
#if defined(__CUDA_ARCH__)
  return __dmul_rn(a, b);
#else
  return a * b;
#endif
}
PRIMAL_HD double addRn(double a, double b) {
#if defined(__CUDA_ARCH__)
  return __dadd_rn(a, b);
#else
  return a + b;
#endif
}
PRIMAL_HD double divRn(double a, double b) {
#if defined(__CUDA_ARCH__)
  return __ddiv_rn(a, b);
#else
  return a / b;
#endif
}
PRIMAL_HD double subRn(double a, double b) {
#if defined(__CUDA_ARCH__)
  return __dsub_rn(a, b);
#else
  return a - b;
#endif
}
PRIMAL_HD double sqrtRn(double a) {
#if defined(__CUDA_ARCH__)
  return __dsqrt_rn(a);
#else
  return sqrt(a);
#endif
}
PRIMAL_HD float fmulRn(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fmul_rn(a, b);
#else
  return a * b;
#endif
}
PRIMAL_HD float faddRn(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fadd_rn(a, b);
#else
  return a + b;
#endif
}
PRIMAL_HD float fsubRn(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fsub_rn(a, b);
#else
  return a - b;
#endif
}

// ---- levels ------------------------------------------------------------------------------------

// level(c) = sign(c) * (|c| == 2 ? 1 : bridge). Any other non-zero int8 (not a valid code) reads as
// +-bridge, so a corrupt code can never produce a weight larger than the scale.
PRIMAL_HD float level(int c, float bridge) {
  if (c == 0) return 0.0f;
  const float mag = (c == 2 || c == -2) ? 1.0f : bridge;
  return c > 0 ? mag : -mag;
}

// ---- backward: votes ---------------------------------------------------------------------------

// The vote threshold deadzone * rms(G), rms over all n weights of the layer; sumSquares = sum G^2.
// deadzone 0 gives 0: exactly the non-zero gradients vote.
PRIMAL_HD double voteThreshold(float deadzone, double sumSquares, double n) {
  return static_cast<double>(deadzone) * sqrt(sumSquares / n);
}

// One weight's vote after a backward pass with gradient g: a step against the sign of g when
// |g| > threshold, saturating at +-kVoteMax. A NaN gradient does not vote.
PRIMAL_HD int castVote(int vote, float g, double threshold) {
  if (static_cast<double>(fabsf(g)) > threshold) {
    const int moved = vote - (g > 0.0f ? 1 : -1);
    const int atLeast = moved < -kVoteMax ? -kVoteMax : moved;
    vote = atLeast > kVoteMax ? kVoteMax : atLeast;
  }
  return vote;
}

// The step's votes from the votes at its start and its summed change (any width: the sum of R
// ranks' changes may exceed int8). Saturates at +-kVoteMax.
PRIMAL_HD int mergeVote(int start, int delta) {
  const int v = start + delta;
  return v < -kVoteMax ? -kVoteMax : (v > kVoteMax ? kVoteMax : v);
}

// ---- optimizer step: flips -------------------------------------------------------------------

// The per-layer constants of one flip step, widened to double once (see flipRuleFor).
struct FlipRule {
  double rate;   // (double)flipRate * (double)s
  double accum;  // (double)K
  double pMax;   // (double)pMax
  double keep;   // (double)voteKeep
  bool bridgeOn;
};

PRIMAL_HD FlipRule flipRuleFor(float flipRate, float scale, int accum, float pMax, float voteKeep,
                               bool bridgeOn) {
  FlipRule r;
  r.rate = mulRn(static_cast<double>(flipRate), static_cast<double>(scale));
  r.accum = static_cast<double>(accum);
  r.pMax = static_cast<double>(pMax);
  r.keep = static_cast<double>(voteKeep);
  r.bridgeOn = bridgeOn;
  return r;
}

// p = min(pMax, rate * |vote| / K), in double, in exactly this order.
PRIMAL_HD double flipProbability(int absVote, const FlipRule& r) {
  const double p = divRn(mulRn(r.rate, static_cast<double>(absVote)), r.accum);
  return p < r.pMax ? p : r.pMax;
}

// The next rung from code c toward dir (+1 or -1). Returns false when there is none: c already at
// the end of the ladder in that direction, or c not a valid code.
//   bridge on:  c + dir                  on -2 -1 0 +1 +2
//   bridge off: -2 <-> 0 <-> +2, and a stray +-1 moves to the nearest of {-2, 0, +2} toward dir.
PRIMAL_HD bool nextRung(int c, int dir, bool bridgeOn, int* target) {
  if (c < -kCodeMax || c > kCodeMax) return false;
  const int stride = (bridgeOn || c == 1 || c == -1) ? 1 : 2;
  const int t = c + dir * stride;
  if (t < -kCodeMax || t > kCodeMax) return false;
  *target = t;
  return true;
}

// The vote that did not flip, after decay: sign(vote) * floor(|vote| * keep + u2), clamped to
// [0, kVoteMax] in magnitude. The value is non-negative after the clamp, so truncation is floor
// (and needs no libm call on the host).
PRIMAL_HD int decayVote(int vote, double keep, float u2) {
  const int av = vote < 0 ? -vote : vote;
  double kept = addRn(mulRn(static_cast<double>(av), keep), static_cast<double>(u2));
  kept = kept < 0.0 ? 0.0 : kept;
  kept = kept > static_cast<double>(kVoteMax) ? static_cast<double>(kVoteMax) : kept;
  const int m = static_cast<int>(kept);
  return vote < 0 ? -m : m;
}

// The random words of weight i of layer `layer` at step `step`: counter (i, layer, step, 0) of the
// flip stream, key (seed lo, seed hi). u = philox_u24(v[0]) decides the flip, u2 = philox_u24(v[1])
// rounds the decay.
PRIMAL_HD Philox4 flipRandom(uint32_t i, uint32_t layer, uint32_t step, uint32_t seedLo, uint32_t seedHi) {
  return philox4x32_10(i, layer, step, kStreamFlip, seedLo, seedHi);
}

struct FlipOutcome {
  int code;
  int vote;
  bool flipped;
};

// One weight's flip step, given its p (flipProbability) and its two uniforms u, u2. A zero vote can
// neither flip nor decay.
PRIMAL_HD FlipOutcome flipWeight(int code, int vote, double p, float u, float u2, const FlipRule& r) {
  FlipOutcome o{code, vote, false};
  if (vote == 0) return o;
  const int dir = vote > 0 ? 1 : -1;
  int target;
  if (static_cast<double>(u) < p && nextRung(code, dir, r.bridgeOn, &target)) {
    o.code = target;
    o.vote = 0;
    o.flipped = true;
  } else {
    o.vote = decayVote(vote, r.keep, u2);
  }
  return o;
}

// ---- optimizer step: the Ghost Scale's own AdamW ------------------------------------------

// The constants of one step of the Ghost Scales' AdamW (no weight decay): lr is the scale
// learning rate after the schedule; bc1 = 1 - beta1^t and bc2 = 1 - beta2^t (t the 1-based step)
// are computed once, on the host, in double.
struct GhostScaleRule {
  float beta1, beta2, eps, lr, scaleMin;
  double bc1, bc2;
};

// One Ghost Scale's step from its accumulated gradient ds, in exactly this arithmetic:
//   g = (float)ds;  m = beta1 m + (1 - beta1) g;  v = beta2 v + ((1 - beta2) g) g   (float)
//   upd = (m / bc1) / (sqrt(v / bc2) + eps)                                      (double)
//   s = max(scaleMin, (float)(s - lr * upd))         (a NaN s lands on scaleMin)
PRIMAL_HD void ghostScaleAdamW(float& s, float& m, float& v, double ds, const GhostScaleRule& r) {
  const float g = static_cast<float>(ds);
  m = faddRn(fmulRn(r.beta1, m), fmulRn(fsubRn(1.0f, r.beta1), g));
  v = faddRn(fmulRn(r.beta2, v), fmulRn(fmulRn(fsubRn(1.0f, r.beta2), g), g));
  const double upd = divRn(divRn(static_cast<double>(m), r.bc1),
                           addRn(sqrtRn(divRn(static_cast<double>(v), r.bc2)), static_cast<double>(r.eps)));
  const float next = static_cast<float>(subRn(static_cast<double>(s), mulRn(static_cast<double>(r.lr), upd)));
  s = next > r.scaleMin ? next : r.scaleMin;
}

// ---- initialisation and the bridge knob ------------------------------------------------------

// The code whose level is nearest to x = W0 / gamma0 (midpoint thresholds; see the top).
PRIMAL_HD int8_t nearestCode(float x, float bridge, bool bridgeOn) {
  const float a = x < 0.0f ? -x : x;
  int mag;
  if (bridgeOn) mag = a < 0.5f * bridge ? 0 : (a < 0.5f * (1.0f + bridge) ? 1 : 2);
  else mag = a < 0.5f ? 0 : 2;
  return static_cast<int8_t>(x < 0.0f ? -mag : mag);
}

// A code after the bridge is turned off: +-1 becomes +-2 when the last bridge value was >= 0.5,
// else 0; every other code stays.
PRIMAL_HD int8_t resolveBridgeOff(int8_t c, float lastBridge) {
  if (c != 1 && c != -1) return c;
  const int8_t mag = lastBridge >= 0.5f ? 2 : 0;
  return static_cast<int8_t>(c > 0 ? mag : -mag);
}

}  // namespace polt
}  // namespace primal
