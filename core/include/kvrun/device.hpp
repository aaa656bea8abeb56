// kvrun — the SYCL-style device abstraction: Device, Queue, Event, Buffer.
//
// A backend (backends/cpu, backends/cuda) implements Device. Memory is always allocated through a
// Device with a category, so peak memory can be reported split into weights / KV cache / workspace
// (the figures come from the allocator, not from formulas).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "kvrun/error.hpp"
#include "kvrun/tensor.hpp"

namespace kvrun {

class Ops;  // the dense operations of a backend: core/include/kvrun/ops.hpp

enum class BackendKind : uint8_t { cpu, cuda };
const char* backend_name(BackendKind k) noexcept;  // "cpu", "cuda"

struct DeviceInfo {
  std::string name;         // "cpu", "cuda:0"
  BackendKind backend = BackendKind::cpu;
  int index = 0;
  std::string description;  // "NVIDIA H200 (sm_90, 139.8 GiB)", "x86-64 AVX2, 16 threads"
  size_t total_memory = 0;  // bytes
  int cc_major = 0, cc_minor = 0;  // CUDA compute capability, 0 on CPU
  int threads = 0;                 // CPU worker threads, 0 on CUDA
};

enum class MemCategory : uint8_t { weights = 0, kv_cache = 1, workspace = 2 };
constexpr int kMemCategories = 3;
const char* mem_category_name(MemCategory c) noexcept;

// Bytes currently held and the peak of each, as seen by the device's allocator.
struct MemoryStats {
  size_t current[kMemCategories] = {0, 0, 0};
  size_t peak[kMemCategories] = {0, 0, 0};
  size_t peak_total = 0;  // peak of the sum (not the sum of peaks)
  size_t limit = 0;       // 0 = no limit beyond the device
};

// Marks a point in a queue's work.
struct Event {
  void* handle = nullptr;  // cudaEvent_t on CUDA; unused on CPU (work is complete on return)
};

// An in-order queue bound to one device (a CUDA stream, or the CPU worker pool).
// Copies are in bytes between host memory and this device's memory (or within the device).
class Queue {
 public:
  virtual ~Queue() = default;
  virtual Status copy_h2d(void* dst, const void* src, size_t bytes) noexcept = 0;
  virtual Status copy_d2h(void* dst, const void* src, size_t bytes) noexcept = 0;
  virtual Status copy_d2d(void* dst, const void* src, size_t bytes) noexcept = 0;
  virtual Status fill_bytes(void* dst, uint8_t value, size_t bytes) noexcept = 0;
  virtual Status record(Event* ev) noexcept = 0;
  virtual Status wait() noexcept = 0;                // blocks the host until all work is done
  // Device → host without blocking (ABI 6): the copy runs when the queue reaches it, and `dst`
  // holds the bytes once the host has waited past it — wait(), or wait_for() on an Event recorded
  // after this call. `dst` must stay valid until then and must not be read before. The default
  // (a queue whose work is done on return, like the CPU's) is the blocking copy_d2h.
  virtual Status copy_d2h_async(void* dst, const void* src, size_t bytes) noexcept {
    return copy_d2h(dst, src, bytes);
  }
  // Blocks the host until the queue has passed `ev` (recorded by record() on this queue), and
  // completes the copy_d2h_async calls issued before it (ABI 6). Default: wait().
  virtual Status wait_for(const Event& ev) noexcept {
    (void)ev;
    return wait();
  }
  virtual void* native_handle() const noexcept = 0;  // cudaStream_t on CUDA, nullptr on CPU

