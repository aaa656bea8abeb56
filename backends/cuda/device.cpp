// kvrun CUDA backend — device enumeration, the caching allocator, the stream queue, the device
// object and the module entry point `kvrun_backend_v2`.
#include <cublas_v2.h>
#include <cuda_runtime_api.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <string>

#include "cuda_backend.cuh"
#include "cuda_check.cuh"
#include "kvrun/backend_module.hpp"

namespace kvrun::cuda {

// ---------------------------------------------------------------------------------------------
// Errors

void throw_cuda_error(cudaError_t err, const char* call, const char* file, int line) {
  (void)cudaGetLastError();  // clear a non-sticky error so the next call starts clean
  std::string msg = std::string("CUDA error: ") + call + " failed: " + cudaGetErrorString(err) + " (" +
                    cudaGetErrorName(err) + ", " + file + ":" + std::to_string(line) + ")";
  throw Error(ErrorKind::device, msg);
}

const char* cublas_status_name(cublasStatus_t st) noexcept {
  switch (st) {
    case CUBLAS_STATUS_SUCCESS: return "CUBLAS_STATUS_SUCCESS";
    case CUBLAS_STATUS_NOT_INITIALIZED: return "CUBLAS_STATUS_NOT_INITIALIZED";
    case CUBLAS_STATUS_ALLOC_FAILED: return "CUBLAS_STATUS_ALLOC_FAILED";
    case CUBLAS_STATUS_INVALID_VALUE: return "CUBLAS_STATUS_INVALID_VALUE";
    case CUBLAS_STATUS_ARCH_MISMATCH: return "CUBLAS_STATUS_ARCH_MISMATCH";
    case CUBLAS_STATUS_MAPPING_ERROR: return "CUBLAS_STATUS_MAPPING_ERROR";
    case CUBLAS_STATUS_EXECUTION_FAILED: return "CUBLAS_STATUS_EXECUTION_FAILED";
    case CUBLAS_STATUS_INTERNAL_ERROR: return "CUBLAS_STATUS_INTERNAL_ERROR";
    case CUBLAS_STATUS_NOT_SUPPORTED: return "CUBLAS_STATUS_NOT_SUPPORTED";
    case CUBLAS_STATUS_LICENSE_ERROR: return "CUBLAS_STATUS_LICENSE_ERROR";
  }
  return "unknown cuBLAS status";
}

void throw_cublas_error(cublasStatus_t st, const char* call, const char* file, int line) {
  std::string msg = std::string("cuBLAS error: ") + call + " failed: " + cublas_status_name(st) + " (" +
                    cublasGetStatusString(st) + ", " + file + ":" + std::to_string(line) + ")";
  throw Error(ErrorKind::device, msg);
}

// ---------------------------------------------------------------------------------------------
// ScopedDevice

ScopedDevice::ScopedDevice(int device) {
  KVRUN_CUDA_CHECK(cudaGetDevice(&previous_));
  if (previous_ != device) {
    KVRUN_CUDA_CHECK(cudaSetDevice(device));
    switched_ = true;
  }
}

ScopedDevice::~ScopedDevice() {
  if (switched_) (void)cudaSetDevice(previous_);
}

// ---------------------------------------------------------------------------------------------
// Device properties

DeviceInfo query_device_info(int index) {
  cudaDeviceProp prop{};
  KVRUN_CUDA_CHECK(cudaGetDeviceProperties(&prop, index));
  DeviceInfo info;
  info.name = "cuda:" + std::to_string(index);
  info.backend = BackendKind::cuda;
  info.index = index;
  info.total_memory = prop.totalGlobalMem;
  info.cc_major = prop.major;
  info.cc_minor = prop.minor;
  info.threads = 0;
  info.description = std::string(prop.name) + " (sm_" + std::to_string(prop.major) +
                     std::to_string(prop.minor) + ", " + format_bytes(prop.totalGlobalMem) + ")";
  return info;
}

// ---------------------------------------------------------------------------------------------
// CudaAllocator

namespace {
constexpr size_t kSmallLimit = size_t(1) << 20;   // below: 512-byte granules, exact-size reuse
constexpr size_t kSmallGranule = 512;
constexpr size_t kLargeGranule = size_t(64) << 10;
}  // namespace

CudaAllocator::CudaAllocator(int device, std::string device_name)
    : device_(device), name_(std::move(device_name)) {}

CudaAllocator::~CudaAllocator() {
  // Whatever is left (cached blocks, and blocks a caller never returned) goes back to CUDA.
  try {
    ScopedDevice guard(device_);
    for (auto& [size, p] : cached_) (void)cudaFree(p);
    for (auto& [p, live] : live_) (void)cudaFree(p);
  } catch (...) {
  }
}

size_t CudaAllocator::round_size(size_t bytes) noexcept {
  size_t g = bytes < kSmallLimit ? kSmallGranule : kLargeGranule;
  return (bytes + g - 1) / g * g;
}

void CudaAllocator::release_cache_locked() {
  if (cached_.empty()) return;
  for (auto& [size, p] : cached_) {
    KVRUN_CUDA_CHECK(cudaFree(p));  // synchronizes the device: no queued work still uses p
    reserved_ -= size;
  }
  cached_.clear();
  cached_bytes_ = 0;
}

std::string CudaAllocator::oom_message_locked(size_t bytes, MemCategory cat, const std::string& cause) const {
  std::string held;
  for (int c = 0; c < kMemCategories; ++c) {
    if (c) held += ", ";
    held += std::string(mem_category_name(MemCategory(c))) + " " + format_bytes(stats_.current[c]);
  }
  std::string msg = name_ + ": out of memory allocating " + format_bytes(bytes) + " for " +
                    mem_category_name(cat) + " (held: " + held + "; ";
  if (stats_.limit) {
    msg += "limit " + format_bytes(stats_.limit);
  } else {
    size_t free_b = 0, total_b = 0;
    if (cudaMemGetInfo(&free_b, &total_b) == cudaSuccess)
      msg += "device free " + format_bytes(free_b) + " of " + format_bytes(total_b);
    else
      (void)cudaGetLastError();
  }
  if (!cause.empty()) msg += "; " + cause;
  msg += ") — lower cache.max_tokens / batch";
  msg += stats_.limit ? ", or raise backend.memory_limit" : ", or use smaller (quantized) weights";
  return msg;
}

Status CudaAllocator::allocate(size_t bytes, MemCategory cat, void** out) noexcept {
  *out = nullptr;
  if (bytes == 0) return {};
  return guard([&] {
    std::lock_guard<std::mutex> lock(mu_);
    ScopedDevice dev_guard(device_);
    const size_t block = round_size(bytes);
    if (stats_.limit && live_blocks_ + block > stats_.limit)
      throw Error(ErrorKind::device, oom_message_locked(bytes, cat, "over the limit"));

    void* p = nullptr;
    size_t got = 0;
    // 1. a cached block of a fitting size
    auto it = cached_.lower_bound(block);
    size_t slack = block < kSmallLimit ? 0 : block / 8;
    if (it != cached_.end() && it->first <= block + slack &&
        !(stats_.limit && live_blocks_ + it->first > stats_.limit)) {
      got = it->first;
      p = it->second;
      cached_.erase(it);
      cached_bytes_ -= got;
    } else {
      // 2. a new block from CUDA, within the limit
      if (stats_.limit && reserved_ + block > stats_.limit) release_cache_locked();
      cudaError_t err = cudaMalloc(&p, block);
      if (err == cudaErrorMemoryAllocation) {
        (void)cudaGetLastError();
        release_cache_locked();
        err = cudaMalloc(&p, block);
      }
      if (err == cudaErrorMemoryAllocation) {
        (void)cudaGetLastError();
        throw Error(ErrorKind::device, oom_message_locked(bytes, cat, "cudaMalloc: out of memory"));
      }
      if (err != cudaSuccess) throw_cuda_error(err, "cudaMalloc", __FILE__, __LINE__);
      got = block;
      reserved_ += got;
    }
    live_[p] = Live{got};
    live_blocks_ += got;
    const int c = int(cat);
    stats_.current[c] += bytes;
    stats_.peak[c] = std::max(stats_.peak[c], stats_.current[c]);
    size_t total = stats_.current[0] + stats_.current[1] + stats_.current[2];
    stats_.peak_total = std::max(stats_.peak_total, total);
    *out = p;
  });
}

void CudaAllocator::deallocate(void* p, size_t bytes, MemCategory cat) noexcept {
  if (!p) return;
  std::lock_guard<std::mutex> lock(mu_);
  auto it = live_.find(p);
  if (it == live_.end()) {
    std::fprintf(stderr, "kvrun: %s: deallocate of a pointer this device did not allocate (%p) — ignored\n",
                 name_.c_str(), p);
    return;
  }
  const size_t block = it->second.block;
  live_.erase(it);
  live_blocks_ -= block;
  cached_.emplace(block, p);
  cached_bytes_ += block;
  const int c = int(cat);
  stats_.current[c] -= std::min(stats_.current[c], bytes);
}

MemoryStats CudaAllocator::stats() const noexcept {
  std::lock_guard<std::mutex> lock(mu_);
  return stats_;
}

void CudaAllocator::reset_peak() noexcept {
  std::lock_guard<std::mutex> lock(mu_);
  size_t total = 0;
  for (int c = 0; c < kMemCategories; ++c) {
    stats_.peak[c] = stats_.current[c];
    total += stats_.current[c];
  }
  stats_.peak_total = total;
}

void CudaAllocator::set_limit(size_t bytes) noexcept {
  std::lock_guard<std::mutex> lock(mu_);
  stats_.limit = bytes;
  if (bytes && reserved_ > bytes) {
    try {
      ScopedDevice dev_guard(device_);
      release_cache_locked();
    } catch (...) {
      // the cache stays; later allocations release it again before asking CUDA
    }
  }
}

size_t CudaAllocator::available() const noexcept {
  std::lock_guard<std::mutex> lock(mu_);
  size_t free_b = 0, total_b = 0;
  try {
    ScopedDevice dev_guard(device_);
    if (cudaMemGetInfo(&free_b, &total_b) != cudaSuccess) {
      (void)cudaGetLastError();
      free_b = 0;
    }
  } catch (...) {
    free_b = 0;
  }
  size_t avail = free_b + cached_bytes_;
  if (stats_.limit) avail = std::min(avail, stats_.limit > live_blocks_ ? stats_.limit - live_blocks_ : 0);
  return avail;
}

// ---------------------------------------------------------------------------------------------
// CudaQueue

CudaQueue::CudaQueue(int device) : device_(device) {
  ScopedDevice guard(device_);
  // A blocking stream: it also orders against the legacy default stream, should any code use it.
  KVRUN_CUDA_CHECK(cudaStreamCreate(&stream_));
}

CudaQueue::~CudaQueue() {
  try {
    ScopedDevice guard(device_);
    (void)cudaStreamSynchronize(stream_);
    for (cudaEvent_t e : events_) (void)cudaEventDestroy(e);
    for (Staging& b : staging_) (void)cudaFreeHost(b.host);
    (void)cudaStreamDestroy(stream_);
  } catch (...) {
  }
}

Status CudaQueue::copy_h2d(void* dst, const void* src, size_t bytes) noexcept {
  return guard([&] {
    if (!bytes) return;
    ScopedDevice g(device_);
    // From pageable memory this returns once `src` has been staged, so the caller may reuse it.
    KVRUN_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, stream_));
  });
}

