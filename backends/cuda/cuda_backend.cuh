// kvrun CUDA backend — the classes behind the module entry point (internal to the module).
//
//   CudaAllocator  one caching pool per device on cudaMalloc, with per-category accounting and a limit
//   CudaQueue      a CUDA stream (in-order), copies, fills, events
//   CudaOps        the dense ops (ops.cu, matmul.cu, sample.cu) on that stream, plus a workspace
//   CudaDevice     ties them together; created by the module's `create` (device.cpp)
#pragma once

#include <cublasLt.h>
#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_runtime_api.h>

#include <compare>
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "kvrun/device.hpp"
#include "kvrun/ops.hpp"

namespace kvrun::cuda {

// Makes `device` current for the calling thread for the guard's lifetime (restores the previous one).
class ScopedDevice {
 public:
  explicit ScopedDevice(int device);
  ~ScopedDevice();
  ScopedDevice(const ScopedDevice&) = delete;
  ScopedDevice& operator=(const ScopedDevice&) = delete;

 private:
  int previous_ = -1;
  bool switched_ = false;
};

// A caching allocator over cudaMalloc for one device.
//   - Requests are rounded up (512 B below 1 MiB, 64 KiB above) into blocks. A freed block goes to a
//     free list and is handed out again for a request of the same rounded size (small) or within
//     1/8 above it (large). Frees are not stream-ordered: the backend uses one stream per device, so
//     later work on it runs after earlier users of a recycled block; cudaFree (releasing the cache)
//     synchronizes the device.
//   - Accounting (MemoryStats) counts the bytes handed out per category, as requested.
//   - The limit caps what the pool holds from CUDA (blocks in use + cached); it is checked before
//     cudaMalloc is asked, and the cache is released first when that makes room.
//   - When CUDA itself is out of memory, the cache is released and the request retried once.
class CudaAllocator {
 public:
  CudaAllocator(int device, std::string device_name);
  ~CudaAllocator();
  CudaAllocator(const CudaAllocator&) = delete;
  CudaAllocator& operator=(const CudaAllocator&) = delete;

  Status allocate(size_t bytes, MemCategory cat, void** out) noexcept;
  void deallocate(void* p, size_t bytes, MemCategory cat) noexcept;
  MemoryStats stats() const noexcept;
  void reset_peak() noexcept;
  void set_limit(size_t bytes) noexcept;
  size_t available() const noexcept;

  static size_t round_size(size_t bytes) noexcept;

 private:
  struct Live {
    size_t block = 0;  // block size (rounded)
  };
  void release_cache_locked();  // cudaFree every cached block
  std::string oom_message_locked(size_t bytes, MemCategory cat, const std::string& cause) const;

  int device_;
  std::string name_;
  mutable std::mutex mu_;
  std::unordered_map<void*, Live> live_;   // blocks handed out
  std::multimap<size_t, void*> cached_;    // free blocks by size
  size_t reserved_ = 0;                    // bytes held from CUDA (live blocks + cached blocks)
  size_t live_blocks_ = 0;                 // bytes of live blocks (rounded sizes)
  size_t cached_bytes_ = 0;
  MemoryStats stats_;                      // requested bytes per category; stats_.limit = the limit
};

class CudaQueue final : public Queue {
 public:
  explicit CudaQueue(int device);
  ~CudaQueue() override;
  Status copy_h2d(void* dst, const void* src, size_t bytes) noexcept override;
  Status copy_d2h(void* dst, const void* src, size_t bytes) noexcept override;
  Status copy_d2d(void* dst, const void* src, size_t bytes) noexcept override;
  Status fill_bytes(void* dst, uint8_t value, size_t bytes) noexcept override;
  Status record(Event* ev) noexcept override;
  Status wait() noexcept override;
  Status copy_d2h_async(void* dst, const void* src, size_t bytes) noexcept override;
  Status wait_for(const Event& ev) noexcept override;
  void* native_handle() const noexcept override { return stream_; }
  cudaStream_t stream() const noexcept { return stream_; }
  bool supports_graphs() const noexcept override { return true; }
  Status capture_begin() noexcept override;
  Status capture_end(void** graph) noexcept override;
  Status graph_launch(void* graph) noexcept override;
  void graph_destroy(void* graph) noexcept override;

