// weights.gptq — the CPU Linear. The weights stay packed; nothing holds a whole f32 copy.
//
//  * small M (decode): a fused dequantize-and-dot kernel. Each thread owns a range of output
//    columns; for blocks of 8·C columns it walks K a unit at a time (one word row of qweight, 8
//    columns per ymm), unpacks the codes in registers (byte shuffles for 2/4/8 bits), subtracts
//    the group's zero (exact in f32) and accumulates x·(q − z) per group; at every group change
//    the group sums are scaled and added to the outputs. Each packed byte is read from memory once
//    per block of up to 8 x-rows (later blocks find the column block in cache).
//  * larger M (prefill): per thread, tiles of kNB columns × kKB rows are dequantized to f32
//    (a per-thread buffer of 256 KiB) and multiplied with the CPU GEMM (kvrun::cpu::gemm_f32),
//    accumulating over K blocks.
// Act-order (rows sorted by group at load): x[:, perm] is gathered once per forward.
#include <immintrin.h>

#include <algorithm>
#include <cstring>
#include <utility>
#include <vector>

#include "gptq.hpp"
#include "kvrun/cpu/gemm.hpp"
#include "kvrun/cpu/parallel.hpp"
#include "kvrun/cpu/simd.hpp"

namespace kvrun::gptq {
namespace {

// Measured on a Qwen-7B MLP shape (K 4096, N 11008, int4): the fused kernel runs at a fixed rate
// per x-row block, so past M = 16 the GEMM on dequantized tiles is faster; tiles of 256 × 256
// (256 KiB per thread, L2) run the M = 512 product at the speed of the bf16 GEMM.
constexpr int64_t kSmallM = 16;  // M at or below this: fused kernel
constexpr int64_t kNB = 256;     // prefill tile: columns
constexpr int64_t kKB = 256;     // prefill tile: rows (a multiple of every unit)

struct Ctx {
  const uint32_t* qw;  // [words_rows, N]
  const uint16_t* sc;  // [groups, N] f16
  const uint8_t* zp;   // [groups, N]
  const int32_t* ug;   // [units]
  const float* bias;   // [N] or null
  int64_t N, units;
  int bits;
};

// ---- fused small-M kernel ----------------------------------------------------------------------

// Code J (0 .. unit_rows-1) of 8 columns whose unit words are w[0..unit_words).
template <int BITS, int J>
inline __m256i extract(const __m256i* w, __m256i mask) noexcept {
  constexpr int bit = BITS * J, wi = bit / 32, off = bit % 32;
  __m256i v = w[wi];
  if constexpr (off != 0) v = _mm256_srli_epi32(v, off);
  if constexpr (off + BITS > 32) {
    v = _mm256_or_si256(v, _mm256_slli_epi32(w[wi + 1], 32 - off));
  } else if constexpr (off + BITS == 32) {
    return v;  // the top bits of the word: nothing above them
  }
  return _mm256_and_si256(v, mask);
}

// 2, 4 and 8 bits: the codes of a word are spread over 8/BITS vectors of bytes (code J is byte
// J / P of vector J % P, P = 8 / BITS); a byte shuffle moves code J of every word into the low byte
// of its lane and OR-ing 0x4B000000 makes the float 2^23 + q exactly (port 5 and one logic op
// instead of shift, mask and convert).
template <int BITS>
inline void split_bytes(__m256i w, __m256i* bv) noexcept {
  if constexpr (BITS == 8) {
    bv[0] = w;
  } else {
    const __m256i bm = _mm256_set1_epi8(char((1 << BITS) - 1));
#pragma GCC unroll 4
    for (int t = 0; t < 8 / BITS; ++t) bv[t] = _mm256_and_si256(_mm256_srli_epi32(w, BITS * t), bm);
  }
}
template <int B>
inline __m256i byte_ctl() noexcept {
  constexpr char z = char(0x80);
  return _mm256_setr_epi8(B, z, z, z, 4 + B, z, z, z, 8 + B, z, z, z, 12 + B, z, z, z,
                          B, z, z, z, 4 + B, z, z, z, 8 + B, z, z, z, 12 + B, z, z, z);
}
template <int BITS, int J>
inline __m256 code_plus_2p23(const __m256i* bv) noexcept {
  constexpr int P = 8 / BITS;
  return _mm256_castsi256_ps(
      _mm256_or_si256(_mm256_shuffle_epi8(bv[J % P], byte_ctl<J / P>()), _mm256_set1_epi32(0x4B000000)));
}
constexpr float k2p23 = 8388608.f;

template <int N, class F>
inline void unrolled(F&& f) {
  [&]<int... J>(std::integer_sequence<int, J...>) { (f.template operator()<J>(), ...); }(std::make_integer_sequence<int, N>{});
}

// y[m0 .. m0+MB) × columns [n0, n0 + 8·C) = x · W + bias.
template <int BITS, int MB, int C>
void fused_block(const Ctx& c, int64_t n0, const float* x, int64_t ldx, float* y, int64_t ldy) {
  constexpr int R = unit_rows(BITS), UW = unit_words(BITS);
  const __m256i mask = _mm256_set1_epi32((1 << BITS) - 1);
  alignas(32) float out[MB][8 * C];
  for (int m = 0; m < MB; ++m)
    for (int i = 0; i < 8 * C; ++i) out[m][i] = 0.f;
  __m256 acc[MB][C];
  __m256 zf[C];
#pragma GCC unroll 8
  for (int j = 0; j < C; ++j) {
    zf[j] = _mm256_setzero_ps();
#pragma GCC unroll 8
    for (int m = 0; m < MB; ++m) acc[m][j] = _mm256_setzero_ps();
  }
  int32_t cur = -1;
  auto flush = [&] {
#pragma GCC unroll 8
    for (int j = 0; j < C; ++j) {
      const __m256 s = cpu::simd::load8_f16(c.sc + int64_t(cur) * c.N + n0 + 8 * j);
#pragma GCC unroll 8
      for (int m = 0; m < MB; ++m) _mm256_store_ps(&out[m][8 * j], _mm256_fmadd_ps(s, acc[m][j], _mm256_load_ps(&out[m][8 * j])));
    }
  };
  for (int64_t u = 0; u < c.units; ++u) {
    const int32_t g = c.ug[u];
    if (g != cur) {
      if (cur >= 0) flush();
      cur = g;
#pragma GCC unroll 8
      for (int j = 0; j < C; ++j) {
        const __m128i z8 = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(c.zp + int64_t(g) * c.N + n0 + 8 * j));
        zf[j] = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(z8));
        if constexpr (BITS != 3) zf[j] = _mm256_add_ps(zf[j], _mm256_set1_ps(k2p23));  // exact
#pragma GCC unroll 8
        for (int m = 0; m < MB; ++m) acc[m][j] = _mm256_setzero_ps();
      }
    }
    constexpr int NV = BITS == 3 ? UW : 8 / BITS;  // vectors per column block: words, or byte vectors
    __m256i w[C][NV];
    const uint32_t* wp = c.qw + u * UW * c.N + n0;
#pragma GCC unroll 8
    for (int j = 0; j < C; ++j) {
      if constexpr (BITS == 3) {
#pragma GCC unroll 4
        for (int i = 0; i < UW; ++i) w[j][i] = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(wp + i * c.N + 8 * j));
      } else {
        split_bytes<BITS>(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(wp + 8 * j)), w[j]);
      }
    }
    const float* xp = x + u * R;
    unrolled<R>([&]<int J>() {
      __m256 xb[MB];
#pragma GCC unroll 8
      for (int m = 0; m < MB; ++m) xb[m] = _mm256_broadcast_ss(xp + m * ldx + J);
#pragma GCC unroll 8
      for (int j = 0; j < C; ++j) {
        __m256 q;
        if constexpr (BITS == 3) q = _mm256_sub_ps(_mm256_cvtepi32_ps(extract<BITS, J>(w[j], mask)), zf[j]);
        else q = _mm256_sub_ps(code_plus_2p23<BITS, J>(w[j]), zf[j]);  // (2^23 + q) − (2^23 + z), exact
#pragma GCC unroll 8
        for (int m = 0; m < MB; ++m) acc[m][j] = _mm256_fmadd_ps(xb[m], q, acc[m][j]);
      }
    });
  }
  if (cur >= 0) flush();
  for (int m = 0; m < MB; ++m)
    for (int j = 0; j < C; ++j) {
      __m256 v = _mm256_load_ps(&out[m][8 * j]);
      if (c.bias) v = _mm256_add_ps(v, _mm256_loadu_ps(c.bias + n0 + 8 * j));
      _mm256_storeu_ps(y + m * ldy + n0 + 8 * j, v);
    }
}

