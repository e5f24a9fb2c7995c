// Element-wise, reduction, embedding, RMSNorm, RoPE, SwiGLU, activation-quantization and AdamW
// kernels. Memory-bound: 128-bit accesses where the pointers allow, grid-stride loops, and every
// reduction in a fixed order (no float atomics) so results are reproducible run to run.
#include <cub/device/device_radix_sort.cuh>

#include <algorithm>

#include "cuda_kernels.cuh"

namespace primal {
namespace cuda {

namespace {

constexpr int kThreads = 256;
constexpr unsigned kGridCap = 8192;

// ---- add / scale ---------------------------------------------------------------------------
// Element-wise kernels loop with forEachChunk4 (cuda_common.cuh): chunks of 4 elements per
// thread, 128-bit access when `vec`.
__global__ void addKernel(float* __restrict__ y, const float* __restrict__ x, size_t n, bool vec) {
  forEachChunk4(
      n, vec,
      [&](size_t c) {
        float4 a = reinterpret_cast<float4*>(y)[c];
        const float4 b = reinterpret_cast<const float4*>(x)[c];
        a.x += b.x;
        a.y += b.y;
        a.z += b.z;
        a.w += b.w;
        reinterpret_cast<float4*>(y)[c] = a;
      },
      [&](size_t i) { y[i] += x[i]; });
}

__global__ void scaleKernel(float* __restrict__ x, float a, size_t n, bool vec) {
  forEachChunk4(
      n, vec,
      [&](size_t c) {
        float4 v = reinterpret_cast<float4*>(x)[c];
        v.x *= a;
        v.y *= a;
        v.z *= a;
        v.w *= a;
        reinterpret_cast<float4*>(x)[c] = v;
      },
      [&](size_t i) { x[i] *= a; });
}

__global__ void scaleMatrixKernel(float* C, int M, int N, int ldc, float beta) {
  const size_t total = static_cast<size_t>(M) * N;
  for (size_t i = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<size_t>(gridDim.x) * blockDim.x) {
    const size_t r = i / N, c = i % N;
    float* p = C + r * ldc + c;
    *p = beta == 0.0f ? 0.0f : *p * beta;
  }
}

// ---- deterministic reductions -----------------------------------------------------------------
template <bool kSquare>
__global__ void __launch_bounds__(kReduceThreads)
    sumPartialKernel(const float* __restrict__ x, size_t n, bool vec, double* __restrict__ partials) {
  __shared__ double sh[kReduceThreads / 32];
  double acc = 0.0;
  auto one = [&](float v) {
    const double d = static_cast<double>(v);
    acc += kSquare ? d * d : fabs(d);
  };
  // The tail adds only the elements that exist: the same sum as adding zeros for the rest.
  forEachChunk4(
      n, vec,
      [&](size_t c) {
        const float4 f = reinterpret_cast<const float4*>(x)[c];
        one(f.x);
        one(f.y);
        one(f.z);
        one(f.w);
      },
      [&](size_t i) { one(x[i]); });
  const double r = blockSumD(acc, sh);
  if (threadIdx.x == 0) partials[blockIdx.x] = r;
}

__global__ void __launch_bounds__(kReduceMaxBlocks)
    finalSumKernel(const double* __restrict__ partials, int count, double* __restrict__ out) {
  __shared__ double sh[kReduceMaxBlocks / 32];
  const double v = static_cast<int>(threadIdx.x) < count ? partials[threadIdx.x] : 0.0;
  const double r = blockSumD(v, sh);
  if (threadIdx.x == 0) *out = r;
}

// *acc += factor * sum, in the order of finalSumKernel; explicitly rounded (no FMA).
__global__ void __launch_bounds__(kReduceMaxBlocks)
    finalSumIntoKernel(const double* __restrict__ partials, int count, const float* __restrict__ factor,
                       double* __restrict__ acc) {
  __shared__ double sh[kReduceMaxBlocks / 32];
  const double v = static_cast<int>(threadIdx.x) < count ? partials[threadIdx.x] : 0.0;
  const double r = blockSumD(v, sh);
  if (threadIdx.x == 0) *acc = __dadd_rn(*acc, __dmul_rn(static_cast<double>(*factor), r));
}

// One block per range of one segment: sum of x^2 or |x| over [begin, end), each thread over a fixed
// stride, then the block's fixed-order tree.
__global__ void __launch_bounds__(kReduceThreads)
    segmentPartialKernel(const float* __restrict__ base, const SegRange* __restrict__ ranges, bool absolute,
                         double* __restrict__ partials) {
  __shared__ double sh[kReduceThreads / 32];
  const SegRange r = ranges[blockIdx.x];
  double acc = 0.0;
  for (size_t i = r.begin + threadIdx.x; i < r.end; i += blockDim.x) {
    const double d = static_cast<double>(base[i]);
    acc += absolute ? fabs(d) : d * d;
  }
  const double sum = blockSumD(acc, sh);
  if (threadIdx.x == 0) partials[blockIdx.x] = sum;
}

// Each thread adds the ranges of its segments in order; thread 0 then adds the segments in order.
__global__ void segmentFinishKernel(const double* __restrict__ partials, const int* __restrict__ segFirst,
                                    int count, double* __restrict__ segSums, double* __restrict__ perSegment,
                                    double* __restrict__ total) {
  for (int j = threadIdx.x; j < count; j += blockDim.x) {
    double s = 0.0;
    for (int r = segFirst[j]; r < segFirst[j + 1]; ++r) s += partials[r];
    segSums[j] = s;
    if (perSegment) perSegment[j] = s;
  }
  __syncthreads();
  if (threadIdx.x == 0 && total) {
    double t = 0.0;
    for (int j = 0; j < count; ++j) t += segSums[j];
    *total = t;
  }
}

// ---- the step's loss and decision (Backend::stepLoss, stepGate) -------------------------------
constexpr int kLossThreads = 1024;

__global__ void __launch_bounds__(kLossThreads)
    stepLossKernel(const float* __restrict__ losses, const int32_t* __restrict__ targets, int N,
                   StepHead* __restrict__ head) {
  __shared__ double sh[kLossThreads / 32];
  double sum = 0.0, count = 0.0;
  for (int i = threadIdx.x; i < N; i += blockDim.x)
    if (targets[i] >= 0) {
      sum += static_cast<double>(losses[i]);
      count += 1.0;
    }
  sum = blockSumD(sum, sh);
  count = blockSumD(count, sh);
  if (threadIdx.x != 0) return;
  const double mean = count > 0.0 ? __ddiv_rn(sum, count) : 0.0;
  head->lastLoss = mean;
  if (isfinite(mean)) {
    head->lossSum = __dadd_rn(head->lossSum, mean);
    head->tokens = __dadd_rn(head->tokens, count);
  } else {
    if (!(head->refused & kRefuseLoss)) head->badLoss = mean;
    head->refused |= kRefuseLoss;
  }
}

__global__ void stepGateKernel(StepHead* __restrict__ head, const double* __restrict__ ds, int layers,
                               float gradClip) {
  if (threadIdx.x != 0 || blockIdx.x != 0) return;
  const double norm = __dsqrt_rn(head->gradSq);
  if (!isfinite(norm)) head->refused |= kRefuseNorm;
  for (int l = 0; l < layers; ++l)
    if (!isfinite(ds[l])) {
      if (!(head->refused & kRefuseScale)) head->badLayer = l;
      head->refused |= kRefuseScale;
    }
  const double clip = static_cast<double>(gradClip);
  head->clip =
      (gradClip > 0.0f && norm > clip) ? static_cast<float>(__ddiv_rn(clip, __dadd_rn(norm, 1e-6))) : 1.0f;
}

__global__ void allFiniteKernel(const float* __restrict__ x, size_t n, bool vec, int* bad) {
  bool ok = true;
  forEachChunk4(
      n, vec,
      [&](size_t c) {
        const float4 f = reinterpret_cast<const float4*>(x)[c];
        ok = ok && isfinite(f.x) && isfinite(f.y) && isfinite(f.z) && isfinite(f.w);
      },
      [&](size_t i) { ok = ok && isfinite(x[i]); });
  // Every writer stores the same value, so the outcome does not depend on ordering.
  if (__any_sync(0xffffffffu, !ok) && (threadIdx.x & 31) == 0) *bad = 1;
}

// ---- embedding ------------------------------------------------------------------------------
template <bool kVec>
__global__ void embeddingForwardKernel(const int32_t* __restrict__ tokens, const float* __restrict__ table,
                                       float* __restrict__ out, int C) {
  const int n = blockIdx.x;
  const int tok = tokens[n];
  float* o = out + static_cast<size_t>(n) * C;
  if (kVec) {
    float4* o4 = reinterpret_cast<float4*>(o);
    const float4* t4 = reinterpret_cast<const float4*>(table + static_cast<size_t>(tok) * C);
    for (int c = threadIdx.x; c < C / 4; c += blockDim.x)
      o4[c] = tok >= 0 ? t4[c] : make_float4(0.f, 0.f, 0.f, 0.f);
  } else {
    const float* t = table + static_cast<size_t>(tok) * C;
    for (int c = threadIdx.x; c < C; c += blockDim.x) o[c] = tok >= 0 ? t[c] : 0.0f;
  }
}

__global__ void iotaKernel(int32_t* v, int n) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) v[i] = i;
}

// One block per sorted position; only the first position of each token's run does work: it sums
// that token's dout rows in ascending token-position order (stable sort), then adds the sum to
// dtable. blockIdx.y splits the columns (4 per thread). Fixed order -> deterministic.
template <bool kVec>
__global__ void embeddingBackwardKernel(const int32_t* __restrict__ sortedTok,
                                        const int32_t* __restrict__ sortedIdx, const float* __restrict__ dout,
                                        float* __restrict__ dtable, int N, int C) {
  const int p = blockIdx.x;
  const int tok = sortedTok[p];
  if (tok < 0 || (p > 0 && sortedTok[p - 1] == tok)) return;
  const int col = (blockIdx.y * blockDim.x + threadIdx.x) * 4;
  if (col >= C) return;
  int end = p + 1;
  while (end < N && sortedTok[end] == tok) ++end;
  float a0 = 0.f, a1 = 0.f, a2 = 0.f, a3 = 0.f;
#pragma unroll 4
  for (int q = p; q < end; ++q) {
    const float* src = dout + static_cast<size_t>(sortedIdx[q]) * C + col;
    if (kVec) {
      const float4 v = *reinterpret_cast<const float4*>(src);
      a0 += v.x;
      a1 += v.y;
      a2 += v.z;
      a3 += v.w;
    } else {
      a0 += src[0];
      if (col + 1 < C) a1 += src[1];
      if (col + 2 < C) a2 += src[2];
      if (col + 3 < C) a3 += src[3];
    }
  }
  float* dst = dtable + static_cast<size_t>(tok) * C + col;
  if (kVec) {
    float4 d = *reinterpret_cast<float4*>(dst);
    d.x += a0;
    d.y += a1;
    d.z += a2;
    d.w += a3;
    *reinterpret_cast<float4*>(dst) = d;
  } else {
    dst[0] += a0;
    if (col + 1 < C) dst[1] += a1;
    if (col + 2 < C) dst[2] += a2;
    if (col + 3 < C) dst[3] += a3;
  }
}

// ---- RMSNorm --------------------------------------------------------------------------------
// Forward: one warp per row.
template <bool kVec>
__global__ void rmsnormForwardKernel(const float* __restrict__ x, const float* __restrict__ w,
                                     float* __restrict__ y, float* __restrict__ rstd, int N, int C,
                                     float eps) {
  const int lane = threadIdx.x & 31;
  const int row = blockIdx.x * (blockDim.x / 32) + (threadIdx.x >> 5);
  if (row >= N) return;
  const float* xr = x + static_cast<size_t>(row) * C;
  float* yr = y + static_cast<size_t>(row) * C;
  float ss = 0.0f;
  if (kVec) {
    for (int c = lane; c < C / 4; c += 32) {
      const float4 v = reinterpret_cast<const float4*>(xr)[c];
      ss += v.x * v.x;
      ss += v.y * v.y;
      ss += v.z * v.z;
      ss += v.w * v.w;
    }
  } else {
    for (int c = lane; c < C; c += 32) ss += xr[c] * xr[c];
  }
  ss = warpSum(ss);
  const float r = 1.0f / sqrtf(ss / static_cast<float>(C) + eps);
  if (kVec) {
    for (int c = lane; c < C / 4; c += 32) {
      const float4 v = reinterpret_cast<const float4*>(xr)[c];
      const float4 g = reinterpret_cast<const float4*>(w)[c];
      reinterpret_cast<float4*>(yr)[c] =
          make_float4(v.x * r * g.x, v.y * r * g.y, v.z * r * g.z, v.w * r * g.w);
    }
  } else {
    for (int c = lane; c < C; c += 32) yr[c] = xr[c] * r * w[c];
  }
  if (lane == 0) rstd[row] = r;
}

// Backward: one block per chunk of `rowsPerBlock` rows. Each thread owns CPT groups of VEC
// columns for the whole chunk: it accumulates the chunk's dw partial in registers (rows in
// order), and per row the block reduces dot = sum(dy*w*x) in a fixed order. The per-chunk dw
// partials are summed over chunks in order by rmsnormDwFinalKernel.
constexpr int kNormBwdThreads = 128;

template <int VEC, int CPT>
__global__ void __launch_bounds__(kNormBwdThreads)
    rmsnormBackwardKernel(const float* __restrict__ x, const float* __restrict__ w,
                          const float* __restrict__ rstd, const float* __restrict__ dy,
                          float* __restrict__ dx, float* __restrict__ partial, int N, int C,
                          int rowsPerBlock) {
  constexpr int NW = kNormBwdThreads / 32;
  __shared__ float red[2][NW];
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int r0 = blockIdx.x * rowsPerBlock;
  const int r1 = min(N, r0 + rowsPerBlock);

  float wv[CPT][VEC], dwacc[CPT][VEC];
#pragma unroll
  for (int j = 0; j < CPT; ++j) {
    const int col = (j * kNormBwdThreads + tid) * VEC;
#pragma unroll
    for (int e = 0; e < VEC; ++e) {
      wv[j][e] = col + e < C ? w[col + e] : 0.0f;
      dwacc[j][e] = 0.0f;
    }
  }
  int it = 0;
  for (int r = r0; r < r1; ++r, ++it) {
    const float* xr = x + static_cast<size_t>(r) * C;
    const float* gr = dy + static_cast<size_t>(r) * C;
    float xv[CPT][VEC], gv[CPT][VEC];
    float part = 0.0f;
#pragma unroll
    for (int j = 0; j < CPT; ++j) {
      const int col = (j * kNormBwdThreads + tid) * VEC;
      if constexpr (VEC == 4) {
        float4 a = make_float4(0.f, 0.f, 0.f, 0.f), b = a;
        if (col < C) {
          a = *reinterpret_cast<const float4*>(xr + col);
          b = *reinterpret_cast<const float4*>(gr + col);
        }
        xv[j][0] = a.x;
        xv[j][1] = a.y;
        xv[j][2] = a.z;
        xv[j][3] = a.w;
        gv[j][0] = b.x;
        gv[j][1] = b.y;
        gv[j][2] = b.z;
        gv[j][3] = b.w;
      } else {
#pragma unroll
        for (int e = 0; e < VEC; ++e) {
          xv[j][e] = col + e < C ? xr[col + e] : 0.0f;
          gv[j][e] = col + e < C ? gr[col + e] : 0.0f;
        }
      }
#pragma unroll
      for (int e = 0; e < VEC; ++e) part += (wv[j][e] * gv[j][e]) * xv[j][e];
    }
    part = warpSum(part);
    if (lane == 0) red[it & 1][warp] = part;
    __syncthreads();
    float dot = 0.0f;
#pragma unroll
    for (int k = 0; k < NW; ++k) dot += red[it & 1][k];
    const float rs = rstd[r];
    const float coef = ((rs * rs) * rs) * dot / static_cast<float>(C);
    float* dxr = dx + static_cast<size_t>(r) * C;
#pragma unroll
    for (int j = 0; j < CPT; ++j) {
      const int col = (j * kNormBwdThreads + tid) * VEC;
      if (col >= C) continue;
      float d[VEC];
#pragma unroll
      for (int e = 0; e < VEC; ++e) {
        d[e] = rs * (wv[j][e] * gv[j][e]) - xv[j][e] * coef;
        dwacc[j][e] += (gv[j][e] * xv[j][e]) * rs;
      }
      if constexpr (VEC == 4) {
        float4 o = *reinterpret_cast<float4*>(dxr + col);
        o.x += d[0];
        o.y += d[1];
        o.z += d[2];
        o.w += d[3];
        *reinterpret_cast<float4*>(dxr + col) = o;
      } else {
#pragma unroll
        for (int e = 0; e < VEC; ++e)
          if (col + e < C) dxr[col + e] += d[e];
      }
    }
  }
  float* pr = partial + static_cast<size_t>(blockIdx.x) * C;
#pragma unroll
  for (int j = 0; j < CPT; ++j) {
    const int col = (j * kNormBwdThreads + tid) * VEC;
#pragma unroll
    for (int e = 0; e < VEC; ++e)
      if (col + e < C) pr[col + e] = dwacc[j][e];
  }
}

__global__ void rmsnormDwFinalKernel(const float* __restrict__ partial, int chunks, int C,
                                     float* __restrict__ dw) {
  const int c = blockIdx.x * blockDim.x + threadIdx.x;
  if (c >= C) return;
  float s = 0.0f;
#pragma unroll 8
  for (int b = 0; b < chunks; ++b) s += partial[static_cast<size_t>(b) * C + c];
  dw[c] += s;
}

int normRowsPerBlock(int N) { return std::max(1, std::min(32, (N + 511) / 512)); }

// ---- RoPE -----------------------------------------------------------------------------------
__global__ void ropeTableKernel(float2* table, int T, int half, int D, double theta) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= T * half) return;
  const int t = i / half, p = i % half;
  const double invFreq = pow(theta, -static_cast<double>(2 * p) / static_cast<double>(D));
  const double a = static_cast<double>(t) * invFreq;
  table[i] = make_float2(static_cast<float>(cos(a)), static_cast<float>(sin(a)));
}

