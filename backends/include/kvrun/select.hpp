// kvrun — device selection: "cpu", "cuda", "cuda:N", "auto" (prefers a GPU, else CPU with a line
// on stderr). The CUDA backend module is found beside the plugins and loaded only when asked for.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "kvrun/device.hpp"

namespace kvrun {

struct DeviceRequest {
  std::string spec = "auto";            // [backend] device
  int cpu_threads = 0;                  // [backend] threads, 0 = all cores
  size_t memory_limit = 0;              // [backend] memory_limit in bytes, 0 = none
  std::vector<std::string> search_dirs; // where to look for kvrun_backend_cuda.so
};

// Which backend a spec names without opening anything ("auto" → cuda if a CUDA device can be
// opened, decided by probing; use backend_of_spec for config checks that must not touch devices).
BackendKind backend_of_spec(const std::string& spec);  // "auto" → cpu; Error(usage) if unknown

// Opens the device. Error(device) with the reason when a CUDA device was asked for and cannot
// be opened (module missing, no driver, index out of range).
std::shared_ptr<Device> open_device(const DeviceRequest& req);

// Probes the CUDA backend module: devices found, or the reason there are none.
std::vector<DeviceInfo> cuda_devices(const std::vector<std::string>& search_dirs, std::string* why_none);

}  // namespace kvrun
