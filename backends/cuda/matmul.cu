// kvrun CUDA backend — matmul: y[M, N] = x[M, K] · w[N, K]ᵀ (+ bias[N]).
//
// Three paths, chosen by M (CudaOps::gemv_max_rows_, 1 by default, at most 8; tc_gemm_max_rows_,
// 8 by default, at most 64):
//   small M (decode) gemv_kernel: bandwidth-bound, streams each weight row once with 16-byte loads,
//                    fp32 accumulation over the exact weights and fp32 activations (same numbers
//                    as the CPU up to summation order). bf16 weights at M = 1 without the fused
//                    norm (o_proj, down_proj) take gemv_ring_kernel: the same sums, the loads
//                    staged through a shared-memory cp.async ring (KVRUN_CUDA_GEMV_RING).
//   bf16, M ≤ 8      gemm_small_m.cu: tensor cores, reads f32 x (rounded to bf16 as below), the
//                    bias in the same kernel.
//   larger M         cuBLAS: bf16 weights → x rounded to bf16 in the workspace (or written as bf16
//                    by matmul_fused's RMSNorm / SwiGLU kernels), then one cublasLtMatmul with fp32
//                    accumulation (bf16_gemm): an f32 bias added in its epilogue
//                    (CUBLASLT_EPILOGUE_BIAS; KVRUN_CUDA_LT_BIAS), and for M ≤ 256 the algorithm
//                    timed among the heuristic's first 8 when the shape is first seen
//                    (KVRUN_CUDA_LT_TUNE; see "bf16 weights on the cuBLAS path" below). cublasGemmEx
//                    instead where no cuBLASLt plan applies: KVRUN_CUDA_LT_TUNE=0 and no f32 bias
//                    to fuse (or KVRUN_CUDA_LT_BIAS=0 too), or no algorithm. f16 weights → x
//                    rounded to f16 after scaling each row by a power of two into the f16 range
//                    (undone in the epilogue), cublasGemmEx; f32 weights → cublasSgemm (no TF32).
//                    A bias not added by cuBLASLt (and the f16 row scale) in one epilogue kernel.
#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdio>
#include <string>
#include <type_traits>

#include "cuda_backend.cuh"
#include "gemm_small_m.cuh"
#include "kernel_common.cuh"

namespace kvrun::cuda {

namespace {

constexpr int kGemvThreads = 256;  // 8 warps per block
constexpr int kGemvWarps = kGemvThreads / 32;
// At least 3 blocks per SM: ptxas then keeps the kernel at ≤ 85 registers without spilling. Left to
// itself it chose 64 registers with a spill (4 blocks per SM) for the 4-row kernel, which streamed
// slower on the H200 (tools/gemv_bench.cu: q·k·v 23.4 µs at 3 blocks per SM, 27.3 at 4).
constexpr int kGemvMinBlocks = 3;

// The 16 bytes of weights as floats: 8 bf16, 8 f16 or 4 f32.
template <class W>
struct WeightVec;
// The two bf16 values of a 32-bit word (the lower-addressed one first) as floats: exact, a shift
// and a mask.
__device__ __forceinline__ float bf16_lo(uint32_t u) { return __uint_as_float(u << 16); }
__device__ __forceinline__ float bf16_hi(uint32_t u) { return __uint_as_float(u & 0xffff0000u); }
template <>
struct WeightVec<__nv_bfloat16> {
  static constexpr int E = 8;
  __device__ __forceinline__ static void unpack(const uint4& q, float* f) {
    const uint32_t u[4] = {q.x, q.y, q.z, q.w};
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      f[2 * i] = bf16_lo(u[i]);
      f[2 * i + 1] = bf16_hi(u[i]);
    }
  }
};
template <>
struct WeightVec<__half> {
  static constexpr int E = 8;
  __device__ __forceinline__ static void unpack(const uint4& q, float* f) {
    const uint32_t u[4] = {q.x, q.y, q.z, q.w};
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      __half2 h2 = *reinterpret_cast<const __half2*>(&u[i]);
      float2 v = __half22float2(h2);
      f[2 * i] = v.x;
      f[2 * i + 1] = v.y;
    }
  }
};
template <>
struct WeightVec<float> {
  static constexpr int E = 4;
  __device__ __forceinline__ static void unpack(const uint4& q, float* f) {
    f[0] = __uint_as_float(q.x);
    f[1] = __uint_as_float(q.y);
    f[2] = __uint_as_float(q.z);
    f[3] = __uint_as_float(q.w);
  }
};

// a += wf[0..3] · xv, one FMA per element in order: the GEMVs' unit of summation (both kernels
// sum through it, so their results agree bit for bit).
__device__ __forceinline__ void gemv_fma4(float& a, const float* wf, const float4& xv) {
  a = fmaf(wf[0], xv.x, a);
  a = fmaf(wf[1], xv.y, a);
  a = fmaf(wf[2], xv.z, a);
  a = fmaf(wf[3], xv.w, a);
}

// acc[m] += Σ_e wf[e] · x[m, k + e] for m < M, reading x with float4 loads (k multiple of 4).
// SMEM: x is the block's normalized copy in shared memory (plain loads; __ldg is for global only).
template <int E, int MMAX, bool SMEM = false>
__device__ __forceinline__ void gemv_dot(float (&acc)[MMAX], const float* wf, const float* __restrict__ x, int k,
                                         int M, int K) {
#pragma unroll
  for (int m = 0; m < MMAX; ++m) {
    if (m < M) {
      const float4* xp = reinterpret_cast<const float4*>(x + int64_t(m) * K + k);
#pragma unroll
      for (int j = 0; j < E / 4; ++j) gemv_fma4(acc[m], wf + 4 * j, SMEM ? xp[j] : __ldg(xp + j));
    }
  }
}

// The GEMV's fusions (matmul_fused): norm_w (NORM kernels, M = 1) — the block computes
// rms_norm(x)·norm_w into shared memory once and multiplies that; accumulate — y += instead of y =.
struct GemvFusion {
  const void* norm_w = nullptr;  // [K] of norm_t
  DType norm_t = DType::f32;
  float eps = 0.f;
  bool accumulate = false;
  // NORM kernels: the norm's 1 / rms applied to each row's sum at the end (defer_norm,
  // KVRUN_CUDA_DEFER_NORM, default 1) instead of to x before it is written to shared memory.
  bool defer_norm = true;
};

// Four norm weights g[4f .. 4f + 3] as floats: one 8-byte load for bf16 (aligned: the caller
// checks), element loads otherwise.
__device__ __forceinline__ float4 load_norm4(const void* g, DType t, int f, bool bf16x4) {
  if (bf16x4) {
    const uint2 u = __ldg(reinterpret_cast<const uint2*>(g) + f);
    return make_float4(bf16_lo(u.x), bf16_hi(u.x), bf16_lo(u.y), bf16_hi(u.y));
  }
  return make_float4(load_any(g, t, 4 * f), load_any(g, t, 4 * f + 1), load_any(g, t, 4 * f + 2),
                     load_any(g, t, 4 * f + 3));
}

// The output y[m, n] a lane writes in gemv_store, if any (part 0 of its row group; lane → row
// n0 + lane / MMAX of x row lane % MMAX), with its bias (read at construction, before the PDL wait:
// a weight) and its old y (read_y, right after the wait) — read before the GEMV's main loop, not in
// gemv_store, where each was one more round trip before the grid could end. Same values, same sums.
template <int RPW, int MMAX>
struct GemvOut {
  int m, n;
  bool writes;
  float bias = 0.f;  // bias[n] (when bias is non-null)
  float y = 0.f;     // y[m, n] (after read_y, when accumulating)
  __device__ __forceinline__ GemvOut(int lane, int part, int n0, int M, int N, const void* bias_p, DType bias_t)
      : m(lane % MMAX), n(n0 + lane / MMAX), writes(part == 0 && lane / MMAX < RPW && m < M && n < N) {
    if (writes && bias_p) bias = load_any(bias_p, bias_t, n);
  }
  __device__ __forceinline__ void read_y(const float* y_p, int N, bool accumulate) {
    if (writes && accumulate) y = y_p[int64_t(m) * N + n];
  }
};

