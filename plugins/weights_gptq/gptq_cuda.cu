// weights.gptq — the CUDA Linear. The packed arrays stay packed in device memory.
//
//  * at load the packed arrays are transposed once so each output column's words are contiguous
//    (layout in the device code below).
//  * 4-bit Linears whose k-tiles of 16 rows each lie in one group (the usual case) are rearranged
//    at load for the tensor cores (layout and numerics at "int4 on the tensor cores" below): M = 1
//    runs gemv1_mma_kernel, M ≤ 16 gemv_mma_kernel (codes dequantized to bf16 in registers,
//    mma.sync with fp32 accumulation; up to mma_max_rows() where gemm_tc_kernel does not apply),
//    9 ≤ M ≤ 64 gemm_tc_kernel (x as f16 fragments staged once
//    per block, W = s·(q − z) in f16), on compute capability 9.0 gemm_wg_kernel instead
//    (gptq_wg.cu: the same product on warpgroup MMA, sm_90a code); the batch-1 and 9..64-row
//    kernels fuse RMSNorm of x and y += (MatmulFusion). Everything else takes the paths described next.
//  * M ≤ kCudaFusedMaxM (decode): gemv_kernel. A block owns four output columns and its warps
//    split k; per 128-unit block every lane reads 16 bytes of each column (interleaved so that the
//    warp's x reads are contiguous), turns codes into floats with integer ops only (2^23 + q as float bits),
//    accumulates x·(q − z) in fp32 and scales per group; shuffles and shared memory reduce in a
//    fixed order (deterministic).
//    Every packed byte is read once per step.
//  * larger M (prefill): dequant_kernel expands the layer once per call to an f16 copy Wᵀ [N, Kp]
//    (bf16 for a layer whose |W| could exceed the f16 range) in a workspace shared by the format's
//    Linears (reads and writes both contiguous along k in the transposed layout); then the
//    backend's GEMM (Ops::matmul: cuBLAS on tensor cores with fp32 accumulation) multiplies it.
//    W and x are rounded to f16 (bf16) there.
//  * act-order: the rows were sorted by group at load (gptq_pack.cpp); gather_kernel builds
//    x[:, perm] (0 for padding rows) first, and both paths work in the sorted order.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>
#include <type_traits>
#include <vector>

#include "kvrun/cuda_plugin.cuh"
#include "gptq_cuda.hpp"
#include "gptq_tc.cuh"
#if KVRUN_GPTQ_WG
#include "gptq_wg.hpp"
#endif
#include "kvrun/ops.hpp"

