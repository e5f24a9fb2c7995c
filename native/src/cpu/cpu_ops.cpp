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
#include "primal/error.h"

namespace primal {
namespace cpu {

namespace {

constexpr size_t kElemGrain = 1 << 14;

// Dot product with 8 independent fp32 lanes (a vertical, vectorizable update) combined in a
// fixed tree, then the tail in index order.
inline float dot(const float* __restrict a, const float* __restrict b, int n) {
  float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int i = 0;
  for (; i + 8 <= n; i += 8)
    for (int l = 0; l < 8; ++l) acc[l] += a[i + l] * b[i + l];
  float s = ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
  for (; i < n; ++i) s += a[i] * b[i];
  return s;
}

// Rows per parallel part so that a part has at least ~kElemGrain elements.
inline size_t rowGrain(int C) {
  const size_t c = C > 0 ? static_cast<size_t>(C) : 1;
  return std::max<size_t>(1, kElemGrain / c);
}

// Per-thread scratch of the attention kernels, reused across calls.
struct AttnScratch {
  std::vector<float> kt, vt, s, dp;
  void ensure(int T, int D) {
    const size_t td = static_cast<size_t>(T) * D;
    if (kt.size() < td) kt.resize(td);
    if (vt.size() < td) vt.resize(td);
    if (s.size() < static_cast<size_t>(T)) s.resize(T);
    if (dp.size() < static_cast<size_t>(T)) dp.resize(T);
  }
};
thread_local AttnScratch tlsAttn;

// dst[d*T + j] = src[j*stride + d]: one head's [T, D] slice transposed to [D, T], so the score
// loops below run contiguously over keys.
inline void transposeHead(const float* src, size_t stride, int T, int D, float* dst) {
  for (int j = 0; j < T; ++j) {
    const float* r = src + static_cast<size_t>(j) * stride;
    for (int d = 0; d < D; ++d) dst[static_cast<size_t>(d) * T + j] = r[d];
  }
}

// s[j] = scale * (qrow . key j) for j < n, keys given transposed (kt[d*T + j]).
inline void scoresRow(const float* __restrict qrow, const float* __restrict kt, int T, int D, int n,
                      float scale, float* __restrict s) {
  for (int j = 0; j < n; ++j) s[j] = 0.0f;
  for (int d = 0; d < D; ++d) {
    const float qd = qrow[d];
    const float* __restrict kr = kt + static_cast<size_t>(d) * T;
    for (int j = 0; j < n; ++j) s[j] += qd * kr[j];
  }
  for (int j = 0; j < n; ++j) s[j] *= scale;
}

}  // namespace

// ---- embedding -----------------------------------------------------------------------------

void CpuBackend::embeddingForward(const int32_t* tokens, const float* table, float* out, int N,
                                  int C) {
  pool_.parallelFor(static_cast<size_t>(N), [&](size_t b, size_t e) {
    for (size_t n = b; n < e; ++n) {
      const int32_t t = tokens[n];
      PRIMAL_CHECK(t >= 0, "embeddingForward: negative token id " + std::to_string(t));
      std::memcpy(out + n * C, table + static_cast<size_t>(t) * C, sizeof(float) * C);
    }
  }, rowGrain(C));
}

void CpuBackend::embeddingBackward(const int32_t* tokens, const float* dout, float* dtable, int N,
                                   int C) {
  for (int n = 0; n < N; ++n)
    PRIMAL_CHECK(tokens[n] >= 0, "embeddingBackward: negative token id " + std::to_string(tokens[n]));
  // Split the columns across threads: every thread walks all tokens in order, so repeated tokens
  // accumulate in input order whatever the thread count.
  const size_t work = static_cast<size_t>(N) * C;
  const size_t grain = work < kElemGrain ? static_cast<size_t>(C) : 16;
  pool_.parallelFor(static_cast<size_t>(C), [&](size_t c0, size_t c1) {
    for (int n = 0; n < N; ++n) {
      const float* src = dout + static_cast<size_t>(n) * C;
      float* dst = dtable + static_cast<size_t>(tokens[n]) * C;
      for (size_t c = c0; c < c1; ++c) dst[c] += src[c];
    }
  }, grain);
}

// ---- RMSNorm -------------------------------------------------------------------------------

void CpuBackend::rmsnormForward(const float* x, const float* w, float* y, float* rstd, int N,
                                int C, float eps) {
  pool_.parallelFor(static_cast<size_t>(N), [&](size_t b, size_t e) {
    for (size_t n = b; n < e; ++n) {
      const float* xr = x + n * C;
      float* yr = y + n * C;
      const float ms = dot(xr, xr, C) / static_cast<float>(C);
      const float r = 1.0f / std::sqrt(ms + eps);
      rstd[n] = r;
      for (int c = 0; c < C; ++c) yr[c] = (xr[c] * r) * w[c];
    }
  }, rowGrain(C));
}

void CpuBackend::rmsnormBackward(const float* x, const float* w, const float* rstd,
                                 const float* dy, float* dx, float* dw, int N, int C) {
  // dx = r * w*dy - x * r^3/C * sum(w*dy*x), per row.
  pool_.parallelFor(static_cast<size_t>(N), [&](size_t b, size_t e) {
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
  }, rowGrain(C));
  // dw[c] += sum_n dy*x*r: columns split across threads, rows summed in order.
  const size_t grain = static_cast<size_t>(N) * C < kElemGrain ? static_cast<size_t>(C) : 16;
  pool_.parallelFor(static_cast<size_t>(C), [&](size_t c0, size_t c1) {
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
  }, grain);
}

// ---- RoPE ----------------------------------------------------------------------------------

void CpuBackend::rope(float* x, int B, int T, int H, int D, float theta, bool inverse) {
  PRIMAL_CHECK(D % 2 == 0, "rope: head dim must be even, got " + std::to_string(D));
  const int half = D / 2;
  if (T != ropeT_ || D != ropeD_ || theta != ropeTheta_) {
    // Angles in double, rounded once: the table is exact to fp32 for any T.
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
  pool_.parallelFor(rows, [&](size_t b, size_t e) {
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
  }, rowGrain(static_cast<int>(C)));
}

// ---- attention -----------------------------------------------------------------------------

void CpuBackend::attentionForward(const float* q, const float* k, const float* v, float* out,
                                  float* lse, int B, int T, int H, int D) {
  const size_t C = static_cast<size_t>(H) * D;
  const float scale = 1.0f / std::sqrt(static_cast<float>(D));
  pool_.parallelFor(static_cast<size_t>(B) * H, [&](size_t b0, size_t b1) {
    AttnScratch& sc = tlsAttn;
    sc.ensure(T, D);
    float* kt = sc.kt.data();
    float* s = sc.s.data();
    for (size_t bh = b0; bh < b1; ++bh) {
      const size_t b = bh / H, h = bh % H;
      const size_t base = b * T * C + h * D;
      const float* qb = q + base;
      const float* vb = v + base;
      float* ob = out + base;
      transposeHead(k + base, C, T, D, kt);
      for (int t = 0; t < T; ++t) {
        const int n = t + 1;  // causal: keys 0..t
        scoresRow(qb + t * C, kt, T, D, n, scale, s);
        float m = -std::numeric_limits<float>::infinity();
        for (int j = 0; j < n; ++j) m = std::max(m, s[j]);
        float l = 0.0f;
        for (int j = 0; j < n; ++j) {
          s[j] = std::exp(s[j] - m);
          l += s[j];
        }
        float* o = ob + t * C;
        for (int d = 0; d < D; ++d) o[d] = 0.0f;
        for (int j = 0; j < n; ++j) {
          const float pj = s[j];
          const float* vr = vb + j * C;
          for (int d = 0; d < D; ++d) o[d] += pj * vr[d];
        }
        const float inv = 1.0f / l;
        for (int d = 0; d < D; ++d) o[d] *= inv;
        lse[bh * T + t] = m + std::log(l);
      }
    }
  });
}

void CpuBackend::attentionBackward(const float* q, const float* k, const float* v,
                                   const float* out, const float* lse, const float* dout,
                                   float* dq, float* dk, float* dv, int B, int T, int H, int D) {
  const size_t C = static_cast<size_t>(H) * D;
  const float scale = 1.0f / std::sqrt(static_cast<float>(D));
  // Row by row over queries i: P_i = exp(S_i - lse_i), dP_i = dO_i V^T, dS = P (dP - delta_i)
  // with delta_i = dO_i . O_i; dq_i = scale dS K, and dk/dv rows accumulate in query order.
  pool_.parallelFor(static_cast<size_t>(B) * H, [&](size_t b0, size_t b1) {
    AttnScratch& sc = tlsAttn;
    sc.ensure(T, D);
    float* kt = sc.kt.data();
    float* vt = sc.vt.data();
    float* p = sc.s.data();
    float* ds = sc.dp.data();
    for (size_t bh = b0; bh < b1; ++bh) {
      const size_t b = bh / H, h = bh % H;
      const size_t base = b * T * C + h * D;
      const float* qb = q + base;
      const float* kb = k + base;
      const float* ob = out + base;
      const float* dob = dout + base;
      float* dqb = dq + base;
      float* dkb = dk + base;
      float* dvb = dv + base;
      transposeHead(kb, C, T, D, kt);
      transposeHead(v + base, C, T, D, vt);
      for (int j = 0; j < T; ++j) {
        std::memset(dkb + j * C, 0, sizeof(float) * D);
        std::memset(dvb + j * C, 0, sizeof(float) * D);
      }
      for (int i = 0; i < T; ++i) {
        const int n = i + 1;
        const float* qi = qb + i * C;
        const float* doi = dob + i * C;
        const float delta = dot(doi, ob + i * C, D);
        const float li = lse[bh * T + i];
        scoresRow(qi, kt, T, D, n, scale, p);  // same arithmetic as the forward pass
        for (int j = 0; j < n; ++j) p[j] = std::exp(p[j] - li);
        // dP_ij = dO_i . v_j
        for (int j = 0; j < n; ++j) ds[j] = 0.0f;
        for (int d = 0; d < D; ++d) {
          const float g = doi[d];
          const float* vr = vt + static_cast<size_t>(d) * T;
          for (int j = 0; j < n; ++j) ds[j] += g * vr[j];
        }
        for (int j = 0; j < n; ++j) ds[j] = p[j] * (ds[j] - delta);
        float* dqi = dqb + i * C;
        for (int d = 0; d < D; ++d) dqi[d] = 0.0f;
        for (int j = 0; j < n; ++j) {
          const float a = ds[j];
          const float* kr = kb + j * C;
          for (int d = 0; d < D; ++d) dqi[d] += a * kr[d];
        }
        for (int d = 0; d < D; ++d) dqi[d] *= scale;
        for (int j = 0; j < n; ++j) {
          const float a = ds[j] * scale;
          const float pj = p[j];
          float* dkr = dkb + j * C;
          float* dvr = dvb + j * C;
          for (int d = 0; d < D; ++d) {
            dkr[d] += a * qi[d];
            dvr[d] += pj * doi[d];
          }
        }
      }
    }
  });
}

// ---- SwiGLU --------------------------------------------------------------------------------

void CpuBackend::swigluForward(const float* gate, const float* up, float* h, size_t n) {
  pool_.parallelFor(n, [&](size_t b, size_t e) {
    for (size_t i = b; i < e; ++i) {
      const float g = gate[i];
      const float sig = 1.0f / (1.0f + std::exp(-g));
      h[i] = (g * sig) * up[i];
    }
  }, kElemGrain / 4);
}

void CpuBackend::swigluBackward(const float* gate, const float* up, const float* dh, float* dgate,
                                float* dup, size_t n) {
  pool_.parallelFor(n, [&](size_t b, size_t e) {
    for (size_t i = b; i < e; ++i) {
      const float g = gate[i];
      const float sig = 1.0f / (1.0f + std::exp(-g));
      const float d = dh[i];
      dup[i] = d * (g * sig);
      dgate[i] = (d * up[i]) * (sig * (1.0f + g * (1.0f - sig)));
    }
  }, kElemGrain / 4);
}

// ---- activation quantization ---------------------------------------------------------------

void CpuBackend::actQuant(const float* x, float* xq, int N, int C, int bits) {
  PRIMAL_CHECK(bits >= 2 && bits <= 24, "actQuant: bits must be in [2, 24], got " + std::to_string(bits));
  const float qmax = static_cast<float>((1 << (bits - 1)) - 1);
  const float qmin = -qmax - 1.0f;
  pool_.parallelFor(static_cast<size_t>(N), [&](size_t b, size_t e) {
    for (size_t n = b; n < e; ++n) {
      const float* xr = x + n * C;
      float* yr = xq + n * C;
      float amax = 0.0f;
      for (int c = 0; c < C; ++c) amax = std::max(amax, std::fabs(xr[c]));
      const float s = qmax / std::max(amax, 1e-5f);
      for (int c = 0; c < C; ++c) {
        const float r = std::rint(xr[c] * s);
        yr[c] = std::min(std::max(r, qmin), qmax) / s;
      }
    }
  }, rowGrain(C));
}

// ---- classifier ----------------------------------------------------------------------------

void CpuBackend::classifier(const float* x, const float* table, const int32_t* targets,
                            float* losses, float* dx, float* dtable, int N, int C, int V,
                            float gradScale) {
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
    pool_.parallelFor(static_cast<size_t>(rows), [&](size_t rb, size_t re) {
      for (size_t r = rb; r < re; ++r) {
        float* lr = L + r * V;
        const int32_t t = targets[r0 + r];
        if (t < 0) {
          losses[r0 + r] = 0.0f;
          if (dx) std::memset(lr, 0, sizeof(float) * V);
          continue;
        }
        float m = -std::numeric_limits<float>::infinity();
        for (int j = 0; j < V; ++j) m = std::max(m, lr[j]);
        const float target = lr[t];
        double sum = 0.0;
        if (dx) {
          for (int j = 0; j < V; ++j) {
            const float e = std::exp(lr[j] - m);
            lr[j] = e;
            sum += e;
          }
        } else {
          for (int j = 0; j < V; ++j) sum += std::exp(lr[j] - m);
        }
        const double lse = static_cast<double>(m) + std::log(sum);
        losses[r0 + r] = static_cast<float>(lse - static_cast<double>(target));
        if (dx) {
          // dlogits = (softmax - onehot) * gradScale
          const float f = static_cast<float>(static_cast<double>(gradScale) / sum);
          for (int j = 0; j < V; ++j) lr[j] *= f;
          lr[t] -= gradScale;
        }
      }
    }, std::max<size_t>(1, 4096 / static_cast<size_t>(V)));
    if (dx) {
      gemm(false, false, rows, C, V, 1.0f, L, V, table, C, 0.0f, dx + static_cast<size_t>(r0) * C, C);
      gemm(true, false, V, C, rows, 1.0f, L, V, xc, C, 1.0f, dtable, C);
    }
  }
}

void CpuBackend::logits(const float* x, const float* table, float* logits, int N, int C, int V) {
  gemm(false, true, N, V, C, 1.0f, x, C, table, C, 0.0f, logits, V);
}

}  // namespace cpu
}  // namespace primal
