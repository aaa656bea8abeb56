// Stand-alone measurement of how fast one H100/H200 can stream a weight matrix into shared memory
// in the access pattern of a batched-decode GEMM (tiles of rows × 64 k, chunk by chunk), for
// several ways of issuing the loads. No arithmetic: only the bytes' way in. A research tool for
// docs/PERFORMANCE.md (session 9: a GEMM of kvrun's own streamed its weights at 2.4–3.3 TB/s, and
// one block per SM took its tile in at ~34 GB/s); not part of the build. On the GPU machine:
//   nvcc -O3 -std=c++20 -gencode arch=compute_90a,code=sm_90a -Icore/include -Ibackends/include \
//     tools/stream_bench.cu -o stream_bench
//   ./stream_bench
// (cuTensorMapEncodeTiled comes through the runtime's driver entry-point query: no -lcuda.)
//
// Variants (all stream W [12288, 4096] bf16 — the q·k·v weights of Qwen-7B, 100.7 MB — from one of
// 8 copies in turn, so that each launch reads HBM, not L2):
//   ldg     row-contiguous 16-byte loads into registers, 8 warps per block, each warp its own rows
//           (the batch-1 GEMV's pattern): the reference rate
//   warpring  each warp streams its own 16-row × 64-k tiles through a private cp.async ring of RS
//           stages (2 KiB each) in shared memory, no block-wide barrier; B blocks of 8 warps per SM
//   tma     one producer lane per block issues TMA boxes (64 k × R rows, 128-byte swizzle) into an
//           S-stage ring, one consumer thread (or CW whole warps) releases each stage as it lands
//           (mbarriers); C blocks per SM
// Every block (or warp) takes an equal contiguous range of the (tile, chunk) steps (stream-K order).
#include <cuda.h>
#include <cudaTypedefs.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <vector>

#include "check.cuh"                // CK
#include "kvrun/cuda_plugin.cuh"  // cp_async_16 / _commit / _wait: the copies the kernels issue

using kvrun::cuda_plugin::cp_async_16;
using kvrun::cuda_plugin::cp_async_commit;
using kvrun::cuda_plugin::cp_async_wait;

constexpr int kN = 12288, kK = 4096, kCopies = 8;

// ---- ldg: row-contiguous loads, 4 × 16 bytes per lane in flight ----
__global__ void __launch_bounds__(256) ldg_kernel(const uint4* __restrict__ w, int rows_per_warp, uint32_t* sink) {
  const int warp = blockIdx.x * 8 + (threadIdx.x >> 5), lane = threadIdx.x & 31;
  const int vec_per_row = kK / 8;
  uint32_t acc = 0;
  for (int r = warp * rows_per_warp; r < min(kN, (warp + 1) * rows_per_warp); ++r) {
    const uint4* row = w + int64_t(r) * vec_per_row;
    for (int v = lane; v < vec_per_row; v += 128) {
      uint4 q[4];
#pragma unroll
      for (int u = 0; u < 4; ++u) q[u] = __ldcs(row + v + 32 * u);
#pragma unroll
      for (int u = 0; u < 4; ++u) acc ^= q[u].x ^ q[u].w;
    }
  }
  if (acc == 0x12345678u) *sink = acc;  // keeps the loads
}

// ---- warpring: per-warp cp.async rings of 16-row × 64-k tiles ----
template <int RS>
__global__ void __launch_bounds__(256) warpring_kernel(const __nv_bfloat16* __restrict__ w, int64_t steps_total,
                                                     uint32_t* sink) {
  extern __shared__ __align__(16) unsigned char sm[];
  const int wl = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int64_t gw = int64_t(blockIdx.x) * 8 + wl, nw = int64_t(gridDim.x) * 8;
  const int64_t s0 = steps_total * gw / nw, s1 = steps_total * (gw + 1) / nw;
  const int n = int(s1 - s0);
  const int C = kK / 64;
  const uint32_t ring = static_cast<uint32_t>(__cvta_generic_to_shared(sm)) + uint32_t(wl * RS * 2048);
  auto load = [&](int i) {
    const int64_t st = s0 + i;
    const int tile = int(st / C), c = int(st % C);
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      const int p = lane + 32 * j, r = p >> 3, ch = p & 7;  // 16 rows × 8 chunks
      const __nv_bfloat16* src = w + int64_t(tile * 16 + r) * kK + c * 64 + ch * 8;
      const uint32_t dst = ring + uint32_t((i % RS) * 2048 + r * 128 + ((ch ^ (r & 7)) << 4));
      cp_async_16(dst, src);
    }
  };
  for (int i = 0; i < RS - 1; ++i) {
    if (i < n) load(i);
    cp_async_commit();
  }
  uint32_t acc = 0;
  for (int i = 0; i < n; ++i) {
    cp_async_wait<RS - 2>();
    __syncwarp();
    uint32_t v;
    asm volatile("ld.shared.u32 %0, [%1];" : "=r"(v) : "r"(ring + uint32_t((i % RS) * 2048 + lane * 4)));
    acc ^= v;
    __syncwarp();
    if (i + RS - 1 < n) load(i + RS - 1);
    cp_async_commit();
  }
  cp_async_wait<0>();
  if (acc == 0x12345678u) *sink = acc;
}

