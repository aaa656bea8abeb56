// cache.fp16 — CUDA append kernel: one warp per (token, KV head) row converts head_dim f32 values
// to fp16 (round to nearest even, the same kvrun::f32_to_f16 as the CPU code, so the blocks are
// bit-identical) and stores them at the token's slot of its sequence's paged block.
#include <cuda_runtime.h>

#include <string>

#include "kvrun/cuda_plugin.cuh"
#include "cache_fp16_cuda.hpp"
#include "kvrun/dtype.hpp"
#include "kvrun/error.hpp"
#include "qkv_rope.cuh"

namespace kvrun::cache_fp16_cuda {
namespace {

constexpr int kWarpsPerBlock = 4;

constexpr const char* kWho = "cache.fp16";
void check_cuda(cudaError_t err, const char* what) { cuda_plugin::check(err, kWho, what); }
struct DeviceScope : cuda_plugin::DeviceScope {
  explicit DeviceScope(int device) : cuda_plugin::DeviceScope(device, kWho) {}
};

// grid: ceil(num_tokens * num_kv_heads / kWarpsPerBlock) blocks of kWarpsPerBlock warps.
__global__ void __launch_bounds__(kWarpsPerBlock * 32)
append_kernel(const float* __restrict__ k,          // [num_tokens, H, D] f32
              const float* __restrict__ v,          // [num_tokens, H, D] f32
              uint16_t* __restrict__ k_cache,       // [num_blocks, H, bt, D] fp16 bits
              uint16_t* __restrict__ v_cache,       // [num_blocks, H, bt, D] fp16 bits
              const int32_t* __restrict__ table,    // [num_seqs, max_blocks]
              const int32_t* __restrict__ token_seq,  // [num_tokens]
              const int32_t* __restrict__ positions,  // [num_tokens]
              int max_blocks, int num_tokens, int H, int D, int bt) {
  cuda_plugin::pdl_trigger();  // the next kernel may launch now: it waits for this one's end before it reads
  const int lane = threadIdx.x & 31;
  const int64_t row = int64_t(blockIdx.x) * kWarpsPerBlock + (threadIdx.x >> 5);  // token * H + head
  if (row >= int64_t(num_tokens) * H) return;
  const int t = int(row / H), h = int(row % H);
  const qkv_rope::Slots sl{table, token_seq, positions, max_blocks, num_tokens, bt};
  const int64_t dst = sl.meta_row(t, h, H) * D;
  // (the slot above: the step's metadata, uploaded before its first kernel — read before the wait)
  cuda_plugin::pdl_wait();  // k, v come from the previous kernel (programmatic dependent launch)
  const int64_t src = row * D;
  for (int d = lane; d < D; d += 32) {
    k_cache[dst + d] = f32_to_f16(k[src + d]);
    v_cache[dst + d] = f32_to_f16(v[src + d]);
  }
}

// Four f32 values as fp16 bits (kvrun::f32_to_f16, as append_kernel) at dst (8-byte aligned).
__device__ __forceinline__ void store_f16x4(uint16_t* dst, float4 v) {
  const uint32_t lo = uint32_t(f32_to_f16(v.x)) | uint32_t(f32_to_f16(v.y)) << 16;
  const uint32_t hi = uint32_t(f32_to_f16(v.z)) | uint32_t(f32_to_f16(v.w)) << 16;
  *reinterpret_cast<uint2*>(dst) = make_uint2(lo, hi);
}

// Cache::append_qkv: k rotated and v read straight from the fused q | k | v rows and stored as
// append_kernel does; the warps past the K/V rows rotate q into q_out (qkv_rope.cuh).
// grid: ceil(num_tokens · (KVH + H) / kWarpsPerBlock) blocks of kWarpsPerBlock warps; warp row
// r < T·KVH is (token, KV head) r, the rest (token, q head) r − T·KVH.
__global__ void __launch_bounds__(kWarpsPerBlock * 32)
append_qkv_kernel(const qkv_rope::Rows in,              // qkv [T, (H + 2·KVH)·D], q_out [T, H, D], cs [T, rot]
                  uint16_t* __restrict__ k_cache,       // [num_blocks, KVH, bt, D] fp16 bits
                  uint16_t* __restrict__ v_cache,       // [num_blocks, KVH, bt, D] fp16 bits
                  const qkv_rope::Slots sl) {           // table [num_seqs, max_blocks], token_seq / positions [T]
  cuda_plugin::pdl_trigger();  // the next kernel may launch now: it waits for this one's end before it reads
  const int lane = threadIdx.x & 31;
  // The slot and the cos/sin first: none of it comes from the previous kernel (plan_row).
  const qkv_rope::RowPlan pl =
      qkv_rope::plan_row(in, sl, int64_t(blockIdx.x) * kWarpsPerBlock + (threadIdx.x >> 5), lane);
  cuda_plugin::pdl_wait();  // qkv comes from the previous kernel (programmatic dependent launch)
  if (pl.kind == qkv_rope::RowPlan::q) qkv_rope::rotate_q_head(in, pl, lane);
  if (pl.kind != qkv_rope::RowPlan::kv) return;  // (the whole warp leaves together)
  const int64_t dst = pl.meta_row * in.D;
  const float* kx = in.k(pl.t, pl.h);
  const float* vx = in.v(pl.t, pl.h);
#pragma unroll
  for (int i = 0; i < 2; ++i) {  // chunks lane and lane + 32 (D ≤ 256: qkv_rope::supported)
    const int c = lane + 32 * i;
    if (c >= in.D / 4) break;
    store_f16x4(k_cache + dst + 4 * c, qkv_rope::rotated_chunk(kx, pl.cs[i], c, in.rot));
    store_f16x4(v_cache + dst + 4 * c, qkv_rope::ld4(vx + 4 * c));
  }
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
                                 dim3(kWarpsPerBlock * 32), 0, append_qkv_kernel, in, a.k_cache, a.v_cache,
                                 qkv_rope::Slots{a.block_table, a.token_seq, a.positions, a.max_blocks, a.num_tokens,
                                                 a.block_tokens}),
             "launch of append_qkv_kernel");
}

void append(const AppendArgs& a, int device, void* stream) {
  if (a.num_tokens == 0) return;
  DeviceScope scope(device);
  const int64_t rows = int64_t(a.num_tokens) * a.num_kv_heads;
  const unsigned blocks = unsigned((rows + kWarpsPerBlock - 1) / kWarpsPerBlock);
  check_cuda(cuda_plugin::launch(cuda_plugin::pdl_enabled(device), static_cast<cudaStream_t>(stream), dim3(blocks),
                                 dim3(kWarpsPerBlock * 32), 0, append_kernel, a.k, a.v, a.k_cache, a.v_cache,
                                 a.block_table, a.token_seq, a.positions, a.max_blocks, a.num_tokens, a.num_kv_heads,
                                 a.head_dim, a.block_tokens),
             "launch of append_kernel");
}

}  // namespace kvrun::cache_fp16_cuda
