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
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

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
  uint64_t votesSaturated;  // |vote| == 127 after the step
  double pSum;              // sum of p over weights (mean = pSum / n)
  float pMax;               // max p
};

// Parameters of one flip step for one layer.
struct FlipParams {
  uint32_t seedLo, seedHi;  // Philox key
  uint32_t layer;           // counter word 1
  uint32_t step;            // counter word 2 (the optimizer step index, 0-based)
  float flipRate;
  float pMax;
  float voteKeep;
  float scale;    // s_l after this step's scale update
  int accum;      // K micro-batches
  bool bridgeOn;  // false: ladder -2 <-> 0 <-> +2
};

// The largest op shapes of one micro-batch (see scratchBytes): B windows of T tokens, model
// width C, H heads, FFN width F, real vocab V, padded embedding rows Vp.
struct ScratchShape {
  int B = 0, T = 0, C = 0, H = 0, F = 0, V = 0, Vp = 0;
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
  // logits[n, :V] = x[n,:] . table[:V,:]^T for a few rows (generation). Writes logits [N,V].
  virtual void logits(const float* x, const float* table, float* logits, int N, int C, int V) = 0;

  // ---- optimizers ------------------------------------------------------------------------
  // Decoupled AdamW, one tensor: m = b1 m + (1-b1) g; v = b2 v + (1-b2) g^2;
  // p -= lr * (mhat / (sqrt(vhat) + eps) + wd * p), mhat = m / (1-b1^t), vhat = v / (1-b2^t),
  // t = step (1-based). g is multiplied by gradScale first (gradient clipping).
  virtual void adamw(float* p, const float* g, float* m, float* v, size_t n, float lr, float b1, float b2,
                     float eps, float wd, int t, float gradScale) = 0;

  // ---- quantizers ------------------------------------------------------------------------
  // STE (BitNet b1.58): gamma = max(mean|W|, 1e-8); Wq = gamma * clamp(rint(W/gamma), -1, 1).
  // Writes Wq; returns gamma (synchronous).
  virtual float steQuantize(const float* W, float* Wq, size_t n) = 0;

  // Poltergeist ops. The rule they apply (levels, votes, flip probability, rungs, decay, random
  // counters) is written once in primal/poltergeist.h, shared by every backend; read it there.
  //
  // Effective weight: W[i] = scale * level(code[i], bridge), scale = gamma0 * s. Writes W.
  virtual void poltMaterialize(const int8_t* code, float* W, size_t n, float scale, float bridge) = 0;
  // Backward of one Poltergeist layer with weight gradient G (dL/dW, already includes the
  // micro-batch's loss scaling): every vote[i] = castVote(vote[i], G[i], voteThreshold(...));
  // returns sum_i G[i] * level(code[i]) in double (caller multiplies by gamma0 to get dL/ds).
  // Synchronous return.
  virtual double poltVote(const float* G, const int8_t* code, int8_t* vote, size_t n, float bridge,
                          float deadzone) = 0;
  // The step's votes from its vote change: vote[i] = mergeVote(start[i], vote[i]) (vote holds the
  // change on entry). start and vote may not overlap.
  virtual void poltMergeVotes(int8_t* vote, const int8_t* start, size_t n) = 0;
  // The optimizer-step flip for one layer: flipWeight() of every weight i with
  // p = flipProbability(|vote|) and the random words flipRandom(i, layer, step, seed) (scale = s
  // after this step's scale update, accum = K). If pOut != nullptr, writes p (as float) for every
  // weight. Fills stats (synchronous).
  virtual void poltFlip(int8_t* code, int8_t* vote, size_t n, const FlipParams& params, FlipStats* stats,
                        float* pOut) = 0;
  // Computes p (as in poltFlip) into pOut without changing anything (introspection).
  virtual void poltProbabilities(const int8_t* vote, float* pOut, size_t n, const FlipParams& params) = 0;
};

// Factories. makeCudaBackend throws primal::Error when CUDA was not built or no GPU is present.
std::unique_ptr<Backend> makeCpuBackend(int threads /* 0 = all cores */);
std::unique_ptr<Backend> makeCudaBackend(int deviceIndex);
bool cudaBuilt();
int cudaDeviceCount();  // 0 when not built or no device

}  // namespace primal
