// kvrun — the CPU implementation of Ops (core/include/kvrun/ops.hpp): AVX2 kernels on host
// memory, split over the worker pool. Every entry point validates its operands first and reports
// a bad call as Status{internal, "<op>: <what> <shapes>"}.
#include <algorithm>
#include <climits>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "kvrun/cpu/cpu.hpp"
#include "kvrun/cpu/gemm.hpp"
#include "kvrun/cpu/parallel.hpp"
#include "kvrun/cpu/simd.hpp"
#include "kvrun/ops.hpp"
#include "kvrun/random.hpp"
#include "kvrun/sampler.hpp"

namespace kvrun::cpu {
namespace {

// Elements per parallel range for cheap elementwise work (below this, one thread).
constexpr int64_t kElemGrain = 1 << 15;

[[noreturn]] void bad(const char* op, const std::string& what) { fail(ErrorKind::internal, std::string(op) + ": " + what); }

std::string desc(const char* name, const TensorView& t) {
  return std::string(name) + " " + std::string(dtype_name(t.dtype)) + " " + t.shape_string();
}


// A usable host operand: rank 1..4, non-negative dims, data unless empty, in host memory.
void need_host(const char* op, const char* name, const TensorView& t) {
  if (t.rank < 1 || t.rank > 4) bad(op, desc(name, t) + " must have rank 1 to 4");
  for (int i = 0; i < t.rank; ++i)
    if (t.shape[i] < 0) bad(op, desc(name, t) + " has a negative dimension");
  if (t.space != MemSpace::host) bad(op, desc(name, t) + " is in device memory; the CPU backend needs host memory");
  if (!t.data && t.numel() > 0) bad(op, desc(name, t) + " has no data");
}
void need_f32(const char* op, const char* name, const TensorView& t) {
  need_host(op, name, t);
  if (t.dtype != DType::f32) bad(op, desc(name, t) + " must be f32");
}
void need_float(const char* op, const char* name, const TensorView& t) {
  need_host(op, name, t);
  if (!dtype_is_float(t.dtype)) bad(op, desc(name, t) + " must be f32, f16 or bf16");
}
void need_same_shape(const char* op, const char* an, const TensorView& a, const char* bn, const TensorView& b) {
  if (a.numel() != b.numel() || a.cols() != b.cols())
    bad(op, desc(an, a) + " and " + desc(bn, b) + " differ in shape");
}
bool overlap(const TensorView& a, const TensorView& b) {
  const char* a0 = static_cast<const char*>(a.data);
  const char* b0 = static_cast<const char*>(b.data);
  return a.nbytes() && b.nbytes() && a0 < b0 + b.nbytes() && b0 < a0 + a.nbytes();
}

// Converts n elements of a float dtype to f32.
void to_f32(const void* src, DType t, float* dst, int64_t n) {
  int64_t i = 0;
  if (t == DType::f32) {
    std::memcpy(dst, src, size_t(n) * 4);
    return;
  }
  const uint16_t* s = static_cast<const uint16_t*>(src);
  if (t == DType::bf16) {
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(dst + i, simd::load8_bf16(s + i));
    for (; i < n; ++i) dst[i] = bf16_to_f32(s[i]);
  } else {
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(dst + i, simd::load8_f16(s + i));
    for (; i < n; ++i) dst[i] = f16_to_f32(s[i]);
  }
}
void from_f32(const float* src, void* dst, DType t, int64_t n) {
  int64_t i = 0;
  if (t == DType::f32) {
    std::memcpy(dst, src, size_t(n) * 4);
    return;
  }
  uint16_t* d = static_cast<uint16_t*>(dst);
  if (t == DType::bf16) {
    for (; i + 8 <= n; i += 8) simd::store8_bf16(d + i, _mm256_loadu_ps(src + i));
    for (; i < n; ++i) d[i] = f32_to_bf16(src[i]);
  } else {
    for (; i + 8 <= n; i += 8) simd::store8_f16(d + i, _mm256_loadu_ps(src + i));
    for (; i < n; ++i) d[i] = f32_to_f16(src[i]);
  }
}

// The weight-like operand w[i .. i+8) as f32 lanes.
inline __m256 load8_any(const void* w, DType t, int64_t i) {
  switch (t) {
    case DType::bf16: return simd::load8_bf16(static_cast<const uint16_t*>(w) + i);
    case DType::f16: return simd::load8_f16(static_cast<const uint16_t*>(w) + i);
    default: return _mm256_loadu_ps(static_cast<const float*>(w) + i);
  }
}
inline float load1_any(const void* w, DType t, int64_t i) {
  switch (t) {
    case DType::bf16: return bf16_to_f32(static_cast<const uint16_t*>(w)[i]);
    case DType::f16: return f16_to_f32(static_cast<const uint16_t*>(w)[i]);
    default: return static_cast<const float*>(w)[i];
  }
}

// Keeps a product from being fused into a following add (FMA contraction), so rope rounds
// exactly like PyTorch's separate mul and add kernels.
inline __m256 no_fuse(__m256 v) {
  asm("" : "+x"(v));
  return v;
}
inline float no_fuse(float v) {
  asm("" : "+x"(v));
  return v;
}

// Rows per range for per-row work of `cols` elements.
inline int64_t row_grain(int64_t cols) { return std::max<int64_t>(1, kElemGrain / std::max<int64_t>(1, cols)); }

// x[0..half) and x[half..2·half) rotated by the angles whose cos/sin are cs/sn (rotate-half RoPE;
// the products rounded one at a time, as PyTorch does).
void rotate_half(float* p1, const float* cs, const float* sn, int64_t half) {
  float* p2 = p1 + half;
  int64_t i = 0;
  for (; i + 8 <= half; i += 8) {
    __m256 a = _mm256_loadu_ps(p1 + i), b = _mm256_loadu_ps(p2 + i);
    __m256 c = _mm256_loadu_ps(cs + i), s = _mm256_loadu_ps(sn + i);
    __m256 o1 = _mm256_sub_ps(no_fuse(_mm256_mul_ps(a, c)), no_fuse(_mm256_mul_ps(b, s)));
    __m256 o2 = _mm256_add_ps(no_fuse(_mm256_mul_ps(b, c)), no_fuse(_mm256_mul_ps(a, s)));
    _mm256_storeu_ps(p1 + i, o1);
    _mm256_storeu_ps(p2 + i, o2);
  }
  for (; i < half; ++i) {
    const float a = p1[i], b = p2[i];
    p1[i] = no_fuse(a * cs[i]) - no_fuse(b * sn[i]);
    p2[i] = no_fuse(b * cs[i]) + no_fuse(a * sn[i]);
  }
}

class CpuOps final : public Ops {
 public:
  Status matmul(TensorView y, TensorView x, TensorView w, const TensorView* bias) noexcept override {
    return guard([&] {
      const char* op = "matmul";
      need_f32(op, "y", y);
      need_f32(op, "x", x);
      need_float(op, "w", w);
      if (w.rank != 2) bad(op, desc("w", w) + " must be [N, K]");
      const int64_t N = w.shape[0], K = w.shape[1], M = x.rows();
      if (x.cols() != K || y.cols() != N || y.rows() != M)
        bad(op, desc("y", y) + " = " + desc("x", x) + " · " + desc("w", w) + "ᵀ: shapes do not agree (want y [M, N], x [M, K], w [N, K])");
      if (bias) {
        need_float(op, "bias", *bias);
        if (bias->numel() != N) bad(op, desc("bias", *bias) + " must have N = " + std::to_string(N) + " elements for " + desc("w", w));
      }
      if (overlap(y, x) || overlap(y, w)) bad(op, desc("y", y) + " overlaps an input");
      if (M == 0 || N == 0) return;
      gemm(M, N, K, x.as<float>(), K, w.data, w.dtype, K, y.as<float>(), N, false);
      if (bias) {
        std::vector<float> b(static_cast<size_t>(N));
        to_f32(bias->data, bias->dtype, b.data(), N);
        float* yp = y.as<float>();
        parallel_for(M, row_grain(N), [&](int64_t r0, int64_t r1) {
          for (int64_t r = r0; r < r1; ++r) {
            float* row = yp + r * N;
            int64_t i = 0;
            for (; i + 8 <= N; i += 8)
              _mm256_storeu_ps(row + i, _mm256_add_ps(_mm256_loadu_ps(row + i), _mm256_loadu_ps(b.data() + i)));
            for (; i < N; ++i) row[i] += b[size_t(i)];
          }
        });
      }
    });
  }

