// Flash-style causal attention in fp32 (CUDA cores; no T x T matrix is ever stored).
//
// Layout: q, k, v, out, dout are [B, T, H, D]; lse and delta are [B, H, T]. One block owns a tile
// of BR rows of one (b, h) and loops over tiles of BC columns through shared memory:
//   forward      rows = queries, loop over key tiles (online softmax, writes out and lse);
//   backward dkv rows = keys,    loop over query tiles (recomputes P from q, k, lse);
//   backward dq  rows = queries, loop over key tiles.
// The two backward kernels each own their outputs, so nothing is accumulated with atomics and the
// results are deterministic. delta = rowsum(dout * out) is computed first by a small kernel.
// PRIMAL_CUDA_ATTN=tc switches to the tensor-core kernels of kernels_attention_tc.cu (sm_80+, same
// layouts; the delta kernel here is shared), with these kernels as the fallback.
//
// Thread layout (NTX = BC/4 by NTY = BR/4 threads): thread (ty, tx) computes the score micro-tile
// rows 4ty..4ty+3 x columns tx + NTX*j (j < 4), reading 128-bit rows of the padded tiles
// (row stride D + 4 floats, so the NTX column reads fall on distinct banks), and accumulates the
// output micro-tile rows 4ty..4ty+3 x columns DC*tx..DC*tx+DC-1 (DC = D / NTX).
// Head sizes are padded to 16/32/64/128 in the template; smaller real D (multiple of 4) is
// zero-filled, which changes nothing in the dot products. Stores write only the real columns: a
// thread's DC-wide output chunk may straddle the head's last column (attention_layout.h), and
// the columns past it belong to the next head or lie past the buffer.
#include <algorithm>
#include <cstdlib>
#include <cstring>

#include "attention_layout.h"
#include "cuda_kernels.cuh"

