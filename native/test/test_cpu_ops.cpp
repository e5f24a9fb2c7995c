// Tests of the CPU backend: GEMM (BLAS and built-in) against a naive product, finite-difference
// gradient checks of every model op, the quantizers on hand-made cases and against an independent
// re-implementation of the flip rule, AdamW against a scalar reference, and determinism.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <memory>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "../src/cpu/gemm.h"
#include "../src/cpu/thread_pool.h"
#include "primal/backend.h"
#include "primal/error.h"
#include "primal/philox.h"
#include "testing.h"

namespace {

using primal::Backend;
using primal_test::Failure;

std::unique_ptr<Backend> cpu(int threads = 2) { return primal::makeCpuBackend(threads); }

std::vector<float> randu(size_t n, uint32_t seed, float lo = -1.0f, float hi = 1.0f) {
  std::mt19937 g(seed);
  std::uniform_real_distribution<float> d(lo, hi);
  std::vector<float> v(n);
  for (auto& x : v) x = d(g);
  return v;
}

std::vector<float> randn(size_t n, uint32_t seed, float sigma = 1.0f) {
  std::mt19937 g(seed);
  std::normal_distribution<float> d(0.0f, sigma);
  std::vector<float> v(n);
  for (auto& x : v) x = d(g);
  return v;
}

double dotd(const std::vector<float>& a, const std::vector<float>& b) {
  double s = 0.0;
  for (size_t i = 0; i < a.size(); ++i) s += static_cast<double>(a[i]) * b[i];
  return s;
}

[[noreturn]] void fail(const std::string& msg) { throw Failure{msg}; }

void expectClose(const char* what, size_t i, double got, double want, double atol, double rtol) {
  if (!(std::fabs(got - want) <= atol + rtol * std::fabs(want))) {
    std::ostringstream os;
    os.precision(9);
    os << what << "[" << i << "]: got " << got << ", want " << want;
    fail(os.str());
  }
}

// Central differences of loss() with respect to every element of x, against `analytic`.
template <class F>
void gradCheck(const char* what, std::vector<float>& x, const std::vector<float>& analytic, F loss, float eps,
               double atol, double rtol) {
  for (size_t i = 0; i < x.size(); ++i) {
    const float save = x[i];
    x[i] = save + eps;
    const float xp = x[i];
    const double lp = loss();
    x[i] = save - eps;
    const float xm = x[i];
    const double lm = loss();
    x[i] = save;
    const double num = (lp - lm) / (static_cast<double>(xp) - static_cast<double>(xm));
    expectClose(what, i, analytic[i], num, atol, rtol);
  }
}

bool sameBits(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

// ---- GEMM --------------------------------------------------------------------------------------

struct GemmCase {
  int M, N, K;
};

// Runs `fn` (a gemm with Backend::gemm's signature) over transpose combos, shapes, alpha/beta and
// padded strides, against a double-precision naive product; checks the padding is untouched.
template <class Gemm>
void checkGemm(const char* what, Gemm fn) {
  const GemmCase cases[] = {{1, 1, 1},   {7, 5, 3},    {33, 17, 65}, {70, 130, 300},
                            {5, 300, 9}, {3, 1100, 5}, {100, 3, 2},  {13, 40, 520}};
  const float betas[] = {0.0f, 1.0f, -0.5f};
  uint32_t seed = 1;
  for (const auto& cs : cases) {
    for (int ta = 0; ta < 2; ++ta) {
      for (int tb = 0; tb < 2; ++tb) {
        for (float beta : betas) {
          const int M = cs.M, N = cs.N, K = cs.K;
          const int aRows = ta ? K : M, aCols = ta ? M : K;
          const int bRows = tb ? N : K, bCols = tb ? K : N;
          const int lda = aCols + 3, ldb = bCols + 1, ldc = N + 2;
          auto A = randu(static_cast<size_t>(aRows) * lda, seed++);
          auto B = randu(static_cast<size_t>(bRows) * ldb, seed++);
          auto C = randu(static_cast<size_t>(M) * ldc, seed++);
          if (beta == 0.0f)
            for (int i = 0; i < M; ++i)
              for (int j = 0; j < N; ++j)
                C[static_cast<size_t>(i) * ldc + j] = std::numeric_limits<float>::quiet_NaN();
          const auto C0 = C;
          const float alpha = 0.75f;
          fn(ta != 0, tb != 0, M, N, K, alpha, A.data(), lda, B.data(), ldb, beta, C.data(), ldc);
          for (int i = 0; i < M; ++i) {
            for (int j = 0; j < ldc; ++j) {
              const size_t ci = static_cast<size_t>(i) * ldc + j;
              if (j >= N) {
                if (!(std::memcmp(&C[ci], &C0[ci], sizeof(float)) == 0))
                  fail(std::string(what) + ": gemm wrote into the ldc padding");
                continue;
              }
              double acc = 0.0;
              for (int k = 0; k < K; ++k) {
                const double a =
                    ta ? A[static_cast<size_t>(k) * lda + i] : A[static_cast<size_t>(i) * lda + k];
                const double b =
                    tb ? B[static_cast<size_t>(j) * ldb + k] : B[static_cast<size_t>(k) * ldb + j];
                acc += a * b;
              }
              double want = alpha * acc;
              if (beta != 0.0f) want += static_cast<double>(beta) * C0[ci];
              std::ostringstream os;
              os << what << " M" << M << " N" << N << " K" << K << " ta" << ta << " tb" << tb << " beta"
                 << beta << " C";
              expectClose(os.str().c_str(), ci, C[ci], want, 1e-5 * std::sqrt(static_cast<double>(K)) + 1e-5,
                          1e-5);
            }
          }
        }
      }
    }
  }
}

PRIMAL_TEST("cpu/gemm backend (BLAS when built) vs naive, all transposes, strides, alpha/beta") {
  auto be = cpu();
  checkGemm("backend", [&](bool ta, bool tb, int M, int N, int K, float al, const float* A, int lda,
                           const float* B, int ldb, float be_, float* C,
                           int ldc) { be->gemm(ta, tb, M, N, K, al, A, lda, B, ldb, be_, C, ldc); });
}

PRIMAL_TEST("cpu/gemm built-in blocked kernels vs naive (generic, AVX2, 1 and 2 threads)") {
  primal::cpu::ThreadPool pool(2);
  std::vector<primal::cpu::GemmKernel> kernels = {primal::cpu::GemmKernel::Generic};
  if (primal::cpu::gemmAvx2Supported()) kernels.push_back(primal::cpu::GemmKernel::Avx2);
  for (auto kern : kernels) {
    for (primal::cpu::ThreadPool* pp : {&pool, static_cast<primal::cpu::ThreadPool*>(nullptr)}) {
      std::string what =
          std::string("gemmBlocked/") + primal::cpu::gemmKernelName(kern) + (pp ? "/pool" : "/serial");
      checkGemm(what.c_str(), [&](bool ta, bool tb, int M, int N, int K, float al, const float* A, int lda,
                                  const float* B, int ldb, float be_, float* C, int ldc) {
        primal::cpu::gemmBlocked(pp, ta, tb, M, N, K, al, A, lda, B, ldb, be_, C, ldc, kern);
      });
    }
  }
}

PRIMAL_TEST("cpu/gemm built-in is bit-identical for any thread count; K=0 and bad strides") {
  primal::cpu::ThreadPool pool2(2), pool3(3);
  const int M = 150, N = 90, K = 700;
  auto A = randu(static_cast<size_t>(M) * K, 5), B = randu(static_cast<size_t>(K) * N, 6);
  std::vector<float> c1(static_cast<size_t>(M) * N), c2 = c1, c3 = c1;
  primal::cpu::gemmBlocked(nullptr, false, false, M, N, K, 1.0f, A.data(), K, B.data(), N, 0.0f, c1.data(),
                           N);
  primal::cpu::gemmBlocked(&pool2, false, false, M, N, K, 1.0f, A.data(), K, B.data(), N, 0.0f, c2.data(), N);
  primal::cpu::gemmBlocked(&pool3, false, false, M, N, K, 1.0f, A.data(), K, B.data(), N, 0.0f, c3.data(), N);
  EXPECT_TRUE(sameBits(c1, c2));
  EXPECT_TRUE(sameBits(c1, c3));

  auto be = cpu();
  std::vector<float> c(6, std::numeric_limits<float>::quiet_NaN());
  be->gemm(false, false, 2, 3, 0, 1.0f, A.data(), 1, B.data(), 3, 0.0f, c.data(), 3);
  for (float x : c) EXPECT_EQ(x, 0.0f);
  std::vector<float> d(6, 2.0f);
  be->gemm(false, false, 2, 3, 0, 1.0f, A.data(), 1, B.data(), 3, 0.5f, d.data(), 3);
  for (float x : d) EXPECT_EQ(x, 1.0f);
  bool threw = false;
  try {
    be->gemm(false, false, 4, 4, 8, 1.0f, A.data(), 4 /* < K */, B.data(), 4, 0.0f, c.data(), 4);
  } catch (const primal::Error&) {
    threw = true;
  }
  EXPECT_TRUE(threw);
}

// ---- thread pool -----------------------------------------------------------------------------

PRIMAL_TEST("cpu/thread pool: static partition covers the range, nested regions, exceptions") {
  primal::cpu::ThreadPool pool(3);
  std::vector<int> hits(1000, 0);
  pool.parallelFor(hits.size(), [&](size_t b, size_t e) {
    for (size_t i = b; i < e; ++i) hits[i] += 1;
    // A nested region runs inline on this thread.
    pool.parallelFor(4, [&](size_t nb, size_t ne) {
      for (size_t j = nb; j < ne; ++j) hits[b] += 0;
    });
  });
  for (int h : hits) EXPECT_EQ(h, 1);
  bool threw = false;
  try {
    pool.parallelFor(300, [&](size_t b, size_t) {
      if (b > 0) throw primal::Error("boom");
    });
  } catch (const primal::Error& e) {
    threw = std::string(e.what()) == "boom";
  }
  EXPECT_TRUE(threw);
  int calls = 0;
  pool.parallelFor(
      10, [&](size_t b, size_t e) { calls += static_cast<int>(e - b); }, 100);
  EXPECT_EQ(calls, 10);  // below the grain: one part on the caller
}

// ---- memory, element-wise ------------------------------------------------------------------

PRIMAL_TEST("cpu/memory accounting, out of memory, describe") {
  auto be = cpu(2);
  EXPECT_TRUE(be->name() == "cpu");
  EXPECT_TRUE(be->describe().find("cpu (") == 0);
  EXPECT_TRUE(be->describe().find("2 threads") != std::string::npos);
  const size_t base = be->bytesInUse();
  void* a = be->alloc(1000);
  void* b = be->alloc(24);
  EXPECT_EQ(be->bytesInUse(), base + 1024);
  EXPECT_TRUE(reinterpret_cast<uintptr_t>(a) % 64 == 0);
  be->free(a);
  EXPECT_EQ(be->bytesInUse(), base + 24);
  EXPECT_EQ(be->peakBytes(), base + 1024);
  be->resetPeak();
  EXPECT_EQ(be->peakBytes(), base + 24);
  std::vector<float> host = {1, 2, 3};
  float* dev = static_cast<float*>(be->alloc(sizeof(float) * 3));
  be->toDevice(dev, host.data(), sizeof(float) * 3);
  float* dev2 = static_cast<float*>(be->alloc(sizeof(float) * 3));
  be->copy(dev2, dev, sizeof(float) * 3);
  std::vector<float> back(3);
  be->toHost(back.data(), dev2, sizeof(float) * 3);
  EXPECT_TRUE(back == host);
  be->zero(dev2, sizeof(float) * 3);
  be->toHost(back.data(), dev2, sizeof(float) * 3);
  EXPECT_EQ(back[1], 0.0f);
  be->free(dev);
  be->free(dev2);
  be->free(b);
  be->free(nullptr);
  EXPECT_EQ(be->bytesInUse(), base);
  std::string msg;
  try {
    be->alloc(size_t(1) << 62);
  } catch (const primal::OutOfMemory& e) {
    msg = e.what();
  }
  EXPECT_TRUE(msg.find(std::to_string(size_t(1) << 62)) != std::string::npos);
  EXPECT_EQ(be->bytesInUse(), base);
}

PRIMAL_TEST("cpu/add, scale, sumSquares, allFinite") {
  auto be = cpu();
  const size_t n = 100003;
  auto x = randu(n, 11), y = randu(n, 12);
  auto y0 = y;
  be->add(y.data(), x.data(), n);
  for (size_t i = 0; i < n; i += 997) EXPECT_EQ(y[i], y0[i] + x[i]);
  be->scale(y.data(), -2.0f, n);
  for (size_t i = 0; i < n; i += 997) EXPECT_EQ(y[i], (y0[i] + x[i]) * -2.0f);
  double ref = 0.0;
  for (float v : x) ref += static_cast<double>(v) * v;
  const double ss = be->sumSquares(x.data(), n);
  EXPECT_NEAR(ss, ref, 0.0, 1e-12);
  auto be1 = cpu(1);
  const double ss1 = be1->sumSquares(x.data(), n);
  EXPECT_TRUE(std::memcmp(&ss, &ss1, sizeof(double)) == 0);  // thread-count independent
  EXPECT_EQ(be->sumSquares(x.data(), 0), 0.0);
  EXPECT_TRUE(be->allFinite(x.data(), n));
  x[77777] = std::numeric_limits<float>::infinity();
  EXPECT_TRUE(!be->allFinite(x.data(), n));
  x[77777] = std::numeric_limits<float>::quiet_NaN();
  EXPECT_TRUE(!be->allFinite(x.data(), n));
  x[77777] = -std::numeric_limits<float>::max();
  EXPECT_TRUE(be->allFinite(x.data(), n));
}

// ---- gradient checks -----------------------------------------------------------------------

PRIMAL_TEST("cpu/embedding forward + backward (finite differences, accumulation)") {
  auto be = cpu();
  const int V = 7, C = 5, N = 6;
  std::vector<int32_t> tok = {3, 1, 3, 0, 6, 3};
  auto table = randn(static_cast<size_t>(V) * C, 21);
  auto R = randn(static_cast<size_t>(N) * C, 22);
  std::vector<float> out(static_cast<size_t>(N) * C);
  auto loss = [&] {
    be->embeddingForward(tok.data(), table.data(), out.data(), N, C);
    return dotd(out, R);
  };
  loss();
  for (int n = 0; n < N; ++n)
    for (int c = 0; c < C; ++c) EXPECT_EQ(out[n * C + c], table[tok[n] * C + c]);
  std::vector<float> dtable(table.size(), 0.0f);
  be->embeddingBackward(tok.data(), R.data(), dtable.data(), N, C);
  gradCheck("embedding dtable", table, dtable, loss, 1e-2f, 1e-4, 1e-3);
  std::vector<float> acc(table.size(), 1.0f);
  be->embeddingBackward(tok.data(), R.data(), acc.data(), N, C);
  for (size_t i = 0; i < acc.size(); ++i) EXPECT_NEAR(acc[i], 1.0f + dtable[i], 1e-6, 0.0);
}

PRIMAL_TEST("cpu/rmsnorm forward + backward dx, dw (finite differences)") {
  auto be = cpu();
  const int N = 3, C = 20;
  const float eps = 1e-5f;
  auto x = randn(static_cast<size_t>(N) * C, 31);
  auto w = randu(C, 32, 0.5f, 1.5f);
  auto R = randn(static_cast<size_t>(N) * C, 33);
  std::vector<float> y(x.size()), rstd(N);
  auto loss = [&] {
    be->rmsnormForward(x.data(), w.data(), y.data(), rstd.data(), N, C, eps);
    return dotd(y, R);
  };
  loss();
  for (int n = 0; n < N; ++n) {
    double ms = 0;
    for (int c = 0; c < C; ++c) ms += static_cast<double>(x[n * C + c]) * x[n * C + c];
    EXPECT_NEAR(rstd[n], 1.0 / std::sqrt(ms / C + eps), 0.0, 1e-5);
  }
  std::vector<float> dx(x.size(), 0.5f), dw(C, -1.0f);  // checks += on both
  be->rmsnormBackward(x.data(), w.data(), rstd.data(), R.data(), dx.data(), dw.data(), N, C);
  for (auto& v : dx) v -= 0.5f;
  for (auto& v : dw) v += 1.0f;
  gradCheck("rmsnorm dx", x, dx, loss, 1e-2f, 2e-3, 1e-2);
  gradCheck("rmsnorm dw", w, dw, loss, 1e-2f, 2e-3, 1e-2);
}

PRIMAL_TEST("cpu/rope: rotation values, inverse undoes it and is the adjoint") {
  auto be = cpu();
  const int B = 2, T = 5, H = 2, D = 8;
  const float theta = 10000.0f;
  const size_t n = static_cast<size_t>(B) * T * H * D;
  auto x = randn(n, 41), y = randn(n, 42);
  auto rx = x;
  be->rope(rx.data(), B, T, H, D, theta, false);
  // One element by the formula.
  const int b = 1, t = 3, h = 1, i = 2;
  const size_t off = ((static_cast<size_t>(b) * T + t) * H + h) * D;
  const double ang = t * std::pow(static_cast<double>(theta), -2.0 * i / D);
  const double x0 = x[off + 2 * i], x1 = x[off + 2 * i + 1];
  EXPECT_NEAR(rx[off + 2 * i], x0 * std::cos(ang) - x1 * std::sin(ang), 1e-5, 1e-5);
  EXPECT_NEAR(rx[off + 2 * i + 1], x0 * std::sin(ang) + x1 * std::cos(ang), 1e-5, 1e-5);
  // t = 0 is the identity.
  for (int d = 0; d < D; ++d) EXPECT_EQ(rx[d], x[d]);
  auto back = rx;
  be->rope(back.data(), B, T, H, D, theta, true);
  for (size_t k = 0; k < n; ++k) expectClose("rope inverse", k, back[k], x[k], 1e-5, 1e-5);
  auto ry = y;
  be->rope(ry.data(), B, T, H, D, theta, true);
  EXPECT_NEAR(dotd(rx, y), dotd(x, ry), 1e-4, 1e-5);
}

// Naive double reference of causal attention for one (b, h).
void attentionRef(const std::vector<float>& q, const std::vector<float>& k, const std::vector<float>& v,
                  int B, int T, int H, int D, std::vector<double>& out, std::vector<double>& lse) {
  const int C = H * D;
  out.assign(static_cast<size_t>(B) * T * C, 0.0);
  lse.assign(static_cast<size_t>(B) * H * T, 0.0);
  for (int b = 0; b < B; ++b)
    for (int h = 0; h < H; ++h)
      for (int t = 0; t < T; ++t) {
        std::vector<double> s(t + 1);
        double m = -1e300;
        for (int j = 0; j <= t; ++j) {
          double acc = 0;
          for (int d = 0; d < D; ++d)
            acc += static_cast<double>(q[(b * T + t) * C + h * D + d]) * k[(b * T + j) * C + h * D + d];
          s[j] = acc / std::sqrt(static_cast<double>(D));
          m = std::max(m, s[j]);
        }
        double l = 0;
        for (int j = 0; j <= t; ++j) l += std::exp(s[j] - m);
        lse[(b * H + h) * T + t] = m + std::log(l);
        for (int j = 0; j <= t; ++j)
          for (int d = 0; d < D; ++d)
            out[(b * T + t) * C + h * D + d] += std::exp(s[j] - m) / l * v[(b * T + j) * C + h * D + d];
      }
}

PRIMAL_TEST("cpu/attention forward vs reference, backward dq dk dv (finite differences)") {
  auto be = cpu();
  const int B = 2, T = 5, H = 2, D = 4;
  const size_t n = static_cast<size_t>(B) * T * H * D;
  auto q = randn(n, 51), k = randn(n, 52), v = randn(n, 53), R = randn(n, 54);
  std::vector<float> out(n), lse(static_cast<size_t>(B) * H * T);
  auto loss = [&] {
    be->attentionForward(q.data(), k.data(), v.data(), out.data(), lse.data(), B, T, H, D);
    return dotd(out, R);
  };
  loss();
  std::vector<double> oref, lref;
  attentionRef(q, k, v, B, T, H, D, oref, lref);
  for (size_t i = 0; i < n; ++i) expectClose("attention out", i, out[i], oref[i], 1e-5, 1e-5);
  for (size_t i = 0; i < lse.size(); ++i) expectClose("attention lse", i, lse[i], lref[i], 1e-5, 1e-5);
  std::vector<float> dq(n, 9.0f), dk(n, 9.0f), dv(n, 9.0f);  // overwritten
  be->attentionBackward(q.data(), k.data(), v.data(), out.data(), lse.data(), R.data(), dq.data(), dk.data(),
                        dv.data(), B, T, H, D);
  gradCheck("attention dq", q, dq, loss, 1e-2f, 2e-3, 1e-2);
  gradCheck("attention dk", k, dk, loss, 1e-2f, 2e-3, 1e-2);
  gradCheck("attention dv", v, dv, loss, 1e-2f, 2e-3, 1e-2);
}

PRIMAL_TEST("cpu/swiglu forward + backward (finite differences)") {
  auto be = cpu();
  const size_t n = 50;
  auto g = randu(n, 61, -4.0f, 4.0f), u = randn(n, 62), R = randn(n, 63);
  std::vector<float> h(n);
  auto loss = [&] {
    be->swigluForward(g.data(), u.data(), h.data(), n);
    return dotd(h, R);
  };
  loss();
  for (size_t i = 0; i < n; ++i)
    expectClose("swiglu h", i, h[i], g[i] / (1.0 + std::exp(-static_cast<double>(g[i]))) * u[i], 1e-6, 1e-5);
  std::vector<float> dg(n, 3.0f), du(n, 3.0f);
  be->swigluBackward(g.data(), u.data(), R.data(), dg.data(), du.data(), n);
  gradCheck("swiglu dgate", g, dg, loss, 1e-2f, 1e-3, 1e-2);
  gradCheck("swiglu dup", u, du, loss, 1e-2f, 1e-3, 1e-2);
}

PRIMAL_TEST("cpu/classifier losses, dx, dtable (finite differences, unscored rows, V < Vp)") {
  auto be = cpu();
  const int N = 6, C = 8, V = 11, Vp = 13;
  const float gradScale = 0.5f;
  auto x = randn(static_cast<size_t>(N) * C, 71);
  auto table = randn(static_cast<size_t>(Vp) * C, 72);
  std::vector<int32_t> tg = {3, -1, 10, 0, -1, 7};
  std::vector<float> losses(N);
  auto loss = [&] {
    be->classifier(x.data(), table.data(), tg.data(), losses.data(), nullptr, nullptr, N, C, V, gradScale);
    double s = 0;
    for (float l : losses) s += l;
    return gradScale * s;
  };
  loss();
  for (int n = 0; n < N; ++n) {
    if (tg[n] < 0) {
      EXPECT_EQ(losses[n], 0.0f);
      continue;
    }
    std::vector<double> lg(V);
    double m = -1e300;
    for (int j = 0; j < V; ++j) {
      double a = 0;
      for (int c = 0; c < C; ++c) a += static_cast<double>(x[n * C + c]) * table[j * C + c];
      lg[j] = a;
      m = std::max(m, a);
    }
    double l = 0;
    for (int j = 0; j < V; ++j) l += std::exp(lg[j] - m);
    expectClose("classifier loss", n, losses[n], m + std::log(l) - lg[tg[n]], 1e-5, 1e-5);
  }
  std::vector<float> dx(x.size(), 7.0f), dtable(table.size(), 0.25f);
  std::vector<float> losses2(N);
  be->classifier(x.data(), table.data(), tg.data(), losses2.data(), dx.data(), dtable.data(), N, C, V,
                 gradScale);
  EXPECT_TRUE(sameBits(losses, losses2));
  for (int c = 0; c < C; ++c) {
    EXPECT_EQ(dx[1 * C + c], 0.0f);
    EXPECT_EQ(dx[4 * C + c], 0.0f);
  }
  for (int r = V; r < Vp; ++r)
    for (int c = 0; c < C; ++c) EXPECT_EQ(dtable[r * C + c], 0.25f);  // padded rows untouched
  for (auto& d : dtable) d -= 0.25f;
  gradCheck("classifier dx", x, dx, loss, 1e-2f, 1e-3, 1e-2);
  gradCheck("classifier dtable", table, dtable, loss, 1e-2f, 1e-3, 1e-2);
}

PRIMAL_TEST("cpu/classifier over many chunks matches the one-shot logits; logits()") {
  auto be = cpu();
  const int N = 300, C = 16, V = 5000;  // 64-row chunks
  auto x = randn(static_cast<size_t>(N) * C, 81, 0.3f);
  auto table = randn(static_cast<size_t>(V) * C, 82, 0.3f);
  std::vector<int32_t> tg(N);
  for (int n = 0; n < N; ++n) tg[n] = n % 7 == 0 ? -1 : (n * 37) % V;
  std::vector<float> lg(static_cast<size_t>(N) * V), losses(N);
  be->logits(x.data(), table.data(), lg.data(), N, C, V);
  for (int n = 0; n < N; n += 41) {
    double a = 0;
    for (int c = 0; c < C; ++c) a += static_cast<double>(x[n * C + c]) * table[(n % V) * C + c];
    expectClose("logits", n, lg[static_cast<size_t>(n) * V + (n % V)], a, 1e-5, 1e-4);
  }
  std::vector<float> dx(x.size()), dtable(table.size(), 0.0f);
  be->classifier(x.data(), table.data(), tg.data(), losses.data(), dx.data(), dtable.data(), N, C, V, 1.0f);
  std::vector<double> dtRef(table.size(), 0.0);
  for (int n = 0; n < N; ++n) {
    const float* lr = lg.data() + static_cast<size_t>(n) * V;
    if (tg[n] < 0) {
      EXPECT_EQ(losses[n], 0.0f);
      continue;
    }
    double m = -1e300, l = 0;
    for (int j = 0; j < V; ++j) m = std::max(m, static_cast<double>(lr[j]));
    for (int j = 0; j < V; ++j) l += std::exp(lr[j] - m);
    expectClose("chunked loss", n, losses[n], m + std::log(l) - lr[tg[n]], 1e-5, 1e-5);
    for (int j = 0; j < V; ++j) {
      const double p = std::exp(lr[j] - m) / l - (j == tg[n] ? 1.0 : 0.0);
      for (int c = 0; c < C; ++c) dtRef[static_cast<size_t>(j) * C + c] += p * x[n * C + c];
    }
  }
  for (size_t i = 0; i < dtable.size(); i += 13)
    expectClose("chunked dtable", i, dtable[i], dtRef[i], 1e-5, 1e-3);
}

PRIMAL_TEST("cpu/linear via gemm: dx and dW (finite differences)") {
  auto be = cpu();
  const int N = 4, Cin = 6, Cout = 5;
  auto x = randn(static_cast<size_t>(N) * Cin, 91), W = randn(static_cast<size_t>(Cout) * Cin, 92);
  auto R = randn(static_cast<size_t>(N) * Cout, 93);
  std::vector<float> y(static_cast<size_t>(N) * Cout);
  auto loss = [&] {
    be->gemm(false, true, N, Cout, Cin, 1.0f, x.data(), Cin, W.data(), Cin, 0.0f, y.data(), Cout);
    return dotd(y, R);
  };
  loss();
  std::vector<float> dx(x.size()), dW(W.size(), 1.0f);
  be->gemm(false, false, N, Cin, Cout, 1.0f, R.data(), Cout, W.data(), Cin, 0.0f, dx.data(), Cin);
  be->gemm(true, false, Cout, Cin, N, 1.0f, R.data(), Cout, x.data(), Cin, 1.0f, dW.data(), Cin);
  for (auto& d : dW) d -= 1.0f;
  gradCheck("linear dx", x, dx, loss, 1e-2f, 1e-3, 1e-3);
  gradCheck("linear dW", W, dW, loss, 1e-2f, 1e-3, 1e-3);
}

// ---- activation quantization, STE ------------------------------------------------------------

PRIMAL_TEST("cpu/actQuant: grid values, absmax preserved, round half to even") {
  auto be = cpu();
  const int N = 4, C = 16;
  auto x = randn(static_cast<size_t>(N) * C, 101);
  // Row 2: absmax 127 so the scale is exactly 1 and rounding is visible.
  const float row2[C] = {127.0f, 2.5f,   3.5f,    -2.5f, 0.5f, -0.5f, 1.5f, -1.5f,
                         0.49f,  126.5f, -127.0f, 0,     0,    0,     0,    0};
  std::memcpy(&x[2 * C], row2, sizeof(row2));
  for (int c = 0; c < C; ++c) x[3 * C + c] = 0.0f;  // all-zero row
  std::vector<float> xq(x.size());
  be->actQuant(x.data(), xq.data(), N, C, 8);
  for (int n = 0; n < N; ++n) {
    float amax = 0;
    for (int c = 0; c < C; ++c) amax = std::max(amax, std::fabs(x[n * C + c]));
    const double s = 127.0 / std::max(amax, 1e-5f);
    for (int c = 0; c < C; ++c) {
      const double g = xq[n * C + c] * s;
      EXPECT_NEAR(g, std::nearbyint(g), 1e-3, 0.0);
      EXPECT_TRUE(g >= -128.5 && g <= 127.5);
      EXPECT_NEAR(xq[n * C + c], x[n * C + c], 0.5 / s + 1e-6, 0.0);
      if (std::fabs(x[n * C + c]) == amax) EXPECT_NEAR(std::fabs(xq[n * C + c]), amax, 0.0, 1e-6);
    }
  }
  const float want2[C] = {127, 2, 4, -2, 0, -0.0f, 2, -2, 0, 126, -127, 0, 0, 0, 0, 0};
  for (int c = 0; c < C; ++c) EXPECT_EQ(xq[2 * C + c], want2[c]);
  for (int c = 0; c < C; ++c) EXPECT_EQ(xq[3 * C + c], 0.0f);
  // 4 bits: qmax 7.
  std::vector<float> x4 = {7.0f, 3.5f, 2.5f, -7.0f, 1.2f}, q4(5);
  be->actQuant(x4.data(), q4.data(), 1, 5, 4);
  const float w4[5] = {7, 4, 2, -7, 1};
  for (int c = 0; c < 5; ++c) EXPECT_EQ(q4[c], w4[c]);
}

// STE with its gamma computed by the op (the first materialization of a forward), then reused.
static void steQuantizeOf(Backend& be, const std::vector<float>& W, std::vector<float>& Wq) {
  double abs = -1;
  be.steQuantize(W.data(), Wq.data(), W.size(), &abs, true);
  std::vector<float> again(W.size());
  be.steQuantize(W.data(), again.data(), W.size(), &abs, false);
  EXPECT_TRUE(sameBits(again, Wq));
  const size_t seg[2] = {0, W.size()};
  double viaSegments = -2;
  be.sumSegments(W.data(), seg, 1, true, nullptr, &viaSegments);
  EXPECT_TRUE(std::memcmp(&abs, &viaSegments, sizeof abs) == 0);
}

PRIMAL_TEST("cpu/steQuantize known example") {
  auto be = cpu();
  std::vector<float> W = {0.5f, -1.5f, 0.1f, 2.0f}, Wq(4);
  steQuantizeOf(*be, W, Wq);
  const float gamma = static_cast<float>((0.5 + 1.5 + static_cast<double>(0.1f) + 2.0) / 4.0);
  EXPECT_EQ(Wq[0], 0.0f);
  EXPECT_EQ(Wq[1], -gamma);
  EXPECT_EQ(Wq[2], 0.0f);
  EXPECT_EQ(Wq[3], gamma);
  // Half-way W/gamma rounds to even: W = {1, 3} -> gamma 2 -> {0.5, 1.5} -> {0, 2 -> clamp 1}.
  std::vector<float> H = {1.0f, 3.0f, -1.0f, -3.0f}, Hq(4);
  steQuantizeOf(*be, H, Hq);
  EXPECT_EQ(Hq[0], 0.0f);
  EXPECT_EQ(Hq[1], 2.0f);
  EXPECT_EQ(Hq[2], 0.0f);
  EXPECT_EQ(Hq[3], -2.0f);
  std::vector<float> Z(5, 0.0f), Zq(5, 1.0f);
  steQuantizeOf(*be, Z, Zq);  // gamma 1e-8
  for (float z : Zq) EXPECT_EQ(z, 0.0f);
}

// ---- Poltergeist ---------------------------------------------------------------------------

PRIMAL_TEST("cpu/poltMaterialize LUT with bridge and scale") {
  auto be = cpu();
  std::vector<int8_t> code = {-2, -1, 0, 1, 2};
  std::vector<float> W(5);
  const float gamma0 = 0.75f, s = 0.4f, scale = gamma0 * s, bridge = 2.0f / 3.0f;
  be->poltMaterialize(code.data(), W.data(), 5, &gamma0, &s, bridge);
  EXPECT_EQ(W[0], -scale);
  EXPECT_EQ(W[1], -(scale * bridge));
  EXPECT_EQ(W[2], 0.0f);
  EXPECT_EQ(W[3], scale * bridge);
  EXPECT_EQ(W[4], scale);
}

PRIMAL_TEST("cpu/poltVote: scale-gradient sum, sign votes, saturation, deadzone") {
  auto be = cpu();
  const float bridge = 0.6f;
  std::vector<float> G = {0.5f, -0.2f, 0.0f, 1e-3f, -3.0f, 2.0f, -1.0f, 0.25f};
  std::vector<int8_t> code = {2, -1, 1, 0, -2, 1, 2, -1};
  std::vector<int8_t> vote = {0, 5, 7, -3, 126, -127, 127, 127};
  // dL/ds accumulates: ds += gamma0 * sum G level(code).
  const float gamma0 = 0.5f, one = 1.0f;
  double ds = 0.25;
  be->poltVote(G.data(), code.data(), vote.data(), G.size(), bridge, 0.0f, &gamma0, &ds);
  const double lut[5] = {-1.0, -static_cast<double>(bridge), 0.0, static_cast<double>(bridge), 1.0};
  double want = 0;
  for (size_t i = 0; i < G.size(); ++i) want += static_cast<double>(G[i]) * lut[code[i] + 2];
  EXPECT_NEAR(ds, 0.25 + 0.5 * want, 1e-12, 1e-12);
  const int8_t wantVote[8] = {-1, 6, 7, -4, 127, -127, 127, 126};
  for (int i = 0; i < 8; ++i) EXPECT_EQ(vote[i], wantVote[i]);
  // Deadzone 0.5 * rms(G): rms = sqrt((4 + 0.01) / 5) = 0.8955 -> threshold 0.448.
  std::vector<float> G2 = {1.0f, -1.0f, 1.0f, 1.0f, 0.1f};
  std::vector<int8_t> c2 = {1, 1, 1, 1, 1}, v2 = {0, 0, 0, 0, 0};
  double ds2 = 0;
  be->poltVote(G2.data(), c2.data(), v2.data(), 5, bridge, 0.5f, &one, &ds2);
  const int8_t wv2[5] = {-1, 1, -1, -1, 0};
  for (int i = 0; i < 5; ++i) EXPECT_EQ(v2[i], wv2[i]);
  // Sum over many chunks is the same for 1 and 2 threads.
  const size_t n = 70001;
  auto Gb = randn(n, 111);
  std::vector<int8_t> cb(n), va(n, 0), vb(n, 0);
  for (size_t i = 0; i < n; ++i) cb[i] = static_cast<int8_t>(static_cast<int>(i % 5) - 2);
  auto be1 = cpu(1);
  double s2 = 0, s1 = 0;
  be->poltVote(Gb.data(), cb.data(), va.data(), n, bridge, 0.0f, &one, &s2);
  be1->poltVote(Gb.data(), cb.data(), vb.data(), n, bridge, 0.0f, &one, &s1);
  EXPECT_TRUE(std::memcmp(&s1, &s2, sizeof(double)) == 0);
  EXPECT_TRUE(va == vb);
}

// Independent re-implementation of the flip rule of backend.h, for comparison.
struct RefFlip {
  std::vector<int8_t> code, vote;
  std::vector<float> p;
  primal::FlipStats st;
};

RefFlip refFlip(std::vector<int8_t> code, std::vector<int8_t> vote, const primal::FlipParams& P,
                float scale) {
  RefFlip r;
  std::memset(&r.st, 0, sizeof(r.st));
  r.p.resize(code.size());
  for (size_t i = 0; i < code.size(); ++i) {
    const int v = vote[i], c = code[i];
    const int av = std::abs(v);
    const double p =
        std::min(static_cast<double>(P.pMax), (static_cast<double>(P.flipRate) * static_cast<double>(scale)) *
                                                  static_cast<double>(av) / static_cast<double>(P.accum));
    r.p[i] = static_cast<float>(p);
    r.st.pSum += p;
    r.st.pMax = std::max(r.st.pMax, static_cast<float>(p));
    const primal::Philox4 x =
        primal::philox4x32_10(static_cast<uint32_t>(i), P.layer, P.step, 0, P.seedLo, P.seedHi);
    const float u = primal::philox_u24(x.v[0]), u2 = primal::philox_u24(x.v[1]);
    bool flipped = false;
    if (v != 0 && static_cast<double>(u) < p) {
      const std::vector<int> ladder =
          P.bridgeOn ? std::vector<int>{-2, -1, 0, 1, 2} : std::vector<int>{-2, 0, 2};
      int target = 99;
      if (v > 0) {
        for (int l : ladder)
          if (l > c) {
            target = l;
            break;
          }
      } else {
        for (auto it = ladder.rbegin(); it != ladder.rend(); ++it)
          if (*it < c) {
            target = *it;
            break;
          }
      }
      if (target != 99) {
        code[i] = static_cast<int8_t>(target);
        vote[i] = 0;
        flipped = true;
        r.st.transitions[c + 2][target + 2]++;
        (target > c ? r.st.flipsUp : r.st.flipsDown)++;
      }
    }
    if (!flipped) {
      const double mag =
          std::floor(static_cast<double>(av) * static_cast<double>(P.voteKeep) + static_cast<double>(u2));
      vote[i] = static_cast<int8_t>((v > 0 ? 1 : v < 0 ? -1 : 0) * static_cast<int>(mag));
    }
    r.st.occupancy[code[i] + 2]++;
    if (vote[i] != 0) r.st.votesNonZero++;
    if (std::abs(vote[i]) == 127) r.st.votesSaturated++;
  }
  r.code = std::move(code);
  r.vote = std::move(vote);
  return r;
}

primal::FlipParams flipParams() {
  primal::FlipParams P;
  P.seedLo = 0x1234567u;
  P.seedHi = 0x89abcdefu;
  P.layer = 3;
  P.step = 7;
  P.flipRate = 0.01f;
  P.pMax = 0.5f;
  P.voteKeep = 0.95f;
  P.accum = 2;
  P.bridgeOn = true;
  return P;
}

void expectStatsEqual(const primal::FlipStats& a, const primal::FlipStats& b) {
  for (int i = 0; i < 5; ++i) {
    for (int j = 0; j < 5; ++j) EXPECT_EQ(a.transitions[i][j], b.transitions[i][j]);
    EXPECT_EQ(a.occupancy[i], b.occupancy[i]);
  }
  EXPECT_EQ(a.flipsUp, b.flipsUp);
  EXPECT_EQ(a.flipsDown, b.flipsDown);
  EXPECT_EQ(a.votesNonZero, b.votesNonZero);
  EXPECT_EQ(a.votesSaturated, b.votesSaturated);
  EXPECT_NEAR(a.pSum, b.pSum, 1e-9, 1e-12);
  EXPECT_EQ(a.pMax, b.pMax);
}

PRIMAL_TEST("cpu/poltFlip probability formula (scale, accum, pMax clamp) and poltProbabilities") {
  auto be = cpu();
  auto P = flipParams();
  P.pMax = 0.3f;
  P.flipRate = 0.01f;
  std::vector<int8_t> vote = {40, -40, 0, 127, -1}, code = {0, 0, 0, 0, 0};
  std::vector<float> pOut(5), pProb(5);
  const float scale = 1.5f;
  be->poltProbabilities(vote.data(), pProb.data(), 5, P, &scale);
  const double r = static_cast<double>(P.flipRate) * static_cast<double>(scale);
  EXPECT_EQ(pProb[0], static_cast<float>(r * 40.0 / 2.0));
  EXPECT_EQ(pProb[1], static_cast<float>(r * 40.0 / 2.0));
  EXPECT_EQ(pProb[2], 0.0f);
  EXPECT_EQ(pProb[4], static_cast<float>(r * 1.0 / 2.0));
  P.flipRate = 0.5f;
  be->poltProbabilities(vote.data(), pProb.data(), 5, P, &scale);
  EXPECT_EQ(pProb[3], 0.3f);  // clamped at pMax
  primal::FlipStats st;
  be->poltFlip(code.data(), vote.data(), 5, P, &scale, nullptr, &st, pOut.data());
  EXPECT_TRUE(sameBits(pOut, pProb));
  EXPECT_EQ(st.pMax, 0.3f);
  double ps = 0;
  for (float p : pOut) ps += static_cast<double>(p);
  EXPECT_NEAR(st.pSum, ps, 1e-7, 0.0);
}

PRIMAL_TEST("cpu/poltFlip forced moves: one rung, vote reset, +-2 boundary decays, stats") {
  auto be = cpu();
  auto P = flipParams();
  P.flipRate = 100.0f;  // p = pMax = 1 for every non-zero vote: u < 1 always flips
  P.pMax = 1.0f;
  P.voteKeep = 1.0f;
  std::vector<int8_t> code = {0, 1, 2, -2, -1, 0, 1, 0, 2, -1};
  std::vector<int8_t> vote = {5, 5, 5, -5, -3, -1, -2, 0, 127, 1};
  std::vector<float> pOut(code.size());
  primal::FlipStats st;
  const float scale = 1.5f;
  be->poltFlip(code.data(), vote.data(), code.size(), P, &scale, nullptr, &st, pOut.data());
  const int8_t wantCode[10] = {1, 2, 2, -2, -2, -1, 0, 0, 2, 0};
  for (int i = 0; i < 10; ++i) EXPECT_EQ(code[i], wantCode[i]);
  // Flipped votes are reset; boundary ones decay with keep 1: floor(|v| + u2) = |v|.
  const int8_t wantVote[10] = {0, 0, 5, -5, 0, 0, 0, 0, 127, 0};
  for (int i = 0; i < 10; ++i) EXPECT_EQ(vote[i], wantVote[i]);
  EXPECT_EQ(st.transitions[0 + 2][1 + 2], 1u);
  EXPECT_EQ(st.transitions[1 + 2][2 + 2], 1u);
  EXPECT_EQ(st.transitions[-1 + 2][-2 + 2], 1u);
  EXPECT_EQ(st.transitions[0 + 2][-1 + 2], 1u);
  EXPECT_EQ(st.transitions[1 + 2][0 + 2], 1u);
  EXPECT_EQ(st.transitions[-1 + 2][0 + 2], 1u);
  uint64_t total = 0;
  for (auto& row : st.transitions)
    for (uint64_t c : row) total += c;
  EXPECT_EQ(total, 6u);
  EXPECT_EQ(st.flipsUp, 3u);
  EXPECT_EQ(st.flipsDown, 3u);
  uint64_t occWant[5] = {0, 0, 0, 0, 0};
  for (int i = 0; i < 10; ++i) occWant[wantCode[i] + 2]++;
  for (int i = 0; i < 5; ++i) EXPECT_EQ(st.occupancy[i], occWant[i]);
  EXPECT_EQ(st.occupancy[0], 2u);  // -2 -2
  EXPECT_EQ(st.occupancy[4], 3u);  // 2 2 2
  EXPECT_EQ(st.votesNonZero, 3u);
  EXPECT_EQ(st.votesSaturated, 1u);
  EXPECT_EQ(st.pMax, 1.0f);
  EXPECT_NEAR(st.pSum, 9.0, 0.0, 0.0);

  // Bridge off: ladder -2 <-> 0 <-> 2; stray +-1 go to the nearest of {-2, 0, 2} that way.
  P.bridgeOn = false;
  std::vector<int8_t> c2 = {0, -2, 2, 1, 1, -1, -1, 2, -2, 0};
  std::vector<int8_t> v2 = {3, 3, -3, 3, -3, -3, 3, 3, -3, -3};
  be->poltFlip(c2.data(), v2.data(), c2.size(), P, &scale, nullptr, &st, nullptr);
  const int8_t wc2[10] = {2, 0, 0, 2, 0, -2, 0, 2, -2, -2};
  for (int i = 0; i < 10; ++i) EXPECT_EQ(c2[i], wc2[i]);
  const int8_t wv2[10] = {0, 0, 0, 0, 0, 0, 0, 3, -3, 0};
  for (int i = 0; i < 10; ++i) EXPECT_EQ(v2[i], wv2[i]);
  EXPECT_EQ(st.transitions[0 + 2][2 + 2], 1u);
  EXPECT_EQ(st.transitions[-2 + 2][0 + 2], 1u);
  EXPECT_EQ(st.transitions[0 + 2][-2 + 2], 1u);
  EXPECT_EQ(st.flipsUp, 4u);
  EXPECT_EQ(st.flipsDown, 4u);
}

PRIMAL_TEST("cpu/poltFlip vote decay recomputed with Philox (no flips when pMax = 0)") {
  auto be = cpu();
  auto P = flipParams();
  P.pMax = 0.0f;
  const size_t n = 3000;
  std::mt19937 g(7);
  std::vector<int8_t> code(n), vote(n);
  for (size_t i = 0; i < n; ++i) {
    code[i] = static_cast<int8_t>(static_cast<int>(g() % 5) - 2);
    vote[i] = static_cast<int8_t>(static_cast<int>(g() % 255) - 127);
  }
  const auto code0 = code, vote0 = vote;
  primal::FlipStats st;
  const float scale = 1.5f;
  be->poltFlip(code.data(), vote.data(), n, P, &scale, nullptr, &st, nullptr);
  EXPECT_TRUE(code == code0);
  EXPECT_EQ(st.flipsUp + st.flipsDown, 0u);
  for (size_t i = 0; i < n; ++i) {
    const primal::Philox4 r =
        primal::philox4x32_10(static_cast<uint32_t>(i), 3, 7, 0, 0x1234567u, 0x89abcdefu);
    const double u2 = primal::philox_u24(r.v[1]);
    const int v = vote0[i];
    const int want = (v > 0) - (v < 0);
    const int mag = static_cast<int>(std::floor(std::abs(v) * static_cast<double>(0.95f) + u2));
    if (vote[i] != want * mag) fail("decay mismatch at " + std::to_string(i));
  }
}

PRIMAL_TEST("cpu/poltFlip matches an independent reference; thread-count independent") {
  auto P = flipParams();
  P.flipRate = 0.05f;
  const float scale = 1.2f;
  P.accum = 1;
  const size_t n = 50000;
  std::mt19937 g(9);
  std::vector<int8_t> code(n), vote(n);
  for (size_t i = 0; i < n; ++i) {
    code[i] = static_cast<int8_t>(static_cast<int>(g() % 5) - 2);
    vote[i] = static_cast<int8_t>(static_cast<int>(g() % 255) - 127);
  }
  for (bool bridge : {true, false}) {
    P.bridgeOn = bridge;
    RefFlip ref = refFlip(code, vote, P, scale);
    auto be2 = cpu(2), be1 = cpu(1);
    auto c2 = code, v2 = vote, c1 = code, v1 = vote;
    std::vector<float> p2(n), p1(n), pp(n);
    primal::FlipStats s2, s1;
    be2->poltFlip(c2.data(), v2.data(), n, P, &scale, nullptr, &s2, p2.data());
    be1->poltFlip(c1.data(), v1.data(), n, P, &scale, nullptr, &s1, p1.data());
    be2->poltProbabilities(vote.data(), pp.data(), n, P, &scale);
    EXPECT_TRUE(c2 == ref.code);
    EXPECT_TRUE(v2 == ref.vote);
    EXPECT_TRUE(sameBits(p2, ref.p));
    EXPECT_TRUE(sameBits(pp, p2));
    expectStatsEqual(s2, ref.st);
    EXPECT_TRUE(s2.flipsUp + s2.flipsDown > 100);
    EXPECT_TRUE(c1 == c2 && v1 == v2 && sameBits(p1, p2));
    EXPECT_TRUE(std::memcmp(&s1.pSum, &s2.pSum, sizeof(double)) == 0);
  }
}

// ---- AdamW ---------------------------------------------------------------------------------

PRIMAL_TEST("cpu/adamw vs scalar reference over three steps") {
  auto be = cpu();
  const size_t n = 40000;  // several parallel parts
  auto p = randn(n, 121), m = std::vector<float>(n, 0.0f), v = std::vector<float>(n, 0.0f);
  std::vector<double> pr(p.begin(), p.end()), mr(n, 0.0), vr(n, 0.0);
  const float lr = 3e-3f, b1 = 0.9f, b2 = 0.95f, eps = 1e-8f, wd = 0.1f, gs = 0.7f;
  const size_t nDecay = 25000;  // the rest of the arena does not decay
  primal::StepHead head{};
  head.clip = gs;
  for (int t = 1; t <= 3; ++t) {
    auto g = randn(n, 130 + t);
    be->adamw(p.data(), g.data(), m.data(), v.data(), n, nDecay, primal::AdamParams{lr, b1, b2, eps, wd, t},
              &head);
    for (size_t i = 0; i < n; ++i) {
      const double wdi = i < nDecay ? wd : 0.0;
      const double gi = static_cast<double>(g[i]) * gs;
      mr[i] = b1 * mr[i] + (1.0 - b1) * gi;
      vr[i] = b2 * vr[i] + (1.0 - b2) * gi * gi;
      const double mh = mr[i] / (1.0 - std::pow(static_cast<double>(b1), t));
      const double vh = vr[i] / (1.0 - std::pow(static_cast<double>(b2), t));
      pr[i] -= lr * (mh / (std::sqrt(vh) + eps) + wdi * pr[i]);
    }
  }
  for (size_t i = 0; i < n; i += 7) {
    expectClose("adamw p", i, p[i], pr[i], 1e-6, 1e-5);
    expectClose("adamw m", i, m[i], mr[i], 1e-7, 1e-5);
    expectClose("adamw v", i, v[i], vr[i], 1e-9, 1e-4);
  }
  // A refused step leaves everything as it was.
  const auto p0 = p, m0 = m, v0 = v;
  head.refused = primal::kRefuseNorm;
  auto g = randn(n, 140);
  be->adamw(p.data(), g.data(), m.data(), v.data(), n, nDecay, primal::AdamParams{lr, b1, b2, eps, wd, 4},
            &head);
  EXPECT_TRUE(sameBits(p, p0) && sameBits(m, m0) && sameBits(v, v0));
}

// ---- determinism -------------------------------------------------------------------------

PRIMAL_TEST("cpu/determinism: attention and classifier are bit-identical run to run") {
  auto be = cpu(2);
  auto be1 = cpu(1);
  const int B = 2, T = 37, H = 3, D = 16;
  const size_t n = static_cast<size_t>(B) * T * H * D;
  auto q = randn(n, 141), k = randn(n, 142), v = randn(n, 143), dout = randn(n, 144);
  auto runAttn = [&](Backend& b, std::vector<float>& out, std::vector<float>& dq) {
    std::vector<float> lse(static_cast<size_t>(B) * H * T), dk(n), dv(n);
    out.assign(n, 0.0f);
    dq.assign(3 * n, 0.0f);
    b.attentionForward(q.data(), k.data(), v.data(), out.data(), lse.data(), B, T, H, D);
    b.attentionBackward(q.data(), k.data(), v.data(), out.data(), lse.data(), dout.data(), dq.data(),
                        dk.data(), dv.data(), B, T, H, D);
    std::copy(dk.begin(), dk.end(), dq.begin() + n);
    std::copy(dv.begin(), dv.end(), dq.begin() + 2 * n);
  };
  std::vector<float> o1, g1, o2, g2, o3, g3;
  runAttn(*be, o1, g1);
  runAttn(*be, o2, g2);
  runAttn(*be1, o3, g3);
  EXPECT_TRUE(sameBits(o1, o2) && sameBits(g1, g2));
  EXPECT_TRUE(sameBits(o1, o3) && sameBits(g1, g3));

  const int N = 200, C = 32, V = 300;
  auto x = randn(static_cast<size_t>(N) * C, 145), table = randn(static_cast<size_t>(V) * C, 146);
  std::vector<int32_t> tg(N);
  for (int i = 0; i < N; ++i) tg[i] = i % 5 == 0 ? -1 : (i * 31) % V;
  auto runCls = [&](std::vector<float>& out) {
    std::vector<float> losses(N), dx(static_cast<size_t>(N) * C), dt(table.size(), 0.0f);
    be->classifier(x.data(), table.data(), tg.data(), losses.data(), dx.data(), dt.data(), N, C, V, 0.25f);
    out = losses;
    out.insert(out.end(), dx.begin(), dx.end());
    out.insert(out.end(), dt.begin(), dt.end());
  };
  std::vector<float> c1, c2;
  runCls(c1);
  runCls(c2);
  EXPECT_TRUE(sameBits(c1, c2));
}

PRIMAL_TEST("cpu/rmsnorm, embedding backward and rope are thread-count independent") {
  auto be2 = cpu(2), be1 = cpu(1);
  const int N = 300, C = 96;
  auto x = randn(static_cast<size_t>(N) * C, 151), w = randu(C, 152),
       dy = randn(static_cast<size_t>(N) * C, 153);
  std::vector<float> y1(x.size()), y2(x.size()), r1(N), r2(N);
  be1->rmsnormForward(x.data(), w.data(), y1.data(), r1.data(), N, C, 1e-5f);
  be2->rmsnormForward(x.data(), w.data(), y2.data(), r2.data(), N, C, 1e-5f);
  EXPECT_TRUE(sameBits(y1, y2) && sameBits(r1, r2));
  std::vector<float> dx1(x.size(), 0.0f), dx2 = dx1, dw1(C, 0.0f), dw2 = dw1;
  be1->rmsnormBackward(x.data(), w.data(), r1.data(), dy.data(), dx1.data(), dw1.data(), N, C);
  be2->rmsnormBackward(x.data(), w.data(), r2.data(), dy.data(), dx2.data(), dw2.data(), N, C);
  EXPECT_TRUE(sameBits(dx1, dx2) && sameBits(dw1, dw2));
  std::vector<int32_t> tok(N);
  for (int i = 0; i < N; ++i) tok[i] = (i * 7) % 13;
  std::vector<float> t1(13 * C, 0.0f), t2 = t1;
  be1->embeddingBackward(tok.data(), dy.data(), t1.data(), N, C);
  be2->embeddingBackward(tok.data(), dy.data(), t2.data(), N, C);
  EXPECT_TRUE(sameBits(t1, t2));
}

// ---- the step contract: device-side reductions, decision and updates -------------------------

PRIMAL_TEST("cpu/sumSegments: each segment as sumSquares / mean|W| sums it, segments added in order") {
  auto be2 = cpu(2), be1 = cpu(1);
  const size_t n = 120000;
  auto x = randn(n, 161);
  // Segments of several reduction chunks, one element, empty, and out of arena order.
  const std::vector<size_t> seg = {70000, 110001, 5, 6, 64, 64, 100, 40100, 40128, 70000};
  const int count = static_cast<int>(seg.size() / 2);
  std::vector<double> per2(count), per1(count);
  double tot2 = 0, tot1 = 0, want = 0;
  be2->sumSegments(x.data(), seg.data(), count, false, per2.data(), &tot2);
  be1->sumSegments(x.data(), seg.data(), count, false, per1.data(), &tot1);
  for (int j = 0; j < count; ++j) {
    const double s = be2->sumSquares(x.data() + seg[2 * j], seg[2 * j + 1] - seg[2 * j]);
    EXPECT_TRUE(std::memcmp(&per2[j], &s, sizeof s) == 0);
    EXPECT_TRUE(std::memcmp(&per1[j], &s, sizeof s) == 0);
    want += s;
  }
  EXPECT_TRUE(std::memcmp(&tot2, &want, sizeof want) == 0 && std::memcmp(&tot1, &want, sizeof want) == 0);
  EXPECT_EQ(per2[2], 0.0);
  // |x| (STE's gamma, as steQuantize computes it): thread-count independent, close to a plain sum.
  std::vector<double> abs2(count), abs1(count);
  be2->sumSegments(x.data(), seg.data(), count, true, abs2.data(), nullptr);
  be1->sumSegments(x.data(), seg.data(), count, true, abs1.data(), nullptr);
  for (int j = 0; j < count; ++j) {
    double plain = 0;
    for (size_t i = seg[2 * j]; i < seg[2 * j + 1]; ++i) plain += std::fabs(static_cast<double>(x[i]));
    EXPECT_TRUE(std::memcmp(&abs1[j], &abs2[j], sizeof(double)) == 0);
    EXPECT_NEAR(abs2[j], plain, 1e-12, 1e-12);
    const size_t len = seg[2 * j + 1] - seg[2 * j];
    std::vector<float> wq(len);
    double viaSte = 0;
    be2->steQuantize(x.data() + seg[2 * j], wq.data(), len, &viaSte, true);
    EXPECT_TRUE(std::memcmp(&viaSte, &abs2[j], sizeof viaSte) == 0);
  }
}

PRIMAL_TEST("cpu/stepLoss: mean of scored rows into the head; a non-finite mean refuses") {
  auto be = cpu();
  primal::StepHead h{};
  std::vector<float> loss = {1.0f, 2.0f, 4.0f, 8.0f};
  std::vector<int32_t> tg = {3, -1, 5, 0};
  be->stepLoss(loss.data(), tg.data(), 4, &h);
  EXPECT_EQ(h.lastLoss, 13.0 / 3.0);
  EXPECT_EQ(h.lossSum, 13.0 / 3.0);
  EXPECT_EQ(h.tokens, 3.0);
  std::vector<int32_t> none = {-1, -1, -1, -1};
  be->stepLoss(loss.data(), none.data(), 4, &h);  // nothing scored: mean 0, no tokens
  EXPECT_EQ(h.lastLoss, 0.0);
  EXPECT_EQ(h.tokens, 3.0);
  EXPECT_EQ(h.refused, 0u);
  loss[2] = std::numeric_limits<float>::infinity();
  be->stepLoss(loss.data(), tg.data(), 4, &h);
  EXPECT_EQ(h.refused, primal::kRefuseLoss);
  EXPECT_TRUE(std::isinf(h.badLoss) && std::isinf(h.lastLoss));
  EXPECT_EQ(h.lossSum, 13.0 / 3.0);  // the non-finite chunk adds nothing
  loss[2] = std::numeric_limits<float>::quiet_NaN();
  be->stepLoss(loss.data(), tg.data(), 4, &h);
  EXPECT_TRUE(std::isinf(h.badLoss));  // the first one is kept
}

PRIMAL_TEST("cpu/stepGate: the refusal reasons and the clip factor") {
  auto be = cpu();
  std::vector<double> ds = {0.5, -2.0, 3.0};
  primal::StepHead h{};
  h.gradSq = 16.0;  // norm 4
  be->stepGate(&h, ds.data(), 3, 1.0f);
  EXPECT_EQ(h.refused, 0u);
  EXPECT_EQ(h.clip, static_cast<float>(1.0 / (4.0 + 1e-6)));
  be->stepGate(&h, ds.data(), 3, 8.0f);  // below the threshold: no clipping
  EXPECT_EQ(h.clip, 1.0f);
  be->stepGate(&h, ds.data(), 3, 0.0f);  // off
  EXPECT_EQ(h.clip, 1.0f);
  ds[1] = std::numeric_limits<double>::quiet_NaN();
  ds[2] = std::numeric_limits<double>::infinity();
  be->stepGate(&h, ds.data(), 3, 1.0f);
  EXPECT_EQ(h.refused, primal::kRefuseScale);
  EXPECT_EQ(h.badLayer, 1);
  primal::StepHead g{};
  g.gradSq = std::numeric_limits<double>::infinity();
  ds = {0, 0, 0};
  be->stepGate(&g, ds.data(), 3, 1.0f);
  EXPECT_EQ(g.refused, primal::kRefuseNorm);
}

PRIMAL_TEST("cpu/poltMergeVotes merges, or restores the step's start when refused") {
  auto be = cpu();
  const size_t n = 40000;
  std::vector<int8_t> start(n), change(n);
  for (size_t i = 0; i < n; ++i) {
    start[i] = static_cast<int8_t>(static_cast<int>(i % 255) - 127);
    change[i] = static_cast<int8_t>(static_cast<int>((i * 7) % 9) - 4);
  }
  auto v = change;
  be->poltMergeVotes(v.data(), start.data(), n, nullptr);
  for (size_t i = 0; i < n; ++i)
    EXPECT_EQ(v[i], static_cast<int8_t>(primal::polt::mergeVote(start[i], change[i])));
  primal::StepHead h{};
  auto w = change;
  be->poltMergeVotes(w.data(), start.data(), n, &h);
  EXPECT_TRUE(w == v);
  h.refused = primal::kRefuseLoss;
  w = change;
  be->poltMergeVotes(w.data(), start.data(), n, &h);
  EXPECT_TRUE(w == start);
}

PRIMAL_TEST("cpu/ghostScaleStep: AdamW without decay per layer, the floor, nothing when refused") {
  auto be = cpu();
  primal::polt::GhostScaleRule r{0.9f, 0.95f, 1e-8f, 0.01f, 1e-4f, 1.0 - 0.9, 1.0 - 0.95};
  std::vector<float> s = {1.0f, 0.5f, 2e-4f}, m = {0.0f, 0.1f, 0.0f}, v = {0.0f, 0.02f, 0.0f};
  const std::vector<double> ds = {0.3, -1.5, 1e6};
  const auto s0 = s, m0 = m, v0 = v;
  be->ghostScaleStep(s.data(), m.data(), v.data(), ds.data(), 3, r, nullptr);
  for (int l = 0; l < 3; ++l) {
    // An independent reading of the rule, in the same precision for each quantity.
    const float g = static_cast<float>(ds[l]);
    const float mw = 0.9f * m0[l] + (1.0f - 0.9f) * g;
    const float vw = 0.95f * v0[l] + ((1.0f - 0.95f) * g) * g;
    const double upd =
        (static_cast<double>(mw) / r.bc1) / (std::sqrt(static_cast<double>(vw) / r.bc2) + 1e-8f);
    const float sw = std::max(1e-4f, static_cast<float>(static_cast<double>(s0[l]) - 0.01f * upd));
    EXPECT_EQ(m[l], mw);
    EXPECT_EQ(v[l], vw);
    EXPECT_EQ(s[l], sw);
  }
  EXPECT_EQ(s[2], 1e-4f);  // pushed below the floor
  primal::StepHead h{};
  h.refused = primal::kRefuseScale;
  const auto s1 = s, m1 = m, v1 = v;
  be->ghostScaleStep(s.data(), m.data(), v.data(), ds.data(), 3, r, &h);
  EXPECT_TRUE(s == s1 && m == m1 && v == v1);
}

PRIMAL_TEST("cpu/poltFlip changes nothing when the step is refused") {
  auto be = cpu();
  auto P = flipParams();
  P.flipRate = 100.0f;
  P.pMax = 1.0f;
  std::vector<int8_t> code = {0, 1, -1, 2}, vote = {5, -5, 3, -9};
  const auto c0 = code, v0 = vote;
  const float scale = 1.0f;
  primal::StepHead h{};
  h.refused = primal::kRefuseNorm;
  primal::FlipStats st{};
  st.flipsUp = 77;
  be->poltFlip(code.data(), vote.data(), 4, P, &scale, &h, &st, nullptr);
  EXPECT_TRUE(code == c0 && vote == v0);
  EXPECT_EQ(st.flipsUp, 77u);
  h.refused = 0;
  be->poltFlip(code.data(), vote.data(), 4, P, &scale, &h, &st, nullptr);
  EXPECT_TRUE(code != c0);
}

}  // namespace
