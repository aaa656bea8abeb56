// kvrun — helpers for the CUDA code of plugins (each plugin links its own static CUDA runtime, so
// it must make the caller's device current itself and check every call it makes).
#pragma once

#include <cuda_runtime.h>

#include <cstdlib>
#include <cstring>
#include <string>
#include <utility>

#include "kvrun/error.hpp"

namespace kvrun::cuda_plugin {

// Throws Error(device) "<who> (CUDA): <what>: <error name> (<error string>)" on failure.
inline void check(cudaError_t err, const char* who, const char* what) {
  if (err != cudaSuccess)
    fail(ErrorKind::device, std::string(who) + " (CUDA): " + what + ": " + cudaGetErrorName(err) + " (" +
                                cudaGetErrorString(err) + ")");
}

// Makes `device` current for the launches of one call and restores the previous one.
class DeviceScope {
 public:
  DeviceScope(int device, const char* who) {
    check(cudaGetDevice(&prev_), who, "cudaGetDevice");
    changed_ = prev_ != device;
    if (changed_) check(cudaSetDevice(device), who, "cudaSetDevice");
  }
  ~DeviceScope() {
    if (changed_) (void)cudaSetDevice(prev_);
  }
  DeviceScope(const DeviceScope&) = delete;
  DeviceScope& operator=(const DeviceScope&) = delete;

 private:
  int prev_ = 0;
  bool changed_ = false;
};

// ---- programmatic dependent launch (sm_90+; the device functions are no-ops before) ----
// A kernel launched with launch(pdl = true, ...) may start while the previous kernel of the stream
// still runs: it must call pdl_wait() before it touches memory that an earlier kernel writes or
// reads (pdl_wait returns once every earlier kernel has finished and its writes are visible). It
// calls pdl_trigger() once the next kernel may start its own prologue; the next kernel still waits
// for this one to finish before it reads. Without the launch attribute both are no-ops, so a
// kernel written this way is correct however it is launched.
__device__ __forceinline__ void pdl_wait() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
}
__device__ __forceinline__ void pdl_trigger() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.launch_dependents;" :::);
#endif
}

// Whether kernels on `device` should be launched with programmatic dependent launch: compute
// capability 9.0 or later, and the environment does not set KVRUN_CUDA_PDL=0 (the switch the
// CUDA backend honours too).
inline bool pdl_enabled(int device) {
  int major = 0;
  if (cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device) != cudaSuccess) return false;
  const char* env = std::getenv("KVRUN_CUDA_PDL");
  return major >= 9 && !(env && std::strcmp(env, "0") == 0);
}
// The same for the current device (inside a DeviceScope).
inline bool pdl_enabled() {
  int device = 0;
  return cudaGetDevice(&device) == cudaSuccess && pdl_enabled(device);
}

// Launches kernel k on st, with the programmatic-stream-serialization attribute when pdl is set.
template <class... KArgs, class... Args>
cudaError_t launch(bool pdl, cudaStream_t st, dim3 grid, dim3 block, size_t smem, void (*k)(KArgs...),
                   Args&&... args) {
  cudaLaunchConfig_t cfg = {};
  cfg.gridDim = grid;
  cfg.blockDim = block;
  cfg.dynamicSmemBytes = smem;
  cfg.stream = st;
  cudaLaunchAttribute attr[1];
  attr[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
  attr[0].val.programmaticStreamSerializationAllowed = 1;
  cfg.attrs = attr;
  cfg.numAttrs = pdl ? 1 : 0;
  return cudaLaunchKernelEx(&cfg, k, std::forward<Args>(args)...);
}

}  // namespace kvrun::cuda_plugin
