// weights.gptq (CUDA) — what gemm_tc_kernel (gptq_cuda.cu, sm_80 and sm_90) and gemm_wg_kernel
// (gptq_wg.cu, sm_90a only) share: the ring's stage layout, the 4-bit dequantization to f16, the
// epilogue's store, shared-memory loads. Internal linkage: each translation unit its own copy.
#pragma once

#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <cstring>

#include "kvrun/cuda_plugin.cuh"

namespace kvrun::gptq {
namespace {

// Entry i of a kernel's group table (shared memory, S entries per 64-row chunk): the group of
// chunk i (S = 1) or of k-tile i (S = 4), read from ug [Kp / 8] (one group per 8-row unit) at the
// entry's first unit.
template <int S, class I>
__device__ __forceinline__ int32_t table_group(const int32_t* __restrict__ ug, I i) {
  return __ldg(ug + 2 * i * (4 / S));
}

// Shared-memory loads at 32-bit shared-space addresses (the multiply loop computes its addresses
// incrementally; through generic pointers the compiler rebuilt each one from the CTA's window).
// volatile: they stay after the cp.async waits and barriers that publish the data.
__device__ __forceinline__ uint32_t lds32(uint32_t a) {
  uint32_t v;
  asm volatile("ld.shared.u32 %0, [%1];" : "=r"(v) : "r"(a));
  return v;
}
__device__ __forceinline__ uint2 lds64(uint32_t a) {
  uint2 v;
  asm volatile("ld.shared.v2.u32 {%0, %1}, [%2];" : "=r"(v.x), "=r"(v.y) : "r"(a));
  return v;
}
__device__ __forceinline__ uint4 lds128(uint32_t a) {
  uint4 v;
  asm volatile("ld.shared.v4.u32 {%0, %1, %2, %3}, [%4];" : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w) : "r"(a));
  return v;
}

constexpr int kTcWarps = 8;   // warps per block
// Ring depth (chunks), kTcStages − 1 in flight. Session 21, call H, batch 16 / 32 / 64: 4 stages
// 4.18–4.21 / 4.67 / 6.78 ms/step, 5 stages 4.23–4.26 / 4.72 / 6.87, 6 stages 4.23–4.24 /
// 4.76–4.77 / 6.96–6.97.
constexpr int kTcStages = 4;
constexpr int kTcMinM = 9;    // rows of x at least: up to 8, gemv_mma_kernel is faster (session 21,
                              // call F: batch 8 3.35 against 4.26 ms/step; 12 and 16: 4.74 / 4.79
                              // against 4.31 / 4.22–4.31)
constexpr int kTcMaxM = 64;   // rows of x at most (NB = 8)
constexpr int kTcMaxParts = 8;

// Column blocks of either kernel's grid for NTp column tiles of 16, `tiles` per warp (kTcWarps ·
// tiles a block).
constexpr int64_t tc_blocks_x(int64_t NTp, int tiles) {
  return (NTp + int64_t(kTcWarps) * tiles - 1) / (int64_t(kTcWarps) * tiles);
}

// Bytes of one ring stage: x fragments, then the warps' codes, then their scale/zero entries
// (TW column tiles per warp).
template <int NB, int S, int TW>
struct TcStage {
  static constexpr int kX = 4 * NB * 32 * 8;           // [4][NB][32] uint2
  static constexpr int kW = kTcWarps * TW * 32 * 16;    // [warps][TW][32] uint4
  static constexpr int kE = kTcWarps * TW * S * 8 * 8;  // [warps][TW][S][8] uint2
  static constexpr int kBytes = kX + kW + kE;
};

// (w & 0x000F000F) | 0x64006400: the f16 pair 1024 + code of nibbles 0 and 4.
__device__ __forceinline__ uint32_t nibbles_f16(uint32_t w) {
  uint32_t r;
  asm("lop3.b32 %0, %1, %2, %3, 0xEA;" : "=r"(r) : "r"(w), "r"(0x000F000Fu), "r"(0x64006400u));
  return r;
}
// (a − b) · s on f16 pairs.
__device__ __forceinline__ uint32_t f16x2_sub_mul(uint32_t a, uint32_t b, uint32_t s) {
  __half2 va, vb, vs;
  memcpy(&va, &a, 4);
  memcpy(&vb, &b, 4);
  memcpy(&vs, &s, 4);
  const __half2 r = __hmul2(__hsub2(va, vb), vs);
  uint32_t u;
  memcpy(&u, &r, 4);
  return u;
}
// The zero and scale pairs (f16x2) of columns g and g + 8 of a column tile from its scale/zero entry
// e (sz layout): zz = 1024 + zero (exact), s = the scale, in both halves.
struct TcZs {
  uint32_t zz0, zz1, s0, s1;
};
__device__ __forceinline__ TcZs tc_zs(uint2 e) {
  return TcZs{(0x6400u | (e.x & 0xffu)) * 0x10001u, (0x6400u | ((e.x >> 16) & 0xffu)) * 0x10001u,
              (e.y & 0xffffu) * 0x10001u, (e.y >> 16) * 0x10001u};
}
// The A fragment (m16n8k16, f16) of one k-tile from this lane's code word w: s · (code − zero) per
// element, one f16 rounding.
__device__ __forceinline__ void tc_dequant(uint32_t (&a)[4], uint32_t w, const TcZs& z) {
  a[0] = f16x2_sub_mul(nibbles_f16(w), z.zz0, z.s0);
  a[1] = f16x2_sub_mul(nibbles_f16(w >> 4), z.zz1, z.s1);
  a[2] = f16x2_sub_mul(nibbles_f16(w >> 8), z.zz0, z.s0);
  a[3] = f16x2_sub_mul(nibbles_f16(w >> 12), z.zz1, z.s1);
}

// A warp's copies of chunk c0 + s into the ring stage at shared-memory address st (St: TcStage)
// in gemm_tc_kernel and gemm_wg_kernel — its TW column tiles nt0 .. nt0 + ntw − 1 (the rest do not
// exist):
//  * tc_issue_codes: each tile's 512 bytes of codes, qm [NTp, KC, 32] uint4;
//  * tc_issue_entries: each tile's S scale/zero entries of 64 bytes, 4 copies each (lane = 4 ·
//    (j · S + i) + quarter), sz [NTp, G, 8] uint2, at the groups grp [chunks · S] names (the part's
//    group table in shared memory).
template <class St, int TW>
__device__ __forceinline__ void tc_issue_codes(uint32_t st, const uint4* __restrict__ qm, int nt0, int ntw, int KC,
                                               int c0, int s, int warp, int lane) {
#pragma unroll
  for (int j = 0; j < TW; ++j)
    if (j < ntw)
      cuda_plugin::cp_async_16(st + unsigned(St::kX + (warp * TW + j) * 512 + lane * 16),
                               qm + (int64_t(nt0 + j) * KC + c0 + s) * 32 + lane);
}
template <class St, int TW, int S>
__device__ __forceinline__ void tc_issue_entries(uint32_t st, const uint2* __restrict__ sz, const int32_t* grp,
                                                 int nt0, int ntw, int G, int s, int warp, int lane) {
  static_assert(4 * S * TW <= 32, "one copy a lane");
  if (lane < 4 * S * TW) {
    const int e = lane >> 2, j = e / S, i = e % S;
    if (j < ntw) {
      const uint2* src = sz + (int64_t(nt0 + j) * G + grp[s * S + i]) * 8 + 2 * (lane & 3);
      cuda_plugin::cp_async_16(st + unsigned(St::kX + St::kW + ((warp * TW + j) * S + i) * 64 + (lane & 3) * 16), src);
    }
  }
}

// The ring's start in gemm_tc_kernel and gemm_wg_kernel: the first P stages' weights (codes, the
// part's group table ug → grp [nch · S], then the scale/zero entries it names: one commit group),
// the PDL wait (x is the previous kernel's output), then each stage's x (one commit group each).
template <int P, int S, class W, class E, class X>
__device__ __forceinline__ void tc_ring_start(const W& issue_w, const E& issue_e, const X& issue_x, int32_t* grp,
                                              const int32_t* __restrict__ ug, int c0, int nch) {
  for (int s = 0; s < P; ++s) issue_w(s);
  for (int i = threadIdx.x; i < nch * S; i += blockDim.x) grp[i] = table_group<S>(ug, c0 * S + i);
  __syncthreads();  // grp
  for (int s = 0; s < P; ++s) issue_e(s);
  cuda_plugin::cp_async_commit();  // group: the first P stages' weights
  cuda_plugin::pdl_wait();
  for (int s = 0; s < P; ++s) {
    issue_x(s);
    cuda_plugin::cp_async_commit();
  }
}
// One stage's x: bytes [c · kX, (c + 1) · kX) of xf to the shared-memory address dst, 16 bytes per
// copy, the block's threads in turn.
template <int kX>
__device__ __forceinline__ void tc_copy_x(uint32_t dst, const void* xf, int64_t c) {
  const unsigned char* src = reinterpret_cast<const unsigned char*>(xf) + c * kX;
  for (int j = threadIdx.x; j < kX / 16; j += blockDim.x) cuda_plugin::cp_async_16(dst + unsigned(16 * j), src + 16 * j);
}

// *yo = sum · rs + b (sum: the scaled row's product, rs: the row scale, b: the bias or 0), or *yo +=
// that with one fp32 addition (accumulate) — the unfused add's rounding. gemm_tc_kernel's epilogue
// (one k part) and tc_reduce_kernel (several) both store through it.
__device__ __forceinline__ void tc_store(float* yo, float sum, float rs, float b, bool accumulate) {
  const float v = sum * rs + b;
  *yo = accumulate ? __fadd_rn(*yo, v) : v;
}

}  // namespace
}  // namespace kvrun::gptq