 private:
  // copy_d2h_async goes through pinned staging buffers (a copy into pageable memory would block
  // the host): the DMA lands in a staging slot in queue order, and the host copies it on to `dst`
  // when it waits past it (hand_over). Copies are numbered in issue order; record() notes how many
  // had been issued when an event was recorded, so wait_for(ev) knows which ones ev covers.
  struct Staging {
    void* host = nullptr;  // cudaHostAlloc'd, `capacity` bytes
    size_t capacity = 0;
    bool busy = false;
  };
  struct StagedCopy {
    uint64_t number;  // issue order
    size_t slot;      // index into staging_
    void* dst;
    size_t bytes;
  };
  void hand_over(uint64_t issued_before);  // copies numbered below this go to their dst

  int device_;
  cudaStream_t stream_ = nullptr;
  std::mutex events_mu_;
  std::vector<cudaEvent_t> events_;  // created by record(); destroyed with the queue
  std::unordered_map<cudaEvent_t, uint64_t> issued_at_record_;  // event → copies issued before it
  std::vector<Staging> staging_;     // freed with the queue
  std::vector<StagedCopy> staged_;   // issued, not yet handed over, in issue order
  uint64_t copies_issued_ = 0;
};

class CudaDevice;

// The dense ops. Kernels run on the device's stream; nothing here synchronizes the host or
// allocates while a CUDA graph is being captured on that stream (the workspace only grows outside
// capture; a capture that would need more fails with a message instead).
class CudaOps final : public Ops {
 public:
  explicit CudaOps(CudaDevice& dev);
  ~CudaOps() override;

  Status matmul(TensorView y, TensorView x, TensorView w, const TensorView* bias) noexcept override;
  Status rms_norm(TensorView y, TensorView x, TensorView w, float eps) noexcept override;
  Status add(TensorView y, TensorView a, TensorView b) noexcept override;
  Status silu_mul(TensorView out, TensorView gate, TensorView up) noexcept override;
  Status rope(TensorView x, const int32_t* positions, const float* bases, float base,
              int rot_dim) noexcept override;
  Status scale_rows(TensorView x, const float* factors) noexcept override;
  Status embedding(TensorView out, TensorView table, const int32_t* ids) noexcept override;
  Status gather_rows(TensorView out, TensorView x, const int32_t* rows) noexcept override;
  Status convert(TensorView dst, TensorView src) noexcept override;
  Status fill_random(TensorView dst, float scale, uint64_t seed) noexcept override;
  Status sample(int32_t* ids, TensorView logits, const SampleParams* params) noexcept override;
  Status add_rms_norm(TensorView x, TensorView delta, TensorView y, TensorView w, float eps) noexcept override;
  Status swiglu(TensorView out, TensorView gate_up) noexcept override;
  Status split_cols(TensorView src, const TensorView* dsts, int n) noexcept override;
  Status split_rope(TensorView qkv, TensorView q, TensorView k, TensorView v, TensorView cs) noexcept override;
  Status rope_table(TensorView cs, const int32_t* positions, const float* bases, float base) noexcept override;
  Status rope_apply(TensorView x, TensorView cs) noexcept override;
  // Fusions (matmul.cu): M ≤ gemv_max_rows_ — the GEMV reads rms_norm(x)·w itself (M = 1,
  // K ≤ kGemvNormMaxK, N ≤ kGemvNormMaxN) and adds into y (any of its M); M past the small-M GEMM (cuBLAS) — rms_norm or
  // SwiGLU writes the bf16 operand cuBLAS reads (bf16 weights), and cuBLAS adds into y (β = 1; bf16
  // or f32 weights). Nothing in between (the small-M GEMM: the unfused ops are as fast).
  bool matmul_fuses(const MatmulFusion& f, int64_t M, const TensorView& w) const noexcept override;
  Status matmul_fused(TensorView y, TensorView x, TensorView w, const TensorView* bias,
                      const MatmulFusion& f) noexcept override;
  // x as bf16 (matmul.cu): where cuBLAS multiplies bf16 weights (M past the small-M GEMM) and f
  // converts x only (no norm, no SwiGLU) — the bf16 operand is x itself, no conversion kernel.
  bool matmul_reads_bf16(const MatmulFusion& f, int64_t M, const TensorView& w) const noexcept override;
  static constexpr int64_t kGemvNormMaxK = 16384;  // the GEMV's normalized x in ≤ 64 KiB of shared memory
  // Every GEMV block normalizes x itself: past this many rows (lm_head's 152k: ~4700 blocks) the
  // separate norm kernel costs less than the blocks' repeated work.
  static constexpr int64_t kGemvNormMaxN = 65536;

