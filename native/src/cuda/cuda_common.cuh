// Shared helpers of the CUDA backend: error checks, warp/block reductions, vector access.
#pragma once
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>
#include <string>

#include "primal/error.h"

namespace primal {
namespace cuda {

// Builds "what failed: error string (file:line)", clears the (non-sticky) error state so the
// backend stays usable, and throws primal::Error (OutOfMemory for allocation failures).
[[noreturn]] void throwCudaError(cudaError_t err, const char* what, const char* file, int line);

#define PRIMAL_CUDA_CHECK(call)                                                                             \
  do {                                                                                                      \
    cudaError_t primal_err_ = (call);                                                                       \
    if (primal_err_ != cudaSuccess) ::primal::cuda::throwCudaError(primal_err_, #call, __FILE__, __LINE__); \
  } while (0)

// After a kernel launch: launch-configuration errors surface here, not at the next sync.
#define PRIMAL_KERNEL_CHECK(name)                                                      \
  do {                                                                                 \
    cudaError_t primal_err_ = cudaGetLastError();                                      \
    if (primal_err_ != cudaSuccess)                                                    \
      ::primal::cuda::throwCudaError(primal_err_, "kernel " name, __FILE__, __LINE__); \
  } while (0)

constexpr int kWarp = 32;

inline bool aligned16(const void* p) { return (reinterpret_cast<uintptr_t>(p) & 15u) == 0; }
inline unsigned blocksFor(size_t work, unsigned perBlock, unsigned cap = 65535u * 16u) {
  size_t b = (work + perBlock - 1) / perBlock;
  if (b < 1) b = 1;
  if (b > cap) b = cap;
  return static_cast<unsigned>(b);
}

// The element-wise loop of the memory-bound kernels. Each thread takes chunks of 4 consecutive
// elements in a grid-stride loop; a chunk goes through chunkOp(c) (128-bit access to chunk c, e.g.
// reinterpret_cast<float4*>(x)[c]) when `vec` says every pointer is aligned for it and the chunk
// is whole, else element by element through elemOp(i) for i in [4c, min(4c + 4, n)). The
// chunk-to-thread assignment is the same on both paths, so a per-thread accumulation sees the
// same elements in the same order whichever path runs.
template <class ChunkOp, class ElemOp>
__device__ __forceinline__ void forEachChunk4(size_t n, bool vec, ChunkOp&& chunkOp, ElemOp&& elemOp) {
  const size_t chunks = (n + 3) / 4;
  for (size_t c = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x; c < chunks;
       c += static_cast<size_t>(gridDim.x) * blockDim.x) {
    const size_t base = c * 4;
    if (vec && base + 4 <= n) {
      chunkOp(c);
    } else {
      for (size_t i = base; i < n && i < base + 4; ++i) elemOp(i);
    }
  }
}

// Butterfly reductions: every lane ends with the same, order-fixed value (fp add and max are
// commutative, so lane l and lane l^o compute bit-identical partials).
__device__ __forceinline__ float warpSum(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}
__device__ __forceinline__ double warpSumD(double v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}
__device__ __forceinline__ float warpMax(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

// Block-wide double sum in a fixed order (warp butterflies, then warp 0 over the warp sums).
// Result valid in thread 0. `shared` needs blockDim.x/32 doubles. Contains __syncthreads.
__device__ __forceinline__ double blockSumD(double v, double* shared) {
  v = warpSumD(v);
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = (blockDim.x + 31) >> 5;
  if (lane == 0) shared[warp] = v;
  __syncthreads();
  double r = 0.0;
  if (threadIdx.x == 0)
    for (int w = 0; w < nw; ++w) r += shared[w];
  __syncthreads();
  return r;
}

// Number of blocks used by the two-stage deterministic reductions: a function of n only, so the
// summation order (and the result) never depends on the device or on timing.
constexpr int kReduceThreads = 256;
constexpr int kReduceMaxBlocks = 1024;
inline int reduceBlocks(size_t n) {
  size_t b = (n + kReduceThreads * 16 - 1) / (kReduceThreads * 16);
  if (b < 1) b = 1;
  if (b > kReduceMaxBlocks) b = kReduceMaxBlocks;
  return static_cast<int>(b);
}

}  // namespace cuda
}  // namespace primal
