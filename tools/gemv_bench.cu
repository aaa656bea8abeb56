// Stand-alone sweep of batch-1 bf16 GEMV variants on the Qwen-7B shapes (not part of the build;
// a research tool for docs/PERFORMANCE.md). Build and run on the GPU machine:
//   nvcc -O3 -std=c++20 -gencode arch=compute_90,code=sm_90 -Icore/include -Ibackends/include \
//     tools/gemv_bench.cu -o gemv_bench && ./gemv_bench
// Every figure is a CUDA-graph replay of back-to-back launches over distinct weight copies (more
// bytes than L2 holds), so each launch streams its weights from DRAM as in a decode step.
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <vector>

#include "kvrun/cuda_plugin.cuh"  // load_stream_16b, pdl_wait / pdl_trigger, launch: as the kernels use them

using kvrun::cuda_plugin::load_stream_16b;
using kvrun::cuda_plugin::pdl_trigger;
using kvrun::cuda_plugin::pdl_wait;

#include "check.cuh"  // CK

__device__ __forceinline__ float dot8(const uint4& q, const float* x) {
  const float4 a = __ldg(reinterpret_cast<const float4*>(x));
  const float4 b = __ldg(reinterpret_cast<const float4*>(x) + 1);
  float s = __uint_as_float(q.x << 16) * a.x;
  s = fmaf(__uint_as_float(q.x & 0xffff0000u), a.y, s);
  s = fmaf(__uint_as_float(q.y << 16), a.z, s);
  s = fmaf(__uint_as_float(q.y & 0xffff0000u), a.w, s);
  s = fmaf(__uint_as_float(q.z << 16), b.x, s);
  s = fmaf(__uint_as_float(q.z & 0xffff0000u), b.y, s);
  s = fmaf(__uint_as_float(q.w << 16), b.z, s);
  s = fmaf(__uint_as_float(q.w & 0xffff0000u), b.w, s);
  return s;
}

// y[N] = w[N, K] · x[K]. 8 warps per block; a warp handles RPW consecutive rows over one of wpr K
// slices, U 16-byte loads per row in flight per lane.
template <int U, int RPW, int MINB = 1>
__global__ void __launch_bounds__(256, MINB) gemv_v(float* __restrict__ y, const float* __restrict__ x,
                                              const __nv_bfloat16* __restrict__ w, int N, int K, int wpr, int rot) {
  __shared__ float partial[8][RPW];
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int rows_per_block = (8 / wpr) * RPW;
  const int r = warp / wpr, part = warp % wpr;
  const int n0 = blockIdx.x * rows_per_block + r * RPW;
  const int nvec = K / 8;
  const int stride = 32 * wpr;
  float acc[RPW];
#pragma unroll
  for (int j = 0; j < RPW; ++j) acc[j] = 0.f;
  const uint4* wv[RPW];
#pragma unroll
  for (int j = 0; j < RPW; ++j) wv[j] = reinterpret_cast<const uint4*>(w + int64_t(min(n0 + j, N - 1)) * K);
  // iterations of U*stride vectors; rotated start when rot (the tail after them is plain)
  const int per_it = U * stride;
  const int nit = nvec / per_it;
  const int start = rot && nit ? (blockIdx.x * 8 + warp) % nit : 0;
  bool waited = false;
  for (int i = 0; i < nit; ++i) {
    int it = i + start;
    if (it >= nit) it -= nit;
    const int v = it * per_it + part * 32 + lane;
    uint4 q[RPW][U];
#pragma unroll
    for (int u = 0; u < U; ++u)
#pragma unroll
      for (int j = 0; j < RPW; ++j) q[j][u] = load_stream_16b(wv[j] + v + u * stride);
    if (!waited) {
      pdl_wait();
      waited = true;
    }
#pragma unroll
    for (int u = 0; u < U; ++u)
#pragma unroll
      for (int j = 0; j < RPW; ++j) acc[j] += dot8(q[j][u], x + (v + u * stride) * 8);
  }
  if (!waited) pdl_wait();
  for (int v = nit * per_it + part * 32 + lane; v < nvec; v += stride) {
#pragma unroll
    for (int j = 0; j < RPW; ++j) acc[j] += dot8(load_stream_16b(wv[j] + v), x + v * 8);
  }
  pdl_trigger();
#pragma unroll
  for (int j = 0; j < RPW; ++j)
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) acc[j] += __shfl_xor_sync(0xffffffffu, acc[j], o);
  if (lane == 0)
