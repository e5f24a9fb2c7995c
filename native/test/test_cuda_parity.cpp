// CUDA backend vs CPU backend (makeCpuBackend(1)) on random inputs, op by op. Compiled empty
// unless the build has CUDA; each case reports itself skipped ("no GPU") when no GPU is visible.
//
// Tolerances (|got - want| <= atol + rtol * |want| unless stated):
//   gemm (TF32 tensor cores on sm_80+): |err| <= 2e-3 * sum_k |a_ik||b_kj| + 1e-5 (TF32 rounds
//       each input to a 10-bit mantissa, rel. error 2^-11 per factor); fp32 mode (PRIMAL_TF32=0):
//       1e-5 * sum_k |a||b| + 1e-6; bf16 mode (PRIMAL_GEMM=bf16: inputs rounded to bf16, 8-bit
//       mantissa, rel. error 2^-8 per factor, fp32 accumulation): 1e-2 * sum_k |a||b| + 1e-5,
//       i.e. ~1e-2 of the output scale (the bound is ~4e-3, so 2.5x margin).
//   add, scale, poltMaterialize, poltProbabilities, embedding forward: bit-identical.
//   sumSquares: rel 1e-12 (double accumulation, different summation order).
//   embedding backward, rmsnorm fwd/bwd, rope, swiglu, adamw: atol 1e-5..1e-6, rtol 1e-5..1e-4
//       (fp32 with different summation order / libm vs CUDA expf within a few ulp).
//   attention fwd/bwd (fp32 SIMT on the GPU): atol 2e-5, rtol 1e-4 on out and lse; gradients
//       within 1e-4 * max|ref| + 1e-4 * |ref|.
//   actQuant: identical except at most 0.1% of elements (+2) that may differ by exactly one
//       quantization step (rounding ties after x*s can land on the other side).
//   classifier / logits: TF32 logits, so losses atol 3e-3 rtol 1e-3 and dx, dtable within
//       1e-2 * max|ref|; with PRIMAL_TF32=0: losses 2e-5, dx/dtable 1e-4 * max|ref| + 1e-5;
//       bf16 GEMMs: losses atol 2e-2 rtol 5e-3, dx/dtable within 3e-2 * max|ref|.
//   whole trainer, bf16 GEMMs: first micro-batch loss within 2e-2 relative of the CPU's.
//   scratchBytes: the backend's own memory after running every op of a micro-batch shape is at
//       most scratchBytes(shape) (fp32, tf32 and bf16 modes).
//   steQuantize: gamma rel 1e-6; Wq identical except where W/gamma is within 1e-4 of +-0.5.
//   poltVote: votes identical (deadzone 0); with a deadzone identical except where |G| is within
//       1e-6 relative of the threshold; dL/ds rel 1e-9 (exact products, other order).
//   poltFlip: codes, votes, p and every integer statistic and pMax bit-identical; pSum rel 1e-12
//       (the CUDA backend sums p over the |vote| histogram, the CPU over weights in order).
//   The step contract: sumSegments rel 1e-12 (double, other order); stepLoss tokens exact, loss
//       rel 1e-13; stepGate clip and refusal bits identical; ghostScaleStep and poltMergeVotes
//       bit-identical (the Ghost Scale rule uses explicitly rounded device arithmetic); a refused
//       step leaves adamw, poltMergeVotes (restores), ghostScaleStep and poltFlip untouched.
//   Determinism: attention backward, embedding/rmsnorm backward and classifier are bit-identical
//       between two CUDA runs.
#ifdef PRIMAL_HAVE_CUDA
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <memory>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "cuda/cuda_entry.h"
#include "primal/backend.h"
#include "primal/error.h"
#include "primal/trainer.h"
#include "testing.h"

namespace {

using primal::Backend;
using primal_test::Failure;

// Every case starts here: without a visible GPU it reports itself skipped (not passed).
void requireGpu() {
  if (primal::cudaDeviceCount() == 0) PRIMAL_SKIP("no GPU");
}

struct Pair {
  std::unique_ptr<Backend> cpu, gpu;
};
Pair backends() { return Pair{primal::makeCpuBackend(1), primal::makeCudaBackend(0)}; }

// fp32 (non-TF32) GEMMs, for tight checks of GEMM-based ops (independent of PRIMAL_GEMM).
std::unique_ptr<Backend> gpuFp32() { return primal::makeCudaBackendWithGemm(0, "fp32"); }

// bf16 GEMM operands with fp32 accumulation (falls back to fp32 before sm_80).
std::unique_ptr<Backend> gpuBf16() { return primal::makeCudaBackendWithGemm(0, "bf16"); }
bool isBf16(const Backend& b) {
  return b.describe().find("BF16 GEMM") != std::string::npos &&
         b.describe().find("needs sm_80") == std::string::npos;
}

[[noreturn]] void fail(const std::string& msg) { throw Failure{msg}; }

std::vector<float> randn(size_t n, uint32_t seed, float sigma = 1.0f) {
  std::mt19937 g(seed);
  std::normal_distribution<float> d(0.0f, sigma);
  std::vector<float> v(n);
  for (auto& x : v) x = d(g);
  return v;
}
std::vector<float> randu(size_t n, uint32_t seed, float lo = -1.0f, float hi = 1.0f) {
  std::mt19937 g(seed);
  std::uniform_real_distribution<float> d(lo, hi);
  std::vector<float> v(n);
  for (auto& x : v) x = d(g);
  return v;
}
std::vector<int32_t> randi(size_t n, uint32_t seed, int lo, int hi) {
  std::mt19937 g(seed);
  std::uniform_int_distribution<int> d(lo, hi);
  std::vector<int32_t> v(n);
  for (auto& x : v) x = d(g);
  return v;
}
std::vector<int8_t> randi8(size_t n, uint32_t seed, int lo, int hi) {
  auto v = randi(n, seed, lo, hi);
  return std::vector<int8_t>(v.begin(), v.end());
}

// The same data on both backends; freed on scope exit (also when a check throws).
template <class T>
struct Dual {
  Backend* cb;
  Backend* gb;
  T* c = nullptr;
  T* g = nullptr;
  size_t n;
  Dual(Pair& P, const std::vector<T>& v) : Dual(*P.cpu, *P.gpu, v) {}
  Dual(Backend& cpu, Backend& gpu, const std::vector<T>& v) : cb(&cpu), gb(&gpu), n(v.size()) {
    c = static_cast<T*>(cb->alloc(bytes()));
    g = static_cast<T*>(gb->alloc(bytes()));
    cb->toDevice(c, v.data(), bytes());
    gb->toDevice(g, v.data(), bytes());
  }
  ~Dual() {
    cb->free(c);
    gb->free(g);
  }
  Dual(const Dual&) = delete;
  Dual& operator=(const Dual&) = delete;
  size_t bytes() const { return n * sizeof(T); }
  std::vector<T> cpuHost() const {
    std::vector<T> v(n);
    cb->toHost(v.data(), c, bytes());
    return v;
  }
  std::vector<T> gpuHost() const {
    std::vector<T> v(n);
    gb->toHost(v.data(), g, bytes());
    return v;
  }
};

std::vector<float> nans(size_t n) { return std::vector<float>(n, std::numeric_limits<float>::quiet_NaN()); }

double maxAbs(const std::vector<float>& v) {
  double m = 0.0;
  for (float x : v) m = std::max(m, static_cast<double>(std::fabs(x)));
  return m;
}

void expectNear(const std::string& what, const std::vector<float>& got, const std::vector<float>& want,
                double atol, double rtol) {
  if (got.size() != want.size()) fail(what + ": size mismatch");
  for (size_t i = 0; i < got.size(); ++i) {
    const double g = got[i], w = want[i];
    if (!(std::fabs(g - w) <= atol + rtol * std::fabs(w))) {
      std::ostringstream os;
      os.precision(9);
      os << what << "[" << i << "]: cuda " << g << " vs cpu " << w << " (atol " << atol << ", rtol " << rtol
         << ")";
      fail(os.str());
    }
  }
}

// Errors relative to the largest reference magnitude (for gradients whose elements vary widely).
void expectNearScaled(const std::string& what, const std::vector<float>& got, const std::vector<float>& want,
                      double rel) {
  const double m = maxAbs(want);
  expectNear(what, got, want, rel * m + 1e-30, rel);
}

template <class T>
void expectSame(const std::string& what, const std::vector<T>& got, const std::vector<T>& want) {
  if (got.size() != want.size()) fail(what + ": size mismatch");
  for (size_t i = 0; i < got.size(); ++i) {
    if (std::memcmp(&got[i], &want[i], sizeof(T)) != 0) {
      std::ostringstream os;
      os.precision(9);
      os << what << "[" << i << "]: cuda " << +got[i] << " vs cpu " << +want[i]
         << " (bit-identical expected)";
      fail(os.str());
    }
  }
}

template <class T>
bool sameBits(const std::vector<T>& a, const std::vector<T>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(T)) == 0;
}

// ---- GEMM ---------------------------------------------------------------------------------------
void checkGemm(Backend& cpu, Backend& gpu, double relTol, uint32_t seed, int M, int N, int K, bool ta,
               bool tb, float alpha, float beta, int pad) {
  const int aRows = ta ? K : M, aCols = ta ? M : K;
  const int bRows = tb ? N : K, bCols = tb ? K : N;
  const int lda = aCols + pad, ldb = bCols + pad, ldc = N + pad;
  auto A = randu(static_cast<size_t>(aRows) * lda, seed);
  auto B = randu(static_cast<size_t>(bRows) * ldb, seed + 1);
  auto C0 = beta == 0.0f ? nans(static_cast<size_t>(M) * ldc) : randu(static_cast<size_t>(M) * ldc, seed + 2);
  Dual<float> a(cpu, gpu, A), b(cpu, gpu, B), c(cpu, gpu, C0);
  cpu.gemm(ta, tb, M, N, K, alpha, a.c, lda, b.c, ldb, beta, c.c, ldc);
  gpu.gemm(ta, tb, M, N, K, alpha, a.g, lda, b.g, ldb, beta, c.g, ldc);
  auto want = c.cpuHost(), got = c.gpuHost();
  for (int i = 0; i < M; ++i) {
    for (int j = 0; j < ldc; ++j) {
      const size_t ci = static_cast<size_t>(i) * ldc + j;
      if (j >= N) {  // padding must be untouched
        if (std::memcmp(&got[ci], &C0[ci], sizeof(float)) != 0) fail("gemm wrote into the ldc padding");
        continue;
      }
      double mag = 0.0;
      for (int k = 0; k < K; ++k) {
        const double av = ta ? A[static_cast<size_t>(k) * lda + i] : A[static_cast<size_t>(i) * lda + k];
        const double bv = tb ? B[static_cast<size_t>(j) * ldb + k] : B[static_cast<size_t>(k) * ldb + j];
        mag += std::fabs(av * bv);
      }
      const double tol = relTol * std::fabs(alpha) * mag + 1e-5 + 1e-6 * std::fabs(want[ci]);
      if (!(std::fabs(got[ci] - want[ci]) <= tol)) {
        std::ostringstream os;
        os.precision(9);
        os << "gemm M" << M << " N" << N << " K" << K << " ta" << ta << " tb" << tb << " beta" << beta
           << " C[" << i << "," << j << "]: cuda " << got[ci] << " vs cpu " << want[ci] << " (tol " << tol
           << ")";
        fail(os.str());
      }
    }
  }
}

}  // namespace

