// primal::Backend for NVIDIA GPUs: memory (a small caching allocator over cudaMalloc), one stream,
// GEMMs through cuBLASLt (TF32 tensor cores on sm_80+ by default; PRIMAL_GEMM=fp32|tf32|bf16 picks
// the mode, bf16 = operands rounded to bf16 with fp32 accumulation), and the op kernels of
// kernels_*.cu.
#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <map>
#include <mutex>
#include <string>
#include <unordered_map>

#include "cuda_entry.h"
#include "primal/op_profile.h"
#include "cuda_kernels.cuh"

#if __has_include(<cublasLt.h>)
#include <cublasLt.h>
#elif defined(PRIMAL_CUDA_COMPILE_ONLY)
#include "cublaslt_decls.h"
#else
#error "cublasLt.h not found: the CUDA backend needs the CUDA toolkit's cuBLAS component"
#endif

namespace primal {
namespace cuda {

namespace {
const char* baseName(const char* path) {
  const char* s = std::strrchr(path, '/');
  return s ? s + 1 : path;
}

const char* cublasStatusName(cublasStatus_t s) {
  switch (s) {
    case CUBLAS_STATUS_SUCCESS:
      return "CUBLAS_STATUS_SUCCESS";
    case CUBLAS_STATUS_NOT_INITIALIZED:
      return "CUBLAS_STATUS_NOT_INITIALIZED";
    case CUBLAS_STATUS_ALLOC_FAILED:
      return "CUBLAS_STATUS_ALLOC_FAILED";
    case CUBLAS_STATUS_INVALID_VALUE:
      return "CUBLAS_STATUS_INVALID_VALUE";
    case CUBLAS_STATUS_ARCH_MISMATCH:
      return "CUBLAS_STATUS_ARCH_MISMATCH";
    case CUBLAS_STATUS_MAPPING_ERROR:
      return "CUBLAS_STATUS_MAPPING_ERROR";
    case CUBLAS_STATUS_EXECUTION_FAILED:
      return "CUBLAS_STATUS_EXECUTION_FAILED";
    case CUBLAS_STATUS_INTERNAL_ERROR:
      return "CUBLAS_STATUS_INTERNAL_ERROR";
    case CUBLAS_STATUS_NOT_SUPPORTED:
      return "CUBLAS_STATUS_NOT_SUPPORTED";
    case CUBLAS_STATUS_LICENSE_ERROR:
      return "CUBLAS_STATUS_LICENSE_ERROR";
    default:
      return "unknown cuBLAS status";
  }
}
}  // namespace

[[noreturn]] void throwCudaError(cudaError_t err, const char* what, const char* file, int line) {
  (void)cudaGetLastError();  // clear the error state so later calls are not poisoned by it
  std::string msg = std::string("CUDA error: ") + what + " failed: " + cudaGetErrorName(err) + " (" +
                    cudaGetErrorString(err) + ") at " + baseName(file) + ":" + std::to_string(line);
  if (err == cudaErrorMemoryAllocation) throw OutOfMemory(msg);
  throw Error(msg);
}

[[noreturn]] void throwCublasError(cublasStatus_t s, const char* what, const char* file, int line) {
  (void)cudaGetLastError();
  throw Error(std::string("cuBLASLt error: ") + what + " failed: " + cublasStatusName(s) + " (" +
              std::to_string(static_cast<int>(s)) + ") at " + baseName(file) + ":" + std::to_string(line));
}

#define PRIMAL_CUBLAS_CHECK(call)                                              \
  do {                                                                         \
    cublasStatus_t primal_st_ = (call);                                        \
    if (primal_st_ != CUBLAS_STATUS_SUCCESS)                                   \
      ::primal::cuda::throwCublasError(primal_st_, #call, __FILE__, __LINE__); \
  } while (0)

namespace {

constexpr size_t kWorkspaceBytes = 32u << 20;  // cuBLASLt workspace (recommended for Hopper)
constexpr size_t kStageBytes = 1u << 20;       // pinned staging slot for small uploads
constexpr int kStageSlots = 4;
// Logits chunk budget of the fused classifier: 1/32 of the GPU's memory, within [128 MiB, 1 GiB]
// (larger chunks amortize the dtable update, which rewrites the whole table once per chunk).
// Fixed per GPU model, so the chunking (and the dtable summation order) is reproducible.
constexpr size_t kClassifierMinBytes = 128u << 20, kClassifierMaxBytes = 1u << 30;

// Small device-side scratch, one allocation: reduction partials and results, the flip
// counters, STE's gamma.
struct DevSmall {
  double partials[kReduceMaxBlocks];
  double res[4];
  unsigned long long counters[kFlipCounters];
  float gamma;
  int bad;
};

// Pinned host mirror of what the synchronous ops (sumSquares, allFinite) bring back.
struct HostSmall {
  double res[4];
  int bad;
};

// sumSegments' device tables for one segment table (Backend::sumSegments): the ranges (pieces of
// at most kSegRangeElems of one segment), each segment's first range, and room for the range and
// segment sums; one allocation, laid out in that order.
struct SegmentTable {
  std::vector<size_t> key;  // the host table it was built from
  void* block = nullptr;
  size_t bytes = 0;
  int ranges = 0, count = 0;
  SegRange* range = nullptr;
  int* first = nullptr;
  double *partials = nullptr, *segSums = nullptr;
};
constexpr int kSegmentTables = 4;  // distinct tables kept (the trainer uses two)

size_t segmentTableBytes(size_t ranges, size_t count) {
  const size_t a = (ranges * sizeof(SegRange) + 255) / 256 * 256;
  const size_t b = ((count + 1) * sizeof(int) + 255) / 256 * 256;
  return a + b + ranges * sizeof(double) + count * sizeof(double);
}

size_t roundAlloc(size_t b) {
  if (b < (1u << 20)) return std::max<size_t>(512, (b + 511) / 512 * 512);
  const size_t g = 128u << 10;
  return (b + g - 1) / g * g;
}

int alignOf(const void* p) {
  const uintptr_t a = reinterpret_cast<uintptr_t>(p);
  int al = 256;
  while (al > 1 && (a % al) != 0) al >>= 1;
  return al;
}

// GEMM precision. FP32: fp32 operands, CUBLAS_COMPUTE_32F. TF32: fp32 operands,
// CUBLAS_COMPUTE_32F_FAST_TF32 (sm_80+). BF16: operands converted to bf16 in backend scratch,
// CUBLAS_COMPUTE_32F (fp32 accumulation), fp32 C/D (sm_80+).
enum class GemmMode { FP32 = 0, TF32 = 1, BF16 = 2 };

const char* gemmModeName(GemmMode m) {
  switch (m) {
    case GemmMode::FP32:
      return "fp32";
    case GemmMode::TF32:
      return "tf32";
    case GemmMode::BF16:
      return "bf16";
  }
  return "?";
}

// Leading dimension (elements) of a bf16 copy of a matrix with `cols` columns: 16-byte rows.
int bf16Ld(int cols) { return (cols + 7) / 8 * 8; }

struct GemmKey {
  bool ta, tb;
  int mode;  // GemmMode: operand types and compute type of the plan
  int M, N, K, lda, ldb, ldc, alA, alB, alC;
  bool operator==(const GemmKey& o) const {
    return ta == o.ta && tb == o.tb && mode == o.mode && M == o.M && N == o.N && K == o.K && lda == o.lda &&
           ldb == o.ldb && ldc == o.ldc && alA == o.alA && alB == o.alB && alC == o.alC;
  }
};
struct GemmKeyHash {
  size_t operator()(const GemmKey& k) const {
    size_t h = (k.ta ? 1u : 0u) | (k.tb ? 2u : 0u) | (static_cast<size_t>(k.mode) << 2);
    for (int v : {k.M, k.N, k.K, k.lda, k.ldb, k.ldc, k.alA, k.alB, k.alC})
      h = h * 1000003u ^ static_cast<size_t>(static_cast<unsigned>(v));
    return h;
  }
};
struct GemmPlan {
  cublasLtMatmulDesc_t op = nullptr;
  cublasLtMatrixLayout_t a = nullptr, b = nullptr, c = nullptr;
  cublasLtMatmulAlgo_t algo;
  // false: cuBLASLt has no algorithm for the key (kept, so the heuristic is asked once per shape;
  // the descriptors are then destroyed) and status is what the heuristic returned.
  bool found = false;
  cublasStatus_t status = CUBLAS_STATUS_SUCCESS;
};

// Bytes every address of a matrix is aligned to: its base pointer's alignment (at most 256), and
// that of its row stride in bytes (the unit cuBLASLt's algorithm alignment needs cover).
int matrixAlignment(int pointerAlignment, int ld, int elemBytes) {
  int al = pointerAlignment;
  const long long rowBytes = static_cast<long long>(ld) * elemBytes;
  while (al > 1 && rowBytes % al != 0) al >>= 1;
  return al;
}

bool envDisabled(const char* name) {
  const char* v = std::getenv(name);
  return v && (std::strcmp(v, "0") == 0 || std::strcmp(v, "off") == 0 || std::strcmp(v, "false") == 0);
}

class DeviceGuard {
 public:
  explicit DeviceGuard(int dev) {
    int cur = -1;
    if (cudaGetDevice(&cur) != cudaSuccess || cur != dev) PRIMAL_CUDA_CHECK(cudaSetDevice(dev));
  }
};

// Round-up of one ensure()d scratch request (see CudaBackend::ensure).
size_t ensureBytes(size_t bytes) { return roundAlloc(std::max<size_t>(bytes, 256)); }

class CudaBackend final : public Backend {
 public:
  // gemmMode: "fp32", "tf32", "bf16", or empty for the environment (PRIMAL_GEMM, else
  // PRIMAL_TF32=0 -> fp32, else tf32 on sm_80+ and fp32 before).
  explicit CudaBackend(int dev, const std::string& gemmMode = std::string()) : dev_(dev) {
    try {
      init(gemmMode);
    } catch (...) {
      release();
      throw;
    }
  }
  ~CudaBackend() override { release(); }

  std::string name() const override { return "cuda"; }
  std::string describe() const override { return describe_; }
  // The queue every op runs on, for the op profiler's events (CudaEventClock).
  cudaStream_t stream() const { return st_; }
  int device() const { return dev_; }

  // ---- memory ------------------------------------------------------------------------------
  void* alloc(size_t bytes) override {
    DeviceGuard g(dev_);
    std::lock_guard<std::mutex> lk(mu_);
    const size_t rounded = roundAlloc(bytes);
    void* p = rawAlloc(rounded, bytes);
    live_[p] = Block{rounded, bytes};
    inUse_ += bytes;
    notePeak();
    return p;
  }

  void free(void* p) override {
    if (!p) return;
    std::lock_guard<std::mutex> lk(mu_);
    auto it = live_.find(p);
    if (it == live_.end()) throw Error("free (cuda): pointer was not allocated by this backend");
    // Kept for reuse: all work runs on one stream, so a later user of the block is ordered after
    // every queued kernel that still touches it.
    cache_.emplace(it->second.rounded, p);
    inUse_ -= it->second.requested;
    live_.erase(it);
  }

  void zero(void* p, size_t bytes) override {
    if (!bytes) return;
    DeviceGuard g(dev_);
    PRIMAL_CUDA_CHECK(cudaMemsetAsync(p, 0, bytes, st_));
  }

  void toDevice(void* dst, const void* hostSrc, size_t bytes) override {
    if (!bytes) return;
    DeviceGuard g(dev_);
    if (bytes <= kStageBytes) {
      // Small uploads (token batches) go through pinned staging so they stay asynchronous; the
      // caller's buffer is free to reuse as soon as this returns.
      const int s = nextStage_;
      nextStage_ = (nextStage_ + 1) % kStageSlots;
      PRIMAL_CUDA_CHECK(cudaEventSynchronize(stageEvent_[s]));
      std::memcpy(stage_[s], hostSrc, bytes);
      PRIMAL_CUDA_CHECK(cudaMemcpyAsync(dst, stage_[s], bytes, cudaMemcpyHostToDevice, st_));
      PRIMAL_CUDA_CHECK(cudaEventRecord(stageEvent_[s], st_));
    } else {
      PRIMAL_CUDA_CHECK(cudaMemcpyAsync(dst, hostSrc, bytes, cudaMemcpyHostToDevice, st_));
      PRIMAL_CUDA_CHECK(cudaStreamSynchronize(st_));
    }
  }

  void toHost(void* hostDst, const void* src, size_t bytes) override {
    if (!bytes) return;
    DeviceGuard g(dev_);
    PRIMAL_CUDA_CHECK(cudaMemcpyAsync(hostDst, src, bytes, cudaMemcpyDeviceToHost, st_));
    PRIMAL_CUDA_CHECK(cudaStreamSynchronize(st_));
  }

  void copy(void* dst, const void* src, size_t bytes) override {
    if (!bytes) return;
    DeviceGuard g(dev_);
    PRIMAL_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, st_));
  }

  void sync() override {
    DeviceGuard g(dev_);
    PRIMAL_CUDA_CHECK(cudaStreamSynchronize(st_));
  }

  size_t bytesInUse() const override {
    std::lock_guard<std::mutex> lk(mu_);
    return inUse_;
  }
  size_t peakBytes() const override {
    std::lock_guard<std::mutex> lk(mu_);
    return peak_;
  }
  void resetPeak() override {
    std::lock_guard<std::mutex> lk(mu_);
    peak_ = inUse_ + scratchInUse_;
  }

  // Everything counted in scratchInUse_: the cuBLASLt workspace, DevSmall, and each ensure()d
  // scratch at the size the ops request for the largest calls of one micro-batch (N = B*T rows).
  // Scratch never shrinks and ensure() keeps one block per scratch, so the sum is an upper bound.
  size_t scratchBytes(const ScratchShape& sh) const override {
    size_t total = kWorkspaceBytes + roundAlloc(sizeof(DevSmall));
    {
      // sumSegments' tables for the trainer's two segment tables (its fp parameters, and the
      // BitLinears' latent weights for fp/ste), each at most every fp element of the model.
      const size_t C = static_cast<size_t>(std::max(sh.C, 0)), F = static_cast<size_t>(std::max(sh.F, 0));
      const size_t L = static_cast<size_t>(std::max(sh.L, 0));
      const size_t Vp = static_cast<size_t>(std::max(std::max(sh.Vp, sh.V), 0));
      const size_t elems = Vp * C + L * (2 * C + 4 * C * C + 3 * C * F) + C;
      const size_t segs = 3 + 9 * L;
      total += 2 * roundAlloc(segmentTableBytes(elems / kSegRangeElems + segs, segs));
    }
    const int B = std::max(sh.B, 0), T = std::max(sh.T, 0), C = std::max(sh.C, 0);
    const int H = std::max(sh.H, 0), F = std::max(sh.F, 0), V = std::max(sh.V, 0);
    const int Vp = std::max(sh.Vp, V);
    const size_t N = static_cast<size_t>(B) * T;
    if (N == 0 || N > static_cast<size_t>(std::numeric_limits<int>::max())) {
      if (N != 0) throw Error("scratchBytes (cuda): B*T too large");
      return total;
    }
    const int Ni = static_cast<int>(N);
    if (C > 0) {
      {
        DeviceGuard g(dev_);  // the CUB temp-size query uses the current device
        total += ensureBytes(embeddingBackwardScratchBytes(Ni));
      }
      total += ensureBytes(rmsnormBackwardScratchBytes(Ni, C));
      if (H > 0 && C % H == 0 && (C / H) % 2 == 0)
        total += ensureBytes(sizeof(float2) * static_cast<size_t>(T) * ((C / H) / 2));
    }
    if (H > 0) total += ensureBytes(attentionBackwardScratchBytes(B, T, H));
    size_t R = 0;
    if (V > 0 && C > 0) {
      R = static_cast<size_t>(classifierRows(Ni, V));
      total += ensureBytes(classifierRowBytes(V) * R);
    }
    if (mode_ == GemmMode::BF16) {
      // bf16 copies of GEMM operands (2 bytes per element, rows padded to bf16Ld). A operands:
      // activations / output gradients [N, C or F], the classifier's x chunk [R, C] and its
      // dlogits chunk [R, ldL]. B operands: weights [F, C], [C, F], [C, C], activations [N, C or F]
      // (weight gradients), the embedding table [V, C] and the x chunk [R, C].
      const size_t CF = static_cast<size_t>(bf16Ld(std::max(C, F)));
      size_t a = N * CF, b = N * CF;
      b = std::max(b, static_cast<size_t>(F) * bf16Ld(C));
      b = std::max(b, static_cast<size_t>(C) * bf16Ld(std::max(C, F)));
      if (R) {
        a = std::max(a, R * static_cast<size_t>(bf16Ld(C)));
        a = std::max(a, R * static_cast<size_t>(classifierLd(V)));
        b = std::max(b, R * static_cast<size_t>(bf16Ld(C)));
        b = std::max(b, static_cast<size_t>(Vp) * bf16Ld(C));
      }
      total += ensureBytes(2 * a) + ensureBytes(2 * b);
    }
    return total;
  }

  // ---- GEMM --------------------------------------------------------------------------------
  void gemm(bool transA, bool transB, int M, int N, int K, float alpha, const float* A, int lda,
            const float* B, int ldb, float beta, float* C, int ldc) override {
    DeviceGuard g(dev_);
    gemmImpl(transA, transB, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
  }

  // ---- element-wise / reductions -----------------------------------------------------------
  void add(float* y, const float* x, size_t n) override {
    DeviceGuard g(dev_);
    launchAdd(y, x, n, st_);
  }
  void scale(float* x, float a, size_t n) override {
    DeviceGuard g(dev_);
    launchScale(x, a, n, st_);
  }
  double sumSquares(const float* x, size_t n) override {
    if (n == 0) return 0.0;
    DeviceGuard g(dev_);
    launchSumSquaresPartials(x, n, ds_->partials, st_);
    launchFinalSum(ds_->partials, reduceBlocks(n), &ds_->res[0], st_);
    fetch(&hs_->res[0], &ds_->res[0], sizeof(double));
    return hs_->res[0];
  }
  bool allFinite(const float* x, size_t n) override {
    if (n == 0) return true;
    DeviceGuard g(dev_);
    PRIMAL_CUDA_CHECK(cudaMemsetAsync(&ds_->bad, 0, sizeof(int), st_));
    launchAllFinite(x, n, &ds_->bad, st_);
    fetch(&hs_->bad, &ds_->bad, sizeof(int));
    return hs_->bad == 0;
  }
  void sumSegments(const float* base, const size_t* seg, int count, bool absolute, double* perSegment,
                   double* total) override {
    DeviceGuard g(dev_);
    if (count <= 0) {
      if (total) PRIMAL_CUDA_CHECK(cudaMemsetAsync(total, 0, sizeof(double), st_));
      return;
    }
    const SegmentTable& t = segmentTable(seg, count);
    launchSegmentPartials(base, t.range, t.ranges, absolute, t.partials, st_);
    launchSegmentFinish(t.partials, t.first, count, t.segSums, perSegment, total, st_);
  }

  // ---- model ops ---------------------------------------------------------------------------
  void embeddingForward(const int32_t* tokens, const float* table, float* out, int N, int C) override {
    DeviceGuard g(dev_);
    launchEmbeddingForward(tokens, table, out, N, C, st_);
  }
  void embeddingBackward(const int32_t* tokens, const float* dout, float* dtable, int N, int C) override {
    if (N <= 0 || C <= 0) return;
    DeviceGuard g(dev_);
    const size_t bytes = embeddingBackwardScratchBytes(N);
    void* s = ensure(embScratch_, bytes);
    launchEmbeddingBackward(tokens, dout, dtable, N, C, s, embScratch_.bytes, st_);
  }
  void rmsnormForward(const float* x, const float* w, float* y, float* rstd, int N, int C,
                      float eps) override {
    DeviceGuard g(dev_);
    launchRmsnormForward(x, w, y, rstd, N, C, eps, st_);
  }
  void rmsnormBackward(const float* x, const float* w, const float* rstd, const float* dy, float* dx,
                       float* dw, int N, int C) override {
    if (N <= 0 || C <= 0) return;
    DeviceGuard g(dev_);
    float* s = static_cast<float*>(ensure(normScratch_, rmsnormBackwardScratchBytes(N, C)));
    launchRmsnormBackward(x, w, rstd, dy, dx, dw, N, C, s, st_);
  }
  void rope(float* x, int B, int T, int H, int D, float theta, bool inverse) override {
    if (B <= 0 || T <= 0 || H <= 0 || D <= 0) return;
    if (D % 2 != 0) throw Error("rope (cuda): head dim must be even");
    DeviceGuard g(dev_);
    // The (cos, sin) table depends only on (D, theta) per position; rebuilt when those change
    // or more positions are needed.
    if (ropeD_ != D || ropeTheta_ != theta || ropeT_ < T) {
      float2* t =
          static_cast<float2*>(ensure(ropeScratch_, sizeof(float2) * static_cast<size_t>(T) * (D / 2)));
      launchRopeTable(t, T, D, theta, st_);
      ropeD_ = D;
      ropeT_ = T;
      ropeTheta_ = theta;
    }
    launchRope(x, static_cast<const float2*>(ropeScratch_.p), B, T, H, D, inverse, st_);
  }
  void attentionForward(const float* q, const float* k, const float* v, float* out, float* lse, int B, int T,
                        int H, int D) override {
    DeviceGuard g(dev_);
    launchAttentionForward(q, k, v, out, lse, B, T, H, D, smemOptin_, st_);
  }
  void attentionBackward(const float* q, const float* k, const float* v, const float* out, const float* lse,
                         const float* dout, float* dq, float* dk, float* dv, int B, int T, int H,
                         int D) override {
    if (B <= 0 || T <= 0 || H <= 0) return;
    DeviceGuard g(dev_);
    float* s = static_cast<float*>(ensure(attnScratch_, attentionBackwardScratchBytes(B, T, H)));
    launchAttentionBackward(q, k, v, out, lse, dout, dq, dk, dv, B, T, H, D, s, smemOptin_, st_);
  }
  void swigluForward(const float* gate, const float* up, float* h, size_t n) override {
    DeviceGuard g(dev_);
    launchSwigluForward(gate, up, h, n, st_);
  }
  void swigluBackward(const float* gate, const float* up, const float* dh, float* dgate, float* dup,
                      size_t n) override {
    DeviceGuard g(dev_);
    launchSwigluBackward(gate, up, dh, dgate, dup, n, st_);
  }
  void actQuant(const float* x, float* xq, int N, int C, int bits) override {
    DeviceGuard g(dev_);
    launchActQuant(x, xq, N, C, bits, st_);
  }

  void classifier(const float* x, const float* table, const int32_t* targets, float* losses, float* dx,
                  float* dtable, int N, int C, int V, float gradScale) override {
    if (N <= 0) return;
    if (V <= 0 || C <= 0) throw Error("classifier (cuda): V and C must be positive");
    DeviceGuard g(dev_);
    // Rows are processed in chunks: logits of a chunk (padded row stride for aligned GEMMs) ->
    // in-place softmax/loss/dlogits -> dx chunk and dtable update. The chunk size depends only on
    // (N, V), so the dtable summation order is fixed.
    const int ldL = classifierLd(V);
    const int R = classifierRows(N, V);
    float* L = static_cast<float*>(ensure(clsScratch_, classifierRowBytes(V) * static_cast<size_t>(R)));
    const bool bf16 = mode_ == GemmMode::BF16;
    // The vocabulary is split into V0 (a multiple of 64) + a small tail: with an odd V (GPT-2's
    // 50257) in the contiguous output or reduction dimension cuBLASLt picks kernels at 1/3 of the
    // speed measured on H100 (130 vs ~350 TFLOP/s); only the first V rows of table may be read.
    const int V0 = V >= 64 ? V - V % 64 : V, Vt = V - V0;
    const float* tableT = table + static_cast<size_t>(V0) * C;
    for (int r0 = 0; r0 < N; r0 += R) {
      const int rows = std::min(R, N - r0);
      const float* xc = x + static_cast<size_t>(r0) * C;
      gemmImpl(false, true, rows, V0, C, 1.0f, xc, C, table, C, 0.0f, L, ldL);
      if (Vt) gemmImpl(false, true, rows, Vt, C, 1.0f, xc, C, tableT, C, 0.0f, L + V0, ldL);
      launchSoftmaxXent(L, ldL, rows, V, targets + r0, losses + r0, dx != nullptr, gradScale, st_);
      if (dx) {
        float* dxc = dx + static_cast<size_t>(r0) * C;
        // dlogits is the A operand of the four GEMMs below; in bf16 mode it is converted once
        // (into bfA_, which the GEMMs then leave alone: they convert only their B operand).
        Operand Lh{L, ldL, false}, Lt{L + V0, ldL, false};
        if (bf16) {
          uint16_t* Lb =
              static_cast<uint16_t*>(ensure(bfA_, sizeof(uint16_t) * static_cast<size_t>(rows) * ldL));
          launchFloatToBf16(L, ldL, Lb, ldL, rows, V, st_);
          Lh = Operand{Lb, ldL, true};
          Lt = Operand{Lb + V0, ldL, true};
        }
        const Operand tab{table, C, false}, tabT{tableT, C, false}, xo{xc, C, false};
        gemmOp(false, false, rows, C, V0, 1.0f, Lh, tab, 0.0f, dxc, C);
        if (Vt) gemmOp(false, false, rows, C, Vt, 1.0f, Lt, tabT, 1.0f, dxc, C);
        gemmOp(true, false, V0, C, rows, 1.0f, Lh, xo, 1.0f, dtable, C);
        if (Vt) gemmOp(true, false, Vt, C, rows, 1.0f, Lt, xo, 1.0f, dtable + static_cast<size_t>(V0) * C, C);
      }
    }
  }

  void stepLoss(const float* losses, const int32_t* targets, int N, StepHead* head) override {
    DeviceGuard g(dev_);
    launchStepLoss(losses, targets, std::max(N, 0), head, st_);
  }

  void logits(const float* x, const float* table, float* out, int N, int C, int V) override {
    DeviceGuard g(dev_);
    const int V0 = V >= 64 ? V - V % 64 : V, Vt = V - V0;  // see classifier()
    const float* tableT = table + static_cast<size_t>(V0) * C;
    const int ldL = classifierLd(V);
    if (ldL == V) {
      gemmImpl(false, true, N, V0, C, 1.0f, x, C, table, C, 0.0f, out, V);
      if (Vt) gemmImpl(false, true, N, Vt, C, 1.0f, x, C, tableT, C, 0.0f, out + V0, V);
      return;
    }
    // Rows of out with a stride that is not a multiple of 32 floats (GPT-2's 50257) leave most
    // rows off the 16-byte grid and put cuBLASLt on its slow kernels: the GEMMs write rows padded
    // to 32 floats into the classifier's logits scratch, chunk by chunk (scratchBytes counts it),
    // and one strided copy per chunk packs them into out.
    const int R = classifierRows(N, V);
    float* L = static_cast<float*>(ensure(clsScratch_, classifierRowBytes(V) * static_cast<size_t>(R)));
    for (int r0 = 0; r0 < N; r0 += R) {
      const int rows = std::min(R, N - r0);
      const float* xc = x + static_cast<size_t>(r0) * C;
      gemmImpl(false, true, rows, V0, C, 1.0f, xc, C, table, C, 0.0f, L, ldL);
      if (Vt) gemmImpl(false, true, rows, Vt, C, 1.0f, xc, C, tableT, C, 0.0f, L + V0, ldL);
      PRIMAL_CUDA_CHECK(cudaMemcpy2DAsync(out + static_cast<size_t>(r0) * V, sizeof(float) * V, L,
                                          sizeof(float) * ldL, sizeof(float) * V, rows,
                                          cudaMemcpyDeviceToDevice, st_));
    }
  }

  // ---- the step's decision, optimizers, quantizers -------------------------------------------
  void stepGate(StepHead* head, const double* ds, int layers, float gradClip) override {
    DeviceGuard g(dev_);
    launchStepGate(head, ds, std::max(layers, 0), gradClip, st_);
  }

  void adamw(float* p, const float* g, float* m, float* v, size_t n, size_t nDecay, const AdamParams& a,
             const StepHead* head) override {
    if (a.t < 1) throw Error("adamw (cuda): step t must be >= 1, got " + std::to_string(a.t));
    if (nDecay > n) throw Error("adamw (cuda): the decaying part is larger than the arena");
    DeviceGuard gd(dev_);
    // Bias corrections once per step, in double, then fp32 factors (as the CPU backend).
    const float bc1 = static_cast<float>(1.0 - std::pow(static_cast<double>(a.beta1), a.t));
    const float bc2 = static_cast<float>(1.0 - std::pow(static_cast<double>(a.beta2), a.t));
    launchAdamw(p, g, m, v, n, nDecay, a.lr, a.beta1, a.beta2, a.eps, a.weightDecay, bc1, bc2, head, st_);
  }

  void steQuantize(const float* W, float* Wq, size_t n, double* absSum, bool computeAbs) override {
    if (n == 0) return;
    DeviceGuard g(dev_);
    if (computeAbs) {
      launchAbsSumPartials(W, n, ds_->partials, st_);
      launchFinalSum(ds_->partials, reduceBlocks(n), absSum, st_);
    }
    launchSteQuantize(W, Wq, n, absSum, &ds_->gamma, st_);
  }

  void poltMaterialize(const int8_t* code, float* W, size_t n, const float* gamma0, const float* s,
                       float bridge) override {
    DeviceGuard g(dev_);
    launchPoltMaterialize(code, W, n, gamma0, s, bridge, st_);
  }

  void poltMergeVotes(int8_t* vote, const int8_t* start, size_t n, const StepHead* head) override {
    DeviceGuard g(dev_);
    launchPoltMergeVotes(vote, start, n, head, st_);
  }

  void poltVote(const float* G, const int8_t* code, int8_t* vote, size_t n, float bridge, float deadzone,
                const float* gamma0, double* dsOut) override {
    if (n == 0) return;
    DeviceGuard g(dev_);
    const double* sumSq = nullptr;
    if (deadzone > 0.0f) {
      launchSumSquaresPartials(G, n, ds_->partials, st_);
      launchFinalSum(ds_->partials, reduceBlocks(n), &ds_->res[1], st_);
      sumSq = &ds_->res[1];
    }
    launchPoltVote(G, code, vote, n, bridge, deadzone, sumSq, ds_->partials, st_);
    launchFinalSumInto(ds_->partials, reduceBlocks(n), gamma0, dsOut, st_);
  }

  void ghostScaleStep(float* s, float* m, float* v, const double* dsIn, int layers,
                      const polt::GhostScaleRule& rule, const StepHead* head) override {
    DeviceGuard g(dev_);
    launchGhostScaleStep(s, m, v, dsIn, layers, rule, head, st_);
  }

  void poltFlip(int8_t* code, int8_t* vote, size_t n, const FlipParams& params, const float* scale,
                const StepHead* head, FlipStats* stats, float* pOut) override {
    if (params.accum <= 0) throw Error("poltFlip (cuda): accum must be >= 1");
    DeviceGuard g(dev_);
    PRIMAL_CUDA_CHECK(cudaMemsetAsync(ds_->counters, 0, sizeof(ds_->counters), st_));
    launchPoltFlip(code, vote, n, params, scale, head, pOut, ds_->counters, st_);
    if (stats) launchPoltFlipFinish(ds_->counters, params, scale, head, stats, st_);
  }

  void poltProbabilities(const int8_t* vote, float* pOut, size_t n, const FlipParams& params,
                         const float* scale) override {
    if (params.accum <= 0) throw Error("poltProbabilities (cuda): accum must be >= 1");
    DeviceGuard g(dev_);
    launchPoltProbabilities(vote, pOut, n, params, scale, st_);
  }

 private:
  struct Block {
    size_t rounded, requested;
  };
  struct Scratch {
    void* p = nullptr;
    size_t bytes = 0;
  };
  // A GEMM operand as stored (row-major, row stride ld): fp32, or a bf16 copy (bf16 mode only).
  struct Operand {
    const void* p;
    int ld;
    bool bf16;
  };

  // Classifier chunking (shared by classifier() and scratchBytes()): logits row stride (V padded
  // to 32), bytes per logits row, and rows per chunk from the logits budget (a multiple of 64
  // unless that would be 0 or all of N).
  static int classifierLd(int V) { return (V + 31) / 32 * 32; }
  static size_t classifierRowBytes(int V) { return sizeof(float) * static_cast<size_t>(classifierLd(V)); }
  int classifierRows(int N, int V) const {
    const size_t rowBytes = classifierRowBytes(V);
    int R = static_cast<int>(
        std::min<size_t>(static_cast<size_t>(N), std::max<size_t>(1, clsBudget_ / rowBytes)));
    if (R >= 64 && R < N) R -= R % 64;
    return R;
  }

  void init(const std::string& gemmModeArg) {
    int count = 0;
    PRIMAL_CUDA_CHECK(cudaGetDeviceCount(&count));
    if (dev_ < 0 || dev_ >= count)
      throw Error("CUDA device index " + std::to_string(dev_) + " out of range (" + std::to_string(count) +
                  " devices)");
    PRIMAL_CUDA_CHECK(cudaSetDevice(dev_));
    cudaDeviceProp prop;
    PRIMAL_CUDA_CHECK(cudaGetDeviceProperties(&prop, dev_));
    smemOptin_ = prop.sharedMemPerBlockOptin ? prop.sharedMemPerBlockOptin : prop.sharedMemPerBlock;
    int rt = 0;
    PRIMAL_CUDA_CHECK(cudaRuntimeGetVersion(&rt));
    // GEMM mode: the argument, else PRIMAL_GEMM, else PRIMAL_TF32=0 -> fp32, else tf32.
    std::string want = gemmModeArg;
    if (want.empty())
      if (const char* e = std::getenv("PRIMAL_GEMM")) want = e;
    if (want.empty()) want = envDisabled("PRIMAL_TF32") ? "fp32" : "tf32";
    std::string gemmNote;
    if (want == "fp32") {
      mode_ = GemmMode::FP32;
    } else if (want == "tf32" || want == "bf16") {
      if (prop.major >= 8) {
        mode_ = want == "bf16" ? GemmMode::BF16 : GemmMode::TF32;
      } else {
        mode_ = GemmMode::FP32;
        if (want == "bf16") gemmNote = ", FP32 GEMM (BF16 GEMM needs sm_80+)";
      }
    } else {
      throw Error("PRIMAL_GEMM / GEMM mode must be fp32, tf32 or bf16, got '" + want + "'");
    }
    clsBudget_ = std::min(kClassifierMaxBytes, std::max(kClassifierMinBytes, prop.totalGlobalMem / 32));
    if (const char* mb = std::getenv("PRIMAL_CUDA_CLASSIFIER_MB")) {
      const long v = std::strtol(mb, nullptr, 10);
      if (v > 0) clsBudget_ = static_cast<size_t>(v) << 20;
    }
    const char* modeNote = mode_ == GemmMode::TF32 ? ", TF32" : mode_ == GemmMode::BF16 ? ", BF16 GEMM" : "";
    describe_ = std::string(prop.name) + " (sm_" + std::to_string(prop.major) + std::to_string(prop.minor) +
                ", CUDA " + std::to_string(rt / 1000) + "." + std::to_string((rt % 1000) / 10) + modeNote +
                gemmNote + ")";
    PRIMAL_CUDA_CHECK(cudaStreamCreateWithFlags(&st_, cudaStreamNonBlocking));
    PRIMAL_CUBLAS_CHECK(cublasLtCreate(&lt_));
    {
      std::lock_guard<std::mutex> lk(mu_);
      workspace_ = rawAlloc(kWorkspaceBytes, kWorkspaceBytes);
      scratchInUse_ += kWorkspaceBytes;
      dsRaw_ = rawAlloc(roundAlloc(sizeof(DevSmall)), sizeof(DevSmall));
      scratchInUse_ += roundAlloc(sizeof(DevSmall));
      notePeak();
    }
    ds_ = static_cast<DevSmall*>(dsRaw_);
    void* h = nullptr;
    PRIMAL_CUDA_CHECK(cudaMallocHost(&h, sizeof(HostSmall)));
    hs_ = static_cast<HostSmall*>(h);
    for (int s = 0; s < kStageSlots; ++s) {
      PRIMAL_CUDA_CHECK(cudaMallocHost(&stage_[s], kStageBytes));
      PRIMAL_CUDA_CHECK(cudaEventCreateWithFlags(&stageEvent_[s], cudaEventDisableTiming));
    }
  }

  // Best effort: a destructor must not throw, and after a sticky device error nothing can be
  // freed anyway.
  void release() noexcept {
    if (cudaSetDevice(dev_) != cudaSuccess) {
      (void)cudaGetLastError();
      return;
    }
    if (st_) (void)cudaStreamSynchronize(st_);
    for (auto& kv : plans_) {
      if (kv.second.op) (void)cublasLtMatmulDescDestroy(kv.second.op);
      if (kv.second.a) (void)cublasLtMatrixLayoutDestroy(kv.second.a);
      if (kv.second.b) (void)cublasLtMatrixLayoutDestroy(kv.second.b);
      if (kv.second.c) (void)cublasLtMatrixLayoutDestroy(kv.second.c);
    }
    plans_.clear();
    if (lt_) (void)cublasLtDestroy(lt_);
    lt_ = nullptr;
    for (auto& kv : live_) (void)cudaFree(kv.first);
    live_.clear();
    for (auto& kv : cache_) (void)cudaFree(kv.second);
    cache_.clear();
    for (Scratch* s : {&embScratch_, &normScratch_, &ropeScratch_, &attnScratch_, &clsScratch_, &bfA_, &bfB_})
      if (s->p) (void)cudaFree(s->p);
    for (SegmentTable& t : segTables_)
      if (t.block) (void)cudaFree(t.block);
    segTables_.clear();
    if (workspace_) (void)cudaFree(workspace_);
    if (dsRaw_) (void)cudaFree(dsRaw_);
    workspace_ = dsRaw_ = nullptr;
    if (hs_) (void)cudaFreeHost(hs_);
    hs_ = nullptr;
    for (int s = 0; s < kStageSlots; ++s) {
      if (stage_[s]) (void)cudaFreeHost(stage_[s]);
      if (stageEvent_[s]) (void)cudaEventDestroy(stageEvent_[s]);
      stage_[s] = nullptr;
      stageEvent_[s] = nullptr;
    }
    if (st_) (void)cudaStreamDestroy(st_);
    st_ = nullptr;
    (void)cudaGetLastError();
  }

  // Device -> pinned host copy of a small result, then wait for the stream.
  void fetch(void* host, const void* dev, size_t bytes) {
    PRIMAL_CUDA_CHECK(cudaMemcpyAsync(host, dev, bytes, cudaMemcpyDeviceToHost, st_));
    PRIMAL_CUDA_CHECK(cudaStreamSynchronize(st_));
  }

  void notePeak() { peak_ = std::max(peak_, inUse_ + scratchInUse_); }

  // A block of exactly `rounded` bytes: from the cache, else cudaMalloc; on out-of-memory the
  // cache is returned to the driver and the allocation retried once. Caller holds mu_.
  void* rawAlloc(size_t rounded, size_t requested) {
    auto it = cache_.find(rounded);
    if (it != cache_.end()) {
      void* p = it->second;
      cache_.erase(it);
      return p;
    }
    void* p = nullptr;
    cudaError_t e = cudaMalloc(&p, rounded);
    if (e == cudaErrorMemoryAllocation && !cache_.empty()) {
      (void)cudaGetLastError();
      (void)cudaStreamSynchronize(st_);
      for (auto& kv : cache_) (void)cudaFree(kv.second);
      cache_.clear();
      e = cudaMalloc(&p, rounded);
    }
    if (e == cudaErrorMemoryAllocation) {
      (void)cudaGetLastError();
      size_t freeB = 0, totalB = 0;
      if (cudaMemGetInfo(&freeB, &totalB) != cudaSuccess) (void)cudaGetLastError();
      auto mib = [](size_t b) { return std::to_string(b >> 20) + " MiB"; };
      throw OutOfMemory("CUDA out of memory: requested " + std::to_string(requested) + " bytes (" +
                        mib(requested) + "); the GPU has " + mib(freeB) + " free of " + mib(totalB) +
                        "; this backend holds " + mib(inUse_) + " in live buffers and " + mib(scratchInUse_) +
                        " of scratch");
    }
    if (e != cudaSuccess) throwCudaError(e, "cudaMalloc", __FILE__, __LINE__);
    return p;
  }

  // Backend-owned scratch that grows on demand (never shrinks). Counted in peakBytes.
  void* ensure(Scratch& s, size_t bytes) {
    if (s.bytes >= bytes && s.p) return s.p;
    std::lock_guard<std::mutex> lk(mu_);
    if (s.p) {
      cache_.emplace(s.bytes, s.p);  // stream-ordered reuse, like free()
      scratchInUse_ -= s.bytes;
      s.p = nullptr;
      s.bytes = 0;
    }
    const size_t want = roundAlloc(std::max<size_t>(bytes, 256));
    s.p = rawAlloc(want, want);
    s.bytes = want;
    scratchInUse_ += want;
    notePeak();
    return s.p;
  }

  // The device tables for a host segment table: found among the kept ones, else built (ranges of
  // at most kSegRangeElems from each segment's start), uploaded once and kept (the oldest goes
  // when more than kSegmentTables distinct tables are in use).
  const SegmentTable& segmentTable(const size_t* seg, int count) {
    for (const SegmentTable& t : segTables_)
      if (t.count == count && std::equal(t.key.begin(), t.key.end(), seg)) return t;
    SegmentTable t;
    t.key.assign(seg, seg + 2 * static_cast<size_t>(count));
    t.count = count;
    std::vector<SegRange> ranges;
    std::vector<int> first;
    for (int j = 0; j < count; ++j) {
      if (seg[2 * j + 1] < seg[2 * j]) throw Error("sumSegments (cuda): a segment ends before it begins");
      first.push_back(static_cast<int>(ranges.size()));
      for (size_t b = seg[2 * j]; b < seg[2 * j + 1]; b += kSegRangeElems)
        ranges.push_back({b, std::min(seg[2 * j + 1], b + kSegRangeElems)});
    }
    first.push_back(static_cast<int>(ranges.size()));
    t.ranges = static_cast<int>(ranges.size());
    t.bytes = segmentTableBytes(ranges.size(), static_cast<size_t>(count));
    {
      std::lock_guard<std::mutex> lk(mu_);
      t.block = rawAlloc(roundAlloc(t.bytes), t.bytes);
      scratchInUse_ += roundAlloc(t.bytes);
      notePeak();
    }
    char* c = static_cast<char*>(t.block);
    const size_t a = (ranges.size() * sizeof(SegRange) + 255) / 256 * 256;
    const size_t f = (first.size() * sizeof(int) + 255) / 256 * 256;
    t.range = reinterpret_cast<SegRange*>(c);
    t.first = reinterpret_cast<int*>(c + a);
    t.partials = reinterpret_cast<double*>(c + a + f);
    t.segSums = t.partials + ranges.size();
    // Built once per table: a synchronous upload is fine here.
    PRIMAL_CUDA_CHECK(cudaMemcpyAsync(t.range, ranges.data(), sizeof(SegRange) * ranges.size(),
                                      cudaMemcpyHostToDevice, st_));
    PRIMAL_CUDA_CHECK(
        cudaMemcpyAsync(t.first, first.data(), sizeof(int) * first.size(), cudaMemcpyHostToDevice, st_));
    PRIMAL_CUDA_CHECK(cudaStreamSynchronize(st_));
    if (static_cast<int>(segTables_.size()) >= kSegmentTables) {
      std::lock_guard<std::mutex> lk(mu_);
      cache_.emplace(roundAlloc(segTables_.front().bytes), segTables_.front().block);  // stream-ordered reuse
      scratchInUse_ -= roundAlloc(segTables_.front().bytes);
      segTables_.erase(segTables_.begin());
    }
    segTables_.push_back(std::move(t));
    return segTables_.back();
  }

  // The cached plan of a GEMM key; plan.found is false when cuBLASLt has no algorithm for it.
  // The heuristic is asked with the operands' real alignments; when it finds nothing it is asked
  // again without the alignment hints, for several candidates, and the first one whose own
  // alignment needs (CUBLASLT_ALGO_CAP_MIN_ALIGNMENT_*) the operands meet is kept.
  const GemmPlan& plan(const GemmKey& k) {
    auto it = plans_.find(k);
    if (it != plans_.end()) return it->second;
    // Column-major view of the row-major problem: C^T[N,M] = op(B)^T[N,K] * op(A)^T[K,M].
    GemmPlan p;
    // bf16 mode: bf16 A/B, fp32 C/D, fp32 accumulation and scale (alpha, beta stay float).
    const bool bf16 = k.mode == static_cast<int>(GemmMode::BF16);
    const cudaDataType_t abType = bf16 ? CUDA_R_16BF : CUDA_R_32F;
    const cublasComputeType_t compute =
        k.mode == static_cast<int>(GemmMode::TF32) ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F;
    PRIMAL_CUBLAS_CHECK(cublasLtMatmulDescCreate(&p.op, compute, CUDA_R_32F));
    const cublasOperation_t opA = k.tb ? CUBLAS_OP_T : CUBLAS_OP_N;  // cuBLAS "A" is our B
    const cublasOperation_t opB = k.ta ? CUBLAS_OP_T : CUBLAS_OP_N;  // cuBLAS "B" is our A
    PRIMAL_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p.op, CUBLASLT_MATMUL_DESC_TRANSA, &opA, sizeof(opA)));
    PRIMAL_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p.op, CUBLASLT_MATMUL_DESC_TRANSB, &opB, sizeof(opB)));
    PRIMAL_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&p.a, abType, k.tb ? k.K : k.N, k.tb ? k.N : k.K, k.ldb));
    PRIMAL_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&p.b, abType, k.ta ? k.M : k.K, k.ta ? k.K : k.M, k.lda));
    PRIMAL_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&p.c, CUDA_R_32F, k.N, k.M, k.ldc));
    // Tests only: PRIMAL_CUDA_TEST_BF16_NO_ALGO=odd-ldc makes both bf16 queries find nothing when
    // ldc is odd, so the TF32 fallback below runs on any GPU (cuda/bf16 gemm fallback test).
    const char* noAlgo = bf16 ? std::getenv("PRIMAL_CUDA_TEST_BF16_NO_ALGO") : nullptr;
    const bool forceNone = noAlgo && std::strcmp(noAlgo, "odd-ldc") == 0 && k.ldc % 2 != 0;
    const size_t abBytes = bf16 ? 2 : 4;
    // cuBLAS operand order: a = our B, b = our A, c = d = our C.
    const uint32_t need[4] = {static_cast<uint32_t>(matrixAlignment(k.alB, k.ldb, static_cast<int>(abBytes))),
                              static_cast<uint32_t>(matrixAlignment(k.alA, k.lda, static_cast<int>(abBytes))),
                              static_cast<uint32_t>(matrixAlignment(k.alC, k.ldc, 4)),
                              static_cast<uint32_t>(matrixAlignment(k.alC, k.ldc, 4))};
    p.status = forceNone ? CUBLAS_STATUS_NOT_SUPPORTED : heuristic(p, k, true, need);
    if (!p.found && !forceNone) p.status = heuristic(p, k, false, need);
    if (!p.found) {
      cublasLtMatmulDescDestroy(p.op);
      cublasLtMatrixLayoutDestroy(p.a);
      cublasLtMatrixLayoutDestroy(p.b);
      cublasLtMatrixLayoutDestroy(p.c);
      p.op = nullptr;
      p.a = p.b = p.c = nullptr;
      (void)cudaGetLastError();
    }
    return plans_.emplace(k, p).first->second;
  }

  // One heuristic query for plan p: with alignment hints (the operands' pointer alignments,
  // one answer) or without (up to 8 answers, checked against `need`, the bytes every address of
  // cuBLAS's a, b, c, d is aligned to). Sets p.algo and p.found on success.
  cublasStatus_t heuristic(GemmPlan& p, const GemmKey& k, bool hints, const uint32_t (&need)[4]) {
    constexpr int kCandidates = 8;
    cublasLtMatmulPreference_t pref = nullptr;
    PRIMAL_CUBLAS_CHECK(cublasLtMatmulPreferenceCreate(&pref));
    const size_t ws = kWorkspaceBytes;
    cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof(ws));
    if (hints) {
      const uint32_t alA = static_cast<uint32_t>(k.alB), alB = static_cast<uint32_t>(k.alA),
                     alC = static_cast<uint32_t>(k.alC);
      cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, &alA,
                                           sizeof(alA));
      cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, &alB,
                                           sizeof(alB));
      cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, &alC,
                                           sizeof(alC));
      cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, &alC,
                                           sizeof(alC));
    }
    cublasLtMatmulHeuristicResult_t res[kCandidates];
    int found = 0;
    const cublasStatus_t hs = cublasLtMatmulAlgoGetHeuristic(lt_, p.op, p.a, p.b, p.c, p.c, pref,
                                                             hints ? 1 : kCandidates, res, &found);
    cublasLtMatmulPreferenceDestroy(pref);
    if (hs != CUBLAS_STATUS_SUCCESS) return hs;
    for (int i = 0; i < found && !p.found; ++i) {
      bool fits = hints;  // a hinted answer already respects the alignments
      if (!hints) {
        static const cublasLtMatmulAlgoCapAttributes_t caps[4] = {
            CUBLASLT_ALGO_CAP_MIN_ALIGNMENT_A_BYTES, CUBLASLT_ALGO_CAP_MIN_ALIGNMENT_B_BYTES,
            CUBLASLT_ALGO_CAP_MIN_ALIGNMENT_C_BYTES, CUBLASLT_ALGO_CAP_MIN_ALIGNMENT_D_BYTES};
        fits = true;
        for (int m = 0; m < 4 && fits; ++m) {
          uint32_t al = 0;
          size_t written = 0;
          fits = cublasLtMatmulAlgoCapGetAttribute(&res[i].algo, caps[m], &al, sizeof(al), &written) ==
                     CUBLAS_STATUS_SUCCESS &&
                 written == sizeof(al) && al <= need[m];
        }
      }
      if (fits) {
        p.algo = res[i].algo;
        p.found = true;
      }
    }
    return p.found ? CUBLAS_STATUS_SUCCESS : CUBLAS_STATUS_NOT_SUPPORTED;
  }

  [[noreturn]] void throwNoAlgorithm(const GemmKey& k, cublasStatus_t status) const {
    throw Error("gemm (cuda): cuBLASLt found no algorithm for M=" + std::to_string(k.M) +
                " N=" + std::to_string(k.N) + " K=" + std::to_string(k.K) +
                " transA=" + std::to_string(k.ta) + " transB=" + std::to_string(k.tb) +
                " lda=" + std::to_string(k.lda) + " ldb=" + std::to_string(k.ldb) +
                " ldc=" + std::to_string(k.ldc) + " mode=" + gemmModeName(static_cast<GemmMode>(k.mode)) +
                " (" + cublasStatusName(status) + ")");
  }

  void gemmImpl(bool transA, bool transB, int M, int N, int K, float alpha, const float* A, int lda,
                const float* B, int ldb, float beta, float* C, int ldc) {
    gemmOp(transA, transB, M, N, K, alpha, Operand{A, lda, false}, Operand{B, ldb, false}, beta, C, ldc);
  }

  // bf16 copy of a stored rows x cols fp32 matrix (row stride ld) in scratch `s`.
  Operand toBf16(Scratch& s, const Operand& x, int rows, int cols) {
    const int ldb = bf16Ld(cols);
    void* p = ensure(s, sizeof(uint16_t) * static_cast<size_t>(rows) * ldb);
    launchFloatToBf16(static_cast<const float*>(x.p), x.ld, p, ldb, rows, cols, st_);
    return Operand{p, ldb, true};
  }

  // C = alpha op(A) op(B) + beta C. In bf16 mode fp32 operands are converted first (A into bfA_,
  // B into bfB_); operands already in bf16 are used as they are. When cuBLASLt has no bf16
  // algorithm for the shape (e.g. an odd ldc), the call runs in TF32 on the fp32 operands
  // instead; an operand the caller passed only in bf16 leaves no fallback (an error).
  void gemmOp(bool transA, bool transB, int M, int N, int K, float alpha, Operand A, Operand B, float beta,
              float* C, int ldc) {
    if (M <= 0 || N <= 0) return;
    if (K <= 0) {
      launchScaleMatrix(C, M, N, ldc, beta, st_);
      return;
    }
    const int needA = transA ? M : K, needB = transB ? K : N;
    if (A.ld < needA || B.ld < needB || ldc < N)
      throw Error("gemm (cuda): leading dimension too small (lda=" + std::to_string(A.ld) + " ldb=" +
                  std::to_string(B.ld) + " ldc=" + std::to_string(ldc) + " for M=" + std::to_string(M) +
                  " N=" + std::to_string(N) + " K=" + std::to_string(K) + ")");
    const bool bf16 = mode_ == GemmMode::BF16;
    const Operand A32 = A, B32 = B;
    if (bf16) {
      if (!A.bf16) A = toBf16(bfA_, A, transA ? K : M, transA ? M : K);
      if (!B.bf16) B = toBf16(bfB_, B, transB ? N : K, transB ? K : N);
    } else if (A.bf16 || B.bf16) {
      throw Error("gemm (cuda): internal error: bf16 operand outside bf16 mode");
    }
    GemmKey key{transA,       transB,    static_cast<int>(mode_), M, N, K, A.ld, B.ld, ldc, alignOf(A.p),
                alignOf(B.p), alignOf(C)};
    const GemmPlan& p = plan(key);
    if (p.found) {
      PRIMAL_CUBLAS_CHECK(cublasLtMatmul(lt_, p.op, &alpha, B.p, p.a, A.p, p.b, &beta, C, p.c, C, p.c,
                                         &p.algo, workspace_, kWorkspaceBytes, st_));
      return;
    }
    if (!bf16 || A32.bf16 || B32.bf16) throwNoAlgorithm(key, p.status);
    const GemmKey k32{transA,
                      transB,
                      static_cast<int>(GemmMode::TF32),
                      M,
                      N,
                      K,
                      A32.ld,
                      B32.ld,
                      ldc,
                      alignOf(A32.p),
                      alignOf(B32.p),
                      alignOf(C)};
    const GemmPlan& q = plan(k32);
    if (!q.found) throwNoAlgorithm(key, p.status);
    PRIMAL_CUBLAS_CHECK(cublasLtMatmul(lt_, q.op, &alpha, B32.p, q.a, A32.p, q.b, &beta, C, q.c, C, q.c,
                                       &q.algo, workspace_, kWorkspaceBytes, st_));
  }

  int dev_;
  std::string describe_;
  size_t smemOptin_ = 48 * 1024;
  GemmMode mode_ = GemmMode::FP32;
  size_t clsBudget_ = kClassifierMinBytes;
  cudaStream_t st_ = nullptr;
  cublasLtHandle_t lt_ = nullptr;
  void* workspace_ = nullptr;
  void* dsRaw_ = nullptr;
  DevSmall* ds_ = nullptr;
  HostSmall* hs_ = nullptr;
  void* stage_[kStageSlots] = {};
  cudaEvent_t stageEvent_[kStageSlots] = {};
  int nextStage_ = 0;

  mutable std::mutex mu_;
  std::unordered_map<void*, Block> live_;
  std::multimap<size_t, void*> cache_;
  size_t inUse_ = 0, scratchInUse_ = 0, peak_ = 0;

  Scratch embScratch_, normScratch_, ropeScratch_, attnScratch_, clsScratch_;
  Scratch bfA_, bfB_;  // bf16 copies of the A and B operands of a GEMM (bf16 mode only)
  int ropeD_ = 0, ropeT_ = 0;
  float ropeTheta_ = 0.0f;

  std::unordered_map<GemmKey, GemmPlan, GemmKeyHash> plans_;
  std::vector<SegmentTable> segTables_;
};