__global__ void ropeKernel(float2* __restrict__ x, const float2* __restrict__ table, size_t pairs, int T,
                           int H, int half, bool inverse) {
  for (size_t i = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x; i < pairs;
       i += static_cast<size_t>(gridDim.x) * blockDim.x) {
    const int p = static_cast<int>(i % half);
    const size_t row = i / half;  // (b*T + t)*H + h
    const int t = static_cast<int>((row / H) % T);
    const float2 cs = table[static_cast<size_t>(t) * half + p];
    const float2 v = x[i];
    float2 o;
    if (!inverse) {
      o.x = v.x * cs.x - v.y * cs.y;
      o.y = v.x * cs.y + v.y * cs.x;
    } else {
      o.x = v.x * cs.x + v.y * cs.y;
      o.y = v.y * cs.x - v.x * cs.y;
    }
    x[i] = o;
  }
}

// ---- SwiGLU ---------------------------------------------------------------------------------
__device__ __forceinline__ float sigmoidf(float g) { return 1.0f / (1.0f + expf(-g)); }

__global__ void swigluForwardKernel(const float* __restrict__ gate, const float* __restrict__ up,
                                    float* __restrict__ h, size_t n, bool vec) {
  forEachChunk4(
      n, vec,
      [&](size_t c) {
        const float4 g = reinterpret_cast<const float4*>(gate)[c];
        const float4 u = reinterpret_cast<const float4*>(up)[c];
        float4 o;
        o.x = g.x * sigmoidf(g.x) * u.x;
        o.y = g.y * sigmoidf(g.y) * u.y;
        o.z = g.z * sigmoidf(g.z) * u.z;
        o.w = g.w * sigmoidf(g.w) * u.w;
        reinterpret_cast<float4*>(h)[c] = o;
      },
      [&](size_t i) { h[i] = gate[i] * sigmoidf(gate[i]) * up[i]; });
}

