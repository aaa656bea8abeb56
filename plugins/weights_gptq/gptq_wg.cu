// weights.gptq (CUDA, Hopper only): gemm_wg_kernel — gemm_tc_kernel's product (9..64 rows of x
// times a 4-bit Linear in the tensor-core layout) on warpgroup MMA. Built for sm_90a alone (wgmma is
// not in plain sm_90), into its own object; gptq_cuda.cu takes it on a device of compute capability
// 9.0 when this module carries the image (wg::plan says so) and KVRUN_GPTQ_WGMMA is not 0.
//
// What changes against gemm_tc_kernel (session 21's ncu: ~7 instructions per mma.sync, the x
// fragments read by every warp from shared memory, the tensor pipe at a quarter of its rate):
//  * a warpgroup (4 warps, TW column tiles of 16 each: TW · 64 weight columns, TW wgmma M's) issues
//    TW wgmma.m64n{8·NB}k16 per k-tile (TW = 2 by default, KVRUN_GPTQ_WG_TILES; session 23's
//    kernel had one). A — the dequantized codes, s · (q − z) in f16 — comes from
//    registers in the mma.m16n8k16 A layout the warps already build (tc_dequant); B — x, 16 k × 8·NB
//    rows — comes from shared memory through a matrix descriptor, read by the tensor cores once per
//    warpgroup instead of by load instructions in every warp;
//  * x is staged in the descriptor's canonical K-major layout without swizzle (tc_xfrag_kernel's
//    kWg form): per k-tile, core matrices of 8 rows × 8 k (16 bytes a row, 128 contiguous bytes),
//    [k half h][row block b] at (h · NB + b) · 128 — the k order inside a tile is the mma layout's
//    (k-index 8h + 2t + e holds x's column 4t + 2h + e), the one the packed codes use;
//  * the wgmmas are asynchronous: one commit group per k-tile (its TW wgmmas), and before a set of
//    A registers is written again the group that read them is waited for (wait_group 3 with one
//    tile a warp, whose four k-tiles' fragments stay live; wait_group 1 with two, two k-tiles'); the
//    ring has one slot more than gemm_tc_kernel's so a chunk's slot is refilled only once its wgmmas
//    are done (two barriers later);
//  * cp.async writes are generic-proxy writes: each thread fences them to the async proxy
//    (fence.proxy.async) before the barrier that publishes a stage to the wgmmas.
//  * ptxas reports C7513 ("wgmma.mma_async instructions are serialized") for the instances with a
//    scale per 16-row tile (groups below 64 rows): it drains the wgmmas once per chunk. The loop unrolled by two has no drain
//    but ran slower (session 23, call D: 6.54 against 6.17–6.20 ms/step at 64 rows), as did two
//    warpgroups per column tile on alternate chunks (7.08), and each column block's last block
//    adding the k parts instead of tc_reduce_kernel (call C: 9.04 — one block's serial tail).
// Everything else — the k parts and their reduction, the epilogue, the numerics (W rounded to f16
// once, x scaled by a power of two per row and rounded to f16, fp32 accumulation) — is
// gemm_tc_kernel's; the sums can differ from its in the order the tensor cores add products.
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <type_traits>

#include "gptq_tc.cuh"
#include "gptq_wg.hpp"
#include "kvrun/cuda_plugin.cuh"

