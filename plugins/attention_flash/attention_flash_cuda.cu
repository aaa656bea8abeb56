// attention.flash — CUDA kernels: causal attention over paged fp16/bf16 KV blocks with tensor
// cores (mma.sync m16n8k16, fp16 or bf16 inputs, fp32 accumulation) and an online softmax; the
// score matrix is never materialized.
//
// Work decomposition. For one sequence s and KV head g the query rows are (query i, head of the
// group) pairs, r = i · G + (h − g·G), so the G query heads that share a KV head share every K/V
// tile. A block of 4 warps owns kBM = 64 such rows (16 per warp) and walks the keys in tiles of
// kBN = 64 tokens, gathered from the paged blocks through the block table with cp.async into
// shared memory (K of the next tile streams in while P·V of the current tile runs). Per tile and
// warp: S = Q·Kᵀ (Q fragments stay in registers for the whole block, converted from f32 once),
// causal mask, running max m / sum l per row, O = O·correction + P·V with P converted to the
// element type in registers (the accumulator layout of S is the A-operand layout of P·V).
//
// Decode steps (one query token per sequence) do not come here by default: they run the fused
// decode kernel shared with attention.naive (plugins/common/paged_decode.cu; KVRUN_FLASH_DECODE=0
// keeps them on the tiles below). The tiles take prefill and mixed steps.
//
// Decode (at most 16 query rows per sequence and KV head, e.g. one token with G <= 16) would leave
// warps 1..3 idle; there the block owns one 16-row slab and its 4 warps split every key tile (warp
// w: keys 16·w .. 16·w + 15), each with its own m, l and O, merged in warp order at the end.
//
// Split-K (decode, short query batches): when the step has too few blocks to fill the device the
// keys of each block are split into gridDim.z parts; each writes an unnormalized partial O with
// its m and l to the workspace and combine_kernel merges them. The split ranges are computed on
// the device from kv_len, so a captured graph stays correct when the lengths change.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <string>

#include "kvrun/cuda_plugin.cuh"
#include "attention_flash_cuda.hpp"
#include "paged_decode.hpp"
#include "splitk_combine.cuh"
#include "kvrun/error.hpp"

namespace kvrun::attention_flash_cuda {
namespace {

constexpr int kBM = 64;             // query rows per block
constexpr int kBN = 64;             // keys per tile
constexpr int kWarps = kBM / 16;    // one m16 row slab per warp
constexpr int kThreads = kWarps * 32;
constexpr int kDecodeKW = 4;        // warps per slab (key split) of the decode kernel
constexpr int kMinSplitKeys = 256;  // a split part covers at least this many keys
// Split-K is on by default (used when a step has too few blocks to fill the device and its longest
// cache has at least 2 · kMinSplitKeys keys). KVRUN_FLASH_SPLITK=0 turns it off (every step runs
// unsplit). It was off until combine_kernel's wrong results for 4+ parts were found (see there).
// Decode steps run the decode kernel shared with attention.naive (paged_decode.cu): one query row
// per (sequence, head) fills 1 of the 16 rows of a tensor-core tile, and the step is bound by the
// bytes of K and V, which that kernel streams at the copy rate (docs/PERFORMANCE.md, session 14:
// batch 64 at 1024 new tokens, and batch 1). KVRUN_FLASH_DECODE=0 keeps them on the tiles below.
bool decode_kernel_enabled() {
  static const bool on = cuda_plugin::env_int("KVRUN_FLASH_DECODE", 0, 1, 1) == 1;
  return on;
}
bool split_k_enabled() {
  static const bool on = cuda_plugin::env_int("KVRUN_FLASH_SPLITK", 0, 1, 1) == 1;
  return on;
}
constexpr float kLog2e = 1.4426950408889634f;

constexpr const char* kWho = "attention.flash";
void check_cuda(cudaError_t err, const char* what) { cuda_plugin::check(err, kWho, what); }
struct DeviceScope : cuda_plugin::DeviceScope {
  explicit DeviceScope(int device) : cuda_plugin::DeviceScope(device, kWho) {}
};

struct Params {
  float* out;                 // [num_tokens, H, D] f32
  const float* q;             // [num_tokens, H, D] f32
  const uint16_t* k;          // [num_blocks, Hkv, bt, D] fp16/bf16 bits
  const uint16_t* v;          // [num_blocks, Hkv, bt, D] fp16/bf16 bits
  const int32_t* table;       // [num_seqs, max_blocks]
  const int32_t* q_start;     // [num_seqs + 1]
  const int32_t* kv_len;      // [num_seqs]
  float* partial_o;           // [splits, num_tokens, H, D] f32 (splits > 1)
  float* partial_ml;          // [splits, num_tokens, H, 2] f32 (splits > 1)
  int max_blocks, bt, num_tokens, H, Hkv;
  float scale_log2;           // softmax scale · log2(e): scores are kept in the exp2 domain
};

// ---- PTX wrappers -------------------------------------------------------------------------------

// d[16x8] += a[16x16] · b[16x8]; a row-major, b column-major (= rows of Kᵀ / columns of V), f32 accumulators.
template <bool kBf16>
__device__ __forceinline__ void mma16816(float (&d)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
  if constexpr (kBf16) {
    cuda_plugin::mma_bf16_16816(d, a, b0, b1);
  } else {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
  }
}

// Two f32 values as one register of two 16-bit elements (lo in the low half), round to nearest even.
template <bool kBf16>
__device__ __forceinline__ uint32_t pack2(float lo, float hi) {
  if constexpr (kBf16) return cuda_plugin::pack_bf16x2(lo, hi);
  const __half2 v = __floats2half2_rn(lo, hi);
  uint32_t u;
  memcpy(&u, &v, 4);
  return u;
}

__device__ __forceinline__ void cp_async16(void* smem, const void* gmem) {
  const unsigned s = static_cast<unsigned>(__cvta_generic_to_shared(smem));
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(s), "l"(gmem));
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }
template <int N>
__device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory");
}