__device__ __forceinline__ void swigluGrad(float g, float u, float d, float& dg, float& du) {
  const float s = sigmoidf(g);
  const float silu = g * s;
  dg = d * u * (s * (1.0f + g * (1.0f - s)));
  du = d * silu;
}

__global__ void swigluBackwardKernel(const float* __restrict__ gate, const float* __restrict__ up,
                                     const float* __restrict__ dh, float* __restrict__ dgate,
                                     float* __restrict__ dup, size_t n, bool vec) {
  forEachChunk4(
      n, vec,
      [&](size_t c) {
        const float4 g = reinterpret_cast<const float4*>(gate)[c];
        const float4 u = reinterpret_cast<const float4*>(up)[c];
        const float4 d = reinterpret_cast<const float4*>(dh)[c];
        float4 og, ou;
        swigluGrad(g.x, u.x, d.x, og.x, ou.x);
        swigluGrad(g.y, u.y, d.y, og.y, ou.y);
        swigluGrad(g.z, u.z, d.z, og.z, ou.z);
        swigluGrad(g.w, u.w, d.w, og.w, ou.w);
        reinterpret_cast<float4*>(dgate)[c] = og;
        reinterpret_cast<float4*>(dup)[c] = ou;
      },
      [&](size_t i) { swigluGrad(gate[i], up[i], dh[i], dgate[i], dup[i]); });
}

