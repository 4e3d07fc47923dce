// Deterministic random numbers that give the same stream on every platform
// and standard library (std::uniform_int_distribution and
// std::normal_distribution are implementation-defined, std::shuffle too), so a
// --seed reproduces a run and a checkpoint can resume its shuffle exactly.
#pragma once

#include <cmath>
#include <cstdint>
#include <vector>

namespace mlp {

// PCG32 (O'Neill, pcg-random.org): 64-bit state, one stream per `stream` id.
class Pcg32 {
 public:
  Pcg32(uint64_t seed, uint64_t stream) : inc_((stream << 1u) | 1u) {
    next();
    state_ += seed;
    next();
  }
  uint32_t next() {
    const uint64_t old = state_;
    state_ = old * 6364136223846793005ULL + inc_;
    const auto xorshifted = static_cast<uint32_t>(((old >> 18u) ^ old) >> 27u);
    const auto rot = static_cast<uint32_t>(old >> 59u);
    return (xorshifted >> rot) | (xorshifted << ((32u - rot) & 31u));
  }
  // Uniform in [0, bound) without modulo bias (Lemire's method).
  uint32_t below(uint32_t bound) {
    uint64_t m = uint64_t{next()} * bound;
    auto low = static_cast<uint32_t>(m);
    if (low < bound) {
      const uint32_t threshold = (0u - bound) % bound;
      while (low < threshold) {
        m = uint64_t{next()} * bound;
        low = static_cast<uint32_t>(m);
      }
    }
    return static_cast<uint32_t>(m >> 32);
  }
  // Uniform in (0, 1], never 0 so log() below stays finite.
  double uniform_open0() { return (static_cast<double>(next()) + 1.0) / 4294967296.0; }
  // Standard normal by Box-Muller (one value per call; simple beats fast here).
  double normal() {
    const double u1 = uniform_open0(), u2 = uniform_open0();
    return std::sqrt(-2.0 * std::log(u1)) * std::cos(6.283185307179586 * u2);
  }

 private:
  uint64_t state_ = 0;
  uint64_t inc_;
};

// The order in which epoch `epoch` visits `count` samples: a Fisher-Yates
// shuffle seeded by (seed, epoch) alone, so resuming at any epoch needs no
// saved generator state.
inline std::vector<uint32_t> epoch_permutation(uint64_t seed, int64_t epoch, uint32_t count) {
  std::vector<uint32_t> perm(count);
  for (uint32_t i = 0; i < count; ++i) perm[i] = i;
  Pcg32 rng(seed, 0x5eed0000ULL + static_cast<uint64_t>(epoch));
  for (uint32_t i = count; i > 1; --i) {
    const uint32_t j = rng.below(i);
    std::swap(perm[i - 1], perm[j]);
  }
  return perm;
}

}  // namespace mlp
