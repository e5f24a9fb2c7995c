// Small scalar math helpers for the CPU kernels, written so gcc vectorizes loops that call them
// under strict IEEE semantics (-fno-fast-math, -ffp-contract=off): no libm calls, no branches,
// reductions in fixed lanes. They rely on exact IEEE float arithmetic, so this code must not be
// compiled with -ffast-math (the rounding trick below would be folded away).
#pragma once
#include <cstdint>
#include <cstring>

namespace primal {
namespace cpu {

// 1.5 * 2^23: adding and subtracting it rounds a float with |x| < 2^22 to an integer, ties to
// even (the default rounding mode), exactly like rintf.
constexpr float kRoundMagic = 12582912.0f;

// rintf for |x| <= 2^22 (callers only pass values that small): round half to even, sign of x
// kept (so -0.3 -> -0 as rintf gives).
inline float roundHalfEven(float x) {
  const float r = (x + kRoundMagic) - kRoundMagic;
  uint32_t rb, xb;
  std::memcpy(&rb, &r, 4);
  std::memcpy(&xb, &x, 4);
  rb = (rb & 0x7fffffffu) | (xb & 0x80000000u);
  float out;
  std::memcpy(&out, &rb, 4);
  return out;
}

// e^x for fp32, about 1.6 ulp, for x in [-87, 88] only (see clampExpArg): x = n ln2 + r
// (Cody-Waite), e^r by a degree-7 polynomial, times 2^n built from the exponent bits.
inline float fastExpInRange(float x) {
  const float n = (x * 1.44269504088896341f + kRoundMagic) - kRoundMagic;
  const float r = (x - n * 0.693359375f) + n * 2.12194440e-4f;
  float p = 1.0f / 5040.0f;
  p = p * r + 1.0f / 720.0f;
  p = p * r + 1.0f / 120.0f;
  p = p * r + 1.0f / 24.0f;
  p = p * r + 1.0f / 6.0f;
  p = p * r + 0.5f;
  p = p * r + 1.0f;
  p = p * r + 1.0f;
  const int32_t e = static_cast<int32_t>(n) + 127;
  const uint32_t bits = static_cast<uint32_t>(e) << 23;
  float scale;
  std::memcpy(&scale, &bits, 4);
  return p * scale;
}

// Clamp an exponent argument to [-87, 88] (e^-87 ~ 1.6e-38 stands in for anything smaller).
// Loops should clamp into a buffer in one pass and exponentiate in the next: with the default
// -ftrapping-math gcc will not vectorize a loop where arithmetic follows a float select.
inline float clampExpArg(float x) {
  x = x < -87.0f ? -87.0f : x;
  x = 88.0f < x ? 88.0f : x;
  return x;
}

inline float fastExp(float x) { return fastExpInRange(clampExpArg(x)); }

// Dot product with 8 independent fp32 lanes (vertical, vectorizable), combined in a fixed tree,
// then the tail in index order.
inline float dotLanes(const float* __restrict a, const float* __restrict b, int n) {
  float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int i = 0;
  for (; i + 8 <= n; i += 8)
    for (int l = 0; l < 8; ++l) acc[l] += a[i + l] * b[i + l];
  float s = ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
  for (; i < n; ++i) s += a[i] * b[i];
  return s;
}

// max of x[0..n) (n >= 1) in 8 lanes.
inline float maxLanes(const float* __restrict x, int n) {
  float m[8];
  for (int l = 0; l < 8; ++l) m[l] = x[0];
  int i = 0;
  for (; i + 8 <= n; i += 8)
    for (int l = 0; l < 8; ++l) m[l] = x[i + l] > m[l] ? x[i + l] : m[l];
  float r = m[0];
  for (int l = 1; l < 8; ++l) r = m[l] > r ? m[l] : r;
  for (; i < n; ++i) r = x[i] > r ? x[i] : r;
  return r;
}

// x[j] = e^(x[j] - shift) in place for j < n; returns their sum (8 fp32 lanes, fixed tree).
inline float expShiftSum(float* __restrict x, int n, float shift) {
  constexpr int kBlock = 64;
  float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  float tmp[kBlock];
  int i = 0;
  for (; i + kBlock <= n; i += kBlock) {
    for (int j = 0; j < kBlock; ++j) tmp[j] = clampExpArg(x[i + j] - shift);
    for (int j = 0; j < kBlock; j += 8)
      for (int l = 0; l < 8; ++l) {
        const float e = fastExpInRange(tmp[j + l]);
        x[i + j + l] = e;
        acc[l] += e;
      }
  }
  float s = ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
  for (; i < n; ++i) {
    const float e = fastExp(x[i] - shift);
    x[i] = e;
    s += e;
  }
  return s;
}

// As expShiftSum, but the sum is accumulated in double (8 lanes, fixed tree): used where the
// sum spans a whole vocabulary and feeds the loss.
inline double expShiftSumF64(float* __restrict x, int n, float shift) {
  constexpr int kBlock = 64;
  double acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  float tmp[kBlock];
  int i = 0;
  for (; i + kBlock <= n; i += kBlock) {
    for (int j = 0; j < kBlock; ++j) tmp[j] = clampExpArg(x[i + j] - shift);
    for (int j = 0; j < kBlock; ++j) tmp[j] = fastExpInRange(tmp[j]);
    for (int j = 0; j < kBlock; j += 8)
      for (int l = 0; l < 8; ++l) {
        x[i + j + l] = tmp[j + l];
        acc[l] += static_cast<double>(tmp[j + l]);
      }
  }
  double s = ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
  for (; i < n; ++i) {
    const float e = fastExp(x[i] - shift);
    x[i] = e;
    s += static_cast<double>(e);
  }
  return s;
}

}  // namespace cpu
}  // namespace primal