// The end of the small-M GEMV kernels (gemv_kernel, gemv_ring_kernel), every thread of the block:
// each lane's RPW·MMAX sums are reduced over its warp, the wpr partials of a row group added in a
// fixed order through shared memory (deterministic), then y[m, n] = Σ + bias (or y + (Σ + bias)).
//   acc: [RPW][MMAX] this lane's sums of rows n0 … n0 + RPW − 1; partial: [kGemvWarps][RPW·MMAX];
//   out: the lane's output, its bias and old y (read earlier by the kernel).
//   ss_part: null, or [kGemvWarps] in shared memory, the warps' Σx² over all of x (deferred norm):
//   then each sum is scaled by 1 / sqrt(Σ ss_part / K + eps) before the bias.
template <int RPW, int MMAX>
__device__ __forceinline__ void gemv_store(float (&acc)[RPW][MMAX], float (&partial)[kGemvWarps][RPW * MMAX],
                                           float* y, bool has_bias, int N, int wpr, bool accumulate,
                                           const GemvOut<RPW, MMAX>& out, const float* ss_part = nullptr,
                                           int K = 0, float eps = 0.f) {
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
#pragma unroll
  for (int j = 0; j < RPW; ++j)
#pragma unroll
    for (int m = 0; m < MMAX; ++m) acc[j][m] = warp_sum(acc[j][m]);
  if (lane == 0) {
#pragma unroll
    for (int j = 0; j < RPW; ++j)
#pragma unroll
      for (int m = 0; m < MMAX; ++m) partial[warp][j * MMAX + m] = acc[j][m];
  }
  __syncthreads();
  const int r = warp / wpr;
  if (out.writes) {
    float s = 0.f;
    for (int p = 0; p < wpr; ++p) s += partial[r * wpr + p][lane];
    if (ss_part) {
      float q = 0.f;
#pragma unroll
      for (int i = 0; i < kGemvWarps; ++i) q += ss_part[i];
      s = __fmul_rn(s, 1.0f / sqrtf(q / float(K) + eps));
    }
    if (has_bias) s += out.bias;
    if (accumulate) s = __fadd_rn(out.y, s);
    y[int64_t(out.m) * N + out.n] = s;
  }
}

// GEMV for small M:  y[M, N] = x[M, K] · w[N, K]ᵀ (+ bias[N]),  M ≤ MMAX ≤ 8.
//   y: [M, N] f32, x: [M, K] f32, w: [N, K] of W (bf16/f16/f32), bias: [N] of bias_t or null.
// Block: 8 warps; each warp handles RPW consecutive weight rows n over one of wpr K slices
// (wpr ∈ {1, 2, 4, 8}, chosen by launch_gemv), so a block covers 8/wpr·RPW rows. Each lane keeps
// RPW·MMAX fp32 accumulators; warps reduce with shuffles, then the wpr partials of a row are added
// in a fixed order through shared memory (deterministic).
// RPW > 1 reads each x vector once for RPW rows: at M = 1 the x loads (2 float4 per 16-byte weight
// load with RPW = 1) limited the streaming rate (tools/gemv_bench.cu: q·k·v 3.74 → 4.29 TB/s).
// VEC: w rows and x rows are 16-byte aligned and K is a multiple of 16/sizeof(W) → 16-byte weight
// loads, U per row in flight per lane (U·RPW = 8 at RPW = 4, 4 at RPW = 1); otherwise one element
// per lane per step (any K). Rows past N (the last warp's) re-read row N − 1 and are not written.
// NORM (MMAX = 1): the block writes xs[K] = rms_norm(x)·norm_w to dynamic shared memory (K
// floats) and multiplies that instead of x. Each lane's first weight loads are issued before the
// norm (VEC), so the weight stream starts while the block reduces Σx², as the unfused kernel's
// does while the norm kernel before it ends. DEFER (VEC, the default: fz.defer_norm): the block
// writes xs = x·norm_w instead — x and the norm weights read in one round trip, each warp's Σx²
// into ss_part, one barrier — and gemv_store scales each row's sum by 1 / sqrt(Σx² / K + eps):
// W·(x·inv·g) = inv·(W·(x·g)), in another rounding order (session 18: 3.76 against 3.79–3.80
// ms/step at batch 1; the prologue's second round trip, for the norm weights after the block's
// reduction, and two of its three barriers are gone).
// y[n] = Σ + bias (+ y[n] before, with fz.accumulate): the unfused order x + (W·a + b).
template <class W, int MMAX, int RPW, bool VEC, bool NORM, bool DEFER = false>
__global__ void __launch_bounds__(kGemvThreads, kGemvMinBlocks) gemv_kernel(float* __restrict__ y, const float* __restrict__ x_in,
                                                            const W* __restrict__ w, const void* bias, DType bias_t,
                                                            int M, int N, int K, int wpr, GemvFusion fz) {
  static_assert(RPW * MMAX <= 32, "one lane per (row, m) output");
  static_assert(!NORM || MMAX == 1, "the normalized copy of x holds one row");
  __shared__ float partial[kGemvWarps][RPW * MMAX];
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int rows_per_block = kGemvWarps / wpr * RPW;
  const int r = warp / wpr;     // row group within the block
  const int part = warp % wpr;  // which K slice of those rows
  const int n0 = blockIdx.x * rows_per_block + r * RPW;
  const bool active = n0 < N;
  GemvOut<RPW, MMAX> out(lane, part, n0, M, N, bias, bias_t);  // its old y: right after the wait

  float acc[RPW][MMAX];
#pragma unroll
  for (int j = 0; j < RPW; ++j)
#pragma unroll
    for (int m = 0; m < MMAX; ++m) acc[j][m] = 0.f;
  const W* wr[RPW];  // rows past N re-read row N − 1 (not written)
#pragma unroll
  for (int j = 0; j < RPW; ++j) wr[j] = w + int64_t(min(n0 + j, N - 1)) * K;

  // Block-wide (every thread, active or not): wait for x, then (NORM) its normalized copy.
  const float* __restrict__ x = x_in;
  __shared__ float ss_part[kGemvWarps];  // NORM with fz.defer_norm: each warp's Σx²
  auto wait_and_normalize = [&] {
    pdl_wait();
    out.read_y(y, N, fz.accumulate);
    if constexpr (NORM && VEC && DEFER) {  // xs = x·g at once, Σx² alongside: one round trip, one barrier
      extern __shared__ float4 gemv_xs4[];  // [K / 4]
      const float4* x4 = reinterpret_cast<const float4*>(x_in);
      const int K4 = K / 4;
      const bool g8 = fz.norm_t == DType::bf16 && reinterpret_cast<uintptr_t>(fz.norm_w) % 8 == 0;
      float ss = 0.f;
#pragma unroll 4
      for (int f = threadIdx.x; f < K4; f += kGemvThreads) {
        const float4 a = __ldg(x4 + f);
        const float4 g = load_norm4(fz.norm_w, fz.norm_t, f, g8);
        ss = fmaf(a.x, a.x, fmaf(a.y, a.y, fmaf(a.z, a.z, fmaf(a.w, a.w, ss))));
        gemv_xs4[f] = make_float4(__fmul_rn(a.x, g.x), __fmul_rn(a.y, g.y), __fmul_rn(a.z, g.z), __fmul_rn(a.w, g.w));
      }
      ss = warp_sum(ss);
      if (lane == 0) ss_part[warp] = ss;
      __syncthreads();
      x = reinterpret_cast<const float*>(gemv_xs4);
      return;
    }
    if constexpr (NORM) {
      extern __shared__ float4 gemv_xs4[];  // [K / 4] (K floats)
      __shared__ float red[32];
      constexpr int KR = 4;  // float4 of x per thread kept in registers (K ≤ 4096)
      float ss = 0.f;
      if constexpr (VEC) {  // K % 4 == 0, x 16-byte aligned
        const float4* x4 = reinterpret_cast<const float4*>(x_in);
        const int K4 = K / 4;
        float4 xv[KR];
#pragma unroll
        for (int i = 0; i < KR; ++i) {
          const int f = threadIdx.x + i * kGemvThreads;
          xv[i] = f < K4 ? __ldg(x4 + f) : make_float4(0.f, 0.f, 0.f, 0.f);
        }
#pragma unroll
        for (int i = 0; i < KR; ++i)
          ss = fmaf(xv[i].x, xv[i].x, fmaf(xv[i].y, xv[i].y, fmaf(xv[i].z, xv[i].z, fmaf(xv[i].w, xv[i].w, ss))));
        for (int f = threadIdx.x + KR * kGemvThreads; f < K4; f += kGemvThreads) {
          const float4 a = __ldg(x4 + f);
          ss = fmaf(a.x, a.x, fmaf(a.y, a.y, fmaf(a.z, a.z, fmaf(a.w, a.w, ss))));
        }
        ss = block_sum(ss, red);
        const float inv = 1.0f / sqrtf(ss / float(K) + fz.eps);
        auto put = [&](int f, float4 a) {
          gemv_xs4[f] = make_float4(__fmul_rn(__fmul_rn(a.x, inv), load_any(fz.norm_w, fz.norm_t, 4 * f)),
                                    __fmul_rn(__fmul_rn(a.y, inv), load_any(fz.norm_w, fz.norm_t, 4 * f + 1)),
                                    __fmul_rn(__fmul_rn(a.z, inv), load_any(fz.norm_w, fz.norm_t, 4 * f + 2)),
                                    __fmul_rn(__fmul_rn(a.w, inv), load_any(fz.norm_w, fz.norm_t, 4 * f + 3)));
        };
#pragma unroll
        for (int i = 0; i < KR; ++i) {
          const int f = threadIdx.x + i * kGemvThreads;
          if (f < K4) put(f, xv[i]);
        }
        for (int f = threadIdx.x + KR * kGemvThreads; f < K4; f += kGemvThreads) put(f, __ldg(x4 + f));
      } else {
        float* xs = reinterpret_cast<float*>(gemv_xs4);
        for (int k = threadIdx.x; k < K; k += kGemvThreads) ss = fmaf(x_in[k], x_in[k], ss);
        ss = block_sum(ss, red);
        const float inv = 1.0f / sqrtf(ss / float(K) + fz.eps);
        for (int k = threadIdx.x; k < K; k += kGemvThreads)
          xs[k] = __fmul_rn(__fmul_rn(x_in[k], inv), load_any(fz.norm_w, fz.norm_t, k));
      }
      __syncthreads();
      x = reinterpret_cast<const float*>(gemv_xs4);
    }
  };

  if constexpr (VEC) {
    using WV = WeightVec<W>;
    constexpr int E = WV::E;
    constexpr int U = RPW >= 4 ? 2 : 4;  // 16-byte loads per row in flight per lane
    const int nvec = K / E;
    const int stride = 32 * wpr;
    int v = part * 32 + lane;
    uint4 q[RPW][U];
    auto load_q = [&](int vv) {
#pragma unroll
      for (int u = 0; u < U; ++u)
#pragma unroll
        for (int j = 0; j < RPW; ++j) q[j][u] = load_stream_16b(reinterpret_cast<const uint4*>(wr[j]) + vv + u * stride);
    };
    // the first weights are in flight before x (written by the previous kernel) is read
    bool have = active && v + (U - 1) * stride < nvec;
    if (have) load_q(v);
    wait_and_normalize();
    while (have) {
#pragma unroll
      for (int u = 0; u < U; ++u)
#pragma unroll
        for (int j = 0; j < RPW; ++j) {
          float wf[E];
          WV::unpack(q[j][u], wf);
          gemv_dot<E, MMAX, NORM>(acc[j], wf, x, (v + u * stride) * E, M, K);
        }
      v += U * stride;
      have = v + (U - 1) * stride < nvec;
      if (have) load_q(v);
    }
    if (active) {
      for (; v < nvec; v += stride) {
#pragma unroll
        for (int j = 0; j < RPW; ++j) {
          float wf[E];
          WV::unpack(load_stream_16b(reinterpret_cast<const uint4*>(wr[j]) + v), wf);
          gemv_dot<E, MMAX, NORM>(acc[j], wf, x, v * E, M, K);
        }
      }
    }
  } else {
    wait_and_normalize();
    if (active) {
      for (int k = part * 32 + lane; k < K; k += 32 * wpr) {
#pragma unroll
        for (int j = 0; j < RPW; ++j) {
          const float wk = to_f32(wr[j][k]);
#pragma unroll
          for (int m = 0; m < MMAX; ++m)
            if (m < M) acc[j][m] = fmaf(wk, NORM ? x[int64_t(m) * K + k] : __ldg(x + int64_t(m) * K + k), acc[j][m]);
        }
      }
    }
  }
  pdl_trigger();
  constexpr bool deferred = NORM && VEC && DEFER;
  gemv_store<RPW, MMAX>(acc, partial, y, bias != nullptr, N, wpr, fz.accumulate, out, deferred ? ss_part : nullptr, K,
                        fz.eps);
}