// Gathers keys (or values) j0 .. j0 + kBN − 1 of KV head g into tile[kBN, D + 8]; rows at or past
// j_end are zero (so 0 · garbage never reaches the accumulators).
template <int D>
__device__ __forceinline__ void load_tile(uint16_t* __restrict__ tile,          // [kBN, D + 8] shared
                                          const uint16_t* __restrict__ src,     // [num_blocks, Hkv, bt, D]
                                          const int32_t* __restrict__ trow,     // [max_blocks] this sequence
                                          int bt, int Hkv, int g, int j0, int j_end) {
  constexpr int kStride = D + 8;
  constexpr int kChunks = D / 8;  // 16-byte chunks per row
  for (int c = threadIdx.x; c < kBN * kChunks; c += kThreads) {
    const int r = c / kChunks, cc = c % kChunks, j = j0 + r;
    uint16_t* dst = tile + r * kStride + cc * 8;
    if (j < j_end) {
      const int64_t row = (int64_t(trow[j / bt]) * Hkv + g) * bt + j % bt;
      cp_async16(dst, src + row * D + cc * 8);
    } else {
      *reinterpret_cast<uint4*>(dst) = make_uint4(0u, 0u, 0u, 0u);
    }
  }
}

// ---- The attention kernel -----------------------------------------------------------------------

