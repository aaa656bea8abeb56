// Test helpers: the transformers references of the fixture models (SPECS.md §6) and the checks
// every model suite runs against them (argmax / log-prob agreement, greedy continuations).
#pragma once

#include <doctest/doctest.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "fixtures.hpp"
#include "kvrun/engine.hpp"
#include "kvrun/models/checkpoint.hpp"
#include "pipeline.hpp"
#include "run_kvrun.hpp"

namespace kvrun::test {

struct Reference {
  std::vector<int32_t> input_ids;  // [4, 128] four windows of the validation text
  std::vector<int32_t> argmax;     // [4, 128]
  std::vector<float> next_lp;      // [4, 127] log p(input_ids[t+1] | ≤ t)
  std::vector<int32_t> greedy;     // [4, 80] 32 prompt ids, then 48 greedy ids
  std::vector<float> window_nll;   // [n] summed NLL of each 512-token window
  double valid_ppl = 0;            // metadata valid_ppl_window512
};

template <class T>
std::vector<T> read_tensor(const SafetensorsFile& f, const std::string& name) {
  const HostTensor& t = f.tensor(name);
  std::vector<T> v(t.nbytes / sizeof(T));
  std::memcpy(v.data(), t.data, t.nbytes);
  return v;
}

inline Reference load_reference(const std::string& model) {
  auto f = SafetensorsFile::open(fixture(model) + "/reference.safetensors");
  Reference r;
  r.input_ids = read_tensor<int32_t>(*f, "input_ids");
  r.argmax = read_tensor<int32_t>(*f, "argmax");
  r.next_lp = read_tensor<float>(*f, "next_token_logprob");
  r.greedy = read_tensor<int32_t>(*f, "greedy_ids");
  r.window_nll = read_tensor<float>(*f, "window_nll");
  r.valid_ppl = std::stod(f->metadata().at("valid_ppl_window512"));
  return r;
}

// Scores the reference windows: argmax agreement ≥ 99 % and max |Δ logprob| < max_dlp_limit.
// Returns max |Δ logprob|.
inline double check_scores(Pipeline& pipe, const Reference& ref, const std::string& label, double max_dlp_limit) {
  Engine engine(pipe.model());
  int agree = 0, total = 0;
  double max_dlp = 0;
  for (int b = 0; b < 4; ++b) {
    std::vector<int32_t> ids(ref.input_ids.begin() + b * 128, ref.input_ids.begin() + (b + 1) * 128);
    ScoreResult r = engine.score(ids);
    for (int t = 0; t < 128; ++t) agree += r.argmax[t] == ref.argmax[b * 128 + t], ++total;
    for (int t = 0; t < 127; ++t)
      max_dlp = std::max(max_dlp, double(std::fabs(r.logprob[t] - ref.next_lp[b * 127 + t])));
  }
  const double agreement = double(agree) / total;
  std::printf("%s: argmax agreement %.2f %% (%d/%d), max |dlogprob| %.5f\n", label.c_str(), 100 * agreement, agree,
              total, max_dlp);
  CHECK(agreement >= 0.99);
  CHECK(max_dlp < max_dlp_limit);
  return max_dlp;
}

// Greedy continuation of each reference prompt (32 ids) for 48 tokens, the 4 prompts as one batch.
inline std::vector<std::vector<int32_t>> greedy(Pipeline& pipe, const Reference& ref) {
  std::vector<std::vector<int32_t>> prompts;
  for (int b = 0; b < 4; ++b) prompts.emplace_back(ref.greedy.begin() + b * 80, ref.greedy.begin() + b * 80 + 32);
  GenerationSettings st;
  st.max_new_tokens = 48;
  st.temperature = 0.f;
  Engine engine(pipe.model());
  auto res = engine.generate(prompts, st, nullptr, nullptr, nullptr);
  std::vector<std::vector<int32_t>> out;
  for (auto& r : res) out.push_back(r.output_ids);
  return out;
}

}  // namespace kvrun::test