PRIMAL_TEST("cuda/gemm: 4 transposes, strides, alpha/beta, TF32 and fp32 modes, K=0") {
  requireGpu();
  auto P = backends();
  auto g32 = gpuFp32();
  std::printf("     %s\n", P.gpu->describe().c_str());
  uint32_t seed = 100;
  const int shapes[][3] = {{67, 129, 96}, {1, 300, 64}, {130, 7, 513}, {256, 768, 768}};
  for (const auto& s : shapes)
    for (int ta = 0; ta < 2; ++ta)
      for (int tb = 0; tb < 2; ++tb)
        for (float beta : {0.0f, 0.5f}) {
          checkGemm(*P.cpu, *P.gpu, 2e-3, seed, s[0], s[1], s[2], ta, tb, 0.75f, beta, 3);
          checkGemm(*P.cpu, *g32, 1e-5, seed, s[0], s[1], s[2], ta, tb, 0.75f, beta, 1);
          seed += 3;
        }
  // K == 0: C = beta * C.
  Dual<float> c(P, std::vector<float>(6, 2.0f));
  P.gpu->gemm(false, false, 2, 3, 0, 1.0f, c.g, 1, c.g, 3, 0.5f, c.g, 3);
  for (float x : c.gpuHost()) EXPECT_EQ(x, 1.0f);
  bool threw = false;
  try {
    P.gpu->gemm(false, false, 4, 4, 8, 1.0f, c.g, 4, c.g, 4, 0.0f, c.g, 4);
  } catch (const primal::Error&) {
    threw = true;
  }
  EXPECT_TRUE(threw);
}

PRIMAL_TEST("cuda/memory: accounting, out of memory is an OutOfMemory error, backend stays usable") {
  requireGpu();
  auto gpu = primal::makeCudaBackend(0);
  EXPECT_TRUE(gpu->name() == "cuda");
  EXPECT_TRUE(gpu->describe().find("sm_") != std::string::npos);
  const size_t base = gpu->bytesInUse();
  void* a = gpu->alloc(1000);
  void* b = gpu->alloc(3 << 20);
  EXPECT_EQ(gpu->bytesInUse(), base + 1000 + (3u << 20));
  EXPECT_TRUE(gpu->peakBytes() >= gpu->bytesInUse());
  gpu->free(a);
  gpu->free(b);
  EXPECT_EQ(gpu->bytesInUse(), base);
  bool oom = false;
  try {
    gpu->alloc(size_t(1) << 50);
  } catch (const primal::OutOfMemory& e) {
    oom = true;
    const std::string msg = e.what();
    std::printf("     %s\n", msg.c_str());
    EXPECT_TRUE(msg.find("requested") != std::string::npos);
    EXPECT_TRUE(msg.find("free") != std::string::npos);
  }
  EXPECT_TRUE(oom);
  std::vector<float> h = {1, 2, 3, 4, 5};
  float* d = static_cast<float*>(gpu->alloc(sizeof(float) * 5));
  gpu->toDevice(d, h.data(), sizeof(float) * 5);
  gpu->scale(d, 2.0f, 5);
  EXPECT_EQ(gpu->sumSquares(d, 5), 4.0 * 55.0);
  gpu->free(d);
  bool threw = false;
  try {
    gpu->free(h.data());
  } catch (const primal::Error&) {
    threw = true;
  }
  EXPECT_TRUE(threw);
}

PRIMAL_TEST("cuda/add, scale, sumSquares, allFinite (vector and tail paths)") {
  requireGpu();
  auto P = backends();
  for (size_t n : {size_t(1), size_t(7), size_t(1000003)}) {
    Dual<float> x(P, randn(n, 1)), y(P, randn(n, 2));
    P.cpu->add(y.c, x.c, n);
    P.gpu->add(y.g, x.g, n);
    P.cpu->scale(y.c, -0.3f, n);
    P.gpu->scale(y.g, -0.3f, n);
    expectSame("add/scale", y.gpuHost(), y.cpuHost());
    const double sc = P.cpu->sumSquares(y.c, n), sg = P.gpu->sumSquares(y.g, n);
    EXPECT_NEAR(sg, sc, 0.0, 1e-12);
    EXPECT_TRUE(P.gpu->allFinite(y.g, n));
  }
  for (size_t pos : {size_t(0), size_t(5), size_t(999999), size_t(1000002)}) {
    auto v = randn(1000003, 3);
    v[pos] = pos % 2 ? std::numeric_limits<float>::infinity() : std::numeric_limits<float>::quiet_NaN();
    Dual<float> x(P, v);
    EXPECT_TRUE(!P.gpu->allFinite(x.g, v.size()));
    EXPECT_TRUE(!P.cpu->allFinite(x.c, v.size()));
  }
  // Unaligned (offset) pointers take the scalar path.
  Dual<float> x(P, randn(1001, 4)), y(P, randn(1001, 5));
  P.cpu->add(y.c + 1, x.c + 2, 999);
  P.gpu->add(y.g + 1, x.g + 2, 999);
  expectSame("add unaligned", y.gpuHost(), y.cpuHost());
  EXPECT_NEAR(P.gpu->sumSquares(y.g + 3, 997), P.cpu->sumSquares(y.c + 3, 997), 0.0, 1e-12);
}

PRIMAL_TEST("cuda/embedding forward + backward (repeated tokens, C vectorized and not)") {
  requireGpu();
  auto P = backends();
  for (int C : {96, 30}) {
    const int N = 300, Vp = 64;
    Dual<int32_t> tok(P, randi(N, 7, 0, 49));
    Dual<float> table(P, randn(static_cast<size_t>(Vp) * C, 8));
    Dual<float> out(P, nans(static_cast<size_t>(N) * C));
    P.cpu->embeddingForward(tok.c, table.c, out.c, N, C);
    P.gpu->embeddingForward(tok.g, table.g, out.g, N, C);
    expectSame("embedding forward", out.gpuHost(), out.cpuHost());
    Dual<float> dout(P, randn(static_cast<size_t>(N) * C, 9));
    Dual<float> dtab(P, randn(static_cast<size_t>(Vp) * C, 10));
    P.cpu->embeddingBackward(tok.c, dout.c, dtab.c, N, C);
    P.gpu->embeddingBackward(tok.g, dout.g, dtab.g, N, C);
    const auto first = dtab.gpuHost();
    expectNear("embedding backward dtable", first, dtab.cpuHost(), 1e-5, 1e-5);
    // Deterministic: the same accumulation again gives the same bits.
    Dual<float> dtab2(P, randn(static_cast<size_t>(Vp) * C, 10));
    P.gpu->embeddingBackward(tok.g, dout.g, dtab2.g, N, C);
    EXPECT_TRUE(sameBits(dtab2.gpuHost(), first));
  }
}

PRIMAL_TEST("cuda/rmsnorm forward + backward (accumulating dx, dw)") {
  requireGpu();
  auto P = backends();
  for (int C : {768, 64, 30}) {
    const int N = 150;
    const size_t nc = static_cast<size_t>(N) * C;
    Dual<float> x(P, randn(nc, 11, 2.0f)), w(P, randu(C, 12, 0.5f, 1.5f));
    Dual<float> y(P, nans(nc)), rstd(P, nans(N));
    P.cpu->rmsnormForward(x.c, w.c, y.c, rstd.c, N, C, 1e-5f);
    P.gpu->rmsnormForward(x.g, w.g, y.g, rstd.g, N, C, 1e-5f);
    expectNear("rmsnorm y", y.gpuHost(), y.cpuHost(), 1e-6, 1e-5);
    expectNear("rmsnorm rstd", rstd.gpuHost(), rstd.cpuHost(), 0.0, 1e-5);
    Dual<float> dy(P, randn(nc, 13)), dx(P, randn(nc, 14)), dw(P, randn(C, 15));
    P.cpu->rmsnormBackward(x.c, w.c, rstd.c, dy.c, dx.c, dw.c, N, C);
    P.gpu->rmsnormBackward(x.g, w.g, rstd.g, dy.g, dx.g, dw.g, N, C);
    expectNear("rmsnorm dx", dx.gpuHost(), dx.cpuHost(), 1e-5, 1e-4);
    expectNear("rmsnorm dw", dw.gpuHost(), dw.cpuHost(), 1e-4, 1e-4);
    const auto dwFirst = dw.gpuHost();
    Dual<float> dx2(P, randn(nc, 14)), dw2(P, randn(C, 15));
    P.gpu->rmsnormBackward(x.g, w.g, rstd.g, dy.g, dx2.g, dw2.g, N, C);
    EXPECT_TRUE(sameBits(dw2.gpuHost(), dwFirst));
    EXPECT_TRUE(sameBits(dx2.gpuHost(), dx.gpuHost()));
  }
}

PRIMAL_TEST("cuda/rope forward and inverse") {
  requireGpu();
  auto P = backends();
  const int B = 2, T = 300, H = 3, D = 64;
  const size_t n = static_cast<size_t>(B) * T * H * D;
  Dual<float> x(P, randn(n, 16));
  P.cpu->rope(x.c, B, T, H, D, 10000.0f, false);
  P.gpu->rope(x.g, B, T, H, D, 10000.0f, false);
  expectNear("rope", x.gpuHost(), x.cpuHost(), 1e-6, 1e-6);
  P.cpu->rope(x.c, B, T, H, D, 10000.0f, true);
  P.gpu->rope(x.g, B, T, H, D, 10000.0f, true);
  expectNear("rope inverse", x.gpuHost(), x.cpuHost(), 1e-6, 1e-6);
  // A shorter sequence and another theta reuse / rebuild the table.
  Dual<float> y(P, randn(static_cast<size_t>(1) * 17 * 2 * 16, 17));
  P.cpu->rope(y.c, 1, 17, 2, 16, 500.0f, false);
  P.gpu->rope(y.g, 1, 17, 2, 16, 500.0f, false);
  expectNear("rope small", y.gpuHost(), y.cpuHost(), 1e-6, 1e-6);
}

