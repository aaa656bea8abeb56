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
  // Overlapped decode: each decode step is issued before the host has taken the previous step's
  // ids, which go from the sampler straight into the model's input on the device (Model::
  // next_tokens), so the host's work per step (ids back, stop checks, the next step's metadata and
  // launch) runs while the device computes. Same outputs; a sequence that ends at an eos id or a
  // stop string is computed one step past its end (that id is dropped). automatic: on for a GPU,
  // off on the CPU (its queue finishes every step before returning: nothing to overlap) and with a
  // repetition penalty (sampled on the host); on: also on the CPU, a repetition penalty is refused.
  enum class Overlap : uint8_t { automatic, on, off };
  Overlap overlap = Overlap::automatic;
  // Polled once per step (prefill chunk or decode step); when it returns true, every sequence
  // still running ends with finish_reason "interrupted" and generate() returns what it has
  // (the CLI sets it from SIGINT).
  std::function<bool()> interrupted;
};

struct SequenceResult {
  std::vector<int32_t> prompt_ids;
  std::vector<int32_t> output_ids;  // generated ids only (an eos id that ended it included)
  std::string finish_reason;        // "length", "eos", "stop", "cache_full", "interrupted"
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
  // sequence gets a token (streaming). Sequences use cache ids 0..prompts.size()-1; a sequence's
  // cache blocks are freed as soon as it finishes, so the others can use them. A prompt that does
  // not fit in the cache is Error(usage); a sequence that needs a cache block when none is free
  // ends with finish_reason "cache_full" while the others go on.
  std::vector<SequenceResult> generate(const std::vector<std::vector<int32_t>>& prompts,
                                       const GenerationSettings& settings,
                                       const std::function<std::string(int32_t)>& token_bytes,
                                       const std::function<void(int, int32_t)>& on_token,
                                       GenerationStats* stats);

  // Whether generate() overlaps decode steps with these settings on a device of this kind
  // (GenerationSettings::overlap; false also where "on" is refused).
  static bool overlaps(const GenerationSettings& st, bool cpu_device) noexcept {
    using O = GenerationSettings::Overlap;
    return st.repetition_penalty == 1.f && (st.overlap == O::on || (st.overlap == O::automatic && !cpu_device));
  }

  // Teacher-forced scoring of one sequence (prefilled in chunks), cache freed afterwards.
  ScoreResult score(const std::vector<int32_t>& ids);

 private:
  Model& model_;
};

}  // namespace kvrun
