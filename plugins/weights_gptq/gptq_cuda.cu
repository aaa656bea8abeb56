// weights.gptq — the CUDA Linear. The packed arrays stay packed in device memory.
//
//  * at load the packed arrays are transposed once so each output column's words are contiguous
//    (layout in the device code below).
//  * M ≤ kCudaFusedMaxM (decode): gemv_kernel. A block owns four output columns and its warps
//    split k; per 128-unit block every lane reads 16 bytes of each column (interleaved so that the
//    warp's x reads are contiguous), turns codes into floats with integer ops only (2^23 + q as float bits),
//    accumulates x·(q − z) in fp32 and scales per group; shuffles and shared memory reduce in a
//    fixed order (deterministic).
//    Every packed byte is read once per step.
//  * larger M (prefill): dequant_kernel expands the layer once per call to an f16 copy Wᵀ [N, Kp]
//    (bf16 for a layer whose |W| could exceed the f16 range) in a workspace shared by the format's
//    Linears (reads and writes both contiguous along k in the transposed layout); then the
//    backend's GEMM (Ops::matmul: cuBLAS on tensor cores with fp32 accumulation) multiplies it.
//    W and x are rounded to f16 (bf16) there.
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
//
// On upload the CUDA Linear transposes the packed arrays once (on the device) so that each output
// column n is one contiguous row:
//   qwt [N, Wp] u32   the words of column n (Wp = words_rows rounded up to 4 so every row starts
//                     16-byte aligned; the padding words are 0 and never read). For 2/4/8 bits
//                     (one word per unit) each full block of 128 words is interleaved: position
//                     b·128 + 4·l + i holds unit b·128 + 32·i + l, so lane l's 16-byte load brings
//                     units l, l+32, l+64, l+96 and a warp's x reads are contiguous. Words past the
//                     last full block keep their order. 3 bits: stored order.
//   sct [N, groups] f16 scales, zpt [N, groups] u8 zero points.
// Weight bytes are unchanged up to that padding (0 for K a multiple of 32).

// Position of unit word r in a column of the interleaved layout (full = words in full 128-word blocks).
__host__ __device__ __forceinline__ int64_t word_pos(int64_t r, int64_t full) {
  if (r >= full) return r;
  const int64_t b = r >> 7, w = r & 127;
  return (b << 7) + ((w & 31) << 2) + (w >> 5);
}

// dst[c, word_pos(r)] = src[r, c] for a [R, C] row-major src (full = 0: no interleave); dst has row
// stride ldd (≥ R; extra cells 0).
template <class T>
__global__ void transpose_kernel(const T* __restrict__ src, T* __restrict__ dst, int64_t R, int64_t C, int64_t ldd,
                                 int64_t full) {
  __shared__ T tile[32][33];
  const int64_t r0 = int64_t(blockIdx.y) * 32, c0 = int64_t(blockIdx.x) * 32;
  for (int i = threadIdx.y; i < 32; i += blockDim.y) {
    const int64_t r = r0 + i, c = c0 + threadIdx.x;
    tile[i][threadIdx.x] = (r < R && c < C) ? src[r * C + c] : T(0);
  }
  __syncthreads();
  for (int i = threadIdx.y; i < 32; i += blockDim.y) {
    const int64_t c = c0 + i, r = r0 + threadIdx.x;
    if (c < C && r < ldd) dst[c * ldd + word_pos(r, full)] = tile[threadIdx.x][i];
  }
}

constexpr float kMagic = 8388608.f;  // 2^23: (0x4B000000 | c) read as a float is 2^23 + c, exactly

// Code j of a unit whose words are w[0 .. unit_words) (a little-endian bit stream; 3-bit codes may
// straddle two words). j is a compile-time constant after unrolling.
template <int BITS>
__device__ __forceinline__ uint32_t code_of(const uint32_t* w, int j) {
  const int bit = BITS * j, wi = bit >> 5, off = bit & 31;
  uint32_t v = w[wi] >> off;
  if (off + BITS > 32) v |= w[wi + 1] << (32 - off);
  return v & ((1u << BITS) - 1u);
}
// 2^23 + code j, as a float (two integer ops, no int→float conversion).
template <int BITS>
__device__ __forceinline__ float magic_code(const uint32_t* w, int j) {
  return __uint_as_float(0x4B000000u | code_of<BITS>(w, j));
}

__device__ __forceinline__ float half_bits_to_float(uint16_t h) { return __half2float(__ushort_as_half(h)); }