  // M ≤ gemv_max_rows_ uses the GEMV kernel (bandwidth-bound decode), larger M cuBLAS. The GEMV
  // handles up to kGemvMaxRows rows, but measured on the H200 (Qwen-7B shape, docs/PERFORMANCE.md)
  // cuBLAS is faster from M = 2 on (batch 4: 5.57 vs 9.26 ms/step), so only M = 1 takes it by
  // default; KVRUN_CUDA_GEMV_MAX_ROWS=0..8 overrides (the kernel tests set 8).
  static constexpr int kGemvMaxRows = 8;
  static constexpr int kGemvDefaultRows = 1;

 private:
  cudaStream_t stream() const noexcept;
  // Device scratch of at least `bytes` (256-byte aligned), valid until the next call. Grows only
  // outside graph capture; inside one it fails naming `op` if the reserved size is too small.
  // A block a captured graph may use is never freed before these Ops are (graphs replay later).
  void* workspace(size_t bytes, const char* op);
  void matmul_impl(TensorView y, TensorView x, TensorView w, const TensorView* bias);
  void matmul_fused_impl(TensorView y, TensorView x, TensorView w, const TensorView* bias, const MatmulFusion& f);
  // y[M, N] = x[M, K]·w[N, K]ᵀ + β·y on cuBLAS, x in w's dtype (matmul.cu).
  void cublas_gemm(float* y, const void* x, const TensorView& w, int m, int n, int k, float beta);
  // y[M, N] (f32) = xb[M, K]·w[N, K]ᵀ (+ y before, accumulate) + bias[N] for bf16 weights past the
  // small-M GEMM (matmul.cu): one cublasLtMatmul (KVRUN_CUDA_LT_TUNE, and an f32 bias in its
  // epilogue, KVRUN_CUDA_LT_BIAS) where a plan applies, else cublasGemmEx; a bias the cuBLASLt call
  // did not add goes through the epilogue kernel. bias: null or bias_t's N values.
  void bf16_gemm(float* y, const __nv_bfloat16* xb, const TensorView& w, const void* bias, DType bias_t, int m, int n,
                 int k, bool accumulate);
  void sample_impl(int32_t* ids, TensorView logits, const SampleParams* params);

