// kvrun — helpers for the CUDA code of plugins (each plugin links its own static CUDA runtime, so
// it must make the caller's device current itself and check every call it makes): error checks,
// device scope, programmatic dependent launch, and a few sm_80+ device building blocks that
// kvrun's own backend and plugins use too.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <atomic>
#include <cerrno>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>
#include <utility>

#include "kvrun/dtype.hpp"
#include "kvrun/error.hpp"

namespace kvrun::cuda_plugin {

// Throws Error(device) "<who> (CUDA): <what>: <error name> (<error string>)" on failure.
inline void check(cudaError_t err, const char* who, const char* what) {
  if (err != cudaSuccess)
    fail(ErrorKind::device, std::string(who) + " (CUDA): " + what + ": " + cudaGetErrorName(err) + " (" +
                                cudaGetErrorString(err) + ")");
}

// The value of environment variable `name` (a tuning switch): `fallback` when unset, else a whole
// number in [lo, hi]; anything else throws Error(usage) "<name>=<value>: expected a whole number
// lo..hi" (a typo must not silently fall back to the default).
inline int env_int(const char* name, int lo, int hi, int fallback) {
  const char* v = std::getenv(name);
  if (!v) return fallback;
  char* end = nullptr;
  errno = 0;
  const long r = std::strtol(v, &end, 10);
  if (end == v || *end != '\0' || errno != 0 || r < lo || r > hi)
    fail(ErrorKind::usage, std::string(name) + "=" + v + ": expected a whole number " + std::to_string(lo) + ".." +
                               std::to_string(hi));
  return int(r);
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
// kernel written this way is correct however it is launched. Every kernel must reach pdl_wait()
// before it ends (its end then implies its predecessors'), which keeps a chain of early launches
// ordered. Short kernels (norms, RoPE, KV append, decode attention, split-K merges) trigger first
// and then wait: the launches cascade down such a chain, so the bandwidth-bound kernel after it
// (the o_proj GEMV after RoPE → append → attention) is resident and streaming its weights while
// the chain runs. Kernels that fill the machine (the GEMVs) trigger after their main loop, so that
// the next kernel's blocks do not take their SM slots early.
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
// CUDA backend honours too; values other than 0 and 1 throw Error(usage)). Launches ask on every
// call, so the answer is worked out once per device (and module) and kept.
inline bool pdl_enabled(int device) {
  auto compute = [device] {
    int major = 0;
    if (cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device) != cudaSuccess) return false;
    return major >= 9 && env_int("KVRUN_CUDA_PDL", 0, 1, 1) == 1;
  };
  constexpr int kKnownDevices = 64;
  static std::atomic<signed char> known[kKnownDevices] = {};  // 0: not yet asked, 1: off, 2: on
  if (device < 0 || device >= kKnownDevices) return compute();
  signed char v = known[device].load(std::memory_order_relaxed);
  if (v == 0) {
    v = compute() ? 2 : 1;
    known[device].store(v, std::memory_order_relaxed);
  }
  return v == 2;
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

// ---- device building blocks (sm_80+), shared by kvrun's own kernels ----

// 16-byte load of data read once per kernel (streamed weights): read-only path, not kept in L1,
// which is better left to the data every warp re-reads.
__device__ __forceinline__ uint4 load_stream_16b(const uint4* p) {
  uint4 r;
  asm("ld.global.nc.L1::no_allocate.v4.u32 {%0, %1, %2, %3}, [%4];"
      : "=r"(r.x), "=r"(r.y), "=r"(r.z), "=r"(r.w)
      : "l"(p));
  return r;
}

// Asynchronous global → shared copies (cp.async, sm_80+), 16 bytes, bypassing L1 (.cg). valid =
// false zero-fills the bytes and does not read gmem. (The generic-pointer form needs nvcc's
// __cvta_generic_to_shared: only under nvcc, so that host code may include this header.)
#if defined(__CUDACC__)
__device__ __forceinline__ void cp_async_16(void* smem, const void* gmem, bool valid) {
  const unsigned s = static_cast<unsigned>(__cvta_generic_to_shared(smem));
  const int n = valid ? 16 : 0;
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;" ::"r"(s), "l"(gmem), "r"(n) : "memory");
}
#endif
// The same with the destination as a shared-space address (__cvta_generic_to_shared once, outside
// a loop: the generic form recomputes it per copy).
__device__ __forceinline__ void cp_async_16(uint32_t smem, const void* gmem) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16;" ::"r"(smem), "l"(gmem) : "memory");
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;" ::: "memory"); }
// Waits until at most N of this thread's committed groups are still in flight (the copies of
// other threads need a barrier after it: __syncwarp or __syncthreads).
template <int N>
__device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;" ::"n"(N) : "memory");
}

// Element i of a float-typed array whose dtype (f32, f16 or bf16) is known only at run time: a
// bias, a norm weight — reads too few to be worth a template parameter.
__device__ __forceinline__ float load_any(const void* p, DType t, int64_t i) {
  switch (t) {
    case DType::f16: return __half2float(static_cast<const __half*>(p)[i]);
    case DType::bf16: return __bfloat162float(static_cast<const __nv_bfloat16*>(p)[i]);
    default: return static_cast<const float*>(p)[i];
  }
}

// Two f32 values as one bf16x2 register (lo in the low half), rounded to nearest even.
__device__ __forceinline__ uint32_t pack_bf16x2(float lo, float hi) {
  const __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
  uint32_t u;
  std::memcpy(&u, &v, 4);
  return u;
}

#if defined(__CUDACC__)
// The largest v of the block, in every thread (blockDim.x a multiple of 32, at most 1024; scratch:
// 32 floats of shared memory, free again only after a later barrier). A barrier inside: every
// thread of the block must call it.
__device__ __forceinline__ float block_max(float v, float* scratch) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  if ((threadIdx.x & 31) == 0) scratch[threadIdx.x >> 5] = v;
  __syncthreads();
  v = 0.f;
  for (int i = 0; i < int(blockDim.x >> 5); ++i) v = fmaxf(v, scratch[i]);
  return v;
}