Status CudaQueue::copy_d2h(void* dst, const void* src, size_t bytes) noexcept {
  return guard([&] {
    if (!bytes) return;
    ScopedDevice g(device_);
    KVRUN_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, stream_));
    // The host side stays simple: the data is valid when this returns (and after wait()).
    KVRUN_CUDA_CHECK(cudaStreamSynchronize(stream_));
    hand_over(copies_issued_);  // and so are the asynchronous copies issued before it
  });
}

Status CudaQueue::copy_d2h_async(void* dst, const void* src, size_t bytes) noexcept {
  return guard([&] {
    if (!bytes) return;
    ScopedDevice g(device_);
    size_t slot = staging_.size();
    for (size_t i = 0; i < staging_.size(); ++i)
      if (!staging_[i].busy && staging_[i].capacity >= bytes) {
        slot = i;
        break;
      }
    if (slot == staging_.size()) {  // a new one (a decode step needs one or two: ids of a step)
      Staging b;
      b.capacity = std::max<size_t>(4096, (bytes + 4095) / 4096 * 4096);
      KVRUN_CUDA_CHECK(cudaHostAlloc(&b.host, b.capacity, cudaHostAllocDefault));
      staging_.push_back(b);
    }
    KVRUN_CUDA_CHECK(cudaMemcpyAsync(staging_[slot].host, src, bytes, cudaMemcpyDeviceToHost, stream_));
    staging_[slot].busy = true;
    staged_.push_back(StagedCopy{copies_issued_++, slot, dst, bytes});
  });
}

