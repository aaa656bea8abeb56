// The fused decode attention shared by attention.naive and attention.flash (paged_decode.hpp).
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <climits>
#include <cmath>
#include <cstdint>
#include <string>

#include "kvrun/cuda_plugin.cuh"
#include "kvrun/error.hpp"
#include "paged_decode.hpp"
#include "q_limbs.hpp"
#include "splitk_combine.cuh"

namespace kvrun::paged_decode {
namespace {

void check_cuda(const char* who, cudaError_t err, const char* what) { cuda_plugin::check(err, who, what); }

// ---- Fused decode (one query token per sequence, head_dim 64 and 128) ---------------------------
// Used when every sequence of the step has exactly one query token (the plugins check it before
// they call launch()): its position is kv_len − 1, so it attends to all kv_len keys (causality
// holds trivially). One pass over K and V with an online softmax in fp32 (running max m, running
// sum l, unnormalized output O, rescaled by exp2(m_old − m_new) when the max grows); the scores are
// never written to memory.
//
// Work split. A block (W warps: 1 or 4, decode_warps) owns one (sequence s, KV head g, chunk of GP query heads
// of g's group) and one split part z of s's keys. Each K/V row is read with 16-byte loads, LPK
// lanes per row (u8: 16 codes a lane, fp16/bf16: 8 values), so a warp reads KPW = 32 / LPK rows per
// load; per round a warp issues U such loads of K and U of V (all before any arithmetic, for bytes
// in flight), i.e. KPW · U keys, and the warps of the block take rounds in turn. The GP query heads
// of the block share every K/V row it loads (GQA). A group larger than kMaxGP heads (register
// budget: GP · E accumulators a lane) is split over adjacent blocks, which read the same rows at
// about the same time (their second reads hit L2). At the end the KPW lane groups of a warp merge
// their (m, l, O) by shuffles, then the warps merge through shared memory in warp order.
//
// Split-K. When the grid (num_seqs · num_kv_heads · head chunks blocks) would not fill one wave
// (the kernel's resident blocks per SM, from the occupancy API, times the SMs) and the step's
// longest cache has at least 2 · M keys, the keys of each sequence are split into gridDim.y parts,
// as many as still fit in that one wave (a second, nearly empty wave cost 6 % at an 8192-token
// context: 32 parts 5.31 vs 16 parts 5.00 ms per batch-1 step) and at most one per M keys.
// M = kDecMinSplitKeys, or twice that for sixteen-warp blocks (batch 1 of an MHA model): their
// parts were slower than fewer, longer ones up to ~1000 keys (session 20, Qwen-7B batch 1, 1024
// new tokens: 2 parts 3.89 ms per step against 4 parts 3.91–3.92 with the int8 cache, 3.91 against
// 3.95 with the fp16 cache). Part z covers
// keys [z · P, min(kv_len, (z + 1) · P)) with P = ceil(kv_len / parts) rounded up to whole block
// rounds, computed on the device from kv_len. So the number of parts depends only on host values
// that a captured CUDA graph bakes in with its key (num_seqs, and max_kv_len, which the model
// rounds up to a power of two for graphs: an upper bound is all it needs), and a replay with other
// kv lengths stays correct. A part then writes its unnormalized O with (m, l) to the workspace and
// decode_combine_kernel merges the parts in order z = 0, 1, …; a part with no keys writes l = 0,
// gets weight 0 and its m and O are never read.
//
// Numerics: scores are kept in the exp2 domain (q pre-multiplied by scale · log2 e); int8 codes
// enter as q − zero (exact in fp32) and the row's scale multiplies the row's dot product (K) or
// softmax weight (V) once, instead of every element (the CPU multiplies each element: the two
// round differently, within fp32 rounding); all sums are fp32. The softmax is not materialized,
// so the summation order differs from the three-kernel path and from the CPU reference (per key: O·c + p·v instead of Σ (e/Σe)·v); results
// agree within fp32 rounding (tests: relative L2 ≤ 1e-4). Deterministic: every sum has a fixed
// order that depends only on the shapes, the split count and kv_len.

constexpr int kDecWarps = 4;  // warps per block for a few work items (below: the choice of W)
constexpr int kDecWideWarps = 16;  // ... for very few work items of one query head each (decode_warps)
constexpr int kDecMaxSplits = 32;      // parts per sequence at most
constexpr int kDecMinSplitKeys = 256;  // a split part covers at least about this many keys
constexpr float kLog2e = 1.4426950408889634f;

template <KvLayout L, int D, int GP = 1, int W = kDecWarps>
struct DecShape {
  static constexpr int E = RowVec<L>::E;                  // elements of a row per lane (one 16-byte load)
  static constexpr int LPK = D / E;                       // lanes per K/V row
  static constexpr int KPW = 32 / LPK;                    // rows per warp-wide load
  // Loads of K (and of V) per lane per round: 4 (4 KB of K/V rows in flight per warp) with one
  // query head per block, 2 with more (their accumulators take the registers).
  static constexpr int U = GP == 1 ? 4 : 2;
  static constexpr int kRoundKeys = KPW * U;              // keys per warp per round
  static constexpr int kBlockKeys = W * kRoundKeys;  // keys per block per round
  static constexpr int kMaxGP = 32 / E;                   // query heads per block (u8 2, fp16/bf16 4)
  static_assert(D % E == 0 && 32 % LPK == 0, "row split");
};

struct DecodeParams {
  void* out;                // [num_tokens, H, D] f32, or bf16 when out_bf16
  const float* q;           // [num_tokens, H, D] f32
  Kv k, v;                  // [num_blocks, Hkv, bt, D] (+ scale/zero [num_blocks, Hkv, bt] for u8)
  const int32_t* table;     // [num_seqs, max_blocks]
  const int32_t* q_start;   // [num_seqs + 1] (q_start[s] = s in decode)
  const int32_t* kv_len;    // [num_seqs]
  float* partial_o;         // [splits, num_tokens · H, D] f32 (splits > 1)
  float* partial_ml;        // [splits, num_tokens · H, 2] f32 (splits > 1): m, l
  int64_t rows;             // num_tokens · H
  int H, Hkv, G, nhc;       // nhc: head chunks per KV head (blocks per (sequence, KV head))
  int bt, bt_shift;         // block tokens; log2(bt) when bt is a power of two, else −1
  bool aligned;             // bt a multiple of a warp round's keys (and u8 metadata aligned): see decode_kernel
  int max_blocks;
  float scale_log2;         // softmax scale · log2 e
  bool out_bf16;            // out is bf16 (rounded to nearest even)
};

// The E values of a 16-byte chunk as f32 without the row's scale: fp16/bf16 converted; u8 as
// q − zero, computed exactly as (2^23 + q) − (2^23 + zero) (the byte is put in a float's mantissa).
// The caller applies the u8 scale once per row (to the score of a K row, to the softmax weight of
// a V row): 2 instructions per code instead of 3.
template <KvLayout L>
__device__ __forceinline__ void unpack_codes(const uint4& w, float z, float (&x)[RowVec<L>::E]) {
  const uint32_t u[4] = {w.x, w.y, w.z, w.w};
  if constexpr (L == KvLayout::u8) {
    const float zb = 8388608.f + z;
#pragma unroll
    for (int i = 0; i < 16; ++i) x[i] = __uint_as_float(__byte_perm(u[i / 4], 0x4B000000u, 0x7440u + unsigned(i % 4))) - zb;
  } else if constexpr (L == KvLayout::f16) {
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      x[2 * i] = __half2float(__ushort_as_half(uint16_t(u[i] & 0xffffu)));
      x[2 * i + 1] = __half2float(__ushort_as_half(uint16_t(u[i] >> 16)));
    }
  } else {
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      x[2 * i] = __uint_as_float(u[i] << 16);
      x[2 * i + 1] = __uint_as_float(u[i] & 0xffff0000u);
    }
  }
}

