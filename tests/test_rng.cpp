// The portable generator behind --seed: Pcg32 reproduces the reference PCG32
// stream, its derived draws stay in range with the right statistics, and
// epoch_permutation is a permutation that depends on (seed, epoch) alone.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <numeric>

#include "mlp/rng.h"
#include "testing.h"

namespace mlp {
namespace {

using testing::near;

TEST(Pcg32, MatchesTheReferenceStream) {
  // pcg32_srandom_r(&rng, 42, 54) in O'Neill's pcg32-demo (pcg-random.org) prints these.
  Pcg32 rng(42, 54);
  const uint32_t want[] = {0xa15c02b7u, 0x7b47f409u, 0xba1d3330u,
                           0x83d2f293u, 0xbfa4784bu, 0xcbed606eu};
  for (uint32_t w : want) EXPECT_EQ(rng.next(), w);
}

TEST(Pcg32, StreamsAndSeedsDiffer) {
  Pcg32 a(1, 0), b(1, 1), c(2, 0), a2(1, 0);
  int same_ab = 0, same_ac = 0;
  for (int i = 0; i < 64; ++i) {
    const uint32_t x = a.next();
    same_ab += x == b.next();
    same_ac += x == c.next();
    EXPECT_EQ(x, a2.next());
  }
  EXPECT_LT(same_ab, 2);
  EXPECT_LT(same_ac, 2);
}

TEST(Pcg32, BelowIsInRangeAndUniform) {
  Pcg32 rng(7, 3);
  for (int i = 0; i < 100; ++i) EXPECT_EQ(rng.below(1), 0u);
  // 3 does not divide 2^32: a modulo-biased draw would still pass this loosely,
  // but an off-by-one range (0..bound) or a stuck value would not.
  constexpr int kDraws = 60000;
  for (uint32_t bound : {3u, 10u, 1000003u}) {
    std::vector<int> counts(std::min(bound, 10u), 0);
    uint32_t max_seen = 0;
    for (int i = 0; i < kDraws; ++i) {
      const uint32_t x = rng.below(bound);
      ASSERT_LT(x, bound);
      max_seen = std::max(max_seen, x);
      if (bound <= 10) ++counts[x];
    }
    EXPECT_GE(max_seen, bound - 1 - bound / 100) << "the top of the range is reached";
    for (int c : counts) {
      const double expect = double{kDraws} / bound, sd = std::sqrt(expect);
      EXPECT_TRUE(near(c, expect, 5 * sd)) << "bound " << bound;
    }
  }
}

TEST(Pcg32, UniformAndNormalHaveTheRightMoments) {
  Pcg32 rng(11, 0);
  constexpr int kN = 40000;
  double su = 0, sn = 0, sn2 = 0;
  for (int i = 0; i < kN; ++i) {
    const double u = rng.uniform_open0();
    ASSERT_TRUE(u > 0.0 && u <= 1.0) << u;
    su += u;
    const double z = rng.normal();
    ASSERT_TRUE(std::isfinite(z));
    sn += z;
    sn2 += z * z;
  }
  EXPECT_TRUE(near(su / kN, 0.5, 5 * std::sqrt(1.0 / 12 / kN)));
  EXPECT_TRUE(near(sn / kN, 0.0, 5 / std::sqrt(double{kN})));
  EXPECT_TRUE(near(sn2 / kN, 1.0, 5 * std::sqrt(2.0 / kN)));
}

bool is_permutation_of_iota(std::vector<uint32_t> p) {
  std::sort(p.begin(), p.end());
  for (std::size_t i = 0; i < p.size(); ++i)
    if (p[i] != i) return false;
  return true;
}

TEST(EpochPermutation, IsAPermutation) {
  for (uint32_t count : {0u, 1u, 2u, 3u, 100u, 60000u}) {
    const auto p = epoch_permutation(5, 0, count);
    EXPECT_EQ(p.size(), count);
    EXPECT_TRUE(is_permutation_of_iota(p)) << count;
  }
}

TEST(EpochPermutation, DependsOnSeedAndEpochOnly) {
  const auto e0 = epoch_permutation(1, 0, 1000);
  EXPECT_EQ(epoch_permutation(1, 0, 1000), e0) << "a resumed run must see the same order";
  const auto e1 = epoch_permutation(1, 1, 1000);
  const auto s2 = epoch_permutation(2, 0, 1000);
  EXPECT_NE(e1, e0);
  EXPECT_NE(s2, e0);
  // Really shuffled, not a rotation or a nearly sorted list: few fixed points.
  int fixed = 0, same = 0;
  for (uint32_t i = 0; i < 1000; ++i) {
    fixed += e0[i] == i;
    same += e0[i] == e1[i];
  }
  EXPECT_LT(fixed, 10);  // expected 1 for a random permutation
  EXPECT_LT(same, 10);
}

TEST(EpochPermutation, EveryPositionIsReachable) {
  // Fisher-Yates done right gives each element every position; a classic
  // off-by-one (j drawn from [0, i-1)) never leaves an element in place.
  constexpr uint32_t kCount = 5;
  std::vector<std::vector<int>> where(kCount, std::vector<int>(kCount, 0));
  for (int64_t epoch = 0; epoch < 2000; ++epoch) {
    const auto p = epoch_permutation(9, epoch, kCount);
    for (uint32_t pos = 0; pos < kCount; ++pos) ++where[p[pos]][pos];
  }
  for (uint32_t e = 0; e < kCount; ++e)
    for (uint32_t pos = 0; pos < kCount; ++pos)
      EXPECT_TRUE(near(where[e][pos], 400, 5 * std::sqrt(400 * 0.8)))
          << "element " << e << " at position " << pos;
}

}  // namespace
}  // namespace mlp
