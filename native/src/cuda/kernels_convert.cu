// fp32 -> bf16 conversion of GEMM operands (the PRIMAL_GEMM=bf16 mode of cuda_backend.cu).
// __floats2bfloat162_rn is defined for every architecture in cuda_bf16.h (cvt.rn.bf16x2.f32 on
// sm_80+, a software round-to-nearest-even elsewhere), so this file builds for pre-sm_80 targets
// too; the backend only takes the bf16 path on sm_80+.
#include <cuda_bf16.h>

#include "cuda_kernels.cuh"

namespace primal {
namespace cuda {

namespace {

__device__ __forceinline__ uint32_t pack2(float a, float b) {
  const __nv_bfloat162_raw v = __floats2bfloat162_rn(a, b);  // .x = a (low half), .y = b
  return static_cast<uint32_t>(v.x) | (static_cast<uint32_t>(v.y) << 16);
}

// One thread per VEC consecutive elements of a row. A block is (x: columns, y: rows) with
// blockDim.x * blockDim.y = 256, blockDim.x sized to the row so narrow matrices keep the block busy;
// the grid strides over rows.
// VEC = 8: two 16-byte loads, one 16-byte store. VEC = 4: one 16-byte load, one 8-byte store.
// Any column count: the last partial vector of a row is converted element by element.
template <int VEC>
__global__ void __launch_bounds__(256) toBf16Kernel(const float* __restrict__ src, int lds,
                                                    uint16_t* __restrict__ dst, int ldd, int rows, int cols) {
  const int c = (blockIdx.x * blockDim.x + threadIdx.x) * VEC;
  if (c >= cols) return;
  for (int r = blockIdx.y * blockDim.y + threadIdx.y; r < rows; r += gridDim.y * blockDim.y) {
    const float* s = src + static_cast<size_t>(r) * lds + c;
    uint16_t* d = dst + static_cast<size_t>(r) * ldd + c;
    if (VEC > 1 && c + VEC > cols) {  // the row's last, partial vector
      for (int j = 0; j < cols - c; ++j) {
        const __nv_bfloat16_raw v = __float2bfloat16_rn(__ldg(s + j));
        d[j] = v.x;
      }
    } else if constexpr (VEC == 8) {
      const float4 a = __ldg(reinterpret_cast<const float4*>(s));
      const float4 b = __ldg(reinterpret_cast<const float4*>(s) + 1);
      uint4 o;
      o.x = pack2(a.x, a.y);
      o.y = pack2(a.z, a.w);
      o.z = pack2(b.x, b.y);
      o.w = pack2(b.z, b.w);
      *reinterpret_cast<uint4*>(d) = o;
    } else if constexpr (VEC == 4) {
      const float4 a = __ldg(reinterpret_cast<const float4*>(s));
      uint2 o;
      o.x = pack2(a.x, a.y);
      o.y = pack2(a.z, a.w);
      *reinterpret_cast<uint2*>(d) = o;
    } else {
      const __nv_bfloat16_raw v = __float2bfloat16_rn(__ldg(s));
      *d = v.x;
    }
  }
}

template <int VEC>
void launchToBf16(const float* src, int lds, uint16_t* dst, int ldd, int rows, int cols, cudaStream_t st) {
  constexpr unsigned kThreads = 256;
  const unsigned vecs = static_cast<unsigned>((cols + VEC - 1) / VEC);
  unsigned bx = 32;
  while (bx < vecs && bx < kThreads) bx <<= 1;
  const unsigned by = kThreads / bx;
  const unsigned gx = (vecs + bx - 1) / bx;
  const unsigned gy = blocksFor(static_cast<size_t>(rows), by, 65535u);
  toBf16Kernel<VEC><<<dim3(gx, gy), dim3(bx, by), 0, st>>>(src, lds, dst, ldd, rows, cols);
}

}  // namespace

void launchFloatToBf16(const float* src, int lds, void* dst, int ldd, int rows, int cols, cudaStream_t st) {
  if (rows <= 0 || cols <= 0) return;
  uint16_t* d = static_cast<uint16_t*>(dst);
  // Row starts stay 16-byte aligned when the base is and the row strides are multiples of
  // 4 floats / 8 bf16.
  const bool srcRows16 = aligned16(src) && lds % 4 == 0;
  const bool dstRows16 = aligned16(dst) && ldd % 8 == 0;
  if (srcRows16 && dstRows16) launchToBf16<8>(src, lds, d, ldd, rows, cols, st);
  else if (srcRows16 && (reinterpret_cast<uintptr_t>(dst) & 7u) == 0 && ldd % 4 == 0)
    launchToBf16<4>(src, lds, d, ldd, rows, cols, st);
  else launchToBf16<1>(src, lds, d, ldd, rows, cols, st);
  PRIMAL_KERNEL_CHECK("floatToBf16");
}

}  // namespace cuda
}  // namespace primal
