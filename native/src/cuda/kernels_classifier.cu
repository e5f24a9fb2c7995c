// Softmax cross-entropy over one chunk of logits rows, in place: the fused classifier computes a
// chunk of logits with cuBLASLt, this kernel turns it into losses and dlogits, and two more GEMMs
// consume it (backend.cu). One block per row, a single online (max, sum) pass plus one write pass;
// the block combines per-thread partials in a fixed order, so results are reproducible.
#include "cuda_kernels.cuh"

namespace primal {
namespace cuda {

namespace {

struct MS {
  float m, s;
};

__device__ __forceinline__ MS combine(MS a, MS b) {
  const float M = fmaxf(a.m, b.m);
  if (M == -INFINITY) return {M, 0.0f};
  return {M, a.s * expf(a.m - M) + b.s * expf(b.m - M)};
}

// A -inf logit (a GEMM that overflowed) adds nothing: without the check, a -inf seen while the
// running max is still -inf would add expf(-inf - -inf) = NaN to the sum.
__device__ __forceinline__ void push(MS& st, float x) {
  if (x > st.m) {
    st.s = st.s * expf(st.m - x) + 1.0f;
    st.m = x;
  } else if (x != -INFINITY) {
    st.s += expf(x - st.m);
  }
}

template <int NT, bool kVec>
__global__ void __launch_bounds__(NT)
    softmaxXentKernel(float* __restrict__ logits, int ld, int V, const int32_t* __restrict__ targets,
                      float* __restrict__ losses, bool writeGrad, float gradScale) {
  constexpr int NW = NT / 32;
  __shared__ MS shPart[NW];
  __shared__ MS shAll;
  const int r = blockIdx.x, tid = threadIdx.x;
  float* L = logits + static_cast<size_t>(r) * ld;
  const int t = targets[r];
  const int V4 = kVec ? V / 4 : 0;
  if (t < 0 || t >= V) {  // not scored: zero loss, zero gradient row
    if (tid == 0) losses[r] = 0.0f;
    if (writeGrad) {
      for (int c = tid; c < V4; c += NT) reinterpret_cast<float4*>(L)[c] = make_float4(0.f, 0.f, 0.f, 0.f);
      for (int c = V4 * 4 + tid; c < V; c += NT) L[c] = 0.0f;
    }
    return;
  }
  const float lt = L[t];  // read before any thread of this block overwrites the row
  MS st{-INFINITY, 0.0f};
  for (int c = tid; c < V4; c += NT) {
    const float4 v = reinterpret_cast<const float4*>(L)[c];
    push(st, v.x);
    push(st, v.y);
    push(st, v.z);
    push(st, v.w);
  }
  for (int c = V4 * 4 + tid; c < V; c += NT) push(st, L[c]);
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) {
    MS other{__shfl_xor_sync(0xffffffffu, st.m, o), __shfl_xor_sync(0xffffffffu, st.s, o)};
    st = combine(st, other);
  }
  if ((tid & 31) == 0) shPart[tid >> 5] = st;
  __syncthreads();
  if (tid == 0) {
    MS all = shPart[0];
    for (int w = 1; w < NW; ++w) all = combine(all, shPart[w]);
    shAll = all;
    losses[r] = (all.m + logf(all.s)) - lt;
  }
  __syncthreads();
  if (!writeGrad) return;
  const float m = shAll.m;
  const float inv = 1.0f / shAll.s;
  for (int c = tid; c < V4; c += NT) {
    float4 v = reinterpret_cast<float4*>(L)[c];
    const int c0 = c * 4;
    v.x = (expf(v.x - m) * inv - (c0 == t ? 1.0f : 0.0f)) * gradScale;
    v.y = (expf(v.y - m) * inv - (c0 + 1 == t ? 1.0f : 0.0f)) * gradScale;
    v.z = (expf(v.z - m) * inv - (c0 + 2 == t ? 1.0f : 0.0f)) * gradScale;
    v.w = (expf(v.w - m) * inv - (c0 + 3 == t ? 1.0f : 0.0f)) * gradScale;
    reinterpret_cast<float4*>(L)[c] = v;
  }
  for (int c = V4 * 4 + tid; c < V; c += NT)
    L[c] = (expf(L[c] - m) * inv - (c == t ? 1.0f : 0.0f)) * gradScale;
}

template <int NT>
void launchXent(float* logits, int ld, int rows, int V, const int32_t* targets, float* losses, bool writeGrad,
                float gradScale, cudaStream_t st) {
  if (ld % 4 == 0 && aligned16(logits))
    softmaxXentKernel<NT, true><<<rows, NT, 0, st>>>(logits, ld, V, targets, losses, writeGrad, gradScale);
  else
    softmaxXentKernel<NT, false><<<rows, NT, 0, st>>>(logits, ld, V, targets, losses, writeGrad, gradScale);
}

}  // namespace

void launchSoftmaxXent(float* logits, int ld, int rows, int V, const int32_t* targets, float* losses,
                       bool writeGrad, float gradScale, cudaStream_t st) {
  if (rows <= 0) return;
  if (V >= 8192) launchXent<512>(logits, ld, rows, V, targets, losses, writeGrad, gradScale, st);
  else launchXent<128>(logits, ld, rows, V, targets, losses, writeGrad, gradScale, st);
  PRIMAL_KERNEL_CHECK("softmaxXent");
}

}  // namespace cuda
}  // namespace primal
