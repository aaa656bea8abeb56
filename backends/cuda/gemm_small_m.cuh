// kvrun CUDA backend — the tensor-core GEMM for bf16 weights and a few rows (gemm_small_m.cu).
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

#include "kvrun/dtype.hpp"

namespace kvrun::cuda {

// Rows the kernel handles at most (8 per n-tile, 8 tiles), and parts K may be split into.
constexpr int kSmallMGemmMaxRows = 64;
constexpr int kSmallMGemmMaxSplits = 16;

// y[M, N] = x[M, K] · w[N, K]ᵀ (+ bias[N]); y, x f32, w bf16, all in device memory.
struct SmallMGemm {
  float* y;
  const float* x;
  const __nv_bfloat16* w;
  const void* bias;  // [N] of bias_t, or null
  DType bias_t;
  int M, N, K;
  int sm_count;
  bool pdl;           // launch with programmatic dependent launch
  int forced_splits;  // 0: chosen from the grid; 1..kSmallMGemmMaxSplits: that many K parts
  cudaStream_t stream;
};

// Whether the kernel takes these operands: 1 ≤ M ≤ kSmallMGemmMaxRows, K a multiple of 8, x and w
// 16-byte aligned.
bool small_m_gemm_supported(int64_t M, int64_t N, int64_t K, const void* x, const void* w);

// Allows the kernels their shared memory (> 48 KB needs the opt-in) on the current device; once
// per device, before the first small_m_gemm_splits / small_m_gemm there.
void small_m_gemm_prepare();

// How many parts K is split into for this shape (1: no workspace needed).
int small_m_gemm_splits(const SmallMGemm& a);

// Launches the GEMM (and, for splits > 1, the reduction of the parts). splits: small_m_gemm_splits(a);
// partial: device scratch of splits · M · N floats when splits > 1, else unused.
void small_m_gemm(const SmallMGemm& a, int splits, float* partial);

}  // namespace kvrun::cuda