// Batch-1 bf16 GEMV with the weights staged through shared memory:  y[N] (+)= x[K] · w[N, K]ᵀ (+ bias).
//   y: [N] f32, x: [K] f32 (16-byte aligned), w: [N, K] bf16 (16-byte aligned, K % 8 == 0),
//   bias: [N] of bias_t or null; fz.accumulate: y += (fz.norm_w must be null: see launch_gemv).
// The block and the work split are gemv_kernel's at M = 1 (8 warps, 4 rows per warp, wpr warps
// per row group over interleaved K slices; rows past N re-read row N − 1 and are not written),
// and so are the order of every sum and the reduction. But each lane's 16-byte loads go through a
// ring of S stages in shared memory (cp.async; one commit group per step):
//   ring[warp][stage][row][lane]  (uint4; S · 16 KiB per block)
// so S − 1 steps (4 rows × 512 bytes per warp and step) are in flight while one is multiplied,
// without the registers that held gemv_kernel's loads; the first S − 1 are issued before the PDL
// wait. A lane reads back only the slots it filled itself, so no barrier is needed. At S = 6 two
// blocks fit on an SM: 160 KiB of weights in flight per SM against gemv_kernel's 96 KiB.
template <int S>
__global__ void __launch_bounds__(kGemvThreads, S >= 6 ? 2 : 3)
    gemv_ring_kernel(float* __restrict__ y, const float* __restrict__ x, const __nv_bfloat16* __restrict__ w,
                     const void* bias, DType bias_t, int N, int K, int wpr, GemvFusion fz) {
  constexpr int RPW = 4;
  extern __shared__ uint4 gemv_ring_smem[];  // [kGemvWarps][S][RPW][32]
  __shared__ float partial[kGemvWarps][RPW];
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int rows_per_block = kGemvWarps / wpr * RPW;
  const int r = warp / wpr, part = warp % wpr;
  const int n0 = blockIdx.x * rows_per_block + r * RPW;
  const bool active = n0 < N;

  const uint4* wr[RPW];  // [K / 8] each
#pragma unroll
  for (int j = 0; j < RPW; ++j) wr[j] = reinterpret_cast<const uint4*>(w + int64_t(min(n0 + j, N - 1)) * K);
  const int nvec = K / 8, stride = 32 * wpr, first = part * 32;
  // steps of this warp (warp-uniform); a lane whose vector lies past nvec copies and adds nothing
  const int steps = active && first < nvec ? (nvec - first + stride - 1) / stride : 0;
  const uint32_t ring = static_cast<uint32_t>(__cvta_generic_to_shared(gemv_ring_smem)) +
                        uint32_t(warp * S * RPW * 32 + lane) * 16u;
  const uint4* ring_p = gemv_ring_smem + warp * S * RPW * 32 + lane;
  auto issue = [&](int i) {  // step i into slot i % S (an empty group past the end)
    const int v = first + i * stride + lane;
    if (i < steps && v < nvec) {
      const uint32_t slot = ring + uint32_t((i % S) * RPW * 32) * 16u;
#pragma unroll
      for (int j = 0; j < RPW; ++j) cp_async_16(slot + uint32_t(j * 32) * 16u, wr[j] + v);
    }
    cp_async_commit();
  };
#pragma unroll
  for (int i = 0; i < S - 1; ++i) issue(i);
  GemvOut<RPW, 1> out(lane, part, n0, 1, N, bias, bias_t);
  pdl_wait();  // x (and y, with fz.accumulate) come from earlier kernels
  out.read_y(y, N, fz.accumulate);

  float acc[RPW][1] = {};
  for (int i = 0; i < steps; ++i) {
    cp_async_wait<S - 2>();  // this lane's copies of step i have landed
    const int v = first + i * stride + lane;
    if (v < nvec) {
      const uint4* slot = ring_p + (i % S) * RPW * 32;
      // x loaded once for the 4 rows (gemv_dot per row compiles to a load of x per row), then
      // gemv_dot's FMAs (gemv_fma4)
      const float4 xa = __ldg(reinterpret_cast<const float4*>(x) + 2 * v);
      const float4 xb = __ldg(reinterpret_cast<const float4*>(x) + 2 * v + 1);
#pragma unroll
      for (int j = 0; j < RPW; ++j) {
        float wf[8];
        WeightVec<__nv_bfloat16>::unpack(slot[j * 32], wf);
        gemv_fma4(acc[j][0], wf, xa);
        gemv_fma4(acc[j][0], wf + 4, xb);
      }
    }
    // into the slot read in step i − 1: the FMAs of those reads have issued, so the reads are done
    issue(i + S - 1);
  }
  cp_async_wait<0>();
  pdl_trigger();
  gemv_store<RPW, 1>(acc, partial, y, bias != nullptr, N, wpr, fz.accumulate, out);
}

// Rows per warp: 4 at M = 1 (x loads shared by 4 rows), 1 above (MMAX accumulators per row).
template <int MMAX>
constexpr int gemv_rpw() {
  return MMAX == 1 ? 4 : 1;
}

