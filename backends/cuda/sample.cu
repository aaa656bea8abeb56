// kvrun CUDA backend — sample: one token id per row of logits[B, V], written to device memory.
//
// Mirrors kvrun::sample_row (core/src/sampler.cpp) step by step so that, on equal logits, the device
// returns the same ids as the host:
//   greedy (temperature ≤ 0): the first maximum (argmax_kernel; split over parts of the row when
//   there are few rows: argmax_part_kernel + argmax_final_kernel);
//   otherwise: candidates ordered by (logit desc, id asc) — a stable radix sort (CUB) of all V
//   candidates; top-k keeps the first k; p_i = exp(logit_i/T − logit_0/T) / Σ, in double;
//   top-p keeps the shortest prefix whose cumulative p reaches top_p; min-p keeps p_i ≥ min_p·p_0;
//   the draw u = uniform01(seed, counter) (computed on the host, same function) picks the first
//   candidate whose cumulative p exceeds u · Σ_kept p (sample_pick_kernel).
// Sums are in double as on the host; only the summation order differs (tree vs left-to-right), a
// relative difference near 1e-16, so a different id needs u within ~1e-16 of a boundary.
// Only ids cross to the host side: nothing is read back here.
#include <cub/block/block_scan.cuh>
#include <cub/device/device_radix_sort.cuh>

#include <algorithm>
#include <cfloat>
#include <climits>
#include <string>
#include <vector>

#include "cuda_backend.cuh"
#include "kernel_common.cuh"
#include "kvrun/sampler.hpp"

namespace kvrun::cuda {

namespace {

constexpr int kArgmaxThreads = 512;
constexpr int kPickThreads = 512;
// Candidates sorted per radix-sort call (rows × V); bounds the workspace to ~100 MB.
constexpr int64_t kMaxSortItems = int64_t(1) << 22;

// Per sampled row, uploaded once per call.
struct RowParam {
  double u;           // uniform01(seed, counter)
  float temperature;  // > 0
  float top_p;        // < 1 active
  float min_p;        // > 0 active
  int32_t top_k;      // > 0 active
  int32_t row;        // row of logits / ids
  int32_t pad;
};

// ---- greedy --------------------------------------------------------------------------------

// (value, index) order of the host's `if (logits[i] > logits[best]) best = i`: larger value wins,
// the smaller index on ties; NaN never wins.
__device__ __forceinline__ bool better(float v, int i, float bv, int bi) { return v > bv || (v == bv && i < bi); }

// (bv, bi) of every lane becomes the first maximum over the warp.
__device__ __forceinline__ void warp_argmax(float& bv, int& bi) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) {
    const float ov = __shfl_xor_sync(0xffffffffu, bv, o);
    const int oi = __shfl_xor_sync(0xffffffffu, bi, o);
    if (better(ov, oi, bv, bi)) {
      bv = ov;
      bi = oi;
    }
  }
}

// First maximum of l[begin, end) over the block: the (value, index) pair in thread 0. Returns, to
// every thread, whether any value of the range is NaN.
__device__ __forceinline__ bool block_argmax(const float* __restrict__ l, int begin, int end, float& bv, int& bi) {
  __shared__ float s_val[kArgmaxThreads / 32];
  __shared__ int s_idx[kArgmaxThreads / 32];
  bv = -INFINITY;
  bi = INT_MAX;
  int nan = 0;
  for (int i = begin + int(threadIdx.x); i < end; i += int(blockDim.x)) {
    const float v = l[i];
    nan |= isnan(v);
    if (better(v, i, bv, bi)) {
      bv = v;
      bi = i;
    }
  }
  nan = __syncthreads_or(nan);
  warp_argmax(bv, bi);
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  if (lane == 0) {
    s_val[warp] = bv;
    s_idx[warp] = bi;
  }
  __syncthreads();
  if (threadIdx.x == 0) {
    for (int w = 1; w < int(blockDim.x >> 5); ++w)
      if (better(s_val[w], s_idx[w], bv, bi)) {
        bv = s_val[w];
        bi = s_idx[w];
      }
  }
  return nan != 0;
}