void CudaQueue::hand_over(uint64_t issued_before) {
  size_t done = 0;
  for (; done < staged_.size() && staged_[done].number < issued_before; ++done) {
    const StagedCopy& c = staged_[done];
    std::memcpy(c.dst, staging_[c.slot].host, c.bytes);
    staging_[c.slot].busy = false;
  }
  staged_.erase(staged_.begin(), staged_.begin() + std::ptrdiff_t(done));
}

Status CudaQueue::wait_for(const Event& ev) noexcept {
  return guard([&] {
    require(ev.handle != nullptr, "cuda queue wait_for: the Event was never recorded");
    ScopedDevice g(device_);
    const auto e = static_cast<cudaEvent_t>(ev.handle);
    uint64_t issued = 0;
    {
      std::lock_guard<std::mutex> lock(events_mu_);
      const auto it = issued_at_record_.find(e);
      require(it != issued_at_record_.end(), "cuda queue wait_for: the Event was not recorded on this queue");
      issued = it->second;
    }
    KVRUN_CUDA_CHECK(cudaEventSynchronize(e));
    hand_over(issued);
  });
}

Status CudaQueue::copy_d2d(void* dst, const void* src, size_t bytes) noexcept {
  return guard([&] {
    if (!bytes) return;
    ScopedDevice g(device_);
    KVRUN_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, stream_));
  });
}

