// cache.int8 — the CUDA half: host launchers for the quantize-on-write append kernel
// (cache_int8_cuda.cu). Plain C++ (no CUDA headers), so plugin.cpp builds with the host compiler.
#pragma once

#include <cstdint>

#include "qkv_append.hpp"

namespace kvrun::cache_int8_cuda {

struct AppendArgs {
  const float* k = nullptr;         // [num_tokens, num_kv_heads, head_dim] f32, device
  const float* v = nullptr;         // [num_tokens, num_kv_heads, head_dim] f32, device
  uint8_t* k_cache = nullptr;       // [num_blocks, num_kv_heads, block_tokens, head_dim] uint8 codes
  uint8_t* v_cache = nullptr;       // [num_blocks, num_kv_heads, block_tokens, head_dim] uint8 codes
  uint16_t* k_scale = nullptr;      // [num_blocks, num_kv_heads, block_tokens] fp16 bits
  uint16_t* v_scale = nullptr;      // [num_blocks, num_kv_heads, block_tokens] fp16 bits
  uint8_t* k_zero = nullptr;        // [num_blocks, num_kv_heads, block_tokens]
  uint8_t* v_zero = nullptr;        // [num_blocks, num_kv_heads, block_tokens]
  const int32_t* block_table = nullptr;  // [num_seqs, max_blocks] block ids, row = step sequence
  const int32_t* token_seq = nullptr;    // [num_tokens] step sequence index of each token
  const int32_t* positions = nullptr;    // [num_tokens] absolute position of each token
  int max_blocks = 0;
  int num_tokens = 0;
  int num_kv_heads = 0;
  int head_dim = 0;
  int block_tokens = 0;
};

// Cache::append_qkv: keys (rotated) and values straight from a fused q | k | v projection, the
// queries rotated into q_out; the cache and step fields as in AppendArgs.
struct AppendQkvArgs : AppendArgs {
  qkv_rope::Source src;
};
// Enqueues it like append(), bit-identical to rope_apply + append() (shapes: qkv_rope::supported).
void append_qkv(const AppendQkvArgs& a, int device, void* stream);

// Enqueues the quantization of the step's keys and values on `stream` (a cudaStream_t) of CUDA
// device `device`: codes, scales and zero points bit-identical to int8kv::quantize_row on the CPU.
// No allocation, no host synchronization: capturable in a CUDA graph. Throws Error(device).
void append(const AppendArgs& a, int device, void* stream);

// Loads the kernel on `device` (call once at creation, before any graph capture).
void prepare(int device);

}  // namespace kvrun::cache_int8_cuda