// ids[row] = first argmax of logits[row, 0..V), or −1 if the row holds a NaN (sample_row's rule).
// rows: [grid] rows to do, or null (row = block).
__global__ void __launch_bounds__(kArgmaxThreads) argmax_kernel(int32_t* ids, const float* __restrict__ logits,
                                                                const int32_t* __restrict__ rows, int V) {
  const int row = rows ? rows[blockIdx.x] : int(blockIdx.x);
  const float* l = logits + int64_t(row) * V;
  float bv;
  int bi;
  const bool nan = block_argmax(l, 0, V, bv, bi);
  if (threadIdx.x == 0) ids[row] = nan ? -1 : bi;
}

// Few rows over a large vocabulary (batch-1 decode: one block would read 150k logits alone):
// block (p, row) writes the first maximum of part p, logits[row, p·chunk .. (p+1)·chunk), to
// part_val/part_idx [rows, P] (part_idx −1: the part holds a NaN); argmax_final_kernel (one warp
// per row) picks the first maximum of the P parts — the same (value, index) order, so the same id
// as argmax_kernel — or −1 if a part holds a NaN.
__global__ void __launch_bounds__(kArgmaxThreads) argmax_part_kernel(float* __restrict__ part_val,
                                                                     int32_t* __restrict__ part_idx,
                                                                     const float* __restrict__ logits, int V, int chunk) {
  const int p = blockIdx.x, row = blockIdx.y, P = gridDim.x;
  const int begin = p * chunk, end = min(V, begin + chunk);
  float bv;
  int bi;
  const bool nan = block_argmax(logits + int64_t(row) * V, begin, end, bv, bi);
  if (threadIdx.x == 0) {
    part_val[row * P + p] = bv;
    part_idx[row * P + p] = nan ? -1 : bi;
  }
}

__global__ void argmax_final_kernel(int32_t* ids, const float* __restrict__ part_val,
                                    const int32_t* __restrict__ part_idx, int P) {
  const int row = blockIdx.x, lane = threadIdx.x;
  float bv = -INFINITY;
  int bi = INT_MAX;
  bool nan = false;
  for (int p = lane; p < P; p += 32) {
    const float v = part_val[row * P + p];
    const int i = part_idx[row * P + p];
    nan = nan || i < 0;
    if (better(v, i, bv, bi)) {
      bv = v;
      bi = i;
    }
  }
  nan = __any_sync(0xffffffffu, nan);
  warp_argmax(bv, bi);
  if (lane == 0) ids[row] = nan ? -1 : bi;
}

// ---- sort keys -------------------------------------------------------------------------------

// A 32-bit key whose ascending order is the descending order of the float (−0 equals +0).
__device__ __forceinline__ uint32_t desc_key(float f) {
  uint32_t b = f == 0.f ? 0u : __float_as_uint(f);
  const uint32_t ord = (b & 0x80000000u) ? ~b : (b | 0x80000000u);  // ascending-orderable
  return ~ord;
}
__device__ __forceinline__ float desc_key_value(uint32_t k) {
  const uint32_t ord = ~k;
  return __uint_as_float((ord & 0x80000000u) ? (ord & 0x7fffffffu) : ~ord);
}

// keys[j, i] = (j << 32) | desc_key(logits[params[j].row, i]),  vals[j, i] = i,
// for the chunk's rows j < C (grid.y = C) and i < V. One radix sort over all C·V keys then orders
// each row's candidates by (logit desc, id asc) — the sort is stable — and keeps rows apart.
__global__ void sample_keys_kernel(uint64_t* keys, int32_t* vals, const float* __restrict__ logits,
                                   const RowParam* __restrict__ params, int V) {
  const int j = blockIdx.y;
  const float* l = logits + int64_t(params[j].row) * V;
  const int64_t base = int64_t(j) * V;
  for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < V; i += gridDim.x * blockDim.x) {
    keys[base + i] = (uint64_t(j) << 32) | desc_key(l[i]);
    vals[base + i] = i;
  }
}

// ---- filter and draw ---------------------------------------------------------------------------

