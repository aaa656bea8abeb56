// kvrun CUDA backend — the tensor-core GEMM for bf16 weights and a batch of decode rows whose bf16
// operand already exists (gemm_skinny.cu): y[M, N] (+)= x[M, K] · w[N, K]ᵀ (+ bias[N]), M ≤ 64.
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

namespace kvrun::cuda {

constexpr int kSkinnyMaxRows = 64;    // x rows the kernel takes at most
constexpr int kSkinnyMaxSplits = 8;   // parts K may be split into
constexpr int kSkinnyMaxNBlocks = 1024;  // column blocks of 128 (N ≤ 131072): the split counters

struct SkinnyGemm {
  float* y;                  // [M, N] f32; y += … when accumulate
  const __nv_bfloat16* x;    // [M, K] bf16, rows contiguous
  const __nv_bfloat16* w;    // [N, K] bf16
  const float* bias;         // [N] f32 or null
  bool accumulate;
  int M, N, K;
  int sm_count;
  bool pdl;                  // launch with programmatic dependent launch
  cudaStream_t stream;
};

// Whether the kernel takes these operands: 1 ≤ M ≤ kSkinnyMaxRows, K a positive multiple of 64,
// N ≤ 128 · kSkinnyMaxNBlocks, x and w 16-byte aligned.
bool skinny_gemm_supported(int64_t M, int64_t N, int64_t K, const void* x, const void* w);

// How many parts K is split into for this shape (1: no partial results).
int skinny_gemm_splits(const SkinnyGemm& a);

// Launches the GEMM. splits: skinny_gemm_splits(a). partial: device scratch of splits · M · N
// floats when splits > 1 (else unused); counters: kSkinnyMaxNBlocks zeroed u32 in device memory
// that only this kernel uses (each launch leaves them zero again).
void skinny_gemm(const SkinnyGemm& a, int splits, float* partial, unsigned* counters);

}  // namespace kvrun::cuda
