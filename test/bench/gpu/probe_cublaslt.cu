// cuBLASLt at the ghost-0.1b GEMM shapes (batch 8 x 1024 tokens, d_model 768, ffn 2048, vocab
// 50257) in TF32, BF16, INT8 and FP8: what the library reaches on this GPU, as the ceiling the
// backend's GEMMs are measured against. Standalone (the device check compiles it with nvcc).
// Prints one JSON line per (type, shape): ms (median of timed runs, CUDA events), TFLOP/s or
// TOPS, or the error cuBLASLt gave. Inputs are random (never zeros; see METHOD.md).
//   nvcc -O2 -std=c++17 -arch=sm_90 probe_cublaslt.cu -lcublasLt -o probe_cublaslt
#if __has_include(<cublasLt.h>)
#include <cublasLt.h>
#else  // compile check on a machine without cuBLAS (links nowhere)
#include "../../../native/src/cuda/cublaslt_decls.h"
#endif
#include <cuda_bf16.h>
#include <cuda_fp8.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

namespace {

struct Shape {
  const char* what;
  int m, n, k;  // C[m,n] = A[m,k] B[k,n]
};

// The GEMMs of one ghost-0.1b micro-batch (N = 8192 tokens): forward, data gradient, weight
// gradient, and one classifier chunk.
const Shape kShapes[] = {
    {"qkvo fwd [N,C]x[C,C]", 8192, 768, 768},
    {"gate/up fwd [N,C]x[C,F]", 8192, 2048, 768},
    {"down fwd [N,F]x[F,C]", 8192, 768, 2048},
    {"qkv fused fwd [N,C]x[C,3C]", 8192, 2304, 768},
    {"dW qkvo [C,N]x[N,C]", 768, 768, 8192},
    {"dW up [C,N]x[N,F]", 768, 2048, 8192},
    {"classifier chunk [2048,C]x[C,V]", 2048, 50304, 768},
};

__global__ void fillKernel(unsigned char* p, size_t bytes, uint32_t seed, int kind) {
  // kind 0: fp32, 1: bf16, 2: int8, 3: fp8 e4m3; values in [-1, 1) (int8: [-64, 64)).
  size_t i = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x;
  const size_t stride = static_cast<size_t>(gridDim.x) * blockDim.x;
  const size_t elem = kind == 0 ? 4 : kind == 1 ? 2 : 1;
  for (; i * elem < bytes; i += stride) {
    uint32_t h = static_cast<uint32_t>(i) * 2654435761u ^ seed;
    h ^= h >> 16;
    h *= 0x7feb352d;
    h ^= h >> 15;
    const float u = static_cast<float>(h & 0xffffff) / 8388608.0f - 1.0f;
    if (kind == 0) reinterpret_cast<float*>(p)[i] = u;
    else if (kind == 1) reinterpret_cast<__nv_bfloat16*>(p)[i] = __float2bfloat16(u);
    else if (kind == 2) reinterpret_cast<int8_t*>(p)[i] = static_cast<int8_t>(static_cast<int>(u * 64.0f));
    else reinterpret_cast<__nv_fp8_e4m3*>(p)[i] = __nv_fp8_e4m3(u);
  }
}

struct Type {
  const char* name;
  cudaDataType_t ab, cd, scale;
  cublasComputeType_t compute;
  int elemAB, elemCD, fillKind;
};

std::string runOne(cublasLtHandle_t lt, const Type& t, const Shape& s, void* ws, size_t wsBytes,
                   double* msOut) {
  // Column-major "TN": C[m,n] = A^T B with A stored k x m and B stored k x n (INT8 and FP8 need it).
  const size_t aBytes = static_cast<size_t>(s.m) * s.k * t.elemAB;
  const size_t bBytes = static_cast<size_t>(s.k) * s.n * t.elemAB;
  const size_t cBytes = static_cast<size_t>(s.m) * s.n * t.elemCD;
  void *A = nullptr, *B = nullptr, *C = nullptr;
  std::string err;
  cublasLtMatmulDesc_t op = nullptr;
  cublasLtMatrixLayout_t la = nullptr, lb = nullptr, lc = nullptr;
  cudaEvent_t e0 = nullptr, e1 = nullptr;
  auto cu = [&](cudaError_t r, const char* what) {
    if (r != cudaSuccess && err.empty()) err = std::string(what) + ": " + cudaGetErrorString(r);
    return r == cudaSuccess;
  };
  auto lt_ = [&](cublasStatus_t r, const char* what) {
    if (r != CUBLAS_STATUS_SUCCESS && err.empty())
      err = std::string(what) + ": cublas status " + std::to_string(static_cast<int>(r));
    return r == CUBLAS_STATUS_SUCCESS;
  };
  do {
    if (!cu(cudaMalloc(&A, aBytes), "malloc A") || !cu(cudaMalloc(&B, bBytes), "malloc B") ||
        !cu(cudaMalloc(&C, cBytes), "malloc C"))
      break;
    fillKernel<<<1024, 256>>>(static_cast<unsigned char*>(A), aBytes, 17u, t.fillKind);
    fillKernel<<<1024, 256>>>(static_cast<unsigned char*>(B), bBytes, 29u, t.fillKind);
    if (!cu(cudaGetLastError(), "fill")) break;
    if (!lt_(cublasLtMatmulDescCreate(&op, t.compute, t.scale), "desc")) break;
    cublasOperation_t ta = CUBLAS_OP_T, tb = CUBLAS_OP_N;
    lt_(cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof ta), "transa");
    lt_(cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof tb), "transb");
    if (!lt_(cublasLtMatrixLayoutCreate(&la, t.ab, s.k, s.m, s.k), "layout A") ||
        !lt_(cublasLtMatrixLayoutCreate(&lb, t.ab, s.k, s.n, s.k), "layout B") ||
        !lt_(cublasLtMatrixLayoutCreate(&lc, t.cd, s.m, s.n, s.m), "layout C"))
      break;
    cublasLtMatmulPreference_t pref = nullptr;
    lt_(cublasLtMatmulPreferenceCreate(&pref), "pref");
    lt_(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &wsBytes,
                                             sizeof wsBytes),
        "pref ws");
    cublasLtMatmulHeuristicResult_t heur{};
    int found = 0;
    const bool ok =
        lt_(cublasLtMatmulAlgoGetHeuristic(lt, op, la, lb, lc, lc, pref, 1, &heur, &found), "heuristic");
    cublasLtMatmulPreferenceDestroy(pref);
    if (!ok) break;
    if (found == 0) {
      err = "no algorithm";
      break;
    }
    const float af = 1.0f, bf = 0.0f;
    const int32_t ai = 1, bi = 0;
    const void* alpha = t.scale == CUDA_R_32I ? static_cast<const void*>(&ai) : static_cast<const void*>(&af);
    const void* beta = t.scale == CUDA_R_32I ? static_cast<const void*>(&bi) : static_cast<const void*>(&bf);
    auto once = [&]() {
      return lt_(cublasLtMatmul(lt, op, alpha, A, la, B, lb, beta, C, lc, C, lc, &heur.algo, ws, wsBytes, 0),
                 "matmul");
    };
    bool good = true;
    for (int i = 0; i < 3 && good; ++i) good = once();
    if (!good || !cu(cudaDeviceSynchronize(), "warmup")) break;
    cu(cudaEventCreate(&e0), "event");
    cu(cudaEventCreate(&e1), "event");
    std::vector<float> ms;
    for (int r = 0; r < 20 && good; ++r) {
      cudaEventRecord(e0);
      good = once();
      cudaEventRecord(e1);
      float v = 0;
      if (!cu(cudaEventSynchronize(e1), "sync") || !cu(cudaEventElapsedTime(&v, e0, e1), "elapsed"))
        good = false;
      ms.push_back(v);
    }
    if (!good) break;
    std::sort(ms.begin(), ms.end());
    *msOut = ms[ms.size() / 2];
  } while (false);
  if (e0) cudaEventDestroy(e0);
  if (e1) cudaEventDestroy(e1);
  if (la) cublasLtMatrixLayoutDestroy(la);
  if (lb) cublasLtMatrixLayoutDestroy(lb);
  if (lc) cublasLtMatrixLayoutDestroy(lc);
  if (op) cublasLtMatmulDescDestroy(op);
  cudaFree(A);
  cudaFree(B);
  cudaFree(C);
  (void)cudaGetLastError();
  return err;
}

}  // namespace

