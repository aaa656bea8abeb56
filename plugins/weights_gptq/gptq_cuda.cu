// weights.gptq — the CUDA Linear. The packed arrays stay packed in device memory.
//
//  * M ≤ kCudaFusedMaxM (decode): gemv_kernel. A block owns 32 output columns (one per lane, so
//    every word load of a warp is 128 contiguous bytes of qweight) and splits K over its kSlices
//    warps; each thread unpacks its codes in registers, subtracts the group's zero, accumulates
//    x·(q − z) in fp32 per group and scales at every group change; the slices are summed through
//    shared memory (deterministic, no atomics). Every packed byte is read once per step.
//  * larger M (prefill): dequant_kernel expands the layer once per call to an f16 copy Wᵀ [N, Kp]
//    (bf16 for a layer whose |W| could exceed the f16 range) in a workspace shared by the format's
//    Linears, through a shared-memory transpose so both the word reads and the f16 writes are
//    coalesced; then the backend's GEMM (Ops::matmul: cuBLAS on tensor cores with fp32
//    accumulation) multiplies it. W and x are rounded to f16 (bf16) there.
//  * act-order: the rows were sorted by group at load (gptq_pack.cpp); gather_kernel builds
//    x[:, perm] (0 for padding rows) first, and both paths work in the sorted order.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <string>

#include "kvrun/cuda_plugin.cuh"
#include "gptq_cuda.hpp"
#include "kvrun/ops.hpp"

