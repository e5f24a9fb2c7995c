// Philox4x32-10 against the known-answer vectors shipped with Random123 (kat_vectors), and the
// exactness of the 24-bit uniforms every device derives from it (docs/design.md, "Randomness").
#include <cstdint>

#include "primal/philox.h"
#include "testing.h"

using namespace primal;

namespace {

struct Kat {
  uint32_t ctr[4];
  uint32_t key[2];
  uint32_t out[4];
};

// Random123 kat_vectors, "philox4x32 10" lines.
const Kat kKats[] = {
    {{0x00000000u, 0x00000000u, 0x00000000u, 0x00000000u},
     {0x00000000u, 0x00000000u},
     {0x6627e8d5u, 0xe169c58du, 0xbc57ac4cu, 0x9b00dbd8u}},
    {{0xffffffffu, 0xffffffffu, 0xffffffffu, 0xffffffffu},
     {0xffffffffu, 0xffffffffu},
     {0x408f276du, 0x41c83b0eu, 0xa20bc7c6u, 0x6d5451fdu}},
    {{0x243f6a88u, 0x85a308d3u, 0x13198a2eu, 0x03707344u},
     {0xa4093822u, 0x299f31d0u},
     {0xd16cfe09u, 0x94fdccebu, 0x5001e420u, 0x24126ea1u}},
};

}  // namespace

PRIMAL_TEST("philox/4x32-10 matches the Random123 known-answer vectors") {
  for (const Kat& k : kKats) {
    Philox4 r = philox4x32_10(k.ctr[0], k.ctr[1], k.ctr[2], k.ctr[3], k.key[0], k.key[1]);
    for (int j = 0; j < 4; ++j) EXPECT_EQ(r.v[j], k.out[j]);
  }
}

PRIMAL_TEST("philox/mulhilo gives both halves of the 64-bit product") {
  uint32_t hi = 0;
  uint32_t lo = philox_mulhilo(0xD2511F53u, 0xffffffffu, &hi);
  const uint64_t p = 0xD2511F53ull * 0xffffffffull;
  EXPECT_EQ(lo, static_cast<uint32_t>(p));
  EXPECT_EQ(hi, static_cast<uint32_t>(p >> 32));
}

PRIMAL_TEST("philox/u24 is exact and stays below 1") {
  // u * 2^24 must be the integer r >> 8: the value is representable in fp32, so CPU and GPU agree.
  const uint32_t samples[] = {0u,          1u,          0xffu,       0x100u,     0x12345678u,
                              0x80000000u, 0xfffffeffu, 0xffffff00u, 0xffffffffu};
  for (uint32_t r : samples) {
    const float u = philox_u24(r);
    const double scaled = static_cast<double>(u) * 16777216.0;
    EXPECT_EQ(scaled, static_cast<double>(r >> 8));
    EXPECT_TRUE(u >= 0.0f && u < 1.0f);
  }
  EXPECT_TRUE(philox_u24(0xFFFFFFFFu) < 1.0f);
  EXPECT_EQ(static_cast<double>(philox_u24(0xFFFFFFFFu)), 16777215.0 / 16777216.0);
  EXPECT_EQ(philox_u24(0u), 0.0f);
  // And over a stretch of real Philox output.
  for (uint32_t i = 0; i < 4096; ++i) {
    Philox4 r = philox4x32_10(i, 3, 5, kStreamFlip, 0x9u, 0x1u);
    for (int j = 0; j < 4; ++j) {
      const float u = philox_u24(r.v[j]);
      EXPECT_EQ(static_cast<double>(u) * 16777216.0, static_cast<double>(r.v[j] >> 8));
      EXPECT_TRUE(u < 1.0f);
    }
  }
}

PRIMAL_TEST("philox/streams are separated by counter word 3") {
  // The flip stream (word 3 = 0) and the data/init/sample streams never share a counter.
  Philox4 a = philox4x32_10(7, 1, 2, kStreamFlip, 11, 0);
  Philox4 b = philox4x32_10(7, 1, 2, kStreamData, 11, 0);
  Philox4 c = philox4x32_10(7, 1, 2, kStreamSample, 11, 0);
  EXPECT_TRUE(a.v[0] != b.v[0] || a.v[1] != b.v[1]);
  EXPECT_TRUE(a.v[0] != c.v[0] || a.v[1] != c.v[1]);
  // A different key high word changes the stream (the seed's upper 32 bits are used).
  Philox4 d = philox4x32_10(7, 1, 2, kStreamFlip, 11, 1);
  EXPECT_TRUE(a.v[0] != d.v[0] || a.v[1] != d.v[1]);
}
