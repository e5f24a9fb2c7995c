// The functions of primal/poltergeist.h one by one, on hand-worked values: the ladder with the
// bridge on and off (stray +-1 codes included), p, the vote decay, votes, flipWeight, the nearest
// code at initialisation and the bridge-off resolution. The backends' loops around them are tested
// in test_cpu_ops.cpp and test_cuda_parity.cpp.
#include <cmath>
#include <limits>

#include "primal/poltergeist.h"
#include "testing.h"

using namespace primal;

namespace {

// nextRung as a value: the target, or 99 when there is none.
int rung(int c, int dir, bool bridgeOn) {
  int t = 99;
  return polt::nextRung(c, dir, bridgeOn, &t) ? t : 99;
}

}  // namespace

PRIMAL_TEST("poltergeist/levels: sign(c) * (|c| == 2 ? 1 : bridge)") {
  EXPECT_EQ(polt::level(0, 0.6f), 0.0f);
  EXPECT_EQ(polt::level(1, 0.6f), 0.6f);
  EXPECT_EQ(polt::level(-1, 0.6f), -0.6f);
  EXPECT_EQ(polt::level(2, 0.6f), 1.0f);
  EXPECT_EQ(polt::level(-2, 0.6f), -1.0f);
  EXPECT_EQ(polt::level(5, 0.6f), 0.6f);  // not a code: never larger than the scale
}

PRIMAL_TEST("poltergeist/next rung with the bridge on and off, stray +-1 codes included") {
  const int up[5] = {-1, 0, 1, 2, 99}, down[5] = {99, -2, -1, 0, 1};
  const int upOff[5] = {0, 0, 2, 2, 99}, downOff[5] = {99, -2, -2, 0, 0};
  for (int c = -2; c <= 2; ++c) {
    EXPECT_EQ(rung(c, 1, true), up[c + 2]);
    EXPECT_EQ(rung(c, -1, true), down[c + 2]);
    EXPECT_EQ(rung(c, 1, false), upOff[c + 2]);
    EXPECT_EQ(rung(c, -1, false), downOff[c + 2]);
  }
  EXPECT_EQ(rung(3, -1, true), 99);
  EXPECT_EQ(rung(-3, 1, false), 99);
}

PRIMAL_TEST("poltergeist/flip probability: double formula, pMax clamp") {
  const polt::FlipRule r = polt::flipRuleFor(0.013f, 1.7f, 3, 0.4f, 0.9f, true);
  const double rate = static_cast<double>(0.013f) * static_cast<double>(1.7f);
  EXPECT_EQ(polt::flipProbability(0, r), 0.0);
  EXPECT_EQ(polt::flipProbability(5, r), rate * 5.0 / 3.0);
  EXPECT_EQ(polt::flipProbability(30, r), rate * 30.0 / 3.0);
  EXPECT_EQ(polt::flipProbability(127, r), static_cast<double>(0.4f));  // 0.94 clamped
  const polt::FlipRule big = polt::flipRuleFor(1.0f, 1.0f, 1, 0.4f, 0.9f, true);
  EXPECT_EQ(polt::flipProbability(100, big), static_cast<double>(0.4f));
}

PRIMAL_TEST("poltergeist/vote decay: sign * floor(|v| * keep + u2), clamped to 127") {
  EXPECT_EQ(polt::decayVote(10, 0.5, 0.0f), 5);
  EXPECT_EQ(polt::decayVote(10, 0.5, 0.99f), 5);
  EXPECT_EQ(polt::decayVote(3, 0.5, 0.5f), 2);  // 1.5 + 0.5 = 2 exactly
  EXPECT_EQ(polt::decayVote(3, 0.5, 0.49f), 1);
  EXPECT_EQ(polt::decayVote(-3, 0.5, 0.5f), -2);
  EXPECT_EQ(polt::decayVote(-127, 1.0, 0.999f), -127);
  EXPECT_EQ(polt::decayVote(1, 0.0, 0.999f), 0);
}