// Σ_i a_i·b_i over the 4 bytes of a (signed) and b (unsigned), plus c.
__device__ __forceinline__ int dp4a_su(uint32_t a, uint32_t b, int c) {
  int d;
  asm("dp4a.s32.u32 %0, %1, %2, %3;" : "=r"(d) : "r"(a), "r"(b), "r"(c));
  return d;
}

// A lane's 16 query values (u8 layout: one 16-byte chunk of codes) of GP heads as three int8 limbs
// each, packed 4 per word in the codes' byte order, with a power-of-two scale per head and the
// exact fp32 sum of the values (for the zero point).
template <int GP>
struct QLimbs {
  uint32_t w[GP][3][4];
  float qs[GP], qsum[GP];

  // Built by the KPW ≥ 4 lanes that share the 16 values (lanes c + LPK·j of a warp, all holding
  // chunk c of the same rows): the lane with sub-group index wd (mod 4) splits word wd (values
  // 4·wd .. 4·wd + 3, in q4) and the words are exchanged by shuffles, so a warp splits each value
  // once instead of KPW times (when every lane split all 16, that was ~40 % of a warp's fixed
  // instructions per block). The scale comes from the max |q| of the 16 values (each lane's partial
  // dot product is scaled before the row's lanes are summed, so an outlier costs precision only to
  // the values sharing its chunk). Max and sum go over the 4 words in a butterfly: every lane gets
  // the same qs and the same fp32 Σ q (its two additions in the same order up to commutation).
  template <int LPK>
  __device__ __forceinline__ void build_shared(const float (&q4)[GP][4], int c) {
#pragma unroll
    for (int h = 0; h < GP; ++h) {
      float mx = 0.f, sum = 0.f;
#pragma unroll
      for (int b = 0; b < 4; ++b) {
        mx = fmaxf(mx, fabsf(q4[h][b]));
        sum += q4[h][b];
      }
      mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, LPK));
      mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2 * LPK));
      sum += __shfl_xor_sync(0xffffffffu, sum, LPK);
      sum += __shfl_xor_sync(0xffffffffu, sum, 2 * LPK);
      const int e = q_limb_exponent(mx);                   // mx < 2^e
      const float inv = ldexpf(1.f, 6 - e);                // |q|·inv < 64
      qs[h] = ldexpf(1.f, e - 6);
      qsum[h] = sum;
      uint32_t p[3] = {0u, 0u, 0u};
#pragma unroll
      for (int b = 0; b < 4; ++b) {
        int l[3];
        q_limb_split(q4[h][b] * inv, l);  // q·inv exact (power of two)
#pragma unroll
        for (int k = 0; k < 3; ++k) p[k] |= (uint32_t(l[k]) & 0xffu) << (8 * b);
      }
#pragma unroll
      for (int k = 0; k < 3; ++k)
