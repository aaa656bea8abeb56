// Stand-alone study of the batched-decode matmul — y[64, N] = x[64, K] · w[N, K]ᵀ, bf16 x and
// weights, fp32 out — on the Qwen-7B shapes, against cuBLASLt (not part of the build; a research
// tool for docs/PERFORMANCE.md). Session 14's skinny GEMM (branch skinny-gemm, section "Session
// 14") ran at half cuBLAS's speed: ncu found 8 warps per SM and no eligible warp on 58–74 % of
// cycles. This tool times variants with more warps per SM and each chunk's fragments loaded before
// its mma's, each against cuBLASLt's heuristic pick, as CUDA-graph replays over weight copies that
// together exceed L2 (every launch streams its weights from DRAM, as in a decode step). Prepared in
// session 14, run in session 15 (docs/bench/session15-c.log): no variant came near cuBLASLt on any
// shape (best against cuBLASLt, µs: q·k·v 39.6 / 29.2, o 16.3 / 11.6, gate·up 71.0 / 49.6, down
// 33.6 / 29.2). Build and run:
//   nvcc -O3 -std=c++20 -gencode arch=compute_90,code=sm_90 -Icore/include -Ibackends/include \
//     tools/skinny_bench.cu -lcublasLt -o skinny_bench && ./skinny_bench
// Output: one line per (shape, variant, split parts): µs per launch (the reduction of the parts
// included), TB/s of weight bytes, and the relative L2 error against cuBLASLt's result.
#include <cublasLt.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <vector>

#include "check.cuh"              // CK, time_graph
#include "kvrun/cuda_plugin.cuh"  // cp_async_16 / _commit / _wait, mma_bf16_16816: as the kernels use them

using kvrun::cuda_plugin::cp_async_16;
using kvrun::cuda_plugin::cp_async_commit;
using kvrun::cuda_plugin::cp_async_wait;
using kvrun::cuda_plugin::mma_bf16_16816;