PRIMAL_TEST("cuda/attention forward + backward vs cpu (T=67/256/130, D=64/16/32), deterministic") {
  requireGpu();
  auto P = backends();
  const int cases[][4] = {{2, 67, 3, 64}, {1, 256, 2, 64}, {2, 50, 4, 16}, {1, 130, 2, 32}, {1, 70, 1, 40}};
  uint32_t seed = 200;
  for (const auto& cs : cases) {
    const int B = cs[0], T = cs[1], H = cs[2], D = cs[3];
    const size_t n = static_cast<size_t>(B) * T * H * D, nl = static_cast<size_t>(B) * H * T;
    std::ostringstream tag;
    tag << "attention B" << B << " T" << T << " H" << H << " D" << D;
    Dual<float> q(P, randn(n, seed++)), k(P, randn(n, seed++)), v(P, randn(n, seed++));
    Dual<float> out(P, nans(n)), lse(P, nans(nl));
    P.cpu->attentionForward(q.c, k.c, v.c, out.c, lse.c, B, T, H, D);
    P.gpu->attentionForward(q.g, k.g, v.g, out.g, lse.g, B, T, H, D);
    expectNear(tag.str() + " out", out.gpuHost(), out.cpuHost(), 2e-5, 1e-4);
    expectNear(tag.str() + " lse", lse.gpuHost(), lse.cpuHost(), 2e-5, 1e-4);
    Dual<float> dout(P, randn(n, seed++));
    Dual<float> dq(P, nans(n)), dk(P, nans(n)), dv(P, nans(n));
    // Both backends get the CPU's forward results, so only the backward pass is compared.
    Dual<float> outRef(P, out.cpuHost()), lseRef(P, lse.cpuHost());
    P.cpu->attentionBackward(q.c, k.c, v.c, outRef.c, lseRef.c, dout.c, dq.c, dk.c, dv.c, B, T, H, D);
    P.gpu->attentionBackward(q.g, k.g, v.g, outRef.g, lseRef.g, dout.g, dq.g, dk.g, dv.g, B, T, H, D);
    const auto gq = dq.gpuHost(), gk = dk.gpuHost(), gv = dv.gpuHost();
    expectNearScaled(tag.str() + " dq", gq, dq.cpuHost(), 1e-4);
    expectNearScaled(tag.str() + " dk", gk, dk.cpuHost(), 1e-4);
    expectNearScaled(tag.str() + " dv", gv, dv.cpuHost(), 1e-4);
    Dual<float> dq2(P, nans(n)), dk2(P, nans(n)), dv2(P, nans(n));
    P.gpu->attentionBackward(q.g, k.g, v.g, outRef.g, lseRef.g, dout.g, dq2.g, dk2.g, dv2.g, B, T, H, D);
    EXPECT_TRUE(sameBits(dq2.gpuHost(), gq));
    EXPECT_TRUE(sameBits(dk2.gpuHost(), gk));
    EXPECT_TRUE(sameBits(dv2.gpuHost(), gv));
  }
}

PRIMAL_TEST("cuda/swiglu forward + backward") {
  requireGpu();
  auto P = backends();
  const size_t n = 100003;
  Dual<float> g(P, randn(n, 20, 3.0f)), u(P, randn(n, 21)), dh(P, randn(n, 22));
  Dual<float> h(P, nans(n)), dg(P, nans(n)), du(P, nans(n));
  P.cpu->swigluForward(g.c, u.c, h.c, n);
  P.gpu->swigluForward(g.g, u.g, h.g, n);
  expectNear("swiglu h", h.gpuHost(), h.cpuHost(), 1e-6, 1e-5);
  P.cpu->swigluBackward(g.c, u.c, dh.c, dg.c, du.c, n);
  P.gpu->swigluBackward(g.g, u.g, dh.g, dg.g, du.g, n);
  expectNear("swiglu dgate", dg.gpuHost(), dg.cpuHost(), 1e-6, 1e-5);
  expectNear("swiglu dup", du.gpuHost(), du.cpuHost(), 1e-6, 1e-5);
}

PRIMAL_TEST("cuda/actQuant 8 and 4 bits (one-step differences at rounding ties only)") {
  requireGpu();
  auto P = backends();
  for (int C : {768, 30}) {
    for (int bits : {8, 4}) {
      const int N = 64;
      const size_t nc = static_cast<size_t>(N) * C;
      auto xv = randn(nc, 23);
      Dual<float> x(P, xv), xq(P, nans(nc));
      P.cpu->actQuant(x.c, xq.c, N, C, bits);
      P.gpu->actQuant(x.g, xq.g, N, C, bits);
      const auto got = xq.gpuHost(), want = xq.cpuHost();
      const float qmax = static_cast<float>((1 << (bits - 1)) - 1);
      size_t off = 0;
      for (int r = 0; r < N; ++r) {
        float amax = 0.0f;
        for (int c = 0; c < C; ++c) amax = std::max(amax, std::fabs(xv[static_cast<size_t>(r) * C + c]));
        const double step = std::max(amax, 1e-5f) / qmax;
        for (int c = 0; c < C; ++c) {
          const size_t i = static_cast<size_t>(r) * C + c;
          if (got[i] == want[i]) continue;
          ++off;
          if (!(std::fabs(std::fabs(got[i] - want[i]) - step) <= 1e-5 * step))
            fail("actQuant differs by more than one step at " + std::to_string(i));
        }
      }
      if (off > nc / 1000 + 2) fail("actQuant: too many one-step differences: " + std::to_string(off));
    }
  }
}

namespace {
void classifierCase(Backend& cpu, Backend& gpu, int N, int C, int V, int Vp, float lossAtol, float lossRtol,
                    double gradRel, uint32_t seed, const char* tag) {
  auto tv = randi(N, seed, 0, V - 1);
  for (int i = 0; i < N; i += 7) tv[i] = -1;  // unscored rows
  Dual<int32_t> tgt(cpu, gpu, tv);
  Dual<float> x(cpu, gpu, randn(static_cast<size_t>(N) * C, seed + 1));
  Dual<float> table(cpu, gpu, randn(static_cast<size_t>(Vp) * C, seed + 2, 0.1f));
  Dual<float> loss(cpu, gpu, nans(N)), dx(cpu, gpu, nans(static_cast<size_t>(N) * C));
  Dual<float> dtab(cpu, gpu, randn(static_cast<size_t>(Vp) * C, seed + 3, 0.01f));
  cpu.classifier(x.c, table.c, tgt.c, loss.c, dx.c, dtab.c, N, C, V, 0.5f);
  gpu.classifier(x.g, table.g, tgt.g, loss.g, dx.g, dtab.g, N, C, V, 0.5f);
  const std::string t(tag);
  expectNear(t + " losses", loss.gpuHost(), loss.cpuHost(), lossAtol, lossRtol);
  expectNearScaled(t + " dx", dx.gpuHost(), dx.cpuHost(), gradRel);
  expectNear(t + " dtable", dtab.gpuHost(), dtab.cpuHost(), gradRel * maxAbs(dtab.cpuHost()) + 1e-5, gradRel);
  // Loss only (evaluation).
  Dual<float> loss2(cpu, gpu, nans(N));
  gpu.classifier(x.g, table.g, tgt.g, loss2.g, nullptr, nullptr, N, C, V, 0.5f);
  expectSame(t + " eval losses", loss2.gpuHost(), loss.gpuHost());
  // Deterministic.
  Dual<float> dtab2(cpu, gpu, randn(static_cast<size_t>(Vp) * C, seed + 3, 0.01f));
  Dual<float> dx2(cpu, gpu, nans(static_cast<size_t>(N) * C));
  gpu.classifier(x.g, table.g, tgt.g, loss2.g, dx2.g, dtab2.g, N, C, V, 0.5f);
  EXPECT_TRUE(sameBits(dtab2.gpuHost(), dtab.gpuHost()));
  EXPECT_TRUE(sameBits(dx2.gpuHost(), dx.gpuHost()));
}
}  // namespace

PRIMAL_TEST("cuda/classifier losses, dx, dtable (TF32 and fp32 GEMMs, unscored rows, chunks)") {
  requireGpu();
  auto P = backends();
  auto g32 = gpuFp32();
  classifierCase(*P.cpu, *P.gpu, 300, 64, 1000, 1024, 3e-3f, 1e-3f, 1e-2, 30, "classifier tf32");
  classifierCase(*P.cpu, *g32, 300, 64, 1000, 1024, 2e-5f, 1e-5f, 1e-4, 40, "classifier fp32");
  classifierCase(*P.cpu, *g32, 257, 48, 255, 256, 2e-5f, 1e-5f, 1e-4, 45, "classifier fp32 odd V");
  // GPT-2 vocab with a 128 MiB logits budget: 700 rows span two chunks of 640 rows.
  {
    primal_test::EnvScope e("PRIMAL_CUDA_CLASSIFIER_MB", "128");
    auto small = gpuFp32();
    classifierCase(*P.cpu, *small, 700, 32, 50257, 50304, 2e-5f, 1e-5f, 1e-4, 50, "classifier fp32 chunks");
  }
  // logits()
  const int N = 5, C = 64, V = 1000;
  const auto xv = randn(static_cast<size_t>(N) * C, 60), tv = randn(static_cast<size_t>(V) * C, 61, 0.1f);
  {
    Dual<float> x(*P.cpu, *g32, xv), table(*P.cpu, *g32, tv),
        lg(*P.cpu, *g32, nans(static_cast<size_t>(N) * V));
    P.cpu->logits(x.c, table.c, lg.c, N, C, V);
    g32->logits(x.g, table.g, lg.g, N, C, V);
    expectNear("logits fp32", lg.gpuHost(), lg.cpuHost(), 1e-5, 1e-5);
  }
  Dual<float> x(P, xv), table(P, tv), lg(P, nans(static_cast<size_t>(N) * V));
  P.cpu->logits(x.c, table.c, lg.c, N, C, V);
  P.gpu->logits(x.g, table.g, lg.g, N, C, V);
  expectNear("logits tf32", lg.gpuHost(), lg.cpuHost(), 2e-2, 1e-2);
}