PRIMAL_TEST("poltergeist/votes: against sign(G) above the threshold, saturating, NaN never") {
  EXPECT_EQ(polt::castVote(0, 0.5f, 0.0), -1);
  EXPECT_EQ(polt::castVote(0, -0.5f, 0.0), 1);
  EXPECT_EQ(polt::castVote(4, 0.0f, 0.0), 4);  // a zero gradient does not vote
  EXPECT_EQ(polt::castVote(4, 0.5f, 0.5), 4);  // |G| must exceed the threshold
  EXPECT_EQ(polt::castVote(4, -0.6f, 0.5), 5);
  EXPECT_EQ(polt::castVote(127, -1.0f, 0.0), 127);
  EXPECT_EQ(polt::castVote(-127, 1.0f, 0.0), -127);
  EXPECT_EQ(polt::castVote(3, std::numeric_limits<float>::quiet_NaN(), 0.0), 3);
  EXPECT_EQ(polt::voteThreshold(0.0f, 123.0, 10.0), 0.0);
  EXPECT_EQ(polt::voteThreshold(2.0f, 40.0, 10.0), 4.0);
}

PRIMAL_TEST("poltergeist/flipWeight: zero votes stay, u < p moves a rung, the end of the ladder decays") {
  const polt::FlipRule on = polt::flipRuleFor(1.0f, 1.0f, 1, 1.0f, 0.5f, true);
  const polt::FlipRule off = polt::flipRuleFor(1.0f, 1.0f, 1, 1.0f, 0.5f, false);
  polt::FlipOutcome o = polt::flipWeight(1, 0, 1.0, 0.0f, 0.0f, on);
  EXPECT_TRUE(o.code == 1 && o.vote == 0 && !o.flipped);
  o = polt::flipWeight(1, 6, 0.5, 0.25f, 0.0f, on);  // u < p: one rung up, vote reset
  EXPECT_TRUE(o.code == 2 && o.vote == 0 && o.flipped);
  o = polt::flipWeight(1, 6, 0.5, 0.5f, 0.0f, on);  // u == p: no flip, decay 6 * 0.5 = 3
  EXPECT_TRUE(o.code == 1 && o.vote == 3 && !o.flipped);
  o = polt::flipWeight(2, 6, 1.0, 0.0f, 0.0f, on);  // +2 pushed outward: decays
  EXPECT_TRUE(o.code == 2 && o.vote == 3 && !o.flipped);
  o = polt::flipWeight(-1, 6, 1.0, 0.0f, 0.0f, off);  // stray -1 up with the bridge off: to 0
  EXPECT_TRUE(o.code == 0 && o.vote == 0 && o.flipped);
  o = polt::flipWeight(0, -6, 1.0, 0.0f, 0.0f, off);  // 0 down with the bridge off: to -2
  EXPECT_TRUE(o.code == -2 && o.vote == 0 && o.flipped);
}

PRIMAL_TEST("poltergeist/nearest code at initialisation and the bridge-off resolution") {
  // bridge 0.5: thresholds 0.25 and 0.75.
  EXPECT_EQ(polt::nearestCode(0.0f, 0.5f, true), 0);
  EXPECT_EQ(polt::nearestCode(0.2499f, 0.5f, true), 0);
  EXPECT_EQ(polt::nearestCode(0.25f, 0.5f, true), 1);
  EXPECT_EQ(polt::nearestCode(-0.7499f, 0.5f, true), -1);
  EXPECT_EQ(polt::nearestCode(0.75f, 0.5f, true), 2);
  EXPECT_EQ(polt::nearestCode(-3.0f, 0.5f, true), -2);
  EXPECT_EQ(polt::nearestCode(0.4999f, 0.5f, false), 0);
  EXPECT_EQ(polt::nearestCode(-0.5f, 0.5f, false), -2);
  for (int c = -2; c <= 2; ++c) {
    const int8_t hi = polt::resolveBridgeOff(static_cast<int8_t>(c), 0.5f);
    const int8_t lo = polt::resolveBridgeOff(static_cast<int8_t>(c), 0.49f);
    EXPECT_EQ(hi, static_cast<int8_t>(c == 1 || c == -1 ? 2 * c : c));
    EXPECT_EQ(lo, static_cast<int8_t>(c == 1 || c == -1 ? 0 : c));
  }
}
