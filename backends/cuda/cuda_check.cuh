// kvrun CUDA backend — error checking shared by the host (.cpp) and CUDA (.cu) sources.
//
// Every CUDA runtime and cuBLAS call goes through KVRUN_CUDA_CHECK / KVRUN_CUBLAS_CHECK, and every
// kernel launch is followed by KVRUN_CUDA_CHECK_LAUNCH. A failure throws kvrun::Error(device) whose
// message names the call, the CUDA error and where it happened; the Ops/Queue/Device entry points
// turn it into a Status with kvrun::guard, so nothing throws across the module boundary.
#pragma once

#include <cublas_v2.h>
#include <cuda_runtime_api.h>

#include <string>

#include "kvrun/error.hpp"

namespace kvrun::cuda {

[[noreturn]] void throw_cuda_error(cudaError_t err, const char* call, const char* file, int line);
[[noreturn]] void throw_cublas_error(cublasStatus_t st, const char* call, const char* file, int line);
const char* cublas_status_name(cublasStatus_t st) noexcept;

// Raises Error(internal) with `message` when `cond` is false (argument checks of the ops).
inline void require(bool cond, const std::string& message) {
  if (!cond) throw Error(ErrorKind::internal, message);
}

}  // namespace kvrun::cuda

#define KVRUN_CUDA_CHECK(call)                                                   \
  do {                                                                           \
    cudaError_t kvrun_err_ = (call);                                             \
    if (kvrun_err_ != cudaSuccess)                                               \
      ::kvrun::cuda::throw_cuda_error(kvrun_err_, #call, __FILE__, __LINE__);    \
  } while (0)

#define KVRUN_CUBLAS_CHECK(call)                                                 \
  do {                                                                           \
    cublasStatus_t kvrun_st_ = (call);                                           \
    if (kvrun_st_ != CUBLAS_STATUS_SUCCESS)                                      \
      ::kvrun::cuda::throw_cublas_error(kvrun_st_, #call, __FILE__, __LINE__);   \
  } while (0)

// After a <<<...>>> launch: a bad configuration is reported here (execution errors surface at the
// next synchronizing call, which is checked too).
#define KVRUN_CUDA_CHECK_LAUNCH(kernel_name)                                     \
  do {                                                                           \
    cudaError_t kvrun_err_ = cudaGetLastError();                                 \
    if (kvrun_err_ != cudaSuccess)                                               \
      ::kvrun::cuda::throw_cuda_error(kvrun_err_, "launch of " kernel_name, __FILE__, __LINE__); \
  } while (0)