#pragma unroll
        for (int wd = 0; wd < 4; ++wd) w[h][k][wd] = __shfl_sync(0xffffffffu, p[k], wd * LPK + c);
    }
  }

  // Σ_i q_i·(k_i − z) over the lane's 16 codes k (one uint4), without the row's scale.
  __device__ __forceinline__ float dot(int h, const uint4& k, float z) const {
    const uint32_t kw[4] = {k.x, k.y, k.z, k.w};
    int s0 = 0, s1 = 0, s2 = 0;
#pragma unroll
    for (int wd = 0; wd < 4; ++wd) {
      s0 = dp4a_su(w[h][0][wd], kw[wd], s0);
      s1 = dp4a_su(w[h][1][wd], kw[wd], s1);
      s2 = dp4a_su(w[h][2][wd], kw[wd], s2);
    }
    const float lk = fmaf(float(s2), 1.f / 16384.f, fmaf(float(s1), 1.f / 128.f, float(s0)));
    return fmaf(qs[h], lk, -z * qsum[h]);
  }
};

// The scales and zero points of the U consecutive rows r0 .. r0 + U − 1 (u8; r0 a multiple of U,
// the arrays aligned to 2U and U bytes: checked at launch) as one load each. Rows past the
// sequence's end but inside its cache block are read too: never written, they may hold anything
// (NaN included), and the caller must not let them reach a result.
template <int U>
__device__ __forceinline__ void load_meta(const Kv& kv, int64_t r0, float (&s)[U], float (&z)[U]) {
  static_assert(U == 2 || U == 4, "rows per lane");
  uint32_t sw[U / 2], zw;
  if constexpr (U == 4) {
    const uint2 t = __ldcg(reinterpret_cast<const uint2*>(kv.scale + r0));
    sw[0] = t.x;
    sw[1] = t.y;
    zw = __ldcg(reinterpret_cast<const uint32_t*>(kv.zero + r0));
  } else {
    sw[0] = __ldcg(reinterpret_cast<const uint32_t*>(kv.scale + r0));
    zw = __ldcg(reinterpret_cast<const uint16_t*>(kv.zero + r0));
  }
#pragma unroll
  for (int u = 0; u < U; ++u) {
    s[u] = __half2float(__ushort_as_half(uint16_t(sw[u / 2] >> (16 * (u % 2)))));
    z[u] = float((zw >> (8 * u)) & 0xffu);
  }
}