// ---- activation quantization: one warp per row -----------------------------------------------
__device__ __forceinline__ float quantOne(float v, float s, float qmax) {
  const float q = fminf(fmaxf(rintf(v * s), -qmax - 1.0f), qmax);
  return q / s;
}

template <bool kVec>
__global__ void actQuantKernel(const float* __restrict__ x, float* __restrict__ xq, int N, int C,
                               float qmax) {
  const int lane = threadIdx.x & 31;
  const int row = blockIdx.x * (blockDim.x / 32) + (threadIdx.x >> 5);
  if (row >= N) return;
  const float* xr = x + static_cast<size_t>(row) * C;
  float* yr = xq + static_cast<size_t>(row) * C;
  float amax = 0.0f;
  if (kVec) {
    for (int c = lane; c < C / 4; c += 32) {
      const float4 v = reinterpret_cast<const float4*>(xr)[c];
      amax = fmaxf(amax, fmaxf(fmaxf(fabsf(v.x), fabsf(v.y)), fmaxf(fabsf(v.z), fabsf(v.w))));
    }
  } else {
    for (int c = lane; c < C; c += 32) amax = fmaxf(amax, fabsf(xr[c]));
  }
  amax = warpMax(amax);
  const float s = qmax / fmaxf(amax, 1e-5f);
  if (kVec) {
    for (int c = lane; c < C / 4; c += 32) {
      const float4 v = reinterpret_cast<const float4*>(xr)[c];
      reinterpret_cast<float4*>(yr)[c] = make_float4(quantOne(v.x, s, qmax), quantOne(v.y, s, qmax),
                                                     quantOne(v.z, s, qmax), quantOne(v.w, s, qmax));
    }
  } else {
    for (int c = lane; c < C; c += 32) yr[c] = quantOne(xr[c], s, qmax);
  }
}