Status CudaQueue::fill_bytes(void* dst, uint8_t value, size_t bytes) noexcept {
  return guard([&] {
    if (!bytes) return;
    ScopedDevice g(device_);
    KVRUN_CUDA_CHECK(cudaMemsetAsync(dst, value, bytes, stream_));
  });
}

Status CudaQueue::record(Event* ev) noexcept {
  return guard([&] {
    require(ev != nullptr, "cuda queue record: null Event");
    ScopedDevice g(device_);
    if (!ev->handle) {
      // The queue owns the events it creates (Event has no destructor); reuse an Event object to
      // record again without creating another.
      cudaEvent_t e = nullptr;
      KVRUN_CUDA_CHECK(cudaEventCreateWithFlags(&e, cudaEventDisableTiming));
      {
        std::lock_guard<std::mutex> lock(events_mu_);
        events_.push_back(e);
      }
      ev->handle = e;
    }
    KVRUN_CUDA_CHECK(cudaEventRecord(static_cast<cudaEvent_t>(ev->handle), stream_));
    std::lock_guard<std::mutex> lock(events_mu_);
    issued_at_record_[static_cast<cudaEvent_t>(ev->handle)] = copies_issued_;
  });
}

Status CudaQueue::wait() noexcept {
  return guard([&] {
    ScopedDevice g(device_);
    KVRUN_CUDA_CHECK(cudaStreamSynchronize(stream_));
    hand_over(copies_issued_);
  });
}