// acc[m] += Σ_j x[m, j] · (q_j − z) over one unit (R rows) whose words are w; zm = 2^23 + z, so
// (2^23 + q) − zm = q − z exactly. x: the unit's first row of x row 0, rows ldx apart, 16-byte aligned.
template <int BITS, int MB>
__device__ __forceinline__ void unit_dot(const uint32_t* w, float zm, const float* __restrict__ x, int64_t ldx, int M,
                                         float (&acc)[MB]) {
  constexpr int R = unit_rows(BITS);
  float q[R];
#pragma unroll
  for (int j = 0; j < R; ++j) q[j] = magic_code<BITS>(w, j) - zm;
#pragma unroll
  for (int m = 0; m < MB; ++m) {
    if (m < M) {
      const float4* xv = reinterpret_cast<const float4*>(x + m * ldx);
#pragma unroll
      for (int j = 0; j < R; j += 4) {
        const float4 a = __ldg(xv + j / 4);
        acc[m] = fmaf(a.x, q[j], acc[m]);
        acc[m] = fmaf(a.y, q[j + 1], acc[m]);
        acc[m] = fmaf(a.z, q[j + 2], acc[m]);
        acc[m] = fmaf(a.w, q[j + 3], acc[m]);
      }
    }
  }
}

constexpr int kGemvWarps = 4;    // warps per block: they split the k range of the block's columns
constexpr int kRowsPerBlock = 4;  // output columns per block (each warp covers all of them)

// q − z of code j of a word, for the kRowsPerBlock columns, then += x · (q − z) per column.
// y[M, N] = x[M, Kp] · W (+ bias) for M ≤ MB, over the transposed layout.
//   qwt: [N, wp] u32, sct/zpt: [N, G], ug: [units] group of each unit, x: [M, ldx] f32 (16-byte
//   aligned rows), y: [M, N] f32, bias: [N] f32 or null.
// A block owns kRowsPerBlock columns; its warps split the k range. BITS ∈ {2, 4, 8}: warp w takes
// the 128-unit blocks w, w + kGemvWarps, ...; in each, every lane loads 16 bytes of each column
// (units l + 32·i, interleaved layout, so the warp's x reads are contiguous), decodes the codes with
// integer ops, accumulates x·(q − z) in fp32 per unit and scales by the unit's group scale. Units
// after the last full block (and every unit of 3-bit columns) go one unit per lane, spread over
// the warps. Lanes reduce with shuffles, warps through shared memory in a fixed order
// (deterministic, no atomics).
template <int BITS, int MB>
__global__ void __launch_bounds__(32 * kGemvWarps)
    gemv_kernel(const uint32_t* __restrict__ qwt, int64_t wp, const uint16_t* __restrict__ sct,
                const uint8_t* __restrict__ zpt, int64_t G, const int32_t* __restrict__ ug,
                const float* __restrict__ bias, const float* __restrict__ x, int64_t ldx, float* __restrict__ y, int M,
                int64_t N, int64_t units) {
  constexpr int R = unit_rows(BITS), UW = unit_words(BITS);
  constexpr int RW = kRowsPerBlock;
  __shared__ float red[kGemvWarps][RW][MB];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int64_t n0 = int64_t(blockIdx.x) * RW;
  int64_t nr[RW];
#pragma unroll
  for (int r = 0; r < RW; ++r) nr[r] = min(n0 + r, N - 1);  // a missing column recomputes the last (not stored)
  float tot[RW][MB];
#pragma unroll
  for (int r = 0; r < RW; ++r)
#pragma unroll
    for (int m = 0; m < MB; ++m) tot[r][m] = 0.f;

  if constexpr (UW == 1) {
    const int64_t blocks = units / 128;  // full interleaved 128-unit blocks
    for (int64_t b = warp; b < blocks; b += kGemvWarps) {
      uint4 q[RW];
#pragma unroll
      for (int r = 0; r < RW; ++r) q[r] = __ldg(reinterpret_cast<const uint4*>(qwt + nr[r] * wp + b * 128) + lane);
      int32_t g[4];
#pragma unroll
      for (int i = 0; i < 4; ++i) g[i] = __ldg(ug + b * 128 + 32 * i + lane);
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        const int64_t u = b * 128 + 32 * i + lane;
        float qf[RW][R];
        float sc[RW];
#pragma unroll
        for (int r = 0; r < RW; ++r) {
          const uint32_t w = i == 0 ? q[r].x : i == 1 ? q[r].y : i == 2 ? q[r].z : q[r].w;
          sc[r] = half_bits_to_float(__ldg(sct + nr[r] * G + g[i]));
          const float zm = kMagic + float(__ldg(zpt + nr[r] * G + g[i]));
#pragma unroll
          for (int j = 0; j < R; ++j) qf[r][j] = magic_code<BITS>(&w, j) - zm;
        }
#pragma unroll
        for (int m = 0; m < MB; ++m) {
          if (m < M) {
            const float4* xv = reinterpret_cast<const float4*>(x + m * ldx + u * R);
            float part[RW];
#pragma unroll
            for (int r = 0; r < RW; ++r) part[r] = 0.f;
#pragma unroll
            for (int j = 0; j < R; j += 4) {
              const float4 xa = __ldg(xv + j / 4);
#pragma unroll
              for (int r = 0; r < RW; ++r) {
                part[r] = fmaf(xa.x, qf[r][j], part[r]);
                part[r] = fmaf(xa.y, qf[r][j + 1], part[r]);
                part[r] = fmaf(xa.z, qf[r][j + 2], part[r]);
                part[r] = fmaf(xa.w, qf[r][j + 3], part[r]);
              }
            }
#pragma unroll
            for (int r = 0; r < RW; ++r) tot[r][m] = fmaf(sc[r], part[r], tot[r][m]);
          }
        }
      }
    }
  }
  // Units not in a full block (UW = 1), or every unit (3 bits): one unit per lane at a time.
  for (int64_t u = (UW == 1 ? units / 128 * 128 : 0) + warp * 32 + lane; u < units; u += 32 * kGemvWarps) {
    const int32_t g = __ldg(ug + u);
    const float* xu = x + u * R;
#pragma unroll
    for (int r = 0; r < RW; ++r) {
      uint32_t w[UW];
#pragma unroll
      for (int i = 0; i < UW; ++i) w[i] = __ldg(qwt + nr[r] * wp + u * UW + i);
      const float sc = half_bits_to_float(__ldg(sct + nr[r] * G + g));
      const float zm = kMagic + float(__ldg(zpt + nr[r] * G + g));
      float part[MB];
#pragma unroll
      for (int m = 0; m < MB; ++m) part[m] = 0.f;
      unit_dot<BITS, MB>(w, zm, xu, ldx, M, part);
#pragma unroll
      for (int m = 0; m < MB; ++m) tot[r][m] = fmaf(sc, part[m], tot[r][m]);
    }
  }