// One sorted row: z(i) = logit_i / T − logit_0 / T (the host's exponent, in double).
struct SortedRow {
  const uint64_t* keys;  // [V] this row's sorted keys
  double temperature;
  double top;            // logit_0 / T
  __device__ __forceinline__ double z(int i) const {
    return double(desc_key_value(uint32_t(keys[i]))) / temperature - top;
  }
};

using PickScan = cub::BlockScan<double, kPickThreads>;

struct PickShared {
  typename PickScan::TempStorage scan;
  double red[32];
  int first;
};

// p(i) = exp(z(i)) / sum, the host's normalized probability.
__device__ __forceinline__ double prob(const SortedRow& row, int i, double sum) { return exp(row.z(i)) / sum; }

// First i in [0, n) whose cumulative probability Σ_{j≤i} p(j) reaches thr (cum ≥ thr) or, with
// STRICT, exceeds it (thr < cum); n if none. Chunks of kPickThreads with a block scan; stops at
// the first chunk with a hit.
template <bool STRICT>
__device__ int first_cum(const SortedRow& row, double sum, int n, double thr, PickShared& sh) {
  double carry = 0.0;
  for (int base = 0; base < n; base += kPickThreads) {
    const int i = base + int(threadIdx.x);
    const double v = i < n ? prob(row, i, sum) : 0.0;
    double incl, agg;
    __syncthreads();  // sh.scan and sh.first are free again
    if (threadIdx.x == 0) sh.first = INT_MAX;
    __syncthreads();
    PickScan(sh.scan).InclusiveSum(v, incl, agg);
    const double cum = carry + incl;
    const bool hit = i < n && (STRICT ? thr < cum : cum >= thr);
    if (hit) atomicMin(&sh.first, i);
    __syncthreads();
    const int f = sh.first;
    if (f != INT_MAX) return f;
    carry += agg;
  }
  return n;
}

// One block per sampled row j of the chunk.
//   keys, vals: [C, V] sorted candidates (sample_keys_kernel + radix sort); params: [C];
//   ids: [B] output (ids[params[j].row]).
__global__ void __launch_bounds__(kPickThreads) sample_pick_kernel(int32_t* ids, const uint64_t* __restrict__ keys,
                                                                   const int32_t* __restrict__ vals,
                                                                   const RowParam* __restrict__ params, int V) {
  __shared__ PickShared sh;
  const int j = blockIdx.x;
  const RowParam prm = params[j];
  SortedRow row;
  row.keys = keys + int64_t(j) * V;
  row.temperature = double(prm.temperature);
  row.top = double(desc_key_value(uint32_t(row.keys[0]))) / row.temperature;
  // A NaN sorts first (sign bit clear) or last (set): then no token can be drawn (sample_row: −1).
  if (isnan(desc_key_value(uint32_t(row.keys[0]))) || isnan(desc_key_value(uint32_t(row.keys[V - 1])))) {
    if (threadIdx.x == 0) ids[prm.row] = -1;
    return;
  }

  // top-k, then the softmax denominator over the kept candidates: sum = Σ exp(z(i))
  int keep = (prm.top_k > 0 && prm.top_k < V) ? prm.top_k : V;
  double part = 0.0;
  for (int i = threadIdx.x; i < keep; i += kPickThreads) part += exp(row.z(i));
  const double sum = block_sum(part, sh.red);

  // top-p: the shortest prefix whose mass reaches top_p (at least one candidate)
  if (prm.top_p < 1.f) {
    const int f = first_cum<false>(row, sum, keep, double(prm.top_p), sh);
    if (f < keep) keep = f + 1;
  }
  // min-p: keep while p(i) ≥ min_p · p(0); p is non-increasing, so the kept set is a prefix
  if (prm.min_p > 0.f) {
    const double cut = double(prm.min_p) * prob(row, 0, sum);
    __syncthreads();
    if (threadIdx.x == 0) sh.first = INT_MAX;
    __syncthreads();
    for (int i = 1 + int(threadIdx.x); i < keep; i += kPickThreads)
      if (prob(row, i, sum) < cut) atomicMin(&sh.first, i);
    __syncthreads();
    if (sh.first != INT_MAX) keep = sh.first;
  }
  // draw: the first candidate whose cumulative probability exceeds u · (kept mass), else the last
  part = 0.0;
  for (int i = threadIdx.x; i < keep; i += kPickThreads) part += prob(row, i, sum);
  const double total = block_sum(part, sh.red);
  int pick = first_cum<true>(row, sum, keep, prm.u * total, sh);
  if (pick >= keep) pick = keep - 1;
  if (threadIdx.x == 0) ids[prm.row] = vals[int64_t(j) * V + pick];
}