namespace {

constexpr int kM = 64;      // x rows (the batch)
constexpr int kChunk = 64;  // k per stage

#define CKL(x)                                                                   \
  do {                                                                           \
    cublasStatus_t s_ = (x);                                                     \
    if (s_ != CUBLAS_STATUS_SUCCESS) {                                           \
      std::fprintf(stderr, "%s:%d %s: cublas status %d\n", __FILE__, __LINE__, #x, int(s_)); \
      std::exit(1);                                                              \
    }                                                                            \
  } while (0)

// Byte offset of 16-byte piece q (0..7) of row r in a [rows][64] bf16 tile (128-byte rows, odd
// rows' pieces swapped by halves: a quarter warp reading rows r, r + 1, pieces 4h + t is
// conflict-free).
__device__ __forceinline__ int off(int r, int q) { return r * 128 + ((q ^ ((r & 1) << 2)) << 4); }

// WARPS warps per block; XSPLIT warps share each 32-row weight group, each taking 64 / XSPLIT of x's
// rows; STAGES stages of [weights | x] per block. Block rows BR = 32 · WARPS / XSPLIT.
// grid (ceil(N / BR), parts): part z sums chunks [C·z/parts, C·(z+1)/parts) into partial[z] (parts
// > 1) or y (one part). A warp loads all fragments of a chunk (both 32-k halves) before its mma's.
template <int WARPS, int XSPLIT, int STAGES>
__global__ void __launch_bounds__(WARPS * 32)
    skinny_kernel(float* __restrict__ y,        // [64, N] f32 (one part)
                  float* __restrict__ partial,  // [parts, 64, N] f32 (several)
                  const __nv_bfloat16* __restrict__ x, const __nv_bfloat16* __restrict__ w, int N, int K) {
  constexpr int kThreads = WARPS * 32;
  constexpr int RG = WARPS / XSPLIT;           // 32-row weight groups per block
  constexpr int BR = 32 * RG;                  // weight rows per block
  constexpr int NTW = kM / 8 / XSPLIT;         // x n8 tiles per warp
  constexpr int kWBytes = BR * 128;            // [BR][64] bf16
  constexpr int kStage = kWBytes + kM * 128;   // + x [64][64] bf16
  extern __shared__ __align__(128) unsigned char sm[];
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
  const int rg = warp % RG, xp = warp / RG;
  const int chunks = K / kChunk;
  const int z = blockIdx.y, S = gridDim.y;
  const int c0 = int(int64_t(chunks) * z / S), nc = int(int64_t(chunks) * (z + 1) / S) - c0;
  const int n0 = blockIdx.x * BR;
  auto stage = [&](int c) {
    unsigned char* dst = sm + (c % STAGES) * kStage;
    const int64_t k0 = int64_t(c0 + c) * kChunk;
    for (int p = threadIdx.x; p < BR * 8; p += kThreads) {
      const int r = p >> 3, q = p & 7, n = n0 + r;
      cp_async_16(dst + off(r, q), w + int64_t(n < N ? n : 0) * K + k0 + 8 * q, n < N);
    }
    for (int p = threadIdx.x; p < kM * 8; p += kThreads) {
      const int r = p >> 3, q = p & 7;
      cp_async_16(dst + kWBytes + off(r, q), x + int64_t(r) * K + k0 + 8 * q, true);
    }
  };
#pragma unroll
  for (int c = 0; c < STAGES - 1; ++c) {
    if (c < nc) stage(c);
    cp_async_commit();
  }
  float acc[2][NTW][4] = {};
  for (int c = 0; c < nc; ++c) {
    cp_async_wait<STAGES - 2>();
    __syncthreads();
    if (c + STAGES - 1 < nc) stage(c + STAGES - 1);
    cp_async_commit();
    const unsigned char* st = sm + (c % STAGES) * kStage;
    uint4 av[2][2][2], bv[2][NTW];  // [half][m tile][row g, g + 8], [half][n tile]
#pragma unroll
    for (int h = 0; h < 2; ++h) {
#pragma unroll
      for (int mt = 0; mt < 2; ++mt) {
        const int r = rg * 32 + 16 * mt + g;
        av[h][mt][0] = *reinterpret_cast<const uint4*>(st + off(r, 4 * h + t));
        av[h][mt][1] = *reinterpret_cast<const uint4*>(st + off(r + 8, 4 * h + t));
      }
#pragma unroll
      for (int j = 0; j < NTW; ++j)
        bv[h][j] = *reinterpret_cast<const uint4*>(st + kWBytes + off(8 * (xp * NTW + j) + g, 4 * h + t));
    }
#pragma unroll
    for (int h = 0; h < 2; ++h)
#pragma unroll
      for (int mt = 0; mt < 2; ++mt) {
        const uint4 lo = av[h][mt][0], hi = av[h][mt][1];
        const uint32_t a0[4] = {lo.x, hi.x, lo.y, hi.y}, a1[4] = {lo.z, hi.z, lo.w, hi.w};
#pragma unroll
        for (int j = 0; j < NTW; ++j) {
          mma_bf16_16816(acc[mt][j], a0, bv[h][j].x, bv[h][j].y);
          mma_bf16_16816(acc[mt][j], a1, bv[h][j].z, bv[h][j].w);
        }
      }
  }
  float* out = S == 1 ? y : partial + int64_t(z) * kM * N;
#pragma unroll
  for (int mt = 0; mt < 2; ++mt)
#pragma unroll
    for (int j = 0; j < NTW; ++j)
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int n = n0 + rg * 32 + 16 * mt + g + 8 * (e >> 1), m = 8 * (xp * NTW + j) + 2 * t + (e & 1);
        if (n < N) out[int64_t(m) * N + n] = acc[mt][j][e];
      }
}

// y[64, N] = Σ_z partial[z] (N % 4 == 0), in part order.
__global__ void reduce_kernel(float* __restrict__ y, const float* __restrict__ partial, int N, int S) {
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x, n4 = int64_t(kM) * N / 4;
  if (i >= n4) return;
  float4 s = reinterpret_cast<const float4*>(partial)[i];
  for (int z = 1; z < S; ++z) {
    const float4 v = reinterpret_cast<const float4*>(partial + int64_t(z) * kM * N)[i];
    s.x += v.x, s.y += v.y, s.z += v.z, s.w += v.w;
  }
  reinterpret_cast<float4*>(y)[i] = s;
}

__global__ void fill_kernel(__nv_bfloat16* p, int64_t n, uint32_t seed, float scale) {
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    uint32_t h = uint32_t(i) * 2654435761u ^ seed;
    h ^= h >> 15, h *= 2246822519u, h ^= h >> 13;
    p[i] = __float2bfloat16(scale * (float(h & 0xffffu) / 32768.f - 1.f));
  }
}