// ---- AdamW ----------------------------------------------------------------------------------
struct AdamArgs {
  float lr, b1, b2, omb1, omb2, eps, wd, bc1, bc2;
  size_t nDecay;
};

// One element; wd applies below nDecay only (the arena's decaying part).
__device__ __forceinline__ void adamOne(float& p, float g, float& m, float& v, const AdamArgs& a,
                                        float gradScale, size_t i) {
  const float wd = i < a.nDecay ? a.wd : 0.0f;
  g = g * gradScale;
  m = a.b1 * m + a.omb1 * g;
  v = a.b2 * v + a.omb2 * (g * g);
  const float mhat = m / a.bc1;
  const float vhat = v / a.bc2;
  p = p - a.lr * (mhat / (sqrtf(vhat) + a.eps) + wd * p);
}

__global__ void adamwKernel(float* __restrict__ p, const float* __restrict__ g, float* __restrict__ m,
                            float* __restrict__ v, size_t n, bool vec, AdamArgs a,
                            const StepHead* __restrict__ head) {
  if (head && head->refused) return;
  const float gs = head ? head->clip : 1.0f;
  forEachChunk4(
      n, vec,
      [&](size_t c) {
        float4 pp = reinterpret_cast<float4*>(p)[c];
        const float4 gg = reinterpret_cast<const float4*>(g)[c];
        float4 mm = reinterpret_cast<float4*>(m)[c];
        float4 vv = reinterpret_cast<float4*>(v)[c];
        adamOne(pp.x, gg.x, mm.x, vv.x, a, gs, 4 * c);
        adamOne(pp.y, gg.y, mm.y, vv.y, a, gs, 4 * c + 1);
        adamOne(pp.z, gg.z, mm.z, vv.z, a, gs, 4 * c + 2);
        adamOne(pp.w, gg.w, mm.w, vv.w, a, gs, 4 * c + 3);
        reinterpret_cast<float4*>(p)[c] = pp;
        reinterpret_cast<float4*>(m)[c] = mm;
        reinterpret_cast<float4*>(v)[c] = vv;
      },
      [&](size_t i) { adamOne(p[i], g[i], m[i], v[i], a, gs, i); });
}