PRIMAL_TEST("cuda/adamw over an arena: decaying part, clip and refusal read from the device") {
  requireGpu();
  auto P = backends();
  const size_t n = 10001, nDecay = 6000;
  Dual<float> p(P, randn(n, 70)), m(P, std::vector<float>(n, 0.0f)), v(P, std::vector<float>(n, 0.0f));
  primal::StepHead h{};
  h.clip = 0.7f;
  Dual<primal::StepHead> head(P, {h});
  for (int t = 1; t <= 3; ++t) {
    Dual<float> g(P, randn(n, 71 + t));
    const primal::AdamParams a{1e-2f, 0.9f, 0.95f, 1e-8f, 0.1f, t};
    P.cpu->adamw(p.c, g.c, m.c, v.c, n, nDecay, a, head.c);
    P.gpu->adamw(p.g, g.g, m.g, v.g, n, nDecay, a, head.g);
  }
  expectNear("adamw p", p.gpuHost(), p.cpuHost(), 1e-7, 1e-6);
  expectNear("adamw m", m.gpuHost(), m.cpuHost(), 1e-7, 1e-6);
  expectNear("adamw v", v.gpuHost(), v.cpuHost(), 1e-9, 1e-6);
  // A refused step: nothing moves on either backend.
  h.refused = primal::kRefuseNorm;
  Dual<primal::StepHead> refused(P, {h});
  const auto p0 = p.gpuHost();
  Dual<float> g(P, randn(n, 79));
  P.gpu->adamw(p.g, g.g, m.g, v.g, n, nDecay, primal::AdamParams{1e-2f, 0.9f, 0.95f, 1e-8f, 0.1f, 4},
               refused.g);
  expectSame("adamw refused", p.gpuHost(), p0);
}

PRIMAL_TEST("cuda/steQuantize Wq (gamma on the device)") {
  requireGpu();
  auto P = backends();
  const size_t n = 100003;
  auto wv = randn(n, 80, 0.02f);
  Dual<float> w(P, wv), wq(P, nans(n)), again(P, nans(n));
  Dual<double> abs(P, {0.0});
  P.cpu->steQuantize(w.c, wq.c, n, abs.c, true);
  P.gpu->steQuantize(w.g, wq.g, n, abs.g, true);
  EXPECT_NEAR(abs.gpuHost()[0], abs.cpuHost()[0], 0.0, 1e-12);
  P.gpu->steQuantize(w.g, again.g, n, abs.g, false);  // gamma reused from the device
  expectSame("steQuantize reusing gamma", again.gpuHost(), wq.gpuHost());
  const double gc = abs.cpuHost()[0] / n;
  const auto got = wq.gpuHost(), want = wq.cpuHost();
  for (size_t i = 0; i < n; ++i) {
    if (got[i] == want[i]) continue;
    if (got[i] != 0.0f && want[i] != 0.0f) EXPECT_NEAR(got[i], want[i], 0.0, 1e-6);  // gamma rel 1e-6
    const double r = std::fabs(wv[i] / gc);
    if ((got[i] == 0.0f) != (want[i] == 0.0f) && std::fabs(r - 0.5) > 1e-4)
      fail("steQuantize Wq differs away from a tie at " + std::to_string(i));
  }
}

static primal::FlipParams parityFlipParams(uint32_t layer, uint32_t step, float flipRate, int accum,
                                           bool bridgeOn) {
  primal::FlipParams fp{};
  fp.seedLo = 0x9e3779b9u;
  fp.seedHi = 7;
  fp.layer = layer;
  fp.step = step;
  fp.flipRate = flipRate;
  fp.pMax = 0.5f;
  fp.voteKeep = 0.95f;
  fp.accum = accum;
  fp.bridgeOn = bridgeOn;
  return fp;
}

PRIMAL_TEST("cuda/poltMaterialize and poltProbabilities are bit-identical (gamma0, s on the device)") {
  requireGpu();
  auto P = backends();
  const size_t n = 100003;
  Dual<int8_t> code(P, randi8(n, 90, -2, 2)), vote(P, randi8(n, 91, -127, 127));
  Dual<float> w(P, nans(n)), p(P, nans(n));
  Dual<float> gamma0(P, {0.023f}), s(P, {1.37f});
  P.cpu->poltMaterialize(code.c, w.c, n, gamma0.c, s.c, 2.0f / 3.0f);
  P.gpu->poltMaterialize(code.g, w.g, n, gamma0.g, s.g, 2.0f / 3.0f);
  expectSame("poltMaterialize", w.gpuHost(), w.cpuHost());
  const primal::FlipParams fp = parityFlipParams(3, 17, 0.013f, 3, true);
  P.cpu->poltProbabilities(vote.c, p.c, n, fp, s.c);
  P.gpu->poltProbabilities(vote.g, p.g, n, fp, s.g);
  expectSame("poltProbabilities", p.gpuHost(), p.cpuHost());
}

PRIMAL_TEST("cuda/poltMergeVotes: merged and clamped, or restored when refused; bit-identical") {
  requireGpu();
  auto P = backends();
  const size_t n = 100003;
  auto start = randi8(n, 103, -127, 127), change = randi8(n, 104, -127, 127);
  for (size_t i = 0; i < n; i += 7) start[i] = (i % 2) ? 127 : -127;  // at the clamp
  primal::StepHead ok{}, bad{};
  bad.refused = primal::kRefuseScale;
  Dual<primal::StepHead> hOk(P, {ok}), hBad(P, {bad});
  Dual<int8_t> s(P, start), v(P, change), r(P, change);
  P.cpu->poltMergeVotes(v.c, s.c, n, hOk.c);
  P.gpu->poltMergeVotes(v.g, s.g, n, hOk.g);
  const auto got = v.gpuHost(), want = v.cpuHost();
  expectSame("poltMergeVotes", got, want);
  for (size_t i = 0; i < n; ++i)
    if (want[i] != std::max(-127, std::min(127, start[i] + change[i])))
      fail("poltMergeVotes cpu differs from clamp(start + change) at " + std::to_string(i));
  P.gpu->poltMergeVotes(r.g, s.g, n, hBad.g);
  expectSame("poltMergeVotes refused", r.gpuHost(), start);
}

PRIMAL_TEST("cuda/poltVote: votes and dL/ds accumulated on the device, deadzone off and on") {
  requireGpu();
  auto P = backends();
  const size_t n = 100003;
  auto gv = randn(n, 100, 1e-3f);
  for (size_t i = 0; i < n; i += 13) gv[i] = 0.0f;
  Dual<float> G(P, gv), gamma0(P, {0.031f});
  Dual<int8_t> code(P, randi8(n, 101, -2, 2));
  auto vv = randi8(n, 102, -127, 127);
  for (size_t i = 0; i < n; i += 11) vv[i] = (i % 2) ? 127 : -127;  // saturation
  for (float dz : {0.0f, 0.7f}) {
    Dual<int8_t> vote(P, vv);
    Dual<double> ds(P, {0.125});
    P.cpu->poltVote(G.c, code.c, vote.c, n, 2.0f / 3.0f, dz, gamma0.c, ds.c);
    P.gpu->poltVote(G.g, code.g, vote.g, n, 2.0f / 3.0f, dz, gamma0.g, ds.g);
    EXPECT_NEAR(ds.gpuHost()[0], ds.cpuHost()[0], 1e-15, 1e-9);
    const auto got = vote.gpuHost(), want = vote.cpuHost();
    double ss = 0.0;
    for (float g : gv) ss += static_cast<double>(g) * g;
    const double thr = dz * std::sqrt(ss / n);
    for (size_t i = 0; i < n; ++i) {
      if (got[i] == want[i]) continue;
      if (dz > 0.0f && std::fabs(std::fabs(gv[i]) - thr) <= 1e-6 * thr) continue;
      fail("poltVote vote differs at " + std::to_string(i) + ": cuda " + std::to_string(got[i]) + " cpu " +
           std::to_string(want[i]));
    }
  }
}

static void expectFlipStatsSame(const std::string& tag, const primal::FlipStats& sg,
                                const primal::FlipStats& sc) {
  for (int a = 0; a < 5; ++a) {
    for (int b = 0; b < 5; ++b)
      if (sg.transitions[a][b] != sc.transitions[a][b]) fail(tag + ": transitions differ");
    if (sg.occupancy[a] != sc.occupancy[a]) fail(tag + ": occupancy differs");
  }
  if (sg.flipsUp != sc.flipsUp || sg.flipsDown != sc.flipsDown) fail(tag + ": flip counts differ");
  if (sg.votesNonZero != sc.votesNonZero || sg.votesSaturated != sc.votesSaturated)
    fail(tag + ": votes differ");
  if (sg.pMax != sc.pMax) fail(tag + ": pMax differs");
  EXPECT_NEAR(sg.pSum, sc.pSum, 0.0, 1e-12);
}

PRIMAL_TEST("cuda/poltFlip: codes, votes, p and device stats bit-identical over steps, bridge on/off") {
  requireGpu();
  auto P = backends();
  const size_t n = (size_t(1) << 20) + 3;
  for (int bridge = 0; bridge < 2; ++bridge) {
    auto cv = randi8(n, 110 + bridge, -2, 2);
    if (!bridge)  // ladder -2, 0, 2 plus a few strays at +-1
      for (size_t i = 0; i < n; ++i)
        if ((cv[i] == 1 || cv[i] == -1) && i % 97 != 0) cv[i] = static_cast<int8_t>(2 * cv[i]);
    auto vv = randi8(n, 120 + bridge, -127, 127);
    for (size_t i = 0; i < n; i += 5) vv[i] = 0;
    Dual<int8_t> code(P, cv), vote(P, vv);
    Dual<float> p(P, nans(n)), one(P, {1.0f});
    Dual<primal::StepHead> head(P, {primal::StepHead{}});
    for (uint32_t step = 0; step < 4; ++step) {
      const primal::FlipParams fp = parityFlipParams(5, step, 0.02f, 2, bridge != 0);
      Dual<float> s(P, {1.0f + 0.1f * step});
      Dual<primal::FlipStats> st(P, {primal::FlipStats{}});
      P.cpu->poltFlip(code.c, vote.c, n, fp, s.c, head.c, st.c, p.c);
      P.gpu->poltFlip(code.g, vote.g, n, fp, s.g, head.g, st.g, p.g);
      const std::string tag =
          std::string("poltFlip bridge") + (bridge ? "On" : "Off") + " step " + std::to_string(step);
      expectSame(tag + " code", code.gpuHost(), code.cpuHost());
      expectSame(tag + " vote", vote.gpuHost(), vote.cpuHost());
      expectSame(tag + " p", p.gpuHost(), p.cpuHost());
      const primal::FlipStats sg = st.gpuHost()[0], sc = st.cpuHost()[0];
      expectFlipStatsSame(tag, sg, sc);
      EXPECT_TRUE(sg.flipsUp + sg.flipsDown > 1000);
      if (step == 0)
        std::printf("     %s: %llu flips, pSum %.6f\n", tag.c_str(),
                    static_cast<unsigned long long>(sg.flipsUp + sg.flipsDown), sg.pSum);
      // New votes between steps (deadzone 0: identical on both backends), without stats/pOut.
      Dual<float> G(P, randn(n, 130 + step, 1e-3f));
      Dual<double> ds(P, {0.0});
      P.cpu->poltVote(G.c, code.c, vote.c, n, 2.0f / 3.0f, 0.0f, one.c, ds.c);
      P.gpu->poltVote(G.g, code.g, vote.g, n, 2.0f / 3.0f, 0.0f, one.g, ds.g);
    }
    const primal::FlipParams fp = parityFlipParams(0, 9, 0.05f, 1, bridge != 0);
    P.cpu->poltFlip(code.c, vote.c, n, fp, one.c, nullptr, nullptr, nullptr);
    P.gpu->poltFlip(code.g, vote.g, n, fp, one.g, nullptr, nullptr, nullptr);
    expectSame("poltFlip no stats code", code.gpuHost(), code.cpuHost());
    expectSame("poltFlip no stats vote", vote.gpuHost(), vote.cpuHost());
    // Refused: codes, votes and the stats buffer stay as they were.
    primal::StepHead bad{};
    bad.refused = primal::kRefuseLoss;
    Dual<primal::StepHead> refused(P, {bad});
    primal::FlipStats marker{};
    marker.flipsUp = 12345;
    Dual<primal::FlipStats> st(P, {marker});
    const auto c0 = code.gpuHost(), v0 = vote.gpuHost();
    P.gpu->poltFlip(code.g, vote.g, n, fp, one.g, refused.g, st.g, nullptr);
    expectSame("poltFlip refused code", code.gpuHost(), c0);
    expectSame("poltFlip refused vote", vote.gpuHost(), v0);
    EXPECT_EQ(st.gpuHost()[0].flipsUp, 12345u);
  }
}