// The power of two by which a row of x whose max |x| is max_abs is multiplied before it is rounded
// to f16: it brings max_abs into [2^13, 2^14) — no f16 overflow for large activations, no f16
// subnormals for tiny ones — exactly (the sums are multiplied by its inverse, also exact). 1 for a
// row that is all zero or holds inf/NaN. (The backend's f16 GEMM operand and the GPTQ plugin's f16
// fragments; nvcc only.)
__device__ __forceinline__ float f16_row_scale(float max_abs) {
  if (!isfinite(max_abs) || !(max_abs > 0.f)) return 1.f;
  int e = 0;
  (void)frexpf(max_abs, &e);  // max_abs = f · 2^e, f ∈ [0.5, 1)
  // 2^±120 and its inverse are normal floats (only rows of f32 subnormals reach the clamp)
  return ldexpf(1.f, min(14 - e, 120));
}
#endif

// The same as one f16x2 register.
__device__ __forceinline__ uint32_t pack_f16x2(float lo, float hi) {
  const __half2 v = __floats2half2_rn(lo, hi);
  uint32_t u;
  std::memcpy(&u, &v, 4);
  return u;
}

// d[16×8] += a[16×16] · b[16×8] (mma.sync m16n8k16): bf16 (or, _f16, f16) fragments — a row-major
// (a[0..3]), b column-major (b0, b1) — and fp32 accumulators.
#define KVRUN_MMA_16816(name, type)                                                                    \
  __device__ __forceinline__ void name(float (&d)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) { \
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32." type "." type                                \
                 ".f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, {%0, %1, %2, %3};"                \
                 : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])                                       \
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));                       \
  }
KVRUN_MMA_16816(mma_bf16_16816, "bf16")
KVRUN_MMA_16816(mma_f16_16816, "f16")
#undef KVRUN_MMA_16816

}  // namespace kvrun::cuda_plugin
