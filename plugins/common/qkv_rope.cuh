// Device helpers for Cache::append_qkv (kvrun/plugin.hpp): reading a fused q | k | v projection's
// rows with the step's RoPE applied on the way, in Ops::rope_apply's arithmetic (rotate-half over
// the first rot_dim dims of a head; each product rounded on its own, then the sum/difference):
//   x1' = x1·c − x2·s,  x2' = x2·c + x1·s   with x1 = x[i], x2 = x[i + half], i < half = rot_dim / 2
// so the stored keys and the rotated queries are bit-identical to the rope_apply + append path.
// Shared by the cache plugins (cache.fp16, cache.int8); header-only, no state.
#pragma once

#include <cstdint>

namespace kvrun::qkv_rope {

// Where the rows of one step are.
struct Rows {
  const float* qkv = nullptr;  // [T, (H + 2·KVH)·D] f32: q heads, then k heads, then v heads
  float* q_out = nullptr;      // [T, H, D] f32 (may be qkv itself when T == 1)
  const float* cs = nullptr;   // [T, rot] f32: cos of angles 0 .. rot/2 − 1, then their sin
  int H = 0, KVH = 0, D = 0, rot = 0;
  __device__ __forceinline__ int64_t row_elems() const { return int64_t(H + 2 * KVH) * D; }
  __device__ __forceinline__ const float* q(int t, int h) const { return qkv + t * row_elems() + int64_t(h) * D; }
  __device__ __forceinline__ const float* k(int t, int g) const { return qkv + t * row_elems() + int64_t(H + g) * D; }
  __device__ __forceinline__ const float* v(int t, int g) const {
    return qkv + t * row_elems() + int64_t(H + KVH + g) * D;
  }
  __device__ __forceinline__ const float* ct(int t) const { return cs + int64_t(t) * rot; }
};

// The shapes the helpers below take: whole float4 chunks (D % 4 == 0), chunks that never straddle
// the rotated halves (rot % 8 == 0), rot ≤ D, at most 2 chunks per lane (D ≤ 256).
__host__ __device__ inline bool supported(int D, int rot) {
  return D > 0 && D % 4 == 0 && D <= 256 && rot > 0 && rot % 8 == 0 && rot <= D;
}

__device__ __forceinline__ float rot_lo(float x1, float x2, float c, float s) {
  return __fsub_rn(__fmul_rn(x1, c), __fmul_rn(x2, s));
}
__device__ __forceinline__ float rot_hi(float x2, float x1, float c, float s) {
  return __fadd_rn(__fmul_rn(x2, c), __fmul_rn(x1, s));
}
__device__ __forceinline__ float4 ld4(const float* p) { return __ldg(reinterpret_cast<const float4*>(p)); }

// Elements 4c .. 4c + 3 of the head row x [D] (16-byte aligned) rotated with ct [rot] (4c < D).
__device__ __forceinline__ float4 rotated_chunk(const float* x, const float* ct, int c, int rot) {
  const int e = 4 * c, half = rot / 2;
  const float4 own = ld4(x + e);
  if (e >= rot) return own;  // past the rotary dims (partial rotary)
  if (e < half) {
    const float4 p = ld4(x + e + half), co = ld4(ct + e), si = ld4(ct + half + e);
    return make_float4(rot_lo(own.x, p.x, co.x, si.x), rot_lo(own.y, p.y, co.y, si.y), rot_lo(own.z, p.z, co.z, si.z),
                       rot_lo(own.w, p.w, co.w, si.w));
  }
  const float4 p = ld4(x + e - half), co = ld4(ct + e - half), si = ld4(ct + e);
  return make_float4(rot_hi(own.x, p.x, co.x, si.x), rot_hi(own.y, p.y, co.y, si.y), rot_hi(own.z, p.z, co.z, si.z),
                     rot_hi(own.w, p.w, co.w, si.w));
}

// One warp writes q head h of token t rotated into q_out: every lane reads its chunks (and their
// partners) before any lane writes, so q_out may be the q part of qkv (T == 1, in place).
__device__ __forceinline__ void rotate_q_head(const Rows& r, int t, int h, int lane) {
  const float* x = r.q(t, h);
  const float* ct = r.ct(t);
  const int chunks = r.D / 4;
  float4 o[2];
#pragma unroll
  for (int i = 0; i < 2; ++i) {
    const int c = lane + 32 * i;
    if (c < chunks) o[i] = rotated_chunk(x, ct, c, r.rot);
  }
  __syncwarp();
  float4* dst = reinterpret_cast<float4*>(r.q_out + (int64_t(t) * r.H + h) * r.D);
#pragma unroll
  for (int i = 0; i < 2; ++i) {
    const int c = lane + 32 * i;
    if (c < chunks) dst[c] = o[i];
  }
}

}  // namespace kvrun::qkv_rope
