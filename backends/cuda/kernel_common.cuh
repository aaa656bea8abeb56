// kvrun CUDA backend — device helpers shared by the kernels: element conversions, the one place
// where a runtime DType becomes a template type, and warp/block reductions.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <string>
#include <utility>

#include "cuda_check.cuh"
#include "kvrun/cuda_plugin.cuh"
#include "kvrun/dtype.hpp"
#include "kvrun/tensor.hpp"

namespace kvrun::cuda {

// ---- element conversions (exact widening; narrowing rounds to nearest even like dtype.hpp) ----
__device__ __forceinline__ float to_f32(float v) { return v; }
__device__ __forceinline__ float to_f32(__half v) { return __half2float(v); }
__device__ __forceinline__ float to_f32(__nv_bfloat16 v) { return __bfloat162float(v); }

template <class T>
__device__ __forceinline__ T from_f32(float v);
template <>
__device__ __forceinline__ float from_f32<float>(float v) { return v; }
template <>
__device__ __forceinline__ __half from_f32<__half>(float v) { return __float2half_rn(v); }
template <>
__device__ __forceinline__ __nv_bfloat16 from_f32<__nv_bfloat16>(float v) { return __float2bfloat16_rn(v); }

// ---- runtime dtype -> template type: the single dispatch point (error for anything else) ----
#define KVRUN_CUDA_DISPATCH_FLOAT(DTYPE, T, WHAT, ...)                                                  \
  switch (DTYPE) {                                                                                   \
    case ::kvrun::DType::f32: {                                                                      \
      using T = float;                                                                               \
      __VA_ARGS__;                                                                                   \
    } break;                                                                                         \
    case ::kvrun::DType::f16: {                                                                      \
      using T = __half;                                                                              \
      __VA_ARGS__;                                                                                   \
    } break;                                                                                         \
    case ::kvrun::DType::bf16: {                                                                     \
      using T = __nv_bfloat16;                                                                       \
      __VA_ARGS__;                                                                                   \
    } break;                                                                                         \
    default:                                                                                         \
      throw ::kvrun::Error(::kvrun::ErrorKind::internal,                                             \
                           std::string(WHAT) + ": dtype " + std::string(::kvrun::dtype_name(DTYPE)) + \
                               " not supported (f32, f16, bf16)");                                  \
  }

inline bool is_float_dtype(DType t) { return t == DType::f32 || t == DType::f16 || t == DType::bf16; }

// ---- reductions ----
__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}
__device__ __forceinline__ double warp_sum(double v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

// Programmatic dependent launch: the helpers plugins use too (kvrun/cuda_plugin.cuh).
using cuda_plugin::pdl_trigger;
using cuda_plugin::pdl_wait;
// Device building blocks shared with the plugins (kvrun/cuda_plugin.cuh).
using cuda_plugin::load_any;
using cuda_plugin::load_stream_16b;
using cuda_plugin::mma_bf16_16816;
using cuda_plugin::pack_bf16x2;
using cuda_plugin::cp_async_16;
using cuda_plugin::cp_async_commit;
using cuda_plugin::cp_async_wait;

// Launches kernel k on st, with programmatic stream serialization when pdl is set (the kernel
// may then start before the previous kernel of the stream ends, so it must call pdl_wait() before
// reading what that kernel writes).
template <class... KArgs, class... Args>
void launch_maybe_pdl(bool pdl, cudaStream_t st, dim3 grid, dim3 block, size_t smem, void (*k)(KArgs...),
                      Args&&... args) {
  KVRUN_CUDA_CHECK(cuda_plugin::launch(pdl, st, grid, block, smem, k, std::forward<Args>(args)...));
}

// Sum over the block (blockDim.x a multiple of 32, ≤ 1024); every thread gets the result.
// `scratch` holds 32 values of T in shared memory.
template <class T>
__device__ __forceinline__ T block_sum(T v, T* scratch) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nwarps = blockDim.x >> 5;
  v = warp_sum(v);
  __syncthreads();  // scratch may still be read from a previous call
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  T r = lane < nwarps ? scratch[lane] : T(0);
  return warp_sum(r);
}

// Grid size for a grid-stride loop over n elements with `threads` per block.
inline unsigned grid_for(int64_t n, int threads, int64_t max_blocks = 65535LL * 8) {
  int64_t b = (n + threads - 1) / threads;
  if (b < 1) b = 1;
  if (b > max_blocks) b = max_blocks;
  return unsigned(b);
}

// Argument checks shared by the ops.
inline void require_device(const TensorView& t, const char* op, const char* what) {
  require(t.space == MemSpace::device && t.data != nullptr,
          std::string("cuda ") + op + ": " + what + " " + t.shape_string() +
              (t.data ? " is not in device memory (TensorView::space must be MemSpace::device)" : " is null"));
}

}  // namespace kvrun::cuda