PRIMAL_TEST("cuda/sumSegments: per-segment and total sums of x^2 and |x| within 1e-12 of the CPU") {
  requireGpu();
  auto P = backends();
  const size_t n = 300007;
  Dual<float> x(P, randn(n, 150));
  // Several ranges per segment, a one-element and an empty segment, out of order, unaligned.
  const std::vector<size_t> seg = {100000, 300007, 3, 4, 64, 64, 17, 40017, 40017, 99999};
  const int count = static_cast<int>(seg.size() / 2);
  for (bool absolute : {false, true}) {
    Dual<double> per(P, std::vector<double>(count, -1.0)), total(P, {-1.0});
    for (int rep = 0; rep < 2; ++rep) {  // the second call reuses the device tables
      P.cpu->sumSegments(x.c, seg.data(), count, absolute, per.c, total.c);
      P.gpu->sumSegments(x.g, seg.data(), count, absolute, per.g, total.g);
      const auto pg = per.gpuHost(), pc = per.cpuHost();
      for (int j = 0; j < count; ++j) EXPECT_NEAR(pg[j], pc[j], 1e-12, 1e-12);
      EXPECT_EQ(pg[2], 0.0);
      EXPECT_NEAR(total.gpuHost()[0], total.cpuHost()[0], 0.0, 1e-12);
    }
    // Deterministic on the GPU.
    Dual<double> again(P, {0.0});
    P.gpu->sumSegments(x.g, seg.data(), count, absolute, nullptr, again.g);
    EXPECT_TRUE(sameBits(again.gpuHost(), total.gpuHost()));
  }
}

PRIMAL_TEST("cuda/stepLoss and stepGate: the step's loss, tokens, refusals and clip as on the CPU") {
  requireGpu();
  auto P = backends();
  const int N = 5000;
  auto lv = randu(static_cast<size_t>(N), 160, 0.5f, 7.0f);
  auto tv = randi(static_cast<size_t>(N), 161, -1, 50);
  Dual<float> losses(P, lv);
  Dual<int32_t> targets(P, tv);
  Dual<primal::StepHead> head(P, {primal::StepHead{}});
  for (int chunk = 0; chunk < 3; ++chunk) {
    P.cpu->stepLoss(losses.c, targets.c, N, head.c);
    P.gpu->stepLoss(losses.g, targets.g, N, head.g);
  }
  primal::StepHead hc = head.cpuHost()[0], hg = head.gpuHost()[0];
  EXPECT_EQ(hg.tokens, hc.tokens);  // counts are exact
  EXPECT_NEAR(hg.lossSum, hc.lossSum, 0.0, 1e-13);
  EXPECT_NEAR(hg.lastLoss, hc.lastLoss, 0.0, 1e-13);
  EXPECT_EQ(hg.refused, 0u);
  // The gate: a finite norm above the clip threshold, then non-finite dL/ds of layer 2.
  hc.gradSq = hg.gradSq = 9.0;
  Dual<primal::StepHead> gate(P, {hc});
  std::vector<double> dsv = {0.1, -0.2, 0.3, 0.4};
  Dual<double> ds(P, dsv);
  P.cpu->stepGate(gate.c, ds.c, 4, 1.0f);
  P.gpu->stepGate(gate.g, ds.g, 4, 1.0f);
  EXPECT_EQ(gate.gpuHost()[0].clip, gate.cpuHost()[0].clip);
  EXPECT_EQ(gate.gpuHost()[0].refused, 0u);
  dsv[2] = std::numeric_limits<double>::quiet_NaN();
  Dual<double> bad(P, dsv);
  P.gpu->stepGate(gate.g, bad.g, 4, 1.0f);
  EXPECT_EQ(gate.gpuHost()[0].refused, primal::kRefuseScale);
  EXPECT_EQ(gate.gpuHost()[0].badLayer, 2);
  // A non-finite loss refuses and keeps the first bad value.
  lv[7] = std::numeric_limits<float>::infinity();
  tv[7] = 3;
  Dual<float> inf(P, lv);
  Dual<int32_t> t7(P, tv);
  P.gpu->stepLoss(inf.g, t7.g, N, head.g);
  hg = head.gpuHost()[0];
  EXPECT_EQ(hg.refused, primal::kRefuseLoss);
  EXPECT_TRUE(std::isinf(hg.badLoss));
  EXPECT_NEAR(hg.lossSum, hc.lossSum, 0.0, 1e-13);  // unchanged by the refused chunk
}

PRIMAL_TEST("cuda/ghostScaleStep: the Ghost Scales' AdamW bit-identical to the CPU, skipped when refused") {
  requireGpu();
  auto P = backends();
  const int L = 84;
  auto sv = randu(L, 170, 0.5f, 2.0f), mv = randn(L, 171, 0.1f), vv = randu(L, 172, 0.0f, 0.05f);
  std::vector<double> dv(L);
  for (int l = 0; l < L; ++l) dv[l] = (l % 3 == 0 ? 1e3 : 1.0) * (static_cast<double>(l) - 40.0) * 0.0137;
  Dual<float> s(P, sv), m(P, mv), v(P, vv);
  Dual<double> ds(P, dv);
  Dual<primal::StepHead> head(P, {primal::StepHead{}});
  for (int t = 1; t <= 3; ++t) {
    const primal::polt::GhostScaleRule r{
        0.9f, 0.95f, 1e-8f, 0.01f, 1e-4f, 1.0 - std::pow(0.9, t), 1.0 - std::pow(0.95, t)};
    P.cpu->ghostScaleStep(s.c, m.c, v.c, ds.c, L, r, head.c);
    P.gpu->ghostScaleStep(s.g, m.g, v.g, ds.g, L, r, head.g);
  }
  expectSame("ghost s", s.gpuHost(), s.cpuHost());
  expectSame("ghost m", m.gpuHost(), m.cpuHost());
  expectSame("ghost v", v.gpuHost(), v.cpuHost());
  primal::StepHead bad{};
  bad.refused = primal::kRefuseNorm;
  Dual<primal::StepHead> refused(P, {bad});
  const auto s0 = s.gpuHost();
  P.gpu->ghostScaleStep(s.g, m.g, v.g, ds.g, L,
                        primal::polt::GhostScaleRule{0.9f, 0.95f, 1e-8f, 0.01f, 1e-4f, 0.5, 0.5}, refused.g);
  expectSame("ghost refused", s.gpuHost(), s0);
}

// ---- bf16 GEMM mode (PRIMAL_GEMM=bf16) -----------------------------------------------------------

PRIMAL_TEST("cuda/bf16 gemm: 4 transposes, strides, alpha/beta, unaligned rows, K=0, rounding") {
  requireGpu();
  auto cpu = primal::makeCpuBackend(1);
  auto gpu = gpuBf16();
  const bool bf16 = isBf16(*gpu);
  std::printf("     %s%s\n", gpu->describe().c_str(),
              bf16 ? "" : " (no bf16 on this GPU: checks the fp32 fallback)");
  EXPECT_TRUE(bf16 || gpu->describe().find("needs sm_80") != std::string::npos);
  uint32_t seed = 500;
  const int shapes[][3] = {{67, 129, 96}, {1, 300, 64}, {130, 7, 513}, {256, 768, 768}};
  for (const auto& s : shapes)
    for (int ta = 0; ta < 2; ++ta)
      for (int tb = 0; tb < 2; ++tb)
        for (float beta : {0.0f, 0.5f}) {
          // pad 4 keeps rows 16-byte aligned (vector conversion), pad 3 does not (scalar path).
          checkGemm(*cpu, *gpu, 1e-2, seed, s[0], s[1], s[2], ta, tb, 0.75f, beta, beta == 0.0f ? 4 : 3);
          seed += 3;
        }
  // The operands really are rounded to bf16: 1 + 2^-10 is exact in fp32 and TF32 (10-bit
  // mantissa) but rounds to 1 in bf16 (7 explicit bits). K = 1 (scalar) and K = 16 (vector path).
  for (int K : {1, 16}) {
    std::vector<float> av(K, 0.0f), bv(K, 0.0f);
    av[0] = 1.0f + 1.0f / 1024.0f;
    bv[0] = 1.0f;
    Dual<float> a(*cpu, *gpu, av), b(*cpu, *gpu, bv), c(*cpu, *gpu, std::vector<float>(1, 0.0f));
    gpu->gemm(false, false, 1, 1, K, 1.0f, a.g, K, b.g, 1, 0.0f, c.g, 1);
    const float got = c.gpuHost()[0];
    EXPECT_EQ(got, bf16 ? 1.0f : av[0]);
  }
  // K == 0: C = beta * C.
  Dual<float> c(*cpu, *gpu, std::vector<float>(6, 2.0f));
  gpu->gemm(false, false, 2, 3, 0, 1.0f, c.g, 1, c.g, 3, 0.5f, c.g, 3);
  for (float x : c.gpuHost()) EXPECT_EQ(x, 1.0f);
}

