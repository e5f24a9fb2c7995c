// The CPU implementation of primal::Backend. Host memory, ops run synchronously on the calling
// thread plus a persistent pool (see thread_pool.h); GEMM goes to OpenBLAS when the build found
// it (PRIMAL_HAVE_BLAS) and to the built-in blocked kernel (gemm.h) otherwise.
#pragma once
#include <cmath>
#include <cstddef>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "primal/backend.h"
#include "thread_pool.h"

namespace primal {
namespace cpu {

// Elements per chunk of the reductions that feed the trainer (sumSquares, poltVote, poltFlip
// stats, ...). Fixed, so sums do not depend on the thread count: each chunk is summed in index
// order in double, then the chunks are combined in chunk order.
constexpr size_t kReduceChunk = 16384;

class CpuBackend final : public Backend {
 public:
  explicit CpuBackend(int threads);
  ~CpuBackend() override;

  std::string name() const override { return "cpu"; }
  std::string describe() const override;
  int threads() const { return pool_.size(); }
  ThreadPool& pool() { return pool_; }

  // memory
  void* alloc(size_t bytes) override;
  void free(void* p) override;
  void zero(void* p, size_t bytes) override;
  void toDevice(void* dst, const void* hostSrc, size_t bytes) override;
  void toHost(void* hostDst, const void* src, size_t bytes) override;
  void copy(void* dst, const void* src, size_t bytes) override;
  void sync() override {}
  size_t bytesInUse() const override;
  size_t peakBytes() const override;
  void resetPeak() override;
  // Op scratch lives in plain host vectors owned by the backend and its threads, outside alloc().
  size_t scratchBytes(const ScratchShape&) const override { return 0; }

  void gemm(bool transA, bool transB, int M, int N, int K, float alpha, const float* A, int lda,
            const float* B, int ldb, float beta, float* C, int ldc) override;

  void add(float* y, const float* x, size_t n) override;
  void scale(float* x, float a, size_t n) override;
  double sumSquares(const float* x, size_t n) override;
  bool allFinite(const float* x, size_t n) override;
  void sumSegments(const float* base, const size_t* seg, int count, bool absolute, double* perSegment,
                   double* total) override;

  void embeddingForward(const int32_t* tokens, const float* table, float* out, int N, int C) override;
  void embeddingBackward(const int32_t* tokens, const float* dout, float* dtable, int N, int C) override;
  void rmsnormForward(const float* x, const float* w, float* y, float* rstd, int N, int C,
                      float eps) override;
  void rmsnormBackward(const float* x, const float* w, const float* rstd, const float* dy, float* dx,
                       float* dw, int N, int C) override;
  void rope(float* x, int B, int T, int H, int D, float theta, bool inverse) override;
  void attentionForward(const float* q, const float* k, const float* v, float* out, float* lse, int B, int T,
                        int H, int D) override;
  void attentionBackward(const float* q, const float* k, const float* v, const float* out, const float* lse,
                         const float* dout, float* dq, float* dk, float* dv, int B, int T, int H,
                         int D) override;
  void swigluForward(const float* gate, const float* up, float* h, size_t n) override;
  void swigluBackward(const float* gate, const float* up, const float* dh, float* dgate, float* dup,
                      size_t n) override;
  void actQuant(const float* x, float* xq, int N, int C, int bits) override;
  void classifier(const float* x, const float* table, const int32_t* targets, float* losses, float* dx,
                  float* dtable, int N, int C, int V, float gradScale) override;
  void logits(const float* x, const float* table, float* logits, int N, int C, int V) override;
  void stepLoss(const float* losses, const int32_t* targets, int N, StepHead* head) override;

  void stepGate(StepHead* head, const double* ds, int layers, float gradClip) override;
  void adamw(float* p, const float* g, float* m, float* v, size_t n, size_t nDecay, const AdamParams& a,
             const StepHead* head) override;

