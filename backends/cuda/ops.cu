// kvrun CUDA backend — CudaOps: construction, workspace, and the elementwise / row ops
// (rms_norm, add, silu_mul, rope, scale_rows, embedding, gather_rows, convert).
// matmul is in matmul.cu, sample in sample.cu.
//
// Numerics follow the CPU reference: fp32 arithmetic, IEEE division and square root (no fast-math),
// and the products of rope/silu/rms_norm rounded one at a time where PyTorch rounds them.
#include <algorithm>
#include <cstdlib>
#include <cmath>
#include <string>
#include <type_traits>

#include "cuda_backend.cuh"
#include "gemm_small_m.cuh"
#include "kvrun/random.hpp"
#include "kernel_common.cuh"

namespace kvrun::cuda {

// ---------------------------------------------------------------------------------------------
// CudaOps: construction and workspace

CudaOps::CudaOps(CudaDevice& dev) : dev_(dev) {
  ScopedDevice guard(dev_.index());
  KVRUN_CUDA_CHECK(cudaDeviceGetAttribute(&sm_count_, cudaDevAttrMultiProcessorCount, dev_.index()));
  pdl_ = cuda_plugin::pdl_enabled(dev_.index());  // the plugins' rule: sm_90+, KVRUN_CUDA_PDL not 0
  gemv_max_rows_ = cuda_plugin::env_int("KVRUN_CUDA_GEMV_MAX_ROWS", 0, kGemvMaxRows, gemv_max_rows_);
  tc_gemm_max_rows_ = cuda_plugin::env_int("KVRUN_CUDA_TC_GEMM_MAX_ROWS", 0, kSmallMGemmMaxRows, tc_gemm_max_rows_);
  tc_splits_ = cuda_plugin::env_int("KVRUN_CUDA_TC_SPLITK", 1, kSmallMGemmMaxSplits, tc_splits_);
  fuse_ = cuda_plugin::env_int("KVRUN_CUDA_FUSE", 0, 1, 1) == 1;
  gemv_ring_ = cuda_plugin::env_int("KVRUN_CUDA_GEMV_RING", 0, 6, gemv_ring_);
  if (gemv_ring_ != 0 && gemv_ring_ != 4 && gemv_ring_ != 6)
    throw Error(ErrorKind::usage, "KVRUN_CUDA_GEMV_RING=" + std::to_string(gemv_ring_) + ": use 0 (off), 4 or 6 (stages)");
  defer_norm_ = cuda_plugin::env_int("KVRUN_CUDA_DEFER_NORM", 0, 1, 1) == 1;
  gemv_min_waves_pct_ = cuda_plugin::env_int("KVRUN_CUDA_GEMV_MIN_WAVES_PCT", 10, 400, gemv_min_waves_pct_);
  lt_bias_ = cuda_plugin::env_int("KVRUN_CUDA_LT_BIAS", 0, 1, 1) == 1;
  lt_tune_ = cuda_plugin::env_int("KVRUN_CUDA_LT_TUNE", 0, 1, 1) == 1;
  lt_tune_log_ = cuda_plugin::env_int("KVRUN_CUDA_LT_TUNE_LOG", 0, 1, 0) == 1;
  KVRUN_CUDA_CHECK(cudaDeviceGetAttribute(&l2_bytes_, cudaDevAttrL2CacheSize, dev_.index()));
  KVRUN_CUBLAS_CHECK(cublasCreate(&cublas_));
  KVRUN_CUBLAS_CHECK(cublasSetStream(cublas_, dev_.stream()));
  // Plain fp32 SGEMM for f32 weights (no TF32); bf16/f16 GEMMs pick tensor cores themselves.
  KVRUN_CUBLAS_CHECK(cublasSetMathMode(cublas_, CUBLAS_DEFAULT_MATH));
  // A fixed cuBLAS workspace (NVIDIA recommends 32 MiB on Hopper) so cuBLAS never allocates during
  // graph capture.
  cublas_ws_bytes_ = size_t(32) << 20;
  check(dev_.allocate(cublas_ws_bytes_, MemCategory::workspace, &cublas_ws_));
  KVRUN_CUBLAS_CHECK(cublasSetWorkspace(cublas_, cublas_ws_, cublas_ws_bytes_));
  // cuBLASLt (bf16 GEMMs: timed algorithms, the f32 bias in the epilogue): the same workspace,
  // passed per call.
  if (lt_bias_ || lt_tune_) KVRUN_CUBLAS_CHECK(cublasLtCreate(&cublaslt_));
}

CudaOps::~CudaOps() {
  try {
    ScopedDevice guard(dev_.index());
    (void)cudaStreamSynchronize(dev_.stream());
    if (cublas_) cublasDestroy(cublas_);
    for (auto& [key, plan] : lt_plans_) lt_destroy(plan);
    if (cublaslt_) cublasLtDestroy(cublaslt_);
  } catch (...) {
  }
  if (cublas_ws_) dev_.deallocate(cublas_ws_, cublas_ws_bytes_, MemCategory::workspace);
  if (ws_) dev_.deallocate(ws_, ws_bytes_, MemCategory::workspace);
  for (auto& [p, n] : retired_ws_) dev_.deallocate(p, n, MemCategory::workspace);
}

cudaStream_t CudaOps::stream() const noexcept { return dev_.stream(); }

void* CudaOps::workspace(size_t bytes, const char* op) {
  cudaStreamCaptureStatus cap = cudaStreamCaptureStatusNone;
  KVRUN_CUDA_CHECK(cudaStreamIsCapturing(stream(), &cap));
  if (cap != cudaStreamCaptureStatusNone) {
    if (bytes > ws_bytes_)
      throw Error(ErrorKind::device,
                  std::string("cuda ") + op + ": needs " + format_bytes(bytes) + " of workspace but only " +
                      format_bytes(ws_bytes_) +
                      " is reserved and a CUDA graph is being captured (no allocation allowed): run the same "
                      "step once outside capture first so the workspace grows");
    ws_in_graph_ = true;  // a graph now holds this pointer
    return ws_;
  }
  if (bytes <= ws_bytes_) return ws_;
  // Grow by at least 1.5x to keep growth steps few. The old block returns to the caching pool
  // (work still queued on the single stream that reads it runs before anything that reuses it) —
  // unless a captured graph refers to it: then it stays allocated as long as these Ops live.
  size_t want = std::max(bytes, ws_bytes_ + ws_bytes_ / 2);
  void* p = nullptr;
  check(dev_.allocate(want, MemCategory::workspace, &p));
  if (ws_) {
    if (ws_in_graph_)
      retired_ws_.emplace_back(ws_, ws_bytes_);
    else
      dev_.deallocate(ws_, ws_bytes_, MemCategory::workspace);
  }
  ws_ = p;
  ws_bytes_ = want;
  ws_in_graph_ = false;
  return ws_;
}

// ---------------------------------------------------------------------------------------------
// rms_norm

// One block per row, D ≤ kNormPerThread · blockDim kept in registers between the two passes
// (larger rows re-read the rest).
//   kAdd = false (rms_norm):     y[M, D] = x[M, D] / sqrt(mean(x²) + eps) · w[D]; y may alias x.
//   kAdd = true  (add_rms_norm): x[M, D] += delta[M, D], then y = rms_norm(x) · w; delta may alias y
//     (each element of delta is read before the reduction's barrier and y written after it, by
//     the same thread). Same roundings as add_kernel then rms_norm_kernel, same summation order.
// Launched with programmatic dependent launch where available: it waits for the previous kernel
// (whose output it reads) before its first load, and lets the next kernel (a GEMV that prefetches
// its weights) start at once.
// Y = __nv_bfloat16 (matmul_fused's cuBLAS path, kAdd = false): y is rounded to bf16 once, as
// rms_norm then the matmul's f32 → bf16 conversion would round it.
constexpr int kNormPerThread = 8;
template <class W, bool kAdd, class Y = float>
__global__ void rms_norm_kernel(float* x, const float* delta, Y* y, const W* __restrict__ w, int D, float eps) {
  __shared__ float scratch[32];
  // The weights do not come from the previous kernel: read them before waiting for it.
  float wv[kNormPerThread];
#pragma unroll
  for (int j = 0; j < kNormPerThread; ++j) {
    const int i = threadIdx.x + j * blockDim.x;
    wv[j] = i < D ? to_f32(w[i]) : 0.f;
  }
  pdl_trigger();  // the next kernel may launch now: it waits for this one's end before it reads
  pdl_wait();
  const int64_t row = blockIdx.x;
  float* xr = x + row * D;
  const float* dr = kAdd ? delta + row * D : nullptr;
  Y* yr = y + row * D;
  float v[kNormPerThread];
  float ss = 0.f;
#pragma unroll
  for (int j = 0; j < kNormPerThread; ++j) {
    const int i = threadIdx.x + j * blockDim.x;
    v[j] = 0.f;
    if (i < D) {
      float a = xr[i];
      if constexpr (kAdd) {
        a = __fadd_rn(a, dr[i]);
        xr[i] = a;
      }
      v[j] = a;
      ss = __fadd_rn(ss, __fmul_rn(a, a));
    }
  }
  for (int i = threadIdx.x + kNormPerThread * blockDim.x; i < D; i += blockDim.x) {
    float a = xr[i];
    if constexpr (kAdd) {
      a = __fadd_rn(a, dr[i]);
      xr[i] = a;
    }
    ss = __fadd_rn(ss, __fmul_rn(a, a));
  }
  ss = block_sum(ss, scratch);
  const float inv = 1.0f / sqrtf(ss / float(D) + eps);
#pragma unroll
  for (int j = 0; j < kNormPerThread; ++j) {
    const int i = threadIdx.x + j * blockDim.x;
    if (i < D) yr[i] = from_f32<Y>(__fmul_rn(__fmul_rn(v[j], inv), wv[j]));
  }
  for (int i = threadIdx.x + kNormPerThread * blockDim.x; i < D; i += blockDim.x)
    yr[i] = from_f32<Y>(__fmul_rn(__fmul_rn(xr[i], inv), to_f32(w[i])));
}

inline int norm_threads(int64_t D) { return D >= 4096 ? 1024 : D >= 1024 ? 512 : 256; }

Status CudaOps::rms_norm(TensorView y, TensorView x, TensorView w, float eps) noexcept {
  return guard([&] {
    require_device(y, "rms_norm", "y");
    require_device(x, "rms_norm", "x");
    require_device(w, "rms_norm", "w");
    require(x.dtype == DType::f32 && y.dtype == DType::f32, "cuda rms_norm: x and y must be f32");
    const int64_t M = x.rows(), D = x.cols();
    require(y.rows() == M && y.cols() == D,
            "cuda rms_norm: y " + y.shape_string() + " does not match x " + x.shape_string());
    require(w.numel() == D, "cuda rms_norm: w " + w.shape_string() + " must have " + std::to_string(D) + " elements");
    if (M == 0 || D == 0) return;
    ScopedDevice g(dev_.index());
    KVRUN_CUDA_DISPATCH_FLOAT(w.dtype, W, "cuda rms_norm w",
        launch_maybe_pdl(pdl_, stream(), dim3(unsigned(M)), dim3(norm_threads(D)), 0, rms_norm_kernel<W, false>,
                         x.as<float>(), static_cast<const float*>(nullptr), y.as<float>(), w.as<const W>(), int(D),
                         eps));
    KVRUN_CUDA_CHECK_LAUNCH("rms_norm_kernel");
  });
}

Status CudaOps::add_rms_norm(TensorView x, TensorView delta, TensorView y, TensorView w, float eps) noexcept {
  return guard([&] {
    require_device(x, "add_rms_norm", "x");
    require_device(delta, "add_rms_norm", "delta");
    require_device(y, "add_rms_norm", "y");
    require_device(w, "add_rms_norm", "w");
    require(x.dtype == DType::f32 && delta.dtype == DType::f32 && y.dtype == DType::f32,
            "cuda add_rms_norm: x, delta and y must be f32");
    const int64_t M = x.rows(), D = x.cols();
    require(y.rows() == M && y.cols() == D && delta.rows() == M && delta.cols() == D,
            "cuda add_rms_norm: x " + x.shape_string() + ", delta " + delta.shape_string() + " and y " +
                y.shape_string() + " must have the same shape");
    require(y.data != x.data && delta.data != x.data, "cuda add_rms_norm: y and delta must not alias x");
    require(w.numel() == D, "cuda add_rms_norm: w " + w.shape_string() + " must have " + std::to_string(D) +
                                " elements");
    if (M == 0 || D == 0) return;
    ScopedDevice g(dev_.index());
    KVRUN_CUDA_DISPATCH_FLOAT(w.dtype, W, "cuda add_rms_norm w",
        launch_maybe_pdl(pdl_, stream(), dim3(unsigned(M)), dim3(norm_threads(D)), 0, rms_norm_kernel<W, true>,
                         x.as<float>(), delta.as<const float>(), y.as<float>(), w.as<const W>(), int(D), eps));
    KVRUN_CUDA_CHECK_LAUNCH("add_rms_norm_kernel");
  });
}

// out[m, f] = silu(gu[m, f]) * gu[m, F + f]  (flat over M·F; same formula as silu_mul_kernel)
// O = __nv_bfloat16: matmul_fused's cuBLAS path (rounded once, like swiglu then the f32 → bf16 step).
template <class I, class O = float>  // I: int where M·2F < 2^31 (cheaper division), else int64_t
__global__ void swiglu_kernel(O* __restrict__ out, const float* __restrict__ gu, I F, I n) {
  pdl_trigger();  // the next kernel may launch now: it waits for this one's end before it reads
  pdl_wait();  // launched with programmatic dependent launch: gu comes from the previous kernel
  for (I i = blockIdx.x * I(blockDim.x) + threadIdx.x; i < n; i += I(gridDim.x) * blockDim.x) {
    const I m = i / F, f = i - m * F;
    const float g = gu[m * 2 * F + f];
    const float s = g / (1.0f + expf(-g));
    out[i] = from_f32<O>(__fmul_rn(s, gu[m * 2 * F + F + f]));
  }
}

// The same four outputs at a time (F % 4 == 0, gu 16-byte and out 16-byte (f32) or 8-byte (bf16)
// aligned, M·F/4 < 2^31): 16-byte loads, a 32-bit index. Same formula per element.
template <class O>
__global__ void swiglu4_kernel(O* __restrict__ out, const float4* __restrict__ gu, int F4, int n4) {
  pdl_trigger();  // the next kernel may launch now: it waits for this one's end before it reads
  pdl_wait();  // gu comes from the previous kernel
  for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n4; i += gridDim.x * blockDim.x) {
    const int m = i / F4, f4 = i - m * F4;
    const float4 g = gu[int64_t(m) * 2 * F4 + f4], u = gu[int64_t(m) * 2 * F4 + F4 + f4];
    const float r[4] = {__fmul_rn(g.x / (1.0f + expf(-g.x)), u.x), __fmul_rn(g.y / (1.0f + expf(-g.y)), u.y),
                        __fmul_rn(g.z / (1.0f + expf(-g.z)), u.z), __fmul_rn(g.w / (1.0f + expf(-g.w)), u.w)};
    if constexpr (std::is_same_v<O, float>)
      reinterpret_cast<float4*>(out)[i] = make_float4(r[0], r[1], r[2], r[3]);
    else
      reinterpret_cast<uint2*>(out)[i] = make_uint2(pack_bf16x2(r[0], r[1]), pack_bf16x2(r[2], r[3]));
  }
}