PRIMAL_TEST("cuda/bf16 classifier losses, dx, dtable (odd V tail, chunks), deterministic") {
  requireGpu();
  auto cpu = primal::makeCpuBackend(1);
  auto gpu = gpuBf16();
  classifierCase(*cpu, *gpu, 300, 64, 1000, 1024, 2e-2f, 5e-3f, 3e-2, 530, "classifier bf16");
  classifierCase(*cpu, *gpu, 257, 48, 255, 256, 2e-2f, 5e-3f, 3e-2, 545, "classifier bf16 odd V");
  primal_test::EnvScope e("PRIMAL_CUDA_CLASSIFIER_MB", "128");
  auto small = gpuBf16();
  classifierCase(*cpu, *small, 700, 32, 50257, 50304, 2e-2f, 5e-3f, 3e-2, 550, "classifier bf16 chunks");
}

// scratchBytes(shape) bounds what the backend allocates for itself while running every op of a
// micro-batch of that shape (ops at the model's shapes, GEMMs of the block and the classifier).
PRIMAL_TEST("cuda/scratchBytes bounds the backend's own memory (fp32, tf32, bf16)") {
  requireGpu();
  primal::ScratchShape sh;
  sh.B = 3;
  sh.T = 70;
  sh.C = 64;
  sh.H = 4;
  sh.F = 176;
  sh.V = 1000;
  sh.Vp = 1024;
  const int N = sh.B * sh.T, C = sh.C, F = sh.F, H = sh.H, D = C / H, V = sh.V, Vp = sh.Vp;
  for (const char* mode : {"fp32", "tf32", "bf16"}) {
    auto gpu = primal::makeCudaBackendWithGemm(0, mode);
    const size_t bound = gpu->scratchBytes(sh);
    {
      auto buf = [&](size_t n, uint32_t seed) {
        float* p = static_cast<float*>(gpu->alloc(sizeof(float) * n));
        auto v = randn(n, seed, 0.1f);
        gpu->toDevice(p, v.data(), sizeof(float) * n);
        return p;
      };
      const size_t nc = static_cast<size_t>(N) * C, nf = static_cast<size_t>(N) * F;
      float *x = buf(nc, 1), *y = buf(nc, 2), *h = buf(nf, 3), *g = buf(nf, 4), *w = buf(C, 5);
      float *rstd = buf(N, 6), *q = buf(nc, 7), *k = buf(nc, 8), *v = buf(nc, 9), *o = buf(nc, 10);
      float *lse = buf(static_cast<size_t>(N) * H, 11), *dq = buf(nc, 12), *dk = buf(nc, 13),
            *dv = buf(nc, 14);
      float *Wcc = buf(static_cast<size_t>(C) * C, 15), *Wfc = buf(static_cast<size_t>(F) * C, 16);
      float *Gcc = buf(static_cast<size_t>(C) * C, 17), *Gfc = buf(static_cast<size_t>(F) * C, 18);
      float *table = buf(static_cast<size_t>(Vp) * C, 19), *dtable = buf(static_cast<size_t>(Vp) * C, 20);
      float *losses = buf(N, 21), *dw = buf(C, 23);
      auto tv = randi(N, 22, 0, V - 1);
      int32_t* tok = static_cast<int32_t*>(gpu->alloc(sizeof(int32_t) * N));
      gpu->toDevice(tok, tv.data(), sizeof(int32_t) * N);
      gpu->rmsnormForward(x, w, y, rstd, N, C, 1e-5f);
      gpu->gemm(false, true, N, C, C, 1.0f, y, C, Wcc, C, 0.0f, q, C);   // q/k/v/o projections
      gpu->gemm(false, true, N, F, C, 1.0f, y, C, Wfc, C, 0.0f, h, F);   // gate/up
      gpu->gemm(false, true, N, C, F, 1.0f, h, F, Wfc, F, 0.0f, o, C);   // down (W [C,F])
      gpu->gemm(false, false, N, C, F, 1.0f, g, F, Wfc, C, 0.0f, o, C);  // gate/up data grads
      gpu->gemm(true, false, C, C, N, 1.0f, q, C, y, C, 1.0f, Gcc, C);   // weight gradients
      gpu->gemm(true, false, F, C, N, 1.0f, g, F, y, C, 1.0f, Gfc, C);
      gpu->gemm(true, false, C, F, N, 1.0f, o, C, h, F, 0.0f, Gfc, F);
      gpu->rope(q, sh.B, sh.T, H, D, 10000.0f, false);
      gpu->attentionForward(q, k, v, o, lse, sh.B, sh.T, H, D);
      gpu->attentionBackward(q, k, v, o, lse, y, dq, dk, dv, sh.B, sh.T, H, D);
      gpu->rmsnormBackward(x, w, rstd, y, dq, dw, N, C);
      gpu->classifier(y, table, tok, losses, dq, dtable, N, C, V, 1.0f / N);
      gpu->embeddingBackward(tok, y, dtable, N, C);
      gpu->sync();
      for (void* p : {static_cast<void*>(x),     static_cast<void*>(y),      static_cast<void*>(h),
                      static_cast<void*>(g),     static_cast<void*>(w),      static_cast<void*>(rstd),
                      static_cast<void*>(q),     static_cast<void*>(k),      static_cast<void*>(v),
                      static_cast<void*>(o),     static_cast<void*>(lse),    static_cast<void*>(dq),
                      static_cast<void*>(dk),    static_cast<void*>(dv),     static_cast<void*>(Wcc),
                      static_cast<void*>(Wfc),   static_cast<void*>(Gcc),    static_cast<void*>(Gfc),
                      static_cast<void*>(table), static_cast<void*>(dtable), static_cast<void*>(losses),
                      static_cast<void*>(dw),    static_cast<void*>(tok)})
        gpu->free(p);
    }
    EXPECT_EQ(gpu->bytesInUse(), size_t(0));
    gpu->resetPeak();  // nothing live: the peak is now the backend's own memory
    const size_t own = gpu->peakBytes();
    std::printf("     %s: own memory %zu bytes, scratchBytes %zu\n", mode, own, bound);
    EXPECT_TRUE(own <= bound);
    EXPECT_TRUE(own >= (size_t(32) << 20));  // at least the cuBLASLt workspace
  }
}

// ---- tensor-core attention (PRIMAL_CUDA_ATTN=tc, sm_80+) ------------------------------------------
// The tc kernels round q, k, v, dout (and P, dS as MMA operands) to bf16 (8 significant bits:
// relative rounding error <= 2^-8 = 3.9e-3) and accumulate in fp32. A float64 emulation of exactly
// these roundings (unit-normal inputs, the shapes below and B8 T1024 H12 D64, about 20 seeds) gave
// at most: out 3.3e-3 * max|ref|, lse 7.3e-3 absolute, dq 1.3e-2 / dk 8.1e-3 / dv 5.9e-3 * max|ref|.
// Tolerances, about 3x those: out 1e-2 * max|ref|; lse atol 2e-2; dq, dk, dv 4e-2 * max|ref|
// (expectNearScaled: plus the same relative to |ref|). Query row 0 sees only key 0, so out there is
// bf16(v[row 0]) exactly (P = 1 and 0s, l = 1): compared bit for bit, it checks the causal mask
// (v[row 0] itself on the fp32 fallback). With inputs that are already
// bf16 values the scores are exact products summed in fp32, so lse is checked to 1e-3 and out /
// gradients to 5e-3 / 1e-2 * max|ref|. On sm_80+ the tc forward must differ from the fp32 one (the
// tc kernels really ran); below sm_80 the same checks run on the fp32 fallback.
#include <chrono>

