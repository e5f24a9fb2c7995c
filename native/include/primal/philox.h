// Philox4x32-10 counter-based RNG (Salmon et al., SC'11), usable from host and device code.
// One call maps (counter, key) to four independent 32-bit words; PRIMAL derives every random
// number from a fixed counter layout so CPU and CUDA produce the same stream.
#pragma once
#include <cstdint>

#if defined(__CUDACC__)
#define PRIMAL_HD __host__ __device__ __forceinline__
#else
#define PRIMAL_HD inline
#endif

namespace primal {

struct Philox4 {
  uint32_t v[4];
};

PRIMAL_HD uint32_t philox_mulhilo(uint32_t a, uint32_t b, uint32_t* hi) {
  uint64_t p = static_cast<uint64_t>(a) * static_cast<uint64_t>(b);
  *hi = static_cast<uint32_t>(p >> 32);
  return static_cast<uint32_t>(p);
}

// ctr = (c0, c1, c2, c3), key = (k0, k1). Ten rounds.
PRIMAL_HD Philox4 philox4x32_10(uint32_t c0, uint32_t c1, uint32_t c2, uint32_t c3, uint32_t k0,
                                uint32_t k1) {
  const uint32_t M0 = 0xD2511F53u, M1 = 0xCD9E8D57u;
  const uint32_t W0 = 0x9E3779B9u, W1 = 0xBB67AE85u;
  for (int r = 0; r < 10; ++r) {
    uint32_t hi0, hi1;
    uint32_t lo0 = philox_mulhilo(M0, c0, &hi0);
    uint32_t lo1 = philox_mulhilo(M1, c2, &hi1);
    uint32_t n0 = hi1 ^ c1 ^ k0;
    uint32_t n1 = lo1;
    uint32_t n2 = hi0 ^ c3 ^ k1;
    uint32_t n3 = lo0;
    c0 = n0;
    c1 = n1;
    c2 = n2;
    c3 = n3;
    k0 += W0;
    k1 += W1;
  }
  Philox4 out;
  out.v[0] = c0;
  out.v[1] = c1;
  out.v[2] = c2;
  out.v[3] = c3;
  return out;
}

// 24-bit uniform in [0,1): exact in fp32, identical on every device.
PRIMAL_HD float philox_u24(uint32_t r) { return static_cast<float>(r >> 8) * (1.0f / 16777216.0f); }

// Counter word 3 selects the stream. 0 is reserved for the Poltergeist flip step (docs/design.md).
enum PhiloxStream : uint32_t {
  kStreamFlip = 0,
  kStreamData = 1,    // train window sampling: ctr = (window index, micro, step, 1)
  kStreamInit = 2,    // parameter init: ctr = (element/4, param id, 0, 2)
  kStreamSample = 3,  // text generation: ctr = (position, 0, 0, 3) with a caller-given key
};

}  // namespace primal
