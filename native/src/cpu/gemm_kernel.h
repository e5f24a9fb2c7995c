// GEMM micro/macro kernel templates. Deliberately no include guard: gemm.cpp includes this file
// twice, inside different namespaces and target regions, to get a baseline and an AVX2 build of
// the same code. Needs <algorithm>, <cstring> and MacroArgs from the including file.

// C tile (mr x nr valid of MR x NR) = [first ? beta*C : C] + alpha * Apanel . Bpanel.
// Accumulators are GCC vector-extension values of VL floats (portable: the compiler maps them on
// the target's SIMD registers), so all MR x NR of them stay in registers across the k loop,
// which is a broadcast-multiply-add per row of the tile.
template <int MR, int NR, int VL>
inline __attribute__((always_inline)) void microKernel(int kc, const float* __restrict a,
                                                       const float* __restrict b, float* __restrict c,
                                                       int ldc, int mr, int nr, float alpha, float beta,
                                                       bool first) {
  typedef float Vec __attribute__((vector_size(VL * sizeof(float))));
  // Unaligned, aliasing view for loads from the packed panel.
  typedef float VecU __attribute__((vector_size(VL * sizeof(float)), aligned(4), may_alias));
  constexpr int NV = NR / VL;
  static_assert(NR % VL == 0, "NR must be a multiple of the vector length");
  Vec acc[MR][NV];
  for (int i = 0; i < MR; ++i)
    for (int v = 0; v < NV; ++v) acc[i][v] = Vec{};
  for (int k = 0; k < kc; ++k) {
    const float* ak = a + static_cast<size_t>(k) * MR;
    const VecU* bk = reinterpret_cast<const VecU*>(b + static_cast<size_t>(k) * NR);
    Vec bv[NV];
    for (int v = 0; v < NV; ++v) bv[v] = bk[v];
    for (int i = 0; i < MR; ++i) {
      const Vec ai = ak[i] - Vec{};  // broadcast (x - 0 == x exactly, so it folds away)
      for (int v = 0; v < NV; ++v) acc[i][v] += ai * bv[v];
    }
  }
  float tile[MR][NR];
  std::memcpy(tile, acc, sizeof(tile));
  if (mr == MR && nr == NR) {
    for (int i = 0; i < MR; ++i) {
      float* ci = c + static_cast<size_t>(i) * ldc;
      if (!first) {
        for (int j = 0; j < NR; ++j) ci[j] += alpha * tile[i][j];
      } else if (beta == 0.0f) {
        for (int j = 0; j < NR; ++j) ci[j] = alpha * tile[i][j];
      } else {
        for (int j = 0; j < NR; ++j) ci[j] = beta * ci[j] + alpha * tile[i][j];
      }
    }
  } else {
    for (int i = 0; i < mr; ++i) {
      float* ci = c + static_cast<size_t>(i) * ldc;
      for (int j = 0; j < nr; ++j) {
        if (!first) ci[j] += alpha * tile[i][j];
        else if (beta == 0.0f) ci[j] = alpha * tile[i][j];
        else ci[j] = beta * ci[j] + alpha * tile[i][j];
      }
    }
  }
}

// Loops over B panels (outer, one stays in L1) and A panels (inner, the block stays in L2).
template <int MR, int NR, int VL>
inline __attribute__((always_inline)) void macroKernel(const MacroArgs& m) {
  const int aPanels = (m.mc + MR - 1) / MR;
  for (int p = m.p0; p < m.p1; ++p) {
    const float* bp = m.Bp + static_cast<size_t>(p) * m.kc * NR;
    const int nr = std::min(NR, m.nc - p * NR);
    for (int q = 0; q < aPanels; ++q) {
      const float* ap = m.Ap + static_cast<size_t>(q) * m.kc * MR;
      const int mr = std::min(MR, m.mc - q * MR);
      float* c = m.C + static_cast<size_t>(q) * MR * m.ldc + static_cast<size_t>(p) * NR;
      microKernel<MR, NR, VL>(m.kc, ap, bp, c, m.ldc, mr, nr, m.alpha, m.beta, m.first);
    }
  }
}
