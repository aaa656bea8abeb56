// The fused decode attention over paged KV blocks (paged_decode.cu), shared by attention.naive and
// attention.flash (each plugin module links its own copy; nothing here is installed). A decode step
// — one query token per sequence, head_dim 64 or 128 — in one pass over K and V with an online
// softmax on CUDA cores: such a step is bound by the bytes of the cache, and one query row per
// (sequence, head) leaves tensor-core tiles 15/16 empty. Plain C++ (no CUDA headers), so the
// plugins' .cpp files include it with the host compiler.
#pragma once

#include <cstddef>
#include <cstdint>

namespace kvrun::paged_decode {

enum class KvLayout : int { f16 = 0, bf16 = 1, u8 = 2 };

// A decode step: one query token per sequence (the longest query 1 token, as many tokens as
// sequences) — the steps launch() takes (q_start[s] = s). Both attention plugins ask it of their
// StepBatch (max_q_len, num_tokens, num_seqs) to choose this kernel.
constexpr bool is_decode_step(int64_t max_q_len, int64_t num_tokens, int64_t num_seqs) {
  return max_q_len == 1 && num_tokens == num_seqs;
}

// The paged KV of one layer as the kernels see it.
struct Kv {
  const void* data;        // [num_blocks, Hkv, bt, D] element per layout
  const uint16_t* scale;   // [num_blocks, Hkv, bt] fp16 bits (u8 only)
  const uint8_t* zero;     // [num_blocks, Hkv, bt] (u8 only)
};

// A K/V row of D elements read as 16-byte chunks: E elements per chunk (u8: 16, fp16/bf16: 8).
template <KvLayout L>
struct RowVec {
  static constexpr int kSize = L == KvLayout::u8 ? 1 : 2;  // bytes per element
  static constexpr int E = 16 / kSize;                     // elements per 16-byte chunk
};

struct Args {
  const char* who = "attention";  // the plugin, for messages ("attention.naive")
  void* out = nullptr;            // [num_tokens, num_heads, head_dim] f32, or bf16 with out_bf16
  bool out_bf16 = false;          // each value the f32 result rounded to nearest even
  const float* q = nullptr;       // [num_tokens, num_heads, head_dim] f32
  KvLayout layout = KvLayout::f16;
  const void* k = nullptr;        // [num_blocks, num_kv_heads, block_tokens, head_dim] fp16/bf16 bits or u8 codes
  const void* v = nullptr;
  const uint16_t* k_scale = nullptr;  // [num_blocks, num_kv_heads, block_tokens] fp16 bits (u8 only)
  const uint16_t* v_scale = nullptr;
  const uint8_t* k_zero = nullptr;    // [num_blocks, num_kv_heads, block_tokens] (u8 only)
  const uint8_t* v_zero = nullptr;
  const int32_t* block_table = nullptr;  // [num_seqs, max_blocks] block ids
  int max_blocks = 0;
  int block_tokens = 0;
  const int32_t* q_start = nullptr;  // [num_seqs + 1] (q_start[s] = s in a decode step)
  const int32_t* kv_len = nullptr;   // [num_seqs] keys of each sequence, the step's own included
  int num_tokens = 0;                // = num_seqs
  int num_seqs = 0;
  int num_heads = 0;
  int num_kv_heads = 0;
  int head_dim = 0;                  // 64 or 128
  int max_kv_len = 0;                // an upper bound on kv_len (fixed for a captured graph)
  float scale = 0.f;                 // softmax scale
  float* scores = nullptr;           // workspace for split-K partial results
  size_t scores_capacity = 0;        // its floats: splits · num_tokens · num_heads · (head_dim + 2) at most
  int num_sms = 1;                   // of the device (split and block-size heuristics)
};

// Whether a step with this head_dim can run here (64 or 128).
constexpr bool supported_head_dim(int head_dim) { return head_dim == 64 || head_dim == 128; }

// Enqueues the decode attention of the step on `stream` (a cudaStream_t) of the current device:
// the decode kernel, and the combine kernel when the keys are split. No allocation, no host
// synchronization: capturable in a CUDA graph. Throws Error(usage/device) naming a.who.
void launch(const Args& a, void* stream);

// Loads every kernel instance on the current device (call once at creation, so that the first
// step's launches do not load modules inside a graph capture). Throws Error(device) naming who.
void load_kernels(const char* who);

}  // namespace kvrun::paged_decode