// KW: warps per 16-row slab. KW = 1 (prefill): 4 slabs, 64 rows per block, each warp computes
// every key of a tile for its own 16 rows. KW = 4 (decode, at most 16 query rows per sequence and
// KV head): one slab of 16 rows, and warp w computes keys 16·w .. 16·w + 15 of every tile, with
// its own running m, l and O; the 4 states are merged through shared memory at the end, in warp
// order (deterministic).
// grid (ceil(max_q_len · G / (16 · kWarps / KW)), num_seqs · Hkv, splits), kThreads threads.
// blockIdx.x: row tile; blockIdx.y: s · Hkv + g; blockIdx.z: split part.
template <int D, bool kBf16, int KW>
__global__ void __launch_bounds__(kThreads) flash_kernel(const Params p) {
  static_assert(D % 16 == 0 && D <= 256, "head_dim must be a multiple of 16");
  static_assert(KW == 1 || KW == 2 || KW == 4, "KW divides kWarps");
  constexpr int kStride = D + 8;  // shared row stride in elements: 16-byte aligned, conflict-free fragments
  constexpr int kKT = D / 16;     // k-steps of Q·Kᵀ
  constexpr int kDT = D / 8;      // n-tiles of O
  constexpr int kSlabs = kWarps / KW;   // 16-row slabs per block
  constexpr int kRows = 16 * kSlabs;    // query rows per block
  constexpr int kSliceN = kBN / KW;     // keys of a tile per warp
  // K tile [kBN, D + 8], then V tile [kBN, D + 8]; reused as f32 for the merge of the KW states.
  __shared__ __align__(16) uint16_t smem[2 * kBN * kStride];
  uint16_t* const ks = smem;
  uint16_t* const vs = smem + kBN * kStride;
  cuda_plugin::pdl_trigger();  // the next kernel may launch now: it waits for this one's end before it reads
  cuda_plugin::pdl_wait();  // q and the cache come from earlier kernels (programmatic dependent launch)

  const int H = p.H, Hkv = p.Hkv, G = H / Hkv;
  const int s = blockIdx.y / Hkv, g = blockIdx.y % Hkv;
  const int qs = p.q_start[s], ql = p.q_start[s + 1] - qs;
  const int past = p.kv_len[s] - ql;
  const int nrows = ql * G;
  const int row0 = blockIdx.x * kRows;
  if (row0 >= nrows) return;  // whole block: this sequence has fewer query rows

  // Keys this block needs (causal: up to its last row's position), and this split's part of them
  // in whole tiles.
  const int kv_end = past + (min(row0 + kRows, nrows) - 1) / G + 1;
  const int nsplit = gridDim.z;
  const int tiles = (kv_end + kBN - 1) / kBN;
  const int tiles_per_split = (tiles + nsplit - 1) / nsplit;
  const int j_begin = blockIdx.z * tiles_per_split * kBN;
  const int j_end = min(kv_end, j_begin + tiles_per_split * kBN);

  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int gid = lane >> 2, tig = lane & 3;  // mma fragment coordinates
  const int slab = warp / KW, kpart = warp % KW;  // this warp's rows, and its keys of each tile
  const int key0 = kpart * kSliceN;               // first key of this warp's slice of a tile
  // This thread's two rows: gid and gid + 8 of the warp's slab.
  bool valid[2];
  int pos[2], tok[2], head[2];
#pragma unroll
  for (int i = 0; i < 2; ++i) {
    const int r = row0 + slab * 16 + gid + 8 * i;
    valid[i] = r < nrows;
    pos[i] = valid[i] ? past + r / G : -1;  // -1: every key masked
    tok[i] = qs + (valid[i] ? r / G : 0);
    head[i] = g * G + (valid[i] ? r % G : 0);
  }
  const bool warp_active = row0 + slab * 16 < nrows;

  float m[2] = {-INFINITY, -INFINITY};  // running max (exp2 domain)
  float l[2] = {0.f, 0.f};              // running sum of this thread's columns
  float o[kDT][4];                      // O accumulators: [n-tile][c0..c3]
#pragma unroll
  for (int dt = 0; dt < kDT; ++dt) o[dt][0] = o[dt][1] = o[dt][2] = o[dt][3] = 0.f;

  if (j_begin < j_end) {
    // Q fragments (A operand, row-major 16x16 per k-step): qa[kk][0] row gid cols 2·tig..+1,
    // [1] row gid+8, [2] row gid cols 8+2·tig..+1, [3] row gid+8 cols 8+2·tig..+1.
    uint32_t qa[kKT][4];
#pragma unroll
    for (int kk = 0; kk < kKT; ++kk) {
#pragma unroll
      for (int i = 0; i < 2; ++i) {
        if (valid[i]) {
          const float* qrow = p.q + (int64_t(tok[i]) * H + head[i]) * D + kk * 16 + tig * 2;
          const float2 x0 = *reinterpret_cast<const float2*>(qrow);
          const float2 x1 = *reinterpret_cast<const float2*>(qrow + 8);
          qa[kk][i] = pack2<kBf16>(x0.x, x0.y);
          qa[kk][2 + i] = pack2<kBf16>(x1.x, x1.y);
        } else {
          qa[kk][i] = qa[kk][2 + i] = 0u;
        }
      }
    }

    const int32_t* trow = p.table + int64_t(s) * p.max_blocks;
    load_tile<D>(ks, p.k, trow, p.bt, Hkv, g, j_begin, j_end);
    cp_async_commit();
    for (int j0 = j_begin; j0 < j_end; j0 += kBN) {
      load_tile<D>(vs, p.v, trow, p.bt, Hkv, g, j0, j_end);
      cp_async_commit();
      cp_async_wait<1>();  // K of this tile has landed (V may be in flight)
      __syncthreads();

      uint32_t pa[kSliceN / 16][4];  // P as A fragments, one per 16-key k-step of P·V
      if (warp_active) {
        float sc[kSliceN / 8][4];  // S accumulators [key n-tile of the slice][c0..c3]
#pragma unroll
        for (int nt = 0; nt < kSliceN / 8; ++nt) sc[nt][0] = sc[nt][1] = sc[nt][2] = sc[nt][3] = 0.f;
#pragma unroll
        for (int kk = 0; kk < kKT; ++kk) {
#pragma unroll
          for (int nt = 0; nt < kSliceN / 8; ++nt) {
            // B = Kᵀ (16 dims x 8 keys), column-major = K rows: b0 dims 2·tig..+1, b1 dims 8+2·tig..+1 of key gid.
            const uint16_t* kr = ks + (key0 + nt * 8 + gid) * kStride + kk * 16 + tig * 2;
            mma16816<kBf16>(sc[nt], qa[kk], *reinterpret_cast<const uint32_t*>(kr),
                            *reinterpret_cast<const uint32_t*>(kr + 8));
          }
        }
        // Mask (causal, and this split's range) and the tile's row max; c0,c1 are row gid, c2,c3 row gid+8.
        float mx[2] = {-INFINITY, -INFINITY};
#pragma unroll
        for (int nt = 0; nt < kSliceN / 8; ++nt) {
#pragma unroll
          for (int e = 0; e < 4; ++e) {
            const int i = e >> 1;
            const int key = j0 + key0 + nt * 8 + tig * 2 + (e & 1);
            const float x = (key < j_end && key <= pos[i]) ? sc[nt][e] * p.scale_log2 : -INFINITY;
            sc[nt][e] = x;
            mx[i] = fmaxf(mx[i], x);
          }
        }
        float m_use[2];
#pragma unroll
        for (int i = 0; i < 2; ++i) {
          // The 4 threads of a quad hold the same two rows.
          mx[i] = fmaxf(mx[i], __shfl_xor_sync(0xffffffffu, mx[i], 1));
          mx[i] = fmaxf(mx[i], __shfl_xor_sync(0xffffffffu, mx[i], 2));
          const float m_new = fmaxf(m[i], mx[i]);
          m_use[i] = m_new == -INFINITY ? 0.f : m_new;  // a fully masked row stays all zero
          const float corr = exp2f(m[i] - m_use[i]);     // 0 on the first tile
          m[i] = m_new;
          l[i] *= corr;
#pragma unroll
          for (int dt = 0; dt < kDT; ++dt) {
            o[dt][2 * i] *= corr;
            o[dt][2 * i + 1] *= corr;
          }
        }
#pragma unroll
        for (int nt = 0; nt < kSliceN / 8; ++nt) {
#pragma unroll
          for (int e = 0; e < 4; ++e) {
            const float pe = exp2f(sc[nt][e] - m_use[e >> 1]);
            sc[nt][e] = pe;
            l[e >> 1] += pe;
          }
        }
        // The C layout of n-tiles 2·kk and 2·kk+1 is the A layout of keys 16·kk .. 16·kk+15.
#pragma unroll
        for (int kk = 0; kk < kSliceN / 16; ++kk) {
          pa[kk][0] = pack2<kBf16>(sc[2 * kk][0], sc[2 * kk][1]);
          pa[kk][1] = pack2<kBf16>(sc[2 * kk][2], sc[2 * kk][3]);
          pa[kk][2] = pack2<kBf16>(sc[2 * kk + 1][0], sc[2 * kk + 1][1]);
          pa[kk][3] = pack2<kBf16>(sc[2 * kk + 1][2], sc[2 * kk + 1][3]);
        }
      }

      cp_async_wait<0>();  // V of this tile has landed
      __syncthreads();     // ... and every warp is done with the K tile
      if (j0 + kBN < j_end) {
        load_tile<D>(ks, p.k, trow, p.bt, Hkv, g, j0 + kBN, j_end);  // next K streams in during P·V
        cp_async_commit();
      }
      if (warp_active) {
#pragma unroll
        for (int kk = 0; kk < kSliceN / 16; ++kk) {
#pragma unroll
          for (int dt = 0; dt < kDT; ++dt) {
            // B = V (16 keys x 8 dims), column-major: b0 keys 16·kk+2·tig..+1, b1 keys +8, dim 8·dt+gid.
            const uint16_t* vr = vs + (key0 + kk * 16 + tig * 2) * kStride + dt * 8 + gid;
            const uint32_t b0 = uint32_t(vr[0]) | (uint32_t(vr[kStride]) << 16);
            const uint32_t b1 = uint32_t(vr[8 * kStride]) | (uint32_t(vr[9 * kStride]) << 16);
            mma16816<kBf16>(o[dt], pa[kk], b0, b1);
          }
        }
      }
      __syncthreads();  // every warp is done with the V tile
    }
  }

  // Row sums over the quad; then the normalized output, or the partial result of this split.
#pragma unroll
  for (int i = 0; i < 2; ++i) {
    l[i] += __shfl_xor_sync(0xffffffffu, l[i], 1);
    l[i] += __shfl_xor_sync(0xffffffffu, l[i], 2);
  }
  if constexpr (KW > 1) {
    // Merge the KW states of each slab: every warp stores its m, l and unnormalized O (the shared
    // tiles are free: the key loop ended with a barrier and left no copy in flight), then warp
    // kpart 0 of the slab combines them in warp order: M = max m_k over the states with l_k > 0,
    // w_k = 2^(m_k − M) (0 for a state without keys: its m and O are not used), L = Σ l_k·w_k,
    // O = Σ O_k·w_k, k = 0 .. KW − 1. A NaN key score makes its state's l NaN: that state is
    // left out of M, but l_k·w_k = NaN·0 still makes L, and so the row, NaN, as on the CPU
    // (the suite's NaN-key case, run with KVRUN_FLASH_DECODE=0).
    constexpr int kOStride = D + 4;  // f32 row stride of the stored O
    static_assert(kWarps * 16 * (kOStride + 2) * 4 <= int(sizeof(smem)), "merge buffer fits the tiles");
    float* const ored = reinterpret_cast<float*>(smem);          // [kWarps][16][D + 4]
    float* const mlred = ored + kWarps * 16 * kOStride;          // [kWarps][16][2]
#pragma unroll
    for (int i = 0; i < 2; ++i) {
      const int r = gid + 8 * i;
      float* orow = ored + (warp * 16 + r) * kOStride + tig * 2;
#pragma unroll
      for (int dt = 0; dt < kDT; ++dt)
        *reinterpret_cast<float2*>(orow + dt * 8) = make_float2(o[dt][2 * i], o[dt][2 * i + 1]);
      if (tig == 0) {
        mlred[(warp * 16 + r) * 2] = m[i];
        mlred[(warp * 16 + r) * 2 + 1] = l[i];
      }
    }
    __syncthreads();
    if (kpart != 0) return;  // no barrier follows
#pragma unroll
    for (int i = 0; i < 2; ++i) {
      const int r = gid + 8 * i;
      float M = -INFINITY;
#pragma unroll
      for (int k = 0; k < KW; ++k) {
        const float* ml = mlred + ((slab * KW + k) * 16 + r) * 2;
        if (ml[1] > 0.f) M = fmaxf(M, ml[0]);
      }
      float wk[KW];
      float L = 0.f;
#pragma unroll
      for (int k = 0; k < KW; ++k) {
        const float* ml = mlred + ((slab * KW + k) * 16 + r) * 2;
        wk[k] = ml[1] > 0.f ? exp2f(ml[0] - M) : 0.f;
        L += ml[1] * wk[k];
      }
#pragma unroll
      for (int dt = 0; dt < kDT; ++dt) {
        float a0 = 0.f, a1 = 0.f;
#pragma unroll
        for (int k = 0; k < KW; ++k) {
          if (wk[k] == 0.f) continue;
          const float2 x = *reinterpret_cast<const float2*>(ored + ((slab * KW + k) * 16 + r) * kOStride + dt * 8 + tig * 2);
          a0 += x.x * wk[k];
          a1 += x.y * wk[k];
        }
        o[dt][2 * i] = a0;
        o[dt][2 * i + 1] = a1;
      }
      m[i] = M;
      l[i] = L;
    }
  }
#pragma unroll
  for (int i = 0; i < 2; ++i) {
    if (!valid[i]) continue;
    const int64_t row = int64_t(tok[i]) * H + head[i];
    if (nsplit == 1) {
      const float inv = 1.f / l[i];
      float* orow = p.out + row * D + tig * 2;
#pragma unroll
      for (int dt = 0; dt < kDT; ++dt)
        *reinterpret_cast<float2*>(orow + dt * 8) = make_float2(o[dt][2 * i] * inv, o[dt][2 * i + 1] * inv);
    } else {
      const int64_t prow = int64_t(blockIdx.z) * p.num_tokens * H + row;
      float* orow = p.partial_o + prow * D + tig * 2;
#pragma unroll
      for (int dt = 0; dt < kDT; ++dt)
        *reinterpret_cast<float2*>(orow + dt * 8) = make_float2(o[dt][2 * i], o[dt][2 * i + 1]);
      if (tig == 0) {
        p.partial_ml[prow * 2] = m[i];
        p.partial_ml[prow * 2 + 1] = l[i];
      }
    }
  }
}

