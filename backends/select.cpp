// Device selection. The CUDA backend is a module (kvrun_backend_cuda.so) loaded only when a CUDA
// device is asked for (or probed by "auto"), so kvrun runs on machines without CUDA libraries.
#include "kvrun/select.hpp"

#include <boost/dll/shared_library.hpp>
#include <filesystem>

#include "kvrun/backend_module.hpp"
#include "kvrun/cpu/cpu.hpp"
#include "kvrun/log.hpp"

namespace kvrun {
namespace {

constexpr const char* kCudaModule = "kvrun_backend_cuda.so";

struct CudaModule {
  std::shared_ptr<boost::dll::shared_library> lib;
  const BackendModuleHeader* header = nullptr;
};

// Finds and loads the CUDA backend module; on failure returns an empty module and says why.
CudaModule load_cuda_module(const std::vector<std::string>& dirs, std::string* why) {
  CudaModule m;
  std::string tried;
  for (const std::string& d : dirs) {
    std::filesystem::path p = std::filesystem::path(d) / kCudaModule;
    std::error_code ec;
    if (!std::filesystem::is_regular_file(p, ec)) {
      tried += (tried.empty() ? "" : ", ") + d;
      continue;
    }
    auto lib = std::make_shared<boost::dll::shared_library>();
    try {
      lib->load(p, boost::dll::load_mode::rtld_lazy | boost::dll::load_mode::rtld_local);
    } catch (const std::exception& e) {
      *why = "the CUDA backend '" + p.string() + "' could not be loaded (" + e.what() +
             ") — are the CUDA libraries (libcudart, libcublas) installed?";
      return m;
    }
    if (!lib->has(KVRUN_BACKEND_ENTRY_NAME)) {
      *why = "'" + p.string() + "' has no entry symbol " KVRUN_BACKEND_ENTRY_NAME;
      return m;
    }
    auto entry = lib->get<const BackendModuleHeader*() noexcept>(KVRUN_BACKEND_ENTRY_NAME);
    const BackendModuleHeader* h = entry();
    if (!h || h->abi_version != kBackendAbiVersion) {
      *why = "'" + p.string() + "' was built for backend ABI " + std::to_string(h ? h->abi_version : 0) +
             ", this kvrun speaks " + std::to_string(kBackendAbiVersion) + "; rebuild it";
      return m;
    }
    m.lib = lib;
    m.header = h;
    return m;
  }
  *why = "this kvrun was built without the CUDA backend (no " + std::string(kCudaModule) + " in: " +
         (tried.empty() ? std::string("no folders") : tried) + "); rebuild with -Dcuda=enabled";
  return m;
}

std::shared_ptr<Device> open_cuda(const CudaModule& m, int index, std::string* why) {
  std::vector<DeviceInfo> devs;
  Status st = m.header->enumerate(&devs);
  if (!st.ok()) {
    *why = st.message;
    return nullptr;
  }
  if (devs.empty()) {
    *why = "no CUDA device found";
    return nullptr;
  }
  if (index < 0 || size_t(index) >= devs.size()) {
    *why = "cuda:" + std::to_string(index) + " does not exist (" + std::to_string(devs.size()) + " CUDA device(s): cuda:0 .. cuda:" +
           std::to_string(devs.size() - 1) + ")";
    return nullptr;
  }
  Device* raw = nullptr;
  st = m.header->create(index, &raw);
  // A bad setting (a CUDA tuning switch out of range) is the user's to fix, on "auto" as well: it
  // must not turn into a fallback to the CPU or into a device error.
  if (st.kind == ErrorKind::usage) fail(ErrorKind::usage, st.message);
  if (!st.ok() || !raw) {
    *why = st.message.empty() ? "cuda:" + std::to_string(index) + " could not be opened" : st.message;
    return nullptr;
  }
  auto lib = m.lib;  // the device keeps its module loaded
  return std::shared_ptr<Device>(raw, [lib](Device* d) { delete d; });
}

}  // namespace

BackendKind backend_of_spec(const std::string& spec) {
  if (spec == "cpu" || spec == "auto") return BackendKind::cpu;
  if (spec == "cuda" || spec.rfind("cuda:", 0) == 0) return BackendKind::cuda;
  fail(ErrorKind::usage, "unknown device '" + spec + "'; use \"auto\", \"cpu\", \"cuda\" or \"cuda:N\"");
}

std::vector<DeviceInfo> cuda_devices(const std::vector<std::string>& search_dirs, std::string* why_none) {
  std::string why;
  CudaModule m = load_cuda_module(search_dirs, &why);
  std::vector<DeviceInfo> devs;
  if (!m.header) {
    if (why_none) *why_none = why;
    return devs;
  }
  Status st = m.header->enumerate(&devs);
  if (!st.ok() && why_none) *why_none = st.message;
  if (st.ok() && devs.empty() && why_none) *why_none = "no CUDA device found";
  return devs;
}

std::shared_ptr<Device> open_device(const DeviceRequest& req) {
  std::shared_ptr<Device> dev;
  if (req.spec == "cpu") {
    dev = cpu::make_cpu_device(req.cpu_threads);
  } else if (req.spec == "auto") {
    std::string why;
    CudaModule m = load_cuda_module(req.search_dirs, &why);
    if (m.header) dev = open_cuda(m, 0, &why);
    if (!dev) {
      log_info("backend.device = \"auto\": using the CPU (" + why + ")");
      dev = cpu::make_cpu_device(req.cpu_threads);
    }
  } else {
    backend_of_spec(req.spec);  // refuses an unknown spec before anything is loaded
    int index = req.spec == "cuda" ? 0 : std::stoi(req.spec.substr(5));
    std::string why;
    CudaModule m = load_cuda_module(req.search_dirs, &why);
    if (m.header) dev = open_cuda(m, index, &why);
    if (!dev) fail(ErrorKind::device, "backend.device = \"" + req.spec + "\": " + why + " (use \"cpu\" or \"auto\")");
  }
  if (req.memory_limit) dev->set_memory_limit(req.memory_limit);
  log_debug("device: " + dev->info().name + " — " + dev->info().description);
  return dev;
}

}  // namespace kvrun