namespace {

// 10 * major + minor from describe() ("NVIDIA H100 ... (sm_90 ..."); 0 when absent.
int smOf(const Backend& b) {
  const std::string d = b.describe();
  const size_t p = d.find("(sm_");
  return p == std::string::npos ? 0 : std::atoi(d.c_str() + p + 4);
}

// Nearest bf16 value (ties to even) of a finite float.
std::vector<float> roundedToBf16(std::vector<float> v) {
  for (float& x : v) {
    uint32_t u;
    std::memcpy(&u, &x, sizeof u);
    u = (u + 0x7fffu + ((u >> 16) & 1u)) & 0xffff0000u;
    std::memcpy(&x, &u, sizeof u);
  }
  return v;
}

void attentionTcCase(Pair& P, int B, int T, int H, int D, uint32_t seed, bool bf16Inputs, bool expectTc) {
  const size_t n = static_cast<size_t>(B) * T * H * D, nl = static_cast<size_t>(B) * H * T;
  std::ostringstream os;
  os << "attention tc B" << B << " T" << T << " H" << H << " D" << D << (bf16Inputs ? " bf16 inputs" : "");
  const std::string tag = os.str();
  const double outTol = bf16Inputs ? 5e-3 : 1e-2, lseTol = bf16Inputs ? 1e-3 : 2e-2;
  const double gradTol = bf16Inputs ? 1e-2 : 4e-2;
  auto input = [&](uint32_t s) { return bf16Inputs ? roundedToBf16(randn(n, s)) : randn(n, s); };
  const std::vector<float> vHost = input(seed + 2);
  Dual<float> q(P, input(seed)), k(P, input(seed + 1)), v(P, vHost), dout(P, input(seed + 3));
  primal_test::EnvScope useTc("PRIMAL_CUDA_ATTN", "tc");

  Dual<float> out(P, nans(n)), lse(P, nans(nl));
  P.cpu->attentionForward(q.c, k.c, v.c, out.c, lse.c, B, T, H, D);
  P.gpu->attentionForward(q.g, k.g, v.g, out.g, lse.g, B, T, H, D);
  const auto outRefHost = out.cpuHost(), lseRefHost = lse.cpuHost();
  const auto gOut = out.gpuHost(), gLse = lse.gpuHost();
  expectNearScaled(tag + " out", gOut, outRefHost, outTol);
  expectNear(tag + " lse", gLse, lseRefHost, lseTol, 0.0);
  const std::vector<float> vRow0 = expectTc ? roundedToBf16(vHost) : vHost;
  for (int b = 0; b < B; ++b)  // causal mask: query row 0 attends to key 0 only
    for (int h = 0; h < H; ++h)
      for (int d = 0; d < D; ++d) {
        const size_t i = (static_cast<size_t>(b) * T * H + h) * D + d;
        if (gOut[i] != vRow0[i]) {
          std::ostringstream m;
          m.precision(9);
          m << tag << " out[b" << b << ", t0, h" << h << ", d" << d << "] = " << gOut[i] << " is not "
            << (expectTc ? "bf16(v[b, t0, h, d]) = " : "v[b, t0, h, d] = ") << vRow0[i];
          fail(m.str());
        }
      }
  Dual<float> out2(P, nans(n)), lse2(P, nans(nl));
  P.gpu->attentionForward(q.g, k.g, v.g, out2.g, lse2.g, B, T, H, D);
  EXPECT_TRUE(sameBits(out2.gpuHost(), gOut));
  EXPECT_TRUE(sameBits(lse2.gpuHost(), gLse));
  if (expectTc) {
    primal_test::EnvScope useSimt("PRIMAL_CUDA_ATTN", "simt");
    P.gpu->attentionForward(q.g, k.g, v.g, out2.g, lse2.g, B, T, H, D);
    EXPECT_TRUE(!sameBits(out2.gpuHost(), gOut));
  }

  // Backward on the CPU's forward results (both backends), like the fp32 test.
  Dual<float> outRef(P, outRefHost), lseRef(P, lseRefHost);
  Dual<float> dq(P, nans(n)), dk(P, nans(n)), dv(P, nans(n));
  P.cpu->attentionBackward(q.c, k.c, v.c, outRef.c, lseRef.c, dout.c, dq.c, dk.c, dv.c, B, T, H, D);
  P.gpu->attentionBackward(q.g, k.g, v.g, outRef.g, lseRef.g, dout.g, dq.g, dk.g, dv.g, B, T, H, D);
  const auto rq = dq.cpuHost(), rk = dk.cpuHost(), rv = dv.cpuHost();
  const auto gq = dq.gpuHost(), gk = dk.gpuHost(), gv = dv.gpuHost();
  expectNearScaled(tag + " dq", gq, rq, gradTol);
  expectNearScaled(tag + " dk", gk, rk, gradTol);
  expectNearScaled(tag + " dv", gv, rv, gradTol);
  Dual<float> dq2(P, nans(n)), dk2(P, nans(n)), dv2(P, nans(n));
  P.gpu->attentionBackward(q.g, k.g, v.g, outRef.g, lseRef.g, dout.g, dq2.g, dk2.g, dv2.g, B, T, H, D);
  EXPECT_TRUE(sameBits(dq2.gpuHost(), gq));
  EXPECT_TRUE(sameBits(dk2.gpuHost(), gk));
  EXPECT_TRUE(sameBits(dv2.gpuHost(), gv));

  // The training path: the tc backward on the tc forward's own out and lse.
  P.gpu->attentionBackward(q.g, k.g, v.g, out.g, lse.g, dout.g, dq2.g, dk2.g, dv2.g, B, T, H, D);
  expectNearScaled(tag + " dq (tc forward)", dq2.gpuHost(), rq, gradTol);
  expectNearScaled(tag + " dk (tc forward)", dk2.gpuHost(), rk, gradTol);
  expectNearScaled(tag + " dv (tc forward)", dv2.gpuHost(), rv, gradTol);
  // Either backward accepts either forward's lse: the fp32 backward on the tc forward.
  {
    primal_test::EnvScope useSimt("PRIMAL_CUDA_ATTN", "simt");
    P.gpu->attentionBackward(q.g, k.g, v.g, out.g, lse.g, dout.g, dq2.g, dk2.g, dv2.g, B, T, H, D);
  }
  expectNearScaled(tag + " dq (simt backward, tc forward)", dq2.gpuHost(), rq, gradTol);
  expectNearScaled(tag + " dk (simt backward, tc forward)", dk2.gpuHost(), rk, gradTol);
  expectNearScaled(tag + " dv (simt backward, tc forward)", dv2.gpuHost(), rv, gradTol);
}

// A device buffer of one backend, freed on scope exit.
struct DeviceBuf {
  Backend& b;
  float* p;
  size_t n;
  DeviceBuf(Backend& be, const std::vector<float>& v)
      : b(be), p(static_cast<float*>(be.alloc(v.size() * sizeof(float)))), n(v.size()) {
    be.toDevice(p, v.data(), v.size() * sizeof(float));
  }
  ~DeviceBuf() { b.free(p); }
  DeviceBuf(const DeviceBuf&) = delete;
  DeviceBuf& operator=(const DeviceBuf&) = delete;
  std::vector<float> host() const {
    std::vector<float> v(n);
    b.toHost(v.data(), p, n * sizeof(float));
    return v;
  }
};

}  // namespace

PRIMAL_TEST(
    "cuda/attention tc forward + backward vs cpu (T=67/256/1030, D=64/32/128/40), causal, deterministic") {
  requireGpu();
  auto P = backends();
  const bool tc = smOf(*P.gpu) >= 80;
  std::printf("     %s: %s\n", P.gpu->describe().c_str(),
              tc ? "tensor-core kernels" : "below sm_80: checks the fp32 fallback");
  const int cases[][4] = {{2, 67, 3, 64},  {1, 256, 2, 64},  {2, 1030, 2, 64},
                          {1, 130, 2, 32}, {2, 100, 2, 128}, {1, 70, 1, 40}};
  uint32_t seed = 900;
  for (const auto& cs : cases) {
    attentionTcCase(P, cs[0], cs[1], cs[2], cs[3], seed, false, tc);
    seed += 4;
  }
  attentionTcCase(P, 1, 256, 2, 64, seed, true, tc);
  // An unknown PRIMAL_CUDA_ATTN value is an error, not a silent fallback.
  primal_test::EnvScope bad("PRIMAL_CUDA_ATTN", "tensor");
  Dual<float> x(P, randn(64, 1)), o(P, nans(64)), l(P, nans(16));
  bool threw = false;
  try {
    P.gpu->attentionForward(x.g, x.g, x.g, o.g, l.g, 1, 16, 1, 4);
  } catch (const primal::Error&) {
    threw = true;
  }
  EXPECT_TRUE(threw);
}

PRIMAL_TEST("cuda/attention tc vs fp32 simt at the ghost-0.1b shape (B8 T1024 H12 D64), timings") {
  requireGpu();
  auto gpu = primal::makeCudaBackend(0);
  const int B = 8, T = 1024, H = 12, D = 64;
  const size_t n = static_cast<size_t>(B) * T * H * D, nl = static_cast<size_t>(B) * H * T;
  DeviceBuf q(*gpu, randn(n, 950)), k(*gpu, randn(n, 951)), v(*gpu, randn(n, 952)), dout(*gpu, randn(n, 953));
  DeviceBuf outS(*gpu, nans(n)), lseS(*gpu, nans(nl)), dqS(*gpu, nans(n)), dkS(*gpu, nans(n)),
      dvS(*gpu, nans(n));
  DeviceBuf outT(*gpu, nans(n)), lseT(*gpu, nans(nl)), dqT(*gpu, nans(n)), dkT(*gpu, nans(n)),
      dvT(*gpu, nans(n));
  auto timeMs = [&](const std::function<void()>& fn) {
    fn();  // warm-up (and the result)
    gpu->sync();
    const int reps = 10;
    const auto t0 = std::chrono::steady_clock::now();
    for (int i = 0; i < reps; ++i) fn();
    gpu->sync();
    return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count() / reps;
  };
  double fwd[2], bwd[2];
  {
    primal_test::EnvScope e("PRIMAL_CUDA_ATTN", "simt");
    fwd[0] = timeMs([&] { gpu->attentionForward(q.p, k.p, v.p, outS.p, lseS.p, B, T, H, D); });
    bwd[0] = timeMs([&] {
      gpu->attentionBackward(q.p, k.p, v.p, outS.p, lseS.p, dout.p, dqS.p, dkS.p, dvS.p, B, T, H, D);
    });
  }
  {
    primal_test::EnvScope e("PRIMAL_CUDA_ATTN", "tc");
    fwd[1] = timeMs([&] { gpu->attentionForward(q.p, k.p, v.p, outT.p, lseT.p, B, T, H, D); });
    bwd[1] = timeMs([&] {
      gpu->attentionBackward(q.p, k.p, v.p, outT.p, lseT.p, dout.p, dqT.p, dkT.p, dvT.p, B, T, H, D);
    });
  }
  std::printf(
      "     %s, B%d T%d H%d D%d: forward simt %.3f ms, tc %.3f ms (x%.2f); backward simt %.3f ms, "
      "tc %.3f ms (x%.2f)\n",
      gpu->describe().c_str(), B, T, H, D, fwd[0], fwd[1], fwd[0] / fwd[1], bwd[0], bwd[1], bwd[0] / bwd[1]);
  const auto gq = dqT.host(), gk = dkT.host(), gv = dvT.host();
  expectNearScaled("ghost shape tc out", outT.host(), outS.host(), 1e-2);
  expectNear("ghost shape tc lse", lseT.host(), lseS.host(), 2e-2, 0.0);
  expectNearScaled("ghost shape tc dq", gq, dqS.host(), 4e-2);
  expectNearScaled("ghost shape tc dk", gk, dkS.host(), 4e-2);
  expectNearScaled("ghost shape tc dv", gv, dvS.host(), 4e-2);
  primal_test::EnvScope e("PRIMAL_CUDA_ATTN", "tc");
  gpu->attentionBackward(q.p, k.p, v.p, outT.p, lseT.p, dout.p, dqS.p, dkS.p, dvS.p, B, T, H, D);
  EXPECT_TRUE(sameBits(dqS.host(), gq));
  EXPECT_TRUE(sameBits(dkS.host(), gk));
  EXPECT_TRUE(sameBits(dvS.host(), gv));
}