// out[M, F] (f32 or bf16) = swiglu(gu[M, 2F]): the vector kernel where the shapes allow it.
template <class O>
void launch_swiglu(bool pdl, cudaStream_t st, O* out, const float* gu, int64_t M, int64_t F) {
  const int64_t n = M * F;
  const auto aligned = [](const void* p, uintptr_t a) { return reinterpret_cast<uintptr_t>(p) % a == 0; };
  if (F % 4 == 0 && aligned(gu, 16) && aligned(out, 4 * sizeof(O)) && n / 4 < (int64_t(1) << 31))
    launch_maybe_pdl(pdl, st, dim3(grid_for(n / 4, 256)), dim3(256), 0, swiglu4_kernel<O>, out,
                     reinterpret_cast<const float4*>(gu), int(F / 4), int(n / 4));
  else if (2 * n < (int64_t(1) << 31))
    launch_maybe_pdl(pdl, st, dim3(grid_for(n, 256)), dim3(256), 0, swiglu_kernel<int, O>, out, gu, int(F), int(n));
  else
    launch_maybe_pdl(pdl, st, dim3(grid_for(n, 256)), dim3(256), 0, swiglu_kernel<int64_t, O>, out, gu, F, n);
  KVRUN_CUDA_CHECK_LAUNCH("swiglu_kernel");
}

