// CpuBackend: memory accounting, GEMM dispatch, element-wise ops, AdamW and the factory.
// Model ops live in cpu_ops.cpp, quantizers in cpu_quant.cpp.
#include "cpu_backend.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <new>

#include "gemm.h"
#include "primal/error.h"

#if defined(PRIMAL_HAVE_BLAS)
#include <cblas.h>
extern "C" void openblas_set_num_threads(int);
#endif

namespace primal {
namespace cpu {

namespace {
constexpr size_t kAlign = 64;           // cache line; also enough for any SIMD load
constexpr size_t kElemGrain = 1 << 14;  // smaller element-wise ops run on the calling thread
}  // namespace

CpuBackend::CpuBackend(int threads) : pool_(threads) {
#if defined(PRIMAL_HAVE_BLAS)
  // OpenBLAS runs single-threaded inside our own pool (gemm splits C into one block per worker):
  // its own threads would otherwise spin beside ours and halve the cores for every other op.
  openblas_set_num_threads(1);
#endif
}

CpuBackend::~CpuBackend() {
  std::lock_guard<std::mutex> lk(memMutex_);
  for (auto& kv : allocations_) std::free(kv.first);
  allocations_.clear();
}

std::string CpuBackend::describe() const {
#if defined(PRIMAL_HAVE_BLAS)
#if defined(PRIMAL_BLAS_NAME)
  std::string gemmName = PRIMAL_BLAS_NAME;
#else
  std::string gemmName = "OpenBLAS";
#endif
#else
  std::string gemmName = std::string("built-in GEMM ") + gemmKernelName();
#endif
  const int t = pool_.size();
  return "cpu (" + gemmName + ", " + std::to_string(t) + (t == 1 ? " thread)" : " threads)");
}

// ---- memory --------------------------------------------------------------------------------

void* CpuBackend::alloc(size_t bytes) {
  if (bytes > SIZE_MAX - kAlign)
    throw OutOfMemory("cpu: out of memory allocating " + std::to_string(bytes) + " bytes");
  const size_t rounded = bytes == 0 ? kAlign : (bytes + kAlign - 1) / kAlign * kAlign;
  void* p = std::aligned_alloc(kAlign, rounded);
  if (!p) {
    throw OutOfMemory("cpu: out of memory allocating " + std::to_string(bytes) + " bytes (" +
                      std::to_string(bytesInUse()) + " bytes already in use)");
  }
  std::lock_guard<std::mutex> lk(memMutex_);
  allocations_.emplace(p, bytes);
  inUse_ += bytes;
  if (inUse_ > peak_) peak_ = inUse_;
  return p;
}

void CpuBackend::free(void* p) {
  if (!p) return;
  {
    std::lock_guard<std::mutex> lk(memMutex_);
    auto it = allocations_.find(p);
    PRIMAL_CHECK(it != allocations_.end(), "cpu: free of a pointer this backend did not allocate");
    inUse_ -= it->second;
    allocations_.erase(it);
  }
  std::free(p);
}

void CpuBackend::zero(void* p, size_t bytes) {
  if (bytes) std::memset(p, 0, bytes);
}
void CpuBackend::toDevice(void* dst, const void* hostSrc, size_t bytes) {
  if (bytes) std::memcpy(dst, hostSrc, bytes);
}
void CpuBackend::toHost(void* hostDst, const void* src, size_t bytes) {
  if (bytes) std::memcpy(hostDst, src, bytes);
}
void CpuBackend::copy(void* dst, const void* src, size_t bytes) {
  if (bytes) std::memmove(dst, src, bytes);
}

size_t CpuBackend::bytesInUse() const {
  std::lock_guard<std::mutex> lk(memMutex_);
  return inUse_;
}
size_t CpuBackend::peakBytes() const {
  std::lock_guard<std::mutex> lk(memMutex_);
  return peak_;
}
void CpuBackend::resetPeak() {
  std::lock_guard<std::mutex> lk(memMutex_);
  peak_ = inUse_;
}

// ---- GEMM ----------------------------------------------------------------------------------

void CpuBackend::gemm(bool transA, bool transB, int M, int N, int K, float alpha, const float* A, int lda,
                      const float* B, int ldb, float beta, float* C, int ldc) {
#if defined(PRIMAL_HAVE_BLAS)
  gemmCheckArgs(transA, transB, M, N, K, lda, ldb, ldc);
  if (M == 0 || N == 0) return;
  if (K == 0 || alpha == 0.0f) {
    // Degenerate products only scale C; some BLAS builds skip beta when K == 0.
    gemmBlocked(&pool_, transA, transB, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
    return;
  }
  // One block of C per worker, split along the longer side, each a single-threaded BLAS call
  // (fixed partitioning: the result does not depend on timing).
  const bool byRows = M >= N;
  const size_t extent = static_cast<size_t>(byRows ? M : N);
  const size_t parts = std::max<size_t>(1, std::min<size_t>(pool_.size(), extent / 16));
  pool_.parallelFor(
      parts,
      [&](size_t pb, size_t pe) {
        for (size_t p = pb; p < pe; ++p) {
          const int s0 = static_cast<int>(extent * p / parts),
                    s1 = static_cast<int>(extent * (p + 1) / parts);
          if (s1 <= s0) continue;
          const float* a = A;
          const float* b = B;
          float* c = C;
          int m = M, n = N;
          if (byRows) {
            a = transA ? A + s0 : A + static_cast<size_t>(s0) * lda;
            c = C + static_cast<size_t>(s0) * ldc;
            m = s1 - s0;
          } else {
            b = transB ? B + static_cast<size_t>(s0) * ldb : B + s0;
            c = C + s0;
            n = s1 - s0;
          }
          if (beta == 0.0f) {
            // Make "beta = 0 overwrites" independent of how the BLAS treats NaN/Inf already in C.
            for (int i = 0; i < m; ++i) std::memset(c + static_cast<size_t>(i) * ldc, 0, sizeof(float) * n);
          }
          cblas_sgemm(CblasRowMajor, transA ? CblasTrans : CblasNoTrans, transB ? CblasTrans : CblasNoTrans,
                      m, n, K, alpha, a, lda, b, ldb, beta, c, ldc);
        }
      },
      1);
#else
  gemmBlocked(&pool_, transA, transB, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
#endif
}

// ---- element-wise / reductions -------------------------------------------------------------

void CpuBackend::add(float* y, const float* x, size_t n) {
  pool_.parallelFor(
      n,
      [&](size_t b, size_t e) {
        for (size_t i = b; i < e; ++i) y[i] += x[i];
      },
      kElemGrain);
}

void CpuBackend::scale(float* x, float a, size_t n) {
  pool_.parallelFor(
      n,
      [&](size_t b, size_t e) {
        for (size_t i = b; i < e; ++i) x[i] *= a;
      },
      kElemGrain);
}

double CpuBackend::sumSquares(const float* x, size_t n) {
  return chunkedSum(n, [&](size_t b, size_t e) { return sumSquaresRange(x, b, e); });
}

// Every segment is cut into chunks of kReduceChunk from its own start, exactly as sumSquares cuts a
// buffer; all chunks of all segments are summed in one parallel pass, then added up in order:
// within a segment as chunkedSum does, then the segments in table order.
void CpuBackend::sumSegments(const float* base, const size_t* seg, int count, bool absolute,
                             double* perSegment, double* total) {
  segChunks_.clear();
  for (int j = 0; j < count; ++j)
    for (size_t b = seg[2 * j]; b < seg[2 * j + 1]; b += kReduceChunk)
      segChunks_.push_back({j, b, std::min(seg[2 * j + 1], b + kReduceChunk)});
  const size_t chunks = segChunks_.size();
  if (segPartials_.size() < chunks) segPartials_.resize(chunks);
  double* out = segPartials_.data();
  const SegmentChunk* work = segChunks_.data();
  pool_.parallelFor(chunks, [&](size_t c0, size_t c1) {
    for (size_t c = c0; c < c1; ++c)
      out[c] = absolute ? absSumRange(base, work[c].begin, work[c].end)
                        : sumSquaresRange(base, work[c].begin, work[c].end);
  });
  double sum = 0.0;
  size_t c = 0;
  for (int j = 0; j < count; ++j) {
    double s = 0.0;
    for (; c < chunks && work[c].segment == j; ++c) s += out[c];
    if (perSegment) perSegment[j] = s;
    sum += s;
  }
  if (total) *total = sum;
}

bool CpuBackend::allFinite(const float* x, size_t n) {
  // Counts values whose exponent bits are all ones (Inf/NaN); integer ops vectorize.
  const double bad = chunkedSum(n, [&](size_t b, size_t e) {
    uint32_t cnt = 0;
    for (size_t i = b; i < e; ++i) {
      uint32_t bits;
      std::memcpy(&bits, x + i, sizeof(bits));
      cnt += ((bits & 0x7f800000u) == 0x7f800000u) ? 1u : 0u;
    }
    return static_cast<double>(cnt);
  });
  return bad == 0.0;
}

// ---- the step's decision and AdamW ----------------------------------------------------------

void CpuBackend::stepGate(StepHead* head, const double* ds, int layers, float gradClip) {
  const double norm = std::sqrt(head->gradSq);
  if (!std::isfinite(norm)) head->refused |= kRefuseNorm;
  for (int l = 0; l < layers; ++l)
    if (!std::isfinite(ds[l])) {
      if (!(head->refused & kRefuseScale)) head->badLayer = l;
      head->refused |= kRefuseScale;
    }
  head->clip = 1.0f;
  if (gradClip > 0 && norm > gradClip) head->clip = static_cast<float>(gradClip / (norm + 1e-6));
}

void CpuBackend::adamw(float* p, const float* g, float* m, float* v, size_t n, size_t nDecay,
                       const AdamParams& a, const StepHead* head) {
  PRIMAL_CHECK(a.t >= 1, "adamw: step t must be >= 1, got " + std::to_string(a.t));
  PRIMAL_CHECK(nDecay <= n, "adamw: the decaying part is larger than the arena");
  if (head && head->refused) return;
  const float gradScale = head ? head->clip : 1.0f;
  const float b1 = a.beta1, b2 = a.beta2, lr = a.lr, eps = a.eps;
  // Bias corrections once per step, in double, then used as fp32 factors.
  const float bc1 = static_cast<float>(1.0 - std::pow(static_cast<double>(b1), a.t));
  const float bc2 = static_cast<float>(1.0 - std::pow(static_cast<double>(b2), a.t));
  const float ob1 = 1.0f - b1, ob2 = 1.0f - b2;
  auto update = [&](size_t from, size_t to, float wd) {
    pool_.parallelFor(
        to - from,
        [&](size_t b, size_t e) {
          for (size_t i = from + b; i < from + e; ++i) {
            const float gi = g[i] * gradScale;
            const float mi = b1 * m[i] + ob1 * gi;
            const float vi = b2 * v[i] + ob2 * (gi * gi);
            m[i] = mi;
            v[i] = vi;
            const float mhat = mi / bc1;
            const float vhat = vi / bc2;
            p[i] -= lr * (mhat / (std::sqrt(vhat) + eps) + wd * p[i]);
          }
        },
        kElemGrain);
  };
  update(0, nDecay, a.weightDecay);
  update(nDecay, n, 0.0f);
}

}  // namespace cpu

std::unique_ptr<Backend> makeCpuBackend(int threads) { return std::make_unique<cpu::CpuBackend>(threads); }

}  // namespace primal