// Launches with programmatic stream serialization where the device has it (sm_90+): the GEMV's
// blocks may start, and put their first weight loads in flight, while the previous kernel ends.
template <class W, int MMAX, bool NORM>
void launch_gemv_m(cudaStream_t st, bool pdl, bool vec, unsigned blocks, float* y, const float* x, const W* w,
                   const void* bias, DType bias_t, int M, int N, int K, int wpr, const GemvFusion& fz) {
  constexpr int R = gemv_rpw<MMAX>();
  const size_t smem = NORM ? size_t(K) * sizeof(float) : 0;
  if constexpr (NORM) {  // past 48 KiB of dynamic shared memory a kernel must opt in (once each)
    static const bool opted = [] {
      const int most = int(CudaOps::kGemvNormMaxK * sizeof(float));
      return cudaFuncSetAttribute(gemv_kernel<W, 1, R, true, true>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                  most) == cudaSuccess &&
             cudaFuncSetAttribute(gemv_kernel<W, 1, R, true, true, true>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                  most) == cudaSuccess &&
             cudaFuncSetAttribute(gemv_kernel<W, 1, R, false, true>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                  most) == cudaSuccess;
    }();
    if (!opted) throw Error(ErrorKind::device, "cuda matmul_fused: cannot give the GEMV 64 KiB of shared memory");
  }
  if constexpr (NORM) {  // (the DEFER instance only where there is a norm to defer)
    if (vec && fz.defer_norm) {
      launch_maybe_pdl(pdl, st, dim3(blocks), dim3(kGemvThreads), smem, gemv_kernel<W, MMAX, R, true, true, true>, y,
                       x, w, bias, bias_t, M, N, K, wpr, fz);
      return;
    }
  }
  if (vec)
    launch_maybe_pdl(pdl, st, dim3(blocks), dim3(kGemvThreads), smem, gemv_kernel<W, MMAX, R, true, NORM>, y, x, w,
                     bias, bias_t, M, N, K, wpr, fz);
  else
    launch_maybe_pdl(pdl, st, dim3(blocks), dim3(kGemvThreads), smem, gemv_kernel<W, MMAX, R, false, NORM>, y, x, w,
                     bias, bias_t, M, N, K, wpr, fz);
}

// Blocks of the GEMV kernel for (W, MMAX, VEC) that fit on one SM at once (registers decide),
// cached per instantiation (every device of one process is assumed to be of one architecture).
template <class W, int MMAX, bool VEC>
int gemv_blocks_per_sm() {
  static const int n = [] {
    int b = 0;
    if (cudaOccupancyMaxActiveBlocksPerMultiprocessor(&b, gemv_kernel<W, MMAX, gemv_rpw<MMAX>(), VEC, false>,
                                                      kGemvThreads, 0) != cudaSuccess)
      b = 1;
    return std::max(b, 1);
  }();
  return n;
}

// gemv_ring_kernel's dynamic shared memory: ring[kGemvWarps][S][4 rows][32 lanes] uint4 (S · 16 KiB).
constexpr size_t gemv_ring_bytes(int S) { return size_t(kGemvWarps) * S * 4 * 32 * sizeof(uint4); }

// Blocks of gemv_ring_kernel<S> that fit on one SM (its gemv_ring_bytes(S) of shared memory decide),
// after opting the kernel into that much shared memory; 0 if it cannot run. Once per instantiation.
template <int S>
int gemv_ring_blocks_per_sm() {
  static const int n = [] {
    const int smem = int(gemv_ring_bytes(S));
    int b = 0;
    if (cudaFuncSetAttribute(gemv_ring_kernel<S>, cudaFuncAttributeMaxDynamicSharedMemorySize, smem) != cudaSuccess ||
        cudaOccupancyMaxActiveBlocksPerMultiprocessor(&b, gemv_ring_kernel<S>, kGemvThreads, smem) != cudaSuccess)
      return 0;
    return b;
  }();
  return n;
}

// fz.norm_w needs M = 1 (the caller checks).
template <class W>
void launch_gemv(cudaStream_t st, bool pdl, int sm_count, float* y, const float* x, const W* w, const void* bias, DType bias_t,
                 int M, int N, int K, int ring, int min_waves_pct, const GemvFusion& fz = {}) {
  constexpr int E = 16 / int(sizeof(W));
  const bool vec = K % E == 0 && reinterpret_cast<uintptr_t>(w) % 16 == 0 && reinterpret_cast<uintptr_t>(x) % 16 == 0;
  // Warps per row group (wpr): the K range of the rows is split (wpr doubled) while the grid is
  // under min_waves_pct % of one resident wave (KVRUN_CUDA_GEMV_MIN_WAVES_PCT, 80 by default), or
  // is between 1 and 1.5 waves (a short last wave leaves most SMs with few loads in flight), as
  // long as each lane keeps at least two 16-byte loads per row. Measured on the H200 at M = 1
  // (tools/gemv_bench.cu, graph replay): N = 4096 (o, down) wants 2.6 waves (down 24.1 → 22.6 µs),
  // q·k·v one wave (384 blocks), gate·up 1.7 waves — with the register kernel; the ring kernel
  // (o, down) fills a wave at 256 blocks. Session 19, the Qwen2.5-7B shape (N = 3584): o and down
  // in 224 ring blocks (0.85 waves) instead of 448 (1.7) — down 42.5 → 36.5 µs alone, the batch-1
  // step 4.00 → 3.85 ms (90 against 80 here); Qwen-7B's grids are the same at any value from 50 up.
  const int units = vec ? K / E : K;
  const int rpw = M == 1 ? gemv_rpw<1>() : gemv_rpw<8>();
  // bf16 at M = 1 without the norm (o, down; KVRUN_CUDA_GEMV_RING stages, 0: off): the ring
  // kernel. With the norm (q·k·v, gate·up, lm_head) the register kernel stays: ring variants that
  // normalized x into shared memory after the ring were slower there (docs/PERFORMANCE.md).
  if (!std::is_same_v<W, __nv_bfloat16> || M != 1 || !vec || fz.norm_w) ring = 0;
  // Only where two of its blocks fit on an SM (the H200's 227 KiB: 2 at 6 stages, 3 at 4): with one
  // (an A100's 164 KiB at 6 stages) it would keep fewer bytes in flight than the register kernel's
  // three blocks. The A100 is not measured.
  int ring_fit = ring == 4 ? gemv_ring_blocks_per_sm<4>() : ring == 6 ? gemv_ring_blocks_per_sm<6>() : 0;
  if (ring_fit < 2) ring_fit = 0;
  const int capacity =
      sm_count * (ring_fit ? ring_fit
                  : M == 1 ? (vec ? gemv_blocks_per_sm<W, 1, true>() : gemv_blocks_per_sm<W, 1, false>())
                           : (vec ? gemv_blocks_per_sm<W, 8, true>() : gemv_blocks_per_sm<W, 8, false>()));
  auto blocks_for = [&](int wpr) {
    const int rows_per_block = kGemvWarps / wpr * rpw;
    return (int64_t(N) + rows_per_block - 1) / rows_per_block;
  };
  auto splittable = [&](int wpr) { return wpr < kGemvWarps && units >= 2 * 32 * (2 * wpr); };
  int wpr = 1;
  while (splittable(wpr)) {
    const double waves = double(blocks_for(wpr)) / capacity;
    if (waves >= min_waves_pct / 100.0 && !(waves > 1.0 && waves < 1.5)) break;
    wpr *= 2;
  }
  const unsigned blocks = unsigned(blocks_for(wpr));
  if constexpr (std::is_same_v<W, __nv_bfloat16>) {
    if (ring_fit) {
      launch_maybe_pdl(pdl, st, dim3(blocks), dim3(kGemvThreads), gemv_ring_bytes(ring),
                       ring == 4 ? gemv_ring_kernel<4> : gemv_ring_kernel<6>, y, x, w, bias, bias_t, N, K, wpr, fz);
      return;
    }
  }
  if (fz.norm_w)
    launch_gemv_m<W, 1, true>(st, pdl, vec, blocks, y, x, w, bias, bias_t, M, N, K, wpr, fz);
  else if (M == 1)
    launch_gemv_m<W, 1, false>(st, pdl, vec, blocks, y, x, w, bias, bias_t, M, N, K, wpr, fz);
  else if (M == 2)
    launch_gemv_m<W, 2, false>(st, pdl, vec, blocks, y, x, w, bias, bias_t, M, N, K, wpr, fz);
  else if (M <= 4)
    launch_gemv_m<W, 4, false>(st, pdl, vec, blocks, y, x, w, bias, bias_t, M, N, K, wpr, fz);
  else
    launch_gemv_m<W, 8, false>(st, pdl, vec, blocks, y, x, w, bias, bias_t, M, N, K, wpr, fz);
}

// xb[n] (bf16) = x[n] rounded to nearest even.  Flat over M·K.
__global__ void f32_to_bf16_kernel(__nv_bfloat16* xb, const float* __restrict__ x, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    xb[i] = __float2bfloat16_rn(x[i]);
}

