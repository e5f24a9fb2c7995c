// The built-in SGEMM of the CPU backend (used when no BLAS library was found at build time; always
// compiled so tests can compare it with BLAS). Same contract as Backend::gemm: row-major,
// C[M,N] = alpha * op(A)[M,K] * op(B)[K,N] + beta * C, lda/ldb/ldc are row strides of the stored
// matrices, and beta == 0 overwrites C (NaNs in C are ignored).
#pragma once

namespace primal {
namespace cpu {

class ThreadPool;

enum class GemmKernel {
  Auto,     // the fastest one this CPU supports
  Generic,  // portable C++ (baseline SIMD of the build, e.g. SSE2 on x86-64)
  Avx2,     // x86 AVX2+FMA build of the same C++ (throws primal::Error when unsupported)
};

// Cache-blocked, packed, multi-threaded over `pool` (nullptr: the calling thread only). The
// result is bit-identical for any thread count (each C element sums over K in the same order).
void gemmBlocked(ThreadPool* pool, bool transA, bool transB, int M, int N, int K, float alpha, const float* A,
                 int lda, const float* B, int ldb, float beta, float* C, int ldc,
                 GemmKernel kernel = GemmKernel::Auto);

bool gemmAvx2Supported();
const char* gemmKernelName(GemmKernel kernel = GemmKernel::Auto);  // "avx2" / "generic"

// Throws primal::Error unless the sizes and strides describe valid row-major matrices.
void gemmCheckArgs(bool transA, bool transB, int M, int N, int K, int lda, int ldb, int ldc);

}  // namespace cpu
}  // namespace primal
