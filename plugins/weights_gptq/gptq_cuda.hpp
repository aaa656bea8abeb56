// weights.gptq — the CUDA Linear (gptq_cuda.cu; built only when kvrun is built with CUDA).
#pragma once

#include <memory>

#include "gptq.hpp"

namespace kvrun::gptq {

// A Linear whose packed arrays live in the CUDA device's memory. `scratch` is the WeightFormat's
// shared CUDA workspace (created here when null): every Linear of one format runs on the same
// stream, so they share one f16 dequantization buffer and one activation-gather buffer.
std::unique_ptr<GptqLinearBase> make_cuda_linear(Device& dev, const Layout& lay,
                                                 std::shared_ptr<BackendScratch>& scratch);

// M at or below this runs the fused dequant-GEMV kernel; above it the layer is dequantized to f16
// and multiplied by the backend's GEMM (cuBLAS, tensor cores).
constexpr int64_t kCudaFusedMaxM = 8;
// 4-bit Linears in the tensor-core layout multiply up to this many rows with the fused kernel
// (the dequantized tile is reused for every 8 rows of x) where gemm_tc_kernel does not take them
// (17..64 rows since session 20, 9..64 since session 21, unless KVRUN_GPTQ_TC_GEMM=0; so by
// default this kernel runs 2..8 rows). Measured on the H200 (Qwen-7B
// shape): at 16 / 32 / 64 rows 6.9 / 10.6 / 20.0 ms per step against 14.4 / 14.8 / 15.8 for
// dequantize + cuBLAS, so 32. KVRUN_GPTQ_MMA_MAX_ROWS overrides.
constexpr int64_t kCudaMmaMaxM = 32;

}  // namespace kvrun::gptq
