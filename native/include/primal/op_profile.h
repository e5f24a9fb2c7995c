// Per-op timing of any backend (PRIMAL_PROFILE=1 for every device, PRIMAL_CUDA_PROFILE=1 for
// CUDA): ProfilingBackend wraps a Backend, brackets every op with two timestamps taken on the
// backend's own queue (CUDA: events from a pre-created pool; CPU: steady_clock), and resolves them
// once per step into a table of calls, time and work (FLOPs, bytes) per op. It also counts the
// host synchronisations the Backend contract implies: every entry point that waits for the device
// (toHost, sync, and the ops documented "synchronous": sumSquares, allFinite).
// Timing never changes what the wrapped backend computes.
#pragma once
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "primal/backend.h"

namespace primal {

// Timestamps on a backend's queue. record() returns a slot; elapsedMs() waits until every
// recorded timestamp has happened and returns each one's time in ms after slot 0, then frees all
// slots. A clock holds capacity() slots; the profiler resolves early when they run out.
class OpClock {
 public:
  virtual ~OpClock() = default;
  virtual size_t capacity() const = 0;
  virtual size_t record() = 0;
  virtual std::vector<double> elapsedMs() = 0;
  virtual const char* kind() const = 0;  // "steady_clock", "cudaEvent"
};

// Host clock for backends whose ops finish before they return (the CPU backend).
class SteadyOpClock final : public OpClock {
 public:
  explicit SteadyOpClock(size_t capacity = 1 << 16) : cap_(capacity) { t_.reserve(cap_); }
  size_t capacity() const override { return cap_; }
  size_t record() override {
    t_.push_back(std::chrono::steady_clock::now());
    return t_.size() - 1;
  }
  std::vector<double> elapsedMs() override {
    std::vector<double> ms(t_.size());
    for (size_t i = 0; i < t_.size(); ++i)
      ms[i] = std::chrono::duration<double, std::milli>(t_[i] - t_[0]).count();
    t_.clear();
    return ms;
  }
  const char* kind() const override { return "steady_clock"; }

 private:
  size_t cap_;
  std::vector<std::chrono::steady_clock::time_point> t_;
};

// One row of the op table (totals since the last reset).
struct OpStat {
  std::string name;
  uint64_t calls = 0;
  double ms = 0;     // device time inside the op (end - begin timestamps)
  double flops = 0;  // arithmetic the op's shape implies (0 for data movement)
  double bytes = 0;  // fewest bytes it must move (each input read, each output written once)
};

struct OpProfileReport {
  std::string clock;        // OpClock::kind()
  uint64_t steps = 0;       // endStep() calls since the reset
  double busyMs = 0;        // sum of op times (ops run one after another on one queue)
  double spanMs = 0;        // first op begin to last op end, summed over resolved batches
  uint64_t hostSyncs = 0;   // synchronous entry points called (see ProfilingBackend)
  uint64_t resolves = 0;    // clock resolutions (one per step, more when the pool ran out)
  std::vector<OpStat> ops;  // in the order the ops first ran
  std::vector<std::pair<std::string, uint64_t>> syncsByOp;  // which entry points synchronised
};

class ProfilingBackend final : public Backend {
 public:
  ProfilingBackend(std::unique_ptr<Backend> inner, std::unique_ptr<OpClock> clock);
  ~ProfilingBackend() override;

  Backend& inner() { return *inner_; }
  // Resolves the timestamps of the ops queued since the last call (waits for them) into the table;
  // call once per training step, outside the step.
  void endStep();
  void resetProfile();
  OpProfileReport report() const;
  // The report as one JSON object (ops with calls, ms, us/call, TFLOP/s, GB/s, % of busy time).
  std::string reportJson() const;

  // ---- Backend, forwarded ----
  std::string name() const override { return inner_->name(); }
  std::string describe() const override { return inner_->describe(); }
  void* alloc(size_t bytes) override { return inner_->alloc(bytes); }
  void free(void* p) override { inner_->free(p); }
  void zero(void* p, size_t bytes) override;
  void toDevice(void* dst, const void* hostSrc, size_t bytes) override;
  void toHost(void* hostDst, const void* src, size_t bytes) override;
  void copy(void* dst, const void* src, size_t bytes) override;
  void sync() override;
  size_t bytesInUse() const override { return inner_->bytesInUse(); }
  size_t peakBytes() const override { return inner_->peakBytes(); }
  void resetPeak() override { inner_->resetPeak(); }
  size_t scratchBytes(const ScratchShape& shape) const override { return inner_->scratchBytes(shape); }
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
  struct Pending {
    int op;
    size_t begin, end;
  };
  class Scope;
  int opIndex(const char* name);
  void noteSync(const char* name);
  void resolve();
  void raiseDeferred();  // throws (once) what a Scope's end timestamp failed with

  std::unique_ptr<Backend> inner_;
  std::unique_ptr<OpClock> clock_;
  std::vector<OpStat> ops_;
  std::vector<Pending> pending_;
  std::vector<std::pair<std::string, uint64_t>> syncs_;
  uint64_t steps_ = 0, hostSyncs_ = 0, resolves_ = 0;
  double busyMs_ = 0, spanMs_ = 0;
  bool deferred_ = false;     // an end timestamp failed after its op succeeded
  std::string deferredWhat_;  // its message, reported by the next call
};

// The profiler wrapped around `be` when the environment asks for it (PRIMAL_PROFILE=1, or
// PRIMAL_CUDA_PROFILE=1 for a CUDA backend), else `be` unchanged. Used by makeBackend.
std::unique_ptr<Backend> maybeProfile(std::unique_ptr<Backend> be);
// The profiler of a backend made by makeBackend, or nullptr when it is not profiled.
ProfilingBackend* profilerOf(Backend& be);

}  // namespace primal