namespace primal {
namespace cuda {

namespace {

constexpr float kLog2e = 1.4426950408889634f;
constexpr float kLn2 = 0.6931471805599453f;

template <int D, int BR, int BC>
struct Cfg {
  static constexpr int NTY = BR / 4;
  static constexpr int NTX = BC / 4;
  static constexpr int NT = NTX * NTY;
  static constexpr int DC = attnChunkWidth(D, BC);
  static constexpr int LDD = D + 4;
  static constexpr int LDP = BC + 4;
  static_assert(D % NTX == 0 && DC == D / NTX, "head dim must be a multiple of the thread columns");
  static_assert(NTX <= 32 && (NTX & (NTX - 1)) == 0, "row groups must sit inside one warp");
};

template <int D, int BR, int BC>
constexpr size_t fwdSmemBytes() {
  using C = Cfg<D, BR, BC>;
  return sizeof(float) * (static_cast<size_t>(BR) * C::LDD + 2 * BC * C::LDD + BR * C::LDP);
}
template <int D, int BR, int BC>
constexpr size_t bwdKVSmemBytes() {
  using C = Cfg<D, BR, BC>;
  return sizeof(float) * (2 * static_cast<size_t>(BR) * C::LDD + 2 * BC * C::LDD + BR * C::LDP + 2 * BC);
}
template <int D, int BR, int BC>
constexpr size_t bwdQSmemBytes() {
  using C = Cfg<D, BR, BC>;
  return sizeof(float) * (2 * static_cast<size_t>(BR) * C::LDD + 2 * BC * C::LDD + BR * C::LDP);
}

__device__ __forceinline__ float f4get(const float4& v, int k) {
  return k == 0 ? v.x : (k == 1 ? v.y : (k == 2 ? v.z : v.w));
}

// Rows [row0, row0+ROWS) of a [T, *] matrix with row stride ld (floats) into s[ROWS][D+4];
// rows >= T and columns >= dAct are zero.
template <int ROWS, int D, int NT>
__device__ __forceinline__ void loadTile(float* s, const float* __restrict__ g, int row0, int T, size_t ld,
                                         int dAct) {
  constexpr int V4 = D / 4;
  for (int idx = threadIdx.x; idx < ROWS * V4; idx += NT) {
    const int r = idx / V4, c4 = idx % V4;
    float4 v = make_float4(0.f, 0.f, 0.f, 0.f);
    if (row0 + r < T && c4 * 4 < dAct)
      v = *reinterpret_cast<const float4*>(g + static_cast<size_t>(row0 + r) * ld + c4 * 4);
    *reinterpret_cast<float4*>(s + r * (D + 4) + c4 * 4) = v;
  }
}

template <int DC>
__device__ __forceinline__ void loadRow(float (&r)[DC], const float* s) {
  if constexpr (DC % 4 == 0) {
#pragma unroll
    for (int c = 0; c < DC; c += 4) {
      const float4 v = *reinterpret_cast<const float4*>(s + c);
      r[c] = v.x;
      r[c + 1] = v.y;
      r[c + 2] = v.z;
      r[c + 3] = v.w;
    }
  } else if constexpr (DC == 2) {
    const float2 v = *reinterpret_cast<const float2*>(s);
    r[0] = v.x;
    r[1] = v.y;
  } else {
#pragma unroll
    for (int c = 0; c < DC; ++c) r[c] = s[c];
  }
}

// Stores the first n (<= DC) of a thread's DC output columns times mul: all of them with vector
// stores, or element by element at the head's ragged edge (n from attnChunkColumns).
template <int DC>
__device__ __forceinline__ void storeRow(float* g, const float (&r)[DC], float mul, int n) {
  if (n < DC) {
#pragma unroll
    for (int c = 0; c < DC; ++c)
      if (c < n) g[c] = r[c] * mul;
  } else if constexpr (DC % 4 == 0) {
#pragma unroll
    for (int c = 0; c < DC; c += 4)
      *reinterpret_cast<float4*>(g + c) =
          make_float4(r[c] * mul, r[c + 1] * mul, r[c + 2] * mul, r[c + 3] * mul);
  } else if constexpr (DC == 2) {
    *reinterpret_cast<float2*>(g) = make_float2(r[0] * mul, r[1] * mul);
  } else {
#pragma unroll
    for (int c = 0; c < DC; ++c) g[c] = r[c] * mul;
  }
}

// acc[i][j] += A[rowA(i)] . B[rowB(j)] over D, A rows 4ty+i, B rows tx + NTX*j (padded tiles).
template <int D, int NTX>
__device__ __forceinline__ void tileDot(float (&acc)[4][4], const float* sA, const float* sB, int ty,
                                        int tx) {
  constexpr int LDD = D + 4;
#pragma unroll 8
  for (int d = 0; d < D; d += 4) {
    float4 a[4], b[4];
#pragma unroll
    for (int i = 0; i < 4; ++i) a[i] = *reinterpret_cast<const float4*>(sA + (4 * ty + i) * LDD + d);
#pragma unroll
    for (int j = 0; j < 4; ++j) b[j] = *reinterpret_cast<const float4*>(sB + (tx + NTX * j) * LDD + d);
#pragma unroll
    for (int i = 0; i < 4; ++i)
#pragma unroll
      for (int j = 0; j < 4; ++j) {
        acc[i][j] = fmaf(a[i].x, b[j].x, acc[i][j]);
        acc[i][j] = fmaf(a[i].y, b[j].y, acc[i][j]);
        acc[i][j] = fmaf(a[i].z, b[j].z, acc[i][j]);
        acc[i][j] = fmaf(a[i].w, b[j].w, acc[i][j]);
      }
  }
}

// acc[i][c] += sum_k P[4ty+i][k] * M[k][DC*tx + c] over k < BC (P: [BR][BC+4], M: [BC][D+4]).
template <int D, int BC, int DC>
__device__ __forceinline__ void tileAccum(float (&acc)[4][DC], const float* sP, const float* sM, int ty,
                                          int tx) {
  constexpr int LDD = D + 4, LDP = BC + 4;
#pragma unroll 4
  for (int k = 0; k < BC; k += 4) {
    float4 p[4];
#pragma unroll
    for (int i = 0; i < 4; ++i) p[i] = *reinterpret_cast<const float4*>(sP + (4 * ty + i) * LDP + k);
#pragma unroll
    for (int kk = 0; kk < 4; ++kk) {
      float m[DC];
      loadRow<DC>(m, sM + (k + kk) * LDD + DC * tx);
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        const float pv = f4get(p[i], kk);
#pragma unroll
        for (int c = 0; c < DC; ++c) acc[i][c] = fmaf(pv, m[c], acc[i][c]);
      }
    }
  }
}

// ---- forward ----------------------------------------------------------------------------------
template <int D, int BR, int BC>
__global__ void __launch_bounds__(Cfg<D, BR, BC>::NT, 2)
    attnForwardKernel(const float* __restrict__ q, const float* __restrict__ k, const float* __restrict__ v,
                      float* __restrict__ out, float* __restrict__ lse, int T, int H, int dAct,
                      float scaleLog2) {
  using C = Cfg<D, BR, BC>;
  constexpr int NTX = C::NTX, DC = C::DC, LDD = C::LDD, LDP = C::LDP, NT = C::NT;
  extern __shared__ float4 smem4[];
  float* sQ = reinterpret_cast<float*>(smem4);
  float* sK = sQ + BR * LDD;
  float* sV = sK + BC * LDD;
  float* sP = sV + BC * LDD;
  const int tid = threadIdx.x, tx = tid % NTX, ty = tid / NTX;
  const int numQT = (T + BR - 1) / BR;
  const int qt = numQT - 1 - static_cast<int>(blockIdx.x);  // longest rows first
  const int bh = blockIdx.y, b = bh / H, h = bh % H;
  const size_t ld = static_cast<size_t>(H) * dAct;
  const size_t base = static_cast<size_t>(b) * T * ld + static_cast<size_t>(h) * dAct;
  const int q0 = qt * BR;

  loadTile<BR, D, NT>(sQ, q + base, q0, T, ld, dAct);
  float m[4], l[4], o[4][DC];
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    m[i] = -INFINITY;
    l[i] = 0.0f;
#pragma unroll
    for (int c = 0; c < DC; ++c) o[i][c] = 0.0f;
  }
  const int kEnd = min(T, q0 + BR);
  for (int k0 = 0; k0 < kEnd; k0 += BC) {
    __syncthreads();
    loadTile<BC, D, NT>(sK, k + base, k0, T, ld, dAct);
    loadTile<BC, D, NT>(sV, v + base, k0, T, ld, dAct);
    __syncthreads();
    float s[4][4];
#pragma unroll
    for (int i = 0; i < 4; ++i)
#pragma unroll
      for (int j = 0; j < 4; ++j) s[i][j] = 0.0f;
    tileDot<D, NTX>(s, sQ, sK, ty, tx);
    const bool edge = (k0 + BC - 1 > q0) || (k0 + BC > T);
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const int row = q0 + 4 * ty + i;
      float mx = -INFINITY;
#pragma unroll
      for (int j = 0; j < 4; ++j) {
        const int col = k0 + tx + NTX * j;
        float x = s[i][j] * scaleLog2;
        if (edge && (col > row || col >= T)) x = -INFINITY;
        s[i][j] = x;
        mx = fmaxf(mx, x);
      }
#pragma unroll
      for (int off = NTX / 2; off > 0; off >>= 1) mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, off));
      const float mNew = fmaxf(m[i], mx);
      const float mUse = mNew == -INFINITY ? 0.0f : mNew;
      const float alpha = exp2f(m[i] - mUse);
      float rs = 0.0f;
#pragma unroll
      for (int j = 0; j < 4; ++j) {
        const float p = exp2f(s[i][j] - mUse);
        s[i][j] = p;
        rs += p;
      }
#pragma unroll
      for (int off = NTX / 2; off > 0; off >>= 1) rs += __shfl_xor_sync(0xffffffffu, rs, off);
      l[i] = l[i] * alpha + rs;
      m[i] = mNew;
#pragma unroll
      for (int c = 0; c < DC; ++c) o[i][c] *= alpha;
#pragma unroll
      for (int j = 0; j < 4; ++j) sP[(4 * ty + i) * LDP + tx + NTX * j] = s[i][j];
    }
    __syncthreads();
    tileAccum<D, BC, DC>(o, sP, sV, ty, tx);
  }
  const int nCols = attnChunkColumns(DC * tx, DC, dAct);
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const int row = q0 + 4 * ty + i;
    if (row >= T) continue;
    const float inv = 1.0f / l[i];
    if (nCols > 0) storeRow<DC>(out + base + static_cast<size_t>(row) * ld + DC * tx, o[i], inv, nCols);
    if (tx == 0) lse[static_cast<size_t>(bh) * T + row] = (m[i] + log2f(l[i])) * kLn2;
  }
}

