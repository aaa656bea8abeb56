// attention.naive — CUDA kernels. A decode step (one query token per sequence) with head_dim 64
// or 128 runs the fused decode kernel shared with attention.flash (plugins/common/paged_decode.cu:
// one pass over K and V, online softmax, split-K with a combine kernel for few long sequences). Every other step is processed in chunks of
// tokens that fit the score workspace allocated at creation; for each chunk three kernels run:
//   qk_kernel      scores[t, h, j] = scale · q[t, h] · k[j]   for keys j ≤ pos(t) (causal)
//   softmax_kernel scores[t, h, 0..pos] ← softmax in fp32 (the masked tail is never read)
//   pv_kernel      out[t, h] = Σ_j scores[t, h, j] · v[j]
// K and V rows are read straight from the paged blocks (head_dim 64/128: 16-byte loads, several
// rows per warp; other head_dims: element loads): fp16/bf16 converted, int8 dequantized as
// x = scale · (q − zero) in registers (never an fp16 copy of the cache). GQA: query head h reads
// KV head h / (num_heads / num_kv_heads).
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <climits>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "kvrun/cuda_plugin.cuh"
#include "attention_naive_cuda.hpp"
#include "kvrun/dtype.hpp"
#include "kvrun/error.hpp"

namespace kvrun::attention_naive_cuda {
namespace {

constexpr int kLanesMax = kMaxHeadDim / 32;  // values of a K/V row held per lane
constexpr int kQkKeys = 64;                  // keys per Q·Kᵀ block
constexpr int kQkThreads = 128;
constexpr int kSoftmaxThreads = 256;
constexpr int kPvThreads = 256;
constexpr int kPvWarps = kPvThreads / 32;

constexpr const char* kWho = "attention.naive";
void check_cuda(cudaError_t err, const char* what) { cuda_plugin::check(err, kWho, what); }
struct DeviceScope : cuda_plugin::DeviceScope {
  explicit DeviceScope(int device) : cuda_plugin::DeviceScope(device, kWho) {}
};

using paged_decode::Kv;
using paged_decode::RowVec;

// Lane `lane`'s values of the row at metadata index `r` (= (block·Hkv + head)·bt + slot):
// x[i] = element lane + 32·i as f32 (0 beyond D).
template <KvLayout L>
__device__ __forceinline__ void load_row(const Kv& kv, int64_t r, int D, int lane, float (&x)[kLanesMax]) {
  if constexpr (L == KvLayout::u8) {
    const uint8_t* q = static_cast<const uint8_t*>(kv.data) + r * D;
    const float s = __half2float(__ushort_as_half(kv.scale[r]));
    const float z = float(kv.zero[r]);
#pragma unroll
    for (int i = 0; i < kLanesMax; ++i) {
      const int d = lane + 32 * i;
      x[i] = d < D ? s * (float(q[d]) - z) : 0.f;
    }
  } else {
    const uint16_t* e = static_cast<const uint16_t*>(kv.data) + r * D;
#pragma unroll
    for (int i = 0; i < kLanesMax; ++i) {
      const int d = lane + 32 * i;
      if (d < D) {
        if constexpr (L == KvLayout::f16) x[i] = __half2float(__ushort_as_half(e[d]));
        else x[i] = __uint_as_float(uint32_t(e[d]) << 16);  // bf16
      } else {
        x[i] = 0.f;
      }
    }
  }
}

__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
  for (int off = 16; off > 0; off >>= 1) v += __shfl_xor_sync(0xffffffffu, v, off);
  return v;
}

// Position of token t (its sequence s = token_seq[t]): past_len + index within the sequence.
__device__ __forceinline__ int token_pos(const int32_t* q_start, const int32_t* kv_len, int s, int t) {
  const int q0 = q_start[s], q1 = q_start[s + 1];
  return kv_len[s] - (q1 - q0) + (t - q0);
}

// grid (ceil(max_kv_len / kQkKeys), chunk tokens, Hkv), kQkThreads threads, G·D floats of dynamic
// shared memory (the group's query rows). One warp per key; the G dot products of a key are warp sums.
template <KvLayout L>
__global__ void __launch_bounds__(kQkThreads)
qk_kernel(float* __restrict__ scores,             // [chunk tokens, H, stride] f32
          const float* __restrict__ q,            // [num_tokens, H, D] f32
          Kv k,                                   // keys, [num_blocks, Hkv, bt, D]
          const int32_t* __restrict__ table,      // [num_seqs, max_blocks]
          const int32_t* __restrict__ q_start,    // [num_seqs + 1]
          const int32_t* __restrict__ kv_len,     // [num_seqs]
          const int32_t* __restrict__ token_seq,  // [num_tokens]
          int t0, int H, int Hkv, int D, int bt, int max_blocks, int stride, float scale) {
  extern __shared__ float q_sh[];  // [G, D]
  const int G = H / Hkv;
  const int tl = blockIdx.y, t = t0 + tl, g = blockIdx.z;
  const int s = token_seq[t];
  const int pos = token_pos(q_start, kv_len, s, t);
  const int j_begin = blockIdx.x * kQkKeys;
  if (j_begin > pos) return;  // whole block: causal
  const float* qg = q + (int64_t(t) * H + int64_t(g) * G) * D;  // the group's heads are contiguous
  for (int i = threadIdx.x; i < G * D; i += kQkThreads) q_sh[i] = qg[i];
  __syncthreads();
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int32_t* trow = table + int64_t(s) * max_blocks;
  const int j_last = min(pos, j_begin + kQkKeys - 1);
  for (int j = j_begin + warp; j <= j_last; j += kQkThreads / 32) {
    const int64_t r = (int64_t(trow[j / bt]) * Hkv + g) * bt + j % bt;
    float x[kLanesMax];
    load_row<L>(k, r, D, lane, x);
    for (int h = 0; h < G; ++h) {
      float part = 0.f;
#pragma unroll
      for (int i = 0; i < kLanesMax; ++i) {
        const int d = lane + 32 * i;
        if (d < D) part += q_sh[h * D + d] * x[i];
      }
      part = warp_sum(part);
      if (lane == 0) scores[(int64_t(tl) * H + int64_t(g) * G + h) * stride + j] = part * scale;
    }
  }
}

// Block-wide reduction of kSoftmaxThreads values (max or sum).
template <bool kMax>
__device__ float block_reduce(float v, float* red) {
#pragma unroll
  for (int off = 16; off > 0; off >>= 1) {
    const float o = __shfl_xor_sync(0xffffffffu, v, off);
    v = kMax ? fmaxf(v, o) : v + o;
  }
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  __syncthreads();  // red may still be read from a previous reduction
  if (lane == 0) red[warp] = v;
  __syncthreads();
  v = red[0];
  for (int w = 1; w < kSoftmaxThreads / 32; ++w) v = kMax ? fmaxf(v, red[w]) : v + red[w];
  return v;
}

// grid (chunk tokens, H), kSoftmaxThreads threads: row (t, h) of scores, entries 0..pos.
__global__ void __launch_bounds__(kSoftmaxThreads)
softmax_kernel(float* __restrict__ scores,             // [chunk tokens, H, stride] f32, in place
               const int32_t* __restrict__ q_start,    // [num_seqs + 1]
               const int32_t* __restrict__ kv_len,     // [num_seqs]
               const int32_t* __restrict__ token_seq,  // [num_tokens]
               int t0, int H, int stride) {
  __shared__ float red[kSoftmaxThreads / 32];
  const int tl = blockIdx.x, t = t0 + tl, h = blockIdx.y;
  const int n = token_pos(q_start, kv_len, token_seq[t], t) + 1;
  float* row = scores + (int64_t(tl) * H + h) * stride;
  float mx = -INFINITY;
  for (int j = threadIdx.x; j < n; j += kSoftmaxThreads) mx = fmaxf(mx, row[j]);
  mx = block_reduce<true>(mx, red);
  float sum = 0.f;
  for (int j = threadIdx.x; j < n; j += kSoftmaxThreads) {
    const float e = expf(row[j] - mx);
    row[j] = e;
    sum += e;
  }
  sum = block_reduce<false>(sum, red);
  const float inv = 1.f / sum;
  for (int j = threadIdx.x; j < n; j += kSoftmaxThreads) row[j] *= inv;
}

// grid (chunk tokens, H), kPvThreads threads: the warps split the keys, each lane holds
// kLanesMax output values, then the warps' partial rows are summed through shared memory.
template <KvLayout L>
__global__ void __launch_bounds__(kPvThreads)
pv_kernel(float* __restrict__ out,                // [num_tokens, H, D] f32
          const float* __restrict__ probs,        // [chunk tokens, H, stride] f32 (softmax rows)
          Kv v,                                   // values, [num_blocks, Hkv, bt, D]
          const int32_t* __restrict__ table,      // [num_seqs, max_blocks]
          const int32_t* __restrict__ q_start,    // [num_seqs + 1]
          const int32_t* __restrict__ kv_len,     // [num_seqs]
          const int32_t* __restrict__ token_seq,  // [num_tokens]
          int t0, int H, int Hkv, int D, int bt, int max_blocks, int stride) {
  __shared__ float part[kPvWarps * kMaxHeadDim];  // [warps, D]
  const int tl = blockIdx.x, t = t0 + tl, h = blockIdx.y, g = h / (H / Hkv);
  const int s = token_seq[t];
  const int n = token_pos(q_start, kv_len, s, t) + 1;
  const float* p = probs + (int64_t(tl) * H + h) * stride;
  const int32_t* trow = table + int64_t(s) * max_blocks;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  float acc[kLanesMax];
#pragma unroll
  for (int i = 0; i < kLanesMax; ++i) acc[i] = 0.f;
  for (int j = warp; j < n; j += kPvWarps) {
    const float pj = p[j];
    const int64_t r = (int64_t(trow[j / bt]) * Hkv + g) * bt + j % bt;
    float x[kLanesMax];
    load_row<L>(v, r, D, lane, x);
#pragma unroll
    for (int i = 0; i < kLanesMax; ++i) acc[i] += pj * x[i];
  }
#pragma unroll
  for (int i = 0; i < kLanesMax; ++i) {
    const int d = lane + 32 * i;
    if (d < D) part[warp * D + d] = acc[i];
  }
  __syncthreads();
  for (int d = threadIdx.x; d < D; d += kPvThreads) {
    float o = 0.f;
    for (int w = 0; w < kPvWarps; ++w) o += part[w * D + d];
    out[(int64_t(t) * H + h) * D + d] = o;
  }
}

// ---- 16-byte row access (head_dim 64 and 128) --------------------------------------------------
// A K/V row of D elements is read as 16-byte chunks: LPK = D·size/16 lanes per row (u8: 16
// elements a lane, fp16/bf16: 8), so a warp reads KPW = 32/LPK rows at once with full-width loads.


// Elements c·E .. c·E + E − 1 of the row at metadata index r, as f32 (int8: scale · (q − zero)).
template <KvLayout L, int D>
__device__ __forceinline__ void load_chunk(const Kv& kv, int64_t r, int c, float (&x)[RowVec<L>::E]) {
  const uint4 w = __ldg(reinterpret_cast<const uint4*>(static_cast<const uint8_t*>(kv.data) +
                                                       (r * D) * RowVec<L>::kSize) + c);
  const uint32_t u[4] = {w.x, w.y, w.z, w.w};
  if constexpr (L == KvLayout::u8) {
    const float s = __half2float(__ushort_as_half(__ldg(kv.scale + r)));
    const float z = float(__ldg(kv.zero + r));
#pragma unroll
    for (int i = 0; i < 16; ++i) x[i] = s * (float((u[i / 4] >> (8 * (i % 4))) & 0xffu) - z);
  } else {
#pragma unroll
    for (int i = 0; i < 8; ++i) {
      const uint32_t h = (u[i / 2] >> (16 * (i % 2))) & 0xffffu;
      if constexpr (L == KvLayout::f16) x[i] = __half2float(__ushort_as_half(uint16_t(h)));
      else x[i] = __uint_as_float(h << 16);
    }
  }
}

// Same grid, block and shared memory as qk_kernel; KPW keys per warp per iteration.
template <KvLayout L, int D>
__global__ void __launch_bounds__(kQkThreads)
qk_vec_kernel(float* __restrict__ scores,             // [chunk tokens, H, stride] f32
              const float* __restrict__ q,            // [num_tokens, H, D] f32
              Kv k,                                   // keys, [num_blocks, Hkv, bt, D]
              const int32_t* __restrict__ table,      // [num_seqs, max_blocks]
              const int32_t* __restrict__ q_start,    // [num_seqs + 1]
              const int32_t* __restrict__ kv_len,     // [num_seqs]
              const int32_t* __restrict__ token_seq,  // [num_tokens]
              int t0, int H, int Hkv, int bt, int max_blocks, int stride, float scale) {
  constexpr int E = RowVec<L>::E, LPK = D / E, KPW = 32 / LPK, kWarps = kQkThreads / 32;
  extern __shared__ float q_sh[];  // [G, D]
  const int G = H / Hkv;
  const int tl = blockIdx.y, t = t0 + tl, g = blockIdx.z;
  const int s = token_seq[t];
  const int pos = token_pos(q_start, kv_len, s, t);
  const int j_begin = blockIdx.x * kQkKeys;
  if (j_begin > pos) return;  // whole block: causal
  const float* qg = q + (int64_t(t) * H + int64_t(g) * G) * D;
  for (int i = threadIdx.x; i < G * D; i += kQkThreads) q_sh[i] = qg[i];
  __syncthreads();
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int sub = lane / LPK, c = lane % LPK;  // key within the warp's group, chunk of the row
  const int32_t* trow = table + int64_t(s) * max_blocks;
  const int j_last = min(pos, j_begin + kQkKeys - 1);
  for (int jj = j_begin + warp * KPW; jj <= j_last; jj += kWarps * KPW) {
    const int j = jj + sub;
    const bool ok = j <= j_last;
    float x[E];
    if (ok) {
      load_chunk<L, D>(k, (int64_t(trow[j / bt]) * Hkv + g) * bt + j % bt, c, x);
    } else {
#pragma unroll
      for (int i = 0; i < E; ++i) x[i] = 0.f;
    }
    for (int h = 0; h < G; ++h) {
      const float* qh = q_sh + h * D + c * E;
      float part = 0.f;
#pragma unroll
      for (int i = 0; i < E; ++i) part += qh[i] * x[i];
#pragma unroll
      for (int off = LPK / 2; off > 0; off >>= 1) part += __shfl_xor_sync(0xffffffffu, part, off);
      if (c == 0 && ok) scores[(int64_t(tl) * H + int64_t(g) * G + h) * stride + j] = part * scale;
    }
  }
}

// Same grid and block as pv_kernel; each warp accumulates KPW keys at once (lane = key sub ×
// chunk), then the subs and the warps are summed.
template <KvLayout L, int D>
__global__ void __launch_bounds__(kPvThreads)
pv_vec_kernel(float* __restrict__ out,                // [num_tokens, H, D] f32
              const float* __restrict__ probs,        // [chunk tokens, H, stride] f32 (softmax rows)
              Kv v,                                   // values, [num_blocks, Hkv, bt, D]
              const int32_t* __restrict__ table,      // [num_seqs, max_blocks]
              const int32_t* __restrict__ q_start,    // [num_seqs + 1]
              const int32_t* __restrict__ kv_len,     // [num_seqs]
              const int32_t* __restrict__ token_seq,  // [num_tokens]
              int t0, int H, int Hkv, int bt, int max_blocks, int stride) {
  constexpr int E = RowVec<L>::E, LPK = D / E, KPW = 32 / LPK;
  __shared__ float part[kPvWarps * D];  // [warps, D]
  const int tl = blockIdx.x, t = t0 + tl, h = blockIdx.y, g = h / (H / Hkv);
  const int s = token_seq[t];
  const int n = token_pos(q_start, kv_len, s, t) + 1;
  const float* p = probs + (int64_t(tl) * H + h) * stride;
  const int32_t* trow = table + int64_t(s) * max_blocks;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int sub = lane / LPK, c = lane % LPK;
  float acc[E];
#pragma unroll
  for (int i = 0; i < E; ++i) acc[i] = 0.f;
  for (int j = warp * KPW + sub; j < n; j += kPvWarps * KPW) {
    const float pj = p[j];
    float x[E];
    load_chunk<L, D>(v, (int64_t(trow[j / bt]) * Hkv + g) * bt + j % bt, c, x);
#pragma unroll
    for (int i = 0; i < E; ++i) acc[i] = fmaf(pj, x[i], acc[i]);
  }
#pragma unroll
  for (int i = 0; i < E; ++i)
#pragma unroll
    for (int off = 16; off >= LPK; off >>= 1) acc[i] += __shfl_xor_sync(0xffffffffu, acc[i], off);
  if (sub == 0) {
#pragma unroll
    for (int i = 0; i < E; ++i) part[warp * D + c * E + i] = acc[i];
  }
  __syncthreads();
  for (int d = threadIdx.x; d < D; d += kPvThreads) {
    float o = 0.f;
    for (int w = 0; w < kPvWarps; ++w) o += part[w * D + d];
    out[(int64_t(t) * H + h) * D + d] = o;
  }
}

template <KvLayout L>
void launch_chunks(const Args& a, cudaStream_t stream) {
  if (a.out_bf16) fail(ErrorKind::internal, "attention.naive (CUDA): a bf16 output is written by decode steps only");
  const int H = a.num_heads, Hkv = a.num_kv_heads, G = H / Hkv, D = a.head_dim;
  const int64_t stride = a.max_kv_len;
  const int64_t per_token = int64_t(H) * stride;  // score floats of one token
  const int64_t fit = int64_t(a.scores_capacity) / per_token;
  if (fit < 1)
    fail(ErrorKind::usage, "attention.naive (CUDA): a step with kv length " + std::to_string(a.max_kv_len) +
                               " needs " + std::to_string(per_token * 4) + " bytes of scores per token but the workspace holds " +
                               std::to_string(a.scores_capacity * 4) + " (AttentionParams::max_kv_len too small)");
  const int chunk = int(std::min<int64_t>({fit, int64_t(a.num_tokens), 65535}));
  const Kv k{a.k, a.k_scale, a.k_zero}, v{a.v, a.v_scale, a.v_zero};
  const size_t qk_smem = size_t(G) * D * sizeof(float);
  for (int t0 = 0; t0 < a.num_tokens; t0 += chunk) {
    const int n = std::min(chunk, a.num_tokens - t0);
    const dim3 qk_grid{unsigned((stride + kQkKeys - 1) / kQkKeys), unsigned(n), unsigned(Hkv)};
    if (D == 128)
      qk_vec_kernel<L, 128><<<qk_grid, kQkThreads, qk_smem, stream>>>(a.scores, a.q, k, a.block_table, a.q_start,
                                                                      a.kv_len, a.token_seq, t0, H, Hkv,
                                                                      a.block_tokens, a.max_blocks, int(stride), a.scale);
    else if (D == 64)
      qk_vec_kernel<L, 64><<<qk_grid, kQkThreads, qk_smem, stream>>>(a.scores, a.q, k, a.block_table, a.q_start,
                                                                     a.kv_len, a.token_seq, t0, H, Hkv,
                                                                     a.block_tokens, a.max_blocks, int(stride), a.scale);
    else
      qk_kernel<L><<<qk_grid, kQkThreads, qk_smem, stream>>>(a.scores, a.q, k, a.block_table, a.q_start, a.kv_len,
                                                             a.token_seq, t0, H, Hkv, D, a.block_tokens, a.max_blocks,
                                                             int(stride), a.scale);
    check_cuda(cudaGetLastError(), "launch of qk_kernel");
    softmax_kernel<<<dim3(unsigned(n), unsigned(H)), kSoftmaxThreads, 0, stream>>>(a.scores, a.q_start, a.kv_len,
                                                                                   a.token_seq, t0, H, int(stride));
    check_cuda(cudaGetLastError(), "launch of softmax_kernel");
    const dim3 pv_grid{unsigned(n), unsigned(H)};
    if (D == 128)
      pv_vec_kernel<L, 128><<<pv_grid, kPvThreads, 0, stream>>>(static_cast<float*>(a.out), a.scores, v, a.block_table, a.q_start,
                                                                a.kv_len, a.token_seq, t0, H, Hkv, a.block_tokens,
                                                                a.max_blocks, int(stride));
    else if (D == 64)
      pv_vec_kernel<L, 64><<<pv_grid, kPvThreads, 0, stream>>>(static_cast<float*>(a.out), a.scores, v, a.block_table, a.q_start,
                                                               a.kv_len, a.token_seq, t0, H, Hkv, a.block_tokens,
                                                               a.max_blocks, int(stride));
    else
      pv_kernel<L><<<pv_grid, kPvThreads, 0, stream>>>(static_cast<float*>(a.out), a.scores, v, a.block_table, a.q_start, a.kv_len,
                                                       a.token_seq, t0, H, Hkv, D, a.block_tokens, a.max_blocks,
                                                       int(stride));
    check_cuda(cudaGetLastError(), "launch of pv_kernel");
  }
}

template <KvLayout L>
void prepare_layout(size_t qk_smem, int smem_optin) {
  cudaFuncAttributes attr;
  check_cuda(cudaFuncGetAttributes(&attr, qk_kernel<L>), "loading qk_kernel");
  check_cuda(cudaFuncGetAttributes(&attr, pv_kernel<L>), "loading pv_kernel");
  check_cuda(cudaFuncGetAttributes(&attr, qk_vec_kernel<L, 64>), "loading qk_vec_kernel");
  check_cuda(cudaFuncGetAttributes(&attr, qk_vec_kernel<L, 128>), "loading qk_vec_kernel");
  check_cuda(cudaFuncGetAttributes(&attr, pv_vec_kernel<L, 64>), "loading pv_vec_kernel");
  check_cuda(cudaFuncGetAttributes(&attr, pv_vec_kernel<L, 128>), "loading pv_vec_kernel");
  if (qk_smem > 48 * 1024) {
    if (qk_smem > size_t(smem_optin))
      fail(ErrorKind::usage, "attention.naive (CUDA): the query rows of one GQA group need " + std::to_string(qk_smem) +
                                 " bytes of shared memory, more than the device's " + std::to_string(smem_optin));
    check_cuda(cudaFuncSetAttribute(qk_kernel<L>, cudaFuncAttributeMaxDynamicSharedMemorySize, int(qk_smem)),
               "cudaFuncSetAttribute(qk_kernel)");
    for (auto* f : {qk_vec_kernel<L, 64>, qk_vec_kernel<L, 128>})
      check_cuda(cudaFuncSetAttribute(f, cudaFuncAttributeMaxDynamicSharedMemorySize, int(qk_smem)),
                 "cudaFuncSetAttribute(qk_vec_kernel)");
  }
}

// KVRUN_NAIVE_DECODE=0 turns the fused decode path off (decode steps then run the three score
// kernels). Read once; other values are usage errors.
bool decode_enabled() {
  static const bool on = cuda_plugin::env_int("KVRUN_NAIVE_DECODE", 0, 1, 1) == 1;
  return on;
}

}  // namespace