// xh[m, K] (f16) = x[m, K] · 2^-s_m, rowscale[m] = 2^s_m: each row is scaled by a power of two
// (exact) so that its max |x| lies in [2^13, 2^14) — no f16 overflow for large activations, no
// f16 subnormals for tiny ones. A row that is all zero or holds inf/NaN is left as is.
// One block per row.
__global__ void f32_to_f16_rowscaled_kernel(__half* xh, float* rowscale, const float* __restrict__ x, int K) {
  __shared__ float scratch[32];
  const int64_t m = blockIdx.x;
  const float* xr = x + m * K;
  float mx = 0.f;
  for (int k = threadIdx.x; k < K; k += blockDim.x) mx = fmaxf(mx, fabsf(xr[k]));
  mx = cuda_plugin::block_max(mx, scratch);
  const float scale = cuda_plugin::f16_row_scale(mx);  // multiply x by this
  if (threadIdx.x == 0) rowscale[m] = 1.f / scale;    // exact: a power of two
  for (int k = threadIdx.x; k < K; k += blockDim.x) xh[m * K + k] = __float2half_rn(xr[k] * scale);
}

// y[m, n] = y[m, n] · rowscale[m] (if given) + bias[n] (if given).  Flat over M·N.
__global__ void matmul_epilogue_kernel(float* y, const float* __restrict__ rowscale, const void* bias, DType bias_t,
                                       int64_t M, int64_t N) {
  const int64_t total = M * N;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < total; i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t m = i / N, n = i - m * N;
    float v = y[i];
    if (rowscale) v *= rowscale[m];
    if (bias) v += load_any(bias, bias_t, n);
    y[i] = v;
  }
}

// The same four columns at a time (N % 4 == 0, y and an f32 bias 16-byte aligned, M·N/4 < 2^31):
// 16-byte accesses and a 32-bit index instead of one 64-bit division per element. Same arithmetic.
__global__ void matmul_epilogue4_kernel(float4* y, const float* __restrict__ rowscale, const float4* __restrict__ bias,
                                        int N4, int total4) {
  for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < total4; i += gridDim.x * blockDim.x) {
    const int m = i / N4;
    float4 v = y[i];
    if (rowscale) {
      const float r = rowscale[m];
      v = make_float4(v.x * r, v.y * r, v.z * r, v.w * r);
    }
    if (bias) {
      const float4 b = __ldg(bias + (i - m * N4));
      v = make_float4(v.x + b.x, v.y + b.y, v.z + b.z, v.w + b.w);
    }
    y[i] = v;
  }
}

void launch_epilogue(cudaStream_t st, float* y, const float* rowscale, const void* bias, DType bias_t, int64_t M,
                     int64_t N) {
  const auto a16 = [](const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; };
  if (N % 4 == 0 && a16(y) && (!bias || (bias_t == DType::f32 && a16(bias))) && M * N / 4 < (int64_t(1) << 31)) {
    const int total4 = int(M * N / 4);
    matmul_epilogue4_kernel<<<grid_for(total4, 256), 256, 0, st>>>(reinterpret_cast<float4*>(y), rowscale,
                                                                   static_cast<const float4*>(bias), int(N / 4), total4);
  } else {
    matmul_epilogue_kernel<<<grid_for(M * N, 256), 256, 0, st>>>(y, rowscale, bias, bias_t, M, N);
  }
  KVRUN_CUDA_CHECK_LAUNCH("matmul_epilogue_kernel");
}

// xb = x rounded to bf16, four at a time (n % 4 == 0, both 16/8-byte aligned, n/4 < 2^31).
__global__ void f32_to_bf16x4_kernel(uint2* xb, const float4* __restrict__ x, int n4) {
  for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n4; i += gridDim.x * blockDim.x) {
    const float4 v = __ldg(x + i);
    xb[i] = make_uint2(pack_bf16x2(v.x, v.y), pack_bf16x2(v.z, v.w));
  }
}

void launch_f32_to_bf16(cudaStream_t st, __nv_bfloat16* xb, const float* x, int64_t n) {
  if (n % 4 == 0 && reinterpret_cast<uintptr_t>(x) % 16 == 0 && reinterpret_cast<uintptr_t>(xb) % 8 == 0 &&
      n / 4 < (int64_t(1) << 31)) {
    f32_to_bf16x4_kernel<<<grid_for(n / 4, 256), 256, 0, st>>>(reinterpret_cast<uint2*>(xb),
                                                               reinterpret_cast<const float4*>(x), int(n / 4));
  } else {
    f32_to_bf16_kernel<<<grid_for(n, 256), 256, 0, st>>>(xb, x, n);
  }
  KVRUN_CUDA_CHECK_LAUNCH("f32_to_bf16_kernel");
}

constexpr size_t align_up(size_t v, size_t a) { return (v + a - 1) / a * a; }

// The bias operand of a matmul (null: none) as the kernels take it, checked against N.
struct BiasOperand {
  const void* p = nullptr;
  DType t = DType::f32;
};
BiasOperand bias_operand(const TensorView* bias, int64_t N, const char* op) {
  if (!bias) return {};
  require_device(*bias, op, "bias");
  require(bias->numel() == N && is_float_dtype(bias->dtype), std::string("cuda ") + op + ": bias " +
                                                                 bias->shape_string() + " must have " +
                                                                 std::to_string(N) + " f32, f16 or bf16 elements");
  return {bias->data, bias->dtype};
}

}  // namespace

Status CudaOps::matmul(TensorView y, TensorView x, TensorView w, const TensorView* bias) noexcept {
  return guard([&] { matmul_impl(y, x, w, bias); });
}

void CudaOps::matmul_impl(TensorView y, TensorView x, TensorView w, const TensorView* bias) {
  require_device(y, "matmul", "y");
  require_device(x, "matmul", "x");
  require_device(w, "matmul", "w");
  require(x.dtype == DType::f32 && y.dtype == DType::f32, "cuda matmul: x and y must be f32");
  require(w.rank == 2, "cuda matmul: w must be [N, K], got " + w.shape_string());
  require(is_float_dtype(w.dtype), "cuda matmul: w dtype " + std::string(dtype_name(w.dtype)) +
                                       " not supported (f32, f16, bf16)");
  const int64_t M = x.rows(), K = x.cols(), N = w.shape[0];
  require(w.shape[1] == K, "cuda matmul: x " + x.shape_string() + " and w " + w.shape_string() + " differ in K");
  require(y.rows() == M && y.cols() == N,
          "cuda matmul: y " + y.shape_string() + " must be [" + std::to_string(M) + ", " + std::to_string(N) + "]");
  require(y.data != x.data, "cuda matmul: y must not alias x");
  const auto [bias_p, bias_t] = bias_operand(bias, N, "matmul");
  require(M <= INT32_MAX && N <= INT32_MAX && K <= INT32_MAX, "cuda matmul: dimension beyond 2^31");
  if (M == 0 || N == 0) return;
  ScopedDevice g(dev_.index());
  const cudaStream_t st = stream();
  float* yp = y.as<float>();
  const float* xp = x.as<const float>();
  if (K == 0) {  // empty sum: y = bias (or 0)
    KVRUN_CUDA_CHECK(cudaMemsetAsync(yp, 0, size_t(M * N) * sizeof(float), st));
    if (bias_p) {
      launch_epilogue(st, yp, nullptr, bias_p, bias_t, M, N);
    }
    return;
  }

  if (M <= gemv_max_rows_) {
    KVRUN_CUDA_DISPATCH_FLOAT(w.dtype, W, "cuda matmul w",
        launch_gemv<W>(st, pdl_, sm_count_, yp, xp, w.as<const W>(), bias_p, bias_t, int(M), int(N), int(K), gemv_ring_, gemv_min_waves_pct_));
    KVRUN_CUDA_CHECK_LAUNCH("gemv_kernel");
    return;
  }

  if (w.dtype == DType::bf16 && M <= tc_gemm_max_rows_ && small_m_gemm_supported(M, N, K, xp, w.data)) {
    SmallMGemm a{yp,     xp,        w.as<const __nv_bfloat16>(), bias_p, bias_t, int(M), int(N), int(K),
                 sm_count_, pdl_, tc_splits_, st};
    if (!tc_gemm_ready_) {  // once per device (these Ops are the device's)
      small_m_gemm_prepare();
      tc_gemm_ready_ = true;
    }
    const int splits = small_m_gemm_splits(a);
    float* partial = splits > 1 ? static_cast<float*>(workspace(size_t(splits) * size_t(M * N) * sizeof(float),
                                                                "matmul"))
                                : nullptr;
    small_m_gemm(a, splits, partial);
    KVRUN_CUDA_CHECK_LAUNCH("gemm_small_m_kernel");
    return;
  }

  const int m = int(M), n = int(N), k = int(K);
  const float* rowscale = nullptr;
  if (w.dtype == DType::f32) {
    cublas_gemm(yp, xp, w, m, n, k, 0.f);
  } else if (w.dtype == DType::bf16) {
    auto* xb = static_cast<__nv_bfloat16*>(workspace(size_t(M * K) * 2, "matmul"));  // [M, K] bf16
    launch_f32_to_bf16(st, xb, xp, M * K);
    bf16_gemm(yp, xb, w, bias_p, bias_t, m, n, k, false);  // the bias too
    return;
  } else {  // f16
    const size_t xh_bytes = align_up(size_t(M * K) * 2, 256);
    auto* base = static_cast<char*>(workspace(xh_bytes + size_t(M) * sizeof(float), "matmul"));
    auto* xh = reinterpret_cast<__half*>(base);
    auto* rs = reinterpret_cast<float*>(base + xh_bytes);
    f32_to_f16_rowscaled_kernel<<<unsigned(M), 256, 0, st>>>(xh, rs, xp, k);
    KVRUN_CUDA_CHECK_LAUNCH("f32_to_f16_rowscaled_kernel");
    cublas_gemm(yp, xh, w, m, n, k, 0.f);
    rowscale = rs;
  }
  if (bias_p || rowscale) {
    launch_epilogue(st, yp, rowscale, bias_p, bias_t, M, N);
  }
}