  CudaDevice& dev_;
  int sm_count_ = 0;
  // Stages of the shared-memory ring of the batch-1 bf16 GEMV without the norm (matmul.cu,
  // gemv_ring_kernel): 6 by default; KVRUN_CUDA_GEMV_RING=0 (the register kernel) or 4.
  int gemv_ring_ = 6;
  // The batch-1 GEMV with the fused RMSNorm applies 1/rms to each row's sum at the end (matmul.cu,
  // GemvFusion::defer_norm); KVRUN_CUDA_DEFER_NORM=0 normalizes x first, as before session 18.
  bool defer_norm_ = true;
  // The small-M GEMV's K split stops growing once the grid fills this share of a resident wave
  // (percent; matmul.cu, launch_gemv): 80 by default (session 19; 90 before), KVRUN_CUDA_GEMV_MIN_WAVES_PCT
  // overrides (10..400), for tuning other shapes.
  int gemv_min_waves_pct_ = 80;
  bool pdl_ = false;  // programmatic dependent launch of the GEMV/GEMM, norms, SwiGLU, RoPE (sm_90+; KVRUN_CUDA_PDL=0: off)
  int gemv_max_rows_ = kGemvDefaultRows;  // KVRUN_CUDA_GEMV_MAX_ROWS overrides (tuning)
  // bf16 weights and gemv_max_rows_ < M ≤ tc_gemm_max_rows_: the tensor-core small-M GEMM
  // (gemm_small_m.cu) instead of cuBLAS. Measured on the H200 (Qwen-7B shape, docs/PERFORMANCE.md)
  // it beats cuBLAS up to batch 8 (batch 4: 4.65 vs 4.92 ms/step) but not at 16 (5.17 vs 5.10) or
  // above (64: 7.89 vs 6.30), so it takes M ≤ 8 by default; KVRUN_CUDA_TC_GEMM_MAX_ROWS=0..64
  // overrides (0: off; the kernel tests use 64).
  int tc_gemm_max_rows_ = 8;
  bool fuse_ = true;    // KVRUN_CUDA_FUSE=0: matmul_fuses says no to everything (A/B of the fusions)
  int tc_splits_ = 0;  // KVRUN_CUDA_TC_SPLITK=1..16 forces the K split of that kernel (tuning); 0: automatic
  bool tc_gemm_ready_ = false;  // small_m_gemm_prepare() has run on this device
  cublasHandle_t cublas_ = nullptr;
  void* cublas_ws_ = nullptr;  // cuBLAS workspace (fixed size, so cuBLAS never allocates in a graph)
  size_t cublas_ws_bytes_ = 0;  // cuBLASLt runs on the same stream and shares it
  // cuBLASLt for bf16 GEMMs (bf16_gemm). KVRUN_CUDA_LT_BIAS=0: an f32 bias is not added in the
  // epilogue; KVRUN_CUDA_LT_TUNE=0: only the f32-bias GEMMs run on cuBLASLt, with the heuristic's
  // first algorithm (both 0: cublasGemmEx and the epilogue kernel everywhere, as before cuBLASLt).
  bool lt_bias_ = true;
  bool lt_tune_ = true;
  bool lt_tune_log_ = false;  // KVRUN_CUDA_LT_TUNE_LOG=1: one line per plan on stderr (times, pick)
  int l2_bytes_ = 0;          // L2 size: the tuning runs flush twice this much between runs
  cublasLtHandle_t cublaslt_ = nullptr;
  // Plans are timed (autotuned) only up to this many rows (decode-like M; larger M is compute-bound
  // and varies with every prefill length: the heuristic's first algorithm, no timing).
  static constexpr int kLtTuneMaxRows = 256;
  static constexpr int kLtTuneAlgos = 8;  // candidates asked of the heuristic
  // One shape of bf16_gemm's cuBLASLt call: the problem, the epilogue and the pointer alignments
  // the heuristic was told (bytes, powers of two up to 256; different pointers of the same
  // alignment share the plan).
  struct LtKey {
    int m = 0, n = 0, k = 0;
    bool accumulate = false;  // β = 1
    bool bias = false;        // CUBLASLT_EPILOGUE_BIAS with an f32 bias (else DEFAULT)
    uint32_t align_w = 0, align_x = 0, align_y = 0, align_bias = 0;  // align_bias 0 without bias
    auto operator<=>(const LtKey&) const = default;
  };
  // Its descriptors and algorithm, made on first use, so that steady-state steps (and their graph
  // capture) ask the heuristic nothing and time nothing. ok = false: cuBLASLt offered no usable
  // algorithm (cublasGemmEx is taken for that key from then on). The algorithm of a plan never
  // changes, so results are deterministic within a process; another process may time the
  // candidates differently and pick another algorithm (another summation order, e.g. split-K).
  struct LtPlan {
    bool ok = false;
    bool tuned = false;   // the algorithm is the fastest of the timed candidates
    int pick = 0;         // index of the algorithm in the heuristic's list
    int candidates = 0;   // algorithms the heuristic returned (≤ kLtTuneAlgos)
    float us[kLtTuneAlgos] = {};  // median time of each candidate, µs (-1: not timed, -2: failed)
    cublasLtMatmulDesc_t desc = nullptr;     // compute f32, A transposed, DEFAULT or BIAS epilogue
    cublasLtMatrixLayout_t w = nullptr;      // A: bf16 column-major [K, N] (w row-major [N, K])
    cublasLtMatrixLayout_t x = nullptr;      // B: bf16 column-major [K, M] (xb row-major [M, K])
    cublasLtMatrixLayout_t y = nullptr;      // C = D: f32 column-major [N, M] (y row-major [M, N])
    cublasLtMatmulAlgo_t algo{};
  };
  // Past this many plans the untimed ones (M > kLtTuneMaxRows: prefill lengths) are dropped; timed
  // ones stay (at most kLtTuneMaxRows per weight shape), so a shape never changes algorithm.
  static constexpr size_t kLtMaxPlans = 512;
  std::map<LtKey, LtPlan> lt_plans_;
  // The plan of `key`, made (and timed, see matmul.cu) on first use with these operands: the timing
  // runs read w, xb and bias and write a scratch buffer, never y.
  const LtPlan& lt_plan(const LtKey& key, const void* w, const __nv_bfloat16* xb, const void* bias);
  // Times the heuristic's candidates into p (us, pick, algo, tuned); false when nothing could be
  // timed (no scratch memory, every candidate failed). Outside graph capture only.
  bool lt_tune(LtPlan& p, const LtKey& key, const cublasLtMatmulHeuristicResult_t* res, int found, const void* w,
               const __nv_bfloat16* xb);
  void lt_log(const LtKey& key, const LtPlan& p, const cublasLtMatmulHeuristicResult_t* res, const char* note) const;
  static void lt_destroy(LtPlan& p) noexcept;
  void* ws_ = nullptr;
  size_t ws_bytes_ = 0;
  bool ws_in_graph_ = false;                             // ws_ was handed out during a capture
  std::vector<std::pair<void*, size_t>> retired_ws_;     // outgrown blocks captured graphs may use
};

class CudaDevice final : public Device {
 public:
  explicit CudaDevice(int index);
  ~CudaDevice() override;