namespace kvrun::gptq {
namespace {

void cuda_check(cudaError_t e, const char* what, int line) {
  if (e != cudaSuccess)
    fail(ErrorKind::device, std::string("weights.gptq (CUDA): ") + what + " failed: " + cudaGetErrorName(e) + " (" +
                                cudaGetErrorString(e) + ") at gptq_cuda.cu:" + std::to_string(line));
}
#define GPTQ_CUDA_CHECK(call) cuda_check((call), #call, __LINE__)
#define GPTQ_CUDA_LAUNCHED(name) cuda_check(cudaGetLastError(), "launch of " name, __LINE__)

// Makes dev current for this thread's CUDA runtime (this module links its own static cudart).
struct DeviceGuard : cuda_plugin::DeviceScope {
  explicit DeviceGuard(int device) : cuda_plugin::DeviceScope(device, "weights.gptq") {}
};

// ---- device code -------------------------------------------------------------------------------

constexpr int kSlices = 16;  // warps per gemv block, each a contiguous slice of the units

// Code j of a unit whose words are w[0 .. unit_words) (a little-endian bit stream; 3-bit codes may
// straddle two words). j is a compile-time constant after unrolling.
template <int BITS>
__device__ __forceinline__ uint32_t code_of(const uint32_t* w, int j) {
  const int bit = BITS * j, wi = bit >> 5, off = bit & 31;
  uint32_t v = w[wi] >> off;
  if (off + BITS > 32) v |= w[wi + 1] << (32 - off);
  return v & ((1u << BITS) - 1u);
}

__device__ __forceinline__ float half_bits_to_float(uint16_t h) { return __half2float(__ushort_as_half(h)); }

// One unit of one column for MB x-rows (M ≤ MB of them real): part[m] += Σ_j x[m, uR + j]·(q_j − z).
template <int BITS, int MB>
__device__ __forceinline__ void unit_dot(const uint32_t* w, float z, const float* __restrict__ xp, int64_t ldx, int M,
                                         float* part) {
  constexpr int R = unit_rows(BITS);
  float q[R];
#pragma unroll
  for (int j = 0; j < R; ++j) q[j] = float(code_of<BITS>(w, j)) - z;
#pragma unroll
  for (int m = 0; m < MB; ++m) {
    if (m < M) {
      const float4* xv = reinterpret_cast<const float4*>(xp + m * ldx);
#pragma unroll
      for (int j = 0; j < R; j += 4) {
        const float4 a = __ldg(xv + j / 4);
        part[m] = fmaf(a.x, q[j], part[m]);
        part[m] = fmaf(a.y, q[j + 1], part[m]);
        part[m] = fmaf(a.z, q[j + 2], part[m]);
        part[m] = fmaf(a.w, q[j + 3], part[m]);
      }
    }
  }
}

// y[M, N] = x[M, Kp] · W + bias for M ≤ MB. x rows 16-byte aligned (ldx a multiple of 4).
template <int BITS, int MB>
__global__ void __launch_bounds__(32 * kSlices)
    gemv_kernel(const uint32_t* __restrict__ qw, const uint16_t* __restrict__ sc, const uint8_t* __restrict__ zp,
                const int32_t* __restrict__ ug, const float* __restrict__ bias, const float* __restrict__ x,
                int64_t ldx, float* __restrict__ y, int M, int64_t N, int64_t units) {
  constexpr int R = unit_rows(BITS), UW = unit_words(BITS), B = 4;  // B units loaded ahead
  __shared__ float red[kSlices][MB][32];
  const int lane = threadIdx.x, slice = threadIdx.y;
  const int64_t n = int64_t(blockIdx.x) * 32 + lane;
  const int64_t per = (units + kSlices - 1) / kSlices;
  const int64_t u0 = min(units, slice * per), u1 = min(units, u0 + per);
  float tot[MB], part[MB];
#pragma unroll
  for (int m = 0; m < MB; ++m) tot[m] = part[m] = 0.f;
  if (n < N) {
    int32_t cur = -1;
    float s = 0.f, z = 0.f;
    int64_t u = u0;
    for (; u < u1; u += B) {
      const int nb = int(min(int64_t(B), u1 - u));
      uint32_t w[B][UW];
      int32_t g[B];
#pragma unroll
      for (int b = 0; b < B; ++b) {
        if (b < nb) {
          g[b] = __ldg(ug + u + b);
#pragma unroll
          for (int i = 0; i < UW; ++i) w[b][i] = __ldg(qw + ((u + b) * UW + i) * N + n);
        }
      }
#pragma unroll
      for (int b = 0; b < B; ++b) {
        if (b < nb) {
          if (g[b] != cur) {
#pragma unroll
            for (int m = 0; m < MB; ++m) {
              tot[m] = fmaf(s, part[m], tot[m]);
              part[m] = 0.f;
            }
            cur = g[b];
            s = half_bits_to_float(__ldg(sc + int64_t(cur) * N + n));
            z = float(__ldg(zp + int64_t(cur) * N + n));
          }
          unit_dot<BITS, MB>(w[b], z, x + (u + b) * R, ldx, M, part);
        }
      }
    }
#pragma unroll
    for (int m = 0; m < MB; ++m) tot[m] = fmaf(s, part[m], tot[m]);
  }
#pragma unroll
  for (int m = 0; m < MB; ++m) red[slice][m][lane] = tot[m];
  __syncthreads();
  if (slice == 0 && n < N) {
    const float b = bias ? bias[n] : 0.f;
#pragma unroll
    for (int m = 0; m < MB; ++m) {
      if (m < M) {
        float v = 0.f;
#pragma unroll
        for (int sl = 0; sl < kSlices; ++sl) v += red[sl][m][lane];
        y[int64_t(m) * N + n] = v + b;
      }
    }
  }
}

// Two dequantized weights as one 4-byte store of the workspace type.
template <class T>
struct Pair;
template <>
struct Pair<__half> {
  using V = __half2;
  __device__ __forceinline__ static V make(float a, float b) { return __floats2half2_rn(a, b); }
};
template <>
struct Pair<__nv_bfloat16> {
  using V = __nv_bfloat162;
  __device__ __forceinline__ static V make(float a, float b) { return __floats2bfloat162_rn(a, b); }
};

// wt[n, r] (T = f16 or bf16, row stride Kp) = scale · (q − zero) for every stored row r, through
// a 32-unit × 32-column shared-memory tile: word reads coalesced along n, writes along k.
template <int BITS, class T>
__global__ void __launch_bounds__(256) dequant_kernel(const uint32_t* __restrict__ qw, const uint16_t* __restrict__ sc,
                                                      const uint8_t* __restrict__ zp, const int32_t* __restrict__ ug,
                                                      T* __restrict__ wt, int64_t N, int64_t units, int64_t Kp) {
  constexpr int R = unit_rows(BITS), UW = unit_words(BITS);
  __shared__ uint32_t tile[32][UW][33];
  const int tx = threadIdx.x, ty = threadIdx.y;  // 32 × 8
  const int64_t u0 = int64_t(blockIdx.y) * 32, n0 = int64_t(blockIdx.x) * 32;
  for (int r = ty; r < 32 * UW; r += 8) {
    const int ul = r / UW, i = r % UW;
    const int64_t u = u0 + ul, n = n0 + tx;
    tile[ul][i][tx] = (u < units && n < N) ? __ldg(qw + (u * UW + i) * N + n) : 0u;
  }
  __syncthreads();
  const int64_t u = u0 + tx;
  if (u >= units) return;
  const int32_t g = __ldg(ug + u);
  for (int c = ty; c < 32; c += 8) {
    const int64_t n = n0 + c;
    if (n >= N) break;
    const float s = half_bits_to_float(__ldg(sc + int64_t(g) * N + n));
    const float z = float(__ldg(zp + int64_t(g) * N + n));
    uint32_t w[UW];
#pragma unroll
    for (int i = 0; i < UW; ++i) w[i] = tile[tx][i][c];
    auto* out = reinterpret_cast<typename Pair<T>::V*>(wt + n * Kp + u * R);
#pragma unroll
    for (int j = 0; j < R; j += 2)
      out[j / 2] = Pair<T>::make(s * (float(code_of<BITS>(w, j)) - z), s * (float(code_of<BITS>(w, j + 1)) - z));
  }
}

// xg[m, r] = x[m, perm[r]] (0 where perm[r] < 0), or x[m, r] without perm.
__global__ void gather_kernel(const float* __restrict__ x, int64_t K, const int32_t* __restrict__ perm,
                              float* __restrict__ xg, int64_t Kp, int64_t total) {
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < total; i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t m = i / Kp, r = i % Kp;
    const int32_t k = perm ? perm[r] : int32_t(r);
    xg[i] = k >= 0 ? x[m * K + k] : 0.f;
  }
}

// ---- host side ---------------------------------------------------------------------------------

struct CudaScratch final : BackendScratch {
  explicit CudaScratch(Device& d) : dev(d) {}
  Device& dev;
  Buffer<uint16_t> wt;  // f16/bf16 Wᵀ of the largest Linear, [N, Kp]
  Buffer<float> xg;     // gathered activations, grown on demand

