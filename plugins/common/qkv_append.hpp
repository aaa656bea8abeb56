// Host side of Cache::append_qkv (kvrun/plugin.hpp) for the cache plugins: what their launchers
// take and which shapes their kernels (qkv_rope.cuh) handle. Plain C++, so plugin.cpp builds with
// the host compiler.
#pragma once

#include "kvrun/tensor.hpp"

namespace kvrun::qkv_rope {

// The fused q | k | v rows an append_qkv reads and the queries it writes (device memory).
struct Source {
  const float* qkv = nullptr;  // [num_tokens, (num_heads + 2·num_kv_heads)·head_dim] f32
  float* q_out = nullptr;      // [num_tokens, num_heads, head_dim] f32 (may be qkv when num_tokens == 1)
  const float* cs = nullptr;   // [num_tokens, rot_dim] f32: cos of the angles 0 .. rot_dim/2 − 1, then their sin
  const float* q_scale = nullptr;  // [num_tokens] f32 or null: factor of each token's rotated q
  int num_heads = 0;
  int rot_dim = 0;
};

inline Source source_of(int num_heads, const TensorView& qkv, const TensorView& q_out, const TensorView& cs,
                        const float* q_scale) {
  return Source{qkv.as<const float>(), q_out.as<float>(), cs.as<const float>(), q_scale, num_heads, int(cs.cols())};
}

// The shapes the kernels take: whole float4 chunks (head_dim % 4 == 0), chunks that never straddle
// the rotated halves (rot_dim % 8 == 0), rot_dim ≤ head_dim, at most 2 chunks per lane (head_dim ≤ 256).
inline bool supported(int head_dim, int rot_dim) {
  return head_dim > 0 && head_dim % 4 == 0 && head_dim <= 256 && rot_dim > 0 && rot_dim % 8 == 0 && rot_dim <= head_dim;
}

}  // namespace kvrun::qkv_rope
