// kvrun — what the engine needs from a model: one forward step over a batch of sequences.
// Architectures implement it in models/ (the engine knows no architecture).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "kvrun/device.hpp"
#include "kvrun/kv.hpp"
#include "kvrun/plugin.hpp"

namespace kvrun {

struct ModelSummary {
  std::string name;  // model directory or synthetic shape name
  std::string arch;  // "qwen", "qwen2", "llama"
  int32_t vocab = 0;
  int hidden = 0;
  int num_layers = 0;
  int num_heads = 0;
  int num_kv_heads = 0;
  int head_dim = 0;
  int64_t max_positions = 0;  // trained context length (longer runs are allowed, with a warning)
  size_t weight_bytes = 0;    // on the device, everything the model holds (embeddings included)
  size_t embedding_bytes = 0; // the embedding table (only one row per token is read per step)
  // Bytes every decode step must read: all linears, norms and the lm_head (the embedding table
  // again when the lm_head is tied to it), not the embedding lookup itself.
  size_t step_weight_bytes = 0;
};

class Model {
 public:
  virtual ~Model() = default;
  virtual const ModelSummary& summary() const noexcept = 0;
  virtual Device& device() noexcept = 0;
  virtual Cache& cache() noexcept = 0;
  virtual int max_step_tokens() const noexcept = 0;
  // Runs one step. tokens: [step.num_tokens] host ids packed as StepBatch describes; the model
  // fills step's device pointers, reserves cache space (Error(device) if the cache is full) and
  // returns logits [logit_rows.size(), vocab] f32 in device memory for the listed token rows
  // (valid until the next forward).
  virtual TensorView forward(const std::vector<int32_t>& tokens, StepBatch& step,
                             const std::vector<int32_t>& logit_rows) = 0;
  // The same step with its token ids already in device memory: next_tokens(), [max_step_tokens()]
  // int32, which the caller wrote through the device queue before this call (Ops::sample of the
  // previous step writes there, in queue order). So a decode step can be issued before the host
  // has the previous step's tokens. The ids are not checked on the host: they must be in
  // [0, vocab), as Ops::sample's are. next_tokens() is valid while the model is attached.
  virtual int32_t* next_tokens() noexcept = 0;
  virtual TensorView forward_device(StepBatch& step, const std::vector<int32_t>& logit_rows) = 0;
};

}  // namespace kvrun