namespace kvrun::gptq {
namespace {

// Ring slots. With two tiles a warp, 4 and 7 ran as fast as 5 (session 24, call B: 64 rows 5.22–5.27
// and 5.27–5.29 against 5.24 ms/step).
constexpr int kWgStages = 5;
constexpr int kWgAhead = kWgStages - 2;  // chunks in flight while one is multiplied (and one may still be read)

__device__ __forceinline__ void wg_fence() { asm volatile("wgmma.fence.sync.aligned;" ::: "memory"); }
__device__ __forceinline__ void wg_commit() { asm volatile("wgmma.commit_group.sync.aligned;" ::: "memory"); }
template <int N>
__device__ __forceinline__ void wg_wait() {
  asm volatile("wgmma.wait_group.sync.aligned %0;" ::"n"(N) : "memory");
}
// This thread's generic-proxy writes to shared memory (its landed cp.async copies) made visible to
// the async proxy, which the wgmmas read through.
__device__ __forceinline__ void fence_async_shared() { asm volatile("fence.proxy.async.shared::cta;" ::: "memory"); }
// Keeps the compiler from moving accesses of v across the wgmmas in flight.
__device__ __forceinline__ void wg_pin(float& v) { asm volatile("" : "+f"(v)::"memory"); }
// A use of an A fragment once the wgmma that reads it is known complete: the fragment's registers
// stay allocated to it until then (without it ptxas gave every k-tile's fragment the same four
// registers and had to wait for each wgmma before the next fragment could be written).
__device__ __forceinline__ void wg_hold(const uint32_t (&a)[4]) {
  asm volatile("" ::"r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]));
}

// Shared-memory matrix descriptor, no swizzle: start address, leading (k direction) and stride
// (row-block direction) byte offsets between core matrices, each in 16-byte units.
__device__ __forceinline__ uint64_t wg_desc(uint32_t saddr, uint32_t lbo, uint32_t sbo) {
  return uint64_t((saddr & 0x3FFFFu) >> 4) | (uint64_t((lbo >> 4) & 0x3FFFu) << 16) |
         (uint64_t((sbo >> 4) & 0x3FFFu) << 32);
}

// d[64 × 8·NB] += A (registers: this warp's 16 rows × 16 k) · B (descriptor) for the warpgroup.
// d's layout per warp: d[4b + r] = row g + 8·(r >> 1), column 8b + 2t + (r & 1) — the mma.m16n8
// accumulators of gemm_tc_kernel's acc[b][r].
template <int NB>
struct WgMma;
template <>
struct WgMma<2> {  // m64n16k16: 8 accumulators per thread
  static __device__ __forceinline__ void run(float (&d)[8], const uint32_t (&a)[4], uint64_t desc) {
    asm volatile(
        "{\n.reg .pred p;\nsetp.ne.b32 p, 1, 0;\n"
        "wgmma.mma_async.sync.aligned.m64n16k16.f32.f16.f16 {%0, %1, %2, %3, %4, %5, %6, %7}, "
        "{%8, %9, %10, %11}, %12, p, 1, 1, 0;\n}\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(desc));
  }
};

template <>
struct WgMma<4> {  // m64n32k16: 16 accumulators per thread
  static __device__ __forceinline__ void run(float (&d)[16], const uint32_t (&a)[4], uint64_t desc) {
    asm volatile(
        "{\n.reg .pred p;\nsetp.ne.b32 p, 1, 0;\n"
        "wgmma.mma_async.sync.aligned.m64n32k16.f32.f16.f16 {%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15}, "
        "{%16, %17, %18, %19}, %20, p, 1, 1, 0;\n}\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(desc));
  }
};

template <>
struct WgMma<5> {  // m64n40k16: 20 accumulators per thread
  static __device__ __forceinline__ void run(float (&d)[20], const uint32_t (&a)[4], uint64_t desc) {
    asm volatile(
        "{\n.reg .pred p;\nsetp.ne.b32 p, 1, 0;\n"
        "wgmma.mma_async.sync.aligned.m64n40k16.f32.f16.f16 {%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19}, "
        "{%20, %21, %22, %23}, %24, p, 1, 1, 0;\n}\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(desc));
  }
};
template <>
struct WgMma<6> {  // m64n48k16: 24 accumulators per thread
  static __device__ __forceinline__ void run(float (&d)[24], const uint32_t (&a)[4], uint64_t desc) {
    asm volatile(
        "{\n.reg .pred p;\nsetp.ne.b32 p, 1, 0;\n"
        "wgmma.mma_async.sync.aligned.m64n48k16.f32.f16.f16 {%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23}, "
        "{%24, %25, %26, %27}, %28, p, 1, 1, 0;\n}\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(desc));
  }
};
template <>
struct WgMma<7> {  // m64n56k16: 28 accumulators per thread
  static __device__ __forceinline__ void run(float (&d)[28], const uint32_t (&a)[4], uint64_t desc) {
    asm volatile(
        "{\n.reg .pred p;\nsetp.ne.b32 p, 1, 0;\n"
        "wgmma.mma_async.sync.aligned.m64n56k16.f32.f16.f16 {%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27}, "
        "{%28, %29, %30, %31}, %32, p, 1, 1, 0;\n}\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(desc));
  }
};
template <>
struct WgMma<8> {  // m64n64k16: 32 accumulators per thread
  static __device__ __forceinline__ void run(float (&d)[32], const uint32_t (&a)[4], uint64_t desc) {
    asm volatile(
        "{\n.reg .pred p;\nsetp.ne.b32 p, 1, 0;\n"
        "wgmma.mma_async.sync.aligned.m64n64k16.f32.f16.f16 {%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31}, "
        "{%32, %33, %34, %35}, %36, p, 1, 1, 0;\n}\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(desc));
  }
};

//   qm: [NTp, KC, 32] uint4, sz: [NTp, G, 8] uint2, ug: [Kp / 8] group of each 8-row unit,
//   xf: [KC, 4, 2, NB, 8, 4] u32 (tc_xfrag_kernel<NB, true>: chunk, k-tile, k half, row block, row,
//   pair), bias: [N] f32 or null, rowscale: [M] f32; gridDim.y = 1: y [M, N] f32 = x · W + bias (the
//   sums times rowscale; accumulate: y +=); gridDim.y = P > 1: part [P, M, N] f32, part z's sums.
//   Dynamic shared memory: kWgStages · TcStage<NB, S, TW>::kBytes, then the group table [KC · S] int32.
// A block: kTcWarps warps = two warpgroups; warp w has the TW consecutive column tiles
// (blockIdx.x · kTcWarps + w) · TW + j, j < TW, and its warpgroup issues one wgmma per k-tile and j
// (TW · 64 weight columns per warpgroup, all reading the same x stage: with TW = 2 a block's x copy
// and its per-chunk overhead — barrier, waits, address arithmetic — serve twice the weights).
// The A fragments of the last kHold k-tiles stay live for the wgmmas in flight (4 with one tile a
// warp, 2 with two: registers).
// lbo / sbo: the descriptor's offsets (NB · 128 and 128; passed in so a test can swap them).
// Two tiles a warp: 1 block per SM asked of ptxas (141 registers at 64 rows; asked for 2, ptxas
// spills 188 bytes a thread at 128 registers and 64 rows ran 5.80–5.82 against 5.53 ms/step,
// session 24, call C).
template <bool kTileScale, int NB, int TW>
__global__ void __launch_bounds__(kTcWarps * 32, TW == 1 ? 2 : 1)
    gemm_wg_kernel(const uint4* __restrict__ qm, const uint2* __restrict__ sz, const int32_t* __restrict__ ug,
                   const float* __restrict__ bias, const uint32_t* __restrict__ xf, const float* __restrict__ rowscale,
                   float* y, float* __restrict__ part, int M, int N, int NTp, int KC, int G, bool accumulate,
                   uint32_t lbo, uint32_t sbo) {
#if defined(__CUDA_ARCH__) && defined(__CUDA_ARCH_FEAT_SM90_ALL)
  constexpr int S = kTileScale ? 4 : 1;
  static_assert(TW == 1 || TW == 2, "tiles per warp");
  constexpr int kHold = 4 / TW;  // k-tiles whose A fragments stay live (wgmma groups in flight)
  using St = TcStage<NB, S, TW>;
  constexpr int P = kWgAhead;
  extern __shared__ __align__(128) unsigned char wg_smem[];
  int32_t* grp = reinterpret_cast<int32_t*>(wg_smem + kWgStages * St::kBytes);  // [chunks of the part · S]
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int g = lane >> 2, t = lane & 3;
  const int nt0 = (int(blockIdx.x) * kTcWarps + warp) * TW;  // the warp's first column tile
  const int ntw = max(0, min(TW, NTp - nt0));                // its tiles that exist (0..TW)
  const int nz = int(gridDim.y), z = int(blockIdx.y);
  const int c0 = int(int64_t(KC) * z / nz), nch = int(int64_t(KC) * (z + 1) / nz) - c0;
  cuda_plugin::pdl_trigger();

  const uint32_t ring = static_cast<uint32_t>(__cvta_generic_to_shared(wg_smem));
  auto slot = [&](int s) { return ring + unsigned((s % kWgStages) * St::kBytes); };
  auto issue_w = [&](int s) {  // the warp's codes of chunk c0 + s
    if (s < nch) tc_issue_codes<St, TW>(slot(s), qm, nt0, ntw, KC, c0, s, warp, lane);
  };
  auto issue_e = [&](int s) {  // its TW · S scale/zero entries
    if (s < nch) tc_issue_entries<St, TW, S>(slot(s), sz, grp, nt0, ntw, G, s, warp, lane);
  };
  auto issue_x = [&](int s) {  // the block's x of the chunk (NB KiB)
    if (s < nch) tc_copy_x<St::kX>(slot(s), xf, int64_t(c0 + s));
  };
  tc_ring_start<P, S>(issue_w, issue_e, issue_x, grp, ug, c0, nch);

  float acc[TW][4 * NB];
#pragma unroll
  for (int j = 0; j < TW; ++j)
#pragma unroll
    for (int r = 0; r < 4 * NB; ++r) acc[j][r] = 0.f;
  uint32_t a[kHold][TW][4];  // A fragments of the last kHold k-tiles (read by wgmmas in flight)
#pragma unroll
  for (int h = 0; h < kHold; ++h)
#pragma unroll
    for (int j = 0; j < TW; ++j) a[h][j][0] = a[h][j][1] = a[h][j][2] = a[h][j][3] = 0u;
  for (int s = 0; s < nch; ++s) {
    cuda_plugin::cp_async_wait<P - 1>();  // this thread's copies of stage s (and older) landed
    fence_async_shared();
    __syncthreads();  // everyone's; chunk s − 2's wgmmas are done in every warp (waited for below)
    issue_w(s + P);   // into chunk s − 2's slot
    issue_e(s + P);
    issue_x(s + P);
    cuda_plugin::cp_async_commit();
    const uint32_t st = slot(s);
    uint32_t words[TW][4];
    TcZs zs[TW];
#pragma unroll
    for (int j = 0; j < TW; ++j) {
      uint4 q = make_uint4(0u, 0u, 0u, 0u);
      zs[j] = TcZs{0u, 0u, 0u, 0u};
      if (j < ntw) {
        q = lds128(st + unsigned(St::kX + (warp * TW + j) * 512 + lane * 16));
        if constexpr (!kTileScale) zs[j] = tc_zs(lds64(st + unsigned(St::kX + St::kW + (warp * TW + j) * 64 + g * 8)));
      }
      words[j][0] = q.x, words[j][1] = q.y, words[j][2] = q.z, words[j][3] = q.w;
    }
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      if constexpr (kTileScale)
#pragma unroll
        for (int j = 0; j < TW; ++j)
          if (j < ntw) zs[j] = tc_zs(lds64(st + unsigned(St::kX + St::kW + ((warp * TW + j) * S + i) * 64 + g * 8)));
      wg_wait<kHold - 1>();  // the wgmmas that read a[i % kHold] (kHold k-tiles ago) are done
      uint32_t(&ai)[TW][4] = a[i % kHold];
#pragma unroll
      for (int j = 0; j < TW; ++j) {
        wg_hold(ai[j]);
        // The code word passes through an empty volatile asm after the wait, so the compiler cannot
        // compute this k-tile's A fragment earlier, inside an earlier wgmma's pipeline stage (ptxas
        // then serializes the wgmmas).
        uint32_t w = words[j][i];
        asm volatile("" : "+r"(w));
        tc_dequant(ai[j], w, zs[j]);  // (a missing tile's codes and entry are 0: its fragments are 0)
      }
      wg_fence();
#pragma unroll
      for (int j = 0; j < TW; ++j) WgMma<NB>::run(acc[j], ai[j], wg_desc(st + unsigned(i * 2 * NB * 128), lbo, sbo));
      wg_commit();
    }
  }
  wg_wait<0>();
#pragma unroll
  for (int h = 0; h < kHold; ++h)
#pragma unroll
    for (int j = 0; j < TW; ++j) wg_hold(a[h][j]);
#pragma unroll
  for (int j = 0; j < TW; ++j)
#pragma unroll
    for (int r = 0; r < 4 * NB; ++r) wg_pin(acc[j][r]);
  cuda_plugin::cp_async_wait<0>();  // (empty groups at the end)
#pragma unroll
  for (int j = 0; j < TW; ++j) {
    if (j >= ntw) break;
    const int nt = nt0 + j;
#pragma unroll
    for (int b = 0; b < NB; ++b)
#pragma unroll
      for (int r = 0; r < 4; ++r) {
        const int m = 8 * b + 2 * t + (r & 1);
        const int n = nt * 16 + g + 8 * (r >> 1);
        if (m >= M || n >= N) continue;
        if (nz > 1)
          part[(int64_t(z) * M + m) * N + n] = acc[j][4 * b + r];
        else
          tc_store(y + int64_t(m) * N + n, acc[j][4 * b + r], rowscale[m], bias ? bias[n] : 0.f, accumulate);
      }
  }
#else
  __trap();  // built for sm_90a only (gptq_wg.hpp); never launched elsewhere
#endif
}

template <bool kTileScale, int NB, int TW>
size_t wg_smem_bytes(int64_t KC) {
  constexpr int S = kTileScale ? 4 : 1;
  return size_t(kWgStages) * TcStage<NB, S, TW>::kBytes + size_t(KC) * S * sizeof(int32_t);
}

template <bool kTileScale, int NB, int TW>
int wg_plan(int64_t KC) {
  int dev = 0, major = 0, minor = 0;
  if (cudaGetDevice(&dev) != cudaSuccess || cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev) != cudaSuccess ||
      cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, dev) != cudaSuccess) {
    (void)cudaGetLastError();
    return 0;
  }
  if (major != 9 || minor != 0) return 0;  // sm_90a code runs on compute capability 9.0 only
  const size_t smem = wg_smem_bytes<kTileScale, NB, TW>(KC);
  int b = 0;
  if (cudaFuncSetAttribute(gemm_wg_kernel<kTileScale, NB, TW>, cudaFuncAttributeMaxDynamicSharedMemorySize, int(smem)) !=
          cudaSuccess ||
      cudaOccupancyMaxActiveBlocksPerMultiprocessor(&b, gemm_wg_kernel<kTileScale, NB, TW>, kTcWarps * 32, smem) !=
          cudaSuccess) {
    (void)cudaGetLastError();  // no sm_90a image in this module, or too little shared memory: not sticky
    return 0;
  }
  return b;
}

template <bool kTileScale, int NB, int TW>
cudaError_t wg_launch(bool pdl, cudaStream_t st, int parts, const wg::Args& a) {
  const unsigned bx = unsigned(tc_blocks_x(a.NTp, TW));
  uint32_t lbo = NB * 128, sbo = 128;
  if (a.swap_desc) lbo = 128, sbo = NB * 128;
  return cuda_plugin::launch(pdl, st, dim3(bx, unsigned(parts)), dim3(kTcWarps * 32),
                             wg_smem_bytes<kTileScale, NB, TW>(a.KC), gemm_wg_kernel<kTileScale, NB, TW>, a.qm, a.sz,
                             a.ug, a.bias, a.xf, a.rowscale, a.y, a.part, a.M, a.N, a.NTp, a.KC, a.G, a.accumulate, lbo,
                             sbo);
}

// f(integral_constant kTileScale, integral_constant NB, integral_constant TW) for the runtime values,
// or `otherwise` where the kernel has no such instance.
template <class F, class R>
R wg_dispatch(bool tile_scale, int nb, int tw, R otherwise, F&& f) {
  auto by_tw = [&](auto ts, auto nbc) -> R {
    if (tw == 1) return f(ts, nbc, std::integral_constant<int, 1>{});
    if (tw == 2) return f(ts, nbc, std::integral_constant<int, 2>{});
    return otherwise;
  };
  auto by_nb = [&](auto ts) -> R {
    switch (nb) {
      case 2: return by_tw(ts, std::integral_constant<int, 2>{});
      case 4: return by_tw(ts, std::integral_constant<int, 4>{});
      case 5: return by_tw(ts, std::integral_constant<int, 5>{});
      case 6: return by_tw(ts, std::integral_constant<int, 6>{});
      case 7: return by_tw(ts, std::integral_constant<int, 7>{});
      case 8: return by_tw(ts, std::integral_constant<int, 8>{});
      default: return otherwise;
    }
  };
  return tile_scale ? by_nb(std::true_type{}) : by_nb(std::false_type{});
}

}  // namespace

namespace wg {

int plan(bool tile_scale, int nb, int tw, int64_t KC) {
  return wg_dispatch(tile_scale, nb, tw, 0, [&](auto ts, auto nbc, auto twc) {
    return wg_plan<decltype(ts)::value, decltype(nbc)::value, decltype(twc)::value>(KC);
  });
}

cudaError_t launch(bool pdl, cudaStream_t st, bool tile_scale, int nb, int tw, int parts, const Args& a) {
  return wg_dispatch(tile_scale, nb, tw, cudaErrorInvalidValue, [&](auto ts, auto nbc, auto twc) {
    return wg_launch<decltype(ts)::value, decltype(nbc)::value, decltype(twc)::value>(pdl, st, parts, a);
  });
}

}  // namespace wg
}  // namespace kvrun::gptq