// ---- backward: delta ------------------------------------------------------------------------
__global__ void attnDeltaKernel(const float* __restrict__ out, const float* __restrict__ dout,
                                float* __restrict__ delta, int rows, int T, int H, int D) {
  const int lane = threadIdx.x & 31;
  const int row = blockIdx.x * (blockDim.x / 32) + (threadIdx.x >> 5);  // (b*T + t)*H + h
  if (row >= rows) return;
  const float* o = out + static_cast<size_t>(row) * D;
  const float* g = dout + static_cast<size_t>(row) * D;
  float s = 0.0f;
  for (int c = lane; c < D; c += 32) s += o[c] * g[c];
  s = warpSum(s);
  if (lane == 0) {
    const int h = row % H, t = (row / H) % T, b = row / (H * T);
    delta[(static_cast<size_t>(b) * H + h) * T + t] = s;
  }
}

// ---- backward: dk, dv (rows = keys) ----------------------------------------------------------
template <int D, int BR, int BC>
__global__ void __launch_bounds__(Cfg<D, BR, BC>::NT, 2)
    attnBackwardKVKernel(const float* __restrict__ q, const float* __restrict__ k,
                         const float* __restrict__ v, const float* __restrict__ dout,
                         const float* __restrict__ lse, const float* __restrict__ delta,
                         float* __restrict__ dk, float* __restrict__ dv, int T, int H, int dAct,
                         float scaleLog2, float scale) {
  using C = Cfg<D, BR, BC>;
  constexpr int NTX = C::NTX, DC = C::DC, LDD = C::LDD, LDP = C::LDP, NT = C::NT;
  extern __shared__ float4 smem4[];
  float* sK = reinterpret_cast<float*>(smem4);
  float* sV = sK + BR * LDD;
  float* sQ = sV + BR * LDD;
  float* sdO = sQ + BC * LDD;
  float* sP = sdO + BC * LDD;
  float* sL = sP + BR * LDP;
  float* sDl = sL + BC;
  const int tid = threadIdx.x, tx = tid % NTX, ty = tid / NTX;
  const int bh = blockIdx.y, b = bh / H, h = bh % H;
  const size_t ld = static_cast<size_t>(H) * dAct;
  const size_t base = static_cast<size_t>(b) * T * ld + static_cast<size_t>(h) * dAct;
  const int k0 = blockIdx.x * BR;  // key tile 0 has the most query tiles: scheduled first
  const float* lseRow = lse + static_cast<size_t>(bh) * T;
  const float* deltaRow = delta + static_cast<size_t>(bh) * T;

  loadTile<BR, D, NT>(sK, k + base, k0, T, ld, dAct);
  loadTile<BR, D, NT>(sV, v + base, k0, T, ld, dAct);
  float dkA[4][DC], dvA[4][DC];
#pragma unroll
  for (int i = 0; i < 4; ++i)
#pragma unroll
    for (int c = 0; c < DC; ++c) dkA[i][c] = dvA[i][c] = 0.0f;

  for (int q0 = (k0 / BC) * BC; q0 < T; q0 += BC) {
    __syncthreads();
    loadTile<BC, D, NT>(sQ, q + base, q0, T, ld, dAct);
    loadTile<BC, D, NT>(sdO, dout + base, q0, T, ld, dAct);
    for (int c = tid; c < BC; c += NT) {
      const int qq = q0 + c;
      sL[c] = qq < T ? lseRow[qq] * kLog2e : 0.0f;
      sDl[c] = qq < T ? deltaRow[qq] : 0.0f;
    }
    __syncthreads();
    float s[4][4], dp[4][4];
#pragma unroll
    for (int i = 0; i < 4; ++i)
#pragma unroll
      for (int j = 0; j < 4; ++j) s[i][j] = dp[i][j] = 0.0f;
    tileDot<D, NTX>(s, sK, sQ, ty, tx);    // S^T: keys x queries
    tileDot<D, NTX>(dp, sV, sdO, ty, tx);  // dP^T = V dO^T
    const bool edge = (q0 < k0 + BR) || (q0 + BC > T) || (k0 + BR > T);
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const int key = k0 + 4 * ty + i;
#pragma unroll
      for (int j = 0; j < 4; ++j) {
        const int c = tx + NTX * j;
        const int qq = q0 + c;
        float p = exp2f(s[i][j] * scaleLog2 - sL[c]);
        if (edge && (qq < key || qq >= T || key >= T)) p = 0.0f;
        dp[i][j] = p * (dp[i][j] - sDl[c]);
        sP[(4 * ty + i) * LDP + c] = p;
      }
    }
    __syncthreads();
    tileAccum<D, BC, DC>(dvA, sP, sdO, ty, tx);  // dV += P^T dO
    __syncthreads();
#pragma unroll
    for (int i = 0; i < 4; ++i)
#pragma unroll
      for (int j = 0; j < 4; ++j) sP[(4 * ty + i) * LDP + tx + NTX * j] = dp[i][j];
    __syncthreads();
    tileAccum<D, BC, DC>(dkA, sP, sQ, ty, tx);  // dK += dS^T Q
  }
  const int nCols = attnChunkColumns(DC * tx, DC, dAct);
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const int key = k0 + 4 * ty + i;
    if (key >= T || nCols == 0) continue;
    const size_t off = base + static_cast<size_t>(key) * ld + DC * tx;
    storeRow<DC>(dk + off, dkA[i], scale, nCols);
    storeRow<DC>(dv + off, dvA[i], 1.0f, nCols);
  }
}