// grid (num_seqs · Hkv · nhc, splits), W · 32 threads. blockIdx.x = (s · Hkv + g) · nhc + hc:
// query heads g · G + hc · GP .. + GP − 1 (those below (g + 1) · G) of token q_start[s];
// blockIdx.y = split part z. At most 128 registers (16 / W blocks per SM; unbounded, the u8
// GP = 2 instances took 167, and a bound of 5 four-warp blocks per SM made them spill).
// Parameters (DecodeParams p):
//   p.out        [num_tokens, H, D] f32 (bf16 when p.out_bf16)   written when gridDim.y == 1
//   p.q          [num_tokens, H, D] f32
//   p.k, p.v     data [num_blocks, Hkv, bt, D] fp16/bf16 bits or u8 codes; for u8 also
//                scale [num_blocks, Hkv, bt] fp16 bits and zero [num_blocks, Hkv, bt] u8
//   p.table      [num_seqs, max_blocks] i32 block ids
//   p.q_start    [num_seqs + 1] i32, p.kv_len [num_seqs] i32 (device; read here, never on the host)
//   p.partial_o  [gridDim.y, num_tokens · H, D] f32, p.partial_ml [gridDim.y, num_tokens · H, 2] f32
//                (m, l) — written when gridDim.y > 1, merged by decode_combine_kernel
template <KvLayout L, int D, int GP, int W>
__global__ void __launch_bounds__(W * 32, 16 / W) decode_kernel(const DecodeParams p) {
  using S = DecShape<L, D, GP, W>;
  constexpr int kDecThreads = W * 32;
  constexpr int E = S::E, LPK = S::LPK, KPW = S::KPW, U = S::U;
  constexpr int kRowBytes = D * RowVec<L>::kSize;
  static_assert(GP >= 1 && GP <= S::kMaxGP, "heads per block");
  __shared__ __align__(16) float o_sh[W][GP][D];  // each warp's unnormalized O
  __shared__ float ml_sh[W][GP][2];               // each warp's m and l
  cuda_plugin::pdl_trigger();  // the next kernel may launch now: it waits for this one's end before it reads
  // kEarly: the first round of K/V rows is loaded before the wait (below). With the int8 cache
  // always (batch 64: 6.87-6.88 vs 6.93-6.94 ms/step, session 16, same call), with fp16/bf16 only in
  // the 16-warp blocks of batch 1: the registers that hold the round through the wait took the
  // 4-warp fp16 kernel from 80 to 93, one block fewer per SM, and decode_warps then chose one-warp
  // blocks for batch 64 with flash + fp16, which ran it at 9.20-9.54 ms/step against 8.84-8.96 with
  // four-warp blocks (session 16, calls D and E).
  constexpr bool kEarly = L == KvLayout::u8 || W == kDecWideWarps;
  if constexpr (!kEarly) cuda_plugin::pdl_wait();  // q and the cache come from earlier kernels

  const int hc = int(blockIdx.x % unsigned(p.nhc));
  const int sg = int(blockIdx.x / unsigned(p.nhc));
  const int s = sg / p.Hkv, g = sg % p.Hkv;
  const int tok = p.q_start[s];
  const int n = p.kv_len[s];
  const int nsplit = int(gridDim.y), z = int(blockIdx.y);
  // This part's keys [j0, j1): whole block rounds, the last part shorter, trailing parts empty.
  const int per = ((n + nsplit - 1) / nsplit + S::kBlockKeys - 1) / S::kBlockKeys * S::kBlockKeys;
  const int j0 = int(min(int64_t(n), int64_t(z) * per));
  const int j1 = min(n, j0 + per);
  const int h0 = g * p.G + hc * GP;     // first query head of the block
  const int nh = min(GP, p.G - hc * GP);  // its valid heads (>= 1)

  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int sub = lane / LPK, c = lane % LPK;  // row of the warp's load, 16-byte chunk of the row

  // Online-softmax state of the lane's row group: running max m, running sum l (both equal in
  // the LPK lanes of a row group) and O for the lane's E dims.
  float m[GP], l[GP], acc[GP][E];
#pragma unroll
  for (int h = 0; h < GP; ++h) {
    m[h] = -INFINITY;
    l[h] = 0.f;
#pragma unroll
    for (int i = 0; i < E; ++i) acc[h][i] = 0.f;
  }

  const int32_t* trow = p.table + int64_t(s) * p.max_blocks;
  const uint8_t* kbase = static_cast<const uint8_t*>(p.k.data);
  const uint8_t* vbase = static_cast<const uint8_t*>(p.v.data);
  // With whole rounds inside one cache block (p.aligned: bt a multiple of the round's keys, which
  // j0 and every round start are too) lane (sub, c) takes the U consecutive rows jr + sub·U + u:
  // one block-table entry serves the round (read a round ahead) and the lane's U scales and zeros
  // are one vector load each. Otherwise it takes rows jr + u·KPW + sub, each with its own entry.
  constexpr int kStride = W * S::kRoundKeys;
  const int bt = p.bt, shift = p.bt_shift;
  auto block_of = [&](int j) { return shift >= 0 ? j >> shift : j / bt; };
  int jr = j0 + warp * S::kRoundKeys;
  int entry = p.aligned && jr < j1 ? __ldg(trow + block_of(jr)) : 0;  // this round's block id
  // A round's loads (every load of the round first: U rows of K and U rows of V, and their
  // scale/zero), into kw .. ok.
  uint4 kw[U], vw[U];
  float ks[U], kz[U], vs[U], vz[U];
  bool ok[U];
  // K/V data: around the early round through L2 only (below), else through L1 as before.
  auto load_kv = [](const uint4* q) { return kEarly ? __ldcg(q) : __ldg(q); };
  // The cache row of key j, and cache row r (this lane's 16 bytes of its K and V, for u8 its scales
  // and zeros) into slot u.
  auto row_of = [&](int j) {
    const int blk = block_of(j);
    return (int64_t(__ldg(trow + blk)) * p.Hkv + g) * bt + (j - blk * bt);
  };
  auto load_row = [&](int u, int64_t r) {
    kw[u] = load_kv(reinterpret_cast<const uint4*>(kbase + r * kRowBytes) + c);
    vw[u] = load_kv(reinterpret_cast<const uint4*>(vbase + r * kRowBytes) + c);
    if constexpr (L == KvLayout::u8) {
      ks[u] = __half2float(__ushort_as_half(__ldcg(p.k.scale + r)));
      kz[u] = float(__ldcg(p.k.zero + r));
      vs[u] = __half2float(__ushort_as_half(__ldcg(p.v.scale + r)));
      vz[u] = float(__ldcg(p.v.zero + r));
    }
  };
  auto load_round = [&]() {
#pragma unroll
    for (int u = 0; u < U; ++u) {
      kw[u] = vw[u] = make_uint4(0u, 0u, 0u, 0u);
      ks[u] = kz[u] = vs[u] = vz[u] = 0.f;
    }
    if (p.aligned) {
      const int blk = block_of(jr);
      const int next = jr + kStride < j1 ? __ldg(trow + block_of(jr + kStride)) : 0;
      const int first = jr + sub * U;  // the lane's first row
      const int64_t r0 = (int64_t(entry) * p.Hkv + g) * bt + (first - blk * bt);
      entry = next;
#pragma unroll
      for (int u = 0; u < U; ++u) {
        ok[u] = first + u < j1;
        if (ok[u]) {
          kw[u] = load_kv(reinterpret_cast<const uint4*>(kbase + (r0 + u) * kRowBytes) + c);
          vw[u] = load_kv(reinterpret_cast<const uint4*>(vbase + (r0 + u) * kRowBytes) + c);
        }
      }
      if constexpr (L == KvLayout::u8) {
        if (ok[0]) {
          load_meta<U>(p.k, r0, ks, kz);
          load_meta<U>(p.v, r0, vs, vz);
        }
        // A row past the end has never been written (its scale may be NaN): its softmax weight is
        // 0, and 0 · s(v − z) must stay 0, so its V scale and zero become 0 (its score is masked).
#pragma unroll
        for (int u = 1; u < U; ++u) {
          vs[u] = ok[u] ? vs[u] : 0.f;
          vz[u] = ok[u] ? vz[u] : 0.f;
        }
      }
    } else {
#pragma unroll
      for (int u = 0; u < U; ++u) {
        const int j = jr + u * KPW + sub;
        ok[u] = j < j1;
        if (ok[u]) load_row(u, row_of(j));
      }
    }
  };
  // With kEarly the first round is loaded before the wait: every key but the step's own
  // (kv_len − 1) was stored by earlier steps, and the block table and kv_len were uploaded before
  // the step's first kernel (StepBatch, KvView), so the chain kv_len → block id → K/V rows — the
  // decode's longest — runs while the previous kernel (the KV append) still runs. Only the step's
  // own key comes from that kernel: after the wait the lane holding it loads it again. The K/V
  // loads bypass L1 (__ldcg): a line read here before the wait may hold that key's old bytes, and
  // no load after the wait may be served from it.
  if (kEarly && jr < j1) load_round();
  // The step's own key: which of the lane's first-round rows it is (own_u, −1: none) and its row
  // in the cache.
  const int own = n - 1;
  int own_u = -1;
  int64_t own_r = 0;
  if (kEarly && jr < j1 && own < j1) {
    if (p.aligned) {
      const int first = jr + sub * U;
      if (own >= first && own < first + U) own_u = own - first;
    } else {
      const int d = own - jr - sub;
      if (d >= 0 && d % KPW == 0 && d / KPW < U) own_u = d / KPW;
    }
    if (own_u >= 0) own_r = row_of(own);
  }
  if constexpr (kEarly) cuda_plugin::pdl_wait();  // q and the step's own key come from the previous kernel
#pragma unroll
  for (int u = 0; u < U; ++u)
    if (u == own_u) load_row(u, own_r);  // (own_u ≥ 0 only with kEarly: load_kv is __ldcg)

  // The lane's query slice (dims c·E .. c·E + E − 1) of each head, in the exp2 domain (fp16/bf16).
  // u8: the K dot product on dp4a. q/qs = l0 + l1/128 + l2/128² with int8 limbs (qs a power of two
  // per lane and head, |q/qs| < 64): every step exact in fp32, q to 2^-15 of the lane's max.
  // Σ q(k − z) = qs·(Σ l0·k + Σ l1·k/128 + Σ l2·k/128²) − z·Σ q, the Σ l·k exact in int32. The lane
  // loads only the 4 values of its word of the limbs (build_shared).
  [[maybe_unused]] float qr[GP][L == KvLayout::u8 ? 1 : E];
  [[maybe_unused]] QLimbs<GP> ql;
  if constexpr (L == KvLayout::u8) {
    static_assert(KPW >= 4, "build_shared: four lanes per chunk");
    const int wd = sub & 3;  // the lane's word of its chunk
    float q4[GP][4];
#pragma unroll
    for (int h = 0; h < GP; ++h) {
      const float* qp = p.q + (int64_t(tok) * p.H + h0 + h) * D + c * E + 4 * wd;  // no alignment assumed
#pragma unroll
      for (int b = 0; b < 4; ++b) q4[h][b] = h < nh ? qp[b] * p.scale_log2 : 0.f;
    }
    ql.template build_shared<LPK>(q4, c);
  } else {
#pragma unroll
    for (int h = 0; h < GP; ++h) {
      if (h < nh) {
        const float* qp = p.q + (int64_t(tok) * p.H + h0 + h) * D + c * E;  // no alignment assumed
#pragma unroll
        for (int i = 0; i < E; ++i) qr[h][i] = qp[i] * p.scale_log2;
      } else {
#pragma unroll
        for (int i = 0; i < E; ++i) qr[h][i] = 0.f;
      }
    }
  }

  // One round's scores, online-softmax update and V accumulation, from kw .. ok.
  auto compute_round = [&]() {
    // Scores (log2 domain) of the U keys for each head: partial dot over the lane's dims, summed
    // over the LPK lanes of the row (butterfly: every lane of the row gets the same value).
    float sc[U][GP];
#pragma unroll
    for (int u = 0; u < U; ++u) {
      float x[E];
      if constexpr (L != KvLayout::u8) unpack_codes<L>(kw[u], kz[u], x);
#pragma unroll
      for (int h = 0; h < GP; ++h) {
        float part = 0.f;
        if constexpr (L == KvLayout::u8) {
          part = ql.dot(h, kw[u], kz[u]);
        } else {
#pragma unroll
          for (int i = 0; i < E; ++i) part = fmaf(qr[h][i], x[i], part);
        }
#pragma unroll
        for (int off = LPK / 2; off > 0; off >>= 1) part += __shfl_xor_sync(0xffffffffu, part, off);
        if constexpr (L == KvLayout::u8) part *= ks[u];  // q · s(k − z) = s · (q · (k − z))
        sc[u][h] = ok[u] ? part : -INFINITY;
      }
    }
    // Online softmax: one rescale of (l, O) per round, then the U keys' weights.
#pragma unroll
    for (int h = 0; h < GP; ++h) {
      float mx = m[h];
#pragma unroll
      for (int u = 0; u < U; ++u) mx = fmaxf(mx, sc[u][h]);
      const float mu = mx == -INFINITY ? 0.f : mx;  // no key yet: the state stays empty (l = 0, O = 0)
      const float corr = exp2f(m[h] - mu);          // 0 while m = −inf
      m[h] = mx;
      l[h] *= corr;
#pragma unroll
      for (int i = 0; i < E; ++i) acc[h][i] *= corr;
#pragma unroll
      for (int u = 0; u < U; ++u) {
        sc[u][h] = exp2f(sc[u][h] - mu);  // 0 for a missing key
        l[h] += sc[u][h];
      }
    }
#pragma unroll
    for (int u = 0; u < U; ++u) {
      float x[E];
      unpack_codes<L>(vw[u], vz[u], x);  // zeros for a missing key (weight 0, no NaN)
#pragma unroll
      for (int h = 0; h < GP; ++h) {
        // p · s(v − z) = (p · s) · (v − z); the row's l keeps the unscaled p.
        const float w = L == KvLayout::u8 ? sc[u][h] * vs[u] : sc[u][h];
#pragma unroll
        for (int i = 0; i < E; ++i) acc[h][i] = fmaf(w, x[i], acc[h][i]);
      }
    }
  };
  // The two loop shapes compile differently, and each is the faster one where it is used (session
  // 16, same calls): with the early round the next round's loads are issued after this round's
  // arithmetic (batch 64, int8 cache: 6.87-6.88 vs 6.93-6.94 ms/step with them at the top);
  // without it they are issued at the top, as before session 16.
  if constexpr (kEarly) {
    while (jr < j1) {
      compute_round();
      jr += kStride;
      if (jr < j1) load_round();
    }
  } else {
    for (; jr < j1; jr += kStride) {
      load_round();
      compute_round();
    }
  }

  // Merge the KPW row groups of the warp (lanes c, c + LPK, …): M = max m, weights 2^(m − M)
  // (0 for a state without keys: its l is 0, its m −inf and its O zero), L = Σ l·w, O = Σ O·w.
  // A state whose l is NaN (a key's score was NaN: NaN or inf in the cache) is not "without keys":
  // it takes part, and the NaN reaches the output, as on the CPU (here and in the merges below).
#pragma unroll
  for (int off = LPK; off < 32; off <<= 1) {
#pragma unroll
    for (int h = 0; h < GP; ++h) {
      const float mo = __shfl_xor_sync(0xffffffffu, m[h], off);
      const float lo = __shfl_xor_sync(0xffffffffu, l[h], off);
      const float M = fmaxf(m[h], mo);
      const float a = l[h] != 0.f ? exp2f(m[h] - M) : 0.f;
      const float b = lo != 0.f ? exp2f(mo - M) : 0.f;
      m[h] = M;
      l[h] = l[h] * a + lo * b;
#pragma unroll
      for (int i = 0; i < E; ++i) {
        const float ao = __shfl_xor_sync(0xffffffffu, acc[h][i], off);
        acc[h][i] = acc[h][i] * a + ao * b;
      }
    }
  }
  if (sub == 0) {
#pragma unroll
    for (int h = 0; h < GP; ++h) {
      float4* o4 = reinterpret_cast<float4*>(&o_sh[warp][h][c * E]);
#pragma unroll
      for (int i = 0; i < E / 4; ++i) o4[i] = make_float4(acc[h][4 * i], acc[h][4 * i + 1], acc[h][4 * i + 2], acc[h][4 * i + 3]);
      if (c == 0) {
        ml_sh[warp][h][0] = m[h];
        ml_sh[warp][h][1] = l[h];
      }
    }
  }
  __syncthreads();
  // Merge the warps in warp order; write the normalized output, or this part's (O, m, l).
  for (int idx = threadIdx.x; idx < GP * D; idx += kDecThreads) {
    const int h = idx / D, d = idx % D;
    if (h >= nh) continue;
    float M = -INFINITY;
#pragma unroll
    for (int w = 0; w < W; ++w)
      if (ml_sh[w][h][1] != 0.f) M = fmaxf(M, ml_sh[w][h][0]);
    float Lsum = 0.f, O = 0.f;
#pragma unroll
    for (int w = 0; w < W; ++w) {
      const float lw = ml_sh[w][h][1];
      if (lw != 0.f) {
        const float wt = exp2f(ml_sh[w][h][0] - M);
        Lsum += lw * wt;
        O += o_sh[w][h][d] * wt;
      }
    }
    const int64_t row = int64_t(tok) * p.H + h0 + h;
    if (nsplit == 1) {
      const float o = Lsum != 0.f ? O / Lsum : 0.f;  // Lsum >= 1 whenever kv_len >= 1 (or NaN)
      if (p.out_bf16) static_cast<__nv_bfloat16*>(p.out)[row * D + d] = __float2bfloat16_rn(o);
      else static_cast<float*>(p.out)[row * D + d] = o;
    } else {
      const int64_t prow = int64_t(z) * p.rows + row;
      p.partial_o[prow * D + d] = O;
      if (d == 0) {
        p.partial_ml[prow * 2] = M;
        p.partial_ml[prow * 2 + 1] = Lsum;
      }
    }
  }
}

