// Device helpers for Cache::append_qkv (kvrun/plugin.hpp): reading a fused q | k | v projection's
// rows with the step's RoPE applied on the way, in Ops::rope_apply's arithmetic (rotate-half over
// the first rot_dim dims of a head; each product rounded on its own, then the sum/difference):
//   x1' = x1·c − x2·s,  x2' = x2·c + x1·s   with x1 = x[i], x2 = x[i + half], i < half = rot_dim / 2
// so the stored keys and the rotated queries are bit-identical to the rope_apply + append path.
// Shared by the cache plugins (cache.fp16, cache.int8); header-only, no state.
#pragma once

#include <cstdint>
#include <string>

#include "kvrun/error.hpp"
#include "qkv_append.hpp"

namespace kvrun::qkv_rope {

// Where the rows of one step are.
struct Rows {
  const float* qkv = nullptr;  // [T, (H + 2·KVH)·D] f32: q heads, then k heads, then v heads
  float* q_out = nullptr;      // [T, H, D] f32 (may be qkv itself when T == 1)
  const float* cs = nullptr;   // [T, rot] f32: cos of angles 0 .. rot/2 − 1, then their sin
  const float* q_scale = nullptr;  // [T] f32 or null: rotated q times q_scale[t] (Ops::scale_rows)
  int H = 0, KVH = 0, D = 0, rot = 0;
  __device__ __forceinline__ int64_t row_elems() const { return int64_t(H + 2 * KVH) * D; }
  __device__ __forceinline__ const float* q(int t, int h) const { return qkv + t * row_elems() + int64_t(h) * D; }
  __device__ __forceinline__ const float* k(int t, int g) const { return qkv + t * row_elems() + int64_t(H + g) * D; }
  __device__ __forceinline__ const float* v(int t, int g) const {
    return qkv + t * row_elems() + int64_t(H + KVH + g) * D;
  }
  __device__ __forceinline__ const float* ct(int t) const { return cs + int64_t(t) * rot; }
};

// Host: the Rows of a launch, after checking what the helpers below need (supported() shapes,
// 16-byte aligned qkv, q_out and cs); `who` names the plugin in the error. The kernels give each
// (token, KV head) and each (token, q head) one warp: *warps = num_tokens · (KVH + H).
inline Rows rows_of(const Source& src, int num_kv_heads, int head_dim, int num_tokens, int64_t* warps,
                    const char* who) {
  const auto a16 = [](const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; };
  if (!supported(head_dim, src.rot_dim) || !a16(src.qkv) || !a16(src.q_out) || !a16(src.cs))
    fail(ErrorKind::internal, std::string(who) + ": append_qkv needs head_dim % 4 == 0 (≤ 256), rot_dim % 8 == 0 "
                                                  "(≤ head_dim) and 16-byte aligned qkv, q_out and cs");
  Rows r;
  r.qkv = src.qkv;
  r.q_out = src.q_out;
  r.cs = src.cs;
  r.q_scale = src.q_scale;
  r.H = src.num_heads;
  r.KVH = num_kv_heads;
  r.D = head_dim;
  r.rot = src.rot_dim;
  *warps = int64_t(num_tokens) * (num_kv_heads + src.num_heads);
  return r;
}

__device__ __forceinline__ float rot_lo(float x1, float x2, float c, float s) {
  return __fsub_rn(__fmul_rn(x1, c), __fmul_rn(x2, s));
}
__device__ __forceinline__ float rot_hi(float x2, float x1, float c, float s) {
  return __fadd_rn(__fmul_rn(x2, c), __fmul_rn(x1, s));
}
__device__ __forceinline__ float4 ld4(const float* p) { return __ldg(reinterpret_cast<const float4*>(p)); }

// The cos and sin of the rotation for one 16-byte chunk c of a head row (elements 4c .. 4c + 3),
// from ct [rot] (Rows::ct): for a chunk in the first half of the rotary dims the angles 4c ..
// 4c + 3, in the second half 4c − rot/2 .. (zeros past the rotary dims, unused).
struct ChunkCs {
  float4 co, si;
};
__device__ __forceinline__ ChunkCs chunk_cs(const float* ct, int c, int rot) {
  const int e = 4 * c, half = rot / 2;
  if (e >= rot) return {make_float4(0.f, 0.f, 0.f, 0.f), make_float4(0.f, 0.f, 0.f, 0.f)};
  const int a = e < half ? e : e - half;
  return {ld4(ct + a), ld4(ct + half + a)};
}

// Elements 4c .. 4c + 3 of the head row x [D] (16-byte aligned) rotated with cs = chunk_cs(ct, c,
// rot) (4c < D).
__device__ __forceinline__ float4 rotated_chunk(const float* x, const ChunkCs& cs, int c, int rot) {
  const int e = 4 * c, half = rot / 2;
  const float4 own = ld4(x + e);
  if (e >= rot) return own;  // past the rotary dims (partial rotary)
  const float4 &co = cs.co, &si = cs.si;
  if (e < half) {
    const float4 p = ld4(x + e + half);
    return make_float4(rot_lo(own.x, p.x, co.x, si.x), rot_lo(own.y, p.y, co.y, si.y), rot_lo(own.z, p.z, co.z, si.z),
                       rot_lo(own.w, p.w, co.w, si.w));
  }
  const float4 p = ld4(x + e - half);
  return make_float4(rot_hi(own.x, p.x, co.x, si.x), rot_hi(own.y, p.y, co.y, si.y), rot_hi(own.z, p.z, co.z, si.z),
                     rot_hi(own.w, p.w, co.w, si.w));
}

// Where a step's token goes in a paged cache: the block table, token → sequence and position.
struct Slots {
  const int32_t* table = nullptr;      // [num_seqs, max_blocks] block ids
  const int32_t* token_seq = nullptr;  // [num_tokens] step sequence index of each token
  const int32_t* positions = nullptr;  // [num_tokens] absolute position of each token
  int max_blocks = 0;
  int num_tokens = 0;
  int block_tokens = 0;