Status CudaQueue::capture_begin() noexcept {
  return guard([&] {
    ScopedDevice g(device_);
    KVRUN_CUDA_CHECK(cudaStreamBeginCapture(stream_, cudaStreamCaptureModeThreadLocal));
  });
}

Status CudaQueue::capture_end(void** graph) noexcept {
  *graph = nullptr;
  return guard([&] {
    ScopedDevice g(device_);
    cudaGraph_t g_raw = nullptr;
    KVRUN_CUDA_CHECK(cudaStreamEndCapture(stream_, &g_raw));
    cudaGraphExec_t exec = nullptr;
    cudaError_t e = cudaGraphInstantiate(&exec, g_raw, 0);
    cudaGraphDestroy(g_raw);
    KVRUN_CUDA_CHECK(e);
    *graph = exec;
  });
}

Status CudaQueue::graph_launch(void* graph) noexcept {
  return guard([&] {
    ScopedDevice g(device_);
    KVRUN_CUDA_CHECK(cudaGraphLaunch(static_cast<cudaGraphExec_t>(graph), stream_));
  });
}

void CudaQueue::graph_destroy(void* graph) noexcept {
  if (graph) cudaGraphExecDestroy(static_cast<cudaGraphExec_t>(graph));
}

// ---------------------------------------------------------------------------------------------
// CudaDevice

CudaDevice::CudaDevice(int index) : info_(query_device_info(index)), alloc_(index, "cuda:" + std::to_string(index)) {
  ScopedDevice guard(index);
  queue_ = std::make_unique<CudaQueue>(index);
  ops_ = std::make_unique<CudaOps>(*this);
}

CudaDevice::~CudaDevice() {
  try {
    ScopedDevice guard(info_.index);
    (void)cudaStreamSynchronize(queue_->stream());
  } catch (...) {
  }
  ops_.reset();
  queue_.reset();
}

Status CudaDevice::allocate(size_t bytes, MemCategory cat, void** out) noexcept {
  return alloc_.allocate(bytes, cat, out);
}

void CudaDevice::deallocate(void* p, size_t bytes, MemCategory cat) noexcept { alloc_.deallocate(p, bytes, cat); }

size_t CudaDevice::available_memory() const noexcept { return alloc_.available(); }

// ---------------------------------------------------------------------------------------------
// Module entry

namespace {

Status module_enumerate(std::vector<DeviceInfo>* out) noexcept {
  return guard([&] {
    out->clear();
    int count = 0;
    cudaError_t err = cudaGetDeviceCount(&count);
    if (err != cudaSuccess) {
      (void)cudaGetLastError();
      throw Error(ErrorKind::device, std::string("no usable CUDA device: cudaGetDeviceCount failed: ") +
                                         cudaGetErrorString(err) + " (" + cudaGetErrorName(err) + ")");
    }
    if (count == 0) throw Error(ErrorKind::device, "no usable CUDA device: cudaGetDeviceCount found 0 devices");
    for (int i = 0; i < count; ++i) out->push_back(query_device_info(i));
  });
}

Status module_create(int index, Device** out) noexcept {
  *out = nullptr;
  return guard([&] {
    int count = 0;
    cudaError_t err = cudaGetDeviceCount(&count);
    if (err != cudaSuccess) {
      (void)cudaGetLastError();
      throw Error(ErrorKind::device, "cannot open cuda:" + std::to_string(index) +
                                         ": cudaGetDeviceCount failed: " + cudaGetErrorString(err));
    }
    if (index < 0 || index >= count)
      throw Error(ErrorKind::device, "cannot open cuda:" + std::to_string(index) + ": this machine has " +
                                         std::to_string(count) + " CUDA device(s)");
    *out = new CudaDevice(index);
  });
}

}  // namespace
}  // namespace kvrun::cuda

extern "C" __attribute__((visibility("default"))) const kvrun::BackendModuleHeader* KVRUN_BACKEND_ENTRY() noexcept {
  static const kvrun::BackendModuleHeader header{kvrun::kBackendAbiVersion, 0, "cuda",
                                                 &kvrun::cuda::module_enumerate, &kvrun::cuda::module_create};
  return &header;
}