void launch_rms_norm_bf16(bool pdl, cudaStream_t st, __nv_bfloat16* y, const float* x, const void* w, DType w_dtype,
                          int64_t M, int64_t D, float eps) {
  KVRUN_CUDA_DISPATCH_FLOAT(w_dtype, W, "cuda matmul_fused norm_w",
      launch_maybe_pdl(pdl, st, dim3(unsigned(M)), dim3(norm_threads(D)), 0, rms_norm_kernel<W, false, __nv_bfloat16>,
                       const_cast<float*>(x), static_cast<const float*>(nullptr), y, static_cast<const W*>(w), int(D),
                       eps));
  KVRUN_CUDA_CHECK_LAUNCH("rms_norm_kernel<bf16 out>");
}

void launch_swiglu_bf16(bool pdl, cudaStream_t st, __nv_bfloat16* out, const float* gu, int64_t M, int64_t F) {
  launch_swiglu(pdl, st, out, gu, M, F);
}

Status CudaOps::swiglu(TensorView out, TensorView gate_up) noexcept {
  return guard([&] {
    require_device(out, "swiglu", "out");
    require_device(gate_up, "swiglu", "gate_up");
    require(out.dtype == DType::f32 && gate_up.dtype == DType::f32, "cuda swiglu: f32 only");
    const int64_t M = out.rows(), F = out.cols();
    require(gate_up.rows() == M && gate_up.cols() == 2 * F,
            "cuda swiglu: gate_up " + gate_up.shape_string() + " must be [" + std::to_string(M) + ", " +
                std::to_string(2 * F) + "] for out " + out.shape_string());
    require(out.data != gate_up.data, "cuda swiglu: out must not alias gate_up");
    if (M * F == 0) return;
    ScopedDevice g(dev_.index());
    launch_swiglu(pdl_, stream(), out.as<float>(), gate_up.as<const float>(), M, F);
  });
}

