// kvrun — counter-based pseudo-random values, identical on the CPU and in CUDA kernels
// (synthetic weights, Ops::fill_random). Element i of a fill with seed s is a pure function of (s, i).
#pragma once

#include <cstdint>

#include "kvrun/dtype.hpp"

namespace kvrun {

KVRUN_HD uint64_t random_bits(uint64_t seed, uint64_t i) {
  uint64_t z = seed + 0x9e3779b97f4a7c15ull * (i + 1);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

// Uniform in [-scale, scale), 24 random bits.
KVRUN_HD float random_uniform(uint64_t seed, uint64_t i, float scale) {
  return (float(random_bits(seed, i) >> 40) * (2.f / 16777216.f) - 1.f) * scale;
}

}  // namespace kvrun