// ---- backward: dq (rows = queries) -----------------------------------------------------------
template <int D, int BR, int BC>
__global__ void __launch_bounds__(Cfg<D, BR, BC>::NT, 2)
    attnBackwardQKernel(const float* __restrict__ q, const float* __restrict__ k, const float* __restrict__ v,
                        const float* __restrict__ dout, const float* __restrict__ lse,
                        const float* __restrict__ delta, float* __restrict__ dq, int T, int H, int dAct,
                        float scaleLog2, float scale) {
  using C = Cfg<D, BR, BC>;
  constexpr int NTX = C::NTX, DC = C::DC, LDD = C::LDD, LDP = C::LDP, NT = C::NT;
  extern __shared__ float4 smem4[];
  float* sQ = reinterpret_cast<float*>(smem4);
  float* sdO = sQ + BR * LDD;
  float* sK = sdO + BR * LDD;
  float* sV = sK + BC * LDD;
  float* sP = sV + BC * LDD;
  const int tid = threadIdx.x, tx = tid % NTX, ty = tid / NTX;
  const int numQT = (T + BR - 1) / BR;
  const int qt = numQT - 1 - static_cast<int>(blockIdx.x);
  const int bh = blockIdx.y, b = bh / H, h = bh % H;
  const size_t ld = static_cast<size_t>(H) * dAct;
  const size_t base = static_cast<size_t>(b) * T * ld + static_cast<size_t>(h) * dAct;
  const int q0 = qt * BR;

  loadTile<BR, D, NT>(sQ, q + base, q0, T, ld, dAct);
  loadTile<BR, D, NT>(sdO, dout + base, q0, T, ld, dAct);
  float rowL[4], rowD[4], dqA[4][DC];
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const int row = q0 + 4 * ty + i;
    rowL[i] = row < T ? lse[static_cast<size_t>(bh) * T + row] * kLog2e : 0.0f;
    rowD[i] = row < T ? delta[static_cast<size_t>(bh) * T + row] : 0.0f;
#pragma unroll
    for (int c = 0; c < DC; ++c) dqA[i][c] = 0.0f;
  }
  const int kEnd = min(T, q0 + BR);
  for (int k0 = 0; k0 < kEnd; k0 += BC) {
    __syncthreads();
    loadTile<BC, D, NT>(sK, k + base, k0, T, ld, dAct);
    loadTile<BC, D, NT>(sV, v + base, k0, T, ld, dAct);
    __syncthreads();
    float s[4][4], dp[4][4];
#pragma unroll
    for (int i = 0; i < 4; ++i)
#pragma unroll
      for (int j = 0; j < 4; ++j) s[i][j] = dp[i][j] = 0.0f;
    tileDot<D, NTX>(s, sQ, sK, ty, tx);
    tileDot<D, NTX>(dp, sdO, sV, ty, tx);
    const bool edge = (k0 + BC - 1 > q0) || (k0 + BC > T);
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const int row = q0 + 4 * ty + i;
#pragma unroll
      for (int j = 0; j < 4; ++j) {
        const int key = k0 + tx + NTX * j;
        float p = exp2f(s[i][j] * scaleLog2 - rowL[i]);
        if (edge && (key > row || key >= T)) p = 0.0f;
        sP[(4 * ty + i) * LDP + tx + NTX * j] = p * (dp[i][j] - rowD[i]);
      }
    }
    __syncthreads();
    tileAccum<D, BC, DC>(dqA, sP, sK, ty, tx);  // dQ += dS K
  }
  const int nCols = attnChunkColumns(DC * tx, DC, dAct);
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const int row = q0 + 4 * ty + i;
    if (row >= T || nCols == 0) continue;
    storeRow<DC>(dq + base + static_cast<size_t>(row) * ld + DC * tx, dqA[i], scale, nCols);
  }
}