// Op-profiler timestamps: a pool of timing events created up front and recorded on the backend's
// stream, so profiling adds no allocation and no synchronisation inside a step; elapsedMs() waits
// for the last recorded event once and reads every slot against slot 0.
class CudaEventClock final : public OpClock {
 public:
  CudaEventClock(int dev, cudaStream_t st, size_t slots) : dev_(dev), st_(st) {
    DeviceGuard g(dev_);
    ev_.resize(slots, nullptr);
    for (auto& e : ev_) {
      if (cudaEventCreate(&e) != cudaSuccess) {
        release();
        throw Error("op profiling (cuda): could not create the timing events");
      }
    }
  }
  ~CudaEventClock() override { release(); }
  size_t capacity() const override { return ev_.size(); }
  size_t record() override {
    if (used_ >= ev_.size()) throw Error("op profiling (cuda): event pool exhausted");
    DeviceGuard g(dev_);
    PRIMAL_CUDA_CHECK(cudaEventRecord(ev_[used_], st_));
    return used_++;
  }
  std::vector<double> elapsedMs() override {
    std::vector<double> ms(used_, 0.0);
    if (used_ == 0) return ms;
    DeviceGuard g(dev_);
    PRIMAL_CUDA_CHECK(cudaEventSynchronize(ev_[used_ - 1]));
    for (size_t i = 1; i < used_; ++i) {
      float v = 0;
      PRIMAL_CUDA_CHECK(cudaEventElapsedTime(&v, ev_[0], ev_[i]));
      ms[i] = v;
    }
    used_ = 0;
    return ms;
  }
  const char* kind() const override { return "cudaEvent"; }

 private:
  void release() noexcept {
    for (auto& e : ev_)
      if (e) (void)cudaEventDestroy(e);
    ev_.clear();
  }
  int dev_;
  cudaStream_t st_;
  std::vector<cudaEvent_t> ev_;
  size_t used_ = 0;
};

}  // namespace
}  // namespace cuda

int cudaDeviceCountImpl() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    (void)cudaGetLastError();
    return 0;
  }
  return n;
}

std::unique_ptr<Backend> makeCudaBackendImpl(int deviceIndex) {
  return std::make_unique<cuda::CudaBackend>(deviceIndex);
}

std::unique_ptr<OpClock> makeCudaOpClock(Backend& be, size_t slots) {
  auto* c = dynamic_cast<cuda::CudaBackend*>(&be);
  if (!c) return nullptr;
  return std::make_unique<cuda::CudaEventClock>(c->device(), c->stream(), slots);
}

std::unique_ptr<Backend> makeCudaBackendWithGemm(int deviceIndex, const std::string& gemmMode) {
  return std::make_unique<cuda::CudaBackend>(deviceIndex, gemmMode);
}

}  // namespace primal
