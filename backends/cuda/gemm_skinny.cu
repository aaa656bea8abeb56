// kvrun CUDA backend — y[M, N] (+)= x[M, K] · w[N, K]ᵀ (+ bias[N]) for bf16 weights, bf16 x and a
// batch of decode rows (M ≤ 64), on the tensor cores, streaming the weights once.
//
// Why: at 16–64 rows the decode step's matmuls are bound by the weight bytes, and cuBLAS's kernels
// for these shapes stream them at 2.5–3.8 TB/s (o_proj of Qwen-7B: 2.5; docs/PERFORMANCE.md,
// session 10) against the H200's ~4.3. This kernel is built like the batch-1 GEMV, which streams at
// 4.3 TB/s: every warp loads its own weight rows straight into registers with 16-byte loads (no
// shared-memory staging, no producer warps), one chunk ahead of the tensor cores; only x — small,
// and read by every warp — goes through shared memory.
//
// Tiling. A block (4 warps) owns 128 weight rows (= output columns n); warp w the 32 rows
// 32w .. 32w + 31 as two m16 tiles of mma.sync.m16n8k16 (weights as the A operand), x rows as the B
// operand in NT n8 tiles (M ≤ 8·NT). K goes in chunks of 64: x's chunk [8·NT, 64] bf16 is staged by
// cp.async in a kSkStages-deep ring that the block's warps share; a lane's weights of a chunk are 8
// 16-byte loads (4 rows × 2 halves). Within a 32-wide half chunk, lane (g, t) = (lane / 4, lane % 4)
// takes the 8 consecutive k of [8t, 8t + 8) of its weight rows and of its x row — a permutation of
// k that A and B share (the products are summed over all k either way), so every fragment is one
// 16-byte load: words 0, 1 of it are the first k16 step's slots {2t, 2t+1} and {2t+8, 2t+9},
// words 2, 3 the second step's.
//
// Split-K. When the column blocks would not fill the resident slots of the device, the chunks are
// split into gridDim.y parts (at least 4 chunks each, at most kSkinnyMaxSplits): each part writes its
// fp32 partial result, and the last part of a column block to finish (an atomic counter per column
// block, left at zero again) adds the parts in order z = 0, 1, … — deterministic: the same inputs
// give the same bits, whichever part finishes last.
//
// Numerics: exact bf16 products, fp32 accumulation in the tensor cores, fp32 partial sums — the
// semantics of the cuBLAS path (x is the same bf16 operand). y += (x·wᵀ + bias) when accumulating.
#include <algorithm>

#include "cuda_backend.cuh"
#include "gemm_skinny.cuh"
#include "kernel_common.cuh"