// dst[i][m, c - off_i] = src[m, c] for off_i ≤ c < off_i + C_i.  Flat over M·C.
struct SplitDsts {
  float* p[4];
  int64_t off[5];  // column offsets, off[n] = C
  int n;
};
// The same with 16-byte copies and 32-bit indexing: every width a multiple of 4, every pointer
// 16-byte aligned, M·C < 2^31.  Flat over M·C/4.
__global__ void split_cols4_kernel(const float4* __restrict__ src, SplitDsts d, int C4, int total4) {
  for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < total4; i += gridDim.x * blockDim.x) {
    const int m = i / C4, c = (i - m * C4) * 4;
    int j = 0;
    while (j + 1 < d.n && c >= int(d.off[j + 1])) ++j;
    const int w = int(d.off[j + 1] - d.off[j]);
    *reinterpret_cast<float4*>(d.p[j] + int64_t(m) * w + (c - int(d.off[j]))) = src[i];
  }
}

__global__ void split_cols_kernel(const float* __restrict__ src, SplitDsts d, int64_t C, int64_t total) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < total; i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t m = i / C, c = i - m * C;
    int j = 0;
    while (j + 1 < d.n && c >= d.off[j + 1]) ++j;
    const int64_t w = d.off[j + 1] - d.off[j];
    d.p[j][m * w + (c - d.off[j])] = src[i];
  }
}

Status CudaOps::split_cols(TensorView src, const TensorView* dsts, int n) noexcept {
  return guard([&] {
    require_device(src, "split_cols", "src");
    require(src.dtype == DType::f32, "cuda split_cols: f32 only");
    require(n >= 1 && n <= 4, "cuda split_cols: 1 to 4 destinations, got " + std::to_string(n));
    const int64_t M = src.rows(), C = src.cols();
    SplitDsts d{};
    d.n = n;
    d.off[0] = 0;
    for (int i = 0; i < n; ++i) {
      require_device(dsts[i], "split_cols", "dst");
      require(dsts[i].dtype == DType::f32 && dsts[i].rows() == M,
              "cuda split_cols: destination " + std::to_string(i) + " " + dsts[i].shape_string() + " must be f32 with " +
                  std::to_string(M) + " rows");
      d.p[i] = dsts[i].as<float>();
      d.off[i + 1] = d.off[i] + dsts[i].cols();
    }
    require(d.off[n] == C, "cuda split_cols: destination widths sum to " + std::to_string(d.off[n]) + ", src " +
                               src.shape_string() + " has " + std::to_string(C) + " columns");
    const int64_t total = M * C;
    if (!total) return;
    ScopedDevice g(dev_.index());
    bool vec = total < (int64_t(1) << 31) && reinterpret_cast<uintptr_t>(src.data) % 16 == 0;
    for (int i = 0; i < n; ++i)
      vec = vec && dsts[i].cols() % 4 == 0 && reinterpret_cast<uintptr_t>(dsts[i].data) % 16 == 0;
    if (vec) {
      split_cols4_kernel<<<grid_for(total / 4, 256), 256, 0, stream()>>>(
          reinterpret_cast<const float4*>(src.data), d, int(C / 4), int(total / 4));
      KVRUN_CUDA_CHECK_LAUNCH("split_cols4_kernel");
    } else {
      split_cols_kernel<<<grid_for(total, 256), 256, 0, stream()>>>(src.as<const float>(), d, C, total);
      KVRUN_CUDA_CHECK_LAUNCH("split_cols_kernel");
    }
  });
}

// ---------------------------------------------------------------------------------------------
// fill_random: element i = f(seed, i), the same function as the CPU backend (kvrun/random.hpp)

// dst: [n] elements of dtype t
__global__ void fill_random_kernel(void* dst, DType t, int64_t n, float scale, uint64_t seed) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    const uint64_t u = uint64_t(i);
    switch (t) {
      case DType::f32: static_cast<float*>(dst)[i] = random_uniform(seed, u, scale); break;
      case DType::bf16: static_cast<uint16_t*>(dst)[i] = f32_to_bf16(random_uniform(seed, u, scale)); break;
      case DType::f16: static_cast<uint16_t*>(dst)[i] = f32_to_f16(random_uniform(seed, u, scale)); break;
      case DType::i32: static_cast<uint32_t*>(dst)[i] = uint32_t(random_bits(seed, u)); break;
      default: static_cast<uint8_t*>(dst)[i] = uint8_t(random_bits(seed, u)); break;
    }
  }
}