  const DeviceInfo& info() const noexcept override { return info_; }
  Status allocate(size_t bytes, MemCategory cat, void** out) noexcept override;
  void deallocate(void* p, size_t bytes, MemCategory cat) noexcept override;
  MemoryStats memory_stats() const noexcept override { return alloc_.stats(); }
  void reset_peak() noexcept override { alloc_.reset_peak(); }
  void set_memory_limit(size_t bytes) noexcept override { alloc_.set_limit(bytes); }
  size_t available_memory() const noexcept override;
  Queue& queue() noexcept override { return *queue_; }
  Ops& ops() noexcept override { return *ops_; }

  int index() const noexcept { return info_.index; }
  cudaStream_t stream() const noexcept { return queue_->stream(); }

 private:
  DeviceInfo info_;
  CudaAllocator alloc_;
  std::unique_ptr<CudaQueue> queue_;
  std::unique_ptr<CudaOps> ops_;  // destroyed first (it holds workspace from alloc_)
};

// Fills a DeviceInfo for device `index` (cudaGetDeviceProperties).
DeviceInfo query_device_info(int index);

// matmul_fused's bf16 operands for cuBLAS (ops.cu), each rounded once from the f32 the unfused op
// would write: y[M, D] = rms_norm(x[M, D])·w[D];  out[M, F] = silu(gu[M, :F])·gu[M, F:].
void launch_rms_norm_bf16(bool pdl, cudaStream_t st, __nv_bfloat16* y, const float* x, const void* w, DType w_dtype,
                          int64_t M, int64_t D, float eps);
void launch_swiglu_bf16(bool pdl, cudaStream_t st, __nv_bfloat16* out, const float* gu, int64_t M, int64_t F);

}  // namespace kvrun::cuda