namespace kvrun::gptq {
namespace {

void cuda_check(cudaError_t e, const char* what, int line) {
  if (e != cudaSuccess)
    fail(ErrorKind::device, std::string("weights.gptq (CUDA): ") + what + " failed: " + cudaGetErrorName(e) + " (" +
                                cudaGetErrorString(e) + ") at gptq_cuda.cu:" + std::to_string(line));
}
#define GPTQ_CUDA_CHECK(call) cuda_check((call), #call, __LINE__)
#define GPTQ_CUDA_LAUNCHED(name) cuda_check(cudaGetLastError(), "launch of " name, __LINE__)

// Makes dev current for this thread's CUDA runtime (this module links its own static cudart).
struct DeviceGuard : cuda_plugin::DeviceScope {
  explicit DeviceGuard(int device) : cuda_plugin::DeviceScope(device, "weights.gptq") {}
};

// ---- device code -------------------------------------------------------------------------------
//
// On upload the CUDA Linear transposes the packed arrays once (on the device) so that each output
// column n is one contiguous row:
//   qwt [N, Wp] u32   the words of column n (Wp = words_rows rounded up to 4 so every row starts
//                     16-byte aligned; the padding words are 0 and never read). For 2/4/8 bits
//                     (one word per unit) each full block of 128 words is interleaved: position
//                     b·128 + 4·l + i holds unit b·128 + 32·i + l, so lane l's 16-byte load brings
//                     units l, l+32, l+64, l+96 and a warp's x reads are contiguous. Words past the
//                     last full block keep their order. 3 bits: stored order.
//   sct [N, groups] f16 scales, zpt [N, groups] u8 zero points.
// Weight bytes are unchanged up to that padding (0 for K a multiple of 32).

// Position of unit word r in a column of the interleaved layout (full = words in full 128-word blocks).
__host__ __device__ __forceinline__ int64_t word_pos(int64_t r, int64_t full) {
  if (r >= full) return r;
  const int64_t b = r >> 7, w = r & 127;
  return (b << 7) + ((w & 31) << 2) + (w >> 5);
}

// dst[c, word_pos(r)] = src[r, c] for a [R, C] row-major src (full = 0: no interleave); dst has row
// stride ldd (≥ R; extra cells 0).
template <class T>
__global__ void transpose_kernel(const T* __restrict__ src, T* __restrict__ dst, int64_t R, int64_t C, int64_t ldd,
                                 int64_t full) {
  __shared__ T tile[32][33];
  const int64_t r0 = int64_t(blockIdx.y) * 32, c0 = int64_t(blockIdx.x) * 32;
  for (int i = threadIdx.y; i < 32; i += blockDim.y) {
    const int64_t r = r0 + i, c = c0 + threadIdx.x;
    tile[i][threadIdx.x] = (r < R && c < C) ? src[r * C + c] : T(0);
  }
  __syncthreads();
  for (int i = threadIdx.y; i < 32; i += blockDim.y) {
    const int64_t c = c0 + i, r = r0 + threadIdx.x;
    if (c < C && r < ldd) dst[c * ldd + word_pos(r, full)] = tile[threadIdx.x][i];
  }
}

constexpr float kMagic = 8388608.f;  // 2^23: (0x4B000000 | c) read as a float is 2^23 + c, exactly

// Code j of a unit whose words are w[0 .. unit_words) (a little-endian bit stream; 3-bit codes may
// straddle two words). j is a compile-time constant after unrolling.
template <int BITS>
__device__ __forceinline__ uint32_t code_of(const uint32_t* w, int j) {
  const int bit = BITS * j, wi = bit >> 5, off = bit & 31;
  uint32_t v = w[wi] >> off;
  if (off + BITS > 32) v |= w[wi + 1] << (32 - off);
  return v & ((1u << BITS) - 1u);
}
// 2^23 + code j, as a float (two integer ops, no int→float conversion).
template <int BITS>
__device__ __forceinline__ float magic_code(const uint32_t* w, int j) {
  return __uint_as_float(0x4B000000u | code_of<BITS>(w, j));
}

__device__ __forceinline__ float half_bits_to_float(uint16_t h) { return __half2float(__ushort_as_half(h)); }

// acc[m] += Σ_j x[m, j] · (q_j − z) over one unit (R rows) whose words are w; zm = 2^23 + z, so
// (2^23 + q) − zm = q − z exactly. x: the unit's first row of x row 0, rows ldx apart, 16-byte aligned.
template <int BITS, int MB>
__device__ __forceinline__ void unit_dot(const uint32_t* w, float zm, const float* __restrict__ x, int64_t ldx, int M,
                                         float (&acc)[MB]) {
  constexpr int R = unit_rows(BITS);
  float q[R];
#pragma unroll
  for (int j = 0; j < R; ++j) q[j] = magic_code<BITS>(w, j) - zm;
#pragma unroll
  for (int m = 0; m < MB; ++m) {
    if (m < M) {
      const float4* xv = reinterpret_cast<const float4*>(x + m * ldx);
#pragma unroll
      for (int j = 0; j < R; j += 4) {
        const float4 a = __ldg(xv + j / 4);
        acc[m] = fmaf(a.x, q[j], acc[m]);
        acc[m] = fmaf(a.y, q[j + 1], acc[m]);
        acc[m] = fmaf(a.z, q[j + 2], acc[m]);
        acc[m] = fmaf(a.w, q[j + 3], acc[m]);
      }
    }
  }
}

constexpr int kGemvWarps = 4;    // warps per block: they split the k range of the block's columns
constexpr int kRowsPerBlock = 4;  // output columns per block (each warp covers all of them)

// q − z of code j of a word, for the kRowsPerBlock columns, then += x · (q − z) per column.
// y[M, N] = x[M, Kp] · W (+ bias) for M ≤ MB, over the transposed layout.
//   qwt: [N, wp] u32, sct/zpt: [N, G], ug: [units] group of each unit, x: [M, ldx] f32 (16-byte
//   aligned rows), y: [M, N] f32, bias: [N] f32 or null.
// A block owns kRowsPerBlock columns; its warps split the k range. BITS ∈ {2, 4, 8}: warp w takes
// the 128-unit blocks w, w + kGemvWarps, ...; in each, every lane loads 16 bytes of each column
// (units l + 32·i, interleaved layout, so the warp's x reads are contiguous), decodes the codes with
// integer ops, accumulates x·(q − z) in fp32 per unit and scales by the unit's group scale. Units
// after the last full block (and every unit of 3-bit columns) go one unit per lane, spread over
// the warps. Lanes reduce with shuffles, warps through shared memory in a fixed order
// (deterministic, no atomics).
template <int BITS, int MB>
__global__ void __launch_bounds__(32 * kGemvWarps)
    gemv_kernel(const uint32_t* __restrict__ qwt, int64_t wp, const uint16_t* __restrict__ sct,
                const uint8_t* __restrict__ zpt, int64_t G, const int32_t* __restrict__ ug,
                const float* __restrict__ bias, const float* __restrict__ x, int64_t ldx, float* __restrict__ y, int M,
                int64_t N, int64_t units) {
  constexpr int R = unit_rows(BITS), UW = unit_words(BITS);
  constexpr int RW = kRowsPerBlock;
  __shared__ float red[kGemvWarps][RW][MB];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int64_t n0 = int64_t(blockIdx.x) * RW;
  int64_t nr[RW];
#pragma unroll
  for (int r = 0; r < RW; ++r) nr[r] = min(n0 + r, N - 1);  // a missing column recomputes the last (not stored)
  float tot[RW][MB];
#pragma unroll
  for (int r = 0; r < RW; ++r)
#pragma unroll
    for (int m = 0; m < MB; ++m) tot[r][m] = 0.f;

  if constexpr (UW == 1) {
    const int64_t blocks = units / 128;  // full interleaved 128-unit blocks
    for (int64_t b = warp; b < blocks; b += kGemvWarps) {
      uint4 q[RW];
#pragma unroll
      for (int r = 0; r < RW; ++r) q[r] = __ldg(reinterpret_cast<const uint4*>(qwt + nr[r] * wp + b * 128) + lane);
      int32_t g[4];
#pragma unroll
      for (int i = 0; i < 4; ++i) g[i] = __ldg(ug + b * 128 + 32 * i + lane);
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        const int64_t u = b * 128 + 32 * i + lane;
        float qf[RW][R];
        float sc[RW];
#pragma unroll
        for (int r = 0; r < RW; ++r) {
          const uint32_t w = i == 0 ? q[r].x : i == 1 ? q[r].y : i == 2 ? q[r].z : q[r].w;
          sc[r] = half_bits_to_float(__ldg(sct + nr[r] * G + g[i]));
          const float zm = kMagic + float(__ldg(zpt + nr[r] * G + g[i]));
#pragma unroll
          for (int j = 0; j < R; ++j) qf[r][j] = magic_code<BITS>(&w, j) - zm;
        }
#pragma unroll
        for (int m = 0; m < MB; ++m) {
          if (m < M) {
            const float4* xv = reinterpret_cast<const float4*>(x + m * ldx + u * R);
            float part[RW];
#pragma unroll
            for (int r = 0; r < RW; ++r) part[r] = 0.f;
#pragma unroll
            for (int j = 0; j < R; j += 4) {
              const float4 xa = __ldg(xv + j / 4);
#pragma unroll
              for (int r = 0; r < RW; ++r) {
                part[r] = fmaf(xa.x, qf[r][j], part[r]);
                part[r] = fmaf(xa.y, qf[r][j + 1], part[r]);
                part[r] = fmaf(xa.z, qf[r][j + 2], part[r]);
                part[r] = fmaf(xa.w, qf[r][j + 3], part[r]);
              }
            }
#pragma unroll
            for (int r = 0; r < RW; ++r) tot[r][m] = fmaf(sc[r], part[r], tot[r][m]);
          }
        }
      }
    }
  }
  // Units not in a full block (UW = 1), or every unit (3 bits): one unit per lane at a time.
  for (int64_t u = (UW == 1 ? units / 128 * 128 : 0) + warp * 32 + lane; u < units; u += 32 * kGemvWarps) {
    const int32_t g = __ldg(ug + u);
    const float* xu = x + u * R;
#pragma unroll
    for (int r = 0; r < RW; ++r) {
      uint32_t w[UW];
#pragma unroll
      for (int i = 0; i < UW; ++i) w[i] = __ldg(qwt + nr[r] * wp + u * UW + i);
      const float sc = half_bits_to_float(__ldg(sct + nr[r] * G + g));
      const float zm = kMagic + float(__ldg(zpt + nr[r] * G + g));
      float part[MB];
#pragma unroll
      for (int m = 0; m < MB; ++m) part[m] = 0.f;
      unit_dot<BITS, MB>(w, zm, xu, ldx, M, part);
#pragma unroll
      for (int m = 0; m < MB; ++m) tot[r][m] = fmaf(sc, part[m], tot[r][m]);
    }
  }
#pragma unroll
  for (int r = 0; r < RW; ++r) {
#pragma unroll
    for (int m = 0; m < MB; ++m) {
      float v = tot[r][m];
#pragma unroll
      for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
      if (lane == 0) red[warp][r][m] = v;
    }
  }
  __syncthreads();
  if (warp == 0 && lane < RW * MB) {
    const int r = lane / MB, m = lane % MB;
    const int64_t n = n0 + r;
    if (n < N && m < M) {
      float v = 0.f;
#pragma unroll
      for (int w = 0; w < kGemvWarps; ++w) v += red[w][r][m];
      y[int64_t(m) * N + n] = v + (bias ? bias[n] : 0.f);
    }
  }
}

// ---- int4 on the tensor cores (the layout used for 4-bit Linears where it applies) --------------
//
// Applies when bits = 4, Kp is a multiple of 64 and every 16-row k-tile lies in one group (all
// Qwen/Llama checkpoints with group size 16·n or -1, act-order ones included after the sort).
// Decode (M ≤ 8) multiplies with mma.sync m16n8k16 (bf16 in, fp32 accumulation): A = 16 output
// columns × 16 rows of k, dequantized in registers; B = x (rows m of the batch = the 8 columns of
// the n8 side, rows ≥ M zero). The codes become bf16 with integer ops: (code | 0x4300) is the bf16
// of 128 + code, and 128 + code − (128 + zero) = code − zero exactly (one bf16x2 subtraction per two
// codes); the group scale multiplies the fp32 accumulators. x is split into two bf16 parts,
// x = hi + lo (hi = x rounded to bf16, lo = the remainder rounded), and both are multiplied: the
// product error is ≤ 2^-17 relative per term, near fp32 (the weights are exact).
//
// At load the packed arrays are rearranged once, on the device:
//   qm [NTp, KC, 32, 4] u32   NTp = column tiles of 16, KC = Kp / 64 chunks.
//       Word i of lane l in (tile nt, chunk c) holds the 8 codes that lane l needs as its A fragment
//       for k-tile i of the chunk (rows 64c + 16i .. +16), so a lane's 16-byte load brings the A
//       fragments of 4 k-tiles and a warp's loads are 512 contiguous bytes:
//         nibble p = 4·klo + 2·khi + rs  ↔  column 16·nt + (l >> 2) + 8·rs,
//                                           row    64c + 16i + 4·(l & 3) + 2·khi + klo.
//       (The mma's k slots 2t, 2t+1, 2t+8, 2t+9 of lane t are mapped to rows 4t .. 4t+3, so each
//       lane reads its x as one float4 per k-tile.)
//   sz [NTp, G, 8] uint2      entry e of (tile, group): .x = bf16 bits of 128 + zero of columns e
//       (low half) and e + 8 (high half), .y = f16 scales of the same two columns. Padding
//       columns: zero 0, scale 0 (their codes are 0 as well).
// Weight bytes: the codes unchanged (plus padding columns), 4 bytes per column and group for
// scale and zero (was 3).

constexpr int kMmaWarps = 8;  // warps per block

// qm[o] from the stored layout qw [Kp/8, N] (word r of column n holds rows 8r .. 8r+7, 4 bits
// each). One thread per word of qm; total = NTp · KC · 128.
__global__ void build_mma_kernel(const uint32_t* __restrict__ qw, uint32_t* __restrict__ qm, int64_t N, int64_t KC,
                                 int64_t total) {
  for (int64_t o = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; o < total; o += int64_t(gridDim.x) * blockDim.x) {
    const int i = int(o & 3), l = int((o >> 2) & 31);
    const int64_t c = (o >> 7) % KC, nt = (o >> 7) / KC;
    const int g = l >> 2, t = l & 3;
    uint32_t word = 0;
#pragma unroll
    for (int p = 0; p < 8; ++p) {
      const int rs = p & 1, khi = (p >> 1) & 1, klo = p >> 2;
      const int64_t n = nt * 16 + g + 8 * rs;
      const int64_t k = c * 64 + 16 * i + 4 * t + 2 * khi + klo;
      const uint32_t code = n < N ? (qw[(k >> 3) * N + n] >> (4 * (k & 7))) & 15u : 0u;
      word |= code << (4 * p);
    }
    qm[o] = word;
  }
}

// sz[o] from scales sc [G, N] (f16 bits) and zeros zp [G, N]. total = NTp · G · 8.
__global__ void build_sz_kernel(const uint16_t* __restrict__ sc, const uint8_t* __restrict__ zp, uint2* __restrict__ sz,
                                int64_t N, int64_t G, int64_t total) {
  for (int64_t o = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; o < total; o += int64_t(gridDim.x) * blockDim.x) {
    const int e = int(o & 7);
    const int64_t grp = (o >> 3) % G, nt = (o >> 3) / G;
    const int64_t n0 = nt * 16 + e, n1 = n0 + 8;
    const uint32_t z0 = n0 < N ? zp[grp * N + n0] : 0u, z1 = n1 < N ? zp[grp * N + n1] : 0u;
    const uint32_t s0 = n0 < N ? sc[grp * N + n0] : 0u, s1 = n1 < N ? sc[grp * N + n1] : 0u;
    sz[o] = make_uint2((0x4300u | z0) | ((0x4300u | z1) << 16), s0 | (s1 << 16));
  }
}

__device__ __forceinline__ uint32_t bf16x2_sub(uint32_t a, uint32_t b) {
  __nv_bfloat162 va, vb;
  memcpy(&va, &a, 4);
  memcpy(&vb, &b, 4);
  const __nv_bfloat162 r = __hsub2(va, vb);
  uint32_t u;
  memcpy(&u, &r, 4);
  return u;
}

// x = hi + lo for four values as bf16x2 registers: hi = (x rounded to bf16) pairs (h0: v.x, v.y;
// h1: v.z, v.w), lo = the remainders rounded to bf16 (l0, l1) — the B fragments of the mma kernels.
struct HiLo {
  uint32_t h0, h1, l0, l1;
};
__device__ __forceinline__ HiLo split_hi_lo(float4 v) {
  HiLo r;
  r.h0 = cuda_plugin::pack_bf16x2(v.x, v.y);
  r.h1 = cuda_plugin::pack_bf16x2(v.z, v.w);
  r.l0 = cuda_plugin::pack_bf16x2(v.x - __uint_as_float(r.h0 << 16), v.y - __uint_as_float(r.h0 & 0xffff0000u));
  r.l1 = cuda_plugin::pack_bf16x2(v.z - __uint_as_float(r.h1 << 16), v.w - __uint_as_float(r.h1 & 0xffff0000u));
  return r;
}

// Scale and bf16 zero pair of one lane for (tile, group): zz0/zz1 = 128 + zero of columns g and
// g + 8 in both halves, s0/s1 their scales.
struct LaneSz {
  uint32_t zz0, zz1;
  float s0, s1;
};
__device__ __forceinline__ LaneSz lane_sz(uint2 e) {
  LaneSz r;
  r.zz0 = __byte_perm(e.x, 0u, 0x1010);
  r.zz1 = __byte_perm(e.x, 0u, 0x3232);
  r.s0 = __half2float(__ushort_as_half(uint16_t(e.y & 0xffffu)));
  r.s1 = __half2float(__ushort_as_half(uint16_t(e.y >> 16)));
  return r;
}

// (w & 0x000F000F) | 0x43004300 in one instruction: the bf16 pair 128 + code of nibbles 0 and 4.
// (Written as C++ the compiler emits an AND and an OR: one immediate per LOP3.)
__device__ __forceinline__ uint32_t nibbles_bf16(uint32_t w) {
  uint32_t r;
  asm("lop3.b32 %0, %1, %2, %3, 0xEA;" : "=r"(r) : "r"(w), "r"(0x000F000Fu), "r"(0x43004300u));
  return r;
}

// The A fragment (16 columns × 16 rows, bf16 q − z) of one k-tile from its word.
__device__ __forceinline__ void dequant_a(uint32_t (&a)[4], uint32_t w, uint32_t zz0, uint32_t zz1) {
  a[0] = bf16x2_sub((w & 0x000F000Fu) | 0x43004300u, zz0);
  a[1] = bf16x2_sub(((w >> 4) & 0x000F000Fu) | 0x43004300u, zz1);
  a[2] = bf16x2_sub(((w >> 8) & 0x000F000Fu) | 0x43004300u, zz0);
  a[3] = bf16x2_sub(((w >> 12) & 0x000F000Fu) | 0x43004300u, zz1);
}
// The same with one LOP3 per pair (gemv1_mma_kernel; in gemv_mma_kernel, whose registers are
// tight at NB = 4, the two constants held in registers made ptxas spill).
__device__ __forceinline__ void dequant_a_lop3(uint32_t (&a)[4], uint32_t w, uint32_t zz0, uint32_t zz1) {
  a[0] = bf16x2_sub(nibbles_bf16(w), zz0);
  a[1] = bf16x2_sub(nibbles_bf16(w >> 4), zz1);
  a[2] = bf16x2_sub(nibbles_bf16(w >> 8), zz0);
  a[3] = bf16x2_sub(nibbles_bf16(w >> 12), zz1);
}

// y[M, N] = x[M, Kp] · W (+ bias), M ≤ 8·NB, over the qm/sz layout (rows g + 8b of x are the n side
// of the b-th mma of each k-tile, so one dequantized A fragment serves all NB blocks of 8 rows).
//   qm: [NTp, KC, 32] uint4, sz: [NTp, G, 8] uint2, ug: [Kp / 8] group of each 8-row unit,
//   x: [M, ldx] f32 (16-byte aligned rows), y: [M, N] f32, bias: [N] f32 or null.
//   Dynamic shared memory: the group of each chunk (or of each k-tile with kTileScale), int32.
// A warp owns one column tile and the chunks [KC·part/ks, KC·(part+1)/ks) of k; the ks warps of a
// tile are in the same block and add their partial sums through shared memory in a fixed order
// (deterministic). kTileScale: the group can change inside a 64-row chunk (group sizes 16, 32, or
// act-order with groups of 16·n rows), so scale per k-tile; otherwise per chunk.
// The loop is software-pipelined: the weights and scale/zero entries of the next U chunks are
// loaded (their groups come from shared memory) before the current U chunks are multiplied, so
// every warp keeps loads in flight while it computes. With NB = 1 the hi and lo halves of x
// accumulate in two independent mma chains; larger NB accumulate both into one chain per block.
// Fragment ownership (lane l, g = l >> 2, t = l & 3): B regs = x[m = g][4 rows of lane t];
// accumulators d[0], d[1] = y[m = 2t, 2t+1][column g], d[2], d[3] = y[2t, 2t+1][column g + 8].
template <bool kTileScale>
struct MmaStage {
  static constexpr int U = 2;                   // chunks per stage
  static constexpr int S = kTileScale ? 4 : 1;  // scale/zero entries per chunk
  uint4 q[U];
  uint2 e[U][S];
};

template <bool kTileScale>
__device__ __forceinline__ void mma_stage_load(MmaStage<kTileScale>& st, const uint4* __restrict__ qp,
                                               const uint2* __restrict__ szp, const int32_t* grp, int64_t c,
                                               int64_t c_end) {
  using St = MmaStage<kTileScale>;
#pragma unroll
  for (int u = 0; u < St::U; ++u) {
    const bool in = c + u < c_end;
    st.q[u] = in ? cuda_plugin::load_stream_16b(qp + (c + u) * 32) : make_uint4(0u, 0u, 0u, 0u);
#pragma unroll
    for (int i = 0; i < St::S; ++i) st.e[u][i] = in ? __ldg(szp + int64_t(grp[(c + u) * St::S + i]) * 8) : make_uint2(0u, 0u);
  }
}

template <bool kTileScale, int NB>
__global__ void __launch_bounds__(kMmaWarps * 32)
    gemv_mma_kernel(const uint4* __restrict__ qm, const uint2* __restrict__ sz, const int32_t* __restrict__ ug,
                    const float* __restrict__ bias, const float* __restrict__ x, int64_t ldx, float* __restrict__ y,
                    int M, int64_t N, int64_t NTp, int64_t KC, int64_t G, int ks) {
  using St = MmaStage<kTileScale>;
  constexpr int U = St::U, S = St::S;
  extern __shared__ int32_t grp[];  // [KC · S]
  __shared__ float red[kMmaWarps][4 * NB][32];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int g = lane >> 2, t = lane & 3;
  const int tile = warp / ks, part = warp % ks;
  const int64_t nt = int64_t(blockIdx.x) * (kMmaWarps / ks) + tile;
  for (int64_t i = threadIdx.x; i < KC * S; i += blockDim.x) grp[i] = table_group<S>(ug, i);
  __syncthreads();
  float acc[NB][4];
#pragma unroll
  for (int b = 0; b < NB; ++b)
#pragma unroll
    for (int r = 0; r < 4; ++r) acc[b][r] = 0.f;

  if (nt < NTp) {
    const int64_t c_begin = KC * part / ks, c_end = KC * (part + 1) / ks;
    const float* xr[NB];  // x row g + 8b of this lane (null past M)
#pragma unroll
    for (int b = 0; b < NB; ++b) xr[b] = g + 8 * b < M ? x + int64_t(g + 8 * b) * ldx + 4 * t : nullptr;
    const uint4* qp = qm + nt * KC * 32 + lane;
    const uint2* szp = sz + nt * G * 8 + g;
    St cur, nxt;
    mma_stage_load<kTileScale>(cur, qp, szp, grp, c_begin, c_end);
    cuda_plugin::pdl_wait();  // the first weights are in flight before x (the previous kernel's output) is read
    for (int64_t c = c_begin; c < c_end; c += U) {
      mma_stage_load<kTileScale>(nxt, qp, szp, grp, c + U, c_end);
#pragma unroll
      for (int u = 0; u < U; ++u) {
        const int64_t cc = c + u;
        if (cc >= c_end) break;
        const uint32_t words[4] = {cur.q[u].x, cur.q[u].y, cur.q[u].z, cur.q[u].w};
        // NB = 1: hi and lo in two independent chains; larger NB: one chain per block of 8 rows.
        float dh[NB][4], dl[4];  // dl: the lo chain of NB = 1 (larger NB fold lo into dh)
#pragma unroll
        for (int r = 0; r < 4; ++r) {
          dl[r] = 0.f;
#pragma unroll
          for (int b = 0; b < NB; ++b) dh[b][r] = 0.f;
        }
#pragma unroll
        for (int i = 0; i < 4; ++i) {
          const LaneSz sv = lane_sz(cur.e[u][kTileScale ? i : 0]);
          uint32_t a[4];
          dequant_a(a, words[i], sv.zz0, sv.zz1);
#pragma unroll
          for (int b = 0; b < NB; ++b) {
            // B fragments of k-tile i for rows g + 8b: hi and lo bf16 parts of x.
            const float4 v = xr[b] ? __ldg(reinterpret_cast<const float4*>(xr[b] + cc * 64 + 16 * i))
                                   : make_float4(0.f, 0.f, 0.f, 0.f);
            const HiLo x2 = split_hi_lo(v);
            cuda_plugin::mma_bf16_16816(dh[b], a, x2.h0, x2.h1);
            if constexpr (NB == 1) cuda_plugin::mma_bf16_16816(dl, a, x2.l0, x2.l1);
            else cuda_plugin::mma_bf16_16816(dh[b], a, x2.l0, x2.l1);
          }
          if (kTileScale || i == 3) {  // d[0], d[1] belong to column g (scale s0), d[2], d[3] to g + 8
#pragma unroll
            for (int b = 0; b < NB; ++b)
#pragma unroll
              for (int r = 0; r < 4; ++r) {
                acc[b][r] = fmaf(r < 2 ? sv.s0 : sv.s1, dh[b][r] + (NB == 1 ? dl[r] : 0.f), acc[b][r]);
                dh[b][r] = 0.f;
              }
#pragma unroll
            for (int r = 0; r < 4; ++r) dl[r] = 0.f;
          }
        }
      }
      cur = nxt;
    }
  }
  cuda_plugin::pdl_wait();  // (returns at once when waited above) y may be read by the previous kernel
  cuda_plugin::pdl_trigger();
#pragma unroll
  for (int b = 0; b < NB; ++b)
#pragma unroll
    for (int r = 0; r < 4; ++r) red[warp][4 * b + r][lane] = acc[b][r];
  __syncthreads();
  if (part == 0 && nt < NTp) {
#pragma unroll
    for (int b = 0; b < NB; ++b)
#pragma unroll
      for (int r = 0; r < 4; ++r) {
        const int m = 8 * b + 2 * t + (r & 1);
        const int64_t n = nt * 16 + g + 8 * (r >> 1);
        if (m < M && n < N) {
          float v = 0.f;
          for (int p = 0; p < ks; ++p) v += red[warp + p][4 * b + r][lane];
          y[int64_t(m) * N + n] = v + (bias ? bias[n] : 0.f);
        }
      }
  }
}

// ---- 9 to 64 rows on the tensor cores: x fragments staged once per block ----------------------------
//
// gemv_mma_kernel at 9–64 rows is bound by x, not by the weights: every warp loads the x values
// of all its rows from L2 as f32 and splits them into two bf16 parts, once per column tile — at
// 64 rows that is ~1.4 GB of L2 reads for gate·up alone, and a Qwen-7B step took 20 ms against
// 15.8 for dequantize + cuBLAS and 7.1 for bf16 weights. gemm_tc_kernel (M = 9..64) computes
// what the dequantize + GEMM path computes — W = s · (q − z) rounded to f16 once, each row of x
// scaled by a power of two and rounded to f16, fp32 accumulation — without writing W:
//  * tc_xfrag_kernel writes x once per call as f16 B fragments, xf [KC, 4, NB, 32] uint2: chunk c,
//    k-tile i, rows 8b .. 8b + 7, lane (g, t) = x[8b + g][64c + 16i + 4t .. +3] · 2^-s as two f16
//    pairs (the k order of the mma layout, see above; zero past M and past the valid columns),
//    and the row scales 2^s, which multiply the rows' sums at the end;
//  * a block of kTcWarps warps owns kTcWarps · TW column tiles (TW per warp, consecutive) and the
//    chunks of its k part z = blockIdx.y (tc_parts); per chunk it copies into one stage of a
//    shared-memory ring (cp.async) the chunk's x fragments (NB KiB, shared by all warps), each
//    warp's TW · 512 bytes of codes and its scale/zero entries; one __syncthreads per chunk;
//  * a warp turns each k-tile's codes into its TW A fragments in f16 — (code | 0x6400) − (1024 +
//    zero) is code − zero exactly — times the group's scale (one f16 rounding: the value the
//    dequantize kernel writes), then one mma per 8 rows of x and tile (each x fragment read from
//    shared memory serves TW tiles);
//  * with one k part the block writes y (its sums times the row scale, + bias, or added to y); with
//    several, each part writes its sums to a workspace and tc_reduce_kernel adds them in part
//    order (then the row scale, + bias, or added to y): deterministic;
//  * MatmulFusion (Linear::forward_fused): RMSNorm of x in tc_xfrag_kernel, y += in the epilogue.

// Linear::forward_fused (MatmulFusion without SwiGLU) at M = 1 (gemv1_mma_kernel) and at 9..64
// rows (gemm_tc_kernel): norm_w non-null — x is the residual stream and the product reads
// rms_norm(x[:K])·norm_w instead (Σx² in fp32); accumulate — y += instead of y =. (SwiGLU taken in
// while x is converted was slower than the backend's swiglu kernel before the batch-1 GEMV:
// 2.23–2.24 vs 2.12–2.15 ms/step, session 15 — every block computed all K silu values.)
struct LinearFusion {
  const void* norm_w = nullptr;  // [K] of norm_t, in unpermuted row order
  DType norm_t = DType::f32;
  float eps = 0.f;
  int K = 0;  // the rows of x that count, the norm's divisor (64·KC ≥ K; the padding is zero)
  bool accumulate = false;
  // (gemv1_mma_kernel only) Launch the next kernel at this one's start (KVRUN_GPTQ_G1_TRIGGER,
  // default 1): its blocks take whatever room this grid leaves and stream their scale/zero
  // entries, group table and first ring stages while this one runs; they still wait (pdl_wait)
  // for this grid to finish before reading x.
  bool early_trigger = true;
  // (gemv1_mma_kernel only) The norm's 1 / rms applied to each column's sum at the end instead of
  // to x before the conversion (KVRUN_GPTQ_G1_DEFER_NORM, default 1): the block converts x·norm_w
  // without waiting for Σx², whose warp partials the barrier before the loop publishes anyway —
  // one barrier and one dependent reduction fewer in the prologue.
  bool defer_norm = true;
};

// One block per row m of the fragments (8·NB blocks; rows ≥ M are written as zeros). Like the
// backend's f16 GEMM operand (f32_to_f16_rowscaled_kernel), the row is scaled by a power of two
// (exact) so that its max |x| lies in [2^13, 2^14): no f16 overflow for large activations, no
// subnormals for tiny ones; rowscale[m] = the inverse, applied to the row's sums. A row that is all
// zero or holds inf/NaN is left as is.
// Each thread loads its first kXfHeld float4 of the row at once and keeps them in registers for the
// conversion (rows up to kXfHeld · 4 · kXfThreads = 12288 values: one round trip to x before the
// block's max, none after); longer rows read the rest twice. (Session 20's loop — scalar loads,
// the row read twice — took 12.6 µs a call at 64 rows, 20 % of a batch-64 step under ncu.)
// 512 threads (session 24, call G, same call): 16 / 32 / 64 rows 3.45–3.46 / 4.08–4.12 / 4.83
// ms/step against 3.65–3.66 / 4.24–4.25 / 4.97 with 256 threads and 3.57–3.58 / 4.18–4.19 / 4.83–4.84
// with 1024.
// With fz.norm_w (Linear::forward_fused, MatmulFusion::norm_w) the row is RMSNorm(x)·norm_w first,
// with rms_norm's roundings ((x · 1/rms) · w, Σx² in fp32), and the power of two is that of the
// normalized row; the norm weights are read before the PDL wait (weights).
//   x: [M, ldx] f32, the first kx columns valid; xf: [KC, 4, NB, 32] uint2; rowscale: [M] f32;
//   nkt = KC · 4 k-tiles.
constexpr int kXfThreads = 512, kXfHeld = 6;
template <int NB, bool kWg = false>
__global__ void __launch_bounds__(kXfThreads) tc_xfrag_kernel(const float* __restrict__ x, int64_t ldx, int M, int64_t kx,
                                                              uint2* __restrict__ xf, float* __restrict__ rowscale,
                                                              int64_t nkt, LinearFusion fz) {
  __shared__ float wred[32];  // the block reductions' scratch
  const int m = int(blockIdx.x);
  const float* xr = x + int64_t(m) * ldx;
  const bool vec = (reinterpret_cast<uintptr_t>(xr) & 15u) == 0;
  const int64_t nf = nkt * 4;  // float4 groups of the row: k = 4f .. 4f + 3 (kx ≤ 4·nf)
  // Norm weights k = 4f .. 4f + 3 (0 past kx); 1 without a norm.
  auto norm4 = [&](int64_t f) {
    float4 w = make_float4(1.f, 1.f, 1.f, 1.f);
    if (!fz.norm_w) return w;
    float* e = &w.x;
#pragma unroll
    for (int q = 0; q < 4; ++q) e[q] = 4 * f + q < fz.K ? cuda_plugin::load_any(fz.norm_w, fz.norm_t, 4 * f + q) : 0.f;
    return w;
  };
  float4 w[kXfHeld];
#pragma unroll
  for (int i = 0; i < kXfHeld; ++i) {
    const int64_t f = threadIdx.x + int64_t(i) * kXfThreads;
    w[i] = fz.norm_w && f < nf ? norm4(f) : make_float4(1.f, 1.f, 1.f, 1.f);
  }
  cuda_plugin::pdl_trigger();
  cuda_plugin::pdl_wait();  // x is the previous kernel's output; xf may still be read by an earlier GEMM
  // x[m, 4f .. 4f + 3], zero past kx and for rows ≥ M.
  auto load4 = [&](int64_t f) {
    float4 v = make_float4(0.f, 0.f, 0.f, 0.f);
    const int64_t k = 4 * f;
    if (m >= M) return v;
    if (vec && k + 3 < kx) return __ldg(reinterpret_cast<const float4*>(xr + k));
    float* e = &v.x;
    for (int q = 0; q < 4; ++q)
      if (k + q < kx) e[q] = xr[k + q];
    return v;
  };
  auto amax4 = [](float mx, const float4& v) {
    return fmaxf(fmaxf(mx, fmaxf(fabsf(v.x), fabsf(v.y))), fmaxf(fabsf(v.z), fabsf(v.w)));
  };
  auto sq4 = [](float ss, const float4& v) { return fmaf(v.x, v.x, fmaf(v.y, v.y, fmaf(v.z, v.z, fmaf(v.w, v.w, ss)))); };
  // (v · inv) · w per element (rms_norm's roundings)
  auto normed = [](const float4& v, float inv, const float4& w) {
    return make_float4(__fmul_rn(__fmul_rn(v.x, inv), w.x), __fmul_rn(__fmul_rn(v.y, inv), w.y),
                       __fmul_rn(__fmul_rn(v.z, inv), w.z), __fmul_rn(__fmul_rn(v.w, inv), w.w));
  };
  float4 v[kXfHeld];
  float mx = 0.f, ss = 0.f;
#pragma unroll
  for (int i = 0; i < kXfHeld; ++i) {
    const int64_t f = threadIdx.x + int64_t(i) * kXfThreads;
    v[i] = f < nf ? load4(f) : make_float4(0.f, 0.f, 0.f, 0.f);
    if (fz.norm_w) ss = sq4(ss, v[i]);
    else mx = amax4(mx, v[i]);
  }
  for (int64_t f = threadIdx.x + int64_t(kXfHeld) * kXfThreads; f < nf; f += kXfThreads) {
    if (fz.norm_w) ss = sq4(ss, load4(f));
    else mx = amax4(mx, load4(f));
  }
  float inv = 1.f;  // 1 / rms of the row (fz.norm_w)
  if (fz.norm_w) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) ss += __shfl_xor_sync(0xffffffffu, ss, o);
    if ((threadIdx.x & 31) == 0) wred[threadIdx.x >> 5] = ss;
    __syncthreads();
    ss = 0.f;
    for (int i = 0; i < kXfThreads / 32; ++i) ss += wred[i];
    __syncthreads();  // wred is block_max's scratch next
    inv = 1.0f / sqrtf(ss / float(fz.K) + fz.eps);
#pragma unroll
    for (int i = 0; i < kXfHeld; ++i) {
      v[i] = normed(v[i], inv, w[i]);
      mx = amax4(mx, v[i]);
    }
    for (int64_t f = threadIdx.x + int64_t(kXfHeld) * kXfThreads; f < nf; f += kXfThreads)
      mx = amax4(mx, normed(load4(f), inv, norm4(f)));
  }
  const float scale = cuda_plugin::f16_row_scale(cuda_plugin::block_max(mx, wred));  // 1 for rows ≥ M (all zero)
  if (threadIdx.x == 0 && m < M) rowscale[m] = 1.f / scale;                          // exact: a power of two
  // Lane (g = m % 8, t) of row block b = m / 8 holds k = 16·kt + 4t .. +3 of k-tile kt: float4 f
  // is k-tile f / 4, lane t = f % 4.
  uint2* xrow = xf + (m >> 3) * 32 + (m & 7) * 4;
  // kWg (gemm_wg_kernel's operand, gptq_wg.cu): per k-tile, core matrices [k half h][row block b] of
  // 8 rows × 16 bytes; row m's 16 bytes of half h hold k = 4t + 2h, + 1 at bytes 4t .. 4t + 3:
  //   xw [KC · 4, 2, NB, 8, 4] u32.
  uint32_t* xw = reinterpret_cast<uint32_t*>(xf) + (m >> 3) * 32 + (m & 7) * 4;
  auto store4 = [&](int64_t f, const float4& u) {
    const uint32_t lo = cuda_plugin::pack_f16x2(u.x * scale, u.y * scale), hi = cuda_plugin::pack_f16x2(u.z * scale, u.w * scale);
    if constexpr (kWg) {
      uint32_t* p = xw + (f >> 2) * (2 * NB * 32) + (f & 3);
      p[0] = lo;
      p[NB * 32] = hi;
    } else {
      xrow[(f >> 2) * NB * 32 + (f & 3)] = make_uint2(lo, hi);
    }
  };
