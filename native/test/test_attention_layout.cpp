// The column rule of the fp32 CUDA attention stores (src/cuda/attention_layout.h), run on the
// host: for every supported head size and both tile configurations, the threads of a row store
// each of the head's columns exactly once and nothing past it. Without the ragged-edge rule a
// chunk that starts inside the head was stored whole, writing into the next head's columns (and
// past the buffer for the last head); the head sizes where that happened are checked too, so
// the CUDA parity cases (test_cuda_parity.cpp) are known to cover them.
#include <string>
#include <vector>

#include "cuda/attention_layout.h"
#include "testing.h"

using primal::cuda::attnChunkColumns;
using primal::cuda::attnChunkWidth;
using primal::cuda::attnPaddedHeadDim;

namespace {

// The two tile configurations of kernels_attention.cu: BR = BC = 64 (NTX = 16 thread columns)
// and BR = BC = 32 (NTX = 8).
constexpr int kTileCols[] = {64, 32};

// Head sizes where a chunk straddles the end of the head: DC does not divide dAct.
bool ragged(int dAct, int BC) {
  const int DC = attnChunkWidth(attnPaddedHeadDim(dAct), BC);
  return dAct % DC != 0;
}

}  // namespace

PRIMAL_TEST("cpu/attention stores of the CUDA kernels: each head column once, nothing past the head") {
  EXPECT_EQ(attnPaddedHeadDim(0), 0);
  EXPECT_EQ(attnPaddedHeadDim(6), 0);
  EXPECT_EQ(attnPaddedHeadDim(132), 0);
  EXPECT_EQ(attnPaddedHeadDim(4), 16);
  EXPECT_EQ(attnPaddedHeadDim(36), 64);
  EXPECT_EQ(attnPaddedHeadDim(68), 128);
  for (int BC : kTileCols) {
    const int NTX = BC / 4;
    for (int dAct = 4; dAct <= 128; dAct += 4) {
      const int Dp = attnPaddedHeadDim(dAct);
      const int DC = attnChunkWidth(Dp, BC);
      EXPECT_TRUE(Dp >= dAct && DC >= 1 && DC * NTX == Dp);
      // One row of H heads with row stride H * dAct, and a guard after the last head: every
      // thread column of every head stores its chunk's columns as the kernels do.
      const int H = 3, guard = 16;
      std::vector<int> owner(static_cast<size_t>(H * dAct + guard), -1);
      for (int h = 0; h < H; ++h)
        for (int tx = 0; tx < NTX; ++tx) {
          const int c0 = DC * tx, n = attnChunkColumns(c0, DC, dAct);
          EXPECT_TRUE(n >= 0 && n <= DC);
          if (c0 + DC <= dAct) EXPECT_EQ(n, DC);  // whole chunks inside the head: vector stores
          for (int c = 0; c < n; ++c) {
            int& o = owner[static_cast<size_t>(h * dAct + c0 + c)];
            if (o != -1)
              throw primal_test::Failure{"D=" + std::to_string(dAct) + " BC=" + std::to_string(BC) +
                                         ": column stored twice"};
            o = h;
          }
        }
      for (int i = 0; i < H * dAct + guard; ++i) {
        const int want = i < H * dAct ? i / dAct : -1;
        if (owner[static_cast<size_t>(i)] != want)
          throw primal_test::Failure{"D=" + std::to_string(dAct) + " BC=" + std::to_string(BC) + ": column " +
                                     std::to_string(i) + " stored by head " +
                                     std::to_string(owner[static_cast<size_t>(i)]) + ", expected " +
                                     std::to_string(want)};
      }
    }
  }
  // The head sizes the whole-chunk stores got wrong: 68..124 not a multiple of 8 with 64x64
  // tiles; 36..60 not a multiple of 8 and 68..124 not a multiple of 16 with 32x32 tiles.
  for (int dAct = 4; dAct <= 128; dAct += 4) {
    EXPECT_EQ(ragged(dAct, 64), dAct > 64 && dAct % 8 != 0);
    EXPECT_EQ(ragged(dAct, 32), (dAct > 32 && dAct < 64 && dAct % 8 != 0) || (dAct > 64 && dAct % 16 != 0));
  }
  // The parity cases' head sizes are ragged in at least one configuration.
  for (int dAct : {36, 44, 60, 68, 100, 124}) EXPECT_TRUE(ragged(dAct, 64) || ragged(dAct, 32));
}