  Status rms_norm(TensorView y, TensorView x, TensorView w, float eps) noexcept override {
    return guard([&] {
      const char* op = "rms_norm";
      need_f32(op, "y", y);
      need_f32(op, "x", x);
      need_float(op, "w", w);
      need_same_shape(op, "y", y, "x", x);
      const int64_t D = x.cols(), R = x.rows();
      if (w.numel() != D) bad(op, desc("w", w) + " must have D = " + std::to_string(D) + " elements for " + desc("x", x));
      if (D == 0) return;
      const float* xp = x.as<float>();
      float* yp = y.as<float>();
      parallel_for(R, row_grain(D), [&](int64_t r0, int64_t r1) {
        for (int64_t r = r0; r < r1; ++r) {
          const float* xr = xp + r * D;
          float* yr = yp + r * D;
          __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
          int64_t i = 0;
          for (; i + 16 <= D; i += 16) {
            __m256 a = _mm256_loadu_ps(xr + i), b = _mm256_loadu_ps(xr + i + 8);
            s0 = _mm256_fmadd_ps(a, a, s0);
            s1 = _mm256_fmadd_ps(b, b, s1);
          }
          for (; i + 8 <= D; i += 8) {
            __m256 a = _mm256_loadu_ps(xr + i);
            s0 = _mm256_fmadd_ps(a, a, s0);
          }
          float ss = simd::hsum(_mm256_add_ps(s0, s1));
          for (; i < D; ++i) ss += xr[i] * xr[i];
          const float inv = 1.0f / std::sqrt(ss / float(D) + eps);
          const __m256 vinv = _mm256_set1_ps(inv);
          i = 0;
          for (; i + 8 <= D; i += 8)
            _mm256_storeu_ps(yr + i, _mm256_mul_ps(_mm256_mul_ps(_mm256_loadu_ps(xr + i), vinv), load8_any(w.data, w.dtype, i)));
          for (; i < D; ++i) yr[i] = (xr[i] * inv) * load1_any(w.data, w.dtype, i);
        }
      });
    });
  }