  // The metadata row of token t's KV head h (of KVH) in the cache, (block · KVH + h) ·
  // block_tokens + position % block_tokens (times head_dim: its first element). Reads only the
  // step's metadata and block table: callable before a programmatic-dependent-launch wait.
  __device__ __forceinline__ int64_t meta_row(int t, int h, int KVH) const {
    const int s = token_seq[t], pos = positions[t];
    const int32_t block = table[int64_t(s) * max_blocks + pos / block_tokens];
    return (int64_t(block) * KVH + h) * block_tokens + pos % block_tokens;
  }
};

// One warp's row of an append_qkv kernel (blockIdx.x · warps per block + warp): rows r < T·KVH
// are (token, KV head) r, the next T·H rows (token, q head) r − T·KVH, the rest nothing.
// plan_row reads only what is fixed before the step's kernels run or written before the kernel
// that produced qkv: the step's metadata and block table (uploaded before the step's first
// kernel; StepBatch, KvView) and the rope table cs (Ops::rope_table, run before the q | k | v
// projection). So the kernels call it before their programmatic-dependent-launch wait, and only
// the reads of qkv itself wait for the previous kernel: the slot's two dependent loads (token →
// sequence, then its block id) and the cos/sin loads are off the step's critical path.
struct RowPlan {
  enum Kind : int { none = 0, kv = 1, q = 2 } kind = none;
  int t = 0, h = 0;       // token; KV head (kv) or q head (q)
  int64_t meta_row = 0;   // kv: (block · KVH + h) · block_tokens + position % block_tokens
  float f = 1.f;          // q: q_scale[t] (1 without)
  ChunkCs cs[2];          // chunk_cs of the lane's chunks lane and lane + 32 (those below D / 4)
};
__device__ __forceinline__ RowPlan plan_row(const Rows& in, const Slots& sl, int64_t row, int lane) {
  RowPlan p;
  const int64_t kv_rows = int64_t(sl.num_tokens) * in.KVH;
  if (row < kv_rows) {
    p.kind = RowPlan::kv;
    p.t = int(row / in.KVH);
    p.h = int(row % in.KVH);
    p.meta_row = sl.meta_row(p.t, p.h, in.KVH);
  } else if (row - kv_rows < int64_t(sl.num_tokens) * in.H) {
    p.kind = RowPlan::q;
    p.t = int((row - kv_rows) / in.H);
    p.h = int((row - kv_rows) % in.H);
    if (in.q_scale) p.f = in.q_scale[p.t];
  } else {
    return p;
  }
#pragma unroll
  for (int i = 0; i < 2; ++i) {
    const int c = lane + 32 * i;
    if (c < in.D / 4) p.cs[i] = chunk_cs(in.ct(p.t), c, in.rot);
  }
  return p;
}

// One warp writes q head p.h of token p.t (a RowPlan::q row) rotated (and scaled by q_scale[t])
// into q_out: every lane reads its chunks (and their partners) before any lane writes, so q_out
// may be the q part of qkv (T == 1, in place).
__device__ __forceinline__ void rotate_q_head(const Rows& r, const RowPlan& p, int lane) {
  const float* x = r.q(p.t, p.h);
  const int chunks = r.D / 4;
  float4 o[2];
#pragma unroll
  for (int i = 0; i < 2; ++i) {
    const int c = lane + 32 * i;
    if (c < chunks) {
      o[i] = rotated_chunk(x, p.cs[i], c, r.rot);
      if (r.q_scale)
        o[i] = make_float4(__fmul_rn(o[i].x, p.f), __fmul_rn(o[i].y, p.f), __fmul_rn(o[i].z, p.f),
                           __fmul_rn(o[i].w, p.f));
    }
  }
  __syncwarp();
  float4* dst = reinterpret_cast<float4*>(r.q_out + (int64_t(p.t) * r.H + p.h) * r.D);
#pragma unroll
  for (int i = 0; i < 2; ++i) {
    const int c = lane + 32 * i;
    if (c < chunks) dst[c] = o[i];
  }
}

}  // namespace kvrun::qkv_rope
