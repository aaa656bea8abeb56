// The host sampler: greedy picks the first maximum; filters keep the right candidates; seeded
// draws repeat.
#include <doctest/doctest.h>

#include <cmath>
#include <map>
#include <vector>

#include "kvrun/sampler.hpp"

using namespace kvrun;

TEST_CASE("greedy takes the first maximum") {
  std::vector<float> l{0.f, 3.f, 1.f, 3.f};
  CHECK(sample_row(l.data(), 4, 0.f, 0, 1.f, 0.f, 7, 0) == 1);
}

TEST_CASE("a row holding a NaN gives -1, greedy or sampled, wherever the NaN is") {
  for (float nan : {NAN, -NAN})
    for (int at : {0, 2, 3}) {
      std::vector<float> l{0.f, 3.f, 1.f, 3.f};
      l[size_t(at)] = nan;
      INFO("NaN at " << at << (std::signbit(nan) ? " (sign set)" : ""));
      CHECK(sample_row(l.data(), 4, 0.f, 0, 1.f, 0.f, 7, 0) == -1);
      CHECK(sample_row(l.data(), 4, 0.8f, 2, 0.9f, 0.f, 7, 3) == -1);
    }
}

TEST_CASE("top-k 1 is greedy; sampling is seeded") {
  std::vector<float> l{0.1f, 0.5f, 0.3f, 0.2f};
  for (uint64_t c = 0; c < 50; ++c) CHECK(sample_row(l.data(), 4, 1.f, 1, 1.f, 0.f, 3, c) == 1);
  for (uint64_t c = 0; c < 50; ++c)
    CHECK(sample_row(l.data(), 4, 0.8f, 0, 1.f, 0.f, 11, c) == sample_row(l.data(), 4, 0.8f, 0, 1.f, 0.f, 11, c));
}

TEST_CASE("top-p and min-p restrict the candidates; frequencies follow the softmax") {
  // probabilities ~ [0.643, 0.236, 0.087, 0.032]
  std::vector<float> l{3.f, 2.f, 1.f, 0.f};
  std::map<int, int> seen;
  for (uint64_t c = 0; c < 4000; ++c) seen[sample_row(l.data(), 4, 1.f, 0, 0.8f, 0.f, 5, c)]++;
  CHECK(seen.count(2) == 0);  // 0.643 + 0.236 >= 0.8: only ids 0 and 1 remain
  CHECK(seen.count(3) == 0);
  CHECK(seen[0] > 2600);
  CHECK(seen[0] < 3200);
  seen.clear();
  for (uint64_t c = 0; c < 2000; ++c) seen[sample_row(l.data(), 4, 1.f, 0, 1.f, 0.3f, 5, c)]++;
  CHECK(seen.count(2) == 0);  // 0.087 < 0.3 · 0.643
  CHECK(seen.count(1) == 1);
  seen.clear();
  for (uint64_t c = 0; c < 8000; ++c) seen[sample_row(l.data(), 4, 1.f, 0, 1.f, 0.f, 9, c)]++;
  CHECK(seen[3] > 150);  // ~0.032 · 8000 = 256
  CHECK(seen[3] < 380);
}
