// Shared by the CUDA attention plugins (attention.flash, attention.naive); not installed. The merge
// of split-K partial results: a sequence's keys were split into parts z = 0 .. splits − 1, each
// part wrote its unnormalized output O_z with its running max m_z (exp2 domain) and sum l_z.
// Internal linkage (anonymous namespace): each plugin module gets its own copy of the kernel.
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include "kvrun/cuda_plugin.cuh"

#include <cmath>
#include <cstdint>
#include <type_traits>

namespace kvrun {
namespace {

// grid rows (= tokens · heads), blockDim ≥ 1 (D is a good choice): merges the parts of one row in
// order z = 0 .. splits − 1 (deterministic), splits ≤ kMaxSplits.
//   out        [rows, D] O (f32, or __nv_bfloat16: the f32 result rounded to nearest even)
//                               Σ_z 2^(m_z − M) O_z / Σ_z 2^(m_z − M) l_z, M = max over parts with l ≠ 0
//   partial_o  [splits, rows, D] f32
//   partial_ml [splits, rows, 2] f32 (m_z, l_z)
// A part with l = 0 (no keys: an empty split range, or every key masked) gets weight 0 and its m
// and O are never read, so whatever its workspace holds cannot reach the output. A part whose l is
// NaN (a NaN key score: NaN or inf in the cache) takes part, so the NaN reaches the output, as on
// the CPU, instead of a finite result of the other parts.
// The z loops stay rolled (#pragma unroll 1): an earlier version of this kernel with unrolled z
// loops gave wrong results on the H200 for 4 and more parts when built with nvcc 13.0.88 for sm_90
// (the same source with the loops rolled is correct). Do not let them unroll without rerunning the
// CUDA attention tests with 4+ parts.
template <int kMaxSplits, typename O = float>
__global__ void splitk_combine_kernel(O* __restrict__ out, const float* __restrict__ partial_o,
                                      const float* __restrict__ partial_ml, int splits, int64_t rows, int D) {
  __shared__ float w[kMaxSplits];  // weight of each part: 2^(m_z − M), 0 for an empty part
  __shared__ float inv_l;
  cuda_plugin::pdl_trigger();  // the next kernel may launch now: it waits for this one's end before it reads
  cuda_plugin::pdl_wait();  // the parts come from the previous kernel (programmatic dependent launch)
  const int64_t row = blockIdx.x;
  if (threadIdx.x == 0) {
    float M = -INFINITY;
#pragma unroll 1
    for (int z = 0; z < splits; ++z) {
      const float* ml = partial_ml + (int64_t(z) * rows + row) * 2;
      if (ml[1] != 0.f) M = fmaxf(M, ml[0]);
    }
    float L = 0.f;
#pragma unroll 1
    for (int z = 0; z < splits; ++z) {
      const float* ml = partial_ml + (int64_t(z) * rows + row) * 2;
      const float wz = ml[1] != 0.f ? exp2f(ml[0] - M) : 0.f;
      w[z] = wz;
      L += ml[1] * wz;
    }
    inv_l = L != 0.f ? 1.f / L : 0.f;  // L ≥ 1 when any part has keys: the part holding M has l ≥ 1, weight 1
  }
  __syncthreads();
  for (int d = threadIdx.x; d < D; d += blockDim.x) {
    float acc = 0.f;
#pragma unroll 1
    for (int z = 0; z < splits; ++z)
      if (w[z] != 0.f) acc += partial_o[(int64_t(z) * rows + row) * D + d] * w[z];
    if constexpr (std::is_same_v<O, float>) out[row * D + d] = acc * inv_l;
    else out[row * D + d] = __float2bfloat16_rn(acc * inv_l);
  }
}

}  // namespace
}  // namespace kvrun