// Split parts are merged by splitk_combine_kernel (plugins/common/splitk_combine.cuh).
constexpr auto decode_combine_kernel = splitk_combine_kernel<kDecMaxSplits>;
constexpr auto decode_combine_bf16_kernel = splitk_combine_kernel<kDecMaxSplits, __nv_bfloat16>;

// KVRUN_NAIVE_DECODE_SPLITS=N forces N split parts (1..kDecMaxSplits, still bounded by the
// workspace) for tuning — both plugins' decode steps (the variable kept its first name). Read once;
// other values are usage errors.
int forced_decode_splits() {
  static const int n = cuda_plugin::env_int("KVRUN_NAIVE_DECODE_SPLITS", 1, kDecMaxSplits, 0);  // 0: automatic
  return n;
}

// Heads per block for a group of G query heads, at most kMaxGP: the fewest chunks, then the
// smallest power of two that holds a chunk.
int decode_heads_per_block(int G, int max_gp) {
  const int chunks = (G + max_gp - 1) / max_gp;
  const int per = (G + chunks - 1) / chunks;
  int gp = 1;
  while (gp < per) gp *= 2;
  return gp;
}

// Blocks of decode_kernel<L, D, GP, W> resident on one SM (registers bound it: 16 / W for the
// 128-register instances), asked once per process (every device of a process is assumed alike here).
template <KvLayout L, int D, int GP, int W>
int decode_resident_blocks() {
  static const int n = [] {
    int b = 0;
    if (cudaOccupancyMaxActiveBlocksPerMultiprocessor(&b, decode_kernel<L, D, GP, W>, W * 32, 0) != cudaSuccess)
      b = 16 / W;  // the kernel's __launch_bounds__ minimum
    return std::max(b, 1);
  }();
  return n;
}

