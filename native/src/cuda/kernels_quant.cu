// Quantizer kernels: BitNet STE and Poltergeist (materialize, vote, flip, probabilities).
// The Poltergeist rule itself (levels, votes, p, rungs, decay, Philox counters) is
// primal/poltergeist.h, the same lines the CPU backend runs, so both agree bit for bit; this file
// adds the loops and the statistics.
#include "cuda_kernels.cuh"
#include "primal/philox.h"
#include "primal/poltergeist.h"

namespace primal {
namespace cuda {

namespace {

constexpr int kThreads = 256;

// ---- STE ------------------------------------------------------------------------------------
__device__ __forceinline__ float steGamma(const double* absSum, size_t n) {
  return fmaxf(static_cast<float>(*absSum / static_cast<double>(n)), 1e-8f);
}
__device__ __forceinline__ float steOne(float w, float gamma) {
  return gamma * fminf(fmaxf(rintf(w / gamma), -1.0f), 1.0f);
}

__global__ void steQuantizeKernel(const float* __restrict__ W, float* __restrict__ Wq, size_t n, bool vec,
                                  const double* __restrict__ absSum, float* __restrict__ gammaOut) {
  const float gamma = steGamma(absSum, n);
  if (blockIdx.x == 0 && threadIdx.x == 0) *gammaOut = gamma;
  forEachChunk4(
      n, vec,
      [&](size_t c) {
        const float4 w = reinterpret_cast<const float4*>(W)[c];
        reinterpret_cast<float4*>(Wq)[c] =
            make_float4(steOne(w.x, gamma), steOne(w.y, gamma), steOne(w.z, gamma), steOne(w.w, gamma));
      },
      [&](size_t i) { Wq[i] = steOne(W[i], gamma); });
}

// ---- Poltergeist: materialize ---------------------------------------------------------------
// W = scale * level(code).
__device__ __forceinline__ float materializeOne(int c, float scale, float bridge) {
  return scale * polt::level(c, bridge);
}

__global__ void poltMaterializeKernel(const int8_t* __restrict__ code, float* __restrict__ W, size_t n,
                                      bool vec, const float* __restrict__ gamma0, const float* __restrict__ s,
                                      float bridge) {
  const float scale = __fmul_rn(*gamma0, *s);  // gamma0 * s in float, as on the CPU
  forEachChunk4(
      n, vec,
      [&](size_t c) {
        const char4 q = reinterpret_cast<const char4*>(code)[c];
        reinterpret_cast<float4*>(W)[c] =
            make_float4(materializeOne(q.x, scale, bridge), materializeOne(q.y, scale, bridge),
                        materializeOne(q.z, scale, bridge), materializeOne(q.w, scale, bridge));
      },
      [&](size_t i) { W[i] = materializeOne(code[i], scale, bridge); });
}

// ---- Poltergeist: the step's votes from its change (or the kept ones, refused) -----------------
__global__ void poltMergeVotesKernel(int8_t* __restrict__ vote, const int8_t* __restrict__ start, size_t n,
                                     const StepHead* __restrict__ head) {
  const bool restore = head != nullptr && head->refused != 0;
  for (size_t i = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<size_t>(gridDim.x) * blockDim.x)
    vote[i] = restore ? start[i] : static_cast<int8_t>(polt::mergeVote(start[i], vote[i]));
}

// ---- the Ghost Scales' AdamW, one thread per layer ------------------------------------------
__global__ void ghostScaleStepKernel(float* __restrict__ s, float* __restrict__ m, float* __restrict__ v,
                                     const double* __restrict__ ds, int layers, polt::GhostScaleRule rule,
                                     const StepHead* __restrict__ head) {
  if (head != nullptr && head->refused != 0) return;
  for (int l = blockIdx.x * blockDim.x + threadIdx.x; l < layers; l += gridDim.x * blockDim.x)
    polt::ghostScaleAdamW(s[l], m[l], v[l], ds[l], rule);
}

// ---- Poltergeist: vote ----------------------------------------------------------------------
// Products of a float and a level are exact in double; only the summation order differs from the
// CPU's.
__device__ __forceinline__ double gradTimesLevel(float g, int c, float bridge) {
  return static_cast<double>(g) * static_cast<double>(polt::level(c, bridge));
}

__global__ void __launch_bounds__(kReduceThreads)
    poltVoteKernel(const float* __restrict__ G, const int8_t* __restrict__ code, int8_t* __restrict__ vote,
                   size_t n, bool vec, float bridge, float deadzone, const double* __restrict__ sumSq,
                   double* __restrict__ partials) {
  __shared__ double sh[kReduceThreads / 32];
  // Threshold deadzone * rms(G), rms over all n elements, in double. deadzone == 0 -> 0, so
  // exactly the nonzero gradients vote.
  const double thr = sumSq ? polt::voteThreshold(deadzone, *sumSq, static_cast<double>(n)) : 0.0;
  double acc = 0.0;
  forEachChunk4(
      n, vec,
      [&](size_t c) {
        const float4 g = reinterpret_cast<const float4*>(G)[c];
        const char4 q = reinterpret_cast<const char4*>(code)[c];
        char4 v = reinterpret_cast<const char4*>(vote)[c];
        acc += gradTimesLevel(g.x, q.x, bridge);
        acc += gradTimesLevel(g.y, q.y, bridge);
        acc += gradTimesLevel(g.z, q.z, bridge);
        acc += gradTimesLevel(g.w, q.w, bridge);
        v.x = static_cast<signed char>(polt::castVote(v.x, g.x, thr));
        v.y = static_cast<signed char>(polt::castVote(v.y, g.y, thr));
        v.z = static_cast<signed char>(polt::castVote(v.z, g.z, thr));
        v.w = static_cast<signed char>(polt::castVote(v.w, g.w, thr));
        reinterpret_cast<char4*>(vote)[c] = v;
      },
      [&](size_t i) {
        const float g = G[i];
        acc += gradTimesLevel(g, code[i], bridge);
        vote[i] = static_cast<int8_t>(polt::castVote(vote[i], g, thr));
      });
  const double r = blockSumD(acc, sh);
  if (threadIdx.x == 0) partials[blockIdx.x] = r;
}

// ---- Poltergeist: flip ----------------------------------------------------------------------
struct FlipArgs {
  uint32_t seedLo, seedHi, layer, step;
  polt::FlipRule rule;
};

// The flip constants with s = *scale, read on the device (every thread builds the same rule).
__device__ __forceinline__ FlipArgs flipArgsFor(const FlipParams& p, const float* scale) {
  FlipArgs a;
  a.seedLo = p.seedLo;
  a.seedHi = p.seedHi;
  a.layer = p.layer;
  a.step = p.step;
  a.rule = polt::flipRuleFor(p.flipRate, *scale, p.accum, p.pMax, p.voteKeep, p.bridgeOn);
  return a;
}

__device__ __forceinline__ double flipProb(int absVote, const FlipArgs& a) {
  return polt::flipProbability(absVote, a.rule);
}

// |vote| in 0..128 (int8 allows -128). Counter layout: see cuda_kernels.cuh.
constexpr int kHistBins = kFlipHistBins;
constexpr int kOffHist = kFlipOffHist, kOffTrans = kFlipOffTrans, kOffUp = kFlipOffUp,
              kOffDown = kFlipOffDown, kOffOcc = kFlipOffOcc, kOffNz = kFlipOffNz, kOffSat = kFlipOffSat,
              kNumCounters = kFlipCounters;

struct FlipLocal {
  unsigned up = 0, down = 0, nz = 0, sat = 0, occ[5] = {0, 0, 0, 0, 0};
};

// One weight: returns the new (code, vote); updates the block histograms and the thread's counts.
__device__ __forceinline__ void flipOne(uint32_t i, int& c, int& v, const FlipArgs& a, float* pOut,
                                        unsigned* shHist, unsigned* shTrans, FlipLocal& loc) {
  const int av = v < 0 ? -v : v;
  const double p = flipProb(av, a);
  if (pOut) pOut[i] = static_cast<float>(p);
  atomicAdd(&shHist[av], 1u);
  const Philox4 r = polt::flipRandom(i, a.layer, a.step, a.seedLo, a.seedHi);
  const polt::FlipOutcome o = polt::flipWeight(c, v, p, philox_u24(r.v[0]), philox_u24(r.v[1]), a.rule);
  if (o.flipped) {
    atomicAdd(&shTrans[(c + 2) * 5 + (o.code + 2)], 1u);
    if (o.code > c) ++loc.up;
    else ++loc.down;
  }
  c = o.code;
  v = o.vote;
#pragma unroll
  for (int k = 0; k < 5; ++k) loc.occ[k] += (c == k - 2) ? 1u : 0u;
  loc.nz += v != 0 ? 1u : 0u;
  loc.sat += (v == polt::kVoteMax || v == -polt::kVoteMax) ? 1u : 0u;
}

__device__ __forceinline__ unsigned warpSumU(unsigned v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

__global__ void __launch_bounds__(kThreads)
    poltFlipKernel(int8_t* __restrict__ code, int8_t* __restrict__ vote, size_t n, bool vec,
                   FlipParams params, const float* __restrict__ scale, const StepHead* __restrict__ head,
                   float* __restrict__ pOut, unsigned long long* __restrict__ counters) {
  if (head != nullptr && head->refused != 0) return;
  const FlipArgs a = flipArgsFor(params, scale);
  __shared__ unsigned sh[kNumCounters];
  for (int k = threadIdx.x; k < kNumCounters; k += blockDim.x) sh[k] = 0u;
  __syncthreads();
  FlipLocal loc;
  forEachChunk4(
      n, vec,
      [&](size_t ch) {
        char4 cq = reinterpret_cast<const char4*>(code)[ch];
        char4 vq = reinterpret_cast<const char4*>(vote)[ch];
        int c0 = cq.x, c1 = cq.y, c2 = cq.z, c3 = cq.w;
        int v0 = vq.x, v1 = vq.y, v2 = vq.z, v3 = vq.w;
        const uint32_t i = static_cast<uint32_t>(ch * 4);
        flipOne(i, c0, v0, a, pOut, sh + kOffHist, sh + kOffTrans, loc);
        flipOne(i + 1, c1, v1, a, pOut, sh + kOffHist, sh + kOffTrans, loc);
        flipOne(i + 2, c2, v2, a, pOut, sh + kOffHist, sh + kOffTrans, loc);
        flipOne(i + 3, c3, v3, a, pOut, sh + kOffHist, sh + kOffTrans, loc);
        cq.x = static_cast<signed char>(c0);
        cq.y = static_cast<signed char>(c1);
        cq.z = static_cast<signed char>(c2);
        cq.w = static_cast<signed char>(c3);
        vq.x = static_cast<signed char>(v0);
        vq.y = static_cast<signed char>(v1);
        vq.z = static_cast<signed char>(v2);
        vq.w = static_cast<signed char>(v3);
        reinterpret_cast<char4*>(code)[ch] = cq;
        reinterpret_cast<char4*>(vote)[ch] = vq;
      },
      [&](size_t i) {
        int c = code[i], v = vote[i];
        flipOne(static_cast<uint32_t>(i), c, v, a, pOut, sh + kOffHist, sh + kOffTrans, loc);
        code[i] = static_cast<int8_t>(c);
        vote[i] = static_cast<int8_t>(v);
      });
  // Integer counts: any summation order gives the same result.
  unsigned vals[9] = {loc.up,     loc.down,   loc.occ[0], loc.occ[1], loc.occ[2],
                      loc.occ[3], loc.occ[4], loc.nz,     loc.sat};
  const int offs[9] = {kOffUp,      kOffDown,    kOffOcc, kOffOcc + 1, kOffOcc + 2,
                       kOffOcc + 3, kOffOcc + 4, kOffNz,  kOffSat};
#pragma unroll
  for (int k = 0; k < 9; ++k) {
    const unsigned s = warpSumU(vals[k]);
    if ((threadIdx.x & 31) == 0 && s) atomicAdd(&sh[offs[k]], s);
  }
  __syncthreads();
  for (int k = threadIdx.x; k < kNumCounters; k += blockDim.x)
    if (sh[k]) atomicAdd(&counters[k], static_cast<unsigned long long>(sh[k]));
}

// The layer's FlipStats from the counters. pSum = sum over |vote| = 0..128 of count * p(|vote|), in
// that order: independent of how the weights were split over threads. pMax = the largest (float)p
// of any weight.
__global__ void poltFlipFinishKernel(const unsigned long long* __restrict__ counters, FlipParams params,
                                     const float* __restrict__ scale, const StepHead* __restrict__ head,
                                     FlipStats* __restrict__ out) {
  if (threadIdx.x != 0 || (head != nullptr && head->refused != 0)) return;
  const FlipArgs a = flipArgsFor(params, scale);
  double s = 0.0;
  float mx = 0.0f;
  for (int k = 0; k < kHistBins; ++k) {
    const unsigned long long cnt = counters[kOffHist + k];
    if (!cnt) continue;
    const double p = flipProb(k, a);
    s = __dadd_rn(s, __dmul_rn(static_cast<double>(cnt), p));
    mx = fmaxf(mx, static_cast<float>(p));
  }
  for (int f = 0; f < 5; ++f)
    for (int t = 0; t < 5; ++t) out->transitions[f][t] = counters[kOffTrans + f * 5 + t];
  out->flipsUp = counters[kOffUp];
  out->flipsDown = counters[kOffDown];
  for (int k = 0; k < 5; ++k) out->occupancy[k] = counters[kOffOcc + k];
  out->votesNonZero = counters[kOffNz];
  out->votesSaturated = counters[kOffSat];
  out->pSum = s;
  out->pMax = mx;
}

__global__ void poltProbabilitiesKernel(const int8_t* __restrict__ vote, float* __restrict__ pOut, size_t n,
                                        bool vec, FlipParams params, const float* __restrict__ scale) {
  const FlipArgs a = flipArgsFor(params, scale);
  auto pOf = [&](int v) { return static_cast<float>(flipProb(v < 0 ? -v : v, a)); };
  forEachChunk4(
      n, vec,
      [&](size_t c) {
        const char4 v = reinterpret_cast<const char4*>(vote)[c];
        reinterpret_cast<float4*>(pOut)[c] = make_float4(pOf(v.x), pOf(v.y), pOf(v.z), pOf(v.w));
      },
      [&](size_t i) { pOut[i] = pOf(vote[i]); });
}

bool aligned4(const void* p) { return (reinterpret_cast<uintptr_t>(p) & 3u) == 0; }
unsigned gridForChunks(size_t n) { return blocksFor((n + 3) / 4, kThreads, 8192); }

}  // namespace

void launchSteQuantize(const float* W, float* Wq, size_t n, const double* absSum, float* gammaOut,
                       cudaStream_t st) {
  steQuantizeKernel<<<gridForChunks(n), kThreads, 0, st>>>(W, Wq, n, aligned16(W) && aligned16(Wq), absSum,
                                                           gammaOut);
  PRIMAL_KERNEL_CHECK("steQuantize");
}

void launchPoltMaterialize(const int8_t* code, float* W, size_t n, const float* gamma0, const float* s,
                           float bridge, cudaStream_t st) {
  if (n == 0) return;
  poltMaterializeKernel<<<gridForChunks(n), kThreads, 0, st>>>(code, W, n, aligned4(code) && aligned16(W),
                                                               gamma0, s, bridge);
  PRIMAL_KERNEL_CHECK("poltMaterialize");
}

void launchPoltMergeVotes(int8_t* vote, const int8_t* start, size_t n, const StepHead* head,
                          cudaStream_t st) {
  if (n == 0) return;
  poltMergeVotesKernel<<<blocksFor(n, kThreads, 8192), kThreads, 0, st>>>(vote, start, n, head);
  PRIMAL_KERNEL_CHECK("poltMergeVotes");
}

void launchGhostScaleStep(float* s, float* m, float* v, const double* ds, int layers,
                          const polt::GhostScaleRule& rule, const StepHead* head, cudaStream_t st) {
  if (layers <= 0) return;
  ghostScaleStepKernel<<<1, 128, 0, st>>>(s, m, v, ds, layers, rule, head);
  PRIMAL_KERNEL_CHECK("ghostScaleStep");
}

void launchPoltVote(const float* G, const int8_t* code, int8_t* vote, size_t n, float bridge, float deadzone,
                    const double* sumSq, double* partials, cudaStream_t st) {
  const bool vec = aligned16(G) && aligned4(code) && aligned4(vote);
  poltVoteKernel<<<reduceBlocks(n), kReduceThreads, 0, st>>>(G, code, vote, n, vec, bridge, deadzone, sumSq,
                                                             partials);
  PRIMAL_KERNEL_CHECK("poltVote");
}

void launchPoltFlip(int8_t* code, int8_t* vote, size_t n, const FlipParams& params, const float* scale,
                    const StepHead* head, float* pOut, unsigned long long* counters, cudaStream_t st) {
  if (n == 0) return;
  if (n > 0xffffffffull) throw Error("poltFlip (cuda): more than 2^32 weights in one layer");
  const bool vec = aligned4(code) && aligned4(vote) && (pOut == nullptr || aligned16(pOut));
  poltFlipKernel<<<gridForChunks(n), kThreads, 0, st>>>(code, vote, n, vec, params, scale, head, pOut,
                                                        counters);
  PRIMAL_KERNEL_CHECK("poltFlip");
}

void launchPoltFlipFinish(const unsigned long long* counters, const FlipParams& params, const float* scale,
                          const StepHead* head, FlipStats* out, cudaStream_t st) {
  poltFlipFinishKernel<<<1, 32, 0, st>>>(counters, params, scale, head, out);
  PRIMAL_KERNEL_CHECK("poltFlipFinish");
}

void launchPoltProbabilities(const int8_t* vote, float* pOut, size_t n, const FlipParams& params,
                             const float* scale, cudaStream_t st) {
  if (n == 0) return;
  poltProbabilitiesKernel<<<gridForChunks(n), kThreads, 0, st>>>(
      vote, pOut, n, aligned4(vote) && aligned16(pOut), params, scale);
  PRIMAL_KERNEL_CHECK("poltProbabilities");
}

}  // namespace cuda
}  // namespace primal