bool decode_writes_bf16(bool decode, int head_dim, int num_seqs, int num_tokens) {
  return decode && decode_enabled() && paged_decode::supported_head_dim(head_dim) && num_seqs == num_tokens &&
         num_tokens > 0;
}

int prepare(int device, int num_heads, int num_kv_heads, int head_dim) {
  DeviceScope scope(device);
  int optin = 0;
  check_cuda(cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, device),
             "cudaDeviceGetAttribute(MaxSharedMemoryPerBlockOptin)");
  const size_t qk_smem = size_t(num_heads / num_kv_heads) * size_t(head_dim) * sizeof(float);
  prepare_layout<KvLayout::f16>(qk_smem, optin);
  prepare_layout<KvLayout::bf16>(qk_smem, optin);
  prepare_layout<KvLayout::u8>(qk_smem, optin);
  cudaFuncAttributes attr;
  check_cuda(cudaFuncGetAttributes(&attr, softmax_kernel), "loading softmax_kernel");
  paged_decode::load_kernels(kWho);
  int sms = 0;
  check_cuda(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device),
             "cudaDeviceGetAttribute(MultiProcessorCount)");
  return sms;
}

void forward(const Args& a, int device, void* stream) {
  if (a.num_tokens == 0) return;
  if (a.head_dim <= 0 || a.head_dim > kMaxHeadDim)
    fail(ErrorKind::usage, "attention.naive (CUDA): head_dim " + std::to_string(a.head_dim) + " is not supported (1.." +
                               std::to_string(kMaxHeadDim) + ")");
  DeviceScope scope(device);
  const auto s = static_cast<cudaStream_t>(stream);
  if (decode_writes_bf16(a.decode, a.head_dim, a.num_seqs, a.num_tokens)) {  // the fused decode kernel
    paged_decode::Args d = a;  // the decode kernel's part of the arguments
    d.who = kWho;
    paged_decode::launch(d, s);
    return;
  }
  switch (a.layout) {
    case KvLayout::f16: launch_chunks<KvLayout::f16>(a, s); break;
    case KvLayout::bf16: launch_chunks<KvLayout::bf16>(a, s); break;
    case KvLayout::u8: launch_chunks<KvLayout::u8>(a, s); break;
  }
}

}  // namespace kvrun::attention_naive_cuda
