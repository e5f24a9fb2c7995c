// CpuBackend model ops: embedding, RMSNorm, RoPE, causal attention, SwiGLU, activation
// quantization and the fused classifier. Inner loops run over contiguous memory with fixed trip
// structure so gcc vectorizes them without -ffast-math; every reduction has a fixed order, so
// results are bit-identical run to run and independent of the thread count.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "cpu_backend.h"
#include "cpu_math.h"
#include "gemm.h"
#include "primal/error.h"

namespace primal {
namespace cpu {

namespace {

constexpr size_t kElemGrain = 1 << 14;

// Rows per parallel part so that a part has at least ~kElemGrain elements.
inline size_t rowGrain(int C) {
  const size_t c = C > 0 ? static_cast<size_t>(C) : 1;
  return std::max<size_t>(1, kElemGrain / c);
}

// Query rows per attention tile: scores live in a per-thread [kQTile, T] scratch only.
constexpr int kQTile = 64;

// Per-thread scratch of the attention kernels, reused across calls.
struct AttnScratch {
  std::vector<float> s, dp, rowScale;
  void ensure(int T) {
    const size_t need = static_cast<size_t>(kQTile) * T;
    if (s.size() < need) s.resize(need);
    if (dp.size() < need) dp.resize(need);
    if (rowScale.size() < static_cast<size_t>(kQTile)) rowScale.resize(kQTile);
  }
};
thread_local AttnScratch tlsAttn;

// S[r, j] = scale * q_{i0+r} . k_j for r < rows, j < kmax = i0 + rows (ld T). Forward and
// backward call this with identical arguments, so the recomputed scores are bit-identical.
inline void attnScores(const float* qb, const float* kb, size_t C, int i0, int rows, int T, int D,
                       float scale, float* S) {
  gemmBlocked(nullptr, false, true, rows, i0 + rows, D, scale, qb + static_cast<size_t>(i0) * C,
              static_cast<int>(C), kb, static_cast<int>(C), 0.0f, S, T);
}

}  // namespace

// ---- embedding -----------------------------------------------------------------------------

void CpuBackend::embeddingForward(const int32_t* tokens, const float* table, float* out, int N, int C) {
  pool_.parallelFor(
      static_cast<size_t>(N),
      [&](size_t b, size_t e) {
        for (size_t n = b; n < e; ++n) {
          const int32_t t = tokens[n];
          PRIMAL_CHECK(t >= 0, "embeddingForward: negative token id " + std::to_string(t));
          std::memcpy(out + n * C, table + static_cast<size_t>(t) * C, sizeof(float) * C);
        }
      },
      rowGrain(C));
}

void CpuBackend::embeddingBackward(const int32_t* tokens, const float* dout, float* dtable, int N, int C) {
  for (int n = 0; n < N; ++n)
    PRIMAL_CHECK(tokens[n] >= 0, "embeddingBackward: negative token id " + std::to_string(tokens[n]));
  // Split the columns across threads: every thread walks all tokens in order, so repeated tokens
  // accumulate in input order whatever the thread count.
  const size_t work = static_cast<size_t>(N) * C;
  const size_t grain = work < kElemGrain ? static_cast<size_t>(C) : 16;
  pool_.parallelFor(
      static_cast<size_t>(C),
      [&](size_t c0, size_t c1) {
        for (int n = 0; n < N; ++n) {
          const float* src = dout + static_cast<size_t>(n) * C;
          float* dst = dtable + static_cast<size_t>(tokens[n]) * C;
          for (size_t c = c0; c < c1; ++c) dst[c] += src[c];
        }
      },
      grain);
}

// ---- RMSNorm -------------------------------------------------------------------------------

void CpuBackend::rmsnormForward(const float* x, const float* w, float* y, float* rstd, int N, int C,
                                float eps) {
  pool_.parallelFor(
      static_cast<size_t>(N),
      [&](size_t b, size_t e) {
        for (size_t n = b; n < e; ++n) {
          const float* xr = x + n * C;
          float* yr = y + n * C;
          const float ms = dotLanes(xr, xr, C) / static_cast<float>(C);
          const float r = 1.0f / std::sqrt(ms + eps);
          rstd[n] = r;
          for (int c = 0; c < C; ++c) yr[c] = (xr[c] * r) * w[c];
        }
      },
      rowGrain(C));
}

void CpuBackend::rmsnormBackward(const float* x, const float* w, const float* rstd, const float* dy,
                                 float* dx, float* dw, int N, int C) {
  // dx = r * w*dy - x * r^3/C * sum(w*dy*x), per row.
  pool_.parallelFor(
      static_cast<size_t>(N),
      [&](size_t b, size_t e) {
        for (size_t n = b; n < e; ++n) {
          const float* xr = x + n * C;
          const float* dyr = dy + n * C;
          float* dxr = dx + n * C;
          const float r = rstd[n];
          float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
          int c = 0;
          for (; c + 8 <= C; c += 8)
            for (int l = 0; l < 8; ++l) acc[l] += (w[c + l] * dyr[c + l]) * xr[c + l];
          float g = ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
          for (; c < C; ++c) g += (w[c] * dyr[c]) * xr[c];
          const float coef = ((r * r) * r) * g / static_cast<float>(C);
          for (int k = 0; k < C; ++k) dxr[k] += r * (w[k] * dyr[k]) - xr[k] * coef;
        }
      },
      rowGrain(C));
  // dw[c] += sum_n dy*x*r: columns split across threads, rows summed in order.
  const size_t grain = static_cast<size_t>(N) * C < kElemGrain ? static_cast<size_t>(C) : 16;
  pool_.parallelFor(
      static_cast<size_t>(C),
      [&](size_t c0, size_t c1) {
        thread_local std::vector<float> colSum;
        if (colSum.size() < c1 - c0) colSum.resize(c1 - c0);
        float* s = colSum.data();
        const size_t w_ = c1 - c0;
        for (size_t c = 0; c < w_; ++c) s[c] = 0.0f;
        for (int n = 0; n < N; ++n) {
          const float r = rstd[n];
          const float* xr = x + static_cast<size_t>(n) * C + c0;
          const float* dyr = dy + static_cast<size_t>(n) * C + c0;
          for (size_t c = 0; c < w_; ++c) s[c] += (dyr[c] * xr[c]) * r;
        }
        for (size_t c = 0; c < w_; ++c) dw[c0 + c] += s[c];
      },
      grain);
}

// ---- RoPE ----------------------------------------------------------------------------------

void CpuBackend::rope(float* x, int B, int T, int H, int D, float theta, bool inverse) {
  PRIMAL_CHECK(D % 2 == 0, "rope: head dim must be even, got " + std::to_string(D));
  const int half = D / 2;
  if (T > ropeT_ || D != ropeD_ || theta != ropeTheta_) {
    // Angles in double, rounded once. Row t depends only on (t, D, theta), so a table built for
    // a longer sequence serves every shorter one (generation calls with growing T).
    ropeCos_.assign(static_cast<size_t>(T) * half, 0.0f);
    ropeSin_.assign(static_cast<size_t>(T) * half, 0.0f);
    for (int i = 0; i < half; ++i) {
      const double freq = std::pow(static_cast<double>(theta), -2.0 * i / static_cast<double>(D));
      for (int t = 0; t < T; ++t) {
        const double a = static_cast<double>(t) * freq;
        ropeCos_[static_cast<size_t>(t) * half + i] = static_cast<float>(std::cos(a));
        ropeSin_[static_cast<size_t>(t) * half + i] = static_cast<float>(std::sin(a));
      }
    }
    ropeT_ = T;
    ropeD_ = D;
    ropeTheta_ = theta;
  }
  const float* cosT = ropeCos_.data();
  const float* sinT = ropeSin_.data();
  const size_t rows = static_cast<size_t>(B) * T;
  const size_t C = static_cast<size_t>(H) * D;
  pool_.parallelFor(
      rows,
      [&](size_t b, size_t e) {
        for (size_t r = b; r < e; ++r) {
          const size_t t = r % static_cast<size_t>(T);
          const float* cs = cosT + t * half;
          const float* sn = sinT + t * half;
          for (int h = 0; h < H; ++h) {
            float* xh = x + r * C + static_cast<size_t>(h) * D;
            if (!inverse) {
              for (int i = 0; i < half; ++i) {
                const float x0 = xh[2 * i], x1 = xh[2 * i + 1];
                xh[2 * i] = x0 * cs[i] - x1 * sn[i];
                xh[2 * i + 1] = x0 * sn[i] + x1 * cs[i];
              }
            } else {
              for (int i = 0; i < half; ++i) {
                const float x0 = xh[2 * i], x1 = xh[2 * i + 1];
                xh[2 * i] = x0 * cs[i] + x1 * sn[i];
                xh[2 * i + 1] = x1 * cs[i] - x0 * sn[i];
              }
            }
          }
        }
      },
      rowGrain(static_cast<int>(C)));
}

// ---- attention -----------------------------------------------------------------------------

void CpuBackend::attentionForward(const float* q, const float* k, const float* v, float* out, float* lse,
                                  int B, int T, int H, int D) {
  const size_t C = static_cast<size_t>(H) * D;
  const float scale = 1.0f / std::sqrt(static_cast<float>(D));
  // One (b, h) per task; within it, tiles of query rows: S = scale Q K^T over the causal prefix
  // of keys, row softmax, O = P V. The GEMMs run serially inside the task.
  pool_.parallelFor(static_cast<size_t>(B) * H, [&](size_t b0, size_t b1) {
    AttnScratch& sc = tlsAttn;
    sc.ensure(T);
    float* S = sc.s.data();
    float* inv = sc.rowScale.data();
    for (size_t bh = b0; bh < b1; ++bh) {
      const size_t b = bh / H, h = bh % H;
      const size_t base = b * T * C + h * D;
      const float* qb = q + base;
      const float* kb = k + base;
      const float* vb = v + base;
      float* ob = out + base;
      for (int i0 = 0; i0 < T; i0 += kQTile) {
        const int rows = std::min(kQTile, T - i0);
        const int kmax = i0 + rows;
        attnScores(qb, kb, C, i0, rows, T, D, scale, S);
        for (int r = 0; r < rows; ++r) {
          float* sr = S + static_cast<size_t>(r) * T;
          const int n = i0 + r + 1;  // causal: keys 0..i
          const float m = maxLanes(sr, n);
          const float l = expShiftSum(sr, n, m);
          for (int j = n; j < kmax; ++j) sr[j] = 0.0f;
          inv[r] = 1.0f / l;
          lse[bh * T + i0 + r] = m + std::log(l);
        }
        float* ot = ob + static_cast<size_t>(i0) * C;
        gemmBlocked(nullptr, false, false, rows, D, kmax, 1.0f, S, T, vb, static_cast<int>(C), 0.0f, ot,
                    static_cast<int>(C));
        for (int r = 0; r < rows; ++r) {
          float* o = ot + static_cast<size_t>(r) * C;
          const float f = inv[r];
          for (int d = 0; d < D; ++d) o[d] *= f;
        }
      }
    }
  });
}

void CpuBackend::attentionBackward(const float* q, const float* k, const float* v, const float* out,
                                   const float* lse, const float* dout, float* dq, float* dk, float* dv,
                                   int B, int T, int H, int D) {
  const size_t C = static_cast<size_t>(H) * D;
  const int ldC = static_cast<int>(C);
  const float scale = 1.0f / std::sqrt(static_cast<float>(D));
  // Per query tile: P = exp(S - lse) (S recomputed exactly as in the forward pass),
  // dP = dO V^T, dS = P (dP - delta) with delta_i = dO_i . O_i; dQ = scale dS K (written),
  // dK += scale dS^T Q and dV += P^T dO, accumulated over tiles in order.
  pool_.parallelFor(static_cast<size_t>(B) * H, [&](size_t b0, size_t b1) {
    AttnScratch& sc = tlsAttn;
    sc.ensure(T);
    float* P = sc.s.data();
    float* dS = sc.dp.data();
    for (size_t bh = b0; bh < b1; ++bh) {
      const size_t b = bh / H, h = bh % H;
      const size_t base = b * T * C + h * D;
      const float* qb = q + base;
      const float* kb = k + base;
      const float* vb = v + base;
      const float* ob = out + base;
      const float* dob = dout + base;
      float* dqb = dq + base;
      float* dkb = dk + base;
      float* dvb = dv + base;
      for (int j = 0; j < T; ++j) {
        std::memset(dkb + j * C, 0, sizeof(float) * D);
        std::memset(dvb + j * C, 0, sizeof(float) * D);
      }
      for (int i0 = 0; i0 < T; i0 += kQTile) {
        const int rows = std::min(kQTile, T - i0);
        const int kmax = i0 + rows;
        attnScores(qb, kb, C, i0, rows, T, D, scale, P);
        const float* dot0 = dob + static_cast<size_t>(i0) * C;
        gemmBlocked(nullptr, false, true, rows, kmax, D, 1.0f, dot0, ldC, vb, ldC, 0.0f, dS, T);
        for (int r = 0; r < rows; ++r) {
          const int i = i0 + r;
          const int n = i + 1;
          float* pr = P + static_cast<size_t>(r) * T;
          float* dr = dS + static_cast<size_t>(r) * T;
          expShiftSum(pr, n, lse[bh * T + i]);
          const float delta = dotLanes(dob + i * C, ob + i * C, D);
          for (int j = 0; j < n; ++j) dr[j] = pr[j] * (dr[j] - delta);
          for (int j = n; j < kmax; ++j) {
            pr[j] = 0.0f;
            dr[j] = 0.0f;
          }
        }
        const float* qt = qb + static_cast<size_t>(i0) * C;
        gemmBlocked(nullptr, false, false, rows, D, kmax, scale, dS, T, kb, ldC, 0.0f,
                    dqb + static_cast<size_t>(i0) * C, ldC);
        gemmBlocked(nullptr, true, false, kmax, D, rows, scale, dS, T, qt, ldC, 1.0f, dkb, ldC);
        gemmBlocked(nullptr, true, false, kmax, D, rows, 1.0f, P, T, dot0, ldC, 1.0f, dvb, ldC);
      }
    }
  });
}

// ---- SwiGLU --------------------------------------------------------------------------------

namespace {
// sig[j] = 1 / (1 + e^-g[j]) for a block of j < n <= kSwigluBlock (clamp pass, then exp pass).
constexpr int kSwigluBlock = 256;
inline void sigmoidBlock(const float* __restrict g, float* __restrict sig, int n) {
  for (int j = 0; j < n; ++j) sig[j] = clampExpArg(-g[j]);
  for (int j = 0; j < n; ++j) sig[j] = 1.0f / (1.0f + fastExpInRange(sig[j]));
}
}  // namespace

void CpuBackend::swigluForward(const float* gate, const float* up, float* h, size_t n) {
  pool_.parallelFor(
      n,
      [&](size_t b, size_t e) {
        float sig[kSwigluBlock];
        for (size_t i0 = b; i0 < e; i0 += kSwigluBlock) {
          const int m = static_cast<int>(std::min<size_t>(kSwigluBlock, e - i0));
          const float* g = gate + i0;
          const float* u = up + i0;
          float* hh = h + i0;
          sigmoidBlock(g, sig, m);
          for (int j = 0; j < m; ++j) hh[j] = (g[j] * sig[j]) * u[j];
        }
      },
      kElemGrain / 4);
}

void CpuBackend::swigluBackward(const float* gate, const float* up, const float* dh, float* dgate, float* dup,
                                size_t n) {
  pool_.parallelFor(
      n,
      [&](size_t b, size_t e) {
        float sig[kSwigluBlock];
        for (size_t i0 = b; i0 < e; i0 += kSwigluBlock) {
          const int m = static_cast<int>(std::min<size_t>(kSwigluBlock, e - i0));
          const float* g = gate + i0;
          const float* u = up + i0;
          const float* d = dh + i0;
          float* dg = dgate + i0;
          float* du = dup + i0;
          sigmoidBlock(g, sig, m);
          for (int j = 0; j < m; ++j) {
            const float sg = sig[j];
            du[j] = d[j] * (g[j] * sg);
            dg[j] = (d[j] * u[j]) * (sg * (1.0f + g[j] * (1.0f - sg)));
          }
        }
      },
      kElemGrain / 4);
}

// ---- activation quantization ---------------------------------------------------------------

void CpuBackend::actQuant(const float* x, float* xq, int N, int C, int bits) {
  PRIMAL_CHECK(bits >= 2 && bits <= 16, "actQuant: bits must be in [2, 16], got " + std::to_string(bits));
  const float qmax = static_cast<float>((1 << (bits - 1)) - 1);
  const float qmin = -qmax - 1.0f;
  pool_.parallelFor(
      static_cast<size_t>(N),
      [&](size_t b, size_t e) {
        for (size_t n = b; n < e; ++n) {
          const float* xr = x + n * C;
          float* yr = xq + n * C;
          float amax[8] = {0, 0, 0, 0, 0, 0, 0, 0};
          int c = 0;
          for (; c + 8 <= C; c += 8)
            for (int l = 0; l < 8; ++l) {
              const float a = std::fabs(xr[c + l]);
              amax[l] = a > amax[l] ? a : amax[l];
            }
          float am = 0.0f;
          for (int l = 0; l < 8; ++l) am = amax[l] > am ? amax[l] : am;
          for (; c < C; ++c) am = std::fabs(xr[c]) > am ? std::fabs(xr[c]) : am;
          const float s = qmax / std::max(am, 1e-5f);
          // |x*s| <= qmax < 2^22, so the rounding trick equals rintf. Rounding, clamping (selects)
          // and the division run as separate passes so each vectorizes.
          for (int k = 0; k < C; ++k) yr[k] = roundHalfEven(xr[k] * s);
          for (int k = 0; k < C; ++k) {
            float r = yr[k];
            r = r < qmin ? qmin : r;
            r = qmax < r ? qmax : r;
            yr[k] = r;
          }
          for (int k = 0; k < C; ++k) yr[k] = yr[k] / s;
        }
      },
      rowGrain(C));
}

// ---- classifier ----------------------------------------------------------------------------

void CpuBackend::classifier(const float* x, const float* table, const int32_t* targets, float* losses,
                            float* dx, float* dtable, int N, int C, int V, float gradScale) {
  PRIMAL_CHECK(V > 0 && C > 0, "classifier: V and C must be positive");
  for (int n = 0; n < N; ++n)
    PRIMAL_CHECK(targets[n] < V, "classifier: target " + std::to_string(targets[n]) +
                                     " out of range for vocab " + std::to_string(V));
  // Rows per chunk: about 1 MiB of logits (at least 64 rows), so N x V is never held at once
  // while the GEMMs stay large enough to be efficient.
  const int chunk = std::max(64, static_cast<int>((size_t(1) << 18) / static_cast<size_t>(V)));
  const int rowsMax = std::min(N, chunk);
  const size_t need = static_cast<size_t>(rowsMax) * V;
  if (logitBuf_.size() < need) logitBuf_.resize(need);
  float* L = logitBuf_.data();

  for (int r0 = 0; r0 < N; r0 += chunk) {
    const int rows = std::min(chunk, N - r0);
    const float* xc = x + static_cast<size_t>(r0) * C;
    bool anyScored = false;
    for (int r = 0; r < rows; ++r) anyScored = anyScored || targets[r0 + r] >= 0;
    if (!anyScored) {
      for (int r = 0; r < rows; ++r) losses[r0 + r] = 0.0f;
      if (dx) std::memset(dx + static_cast<size_t>(r0) * C, 0, sizeof(float) * rows * C);
      continue;
    }
    gemm(false, true, rows, V, C, 1.0f, xc, C, table, C, 0.0f, L, V);
    pool_.parallelFor(
        static_cast<size_t>(rows),
        [&](size_t rb, size_t re) {
          for (size_t r = rb; r < re; ++r) {
            float* lr = L + r * V;
            const int32_t t = targets[r0 + r];
            if (t < 0) {
              losses[r0 + r] = 0.0f;
              if (dx) std::memset(lr, 0, sizeof(float) * V);
              continue;
            }
            const float m = maxLanes(lr, V);
            const float target = lr[t];
            const double sum = expShiftSumF64(lr, V, m);  // lr becomes e^(logit - m)
            const double lse = static_cast<double>(m) + std::log(sum);
            losses[r0 + r] = static_cast<float>(lse - static_cast<double>(target));
            if (dx) {
              // dlogits = (softmax - onehot) * gradScale
              const float f = static_cast<float>(static_cast<double>(gradScale) / sum);
              for (int j = 0; j < V; ++j) lr[j] *= f;
              lr[t] -= gradScale;
            }
          }
        },
        std::max<size_t>(1, 4096 / static_cast<size_t>(V)));
    if (dx) {
      gemm(false, false, rows, C, V, 1.0f, L, V, table, C, 0.0f, dx + static_cast<size_t>(r0) * C, C);
      gemm(true, false, V, C, rows, 1.0f, L, V, xc, C, 1.0f, dtable, C);
    }
  }
}

void CpuBackend::logits(const float* x, const float* table, float* logits, int N, int C, int V) {
  gemm(false, true, N, V, C, 1.0f, x, C, table, C, 0.0f, logits, V);
}

// The scored rows' losses summed in row order in double, as the trainer summed them on the host.
void CpuBackend::stepLoss(const float* losses, const int32_t* targets, int N, StepHead* head) {
  double sum = 0.0, count = 0.0;
  for (int i = 0; i < N; ++i)
    if (targets[i] >= 0) {
      sum += losses[i];
      count += 1.0;
    }
  const double mean = count > 0 ? sum / count : 0.0;
  head->lastLoss = mean;
  if (std::isfinite(mean)) {
    head->lossSum += mean;
    head->tokens += count;
  } else {
    if (!(head->refused & kRefuseLoss)) head->badLoss = mean;
    head->refused |= kRefuseLoss;
  }
}

}  // namespace cpu
}  // namespace primal
