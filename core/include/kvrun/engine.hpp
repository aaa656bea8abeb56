// kvrun — the engine: batched prefill (in chunks) and step-by-step decode over a Model, sampling,
// stop conditions, and teacher-forced scoring (perplexity, score).
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "kvrun/model.hpp"

namespace kvrun {

struct GenerationSettings {
  int max_new_tokens = 128;
  float temperature = 0.f;  // 0 = greedy
  int top_k = 0;
  float top_p = 1.f;
  float min_p = 0.f;
  float repetition_penalty = 1.f;
  uint64_t seed = 0;
  std::vector<int32_t> eos_ids;          // finish_reason "eos"
  std::vector<std::string> stop_strings; // finish_reason "stop"
};

struct SequenceResult {
  std::vector<int32_t> prompt_ids;
  std::vector<int32_t> output_ids;  // generated ids only (an eos id that ended it included)
  std::string finish_reason;        // "length", "eos", "stop", "cache_full"
  size_t stop_offset = std::string::npos;  // for "stop": byte offset of the stop string in the output text
};

struct GenerationStats {
  int64_t prompt_tokens = 0;
  int64_t generated_tokens = 0;
  double prefill_seconds = 0;
  double first_token_seconds = 0;  // from start to the first sampled token of every sequence
  double decode_seconds = 0;
  std::vector<double> step_ms;     // each decode step
};

struct ScoreResult {
  std::vector<int32_t> argmax;  // [n] argmax of the logits at each position
  std::vector<float> logprob;   // [n - 1] log p(ids[t+1] | ids[0..t])
  double nll = 0;               // -sum(logprob)
};

class Engine {
 public:
  explicit Engine(Model& model) : model_(model) {}

  // token_bytes gives the raw bytes of an id (for stop strings); on_token is called as each
  // sequence gets a token (streaming). Sequences use cache ids 0..prompts.size()-1 and are freed
  // at the end. A prompt that does not fit in the cache, or in max positions, is Error(usage).
  std::vector<SequenceResult> generate(const std::vector<std::vector<int32_t>>& prompts,
                                       const GenerationSettings& settings,
                                       const std::function<std::string(int32_t)>& token_bytes,
                                       const std::function<void(int, int32_t)>& on_token,
                                       GenerationStats* stats);

  // Teacher-forced scoring of one sequence (prefilled in chunks), cache freed afterwards.
  ScoreResult score(const std::vector<int32_t>& ids);

 private:
  Model& model_;
};

}  // namespace kvrun