unsigned gridForChunks(size_t n) { return blocksFor((n + 3) / 4, kThreads, kGridCap); }

}  // namespace

// ---- launchers --------------------------------------------------------------------------------
void launchAdd(float* y, const float* x, size_t n, cudaStream_t st) {
  if (n == 0) return;
  addKernel<<<gridForChunks(n), kThreads, 0, st>>>(y, x, n, aligned16(y) && aligned16(x));
  PRIMAL_KERNEL_CHECK("add");
}

void launchScale(float* x, float a, size_t n, cudaStream_t st) {
  if (n == 0) return;
  scaleKernel<<<gridForChunks(n), kThreads, 0, st>>>(x, a, n, aligned16(x));
  PRIMAL_KERNEL_CHECK("scale");
}

void launchScaleMatrix(float* C, int M, int N, int ldc, float beta, cudaStream_t st) {
  if (M <= 0 || N <= 0) return;
  scaleMatrixKernel<<<blocksFor(static_cast<size_t>(M) * N, kThreads, kGridCap), kThreads, 0, st>>>(
      C, M, N, ldc, beta);
  PRIMAL_KERNEL_CHECK("scaleMatrix");
}

void launchSumSquaresPartials(const float* x, size_t n, double* partials, cudaStream_t st) {
  sumPartialKernel<true><<<reduceBlocks(n), kReduceThreads, 0, st>>>(x, n, aligned16(x), partials);
  PRIMAL_KERNEL_CHECK("sumSquares");
}

void launchAbsSumPartials(const float* x, size_t n, double* partials, cudaStream_t st) {
  sumPartialKernel<false><<<reduceBlocks(n), kReduceThreads, 0, st>>>(x, n, aligned16(x), partials);
  PRIMAL_KERNEL_CHECK("absSum");
}

void launchFinalSum(const double* partials, int count, double* out, cudaStream_t st) {
  finalSumKernel<<<1, kReduceMaxBlocks, 0, st>>>(partials, count, out);
  PRIMAL_KERNEL_CHECK("finalSum");
}

void launchFinalSumInto(const double* partials, int count, const float* factor, double* acc,
                        cudaStream_t st) {
  finalSumIntoKernel<<<1, kReduceMaxBlocks, 0, st>>>(partials, count, factor, acc);
  PRIMAL_KERNEL_CHECK("finalSumInto");
}

void launchSegmentPartials(const float* base, const SegRange* ranges, int nRanges, bool absolute,
                           double* partials, cudaStream_t st) {
  if (nRanges <= 0) return;
  segmentPartialKernel<<<nRanges, kReduceThreads, 0, st>>>(base, ranges, absolute, partials);
  PRIMAL_KERNEL_CHECK("segmentPartials");
}

void launchSegmentFinish(const double* partials, const int* segFirst, int count, double* segSums,
                         double* perSegment, double* total, cudaStream_t st) {
  segmentFinishKernel<<<1, 256, 0, st>>>(partials, segFirst, count, segSums, perSegment, total);
  PRIMAL_KERNEL_CHECK("segmentFinish");
}

void launchStepLoss(const float* losses, const int32_t* targets, int N, StepHead* head, cudaStream_t st) {
  stepLossKernel<<<1, kLossThreads, 0, st>>>(losses, targets, N, head);
  PRIMAL_KERNEL_CHECK("stepLoss");
}

void launchStepGate(StepHead* head, const double* ds, int layers, float gradClip, cudaStream_t st) {
  stepGateKernel<<<1, 32, 0, st>>>(head, ds, layers, gradClip);
  PRIMAL_KERNEL_CHECK("stepGate");
}

void launchAllFinite(const float* x, size_t n, int* bad, cudaStream_t st) {
  if (n == 0) return;
  allFiniteKernel<<<gridForChunks(n), kThreads, 0, st>>>(x, n, aligned16(x), bad);
  PRIMAL_KERNEL_CHECK("allFinite");
}

void launchEmbeddingForward(const int32_t* tokens, const float* table, float* out, int N, int C,
                            cudaStream_t st) {
  if (N <= 0 || C <= 0) return;
  if (C % 4 == 0 && aligned16(table) && aligned16(out)) {
    const int threads = std::min(256, std::max(32, C / 4));
    embeddingForwardKernel<true><<<N, threads, 0, st>>>(tokens, table, out, C);
  } else {
    embeddingForwardKernel<false><<<N, std::min(256, std::max(32, C)), 0, st>>>(tokens, table, out, C);
  }
  PRIMAL_KERNEL_CHECK("embeddingForward");
}