Status CudaOps::fill_random(TensorView dst, float scale, uint64_t seed) noexcept {
  return guard([&] {
    require_device(dst, "fill_random", "dst");
    const int64_t n = dst.numel();
    if (!n) return;
    ScopedDevice g(dev_.index());
    fill_random_kernel<<<grid_for(n, 256), 256, 0, stream()>>>(dst.data, dst.dtype, n, scale, seed);
    KVRUN_CUDA_CHECK_LAUNCH("fill_random_kernel");
  });
}

// ---------------------------------------------------------------------------------------------
// add, silu_mul, scale_rows

// y[n] = a[n] + b[n] (flat; y may alias a or b)
__global__ void add_kernel(float* y, const float* a, const float* b, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    y[i] = a[i] + b[i];
}

Status CudaOps::add(TensorView y, TensorView a, TensorView b) noexcept {
  return guard([&] {
    require_device(y, "add", "y");
    require_device(a, "add", "a");
    require_device(b, "add", "b");
    require(y.dtype == DType::f32 && a.dtype == DType::f32 && b.dtype == DType::f32, "cuda add: f32 only");
    require(a.numel() == b.numel() && y.numel() == a.numel(),
            "cuda add: shapes differ: y " + y.shape_string() + ", a " + a.shape_string() + ", b " + b.shape_string());
    const int64_t n = y.numel();
    if (!n) return;
    ScopedDevice g(dev_.index());
    add_kernel<<<grid_for(n, 256), 256, 0, stream()>>>(y.as<float>(), a.as<float>(), b.as<float>(), n);
    KVRUN_CUDA_CHECK_LAUNCH("add_kernel");
  });
}

// out[n] = silu(gate[n]) * up[n],  silu(g) = g / (1 + exp(-g))  (flat; out may alias gate or up)
__global__ void silu_mul_kernel(float* out, const float* gate, const float* up, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    const float g = gate[i];
    const float s = g / (1.0f + expf(-g));
    out[i] = s * up[i];
  }
}

Status CudaOps::silu_mul(TensorView out, TensorView gate, TensorView up) noexcept {
  return guard([&] {
    require_device(out, "silu_mul", "out");
    require_device(gate, "silu_mul", "gate");
    require_device(up, "silu_mul", "up");
    require(out.dtype == DType::f32 && gate.dtype == DType::f32 && up.dtype == DType::f32,
            "cuda silu_mul: f32 only");
    require(gate.numel() == up.numel() && out.numel() == gate.numel(),
            "cuda silu_mul: shapes differ: out " + out.shape_string() + ", gate " + gate.shape_string() + ", up " +
                up.shape_string());
    const int64_t n = out.numel();
    if (!n) return;
    ScopedDevice g(dev_.index());
    silu_mul_kernel<<<grid_for(n, 256), 256, 0, stream()>>>(out.as<float>(), gate.as<float>(), up.as<float>(), n);
    KVRUN_CUDA_CHECK_LAUNCH("silu_mul_kernel");
  });
}

// x[T, C] *= factors[T]  (one block per row t)
__global__ void scale_rows_kernel(float* x, const float* __restrict__ factors, int64_t C) {
  const int64_t t = blockIdx.x;
  const float f = factors[t];
  float* xr = x + t * C;
  for (int64_t i = threadIdx.x; i < C; i += blockDim.x) xr[i] = xr[i] * f;
}

Status CudaOps::scale_rows(TensorView x, const float* factors) noexcept {
  return guard([&] {
    require_device(x, "scale_rows", "x");
    require(x.dtype == DType::f32, "cuda scale_rows: x must be f32");
    require(factors != nullptr, "cuda scale_rows: factors is null");
    const int64_t T = x.rows(), C = x.cols();
    if (!T || !C) return;
    require(T <= INT32_MAX, "cuda scale_rows: more than 2^31 rows");
    ScopedDevice g(dev_.index());
    scale_rows_kernel<<<unsigned(T), 256, 0, stream()>>>(x.as<float>(), factors, C);
    KVRUN_CUDA_CHECK_LAUNCH("scale_rows_kernel");
  });
}

// ---------------------------------------------------------------------------------------------
// rope

// cos and sin of RoPE angle i (of rot_dim/2) at position pos with base b: inv_freq in float32
// exactly as transformers computes it, the angle rounded once, then the correctly rounded cosf/sinf.
__device__ __forceinline__ void rope_cos_sin(float b, float pos, int i, int rot_dim, float* c, float* s) {
  const float expo = float(2 * i) / float(rot_dim);
  const float pw = float(pow(double(b), double(expo)));
  const float inv_freq = 1.0f / pw;
  const float angle = __fmul_rn(pos, inv_freq);
  double sd, cd;
  sincos(double(angle), &sd, &cd);
  *c = float(cd);
  *s = float(sd);
}

// Rotates the pair (xh[i], xh[i + half]) by the angle with cosine c and sine s into (dh[i],
// dh[i + half]); dh may be xh (in place).
__device__ __forceinline__ void rotate_pair(const float* xh, float* dh, int i, int half, float c, float s) {
  const float x1 = xh[i], x2 = xh[i + half];
  dh[i] = __fsub_rn(__fmul_rn(x1, c), __fmul_rn(x2, s));
  dh[i + half] = __fadd_rn(__fmul_rn(x2, c), __fmul_rn(x1, s));
}