  Status add(TensorView y, TensorView a, TensorView b) noexcept override {
    return guard([&] {
      const char* op = "add";
      need_f32(op, "y", y);
      need_f32(op, "a", a);
      need_f32(op, "b", b);
      need_same_shape(op, "y", y, "a", a);
      need_same_shape(op, "a", a, "b", b);
      float* yp = y.as<float>();
      const float* ap = a.as<float>();
      const float* bp = b.as<float>();
      parallel_for(y.numel(), kElemGrain, [&](int64_t i0, int64_t i1) {
        int64_t i = i0;
        for (; i + 8 <= i1; i += 8) _mm256_storeu_ps(yp + i, _mm256_add_ps(_mm256_loadu_ps(ap + i), _mm256_loadu_ps(bp + i)));
        for (; i < i1; ++i) yp[i] = ap[i] + bp[i];
      });
    });
  }

  Status silu_mul(TensorView out, TensorView gate, TensorView up) noexcept override {
    return guard([&] {
      const char* op = "silu_mul";
      need_f32(op, "out", out);
      need_f32(op, "gate", gate);
      need_f32(op, "up", up);
      need_same_shape(op, "out", out, "gate", gate);
      need_same_shape(op, "gate", gate, "up", up);
      float* op_ = out.as<float>();
      const float* gp = gate.as<float>();
      const float* upp = up.as<float>();
      parallel_for(out.numel(), kElemGrain / 4, [&](int64_t i0, int64_t i1) {
        int64_t i = i0;
        for (; i + 8 <= i1; i += 8)
          _mm256_storeu_ps(op_ + i, _mm256_mul_ps(simd::silu(_mm256_loadu_ps(gp + i)), _mm256_loadu_ps(upp + i)));
        if (i < i1) {  // tail through the same vector formula
          alignas(32) float g[8] = {0}, u[8] = {0}, o[8];
          for (int64_t j = i; j < i1; ++j) {
            g[j - i] = gp[j];
            u[j - i] = upp[j];
          }
          _mm256_store_ps(o, _mm256_mul_ps(simd::silu(_mm256_load_ps(g)), _mm256_load_ps(u)));
          for (int64_t j = i; j < i1; ++j) op_[j] = o[j - i];
        }
      });
    });
  }

