// End to end (CPU, or CUDA when built as test_model_cuda) against the Hugging Face transformers references of the fixtures
// (SPECS.md §6): argmax agreement, log-prob deltas, greedy continuations, windowed perplexity,
// naive vs flash attention, and the int8 KV cache against fp16.
#include <doctest/doctest.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>

#include "fixtures.hpp"
#include "kvrun/config.hpp"
#include "kvrun/engine.hpp"
#include "kvrun/models/checkpoint.hpp"
#include "kvrun/select.hpp"
#include "pipeline.hpp"

using namespace kvrun;

namespace {

struct Reference {
  std::vector<int32_t> input_ids;  // [4, 128]
  std::vector<int32_t> argmax;     // [4, 128]
  std::vector<float> next_lp;      // [4, 127]
  std::vector<int32_t> greedy;     // [4, 80]
  std::vector<float> window_nll;   // [n]
  double valid_ppl = 0;
};

template <class T>
std::vector<T> read(const SafetensorsFile& f, const std::string& name) {
  const HostTensor& t = f.tensor(name);
  std::vector<T> v(t.nbytes / sizeof(T));
  std::memcpy(v.data(), t.data, t.nbytes);
  return v;
}

Reference load_reference(const std::string& model) {
  auto f = SafetensorsFile::open(test::fixture(model) + "/reference.safetensors");
  Reference r;
  r.input_ids = read<int32_t>(*f, "input_ids");
  r.argmax = read<int32_t>(*f, "argmax");
  r.next_lp = read<float>(*f, "next_token_logprob");
  r.greedy = read<int32_t>(*f, "greedy_ids");
  r.window_nll = read<float>(*f, "window_nll");
  r.valid_ppl = std::stod(f->metadata().at("valid_ppl_window512"));
  return r;
}

#ifndef KVRUN_TEST_DEVICE
#define KVRUN_TEST_DEVICE "cpu"
#endif
// The suite runs on the CPU (test_model_cpu) and on cuda:0 (test_model_cuda, skipped without one).
const std::string kDevice = KVRUN_TEST_DEVICE;

bool device_available() {
  if (kDevice == "cpu") return true;
  std::string why;
  return !cuda_devices(backend_search_path(PipelineConfig{}), &why).empty();
}

PipelineConfig cpu_config(const std::string& model, const std::string& cache, const std::string& attention) {
  return parse_config("[model]\npath = \"" + test::fixture(model) + "\"\n[backend]\ndevice = \"" + kDevice + "\"\n[cache]\ntype = \"" +
                          cache + "\"\n[attention]\nkind = \"" + attention + "\"\n",
                      model + "-" + cache + "-" + attention);
}

std::string read_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Scores the reference windows: argmax agreement and max |Δ logprob|.
void check_scores(Pipeline& pipe, const Reference& ref, const std::string& label) {
  Engine engine(pipe.model());
  int agree = 0, total = 0;
  double max_dlp = 0;
  for (int b = 0; b < 4; ++b) {
    std::vector<int32_t> ids(ref.input_ids.begin() + b * 128, ref.input_ids.begin() + (b + 1) * 128);
    ScoreResult r = engine.score(ids);
    for (int t = 0; t < 128; ++t) agree += r.argmax[t] == ref.argmax[b * 128 + t], ++total;
    for (int t = 0; t < 127; ++t) max_dlp = std::max(max_dlp, double(std::fabs(r.logprob[t] - ref.next_lp[b * 127 + t])));
  }
  const double agreement = double(agree) / total;
  std::printf("%s: argmax agreement %.2f %% (%d/%d), max |dlogprob| %.5f\n", label.c_str(), 100 * agreement, agree,
              total, max_dlp);
  CHECK(agreement >= 0.99);
  // fp32 activations on the CPU; on CUDA prefill GEMMs round activations to bf16 (tensor cores)
  CHECK(max_dlp < (kDevice == "cpu" ? 0.05 : 0.1));
}

// Greedy continuation of each reference prompt (32 ids) for 48 tokens, the 4 prompts as one batch.
std::vector<std::vector<int32_t>> greedy(Pipeline& pipe, const Reference& ref) {
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

void check_greedy(const std::vector<std::vector<int32_t>>& out, const Reference& ref, const std::string& label) {
  int same = 0;
  for (int b = 0; b < 4; ++b) {
    REQUIRE(out[b].size() == 48);
    int prefix = 0;
    while (prefix < 48 && out[b][prefix] == ref.greedy[b * 80 + 32 + prefix]) ++prefix;
    for (int t = 0; t < 48; ++t) same += out[b][t] == ref.greedy[b * 80 + 32 + t];
    INFO(label << " prompt " << b << ": first mismatch at " << prefix);
    CHECK(prefix >= 16);
  }
  std::printf("%s: greedy tokens equal to transformers: %d/192 (%.1f %%)\n", label.c_str(), same, 100.0 * same / 192);
  CHECK(same >= 0.9 * 192);
}

// Perplexity over the first k windows of the validation text.
double window_ppl(Pipeline& pipe, int k, std::vector<double>* nll_out = nullptr) {
  const std::vector<int32_t> ids = perplexity_corpus(pipe.tokenizer(), read_text(test::data_dir() + "/pystdlib-valid.txt"));
  auto starts = perplexity_windows(int64_t(ids.size()), 512);
  REQUIRE(int(starts.size()) >= k);
  Engine engine(pipe.model());
  double total = 0;
  for (int w = 0; w < k; ++w) {
    std::vector<int32_t> win(ids.begin() + starts[w], ids.begin() + starts[w] + 513);
    double nll = engine.score(win).nll;
    if (nll_out) nll_out->push_back(nll);
    total += nll;
  }
  return std::exp(total / (512.0 * k));
}

double ref_ppl(const Reference& ref, int k) {
  double s = 0;
  for (int w = 0; w < k; ++w) s += ref.window_nll[w];
  return std::exp(s / (512.0 * k));
}

void full_model_suite(const std::string& model, size_t expected_windows) {
  KVRUN_SKIP_UNLESS(device_available(), "no CUDA device");
  KVRUN_SKIP_UNLESS(test::have_fixture(model), "fixture model missing (set KVRUN_FIXTURES)");
  const Reference ref = load_reference(model);
  CHECK(ref.window_nll.size() == expected_windows);
  const int K = 20;
  double ppl_fp16_naive = 0;
  {
    Pipeline pipe(cpu_config(model, "fp16", "naive"));
    pipe.prepare(4 * 128, 4);
    check_scores(pipe, ref, model + " fp16/naive");
    check_greedy(greedy(pipe, ref), ref, model + " fp16/naive");
    std::vector<double> nll;
    ppl_fp16_naive = window_ppl(pipe, K, &nll);
    const double want = ref_ppl(ref, K);
    double max_rel = 0;
    for (int w = 0; w < K; ++w) max_rel = std::max(max_rel, std::fabs(nll[w] / ref.window_nll[w] - 1));
    std::printf("%s fp16/naive: ppl of first %d windows %.5f vs reference %.5f (%.3f %%), worst window nll %.3f %%\n",
                model.c_str(), K, ppl_fp16_naive, want, 100 * (ppl_fp16_naive / want - 1), 100 * max_rel);
    CHECK(std::fabs(ppl_fp16_naive / want - 1) < 0.01);
  }
  {
    Pipeline pipe(cpu_config(model, "fp16", "flash"));
    pipe.prepare(4 * 128, 4);
    const double p = window_ppl(pipe, K);
    std::printf("%s fp16/flash: ppl %.5f vs naive %.5f (%.4f %%)\n", model.c_str(), p, ppl_fp16_naive,
                100 * (p / ppl_fp16_naive - 1));
    CHECK(std::fabs(p / ppl_fp16_naive - 1) < 0.001);
    check_greedy(greedy(pipe, ref), ref, model + " fp16/flash");
  }
  {
    Pipeline pipe(cpu_config(model, "int8", "naive"));
    pipe.prepare(4 * 128, 4);
    const double p = window_ppl(pipe, K);
    std::printf("%s int8/naive: ppl %.5f vs fp16 %.5f (%+.3f %%)\n", model.c_str(), p, ppl_fp16_naive,
                100 * (p / ppl_fp16_naive - 1));
    CHECK(std::fabs(p / ppl_fp16_naive - 1) < 0.005);
    auto out = greedy(pipe, ref);
    int same = 0;
    for (int b = 0; b < 4; ++b)
      for (int t = 0; t < 48; ++t) same += out[b][t] == ref.greedy[b * 80 + 32 + t];
    std::printf("%s int8/naive: greedy tokens equal to the fp16 output: %d/192 (%.1f %%)\n", model.c_str(), same,
                100.0 * same / 192);
    // Greedy decoding is chaotic: one flipped token changes the rest of its sequence. Below 90 %,
    // every first divergence must be a near-tie under the fp16 pipeline (the int8 cache may only
    // flip tokens the fp16 model itself barely prefers).
    if (same < 0.9 * 192) {
      Pipeline fp16(cpu_config(model, "fp16", "naive"));
      fp16.prepare(4 * 128, 4);
      Engine e16(fp16.model());
      for (int b = 0; b < 4; ++b) {
        int k = 0;
        while (k < 48 && out[b][k] == ref.greedy[b * 80 + 32 + k]) ++k;
        if (k == 48) continue;
        std::vector<int32_t> ids(ref.greedy.begin() + b * 80, ref.greedy.begin() + b * 80 + 32 + k + 1);
        const float lp_fp16_choice = e16.score(ids).logprob.back();
        ids.back() = out[b][k];
        const float lp_int8_choice = e16.score(ids).logprob.back();
        std::printf("%s int8/naive: prompt %d diverges at token %d; fp16 log-probs of the two choices %.4f vs %.4f\n",
                    model.c_str(), b, k, lp_fp16_choice, lp_int8_choice);
        CHECK(std::fabs(lp_fp16_choice - lp_int8_choice) < 0.05f);
      }
    }
  }
}

}  // namespace

TEST_CASE("tiny-qwen2 matches transformers") { full_model_suite("tiny-qwen2", 650); }
TEST_CASE("tiny-qwen1 matches transformers") { full_model_suite("tiny-qwen1", 673); }