  void reserve_wt(size_t n) {
    if (wt.size() >= n) return;
    check(dev.queue().wait());  // the old buffer may still be read by queued work
    wt = Buffer<uint16_t>(dev, n, MemCategory::workspace);
  }
  float* gather_buffer(size_t n) {
    if (xg.size() < n) {
      check(dev.queue().wait());
      xg = Buffer<float>(dev, n, MemCategory::workspace);
    }
    return xg.data();
  }
};

template <int BITS>
void launch_gemv(int mb, dim3 grid, dim3 block, cudaStream_t st, const uint32_t* qw, const uint16_t* sc,
                 const uint8_t* zp, const int32_t* ug, const float* bias, const float* x, int64_t ldx, float* y, int M,
                 int64_t N, int64_t units) {
  switch (mb) {
    case 1: gemv_kernel<BITS, 1><<<grid, block, 0, st>>>(qw, sc, zp, ug, bias, x, ldx, y, M, N, units); break;
    case 2: gemv_kernel<BITS, 2><<<grid, block, 0, st>>>(qw, sc, zp, ug, bias, x, ldx, y, M, N, units); break;
    case 4: gemv_kernel<BITS, 4><<<grid, block, 0, st>>>(qw, sc, zp, ug, bias, x, ldx, y, M, N, units); break;
    default: gemv_kernel<BITS, 8><<<grid, block, 0, st>>>(qw, sc, zp, ug, bias, x, ldx, y, M, N, units); break;
  }
}

class CudaLinear final : public GptqLinearBase {
 public:
  CudaLinear(Device& dev, const Layout& lay, std::shared_ptr<CudaScratch> scratch)
      : GptqLinearBase(dev, lay), scratch_(std::move(scratch)) {
    scratch_->reserve_wt(size_t(lay.N * lay.Kp));  // the prefill workspace is held from load time on
  }