// ---- tma: one producer lane, S stages of R-row boxes, one consumer warp ----
__device__ __forceinline__ void mbar_wait(uint32_t bar, uint32_t parity) {
  asm volatile(
      "{\n.reg .pred p;\nWAIT:\nmbarrier.try_wait.parity.shared::cta.b64 p, [%0], %1;\n@!p bra WAIT;\n}\n" ::"r"(bar),
      "r"(parity)
      : "memory");
}

// CW = 0: one consumer thread (thread 0) and the producer in thread 32; CW ≥ 1: CW whole consumer
// warps wait on every stage (all their lanes), lane 0 of each releases it (the empty barrier
// counts CW arrivals), and the producer is lane 0 of warp CW — the shape of the session-9 GEMM.
template <int S, int R, int CW = 0>
__global__ void __launch_bounds__(32 * (CW > 0 ? CW + 1 : 2)) tma_kernel(const __grid_constant__ CUtensorMap tw,
                                                                        int64_t steps_total, uint32_t* sink) {
  extern __shared__ __align__(1024) unsigned char sm_tma[];
  const uint32_t base = (static_cast<uint32_t>(__cvta_generic_to_shared(sm_tma)) + 1023u) & ~1023u;
  constexpr int kBox = R * 128;
  constexpr int kProducer = 32 * (CW > 0 ? CW : 1);
  const uint32_t full = base + S * kBox, empty = full + 8 * S;
  const int64_t s0 = steps_total * blockIdx.x / gridDim.x, s1 = steps_total * (blockIdx.x + 1) / gridDim.x;
  const int n = int(s1 - s0);
  const int C = kK / 64;
  if (threadIdx.x == 0) {
    for (int s = 0; s < S; ++s) {
      asm volatile("mbarrier.init.shared::cta.b64 [%0], 1;" ::"r"(full + 8 * s));
      asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;" ::"r"(empty + 8 * s), "r"(CW > 0 ? CW : 1));
    }
    asm volatile("fence.mbarrier_init.release.cluster;" ::: "memory");
  }
  __syncthreads();
  if (threadIdx.x == kProducer) {
    for (int i = 0; i < n; ++i) {
      if (i >= S) mbar_wait(empty + 8 * (i % S), uint32_t((i / S - 1) & 1));
      const int64_t st = s0 + i;
      const int tile = int(st / C), c = int(st % C);
      asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;" ::"r"(full + 8 * (i % S)), "r"(kBox)
                   : "memory");
      asm volatile(
          "cp.async.bulk.tensor.2d.shared::cluster.global.tile.mbarrier::complete_tx::bytes [%0], [%1, {%2, %3}], [%4];" ::"r"(
              base + uint32_t((i % S) * kBox)),
          "l"(&tw), "r"(c * 64), "r"(tile * R), "r"(full + 8 * (i % S))
          : "memory");
    }
  } else if (CW > 0 ? threadIdx.x < kProducer : threadIdx.x == 0) {  // consumers
    uint32_t acc = 0;
    for (int i = 0; i < n; ++i) {
      mbar_wait(full + 8 * (i % S), uint32_t((i / S) & 1));
      uint32_t v;
      asm volatile("ld.shared.u32 %0, [%1];" : "=r"(v) : "r"(base + uint32_t((i % S) * kBox + (threadIdx.x & 31) * 4)));
      acc ^= v;
      if ((threadIdx.x & 31) == 0)
        asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];" ::"r"(empty + 8 * (i % S)) : "memory");
    }
    if (acc == 0x12345678u) *sink = acc;
  }
}

