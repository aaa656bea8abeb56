// kvrun — CPU matrix product y[M,N] = x[M,K] · w[N,K]ᵀ (see kvrun/cpu/gemm.hpp).
//
// Two paths:
//  * small M (decode, M <= kSmallM): dot products along K straight from the weight rows (bf16/f16
//    converted in registers), tiles of MR x-rows × NR w-rows (1×8, 2×4, 3×3, 4×3; larger M in
//    blocks of 4 over K chunks that stay in L1), split over N between threads. Memory-bound on
//    the weights at M = 1: no packing, many weight rows streamed at once.
//  * larger M (prefill): Goto-style blocking. Each thread owns a range of N (and of M when N is
//    small); for each K block of kKC it packs its weight panels transposed to [k][16] f32 (this is
//    where bf16/f16 are converted, a panel at a time), packs x blocks of kMC rows to [k][6], and
//    runs a 6×16 register-blocked FMA micro-kernel (12 ymm accumulators).
#include "kvrun/cpu/gemm.hpp"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <new>
#include <string>

#include "kvrun/cpu/parallel.hpp"
#include "kvrun/cpu/simd.hpp"
#include "kvrun/error.hpp"

namespace kvrun::cpu {
namespace {

struct WF32 {
  using T = float;
  static __m256 load(const T* p) noexcept { return _mm256_loadu_ps(p); }
  static float scalar(T v) noexcept { return v; }
};
struct WBF16 {
  using T = uint16_t;
  static __m256 load(const T* p) noexcept { return simd::load8_bf16(p); }
  static float scalar(T v) noexcept { return bf16_to_f32(v); }
};
struct WF16 {
  using T = uint16_t;
  static __m256 load(const T* p) noexcept { return simd::load8_f16(p); }
  static float scalar(T v) noexcept { return f16_to_f32(v); }
};

constexpr int64_t kSmallM = 40;  // M at or below this uses the dot-product path
constexpr int64_t kDotKC = 1024;  // K chunk of the dot path when M > 4
constexpr int64_t kMR = 6, kNR = 16;
constexpr int64_t kKC = 512;     // K block: a packed weight micro-panel is kKC×16 f32 = 32 KiB (L1)
constexpr int64_t kMC = 96;      // x rows per packed block: kMC×kKC f32 = 192 KiB (L2)
constexpr int64_t kNC = 1024;    // weight rows packed at once per thread: kNC×kKC f32 = 2 MiB
constexpr int64_t kSerialWork = 1 << 16;  // M·N·K below this runs on one thread

// ---- small M -----------------------------------------------------------------------------------

// Loads 16 consecutive weights as two f32 vectors. For bf16 the lanes come out in the order
// {0-3, 8-11} and {4-7, 12-15} (two unpacks, no shifts); x is permuted the same way (kPermuted),
// which is free in a dot product since x is shared by all the rows of a tile.
struct Load16F32 {
  static constexpr bool kPermuted = false;
  static void load(const float* p, __m256& lo, __m256& hi) noexcept {
    lo = _mm256_loadu_ps(p);
    hi = _mm256_loadu_ps(p + 8);
  }
};
struct Load16BF16 {
  static constexpr bool kPermuted = true;
  static void load(const uint16_t* p, __m256& lo, __m256& hi) noexcept {
    __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
    __m256i z = _mm256_setzero_si256();
    lo = _mm256_castsi256_ps(_mm256_unpacklo_epi16(z, v));
    hi = _mm256_castsi256_ps(_mm256_unpackhi_epi16(z, v));
  }
};
struct Load16F16 {
  static constexpr bool kPermuted = false;
  static void load(const uint16_t* p, __m256& lo, __m256& hi) noexcept {
    lo = simd::load8_f16(p);
    hi = simd::load8_f16(p + 8);
  }
};
template <class W> struct Load16;
template <> struct Load16<WF32> : Load16F32 {};
template <> struct Load16<WBF16> : Load16BF16 {};
template <> struct Load16<WF16> : Load16F16 {};

// y[i, j] (=|+=) Σ_k x[i, k]·w[j, k] for i < MR, j < NR: MR·NR accumulators along K.
template <int MR, int NR, class W>
inline void dot_tile(int64_t K, const float* x, int64_t ldx, const typename W::T* w, int64_t ldw, float* y,
                     int64_t ldy, bool acc) {
  using L = Load16<W>;
  __m256 s[MR][NR];
#pragma GCC unroll 8
  for (int i = 0; i < MR; ++i)
#pragma GCC unroll 8
    for (int j = 0; j < NR; ++j) s[i][j] = _mm256_setzero_ps();
  int64_t k = 0;
  if constexpr (MR <= 2) {  // 16 at a time: 2·MR x registers + MR·NR accumulators
    for (; k + 16 <= K; k += 16) {
      __m256 xl[MR], xh[MR];
#pragma GCC unroll 8
      for (int i = 0; i < MR; ++i) {
        __m256 a = _mm256_loadu_ps(x + i * ldx + k), b = _mm256_loadu_ps(x + i * ldx + k + 8);
        if constexpr (L::kPermuted) {
          xl[i] = _mm256_permute2f128_ps(a, b, 0x20);
          xh[i] = _mm256_permute2f128_ps(a, b, 0x31);
        } else {
          xl[i] = a;
          xh[i] = b;
        }
      }
#pragma GCC unroll 8
      for (int j = 0; j < NR; ++j) {
        __m256 lo, hi;
        L::load(w + j * ldw + k, lo, hi);
#pragma GCC unroll 8
        for (int i = 0; i < MR; ++i) {
          s[i][j] = _mm256_fmadd_ps(xl[i], lo, s[i][j]);
          s[i][j] = _mm256_fmadd_ps(xh[i], hi, s[i][j]);
        }
      }
    }
  }
  for (; k + 8 <= K; k += 8) {  // NR weight registers + 1 x register + MR·NR accumulators
    __m256 wv[NR];
#pragma GCC unroll 8
    for (int j = 0; j < NR; ++j) wv[j] = W::load(w + j * ldw + k);
#pragma GCC unroll 8
    for (int i = 0; i < MR; ++i) {
      __m256 xv = _mm256_loadu_ps(x + i * ldx + k);
#pragma GCC unroll 8
      for (int j = 0; j < NR; ++j) s[i][j] = _mm256_fmadd_ps(xv, wv[j], s[i][j]);
    }
  }
  for (int i = 0; i < MR; ++i)
    for (int j = 0; j < NR; ++j) {
      float t = simd::hsum(s[i][j]);
      for (int64_t kk = k; kk < K; ++kk) t += x[i * ldx + kk] * W::scalar(w[j * ldw + kk]);
      float* out = y + i * ldy + j;
      *out = acc ? *out + t : t;
    }
}

// Columns [n0, n1) of y for all MR rows of x, NR weight rows at a time.
template <int MR, int NR, class W>
void dot_range(int64_t n0, int64_t n1, int64_t K, const float* x, int64_t ldx, const typename W::T* w,
               int64_t ldw, float* y, int64_t ldy, bool acc) {
  int64_t n = n0;
  for (; n + NR <= n1; n += NR) dot_tile<MR, NR, W>(K, x, ldx, w + n * ldw, ldw, y + n, ldy, acc);
  for (; n < n1; ++n) dot_tile<MR, 1, W>(K, x, ldx, w + n * ldw, ldw, y + n, ldy, acc);
}

// Any M: blocks of 4 x-rows against tiles of 3 weight rows, K in chunks of kDotKC so the weight
// tile (3 × kDotKC) stays in L1 while the x blocks stream from L2.
template <class W>
void dot_range_blocked(int64_t M, int64_t n0, int64_t n1, int64_t K, const float* x, int64_t ldx,
                       const typename W::T* w, int64_t ldw, float* y, int64_t ldy, bool acc) {
  auto tile = [&]<int NR>(int64_t n) {
    for (int64_t k0 = 0; k0 < K; k0 += kDotKC) {
      const int64_t kc = std::min(kDotKC, K - k0);
      const bool a = acc || k0 > 0;
      const typename W::T* wp = w + n * ldw + k0;
      int64_t m = 0;
      for (; m + 4 <= M; m += 4) dot_tile<4, NR, W>(kc, x + m * ldx + k0, ldx, wp, ldw, y + m * ldy + n, ldy, a);
      const float* xp = x + m * ldx + k0;
      float* yp = y + m * ldy + n;
      switch (M - m) {
        case 3: dot_tile<3, NR, W>(kc, xp, ldx, wp, ldw, yp, ldy, a); break;
        case 2: dot_tile<2, NR, W>(kc, xp, ldx, wp, ldw, yp, ldy, a); break;
        case 1: dot_tile<1, NR, W>(kc, xp, ldx, wp, ldw, yp, ldy, a); break;
        default: break;
      }
    }
  };
  int64_t n = n0;
  for (; n + 3 <= n1; n += 3) tile.template operator()<3>(n);
  for (; n < n1; ++n) tile.template operator()<1>(n);
}

template <class W>
void gemm_small_m(int64_t M, int64_t N, int64_t K, const float* x, int64_t ldx, const typename W::T* w,
                  int64_t ldw, float* y, int64_t ldy, bool acc) {
  // Tiles MR×NR: at most 12 accumulators plus the x registers (16 ymm in all).
  auto range = [&](int64_t n0, int64_t n1) {
    switch (M) {
      case 1: dot_range<1, 8, W>(n0, n1, K, x, ldx, w, ldw, y, ldy, acc); break;
      case 2: dot_range<2, 4, W>(n0, n1, K, x, ldx, w, ldw, y, ldy, acc); break;
      case 3: dot_range<3, 3, W>(n0, n1, K, x, ldx, w, ldw, y, ldy, acc); break;
      case 4: dot_range<4, 3, W>(n0, n1, K, x, ldx, w, ldw, y, ldy, acc); break;
      default: dot_range_blocked<W>(M, n0, n1, K, x, ldx, w, ldw, y, ldy, acc); break;
    }
  };
  int64_t per_row = std::max<int64_t>(1, M * K);
  int64_t grain = std::max<int64_t>(1, (kSerialWork + per_row - 1) / per_row);
  grain = (grain + 23) / 24 * 24;  // a multiple of every NR above
  parallel_for(N, grain, range);
}

// ---- packed path -------------------------------------------------------------------------------

inline void transpose8(__m256 r[8]) noexcept {
  __m256 t0 = _mm256_unpacklo_ps(r[0], r[1]), t1 = _mm256_unpackhi_ps(r[0], r[1]);
  __m256 t2 = _mm256_unpacklo_ps(r[2], r[3]), t3 = _mm256_unpackhi_ps(r[2], r[3]);
  __m256 t4 = _mm256_unpacklo_ps(r[4], r[5]), t5 = _mm256_unpackhi_ps(r[4], r[5]);
  __m256 t6 = _mm256_unpacklo_ps(r[6], r[7]), t7 = _mm256_unpackhi_ps(r[6], r[7]);
  __m256 u0 = _mm256_shuffle_ps(t0, t2, 0x44), u1 = _mm256_shuffle_ps(t0, t2, 0xEE);
  __m256 u2 = _mm256_shuffle_ps(t1, t3, 0x44), u3 = _mm256_shuffle_ps(t1, t3, 0xEE);
  __m256 u4 = _mm256_shuffle_ps(t4, t6, 0x44), u5 = _mm256_shuffle_ps(t4, t6, 0xEE);
  __m256 u6 = _mm256_shuffle_ps(t5, t7, 0x44), u7 = _mm256_shuffle_ps(t5, t7, 0xEE);
  r[0] = _mm256_permute2f128_ps(u0, u4, 0x20);
  r[1] = _mm256_permute2f128_ps(u1, u5, 0x20);
  r[2] = _mm256_permute2f128_ps(u2, u6, 0x20);
  r[3] = _mm256_permute2f128_ps(u3, u7, 0x20);
  r[4] = _mm256_permute2f128_ps(u0, u4, 0x31);
  r[5] = _mm256_permute2f128_ps(u1, u5, 0x31);
  r[6] = _mm256_permute2f128_ps(u2, u6, 0x31);
  r[7] = _mm256_permute2f128_ps(u3, u7, 0x31);
}

// All-zero bits are 0.0 in f32, f16 and bf16: the source of the padding rows of a panel.
alignas(64) const uint32_t kZeros[kKC] = {};

// dst[k·16 + j] = w[j·ldw + k] (as f32) for j < rows (zeros for rows <= j < 16), k < kc.
// w already points at column k0 of the panel's first row.
template <class W>
void pack_w_panel(const typename W::T* w, int64_t ldw, int64_t rows, int64_t kc, float* dst) {
  using T = typename W::T;
  for (int64_t jb = 0; jb < kNR; jb += 8) {
    const T* src[8];
    for (int64_t i = 0; i < 8; ++i)
      src[i] = jb + i < rows ? w + (jb + i) * ldw : reinterpret_cast<const T*>(kZeros);
    int64_t k = 0;
    for (; k + 8 <= kc; k += 8) {
      __m256 v[8];
#pragma GCC unroll 8
      for (int i = 0; i < 8; ++i) v[i] = W::load(src[i] + k);
      transpose8(v);
#pragma GCC unroll 8
      for (int i = 0; i < 8; ++i) _mm256_store_ps(dst + (k + i) * kNR + jb, v[i]);
    }
    for (; k < kc; ++k)
      for (int64_t i = 0; i < 8; ++i) dst[k * kNR + jb + i] = W::scalar(src[i][k]);
  }
}

// x block [rows, kc] (row stride ldx) → micro-panels of kMR rows, each [kc][kMR], zero-padded rows.
void pack_x_block(const float* x, int64_t ldx, int64_t rows, int64_t kc, float* dst) {
  for (int64_t i0 = 0; i0 < rows; i0 += kMR) {
    int64_t r = std::min(kMR, rows - i0);
    float* d = dst + i0 * kc;
    const float* s[kMR];
    for (int64_t i = 0; i < kMR; ++i) s[i] = i < r ? x + (i0 + i) * ldx : nullptr;
    if (r == kMR) {
      for (int64_t k = 0; k < kc; ++k) {
        d[k * kMR + 0] = s[0][k];
        d[k * kMR + 1] = s[1][k];
        d[k * kMR + 2] = s[2][k];
        d[k * kMR + 3] = s[3][k];
        d[k * kMR + 4] = s[4][k];
        d[k * kMR + 5] = s[5][k];
      }
    } else {
      for (int64_t k = 0; k < kc; ++k)
        for (int64_t i = 0; i < kMR; ++i) d[k * kMR + i] = i < r ? s[i][k] : 0.f;
    }
  }
}

// c[rows ≤ 6, cols ≤ 16] (=|+=) a[kc][6] · b[kc][16].
void micro_kernel(int64_t kc, const float* a, const float* b, float* c, int64_t ldc, bool load_c, int64_t rows,
                  int64_t cols) {
  __m256 c00 = _mm256_setzero_ps(), c01 = _mm256_setzero_ps();
  __m256 c10 = _mm256_setzero_ps(), c11 = _mm256_setzero_ps();
  __m256 c20 = _mm256_setzero_ps(), c21 = _mm256_setzero_ps();
  __m256 c30 = _mm256_setzero_ps(), c31 = _mm256_setzero_ps();
  __m256 c40 = _mm256_setzero_ps(), c41 = _mm256_setzero_ps();
  __m256 c50 = _mm256_setzero_ps(), c51 = _mm256_setzero_ps();
  for (int64_t k = 0; k < kc; ++k) {
    __m256 b0 = _mm256_load_ps(b), b1 = _mm256_load_ps(b + 8);
    __m256 av = _mm256_broadcast_ss(a + 0);
    c00 = _mm256_fmadd_ps(av, b0, c00);
    c01 = _mm256_fmadd_ps(av, b1, c01);
    av = _mm256_broadcast_ss(a + 1);
    c10 = _mm256_fmadd_ps(av, b0, c10);
    c11 = _mm256_fmadd_ps(av, b1, c11);
    av = _mm256_broadcast_ss(a + 2);
    c20 = _mm256_fmadd_ps(av, b0, c20);
    c21 = _mm256_fmadd_ps(av, b1, c21);
    av = _mm256_broadcast_ss(a + 3);
    c30 = _mm256_fmadd_ps(av, b0, c30);
    c31 = _mm256_fmadd_ps(av, b1, c31);
    av = _mm256_broadcast_ss(a + 4);
    c40 = _mm256_fmadd_ps(av, b0, c40);
    c41 = _mm256_fmadd_ps(av, b1, c41);
    av = _mm256_broadcast_ss(a + 5);
    c50 = _mm256_fmadd_ps(av, b0, c50);
    c51 = _mm256_fmadd_ps(av, b1, c51);
    a += kMR;
    b += kNR;
  }
  __m256 acc[kMR][2] = {{c00, c01}, {c10, c11}, {c20, c21}, {c30, c31}, {c40, c41}, {c50, c51}};
  if (cols == kNR) {
    for (int64_t i = 0; i < rows; ++i) {
      float* ci = c + i * ldc;
      __m256 v0 = acc[i][0], v1 = acc[i][1];
      if (load_c) {
        v0 = _mm256_add_ps(v0, _mm256_loadu_ps(ci));
        v1 = _mm256_add_ps(v1, _mm256_loadu_ps(ci + 8));
      }
      _mm256_storeu_ps(ci, v0);
      _mm256_storeu_ps(ci + 8, v1);
    }
  } else {
    alignas(32) float tmp[kNR];
    for (int64_t i = 0; i < rows; ++i) {
      float* ci = c + i * ldc;
      _mm256_store_ps(tmp, acc[i][0]);
      _mm256_store_ps(tmp + 8, acc[i][1]);
      for (int64_t j = 0; j < cols; ++j) ci[j] = load_c ? ci[j] + tmp[j] : tmp[j];
    }
  }
}

// Per-thread packing buffers, kept between calls (a few MiB at most).
struct Scratch {
  struct Free {
    void operator()(float* p) const noexcept { std::free(p); }
  };
  std::unique_ptr<float[], Free> buf;
  size_t cap = 0;
  float* get(size_t n) {
    if (n > cap) {
      size_t bytes = (n * sizeof(float) + 63) / 64 * 64;
      float* p = static_cast<float*>(std::aligned_alloc(64, bytes));
      if (!p) throw std::bad_alloc();
      buf.reset(p);
      cap = n;
    }
    return buf.get();
  }
};
thread_local Scratch t_wpack, t_xpack;

template <class W>
void gemm_block(int64_t m0, int64_t m1, int64_t n0, int64_t n1, int64_t K, const float* x, int64_t ldx,
                const typename W::T* w, int64_t ldw, float* y, int64_t ldy, bool acc) {
  if (m0 >= m1 || n0 >= n1) return;
  const int64_t nc_max = std::min(kNC, (n1 - n0 + kNR - 1) / kNR * kNR);
  float* wp = t_wpack.get(size_t(nc_max * kKC));
  float* xp = t_xpack.get(size_t(kMC * kKC));
  for (int64_t nc0 = n0; nc0 < n1; nc0 += kNC) {
    const int64_t ncl = std::min(kNC, n1 - nc0);
    const int64_t panels = (ncl + kNR - 1) / kNR;
    for (int64_t k0 = 0; k0 < K; k0 += kKC) {
      const int64_t kcl = std::min(kKC, K - k0);
      for (int64_t p = 0; p < panels; ++p)
        pack_w_panel<W>(w + (nc0 + p * kNR) * ldw + k0, ldw, std::min(kNR, ncl - p * kNR), kcl,
                        wp + p * kNR * kcl);
      const bool load_c = acc || k0 > 0;
      for (int64_t mc0 = m0; mc0 < m1; mc0 += kMC) {
        const int64_t mcl = std::min(kMC, m1 - mc0);
        pack_x_block(x + mc0 * ldx + k0, ldx, mcl, kcl, xp);
        for (int64_t p = 0; p < panels; ++p) {
          const float* bp = wp + p * kNR * kcl;
          const int64_t cols = std::min(kNR, ncl - p * kNR);
          float* yp = y + mc0 * ldy + nc0 + p * kNR;
          for (int64_t i = 0; i < mcl; i += kMR)
            micro_kernel(kcl, xp + i * kcl, bp, yp + i * ldy, ldy, load_c, std::min(kMR, mcl - i), cols);
        }
      }
    }
  }
}

template <class W>
void gemm_packed(int64_t M, int64_t N, int64_t K, const float* x, int64_t ldx, const typename W::T* w,
                 int64_t ldw, float* y, int64_t ldy, bool acc) {
  int64_t nt = (in_parallel() || M * N * K < kSerialWork) ? 1 : num_threads();
  const int64_t npanels = (N + kNR - 1) / kNR;
  const int64_t mblocks = (M + kMR - 1) / kMR;
  // Thread grid: split N first (each weight panel is then converted exactly once); split M only
  // when there are fewer panels than threads.
  const int64_t tn = std::max<int64_t>(1, std::min(nt, npanels));
  const int64_t tm = std::max<int64_t>(1, std::min(nt / tn, mblocks));
  auto task = [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; ++t) {
      const int64_t in = t % tn, im = t / tn;
      const int64_t p0 = npanels * in / tn, p1 = npanels * (in + 1) / tn;
      const int64_t b0 = mblocks * im / tm, b1 = mblocks * (im + 1) / tm;
      gemm_block<W>(b0 * kMR, std::min(M, b1 * kMR), p0 * kNR, std::min(N, p1 * kNR), K, x, ldx, w, ldw, y, ldy,
                    acc);
    }
  };
  parallel_for(tn * tm, 1, task);
}

void check_args(const char* name, int64_t M, int64_t N, int64_t K, const void* x, int64_t ldx, const void* w,
                int64_t ldw, const float* y, int64_t ldy) {
  if (M < 0 || N < 0 || K < 0 || ldx < K || ldw < K || ldy < N || (M * N > 0 && !y) ||
      (M * N * K > 0 && (!x || !w)))
    fail(ErrorKind::internal, std::string(name) + ": invalid arguments M=" + std::to_string(M) +
                                  " N=" + std::to_string(N) + " K=" + std::to_string(K) +
                                  " ldx=" + std::to_string(ldx) + " ldw=" + std::to_string(ldw) +
                                  " ldy=" + std::to_string(ldy));
}

template <class W>
void gemm_any(const char* name, int64_t M, int64_t N, int64_t K, const float* x, int64_t ldx,
              const typename W::T* w, int64_t ldw, float* y, int64_t ldy, bool acc) {
  check_args(name, M, N, K, x, ldx, w, ldw, y, ldy);
  if (M == 0 || N == 0) return;
  if (K == 0) {
    if (!acc)
      for (int64_t m = 0; m < M; ++m) std::memset(y + m * ldy, 0, size_t(N) * sizeof(float));
    return;
  }
  if (M <= kSmallM)
    gemm_small_m<W>(M, N, K, x, ldx, w, ldw, y, ldy, acc);
  else
    gemm_packed<W>(M, N, K, x, ldx, w, ldw, y, ldy, acc);
}

}  // namespace

