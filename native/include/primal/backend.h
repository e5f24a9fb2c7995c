// The device interface every compute backend (CPU, CUDA) implements. The model and trainer are
// written once against it; backends own memory and kernels. All pointers passed to an op are
// device pointers of that backend (host memory for CPU). Row-major everywhere.
//
// Shapes: N = B*T tokens, C = d_model, H heads, D = C/H head dim, F = ffn width,
// V = real vocab, Vp = padded vocab rows of the embedding table (Vp >= V).
// Activations of q/k/v/attention are stored [B, T, H, D] (== [N, C]) so no transposes are needed.
//
// Accumulation rule: an op that writes a gradient named d* ACCUMULATES into it (+=) unless its
// comment says "writes". Forward outputs always overwrite.
//
// Host round trips: only toHost, sync, sumSquares and allFinite wait for the device (they are
// called "synchronous" below). Every other op only queues work; what a training step needs to
// decide (its loss, gradient norm, refusal, Ghost Scales, statistics) is written to device memory
// by the ops (StepHead and the per-layer arrays next to it) and read by the trainer once per step.
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "primal/poltergeist.h"

namespace primal {

// Per-layer counts produced by the Poltergeist flip step (docs/design.md, "Telemetry").
struct FlipStats {
  // transitions[from][to] over code values -2..2 (index = code + 2); only one-rung moves
  // (or ±2<->0 with the bridge off) are possible.
  uint64_t transitions[5][5];
  uint64_t flipsUp;         // code increased
  uint64_t flipsDown;       // code decreased
  uint64_t occupancy[5];    // codes -2..2 after the step
  uint64_t votesNonZero;    // |vote| >= 1 after the step
  uint64_t votesSaturated;  // |vote| == polt::kVoteMax after the step
  double pSum;              // sum of p over weights (mean = pSum / n)
  float pMax;               // max p
};

// Parameters of one flip step for one layer. The Ghost Scale s the probability uses is read
// from device memory (the value after this step's scale update).
struct FlipParams {
  uint32_t seedLo, seedHi;  // Philox key
  uint32_t layer;           // counter word 1
  uint32_t step;            // counter word 2 (the optimizer step index, 0-based)
  float flipRate;
  float pMax;
  float voteKeep;
  int accum;      // K micro-batches
  bool bridgeOn;  // false: ladder -2 <-> 0 <-> +2
};

// The largest op shapes of one micro-batch (see scratchBytes): B windows of T tokens, model
// width C, H heads, FFN width F, real vocab V, padded embedding rows Vp, L blocks.
struct ScratchShape {
  int B = 0, T = 0, C = 0, H = 0, F = 0, V = 0, Vp = 0, L = 0;
};

// Why a step was refused (StepHead::refused): a refused step changes nothing.
constexpr uint32_t kRefuseLoss = 1u;   // a micro-batch's mean loss was not finite
constexpr uint32_t kRefuseNorm = 2u;   // the fp gradient norm was not finite
constexpr uint32_t kRefuseScale = 4u;  // a Ghost Scale gradient dL/ds was not finite

// What one optimizer step accumulates in device memory while it runs. The step's ops add into it
// and decide from it (stepGate) without the host looking; the trainer reads it once, after the
// step. All fields start at zero with the step.
struct StepHead {
  double lossSum;     // sum over the step's micro-batches of each one's mean loss (finite ones)
  double tokens;      // their scored targets
  double gradSq;      // sum of squares of the fp gradient (sumSegments)
  double lastLoss;    // the mean loss of the latest micro-batch
  double badLoss;     // the step's first non-finite micro-batch loss
  float clip;         // gradient clip factor for AdamW (stepGate)
  uint32_t refused;   // kRefuse* bits
  int32_t badLayer;   // with kRefuseScale: the first layer whose dL/ds is not finite
  uint32_t reserved;  // keeps the size a multiple of 8
};

// Decoupled AdamW's constants for one step: m = b1 m + (1-b1) g; v = b2 v + (1-b2) g^2;
// p -= lr * (mhat / (sqrt(vhat) + eps) + wd * p), mhat = m / (1-b1^t), vhat = v / (1-b2^t).
struct AdamParams {
  float lr, beta1, beta2, eps, weightDecay;
  int t;  // the step, 1-based
};

class Backend {
 public:
  virtual ~Backend() = default;
  virtual std::string name() const = 0;      // "cpu" or "cuda"
  virtual std::string describe() const = 0;  // e.g. "cpu (OpenBLAS, 2 threads)" / "NVIDIA H100 (sm_90)"

