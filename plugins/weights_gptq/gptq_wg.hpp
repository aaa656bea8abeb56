// weights.gptq (CUDA): the Hopper form of the 9..64-row kernel (gptq_wg.cu, built for sm_90a only,
// when the build's GPU architectures include 90: KVRUN_GPTQ_WG=1). Host functions; call them with
// the Linear's device current.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

namespace kvrun::gptq::wg {

// gemm_wg_kernel's arguments (shapes as gemm_tc_kernel's; xf in tc_xfrag_kernel<NB, true>'s layout).
struct Args {
  const uint4* qm = nullptr;        // [NTp, KC, 32]
  const uint2* sz = nullptr;        // [NTp, G, 8]
  const int32_t* ug = nullptr;      // [Kp / 8]
  const float* bias = nullptr;      // [N] or null
  const uint32_t* xf = nullptr;     // [KC, 4, 2, NB, 8, 4]
  const float* rowscale = nullptr;  // [M]
  float* y = nullptr;               // [M, N]
  float* part = nullptr;            // [parts, M, N] (parts > 1)
  int M = 0, N = 0, NTp = 0, KC = 0, G = 0;
  bool accumulate = false;
  bool swap_desc = false;  // (tests) the descriptor's two offsets exchanged: must give wrong sums
};

// Blocks of the kernel per SM for a Linear of KC 64-row chunks with 8·nb rows of x (nb 2 or 4..8)
// and tw column tiles per warp (1 or 2) on the current device, after raising its shared-memory limit
// there; 0 where it cannot run (not a compute capability 9.0 device, no sm_90a image, too little
// shared memory).
int plan(bool tile_scale, int nb, int tw, int64_t KC);
// Enqueues the kernel on st: gridDim (tc_blocks_x(NTp, tw), parts) (gptq_tc.cuh).
cudaError_t launch(bool pdl, cudaStream_t st, bool tile_scale, int nb, int tw, int parts, const Args& a);

}  // namespace kvrun::gptq::wg