  Status rope_table(TensorView cs, const int32_t* positions, const float* bases, float base) noexcept override {
    return guard([&] {
      const char* op = "rope_table";
      need_f32(op, "cs", cs);
      const int64_t T = cs.rows(), rot = cs.cols();
      if (rot <= 0 || rot % 2 != 0) bad(op, desc("cs", cs) + " must be [T, rot_dim] with rot_dim even");
      if (T > 0 && !positions) bad(op, "positions is null for " + desc("cs", cs));
      if (!bases && !(base > 0.f)) bad(op, "base " + std::to_string(base) + " must be > 0");
      const int64_t half = rot / 2;
      float* out = cs.as<float>();
      std::vector<float> inv(static_cast<size_t>(half));
      for (int64_t t = 0; t < T; ++t) {
        const float b = bases ? bases[t] : base;
        if (!(b > 0.f)) bad(op, "bases[" + std::to_string(t) + "] = " + std::to_string(b) + " must be > 0");
        // the same float32 recipe as rope()
        for (int64_t i = 0; i < half; ++i) inv[size_t(i)] = 1.0f / std::pow(b, float(2 * i) / float(rot));
        const float pos = float(positions[t]);
        for (int64_t i = 0; i < half; ++i) {
          const float ang = pos * inv[size_t(i)];
          out[t * rot + i] = std::cos(ang);
          out[t * rot + half + i] = std::sin(ang);
        }
      }
    });
  }

  Status rope_apply(TensorView x, TensorView cs) noexcept override {
    return guard([&] {
      const char* op = "rope_apply";
      need_f32(op, "x", x);
      need_f32(op, "cs", cs);
      if (x.rank != 3) bad(op, desc("x", x) + " must be [T, H, D]");
      const int64_t T = x.shape[0], H = x.shape[1], D = x.shape[2], rot = cs.cols();
      if (cs.rows() != T || rot <= 0 || rot % 2 != 0 || rot > D)
        bad(op, desc("cs", cs) + " must be [T, rot_dim] (rot_dim even, ≤ D) for " + desc("x", x));
      const int64_t half = rot / 2;
      float* xp = x.as<float>();
      const float* cp = cs.as<float>();
      parallel_for(T, row_grain(H * rot * 4), [&](int64_t t0, int64_t t1) {
        for (int64_t t = t0; t < t1; ++t)
          for (int64_t h = 0; h < H; ++h) rotate_half(xp + (t * H + h) * D, cp + t * rot, cp + t * rot + half, half);
      });
    });
  }