// ---- host dispatch ----------------------------------------------------------------------------
template <typename K>
void allowSmem(K kernel, size_t bytes) {
  if (bytes > 48 * 1024)
    PRIMAL_CUDA_CHECK(
        cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(bytes)));
}

struct AttnArgs {
  const float *q, *k, *v, *out, *lse, *dout;
  float *outW, *lseW, *dq, *dk, *dv, *delta;
  int B, T, H, dAct;
  float scaleLog2, scale;
  cudaStream_t st;
};

template <int D, int BR, int BC>
void runForward(const AttnArgs& a) {
  constexpr size_t smem = fwdSmemBytes<D, BR, BC>();
  auto kern = attnForwardKernel<D, BR, BC>;
  allowSmem(kern, smem);
  const dim3 grid((a.T + BR - 1) / BR, a.B * a.H);
  kern<<<grid, Cfg<D, BR, BC>::NT, smem, a.st>>>(a.q, a.k, a.v, a.outW, a.lseW, a.T, a.H, a.dAct,
                                                 a.scaleLog2);
  PRIMAL_KERNEL_CHECK("attentionForward");
}

template <int D, int BR, int BC>
void runBackward(const AttnArgs& a) {
  constexpr size_t smemKV = bwdKVSmemBytes<D, BR, BC>();
  constexpr size_t smemQ = bwdQSmemBytes<D, BR, BC>();
  auto kv = attnBackwardKVKernel<D, BR, BC>;
  auto kq = attnBackwardQKernel<D, BR, BC>;
  allowSmem(kv, smemKV);
  allowSmem(kq, smemQ);
  const dim3 grid((a.T + BR - 1) / BR, a.B * a.H);
  kv<<<grid, Cfg<D, BR, BC>::NT, smemKV, a.st>>>(a.q, a.k, a.v, a.dout, a.lse, a.delta, a.dk, a.dv, a.T, a.H,
                                                 a.dAct, a.scaleLog2, a.scale);
  PRIMAL_KERNEL_CHECK("attentionBackwardKV");
  kq<<<grid, Cfg<D, BR, BC>::NT, smemQ, a.st>>>(a.q, a.k, a.v, a.dout, a.lse, a.delta, a.dq, a.T, a.H, a.dAct,
                                                a.scaleLog2, a.scale);
  PRIMAL_KERNEL_CHECK("attentionBackwardQ");
}