#pragma unroll
  for (int i = 0; i < kXfHeld; ++i) {
    const int64_t f = threadIdx.x + int64_t(i) * kXfThreads;
    if (f < nf) store4(f, v[i]);
  }
  for (int64_t f = threadIdx.x + int64_t(kXfHeld) * kXfThreads; f < nf; f += kXfThreads)
    store4(f, fz.norm_w ? normed(load4(f), inv, norm4(f)) : load4(f));
}

//   qm: [NTp, KC, 32] uint4, sz: [NTp, G, 8] uint2, ug: [Kp / 8] group of each 8-row unit,
//   xf: [KC, 4, NB, 32] uint2 (tc_xfrag_kernel), bias: [N] f32 or null,
//   rowscale: [M] f32 (tc_xfrag_kernel); gridDim.y = 1: y [M, N] f32 = x · W + bias (the sums times
//   rowscale; accumulate: y +=); gridDim.y = P > 1: part [P, M, N] f32, part z's sums (of the scaled
//   rows), for tc_reduce_kernel.
//   Dynamic shared memory: kTcStages · TcStage::kBytes, then the group table [KC · S] int32.
// TW column tiles per warp (the block's kTcWarps · TW tiles are consecutive; warp w has tiles
// TW·w .. TW·w + TW − 1 of them): every x fragment read from shared memory feeds TW mma. With TW = 1
// the kernel was bound by those reads (ncu, session 21: L1/shared 76 % busy, tensor pipe 34 %).
template <bool kTileScale, int NB, int TW>
__global__ void __launch_bounds__(kTcWarps * 32, TW == 1 ? 3 : 2)
    gemm_tc_kernel(const uint4* __restrict__ qm, const uint2* __restrict__ sz, const int32_t* __restrict__ ug,
                   const float* __restrict__ bias, const uint2* __restrict__ xf, const float* __restrict__ rowscale,
                   float* y, float* __restrict__ part, int M, int N, int NTp, int KC, int G, bool accumulate) {
  constexpr int S = kTileScale ? 4 : 1;
  using St = TcStage<NB, S, TW>;
  extern __shared__ __align__(16) unsigned char tc_smem[];
  int32_t* grp = reinterpret_cast<int32_t*>(tc_smem + kTcStages * St::kBytes);  // [chunks of the part · S]
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int g = lane >> 2, t = lane & 3;
  const int nt0 = (int(blockIdx.x) * kTcWarps + warp) * TW;  // the warp's first tile
  const int ntw = max(0, min(TW, NTp - nt0));                // its tiles that exist (0..TW)
  const bool active = ntw > 0;
  const int nz = int(gridDim.y), z = int(blockIdx.y);
  const int c0 = int(int64_t(KC) * z / nz), nch = int(int64_t(KC) * (z + 1) / nz) - c0;
  cuda_plugin::pdl_trigger();

  const uint32_t ring = static_cast<uint32_t>(__cvta_generic_to_shared(tc_smem));
  auto slot = [&](int s) { return ring + unsigned((s % kTcStages) * St::kBytes); };
  // Copies of chunk c0 + s: the warp's codes (weights), its scale/zero entries (weights; need the
  // group table), the block's x fragments (after the PDL wait).
  auto issue_w = [&](int s) {
    if (s < nch) tc_issue_codes<St, TW>(slot(s), qm, nt0, ntw, KC, c0, s, warp, lane);
  };
  auto issue_e = [&](int s) {
    if (s < nch) tc_issue_entries<St, TW, S>(slot(s), sz, grp, nt0, ntw, G, s, warp, lane);
  };
  auto issue_x = [&](int s) {
    if (s < nch) tc_copy_x<St::kX>(slot(s), xf, int64_t(c0 + s));
  };
  constexpr int P = kTcStages - 1;
  tc_ring_start<P, S>(issue_w, issue_e, issue_x, grp, ug, c0, nch);

  float acc[TW][NB][4];
#pragma unroll
  for (int j = 0; j < TW; ++j)
#pragma unroll
    for (int b = 0; b < NB; ++b)
#pragma unroll
      for (int r = 0; r < 4; ++r) acc[j][b][r] = 0.f;
  for (int s = 0; s < nch; ++s) {
    cuda_plugin::cp_async_wait<P - 1>();  // this thread's copies of stage s (and older) landed
    __syncthreads();                       // everyone's; stage s − 1 is consumed by every warp
    issue_w(s + P);
    issue_e(s + P);
    issue_x(s + P);
    cuda_plugin::cp_async_commit();
    if (!active) continue;
    const uint32_t st = slot(s);
    uint32_t words[TW][4];
    TcZs zs[TW];
#pragma unroll
    for (int j = 0; j < TW; ++j) {
      const uint4 q = lds128(st + unsigned(St::kX + (warp * TW + j) * 512 + lane * 16));
      words[j][0] = q.x, words[j][1] = q.y, words[j][2] = q.z, words[j][3] = q.w;
      if constexpr (!kTileScale) zs[j] = tc_zs(lds64(st + unsigned(St::kX + St::kW + (warp * TW + j) * 64 + g * 8)));
    }
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      uint32_t a[TW][4];
#pragma unroll
      for (int j = 0; j < TW; ++j) {
        if constexpr (kTileScale) zs[j] = tc_zs(lds64(st + unsigned(St::kX + St::kW + ((warp * TW + j) * S + i) * 64 + g * 8)));
        tc_dequant(a[j], words[j][i], zs[j]);
      }
#pragma unroll
      for (int b = 0; b < NB; ++b) {
        const uint2 bx = lds64(st + unsigned(((i * NB + b) * 32 + lane) * 8));
#pragma unroll
        for (int j = 0; j < TW; ++j)
          if (j < ntw) cuda_plugin::mma_f16_16816(acc[j][b], a[j], bx.x, bx.y);
      }
    }
  }
  cuda_plugin::cp_async_wait<0>();  // (empty groups at the end)
  // acc[j][b][0], [1]: rows 8b + 2t, + 1 of column g of tile j; [2], [3]: the same rows of column g + 8.
