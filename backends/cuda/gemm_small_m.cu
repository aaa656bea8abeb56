// kvrun CUDA backend — y[M, N] = x[M, K] · w[N, K]ᵀ (+ bias[N]) for bf16 weights and a few rows
// (2 ≤ M ≤ 64: batched decode), on the tensor cores, streaming the weights once.
//
// Why not cuBLAS: for these shapes cuBLAS needs x in bf16 (a conversion kernel per matmul), a
// second kernel for the bias and, for N = 4096, a split-K reduction kernel. Here one kernel reads
// f32 x, rounds it to bf16 on the way into the tensor cores (the same rounding as the cuBLAS path)
// and adds the bias; a split-K reduction kernel runs only when the grid needs K split to fill the
// device. Measured on the H200 (Qwen-7B shape, ms per decode step, this kernel vs cuBLAS, one run
// with 32-token prompts and 16 new tokens; docs/PERFORMANCE.md has a 256-token run): batch 2
// 4.59 vs 4.85, 4: 4.65 vs 4.92, 8: 4.78 vs 4.98, 16: 5.17 vs 5.10, 32: 5.69 vs 5.49, 64: 7.89 vs
// 6.30 — so CudaOps sends it M ≤ 8 by default. At 64 rows mma.sync and the shared-memory operand
// traffic limit it (cuBLAS uses Hopper's wgmma); at 16 rows it streams at 3.4–3.6 TB/s with 11
// warps per SM, stalled mostly on the L2 reads of x (ncu).
//
// Numerics: x rounded to bf16 (round to nearest even), exact bf16 weights, fp32 accumulation in
// mma.sync.m16n8k16 — the semantics of the cuBLAS path. Deterministic (fixed summation order).
//
// Tiling. A block (4 warps) owns 128 weight rows; warp w the 32 rows 32w .. 32w + 31 as two mma A
// tiles (rows = output columns n), x rows as the B operand (8 per n-tile, NT tiles, M ≤ 8·NT).
// K is streamed in chunks of 64. The weights go through a kStages-deep cp.async pipeline in shared
// memory (no registers hold them in flight); x is read one chunk ahead into registers, rounded to
// bf16 once per block and stored in a double-buffered bf16 tile that all four warps share.
// Within a 32-wide half chunk, lane (g, t) takes the 8 consecutive k of [8t, 8t + 8) of its weight
// rows and of its x row: a fixed permutation of k that A and B share, so every operand fragment is
// one 16-byte shared-memory load.
#include <algorithm>
#include <type_traits>

#include "cuda_backend.cuh"
#include "gemm_small_m.cuh"
#include "kernel_common.cuh"

