// ProfilingBackend: see primal/op_profile.h.
#include "primal/op_profile.h"

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <string>

#include "primal/error.h"

#ifdef PRIMAL_HAVE_CUDA
#include "../cuda/cuda_entry.h"
#endif

namespace primal {

namespace {
constexpr double kF = 4.0;  // bytes per float
bool envOn(const char* name) {
  const char* v = std::getenv(name);
  return v && *v && std::strcmp(v, "0") != 0 && std::strcmp(v, "off") != 0 && std::strcmp(v, "false") != 0;
}
}  // namespace

// Brackets one op: a timestamp before the inner call and one after it, both on the backend's
// queue. Resolves first when the clock has no room for the pair.
//
// The destructor never throws (a throwing destructor ends the process, e.g. on a CUDA error in a
// profiled bench run, losing every later row). When the op itself threw, its exception reports
// the failure and the clock is not touched again; when the op succeeded but its end timestamp
// failed, the error is kept for the profiler's next call to throw. Either way the pair is kept
// with no time (end = begin), so the slots it used stay counted.
class ProfilingBackend::Scope {
 public:
  Scope(ProfilingBackend& p, const char* name, double flops, double bytes) : p_(p) {
    p_.raiseDeferred();
    op_ = p_.opIndex(name);
    OpStat& s = p_.ops_[static_cast<size_t>(op_)];
    s.calls += 1;
    s.flops += flops;
    s.bytes += bytes;
    if (p_.pending_.size() * 2 + 2 > p_.clock_->capacity()) p_.resolve();
    begin_ = p_.clock_->record();
  }
  ~Scope() noexcept {
    const bool opFailed = std::uncaught_exceptions() > unwinding_;
    size_t end = begin_;
    if (!opFailed) {
      try {
        end = p_.clock_->record();
      } catch (const std::exception& e) {
        defer(e.what());
      } catch (...) {
        defer("unknown error");
      }
    }
    try {
      p_.pending_.push_back({op_, begin_, end});
    } catch (...) {
      if (!opFailed) defer("out of memory");
    }
  }
  Scope(const Scope&) = delete;
  Scope& operator=(const Scope&) = delete;

 private:
  void defer(const char* what) noexcept {
    if (p_.deferred_) return;  // the first failure is the one to report
    p_.deferred_ = true;
    try {
      p_.deferredWhat_ = std::string("op profiling: the end timestamp of ") +
                         p_.ops_[static_cast<size_t>(op_)].name + " failed: " + what;
    } catch (...) {
      p_.deferredWhat_.clear();  // no memory for the message: raiseDeferred() says so
    }
  }