// PRIMAL_CUDA_ATTN_TILE=32 forces the 32x32 tiles wherever they fit (for tuning, and for testing
// on a large-memory GPU the path that GPUs with less shared memory per block take). Read on every
// call, like PRIMAL_CUDA_ATTN: tests switch it between calls.
bool forceSmallTiles() {
  const char* e = std::getenv("PRIMAL_CUDA_ATTN_TILE");
  return e && std::strcmp(e, "32") == 0;
}

// Picks 64x64 tiles when they fit the device's shared memory per block, else 32x32 (e.g. sm_61's
// 48 KB or sm_86's 99 KB for D = 128), for the padded head size D.
template <int D>
void dispatch(const AttnArgs& a, bool backward, size_t optin) {
  const bool big = !forceSmallTiles();
  if (!backward) {
    if (big && fwdSmemBytes<D, 64, 64>() <= optin) return runForward<D, 64, 64>(a);
    if (fwdSmemBytes<D, 32, 32>() <= optin) return runForward<D, 32, 32>(a);
  } else {
    if (big && std::max(bwdKVSmemBytes<D, 64, 64>(), bwdQSmemBytes<D, 64, 64>()) <= optin)
      return runBackward<D, 64, 64>(a);
    if (std::max(bwdKVSmemBytes<D, 32, 32>(), bwdQSmemBytes<D, 32, 32>()) <= optin)
      return runBackward<D, 32, 32>(a);
  }
  throw Error("attention (cuda): head dim " + std::to_string(a.dAct) +
              " needs more shared memory per block than this GPU offers (" + std::to_string(optin / 1024) +
              " KB)");
}