namespace kvrun::cuda {

namespace {

constexpr int kSkWarps = 4;
constexpr int kSkThreads = kSkWarps * 32;
constexpr int kSkRows = kSkWarps * 32;  // weight rows per block
constexpr int kSkChunk = 64;            // k per stage
constexpr int kSkStages = 4;            // stages of the shared-memory ring (weights and x of one chunk each)
constexpr int kSkMinChunks = 4;         // chunks per split part at least
constexpr int kSkWBytes = kSkRows * kSkChunk * 2;  // [128][64] bf16 weights of a stage

template <int NT>
constexpr int skinny_stage_bytes() {
  return kSkWBytes + 8 * NT * kSkChunk * 2;  // weights, then x [8·NT][64] bf16
}

// Byte offset of 16-byte piece q (0..7) of row r in a [rows][64] bf16 tile: rows of 128 bytes, the
// pieces of odd rows swapped by halves, so the 8 lanes of a quarter warp (rows r, r + 1; pieces
// 4h + t) hit 8 distinct bank groups.
__device__ __forceinline__ int skinny_off(int r, int q) { return r * 128 + ((q ^ ((r & 1) << 2)) << 4); }

// Parameters:
//   y         [M, N] f32           written (or added to, accumulate) by the last part of a column block
//   partial   [gridDim.y, M, N] f32  each part's sum (gridDim.y > 1 only)
//   counters  [gridDim.x] u32      parts finished per column block: zero before, zero after
//   x         [M, K] bf16          rows 16-byte aligned (K % 64 == 0)
//   w         [N, K] bf16          rows 16-byte aligned
//   bias      [N] f32 or null
// grid (ceil(N / 128), splits), kSkThreads threads, kSkStages · skinny_stage_bytes<NT>() bytes of
// dynamic shared memory. Launched with programmatic dependent launch where available.
template <int NT>
__global__ void __launch_bounds__(kSkThreads, 2)
    skinny_gemm_kernel(float* __restrict__ y, float* __restrict__ partial, unsigned* __restrict__ counters,
                       const __nv_bfloat16* __restrict__ x, const __nv_bfloat16* __restrict__ w,
                       const float* __restrict__ bias, int M, int N, int K, int accumulate) {
  extern __shared__ __align__(128) unsigned char sm[];  // [kSkStages][weights [128][64] | x [8·NT][64]] bf16
  __shared__ unsigned last_part;
  constexpr int kStageBytes = skinny_stage_bytes<NT>();
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int g = lane >> 2, t = lane & 3;
  const int nb = int(blockIdx.x), z = int(blockIdx.y), S = int(gridDim.y);
  const int chunks = K / kSkChunk;
  const int c0 = int(int64_t(chunks) * z / S), c1 = int(int64_t(chunks) * (z + 1) / S);
  const int nc = c1 - c0;
  const int row0 = nb * kSkRows + warp * 32;

  pdl_wait();  // x, y, the counters and the partial buffer belong to earlier kernels too

  // Stage c (of this part) ← chunk c0 + c: the block's 128 weight rows (rows past N zero) and x's
  // 8·NT rows (rows ≥ M zero).
  auto stage = [&](int c) {
    unsigned char* dst = sm + (c % kSkStages) * kStageBytes;
    const int64_t k0 = int64_t(c0 + c) * kSkChunk;
#pragma unroll
    for (int p = threadIdx.x; p < kSkRows * 8; p += kSkThreads) {
      const int r = p >> 3, q = p & 7, n = nb * kSkRows + r;
      const bool ok = n < N;
      cp_async_16(dst + skinny_off(r, q), w + int64_t(ok ? n : 0) * K + k0 + 8 * q, ok);
    }
#pragma unroll
    for (int p = threadIdx.x; p < 8 * NT * 8; p += kSkThreads) {
      const int r = p >> 3, q = p & 7;
      const bool ok = r < M;
      cp_async_16(dst + kSkWBytes + skinny_off(r, q), x + int64_t(ok ? r : 0) * K + k0 + 8 * q, ok);
    }
  };
#pragma unroll
  for (int c = 0; c < kSkStages - 1; ++c) {
    if (c < nc) stage(c);
    cp_async_commit();
  }

  float acc[2][NT][4];
#pragma unroll
  for (int mt = 0; mt < 2; ++mt)
#pragma unroll
    for (int j = 0; j < NT; ++j)
#pragma unroll
      for (int e = 0; e < 4; ++e) acc[mt][j][e] = 0.f;

  for (int c = 0; c < nc; ++c) {
    cp_async_wait<kSkStages - 2>();  // this thread's copies of chunk c are done …
    __syncthreads();                 // … and everyone's; stage (c − 1) % kSkStages is free again
    if (c + kSkStages - 1 < nc) stage(c + kSkStages - 1);
    cp_async_commit();
    const unsigned char* st = sm + (c % kSkStages) * kStageBytes;
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      uint32_t a[2][2][4];  // [m tile][k16 step][fragment]
#pragma unroll
      for (int mt = 0; mt < 2; ++mt) {
        const int r = warp * 32 + 16 * mt + g;
        const uint4 lo = *reinterpret_cast<const uint4*>(st + skinny_off(r, 4 * h + t));      // row g
        const uint4 hi = *reinterpret_cast<const uint4*>(st + skinny_off(r + 8, 4 * h + t));  // row g + 8
        a[mt][0][0] = lo.x, a[mt][0][1] = hi.x, a[mt][0][2] = lo.y, a[mt][0][3] = hi.y;
        a[mt][1][0] = lo.z, a[mt][1][1] = hi.z, a[mt][1][2] = lo.w, a[mt][1][3] = hi.w;
      }
#pragma unroll
      for (int j = 0; j < NT; ++j) {
        const uint4 b = *reinterpret_cast<const uint4*>(st + kSkWBytes + skinny_off(8 * j + g, 4 * h + t));
#pragma unroll
        for (int mt = 0; mt < 2; ++mt) {
          mma_bf16_16816(acc[mt][j], a[mt][0], b.x, b.y);
          mma_bf16_16816(acc[mt][j], a[mt][1], b.z, b.w);
        }
      }
    }
  }
  pdl_trigger();  // the next kernel may start its prologue (it waits for this one before it reads)

