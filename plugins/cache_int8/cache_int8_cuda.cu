// cache.int8 — CUDA quantize-on-write: one warp per (token, KV head) row. The lanes find the row's
// range [lo, hi] (a warp reduction with the same comparisons as int8kv::range_update: min/max are
// exact and order-independent), then every lane calls the shared int8kv::row_params and
// int8kv::quantize_value of quantize.hpp, so codes, scales and zero points are bit-identical to
// the CPU's int8kv::quantize_row. This file is compiled with -fmad=false and without fast-math
// (IEEE division, no contraction), see meson.build.
#include <cuda_runtime.h>

#include <string>

#include "kvrun/cuda_plugin.cuh"
#include "cache_int8_cuda.hpp"
#include "kvrun/dtype.hpp"
#include "kvrun/error.hpp"
#include "quantize.hpp"
#include "qkv_rope.cuh"

#if defined(__CUDA_ARCH__) && (defined(__USE_FAST_MATH__) || defined(__CUDA_FTZ))
#error "cache_int8_cuda.cu must be compiled without fast-math and without flush-to-zero (exact SPECS arithmetic)"
#endif

namespace kvrun::cache_int8_cuda {
namespace {

constexpr int kWarpsPerBlock = 4;

constexpr const char* kWho = "cache.int8";
void check_cuda(cudaError_t err, const char* what) { cuda_plugin::check(err, kWho, what); }
struct DeviceScope : cuda_plugin::DeviceScope {
  explicit DeviceScope(int device) : cuda_plugin::DeviceScope(device, kWho) {}
};

// Quantizes one row x[D] (all 32 lanes of the warp call it) into q[D], *scale, *zero.
__device__ void quantize_row_warp(const float* __restrict__ x,  // [D] f32
                                  int D, int lane,
                                  uint8_t* __restrict__ q,       // [D] codes
                                  uint16_t* __restrict__ scale,  // [1] fp16 bits
                                  uint8_t* __restrict__ zero) {  // [1]
  float lo = 0.f, hi = 0.f;  // the range always holds 0
  for (int d = lane; d < D; d += 32) int8kv::range_update(x[d], &lo, &hi);
  for (int off = 16; off > 0; off >>= 1) {
    const float olo = __shfl_xor_sync(0xffffffffu, lo, off);
    const float ohi = __shfl_xor_sync(0xffffffffu, hi, off);
    int8kv::range_update(olo, &lo, &hi);
    int8kv::range_update(ohi, &lo, &hi);
  }
  float s, z;
  uint16_t s_bits;
  int8kv::row_params(lo, hi, &s, &s_bits, &z);
  for (int d = lane; d < D; d += 32) q[d] = int8kv::quantize_value(x[d], s, z);
  if (lane == 0) {
    *scale = s_bits;
    *zero = uint8_t(z);
  }
}

// The same for a K row and a V row at once, from registers: lane holds the 4-element chunks lane,
// lane + 32 of both rows in a[0] (K) and a[1] (V), zeros past D (D % 4 == 0, D ≤ 128·kVecChunks;
// codes stored with 4-byte stores, every row 4-byte aligned). The range is order-independent and
// each code is quantize_value of its element: the codes, scales and zero points are those of
// quantize_row_warp (and of the CPU).
constexpr int kVecChunks = 2;
__device__ void quantize_rows_regs(const float4 (&a)[2][kVecChunks], int D, int lane,
                                   uint8_t* __restrict__ qk, uint8_t* __restrict__ qv,    // [D] codes each
                                   uint16_t* __restrict__ sk, uint16_t* __restrict__ sv,  // [1] fp16 bits each
                                   uint8_t* __restrict__ zk, uint8_t* __restrict__ zv) {  // [1] each
  const int chunks = D / 4;
  float lo[2] = {0.f, 0.f}, hi[2] = {0.f, 0.f};  // the range always holds 0 (so zero padding is neutral)
#pragma unroll
  for (int r = 0; r < 2; ++r) {
#pragma unroll
    for (int i = 0; i < kVecChunks; ++i) {
      int8kv::range_update(a[r][i].x, &lo[r], &hi[r]);
      int8kv::range_update(a[r][i].y, &lo[r], &hi[r]);
      int8kv::range_update(a[r][i].z, &lo[r], &hi[r]);
      int8kv::range_update(a[r][i].w, &lo[r], &hi[r]);
    }
  }
#pragma unroll
  for (int off = 16; off > 0; off >>= 1) {
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      const float olo = __shfl_xor_sync(0xffffffffu, lo[r], off);
      const float ohi = __shfl_xor_sync(0xffffffffu, hi[r], off);
      int8kv::range_update(olo, &lo[r], &hi[r]);
      int8kv::range_update(ohi, &lo[r], &hi[r]);
    }
  }
  uint8_t* const q[2] = {qk, qv};
  uint16_t* const sp[2] = {sk, sv};
  uint8_t* const zp[2] = {zk, zv};
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    float s, z;
    uint16_t s_bits;
    int8kv::row_params(lo[r], hi[r], &s, &s_bits, &z);
#pragma unroll
    for (int i = 0; i < kVecChunks; ++i) {
      const int c = lane + 32 * i;
      if (c < chunks) {
        const uint32_t w = uint32_t(int8kv::quantize_value(a[r][i].x, s, z)) |
                           uint32_t(int8kv::quantize_value(a[r][i].y, s, z)) << 8 |
                           uint32_t(int8kv::quantize_value(a[r][i].z, s, z)) << 16 |
                           uint32_t(int8kv::quantize_value(a[r][i].w, s, z)) << 24;
        reinterpret_cast<uint32_t*>(q[r])[c] = w;
      }
    }
    if (lane == 0) {
      *sp[r] = s_bits;
      *zp[r] = uint8_t(z);
    }
  }
}

