// Built-in SGEMM: the classic three-level blocking (Goto/BLIS layout). B is packed into
// KC x NR column panels shared by all threads, each thread packs its own MC x KC block of A into
// MR-row panels, and a register-blocked MR x NR micro-kernel runs over them. The micro-kernel
// (gemm_kernel.h) is portable C++ on GCC vector-extension types, no intrinsics: gcc's
// auto-vectorizer spilled the accumulators of the equivalent scalar loop nest (about 3 GFLOP/s),
// the vector types keep them in registers. It is compiled twice on x86 (baseline SSE2 and
// AVX2+FMA) and picked at run time.
#include "gemm.h"

#include <algorithm>
#include <cstring>
#include <string>
#include <vector>

#include "primal/error.h"
#include "thread_pool.h"

// The AVX2 build of the kernel uses GCC's target/optimize pragmas (clang ignores the latter).
#if defined(__GNUC__) && !defined(__clang__) && (defined(__x86_64__) || defined(__i386__))
#define PRIMAL_GEMM_X86 1
#endif

namespace primal {
namespace cpu {

namespace {

constexpr int KC = 256;  // depth of one packed block (A panel + B panel fit L1/L2)

// ---- packing ---------------------------------------------------------------------------------

// op(B)[pc:pc+kc, jc + p*NR : +NR] for panels [p0, p1) into Bp (panel p at Bp + p*kc*NR),
// zero-padded past nc.
template <int NR>
void packB(const float* B, int ldb, bool transB, int pc, int jc, int kc, int nc, int p0, int p1, float* Bp) {
  for (int p = p0; p < p1; ++p) {
    float* dst = Bp + static_cast<size_t>(p) * kc * NR;
    const int j0 = jc + p * NR;
    const int nr = std::min(NR, nc - p * NR);
    if (!transB) {
      for (int k = 0; k < kc; ++k) {
        const float* src = B + static_cast<size_t>(pc + k) * ldb + j0;
        float* d = dst + static_cast<size_t>(k) * NR;
        if (nr == NR) {
          for (int j = 0; j < NR; ++j) d[j] = src[j];
        } else {
          for (int j = 0; j < NR; ++j) d[j] = j < nr ? src[j] : 0.0f;
        }
      }
    } else {
      // Gather NR rows of B at a time so the writes stay sequential (NR read streams).
      const float* rows[NR];
      for (int j = 0; j < NR; ++j) rows[j] = B + static_cast<size_t>(j0 + (j < nr ? j : 0)) * ldb + pc;
      for (int k = 0; k < kc; ++k) {
        float* d = dst + static_cast<size_t>(k) * NR;
        for (int j = 0; j < NR; ++j) d[j] = rows[j][k];
        if (nr < NR)
          for (int j = nr; j < NR; ++j) d[j] = 0.0f;
      }
    }
  }
}

// op(A)[ic:ic+mc, pc:pc+kc] into MR-row panels (panel q at Ap + q*kc*MR), zero-padded past mc.
template <int MR>
void packA(const float* A, int lda, bool transA, int ic, int pc, int mc, int kc, float* Ap) {
  const int panels = (mc + MR - 1) / MR;
  for (int q = 0; q < panels; ++q) {
    float* dst = Ap + static_cast<size_t>(q) * kc * MR;
    const int i0 = ic + q * MR;
    const int mr = std::min(MR, mc - q * MR);
    if (!transA) {
      // Gather MR rows at a time so the writes stay sequential (MR read streams).
      const float* rows[MR];
      for (int i = 0; i < MR; ++i) rows[i] = A + static_cast<size_t>(i0 + (i < mr ? i : 0)) * lda + pc;
      for (int k = 0; k < kc; ++k) {
        float* d = dst + static_cast<size_t>(k) * MR;
        for (int i = 0; i < MR; ++i) d[i] = rows[i][k];
        if (mr < MR)
          for (int i = mr; i < MR; ++i) d[i] = 0.0f;
      }
    } else {
      for (int k = 0; k < kc; ++k) {
        const float* src = A + static_cast<size_t>(pc + k) * lda + i0;
        float* d = dst + static_cast<size_t>(k) * MR;
        if (mr == MR) {
          for (int i = 0; i < MR; ++i) d[i] = src[i];
        } else {
          for (int i = 0; i < MR; ++i) d[i] = i < mr ? src[i] : 0.0f;
        }
      }
    }
  }
}

// ---- micro / macro kernels -------------------------------------------------------------------

// One packed A block (mc rows) times B panels [p0, p1) into C rows ic.., columns jc...
struct MacroArgs {
  int kc, mc, nc, p0, p1;
  const float* Ap;
  const float* Bp;
  float* C;  // points at C[ic, jc]
  int ldc;
  float alpha, beta;
  bool first;
};

// The kernel templates are compiled twice: for the build's baseline target, and (x86) inside an
// AVX2+FMA target region where contraction into FMA is allowed (GEMM results are only required
// to be deterministic on one machine, not bit-equal to anything else).
namespace kgeneric {
#include "gemm_kernel.h"
// 4x8 fits the 16 SSE registers (8 accumulators).
constexpr int MR = 4, NR = 8;
void macro(const MacroArgs& m) { macroKernel<MR, NR, 4>(m); }
}  // namespace kgeneric

#if PRIMAL_GEMM_X86
#pragma GCC push_options
#pragma GCC target("avx2,fma")
#pragma GCC optimize("fp-contract=fast")
namespace kavx2 {
#include "gemm_kernel.h"
// 6x16 uses 12 of the 16 AVX registers for accumulators.
constexpr int MR = 6, NR = 16;
void macro(const MacroArgs& m) { macroKernel<MR, NR, 8>(m); }
}  // namespace kavx2
#pragma GCC pop_options
#endif

// ---- driver ----------------------------------------------------------------------------------

void scaleRows(ThreadPool* pool, int M, int N, float beta, float* C, int ldc) {
  auto body = [&](size_t b, size_t e) {
    for (size_t i = b; i < e; ++i) {
      float* ci = C + i * static_cast<size_t>(ldc);
      if (beta == 0.0f) {
        for (int j = 0; j < N; ++j) ci[j] = 0.0f;
      } else if (beta != 1.0f) {
        for (int j = 0; j < N; ++j) ci[j] *= beta;
      }
    }
  };
  if (beta == 1.0f) return;
  if (pool) pool->parallelFor(static_cast<size_t>(M), body, 16);
  else body(0, static_cast<size_t>(M));
}

template <int MR, int NR>
void gemmDriver(void (*macro)(const MacroArgs&), ThreadPool* pool, bool transA, bool transB, int M, int N,
                int K, float alpha, const float* A, int lda, const float* B, int ldb, float beta, float* C,
                int ldc) {
  constexpr int MC = MR * 16;   // A block per thread: MC x KC (L2)
  constexpr int NC = NR * 128;  // B block shared: KC x NC (L2/L3)
  const int threads = pool ? pool->size() : 1;

  thread_local std::vector<float> bPack;  // owned by the calling thread, read by all
  const size_t bNeed = static_cast<size_t>(KC) * NC;
  if (bPack.size() < bNeed) bPack.resize(bNeed);
  float* Bp = bPack.data();

  for (int jc = 0; jc < N; jc += NC) {
    const int nc = std::min(NC, N - jc);
    const int bPanels = (nc + NR - 1) / NR;
    for (int pc = 0; pc < K; pc += KC) {
      const int kc = std::min(KC, K - pc);
      const bool first = pc == 0;

      auto packBody = [&](size_t p0, size_t p1) {
        packB<NR>(B, ldb, transB, pc, jc, kc, nc, static_cast<int>(p0), static_cast<int>(p1), Bp);
      };
      if (pool && static_cast<size_t>(kc) * nc >= 16384)
        pool->parallelFor(static_cast<size_t>(bPanels), packBody, 2);
      else packBody(0, static_cast<size_t>(bPanels));

      const int aPanelsTotal = (M + MR - 1) / MR;
      // Split rows of C across threads when there are enough of them, else columns (panels of B).
      const bool splitM = aPanelsTotal >= 2 * threads || aPanelsTotal >= bPanels;
      auto computePart = [&](int mp0, int mp1, int bp0, int bp1) {
        thread_local std::vector<float> aPack;
        const size_t aNeed = static_cast<size_t>(KC) * MC;
        if (aPack.size() < aNeed) aPack.resize(aNeed);
        const int rowEnd = std::min(M, mp1 * MR);
        for (int ic = mp0 * MR; ic < rowEnd; ic += MC) {
          const int mc = std::min(MC, rowEnd - ic);
          packA<MR>(A, lda, transA, ic, pc, mc, kc, aPack.data());
          MacroArgs m{kc,  mc,    nc,   bp0,  bp1, aPack.data(), Bp, C + static_cast<size_t>(ic) * ldc + jc,
                      ldc, alpha, beta, first};
          macro(m);
        }
      };
      const size_t work = static_cast<size_t>(M) * nc * kc;
      if (!pool || threads == 1 || work < 32768) {
        computePart(0, aPanelsTotal, 0, bPanels);
      } else if (splitM) {
        pool->parallelFor(static_cast<size_t>(aPanelsTotal), [&](size_t b, size_t e) {
          computePart(static_cast<int>(b), static_cast<int>(e), 0, bPanels);
        });
      } else {
        pool->parallelFor(static_cast<size_t>(bPanels), [&](size_t b, size_t e) {
          computePart(0, aPanelsTotal, static_cast<int>(b), static_cast<int>(e));
        });
      }
    }
  }
}

}  // namespace

void gemmCheckArgs(bool transA, bool transB, int M, int N, int K, int lda, int ldb, int ldc) {
  PRIMAL_CHECK(M >= 0 && N >= 0 && K >= 0, "gemm: negative size M=" + std::to_string(M) +
                                               " N=" + std::to_string(N) + " K=" + std::to_string(K));
  const int aCols = transA ? M : K, bCols = transB ? K : N;
  PRIMAL_CHECK(lda >= std::max(1, aCols), "gemm: lda=" + std::to_string(lda) + " < " + std::to_string(aCols));
  PRIMAL_CHECK(ldb >= std::max(1, bCols), "gemm: ldb=" + std::to_string(ldb) + " < " + std::to_string(bCols));
  PRIMAL_CHECK(ldc >= std::max(1, N), "gemm: ldc=" + std::to_string(ldc) + " < " + std::to_string(N));
}

bool gemmAvx2Supported() {
#if PRIMAL_GEMM_X86
  static const bool ok = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  return ok;
#else
  return false;
#endif
}

const char* gemmKernelName(GemmKernel kernel) {
  if (kernel == GemmKernel::Auto) kernel = gemmAvx2Supported() ? GemmKernel::Avx2 : GemmKernel::Generic;
  return kernel == GemmKernel::Avx2 ? "avx2" : "generic";
}

void gemmBlocked(ThreadPool* pool, bool transA, bool transB, int M, int N, int K, float alpha, const float* A,
                 int lda, const float* B, int ldb, float beta, float* C, int ldc, GemmKernel kernel) {
  gemmCheckArgs(transA, transB, M, N, K, lda, ldb, ldc);
  if (M == 0 || N == 0) return;
  if (K == 0 || alpha == 0.0f) {
    scaleRows(pool, M, N, beta, C, ldc);
    return;
  }
  if (kernel == GemmKernel::Auto) kernel = gemmAvx2Supported() ? GemmKernel::Avx2 : GemmKernel::Generic;
#if PRIMAL_GEMM_X86
  if (kernel == GemmKernel::Avx2) {
    PRIMAL_CHECK(gemmAvx2Supported(), "gemm: this CPU has no AVX2/FMA");
    gemmDriver<kavx2::MR, kavx2::NR>(&kavx2::macro, pool, transA, transB, M, N, K, alpha, A, lda, B, ldb,
                                     beta, C, ldc);
    return;
  }
#else
  PRIMAL_CHECK(kernel != GemmKernel::Avx2, "gemm: AVX2 kernel not built on this platform");
#endif
  gemmDriver<kgeneric::MR, kgeneric::NR>(&kgeneric::macro, pool, transA, transB, M, N, K, alpha, A, lda, B,
                                         ldb, beta, C, ldc);
}

}  // namespace cpu
}  // namespace primal
