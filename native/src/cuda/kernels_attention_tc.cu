// Causal attention on tensor cores (sm_80+): bf16 WMMA m16n16k16 with fp32 accumulation.
// Opt-in through PRIMAL_CUDA_ATTN=tc (kernels_attention.cu selects); the fp32 SIMT kernels stay the
// default and the fallback.
//
// Same contract as the fp32 kernels: q, k, v, out, dout, dq, dk, dv are fp32 [B, T, H, D] (row
// stride H*D); lse and delta are fp32 [B, H, T]; lse[row] = ln sum_{j <= row} exp(scale * q.k_j)
// with scale = 1/sqrt(D), so either backward accepts either forward's lse.
//
// Precision: Q, K, V, dO tiles are rounded to bf16 (nearest even) once, when a block copies them
// from global memory into shared memory; P and dS are rounded to bf16 as MMA operands. Every MMA
// accumulates in fp32, and the softmax statistics (running max, sum, lse), delta and the output
// accumulators are fp32.
//
// Structure (the same three passes as the fp32 kernels, so nothing is accumulated with atomics
// and the results are deterministic):
//   forward      a block owns 64 query rows, loops over 64-key tiles (online softmax);
//   backward dkv a block owns 64 keys, loops over 64-query tiles (recomputes P from q, k, lse);
//   backward dq  a block owns 64 query rows, loops over 64-key tiles.
// 4 warps per block; warp w owns rows 16w..16w+15 of the block's 64 and does every MMA for them.
// The WMMA accumulator layout is opaque, so a score tile (16 x 64 per warp) goes through a
// per-warp fp32 staging area in shared memory: lanes 2r and 2r+1 own row r of it (columns
// 8j + 4*(lane & 1) .. +3), apply the mask and the softmax there, and write P (or dS) back as a
// bf16 tile that is the A operand of the next MMA. In the forward the output accumulator lives
// in the same lane layout (registers), so the online-softmax rescale is a plain multiply: each
// key tile's P V goes into fresh fragments, through the staging area, then o = o * alpha + PV.
// Tiles on or past the diagonal (and past T) skip the 16-wide blocks that no row of the warp can
// see; the masked elements are then excluded by index, never by the stale staged values.
//
// Shared memory (bf16 tiles padded to D + 8 elements per row and P/dS to 72, fp32 staging to
// max(64, D) + 8 floats: WMMA needs 32-byte aligned tile pointers and a leading dimension that is a
// multiple of 8 bf16 / 4 floats; the padding also puts consecutive rows on distinct banks):
//   D = 64: forward 54 KB, backward dkv 72.5 KB, backward dq 63 KB (3-4 blocks per H100 SM).
// Head sizes: D padded to 32, 64 or 128 (real D a multiple of 4, zero-filled beyond it).
#include <cuda_bf16.h>
#include <mma.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>

#include "cuda_kernels.cuh"

// Tensor-core device code only for sm_80+; older device passes compile a trap instead (bf16 WMMA
// does not exist there) and the host never launches it (tcDeviceReady below).
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
#define PRIMAL_ATTN_TC_DEVICE 1
#endif