// y[M, N] (f32) = x[M, K] · w[N, K]ᵀ + β·y through cuBLAS, x in w's dtype (f32, bf16 or f16).
// Column-major view: yᵀ[N, M] = w[N, K] · xᵀ[K, M] (w row-major [N, K] = column-major [K, N]).
void CudaOps::cublas_gemm(float* y, const void* x, const TensorView& w, int m, int n, int k, float beta) {
  const float one = 1.f;
  if (w.dtype == DType::f32) {
    KVRUN_CUBLAS_CHECK(cublasSgemm(cublas_, CUBLAS_OP_T, CUBLAS_OP_N, n, m, k, &one, w.as<const float>(), k,
                                   static_cast<const float*>(x), k, &beta, y, n));
    return;
  }
  const cudaDataType_t t = w.dtype == DType::bf16 ? CUDA_R_16BF : CUDA_R_16F;
  KVRUN_CUBLAS_CHECK(cublasGemmEx(cublas_, CUBLAS_OP_T, CUBLAS_OP_N, n, m, k, &one, w.data, t, k, x, t, k, &beta, y,
                                  CUDA_R_32F, n, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
}

// ---------------------------------------------------------------------------------------------
// bf16 weights on the cuBLAS path: cuBLASLt (timed algorithm, f32 bias in the epilogue) or GemmEx.
//
// The same column-major view as cublas_gemm: D = yᵀ[N, M] = op_T(A) · B + β·C (+ bias), with
//   A = w   bf16, column-major [K, N] (w row-major [N, K]), transposed → [N, K]
//   B = xbᵀ bf16, column-major [K, M] (xb row-major [M, K])
//   C = D = yᵀ f32, column-major [N, M], ld N, in place; β = 0 (matmul) or 1 (accumulate)
//   bias    f32 [N] (CUBLASLT_EPILOGUE_BIAS): one value per row of D (its length must be D's row
//           count, N here) added to every column, i.e. bias[n] to y[m, n] for every m.
// Bias type (cublasLt.h, CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE): the bias elements have D's type
// (f32 here); the exceptions are IMMA and fp8 kernels only. So an f32 bias is used directly and a
// bf16 or f16 bias is added by the epilogue kernel after the GEMM (no conversion buffer).
//
// Algorithm (KVRUN_CUDA_LT_TUNE=1): for M ≤ kLtTuneMaxRows (batched decode; the shapes whose
// weights cuBLAS's default choice streams at 2.7–3.8 of ~4.3 TB/s on the H200) the heuristic's
// first kLtTuneAlgos candidates are each run once to warm up and kLtTuneRuns times timed (cudaEvents
// on the stream, L2 flushed before every run, median) when the plan is made; the fastest is kept
// unless it beats the heuristic's own first choice by less than kLtTuneMinGain (timing noise
// should not decide). Larger M, a plan made during graph capture, or a tuning that cannot run
// (no scratch memory, every candidate failing) keep the heuristic's first algorithm. Either way
// the algorithm of a plan is fixed for the life of these Ops: results are deterministic within a
// process. Two processes (or two devices' Ops in one process) may time the candidates differently
// and pick different algorithms, whose summation order differs (split-K or not, other tiles) —
// the products agree to fp32 rounding, not bitwise.

namespace {

// The largest power of two up to 256 that divides the address (what cuBLASLt's MIN_ALIGNMENT
// preferences describe).
uint32_t ptr_alignment(const void* p) {
  const uintptr_t a = reinterpret_cast<uintptr_t>(p);
  const uintptr_t low = a & (~a + 1);  // lowest set bit (0 for a null pointer)
  return low == 0 || low >= 256 ? 256u : uint32_t(low);
}

constexpr int kLtTuneWarmup = 1;      // untimed runs per candidate (lazy kernel loading, clocks)
constexpr int kLtTuneRuns = 5;        // timed runs per candidate; the median counts
constexpr float kLtTuneMinGain = 0.03f;  // another candidate replaces the heuristic's first if ≥ 3 % faster

}  // namespace

void CudaOps::lt_destroy(LtPlan& p) noexcept {
  if (p.desc) cublasLtMatmulDescDestroy(p.desc);
  if (p.w) cublasLtMatrixLayoutDestroy(p.w);
  if (p.x) cublasLtMatrixLayoutDestroy(p.x);
  if (p.y) cublasLtMatrixLayoutDestroy(p.y);
  p = LtPlan{};
}

const CudaOps::LtPlan& CudaOps::lt_plan(const LtKey& key, const void* w, const __nv_bfloat16* xb, const void* bias) {
  if (auto it = lt_plans_.find(key); it != lt_plans_.end()) return it->second;
  if (lt_plans_.size() >= kLtMaxPlans) {
    // Drop the untimed plans (descriptors are not referenced once a call returns; remade, they get
    // the same heuristic answer). Plans up to kLtTuneMaxRows stay: a timed one might time another
    // candidate fastest if remade, and one made during capture is what that graph replays.
    for (auto it = lt_plans_.begin(); it != lt_plans_.end();) {
      if (!lt_tune_ || it->first.m > kLtTuneMaxRows) {
        lt_destroy(it->second);
        it = lt_plans_.erase(it);
      } else {
        ++it;
      }
    }
  }
  LtPlan p;
  cublasLtMatmulPreference_t pref = nullptr;
  try {
    const cublasOperation_t ta = CUBLAS_OP_T, tb = CUBLAS_OP_N;
    const cublasLtEpilogue_t epi = key.bias ? CUBLASLT_EPILOGUE_BIAS : CUBLASLT_EPILOGUE_DEFAULT;
    KVRUN_CUBLAS_CHECK(cublasLtMatmulDescCreate(&p.desc, CUBLAS_COMPUTE_32F, CUDA_R_32F));
    KVRUN_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p.desc, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof(ta)));
    KVRUN_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p.desc, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof(tb)));
    KVRUN_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p.desc, CUBLASLT_MATMUL_DESC_EPILOGUE, &epi, sizeof(epi)));
    if (key.bias) {
      const int32_t bias_type = CUDA_R_32F;
      KVRUN_CUBLAS_CHECK(
          cublasLtMatmulDescSetAttribute(p.desc, CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE, &bias_type, sizeof(bias_type)));
      // the heuristic reads the bias pointer's value for its alignment (cublasLt.h); the timing
      // runs read the bias itself
      KVRUN_CUBLAS_CHECK(
          cublasLtMatmulDescSetAttribute(p.desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias, sizeof(bias)));
    }
    KVRUN_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&p.w, CUDA_R_16BF, uint64_t(key.k), uint64_t(key.n), int64_t(key.k)));
    KVRUN_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&p.x, CUDA_R_16BF, uint64_t(key.k), uint64_t(key.m), int64_t(key.k)));
    KVRUN_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&p.y, CUDA_R_32F, uint64_t(key.n), uint64_t(key.m), int64_t(key.n)));

    KVRUN_CUBLAS_CHECK(cublasLtMatmulPreferenceCreate(&pref));
    const uint64_t ws = cublas_ws_bytes_;
    KVRUN_CUBLAS_CHECK(
        cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof(ws)));
    const std::pair<cublasLtMatmulPreferenceAttributes_t, uint32_t> aligns[] = {
        {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, key.align_w},
        {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, key.align_x},
        {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, key.align_y},
        {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, key.align_y}};
    for (const auto& [attr, a] : aligns)
      KVRUN_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, attr, &a, sizeof(a)));

    // Timing synchronizes the host and allocates: never while the stream is being captured.
    cudaStreamCaptureStatus cap = cudaStreamCaptureStatusNone;
    KVRUN_CUDA_CHECK(cudaStreamIsCapturing(stream(), &cap));
    const bool capturing = cap != cudaStreamCaptureStatusNone;
    const bool time_it = lt_tune_ && key.m <= kLtTuneMaxRows && !capturing;
    const int want = time_it ? kLtTuneAlgos : 1;  // untimed: only the first answer is used
    cublasLtMatmulHeuristicResult_t res[kLtTuneAlgos] = {};
    int found = 0;
    const cublasStatus_t hs =
        cublasLtMatmulAlgoGetHeuristic(cublaslt_, p.desc, p.w, p.x, p.y, p.y, pref, want, res, &found);
    cublasLtMatmulPreferenceDestroy(pref);
    pref = nullptr;
    if (hs != CUBLAS_STATUS_NOT_SUPPORTED) KVRUN_CUBLAS_CHECK(hs);
    p.candidates = hs == CUBLAS_STATUS_SUCCESS ? std::clamp(found, 0, want) : 0;
    for (int i = 0; i < kLtTuneAlgos; ++i) p.us[i] = -1.f;
    // The heuristic's first usable answer (the list is ordered by its estimated time).
    for (int i = 0; i < p.candidates && !p.ok; ++i) {
      if (res[i].state == CUBLAS_STATUS_SUCCESS && res[i].workspaceSize <= cublas_ws_bytes_) {
        p.ok = true;
        p.pick = i;
        p.algo = res[i].algo;
      }
    }
    const char* note = "";
    if (!p.ok) {
      note = "no algorithm: cublasGemmEx";
    } else if (time_it) {
      if (!lt_tune(p, key, res, p.candidates, w, xb)) note = "timing failed: the heuristic's first";
    } else if (!lt_tune_) {
      note = "KVRUN_CUDA_LT_TUNE=0: the heuristic's first";
    } else if (capturing) {
      // Kept as it is (not timed later): the graph being captured replays this algorithm, and an
      // eager call of the same shape with another one would sum in another order. The model runs
      // every decode shape eagerly once before it captures it, so this is the exception.
      note = "made during graph capture: the heuristic's first, kept";
    } else {
      note = "M > 256: the heuristic's first";
    }
    if (lt_tune_log_) lt_log(key, p, res, note);
  } catch (...) {
    if (pref) cublasLtMatmulPreferenceDestroy(pref);
    lt_destroy(p);
    throw;
  }
  if (!p.ok) lt_destroy(p);  // only the answer is kept: cublasGemmEx for this key
  return lt_plans_.emplace(key, p).first->second;
}

