// kvrun — helpers for the CUDA code of plugins (each plugin links its own static CUDA runtime, so
// it must make the caller's device current itself and check every call it makes).
#pragma once

#include <cuda_runtime_api.h>

#include <string>

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

}  // namespace kvrun::cuda_plugin