  void steQuantize(const float* W, float* Wq, size_t n, double* absSum, bool computeAbs) override;
  void poltMaterialize(const int8_t* code, float* W, size_t n, const float* gamma0, const float* s,
                       float bridge) override;
  void poltVote(const float* G, const int8_t* code, int8_t* vote, size_t n, float bridge, float deadzone,
                const float* gamma0, double* ds) override;
  void poltMergeVotes(int8_t* vote, const int8_t* start, size_t n, const StepHead* head) override;
  void ghostScaleStep(float* s, float* m, float* v, const double* ds, int layers,
                      const polt::GhostScaleRule& rule, const StepHead* head) override;
  void poltFlip(int8_t* code, int8_t* vote, size_t n, const FlipParams& params, const float* scale,
                const StepHead* head, FlipStats* stats, float* pOut) override;
  void poltProbabilities(const int8_t* vote, float* pOut, size_t n, const FlipParams& params,
                         const float* scale) override;

 private:
  // Sum over fixed chunks of kReduceChunk elements: part(begin, end) -> double per chunk (run in
  // parallel), then added in chunk order.
  template <class F>
  double chunkedSum(size_t n, F&& part);

  ThreadPool pool_;

  // sumSegments' work list: (segment, begin, end) per reduction chunk, and the chunk sums.
  struct SegmentChunk {
    int segment;
    size_t begin, end;
  };
  std::vector<SegmentChunk> segChunks_;
  std::vector<double> segPartials_;

  mutable std::mutex memMutex_;
  std::unordered_map<void*, size_t> allocations_;
  size_t inUse_ = 0;
  size_t peak_ = 0;

  // Scratch reused across calls (grown on demand, never shrunk).
  std::vector<double> partials_;
  std::vector<FlipStats> flipPartials_;
  std::vector<float> logitBuf_;
  std::vector<float> ropeCos_, ropeSin_;
  int ropeT_ = -1, ropeD_ = -1;
  float ropeTheta_ = 0.0f;
};

// The per-chunk sums of the reductions, shared by every op that must agree with another bit for
// bit (sumSquares / sumSegments, steQuantize's mean |W| / sumSegments): four fixed lanes in double
// (vectorizable, still a fixed order) over [b, e), combined pairwise.
inline double sumSquaresRange(const float* x, size_t b, size_t e) {
  double acc[4] = {0.0, 0.0, 0.0, 0.0};
  size_t i = b;
  for (; i + 4 <= e; i += 4)
    for (int l = 0; l < 4; ++l) {
      const double v = x[i + l];
      acc[l] += v * v;
    }
  for (; i < e; ++i) {
    const double v = x[i];
    acc[0] += v * v;
  }
  return (acc[0] + acc[1]) + (acc[2] + acc[3]);
}
inline double absSumRange(const float* x, size_t b, size_t e) {
  double acc[4] = {0.0, 0.0, 0.0, 0.0};
  size_t i = b;
  for (; i + 4 <= e; i += 4)
    for (int l = 0; l < 4; ++l) acc[l] += std::fabs(static_cast<double>(x[i + l]));
  for (; i < e; ++i) acc[0] += std::fabs(static_cast<double>(x[i]));
  return (acc[0] + acc[1]) + (acc[2] + acc[3]);
}

template <class F>
double CpuBackend::chunkedSum(size_t n, F&& part) {
  const size_t chunks = (n + kReduceChunk - 1) / kReduceChunk;
  if (chunks == 0) return 0.0;
  if (partials_.size() < chunks) partials_.resize(chunks);
  double* out = partials_.data();
  pool_.parallelFor(chunks, [&](size_t c0, size_t c1) {
    for (size_t c = c0; c < c1; ++c) {
      const size_t b = c * kReduceChunk;
      const size_t e = n - b < kReduceChunk ? n : b + kReduceChunk;
      out[c] = part(b, e);
    }
  });
  double s = 0.0;
  for (size_t c = 0; c < chunks; ++c) s += out[c];
  return s;
}

}  // namespace cpu
}  // namespace primal