// quantize_rows_regs of K row xk and V row xv [D] f32 (16-byte aligned), both loaded before either
// is reduced, so their load latencies overlap.
__device__ void quantize_rows_vec(const float* __restrict__ xk, const float* __restrict__ xv,  // [D] f32 each
                                  int D, int lane,
                                  uint8_t* __restrict__ qk, uint8_t* __restrict__ qv,          // [D] codes each
                                  uint16_t* __restrict__ sk, uint16_t* __restrict__ sv,        // [1] fp16 bits each
                                  uint8_t* __restrict__ zk, uint8_t* __restrict__ zv) {        // [1] each
  const int chunks = D / 4;
  float4 a[2][kVecChunks];
#pragma unroll
  for (int i = 0; i < kVecChunks; ++i) {
    const int c = lane + 32 * i;
    const bool in = c < chunks;
    a[0][i] = in ? __ldg(reinterpret_cast<const float4*>(xk) + c) : make_float4(0.f, 0.f, 0.f, 0.f);
    a[1][i] = in ? __ldg(reinterpret_cast<const float4*>(xv) + c) : make_float4(0.f, 0.f, 0.f, 0.f);
  }
  quantize_rows_regs(a, D, lane, qk, qv, sk, sv, zk, zv);
}

// grid: ceil(num_tokens * num_kv_heads / kWarpsPerBlock) blocks of kWarpsPerBlock warps.
__global__ void __launch_bounds__(kWarpsPerBlock * 32)
append_kernel(const float* __restrict__ k,          // [num_tokens, H, D] f32
              const float* __restrict__ v,          // [num_tokens, H, D] f32
              uint8_t* __restrict__ k_cache,        // [num_blocks, H, bt, D] codes
              uint8_t* __restrict__ v_cache,        // [num_blocks, H, bt, D] codes
              uint16_t* __restrict__ k_scale,       // [num_blocks, H, bt] fp16 bits
              uint16_t* __restrict__ v_scale,       // [num_blocks, H, bt] fp16 bits
              uint8_t* __restrict__ k_zero,         // [num_blocks, H, bt]
              uint8_t* __restrict__ v_zero,         // [num_blocks, H, bt]
              const int32_t* __restrict__ table,    // [num_seqs, max_blocks]
              const int32_t* __restrict__ token_seq,  // [num_tokens]
              const int32_t* __restrict__ positions,  // [num_tokens]
              int max_blocks, int num_tokens, int H, int D, int bt, bool vec) {  // vec: quantize_rows_vec applies
  cuda_plugin::pdl_trigger();  // the next kernel may launch now: it waits for this one's end before it reads
  const int lane = threadIdx.x & 31;
  const int64_t row = int64_t(blockIdx.x) * kWarpsPerBlock + (threadIdx.x >> 5);  // token * H + head
  if (row >= int64_t(num_tokens) * H) return;  // whole warp leaves together
  const int t = int(row / H), h = int(row % H);
  const qkv_rope::Slots sl{table, token_seq, positions, max_blocks, num_tokens, bt};
  const int64_t r = sl.meta_row(t, h, H);  // metadata row
  // (the slot above: the step's metadata, uploaded before its first kernel — read before the wait)
  cuda_plugin::pdl_wait();  // k, v come from the previous kernel (programmatic dependent launch)
  if (vec) {
    quantize_rows_vec(k + row * D, v + row * D, D, lane, k_cache + r * D, v_cache + r * D, k_scale + r, v_scale + r,
                      k_zero + r, v_zero + r);
  } else {
    quantize_row_warp(k + row * D, D, lane, k_cache + r * D, k_scale + r, k_zero + r);
    quantize_row_warp(v + row * D, D, lane, v_cache + r * D, v_scale + r, v_zero + r);
  }
}