#pragma unroll
  for (int r = 0; r < RW; ++r) {
#pragma unroll
    for (int m = 0; m < MB; ++m) {
      float v = tot[r][m];
#pragma unroll
      for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
      if (lane == 0) red[warp][r][m] = v;
    }
  }
  __syncthreads();
  if (warp == 0 && lane < RW * MB) {
    const int r = lane / MB, m = lane % MB;
    const int64_t n = n0 + r;
    if (n < N && m < M) {
      float v = 0.f;
#pragma unroll
      for (int w = 0; w < kGemvWarps; ++w) v += red[w][r][m];
      y[int64_t(m) * N + n] = v + (bias ? bias[n] : 0.f);
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

// wt[n, r] (T = f16 or bf16, row stride Kp) = scale · (q − zero) for every stored row r. One
// thread per (column, unit): reads the unit's words of the transposed layout (consecutive threads,
// consecutive words) and writes its R values contiguously. Flat over N · units.
template <int BITS, class T>
__global__ void __launch_bounds__(256) dequant_kernel(const uint32_t* __restrict__ qwt, int64_t wp,
                                                      const uint16_t* __restrict__ sct, const uint8_t* __restrict__ zpt,
                                                      int64_t G, const int32_t* __restrict__ ug, T* __restrict__ wt,
                                                      int64_t N, int64_t units, int64_t Kp, int64_t full) {
  constexpr int R = unit_rows(BITS), UW = unit_words(BITS);
  const int64_t total = N * units;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < total; i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t n = i / units, u = i - n * units;
    const int32_t g = __ldg(ug + u);
    const float s = half_bits_to_float(__ldg(sct + n * G + g));
    const float zm = kMagic + float(__ldg(zpt + n * G + g));
    uint32_t w[UW];
#pragma unroll
    if constexpr (UW == 1) w[0] = __ldg(qwt + n * wp + word_pos(u, full));
    else
      for (int k = 0; k < UW; ++k) w[k] = __ldg(qwt + n * wp + u * UW + k);
    auto* out = reinterpret_cast<typename Pair<T>::V*>(wt + n * Kp + u * R);
#pragma unroll
    for (int j = 0; j < R; j += 2)
      out[j / 2] = Pair<T>::make(s * (magic_code<BITS>(w, j) - zm), s * (magic_code<BITS>(w, j + 1) - zm));
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
void launch_gemv(int mb, unsigned blocks, cudaStream_t st, const uint32_t* qwt, int64_t wp, const uint16_t* sct,
                 const uint8_t* zpt, int64_t G, const int32_t* ug, const float* bias, const float* x, int64_t ldx,
                 float* y, int M, int64_t N, int64_t units) {
  const unsigned threads = 32 * kGemvWarps;
  switch (mb) {
    case 1: gemv_kernel<BITS, 1><<<blocks, threads, 0, st>>>(qwt, wp, sct, zpt, G, ug, bias, x, ldx, y, M, N, units); break;
    case 2: gemv_kernel<BITS, 2><<<blocks, threads, 0, st>>>(qwt, wp, sct, zpt, G, ug, bias, x, ldx, y, M, N, units); break;
    case 4: gemv_kernel<BITS, 4><<<blocks, threads, 0, st>>>(qwt, wp, sct, zpt, G, ug, bias, x, ldx, y, M, N, units); break;
    default: gemv_kernel<BITS, 8><<<blocks, threads, 0, st>>>(qwt, wp, sct, zpt, G, ug, bias, x, ldx, y, M, N, units); break;
  }
}

template <class T>
void transpose_on_device(Device& dev, cudaStream_t st, Buffer<T>& buf, int64_t R, int64_t C, int64_t ldd,
                         int64_t full = 0) {
  if (R == 0 || C == 0) return;
  Buffer<T> t(dev, size_t(C * ldd), MemCategory::weights);
  const dim3 grid(unsigned((C + 31) / 32), unsigned((ldd + 31) / 32)), block(32, 8);
  transpose_kernel<T><<<grid, block, 0, st>>>(buf.data(), t.data(), R, C, ldd, full);
  GPTQ_CUDA_LAUNCHED("transpose_kernel");
  GPTQ_CUDA_CHECK(cudaStreamSynchronize(st));  // the old buffer is freed below
  buf = std::move(t);
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
        const unsigned blocks = unsigned((N + kRowsPerBlock - 1) / kRowsPerBlock);
        const auto* qw = qweight.data();
        const auto* sc = scales.data();
        const auto* zp = zeros.data();
        const auto* ug = unit_group.data();
        const int64_t U = lay_.units(), G = lay_.groups;
        switch (lay_.bits) {
          case 2: launch_gemv<2>(mb, blocks, st, qw, wp_, sc, zp, G, ug, B, X, ldx, Y, int(M), N, U); break;
          case 3: launch_gemv<3>(mb, blocks, st, qw, wp_, sc, zp, G, ug, B, X, ldx, Y, int(M), N, U); break;
          case 4: launch_gemv<4>(mb, blocks, st, qw, wp_, sc, zp, G, ug, B, X, ldx, Y, int(M), N, U); break;
          case 8: launch_gemv<8>(mb, blocks, st, qw, wp_, sc, zp, G, ug, B, X, ldx, Y, int(M), N, U); break;
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

  // Called once all arrays are uploaded in the checkpoint's layout: transposes them to the kernels'
  // column-major layout (see the device code), one array at a time.
  void on_uploaded() override {
    DeviceGuard dg(dev_.info().index);
    cudaStream_t st = static_cast<cudaStream_t>(dev_.queue().native_handle());
    check(dev_.queue().wait());  // the uploads are queued on the same stream; be explicit anyway
    const int64_t rows = lay_.words_rows();
    wp_ = (rows + 3) / 4 * 4;
    full_ = unit_words(lay_.bits) == 1 ? lay_.units() / 128 * 128 : 0;
    transpose_on_device(dev_, st, qweight, rows, lay_.N, wp_, full_);
    transpose_on_device(dev_, st, scales, lay_.groups, lay_.N, lay_.groups);
    transpose_on_device(dev_, st, zeros, lay_.groups, lay_.N, lay_.groups);
  }

 private:
  template <class T>
  void dequant(cudaStream_t st) {
    T* wt = reinterpret_cast<T*>(scratch_->wt.data());
    const int64_t N = lay_.N, U = lay_.units(), G = lay_.groups;
    const int threads = 256;
    const unsigned blocks = unsigned(std::min<int64_t>((N * U + threads - 1) / threads, 1 << 20));
    const auto* qw = qweight.data();
    const auto* sc = scales.data();
    const auto* zp = zeros.data();
    const auto* ug = unit_group.data();
    switch (lay_.bits) {
      case 2: dequant_kernel<2, T><<<blocks, threads, 0, st>>>(qw, wp_, sc, zp, G, ug, wt, N, U, lay_.Kp, full_); break;
      case 3: dequant_kernel<3, T><<<blocks, threads, 0, st>>>(qw, wp_, sc, zp, G, ug, wt, N, U, lay_.Kp, full_); break;
      case 4: dequant_kernel<4, T><<<blocks, threads, 0, st>>>(qw, wp_, sc, zp, G, ug, wt, N, U, lay_.Kp, full_); break;
      case 8: dequant_kernel<8, T><<<blocks, threads, 0, st>>>(qw, wp_, sc, zp, G, ug, wt, N, U, lay_.Kp, full_); break;
      default: fail(ErrorKind::internal, "weights.gptq (CUDA): unsupported bit width " + std::to_string(lay_.bits));
    }
    GPTQ_CUDA_LAUNCHED("dequant_kernel");
  }

  int64_t wp_ = 0;    // row stride of the transposed qweight, in words
  int64_t full_ = 0;  // words of each column in interleaved 128-word blocks
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