  ProfilingBackend& p_;
  int op_ = 0;
  size_t begin_ = 0;
  const int unwinding_ = std::uncaught_exceptions();
};

ProfilingBackend::ProfilingBackend(std::unique_ptr<Backend> inner, std::unique_ptr<OpClock> clock)
    : inner_(std::move(inner)), clock_(std::move(clock)) {
  if (!inner_ || !clock_) throw Error("ProfilingBackend needs a backend and a clock");
  if (clock_->capacity() < 4) throw Error("ProfilingBackend: the clock needs at least 4 slots");
}

ProfilingBackend::~ProfilingBackend() {
  // The clock may hold device events of the inner backend's device: release it first.
  clock_.reset();
}

int ProfilingBackend::opIndex(const char* name) {
  for (size_t i = 0; i < ops_.size(); ++i)
    if (ops_[i].name == name) return static_cast<int>(i);
  ops_.push_back(OpStat{name});
  return static_cast<int>(ops_.size() - 1);
}

void ProfilingBackend::noteSync(const char* name) {
  hostSyncs_ += 1;
  for (auto& s : syncs_)
    if (s.first == name) {
      s.second += 1;
      return;
    }
  syncs_.emplace_back(name, 1);
}

void ProfilingBackend::raiseDeferred() {
  if (!deferred_) return;
  deferred_ = false;
  std::string what;
  what.swap(deferredWhat_);
  throw Error(what.empty() ? "op profiling: an end timestamp failed" : what);
}

void ProfilingBackend::resolve() {
  if (pending_.empty()) return;
  const std::vector<double> t = clock_->elapsedMs();
  double first = 0, last = 0;
  bool any = false;
  for (const Pending& p : pending_) {
    if (p.begin >= t.size() || p.end >= t.size()) continue;
    const double d = t[p.end] - t[p.begin];
    ops_[static_cast<size_t>(p.op)].ms += d;
    busyMs_ += d;
    if (!any || t[p.begin] < first) first = t[p.begin];
    if (!any || t[p.end] > last) last = t[p.end];
    any = true;
  }
  if (any) spanMs_ += last - first;
  pending_.clear();
  resolves_ += 1;
}

void ProfilingBackend::endStep() {
  raiseDeferred();
  resolve();
  steps_ += 1;
}

void ProfilingBackend::resetProfile() {
  resolve();
  ops_.clear();
  syncs_.clear();
  steps_ = hostSyncs_ = resolves_ = 0;
  busyMs_ = spanMs_ = 0;
}

OpProfileReport ProfilingBackend::report() const {
  OpProfileReport r;
  r.clock = clock_->kind();
  r.steps = steps_;
  r.busyMs = busyMs_;
  r.spanMs = spanMs_;
  r.hostSyncs = hostSyncs_;
  r.resolves = resolves_;
  r.ops = ops_;
  r.syncsByOp = syncs_;
  return r;
}

std::string ProfilingBackend::reportJson() const {
  const OpProfileReport r = report();
  const double steps = r.steps > 0 ? static_cast<double>(r.steps) : 1.0;
  std::string s;
  char buf[512];
  std::snprintf(buf, sizeof buf,
                "{\"clock\":\"%s\",\"steps\":%llu,\"busyMsPerStep\":%.4f,\"spanMsPerStep\":%.4f,"
                "\"hostSyncsPerStep\":%.2f,\"resolves\":%llu,\"ops\":[",
                r.clock.c_str(), static_cast<unsigned long long>(r.steps), r.busyMs / steps, r.spanMs / steps,
                static_cast<double>(r.hostSyncs) / steps, static_cast<unsigned long long>(r.resolves));
  s += buf;
  for (size_t i = 0; i < r.ops.size(); ++i) {
    const OpStat& o = r.ops[i];
    const double sec = o.ms / 1000.0;
    std::snprintf(buf, sizeof buf,
                  "%s{\"op\":\"%s\",\"calls\":%.2f,\"msPerStep\":%.4f,\"pctBusy\":%.2f,\"usPerCall\":%.3f,"
                  "\"tflops\":%.3f,\"gbps\":%.2f}",
                  i ? "," : "", o.name.c_str(), static_cast<double>(o.calls) / steps, o.ms / steps,
                  r.busyMs > 0 ? 100.0 * o.ms / r.busyMs : 0.0,
                  o.calls ? 1000.0 * o.ms / static_cast<double>(o.calls) : 0.0,
                  sec > 0 ? o.flops / sec / 1e12 : 0.0, sec > 0 ? o.bytes / sec / 1e9 : 0.0);
    s += buf;
  }
  s += "],\"syncs\":{";
  for (size_t i = 0; i < r.syncsByOp.size(); ++i) {
    std::snprintf(buf, sizeof buf, "%s\"%s\":%.2f", i ? "," : "", r.syncsByOp[i].first.c_str(),
                  static_cast<double>(r.syncsByOp[i].second) / steps);
    s += buf;
  }
  s += "}}";
  return s;
}

// ---- forwarded ops: name, work implied by the shape, then the inner call --------------------
// Entry points that wait for the device (toHost, sync, and the ops backend.h calls "synchronous")
// count as host synchronisations; toDevice may stage asynchronously and is timed but not counted.

void ProfilingBackend::zero(void* p, size_t bytes) {
  Scope s(*this, "zero", 0, static_cast<double>(bytes));
  inner_->zero(p, bytes);
}
void ProfilingBackend::toDevice(void* dst, const void* hostSrc, size_t bytes) {
  Scope s(*this, "toDevice", 0, static_cast<double>(bytes));
  inner_->toDevice(dst, hostSrc, bytes);
}
void ProfilingBackend::toHost(void* hostDst, const void* src, size_t bytes) {
  noteSync("toHost");
  Scope s(*this, "toHost", 0, static_cast<double>(bytes));
  inner_->toHost(hostDst, src, bytes);
}
void ProfilingBackend::copy(void* dst, const void* src, size_t bytes) {
  Scope s(*this, "copy", 0, 2.0 * static_cast<double>(bytes));
  inner_->copy(dst, src, bytes);
}
void ProfilingBackend::sync() {
  raiseDeferred();
  noteSync("sync");
  inner_->sync();
}
void ProfilingBackend::gemm(bool transA, bool transB, int M, int N, int K, float alpha, const float* A,
                            int lda, const float* B, int ldb, float beta, float* C, int ldc) {
  const double m = M, n = N, k = K;
  Scope s(*this, "gemm", 2.0 * m * n * k, kF * (m * k + k * n + m * n * (beta != 0.0f ? 2.0 : 1.0)));
  inner_->gemm(transA, transB, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}
void ProfilingBackend::add(float* y, const float* x, size_t n) {
  Scope s(*this, "add", static_cast<double>(n), 3.0 * kF * static_cast<double>(n));
  inner_->add(y, x, n);
}
void ProfilingBackend::scale(float* x, float a, size_t n) {
  Scope s(*this, "scale", static_cast<double>(n), 2.0 * kF * static_cast<double>(n));
  inner_->scale(x, a, n);
}
double ProfilingBackend::sumSquares(const float* x, size_t n) {
  noteSync("sumSquares");
  Scope s(*this, "sumSquares", 2.0 * static_cast<double>(n), kF * static_cast<double>(n));
  return inner_->sumSquares(x, n);
}
bool ProfilingBackend::allFinite(const float* x, size_t n) {
  noteSync("allFinite");
  Scope s(*this, "allFinite", 0, kF * static_cast<double>(n));
  return inner_->allFinite(x, n);
}
void ProfilingBackend::sumSegments(const float* base, const size_t* seg, int count, bool absolute,
                                   double* perSegment, double* total) {
  double n = 0;
  for (int j = 0; j < count; ++j) n += static_cast<double>(seg[2 * j + 1] - seg[2 * j]);
  Scope s(*this, "sumSegments", 2.0 * n, kF * n);
  inner_->sumSegments(base, seg, count, absolute, perSegment, total);
}
void ProfilingBackend::embeddingForward(const int32_t* tokens, const float* table, float* out, int N, int C) {
  const double nc = static_cast<double>(N) * C;
  Scope s(*this, "embeddingForward", 0, 2.0 * kF * nc + 4.0 * N);
  inner_->embeddingForward(tokens, table, out, N, C);
}
void ProfilingBackend::embeddingBackward(const int32_t* tokens, const float* dout, float* dtable, int N,
                                         int C) {
  const double nc = static_cast<double>(N) * C;
  Scope s(*this, "embeddingBackward", nc, 3.0 * kF * nc + 4.0 * N);
  inner_->embeddingBackward(tokens, dout, dtable, N, C);
}
void ProfilingBackend::rmsnormForward(const float* x, const float* w, float* y, float* rstd, int N, int C,
                                      float eps) {
  const double nc = static_cast<double>(N) * C;
  Scope s(*this, "rmsnormForward", 4.0 * nc, kF * (2.0 * nc + C + N));
  inner_->rmsnormForward(x, w, y, rstd, N, C, eps);
}
void ProfilingBackend::rmsnormBackward(const float* x, const float* w, const float* rstd, const float* dy,
                                       float* dx, float* dw, int N, int C) {
  const double nc = static_cast<double>(N) * C;
  Scope s(*this, "rmsnormBackward", 8.0 * nc, kF * (4.0 * nc + 2.0 * C + N));
  inner_->rmsnormBackward(x, w, rstd, dy, dx, dw, N, C);
}
void ProfilingBackend::rope(float* x, int B, int T, int H, int D, float theta, bool inverse) {
  const double n = static_cast<double>(B) * T * H * D;
  Scope s(*this, inverse ? "ropeInverse" : "rope", 3.0 * n, 2.0 * kF * n);
  inner_->rope(x, B, T, H, D, theta, inverse);
}
void ProfilingBackend::attentionForward(const float* q, const float* k, const float* v, float* out,
                                        float* lse, int B, int T, int H, int D) {
  // Causal: QK^T and PV over half the T x T scores, 2 FLOPs per multiply-add.
  const double bh = static_cast<double>(B) * H, t = T, d = D;
  Scope s(*this, "attentionForward", 2.0 * bh * t * t * d, kF * (4.0 * bh * t * d + bh * t));
  inner_->attentionForward(q, k, v, out, lse, B, T, H, D);
}
void ProfilingBackend::attentionBackward(const float* q, const float* k, const float* v, const float* out,
                                         const float* lse, const float* dout, float* dq, float* dk, float* dv,
                                         int B, int T, int H, int D) {
  // Recomputed scores plus dV, dP, dQ, dK: five causal T x T x D products.
  const double bh = static_cast<double>(B) * H, t = T, d = D;
  Scope s(*this, "attentionBackward", 5.0 * bh * t * t * d, kF * (8.0 * bh * t * d + bh * t));
  inner_->attentionBackward(q, k, v, out, lse, dout, dq, dk, dv, B, T, H, D);
}
void ProfilingBackend::swigluForward(const float* gate, const float* up, float* h, size_t n) {
  Scope s(*this, "swigluForward", 6.0 * static_cast<double>(n), 3.0 * kF * static_cast<double>(n));
  inner_->swigluForward(gate, up, h, n);
}
void ProfilingBackend::swigluBackward(const float* gate, const float* up, const float* dh, float* dgate,
                                      float* dup, size_t n) {
  Scope s(*this, "swigluBackward", 10.0 * static_cast<double>(n), 5.0 * kF * static_cast<double>(n));
  inner_->swigluBackward(gate, up, dh, dgate, dup, n);
}
void ProfilingBackend::actQuant(const float* x, float* xq, int N, int C, int bits) {
  const double nc = static_cast<double>(N) * C;
  Scope s(*this, "actQuant", 4.0 * nc, 2.0 * kF * nc);
  inner_->actQuant(x, xq, N, C, bits);
}
void ProfilingBackend::classifier(const float* x, const float* table, const int32_t* targets, float* losses,
                                  float* dx, float* dtable, int N, int C, int V, float gradScale) {
  // Logits (2NCV), then dx and dtable (2NCV each) when training.
  const double ncv = static_cast<double>(N) * C * V;
  const double io = kF * (static_cast<double>(N) * C * (dx ? 2.0 : 1.0) +
                          static_cast<double>(V) * C * (dtable ? 3.0 : 1.0) + 2.0 * N);
  Scope s(*this, dx ? "classifierTrain" : "classifierEval", (dx ? 6.0 : 2.0) * ncv, io);
  inner_->classifier(x, table, targets, losses, dx, dtable, N, C, V, gradScale);
}
void ProfilingBackend::logits(const float* x, const float* table, float* out, int N, int C, int V) {
  const double ncv = static_cast<double>(N) * C * V;
  Scope s(*this, "logits", 2.0 * ncv,
          kF * (static_cast<double>(N) * C + static_cast<double>(V) * C + static_cast<double>(N) * V));
  inner_->logits(x, table, out, N, C, V);
}
void ProfilingBackend::stepLoss(const float* losses, const int32_t* targets, int N, StepHead* head) {
  Scope s(*this, "stepLoss", static_cast<double>(N), 2.0 * kF * N);
  inner_->stepLoss(losses, targets, N, head);
}
void ProfilingBackend::stepGate(StepHead* head, const double* ds, int layers, float gradClip) {
  Scope s(*this, "stepGate", 0, sizeof(StepHead) + 8.0 * layers);
  inner_->stepGate(head, ds, layers, gradClip);
}
void ProfilingBackend::adamw(float* p, const float* g, float* m, float* v, size_t n, size_t nDecay,
                             const AdamParams& a, const StepHead* head) {
  Scope s(*this, "adamw", 12.0 * static_cast<double>(n), 7.0 * kF * static_cast<double>(n));
  inner_->adamw(p, g, m, v, n, nDecay, a, head);
}
void ProfilingBackend::steQuantize(const float* W, float* Wq, size_t n, double* absSum, bool computeAbs) {
  const double k = computeAbs ? 3.0 : 2.0;  // the sum of |W| reads W once more
  Scope s(*this, "steQuantize", k * static_cast<double>(n), k * kF * static_cast<double>(n));
  inner_->steQuantize(W, Wq, n, absSum, computeAbs);
}
void ProfilingBackend::poltMaterialize(const int8_t* code, float* W, size_t n, const float* gamma0,
                                       const float* sc, float bridge) {
  Scope s(*this, "poltMaterialize", static_cast<double>(n), (1.0 + kF) * static_cast<double>(n));
  inner_->poltMaterialize(code, W, n, gamma0, sc, bridge);
}
void ProfilingBackend::poltVote(const float* G, const int8_t* code, int8_t* vote, size_t n, float bridge,
                                float deadzone, const float* gamma0, double* ds) {
  Scope s(*this, "poltVote", 4.0 * static_cast<double>(n), (kF + 3.0) * static_cast<double>(n));
  inner_->poltVote(G, code, vote, n, bridge, deadzone, gamma0, ds);
}
void ProfilingBackend::poltMergeVotes(int8_t* vote, const int8_t* start, size_t n, const StepHead* head) {
  Scope s(*this, "poltMergeVotes", 0, 3.0 * static_cast<double>(n));
  inner_->poltMergeVotes(vote, start, n, head);
}
void ProfilingBackend::ghostScaleStep(float* sc, float* m, float* v, const double* ds, int layers,
                                      const polt::GhostScaleRule& rule, const StepHead* head) {
  Scope s(*this, "ghostScaleStep", 20.0 * layers, 20.0 * layers);
  inner_->ghostScaleStep(sc, m, v, ds, layers, rule, head);
}
void ProfilingBackend::poltFlip(int8_t* code, int8_t* vote, size_t n, const FlipParams& params,
                                const float* sc, const StepHead* head, FlipStats* stats, float* pOut) {
  Scope s(*this, "poltFlip", 0, (4.0 + (pOut ? kF : 0.0)) * static_cast<double>(n));
  inner_->poltFlip(code, vote, n, params, sc, head, stats, pOut);
}
void ProfilingBackend::poltProbabilities(const int8_t* vote, float* pOut, size_t n, const FlipParams& params,
                                         const float* sc) {
  Scope s(*this, "poltProbabilities", 0, (1.0 + kF) * static_cast<double>(n));
  inner_->poltProbabilities(vote, pOut, n, params, sc);
}

// ---- selection ------------------------------------------------------------------------------

std::unique_ptr<Backend> maybeProfile(std::unique_ptr<Backend> be) {
  if (!be) return be;
  const bool cuda = be->name() == "cuda";
  if (!envOn("PRIMAL_PROFILE") && !(cuda && envOn("PRIMAL_CUDA_PROFILE"))) return be;
  std::unique_ptr<OpClock> clock;
  if (cuda) {
#ifdef PRIMAL_HAVE_CUDA
    clock = makeCudaOpClock(*be, 8192);
#endif
    if (!clock) throw Error("op profiling: no timestamp clock for the cuda backend in this build");
  } else {
    clock = std::make_unique<SteadyOpClock>();
  }
  return std::make_unique<ProfilingBackend>(std::move(be), std::move(clock));
}

ProfilingBackend* profilerOf(Backend& be) { return dynamic_cast<ProfilingBackend*>(&be); }

}  // namespace primal
