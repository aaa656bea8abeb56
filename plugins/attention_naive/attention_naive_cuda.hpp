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

// The step as the kernels see it: the fused decode kernel's arguments (paged_decode::Args: out,
// out_bf16 — decode steps only, see decode_writes_bf16 —, q, layout, k, v and their u8 scales and
// zeros, block table, q_start, kv_len, the sizes, scale, and `scores` as the score-chunk workspace
// [scores_capacity] f32 that the decode kernel uses for its split-K partial results), plus:
struct Args : paged_decode::Args {
  const int32_t* token_seq = nullptr;  // [num_tokens] sequence of each token (the score kernels)
  // Decode: every sequence of the step has exactly one query token (num_tokens == num_seqs and
  // max_q_len == 1). With head_dim 64 or 128 the fused decode kernel runs instead of the three
  // score kernels.
  bool decode = false;
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