  // ---- memory --------------------------------------------------------------------------
  // alloc throws primal::Error (see error.h) with a clear message when memory runs out.
  virtual void* alloc(size_t bytes) = 0;
  virtual void free(void* p) = 0;
  virtual void zero(void* p, size_t bytes) = 0;
  virtual void toDevice(void* dst, const void* hostSrc, size_t bytes) = 0;
  virtual void toHost(void* hostDst, const void* src, size_t bytes) = 0;
  virtual void copy(void* dst, const void* src, size_t bytes) = 0;  // device to device
  virtual void sync() = 0;                                          // wait for queued work
  virtual size_t bytesInUse() const = 0;
  virtual size_t peakBytes() const = 0;  // high-water mark of bytesInUse (device memory)
  virtual void resetPeak() = 0;
  // Upper bound of the memory the backend allocates for itself (GEMM workspace, op scratch) while
  // the trainer runs micro-batches of this shape; this memory is counted in peakBytes. Memory
  // budgets are planned with it before anything is allocated.
  virtual size_t scratchBytes(const ScratchShape& shape) const = 0;

  // ---- dense linear algebra --------------------------------------------------------------
  // C[M,N] = alpha * op(A)[M,K] * op(B)[K,N] + beta * C, row-major; lda/ldb/ldc are row strides
  // of the stored (untransposed) matrices.
  virtual void gemm(bool transA, bool transB, int M, int N, int K, float alpha, const float* A, int lda,
                    const float* B, int ldb, float beta, float* C, int ldc) = 0;

  // ---- element-wise / reductions ---------------------------------------------------------
  virtual void add(float* y, const float* x, size_t n) = 0;  // y += x
  virtual void scale(float* x, float a, size_t n) = 0;       // x *= a
  virtual double sumSquares(const float* x, size_t n) = 0;   // sum x^2 (synchronous)
  virtual bool allFinite(const float* x, size_t n) = 0;      // synchronous
  // Sums over segments of base, into device memory (nothing returns to the host). Segment j is
  // elements [seg[2j], seg[2j+1]) of base; seg is a host table of `count` pairs that a caller
  // passes unchanged from call to call (a backend may keep what it derives from it).
  // perSegment[j] = the sum over segment j of x^2 (absolute = false) or |x| (true), in double;
  // *total = those segment sums added in table order. Either output may be null. The CPU sums
  // each segment exactly as sumSquares (or steQuantize's mean |W|) sums a buffer of its own, so
  // the total equals adding the per-tensor sums in table order, bit for bit.
  virtual void sumSegments(const float* base, const size_t* seg, int count, bool absolute, double* perSegment,
                           double* total) = 0;