  Status rope(TensorView x, const int32_t* positions, const float* bases, float base, int rot_dim) noexcept override {
    return guard([&] {
      const char* op = "rope";
      need_f32(op, "x", x);
      if (x.rank != 3) bad(op, desc("x", x) + " must be [T, H, D]");
      const int64_t T = x.shape[0], H = x.shape[1], D = x.shape[2];
      if (rot_dim <= 0 || rot_dim % 2 != 0 || rot_dim > D)
        bad(op, "rot_dim " + std::to_string(rot_dim) + " must be even and in (0, D] for " + desc("x", x));
      if (T > 0 && !positions) bad(op, "positions is null for " + desc("x", x));
      if (!bases && !(base > 0.f)) bad(op, "base " + std::to_string(base) + " must be > 0");
      if (T == 0 || H == 0) return;
      const int64_t half = rot_dim / 2;
      // inv_freq exactly as transformers computes it in float32:
      //   1 / (base ** (arange(0, rot_dim, 2).float() / rot_dim))
      auto inv_freq = [&](float b, float* out) {
        for (int64_t i = 0; i < half; ++i) out[i] = 1.0f / std::pow(b, float(2 * i) / float(rot_dim));
      };
      std::vector<float> shared_inv;
      if (!bases) {
        shared_inv.resize(size_t(half));
        inv_freq(base, shared_inv.data());
      }
      float* xp = x.as<float>();
      parallel_for(T, row_grain(H * rot_dim * 4), [&](int64_t t0, int64_t t1) {
        std::vector<float> buf(size_t(3 * half));
        float* inv = bases ? buf.data() : shared_inv.data();
        float* cs = buf.data() + half;
        float* sn = cs + half;
        for (int64_t t = t0; t < t1; ++t) {
          if (bases) {
            if (!(bases[t] > 0.f)) bad(op, "bases[" + std::to_string(t) + "] = " + std::to_string(bases[t]) + " must be > 0");
            inv_freq(bases[t], inv);
          }
          const float pos = float(positions[t]);
          for (int64_t i = 0; i < half; ++i) {
            const float ang = pos * inv[i];
            cs[i] = std::cos(ang);
            sn[i] = std::sin(ang);
          }
          for (int64_t h = 0; h < H; ++h) rotate_half(xp + (t * H + h) * D, cs, sn, half);
        }
      });
    });
  }

  Status scale_rows(TensorView x, const float* factors) noexcept override {
    return guard([&] {
      const char* op = "scale_rows";
      need_f32(op, "x", x);
      const int64_t R = x.rows(), C = x.cols();
      if (R > 0 && !factors) bad(op, "factors is null for " + desc("x", x));
      float* xp = x.as<float>();
      parallel_for(R, row_grain(C), [&](int64_t r0, int64_t r1) {
        for (int64_t r = r0; r < r1; ++r) {
          float* row = xp + r * C;
          const __m256 f = _mm256_set1_ps(factors[r]);
          int64_t i = 0;
          for (; i + 8 <= C; i += 8) _mm256_storeu_ps(row + i, _mm256_mul_ps(_mm256_loadu_ps(row + i), f));
          for (; i < C; ++i) row[i] *= factors[r];
        }
      });
    });
  }

  Status embedding(TensorView out, TensorView table, const int32_t* ids) noexcept override {
    return guard([&] {
      const char* op = "embedding";
      need_f32(op, "out", out);
      need_float(op, "table", table);
      if (table.rank != 2) bad(op, desc("table", table) + " must be [V, D]");
      const int64_t V = table.shape[0], D = table.shape[1], T = out.rows();
      if (out.cols() != D) bad(op, desc("out", out) + " must have D = " + std::to_string(D) + " columns for " + desc("table", table));
      if (T > 0 && !ids) bad(op, "ids is null for " + desc("out", out));
      for (int64_t t = 0; t < T; ++t)
        if (ids[t] < 0 || ids[t] >= V)
          bad(op, "ids[" + std::to_string(t) + "] = " + std::to_string(ids[t]) + " is outside " + desc("table", table));
      const size_t esz = dtype_size(table.dtype);
      const char* tp = static_cast<const char*>(table.data);
      float* o = out.as<float>();
      parallel_for(T, row_grain(D), [&](int64_t t0, int64_t t1) {
        for (int64_t t = t0; t < t1; ++t) to_f32(tp + size_t(ids[t]) * size_t(D) * esz, table.dtype, o + t * D, D);
      });
    });
  }