// Columns [n0, n1) one at a time (the last N % 8 columns), any bits, any M.
void scalar_columns(const Ctx& c, int64_t n0, int64_t n1, int64_t M, const float* x, int64_t ldx, float* y,
                    int64_t ldy) {
  const int R = unit_rows(c.bits);
  for (int64_t n = n0; n < n1; ++n)
    for (int64_t m = 0; m < M; ++m) {
      float total = 0.f, acc = 0.f;
      int32_t cur = -1;
      for (int64_t u = 0; u < c.units; ++u) {
        const int32_t g = c.ug[u];
        if (g != cur) {
          if (cur >= 0) total += f16_to_f32(c.sc[int64_t(cur) * c.N + n]) * acc;
          cur = g;
          acc = 0.f;
        }
        const float z = c.zp[int64_t(g) * c.N + n];
        for (int r = 0; r < R; ++r)
          acc += x[m * ldx + u * R + r] * (float(code_at(c.qw + n, c.N, c.bits, u * R + r)) - z);
      }
      if (cur >= 0) total += f16_to_f32(c.sc[int64_t(cur) * c.N + n]) * acc;
      y[m * ldy + n] = total + (c.bias ? c.bias[n] : 0.f);
    }
}

template <int BITS>
void fused_rows(const Ctx& c, int64_t v0, int64_t v1, int64_t M, const float* x, int64_t ldx, float* y, int64_t ldy) {
  // v0, v1: column vectors (8 columns each)
  for (int64_t m = 0; m < M;) {
    const int64_t left = M - m;
    const float* xm = x + m * ldx;
    float* ym = y + m * ldy;
    int64_t v = v0;
    if (left >= 8) {
      for (; v < v1; ++v) fused_block<BITS, 8, 1>(c, 8 * v, xm, ldx, ym, ldy);
      m += 8;
    } else if (left >= 4) {
      for (; v + 2 <= v1; v += 2) fused_block<BITS, 4, 2>(c, 8 * v, xm, ldx, ym, ldy);
      for (; v < v1; ++v) fused_block<BITS, 4, 1>(c, 8 * v, xm, ldx, ym, ldy);
      m += 4;
    } else if (left >= 2) {
      for (; v + 2 <= v1; v += 2) fused_block<BITS, 2, 2>(c, 8 * v, xm, ldx, ym, ldy);
      for (; v < v1; ++v) fused_block<BITS, 2, 1>(c, 8 * v, xm, ldx, ym, ldy);
      m += 2;
    } else {
      for (; v + 4 <= v1; v += 4) fused_block<BITS, 1, 4>(c, 8 * v, xm, ldx, ym, ldy);
      for (; v < v1; ++v) fused_block<BITS, 1, 1>(c, 8 * v, xm, ldx, ym, ldy);
      m += 1;
    }
  }
}