namespace {
constexpr size_t kAlign = 256;
size_t alignUp(size_t v) { return (v + kAlign - 1) / kAlign * kAlign; }
size_t cubSortBytes(int N) {
  size_t bytes = 0;
  PRIMAL_CUDA_CHECK(cub::DeviceRadixSort::SortPairs(
      nullptr, bytes, static_cast<const int32_t*>(nullptr), static_cast<int32_t*>(nullptr),
      static_cast<const int32_t*>(nullptr), static_cast<int32_t*>(nullptr), N));
  return bytes;
}
}  // namespace

size_t embeddingBackwardScratchBytes(int N) {
  return 3 * alignUp(sizeof(int32_t) * static_cast<size_t>(N)) + alignUp(cubSortBytes(N));
}

void launchEmbeddingBackward(const int32_t* tokens, const float* dout, float* dtable, int N, int C,
                             void* scratch, size_t scratchBytes, cudaStream_t st) {
  if (N <= 0 || C <= 0) return;
  char* s = static_cast<char*>(scratch);
  const size_t seg = alignUp(sizeof(int32_t) * static_cast<size_t>(N));
  int32_t* keysOut = reinterpret_cast<int32_t*>(s);
  int32_t* valsIn = reinterpret_cast<int32_t*>(s + seg);
  int32_t* valsOut = reinterpret_cast<int32_t*>(s + 2 * seg);
  void* temp = s + 3 * seg;
  size_t tempBytes = scratchBytes - 3 * seg;
  iotaKernel<<<(N + 255) / 256, 256, 0, st>>>(valsIn, N);
  PRIMAL_KERNEL_CHECK("iota");
  // Stable radix sort by token: equal tokens keep ascending positions -> fixed summation order.
  PRIMAL_CUDA_CHECK(
      cub::DeviceRadixSort::SortPairs(temp, tempBytes, tokens, keysOut, valsIn, valsOut, N, 0, 32, st));
  constexpr int threads = 64;
  const dim3 grid(N, (C + threads * 4 - 1) / (threads * 4));
  if (C % 4 == 0 && aligned16(dout) && aligned16(dtable))
    embeddingBackwardKernel<true><<<grid, threads, 0, st>>>(keysOut, valsOut, dout, dtable, N, C);
  else embeddingBackwardKernel<false><<<grid, threads, 0, st>>>(keysOut, valsOut, dout, dtable, N, C);
  PRIMAL_KERNEL_CHECK("embeddingBackward");
}

void launchRmsnormForward(const float* x, const float* w, float* y, float* rstd, int N, int C, float eps,
                          cudaStream_t st) {
  if (N <= 0) return;
  constexpr int warps = 8;
  const unsigned grid = (N + warps - 1) / warps;
  if (C % 4 == 0 && aligned16(x) && aligned16(w) && aligned16(y))
    rmsnormForwardKernel<true><<<grid, warps * 32, 0, st>>>(x, w, y, rstd, N, C, eps);
  else rmsnormForwardKernel<false><<<grid, warps * 32, 0, st>>>(x, w, y, rstd, N, C, eps);
  PRIMAL_KERNEL_CHECK("rmsnormForward");
}

size_t rmsnormBackwardScratchBytes(int N, int C) {
  const int rpb = normRowsPerBlock(N);
  const size_t chunks = (static_cast<size_t>(N) + rpb - 1) / rpb;
  return chunks * static_cast<size_t>(C) * sizeof(float);
}

namespace {
template <int VEC, int CPT>
void normBwd(const float* x, const float* w, const float* rstd, const float* dy, float* dx, float* partial,
             int N, int C, int rpb, unsigned grid, cudaStream_t st) {
  rmsnormBackwardKernel<VEC, CPT><<<grid, kNormBwdThreads, 0, st>>>(x, w, rstd, dy, dx, partial, N, C, rpb);
}
}  // namespace