#pragma unroll
  for (int j = 0; j < TW; ++j) {
    if (j >= ntw) break;
#pragma unroll
    for (int b = 0; b < NB; ++b)
#pragma unroll
      for (int r = 0; r < 4; ++r) {
        const int m = 8 * b + 2 * t + (r & 1);
        const int n = (nt0 + j) * 16 + g + 8 * (r >> 1);
        if (m >= M || n >= N) continue;
        if (nz > 1)
          part[(int64_t(z) * M + m) * N + n] = acc[j][b][r];
        else
          tc_store(y + int64_t(m) * N + n, acc[j][b][r], rowscale[m], bias ? bias[n] : 0.f, accumulate);
      }
  }
}

//   part: [P, M, N] f32 → y [M, N] = (Σ_z part[z] (z = 0, 1, … in order)) · rowscale[m] + bias;
//   total = M · N, P ≤ kTcMaxParts; accumulate: y += that. Each thread loads its P partial sums at
//   once (one round trip, not P dependent ones: session 20's loop took 7.3 µs a call at 64 rows
//   under ncu).
__global__ void __launch_bounds__(256) tc_reduce_kernel(const float* __restrict__ part, const float* __restrict__ rowscale,
                                                        const float* __restrict__ bias, float* __restrict__ y, int N,
                                                        int P, int64_t total, bool accumulate) {
  cuda_plugin::pdl_trigger();
  cuda_plugin::pdl_wait();
  for (int64_t o = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; o < total; o += int64_t(gridDim.x) * blockDim.x) {
    float p[kTcMaxParts];
#pragma unroll
    for (int z = 0; z < kTcMaxParts; ++z) p[z] = z < P ? part[int64_t(z) * total + o] : 0.f;
    float v = p[0];
#pragma unroll
    for (int z = 1; z < kTcMaxParts; ++z)
      if (z < P) v += p[z];
    tc_store(y + o, v, rowscale[o / N], bias ? bias[o % N] : 0.f, accumulate);
  }
}

// tc_reduce_kernel four columns at a time (M ≥ 32, N % 4 == 0, y and bias 16-byte aligned): the same
// sums in the same order, one 16-byte load per part, and 32-bit index arithmetic (total4 < 2^31)
// where the scalar kernel divides a 64-bit index per element.
//   part: [P, M, N] f32 as float4, y [M, N] as float4, bias [N] as float4 or null; n4 = N / 4.
__global__ void __launch_bounds__(256) tc_reduce4_kernel(const float4* __restrict__ part, const float* __restrict__ rowscale,
                                                         const float4* __restrict__ bias, float4* __restrict__ y, int n4,
                                                         int P, int total4, bool accumulate) {
  cuda_plugin::pdl_trigger();
  cuda_plugin::pdl_wait();
  for (int o = int(blockIdx.x) * blockDim.x + threadIdx.x; o < total4; o += int(gridDim.x) * blockDim.x) {
    float4 p[kTcMaxParts];
#pragma unroll
    for (int z = 0; z < kTcMaxParts; ++z) p[z] = z < P ? part[int64_t(z) * total4 + o] : make_float4(0.f, 0.f, 0.f, 0.f);
    float4 v = p[0];
#pragma unroll
    for (int z = 1; z < kTcMaxParts; ++z)
      if (z < P) v.x += p[z].x, v.y += p[z].y, v.z += p[z].z, v.w += p[z].w;
    const int m = o / n4;
    const float rs = rowscale[m];
    const float4 b = bias ? bias[o - m * n4] : make_float4(0.f, 0.f, 0.f, 0.f);
    float4 out = accumulate ? y[o] : make_float4(0.f, 0.f, 0.f, 0.f);
    tc_store(&out.x, v.x, rs, b.x, accumulate);
    tc_store(&out.y, v.y, rs, b.y, accumulate);
    tc_store(&out.z, v.z, rs, b.z, accumulate);
    tc_store(&out.w, v.w, rs, b.w, accumulate);
    y[o] = out;
  }
}

// ---- batch 1 on the tensor cores: a cp.async pipeline per warp, x prepared once per block ------
//
// gemv_mma_kernel at M = 1 moves 1.1–1.5 TB/s: each warp keeps only two chunks in flight in
// registers, reads x from L1 inside the multiply loop and converts it to hi/lo bf16 itself.
// gemv1_mma_kernel (M = 1 only):
//  * the B operand's columns carry x's bf16 hi part (column 0) and lo part (column 1), so one mma
//    per k-tile gives both products: in lane (g, t = 0), d0 + d1 is column g and d2 + d3 column
//    g + 8 (the other lanes hold the zero columns 2..7);
//  * the block converts x into shared memory once, in fragment order: xs[kt / 2][part][t][kt & 1]
//    is the (b0, b1) pair that lane (g = part, t) passes for k-tile kt, so one 16-byte load
//    brings a lane two k-tiles (lanes with g ≥ 2 read zeros);
//  * the scale/zero entries of the block's column tiles are copied to shared memory once, before
//    x is read (they are weights: no dependency on the previous kernel);
//  * each warp streams its chunks of packed codes through a private ring of kG1Stages stages of
//    kG1U chunks in shared memory (cp.async, one 16-byte copy per lane and chunk): kG1Stages − 1
//    stages are in flight per warp without holding registers, and only __syncwarp orders the ring.
//  * with the norm fused, the block's norm weights are read before the PDL wait (weights; one vector
//    load per float4, all issued before the first is converted), x right after it, and Σx² comes
//    from those registers: one round trip to x before the barrier; the group table's entries are
//    requested with the weights and stored once x's loads are out (session 22: the element loads
//    behind a run-time dtype went out one after another, and the store of each entry held the
//    warp until it arrived — ncu's top stalls of the kernel alone);
//  * a stage whose two chunks lie in one group (groups of 128 rows or more) reads one scale/zero
//    entry and adds the chunks' two mma chains before the one scaling;
//  * the kernel triggers the next launch at its start (KVRUN_GPTQ_G1_TRIGGER): the next kernel's
//    blocks stage their own weights wherever they fit while this grid runs.
// The k split (ks warps per column tile in one block) and the fixed-order reduction are those of
// gemv_mma_kernel; the products per k-tile are the same (fp32 chains summed per stage).
constexpr int kG1Warps = 8;
constexpr int kG1Stages = 4;  // ring depth per warp (a power of two)
constexpr int kG1U = 2;       // chunks per stage
constexpr int kG1Chunk = 512; // bytes of one warp's chunk (32 lanes × 16)
constexpr int kG1XR = 4;      // float4 of x per thread and round of the x conversion

// Dynamic shared memory of gemv1_mma_kernel, in this order:
//   ring [kG1Warps][kG1Stages][kG1U][32] uint4   the warps' chunks in flight
//   xs   [KC·2][2][4][2] uint2, then 16 zero     x in fragment order: [k-tile pair][part][t][k-tile & 1]
//   sze  [8 / ks][G][8] uint2                    scale/zero entries of the block's column tiles
//   grp  [KC·S] int32                            the group of each chunk (S = 1) or k-tile (S = 4)
struct G1Smem {
  size_t xs, sze, grp, bytes;
  __host__ __device__ G1Smem(int64_t KC, int64_t G, int ks, bool tile_scale) {
    xs = size_t(kG1Warps) * kG1Stages * kG1U * kG1Chunk;
    sze = xs + size_t(KC) * 256 + 16;
    grp = sze + size_t(kG1Warps / ks) * size_t(G) * 8 * sizeof(uint2);
    bytes = grp + size_t(KC) * (tile_scale ? 4 : 1) * sizeof(int32_t);
  }
};

