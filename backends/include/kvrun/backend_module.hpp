// kvrun — the entry point of a runtime-loaded backend module (the CUDA backend is one), so the
// kvrun binary itself never links CUDA libraries and starts on machines without them.
#pragma once

#include <cstdint>
#include <vector>

#include "kvrun/device.hpp"

namespace kvrun {

constexpr uint32_t kBackendAbiVersion = 2;  // 2: Queue::copy_d2h_async, wait_for (plugin ABI 6)
#define KVRUN_BACKEND_ENTRY kvrun_backend_v2
#define KVRUN_BACKEND_ENTRY_NAME "kvrun_backend_v2"

struct BackendModuleHeader {
  uint32_t abi_version;  // kBackendAbiVersion
  uint32_t reserved;
  const char* name;      // "cuda"
  // Lists the devices this backend can drive on this machine (may be empty, e.g. no driver:
  // then the Status says why, with kind = device).
  Status (*enumerate)(std::vector<DeviceInfo>* out) noexcept;
  // Opens device `index`; *out is owned by the caller (delete through Device's virtual destructor).
  Status (*create)(int index, Device** out) noexcept;
};

}  // namespace kvrun