namespace primal {
namespace cuda {

namespace {

constexpr float kTcLog2e = 1.4426950408889634f;
constexpr int kTcWarps = 4;
constexpr int kTcThreads = 32 * kTcWarps;
constexpr int kTcRows = 16 * kTcWarps;  // rows a block owns (16 per warp)
constexpr int kTcCols = 64;             // columns of the tiles it loops over
// The causal tile logic assumes row and column tiles start at the same multiples of 64.
static_assert(kTcRows == kTcCols, "row and column tiles must have the same size");
// Blocks per SM the kernels are register-limited for (__launch_bounds__): D <= 64 forward 4
// (128 registers; its 54 KB of shared memory also allow 4 on an H100), backward 3 (168; 63 and
// 72.5 KB). D = 128 needs more registers for its accumulators: 2 (a few bytes of spill remain).

template <int D>
struct TcCfg {
  static_assert(D == 32 || D == 64 || D == 128, "padded head size");
  static constexpr int LDH = D + 8;                            // bf16 [64][D] tiles
  static constexpr int LDP = kTcCols + 8;                      // bf16 [16][64] P / dS per warp
  static constexpr int LDS = (D > kTcCols ? D : kTcCols) + 8;  // fp32 [16][max(64, D)] staging
  static constexpr size_t kTile = size_t(kTcRows) * LDH * 2;   // bytes
  static constexpr size_t kStage = size_t(kTcWarps) * 16 * LDS * 4;
  static constexpr size_t kPbuf = size_t(kTcWarps) * 16 * LDP * 2;
  static constexpr size_t kStats = size_t(2) * kTcCols * 4;                  // lse and delta of a query tile
  static constexpr size_t kFwd = 3 * kTile + kStage + kPbuf;                 // Q, K, V, staging, P
  static constexpr size_t kBwdKV = 4 * kTile + kStage + 2 * kPbuf + kStats;  // K, V, Q, dO, .., P, dS
  static constexpr size_t kBwdQ = 4 * kTile + kStage + kPbuf;                // Q, dO, K, V, staging, dS
  static_assert(kTile % 128 == 0 && kStage % 128 == 0 && kPbuf % 128 == 0,
                "sub-buffers keep the 32-byte alignment WMMA needs");
  static_assert((16 * LDH * 2) % 32 == 0 && (16 * LDP * 2) % 32 == 0 && (16 * LDS * 4) % 32 == 0,
                "16-row blocks keep the 32-byte alignment WMMA needs");
};

#ifdef PRIMAL_ATTN_TC_DEVICE
constexpr float kTcLn2 = 0.6931471805599453f;
namespace wmma = nvcuda::wmma;
using bf16 = __nv_bfloat16;
using FragA = wmma::fragment<wmma::matrix_a, 16, 16, 16, bf16, wmma::row_major>;
// matrix_b read from an [n][k] row-major tile (col_major view): B = tile^T, e.g. K^T from sK.
using FragBT = wmma::fragment<wmma::matrix_b, 16, 16, 16, bf16, wmma::col_major>;
// matrix_b read from a [k][n] row-major tile, e.g. V from sV.
using FragB = wmma::fragment<wmma::matrix_b, 16, 16, 16, bf16, wmma::row_major>;
using FragC = wmma::fragment<wmma::accumulator, 16, 16, 16, float>;

// Fragment loads from shared memory. wmma::load_matrix_sync passes a generic pointer (the PTX
// is a generic wmma.load); these are the same instructions with the .shared state space, so
// they cannot become generic loads. volatile + "memory": ordered like the other shared accesses
// (never hoisted out of a tile loop whose shared tile changes). Register contents are exactly
// what load_matrix_sync produces (same instruction), so the fragments are used with the API.
__device__ __forceinline__ uint32_t smemAddr(const void* p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}
#define PRIMAL_WMMA_LD(KIND)                                                            \
  uint32_t* x = reinterpret_cast<uint32_t*>(f.x);                                       \
  asm volatile("wmma.load." KIND ".m16n16k16.shared.bf16 {%0, %1, %2, %3}, [%4], %5;\n" \
               : "=r"(x[0]), "=r"(x[1]), "=r"(x[2]), "=r"(x[3])                         \
               : "r"(smemAddr(p)), "r"(ld)                                              \
               : "memory")
__device__ __forceinline__ void loadA(FragA& f, const bf16* p, unsigned ld) {
  PRIMAL_WMMA_LD("a.sync.aligned.row");
}
__device__ __forceinline__ void loadBT(FragBT& f, const bf16* p, unsigned ld) {
  PRIMAL_WMMA_LD("b.sync.aligned.col");
}
__device__ __forceinline__ void loadB(FragB& f, const bf16* p, unsigned ld) {
  PRIMAL_WMMA_LD("b.sync.aligned.row");
}
#undef PRIMAL_WMMA_LD
static_assert(sizeof(FragA::x) == 16 && sizeof(FragBT::x) == 16 && sizeof(FragB::x) == 16,
              "bf16 m16n16k16 A/B fragments are 4 registers");

__device__ __forceinline__ uint32_t packBf16(float lo, float hi) {
  const __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);  // .x (lower address) = lo
  uint32_t u;
  memcpy(&u, &v, sizeof(u));
  return u;
}

// Rows [row0, row0 + 64) of a [T, *] fp32 matrix (row stride ld floats) into the bf16 tile
// s[64][D + 8]; rows >= T and columns >= dAct are zero. All loads are issued before the stores.
template <int D>
__device__ __forceinline__ void loadTileBf16(bf16* s, const float* __restrict__ g, int row0, int T, size_t ld,
                                             int dAct) {
  constexpr int V4 = D / 4, LDH = TcCfg<D>::LDH, N = kTcRows * V4 / kTcThreads;
  static_assert(kTcRows * V4 % kTcThreads == 0, "whole float4s per thread");
  float4 v[N];
#pragma unroll
  for (int i = 0; i < N; ++i) {
    const int idx = threadIdx.x + i * kTcThreads, r = idx / V4, c = (idx % V4) * 4;
    v[i] = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
    if (row0 + r < T && c < dAct)
      v[i] = __ldg(reinterpret_cast<const float4*>(g + static_cast<size_t>(row0 + r) * ld + c));
  }
#pragma unroll
  for (int i = 0; i < N; ++i) {
    const int idx = threadIdx.x + i * kTcThreads, r = idx / V4, c = (idx % V4) * 4;
    *reinterpret_cast<uint2*>(s + r * LDH + c) =
        make_uint2(packBf16(v[i].x, v[i].y), packBf16(v[i].z, v[i].w));
  }
}

// A warp's 16 x D fp32 staging rows times mul into global rows row0 + r (< T), columns < dAct.
// Consecutive lanes write consecutive float4s of a row (coalesced). A float4 that starts inside
// the head ends inside it (dAct is a multiple of 4), so nothing lands in the next head's columns.
template <int D>
__device__ __forceinline__ void storeRows(float* __restrict__ g, const float* st, int row0, int T, size_t ld,
                                          int dAct, float mul, int lane) {
  constexpr int V4 = D / 4, LDS = TcCfg<D>::LDS;
#pragma unroll
  for (int idx = lane; idx < 16 * V4; idx += 32) {
    const int r = idx / V4, c = (idx % V4) * 4;
    if (row0 + r >= T || c >= dAct) continue;
    float4 x = *reinterpret_cast<const float4*>(st + r * LDS + c);
    x.x *= mul;
    x.y *= mul;
    x.z *= mul;
    x.w *= mul;
    *reinterpret_cast<float4*>(g + static_cast<size_t>(row0 + r) * ld + c) = x;
  }
}

// For the 16-column blocks j = jBase .. jBase + NW - 1 that lie in [j0, j1) (others untouched):
// acc = A(16 rows at sA) . B(rows 16j..16j+15 of sB)^T over D, stored to the warp's staging at
// columns 16j. Both tiles are row-major [rows][D + 8] bf16: S = Q K^T, S^T = K Q^T, dP = dO V^T...
template <int D, int NW>
__device__ __forceinline__ void scoresToStage(float* st, const bf16* sA, const bf16* sB, int jBase, int j0,
                                              int j1) {
  constexpr int LDH = TcCfg<D>::LDH, LDS = TcCfg<D>::LDS;
  FragC acc[NW];
#pragma unroll
  for (int i = 0; i < NW; ++i) wmma::fill_fragment(acc[i], 0.0f);
#pragma unroll 1  // unrolled, the compiler hoists every B fragment load (register spills)
  for (int kk = 0; kk < D / 16; ++kk) {
    FragA a;
    loadA(a, sA + 16 * kk, LDH);
#pragma unroll
    for (int i = 0; i < NW; ++i) {
      const int j = jBase + i;
      if (j < j0 || j >= j1) continue;  // warp-uniform
      FragBT b;
      loadBT(b, sB + 16 * j * LDH + 16 * kk, LDH);
      wmma::mma_sync(acc[i], a, b, acc[i]);
    }
  }
#pragma unroll
  for (int i = 0; i < NW; ++i) {
    const int j = jBase + i;
    if (j >= j0 && j < j1) wmma::store_matrix_sync(st + 16 * j, acc[i], LDS, wmma::mem_row_major);
  }
}

// acc[d] += P(16 x 64, bf16 [16][72], blocks j in [j0, j1)) . M(rows 16j.., bf16 [64][D + 8]).
template <int D>
__device__ __forceinline__ void accumulatePM(FragC (&acc)[D / 16], const bf16* sP, const bf16* sM, int j0,
                                             int j1) {
  constexpr int LDH = TcCfg<D>::LDH, LDP = TcCfg<D>::LDP;
#pragma unroll 1  // as above: one block of P at a time
  for (int j = j0; j < j1; ++j) {
    FragA a;
    loadA(a, sP + 16 * j, LDP);
#pragma unroll
    for (int d = 0; d < D / 16; ++d) {
      FragB b;
      loadB(b, sM + 16 * j * LDH + 16 * d, LDH);
      wmma::mma_sync(acc[d], a, b, acc[d]);
    }
  }
}

// Stores fragments acc[d] (16 x D) to the warp's staging rows.
template <int D>
__device__ __forceinline__ void fragsToStage(float* st, const FragC (&acc)[D / 16]) {
#pragma unroll
  for (int d = 0; d < D / 16; ++d)
    wmma::store_matrix_sync(st + 16 * d, acc[d], TcCfg<D>::LDS, wmma::mem_row_major);
}

__device__ __forceinline__ float4 ld4(const float* p) { return *reinterpret_cast<const float4*>(p); }
__device__ __forceinline__ void stBf16x4(bf16* p, float a, float b, float c, float d) {
  *reinterpret_cast<uint2*>(p) = make_uint2(packBf16(a, b), packBf16(c, d));
}
#endif  // PRIMAL_ATTN_TC_DEVICE

// ---- forward ----------------------------------------------------------------------------------
template <int D>
__global__ void __launch_bounds__(kTcThreads, D > 64 ? 2 : 4)
    attnForwardTcKernel(const float* __restrict__ q, const float* __restrict__ k, const float* __restrict__ v,
                        float* __restrict__ out, float* __restrict__ lse, int T, int H, int dAct,
                        float scaleLog2) {
#if defined(__CUDA_ARCH__)
#if __CUDA_ARCH__ >= 800
  using C = TcCfg<D>;
  constexpr int LDH = C::LDH, LDP = C::LDP, LDS = C::LDS, NB = kTcCols / 16, NJ = kTcCols / 8;
  extern __shared__ __align__(128) unsigned char smemTc[];
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  bf16* sQ = reinterpret_cast<bf16*>(smemTc);
  bf16* sK = reinterpret_cast<bf16*>(smemTc + C::kTile);
  bf16* sV = reinterpret_cast<bf16*>(smemTc + 2 * C::kTile);
  float* st = reinterpret_cast<float*>(smemTc + 3 * C::kTile) + warp * 16 * LDS;
  bf16* sP = reinterpret_cast<bf16*>(smemTc + 3 * C::kTile + C::kStage) + warp * 16 * LDP;

  const int numQT = (T + kTcRows - 1) / kTcRows;
  const int qt = numQT - 1 - static_cast<int>(blockIdx.x);  // longest rows first
  const int bh = blockIdx.y, b = bh / H, h = bh % H;
  const size_t ld = static_cast<size_t>(H) * dAct;
  const size_t base = static_cast<size_t>(b) * T * ld + static_cast<size_t>(h) * dAct;
  const int q0 = qt * kTcRows;
  const int w0 = q0 + 16 * warp;                 // this warp's first query row
  const int r = lane >> 1, c0 = 4 * (lane & 1);  // SIMT role: row w0 + r, columns 8j + c0 .. +3
  const int row = w0 + r;
  const bf16* sQw = sQ + 16 * warp * LDH;

  loadTileBf16<D>(sQ, q + base, q0, T, ld, dAct);
  float m = -INFINITY, l = 0.0f, o[D / 8][4];
#pragma unroll
  for (int j = 0; j < D / 8; ++j) o[j][0] = o[j][1] = o[j][2] = o[j][3] = 0.0f;
  const int kEnd = min(T, q0 + kTcRows);
  const int warpEnd = min(T, w0 + 16);  // the warp's rows see keys < warpEnd (and <= their row)
  for (int k0 = 0; k0 < kEnd; k0 += kTcCols) {
    __syncthreads();  // the previous tile's K/V reads are done (first pass: orders the Q load)
    loadTileBf16<D>(sK, k + base, k0, T, ld, dAct);
    loadTileBf16<D>(sV, v + base, k0, T, ld, dAct);
    __syncthreads();
    // 16-key blocks [0, nb) hold every key some row of this warp sees (k0 <= q0 <= w0 < warpEnd).
    const int nb = min(NB, (warpEnd - k0 + 15) / 16);
    scoresToStage<D, NB>(st, sQw, sK, 0, 0, nb);  // S = Q K^T
    __syncwarp();

    // Online softmax on this lane's 32 scores (log2 domain, like the fp32 kernel).
    const bool edge = (k0 + kTcCols - 1 > w0) || (k0 + kTcCols > T);
    float s[NJ][4];
    float mx = -INFINITY;
#pragma unroll
    for (int j = 0; j < NJ; ++j) {
      const float4 x = ld4(st + r * LDS + 8 * j + c0);
      s[j][0] = x.x * scaleLog2;
      s[j][1] = x.y * scaleLog2;
      s[j][2] = x.z * scaleLog2;
      s[j][3] = x.w * scaleLog2;
#pragma unroll
      for (int c = 0; c < 4; ++c) {
        const int col = k0 + 8 * j + c0 + c;
        // Also covers the skipped blocks (their staging holds stale values).
        if (edge && (col > row || col >= T)) s[j][c] = -INFINITY;
        mx = fmaxf(mx, s[j][c]);
      }
    }
    mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
    const float mNew = fmaxf(m, mx);
    const float mUse = mNew == -INFINITY ? 0.0f : mNew;
    const float alpha = exp2f(m - mUse);
    float rs = 0.0f;
#pragma unroll
    for (int j = 0; j < NJ; ++j) {
#pragma unroll
      for (int c = 0; c < 4; ++c) {
        s[j][c] = exp2f(s[j][c] - mUse);
        rs += s[j][c];
      }
      stBf16x4(sP + r * LDP + 8 * j + c0, s[j][0], s[j][1], s[j][2], s[j][3]);
    }
    rs += __shfl_xor_sync(0xffffffffu, rs, 1);
    l = l * alpha + rs;
    m = mNew;
    __syncwarp();  // P complete; every lane is done reading S from the staging

    {  // PV for this tile in fresh fragments, then o = o * alpha + PV in the lane layout
      FragC pv[D / 16];
#pragma unroll
      for (int d = 0; d < D / 16; ++d) wmma::fill_fragment(pv[d], 0.0f);
      accumulatePM<D>(pv, sP, sV, 0, nb);
      fragsToStage<D>(st, pv);
    }
    __syncwarp();
#pragma unroll
    for (int j = 0; j < D / 8; ++j) {
      const float4 x = ld4(st + r * LDS + 8 * j + c0);
      o[j][0] = fmaf(o[j][0], alpha, x.x);
      o[j][1] = fmaf(o[j][1], alpha, x.y);
      o[j][2] = fmaf(o[j][2], alpha, x.z);
      o[j][3] = fmaf(o[j][3], alpha, x.w);
    }
  }
  // out = o / l through the staging (coalesced stores); lse as the fp32 kernel writes it.
  const float inv = 1.0f / l;  // l >= 1: the row's maximum contributes exp2(0)
  __syncwarp();                // every lane is done reading the last PV
#pragma unroll
  for (int j = 0; j < D / 8; ++j)
    *reinterpret_cast<float4*>(st + r * LDS + 8 * j + c0) =
        make_float4(o[j][0] * inv, o[j][1] * inv, o[j][2] * inv, o[j][3] * inv);
  __syncwarp();
  storeRows<D>(out + base, st, w0, T, ld, dAct, 1.0f, lane);
  if ((lane & 1) == 0 && row < T) lse[static_cast<size_t>(bh) * T + row] = (m + log2f(l)) * kTcLn2;
#else
  __trap();
#endif
#endif
}

// ---- backward: dk, dv (a block owns 64 keys) -----------------------------------------------------
template <int D>
__global__ void __launch_bounds__(kTcThreads, D > 64 ? 2 : 3)
    attnBackwardKVTcKernel(const float* __restrict__ q, const float* __restrict__ k,
                           const float* __restrict__ v, const float* __restrict__ dout,
                           const float* __restrict__ lse, const float* __restrict__ delta,
                           float* __restrict__ dk, float* __restrict__ dv, int T, int H, int dAct,
                           float scaleLog2, float scale) {
#if defined(__CUDA_ARCH__)
#if __CUDA_ARCH__ >= 800
  using C = TcCfg<D>;
  constexpr int LDH = C::LDH, LDP = C::LDP, LDS = C::LDS, NB = kTcCols / 16, NJ = kTcCols / 8;
  extern __shared__ __align__(128) unsigned char smemTc[];
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  bf16* sK = reinterpret_cast<bf16*>(smemTc);
  bf16* sV = reinterpret_cast<bf16*>(smemTc + C::kTile);
  bf16* sQ = reinterpret_cast<bf16*>(smemTc + 2 * C::kTile);
  bf16* sdO = reinterpret_cast<bf16*>(smemTc + 3 * C::kTile);
  float* st = reinterpret_cast<float*>(smemTc + 4 * C::kTile) + warp * 16 * LDS;
  bf16* sP = reinterpret_cast<bf16*>(smemTc + 4 * C::kTile + C::kStage) + warp * 16 * LDP;
  bf16* sdS = reinterpret_cast<bf16*>(smemTc + 4 * C::kTile + C::kStage + C::kPbuf) + warp * 16 * LDP;
  float* sL = reinterpret_cast<float*>(smemTc + 4 * C::kTile + C::kStage + 2 * C::kPbuf);
  float* sDl = sL + kTcCols;

  const int bh = blockIdx.y, b = bh / H, h = bh % H;
  const size_t ld = static_cast<size_t>(H) * dAct;
  const size_t base = static_cast<size_t>(b) * T * ld + static_cast<size_t>(h) * dAct;
  const int k0 = blockIdx.x * kTcRows;  // key tile 0 has the most query tiles: scheduled first
  const int w0 = k0 + 16 * warp;        // this warp's first key
  const int r = lane >> 1, c0 = 4 * (lane & 1);
  const int key = w0 + r;
  const float* lseRow = lse + static_cast<size_t>(bh) * T;
  const float* deltaRow = delta + static_cast<size_t>(bh) * T;
  const bf16* sKw = sK + 16 * warp * LDH;
  const bf16* sVw = sV + 16 * warp * LDH;

  loadTileBf16<D>(sK, k + base, k0, T, ld, dAct);
  loadTileBf16<D>(sV, v + base, k0, T, ld, dAct);
  FragC dkAcc[D / 16], dvAcc[D / 16];
#pragma unroll
  for (int d = 0; d < D / 16; ++d) {
    wmma::fill_fragment(dkAcc[d], 0.0f);
    wmma::fill_fragment(dvAcc[d], 0.0f);
  }

  for (int q0 = k0; q0 < T; q0 += kTcCols) {  // queries before k0 see none of these keys
    __syncthreads();  // the previous tile's reads are done (first pass: orders the K/V loads)
    loadTileBf16<D>(sQ, q + base, q0, T, ld, dAct);
    loadTileBf16<D>(sdO, dout + base, q0, T, ld, dAct);
    for (int c = threadIdx.x; c < kTcCols; c += kTcThreads) {
      const int qq = q0 + c;
      sL[c] = qq < T ? lseRow[qq] * kTcLog2e : 0.0f;
      sDl[c] = qq < T ? deltaRow[qq] : 0.0f;
    }
    __syncthreads();
    // 16-query blocks [j0, j1) that see some key of this warp: queries >= w0 and < T. w0 - q0 is
    // a multiple of 16 (negative once q0 is past the warp's keys). Empty when all keys are >= T.
    const int j0 = max(0, (w0 - q0) / 16);
    const int j1 = min(NB, (T - q0 + 15) / 16);
    const bool edge = (q0 < w0 + 16) || (q0 + kTcCols > T) || (w0 + 16 > T);

    // P^T and dS^T in two 32-query halves: P stays in fp32 registers between its two passes
    // (S^T, then dP^T through the same staging) and a half needs 16 of them, not 32.
#pragma unroll 1
    for (int hf = 0; hf < 2; ++hf) {
      const int ja = max(j0, 2 * hf), jb = min(j1, 2 * hf + 2);  // this half's blocks to compute
      __syncwarp();  // every lane is done reading the previous half's dP^T
      scoresToStage<D, 2>(st, sKw, sQ, 2 * hf, ja, jb);  // S^T = K Q^T (keys x queries)
      __syncwarp();
      float p[NJ / 2][4];  // P^T in fp32, kept for dS
#pragma unroll
      for (int j = 0; j < NJ / 2; ++j) {
        const int cb = 32 * hf + 8 * j + c0;  // first of this lane's 4 columns
        const float4 x = ld4(st + r * LDS + cb);
        const float xs[4] = {x.x, x.y, x.z, x.w};
#pragma unroll
        for (int c = 0; c < 4; ++c) {
          const int qq = q0 + cb + c;
          float pv = exp2f(xs[c] * scaleLog2 - sL[cb + c]);
          // Also zeroes the skipped blocks, whose staging holds stale values.
          if (edge && (qq < key || qq >= T || key >= T)) pv = 0.0f;
          p[j][c] = pv;
        }
        stBf16x4(sP + r * LDP + cb, p[j][0], p[j][1], p[j][2], p[j][3]);
      }
      __syncwarp();  // every lane is done reading S^T before dP^T overwrites the staging
      scoresToStage<D, 2>(st, sVw, sdO, 2 * hf, ja, jb);  // dP^T = V dO^T
      __syncwarp();
#pragma unroll
      for (int j = 0; j < NJ / 2; ++j) {
        const int cb = 32 * hf + 8 * j + c0;
        const float4 x = ld4(st + r * LDS + cb);
        const float xs[4] = {x.x, x.y, x.z, x.w};
        float ds[4];
#pragma unroll
        for (int c = 0; c < 4; ++c)  // p == 0 exactly where masked (stale dP there: maybe inf/NaN)
          ds[c] = p[j][c] != 0.0f ? p[j][c] * (xs[c] - sDl[cb + c]) : 0.0f;
        stBf16x4(sdS + r * LDP + cb, ds[0], ds[1], ds[2], ds[3]);
      }
    }
    __syncwarp();
    accumulatePM<D>(dvAcc, sP, sdO, j0, j1);  // dV += P^T dO
    accumulatePM<D>(dkAcc, sdS, sQ, j0, j1);  // dK += dS^T Q (times scale at the end)
  }
  __syncwarp();
  fragsToStage<D>(st, dkAcc);
  __syncwarp();
  storeRows<D>(dk + base, st, w0, T, ld, dAct, scale, lane);
  __syncwarp();
  fragsToStage<D>(st, dvAcc);
  __syncwarp();
  storeRows<D>(dv + base, st, w0, T, ld, dAct, 1.0f, lane);
#else
  __trap();
#endif
#endif
}

// ---- backward: dq (a block owns 64 query rows) ---------------------------------------------------
template <int D>
__global__ void __launch_bounds__(kTcThreads, D > 64 ? 2 : 3)
    attnBackwardQTcKernel(const float* __restrict__ q, const float* __restrict__ k,
                          const float* __restrict__ v, const float* __restrict__ dout,
                          const float* __restrict__ lse, const float* __restrict__ delta,
                          float* __restrict__ dq, int T, int H, int dAct, float scaleLog2, float scale) {
#if defined(__CUDA_ARCH__)
#if __CUDA_ARCH__ >= 800
  using C = TcCfg<D>;
  constexpr int LDH = C::LDH, LDP = C::LDP, LDS = C::LDS, NB = kTcCols / 16, NJ = kTcCols / 8;
  extern __shared__ __align__(128) unsigned char smemTc[];
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  bf16* sQ = reinterpret_cast<bf16*>(smemTc);
  bf16* sdO = reinterpret_cast<bf16*>(smemTc + C::kTile);
  bf16* sK = reinterpret_cast<bf16*>(smemTc + 2 * C::kTile);
  bf16* sV = reinterpret_cast<bf16*>(smemTc + 3 * C::kTile);
  float* st = reinterpret_cast<float*>(smemTc + 4 * C::kTile) + warp * 16 * LDS;
  bf16* sdS = reinterpret_cast<bf16*>(smemTc + 4 * C::kTile + C::kStage) + warp * 16 * LDP;

  const int numQT = (T + kTcRows - 1) / kTcRows;
  const int qt = numQT - 1 - static_cast<int>(blockIdx.x);  // longest rows first
  const int bh = blockIdx.y, b = bh / H, h = bh % H;
  const size_t ld = static_cast<size_t>(H) * dAct;
  const size_t base = static_cast<size_t>(b) * T * ld + static_cast<size_t>(h) * dAct;
  const int q0 = qt * kTcRows;
  const int w0 = q0 + 16 * warp;
  const int r = lane >> 1, c0 = 4 * (lane & 1);
  const int row = w0 + r;
  const bf16* sQw = sQ + 16 * warp * LDH;
  const bf16* sdOw = sdO + 16 * warp * LDH;

  loadTileBf16<D>(sQ, q + base, q0, T, ld, dAct);
  loadTileBf16<D>(sdO, dout + base, q0, T, ld, dAct);
  const float rowL = row < T ? lse[static_cast<size_t>(bh) * T + row] * kTcLog2e : 0.0f;
  const float rowD = row < T ? delta[static_cast<size_t>(bh) * T + row] : 0.0f;
  FragC dqAcc[D / 16];
#pragma unroll
  for (int d = 0; d < D / 16; ++d) wmma::fill_fragment(dqAcc[d], 0.0f);
  const int kEnd = min(T, q0 + kTcRows);
  const int warpEnd = min(T, w0 + 16);
  for (int k0 = 0; k0 < kEnd; k0 += kTcCols) {
    __syncthreads();  // the previous tile's K/V reads are done (first pass: orders the Q/dO loads)
    loadTileBf16<D>(sK, k + base, k0, T, ld, dAct);
    loadTileBf16<D>(sV, v + base, k0, T, ld, dAct);
    __syncthreads();
    const int nb = min(NB, (warpEnd - k0 + 15) / 16);  // as in the forward
    const bool edge = (k0 + kTcCols - 1 > w0) || (k0 + kTcCols > T);

    // dS in two 32-key halves, as in the dK/dV kernel.
#pragma unroll 1
    for (int hf = 0; hf < 2; ++hf) {
      const int jb = min(nb, 2 * hf + 2);
      __syncwarp();                                     // every lane is done reading the previous half's dP
      scoresToStage<D, 2>(st, sQw, sK, 2 * hf, 0, jb);  // S = Q K^T
      __syncwarp();
      float p[NJ / 2][4];
#pragma unroll
      for (int j = 0; j < NJ / 2; ++j) {
        const int cb = 32 * hf + 8 * j + c0;
        const float4 x = ld4(st + r * LDS + cb);
        const float xs[4] = {x.x, x.y, x.z, x.w};
#pragma unroll
        for (int c = 0; c < 4; ++c) {
          const int col = k0 + cb + c;
          float pv = exp2f(xs[c] * scaleLog2 - rowL);
          if (edge && (col > row || col >= T)) pv = 0.0f;  // also the skipped (stale) blocks
          p[j][c] = pv;
        }
      }
      __syncwarp();  // every lane is done reading S before dP overwrites the staging
      scoresToStage<D, 2>(st, sdOw, sV, 2 * hf, 0, jb);  // dP = dO V^T
      __syncwarp();
#pragma unroll
      for (int j = 0; j < NJ / 2; ++j) {
        const int cb = 32 * hf + 8 * j + c0;
        const float4 x = ld4(st + r * LDS + cb);
        const float xs[4] = {x.x, x.y, x.z, x.w};
        float ds[4];
#pragma unroll
        for (int c = 0; c < 4; ++c) ds[c] = p[j][c] != 0.0f ? p[j][c] * (xs[c] - rowD) : 0.0f;
        stBf16x4(sdS + r * LDP + cb, ds[0], ds[1], ds[2], ds[3]);
      }
    }
    __syncwarp();
    accumulatePM<D>(dqAcc, sdS, sK, 0, nb);  // dQ += dS K (times scale at the end)
  }
  __syncwarp();
  fragsToStage<D>(st, dqAcc);
  __syncwarp();
  storeRows<D>(dq + base, st, w0, T, ld, dAct, scale, lane);
#else
  __trap();
#endif
#endif
}

// ---- host side ----------------------------------------------------------------------------------
template <typename K>
void allowSmemTc(K kernel, size_t bytes) {
  if (bytes > 48 * 1024)
    PRIMAL_CUDA_CHECK(
        cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(bytes)));
}

// The template head size for a real one, 0 when unsupported (same rule as the fp32 kernels:
// a multiple of 4 up to 128).
int paddedHeadDim(int D) {
  if (D <= 0 || D % 4 != 0 || D > 128) return 0;
  return D <= 32 ? 32 : (D <= 64 ? 64 : 128);
}

// True when the current device is sm_80+ and this binary has sm_80+ code for it (a build for an
// older architecture only, JIT-compiled on a newer GPU, holds the trap bodies). Cached per device.
bool tcDeviceReady() {
  int dev = 0;
  PRIMAL_CUDA_CHECK(cudaGetDevice(&dev));
  constexpr int kMaxDevices = 64;
  static std::atomic<int> cache[kMaxDevices];  // 0 unknown, 1 ready, 2 not (zero-initialized)
  const bool cacheable = dev >= 0 && dev < kMaxDevices;
  int c = cacheable ? cache[dev].load(std::memory_order_relaxed) : 0;
  if (c == 0) {
    int major = 0;
    PRIMAL_CUDA_CHECK(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev));
    bool ok = major >= 8;
    if (ok) {
      cudaFuncAttributes fa{};
      PRIMAL_CUDA_CHECK(cudaFuncGetAttributes(&fa, attnForwardTcKernel<64>));
      ok = fa.ptxVersion >= 80 && fa.binaryVersion >= 80;
    }
    c = ok ? 1 : 2;
    if (cacheable) cache[dev].store(c, std::memory_order_relaxed);
  }
  return c == 1;
}

