// attention.flash — the CUDA half: tensor-core tiled attention with an online softmax over paged
// fp16/bf16 blocks, split along the sequence for short query batches (attention_flash_cuda.cu).
// Plain C++ (no CUDA headers), so plugin.cpp builds with the host compiler.
#pragma once

#include <cstddef>
#include <cstdint>

namespace kvrun::attention_flash_cuda {

// Split-K limits: at most kMaxSplits parts per sequence; the partial results of a step fit a
// workspace of kMaxSplits · num_heads · min(max_tokens_per_step, kSplitTokens) rows.
constexpr int kMaxSplits = 16;
constexpr int kSplitTokens = 32;

// True for the head_dim values the kernels are built for (64, 128).
bool supports_head_dim(int head_dim);

struct Args {
  void* out = nullptr;       // [num_tokens, num_heads, head_dim] f32 (bf16 with out_bf16), device
  bool out_bf16 = false;     // decode steps only (writes_bf16): the f32 result rounded to nearest even
  const float* q = nullptr;  // [num_tokens, num_heads, head_dim] f32, device
  bool bf16 = false;         // element type of k and v: bf16 (true) or fp16 (false)
  const void* k = nullptr;   // [num_blocks, num_kv_heads, block_tokens, head_dim] 16-bit elements
  const void* v = nullptr;   // [num_blocks, num_kv_heads, block_tokens, head_dim] 16-bit elements
  const int32_t* block_table = nullptr;  // [num_seqs, max_blocks] block ids
  int max_blocks = 0;
  int block_tokens = 0;
  const int32_t* q_start = nullptr;  // [num_seqs + 1] first token row of each sequence
  const int32_t* kv_len = nullptr;   // [num_seqs] past_len + q_len
  int num_seqs = 0;
  int num_tokens = 0;
  int max_q_len = 0;   // grid size only; the kernels read the lengths from q_start and kv_len
  int max_kv_len = 0;  // split heuristic only
  int num_heads = 0;
  int num_kv_heads = 0;
  int head_dim = 0;
  float scale = 0.f;
  float* partial_o = nullptr;   // workspace [partial_rows, head_dim] f32 (split-K partial outputs)
  float* partial_ml = nullptr;  // workspace [partial_rows, 2] f32 (running max, sum per partial row)
  int64_t partial_rows = 0;     // capacity, in (split, token, head) rows
  bool decode = false;          // one query token per sequence (num_tokens == num_seqs, max_q_len == 1)
  int num_sms = 0;              // streaming multiprocessors of the device
};

// Whether a step with these properties runs the shared decode kernel (plugins/common/paged_decode.cu)
// rather than the tensor-core tiles: one query token per sequence (decode), head_dim 64 or 128,
// KVRUN_FLASH_DECODE not 0. Such steps may write a bf16 output.
bool uses_decode_kernel(bool decode, int head_dim);

// Enqueues the attention of the step on `stream` (a cudaStream_t) of CUDA device `device`.
// No allocation, no host synchronization: capturable in a CUDA graph. Throws Error(usage) for an
// unsupported head_dim, Error(device) when a launch fails.
void forward(const Args& a, int device, void* stream);

// Loads the kernels on `device` (call once at creation) and returns its number of SMs.
int prepare(int device);

}  // namespace kvrun::attention_flash_cuda