void fused(const Ctx& c, int64_t v0, int64_t v1, int64_t M, const float* x, int64_t ldx, float* y, int64_t ldy) {
  switch (c.bits) {
    case 2: fused_rows<2>(c, v0, v1, M, x, ldx, y, ldy); break;
    case 3: fused_rows<3>(c, v0, v1, M, x, ldx, y, ldy); break;
    case 4: fused_rows<4>(c, v0, v1, M, x, ldx, y, ldy); break;
    case 8: fused_rows<8>(c, v0, v1, M, x, ldx, y, ldy); break;
    default: fail(ErrorKind::internal, "weights.gptq: unsupported bit width " + std::to_string(c.bits));
  }
}

// ---- tiles for the GEMM ------------------------------------------------------------------------

// Dequantizes units [u0, u1) of columns [n0, n0 + nb) into out[n][k] (row stride ld, k from u0·R).
template <int BITS>
void dequant_tile(const Ctx& c, int64_t u0, int64_t u1, int64_t n0, int64_t nb, float* out, int64_t ld) {
  constexpr int R = unit_rows(BITS), UW = unit_words(BITS);
  alignas(32) float s[kNB], z[kNB];
  int32_t cur = -1;
  for (int64_t u = u0; u < u1; ++u) {
    const int32_t g = c.ug[u];
    if (g != cur) {
      cur = g;
      for (int64_t n = 0; n < nb; ++n) {
        s[n] = f16_to_f32(c.sc[int64_t(g) * c.N + n0 + n]);
        z[n] = c.zp[int64_t(g) * c.N + n0 + n];
      }
    }
    const uint32_t* wp = c.qw + u * UW * c.N + n0;
    float* op = out + (u - u0) * R;
    for (int64_t n = 0; n < nb; ++n) {
      const __m256 vs = _mm256_set1_ps(s[n]), vz = _mm256_set1_ps(z[n]);
      float* o = op + n * ld;
      if constexpr (BITS == 4 || BITS == 2) {
        const __m256i w = _mm256_set1_epi32(int(wp[n]));
        const __m256i mask = _mm256_set1_epi32((1 << BITS) - 1);
        for (int h = 0; h < R / 8; ++h) {
          const __m256i sh = _mm256_add_epi32(_mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7), _mm256_set1_epi32(8 * h));
          const __m256i q = _mm256_and_si256(_mm256_srlv_epi32(w, _mm256_mullo_epi32(sh, _mm256_set1_epi32(BITS))), mask);
          _mm256_storeu_ps(o + 8 * h, _mm256_mul_ps(vs, _mm256_sub_ps(_mm256_cvtepi32_ps(q), vz)));
        }
      } else if constexpr (BITS == 8) {
        const __m128i w = _mm_set1_epi32(int(wp[n]));
        const __m128i q = _mm_and_si128(_mm_srlv_epi32(w, _mm_setr_epi32(0, 8, 16, 24)), _mm_set1_epi32(0xff));
        _mm_storeu_ps(o, _mm_mul_ps(_mm256_castps256_ps128(vs),
                                    _mm_sub_ps(_mm_cvtepi32_ps(q), _mm256_castps256_ps128(vz))));
      } else {  // 3 bits: a 96-bit stream per column
        const uint64_t lo = uint64_t(wp[n]) | (uint64_t(wp[n + c.N]) << 32);
        const uint64_t hi = uint64_t(wp[n + c.N]) | (uint64_t(wp[n + 2 * c.N]) << 32);
        for (int j = 0; j < R; ++j) {
          const int bit = 3 * j;
          const uint32_t q = bit + 3 <= 64 ? uint32_t(lo >> bit) & 7u : uint32_t(hi >> (bit - 32)) & 7u;
          o[j] = s[n] * (float(q) - z[n]);
        }
      }
    }
  }
}

