// Test helpers: the build's plugin folders, the CUDA backend module's folder, cuda:0 when there is
// one, the CPU device, and a registry of the shipped plugins — shared by every suite that needs them.
#pragma once

#include <cstdio>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "kvrun/cpu/cpu.hpp"
#include "kvrun/registry.hpp"
#include "kvrun/select.hpp"

namespace kvrun::test {

// KVRUN_BUILD_PLUGIN_DIRS (':'-separated, set by tests/meson.build) as a list.
inline std::vector<std::string> plugin_dirs() {
  std::vector<std::string> out;
  std::stringstream ss(KVRUN_BUILD_PLUGIN_DIRS);
  for (std::string d; std::getline(ss, d, ':');)
    if (!d.empty()) out.push_back(d);
  return out;
}

inline std::vector<std::string> cuda_dirs() { return {std::string(KVRUN_BUILD_ROOT) + "/backends/cuda"}; }

// cuda:0, opened once; null (with the reason on stderr) when the machine has no usable CUDA device.
inline std::shared_ptr<Device> gpu() {
  static std::shared_ptr<Device> dev = [] {
    std::string why;
    if (cuda_devices(cuda_dirs(), &why).empty()) {
      std::fprintf(stderr, "no CUDA device: %s\n", why.c_str());
      return std::shared_ptr<Device>();
    }
    DeviceRequest req;
    req.spec = "cuda:0";
    req.search_dirs = cuda_dirs();
    return open_device(req);
  }();
  return dev;
}

inline std::shared_ptr<Device> cpu_dev() {
  static std::shared_ptr<Device> dev = cpu::make_cpu_device(0);
  return dev;
}

// The shipped plugins of this build, loaded once.
inline const Registry& registry() {
  static Registry reg = [] {
    Registry r;
    r.load_path(plugin_dirs());
    return r;
  }();
  return reg;
}

}  // namespace kvrun::test
