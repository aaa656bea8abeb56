// kvrun — the decoder-only transformer of Qwen (v1), Qwen2/Qwen2.5 and Llama as one recipe:
// embedding → N × (RMSNorm → attention with RoPE over the Cache → residual → RMSNorm → SwiGLU MLP
// → residual) → RMSNorm → lm_head. Kernels live in the backends and plugins.
#pragma once

#include <array>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "kvrun/model.hpp"
#include "kvrun/models/checkpoint.hpp"
#include "kvrun/plugin.hpp"

namespace kvrun {

// A published shape with random weights (benchmarks): "qwen-7b", "qwen2.5-7b" (SPECS.md §3).
ModelConfig synthetic_config(const std::string& name);

class Transformer final : public Model {
 public:
  // Loads every weight of `ck` onto `dev` through `weights` (linears) and directly (embedding,
  // norms, lm_head stay in their checkpoint dtype). Error(model) naming the tensor on mismatch.
  Transformer(const ModelConfig& cfg, const Checkpoint& ck, std::shared_ptr<WeightFormat> weights, Device& dev,
              std::string name);
  // Random weights of cfg's shape, built on the device (no checkpoint).
  Transformer(const ModelConfig& cfg, uint64_t seed, std::shared_ptr<WeightFormat> weights, Device& dev,
              std::string name);
  ~Transformer() override;

  // Connects the KV cache and the attention operator, and sizes the step workspace. With
  // use_graphs and a queue that has graphs, decode steps (every q_len = 1) are captured once per
  // shape and replayed.
  void attach(std::shared_ptr<Cache> cache, std::shared_ptr<Attention> attention, int max_step_tokens,
              bool use_graphs = true);
  // Drops the cache, the attention operator, the step workspace and the captured graphs (their
  // memory is returned), e.g. between benchmark rows; forward() needs attach() again.
  void detach();
  // Decode steps replayed from a graph / captured so far (for reports and tests).
  int64_t graph_replays() const noexcept { return graph_replays_; }
  int64_t graph_captures() const noexcept { return graph_captures_; }

  const ModelSummary& summary() const noexcept override { return summary_; }
  Device& device() noexcept override { return dev_; }
  Cache& cache() noexcept override { return *cache_; }
  int max_step_tokens() const noexcept override { return max_step_tokens_; }
  TensorView forward(const std::vector<int32_t>& tokens, StepBatch& step,
                     const std::vector<int32_t>& logit_rows) override;
  int32_t* next_tokens() noexcept override;
  TensorView forward_device(StepBatch& step, const std::vector<int32_t>& logit_rows) override;

  const ModelConfig& config() const noexcept { return cfg_; }

 private:
  struct Layer;
  struct Workspace;
  void init_summary(std::string name);
  // forward() and forward_device(): tokens null means the ids are in ws_->ids already.
  TensorView run_step(const std::vector<int32_t>* tokens, StepBatch& step, const std::vector<int32_t>& logit_rows);
  // The device work of one step (no host synchronization, no allocation): capturable.
  // d_rows: [R] the tokens whose logits are wanted, or null for every token in order (R = T).
  void compute(const StepBatch& step, int R, const float* d_bases, const float* d_logn, const int32_t* d_rows);

  ModelConfig cfg_;
  Device& dev_;
  std::shared_ptr<WeightFormat> weights_;
  std::vector<std::unique_ptr<Layer>> layers_;
  Buffer<uint8_t> embed_;       // [vocab, hidden] in embed_dtype_
  DType embed_dtype_ = DType::bf16;
  Buffer<uint8_t> final_norm_;  // [hidden] in norm_dtype_
  DType norm_dtype_ = DType::bf16;
  Buffer<uint8_t> lm_head_;     // [vocab, hidden] in lm_head_dtype_; empty when tied to embed_
  DType lm_head_dtype_ = DType::bf16;
  std::shared_ptr<Cache> cache_;
  std::shared_ptr<Attention> attention_;
  std::unique_ptr<Workspace> ws_;
  int max_step_tokens_ = 0;
  std::vector<float> ntk_base_;  // [max seqs] Qwen v1 dynamic-NTK RoPE base per cache sequence
  ModelSummary summary_;
  // Decode graphs by shape: (sequences, logit rows, kv-length bucket, block table address, stride,
  // logit rows = every token in order).
  bool use_graphs_ = false;
  // The cache appends straight from the fused q | k | v rows with RoPE on the way
  // (Cache::append_qkv; KVRUN_APPEND_QKV=0 turns it off for comparisons).
  bool append_qkv_ = false;
  bool attn_bf16_ = true;  // KVRUN_ATTN_BF16 (read at attach)
  std::map<std::array<int64_t, 6>, void*> graphs_;
  std::set<std::array<int64_t, 6>> seen_shapes_;  // shapes run once eagerly (workspaces sized)
  int64_t graph_replays_ = 0, graph_captures_ = 0;
};

}  // namespace kvrun