// Rotary embedding (NeoX rotate-half) in place on x[T, H, D] over the first rot_dim dims.
//   positions: [T] i32, bases: [T] f32 or null (then `base` for every token).
// One block per token t. For i < half = rot_dim/2 (PyTorch's float32 recipe):
//   inv_freq_i = 1 / base_t^(float(2i) / rot_dim)   (float32: the power is computed in double and
//                                                      rounded once, i.e. the correctly rounded powf)
//   angle_i    = float(pos_t) * inv_freq_i          (float32 product)
//   c, s       = cos(angle_i), sin(angle_i)         (float32 results, computed in double and rounded
//                                                      once: the correctly rounded cosf/sinf)
//   x1' = x1·c − x2·s,  x2' = x2·c + x1·s           with x1 = x[t,h,i], x2 = x[t,h,i+half]
// Shared memory: 2·half floats (cos, sin).
__global__ void rope_kernel(float* x, const int32_t* __restrict__ positions, const float* __restrict__ bases,
                            float base, int H, int D, int rot_dim) {
  extern __shared__ float cs[];  // [half] cos, then [half] sin
  const int half = rot_dim / 2;
  const int64_t t = blockIdx.x;
  const float b = bases ? bases[t] : base;
  const float pos = float(positions[t]);
  for (int i = threadIdx.x; i < half; i += blockDim.x) rope_cos_sin(b, pos, i, rot_dim, &cs[i], &cs[half + i]);
  __syncthreads();
  float* xt = x + t * int64_t(H) * D;
  for (int j = threadIdx.x; j < H * half; j += blockDim.x) {
    const int h = j / half, i = j - h * half;
    rotate_pair(xt + int64_t(h) * D, xt + int64_t(h) * D, i, half, cs[i], cs[half + i]);
  }
}

// cs[t, i] = cos, cs[t, half + i] = sin of rope_kernel's angle i for token t.  grid T, threads over half.
__global__ void rope_table_kernel(float* cs, const int32_t* __restrict__ positions, const float* __restrict__ bases,
                                  float base, int rot_dim) {
  const int half = rot_dim / 2;
  const int64_t t = blockIdx.x;
  const float b = bases ? bases[t] : base;
  const float pos = float(positions[t]);
  for (int i = threadIdx.x; i < half; i += blockDim.x)
    rope_cos_sin(b, pos, i, rot_dim, &cs[t * rot_dim + i], &cs[t * rot_dim + half + i]);
}

// x[T, H, D] rotated with cs[T, rot_dim] (rope_kernel's second half).  grid (T, y-blocks over H·half).
__global__ void rope_apply_kernel(float* x, const float* __restrict__ cs, int H, int D, int rot_dim) {
  pdl_trigger();  // the next kernel may launch now: it waits for this one's end before it reads
  pdl_wait();  // launched with programmatic dependent launch: x comes from the previous kernel
  const int half = rot_dim / 2;
  const int64_t t = blockIdx.x;
  float* xt = x + t * int64_t(H) * D;
  const float* ct = cs + t * rot_dim;
  for (int j = blockIdx.y * blockDim.x + threadIdx.x; j < H * half; j += gridDim.y * blockDim.x) {
    const int h = j / half, i = j - h * half;
    rotate_pair(xt + int64_t(h) * D, xt + int64_t(h) * D, i, half, ct[i], ct[half + i]);
  }
}

Status CudaOps::rope_table(TensorView cs, const int32_t* positions, const float* bases, float base) noexcept {
  return guard([&] {
    require_device(cs, "rope_table", "cs");
    require(cs.dtype == DType::f32, "cuda rope_table: cs must be f32");
    const int64_t T = cs.rows(), rot = cs.cols();
    require(rot > 0 && rot % 2 == 0, "cuda rope_table: cs " + cs.shape_string() + " must be [T, rot_dim], rot_dim even");
    require(T == 0 || positions != nullptr, "cuda rope_table: positions is null");
    require(bases != nullptr || base > 0.f, "cuda rope_table: base must be > 0");
    if (T == 0) return;
    require(T <= INT32_MAX, "cuda rope_table: more than 2^31 tokens");
    ScopedDevice g(dev_.index());
    rope_table_kernel<<<unsigned(T), 64, 0, stream()>>>(cs.as<float>(), positions, bases, base, int(rot));
    KVRUN_CUDA_CHECK_LAUNCH("rope_table_kernel");
  });
}

Status CudaOps::rope_apply(TensorView x, TensorView cs) noexcept {
  return guard([&] {
    require_device(x, "rope_apply", "x");
    require_device(cs, "rope_apply", "cs");
    require(x.dtype == DType::f32 && cs.dtype == DType::f32, "cuda rope_apply: f32 only");
    require(x.rank == 3, "cuda rope_apply: x " + x.shape_string() + " must be [T, H, D]");
    const int64_t T = x.shape[0], H = x.shape[1], D = x.shape[2], rot = cs.cols();
    require(cs.rows() == T && rot > 0 && rot % 2 == 0 && rot <= D,
            "cuda rope_apply: cs " + cs.shape_string() + " must be [T, rot_dim] (rot_dim even, ≤ D) for x " +
                x.shape_string());
    if (T == 0 || H == 0) return;
    require(T <= INT32_MAX, "cuda rope_apply: more than 2^31 tokens");
    ScopedDevice g(dev_.index());
    const int64_t pairs = H * (rot / 2);
    const int threads = 256;
    // enough blocks per token that a single token (decode) still spreads over several SMs
    const unsigned ys = unsigned(std::min<int64_t>((pairs + threads - 1) / threads, T >= 64 ? 1 : 16));
    launch_maybe_pdl(pdl_, stream(), dim3(unsigned(T), ys), dim3(threads), 0, rope_apply_kernel, x.as<float>(),
                     cs.as<const float>(), int(H), int(D), int(rot));
    KVRUN_CUDA_CHECK_LAUNCH("rope_apply_kernel");
  });
}

