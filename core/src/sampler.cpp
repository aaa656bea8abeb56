#include "kvrun/sampler.hpp"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <vector>

namespace kvrun {

int32_t sample_row(const float* logits, int32_t vocab, float temperature, int top_k, float top_p, float min_p,
                   uint64_t seed, uint64_t counter) {
  if (vocab <= 0) return -1;
  for (int32_t i = 0; i < vocab; ++i)  // no token can be sampled from a row that holds a NaN
    if (std::isnan(logits[i])) return -1;
  if (temperature <= 0.f) {
    int32_t best = 0;
    for (int32_t i = 1; i < vocab; ++i)
      if (logits[i] > logits[best]) best = i;
    return best;
  }
  // Candidates ordered by (logit desc, id asc): deterministic, and the order device samplers use.
  std::vector<int32_t> idx(static_cast<size_t>(vocab));
  std::iota(idx.begin(), idx.end(), 0);
  auto before = [&](int32_t a, int32_t b) { return logits[a] > logits[b] || (logits[a] == logits[b] && a < b); };
  size_t keep = size_t(vocab);
  if (top_k > 0 && size_t(top_k) < keep) {
    keep = size_t(top_k);
    std::partial_sort(idx.begin(), idx.begin() + keep, idx.end(), before);
  } else {
    std::sort(idx.begin(), idx.end(), before);
  }
  // Softmax of logits / temperature over the kept candidates (double accumulation).
  std::vector<double> p(keep);
  const double top = double(logits[idx[0]]) / temperature;
  double sum = 0;
  for (size_t i = 0; i < keep; ++i) {
    p[i] = std::exp(double(logits[idx[i]]) / temperature - top);
    sum += p[i];
  }
  for (double& x : p) x /= sum;
  // top-p: the smallest prefix whose mass reaches top_p (at least one token).
  if (top_p < 1.f) {
    double cum = 0;
    size_t n = 0;
    while (n < keep) {
      cum += p[n++];
      if (cum >= double(top_p)) break;
    }
    keep = std::max<size_t>(n, 1);
  }
  // min-p: drop tokens below min_p times the most likely one.
  if (min_p > 0.f) {
    size_t n = 1;
    while (n < keep && p[n] >= double(min_p) * p[0]) ++n;
    keep = n;
  }
  double total = 0;
  for (size_t i = 0; i < keep; ++i) total += p[i];
  double u = uniform01(seed, counter) * total;
  double cum = 0;
  for (size_t i = 0; i < keep; ++i) {
    cum += p[i];
    if (u < cum) return idx[i];
  }
  return idx[keep - 1];
}

}  // namespace kvrun
