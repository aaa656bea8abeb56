// kvrun — host-side sampling of one row of logits (the CPU backend's Ops::sample and the
// reference for device samplers). Order: repetition penalty (by the caller, on the logits),
// temperature, top-k, top-p, min-p, then a draw from a seeded counter-based RNG.
#pragma once

#include <cstdint>

namespace kvrun {

struct SampleParams;  // core/include/kvrun/ops.hpp

// SplitMix64-based uniform in [0, 1): deterministic per (seed, counter), identical on every backend.
inline double uniform01(uint64_t seed, uint64_t counter) {
  uint64_t z = seed + 0x9e3779b97f4a7c15ull * (counter + 1);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  z ^= z >> 31;
  return double(z >> 11) * (1.0 / 9007199254740992.0);
}

// Returns the sampled id for logits[0..vocab). counter distinguishes successive draws of one
// sequence (the engine passes the number of tokens generated so far). Greedy (temperature 0)
// returns the first maximum. Never returns an id whose probability is 0 after filtering. A row
// that holds a NaN gives −1 (and so does vocab ≤ 0): the caller reports it.
int32_t sample_row(const float* logits, int32_t vocab, float temperature, int top_k, float top_p,
                   float min_p, uint64_t seed, uint64_t counter);

}  // namespace kvrun