  // ---- model ops -------------------------------------------------------------------------
  // out[n,:] = table[tokens[n],:]
  virtual void embeddingForward(const int32_t* tokens, const float* table, float* out, int N, int C) = 0;
  // dtable[tokens[n],:] += dout[n,:]  (deterministic: same result for the same input order)
  virtual void embeddingBackward(const int32_t* tokens, const float* dout, float* dtable, int N, int C) = 0;
  // y = x * rstd * w, rstd[n] = 1/sqrt(mean(x^2) + eps). Writes y and rstd.
  virtual void rmsnormForward(const float* x, const float* w, float* y, float* rstd, int N, int C,
                              float eps) = 0;
  // dx += ..., dw += ...
  virtual void rmsnormBackward(const float* x, const float* w, const float* rstd, const float* dy, float* dx,
                               float* dw, int N, int C) = 0;
  // Rotary embedding in place on x[B,T,H,D] (pairs (2i, 2i+1), angle t * theta^(-2i/D)).
  // inverse=true applies the transposed rotation (used for the backward pass).
  virtual void rope(float* x, int B, int T, int H, int D, float theta, bool inverse) = 0;
  // Causal softmax attention, scale 1/sqrt(D). q,k,v,out: [B,T,H,D]; lse: [B,H,T] log-sum-exp
  // of each query row's scaled scores (kept for the backward pass). Writes out and lse.
  virtual void attentionForward(const float* q, const float* k, const float* v, float* out, float* lse, int B,
                                int T, int H, int D) = 0;
  // Writes (overwrites) dq, dk, dv. Must not keep a T x T matrix per (b,h) beyond a tile.
  virtual void attentionBackward(const float* q, const float* k, const float* v, const float* out,
                                 const float* lse, const float* dout, float* dq, float* dk, float* dv, int B,
                                 int T, int H, int D) = 0;
  // h = silu(gate) * up, n elements. Writes h.
  virtual void swigluForward(const float* gate, const float* up, float* h, size_t n) = 0;
  // Writes dgate, dup (overwrite).
  virtual void swigluBackward(const float* gate, const float* up, const float* dh, float* dgate, float* dup,
                              size_t n) = 0;
  // BitNet activation quantization: per row absmax to `bits` bits (qmax = 2^(bits-1)-1):
  // s = qmax / max(|x|, 1e-5); xq = clamp(round(x*s), -qmax-1, qmax) / s. Writes xq.
  // Rounding is round-half-to-even (rintf). The gradient is straight-through (no op needed).
  virtual void actQuant(const float* x, float* xq, int N, int C, int bits) = 0;

  // Fused tied classifier + cross-entropy over the first V logits of x[N,C] . table[Vp,C]^T.
  // targets[n] < 0 means "not scored". Writes losses[n] (0 for unscored rows).
  // If dx != nullptr: writes dx[n,:] = gradScale * dLoss_n/dx_n, and dtable += gradScale *
  // dLoss/dtable (sum over scored rows). Never materializes all N x V logits at once.
  virtual void classifier(const float* x, const float* table, const int32_t* targets, float* losses,
                          float* dx, float* dtable, int N, int C, int V, float gradScale) = 0;
  // One micro-batch's training loss from the classifier's losses[N] (targets < 0 unscored): the
  // mean over scored rows (their sum and count in double, rows in order on the CPU; 0 with none
  // scored) goes to head->lastLoss; a finite mean adds to head->lossSum and its count to
  // head->tokens, a non-finite one sets kRefuseLoss (and head->badLoss, the first time).
  virtual void stepLoss(const float* losses, const int32_t* targets, int N, StepHead* head) = 0;
  // logits[n, :V] = x[n,:] . table[:V,:]^T for a few rows (generation). Writes logits [N,V].
  virtual void logits(const float* x, const float* table, float* logits, int N, int C, int V) = 0;

  // ---- the step's decision and updates ----------------------------------------------------
  // Decides the step on the device: kRefuseNorm when sqrt(head->gradSq) is not finite;
  // kRefuseScale, with head->badLayer, when some ds[l] (l < layers) is not finite; head->clip =
  // gradClip / (norm + 1e-6) (in double, then float) when gradClip > 0 and norm > gradClip, else 1.
  virtual void stepGate(StepHead* head, const double* ds, int layers, float gradClip) = 0;