#pragma unroll
    for (int j = 0; j < RPW; ++j) partial[warp][j] = acc[j];
  __syncthreads();
  if (part == 0 && lane < RPW && n0 + lane < N) {
    float s = 0.f;
    for (int p = 0; p < wpr; ++p) s += partial[r * wpr + p][lane];
    y[n0 + lane] = s;
  }
}

// Pure streaming read of n16 16-byte words (grid-stride, 4 in flight per thread).
__global__ void __launch_bounds__(256) read_kernel(float* out, const uint4* __restrict__ p, int64_t n16) {
  uint32_t a = 0;
  const int64_t s = int64_t(gridDim.x) * blockDim.x;
  int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  for (; i + 3 * s < n16; i += 4 * s) {
    uint4 q0 = load_stream_16b(p + i), q1 = load_stream_16b(p + i + s), q2 = load_stream_16b(p + i + 2 * s), q3 = load_stream_16b(p + i + 3 * s);
    a ^= q0.x ^ q0.y ^ q0.z ^ q0.w ^ q1.x ^ q1.y ^ q1.z ^ q1.w ^ q2.x ^ q2.y ^ q2.z ^ q2.w ^ q3.x ^ q3.y ^ q3.z ^ q3.w;
  }
  for (; i < n16; i += s) {
    uint4 q = load_stream_16b(p + i);
    a ^= q.x ^ q.y ^ q.z ^ q.w;
  }
  if (a == 0x12345678u) out[0] = 1.f;
}

__global__ void fill(__nv_bfloat16* w, int64_t n, uint32_t seed) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    uint32_t h = uint32_t(i) * 2654435761u ^ seed;
    h ^= h >> 15;
    h *= 2246822519u;
    h ^= h >> 13;
    w[i] = __float2bfloat16((int(h & 0xffff) - 32768) / 32768.f * 0.05f);
  }
}

struct Shape {
  const char* name;
  int N, K;
};

using Launch = void (*)(cudaStream_t, bool, float*, const float*, const __nv_bfloat16*, int, int, int, int);

template <int U, int RPW, int MINB = 1>
void launch_v(cudaStream_t st, bool pdl, float* y, const float* x, const __nv_bfloat16* w, int N, int K, int wpr,
              int rot) {
  const int rows_per_block = (8 / wpr) * RPW;
  CK(kvrun::cuda_plugin::launch(pdl, st, dim3((N + rows_per_block - 1) / rows_per_block), dim3(256), 0,
                                gemv_v<U, RPW, MINB>, y, x, w, N, K, wpr, rot));
}

template <int U, int RPW, int MINB = 1>
void info_v(int* regs, int* occ) {
  cudaFuncAttributes fa;
  CK(cudaFuncGetAttributes(&fa, gemv_v<U, RPW, MINB>));
  CK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(occ, gemv_v<U, RPW, MINB>, 256, 0));
  *regs = fa.numRegs;
}

struct Variant {
  const char* name;
  Launch f;
  void (*info)(int*, int*);
  int U, RPW;
};

