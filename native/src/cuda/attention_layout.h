// Index rules of the fp32 attention kernels (kernels_attention.cu) that decide which head columns
// a thread stores. Plain C++ (PRIMAL_HD), so the host tests check the same functions the kernels
// use (test_attention_layout.cpp) without a GPU.
//
// The kernels run a template head size Dp (the real head size dAct, a multiple of 4 up to 128,
// padded to 16, 32, 64 or 128) with NTX = BC / 4 thread columns; thread column tx accumulates
// the output columns [DC * tx, DC * tx + DC) with DC = Dp / NTX. Only the first dAct of those Dp
// columns exist in memory: the next head (or, for the last head, the end of the buffer) starts
// at column dAct. So a thread stores all DC columns when its chunk lies inside the head, the
// first dAct - DC * tx of them when the chunk straddles dAct (the ragged edge: dAct not a
// multiple of DC), and none past it.
#pragma once

#include "primal/philox.h"  // PRIMAL_HD

namespace primal {
namespace cuda {

// The template head size for a real one; 0 when unsupported (dAct not a multiple of 4 in [4, 128]).
PRIMAL_HD constexpr int attnPaddedHeadDim(int dAct) {
  if (dAct <= 0 || dAct % 4 != 0 || dAct > 128) return 0;
  if (dAct <= 16) return 16;
  if (dAct <= 32) return 32;
  return dAct <= 64 ? 64 : 128;
}

// Output columns per thread (Cfg::DC) of the padded head size Dp with BC-wide column tiles.
PRIMAL_HD constexpr int attnChunkWidth(int Dp, int BC) { return Dp / (BC / 4); }

// How many columns of the DC-wide chunk starting at column c0 lie inside a head of dAct columns.
PRIMAL_HD constexpr int attnChunkColumns(int c0, int DC, int dAct) {
  const int left = dAct - c0;
  return left <= 0 ? 0 : (left < DC ? left : DC);
}

}  // namespace cuda
}  // namespace primal