void launchRmsnormBackward(const float* x, const float* w, const float* rstd, const float* dy, float* dx,
                           float* dw, int N, int C, float* scratch, cudaStream_t st) {
  if (N <= 0 || C <= 0) return;
  const int rpb = normRowsPerBlock(N);
  const unsigned chunks = static_cast<unsigned>((N + rpb - 1) / rpb);
  const bool vec = C % 4 == 0 && aligned16(x) && aligned16(w) && aligned16(dy) && aligned16(dx);
  if (vec) {
    const int groups = (C / 4 + kNormBwdThreads - 1) / kNormBwdThreads;
    if (groups <= 1) normBwd<4, 1>(x, w, rstd, dy, dx, scratch, N, C, rpb, chunks, st);
    else if (groups <= 2) normBwd<4, 2>(x, w, rstd, dy, dx, scratch, N, C, rpb, chunks, st);
    else if (groups <= 4) normBwd<4, 4>(x, w, rstd, dy, dx, scratch, N, C, rpb, chunks, st);
    else if (groups <= 8) normBwd<4, 8>(x, w, rstd, dy, dx, scratch, N, C, rpb, chunks, st);
    else if (groups <= 16) normBwd<4, 16>(x, w, rstd, dy, dx, scratch, N, C, rpb, chunks, st);
    else throw Error("rmsnormBackward (cuda): C = " + std::to_string(C) + " > 8192 is not supported");
  } else {
    const int groups = (C + kNormBwdThreads - 1) / kNormBwdThreads;
    if (groups <= 1) normBwd<1, 1>(x, w, rstd, dy, dx, scratch, N, C, rpb, chunks, st);
    else if (groups <= 2) normBwd<1, 2>(x, w, rstd, dy, dx, scratch, N, C, rpb, chunks, st);
    else if (groups <= 4) normBwd<1, 4>(x, w, rstd, dy, dx, scratch, N, C, rpb, chunks, st);
    else if (groups <= 8) normBwd<1, 8>(x, w, rstd, dy, dx, scratch, N, C, rpb, chunks, st);
    else if (groups <= 16) normBwd<1, 16>(x, w, rstd, dy, dx, scratch, N, C, rpb, chunks, st);
    else
      throw Error("rmsnormBackward (cuda): C = " + std::to_string(C) +
                  " > 2048 needs 16-byte aligned rows (C % 4 == 0)");
  }
  PRIMAL_KERNEL_CHECK("rmsnormBackward");
  rmsnormDwFinalKernel<<<(C + 31) / 32, 32, 0, st>>>(scratch, static_cast<int>(chunks), C, dw);
  PRIMAL_KERNEL_CHECK("rmsnormBackwardDw");
}

void launchRopeTable(float2* table, int T, int D, float theta, cudaStream_t st) {
  const int half = D / 2;
  const int total = T * half;
  if (total <= 0) return;
  ropeTableKernel<<<(total + 255) / 256, 256, 0, st>>>(table, T, half, D, static_cast<double>(theta));
  PRIMAL_KERNEL_CHECK("ropeTable");
}

void launchRope(float* x, const float2* table, int B, int T, int H, int D, bool inverse, cudaStream_t st) {
  const size_t pairs = static_cast<size_t>(B) * T * H * (D / 2);
  if (pairs == 0) return;
  if ((reinterpret_cast<uintptr_t>(x) & 7u) != 0) throw Error("rope (cuda): x must be 8-byte aligned");
  ropeKernel<<<blocksFor(pairs, kThreads, kGridCap), kThreads, 0, st>>>(reinterpret_cast<float2*>(x), table,
                                                                        pairs, T, H, D / 2, inverse);
  PRIMAL_KERNEL_CHECK("rope");
}

void launchSwigluForward(const float* gate, const float* up, float* h, size_t n, cudaStream_t st) {
  if (n == 0) return;
  swigluForwardKernel<<<gridForChunks(n), kThreads, 0, st>>>(
      gate, up, h, n, aligned16(gate) && aligned16(up) && aligned16(h));
  PRIMAL_KERNEL_CHECK("swigluForward");
}

void launchSwigluBackward(const float* gate, const float* up, const float* dh, float* dgate, float* dup,
                          size_t n, cudaStream_t st) {
  if (n == 0) return;
  const bool vec = aligned16(gate) && aligned16(up) && aligned16(dh) && aligned16(dgate) && aligned16(dup);
  swigluBackwardKernel<<<gridForChunks(n), kThreads, 0, st>>>(gate, up, dh, dgate, dup, n, vec);
  PRIMAL_KERNEL_CHECK("swigluBackward");
}

void launchActQuant(const float* x, float* xq, int N, int C, int bits, cudaStream_t st) {
  if (N <= 0 || C <= 0) return;
  if (bits < 2 || bits > 24) throw Error("actQuant (cuda): bits must be in [2, 24]");
  const float qmax = static_cast<float>((1 << (bits - 1)) - 1);
  constexpr int warps = 8;
  const unsigned grid = (N + warps - 1) / warps;
  if (C % 4 == 0 && aligned16(x) && aligned16(xq))
    actQuantKernel<true><<<grid, warps * 32, 0, st>>>(x, xq, N, C, qmax);
  else actQuantKernel<false><<<grid, warps * 32, 0, st>>>(x, xq, N, C, qmax);
  PRIMAL_KERNEL_CHECK("actQuant");
}

void launchAdamw(float* p, const float* g, float* m, float* v, size_t n, size_t nDecay, float lr, float b1,
                 float b2, float eps, float wd, float bc1, float bc2, const StepHead* head, cudaStream_t st) {
  if (n == 0) return;
  AdamArgs a{lr, b1, b2, 1.0f - b1, 1.0f - b2, eps, wd, bc1, bc2, nDecay};
  const bool vec = aligned16(p) && aligned16(g) && aligned16(m) && aligned16(v);
  adamwKernel<<<gridForChunks(n), kThreads, 0, st>>>(p, g, m, v, n, vec, a, head);
  PRIMAL_KERNEL_CHECK("adamw");
}

}  // namespace cuda
}  // namespace primal