//   qm: [NTp, KC, 32] uint4, sz: [NTp, G, 8] uint2, ug: [Kp / 8] group of each 8-row unit,
//   x: [1, 64·KC] f32 (16-byte aligned), y: [1, N] f32, bias: [N] f32 or null.
// (256, 3): three blocks per SM, as the registers allowed before (72); without the bound ptxas
// took 64 registers for this form of the prologue and spilled 16 bytes.
template <bool kTileScale>
__global__ void __launch_bounds__(kG1Warps * 32, 3)
    gemv1_mma_kernel(const uint4* __restrict__ qm, const uint2* __restrict__ sz, const int32_t* __restrict__ ug,
                     const float* __restrict__ bias, const float* __restrict__ x, float* y, int N,
                     int NTp, int KC, int G, int ks, LinearFusion fz) {
  constexpr int S = kTileScale ? 4 : 1;
  extern __shared__ __align__(16) unsigned char g1_smem[];
  const G1Smem L(KC, G, ks, kTileScale);
  uint2* xs = reinterpret_cast<uint2*>(g1_smem + L.xs);
  uint2* sze = reinterpret_cast<uint2*>(g1_smem + L.sze);
  int32_t* grp = reinterpret_cast<int32_t*>(g1_smem + L.grp);
  __shared__ float red[kG1Warps][2][8];  // [warp][column g, g + 8][g]
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int g = lane >> 2, t = lane & 3;
  const int tiles = kG1Warps / ks;  // column tiles of the block
  const int tile = warp / ks, part = warp % ks;
  const int nt0 = int(blockIdx.x) * tiles, nt = nt0 + tile;
  const bool active = nt < NTp;
  if (fz.early_trigger) cuda_plugin::pdl_trigger();

  // Weights first (no dependency on earlier kernels): the block's scale/zero entries (one group
  // of copies), then the first ring stages of every warp.
  {
    const int per_tile = G * 4;  // 16-byte copies
    const uint32_t dst = static_cast<uint32_t>(__cvta_generic_to_shared(sze));
    for (int i = threadIdx.x; i < tiles * per_tile; i += blockDim.x) {
      const int tl = i / per_tile;
      if (nt0 + tl < NTp)
        cuda_plugin::cp_async_16(dst + 16u * unsigned(i),
                                 reinterpret_cast<const uint4*>(sz + int64_t(nt0) * G * 8) + i);
    }
    cuda_plugin::cp_async_commit();
  }
  const int c_begin = KC * part / ks, nck = active ? KC * (part + 1) / ks - c_begin : 0;
  const int stages = (nck + kG1U - 1) / kG1U;
  const uint32_t ring_s = static_cast<uint32_t>(__cvta_generic_to_shared(g1_smem)) +
                          unsigned(warp * kG1Stages * kG1U * kG1Chunk + lane * 16);
  // The stages are loaded in order (0, 1, 2, ... — one call each): a running source pointer and
  // count instead of addresses rebuilt from the stage index.
  const uint4* qnext = qm + (int64_t(active ? nt : 0) * KC + c_begin) * 32 + lane;
  int q_left = nck;  // chunks not yet requested
  auto load_stage = [&](int s) {
    const uint32_t dst = ring_s + unsigned((s & (kG1Stages - 1)) * kG1U * kG1Chunk);
#pragma unroll
    for (int u = 0; u < kG1U; ++u)
      if (u < q_left) cuda_plugin::cp_async_16(dst + unsigned(u * kG1Chunk), qnext + u * 32);
    qnext += kG1U * 32;
    q_left -= kG1U;
  };
  static_assert((kG1Stages & (kG1Stages - 1)) == 0, "ring depth: a power of two");
  for (int s = 0; s < kG1Stages - 1; ++s) {
    load_stage(s);
    cuda_plugin::cp_async_commit();
  }
  // The group table: each thread's first kG1Held entries are loaded now and stored to shared memory
  // after x's loads are issued (a store waits for its value: stored here, the entries' round trip
  // came before the norm weights' and x's instead of beside them); entries past kG1Held · 256
  // (K > 32768, or K > 8192 with a scale per k-tile) are loaded and stored after x's loads.
  constexpr int kG1Held = 2;
  int gh[kG1Held];
#pragma unroll
  for (int j = 0; j < kG1Held; ++j) {
    const int i = threadIdx.x + j * kG1Warps * 32;
    gh[j] = i < KC * S ? table_group<S>(ug, i) : 0;
  }
  if (threadIdx.x < 2) xs[KC * 32 + threadIdx.x] = make_uint2(0u, 0u);

  // x into fragment order, in rounds of kG1XR float4 per thread (float4 f is k-tile f / 4, lane
  // t = f % 4). The first round's norm weights are read before the wait (they are weights), its x
  // right after it, and Σx² comes from those registers: one round trip to x before the barrier when
  // K ≤ kG1XR · 4 · 32 · kG1Warps (every Qwen-7B Linear that takes the norm).
  const int nf = KC * 16;
  constexpr int kRound = kG1XR * kG1Warps * 32;  // float4 per round
  float4 nw[kG1XR];                               // norm weights of the round (fz.norm_w)
  // The round's norm weights from f0 on: every load issued before the first conversion — one
  // 16-byte (f32) or 8-byte (f16, bf16) load per float4 when K % 4 == 0 and the array is aligned
  // for it (the dtype known only at run time, element loads behind a branch each were issued one
  // after another), element loads otherwise. Zero past K.
  const int k4 = fz.K / 4;
  const bool nvec = fz.norm_w && fz.K % 4 == 0 &&
                    reinterpret_cast<uintptr_t>(fz.norm_w) % (fz.norm_t == DType::f32 ? 16 : 8) == 0;
  auto load_nw = [&](int f0) {
    if (nvec && fz.norm_t == DType::f32) {
#pragma unroll
      for (int j = 0; j < kG1XR; ++j) {
        const int f = f0 + j * kG1Warps * 32;
        nw[j] = f < k4 ? __ldg(reinterpret_cast<const float4*>(fz.norm_w) + f) : make_float4(0.f, 0.f, 0.f, 0.f);
      }
    } else if (nvec) {
      uint2 raw[kG1XR];
#pragma unroll
      for (int j = 0; j < kG1XR; ++j) {
        const int f = f0 + j * kG1Warps * 32;
        raw[j] = f < k4 ? __ldg(reinterpret_cast<const uint2*>(fz.norm_w) + f) : make_uint2(0u, 0u);
      }
      const bool b16 = fz.norm_t == DType::bf16;
      auto cvt = [b16](uint32_t u, bool high) {
        return b16 ? __uint_as_float(high ? u & 0xffff0000u : u << 16)
                   : __half2float(__ushort_as_half(uint16_t(high ? u >> 16 : u & 0xffffu)));
      };
#pragma unroll
      for (int j = 0; j < kG1XR; ++j) nw[j] = make_float4(cvt(raw[j].x, false), cvt(raw[j].x, true), cvt(raw[j].y, false), cvt(raw[j].y, true));
    } else {
#pragma unroll
      for (int j = 0; j < kG1XR; ++j) {
        const int f = f0 + j * kG1Warps * 32;
        float* e = &nw[j].x;
#pragma unroll
        for (int c = 0; c < 4; ++c) e[c] = f < nf && 4 * f + c < fz.K ? cuda_plugin::load_any(fz.norm_w, fz.norm_t, 4 * f + c) : 0.f;
      }
    }
  };
  if (fz.norm_w) load_nw(threadIdx.x);
  // The lanes that write y (part 0 of each tile, lanes 0–15: column wn) read their bias now (a
  // weight) and, after the wait, the y they add to — not at the end, where each read was one more
  // round trip before the grid could finish.
  const bool writer = part == 0 && active && lane < 16;
  const int wn = nt * 16 + (lane & 7) + 8 * (lane >> 3);
  const float bias_n = writer && wn < N && bias ? bias[wn] : 0.f;
  cuda_plugin::pdl_wait();
  const float y_n = writer && wn < N && fz.accumulate ? y[wn] : 0.f;
  float4 v[kG1XR];
#pragma unroll
  for (int j = 0; j < kG1XR; ++j) {
    const int f = threadIdx.x + j * kG1Warps * 32;
    v[j] = f < nf ? __ldg(reinterpret_cast<const float4*>(x) + f) : make_float4(0.f, 0.f, 0.f, 0.f);
  }
#pragma unroll
  for (int j = 0; j < kG1Held; ++j) {
    const int i = threadIdx.x + j * kG1Warps * 32;
    if (i < KC * S) grp[i] = gh[j];
  }
  for (int i = threadIdx.x + kG1Held * kG1Warps * 32; i < KC * S; i += blockDim.x) grp[i] = table_group<S>(ug, i);
  float inv_rms = 1.f;  // fz.norm_w (not deferred): 1 / sqrt(mean(x²) + eps); deferred: 1 here
  __shared__ float nred[kG1Warps];  // fz.norm_w: each warp's Σx²
  // 1 / sqrt(mean(x²) + eps) from the warps' Σx² (after a barrier that publishes nred): in the
  // prologue (norm not deferred) or at the end (deferred).
  auto rms_inv = [&] {
    float ss = 0.f;
#pragma unroll
    for (int i = 0; i < kG1Warps; ++i) ss += nred[i];
    return 1.0f / sqrtf(ss / float(fz.K) + fz.eps);
  };
  if (fz.norm_w) {
    float ss = 0.f;
#pragma unroll
    for (int j = 0; j < kG1XR; ++j) ss = fmaf(v[j].x, v[j].x, fmaf(v[j].y, v[j].y, fmaf(v[j].z, v[j].z, fmaf(v[j].w, v[j].w, ss))));
    for (int f = threadIdx.x + kRound; f < nf; f += kG1Warps * 32) {  // K past the first round
      const float4 u = __ldg(reinterpret_cast<const float4*>(x) + f);
      ss = fmaf(u.x, u.x, fmaf(u.y, u.y, fmaf(u.z, u.z, fmaf(u.w, u.w, ss))));
    }
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) ss += __shfl_xor_sync(0xffffffffu, ss, o);
    if (lane == 0) nred[warp] = ss;
    if (!fz.defer_norm) {
      __syncthreads();
      inv_rms = rms_inv();
    }
  }
  for (int f0 = threadIdx.x; f0 < nf; f0 += kRound) {
    if (f0 != threadIdx.x) {  // later rounds: x (and norm weights) loaded here
#pragma unroll
      for (int j = 0; j < kG1XR; ++j) {
        const int f = f0 + j * kG1Warps * 32;
        v[j] = f < nf ? __ldg(reinterpret_cast<const float4*>(x) + f) : make_float4(0.f, 0.f, 0.f, 0.f);
      }
      if (fz.norm_w) load_nw(f0);
    }
#pragma unroll
    for (int j = 0; j < kG1XR; ++j) {
      const int f = f0 + j * kG1Warps * 32;
      if (f >= nf) break;
      if (fz.norm_w) {  // rows past K are zero padding (their norm weight is 0)
        v[j].x = (v[j].x * inv_rms) * nw[j].x;
        v[j].y = (v[j].y * inv_rms) * nw[j].y;
        v[j].z = (v[j].z * inv_rms) * nw[j].z;
        v[j].w = (v[j].w * inv_rms) * nw[j].w;
      }
      const HiLo x2 = split_hi_lo(v[j]);
      const int kt = f >> 2, base = ((kt >> 1) * 8 + (f & 3)) * 2 + (kt & 1);  // in uint2
      xs[base] = make_uint2(x2.h0, x2.h1);
      xs[base + 8] = make_uint2(x2.l0, x2.l1);
    }
  }
  cuda_plugin::cp_async_wait<kG1Stages - 1>();  // this thread's scale/zero copies (the oldest group)
  __syncthreads();                               // everyone's, and xs, grp

  // Shared-space addresses. Lane (g, t)'s B pairs of k-tiles 2j, 2j + 1: 16 bytes at xb + j · xstep
  // (g ≥ 2: always the zero bytes).
  const uint32_t smem_s = static_cast<uint32_t>(__cvta_generic_to_shared(g1_smem));
  const uint32_t xb = g < 2 ? smem_s + unsigned(L.xs) + 16u * unsigned(lane) : smem_s + unsigned(L.xs) + unsigned(KC) * 256u;
  const uint32_t xstep = g < 2 ? 128u : 0u;
  const uint32_t et = smem_s + unsigned(L.sze) + 8u * unsigned(tile * G * 8 + g);  // + 64 · group
  const uint32_t gp = smem_s + unsigned(L.grp) + 4u * unsigned(c_begin * S);       // group of chunk c_begin
  const uint32_t ring = smem_s + unsigned(warp * kG1Stages * kG1U * kG1Chunk + lane * 16);
  float acc0 = 0.f, acc1 = 0.f;  // columns g and g + 8 (meaningful in lanes t = 0)
  for (int s = 0; s < stages; ++s) {
    cuda_plugin::cp_async_wait<kG1Stages - 2>();  // this lane's copies of stage s have landed
    __syncwarp();                                 // ... and every lane's; stage s − 1 is consumed
    load_stage(s + kG1Stages - 1);                // into the slot of stage s − 1
    cuda_plugin::cp_async_commit();
    const uint32_t sl = ring + unsigned((s & (kG1Stages - 1)) * kG1U * kG1Chunk);
    const int cr0 = s * kG1U;  // the stage's first chunk: c_begin + cr0
    // Chunk u of the stage: this lane's code word of each of its 4 k-tiles, and its x fragments.
    auto fetch = [&](int u, uint32_t (&words)[4], uint32_t (&bx)[4][2]) {
      const uint4 q = lds128(sl + unsigned(u * kG1Chunk));
      words[0] = q.x, words[1] = q.y, words[2] = q.z, words[3] = q.w;
      const uint32_t xc = xb + unsigned(2 * (c_begin + cr0 + u)) * xstep;
      const uint4 b01 = lds128(xc), b23 = lds128(xc + xstep);
      bx[0][0] = b01.x, bx[0][1] = b01.y, bx[1][0] = b01.z, bx[1][1] = b01.w;
      bx[2][0] = b23.x, bx[2][1] = b23.y, bx[3][0] = b23.z, bx[3][1] = b23.w;
    };
    // d += the A fragments of chunk u (dequantized with sv) times x's: four k-tiles, one chain.
    auto chunk = [&](int u, const LaneSz& sv, float (&d)[4]) {
      uint32_t words[4], bx[4][2];
      fetch(u, words, bx);
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        uint32_t a[4];
        dequant_a_lop3(a, words[i], sv.zz0, sv.zz1);
        cuda_plugin::mma_bf16_16816(d, a, bx[i][0], bx[i][1]);
      }
    };
    if constexpr (!kTileScale) {
      static_assert(kG1U == 2, "the stage's group test below pairs two chunks");
      // Both chunks of the stage in one group (group sizes of 128 rows or more, the usual case):
      // one scale/zero entry, two independent mma chains added before the one scaling.
      const uint32_t g0 = lds32(gp + 4u * unsigned(cr0));
      const bool two = cr0 + 1 < nck;
      const uint32_t g1 = two ? lds32(gp + 4u * unsigned(cr0 + 1)) : g0;
      if (g0 == g1) {
        const LaneSz sv = lane_sz(lds64(et + 64u * g0));
        float da[4] = {0.f, 0.f, 0.f, 0.f}, db[4] = {0.f, 0.f, 0.f, 0.f};
        chunk(0, sv, da);
        if (two) chunk(1, sv, db);
        acc0 = fmaf(sv.s0, (da[0] + da[1]) + (db[0] + db[1]), acc0);
        acc1 = fmaf(sv.s1, (da[2] + da[3]) + (db[2] + db[3]), acc1);
      } else {
#pragma unroll
        for (int u = 0; u < kG1U; ++u) {
          const LaneSz sv = lane_sz(lds64(et + 64u * (u == 0 ? g0 : g1)));
          float d[4] = {0.f, 0.f, 0.f, 0.f};
          chunk(u, sv, d);
          acc0 = fmaf(sv.s0, d[0] + d[1], acc0);
          acc1 = fmaf(sv.s1, d[2] + d[3], acc1);
        }
      }
    } else {
#pragma unroll
      for (int u = 0; u < kG1U; ++u) {
        const int cr = cr0 + u;  // chunk c_begin + cr
        if (cr >= nck) break;
        uint32_t words[4], bx[4][2];
        fetch(u, words, bx);
#pragma unroll
        for (int i = 0; i < 4; ++i) {  // a scale per k-tile
          const LaneSz sv = lane_sz(lds64(et + 64u * lds32(gp + 4u * unsigned(cr * S + i))));
          float d[4] = {0.f, 0.f, 0.f, 0.f};
          uint32_t a[4];
          dequant_a_lop3(a, words[i], sv.zz0, sv.zz1);
          cuda_plugin::mma_bf16_16816(d, a, bx[i][0], bx[i][1]);
          acc0 = fmaf(sv.s0, d[0] + d[1], acc0);
          acc1 = fmaf(sv.s1, d[2] + d[3], acc1);
        }
      }
    }
  }
  cuda_plugin::cp_async_wait<0>();
  cuda_plugin::pdl_trigger();  // (when fz.early_trigger did not already)
  if (t == 0) {
    red[warp][0][g] = acc0;
    red[warp][1][g] = acc1;
  }
  __syncthreads();
  if (writer && wn < N) {
    const int r = lane >> 3, e = lane & 7;
    float v = 0.f;
    for (int p = 0; p < ks; ++p) v += red[warp + p][r][e];
    if (fz.norm_w && fz.defer_norm) v *= rms_inv();  // nred published by the barrier before the loop
    v += bias_n;
    y[wn] = fz.accumulate ? __fadd_rn(y_n, v) : v;
  }
}

// wt[n, k] (T = f16 or bf16, row stride Kp) = scale · (q − zero) from the qm/sz layout (the
// prefill path). One thread per word of qm (8 codes: 4 pairs of adjacent rows); total = NTp·KC·128.
template <class T>
__global__ void __launch_bounds__(256) dequant_mma_kernel(const uint32_t* __restrict__ qm, const uint2* __restrict__ sz,
                                                          const int32_t* __restrict__ ug, T* __restrict__ wt, int64_t N,
                                                          int64_t KC, int64_t G, int64_t Kp, int64_t total);

// Two dequantized weights as one 4-byte store of the workspace type.
template <class T>
struct Pair;
template <>
struct Pair<__half> {
  using V = __half2;
  __device__ __forceinline__ static V make(float a, float b) { return __floats2half2_rn(a, b); }
};
template <>
struct Pair<__nv_bfloat16> {
  using V = __nv_bfloat162;
  __device__ __forceinline__ static V make(float a, float b) { return __floats2bfloat162_rn(a, b); }
};

// wt[n, r] (T = f16 or bf16, row stride Kp) = scale · (q − zero) for every stored row r. One
// thread per (column, unit): reads the unit's words of the transposed layout (consecutive threads,
// consecutive words) and writes its R values contiguously. Flat over N · units.
template <int BITS, class T>
__global__ void __launch_bounds__(256) dequant_kernel(const uint32_t* __restrict__ qwt, int64_t wp,
                                                      const uint16_t* __restrict__ sct, const uint8_t* __restrict__ zpt,
                                                      int64_t G, const int32_t* __restrict__ ug, T* __restrict__ wt,
                                                      int64_t N, int64_t units, int64_t Kp, int64_t full) {
  constexpr int R = unit_rows(BITS), UW = unit_words(BITS);
  const int64_t total = N * units;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < total; i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t n = i / units, u = i - n * units;
    const int32_t g = __ldg(ug + u);
    const float s = half_bits_to_float(__ldg(sct + n * G + g));
    const float zm = kMagic + float(__ldg(zpt + n * G + g));
    uint32_t w[UW];
    if constexpr (UW == 1) w[0] = __ldg(qwt + n * wp + word_pos(u, full));
    else
      for (int k = 0; k < UW; ++k) w[k] = __ldg(qwt + n * wp + u * UW + k);
    auto* out = reinterpret_cast<typename Pair<T>::V*>(wt + n * Kp + u * R);
#pragma unroll
    for (int j = 0; j < R; j += 2)
      out[j / 2] = Pair<T>::make(s * (magic_code<BITS>(w, j) - zm), s * (magic_code<BITS>(w, j + 1) - zm));
  }
}