// KVRUN_NAIVE_DECODE_WARPS=1, 4 or 16 forces the warps per block (tests, tuning; 16 applies to blocks
// of one query head, others take 4); 0 or unset: automatic.
int forced_decode_warps() {
  static const int n = [] {
    const int v = cuda_plugin::env_int("KVRUN_NAIVE_DECODE_WARPS", 0, kDecWideWarps, 0);
    if (v != 0 && v != 1 && v != kDecWarps && v != kDecWideWarps)
      fail(ErrorKind::usage, "KVRUN_NAIVE_DECODE_WARPS must be 0, 1, 4 or 16");
    return v;
  }();
  return n;
}

// Warps per block (per work item). Every warp of a block pays the item's fixed work — the query
// limbs, the merge of its row groups, the block's merge — so with work items enough to fill the
// GPU one warp per item is cheapest (batch 64 of Qwen-7B: 2048 items, one wave of 16 one-warp
// blocks per SM); with fewer, four warps per item keep the SMs busy. Compared in waves: a wave of
// one-warp blocks takes 4 times the rounds of a wave of four-warp ones. With at most a quarter as
// many items as SMs and one query head per block (batch 1 of an MHA model: Qwen-7B's 32 heads on
// 132 SMs), sixteen warps: a block's round is 256 (u8) or 128 (fp16/bf16) keys, so a split part
// of a short cache is read in one round — the round decode_kernel loads before its PDL wait —
// instead of three to five (session 16: 3.82–3.84 vs 3.84–3.87 ms per batch-1 step of Qwen-7B
// with the int8 cache, same call; before the first round moved ahead of the wait, session 10, the
// same blocks changed nothing).
template <KvLayout L, int D, int GP>
int decode_warps(int64_t items, int sms) {
  if (const int w = forced_decode_warps(); w != 0) return GP == 1 || w != kDecWideWarps ? w : kDecWarps;
  if (GP == 1 && items * 4 <= int64_t(sms)) return kDecWideWarps;
  const int64_t slots1 = int64_t(decode_resident_blocks<L, D, GP, 1>()) * std::max(sms, 1);
  const int64_t slots4 = int64_t(decode_resident_blocks<L, D, GP, kDecWarps>()) * std::max(sms, 1);
  const int64_t waves1 = (items + slots1 - 1) / slots1, waves4 = (items + slots4 - 1) / slots4;
  return kDecWarps * waves1 <= waves4 ? 1 : kDecWarps;
}