constexpr size_t align_up(size_t v, size_t a) { return (v + a - 1) / a * a; }

int ceil_log2(int64_t v) {
  int b = 0;
  while ((int64_t(1) << b) < v) ++b;
  return b;
}

}  // namespace

Status CudaOps::sample(int32_t* ids, TensorView logits, const SampleParams* params) noexcept {
  return guard([&] { sample_impl(ids, logits, params); });
}

void CudaOps::sample_impl(int32_t* ids, TensorView logits, const SampleParams* params) {
  require_device(logits, "sample", "logits");
  require(logits.dtype == DType::f32, "cuda sample: logits must be f32");
  require(ids != nullptr, "cuda sample: ids is null");
  require(params != nullptr, "cuda sample: params is null (one SampleParams per row, host memory)");
  const int64_t B = logits.rows(), V = logits.cols();
  if (B == 0) return;
  require(V > 0 && V <= int64_t(INT32_MAX) / 2, "cuda sample: vocabulary size " + std::to_string(V) + " out of range");
  ScopedDevice g(dev_.index());
  const cudaStream_t st = stream();

  std::vector<RowParam> sampled;
  std::vector<int32_t> greedy;
  for (int64_t b = 0; b < B; ++b) {
    const SampleParams& p = params[b];
    if (p.temperature <= 0.f) {
      greedy.push_back(int32_t(b));
    } else {
      RowParam r{};
      r.u = uniform01(p.seed, p.counter);
      r.temperature = p.temperature;
      r.top_p = p.top_p;
      r.min_p = p.min_p;
      r.top_k = p.top_k;
      r.row = int32_t(b);
      sampled.push_back(r);
    }
  }

  // All greedy: one kernel, nothing uploaded (capturable in a CUDA graph).
  if (sampled.empty()) {
    // Fewer rows than twice the SMs: split each row into parts of ≥ 4096 logits.
    const int64_t parts = std::min<int64_t>((2 * int64_t(sm_count_) + B - 1) / B, V / 4096);
    if (parts >= 2 && B <= 65535) {
      const int64_t chunk = (V + parts - 1) / parts;
      const int P = int((V + chunk - 1) / chunk);
      char* ws = static_cast<char*>(workspace(size_t(B * P) * (sizeof(float) + sizeof(int32_t)), "sample"));
      auto* pv = reinterpret_cast<float*>(ws);
      auto* pi = reinterpret_cast<int32_t*>(ws + size_t(B * P) * sizeof(float));
      argmax_part_kernel<<<dim3(unsigned(P), unsigned(B)), kArgmaxThreads, 0, st>>>(pv, pi, logits.as<const float>(),
                                                                                   int(V), int(chunk));
      KVRUN_CUDA_CHECK_LAUNCH("argmax_part_kernel");
      argmax_final_kernel<<<unsigned(B), 32, 0, st>>>(ids, pv, pi, P);
      KVRUN_CUDA_CHECK_LAUNCH("argmax_final_kernel");
      return;
    }
    argmax_kernel<<<unsigned(B), kArgmaxThreads, 0, st>>>(ids, logits.as<const float>(), nullptr, int(V));
    KVRUN_CUDA_CHECK_LAUNCH("argmax_kernel");
    return;
  }

  const int64_t R = int64_t(sampled.size());
  // rows per sort (grid.y of sample_keys_kernel ≤ 65535)
  const int64_t chunk = std::max<int64_t>(1, std::min<int64_t>({R, kMaxSortItems / V, int64_t(65535)}));
  const int64_t chunk_items = chunk * V;
  require(chunk_items <= INT32_MAX, "cuda sample: vocabulary too large for one sort");

  // CUB temp storage for the sizes used (the full chunk and the last, partial one).
  size_t cub_bytes = 0;
  for (int64_t rows_in : {chunk, R % chunk ? R % chunk : chunk}) {
    size_t b = 0;
    cub::DoubleBuffer<uint64_t> k(nullptr, nullptr);
    cub::DoubleBuffer<int32_t> v(nullptr, nullptr);
    KVRUN_CUDA_CHECK(cub::DeviceRadixSort::SortPairs(nullptr, b, k, v, int(rows_in * V), 0,
                                                     32 + ceil_log2(rows_in), st));
    cub_bytes = std::max(cub_bytes, b);
  }

  // Workspace: [params R][greedy rows G][keys ×2][vals ×2][cub temp]
  const size_t params_bytes = align_up(size_t(R) * sizeof(RowParam), 256);
  const size_t greedy_bytes = align_up(greedy.size() * sizeof(int32_t), 256);
  const size_t keys_bytes = align_up(size_t(chunk_items) * sizeof(uint64_t), 256);
  const size_t vals_bytes = align_up(size_t(chunk_items) * sizeof(int32_t), 256);
  char* ws = static_cast<char*>(
      workspace(params_bytes + greedy_bytes + 2 * keys_bytes + 2 * vals_bytes + cub_bytes, "sample"));
  auto* d_params = reinterpret_cast<RowParam*>(ws);
  auto* d_greedy = reinterpret_cast<int32_t*>(ws + params_bytes);
  auto* keys0 = reinterpret_cast<uint64_t*>(ws + params_bytes + greedy_bytes);
  auto* keys1 = reinterpret_cast<uint64_t*>(ws + params_bytes + greedy_bytes + keys_bytes);
  auto* vals0 = reinterpret_cast<int32_t*>(ws + params_bytes + greedy_bytes + 2 * keys_bytes);
  auto* vals1 = reinterpret_cast<int32_t*>(ws + params_bytes + greedy_bytes + 2 * keys_bytes + vals_bytes);
  void* cub_tmp = ws + params_bytes + greedy_bytes + 2 * keys_bytes + 2 * vals_bytes;

  // From pageable memory: returns once the host vectors are staged.
  KVRUN_CUDA_CHECK(cudaMemcpyAsync(d_params, sampled.data(), size_t(R) * sizeof(RowParam), cudaMemcpyHostToDevice, st));
  if (!greedy.empty()) {
    KVRUN_CUDA_CHECK(cudaMemcpyAsync(d_greedy, greedy.data(), greedy.size() * sizeof(int32_t),
                                     cudaMemcpyHostToDevice, st));
    argmax_kernel<<<unsigned(greedy.size()), kArgmaxThreads, 0, st>>>(ids, logits.as<const float>(), d_greedy, int(V));
    KVRUN_CUDA_CHECK_LAUNCH("argmax_kernel");
  }

  for (int64_t r0 = 0; r0 < R; r0 += chunk) {
    const int64_t rows_in = std::min(chunk, R - r0);
    const int items = int(rows_in * V);
    sample_keys_kernel<<<dim3(grid_for(V, 256, 64), unsigned(rows_in)), 256, 0, st>>>(
        keys0, vals0, logits.as<const float>(), d_params + r0, int(V));
    KVRUN_CUDA_CHECK_LAUNCH("sample_keys_kernel");
    cub::DoubleBuffer<uint64_t> k(keys0, keys1);
    cub::DoubleBuffer<int32_t> v(vals0, vals1);
    size_t b = cub_bytes;
    KVRUN_CUDA_CHECK(cub::DeviceRadixSort::SortPairs(cub_tmp, b, k, v, items, 0, 32 + ceil_log2(rows_in), st));
    sample_pick_kernel<<<unsigned(rows_in), kPickThreads, 0, st>>>(ids, k.Current(), v.Current(), d_params + r0,
                                                                   int(V));
    KVRUN_CUDA_CHECK_LAUNCH("sample_pick_kernel");
  }
}

}  // namespace kvrun::cuda