// q, k rotated and v copied out of a fused projection's rows (split_cols + rope_apply in one pass).
//   qkv [T, (Hq + Hk + Hv)·D], q [T, Hq, D], k [T, Hk, D], v [T, Hv, D], cs [T, rot_dim] — f32.
// grid (T, y-blocks): each thread takes pairs (head h < Hq + Hk, i < half) — both elements of a
// rotated pair — then the rest of those heads' dims (i ≥ rot_dim) and v as plain copies.
__global__ void split_rope_kernel(const float* __restrict__ qkv, float* __restrict__ q, float* __restrict__ k,
                                  float* __restrict__ v, const float* __restrict__ cs, int Hq, int Hk, int Hv, int D,
                                  int rot_dim) {
  pdl_trigger();  // the next kernel may launch now: it waits for this one's end before it reads
  pdl_wait();  // qkv comes from the previous kernel; q, k, v may still be read by an earlier one
  const int half = rot_dim / 2, C = (Hq + Hk + Hv) * D;
  const int64_t t = blockIdx.x;
  const float* src = qkv + t * C;
  const float* ct = cs + t * rot_dim;
  const int stride = gridDim.y * blockDim.x;
  const int first = blockIdx.y * blockDim.x + threadIdx.x;
  for (int j = first; j < (Hq + Hk) * half; j += stride) {
    const int h = j / half, i = j - h * half;
    float* dh = h < Hq ? q + (t * Hq + h) * D : k + (t * Hk + (h - Hq)) * D;
    rotate_pair(src + h * D, dh, i, half, ct[i], ct[half + i]);
  }
  const int tail = D - rot_dim;  // q/k dims past rot_dim (partial rotary)
  for (int j = first; j < (Hq + Hk) * tail; j += stride) {
    const int h = j / tail, i = rot_dim + (j - h * tail);
    float* dh = h < Hq ? q + (t * Hq + h) * D : k + (t * Hk + (h - Hq)) * D;
    dh[i] = src[h * D + i];
  }
  const float* vs = src + (Hq + Hk) * D;
  float* vt = v + t * Hv * D;
  for (int j = first; j < Hv * D; j += stride) vt[j] = vs[j];
}

Status CudaOps::split_rope(TensorView qkv, TensorView q, TensorView k, TensorView v, TensorView cs) noexcept {
  return guard([&] {
    for (const TensorView* t : {&qkv, &q, &k, &v, &cs}) {
      require_device(*t, "split_rope", "qkv/q/k/v/cs");
      require(t->dtype == DType::f32, "cuda split_rope: f32 only");
    }
    require(q.rank == 3 && k.rank == 3 && v.rank == 3, "cuda split_rope: q, k, v must be [T, heads, D]");
    const int64_t T = q.shape[0], D = q.shape[2], rot = cs.cols();
    const int64_t Hq = q.shape[1], Hk = k.shape[1], Hv = v.shape[1], C = (Hq + Hk + Hv) * D;
    require(k.shape[0] == T && v.shape[0] == T && k.shape[2] == D && v.shape[2] == D,
            "cuda split_rope: q " + q.shape_string() + ", k " + k.shape_string() + ", v " + v.shape_string() +
                " must share T and D");
    require(qkv.rows() == T && qkv.cols() == C,
            "cuda split_rope: qkv " + qkv.shape_string() + " must be [" + std::to_string(T) + ", " + std::to_string(C) + "]");
    require(cs.rows() == T && rot > 0 && rot % 2 == 0 && rot <= D,
            "cuda split_rope: cs " + cs.shape_string() + " must be [T, rot_dim] (rot_dim even, ≤ D)");
    if (T == 0) return;
    require(T <= INT32_MAX && C <= INT32_MAX / 2, "cuda split_rope: too large");
    ScopedDevice g(dev_.index());
    const int threads = 256;
    const int64_t work = std::max<int64_t>((Hq + Hk) * (rot / 2), Hv * D);
    // a few blocks per token: batch 64 still gets 512 blocks (2 per token ran at 0.4 TB/s)
    const unsigned ys = unsigned(std::min<int64_t>((work + threads - 1) / threads, T >= 256 ? 2 : 8));
    launch_maybe_pdl(pdl_, stream(), dim3(unsigned(T), ys), dim3(threads), 0, split_rope_kernel, qkv.as<const float>(),
                     q.as<float>(), k.as<float>(), v.as<float>(), cs.as<const float>(), int(Hq), int(Hk), int(Hv),
                     int(D), int(rot));
    KVRUN_CUDA_CHECK_LAUNCH("split_rope_kernel");
  });
}

Status CudaOps::rope(TensorView x, const int32_t* positions, const float* bases, float base, int rot_dim) noexcept {
  return guard([&] {
    require_device(x, "rope", "x");
    require(x.dtype == DType::f32, "cuda rope: x must be f32");
    require(x.rank == 3, "cuda rope: x must be [T, H, D], got " + x.shape_string());
    require(positions != nullptr, "cuda rope: positions is null");
    const int64_t T = x.shape[0], H = x.shape[1], D = x.shape[2];
    require(rot_dim > 0 && rot_dim % 2 == 0 && rot_dim <= D,
            "cuda rope: rot_dim " + std::to_string(rot_dim) + " must be even and in (0, " + std::to_string(D) + "]");
    if (!T || !H) return;
    require(bases != nullptr || base > 0.f, "cuda rope: base must be positive");
    ScopedDevice g(dev_.index());
    const int half = rot_dim / 2;
    const int threads = H * half >= 512 ? 512 : 128;
    rope_kernel<<<unsigned(T), threads, size_t(2 * half) * sizeof(float), stream()>>>(
        x.as<float>(), positions, bases, base, int(H), int(D), rot_dim);
    KVRUN_CUDA_CHECK_LAUNCH("rope_kernel");
  });
}

// ---------------------------------------------------------------------------------------------
// embedding, gather_rows