PFN_cuTensorMapEncodeTiled_v12000 encoder() {
  void* p = nullptr;
  cudaDriverEntryPointQueryResult q{};
  CK(cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", &p, 12000, cudaEnableDefault, &q));
  return reinterpret_cast<PFN_cuTensorMapEncodeTiled_v12000>(p);
}

CUtensorMap map_of(const __nv_bfloat16* w, int box_rows) {
  CUtensorMap m{};
  const cuuint64_t dims[2] = {kK, kN}, strides[1] = {cuuint64_t(kK) * 2};
  const cuuint32_t box[2] = {64, cuuint32_t(box_rows)}, es[2] = {1, 1};
  if (encoder()(&m, CU_TENSOR_MAP_DATA_TYPE_BFLOAT16, 2, const_cast<__nv_bfloat16*>(w), dims, strides, box, es,
                CU_TENSOR_MAP_INTERLEAVE_NONE, CU_TENSOR_MAP_SWIZZLE_128B, CU_TENSOR_MAP_L2_PROMOTION_L2_256B,
                CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE) != CUDA_SUCCESS) {
    std::fprintf(stderr, "cuTensorMapEncodeTiled failed\n");
    std::exit(1);
  }
  return m;
}

int main() {
  int sms = 0;
  CK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, 0));
  const size_t bytes = size_t(kN) * kK * 2;
  std::vector<__nv_bfloat16*> w(kCopies);
  for (auto& p : w) {
    CK(cudaMalloc(&p, bytes));
    CK(cudaMemset(p, 1, bytes));
  }
  uint32_t* sink;
  CK(cudaMalloc(&sink, 4));
  cudaEvent_t e0, e1;
  CK(cudaEventCreate(&e0));
  CK(cudaEventCreate(&e1));
  const int reps = 40;
  auto time = [&](const char* name, auto&& launch) {
    for (int i = 0; i < kCopies; ++i) launch(i);  // warm-up
    CK(cudaEventRecord(e0));
    for (int i = 0; i < reps; ++i) launch(i % kCopies);
    CK(cudaEventRecord(e1));
    CK(cudaEventSynchronize(e1));
    CK(cudaGetLastError());
    float ms = 0;
    CK(cudaEventElapsedTime(&ms, e0, e1));
    const double us = 1000.0 * ms / reps;
    std::printf("%-34s %7.1f us  %5.2f TB/s\n", name, us, bytes / (us * 1e-6) / 1e12);
  };
  std::printf("W [%d, %d] bf16 (%.1f MB), %d SMs, back-to-back launches (gaps included)\n", kN, kK, bytes / 1e6, sms);
  char name[64];
  for (int rpw : {4, 8, 16}) {
    const int warps = (kN + rpw - 1) / rpw;
    std::snprintf(name, sizeof name, "ldg rows/warp %d (%d blocks)", rpw, (warps + 7) / 8);
    time(name, [&](int i) { ldg_kernel<<<(warps + 7) / 8, 256>>>(reinterpret_cast<const uint4*>(w[i]), rpw, sink); });
  }
  const int64_t steps16 = int64_t(kN / 16) * (kK / 64);
  auto warpring = [&](auto rs, int blocks_per_sm) {
    constexpr int RS = decltype(rs)::value;
    const int smem = 8 * RS * 2048;
    CK(cudaFuncSetAttribute(warpring_kernel<RS>, cudaFuncAttributeMaxDynamicSharedMemorySize, smem));
    std::snprintf(name, sizeof name, "warpring %d stages x %d blocks/SM", RS, blocks_per_sm);
    time(name, [&](int i) { warpring_kernel<RS><<<sms * blocks_per_sm, 256, smem>>>(w[i], steps16, sink); });
  };
  warpring(std::integral_constant<int, 6>{}, 1);
  warpring(std::integral_constant<int, 6>{}, 2);
  warpring(std::integral_constant<int, 4>{}, 3);
  warpring(std::integral_constant<int, 12>{}, 1);
  auto tma = [&](auto s, auto r, int blocks_per_sm, auto cw) {
    constexpr int S = decltype(s)::value, R = decltype(r)::value, CW = decltype(cw)::value;
    const int smem = S * R * 128 + 16 * S + 1024;
    CK(cudaFuncSetAttribute(tma_kernel<S, R, CW>, cudaFuncAttributeMaxDynamicSharedMemorySize, smem));
    std::vector<CUtensorMap> maps;
    for (auto p : w) maps.push_back(map_of(p, R));
    const int64_t steps = int64_t(kN / R) * (kK / 64);
    std::snprintf(name, sizeof name, "tma %d x %d-row boxes x %d blocks/SM%s", S, R, blocks_per_sm,
                  CW == 4 ? ", 4 consumer warps" : CW == 1 ? ", 1 consumer warp" : "");
    const int threads = 32 * (CW > 0 ? CW + 1 : 2);
    time(name, [&](int i) { tma_kernel<S, R, CW><<<sms * blocks_per_sm, threads, smem>>>(maps[i], steps, sink); });
  };
  using I0 = std::integral_constant<int, 0>;
  tma(std::integral_constant<int, 12>{}, std::integral_constant<int, 128>{}, 1, I0{});
  tma(std::integral_constant<int, 6>{}, std::integral_constant<int, 128>{}, 2, I0{});
  tma(std::integral_constant<int, 3>{}, std::integral_constant<int, 128>{}, 4, I0{});
  tma(std::integral_constant<int, 12>{}, std::integral_constant<int, 64>{}, 2, I0{});
  tma(std::integral_constant<int, 6>{}, std::integral_constant<int, 64>{}, 4, I0{});
  tma(std::integral_constant<int, 5>{}, std::integral_constant<int, 32>{}, 8, I0{});
  // the consumer shape of the session-9 GEMM (whole warps spinning on each stage): does it slow the copies?
  tma(std::integral_constant<int, 12>{}, std::integral_constant<int, 128>{}, 1, std::integral_constant<int, 1>{});
  tma(std::integral_constant<int, 12>{}, std::integral_constant<int, 128>{}, 1, std::integral_constant<int, 4>{});
  tma(std::integral_constant<int, 9>{}, std::integral_constant<int, 128>{}, 1, std::integral_constant<int, 4>{});
  return 0;
}
