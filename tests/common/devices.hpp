// Test helpers: the build's plugin folders, the CUDA backend module's folder, cuda:0 when there is
// one, the CPU device, and a registry of the shipped plugins — shared by every suite that needs them.
#pragma once

#include <cstdio>
#include <cstdlib>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "kvrun/cpu/cpu.hpp"
#include "kvrun/registry.hpp"
#include "kvrun/select.hpp"

namespace kvrun::test {

// A ':'-separated list as its non-empty entries.
inline std::vector<std::string> split_dirs(const std::string& list) {
  std::vector<std::string> out;
  std::stringstream ss(list);
  for (std::string d; std::getline(ss, d, ':');)
    if (!d.empty()) out.push_back(d);
  return out;
}

// KVRUN_PLUGIN_PATH's folders, searched before the build's, as kvrun searches them (the first module
// of a name wins): a suite then tests the modules put there — another build's, for a same-machine
// comparison or a negative control — and says so once on stderr.
inline std::vector<std::string> env_plugin_dirs() {
  const char* env = std::getenv("KVRUN_PLUGIN_PATH");
  if (!env || !*env) return {};
  static const bool said = [env] {
    std::fprintf(stderr, "tests: KVRUN_PLUGIN_PATH=%s is searched before this build's modules\n", env);
    return true;
  }();
  (void)said;
  return split_dirs(env);
}

// This build's plugin folders: KVRUN_BUILD_PLUGIN_DIRS (':'-separated, set by tests/meson.build).
inline std::vector<std::string> build_plugin_dirs() { return split_dirs(KVRUN_BUILD_PLUGIN_DIRS); }

// Where the suites load plugins from: KVRUN_PLUGIN_PATH's folders, then this build's.
inline std::vector<std::string> plugin_dirs() {
  std::vector<std::string> out = env_plugin_dirs();
  for (std::string& d : build_plugin_dirs()) out.push_back(std::move(d));
  return out;
}

// Where the CUDA backend module is looked for: KVRUN_PLUGIN_PATH's folders, then the build's.
inline std::vector<std::string> cuda_dirs() {
  std::vector<std::string> out = env_plugin_dirs();
  out.push_back(std::string(KVRUN_BUILD_ROOT) + "/backends/cuda");
  return out;
}

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