namespace kvrun::cuda {

namespace {

constexpr int kWarps = 4;
constexpr int kThreads = kWarps * 32;
constexpr int kMTiles = 2;                          // 16-row mma tiles per warp
constexpr int kRowsPerBlock = kWarps * 16 * kMTiles;  // weight rows per block
constexpr int kChunk = 64;                          // k per pipeline stage
constexpr int kStages = 3;
constexpr int kMaxSplit = kSmallMGemmMaxSplits;

// Shared memory: kStages weight tiles [128][64] bf16 (16 KB each) and two x tiles [8·NT][64] bf16
// (1 KB per n-tile each). Rows are stored without padding; the 16-byte chunk c (8 bf16) of row r
// sits at position c ^ 4·(r & 1), so the fragment loads of a warp are free of bank conflicts.
template <int NT>
struct Smem {
  static constexpr int kWBytes = kRowsPerBlock * kChunk * 2;
  static constexpr int kXBytes = 8 * NT * kChunk * 2;
  static constexpr int kBytes = kStages * kWBytes + 2 * kXBytes;
};

__device__ __forceinline__ int swz(int r, int c) { return (c ^ ((r & 1) << 2)) << 4; }  // byte offset in a row

// Parameters:
//   y        [M, N] f32            written when gridDim.y == 1
//   partial  [gridDim.y, M, N] f32 written when gridDim.y > 1 (merged by splitk_reduce_kernel)
//   x        [M, K] f32            rows 16-byte aligned (K % 8 == 0, x 16-byte aligned)
//   w        [N, K] bf16           rows 16-byte aligned (w 16-byte aligned)
//   bias     [N] of bias_t or null (only with gridDim.y == 1)
// grid (ceil(N / 128), splits); block z of the split covers chunks [C·z/splits, C·(z+1)/splits),
// C = ceil(K / 64). Launched with programmatic dependent launch where available: the first
// weight stages are requested before x (the previous kernel's output) is read.
template <int NT>
__global__ void __launch_bounds__(kThreads, 3)
    gemm_small_m_kernel(float* __restrict__ y, float* __restrict__ partial, const float* __restrict__ x,
                        const __nv_bfloat16* __restrict__ w, const void* bias, DType bias_t, int M, int N, int K) {
  using S = Smem<NT>;
  extern __shared__ __align__(128) unsigned char smem[];
  unsigned char* const wsm = smem;                         // [kStages][128][64] bf16
  unsigned char* const xsm = smem + kStages * S::kWBytes;  // [2][8·NT][64] bf16
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int g = lane >> 2, t = lane & 3;
  const int n_base = blockIdx.x * kRowsPerBlock;
  const int chunks = (K + kChunk - 1) / kChunk;
  const int c_begin = int(int64_t(chunks) * blockIdx.y / gridDim.y);
  const int c_end = int(int64_t(chunks) * (blockIdx.y + 1) / gridDim.y);
  const int nc = c_end - c_begin;

  // Weights of chunk c into stage `stage`: 128 rows × 8 pieces of 16 bytes, 8 per thread.
  auto load_w = [&](int stage, int c) {
    unsigned char* ws = wsm + stage * S::kWBytes;
    const int k0 = c * kChunk;
#pragma unroll
    for (int i = 0; i < kRowsPerBlock * 8 / kThreads; ++i) {
      const int piece = threadIdx.x + i * kThreads;
      const int r = piece >> 3, ch = piece & 7;
      const int n = n_base + r, k = k0 + ch * 8;
      const bool ok = n < N && k < K;
      cp_async_16(ws + r * (kChunk * 2) + swz(r, ch), ok ? w + int64_t(n) * K + k : w, ok);
    }
  };
  // x of chunk c: 8·NT rows × 16 float4, NT per thread (zero past M and K), read one chunk ahead
  // of its use into registers (xr holds chunk i + 1 during iteration i). ncu (M = 16) shows 43 %
  // of the warp cycles stalled on these L2 reads; reading two chunks ahead was measured no faster.
  float4 xr[NT];
  auto load_x = [&](float4 (&dst)[NT], int c) {
    const int k0 = c * kChunk;
#pragma unroll
    for (int i = 0; i < NT; ++i) {
      const int piece = threadIdx.x + i * kThreads;
      const int r = piece >> 4, k = k0 + (piece & 15) * 4;
      dst[i] = r < M && k < K ? __ldg(reinterpret_cast<const float4*>(x + int64_t(r) * K + k))
                              : make_float4(0.f, 0.f, 0.f, 0.f);
    }
  };
  // ... rounded to bf16 into x tile `buf` (8 bytes per float4: half of a 16-byte chunk).
  auto store_x = [&](const float4 (&src)[NT], int buf) {
    unsigned char* xs = xsm + buf * S::kXBytes;
#pragma unroll
    for (int i = 0; i < NT; ++i) {
      const int piece = threadIdx.x + i * kThreads;
      const int r = piece >> 4, p = piece & 15;
      *reinterpret_cast<uint2*>(xs + r * (kChunk * 2) + swz(r, p >> 1) + (p & 1) * 8) =
          make_uint2(pack_bf16x2(src[i].x, src[i].y), pack_bf16x2(src[i].z, src[i].w));
    }
  };

  // Prologue: weights of the first kStages − 1 stages, then (after the previous kernel) x.
#pragma unroll
  for (int s = 0; s < kStages - 1; ++s) {
    if (s < nc) load_w(s, c_begin + s);
    cp_async_commit();
  }
  pdl_wait();
  if (nc > 0) {
    load_x(xr, c_begin);
    store_x(xr, 0);
  }
  if (nc > 1) load_x(xr, c_begin + 1);

  float acc[kMTiles][NT][4];
#pragma unroll
  for (int mt = 0; mt < kMTiles; ++mt)
#pragma unroll
    for (int j = 0; j < NT; ++j)
#pragma unroll
      for (int r = 0; r < 4; ++r) acc[mt][j][r] = 0.f;

  for (int i = 0; i < nc; ++i) {
    cp_async_wait<kStages - 2>();
    __syncthreads();  // weight stage i and x tile i & 1 are complete; stage (i − 1) % kStages is free
    if (i + kStages - 1 < nc) load_w((i + kStages - 1) % kStages, c_begin + i + kStages - 1);
    cp_async_commit();
    const unsigned char* ws = wsm + (i % kStages) * S::kWBytes;
    const unsigned char* xs = xsm + (i & 1) * S::kXBytes;
#pragma unroll
    for (int h = 0; h < 2; ++h) {  // 32-wide halves of the chunk: k [32h + 8t, +8) per lane
      const int ch = 4 * h + t;
      uint4 a[kMTiles][2];
#pragma unroll
      for (int mt = 0; mt < kMTiles; ++mt)
#pragma unroll
        for (int e = 0; e < 2; ++e) {
          const int r = warp * 32 + mt * 16 + g + 8 * e;
          a[mt][e] = *reinterpret_cast<const uint4*>(ws + r * (kChunk * 2) + swz(r, ch));
        }
#pragma unroll
      for (int j = 0; j < NT; ++j) {
        const int r = 8 * j + g;
        const uint4 b = *reinterpret_cast<const uint4*>(xs + r * (kChunk * 2) + swz(r, ch));
#pragma unroll
        for (int mt = 0; mt < kMTiles; ++mt) {
          // step 0: k 32h + 8t + 0..3, step 1: + 4..7 (A and B permuted alike)
          const uint32_t a0[4] = {a[mt][0].x, a[mt][1].x, a[mt][0].y, a[mt][1].y};
          const uint32_t a1[4] = {a[mt][0].z, a[mt][1].z, a[mt][0].w, a[mt][1].w};
          mma_bf16_16816(acc[mt][j], a0, b.x, b.y);
          mma_bf16_16816(acc[mt][j], a1, b.z, b.w);
        }
      }
    }
    // x of chunk i + 1 (in registers since iteration i − 1) into the other tile, read next
    // iteration; that tile was last read in iteration i − 1, before this iteration's barrier.
    if (i + 1 < nc) {
      store_x(xr, (i + 1) & 1);
      if (i + 2 < nc) load_x(xr, c_begin + i + 2);
    }
  }
  cp_async_wait<0>();
  pdl_trigger();

  // acc[mt][j][0..1]: weight row 32·warp + 16·mt + g, x rows 8j + 2t, + 1; [2..3]: that row + 8.
  const bool split = gridDim.y > 1;
  float* out = split ? partial + int64_t(blockIdx.y) * M * N : y;
#pragma unroll
  for (int mt = 0; mt < kMTiles; ++mt)
#pragma unroll
    for (int j = 0; j < NT; ++j)
#pragma unroll
      for (int r = 0; r < 4; ++r) {
        const int m = 8 * j + 2 * t + (r & 1);
        const int n = n_base + warp * 32 + mt * 16 + g + 8 * (r >> 1);
        if (m < M && n < N) {
          float v = acc[mt][j][r];
          if (!split && bias) v += load_any(bias, bias_t, n);
          out[int64_t(m) * N + n] = v;
        }
      }
}

// y[m, n] = Σ_z partial[z, m, n] (z = 0 .. splits − 1 in order) + bias[n].  Flat over M·N.
//   y [M, N] f32, partial [splits, M, N] f32 (MN = M·N), bias [N] of bias_t or null.
__global__ void splitk_reduce_kernel(float* __restrict__ y, const float* __restrict__ partial, int splits, int64_t MN,
                                     int N, const void* bias, DType bias_t) {
  pdl_trigger();  // the next kernel may launch now: it waits for this one's end before it reads
  pdl_wait();
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < MN; i += int64_t(gridDim.x) * blockDim.x) {
    float s = 0.f;
    for (int z = 0; z < splits; ++z) s += partial[z * MN + i];
    if (bias) s += load_any(bias, bias_t, i % N);
    y[i] = s;
  }
}

// Blocks per SM (once small_m_gemm_prepare has allowed the shared memory), cached per
// instantiation (every device of one process is assumed to be of one architecture).
template <int NT>
int blocks_per_sm() {
  static const int n = [] {
    int b = 0;
    if (cudaOccupancyMaxActiveBlocksPerMultiprocessor(&b, gemm_small_m_kernel<NT>, kThreads, Smem<NT>::kBytes) !=
        cudaSuccess)
      b = 1;
    return std::max(b, 1);
  }();
  return n;
}

template <int NT>
int splits_for(const SmallMGemm& a) {
  const int nb = (a.N + kRowsPerBlock - 1) / kRowsPerBlock;
  const int chunks = (a.K + kChunk - 1) / kChunk;
  const int capacity = a.sm_count * blocks_per_sm<NT>();
  // Split K (doubling) while the grid fills under 60 % of one resident wave, keeping ≥ 4 chunks a
  // part.
  int splits = a.forced_splits;
  if (splits == 0) {
    splits = 1;
    while (splits < kMaxSplit && int64_t(nb) * splits * 5 < int64_t(capacity) * 3 && chunks / (splits * 2) >= 4)
      splits *= 2;
  }
  return std::max(1, std::min(splits, chunks));
}

template <int NT>
void launch(const SmallMGemm& a, int splits, float* partial) {
  const int nb = (a.N + kRowsPerBlock - 1) / kRowsPerBlock;
  KVRUN_CUDA_CHECK(cuda_plugin::launch(a.pdl, a.stream, dim3(unsigned(nb), unsigned(splits)), dim3(kThreads),
                                       size_t(Smem<NT>::kBytes), gemm_small_m_kernel<NT>, a.y, partial, a.x, a.w,
                                       splits > 1 ? nullptr : a.bias, a.bias_t, a.M, a.N, a.K));
  if (splits > 1) {
    const int64_t mn = int64_t(a.M) * a.N;
    launch_maybe_pdl(a.pdl, a.stream, dim3(grid_for(mn, 256)), dim3(256), 0, splitk_reduce_kernel, a.y,
                     static_cast<const float*>(partial), splits, mn, a.N, a.bias, a.bias_t);
  }
}

// f(std::integral_constant<int, NT>) for the n-tile count that covers M rows.
template <class F>
auto with_tiles(int M, F&& f) {
  if (M <= 8) return f(std::integral_constant<int, 1>{});
  if (M <= 16) return f(std::integral_constant<int, 2>{});
  if (M <= 32) return f(std::integral_constant<int, 4>{});
  return f(std::integral_constant<int, 8>{});
}

}  // namespace

void small_m_gemm_prepare() {
  for (int m : {8, 16, 32, 64})
    with_tiles(m, [](auto nt) {
      KVRUN_CUDA_CHECK(cudaFuncSetAttribute(gemm_small_m_kernel<nt.value>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                            Smem<nt.value>::kBytes));
    });
}

bool small_m_gemm_supported(int64_t M, int64_t N, int64_t K, const void* x, const void* w) {
  return M >= 1 && M <= kSmallMGemmMaxRows && N >= 1 && N <= INT32_MAX && K >= 8 && K % 8 == 0 &&
         K <= INT32_MAX && reinterpret_cast<uintptr_t>(x) % 16 == 0 && reinterpret_cast<uintptr_t>(w) % 16 == 0;
}

int small_m_gemm_splits(const SmallMGemm& a) {
  return with_tiles(a.M, [&](auto nt) { return splits_for<nt.value>(a); });
}

void small_m_gemm(const SmallMGemm& a, int splits, float* partial) {
  with_tiles(a.M, [&](auto nt) { launch<nt.value>(a, splits, partial); });
}

}  // namespace kvrun::cuda
