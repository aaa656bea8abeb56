// kvrun — reading one KV row (one token, one KV head, head_dim values) of a KvView into f32 on
// the CPU, for every standard layout. The int8 dequantization is x = scale * (q - zero)
// (SPECS.md §1); cache and attention plugins on the CPU share these definitions.
#pragma once

#include <cstdint>
#include <cstring>

#include "kvrun/dtype.hpp"
#include "kvrun/kv.hpp"

#if defined(__F16C__) || defined(__AVX2__)
#include <immintrin.h>
#endif

namespace kvrun::kvrows {

enum class Layout { f16, bf16, u8 };

inline bool layout_of(std::string_view name, Layout* out) {
  if (name == layout::paged_f16) *out = Layout::f16;
  else if (name == layout::paged_bf16) *out = Layout::bf16;
  else if (name == layout::paged_u8_token_head) *out = Layout::u8;
  else return false;
  return true;
}

// Element index of (block, kv head, slot in block, dim 0) in the data arrays, and of its metadata.
inline size_t row_index(const KvView& kv, int32_t block, int head, int slot) {
  return ((size_t(block) * size_t(kv.num_kv_heads) + size_t(head)) * size_t(kv.block_tokens) + size_t(slot));
}

inline void f16_row_to_f32(const uint16_t* src, float* dst, int n) {
  int i = 0;
#if defined(__F16C__)
  for (; i + 8 <= n; i += 8)
    _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(src + i))));
#endif
  for (; i < n; ++i) dst[i] = f16_to_f32(src[i]);
}

inline void bf16_row_to_f32(const uint16_t* src, float* dst, int n) {
  for (int i = 0; i < n; ++i) dst[i] = bf16_to_f32(src[i]);
}

// dst[head_dim] = the key (which = 0) or value (which = 1) of token `pos` of a sequence whose
// block table row is `table`, KV head `head`.
inline void read_row(const KvView& kv, Layout layout, int which, const int32_t* table, int pos, int head, float* dst) {
  const int bt = kv.block_tokens, hd = kv.head_dim;
  const int32_t block = table[pos / bt];
  const size_t r = row_index(kv, block, head, pos % bt);
  const void* base = which == 0 ? kv.k : kv.v;
  switch (layout) {
    case Layout::f16:
      f16_row_to_f32(static_cast<const uint16_t*>(base) + r * size_t(hd), dst, hd);
      break;
    case Layout::bf16:
      bf16_row_to_f32(static_cast<const uint16_t*>(base) + r * size_t(hd), dst, hd);
      break;
    case Layout::u8: {
      const uint8_t* q = static_cast<const uint8_t*>(base) + r * size_t(hd);
      const float s = f16_to_f32((which == 0 ? kv.k_scale : kv.v_scale)[r]);
      const float z = float((which == 0 ? kv.k_zero : kv.v_zero)[r]);
      for (int i = 0; i < hd; ++i) dst[i] = s * (float(q[i]) - z);
      break;
    }
  }
}

// Vector helpers for CPU attention over head_dim-length rows.
inline float dot(const float* a, const float* b, int n) {
  int i = 0;
  float sum = 0.f;
#if defined(__AVX2__) && defined(__FMA__)
  __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
  for (; i + 16 <= n; i += 16) {
    acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), acc0);
    acc1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8), acc1);
  }
  acc0 = _mm256_add_ps(acc0, acc1);
  __m128 s4 = _mm_add_ps(_mm256_castps256_ps128(acc0), _mm256_extractf128_ps(acc0, 1));
  s4 = _mm_add_ps(s4, _mm_movehl_ps(s4, s4));
  s4 = _mm_add_ss(s4, _mm_shuffle_ps(s4, s4, 1));
  sum = _mm_cvtss_f32(s4);
#endif
  for (; i < n; ++i) sum += a[i] * b[i];
  return sum;
}

// y[n] += a * x[n]
inline void axpy(float a, const float* x, float* y, int n) {
  int i = 0;
#if defined(__AVX2__) && defined(__FMA__)
  const __m256 va = _mm256_set1_ps(a);
  for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, _mm256_fmadd_ps(va, _mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i)));
#endif
  for (; i < n; ++i) y[i] += a * x[i];
}

}  // namespace kvrun::kvrows