template <class T>
__global__ void __launch_bounds__(256) dequant_mma_kernel(const uint32_t* __restrict__ qm, const uint2* __restrict__ sz,
                                                          const int32_t* __restrict__ ug, T* __restrict__ wt, int64_t N,
                                                          int64_t KC, int64_t G, int64_t Kp, int64_t total) {
  for (int64_t o = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; o < total; o += int64_t(gridDim.x) * blockDim.x) {
    const int i = int(o & 3), l = int((o >> 2) & 31);
    const int64_t c = (o >> 7) % KC, nt = (o >> 7) / KC;
    const int g = l >> 2, t = l & 3;
    const uint32_t w = __ldg(qm + o);
    const int64_t k0 = c * 64 + 16 * i + 4 * t;
    const uint2 e = __ldg(sz + (nt * G + __ldg(ug + (c * 64 + 16 * i) / 8)) * 8 + g);
#pragma unroll
    for (int sft = 0; sft < 4; ++sft) {  // nibbles sft (row k0 + 2·khi) and sft + 4 (row k0 + 2·khi + 1)
      const int rs = sft & 1, khi = sft >> 1;
      const int64_t n = nt * 16 + g + 8 * rs;
      if (n >= N) continue;
      const float z = float((e.x >> (16 * rs)) & 0xffu);
      const float s = half_bits_to_float(uint16_t(e.y >> (16 * rs)));
      const float q0 = float((w >> (4 * sft)) & 15u), q1 = float((w >> (4 * sft + 16)) & 15u);
      auto* out = reinterpret_cast<typename Pair<T>::V*>(wt + n * Kp + k0 + 2 * khi);
      *out = Pair<T>::make(s * (q0 - z), s * (q1 - z));
    }
  }
}

// xg[m, r] = x[m, perm[r]] (0 where perm[r] < 0), or x[m, r] without perm.
__global__ void gather_kernel(const float* __restrict__ x, int64_t K, const int32_t* __restrict__ perm,
                              float* __restrict__ xg, int64_t Kp, int64_t total) {
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < total; i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t m = i / Kp, r = i % Kp;
    const int32_t k = perm ? perm[r] : int32_t(r);
    xg[i] = k >= 0 ? x[m * K + k] : 0.f;
  }
}

// ---- host side ---------------------------------------------------------------------------------

struct CudaScratch final : BackendScratch {
  explicit CudaScratch(Device& d) : dev(d) {}
  Device& dev;
  Buffer<uint16_t> wt;  // f16/bf16 Wᵀ of the largest Linear, [N, Kp]
  Buffer<float> xg;     // gathered activations, grown on demand

  void reserve_wt(size_t n) {
    if (wt.size() >= n) return;
    check(dev.queue().wait());  // the old buffer may still be read by queued work
    wt = Buffer<uint16_t>(dev, n, MemCategory::workspace);
  }
  float* gather_buffer(size_t n) {
    if (xg.size() < n) {
      check(dev.queue().wait());
      xg = Buffer<float>(dev, n, MemCategory::workspace);
    }
    return xg.data();
  }
};

template <int BITS>
void launch_gemv(int mb, unsigned blocks, cudaStream_t st, const uint32_t* qwt, int64_t wp, const uint16_t* sct,
                 const uint8_t* zpt, int64_t G, const int32_t* ug, const float* bias, const float* x, int64_t ldx,
                 float* y, int M, int64_t N, int64_t units) {
  const unsigned threads = 32 * kGemvWarps;
  switch (mb) {
    case 1: gemv_kernel<BITS, 1><<<blocks, threads, 0, st>>>(qwt, wp, sct, zpt, G, ug, bias, x, ldx, y, M, N, units); break;
    case 2: gemv_kernel<BITS, 2><<<blocks, threads, 0, st>>>(qwt, wp, sct, zpt, G, ug, bias, x, ldx, y, M, N, units); break;
    case 4: gemv_kernel<BITS, 4><<<blocks, threads, 0, st>>>(qwt, wp, sct, zpt, G, ug, bias, x, ldx, y, M, N, units); break;
    default: gemv_kernel<BITS, 8><<<blocks, threads, 0, st>>>(qwt, wp, sct, zpt, G, ug, bias, x, ldx, y, M, N, units); break;
  }
}

template <class T>
void transpose_on_device(Device& dev, cudaStream_t st, Buffer<T>& buf, int64_t R, int64_t C, int64_t ldd,
                         int64_t full = 0) {
  if (R == 0 || C == 0) return;
  Buffer<T> t(dev, size_t(C * ldd), MemCategory::weights);
  const dim3 grid(unsigned((C + 31) / 32), unsigned((ldd + 31) / 32)), block(32, 8);
  transpose_kernel<T><<<grid, block, 0, st>>>(buf.data(), t.data(), R, C, ldd, full);
  GPTQ_CUDA_LAUNCHED("transpose_kernel");
  GPTQ_CUDA_CHECK(cudaStreamSynchronize(st));  // the old buffer is freed below
  buf = std::move(t);
}

// Blocks of gemv_mma_kernel<kTileScale, NB> that fit on one SM at once (registers decide), cached
// per instantiation.
template <bool kTileScale, int NB>
int mma_blocks_per_sm() {
  static const int n = [] {
    int b = 0;
    const size_t smem = kTileScale ? 16384 : 4096;
    return cudaOccupancyMaxActiveBlocksPerMultiprocessor(&b, gemv_mma_kernel<kTileScale, NB>, kMmaWarps * 32, smem) ==
                   cudaSuccess
               ? std::max(b, 1)
               : 1;
  }();
  return n;
}

// y = x · W for M ≤ 8·NB rows on the tensor-core layout.
template <bool kTileScale, int NB>
void launch_gemv_mma(cudaStream_t st, int sm_count, const uint4* qm, const uint2* sz, const int32_t* ug,
                     const float* bias, const float* x, int64_t ldx, float* y, int M, int64_t N, int64_t NTp,
                     int64_t KC, int64_t G) {
  // k split (ks warps per column tile, in one block): the largest that keeps the grid within one
  // resident wave and gives each warp at least 4 chunks (a short last wave leaves SMs with few
  // loads in flight; a longer split only adds reduction work).
  const int capacity = sm_count * mma_blocks_per_sm<kTileScale, NB>();
  int ks = 1;
  while (ks < kMmaWarps && NTp * (2 * ks) / kMmaWarps <= capacity && KC / (2 * ks) >= 4) ks *= 2;
  const unsigned blocks = unsigned((NTp + (kMmaWarps / ks) - 1) / (kMmaWarps / ks));
  const size_t smem = size_t(KC) * (kTileScale ? 4 : 1) * sizeof(int32_t);
  // Programmatic dependent launch: the kernel waits for x on the device (cuda_plugin::pdl_wait).
  GPTQ_CUDA_CHECK(cuda_plugin::launch(cuda_plugin::pdl_enabled(), st, dim3(blocks), dim3(kMmaWarps * 32), smem,
                                      gemv_mma_kernel<kTileScale, NB>, qm, sz, ug, bias, x, ldx, y, M, N, NTp, KC, G,
                                      ks));
}

template <bool kTileScale>
void launch_gemv_mma_m(cudaStream_t st, int sm_count, const uint4* qm, const uint2* sz, const int32_t* ug,
                       const float* bias, const float* x, int64_t ldx, float* y, int M, int64_t N, int64_t NTp,
                       int64_t KC, int64_t G) {
  if (M <= 8) launch_gemv_mma<kTileScale, 1>(st, sm_count, qm, sz, ug, bias, x, ldx, y, M, N, NTp, KC, G);
  else if (M <= 16) launch_gemv_mma<kTileScale, 2>(st, sm_count, qm, sz, ug, bias, x, ldx, y, M, N, NTp, KC, G);
  else if (M <= 32) launch_gemv_mma<kTileScale, 4>(st, sm_count, qm, sz, ug, bias, x, ldx, y, M, N, NTp, KC, G);
  else launch_gemv_mma<kTileScale, 8>(st, sm_count, qm, sz, ug, bias, x, ldx, y, M, N, NTp, KC, G);
}

// Whether 9..64 rows take gemm_tc_kernel (KVRUN_GPTQ_TC_GEMM=0: gemv_mma_kernel up to
// KVRUN_GPTQ_MMA_MAX_ROWS, dequantize + GEMM above, as before session 20; for comparisons in one run).
bool tc_gemm_enabled() {
  static const bool on = cuda_plugin::env_int("KVRUN_GPTQ_TC_GEMM", 0, 1, 1) == 1;
  return on;
}

// The fewest rows gemm_tc_kernel takes (KVRUN_GPTQ_TC_MIN_ROWS, 2..64, default kTcMinM), for tuning.
int64_t tc_min_rows() {
  static const int64_t n = cuda_plugin::env_int("KVRUN_GPTQ_TC_MIN_ROWS", 2, int(kTcMaxM), kTcMinM);
  return n;
}

// Whether 9..64 rows take gemm_wg_kernel where it can run (KVRUN_GPTQ_WGMMA, default 1; 0:
// gemm_tc_kernel, for comparisons in one run). KVRUN_GPTQ_WG_SWAP_DESC=1 (tests only) exchanges its
// descriptor's two offsets, which must make the sums wrong: proof that the layout is the one read.
bool wg_enabled() {
  static const bool on = cuda_plugin::env_int("KVRUN_GPTQ_WGMMA", 0, 1, 1) == 1;
  return on;
}
bool wg_swap_desc() {
  static const bool on = cuda_plugin::env_int("KVRUN_GPTQ_WG_SWAP_DESC", 0, 1, 0) == 1;
  return on;
}
// The fewest rows gemm_wg_kernel takes (KVRUN_GPTQ_WG_MIN_ROWS, 9..64, default 9: with two tiles a
// warp it is faster than gemm_tc_kernel from 16 rows on, session 24), for tuning; fewer rows keep
// gemm_tc_kernel.
int wg_min_rows() {
  static const int n = cuda_plugin::env_int("KVRUN_GPTQ_WG_MIN_ROWS", 9, 64, 9);
  return n;
}
// Column tiles per warp of gemm_wg_kernel (KVRUN_GPTQ_WG_TILES): 0 (default) chooses per Linear
// (TcPlan::wg_tiles_for), 1 or 2 forces that count, for comparisons in one run (1 is session 23's
// kernel). Session 24, calls A and B, ms per step at 16 / 32 / 64 rows: two tiles 3.62–3.69 /
// 4.29–4.31 / 5.24–5.28, one 4.18–4.19 / 5.29–5.30 / 6.07–6.08 (gemm_tc_kernel 4.20–4.21 /
// 4.57–4.58 / 6.46–6.47); four (up to 32 rows) 5.05 / 4.50.
int wg_tiles() {
  static const int n = cuda_plugin::env_int("KVRUN_GPTQ_WG_TILES", 0, 2, 0);
  return n;
}

// Workspace of gemm_tc_kernel in 16-bit units: the k parts' sums [kTcMaxParts, kTcMaxM, N] f32,
// the row scales [kTcMaxM] f32, then the x fragments [Kp / 64, 4, kTcMaxM / 8, 32] uint2
// (= kTcMaxM · Kp f16), each 16-byte aligned.
int64_t tc_part_halfs(int64_t N) { return (2 * kTcMaxParts * kTcMaxM * N + 7) / 8 * 8; }
int64_t tc_workspace_halfs(int64_t N, int64_t Kp) { return tc_part_halfs(N) + 2 * kTcMaxM + kTcMaxM * Kp; }

template <bool kTileScale, int NB, int TW>
size_t tc_smem(int64_t KC) {
  constexpr int S = kTileScale ? 4 : 1;
  return size_t(kTcStages) * TcStage<NB, S, TW>::kBytes + size_t(KC) * S * sizeof(int32_t);
}

// Blocks of gemm_tc_kernel<kTileScale, NB, TW> per SM on the current device for a Linear of KC
// chunks, after raising the kernel's shared-memory limit there (per device, at load, like
// plan_gemv1); 0 where it does not fit — the Linear then keeps the other paths.
template <bool kTileScale, int NB, int TW>
int plan_tc(int64_t KC) {
  const size_t smem = tc_smem<kTileScale, NB, TW>(KC);
  int b = 0;
  if (cudaFuncSetAttribute(gemm_tc_kernel<kTileScale, NB, TW>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                           int(smem)) != cudaSuccess ||
      cudaOccupancyMaxActiveBlocksPerMultiprocessor(&b, gemm_tc_kernel<kTileScale, NB, TW>, kTcWarps * 32, smem) !=
          cudaSuccess) {
    (void)cudaGetLastError();  // not sticky: clear it
    return 0;
  }
  return b;
}

// Whether the k parts are added four columns at a time where the shapes allow (KVRUN_GPTQ_TC_REDUCE4,
// default 1; 0: tc_reduce_kernel always — the same sums, for comparisons in one run).
bool tc_reduce_vec() {
  static const bool on = cuda_plugin::env_int("KVRUN_GPTQ_TC_REDUCE4", 0, 1, 1) == 1;
  return on;
}
// The most k parts tc_parts may choose (KVRUN_GPTQ_TC_MAX_PARTS, 1..kTcMaxParts, default
// kTcMaxParts), for tuning.
int tc_max_parts() {
  static const int n = cuda_plugin::env_int("KVRUN_GPTQ_TC_MAX_PARTS", 1, kTcMaxParts, kTcMaxParts);
  return n;
}

// The k parts of gemm_tc_kernel for bx column blocks: the count (1..kTcMaxParts, ≥ 4 chunks a part)
// that minimizes the busiest SM's share of the work — ⌈bx·nz / SMs⌉ blocks of 1/nz of the k range
// each — plus 0.01 a part for the partial sums written and added (which also breaks ties toward
// fewer parts). Qwen-7B at 16 tiles a block: gate·up (86 blocks) 3 parts, 258 blocks on 132 SMs;
// q·k·v (48) 5 parts; o and down (16) 8.
int tc_parts(int64_t bx, int64_t KC, int sm_count) {
  int best = 1;
  double best_cost = 1e300;
  for (int nz = 1; nz <= tc_max_parts() && (nz == 1 || KC / nz >= 4); ++nz) {
    const int64_t busiest = (bx * nz + sm_count - 1) / sm_count;  // blocks on the busiest SM
    const double cost = double(busiest) / nz + 0.01 * nz;
    if (cost < best_cost) best = nz, best_cost = cost;
  }
  return best;
}

