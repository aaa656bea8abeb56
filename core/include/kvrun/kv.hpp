// kvrun — what a forward step looks like to the Cache and the Attention: the batch of sequences
// (StepBatch) and the cache memory in one of the standard layouts (KvView).
#pragma once

#include <cstdint>
#include <string_view>
#include <vector>

namespace kvrun {

// Standard KV layouts (DESIGN.md "Cache"). Blocks are
//   data  [num_blocks, num_kv_heads, block_tokens, head_dim]   (element type per layout)
//   scale [num_blocks, num_kv_heads, block_tokens] fp16 bits   (paged_u8_token_head only)
//   zero  [num_blocks, num_kv_heads, block_tokens] uint8       (paged_u8_token_head only)
// for keys and values separately. A third-party cache may declare another name (prefixed with its
// vendor, "example.paged_u4_grouped") whose meaning of these fields its documentation gives; only
// attention plugins that declare the same name can read it.
namespace layout {
inline constexpr std::string_view paged_f16 = "paged_f16";
inline constexpr std::string_view paged_bf16 = "paged_bf16";
inline constexpr std::string_view paged_u8_token_head = "paged_u8_token_head";
}  // namespace layout

// One forward step over a batch of sequences. Sequence s brings q_len[s] new tokens at absolute
// positions past_len[s] .. past_len[s] + q_len[s] - 1; tokens are packed sequence-major, so the
// activations of the step are [num_tokens, ...] with sequence s at rows q_start[s] .. q_start[s+1].
struct StepBatch {
  int num_seqs = 0;
  int num_tokens = 0;
  int max_q_len = 0;   // max over s of q_len[s]
  int max_kv_len = 0;  // max over s of past_len[s] + q_len[s]

  // Host copies.
  std::vector<int> seq_ids;    // [num_seqs] cache sequence ids
  std::vector<int> q_lens;     // [num_seqs]
  std::vector<int> past_lens;  // [num_seqs] tokens already in the cache before this step
  std::vector<int> q_starts;   // [num_seqs + 1] prefix sums of q_lens
  // [num_seqs] the length each sequence has once its prompt is prefilled (its prompt length);
  // models whose RoPE depends on the context length (Qwen v1 dynamic NTK) read it at prefill.
  std::vector<int> prompt_lens;

  // The same, in the device's memory (host pointers on the CPU backend). Filled by the model, and
  // written before the step's first kernel is enqueued: constant while the step's kernels run, so a
  // kernel may read them before its programmatic-dependent-launch wait (the KV append and the
  // decode attention do).
  const int32_t* d_q_start = nullptr;    // [num_seqs + 1]
  const int32_t* d_kv_len = nullptr;     // [num_seqs] past_len + q_len
  const int32_t* d_positions = nullptr;  // [num_tokens] absolute position of each token
  const int32_t* d_token_seq = nullptr;  // [num_tokens] batch index s of each token
};

// The cache memory of one layer, for the sequences of one StepBatch (already holding the step's
// new keys and values).
struct KvView {
  std::string_view layout;
  int num_kv_heads = 0;
  int head_dim = 0;
  int block_tokens = 0;
  const void* k = nullptr;  // [num_blocks, num_kv_heads, block_tokens, head_dim]
  const void* v = nullptr;  // [num_blocks, num_kv_heads, block_tokens, head_dim]
  const uint16_t* k_scale = nullptr;  // [num_blocks, num_kv_heads, block_tokens] fp16 bits
  const uint16_t* v_scale = nullptr;  // [num_blocks, num_kv_heads, block_tokens] fp16 bits
  const uint8_t* k_zero = nullptr;    // [num_blocks, num_kv_heads, block_tokens]
  const uint8_t* v_zero = nullptr;    // [num_blocks, num_kv_heads, block_tokens]
  // [num_seqs, max_blocks_per_seq] block ids (device memory), uploaded by Cache::reserve before the
  // step's kernels: constant while they run, like StepBatch's device arrays.
  const int32_t* block_table = nullptr;
  int max_blocks_per_seq = 0;
  // Parameters a layout defines beyond these fields (a third-party layout's group size, say):
  // a struct its documentation names, owned by the cache. Null for the standard layouts.
  const void* ext = nullptr;
};

}  // namespace kvrun