// Split parts are merged by splitk_combine_kernel (plugins/common/splitk_combine.cuh).
constexpr auto combine_kernel = splitk_combine_kernel<kMaxSplits>;

template <int D, int KW>
void launch_flash(const Params& p, dim3 grid, bool bf16, cudaStream_t stream) {
  const bool pdl = cuda_plugin::pdl_enabled();
  check_cuda(bf16 ? cuda_plugin::launch(pdl, stream, grid, dim3(kThreads), 0, flash_kernel<D, true, KW>, p)
                  : cuda_plugin::launch(pdl, stream, grid, dim3(kThreads), 0, flash_kernel<D, false, KW>, p),
             "launch of flash_kernel");
}

template <int D>
void launch_flash(const Params& p, dim3 grid, bool bf16, int kw, cudaStream_t stream) {
  if (kw == kDecodeKW) launch_flash<D, kDecodeKW>(p, grid, bf16, stream);
  else launch_flash<D, 1>(p, grid, bf16, stream);
}

template <int D>
void load_kernels() {
  cudaFuncAttributes attr;
  check_cuda(cudaFuncGetAttributes(&attr, flash_kernel<D, false, 1>), "loading flash_kernel (fp16)");
  check_cuda(cudaFuncGetAttributes(&attr, flash_kernel<D, true, 1>), "loading flash_kernel (bf16)");
  check_cuda(cudaFuncGetAttributes(&attr, flash_kernel<D, false, kDecodeKW>), "loading flash_kernel (fp16, decode)");
  check_cuda(cudaFuncGetAttributes(&attr, flash_kernel<D, true, kDecodeKW>), "loading flash_kernel (bf16, decode)");
}

}  // namespace