// y [M, N] = x [M, ldx] (first kx columns) · W + bias for 9 ≤ M ≤ 8·NB ≤ 64 through gemm_tc_kernel
// with TW tiles per warp, or with TW = 0 through gemm_wg_kernel (gptq_wg.cu: Hopper, wtw tiles per
// warp, NB 2 and 4..8); ws: the workspace (tc_workspace_halfs); k parts: tc_parts.
template <bool kTileScale, int NB, int TW>
void launch_gemm_tc(cudaStream_t st, int sm_count, const uint4* qm, const uint2* sz, const int32_t* ug,
                    const float* bias, const float* x, int64_t ldx, int64_t kx, float* y, int M, int64_t N,
                    int64_t NTp, int64_t KC, int64_t G, uint16_t* ws, const LinearFusion& fz, int wtw = 0) {
  if (TW == 0 && wtw != 1 && wtw != 2)
    fail(ErrorKind::internal, "weights.gptq (CUDA): gemm_wg_kernel launched with " + std::to_string(wtw) +
                                  " tiles a warp (1 or 2)");
  const int64_t bx = tc_blocks_x(NTp, TW > 0 ? TW : wtw);  // column blocks (gemm_wg_kernel's: wtw tiles a warp)
  const int nz = tc_parts(bx, KC, sm_count);
  float* part = reinterpret_cast<float*>(ws);
  float* rowscale = reinterpret_cast<float*>(ws + tc_part_halfs(N));
  uint2* xf = reinterpret_cast<uint2*>(ws + tc_part_halfs(N) + 2 * kTcMaxM);
  const bool pdl = cuda_plugin::pdl_enabled();
  if constexpr (TW == 0) {
#if KVRUN_GPTQ_WG
    GPTQ_CUDA_CHECK(cuda_plugin::launch(pdl, st, dim3(unsigned(8 * NB)), dim3(kXfThreads), 0, tc_xfrag_kernel<NB, true>, x,
                                        ldx, M, kx, xf, rowscale, KC * 4, fz));
    wg::Args a;
    a.qm = qm, a.sz = sz, a.ug = ug, a.bias = bias, a.xf = reinterpret_cast<const uint32_t*>(xf), a.rowscale = rowscale;
    a.y = y, a.part = part, a.M = M, a.N = int(N), a.NTp = int(NTp), a.KC = int(KC), a.G = int(G);
    a.accumulate = fz.accumulate;
    a.swap_desc = wg_swap_desc();
    GPTQ_CUDA_CHECK(wg::launch(pdl, st, kTileScale, NB, wtw, nz, a));
#else
    fail(ErrorKind::internal, "weights.gptq (CUDA): gemm_wg_kernel asked of a build without it");
#endif
  } else {
    GPTQ_CUDA_CHECK(cuda_plugin::launch(pdl, st, dim3(unsigned(8 * NB)), dim3(kXfThreads), 0, tc_xfrag_kernel<NB>, x,
                                        ldx, M, kx, xf, rowscale, KC * 4, fz));
    GPTQ_CUDA_CHECK(cuda_plugin::launch(pdl, st, dim3(unsigned(bx), unsigned(nz)), dim3(kTcWarps * 32),
                                        tc_smem<kTileScale, NB, TW>(KC), gemm_tc_kernel<kTileScale, NB, TW>, qm, sz, ug,
                                        bias, static_cast<const uint2*>(xf), static_cast<const float*>(rowscale), y,
                                        part, M, int(N), int(NTp), int(KC), int(G), fz.accumulate));
  }
  if (nz > 1) {
    const int64_t total = int64_t(M) * N;
    // From 32 rows (session 23, call H: 32 / 48 / 64 rows 2–4 % faster; 16 rows 5 % slower — a
    // quarter of the threads, each waiting on its parts' loads).
    const bool vec = M >= 32 && N % 4 == 0 && total / 4 < (int64_t(1) << 31) &&
                     reinterpret_cast<uintptr_t>(y) % 16 == 0 && reinterpret_cast<uintptr_t>(bias) % 16 == 0 &&
                     tc_reduce_vec();
    if (vec)
      GPTQ_CUDA_CHECK(cuda_plugin::launch(pdl, st, dim3(unsigned(std::min<int64_t>((total / 4 + 255) / 256, 1 << 16))),
                                          dim3(256), 0, tc_reduce4_kernel, reinterpret_cast<const float4*>(part),
                                          static_cast<const float*>(rowscale), reinterpret_cast<const float4*>(bias),
                                          reinterpret_cast<float4*>(y), int(N / 4), nz, int(total / 4), fz.accumulate));
    else
      GPTQ_CUDA_CHECK(cuda_plugin::launch(pdl, st, dim3(unsigned(std::min<int64_t>((total + 255) / 256, 1 << 16))),
                                          dim3(256), 0, tc_reduce_kernel, static_cast<const float*>(part),
                                          static_cast<const float*>(rowscale), bias, y, int(N), nz, total,
                                          fz.accumulate));
  }
}

// Column tiles per warp of gemm_tc_kernel (KVRUN_GPTQ_TC_TILES = 1 or 2, default 2; 1 is session
// 20's kernel, for comparisons in one run).
int tc_tiles_per_warp() {
  static const int n = cuda_plugin::env_int("KVRUN_GPTQ_TC_TILES", 1, 2, 2);
  return n;
}

// gemm_wg_kernel's widths (8·NB rows): NB 2 up to 16 rows, 4 up to 32, then ⌈M / 8⌉.
constexpr int kWgWidths[] = {2, 4, 5, 6, 7, 8};

// Blocks per SM of the kernel's variants ([rows 16 / 32 / 64][tiles per warp 1 / 2]), 0 where one does
// not fit (plan_tc). ok(): the variants the switch selects all fit.
struct TcPlan {
  int per_sm[3][2] = {{0, 0}, {0, 0}, {0, 0}};  // [rows 16 / 32 / 64][tiles per warp 1 / 2]
  int wg[9][2] = {};  // gemm_wg_kernel's, [NB][tiles per warp 1 / 2] for NB in kWgWidths; 0: not here
  bool ok() const {
    const int w = tc_tiles_per_warp() - 1;
    return per_sm[0][w] > 0 && per_sm[1][w] > 0 && per_sm[2][w] > 0;
  }
  // gemm_wg_kernel takes the Linear's products of M rows (every width runs here, the switch,
  // M ≥ wg_min_rows()).
  bool takes_wg(int M) const {
    for (int nb : kWgWidths)
      if ((wg_tiles() != 2 && wg[nb][0] == 0) || (wg_tiles() != 1 && wg[nb][1] == 0)) return false;
    return wg_enabled() && M >= wg_min_rows();
  }
  // gemm_wg_kernel's tiles per warp at width 8·nb for a Linear of NTp column tiles and KC chunks
  // (wg_tiles() where it forces one): two, unless two tiles' grid — tc_parts' k parts included —
  // passes one wave of the blocks an SM holds. Two tiles share each x stage between twice the
  // weights, but at 64 rows they take 141 registers, one block per SM; there q·k·v and gate·up
  // (240 and 258 blocks on 132 SMs) ran faster with one tile (three blocks per SM) and o and down
  // (128 blocks) with two (session 24, call D: 64 rows 5.01–5.02 against 5.27–5.29 ms/step;
  // with one tile for them at 16–48 rows, where two tiles fit two blocks per SM, 3–8 % slower).
  int wg_tiles_for(int nb, int64_t NTp, int64_t KC, int sm_count) const {
    if (wg_tiles() != 0) return wg_tiles();
    const int64_t bx = tc_blocks_x(NTp, 2);
    const int64_t blocks = bx * tc_parts(bx, KC, sm_count);
    return blocks > int64_t(wg[nb][1]) * sm_count ? 1 : 2;
  }
};

template <bool kTileScale>
TcPlan plan_tc_all(int64_t KC) {
  TcPlan p;
  p.per_sm[0][0] = plan_tc<kTileScale, 2, 1>(KC);
  p.per_sm[0][1] = plan_tc<kTileScale, 2, 2>(KC);
  p.per_sm[1][0] = plan_tc<kTileScale, 4, 1>(KC);
  p.per_sm[1][1] = plan_tc<kTileScale, 4, 2>(KC);
  p.per_sm[2][0] = plan_tc<kTileScale, 8, 1>(KC);
  p.per_sm[2][1] = plan_tc<kTileScale, 8, 2>(KC);
#if KVRUN_GPTQ_WG
  for (int nb : kWgWidths)
    for (int tw = 1; tw <= 2; ++tw) p.wg[nb][tw - 1] = wg::plan(kTileScale, nb, tw, KC);
#endif
  return p;
}

// gemm_tc_kernel's variant for M rows and the tiles-per-warp switch. (The caller has asked
// TcPlan::ok(): the variants chosen here fit.)
template <bool kTileScale>
void launch_gemm_tc_m(cudaStream_t st, int sm_count, const uint4* qm, const uint2* sz, const int32_t* ug,
                      const float* bias, const float* x, int64_t ldx, int64_t kx, float* y, int M, int64_t N,
                      int64_t NTp, int64_t KC, int64_t G, uint16_t* ws, const LinearFusion& fz, const TcPlan& plan) {
  if (plan.takes_wg(M)) {  // 8·NB rows: 16 up to 16 rows, 32 up to 32, then ⌈M / 8⌉·8 (the wgmma's N: any multiple of 8)
    auto wg = [&](auto nb) {
      constexpr int kNb = decltype(nb)::value;
      launch_gemm_tc<kTileScale, kNb, 0>(st, sm_count, qm, sz, ug, bias, x, ldx, kx, y, M, N, NTp, KC, G, ws, fz,
                                         plan.wg_tiles_for(kNb, NTp, KC, sm_count));
    };
    switch (M <= 16 ? 2 : M <= 32 ? 4 : (M + 7) / 8) {
      case 2: wg(std::integral_constant<int, 2>{}); break;
      case 4: wg(std::integral_constant<int, 4>{}); break;
      case 5: wg(std::integral_constant<int, 5>{}); break;
      case 6: wg(std::integral_constant<int, 6>{}); break;
      case 7: wg(std::integral_constant<int, 7>{}); break;
      default: wg(std::integral_constant<int, 8>{}); break;
    }
    return;
  }
  const bool two = tc_tiles_per_warp() == 2;
  if (M <= 16 && two)
    launch_gemm_tc<kTileScale, 2, 2>(st, sm_count, qm, sz, ug, bias, x, ldx, kx, y, M, N, NTp, KC, G, ws, fz);
  else if (M <= 16)
    launch_gemm_tc<kTileScale, 2, 1>(st, sm_count, qm, sz, ug, bias, x, ldx, kx, y, M, N, NTp, KC, G, ws, fz);
  else if (M <= 32 && two)
    launch_gemm_tc<kTileScale, 4, 2>(st, sm_count, qm, sz, ug, bias, x, ldx, kx, y, M, N, NTp, KC, G, ws, fz);
  else if (M <= 32)
    launch_gemm_tc<kTileScale, 4, 1>(st, sm_count, qm, sz, ug, bias, x, ldx, kx, y, M, N, NTp, KC, G, ws, fz);
  else if (two)
    launch_gemm_tc<kTileScale, 8, 2>(st, sm_count, qm, sz, ug, bias, x, ldx, kx, y, M, N, NTp, KC, G, ws, fz);
  else
    launch_gemm_tc<kTileScale, 8, 1>(st, sm_count, qm, sz, ug, bias, x, ldx, kx, y, M, N, NTp, KC, G, ws, fz);
}

// Whether M = 1 takes gemv1_mma_kernel (KVRUN_GPTQ_GEMV1=0 keeps gemv_mma_kernel, for
// comparisons in one run).
bool gemv1_enabled() {
  static const bool on = cuda_plugin::env_int("KVRUN_GPTQ_GEMV1", 0, 1, 1) == 1;
  return on;
}

// KVRUN_GPTQ_FUSE=0: the batch-1 kernel does no fusion (the model then runs its norm/add kernels).
bool fusion_enabled() {
  static const bool on = cuda_plugin::env_int("KVRUN_GPTQ_FUSE", 0, 1, 1) == 1;
  return on;
}

// gemv1_mma_kernel's launch for one Linear: the k split and the shared memory, decided at load.
struct G1Plan {
  bool ok = false;  // the layer's shared memory fits the device
  size_t smem = 0;
  int ks = 1;
  unsigned blocks = 0;
};

template <bool kTileScale>
G1Plan plan_gemv1(int device, int sm_count, int64_t NTp, int64_t KC, int64_t G) {
  G1Plan p;
  int optin = 0;
  GPTQ_CUDA_CHECK(cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, device));
  if (G > (int64_t(1) << 20) || NTp > (int64_t(1) << 26)) return p;  // (int indexing in the kernel)
  // The function may use up to the device's opt-in limit less its static reduction array (one
  // setting for every Linear; each launch passes its own size).
  cudaFuncAttributes fa{};
  GPTQ_CUDA_CHECK(cudaFuncGetAttributes(&fa, gemv1_mma_kernel<kTileScale>));
  const size_t max_dynamic = size_t(optin) - fa.sharedSizeBytes;
  GPTQ_CUDA_CHECK(cudaFuncSetAttribute(gemv1_mma_kernel<kTileScale>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                       int(max_dynamic)));
  // The largest k split (ks warps per column tile) whose grid still fits in one resident wave and
  // gives each warp at least two stages of chunks; the smallest split that fits in shared memory
  // when none does.
  for (int ks = 1; ks <= kG1Warps; ks *= 2) {
    const size_t smem = G1Smem(KC, G, ks, kTileScale).bytes;  // shrinks as ks grows (fewer tiles)
    if (smem > max_dynamic) continue;
    int per_sm = 0;
    GPTQ_CUDA_CHECK(
        cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, gemv1_mma_kernel<kTileScale>, kG1Warps * 32, smem));
    if (per_sm < 1) continue;
    const int64_t blocks = (NTp + (kG1Warps / ks) - 1) / (kG1Warps / ks);
    const bool fits = blocks <= int64_t(sm_count) * per_sm && KC / ks >= 2 * kG1U;
    if (!p.ok || fits) p = G1Plan{true, smem, ks, unsigned(blocks)};
    if (!fits) break;
  }
  return p;
}

// Rows up to which the tensor-core layout uses the fused kernel (above: dequantize + GEMM).
// KVRUN_GPTQ_MMA_MAX_ROWS (0..64) overrides the default, for tuning.
int64_t mma_max_rows() {
  static const int64_t n = cuda_plugin::env_int("KVRUN_GPTQ_MMA_MAX_ROWS", 0, 64, int(kCudaMmaMaxM));
  return n;
}

class CudaLinear final : public GptqLinearBase {
 public:
  CudaLinear(Device& dev, const Layout& lay, std::shared_ptr<CudaScratch> scratch)
      : GptqLinearBase(dev, lay), scratch_(std::move(scratch)) {
    scratch_->reserve_wt(size_t(lay.N * lay.Kp));  // the prefill workspace is held from load time on
    // A malformed KVRUN_GPTQ_FUSE, _TC_GEMM, _TC_TILES, _TC_MIN_ROWS, _TC_MAX_PARTS, _TC_REDUCE4,
    // _WGMMA, _WG_MIN_ROWS, _WG_TILES or _WG_SWAP_DESC is a usage error at load (fuses(), which reads them too,
    // cannot report it).
    fusion_enabled();
    tc_gemm_enabled();
    wg_enabled();
    wg_swap_desc();
    wg_min_rows();
    wg_tiles();
    tc_max_parts();
    tc_reduce_vec();
    tc_tiles_per_warp();
    tc_min_rows();
    DeviceGuard dg(dev_.info().index);
    GPTQ_CUDA_CHECK(cudaDeviceGetAttribute(&sm_count_, cudaDevAttrMultiProcessorCount, dev_.info().index));
  }

  size_t device_bytes() const noexcept override { return GptqLinearBase::device_bytes() + sz_.bytes(); }

  Status forward(TensorView y, TensorView x) noexcept override {
    return guard([&] { run(y, x, LinearFusion{}); });
  }