// The decode step with GP query heads and W warps per block.
template <KvLayout L, int D, int GP, int W>
void launch_decode_w(const Args& a, cudaStream_t stream) {
  using S = DecShape<L, D, GP, W>;
  const int H = a.num_heads, Hkv = a.num_kv_heads, G = H / Hkv;
  const int nhc = (G + GP - 1) / GP;
  const int64_t blocks = int64_t(a.num_seqs) * Hkv * nhc;
  const int64_t rows = int64_t(a.num_tokens) * H;
  if (blocks > int64_t(INT32_MAX))
    fail(ErrorKind::usage, std::string(a.who) + " (CUDA): num_seqs · num_kv_heads = " + std::to_string(blocks / nhc) +
                               " exceeds the grid limit");

  // Split parts: a function of host values that are fixed for a captured graph (num_seqs,
  // max_kv_len, the device and the workspace size); the ranges themselves come from kv_len on the
  // device.
  int64_t splits = 1;
  const int forced = forced_decode_splits();
  if (forced > 0) {
    splits = forced;
  } else {
    const int64_t wave = int64_t(decode_resident_blocks<L, D, GP, W>()) * std::max(a.num_sms, 1);  // one full wave
    const int64_t min_keys = W == kDecWideWarps ? 2 * kDecMinSplitKeys : kDecMinSplitKeys;  // M above
    if (blocks < wave && a.max_kv_len >= 2 * min_keys)
      splits = std::min<int64_t>(wave / blocks, a.max_kv_len / min_keys);
  }
  splits = std::min<int64_t>(splits, kDecMaxSplits);
  splits = std::min<int64_t>(splits, int64_t(a.scores_capacity / size_t(rows * (D + 2))));
  splits = std::max<int64_t>(splits, 1);

  DecodeParams p;
  p.out = a.out;
  p.q = a.q;
  p.k = Kv{a.k, a.k_scale, a.k_zero};
  p.v = Kv{a.v, a.v_scale, a.v_zero};
  p.table = a.block_table;
  p.q_start = a.q_start;
  p.kv_len = a.kv_len;
  p.partial_o = a.scores;                           // [splits, rows, D]
  p.partial_ml = a.scores + splits * rows * D;      // [splits, rows, 2]
  p.rows = rows;
  p.H = H;
  p.Hkv = Hkv;
  p.G = G;
  p.nhc = nhc;
  p.bt = a.block_tokens;
  p.bt_shift = -1;
  for (int sh = 0; sh < 31; ++sh)
    if ((1 << sh) == a.block_tokens) p.bt_shift = sh;
  p.max_blocks = a.max_blocks;
  p.scale_log2 = a.scale * kLog2e;
  p.out_bf16 = a.out_bf16;
  const auto aligned_to = [](const void* q, size_t al) { return reinterpret_cast<uintptr_t>(q) % al == 0; };
  p.aligned = p.bt % S::kRoundKeys == 0 &&
              (L != KvLayout::u8 || (aligned_to(p.k.scale, 2 * S::U) && aligned_to(p.v.scale, 2 * S::U) &&
                                     aligned_to(p.k.zero, S::U) && aligned_to(p.v.zero, S::U)));

  check_cuda(a.who, cuda_plugin::launch(cuda_plugin::pdl_enabled(), stream, dim3{unsigned(blocks), unsigned(splits)},
                                 dim3(W * 32), 0, decode_kernel<L, D, GP, W>, p),
             "launch of decode_kernel");
  if (splits > 1) {
    const auto* po = static_cast<const float*>(p.partial_o);
    const auto* pml = static_cast<const float*>(p.partial_ml);
    const dim3 grid{unsigned(rows)}, block{unsigned(D)};
    check_cuda(a.who, a.out_bf16 ? cuda_plugin::launch(cuda_plugin::pdl_enabled(), stream, grid, block, 0,
                                                decode_combine_bf16_kernel, static_cast<__nv_bfloat16*>(a.out), po,
                                                pml, int(splits), rows, int(D))
                          : cuda_plugin::launch(cuda_plugin::pdl_enabled(), stream, grid, block, 0,
                                                decode_combine_kernel, static_cast<float*>(a.out), po, pml,
                                                int(splits), rows, int(D)),
               "launch of decode_combine_kernel");
  }
}