  Status forward(TensorView y, TensorView x) noexcept override {
    return guard([&] {
      const int64_t K = lay_.K, N = lay_.N, Kp = lay_.Kp;
      if (x.dtype != DType::f32 || y.dtype != DType::f32 || x.cols() != K || y.cols() != N || x.rows() != y.rows() ||
          x.space != MemSpace::device || y.space != MemSpace::device)
        fail(ErrorKind::internal, "weights.gptq (CUDA): Linear [" + std::to_string(K) + " -> " + std::to_string(N) +
                                      "] called with x " + x.shape_string() + " " + std::string(dtype_name(x.dtype)) +
                                      ", y " + y.shape_string() + " " + std::string(dtype_name(y.dtype)) +
                                      " (both f32 in device memory)");
      const int64_t M = x.rows();
      if (M == 0) return;
      DeviceGuard dg(dev_.info().index);
      cudaStream_t st = static_cast<cudaStream_t>(dev_.queue().native_handle());
      const float* X = x.as<const float>();
      int64_t ldx = K;
      const bool fused = M <= kCudaFusedMaxM;
      const bool misaligned = (reinterpret_cast<uintptr_t>(X) & 15u) != 0;
      if (lay_.permuted || (fused && misaligned)) {
        float* xg = scratch_->gather_buffer(size_t(M * Kp));
        const int64_t total = M * Kp;
        const int threads = 256;
        const unsigned blocks = unsigned(std::min<int64_t>((total + threads - 1) / threads, 65535 * 8));
        gather_kernel<<<blocks, threads, 0, st>>>(X, K, lay_.permuted ? perm.data() : nullptr, xg, Kp, total);
        GPTQ_CUDA_LAUNCHED("gather_kernel");
        X = xg;
        ldx = Kp;
      }
      float* Y = y.as<float>();
      const float* B = bias.empty() ? nullptr : bias.data();
      if (fused) {
        const int mb = M <= 1 ? 1 : M <= 2 ? 2 : M <= 4 ? 4 : 8;
        const dim3 grid(unsigned((N + 31) / 32)), block(32, kSlices);
        const auto* qw = qweight.data();
        const auto* sc = scales.data();
        const auto* zp = zeros.data();
        const auto* ug = unit_group.data();
        const int64_t U = lay_.units();
        switch (lay_.bits) {
          case 2: launch_gemv<2>(mb, grid, block, st, qw, sc, zp, ug, B, X, ldx, Y, int(M), N, U); break;
          case 3: launch_gemv<3>(mb, grid, block, st, qw, sc, zp, ug, B, X, ldx, Y, int(M), N, U); break;
          case 4: launch_gemv<4>(mb, grid, block, st, qw, sc, zp, ug, B, X, ldx, Y, int(M), N, U); break;
          case 8: launch_gemv<8>(mb, grid, block, st, qw, sc, zp, ug, B, X, ldx, Y, int(M), N, U); break;
          default: fail(ErrorKind::internal, "weights.gptq (CUDA): unsupported bit width " + std::to_string(lay_.bits));
        }
        GPTQ_CUDA_LAUNCHED("gemv_kernel");
        return;
      }
      // Large M: Wᵀ in f16 (bf16 where |W| could pass the f16 range), stored row order, then the
      // backend's GEMM.
      const bool f16 = lay_.w_max < 65504.0;
      if (f16) dequant<__half>(st);
      else dequant<__nv_bfloat16>(st);
      TensorView xv(const_cast<float*>(X), DType::f32, {M, Kp}, MemSpace::device);
      TensorView wv(scratch_->wt.data(), f16 ? DType::f16 : DType::bf16, {N, Kp}, MemSpace::device);
      TensorView bv(bias.data(), DType::f32, {N}, MemSpace::device);
      check(dev_.ops().matmul(y, xv, wv, bias.empty() ? nullptr : &bv));
    });
  }

 private:
  template <class T>
  void dequant(cudaStream_t st) {
    T* wt = reinterpret_cast<T*>(scratch_->wt.data());
    const int64_t N = lay_.N, U = lay_.units();
    const dim3 grid(unsigned((N + 31) / 32), unsigned((U + 31) / 32)), block(32, 8);
    switch (lay_.bits) {
      case 2: dequant_kernel<2, T><<<grid, block, 0, st>>>(qweight.data(), scales.data(), zeros.data(), unit_group.data(), wt, N, U, lay_.Kp); break;
      case 3: dequant_kernel<3, T><<<grid, block, 0, st>>>(qweight.data(), scales.data(), zeros.data(), unit_group.data(), wt, N, U, lay_.Kp); break;
      case 4: dequant_kernel<4, T><<<grid, block, 0, st>>>(qweight.data(), scales.data(), zeros.data(), unit_group.data(), wt, N, U, lay_.Kp); break;
      case 8: dequant_kernel<8, T><<<grid, block, 0, st>>>(qweight.data(), scales.data(), zeros.data(), unit_group.data(), wt, N, U, lay_.Kp); break;
      default: fail(ErrorKind::internal, "weights.gptq (CUDA): unsupported bit width " + std::to_string(lay_.bits));
    }
    GPTQ_CUDA_LAUNCHED("dequant_kernel");
  }

  std::shared_ptr<CudaScratch> scratch_;
};

}  // namespace

std::unique_ptr<GptqLinearBase> make_cuda_linear(Device& dev, const Layout& lay,
                                                 std::shared_ptr<BackendScratch>& scratch) {
  if (dev.info().backend != BackendKind::cuda)
    fail(ErrorKind::internal, "weights.gptq: make_cuda_linear on a non-CUDA device");
  if (!scratch) scratch = std::make_shared<CudaScratch>(dev);
  auto cs = std::dynamic_pointer_cast<CudaScratch>(scratch);
  if (!cs || &cs->dev != &dev)
    fail(ErrorKind::internal, "weights.gptq: one WeightFormat used with two devices (create one per device)");
  return std::make_unique<CudaLinear>(dev, lay, std::move(cs));
}

}  // namespace kvrun::gptq