void dequant(const Ctx& c, int64_t u0, int64_t u1, int64_t n0, int64_t nb, float* out, int64_t ld) {
  switch (c.bits) {
    case 2: dequant_tile<2>(c, u0, u1, n0, nb, out, ld); break;
    case 3: dequant_tile<3>(c, u0, u1, n0, nb, out, ld); break;
    case 4: dequant_tile<4>(c, u0, u1, n0, nb, out, ld); break;
    case 8: dequant_tile<8>(c, u0, u1, n0, nb, out, ld); break;
    default: fail(ErrorKind::internal, "weights.gptq: unsupported bit width " + std::to_string(c.bits));
  }
}

class CpuLinear final : public GptqLinearBase {
 public:
  using GptqLinearBase::GptqLinearBase;

  Status forward(TensorView y, TensorView x) noexcept override {
    return guard([&] {
      const int64_t K = lay_.K, N = lay_.N;
      if (x.dtype != DType::f32 || y.dtype != DType::f32 || x.cols() != K || y.cols() != N || x.rows() != y.rows() ||
          x.space != MemSpace::host || y.space != MemSpace::host)
        fail(ErrorKind::internal, "weights.gptq: Linear [" + std::to_string(K) + " -> " + std::to_string(N) +
                                      "] called with x " + x.shape_string() + " " + std::string(dtype_name(x.dtype)) +
                                      ", y " + y.shape_string() + " " + std::string(dtype_name(y.dtype)));
      const int64_t M = x.rows();
      if (M == 0) return;
      const float* X = x.as<const float>();
      int64_t ldx = K;
      if (lay_.permuted) {
        const int64_t Kp = lay_.Kp;
        if (gathered_.size() < size_t(M * Kp)) gathered_ = Buffer<float>(dev_, size_t(M * Kp), MemCategory::workspace);
        float* g = gathered_.data();
        const int32_t* p = perm.data();
        cpu::parallel_for(M, 1, [&](int64_t m0, int64_t m1) {
          for (int64_t m = m0; m < m1; ++m)
            for (int64_t r = 0; r < Kp; ++r) g[m * Kp + r] = p[r] >= 0 ? X[m * K + p[r]] : 0.f;
        });
        X = g;
        ldx = Kp;
      }
      const Ctx c{qweight.data(), scales.data(), zeros.data(), unit_group.data(),
                  bias.empty() ? nullptr : bias.data(), N, lay_.units(), lay_.bits};
      float* Y = y.as<float>();
      if (M <= kSmallM) {
        const int64_t NV = N / 8;
        cpu::parallel_for(NV + (N % 8 ? 1 : 0), 4, [&](int64_t v0, int64_t v1) {
          fused(c, v0, std::min(v1, NV), M, X, ldx, Y, N);
          if (v1 > NV) scalar_columns(c, 8 * NV, N, M, X, ldx, Y, N);
        });
        return;
      }
      // Tiles: columns in kNB blocks, rows of x split further when there are few column blocks.
      const int64_t nt = (N + kNB - 1) / kNB;
      const int64_t T = cpu::num_threads();
      const int64_t mt = std::clamp<int64_t>((2 * T + nt - 1) / nt, 1, std::max<int64_t>(1, M / 32));
      const int64_t mrows = (M + mt - 1) / mt;
      const int64_t R = unit_rows(lay_.bits), U = lay_.units(), UB = kKB / R;
      cpu::parallel_for(nt * mt, 1, [&](int64_t t0, int64_t t1) {
        thread_local std::vector<float> tile;
        tile.resize(size_t(kNB * kKB));
        for (int64_t t = t0; t < t1; ++t) {
          const int64_t n0 = (t % nt) * kNB, nb = std::min(kNB, N - n0);
          const int64_t m0 = (t / nt) * mrows, mc = std::min(mrows, M - m0);
          if (mc <= 0) continue;
          for (int64_t u0 = 0; u0 < U; u0 += UB) {
            const int64_t u1 = std::min(U, u0 + UB), kc = (u1 - u0) * R;
            dequant(c, u0, u1, n0, nb, tile.data(), kKB);
            cpu::gemm_f32(mc, nb, kc, X + m0 * ldx + u0 * R, ldx, tile.data(), kKB, Y + m0 * N + n0, N, u0 > 0);
          }
          if (c.bias)
            for (int64_t m = m0; m < m0 + mc; ++m)
              for (int64_t n = n0; n < n0 + nb; ++n) Y[m * N + n] += c.bias[n];
        }
      });
    });
  }

 private:
  Buffer<float> gathered_;  // x[:, perm] for act-order layouts
};

}  // namespace

int64_t cpu_small_m() noexcept { return kSmallM; }

std::unique_ptr<GptqLinearBase> make_cpu_linear(Device& dev, const Layout& lay) {
  return std::make_unique<CpuLinear>(dev, lay);
}

}  // namespace kvrun::gptq