// ---- attention at ragged head sizes ------------------------------------------------------------
// The fp32 kernels' thread chunks of DC output columns straddle the end of the head when DC does
// not divide D (src/cuda/attention_layout.h; the host test test_attention_layout.cpp lists
// where): 36, 44, 60 with 32x32 tiles, 68, 100, 124 with both.
// Each head size runs with the default (64x64) tiles and with PRIMAL_CUDA_ATTN_TILE=32, three
// heads (a store past a head lands in the next head's columns, racing its block) and a guard of
// sentinel floats after every output (the last head's stores past the buffer always show there).
// Tolerances as the fp32 attention test; the tc kernels as the tc test.
namespace {

constexpr size_t kGuard = 64;
constexpr float kSentinel = 1234.5f;

std::vector<float> withGuard(std::vector<float> v) {
  v.resize(v.size() + kGuard, kSentinel);
  return v;
}
// The first n values of a guarded buffer; fails when anything was written into the guard.
std::vector<float> checkedBody(const std::string& what, std::vector<float> v, size_t n) {
  for (size_t i = n; i < v.size(); ++i)
    if (std::memcmp(&v[i], &kSentinel, sizeof(float)) != 0)
      fail(what + ": written past the end of the buffer (" + std::to_string(i - n) + " floats after it)");
  v.resize(n);
  return v;
}

void raggedAttentionCase(Pair& P, int B, int T, int H, int D, uint32_t seed, bool tc,
                         const std::string& tag) {
  const size_t n = static_cast<size_t>(B) * T * H * D, nl = static_cast<size_t>(B) * H * T;
  Dual<float> q(P, randn(n, seed)), k(P, randn(n, seed + 1)), v(P, randn(n, seed + 2)),
      dout(P, randn(n, seed + 3));
  Dual<float> out(P, withGuard(nans(n))), lse(P, withGuard(nans(nl)));
  P.cpu->attentionForward(q.c, k.c, v.c, out.c, lse.c, B, T, H, D);
  P.gpu->attentionForward(q.g, k.g, v.g, out.g, lse.g, B, T, H, D);
  const auto wantOut = checkedBody(tag + " out (cpu)", out.cpuHost(), n);
  const auto wantLse = checkedBody(tag + " lse (cpu)", lse.cpuHost(), nl);
  const auto gotOut = checkedBody(tag + " out", out.gpuHost(), n);
  const auto gotLse = checkedBody(tag + " lse", lse.gpuHost(), nl);
  if (tc) {
    expectNearScaled(tag + " out", gotOut, wantOut, 1e-2);
    expectNear(tag + " lse", gotLse, wantLse, 2e-2, 0.0);
  } else {
    expectNear(tag + " out", gotOut, wantOut, 2e-5, 1e-4);
    expectNear(tag + " lse", gotLse, wantLse, 2e-5, 1e-4);
  }
  // Backward on the CPU's forward results (both backends).
  Dual<float> outRef(P, wantOut), lseRef(P, wantLse);
  Dual<float> dq(P, withGuard(nans(n))), dk(P, withGuard(nans(n))), dv(P, withGuard(nans(n)));
  P.cpu->attentionBackward(q.c, k.c, v.c, outRef.c, lseRef.c, dout.c, dq.c, dk.c, dv.c, B, T, H, D);
  P.gpu->attentionBackward(q.g, k.g, v.g, outRef.g, lseRef.g, dout.g, dq.g, dk.g, dv.g, B, T, H, D);
  const double gradTol = tc ? 4e-2 : 1e-4;
  expectNearScaled(tag + " dq", checkedBody(tag + " dq", dq.gpuHost(), n), checkedBody(tag, dq.cpuHost(), n),
                   gradTol);
  expectNearScaled(tag + " dk", checkedBody(tag + " dk", dk.gpuHost(), n), checkedBody(tag, dk.cpuHost(), n),
                   gradTol);
  expectNearScaled(tag + " dv", checkedBody(tag + " dv", dv.gpuHost(), n), checkedBody(tag, dv.cpuHost(), n),
                   gradTol);
}

constexpr int kRaggedHeadDims[] = {36, 44, 60, 68, 100, 124};

}  // namespace

PRIMAL_TEST(
    "cuda/attention ragged head sizes (36..124), 64x64 and 32x32 tiles: parity, no store past a head") {
  requireGpu();
  auto P = backends();
  primal_test::EnvScope simt("PRIMAL_CUDA_ATTN", "simt");
  uint32_t seed = 1200;
  for (const char* tile : {"64", "32"})
    for (int D : kRaggedHeadDims) {
      primal_test::EnvScope t("PRIMAL_CUDA_ATTN_TILE", tile);
      raggedAttentionCase(P, 2, 100, 3, D, seed, false,
                          "attention D" + std::to_string(D) + " tiles " + tile + "x" + tile);
      seed += 4;
    }
}

PRIMAL_TEST("cuda/attention tc ragged head sizes (36..124): parity, no store past a head") {
  requireGpu();
  auto P = backends();
  std::printf("     %s: %s\n", P.gpu->describe().c_str(),
              smOf(*P.gpu) >= 80 ? "tensor-core kernels" : "below sm_80: checks the fp32 fallback");
  primal_test::EnvScope tc("PRIMAL_CUDA_ATTN", "tc");
  uint32_t seed = 1300;
  for (int D : kRaggedHeadDims) {
    raggedAttentionCase(P, 2, 100, 3, D, seed, true, "attention tc D" + std::to_string(D));
    seed += 4;
  }
}

// bf16 GEMM without a bf16 algorithm: PRIMAL_CUDA_TEST_BF16_NO_ALGO=odd-ldc makes cuBLASLt's
// bf16 heuristic answer "none" for every odd ldc (cuda_backend.cu), so those calls take the
// retry and then the TF32 fallback on any GPU, instead of throwing. 1 + 2^-10 is exact in TF32
// and rounds to 1 in bf16: an odd-ldc call gives 1 + 2^-10 (TF32 ran), an even one 1 (bf16).
PRIMAL_TEST("cuda/bf16 gemm: no bf16 algorithm for a shape runs that call in TF32, not an error") {
  requireGpu();
  auto cpu = primal::makeCpuBackend(1);
  primal_test::EnvScope e("PRIMAL_CUDA_TEST_BF16_NO_ALGO", "odd-ldc");
  auto gpu = gpuBf16();
  if (!isBf16(*gpu)) PRIMAL_SKIP("no bf16 GEMMs on this GPU (sm_80+ needed)");
  uint32_t seed = 1400;
  const int shapes[][3] = {{67, 129, 96}, {1, 300, 64}, {256, 768, 768}};
  for (const auto& s : shapes)
    for (int ta = 0; ta < 2; ++ta)
      for (int tb = 0; tb < 2; ++tb)
        for (int pad : {3, 4}) {  // ldc = N + pad: the odd one runs in TF32 (tighter bound)
          const double tol = (s[1] + pad) % 2 ? 2e-3 : 1e-2;
          checkGemm(*cpu, *gpu, tol, seed++, s[0], s[1], s[2], ta, tb, 0.75f, pad == 3 ? 0.5f : 0.0f, pad);
        }
  for (int ldc : {1, 2}) {
    const int K = 16;
    std::vector<float> av(K, 0.0f), bv(static_cast<size_t>(K) * ldc, 0.0f);
    av[0] = 1.0f + 1.0f / 1024.0f;
    bv[0] = 1.0f;
    Dual<float> a(*cpu, *gpu, av), b(*cpu, *gpu, bv), c(*cpu, *gpu, std::vector<float>(ldc, 0.0f));
    gpu->gemm(false, false, 1, 1, K, 1.0f, a.g, K, b.g, ldc, 0.0f, c.g, ldc);
    EXPECT_EQ(c.gpuHost()[0], ldc % 2 ? av[0] : 1.0f);
  }
  // The classifier's GEMMs write padded (even) strides: the bf16 path, unaffected.
  classifierCase(*cpu, *gpu, 257, 48, 255, 256, 2e-2f, 5e-3f, 3e-2, 1450, "classifier bf16 (fallback armed)");
}

// logits() with a vocabulary that is not a multiple of 32 computes padded rows and packs them
// into out (row stride V): GPT-2's 50257 over two chunks (128 MiB logits budget), 1000 in one, and
// 1024 written directly. Nothing may be written past N x V.
PRIMAL_TEST("cuda/logits: padded rows packed into a V-stride output (V 50257, 1000, 1024)") {
  requireGpu();
  auto cpu = primal::makeCpuBackend(1);
  primal_test::EnvScope e("PRIMAL_CUDA_CLASSIFIER_MB", "128");
  auto g32 = gpuFp32();
  const int cases[][3] = {{700, 32, 50257}, {37, 64, 1000}, {5, 64, 1024}};
  uint32_t seed = 1500;
  for (const auto& cs : cases) {
    const int N = cs[0], C = cs[1], V = cs[2];
    const size_t nv = static_cast<size_t>(N) * V;
    Dual<float> x(*cpu, *g32, randn(static_cast<size_t>(N) * C, seed)),
        table(*cpu, *g32, randn(static_cast<size_t>(V) * C, seed + 1, 0.1f)),
        lg(*cpu, *g32, withGuard(nans(nv)));
    cpu->logits(x.c, table.c, lg.c, N, C, V);
    g32->logits(x.g, table.g, lg.g, N, C, V);
    const std::string tag = "logits fp32 V" + std::to_string(V);
    expectNear(tag, checkedBody(tag, lg.gpuHost(), nv), checkedBody(tag, lg.cpuHost(), nv), 1e-5, 1e-5);
    seed += 2;
  }
}

// -inf logits (a GEMM that overflowed) add nothing to the classifier's softmax: the online
// (max, sum) pass once turned a -inf seen before any finite logit into NaN. Inputs built as in
// the CPU test test_classifier_inf.cpp: x[n][0] = 1e30 and table[v][0] = -1e10 for v % 8 == 0
// (those logits overflow to -inf), 0 for the others; the other columns at the scale of the other
// classifier cases (so their tolerances hold); targets on finite logits. fp32, TF32 and bf16.
PRIMAL_TEST("cuda/classifier: -inf logits add nothing (finite losses, as the cpu)") {
  requireGpu();
  auto cpu = primal::makeCpuBackend(1);
  const int N = 300, C = 64, V = 1000;
  auto xv = randn(static_cast<size_t>(N) * C, 1600), tv = randn(static_cast<size_t>(V) * C, 1601, 0.1f);
  for (int n = 0; n < N; ++n) xv[static_cast<size_t>(n) * C] = 1e30f;
  for (int v = 0; v < V; ++v) tv[static_cast<size_t>(v) * C] = v % 8 == 0 ? -1e10f : 0.0f;
  auto targets = randi(N, 1602, 0, V / 2 - 1);
  for (auto& t : targets) t = 2 * t + 1;  // odd: finite logits
  targets[3] = -1;
  struct Mode {
    const char* name;
    double lossAtol, lossRtol;
  };
  for (const Mode& m : {Mode{"fp32", 2e-5, 1e-5}, Mode{"tf32", 3e-3, 1e-3}, Mode{"bf16", 2e-2, 5e-3}}) {
    auto gpu = primal::makeCudaBackendWithGemm(0, m.name);
    Dual<int32_t> tgt(*cpu, *gpu, targets);
    Dual<float> x(*cpu, *gpu, xv), table(*cpu, *gpu, tv), loss(*cpu, *gpu, nans(N)),
        dx(*cpu, *gpu, nans(static_cast<size_t>(N) * C)),
        dtab(*cpu, *gpu, std::vector<float>(static_cast<size_t>(V) * C, 0.0f));
    cpu->classifier(x.c, table.c, tgt.c, loss.c, dx.c, dtab.c, N, C, V, 1.0f / N);
    gpu->classifier(x.g, table.g, tgt.g, loss.g, dx.g, dtab.g, N, C, V, 1.0f / N);
    const std::string tag = std::string("classifier -inf logits ") + m.name;
    const auto gl = loss.gpuHost();
    for (size_t i = 0; i < gl.size(); ++i)
      if (!std::isfinite(gl[i])) fail(tag + ": loss " + std::to_string(i) + " is not finite");
    expectNear(tag + " losses", gl, loss.cpuHost(), m.lossAtol, m.lossRtol);
    for (float g : dx.gpuHost())
      if (!std::isfinite(g)) fail(tag + ": dx is not finite");
    for (float g : dtab.gpuHost())
      if (!std::isfinite(g)) fail(tag + ": dtable is not finite");
  }
}

#endif  // PRIMAL_HAVE_CUDA