  // Graphs (CUDA graphs): the work issued between capture_begin() and capture_end() is recorded
  // instead of run, and graph_launch() replays it (same kernels, same pointers) without per-launch
  // host overhead. Queues without graphs report false and refuse the calls.
  virtual bool supports_graphs() const noexcept { return false; }
  virtual Status capture_begin() noexcept { return {ErrorKind::internal, "this queue has no graphs"}; }
  virtual Status capture_end(void** graph) noexcept {
    *graph = nullptr;
    return {ErrorKind::internal, "this queue has no graphs"};
  }
  virtual Status graph_launch(void* /*graph*/) noexcept { return {ErrorKind::internal, "this queue has no graphs"}; }
  virtual void graph_destroy(void* /*graph*/) noexcept {}
};

class Device {
 public:
  virtual ~Device() = default;
  virtual const DeviceInfo& info() const noexcept = 0;
  // Throws nothing; on failure *out is null and the Status says why (kind = device for OOM,
  // naming the request, the category and what is already held).
  virtual Status allocate(size_t bytes, MemCategory cat, void** out) noexcept = 0;
  virtual void deallocate(void* p, size_t bytes, MemCategory cat) noexcept = 0;
  virtual MemoryStats memory_stats() const noexcept = 0;
  virtual void reset_peak() noexcept = 0;
  // Caps what this process may take on the device (bytes, 0 = no cap); [backend] memory_limit.
  virtual void set_memory_limit(size_t bytes) noexcept = 0;
  // Bytes the device could still hand out (free memory, or what the limit leaves).
  virtual size_t available_memory() const noexcept = 0;
  virtual Queue& queue() noexcept = 0;
  virtual Ops& ops() noexcept = 0;

  MemSpace space() const noexcept {
    return info().backend == BackendKind::cpu ? MemSpace::host : MemSpace::device;
  }
  bool is_cpu() const noexcept { return info().backend == BackendKind::cpu; }
};

// An owning, typed allocation on one device (RAII). Never shared across devices implicitly.
template <class T>
class Buffer {
 public:
  Buffer() = default;
  Buffer(Device& dev, size_t count, MemCategory cat) : dev_(&dev), count_(count), cat_(cat) {
    if (count_ == 0) return;
    void* p = nullptr;
    check(dev.allocate(count_ * sizeof(T), cat_, &p));
    ptr_ = static_cast<T*>(p);
  }
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;
  Buffer(Buffer&& o) noexcept { swap(o); }
  Buffer& operator=(Buffer&& o) noexcept {
    Buffer tmp(std::move(o));
    swap(tmp);
    return *this;
  }
  ~Buffer() {
    if (ptr_) dev_->deallocate(ptr_, count_ * sizeof(T), cat_);
  }

  T* data() const noexcept { return ptr_; }
  size_t size() const noexcept { return count_; }
  size_t bytes() const noexcept { return count_ * sizeof(T); }
  bool empty() const noexcept { return count_ == 0; }
  Device* device() const noexcept { return dev_; }

  void upload(const T* host, size_t n, size_t offset = 0) {
    if (n) check(dev_->queue().copy_h2d(ptr_ + offset, host, n * sizeof(T)));
  }
  void download(T* host, size_t n, size_t offset = 0) const {
    if (n) check(dev_->queue().copy_d2h(host, ptr_ + offset, n * sizeof(T)));
  }
  std::vector<T> to_host() const {
    std::vector<T> v(count_);
    download(v.data(), count_);
    check(dev_->queue().wait());
    return v;
  }
  // A view with the given shape (elements must fit).
  TensorView view(DType t, std::initializer_list<int64_t> dims) const noexcept {
    return TensorView(ptr_, t, dims, dev_ ? dev_->space() : MemSpace::host);
  }

 private:
  void swap(Buffer& o) noexcept {
    std::swap(dev_, o.dev_);
    std::swap(ptr_, o.ptr_);
    std::swap(count_, o.count_);
    std::swap(cat_, o.cat_);
  }
  Device* dev_ = nullptr;
  T* ptr_ = nullptr;
  size_t count_ = 0;
  MemCategory cat_ = MemCategory::workspace;
};

// Parses "80GB", "512MiB", "1.5G", "0" into bytes (GB = 10^9, GiB = 2^30). Throws Error(usage).
size_t parse_byte_size(const std::string& text, const std::string& where);
std::string format_bytes(size_t bytes);  // "1.23 GiB"

}  // namespace kvrun