struct TcArgs {
  const float *q, *k, *v, *dout, *lse, *delta;
  float *out, *lseOut, *dq, *dk, *dv;
  int B, T, H, dAct;
  float scaleLog2, scale;
  cudaStream_t st;
};

template <int D>
bool runForwardTc(const TcArgs& a, size_t optin) {
  constexpr size_t smem = TcCfg<D>::kFwd;
  if (smem > optin) return false;
  auto kern = attnForwardTcKernel<D>;
  allowSmemTc(kern, smem);
  const dim3 grid((a.T + kTcRows - 1) / kTcRows, a.B * a.H);
  kern<<<grid, kTcThreads, smem, a.st>>>(a.q, a.k, a.v, a.out, a.lseOut, a.T, a.H, a.dAct, a.scaleLog2);
  PRIMAL_KERNEL_CHECK("attentionForwardTc");
  return true;
}

template <int D>
bool runBackwardTc(const TcArgs& a, size_t optin) {
  constexpr size_t smemKV = TcCfg<D>::kBwdKV, smemQ = TcCfg<D>::kBwdQ;
  if (std::max(smemKV, smemQ) > optin) return false;
  auto kv = attnBackwardKVTcKernel<D>;
  auto kq = attnBackwardQTcKernel<D>;
  allowSmemTc(kv, smemKV);
  allowSmemTc(kq, smemQ);
  const dim3 grid((a.T + kTcRows - 1) / kTcRows, a.B * a.H);
  kv<<<grid, kTcThreads, smemKV, a.st>>>(a.q, a.k, a.v, a.dout, a.lse, a.delta, a.dk, a.dv, a.T, a.H, a.dAct,
                                         a.scaleLog2, a.scale);
  PRIMAL_KERNEL_CHECK("attentionBackwardKVTc");
  kq<<<grid, kTcThreads, smemQ, a.st>>>(a.q, a.k, a.v, a.dout, a.lse, a.delta, a.dq, a.T, a.H, a.dAct,
                                        a.scaleLog2, a.scale);
  PRIMAL_KERNEL_CHECK("attentionBackwardQTc");
  return true;
}