int main() {
  int dev = 0, sms = 0;
  CK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev));
  cudaStream_t st;
  CK(cudaStreamCreateWithFlags(&st, cudaStreamNonBlocking));
  cudaEvent_t e0, e1;
  CK(cudaEventCreate(&e0));
  CK(cudaEventCreate(&e1));
  const Shape shapes[] = {{"o", 4096, 4096}, {"down", 4096, 11008}, {"qkv", 12288, 4096}, {"gate_up", 22016, 4096},
                          {"lm_head", 151936, 4096}};
  const Variant variants[] = {{"U4R1", launch_v<4, 1>, info_v<4, 1>, 4, 1}, {"U8R1", launch_v<8, 1>, info_v<8, 1>, 8, 1},
                              {"U2R2", launch_v<2, 2>, info_v<2, 2>, 2, 2}, {"U4R2", launch_v<4, 2>, info_v<4, 2>, 4, 2},
                              {"U2R4", launch_v<2, 4>, info_v<2, 4>, 2, 4}, {"U2R4B4", launch_v<2, 4, 4>, info_v<2, 4, 4>, 2, 4}};
  float *x, *y;
  CK(cudaMalloc(&x, 11008 * 4 * 2));
  CK(cudaMalloc(&y, 151936 * 4 * 2));
  {
    std::vector<float> hx(11008 * 2);
    for (size_t i = 0; i < hx.size(); ++i) hx[i] = float((i * 7919) % 1000) / 1000.f - 0.5f;
    CK(cudaMemcpy(x, hx.data(), hx.size() * 4, cudaMemcpyHostToDevice));
  }
  // copy bandwidth, as kvrun bench measures it
  {
    const size_t bytes = size_t(1) << 30;
    void *a, *b;
    CK(cudaMalloc(&a, bytes));
    CK(cudaMalloc(&b, bytes));
    CK(cudaMemcpyAsync(b, a, bytes, cudaMemcpyDeviceToDevice, st));
    CK(cudaEventRecord(e0, st));
    for (int i = 0; i < 10; ++i) CK(cudaMemcpyAsync(b, a, bytes, cudaMemcpyDeviceToDevice, st));
    CK(cudaEventRecord(e1, st));
    CK(cudaEventSynchronize(e1));
    float ms;
    CK(cudaEventElapsedTime(&ms, e0, e1));
    std::printf("copy bandwidth: %.3f TB/s\n", 2.0 * bytes * 10 / (ms * 1e-3) / 1e12);
    CK(cudaFree(a));
    CK(cudaFree(b));
  }
  std::printf("SMs %d\n", sms);
  for (auto& v : variants) {
    int regs = 0, occ = 0;
    v.info(&regs, &occ);
    std::printf("variant %s: %d registers, %d blocks/SM\n", v.name, regs, occ);
  }

  const int kLaunches = 40;
  for (const Shape& s : shapes) {
    const int64_t elems = int64_t(s.N) * s.K;
    const int64_t bytes = elems * 2;
    const int copies = int(std::max<int64_t>(2, (int64_t(512) << 20) / bytes + 1));
    std::vector<__nv_bfloat16*> ws(copies);
    for (auto& p : ws) {
      CK(cudaMalloc(&p, bytes));
      fill<<<1024, 256, 0, st>>>(p, elems, uint32_t(reinterpret_cast<uintptr_t>(p) >> 8));
    }
    CK(cudaStreamSynchronize(st));
    std::vector<float> ref;
    // µs per launch of a chain of kLaunches (body(i) launches kernel i), as graph replays
    auto time_graph = [&](auto&& body) { return ::time_graph(st, kLaunches, body); };
    {
      const double us = time_graph([&](int i) {
        read_kernel<<<sms * 8, 256, 0, st>>>(y, reinterpret_cast<const uint4*>(ws[i % copies]), bytes / 16);
      });
      std::printf("%-8s N %6d K %5d  %7.1f MB  pure read            %8.2f us  %5.2f TB/s\n", s.name, s.N, s.K,
                  bytes / 1e6, us, bytes / (us * 1e-6) / 1e12);
    }
    for (const Variant& v : variants) {
      for (int wpr = 1; wpr <= 8; wpr *= 2) {
        if (s.K / 8 < 32 * wpr * v.U) continue;
        for (int rot = 0; rot <= 1; ++rot)
          for (int pdl = 0; pdl <= 1; ++pdl) {
            if (pdl == 0 && rot == 1) continue;
            const double us = time_graph([&](int i) { v.f(st, pdl, y, x, ws[i % copies], s.N, s.K, wpr, rot); });
            // check against the first variant's result on copy 0
            v.f(st, false, y, x, ws[0], s.N, s.K, wpr, rot);
            CK(cudaStreamSynchronize(st));
            std::vector<float> got(s.N);
            CK(cudaMemcpy(got.data(), y, s.N * 4, cudaMemcpyDeviceToHost));
            if (ref.empty()) ref = got;
            double err = 0, mag = 0;
            for (int n = 0; n < s.N; ++n) err = std::max(err, double(std::abs(got[n] - ref[n]))), mag = std::max(mag, double(std::abs(ref[n])));
            if (err > 1e-4 * mag + 1e-6) std::printf("MISMATCH max err %g (max |y| %g)\n", err, mag);
            const int rpb = (8 / wpr) * v.RPW;
            std::printf("%-8s N %6d K %5d  %-5s wpr %d rot %d pdl %d grid %6d  %8.2f us  %5.2f TB/s\n", s.name, s.N,
                        s.K, v.name, wpr, rot, pdl, (s.N + rpb - 1) / rpb, us, bytes / (us * 1e-6) / 1e12);
          }
      }
    }
    for (auto p : ws) CK(cudaFree(p));
    std::fflush(stdout);
  }
  return 0;
}