  // AdamW (AdamParams) over n parameters laid end to end (an arena): elements [0, nDecay) decay
  // with a.weightDecay, the rest not at all. g is multiplied by head->clip first; nothing changes
  // when head->refused. head == nullptr: clip 1, never refused.
  virtual void adamw(float* p, const float* g, float* m, float* v, size_t n, size_t nDecay,
                     const AdamParams& a, const StepHead* head) = 0;

  // ---- quantizers ------------------------------------------------------------------------
  // STE (BitNet b1.58): gamma = max((float)(*absSum / n), 1e-8), Wq = gamma * clamp(rint(W/gamma),
  // -1, 1). Writes Wq. With computeAbs it first writes *absSum = sum |W| (in double; the CPU sums as
  // sumSegments does); without, it reads the sum a previous call left there (the weights of a
  // forward and its backward are the same, so their gamma is computed once).
  virtual void steQuantize(const float* W, float* Wq, size_t n, double* absSum, bool computeAbs) = 0;

  // Poltergeist ops. The rule they apply (levels, votes, flip probability, rungs, decay, random
  // counters, the Ghost Scale's AdamW) is written once in primal/poltergeist.h, shared by every
  // backend; read it there. gamma0, s and ds are the layer's entries in device memory.
  //
  // Effective weight: W[i] = scale * level(code[i], bridge), scale = *gamma0 * *s (in float).
  virtual void poltMaterialize(const int8_t* code, float* W, size_t n, const float* gamma0, const float* s,
                               float bridge) = 0;
  // Backward of one Poltergeist layer with weight gradient G (dL/dW, already includes the
  // micro-batch's loss scaling): every vote[i] = castVote(vote[i], G[i], voteThreshold(...));
  // *ds += (double)*gamma0 * sum_i G[i] * level(code[i]) (the sum in double): dL/ds.
  virtual void poltVote(const float* G, const int8_t* code, int8_t* vote, size_t n, float bridge,
                        float deadzone, const float* gamma0, double* ds) = 0;
  // The step's votes from its vote change: vote[i] = mergeVote(start[i], vote[i]) (vote holds the
  // change on entry); when head->refused, vote[i] = start[i] instead (the step's votes undone).
  // start and vote may not overlap. head may be null (never refused).
  virtual void poltMergeVotes(int8_t* vote, const int8_t* start, size_t n, const StepHead* head) = 0;
  // The Ghost Scales' AdamW for `layers` layers at once: ghostScaleAdamW (poltergeist.h) on s[l],
  // m[l], v[l] from ds[l]. Nothing changes when head->refused.
  virtual void ghostScaleStep(float* s, float* m, float* v, const double* ds, int layers,
                              const polt::GhostScaleRule& rule, const StepHead* head) = 0;
  // The optimizer-step flip for one layer: flipWeight() of every weight i with
  // p = flipProbability(|vote|) and the random words flipRandom(i, layer, step, seed) (s = *scale,
  // the Ghost Scale after this step's update; accum = K). If pOut != nullptr, writes p (as float)
  // for every weight; if stats != nullptr, writes the layer's FlipStats there (device memory).
  // Nothing changes when head->refused (head may be null).
  virtual void poltFlip(int8_t* code, int8_t* vote, size_t n, const FlipParams& params, const float* scale,
                        const StepHead* head, FlipStats* stats, float* pOut) = 0;
  // Computes p (as in poltFlip, s = *scale) into pOut without changing anything (introspection).
  virtual void poltProbabilities(const int8_t* vote, float* pOut, size_t n, const FlipParams& params,
                                 const float* scale) = 0;
};

// Factories. makeCudaBackend throws primal::Error when CUDA was not built or no GPU is present.
std::unique_ptr<Backend> makeCpuBackend(int threads /* 0 = all cores */);
std::unique_ptr<Backend> makeCudaBackend(int deviceIndex);
bool cudaBuilt();
int cudaDeviceCount();  // 0 when not built or no device

}  // namespace primal