TcArgs makeArgs(int B, int T, int H, int D, cudaStream_t st) {
  TcArgs a{};
  a.B = B;
  a.T = T;
  a.H = H;
  a.dAct = D;
  a.scale = 1.0f / sqrtf(static_cast<float>(D));  // as the fp32 kernels
  a.scaleLog2 = a.scale * kTcLog2e;
  a.st = st;
  return a;
}

}  // namespace

bool tryAttentionForwardTc(const float* q, const float* k, const float* v, float* out, float* lse, int B,
                           int T, int H, int D, size_t smemOptin, cudaStream_t st) {
  const int Dp = paddedHeadDim(D);
  if (Dp == 0 || B <= 0 || T <= 0 || H <= 0 || !tcDeviceReady()) return false;
  TcArgs a = makeArgs(B, T, H, D, st);
  a.q = q;
  a.k = k;
  a.v = v;
  a.out = out;
  a.lseOut = lse;
  if (Dp == 32) return runForwardTc<32>(a, smemOptin);
  if (Dp == 64) return runForwardTc<64>(a, smemOptin);
  return runForwardTc<128>(a, smemOptin);
}

bool tryAttentionBackwardTc(const float* q, const float* k, const float* v, const float* dout,
                            const float* lse, const float* delta, float* dq, float* dk, float* dv, int B,
                            int T, int H, int D, size_t smemOptin, cudaStream_t st) {
  const int Dp = paddedHeadDim(D);
  if (Dp == 0 || B <= 0 || T <= 0 || H <= 0 || !tcDeviceReady()) return false;
  TcArgs a = makeArgs(B, T, H, D, st);
  a.q = q;
  a.k = k;
  a.v = v;
  a.dout = dout;
  a.lse = lse;
  a.delta = delta;
  a.dq = dq;
  a.dk = dk;
  a.dv = dv;
  if (Dp == 32) return runBackwardTc<32>(a, smemOptin);
  if (Dp == 64) return runBackwardTc<64>(a, smemOptin);
  return runBackwardTc<128>(a, smemOptin);
}

}  // namespace cuda
}  // namespace primal