// out[T, D] (f32) = table[ids[t], :] (table dtype W, [V, D]).  One block per token t; threads over
// D. An id outside [0, V) — a failed sample's −1 in an overlapped step — gives a zero row.
template <class W>
__global__ void embedding_kernel(float* out, const W* __restrict__ table, const int32_t* __restrict__ ids, int64_t V,
                                 int64_t D) {
  const int64_t t = blockIdx.x;
  const int64_t id = ids[t];
  float* dst = out + t * D;
  if (id < 0 || id >= V) {
    for (int64_t i = threadIdx.x; i < D; i += blockDim.x) dst[i] = 0.f;
    return;
  }
  const W* src = table + id * D;
  for (int64_t i = threadIdx.x; i < D; i += blockDim.x) dst[i] = to_f32(src[i]);
}

Status CudaOps::embedding(TensorView out, TensorView table, const int32_t* ids) noexcept {
  return guard([&] {
    require_device(out, "embedding", "out");
    require_device(table, "embedding", "table");
    require(ids != nullptr, "cuda embedding: ids is null");
    require(out.dtype == DType::f32, "cuda embedding: out must be f32");
    const int64_t T = out.rows(), D = out.cols();
    require(table.cols() == D, "cuda embedding: table " + table.shape_string() + " and out " + out.shape_string() +
                                   " differ in width");
    if (!T || !D) return;
    require(T <= INT32_MAX, "cuda embedding: more than 2^31 tokens");
    ScopedDevice g(dev_.index());
    KVRUN_CUDA_DISPATCH_FLOAT(table.dtype, W, "cuda embedding table",
        embedding_kernel<W><<<unsigned(T), 256, 0, stream()>>>(out.as<float>(), table.as<const W>(), ids,
                                                               table.rows(), D));
    KVRUN_CUDA_CHECK_LAUNCH("embedding_kernel");
  });
}

// out[n, row_words] = x[rows[r], :] copied as words of type U (uint4, uint32_t or uint8_t).
// One block per output row r.
template <class U>
__global__ void gather_rows_kernel(U* out, const U* __restrict__ x, const int32_t* __restrict__ rows, int64_t row_words) {
  const int64_t r = blockIdx.x;
  const U* src = x + int64_t(rows[r]) * row_words;
  U* dst = out + r * row_words;
  for (int64_t i = threadIdx.x; i < row_words; i += blockDim.x) dst[i] = src[i];
}

Status CudaOps::gather_rows(TensorView out, TensorView x, const int32_t* rows) noexcept {
  return guard([&] {
    require_device(out, "gather_rows", "out");
    require_device(x, "gather_rows", "x");
    require(rows != nullptr, "cuda gather_rows: rows is null");
    require(out.dtype == x.dtype, "cuda gather_rows: out and x dtypes differ");
    require(out.cols() == x.cols(), "cuda gather_rows: out " + out.shape_string() + " and x " + x.shape_string() +
                                        " differ in width");
    const int64_t n = out.rows();
    const int64_t row_bytes = out.cols() * int64_t(dtype_size(out.dtype));
    if (!n || !row_bytes) return;
    require(n <= INT32_MAX, "cuda gather_rows: more than 2^31 rows");
    ScopedDevice g(dev_.index());
    auto aligned = [&](size_t a) {
      return row_bytes % int64_t(a) == 0 && reinterpret_cast<uintptr_t>(out.data) % a == 0 &&
             reinterpret_cast<uintptr_t>(x.data) % a == 0;
    };
    if (aligned(16)) {
      const int64_t w = row_bytes / 16;
      gather_rows_kernel<uint4><<<unsigned(n), 128, 0, stream()>>>(
          out.as<uint4>(), x.as<const uint4>(), rows, w);
    } else if (aligned(4)) {
      const int64_t w = row_bytes / 4;
      gather_rows_kernel<uint32_t><<<unsigned(n), 256, 0, stream()>>>(
          out.as<uint32_t>(), x.as<const uint32_t>(), rows, w);
    } else {
      gather_rows_kernel<uint8_t><<<unsigned(n), 256, 0, stream()>>>(
          out.as<uint8_t>(), x.as<const uint8_t>(), rows, row_bytes);
    }
    KVRUN_CUDA_CHECK_LAUNCH("gather_rows_kernel");
  });
}

// ---------------------------------------------------------------------------------------------
// convert

// dst[n] (D) = src[n] (S), widening exactly, narrowing with round-to-nearest-even.
template <class D, class S>
__global__ void convert_kernel(D* dst, const S* __restrict__ src, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    dst[i] = from_f32<D>(to_f32(src[i]));
}

Status CudaOps::convert(TensorView dst, TensorView src) noexcept {
  return guard([&] {
    require_device(dst, "convert", "dst");
    require_device(src, "convert", "src");
    require(dst.numel() == src.numel(),
            "cuda convert: dst " + dst.shape_string() + " and src " + src.shape_string() + " differ in size");
    const int64_t n = dst.numel();
    if (!n) return;
    ScopedDevice g(dev_.index());
    if (dst.dtype == src.dtype) {
      KVRUN_CUDA_CHECK(cudaMemcpyAsync(dst.data, src.data, dst.nbytes(), cudaMemcpyDeviceToDevice, stream()));
      return;
    }
    KVRUN_CUDA_DISPATCH_FLOAT(dst.dtype, DT, "cuda convert dst",
        KVRUN_CUDA_DISPATCH_FLOAT(src.dtype, ST, "cuda convert src",
            convert_kernel<DT, ST><<<grid_for(n, 256), 256, 0, stream()>>>(dst.as<DT>(), src.as<const ST>(), n)));
    KVRUN_CUDA_CHECK_LAUNCH("convert_kernel");
  });
}

}  // namespace kvrun::cuda