void gemm_f32(int64_t M, int64_t N, int64_t K, const float* x, int64_t ldx, const float* w, int64_t ldw,
              float* y, int64_t ldy, bool accumulate) {
  gemm_any<WF32>("gemm_f32", M, N, K, x, ldx, w, ldw, y, ldy, accumulate);
}
void gemm_bf16(int64_t M, int64_t N, int64_t K, const float* x, int64_t ldx, const uint16_t* w, int64_t ldw,
               float* y, int64_t ldy, bool accumulate) {
  gemm_any<WBF16>("gemm_bf16", M, N, K, x, ldx, w, ldw, y, ldy, accumulate);
}
void gemm_f16(int64_t M, int64_t N, int64_t K, const float* x, int64_t ldx, const uint16_t* w, int64_t ldw,
              float* y, int64_t ldy, bool accumulate) {
  gemm_any<WF16>("gemm_f16", M, N, K, x, ldx, w, ldw, y, ldy, accumulate);
}
void gemm(int64_t M, int64_t N, int64_t K, const float* x, int64_t ldx, const void* w, DType wtype, int64_t ldw,
          float* y, int64_t ldy, bool accumulate) {
  switch (wtype) {
    case DType::f32: return gemm_f32(M, N, K, x, ldx, static_cast<const float*>(w), ldw, y, ldy, accumulate);
    case DType::bf16:
      return gemm_bf16(M, N, K, x, ldx, static_cast<const uint16_t*>(w), ldw, y, ldy, accumulate);
    case DType::f16: return gemm_f16(M, N, K, x, ldx, static_cast<const uint16_t*>(w), ldw, y, ldy, accumulate);
    default: break;
  }
  fail(ErrorKind::internal,
       "gemm: weight dtype " + std::string(dtype_name(wtype)) + " is not supported (f32, f16, bf16)");
}

}  // namespace kvrun::cpu