bool CudaOps::lt_tune(LtPlan& p, const LtKey& key, const cublasLtMatmulHeuristicResult_t* res, int found,
                      const void* w, const __nv_bfloat16* xb) {
  const cudaStream_t st = stream();
  // Scratch for D (and C: β = 1 reads it): the timing runs must not touch y — with β = 1 each run
  // would add the product into it once more — nor the workspace (it holds xb, the operand). The
  // same block is the L2 flush: 2× the L2 is written (a memset) before every run, so that each run
  // streams w from HBM as a decode step does (a 7B model's o weights, 32 MiB, would otherwise stay
  // in the H200's 50 MiB L2 between runs and time the L2). A power-of-two size, so that later
  // tunings get the same block back from the caching pool; freed when the tuning ends.
  const size_t y_bytes = size_t(key.m) * size_t(key.n) * sizeof(float);
  size_t flush_bytes = 2 * size_t(std::max(l2_bytes_, 0));
  size_t bytes = std::bit_ceil(std::max(y_bytes, flush_bytes));
  void* scratch = nullptr;
  if (!dev_.allocate(bytes, MemCategory::workspace, &scratch).ok()) {
    flush_bytes = 0;  // tight on memory: time without the flush rather than not at all
    bytes = y_bytes;
    if (!dev_.allocate(bytes, MemCategory::workspace, &scratch).ok()) return false;
  }
  cudaEvent_t ev[2 * kLtTuneRuns] = {};
  struct Release {  // on every way out, exceptions too (frees need no sync: one stream per device)
    CudaDevice& dev;
    void* scratch;
    size_t bytes;
    cudaEvent_t* ev;
    ~Release() {
      for (int i = 0; i < 2 * kLtTuneRuns; ++i)
        if (ev[i]) (void)cudaEventDestroy(ev[i]);
      dev.deallocate(scratch, bytes, MemCategory::workspace);
    }
  } release{dev_, scratch, bytes, ev};
  for (cudaEvent_t& e : ev) {
    if (cudaEventCreate(&e) != cudaSuccess) {
      e = nullptr;
      (void)cudaGetLastError();  // no stale error for the next launch check
      return false;
    }
  }

  // A timing call that fails (events under a profiler that replays kernels, say) ends the tuning
  // without an error: the heuristic's first algorithm is as correct, only maybe slower. The error
  // is cleared so the next launch check does not report it; a device fault is sticky and the next
  // real call reports it.
  auto timing_failed = [] {
    (void)cudaGetLastError();
    return false;
  };
  float* d = static_cast<float*>(scratch);
  const float one = 1.f, beta = key.accumulate ? 1.f : 0.f;
  KVRUN_CUDA_CHECK(cudaMemsetAsync(scratch, 0, bytes, st));  // C: zeros rather than leftovers
  int best = -1;
  for (int c = 0; c < found; ++c) {
    if (res[c].state != CUBLAS_STATUS_SUCCESS || res[c].workspaceSize > cublas_ws_bytes_) continue;
    bool failed = false;
    for (int r = 0; r < kLtTuneWarmup + kLtTuneRuns && !failed; ++r) {
      if (flush_bytes) KVRUN_CUDA_CHECK(cudaMemsetAsync(scratch, 0, flush_bytes, st));
      const int t = r - kLtTuneWarmup;  // timed run t ≥ 0: events ev[2t], ev[2t + 1] around it
      if (t >= 0 && cudaEventRecord(ev[2 * t], st) != cudaSuccess) return timing_failed();
      const cublasStatus_t s = cublasLtMatmul(cublaslt_, p.desc, &one, w, p.w, xb, p.x, &beta, d, p.y, d, p.y,
                                              &res[c].algo, cublas_ws_, cublas_ws_bytes_, st);
      if (s != CUBLAS_STATUS_SUCCESS) {  // this candidate is skipped; the real call never uses it
        failed = true;
        p.us[c] = -2.f;
        (void)cudaGetLastError();
        break;
      }
      if (t >= 0 && cudaEventRecord(ev[2 * t + 1], st) != cudaSuccess) return timing_failed();
    }
    // An error here is one of the device itself (a faulting kernel), not of the choice: thrown.
    KVRUN_CUDA_CHECK(cudaStreamSynchronize(st));
    if (failed) continue;
    float ms[kLtTuneRuns];
    for (int t = 0; t < kLtTuneRuns; ++t)
      if (cudaEventElapsedTime(&ms[t], ev[2 * t], ev[2 * t + 1]) != cudaSuccess) return timing_failed();
    std::sort(ms, ms + kLtTuneRuns);
    p.us[c] = 1000.f * ms[kLtTuneRuns / 2];
    if (best < 0 || p.us[c] < p.us[best]) best = c;
  }
  if (best < 0) return false;
  // The heuristic's own first choice (p.pick on entry) keeps the plan unless clearly beaten.
  const int first = p.pick;
  if (p.us[first] >= 0.f && p.us[best] > (1.f - kLtTuneMinGain) * p.us[first]) best = first;
  p.pick = best;
  p.algo = res[best].algo;
  p.tuned = true;
  return true;
}

void CudaOps::lt_log(const LtKey& key, const LtPlan& p, const cublasLtMatmulHeuristicResult_t* res,
                     const char* note) const {
  char buf[256];
  std::snprintf(buf, sizeof buf, "kvrun cuda: cuBLASLt plan m %d n %d k %d beta %d bias %d align w/x/y %u/%u/%u:",
                key.m, key.n, key.k, key.accumulate ? 1 : 0, key.bias ? 1 : 0, key.align_w, key.align_x, key.align_y);
  std::string line = buf;
  for (int i = 0; i < p.candidates; ++i) {
    int32_t id = -1, splitk = 0;
    uint32_t tile = 0;
    if (res[i].state == CUBLAS_STATUS_SUCCESS) {
      size_t written = 0;
      (void)cublasLtMatmulAlgoConfigGetAttribute(&res[i].algo, CUBLASLT_ALGO_CONFIG_ID, &id, sizeof(id), &written);
      (void)cublasLtMatmulAlgoConfigGetAttribute(&res[i].algo, CUBLASLT_ALGO_CONFIG_TILE_ID, &tile, sizeof(tile),
                                                 &written);
      (void)cublasLtMatmulAlgoConfigGetAttribute(&res[i].algo, CUBLASLT_ALGO_CONFIG_SPLITK_NUM, &splitk,
                                                 sizeof(splitk), &written);
    }
    if (p.us[i] >= 0.f)
      std::snprintf(buf, sizeof buf, " [%d] algo %d tile %u splitK %d waves %.2f: %.2f us;", i, id, tile, splitk,
                    res[i].wavesCount, p.us[i]);
    else
      std::snprintf(buf, sizeof buf, " [%d] algo %d tile %u splitK %d: %s;", i, id, tile, splitk,
                    res[i].state != CUBLAS_STATUS_SUCCESS || res[i].workspaceSize > cublas_ws_bytes_ ? "unusable"
                    : p.us[i] < -1.5f                                                                 ? "failed"
                                                                                                      : "not timed");
    line += buf;
  }
  if (p.ok)
    std::snprintf(buf, sizeof buf, " -> [%d]%s%s%s", p.pick, p.tuned ? " (timed)" : "", *note ? " " : "", note);
  else
    std::snprintf(buf, sizeof buf, " -> %s", note);
  line += buf;
  std::fprintf(stderr, "%s\n", line.c_str());
}