void dispatchD(const AttnArgs& a, bool backward, size_t optin) {
  switch (attnPaddedHeadDim(a.dAct)) {
    case 16:
      return dispatch<16>(a, backward, optin);
    case 32:
      return dispatch<32>(a, backward, optin);
    case 64:
      return dispatch<64>(a, backward, optin);
    case 128:
      return dispatch<128>(a, backward, optin);
    default:
      throw Error("attention (cuda): head dim D = " + std::to_string(a.dAct) +
                  " is not supported (needs D % 4 == 0 and D <= 128)");
  }
}

// PRIMAL_CUDA_ATTN=simt (default, these fp32 kernels) or tc (tensor cores, sm_80+, opt-in:
// kernels_attention_tc.cu; falls back to simt where unsupported). Read on every call: one getenv
// per layer is negligible, and tests switch it between calls.
bool wantTensorCores() {
  const char* e = std::getenv("PRIMAL_CUDA_ATTN");
  if (!e || !*e || std::strcmp(e, "simt") == 0) return false;
  if (std::strcmp(e, "tc") == 0) return true;
  throw Error(std::string("PRIMAL_CUDA_ATTN must be simt or tc, got '") + e + "'");
}

void checkAligned(const float* p, const char* what) {
  if (!aligned16(p)) throw Error(std::string("attention (cuda): ") + what + " must be 16-byte aligned");
}

}  // namespace

void launchAttentionForward(const float* q, const float* k, const float* v, float* out, float* lse, int B,
                            int T, int H, int D, size_t smemOptin, cudaStream_t st) {
  if (B <= 0 || T <= 0 || H <= 0) return;
  checkAligned(q, "q");
  checkAligned(k, "k");
  checkAligned(v, "v");
  checkAligned(out, "out");
  if (wantTensorCores() && tryAttentionForwardTc(q, k, v, out, lse, B, T, H, D, smemOptin, st)) return;
  AttnArgs a{};
  a.q = q;
  a.k = k;
  a.v = v;
  a.outW = out;
  a.lseW = lse;
  a.B = B;
  a.T = T;
  a.H = H;
  a.dAct = D;
  a.scale = 1.0f / sqrtf(static_cast<float>(D));
  a.scaleLog2 = a.scale * kLog2e;
  a.st = st;
  dispatchD(a, false, smemOptin);
}

size_t attentionBackwardScratchBytes(int B, int T, int H) {
  return sizeof(float) * static_cast<size_t>(B) * T * H;
}

void launchAttentionBackward(const float* q, const float* k, const float* v, const float* out,
                             const float* lse, const float* dout, float* dq, float* dk, float* dv, int B,
                             int T, int H, int D, float* scratch, size_t smemOptin, cudaStream_t st) {
  if (B <= 0 || T <= 0 || H <= 0) return;
  for (auto pr : {std::make_pair(q, "q"), std::make_pair(k, "k"), std::make_pair(v, "v"),
                  std::make_pair(dout, "dout"), std::make_pair(static_cast<const float*>(dq), "dq"),
                  std::make_pair(static_cast<const float*>(dk), "dk"),
                  std::make_pair(static_cast<const float*>(dv), "dv")})
    checkAligned(pr.first, pr.second);
  const int rows = B * T * H;
  attnDeltaKernel<<<(rows + 7) / 8, 256, 0, st>>>(out, dout, scratch, rows, T, H, D);
  PRIMAL_KERNEL_CHECK("attentionDelta");
  if (wantTensorCores() &&
      tryAttentionBackwardTc(q, k, v, dout, lse, scratch, dq, dk, dv, B, T, H, D, smemOptin, st))
    return;
  AttnArgs a{};
  a.q = q;
  a.k = k;
  a.v = v;
  a.out = out;
  a.lse = lse;
  a.dout = dout;
  a.dq = dq;
  a.dk = dk;
  a.dv = dv;
  a.delta = scratch;
  a.B = B;
  a.T = T;
  a.H = H;
  a.dAct = D;
  a.scale = 1.0f / sqrtf(static_cast<float>(D));
  a.scaleLog2 = a.scale * kLog2e;
  a.st = st;
  dispatchD(a, true, smemOptin);
}

}  // namespace cuda
}  // namespace primal
