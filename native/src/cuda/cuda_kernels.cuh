// Launchers of the CUDA backend's kernels. Every launcher enqueues on `st`, checks the launch and
// throws primal::Error on failure; none synchronizes. Pointers are device pointers.
#pragma once
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

#include "cuda_common.cuh"
#include "primal/backend.h"

namespace primal {
namespace cuda {

// ---- element-wise / reductions (kernels_basic.cu) -------------------------------------------
void launchAdd(float* y, const float* x, size_t n, cudaStream_t st);
void launchScale(float* x, float a, size_t n, cudaStream_t st);
// C[M,N] (row stride ldc) = beta * C; beta == 0 writes zeros (NaN-safe).
void launchScaleMatrix(float* C, int M, int N, int ldc, float beta, cudaStream_t st);
// Stage 1 of the deterministic reductions: reduceBlocks(n) doubles into `partials`.
void launchSumSquaresPartials(const float* x, size_t n, double* partials, cudaStream_t st);
void launchAbsSumPartials(const float* x, size_t n, double* partials, cudaStream_t st);
// Stage 2: out[0] = sum of partials[0..count) in a fixed order (count <= kReduceMaxBlocks).
void launchFinalSum(const double* partials, int count, double* out, cudaStream_t st);
// Stage 2, accumulating: *acc += (double)*factor * (the same sum).
void launchFinalSumInto(const double* partials, int count, const float* factor, double* acc, cudaStream_t st);

// Sums over segments (Backend::sumSegments), two kernels: every range (a piece of one segment)
// reduced by one block into partials[range] in a fixed order, then each segment's ranges added in
// order (segFirst[j] .. segFirst[j + 1] - 1 are segment j's ranges) into segSums[j] (and
// perSegment[j]), and the segments in order into *total.
struct SegRange {
  size_t begin, end;
};
constexpr size_t kSegRangeElems = 16384;
void launchSegmentPartials(const float* base, const SegRange* ranges, int nRanges, bool absolute,
                           double* partials, cudaStream_t st);
void launchSegmentFinish(const double* partials, const int* segFirst, int count, double* segSums,
                         double* perSegment, double* total, cudaStream_t st);

// ---- the step's decision (kernels_basic.cu) --------------------------------------------------
// Backend::stepLoss: one block sums the scored losses and counts them in a fixed order.
void launchStepLoss(const float* losses, const int32_t* targets, int N, StepHead* head, cudaStream_t st);
// Backend::stepGate (one thread).
void launchStepGate(StepHead* head, const double* ds, int layers, float gradClip, cudaStream_t st);
// *bad must be 0 before; set to 1 when some element is NaN or +-inf.
void launchAllFinite(const float* x, size_t n, int* bad, cudaStream_t st);

void launchEmbeddingForward(const int32_t* tokens, const float* table, float* out, int N, int C,
                            cudaStream_t st);
size_t embeddingBackwardScratchBytes(int N);
void launchEmbeddingBackward(const int32_t* tokens, const float* dout, float* dtable, int N, int C,
                             void* scratch, size_t scratchBytes, cudaStream_t st);

void launchRmsnormForward(const float* x, const float* w, float* y, float* rstd, int N, int C, float eps,
                          cudaStream_t st);
size_t rmsnormBackwardScratchBytes(int N, int C);
void launchRmsnormBackward(const float* x, const float* w, const float* rstd, const float* dy, float* dx,
                           float* dw, int N, int C, float* scratch, cudaStream_t st);

// table: [T, D/2] (cos, sin) of angle t * theta^(-2i/D), computed in double.
void launchRopeTable(float2* table, int T, int D, float theta, cudaStream_t st);
void launchRope(float* x, const float2* table, int B, int T, int H, int D, bool inverse, cudaStream_t st);

void launchSwigluForward(const float* gate, const float* up, float* h, size_t n, cudaStream_t st);
void launchSwigluBackward(const float* gate, const float* up, const float* dh, float* dgate, float* dup,
                          size_t n, cudaStream_t st);
void launchActQuant(const float* x, float* xq, int N, int C, int bits, cudaStream_t st);
// AdamW over an arena: elements [0, nDecay) decay with wd, the rest not; g times head->clip;
// nothing when head->refused (head may be null: clip 1).
void launchAdamw(float* p, const float* g, float* m, float* v, size_t n, size_t nDecay, float lr, float b1,
                 float b2, float eps, float wd, float bc1, float bc2, const StepHead* head, cudaStream_t st);

// ---- attention (kernels_attention.cu) -------------------------------------------------------
// Throws when D is unsupported (D % 4 != 0 or D > 128) or the tiles do not fit shared memory.
void launchAttentionForward(const float* q, const float* k, const float* v, float* out, float* lse, int B,
                            int T, int H, int D, size_t smemOptin, cudaStream_t st);
size_t attentionBackwardScratchBytes(int B, int T, int H);
void launchAttentionBackward(const float* q, const float* k, const float* v, const float* out,
                             const float* lse, const float* dout, float* dq, float* dk, float* dv, int B,
                             int T, int H, int D, float* scratch, size_t smemOptin, cudaStream_t st);
// Tensor-core versions (bf16 WMMA operands, fp32 accumulation and softmax; kernels_attention_tc.cu),
// used by the two launchers above when PRIMAL_CUDA_ATTN=tc. Same layouts and lse convention as the
// fp32 kernels. Each returns false without launching anything when the device is below sm_80 (or
// the binary has no sm_80+ code for it), D is unsupported (D % 4 != 0 or D > 128) or the tiles do
// not fit smemOptin; the caller then runs the fp32 kernels. delta: rowsum(dout * out) [B, H, T].
bool tryAttentionForwardTc(const float* q, const float* k, const float* v, float* out, float* lse, int B,
                           int T, int H, int D, size_t smemOptin, cudaStream_t st);
bool tryAttentionBackwardTc(const float* q, const float* k, const float* v, const float* dout,
                            const float* lse, const float* delta, float* dq, float* dk, float* dv, int B,
                            int T, int H, int D, size_t smemOptin, cudaStream_t st);

// ---- classifier (kernels_classifier.cu) -----------------------------------------------------
// In place on logits[rows, ld] (first V columns): losses[r] = lse - logit[target]; when writeGrad,
// logits become (softmax - onehot) * gradScale (zero rows for unscored targets).
void launchSoftmaxXent(float* logits, int ld, int rows, int V, const int32_t* targets, float* losses,
                       bool writeGrad, float gradScale, cudaStream_t st);

// ---- GEMM operand conversion (kernels_convert.cu) ------------------------------------------
// dst[r, c] = bf16(src[r, c]) (round to nearest even) for r < rows, c < cols; src row stride lds
// floats, dst row stride ldd bf16 elements (dst is __nv_bfloat16 storage, 2 bytes each). Any
// shape and alignment; 16-byte vector accesses when the row starts allow them.
void launchFloatToBf16(const float* src, int lds, void* dst, int ldd, int rows, int cols, cudaStream_t st);

// ---- quantizers (kernels_quant.cu) ----------------------------------------------------------
// gamma = max(absSum / n, 1e-8) (absSum on the device); Wq = gamma*clamp(rint(W/gamma),-1,1);
// writes gamma to *gammaOut.
void launchSteQuantize(const float* W, float* Wq, size_t n, const double* absSum, float* gammaOut,
                       cudaStream_t st);
// W = (*gamma0 * *s) * level(code).
void launchPoltMaterialize(const int8_t* code, float* W, size_t n, const float* gamma0, const float* s,
                           float bridge, cudaStream_t st);
// vote[i] = mergeVote(start[i], vote[i]), or start[i] when head->refused (head may be null).
void launchPoltMergeVotes(int8_t* vote, const int8_t* start, size_t n, const StepHead* head, cudaStream_t st);
// ghostScaleAdamW on every layer's s, m, v from ds; nothing when head->refused.
void launchGhostScaleStep(float* s, float* m, float* v, const double* ds, int layers,
                          const polt::GhostScaleRule& rule, const StepHead* head, cudaStream_t st);
// Vote pass of poltVote. sumSq: device sum of G^2 (nullptr when deadzone == 0). Writes
// reduceBlocks(n) dot partials.
void launchPoltVote(const float* G, const int8_t* code, int8_t* vote, size_t n, float bridge, float deadzone,
                    const double* sumSq, double* partials, cudaStream_t st);
// Layout of the uint64 counters the flip kernel accumulates into (zeroed first): histogram of
// |vote| before the step (0..128), transitions[from][to] (flips only), flips up/down, occupancy
// after the step, votes nonzero / saturated after the step.
constexpr int kFlipHistBins = 129;
constexpr int kFlipOffHist = 0;
constexpr int kFlipOffTrans = kFlipOffHist + kFlipHistBins;
constexpr int kFlipOffUp = kFlipOffTrans + 25;
constexpr int kFlipOffDown = kFlipOffUp + 1;
constexpr int kFlipOffOcc = kFlipOffDown + 1;
constexpr int kFlipOffNz = kFlipOffOcc + 5;
constexpr int kFlipOffSat = kFlipOffNz + 1;
constexpr int kFlipCounters = kFlipOffSat + 1;
// The flip step with s = *scale (device); nothing when head->refused (head may be null).
void launchPoltFlip(int8_t* code, int8_t* vote, size_t n, const FlipParams& params, const float* scale,
                    const StepHead* head, float* pOut, unsigned long long* counters, cudaStream_t st);
// Turns the counters into the layer's FlipStats in device memory (pSum in double, fixed order over
// |vote| = 0..128; pMax float); writes nothing when head->refused.
void launchPoltFlipFinish(const unsigned long long* counters, const FlipParams& params, const float* scale,
                          const StepHead* head, FlipStats* out, cudaStream_t st);
void launchPoltProbabilities(const int8_t* vote, float* pOut, size_t n, const FlipParams& params,
                             const float* scale, cudaStream_t st);

}  // namespace cuda
}  // namespace primal