  // acc[mt][j][e]: output column n = row0 + 16·mt + g + 8·(e / 2), row m = 8·j + 2·t + e % 2.
  if (S == 1) {
#pragma unroll
    for (int mt = 0; mt < 2; ++mt)
#pragma unroll
      for (int j = 0; j < NT; ++j)
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          const int n = row0 + 16 * mt + g + 8 * (e >> 1), m = 8 * j + 2 * t + (e & 1);
          if (n < N && m < M) {
            const float v = acc[mt][j][e] + (bias ? bias[n] : 0.f);
            float* p = y + int64_t(m) * N + n;
            *p = accumulate ? *p + v : v;
          }
        }
    return;
  }
  float* part = partial + int64_t(z) * M * N;
#pragma unroll
  for (int mt = 0; mt < 2; ++mt)
#pragma unroll
    for (int j = 0; j < NT; ++j)
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int n = row0 + 16 * mt + g + 8 * (e >> 1), m = 8 * j + 2 * t + (e & 1);
        if (n < N && m < M) part[int64_t(m) * N + n] = acc[mt][j][e];
      }
  __threadfence();  // this part's sums visible device-wide before it counts itself done
  __syncthreads();
  if (threadIdx.x == 0) last_part = atomicAdd(&counters[nb], 1u) == unsigned(S - 1);
  __syncthreads();
  if (!last_part) return;
  __threadfence();
  // The sum of the parts, 4 columns per thread (N % 4 == 0: float4 rows; else one column at a
  // time), four outputs' loads of every part in flight at once: the tail of the kernel is this
  // block's L2 round trips, so they go in few rounds.
  const int ncol = min(kSkRows, N - nb * kSkRows);
  if ((N & 3) == 0) {
    const int q4 = ncol / 4, total = M * q4;
    for (int i0 = threadIdx.x; i0 < total; i0 += 4 * kSkThreads) {
      float4 sum[4];
#pragma unroll
      for (int u = 0; u < 4; ++u) sum[u] = make_float4(0.f, 0.f, 0.f, 0.f);
#pragma unroll
      for (int zz = 0; zz < kSkinnyMaxSplits; ++zz) {
        if (zz >= S) break;
#pragma unroll
        for (int u = 0; u < 4; ++u) {
          const int i = i0 + u * kSkThreads;
          if (i < total) {
            const int m = i / q4, n = nb * kSkRows + 4 * (i % q4);
            const float4 v = __ldcg(reinterpret_cast<const float4*>(partial + (int64_t(zz) * M + m) * N + n));
            sum[u].x += v.x, sum[u].y += v.y, sum[u].z += v.z, sum[u].w += v.w;
          }
        }
      }
#pragma unroll
      for (int u = 0; u < 4; ++u) {
        const int i = i0 + u * kSkThreads;
        if (i >= total) continue;
        const int m = i / q4, n = nb * kSkRows + 4 * (i % q4);
        float4 r = sum[u];
        if (bias) r.x += bias[n], r.y += bias[n + 1], r.z += bias[n + 2], r.w += bias[n + 3];
        float4* p = reinterpret_cast<float4*>(y + int64_t(m) * N + n);
        if (accumulate) {
          const float4 o = *p;
          r.x = o.x + r.x, r.y = o.y + r.y, r.z = o.z + r.z, r.w = o.w + r.w;
        }
        *p = r;
      }
    }
  } else {
    for (int idx = threadIdx.x; idx < M * ncol; idx += kSkThreads) {
      const int m = idx / ncol, n = nb * kSkRows + idx % ncol;
      float s = 0.f;
      for (int zz = 0; zz < S; ++zz) s += __ldcg(partial + (int64_t(zz) * M + m) * N + n);  // L2: other blocks wrote it
      const float v = s + (bias ? bias[n] : 0.f);
      float* p = y + int64_t(m) * N + n;
      *p = accumulate ? *p + v : v;
    }
  }
  if (threadIdx.x == 0) counters[nb] = 0u;  // ready for the next launch
}