  Status gather_rows(TensorView out, TensorView x, const int32_t* rows) noexcept override {
    return guard([&] {
      const char* op = "gather_rows";
      need_host(op, "out", out);
      need_host(op, "x", x);
      if (out.dtype != x.dtype) bad(op, desc("out", out) + " and " + desc("x", x) + " differ in dtype");
      const int64_t C = x.cols(), R = x.rows(), n = out.rows();
      if (out.cols() != C) bad(op, desc("out", out) + " and " + desc("x", x) + " differ in row length");
      if (n > 0 && !rows) bad(op, "rows is null for " + desc("out", out));
      if (overlap(out, x)) bad(op, desc("out", out) + " overlaps " + desc("x", x));
      for (int64_t i = 0; i < n; ++i)
        if (rows[i] < 0 || rows[i] >= R)
          bad(op, "rows[" + std::to_string(i) + "] = " + std::to_string(rows[i]) + " is outside " + desc("x", x));
      const size_t rb = size_t(C) * dtype_size(x.dtype);
      const char* xp = static_cast<const char*>(x.data);
      char* o = static_cast<char*>(out.data);
      parallel_for(n, row_grain(int64_t(rb / 4)), [&](int64_t i0, int64_t i1) {
        for (int64_t i = i0; i < i1; ++i) std::memcpy(o + size_t(i) * rb, xp + size_t(rows[i]) * rb, rb);
      });
    });
  }

  Status convert(TensorView dst, TensorView src) noexcept override {
    return guard([&] {
      const char* op = "convert";
      need_float(op, "dst", dst);
      need_float(op, "src", src);
      const int64_t n = src.numel();
      if (dst.numel() != n) bad(op, desc("dst", dst) + " and " + desc("src", src) + " differ in element count");
      if (n == 0) return;
      if (dst.dtype == src.dtype) {
        if (dst.data != src.data) std::memmove(dst.data, src.data, src.nbytes());
        return;
      }
      if (overlap(dst, src)) bad(op, desc("dst", dst) + " overlaps " + desc("src", src));
      const DType dt = dst.dtype, st = src.dtype;
      const size_t ds = dtype_size(dt), ss = dtype_size(st);
      const char* sp = static_cast<const char*>(src.data);
      char* dp = static_cast<char*>(dst.data);
      parallel_for(n, kElemGrain, [&](int64_t i0, int64_t i1) {
        if (st == DType::f32) {
          from_f32(reinterpret_cast<const float*>(sp) + i0, dp + size_t(i0) * ds, dt, i1 - i0);
        } else if (dt == DType::f32) {
          to_f32(sp + size_t(i0) * ss, st, reinterpret_cast<float*>(dp) + i0, i1 - i0);
        } else {  // f16 <-> bf16 through f32, 256 at a time
          alignas(32) float tmp[256];
          for (int64_t i = i0; i < i1; i += 256) {
            const int64_t m = std::min<int64_t>(256, i1 - i);
            to_f32(sp + size_t(i) * ss, st, tmp, m);
            from_f32(tmp, dp + size_t(i) * ds, dt, m);
          }
        }
      });
    });
  }