void CudaOps::bf16_gemm(float* y, const __nv_bfloat16* xb, const TensorView& w, const void* bias, DType bias_t, int m,
                        int n, int k, bool accumulate) {
  // One cuBLASLt call with or without the bias in its epilogue; false where its plan has no
  // algorithm. The bias goes into the epilogue of that call (f32, KVRUN_CUDA_LT_BIAS=1), else into
  // the epilogue kernel after the GEMM (cuBLASLt without the bias, KVRUN_CUDA_LT_TUNE=1, or GemmEx).
  const auto lt_gemm = [&](bool with_bias) {
    const LtKey key{m,
                    n,
                    k,
                    accumulate,
                    with_bias,
                    ptr_alignment(w.data),
                    ptr_alignment(xb),
                    ptr_alignment(y),
                    with_bias ? ptr_alignment(bias) : 0u};
    const LtPlan& p = lt_plan(key, w.data, xb, with_bias ? bias : nullptr);
    if (!p.ok) return false;
    // the plan is shared by every bias of this alignment (one per layer): point it at this one
    if (with_bias)
      KVRUN_CUBLAS_CHECK(
          cublasLtMatmulDescSetAttribute(p.desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias, sizeof(bias)));
    const float one = 1.f, beta = accumulate ? 1.f : 0.f;
    KVRUN_CUBLAS_CHECK(cublasLtMatmul(cublaslt_, p.desc, &one, w.data, p.w, xb, p.x, &beta, y, p.y, y, p.y, &p.algo,
                                      cublas_ws_, cublas_ws_bytes_, stream()));
    return true;
  };
  if (cublaslt_ && lt_bias_ && bias && bias_t == DType::f32 && lt_gemm(true)) return;  // bias added
  if (!(cublaslt_ && lt_tune_ && lt_gemm(false))) cublas_gemm(y, xb, w, m, n, k, accumulate ? 1.f : 0.f);
  if (bias) launch_epilogue(stream(), y, nullptr, bias, bias_t, m, n);
}

bool CudaOps::matmul_fuses(const MatmulFusion& f, int64_t M, const TensorView& w) const noexcept {
  const DType w_dtype = w.dtype;
  if (!fuse_ || (f.norm_w && f.swiglu) || M <= 0 || w.rank != 2 || !is_float_dtype(w_dtype)) return false;
  if (M <= gemv_max_rows_)  // the GEMV: norm at M = 1, accumulate; no SwiGLU (each block would redo it)
    return !f.swiglu &&
           (!f.norm_w || (M == 1 && f.norm_w->numel() <= kGemvNormMaxK && w.shape[0] <= kGemvNormMaxN));
  if (w_dtype == DType::bf16) return M > tc_gemm_max_rows_;
  return w_dtype == DType::f32 && !f.norm_w && !f.swiglu;  // cuBLAS Sgemm with β = 1
}

bool CudaOps::matmul_reads_bf16(const MatmulFusion& f, int64_t M, const TensorView& w) const noexcept {
  return !f.norm_w && !f.swiglu && w.dtype == DType::bf16 && M > gemv_max_rows_ && matmul_fuses(f, M, w);
}

Status CudaOps::matmul_fused(TensorView y, TensorView x, TensorView w, const TensorView* bias,
                             const MatmulFusion& f) noexcept {
  return guard([&] { matmul_fused_impl(y, x, w, bias, f); });
}

void CudaOps::matmul_fused_impl(TensorView y, TensorView x, TensorView w, const TensorView* bias,
                                const MatmulFusion& f) {
  require_device(y, "matmul_fused", "y");
  require_device(x, "matmul_fused", "x");
  require_device(w, "matmul_fused", "w");
  require(y.dtype == DType::f32 && (x.dtype == DType::f32 || x.dtype == DType::bf16),
          "cuda matmul_fused: x must be f32 (or bf16) and y f32");
  require(w.rank == 2 && is_float_dtype(w.dtype), "cuda matmul_fused: w must be [N, K] of f32, f16 or bf16, got " +
                                                      std::string(dtype_name(w.dtype)) + " " + w.shape_string());
  const int64_t M = x.rows(), N = w.shape[0], K = w.shape[1];
  require(x.cols() == (f.swiglu ? 2 * K : K),
          "cuda matmul_fused: x " + x.shape_string() + " does not match w " + w.shape_string() +
              (f.swiglu ? " (swiglu: x is [M, 2K] gate | up)" : ""));
  require(y.rows() == M && y.cols() == N,
          "cuda matmul_fused: y " + y.shape_string() + " must be [" + std::to_string(M) + ", " + std::to_string(N) + "]");
  require(y.data != x.data, "cuda matmul_fused: y must not alias x");
  require(K > 0 && M <= INT32_MAX && N <= INT32_MAX && 2 * K <= INT32_MAX, "cuda matmul_fused: unsupported sizes");
  if (f.norm_w) {
    require_device(*f.norm_w, "matmul_fused", "norm_w");
    require(f.norm_w->numel() == K && is_float_dtype(f.norm_w->dtype),
            "cuda matmul_fused: norm_w " + f.norm_w->shape_string() + " must have K = " + std::to_string(K) +
                " float elements");
  }
  require(matmul_fuses(f, M, w), "cuda matmul_fused: this fusion is not done for M = " + std::to_string(M) +
                                           " with " + std::string(dtype_name(w.dtype)) +
                                           " weights (ask matmul_fuses first)");
  const bool x_bf16 = x.dtype == DType::bf16;
  require(!x_bf16 || matmul_reads_bf16(f, M, w), "cuda matmul_fused: x is bf16 but this fusion reads f32 for M = " +
                                                    std::to_string(M) + " (ask matmul_reads_bf16 first)");
  const auto [bias_p, bias_t] = bias_operand(bias, N, "matmul_fused");
  if (M == 0 || N == 0) return;
  ScopedDevice g(dev_.index());
  const cudaStream_t st = stream();
  float* yp = y.as<float>();
  if (x_bf16) {  // the cuBLAS operand as it is: y = x·wᵀ (+ y) + bias
    bf16_gemm(yp, x.as<const __nv_bfloat16>(), w, bias_p, bias_t, int(M), int(N), int(K), f.accumulate);
    return;
  }
  const float* xp = x.as<const float>();
  if (M <= gemv_max_rows_) {
    GemvFusion fz;
    fz.accumulate = f.accumulate;
    if (f.norm_w) {
      fz.norm_w = f.norm_w->data;
      fz.norm_t = f.norm_w->dtype;
      fz.eps = f.norm_eps;
      fz.defer_norm = defer_norm_;
    }
    KVRUN_CUDA_DISPATCH_FLOAT(w.dtype, W, "cuda matmul_fused w",
        launch_gemv<W>(st, pdl_, sm_count_, yp, xp, w.as<const W>(), bias_p, bias_t, int(M), int(N), int(K), gemv_ring_, gemv_min_waves_pct_, fz));
    KVRUN_CUDA_CHECK_LAUNCH("gemv_kernel (fused)");
    return;
  }
  // cuBLAS: the bf16 operand straight from the norm or SwiGLU kernel, y += through β = 1
  const float beta = f.accumulate ? 1.f : 0.f;
  const int m = int(M), n = int(N), k = int(K);
  if (w.dtype == DType::bf16) {
    auto* xb = static_cast<__nv_bfloat16*>(workspace(size_t(M * K) * 2, "matmul_fused"));  // [M, K] bf16
    if (f.norm_w) {
      launch_rms_norm_bf16(pdl_, st, xb, xp, f.norm_w->data, f.norm_w->dtype, M, K, f.norm_eps);
    } else if (f.swiglu) {
      launch_swiglu_bf16(pdl_, st, xb, xp, M, K);
    } else {
      launch_f32_to_bf16(st, xb, xp, M * K);
    }
    // y = xb·wᵀ (+ y: β = 1 where accumulating) + bias
    bf16_gemm(yp, xb, w, bias_p, bias_t, m, n, k, f.accumulate);
    return;
  } else {  // f32 (matmul_fuses refuses f16 here, and norm or SwiGLU with f32 weights)
    cublas_gemm(yp, xp, w, m, n, k, beta);
  }
  if (bias_p) {
    launch_epilogue(st, yp, nullptr, bias_p, bias_t, M, N);
  }
}

}  // namespace kvrun::cuda