int main() {
  cudaDeviceProp prop{};
  if (cudaGetDeviceProperties(&prop, 0) != cudaSuccess) {
    std::printf("{\"probe\":\"cublaslt\",\"error\":\"no CUDA device\"}\n");
    return 1;
  }
  cublasLtHandle_t lt = nullptr;
  if (cublasLtCreate(&lt) != CUBLAS_STATUS_SUCCESS) {
    std::printf("{\"probe\":\"cublaslt\",\"error\":\"cublasLtCreate failed\"}\n");
    return 1;
  }
  const size_t wsBytes = 64u << 20;
  void* ws = nullptr;
  cudaMalloc(&ws, wsBytes);
  const Type types[] = {
      {"tf32", CUDA_R_32F, CUDA_R_32F, CUDA_R_32F, CUBLAS_COMPUTE_32F_FAST_TF32, 4, 4, 0},
      {"bf16", CUDA_R_16BF, CUDA_R_16BF, CUDA_R_32F, CUBLAS_COMPUTE_32F, 2, 2, 1},
      {"int8", CUDA_R_8I, CUDA_R_32I, CUDA_R_32I, CUBLAS_COMPUTE_32I, 1, 4, 2},
      {"fp8e4m3", CUDA_R_8F_E4M3, CUDA_R_16BF, CUDA_R_32F, CUBLAS_COMPUTE_32F, 1, 2, 3},
  };
  for (const Type& t : types) {
    for (const Shape& s : kShapes) {
      double ms = 0;
      const std::string err = runOne(lt, t, s, ws, wsBytes, &ms);
      const double ops = 2.0 * s.m * s.n * s.k;
      if (err.empty())
        std::printf(
            "{\"probe\":\"cublaslt\",\"gpu\":\"%s\",\"type\":\"%s\",\"shape\":\"%s\",\"m\":%d,\"n\":%d,\"k\":"
            "%d,"
            "\"ms\":%.4f,\"tflops\":%.1f}\n",
            prop.name, t.name, s.what, s.m, s.n, s.k, ms, ops / (ms * 1e-3) / 1e12);
      else
        std::printf(
            "{\"probe\":\"cublaslt\",\"gpu\":\"%s\",\"type\":\"%s\",\"shape\":\"%s\",\"m\":%d,\"n\":%d,\"k\":"
            "%d,"
            "\"error\":\"%s\"}\n",
            prop.name, t.name, s.what, s.m, s.n, s.k, err.c_str());
      std::fflush(stdout);
    }
  }
  cudaFree(ws);
  cublasLtDestroy(lt);
  return 0;
}