  Status fill_random(TensorView dst, float scale, uint64_t seed) noexcept override {
    return guard([&] {
      const int64_t n = dst.numel();
      void* d = dst.data;
      const DType t = dst.dtype;
      parallel_for(n, 1 << 14, [&](int64_t b, int64_t e) {
        for (int64_t i = b; i < e; ++i) {
          const uint64_t u = uint64_t(i);
          switch (t) {
            case DType::f32: static_cast<float*>(d)[i] = random_uniform(seed, u, scale); break;
            case DType::bf16: static_cast<uint16_t*>(d)[i] = f32_to_bf16(random_uniform(seed, u, scale)); break;
            case DType::f16: static_cast<uint16_t*>(d)[i] = f32_to_f16(random_uniform(seed, u, scale)); break;
            case DType::i32: static_cast<uint32_t*>(d)[i] = uint32_t(random_bits(seed, u)); break;
            case DType::i8:
            case DType::u8: static_cast<uint8_t*>(d)[i] = uint8_t(random_bits(seed, u)); break;
          }
        }
      });
    });
  }

  // The fused ops run the unfused ones on the same data: identical results by construction.
  Status add_rms_norm(TensorView x, TensorView delta, TensorView y, TensorView w, float eps) noexcept override {
    return guard([&] {
      if (y.data == x.data || delta.data == x.data) bad("add_rms_norm", "y and delta must not alias x");
      check(add(x, x, delta));
      check(rms_norm(y, x, w, eps));
    });
  }

  Status swiglu(TensorView out, TensorView gate_up) noexcept override {
    return guard([&] {
      const char* op = "swiglu";
      need_f32(op, "out", out);
      need_f32(op, "gate_up", gate_up);
      const int64_t M = out.rows(), F = out.cols();
      if (gate_up.rows() != M || gate_up.cols() != 2 * F)
        bad(op, desc("gate_up", gate_up) + " must be [" + std::to_string(M) + ", " + std::to_string(2 * F) + "] for " +
                    desc("out", out));
      if (out.data == gate_up.data) bad(op, "out must not alias gate_up");
      for (int64_t m = 0; m < M; ++m) {
        float* row = gate_up.as<float>() + m * 2 * F;
        check(silu_mul(TensorView(out.as<float>() + m * F, DType::f32, {F}, out.space),
                       TensorView(row, DType::f32, {F}, out.space), TensorView(row + F, DType::f32, {F}, out.space)));
      }
    });
  }

  Status split_cols(TensorView src, const TensorView* dsts, int n) noexcept override {
    return guard([&] {
      const char* op = "split_cols";
      need_f32(op, "src", src);
      if (n < 1 || n > 4 || !dsts) bad(op, "1 to 4 destinations, got " + std::to_string(n));
      const int64_t M = src.rows(), C = src.cols();
      int64_t total = 0;
      for (int i = 0; i < n; ++i) {
        need_f32(op, "dst", dsts[i]);
        if (dsts[i].rows() != M) bad(op, desc("dst", dsts[i]) + " must have " + std::to_string(M) + " rows");
        total += dsts[i].cols();
      }
      if (total != C)
        bad(op, "destination widths sum to " + std::to_string(total) + ", " + desc("src", src) + " has " +
                    std::to_string(C) + " columns");
      const float* sp = src.as<float>();
      for (int64_t m = 0; m < M; ++m) {
        int64_t off = 0;
        for (int i = 0; i < n; ++i) {
          const int64_t w = dsts[i].cols();
          std::memcpy(dsts[i].as<float>() + m * w, sp + m * C + off, size_t(w) * sizeof(float));
          off += w;
        }
      }
    });
  }

