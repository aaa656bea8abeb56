// attention.naive — the CUDA half: materialized scores in query chunks (attention_naive_cuda.cu).
// Plain C++ (no CUDA headers), so plugin.cpp builds with the host compiler.
#pragma once

#include <cstddef>
#include <cstdint>

#include "paged_decode.hpp"

namespace kvrun::attention_naive_cuda {

// head_dim limit of the CUDA kernels (a warp holds a K or V row in registers, 8 values per lane).
constexpr int kMaxHeadDim = 256;

using KvLayout = paged_decode::KvLayout;

struct Args {
  void* out = nullptr;       // [num_tokens, num_heads, head_dim] f32 (bf16 with out_bf16), device
  // out is bf16 (each value the f32 result rounded to nearest even); decode steps only
  // (decode_writes_bf16).
  bool out_bf16 = false;
  const float* q = nullptr;  // [num_tokens, num_heads, head_dim] f32, device
  KvLayout layout = KvLayout::f16;
  const void* k = nullptr;   // [num_blocks, num_kv_heads, block_tokens, head_dim] fp16/bf16 bits or uint8 codes
  const void* v = nullptr;   // [num_blocks, num_kv_heads, block_tokens, head_dim]
  const uint16_t* k_scale = nullptr;  // [num_blocks, num_kv_heads, block_tokens] fp16 bits (u8 only)
  const uint16_t* v_scale = nullptr;  // [num_blocks, num_kv_heads, block_tokens] fp16 bits (u8 only)
  const uint8_t* k_zero = nullptr;    // [num_blocks, num_kv_heads, block_tokens] (u8 only)
  const uint8_t* v_zero = nullptr;    // [num_blocks, num_kv_heads, block_tokens] (u8 only)
  const int32_t* block_table = nullptr;  // [num_seqs, max_blocks] block ids
  int max_blocks = 0;
  int block_tokens = 0;
  const int32_t* q_start = nullptr;    // [num_seqs + 1] first token row of each sequence
  const int32_t* kv_len = nullptr;     // [num_seqs] past_len + q_len
  const int32_t* token_seq = nullptr;  // [num_tokens] sequence of each token
  int num_tokens = 0;
  int num_heads = 0;
  int num_kv_heads = 0;
  int head_dim = 0;
  int max_kv_len = 0;  // of the step: the row stride of the score chunk
  float scale = 0.f;
  float* scores = nullptr;    // workspace [scores_capacity] f32 (chunk of [tokens, num_heads, max_kv_len])
  size_t scores_capacity = 0;  // floats
  // Decode: every sequence of the step has exactly one query token (num_tokens == num_seqs and
  // max_q_len == 1). With head_dim 64 or 128 the fused decode kernel runs instead of the three
  // score kernels; it uses `scores` as its split-K partial-result workspace.
  bool decode = false;
  int num_seqs = 0;
  int num_sms = 1;  // of the device (split heuristic)
};

// Enqueues the attention of the step on `stream` (a cudaStream_t) of CUDA device `device`: for
// each chunk of tokens that fits the score workspace, Q·Kᵀ (dequantizing int8 rows in registers),
// a row softmax in fp32, then P·V; or, for a decode step (Args::decode) with head_dim 64/128, one
// fused pass over K and V with an online softmax (plus a combine kernel when the keys are split). No allocation, no host synchronization: capturable in a CUDA
// graph. Throws Error(usage) when one token's scores do not fit the workspace, Error(device) when a
// launch fails.
void forward(const Args& a, int device, void* stream);

// Whether forward() takes out_bf16 for a step with these properties: the fused decode path only
// (one query token per sequence, head_dim 64 or 128, KVRUN_NAIVE_DECODE not 0).
bool decode_writes_bf16(bool decode, int head_dim, int num_seqs, int num_tokens);

// Loads the kernels on `device` and allows the dynamic shared memory of the Q·Kᵀ kernel
// (group · head_dim f32 values); call once at creation. Returns the device's SM count. Throws
// Error(usage) when it cannot fit.
int prepare(int device, int num_heads, int num_kv_heads, int head_dim);

}  // namespace kvrun::attention_naive_cuda
