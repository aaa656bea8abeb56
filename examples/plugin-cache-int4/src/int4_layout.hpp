// The KV layout "example.paged_u4_grouped": the contract between cache.int4 (which writes it)
// and attention.grouped (which reads it). A layout name is a promise about what the KvView's
// fields mean; kvrun itself never looks inside, it only matches names (the compatibility matrix).
//
// Keys and values separately, per layer, in blocks of block_tokens tokens:
//   k, v            [num_blocks, num_kv_heads, block_tokens, head_dim / 2] uint8: two 4-bit codes a
//                   byte, element 2i in the low nibble, 2i + 1 in the high one
//   k_scale, v_scale [num_blocks, num_kv_heads, block_tokens, head_dim / G] fp16 bits
//   k_zero, v_zero   [num_blocks, num_kv_heads, block_tokens, head_dim / G] uint8 in 0..15
//   ext              const Int4LayoutExt*: G, the group size along head_dim
// Quantization (asymmetric, per token, KV head and group of G elements along head_dim), with the
// group's range [lo, hi] widened to hold 0:
//   s = fp16((hi - lo) / 15) (1 if that is 0),  z = clamp(round(-lo / s), 0, 15),
//   q = clamp(round(x / s) + z, 0, 15),         x ≈ s · (q - z)
// so an element is off by at most one step s ≤ (row range) / 15, about half a step in practice.
#pragma once

#include <cmath>
#include <cstdint>
#include <string_view>

#include "kvrun/dtype.hpp"
#include "kvrun/kv.hpp"

namespace int4kv {

inline constexpr std::string_view kLayout = "example.paged_u4_grouped";

// KvView::ext of this layout. struct_size first, so a reader can tell a newer, longer struct.
struct Int4LayoutExt {
  uint32_t struct_size = sizeof(Int4LayoutExt);
  int32_t group_size = 32;
};

inline float clamp15(float v) { return v < 0.f ? 0.f : (v > 15.f ? 15.f : v); }

// x: [n] one (token, KV head) row; writes q [n / 2] packed codes, scale and zero [n / g].
inline void quantize_row(const float* x, int n, int g, uint8_t* q, uint16_t* scale, uint8_t* zero) {
  for (int g0 = 0, gi = 0; g0 < n; g0 += g, ++gi) {
    float lo = 0.f, hi = 0.f;
    for (int i = g0; i < g0 + g; ++i) {
      lo = x[i] < lo ? x[i] : lo;
      hi = x[i] > hi ? x[i] : hi;
    }
    uint16_t bits = kvrun::f32_to_f16((hi - lo) / 15.f);
    float s = kvrun::f16_to_f32(bits);
    if (!(s > 0.f) || !std::isfinite(s)) {
      bits = 0x3c00;  // 1.0: an all-zero group (or one fp16 cannot scale) still decodes
      s = 1.f;
    }
    const float z = clamp15(std::rint(-lo / s));
    scale[gi] = bits;
    zero[gi] = uint8_t(z);
    for (int i = g0; i < g0 + g; i += 2) {
      const uint8_t a = uint8_t(clamp15(std::rint(x[i] / s) + z));
      const uint8_t b = uint8_t(clamp15(std::rint(x[i + 1] / s) + z));
      q[i / 2] = uint8_t(a | (b << 4));
    }
  }
}

// The inverse of quantize_row for one row: dst [n] f32.
inline void dequantize_row(const uint8_t* q, const uint16_t* scale, const uint8_t* zero, int n, int g, float* dst) {
  for (int g0 = 0, gi = 0; g0 < n; g0 += g, ++gi) {
    const float s = kvrun::f16_to_f32(scale[gi]), z = float(zero[gi]);
    for (int i = g0; i < g0 + g; i += 2) {
      dst[i] = s * (float(q[i / 2] & 0x0f) - z);
      dst[i + 1] = s * (float(q[i / 2] >> 4) - z);
    }
  }
}

// Reads the key (which = 0) or value (which = 1) of token `pos` of the sequence whose block-table
// row is `table`, KV head `head`, from a view of this layout: dst [head_dim] f32.
inline void read_row(const kvrun::KvView& kv, int group, int which, const int32_t* table, int pos, int head, float* dst) {
  const int bt = kv.block_tokens, D = kv.head_dim, groups = D / group;
  const size_t r = (size_t(table[pos / bt]) * size_t(kv.num_kv_heads) + size_t(head)) * size_t(bt) + size_t(pos % bt);
  const uint8_t* data = static_cast<const uint8_t*>(which == 0 ? kv.k : kv.v) + r * size_t(D / 2);
  const uint16_t* scale = (which == 0 ? kv.k_scale : kv.v_scale) + r * size_t(groups);
  const uint8_t* zero = (which == 0 ? kv.k_zero : kv.v_zero) + r * size_t(groups);
  dequantize_row(data, scale, zero, D, group, dst);
}

// Bytes of one token of one KV head, K or V: the codes, then an fp16 scale and a byte of zero per group.
inline size_t row_bytes(int head_dim, int group) { return size_t(head_dim) / 2 + size_t(head_dim / group) * 3; }

}  // namespace int4kv