  // Fused (norm of x in, y += out; not SwiGLU, not act-order, whose gathered rows would need the
  // norm weights gathered too) at M = 1 by the batch-1 kernel and at tc_min_rows()..kTcMaxM rows by
  // gemm_tc_kernel (the norm in its x-fragment kernel, the += in its epilogue or reduce kernel).
  bool fuses(const MatmulFusion& f, int64_t M) const noexcept override {
    if (f.swiglu || !mma_ || lay_.permuted) return false;
    if (f.norm_w && (f.norm_w->numel() != lay_.K || f.norm_w->space != MemSpace::device ||
                     (f.norm_w->dtype != DType::f32 && f.norm_w->dtype != DType::bf16 && f.norm_w->dtype != DType::f16)))
      return false;
    try {
      if (M == 1) return g1_.ok && gemv1_enabled() && fusion_enabled();
      return takes_tc(M) && fusion_enabled();
    } catch (...) {  // a malformed switch: no fusion here; forward() reports it as a usage error
      return false;
    }
  }
  Status forward_fused(TensorView y, TensorView x, const MatmulFusion& f) noexcept override {
    return guard([&] {
      if (!fuses(f, x.rows()))
        fail(ErrorKind::internal, "weights.gptq (CUDA): forward_fused with this fusion is not done for x " +
                                      x.shape_string() + " (ask fuses() first)");
      if (y.data == x.data) fail(ErrorKind::internal, "weights.gptq (CUDA): forward_fused: y must not alias x");
      LinearFusion fz;
      fz.accumulate = f.accumulate;
      fz.K = int(lay_.K);
      if (f.norm_w) {
        fz.norm_w = f.norm_w->data;
        fz.norm_t = f.norm_w->dtype;
        fz.eps = f.norm_eps;
      }
      run(y, x, fz);
    });
  }

 private:
  // Whether M rows take gemm_tc_kernel.
  bool takes_tc(int64_t M) const {
    return mma_ && M >= tc_min_rows() && M <= kTcMaxM && tc_.ok() && tc_gemm_enabled();
  }

  // forward, with the fusions in fz (only where fuses() said so).
  void run(TensorView y, TensorView x, const LinearFusion& fz) {
    {
      const int64_t K = lay_.K, N = lay_.N, Kp = lay_.Kp;
      if (x.dtype != DType::f32 || y.dtype != DType::f32 || x.cols() != K || y.cols() != N || x.rows() != y.rows() ||
          x.space != MemSpace::device || y.space != MemSpace::device)
        fail(ErrorKind::internal, "weights.gptq (CUDA): Linear [" + std::to_string(K) + " -> " + std::to_string(N) +
                                      "] called with x " + x.shape_string() + " " + std::string(dtype_name(x.dtype)) +
                                      ", y " + y.shape_string() + " " + std::string(dtype_name(y.dtype)) +
                                      " (both f32 in device memory)");
      const int64_t M = x.rows();
      if (M == 0) return;
      DeviceGuard dg(dev_.info().index);
      cudaStream_t st = static_cast<cudaStream_t>(dev_.queue().native_handle());
      const float* X = x.as<const float>();
      int64_t ldx = K;
      const bool fused = mma_ ? M <= mma_max_rows() : M <= kCudaFusedMaxM;
      const bool misaligned = (reinterpret_cast<uintptr_t>(X) & 15u) != 0;
      if (lay_.permuted || (fused && misaligned)) {
        float* xg = scratch_->gather_buffer(size_t(M * Kp));
        const int64_t total = M * Kp;
        const int threads = 256;
        const unsigned blocks = unsigned(std::min<int64_t>((total + threads - 1) / threads, 65535 * 8));
        gather_kernel<<<blocks, threads, 0, st>>>(X, K, lay_.permuted ? perm.data() : nullptr, xg, Kp, total);
        GPTQ_CUDA_LAUNCHED("gather_kernel");
        X = xg;
        ldx = Kp;
      }
      float* Y = y.as<float>();
      const float* B = bias.empty() ? nullptr : bias.data();
      if (takes_tc(M)) {
        const auto* qm = reinterpret_cast<const uint4*>(qweight.data());
        const int64_t kx = X == x.as<const float>() ? K : Kp;  // valid columns: K, or the gathered Kp
        if (tile_scale_)
          launch_gemm_tc_m<true>(st, sm_count_, qm, sz_.data(), unit_group.data(), B, X, ldx, kx, Y, int(M), N, ntp_,
                                 Kp / 64, lay_.groups, scratch_->wt.data(), fz, tc_);
        else
          launch_gemm_tc_m<false>(st, sm_count_, qm, sz_.data(), unit_group.data(), B, X, ldx, kx, Y, int(M), N,
                                  ntp_, Kp / 64, lay_.groups, scratch_->wt.data(), fz, tc_);
        return;
      }
      if (mma_ && M <= mma_max_rows()) {
        const auto* qm = reinterpret_cast<const uint4*>(qweight.data());
        if (M == 1 && g1_.ok && gemv1_enabled()) {
          auto* kernel = tile_scale_ ? gemv1_mma_kernel<true> : gemv1_mma_kernel<false>;
          static const int early = cuda_plugin::env_int("KVRUN_GPTQ_G1_TRIGGER", 0, 1, 1);
          static const int defer = cuda_plugin::env_int("KVRUN_GPTQ_G1_DEFER_NORM", 0, 1, 1);
          LinearFusion fzp = fz;
          fzp.early_trigger = early != 0;
          fzp.defer_norm = defer != 0;
          GPTQ_CUDA_CHECK(cuda_plugin::launch(cuda_plugin::pdl_enabled(), st, dim3(g1_.blocks), dim3(kG1Warps * 32),
                                              g1_.smem, kernel, qm, sz_.data(), unit_group.data(), B, X, Y, int(N),
                                              int(ntp_), int(lay_.Kp / 64), int(lay_.groups), g1_.ks, fzp));
          return;
        }
        if (fz.norm_w || fz.accumulate) fail(ErrorKind::internal, "weights.gptq (CUDA): fusion without the batch-1 kernel");
        if (tile_scale_)
          launch_gemv_mma_m<true>(st, sm_count_, qm, sz_.data(), unit_group.data(), B, X, ldx, Y, int(M), N, ntp_,
                                  lay_.Kp / 64, lay_.groups);
        else
          launch_gemv_mma_m<false>(st, sm_count_, qm, sz_.data(), unit_group.data(), B, X, ldx, Y, int(M), N, ntp_,
                                   lay_.Kp / 64, lay_.groups);
        GPTQ_CUDA_LAUNCHED("gemv_mma_kernel");
        return;
      }
      if (fused) {
        const int mb = M <= 1 ? 1 : M <= 2 ? 2 : M <= 4 ? 4 : 8;
        const unsigned blocks = unsigned((N + kRowsPerBlock - 1) / kRowsPerBlock);
        const auto* qw = qweight.data();
        const auto* sc = scales.data();
        const auto* zp = zeros.data();
        const auto* ug = unit_group.data();
        const int64_t U = lay_.units(), G = lay_.groups;
        switch (lay_.bits) {
          case 2: launch_gemv<2>(mb, blocks, st, qw, wp_, sc, zp, G, ug, B, X, ldx, Y, int(M), N, U); break;
          case 3: launch_gemv<3>(mb, blocks, st, qw, wp_, sc, zp, G, ug, B, X, ldx, Y, int(M), N, U); break;
          case 4: launch_gemv<4>(mb, blocks, st, qw, wp_, sc, zp, G, ug, B, X, ldx, Y, int(M), N, U); break;
          case 8: launch_gemv<8>(mb, blocks, st, qw, wp_, sc, zp, G, ug, B, X, ldx, Y, int(M), N, U); break;
          default: fail(ErrorKind::internal, "weights.gptq (CUDA): unsupported bit width " + std::to_string(lay_.bits));
        }
        GPTQ_CUDA_LAUNCHED("gemv_kernel");
        return;
      }
      // Large M: Wᵀ in f16 (bf16 where |W| could pass the f16 range), stored row order, then the
      // backend's GEMM.
      const bool f16 = w_fits_f16();
      if (f16) dequant<__half>(st);
      else dequant<__nv_bfloat16>(st);
      TensorView xv(const_cast<float*>(X), DType::f32, {M, Kp}, MemSpace::device);
      TensorView wv(scratch_->wt.data(), f16 ? DType::f16 : DType::bf16, {N, Kp}, MemSpace::device);
      TensorView bv(bias.data(), DType::f32, {N}, MemSpace::device);
      check(dev_.ops().matmul(y, xv, wv, bias.empty() ? nullptr : &bv));
    }
  }

 public:
  // Called once all arrays are uploaded in the checkpoint's layout: transposes them to the kernels'
  // column-major layout (see the device code), one array at a time.
  void on_uploaded() override {
    DeviceGuard dg(dev_.info().index);
    cudaStream_t st = static_cast<cudaStream_t>(dev_.queue().native_handle());
    check(dev_.queue().wait());  // the uploads are queued on the same stream; be explicit anyway
    if (use_mma_layout()) {
      build_mma_layout(st);
      return;
    }
    const int64_t rows = lay_.words_rows();
    wp_ = (rows + 3) / 4 * 4;
    full_ = unit_words(lay_.bits) == 1 ? lay_.units() / 128 * 128 : 0;
    transpose_on_device(dev_, st, qweight, rows, lay_.N, wp_, full_);
    transpose_on_device(dev_, st, scales, lay_.groups, lay_.N, lay_.groups);
    transpose_on_device(dev_, st, zeros, lay_.groups, lay_.N, lay_.groups);
  }

 private:
  // The tensor-core layout applies to 4 bits, Kp a multiple of 64 and every 16-row k-tile inside
  // one group; tile_scale_ is set when a 64-row chunk may hold two groups.
  // Whether every dequantized weight s·(q − z) fits f16 (65504 at most): the f16 paths (the
  // dequantize + GEMM one, gemm_tc_kernel) need it; bf16 serves the dequantize path otherwise.
  bool w_fits_f16() const { return lay_.w_max < 65504.0; }

  bool use_mma_layout() {
    if (lay_.bits != 4 || lay_.Kp % 64 != 0 || lay_.Kp == 0 || lay_.N == 0) return false;
    if (lay_.Kp > 65536) return false;  // the kernel's group table (≤ 16 KB of shared memory)
    const std::vector<int32_t> ug = unit_group.to_host();  // one group per 8-row unit
    bool chunk_uniform = true;
    for (size_t u = 0; u < ug.size(); u += 2) {
      if (ug[u] != ug[u + 1]) return false;  // a k-tile of 16 rows spans two groups
      if (u % 8 != 0 && ug[u] != ug[u - u % 8]) chunk_uniform = false;
    }
    tile_scale_ = !chunk_uniform;
    return true;
  }

  void build_mma_layout(cudaStream_t st) {
    const int64_t N = lay_.N, G = lay_.groups, KC = lay_.Kp / 64;
    ntp_ = (N + 15) / 16;
    const int threads = 256;
    Buffer<uint32_t> qm(dev_, size_t(ntp_ * KC * 128), MemCategory::weights);
    const int64_t qm_total = ntp_ * KC * 128;
    build_mma_kernel<<<unsigned(std::min<int64_t>((qm_total + threads - 1) / threads, 1 << 20)), threads, 0, st>>>(
        qweight.data(), qm.data(), N, KC, qm_total);
    GPTQ_CUDA_LAUNCHED("build_mma_kernel");
    sz_ = Buffer<uint2>(dev_, size_t(ntp_ * G * 8), MemCategory::weights);
    const int64_t sz_total = ntp_ * G * 8;
    build_sz_kernel<<<unsigned(std::min<int64_t>((sz_total + threads - 1) / threads, 1 << 20)), threads, 0, st>>>(
        scales.data(), zeros.data(), sz_.data(), N, G, sz_total);
    GPTQ_CUDA_LAUNCHED("build_sz_kernel");
    GPTQ_CUDA_CHECK(cudaStreamSynchronize(st));  // the old arrays are freed below
    qweight = std::move(qm);
    scales = Buffer<uint16_t>();
    zeros = Buffer<uint8_t>();
    mma_ = true;
    if (w_fits_f16())  // else tc_ stays empty: the kernel's A fragments are f16
      tc_ = tile_scale_ ? plan_tc_all<true>(KC) : plan_tc_all<false>(KC);
    if (tc_.ok()) scratch_->reserve_wt(size_t(std::max(lay_.N * lay_.Kp, tc_workspace_halfs(lay_.N, lay_.Kp))));
    g1_ = tile_scale_ ? plan_gemv1<true>(dev_.info().index, sm_count_, ntp_, KC, G)
                      : plan_gemv1<false>(dev_.info().index, sm_count_, ntp_, KC, G);
  }

  template <class T>
  void dequant(cudaStream_t st) {
    T* wt = reinterpret_cast<T*>(scratch_->wt.data());
    const int64_t N = lay_.N, U = lay_.units(), G = lay_.groups;
    const int threads = 256;
    if (mma_) {
      const int64_t total = ntp_ * (lay_.Kp / 64) * 128;
      dequant_mma_kernel<T><<<unsigned(std::min<int64_t>((total + threads - 1) / threads, 1 << 20)), threads, 0, st>>>(
          qweight.data(), sz_.data(), unit_group.data(), wt, N, lay_.Kp / 64, G, lay_.Kp, total);
      GPTQ_CUDA_LAUNCHED("dequant_mma_kernel");
      return;
    }
    const unsigned blocks = unsigned(std::min<int64_t>((N * U + threads - 1) / threads, 1 << 20));
    const auto* qw = qweight.data();
    const auto* sc = scales.data();
    const auto* zp = zeros.data();
    const auto* ug = unit_group.data();
    switch (lay_.bits) {
      case 2: dequant_kernel<2, T><<<blocks, threads, 0, st>>>(qw, wp_, sc, zp, G, ug, wt, N, U, lay_.Kp, full_); break;
      case 3: dequant_kernel<3, T><<<blocks, threads, 0, st>>>(qw, wp_, sc, zp, G, ug, wt, N, U, lay_.Kp, full_); break;
      case 4: dequant_kernel<4, T><<<blocks, threads, 0, st>>>(qw, wp_, sc, zp, G, ug, wt, N, U, lay_.Kp, full_); break;
      case 8: dequant_kernel<8, T><<<blocks, threads, 0, st>>>(qw, wp_, sc, zp, G, ug, wt, N, U, lay_.Kp, full_); break;
      default: fail(ErrorKind::internal, "weights.gptq (CUDA): unsupported bit width " + std::to_string(lay_.bits));
    }
    GPTQ_CUDA_LAUNCHED("dequant_kernel");
  }

  bool mma_ = false;         // qweight holds the tensor-core layout qm, sz_ its scales and zeros
  bool tile_scale_ = false;  // (mma_) the group may change inside a 64-row chunk
  int64_t ntp_ = 0;          // (mma_) column tiles of 16
  Buffer<uint2> sz_;         // (mma_) [ntp_, groups, 8]
  G1Plan g1_;                // (mma_) the batch-1 kernel's launch
  TcPlan tc_;                // (mma_) gemm_tc_kernel's blocks per SM (9..64 rows); empty: not taken
  int sm_count_ = 1;
  int64_t wp_ = 0;    // row stride of the transposed qweight, in words
  int64_t full_ = 0;  // words of each column in interleaved 128-word blocks
  std::shared_ptr<CudaScratch> scratch_;
};

}  // namespace

std::unique_ptr<GptqLinearBase> make_cuda_linear(Device& dev, const Layout& lay,
                                                 std::shared_ptr<BackendScratch>& scratch) {
  if (dev.info().backend != BackendKind::cuda)
    fail(ErrorKind::internal, "weights.gptq: make_cuda_linear on a non-CUDA device");
  if (!scratch) scratch = std::make_shared<CudaScratch>(dev);
  auto cs = std::dynamic_pointer_cast<CudaScratch>(scratch);
  if (!cs || &cs->dev != &dev)
    fail(ErrorKind::internal, "weights.gptq: one WeightFormat used with two devices (create one per device)");
  return std::make_unique<CudaLinear>(dev, lay, std::move(cs));
}

}  // namespace kvrun::gptq