// Cache::append_qkv: k rotated and v read straight from the fused q | k | v rows, quantized as
// append_kernel does; the warps past the K/V rows rotate q into q_out (qkv_rope.cuh).
// grid: ceil(num_tokens · (KVH + H) / kWarpsPerBlock) blocks of kWarpsPerBlock warps; warp row
// r < T·KVH is (token, KV head) r, the rest (token, q head) r − T·KVH.
__global__ void __launch_bounds__(kWarpsPerBlock * 32)
append_qkv_kernel(const qkv_rope::Rows in,           // qkv [T, (H + 2·KVH)·D], q_out [T, H, D], cs [T, rot]
                  uint8_t* __restrict__ k_cache,     // [num_blocks, KVH, bt, D] codes
                  uint8_t* __restrict__ v_cache,     // [num_blocks, KVH, bt, D] codes
                  uint16_t* __restrict__ k_scale,    // [num_blocks, KVH, bt] fp16 bits
                  uint16_t* __restrict__ v_scale,    // [num_blocks, KVH, bt] fp16 bits
                  uint8_t* __restrict__ k_zero,      // [num_blocks, KVH, bt]
                  uint8_t* __restrict__ v_zero,      // [num_blocks, KVH, bt]
                  const qkv_rope::Slots sl) {        // table [num_seqs, max_blocks], token_seq / positions [T]
  cuda_plugin::pdl_trigger();  // the next kernel may launch now: it waits for this one's end before it reads
  const int lane = threadIdx.x & 31;
  // The slot and the cos/sin first: none of it comes from the previous kernel (plan_row).
  const qkv_rope::RowPlan pl =
      qkv_rope::plan_row(in, sl, int64_t(blockIdx.x) * kWarpsPerBlock + (threadIdx.x >> 5), lane);
  cuda_plugin::pdl_wait();  // qkv comes from the previous kernel (programmatic dependent launch)
  if (pl.kind == qkv_rope::RowPlan::q) qkv_rope::rotate_q_head(in, pl, lane);
  if (pl.kind != qkv_rope::RowPlan::kv) return;  // (the whole warp leaves together)
  const int D = in.D, chunks = D / 4;
  const int64_t r = pl.meta_row;
  const float* kx = in.k(pl.t, pl.h);
  const float* vx = in.v(pl.t, pl.h);
  float4 a[2][kVecChunks];
  static_assert(kVecChunks <= 2, "RowPlan holds the cos/sin of two chunks per lane");
#pragma unroll
  for (int i = 0; i < kVecChunks; ++i) {
    const int c = lane + 32 * i;
    const bool ok = c < chunks;
    a[0][i] = ok ? qkv_rope::rotated_chunk(kx, pl.cs[i], c, in.rot) : make_float4(0.f, 0.f, 0.f, 0.f);
    a[1][i] = ok ? qkv_rope::ld4(vx + 4 * c) : make_float4(0.f, 0.f, 0.f, 0.f);
  }
  quantize_rows_regs(a, D, lane, k_cache + r * D, v_cache + r * D, k_scale + r, v_scale + r, k_zero + r, v_zero + r);
}

}  // namespace

void prepare(int device) {
  DeviceScope scope(device);
  cudaFuncAttributes attr;
  check_cuda(cudaFuncGetAttributes(&attr, append_kernel), "loading the append kernel");
  check_cuda(cudaFuncGetAttributes(&attr, append_qkv_kernel), "loading the append_qkv kernel");
}

void append_qkv(const AppendQkvArgs& a, int device, void* stream) {
  if (a.num_tokens == 0) return;
  int64_t rows = 0;
  const qkv_rope::Rows in = qkv_rope::rows_of(a.src, a.num_kv_heads, a.head_dim, a.num_tokens, &rows, kWho);
  DeviceScope scope(device);
  const unsigned blocks = unsigned((rows + kWarpsPerBlock - 1) / kWarpsPerBlock);
  check_cuda(cuda_plugin::launch(cuda_plugin::pdl_enabled(device), static_cast<cudaStream_t>(stream), dim3(blocks),
                                 dim3(kWarpsPerBlock * 32), 0, append_qkv_kernel, in, a.k_cache, a.v_cache, a.k_scale,
                                 a.v_scale, a.k_zero, a.v_zero,
                                 qkv_rope::Slots{a.block_table, a.token_seq, a.positions, a.max_blocks, a.num_tokens,
                                                 a.block_tokens}),
             "launch of append_qkv_kernel");
}

void append(const AppendArgs& a, int device, void* stream) {
  if (a.num_tokens == 0) return;
  DeviceScope scope(device);
  const int64_t rows = int64_t(a.num_tokens) * a.num_kv_heads;
  const unsigned blocks = unsigned((rows + kWarpsPerBlock - 1) / kWarpsPerBlock);
  const auto a16 = [](const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; };
  const auto a4 = [](const void* p) { return reinterpret_cast<uintptr_t>(p) % 4 == 0; };
  const bool vec = a.head_dim % 4 == 0 && a.head_dim <= 128 * kVecChunks && a16(a.k) && a16(a.v) && a4(a.k_cache) &&
                   a4(a.v_cache);
  check_cuda(cuda_plugin::launch(cuda_plugin::pdl_enabled(device), static_cast<cudaStream_t>(stream), dim3(blocks),
                                 dim3(kWarpsPerBlock * 32), 0, append_kernel, a.k, a.v, a.k_cache, a.v_cache,
                                 a.k_scale, a.v_scale, a.k_zero, a.v_zero, a.block_table, a.token_seq, a.positions,
                                 a.max_blocks, a.num_tokens, a.num_kv_heads, a.head_dim, a.block_tokens, vec),
             "launch of append_kernel");
}

}  // namespace kvrun::cache_int8_cuda