struct Variant {
  const char* name;
  void (*kernel)(float*, float*, const __nv_bfloat16*, const __nv_bfloat16*, int, int);
  int warps, rows, smem;
};

template <int WARPS, int XSPLIT, int STAGES>
Variant variant(const char* name) {
  constexpr int BR = 32 * WARPS / XSPLIT;
  const int smem = STAGES * (BR * 128 + kM * 128);
  CK(cudaFuncSetAttribute(skinny_kernel<WARPS, XSPLIT, STAGES>, cudaFuncAttributeMaxDynamicSharedMemorySize, smem));
  return {name, skinny_kernel<WARPS, XSPLIT, STAGES>, WARPS, BR, smem};
}

double rel_l2(const std::vector<float>& a, const std::vector<float>& b) {
  double num = 0, den = 0;
  for (size_t i = 0; i < a.size(); ++i) num += (double(a[i]) - b[i]) * (double(a[i]) - b[i]), den += double(b[i]) * b[i];
  return std::sqrt(num / std::max(den, 1e-30));
}

}  // namespace

int main() {
  struct Shape {
    const char* name;
    int N, K;
  };
  const Shape shapes[] = {{"q|k|v", 12288, 4096}, {"o", 4096, 4096}, {"gate|up", 22016, 4096}, {"down", 4096, 11008}};
  int sms = 0;
  CK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, 0));
  cudaStream_t st;
  CK(cudaStreamCreate(&st));
  const Variant variants[] = {
      variant<4, 1, 4>("4 warps, 128 rows, 4 stages (session 14)"),
      variant<8, 2, 4>("8 warps (x halves), 128 rows, 4 stages"),
      variant<8, 2, 3>("8 warps (x halves), 128 rows, 3 stages"),
      variant<4, 2, 3>("4 warps (x halves), 64 rows, 3 stages"),
      variant<8, 4, 3>("8 warps (x quarters), 64 rows, 3 stages"),
  };
  cublasLtHandle_t lt;
  CKL(cublasLtCreate(&lt));
  const size_t ws_bytes = size_t(32) << 20;
  void* ws;
  CK(cudaMalloc(&ws, ws_bytes));
  for (const Shape& sh : shapes) {
    const int N = sh.N, K = sh.K;
    const size_t wbytes = size_t(N) * K * 2;
    const int copies = int(std::max<size_t>(2, (size_t(400) << 20) / wbytes + 1));  // > L2 together
    __nv_bfloat16 *w, *x;
    float *y, *yref, *partial;
    CK(cudaMalloc(&w, wbytes * copies));
    CK(cudaMalloc(&x, size_t(kM) * K * 2));
    CK(cudaMalloc(&y, size_t(kM) * N * 4));
    CK(cudaMalloc(&yref, size_t(kM) * N * 4));
    CK(cudaMalloc(&partial, size_t(8) * kM * N * 4));
    fill_kernel<<<1024, 256, 0, st>>>(w, int64_t(N) * K * copies, 7u, 1.f / std::sqrt(float(K)));
    fill_kernel<<<256, 256, 0, st>>>(x, int64_t(kM) * K, 11u, 1.f);
    CK(cudaGetLastError());
    // cuBLASLt as kvrun calls it: yᵀ[N, 64] = w[N, K] · xᵀ (column-major views), fp32 accumulation.
    cublasLtMatmulDesc_t desc;
    cublasLtMatrixLayout_t lw, lx, ly;
    const cublasOperation_t ta = CUBLAS_OP_T, tb = CUBLAS_OP_N;
    CKL(cublasLtMatmulDescCreate(&desc, CUBLAS_COMPUTE_32F, CUDA_R_32F));
    CKL(cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof ta));
    CKL(cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof tb));
    CKL(cublasLtMatrixLayoutCreate(&lw, CUDA_R_16BF, uint64_t(K), uint64_t(N), int64_t(K)));
    CKL(cublasLtMatrixLayoutCreate(&lx, CUDA_R_16BF, uint64_t(K), uint64_t(kM), int64_t(K)));
    CKL(cublasLtMatrixLayoutCreate(&ly, CUDA_R_32F, uint64_t(N), uint64_t(kM), int64_t(N)));
    cublasLtMatmulPreference_t pref;
    CKL(cublasLtMatmulPreferenceCreate(&pref));
    CKL(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws_bytes, sizeof ws_bytes));
    cublasLtMatmulHeuristicResult_t res;
    int found = 0;
    CKL(cublasLtMatmulAlgoGetHeuristic(lt, desc, lw, lx, ly, ly, pref, 1, &res, &found));
    if (found < 1) {
      std::fprintf(stderr, "no cuBLASLt algorithm for %s\n", sh.name);
      return 1;
    }
    const float one = 1.f, zero = 0.f;
    auto lt_run = [&](int i, float* out) {
      CKL(cublasLtMatmul(lt, desc, &one, w + size_t(i % copies) * N * K, lw, x, lx, &zero, out, ly, out, ly,
                         &res.algo, ws, ws_bytes, st));
    };
    lt_run(0, yref);
    CK(cudaStreamSynchronize(st));
    std::vector<float> ref(size_t(kM) * N), got(size_t(kM) * N);
    CK(cudaMemcpy(ref.data(), yref, ref.size() * 4, cudaMemcpyDeviceToHost));
    const int reps = 4 * copies;
    const double us_lt = time_graph(st, reps, [&](int i) { lt_run(i, y); });
    std::printf("%-8s N %5d K %5d  cuBLASLt                                   %8.2f us  %5.2f TB/s\n", sh.name, N, K,
                us_lt, wbytes / us_lt / 1e6);
    for (const Variant& v : variants) {
      int per_sm = 0;
      CK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, v.kernel, v.warps * 32, size_t(v.smem)));
      const int nblk = (N + v.rows - 1) / v.rows;
      for (int S : {1, 2, 4, 8}) {
        if (K / kChunk < 2 * S) continue;
        auto run = [&](int i, float* out) {
          v.kernel<<<dim3(unsigned(nblk), unsigned(S)), v.warps * 32, size_t(v.smem), st>>>(
              out, partial, x, w + size_t(i % copies) * N * K, N, K);
          if (S > 1) reduce_kernel<<<(kM * N / 4 + 255) / 256, 256, 0, st>>>(out, partial, N, S);
        };
        run(0, y);
        CK(cudaStreamSynchronize(st));
        CK(cudaGetLastError());
        CK(cudaMemcpy(got.data(), y, got.size() * 4, cudaMemcpyDeviceToHost));
        const double err = rel_l2(got, ref);
        const double us = time_graph(st, reps, [&](int i) { run(i, y); });
        std::printf("%-8s N %5d K %5d  %-42s S %d  %8.2f us  %5.2f TB/s  blocks %4d x %d (%d/SM)  rel L2 %.1e%s\n",
                    sh.name, N, K, v.name, S, us, wbytes / us / 1e6, nblk, S, per_sm, err, err > 1e-3 ? "  WRONG" : "");
      }
    }
    cublasLtMatmulPreferenceDestroy(pref);
    cublasLtMatrixLayoutDestroy(lw);
    cublasLtMatrixLayoutDestroy(lx);
    cublasLtMatrixLayoutDestroy(ly);
    cublasLtMatmulDescDestroy(desc);
    CK(cudaFree(w));
    CK(cudaFree(x));
    CK(cudaFree(y));
    CK(cudaFree(yref));
    CK(cudaFree(partial));
  }
  std::printf("%d SMs\n", sms);
  return 0;
}