int skinny_tiles(int M) { return M <= 16 ? 2 : M <= 32 ? 4 : 8; }

template <int NT>
size_t skinny_smem_bytes() {
  return size_t(kSkStages) * skinny_stage_bytes<NT>();
}

// Allows the kernel its dynamic shared memory (> 48 KB needs the opt-in), once per process.
template <int NT>
void skinny_prepare() {
  static const bool opted = cudaFuncSetAttribute(skinny_gemm_kernel<NT>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                                 int(skinny_smem_bytes<NT>())) == cudaSuccess;
  if (!opted) throw Error(ErrorKind::device, "cuda skinny GEMM: cannot give the kernel its shared memory");
}

// Blocks of skinny_gemm_kernel<NT> resident on one SM, asked once per process.
template <int NT>
int skinny_resident() {
  skinny_prepare<NT>();
  static const int n = [] {
    int b = 0;
    if (cudaOccupancyMaxActiveBlocksPerMultiprocessor(&b, skinny_gemm_kernel<NT>, kSkThreads,
                                                      skinny_smem_bytes<NT>()) != cudaSuccess)
      b = 2;
    return std::max(b, 1);
  }();
  return n;
}

template <int NT>
void launch_skinny(const SkinnyGemm& a, int splits, float* partial, unsigned* counters) {
  skinny_prepare<NT>();
  const unsigned nblk = unsigned((a.N + kSkRows - 1) / kSkRows);
  launch_maybe_pdl(a.pdl, a.stream, dim3(nblk, unsigned(splits)), dim3(kSkThreads), skinny_smem_bytes<NT>(),
                   skinny_gemm_kernel<NT>, a.y, partial, counters, a.x, a.w, a.bias, a.M, a.N, a.K,
                   int(a.accumulate));
}

}  // namespace

bool skinny_gemm_supported(int64_t M, int64_t N, int64_t K, const void* x, const void* w) {
  return M >= 1 && M <= kSkinnyMaxRows && K > 0 && K % kSkChunk == 0 && K <= INT32_MAX && N >= 1 &&
         N <= int64_t(kSkRows) * kSkinnyMaxNBlocks && (reinterpret_cast<uintptr_t>(x) & 15u) == 0 &&
         (reinterpret_cast<uintptr_t>(w) & 15u) == 0;
}

// KVRUN_CUDA_SKINNY_SPLITS=N forces N parts (1..kSkinnyMaxSplits, still at most one per 4 chunks);
// 0 or unset: automatic. For tuning.
static int forced_skinny_splits() {
  static const int n = cuda_plugin::env_int("KVRUN_CUDA_SKINNY_SPLITS", 0, kSkinnyMaxSplits, 0);
  return n;
}

int skinny_gemm_splits(const SkinnyGemm& a) {
  const int nt = skinny_tiles(a.M);
  const int resident = nt == 2 ? skinny_resident<2>() : nt == 4 ? skinny_resident<4>() : skinny_resident<8>();
  const int64_t slots = int64_t(resident) * std::max(a.sm_count, 1);
  const int64_t nblk = (a.N + kSkRows - 1) / kSkRows;
  const int64_t chunks = a.K / kSkChunk;
  int64_t s = forced_skinny_splits() ? forced_skinny_splits() : (slots + nblk / 2) / nblk;  // fill the slots, rounded
  s = std::min<int64_t>({s, kSkinnyMaxSplits, std::max<int64_t>(chunks / kSkMinChunks, 1)});
  return int(std::max<int64_t>(s, 1));
}

void skinny_gemm(const SkinnyGemm& a, int splits, float* partial, unsigned* counters) {
  switch (skinny_tiles(a.M)) {
    case 2: launch_skinny<2>(a, splits, partial, counters); break;
    case 4: launch_skinny<4>(a, splits, partial, counters); break;
    default: launch_skinny<8>(a, splits, partial, counters); break;
  }
}

}  // namespace kvrun::cuda