bool supports_head_dim(int head_dim) { return head_dim == 64 || head_dim == 128; }

int prepare(int device) {
  DeviceScope scope(device);
  load_kernels<64>();
  load_kernels<128>();
  paged_decode::load_kernels(kWho);
  cudaFuncAttributes attr;
  check_cuda(cudaFuncGetAttributes(&attr, combine_kernel), "loading combine_kernel");
  int sms = 0;
  check_cuda(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device),
             "cudaDeviceGetAttribute(MultiProcessorCount)");
  return sms;
}

bool uses_decode_kernel(bool decode, int head_dim) {
  return decode && paged_decode::supported_head_dim(head_dim) && decode_kernel_enabled();
}

void forward(const Args& a, int device, void* stream) {
  if (a.num_tokens == 0) return;
  if (uses_decode_kernel(a.decode, a.head_dim)) {
    DeviceScope scope(device);
    paged_decode::Args d;
    d.who = kWho;
    d.out = a.out;
    d.out_bf16 = a.out_bf16;
    d.q = a.q;
    d.layout = a.bf16 ? paged_decode::KvLayout::bf16 : paged_decode::KvLayout::f16;
    d.k = a.k;
    d.v = a.v;
    d.block_table = a.block_table;
    d.max_blocks = a.max_blocks;
    d.block_tokens = a.block_tokens;
    d.q_start = a.q_start;
    d.kv_len = a.kv_len;
    d.num_tokens = a.num_tokens;
    d.num_seqs = a.num_seqs;
    d.num_heads = a.num_heads;
    d.num_kv_heads = a.num_kv_heads;
    d.head_dim = a.head_dim;
    d.max_kv_len = a.max_kv_len;
    d.scale = a.scale;
    d.scores = a.partial_o;  // split parts: [splits, rows, head_dim] then [splits, rows, 2]
    d.scores_capacity = size_t(a.partial_rows) * size_t(a.head_dim);
    d.num_sms = a.num_sms;
    paged_decode::launch(d, stream);
    return;
  }
  if (a.out_bf16) fail(ErrorKind::internal, "attention.flash (CUDA): a bf16 output is written by decode steps only");
  const int H = a.num_heads, Hkv = a.num_kv_heads, G = H / Hkv;
  if (int64_t(a.num_seqs) * Hkv > 65535)
    fail(ErrorKind::usage, "attention.flash (CUDA): num_seqs · num_kv_heads = " +
                               std::to_string(int64_t(a.num_seqs) * Hkv) + " exceeds the grid limit 65535");
  // At most 16 query rows per (sequence, KV head) (decode, G <= 16): one slab per block, the 4
  // warps split each key tile. Otherwise 64 rows per block, one slab per warp.
  const int64_t max_rows = int64_t(a.max_q_len) * G;
  const int kw = max_rows <= 16 ? kDecodeKW : 1;
  const int block_rows = 16 * (kWarps / kw);
  const int64_t row_tiles = (max_rows + block_rows - 1) / block_rows;
  const int64_t blocks = row_tiles * a.num_seqs * Hkv;
  const int64_t rows = int64_t(a.num_tokens) * H;  // (token, head) rows of the output

  // Split the keys when the step alone cannot fill the device (about two blocks per SM), each
  // part at least kMinSplitKeys long, within kMaxSplits and the partial-result workspace.
  int splits = 1;
  const int64_t target = 2 * int64_t(std::max(a.num_sms, 1));
  if (split_k_enabled() && blocks < target && a.max_kv_len >= 2 * kMinSplitKeys) {
    int64_t want = (target + blocks - 1) / blocks;
    want = std::min<int64_t>(want, a.max_kv_len / kMinSplitKeys);
    want = std::min<int64_t>(want, kMaxSplits);
    want = std::min<int64_t>(want, a.partial_rows / rows);
    splits = int(std::max<int64_t>(want, 1));
  }

  Params p;
  p.out = static_cast<float*>(a.out);
  p.q = a.q;
  p.k = static_cast<const uint16_t*>(a.k);
  p.v = static_cast<const uint16_t*>(a.v);
  p.table = a.block_table;
  p.q_start = a.q_start;
  p.kv_len = a.kv_len;
  p.partial_o = a.partial_o;
  p.partial_ml = a.partial_ml;
  p.max_blocks = a.max_blocks;
  p.bt = a.block_tokens;
  p.num_tokens = a.num_tokens;
  p.H = H;
  p.Hkv = Hkv;
  p.scale_log2 = a.scale * kLog2e;

  DeviceScope scope(device);
  const auto st = static_cast<cudaStream_t>(stream);
  const dim3 grid(unsigned(row_tiles), unsigned(a.num_seqs * Hkv), unsigned(splits));
  // The one place where the run-time head_dim becomes a template constant.
  switch (a.head_dim) {
    case 64: launch_flash<64>(p, grid, a.bf16, kw, st); break;
    case 128: launch_flash<128>(p, grid, a.bf16, kw, st); break;
    default:
      fail(ErrorKind::usage, "attention.flash (CUDA): head_dim " + std::to_string(a.head_dim) +
                                 " is not supported (built for 64 and 128); use attention.kind = \"naive\"");
  }
  if (splits > 1) {
    check_cuda(cuda_plugin::launch(cuda_plugin::pdl_enabled(), st, dim3(unsigned(rows)), dim3(unsigned(a.head_dim)), 0,
                                   combine_kernel, static_cast<float*>(a.out), static_cast<const float*>(a.partial_o),
                                   static_cast<const float*>(a.partial_ml), splits, int64_t(rows), int(a.head_dim)),
               "launch of combine_kernel");
  }
}

}  // namespace kvrun::attention_flash_cuda