// The decode step with GP query heads per block (decode_heads_per_block's choice).
template <KvLayout L, int D, int GP>
void launch_decode_gp(const Args& a, cudaStream_t stream) {
  const int nhc = (a.num_heads / a.num_kv_heads + GP - 1) / GP;
  const int w = decode_warps<L, D, GP>(int64_t(a.num_seqs) * a.num_kv_heads * nhc, a.num_sms);
  if (w == 1) launch_decode_w<L, D, GP, 1>(a, stream);
  else if (GP == 1 && w == kDecWideWarps) launch_decode_w<L, D, 1, kDecWideWarps>(a, stream);
  else launch_decode_w<L, D, GP, kDecWarps>(a, stream);
}

template <KvLayout L, int D>
void launch_decode(const Args& a, cudaStream_t stream) {
  using S = DecShape<L, D>;
  const int gp = decode_heads_per_block(a.num_heads / a.num_kv_heads, S::kMaxGP);
  if (gp == 1) launch_decode_gp<L, D, 1>(a, stream);
  else if (gp == 2) launch_decode_gp<L, D, 2>(a, stream);
  else if constexpr (S::kMaxGP >= 4) launch_decode_gp<L, D, 4>(a, stream);
}

template <KvLayout L, int D>
void load_decode_kernels(const char* who) {
  cudaFuncAttributes attr;
  check_cuda(who, cudaFuncGetAttributes(&attr, decode_kernel<L, D, 1, 1>), "loading decode_kernel");
  check_cuda(who, cudaFuncGetAttributes(&attr, decode_kernel<L, D, 2, 1>), "loading decode_kernel");
  check_cuda(who, cudaFuncGetAttributes(&attr, decode_kernel<L, D, 1, kDecWarps>), "loading decode_kernel");
  check_cuda(who, cudaFuncGetAttributes(&attr, decode_kernel<L, D, 1, kDecWideWarps>), "loading decode_kernel");
  check_cuda(who, cudaFuncGetAttributes(&attr, decode_kernel<L, D, 2, kDecWarps>), "loading decode_kernel");
  if constexpr (DecShape<L, D>::kMaxGP >= 4) {
    check_cuda(who, cudaFuncGetAttributes(&attr, decode_kernel<L, D, 4, 1>), "loading decode_kernel");
    check_cuda(who, cudaFuncGetAttributes(&attr, decode_kernel<L, D, 4, kDecWarps>), "loading decode_kernel");
  }
}

}  // namespace

void launch(const Args& a, void* stream) {
  const auto s = static_cast<cudaStream_t>(stream);
  if (a.num_tokens == 0) return;
  if (!supported_head_dim(a.head_dim) || a.num_seqs != a.num_tokens)
    fail(ErrorKind::internal, std::string(a.who) + " (CUDA): the decode kernel takes one token per sequence and "
                                                   "head_dim 64 or 128");
  const bool d128 = a.head_dim == 128;
  switch (a.layout) {
    case KvLayout::f16: d128 ? launch_decode<KvLayout::f16, 128>(a, s) : launch_decode<KvLayout::f16, 64>(a, s); break;
    case KvLayout::bf16: d128 ? launch_decode<KvLayout::bf16, 128>(a, s) : launch_decode<KvLayout::bf16, 64>(a, s); break;
    case KvLayout::u8: d128 ? launch_decode<KvLayout::u8, 128>(a, s) : launch_decode<KvLayout::u8, 64>(a, s); break;
  }
}

void load_kernels(const char* who) {
  for (auto f : {load_decode_kernels<KvLayout::f16, 64>, load_decode_kernels<KvLayout::f16, 128>,
                 load_decode_kernels<KvLayout::bf16, 64>, load_decode_kernels<KvLayout::bf16, 128>,
                 load_decode_kernels<KvLayout::u8, 64>, load_decode_kernels<KvLayout::u8, 128>})
    f(who);
  cudaFuncAttributes attr;
  check_cuda(who, cudaFuncGetAttributes(&attr, decode_combine_kernel), "loading decode_combine_kernel");
  check_cuda(who, cudaFuncGetAttributes(&attr, decode_combine_bf16_kernel), "loading decode_combine_kernel");
}

}  // namespace kvrun::paged_decode