  Status split_rope(TensorView qkv, TensorView q, TensorView k, TensorView v, TensorView cs) noexcept override {
    return guard([&] {
      const char* op = "split_rope";
      need_f32(op, "qkv", qkv);
      need_f32(op, "cs", cs);
      for (const TensorView* t : {&q, &k, &v}) {
        need_f32(op, "q/k/v", *t);
        if (t->rank != 3) bad(op, desc("q/k/v", *t) + " must be [T, heads, D]");
      }
      const int64_t T = q.shape[0], D = q.shape[2], rot = cs.cols();
      if (k.shape[0] != T || v.shape[0] != T || k.shape[2] != D || v.shape[2] != D)
        bad(op, desc("q", q) + ", " + desc("k", k) + ", " + desc("v", v) + " must share T and D");
      const int64_t Hq = q.shape[1], Hk = k.shape[1], Hv = v.shape[1], C = (Hq + Hk + Hv) * D;
      if (qkv.rows() != T || qkv.cols() != C)
        bad(op, desc("qkv", qkv) + " must be [" + std::to_string(T) + ", " + std::to_string(C) + "]");
      if (cs.rows() != T || rot <= 0 || rot % 2 != 0 || rot > D)
        bad(op, desc("cs", cs) + " must be [T, rot_dim] (rot_dim even, ≤ D) for " + desc("q", q));
      const TensorView parts[3] = {TensorView(q.data, DType::f32, {T, Hq * D}, q.space),
                                   TensorView(k.data, DType::f32, {T, Hk * D}, k.space),
                                   TensorView(v.data, DType::f32, {T, Hv * D}, v.space)};
      check(split_cols(qkv, parts, 3));
      check(rope_apply(q, cs));
      check(rope_apply(k, cs));
    });
  }

  // The fusions, composed from the unfused ops in the model's former order (rms_norm or swiglu into
  // a temporary, matmul, add): the CPU gains nothing from fusing, and composing keeps its results
  // bitwise those of the unfused recipe.
  bool matmul_fuses(const MatmulFusion& f, int64_t, const TensorView&) const noexcept override {
    return !(f.norm_w && f.swiglu);
  }

  Status matmul_fused(TensorView y, TensorView x, TensorView w, const TensorView* bias,
                      const MatmulFusion& f) noexcept override {
    return guard([&] {
      const char* op = "matmul_fused";
      need_f32(op, "x", x);
      need_f32(op, "y", y);
      if (f.norm_w && f.swiglu) bad(op, "norm_w and swiglu exclude each other");
      const int64_t M = x.rows();
      std::vector<float> in_buf, out_buf;
      TensorView in = x;
      if (f.norm_w) {
        in_buf.resize(size_t(x.numel()));
        in = TensorView(in_buf.data(), DType::f32, {M, x.cols()});
        check(rms_norm(in, x, *f.norm_w, f.norm_eps));
      } else if (f.swiglu) {
        if (x.cols() % 2) bad(op, desc("x", x) + " must be [M, 2K] gate | up for swiglu");
        in_buf.resize(size_t(x.numel() / 2));
        in = TensorView(in_buf.data(), DType::f32, {M, x.cols() / 2});
        check(swiglu(in, x));
      }
      if (!f.accumulate) {
        check(matmul(y, in, w, bias));
        return;
      }
      out_buf.resize(size_t(y.numel()));
      TensorView out(out_buf.data(), DType::f32, {y.rows(), y.cols()});
      check(matmul(out, in, w, bias));
      check(add(y, y, out));
    });
  }

  Status sample(int32_t* ids, TensorView logits, const SampleParams* params) noexcept override {
    return guard([&] {
      const char* op = "sample";
      need_f32(op, "logits", logits);
      if (logits.rank > 2) bad(op, desc("logits", logits) + " must be [B, V]");
      const int64_t B = logits.rows(), V = logits.cols();
      if (B == 0) return;
      if (V <= 0 || V > INT32_MAX) bad(op, desc("logits", logits) + " has an unusable vocabulary size");
      if (!ids || !params) bad(op, "ids or params is null for " + desc("logits", logits));
      const float* lp = logits.as<float>();
      parallel_for(B, 1, [&](int64_t b0, int64_t b1) {
        for (int64_t b = b0; b < b1; ++b) {
          const SampleParams& p = params[b];
          ids[b] = sample_row(lp + b * V, int32_t(V), p.temperature, p.top_k, p.top_p, p.min_p, p.seed, p.counter);
        }
      });
    });
  }
};

}  // namespace

Ops& cpu_ops() noexcept {
  static CpuOps ops;
  return ops;
}

}  // namespace kvrun::cpu
