// kvrun — the CPU Device and Queue: 64-byte aligned host memory with per-category accounting and
// an optional limit; copies are memcpy, work is complete when a call returns.
#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <mutex>
#include <sstream>
#include <string>
#include <thread>

#include "kvrun/cpu/cpu.hpp"
#include "kvrun/cpu/parallel.hpp"
#include "kvrun/ops.hpp"

namespace kvrun::cpu {
namespace {

// A field of /proc/meminfo in bytes ("MemTotal", "MemAvailable"); 0 when unreadable.
size_t meminfo_bytes(const char* key) {
  std::ifstream f("/proc/meminfo");
  std::string line;
  const size_t klen = std::strlen(key);
  while (std::getline(f, line)) {
    if (line.compare(0, klen, key) == 0 && line.size() > klen && line[klen] == ':') {
      std::istringstream is(line.substr(klen + 1));
      size_t kb = 0;
      is >> kb;
      return kb * 1024;
    }
  }
  return 0;
}

std::string cpu_model_name() {
  std::ifstream f("/proc/cpuinfo");
  std::string line;
  while (std::getline(f, line)) {
    if (line.compare(0, 10, "model name") == 0) {
      auto p = line.find(':');
      if (p != std::string::npos) {
        std::string s = line.substr(p + 1);
        size_t b = s.find_first_not_of(" \t");
        return b == std::string::npos ? std::string() : s.substr(b);
      }
    }
  }
  return {};
}

class CpuQueue final : public Queue {
 public:
  Status copy_h2d(void* dst, const void* src, size_t bytes) noexcept override { return copy("copy_h2d", dst, src, bytes); }
  Status copy_d2h(void* dst, const void* src, size_t bytes) noexcept override { return copy("copy_d2h", dst, src, bytes); }
  Status copy_d2d(void* dst, const void* src, size_t bytes) noexcept override { return copy("copy_d2d", dst, src, bytes); }
  Status fill_bytes(void* dst, uint8_t value, size_t bytes) noexcept override {
    if (bytes == 0) return {};
    if (!dst) return {ErrorKind::internal, "cpu queue fill_bytes: null destination for " + std::to_string(bytes) + " bytes"};
    std::memset(dst, value, bytes);
    return {};
  }
  Status record(Event* ev) noexcept override {
    if (ev) ev->handle = nullptr;
    return {};
  }
  Status wait() noexcept override { return {}; }
  void* native_handle() const noexcept override { return nullptr; }

 private:
  static Status copy(const char* what, void* dst, const void* src, size_t bytes) noexcept {
    if (bytes == 0) return {};
    if (!dst || !src)
      return {ErrorKind::internal, std::string("cpu queue ") + what + ": null pointer for " + std::to_string(bytes) + " bytes"};
    std::memmove(dst, src, bytes);  // memmove: d2d copies within one buffer may overlap
    return {};
  }
};

class CpuDevice final : public Device {
 public:
  explicit CpuDevice(int threads) {
    set_num_threads(threads);
    info_.name = "cpu";
    info_.backend = BackendKind::cpu;
    info_.index = 0;
    info_.threads = num_threads();
    info_.total_memory = meminfo_bytes("MemTotal");
    info_.description = cpu_description() + ", " + std::to_string(info_.threads) +
                        (info_.threads == 1 ? " thread" : " threads");
  }

  const DeviceInfo& info() const noexcept override { return info_; }

  Status allocate(size_t bytes, MemCategory cat, void** out) noexcept override {
    if (!out) return {ErrorKind::internal, "cpu allocate: null output pointer"};
    *out = nullptr;
    const int c = static_cast<int>(cat);
    if (c < 0 || c >= kMemCategories) return {ErrorKind::internal, "cpu allocate: invalid memory category"};
    return guard([&] {
      std::lock_guard<std::mutex> lk(m_);
      const size_t held = held_total();
      if (limit_ && (bytes > limit_ || held > limit_ - bytes))
        fail(ErrorKind::device, "cpu: cannot allocate " + format_bytes(bytes) + " for " + mem_category_name(cat) +
                                    ": " + held_text() + " already held and the memory limit is " +
                                    format_bytes(limit_) +
                                    "; raise [backend] memory_limit, or lower the context length / batch size "
                                    "(or use a smaller KV-cache dtype)");
      // Never null, even for 0 bytes; sizes rounded up to the alignment (aligned_alloc needs it).
      const size_t rounded = (std::max<size_t>(bytes, 1) + 63) / 64 * 64;
      if (rounded < bytes) fail(ErrorKind::device, "cpu: allocation of " + std::to_string(bytes) + " bytes is too large");
      void* p = std::aligned_alloc(64, rounded);
      if (!p)
        fail(ErrorKind::device, "cpu: out of host memory allocating " + format_bytes(bytes) + " for " +
                                    mem_category_name(cat) + " (" + held_text() + " already held, " +
                                    format_bytes(meminfo_bytes("MemAvailable")) +
                                    " available); lower the context length / batch size or set a smaller model");
      stats_.current[c] += bytes;
      stats_.peak[c] = std::max(stats_.peak[c], stats_.current[c]);
      stats_.peak_total = std::max(stats_.peak_total, held + bytes);
      *out = p;
    });
  }

  void deallocate(void* p, size_t bytes, MemCategory cat) noexcept override {
    if (!p) return;
    std::free(p);
    const int c = static_cast<int>(cat);
    if (c < 0 || c >= kMemCategories) return;
    std::lock_guard<std::mutex> lk(m_);
    stats_.current[c] -= std::min(bytes, stats_.current[c]);
  }

  MemoryStats memory_stats() const noexcept override {
    std::lock_guard<std::mutex> lk(m_);
    MemoryStats s = stats_;
    s.limit = limit_;
    return s;
  }

  void reset_peak() noexcept override {
    std::lock_guard<std::mutex> lk(m_);
    for (int c = 0; c < kMemCategories; ++c) stats_.peak[c] = stats_.current[c];
    stats_.peak_total = held_total();
  }

  void set_memory_limit(size_t bytes) noexcept override {
    std::lock_guard<std::mutex> lk(m_);
    limit_ = bytes;
  }

  size_t available_memory() const noexcept override {
    size_t avail = meminfo_bytes("MemAvailable");
    std::lock_guard<std::mutex> lk(m_);
    if (limit_) {
      size_t held = held_total();
      size_t left = held >= limit_ ? 0 : limit_ - held;
      avail = avail ? std::min(avail, left) : left;
    }
    return avail;
  }

  Queue& queue() noexcept override { return queue_; }
  Ops& ops() noexcept override { return cpu_ops(); }

 private:
  size_t held_total() const noexcept {
    size_t t = 0;
    for (int c = 0; c < kMemCategories; ++c) t += stats_.current[c];
    return t;
  }
  std::string held_text() const {
    std::string s = format_bytes(held_total()) + " (";
    for (int c = 0; c < kMemCategories; ++c) {
      if (c) s += ", ";
      s += std::string(mem_category_name(static_cast<MemCategory>(c))) + " " + format_bytes(stats_.current[c]);
    }
    return s + ")";
  }

  DeviceInfo info_;
  CpuQueue queue_;
  mutable std::mutex m_;
  MemoryStats stats_;
  size_t limit_ = 0;
};

}  // namespace

std::string cpu_description() {
  std::string model = cpu_model_name();
  std::string isa = "x86-64-v3 kernels (AVX2 FMA F16C)";
  return model.empty() ? isa : model + ", " + isa;
}

std::shared_ptr<Device> make_cpu_device(int threads) { return std::make_shared<CpuDevice>(threads); }

}  // namespace kvrun::cpu
