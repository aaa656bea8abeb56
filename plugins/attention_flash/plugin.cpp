// attention.flash — tiled causal attention with an online softmax: keys and values are read in
// tiles of kKeyTile tokens, each query row keeps a running max m, running sum l and an
// un-normalized accumulator; the score matrix is never materialized. Reads fp16/bf16 caches only
// (the declaration below is what the compatibility matrix reads). This CPU version is the
// readable reference for the CUDA kernels (attention_flash_cuda.cu, used on a CUDA device in builds
// with KVRUN_WITH_CUDA: tensor cores, head_dim 64 and 128, split-K for short query batches).
#include <algorithm>
#include <cmath>
#include <limits>
#include <memory>
#include <vector>

#include "kvrun/cpu/parallel.hpp"
#include "kvrun/kv_rows.hpp"
#include "kvrun/plugin.hpp"
#ifdef KVRUN_WITH_CUDA
#include "attention_flash_cuda.hpp"
#include "paged_decode.hpp"
#endif

namespace kvrun {
namespace {

constexpr int kQueryChunk = 16;
constexpr int kKeyTile = 64;

class FlashAttention final : public Attention {
 public:
  FlashAttention(const AttentionParams& p, Device& dev) : p_(p), dev_(dev) {
    // Created only on a declared backend (Registry::create_* checks).
    if (p.num_heads <= 0 || p.num_kv_heads <= 0 || p.num_heads % p.num_kv_heads)
      fail(ErrorKind::usage, "attention.flash: num_heads must be a multiple of num_kv_heads");
#ifdef KVRUN_WITH_CUDA
    if (dev.info().backend == BackendKind::cuda) init_cuda();
#endif
  }

  // out, q: [num_tokens, num_heads, head_dim] f32
  Status forward(TensorView out, TensorView q, const KvView& kv, const StepBatch& step) noexcept override {
    return guard([&] {
#ifdef KVRUN_WITH_CUDA
      if (dev_.info().backend == BackendKind::cuda) return forward_cuda(out, q, kv, step);
#endif
      kvrows::Layout layout;
      if (!kvrows::layout_of(kv.layout, &layout) || layout == kvrows::Layout::u8)
        fail(ErrorKind::usage, "attention.flash reads only paged_f16/paged_bf16 caches, not '" + std::string(kv.layout) +
                                   "'; use attention.kind = \"naive\"");
      const int H = p_.num_heads, G = p_.num_heads / p_.num_kv_heads, D = p_.head_dim;
      struct Task { int s, g, q0, nq; };
      std::vector<Task> tasks;
      for (int s = 0; s < step.num_seqs; ++s)
        for (int g = 0; g < p_.num_kv_heads; ++g)
          for (int q0 = 0; q0 < step.q_lens[s]; q0 += kQueryChunk)
            tasks.push_back({s, g, q0, std::min(kQueryChunk, step.q_lens[s] - q0)});
      const float* qd = q.as<float>();
      float* od = out.as<float>();
      cpu::parallel_for(int64_t(tasks.size()), 1, [&](int64_t b, int64_t e) {
        // Per worker: K and V tiles [kKeyTile, D], scores of one tile [rows, kKeyTile],
        // running max m[rows], running sum l[rows].
        thread_local std::vector<float> ktile, vtile, stile, m, l;
        for (int64_t ti = b; ti < e; ++ti) {
          const Task t = tasks[size_t(ti)];
          const int past = step.past_lens[t.s];
          const int kv_len = past + t.q0 + t.nq;
          const int rows = t.nq * G;
          const int32_t* table = kv.block_table + size_t(t.s) * size_t(kv.max_blocks_per_seq);
          ktile.resize(size_t(kKeyTile) * D);
          vtile.resize(size_t(kKeyTile) * D);
          stile.resize(size_t(rows) * kKeyTile);
          m.assign(size_t(rows), -std::numeric_limits<float>::infinity());
          l.assign(size_t(rows), 0.f);
          auto qrow = [&](int r) {
            return qd + (size_t(step.q_starts[t.s] + t.q0 + r / G) * H + size_t(t.g * G + r % G)) * D;
          };
          auto orow = [&](int r) {
            return od + (size_t(step.q_starts[t.s] + t.q0 + r / G) * H + size_t(t.g * G + r % G)) * D;
          };
          for (int r = 0; r < rows; ++r) std::fill_n(orow(r), D, 0.f);  // the accumulator lives in out
          for (int j0 = 0; j0 < kv_len; j0 += kKeyTile) {
            const int nj = std::min(kKeyTile, kv_len - j0);
            for (int j = 0; j < nj; ++j) {
              kvrows::read_row(kv, layout, 0, table, j0 + j, t.g, ktile.data() + size_t(j) * D);
              kvrows::read_row(kv, layout, 1, table, j0 + j, t.g, vtile.data() + size_t(j) * D);
            }
            for (int r = 0; r < rows; ++r) {
              const int pos = past + t.q0 + r / G;
              const int valid = std::min(nj, pos - j0 + 1);  // causal: keys j0 .. pos
              if (valid <= 0) continue;
              float* s = stile.data() + size_t(r) * kKeyTile;
              float tile_max = -std::numeric_limits<float>::infinity();
              for (int j = 0; j < valid; ++j) {
                s[j] = kvrows::dot(qrow(r), ktile.data() + size_t(j) * D, D) * p_.scale;
                tile_max = std::max(tile_max, s[j]);
              }
              const float m_new = std::max(m[r], tile_max);
              const float correction = std::exp(m[r] - m_new);  // 0 on the first tile
              float* o = orow(r);
              if (correction != 1.f)
                for (int d = 0; d < D; ++d) o[d] *= correction;
              float sum = 0.f;
              for (int j = 0; j < valid; ++j) {
                const float pj = std::exp(s[j] - m_new);
                sum += pj;
                kvrows::axpy(pj, vtile.data() + size_t(j) * D, o, D);
              }
              l[r] = l[r] * correction + sum;
              m[r] = m_new;
            }
          }
          for (int r = 0; r < rows; ++r) {
            const float inv = 1.f / l[r];
            float* o = orow(r);
            for (int d = 0; d < D; ++d) o[d] *= inv;
          }
        }
      });
    });
  }

  // CUDA decode steps (the shared decode kernel) write bf16 as well as f32.
  bool writes_bf16(const StepBatch& step) const noexcept override {
#ifdef KVRUN_WITH_CUDA
    if (dev_.info().backend == BackendKind::cuda) {
      try {
        return attention_flash_cuda::uses_decode_kernel(is_decode(step), p_.head_dim);
      } catch (...) {  // a malformed KVRUN_FLASH_DECODE: f32 here; forward() reports it
        return false;
      }
    }
#endif
    (void)step;
    return false;
  }

  size_t workspace_bytes() const noexcept override {
#ifdef KVRUN_WITH_CUDA
    if (dev_.info().backend == BackendKind::cuda) return partial_o_.bytes() + partial_ml_.bytes();
#endif
    const int G = p_.num_heads / p_.num_kv_heads;
    return size_t(cpu::num_threads()) *
           (2 * size_t(kKeyTile) * p_.head_dim + size_t(kQueryChunk) * G * (kKeyTile + 2)) * sizeof(float);
  }

 private:
#ifdef KVRUN_WITH_CUDA
  void init_cuda() {
    namespace fc = attention_flash_cuda;
    if (!fc::supports_head_dim(p_.head_dim))
      fail(ErrorKind::usage, "attention.flash: the CUDA kernels are built for head_dim 64 and 128, not " +
                                 std::to_string(p_.head_dim) + "; use attention.kind = \"naive\"");
    if (p_.max_tokens_per_step <= 0)
      fail(ErrorKind::usage, "attention.flash: on CUDA the workspace is sized at creation; set "
                             "AttentionParams::max_tokens_per_step");
    // Split-K partial results: kMaxSplits parts of up to kSplitTokens tokens' rows.
    partial_rows_ = int64_t(fc::kMaxSplits) * p_.num_heads * std::min(p_.max_tokens_per_step, fc::kSplitTokens);
    partial_o_ = Buffer<float>(dev_, size_t(partial_rows_) * size_t(p_.head_dim), MemCategory::workspace);
    partial_ml_ = Buffer<float>(dev_, size_t(partial_rows_) * 2, MemCategory::workspace);
    num_sms_ = fc::prepare(dev_.info().index);
  }

  // out, q: [num_tokens, num_heads, head_dim] f32 in device memory.
  void forward_cuda(TensorView out, TensorView q, const KvView& kv, const StepBatch& step) {
    namespace fc = attention_flash_cuda;
    fc::Args a;
    if (kv.layout == layout::paged_f16) a.bf16 = false;
    else if (kv.layout == layout::paged_bf16) a.bf16 = true;
    else fail(ErrorKind::usage, "attention.flash reads only paged_f16/paged_bf16 caches, not '" + std::string(kv.layout) +
                                    "'; use attention.kind = \"naive\"");
    const int64_t n = int64_t(step.num_tokens) * p_.num_heads * p_.head_dim;
    const bool out_bf16 = out.dtype == DType::bf16;
    if (q.dtype != DType::f32 || (out.dtype != DType::f32 && !out_bf16) || q.numel() < n || out.numel() < n)
      fail(ErrorKind::internal, "attention.flash: q and out must be [num_tokens, num_heads, head_dim] f32, got " +
                                    q.shape_string() + " and " + out.shape_string());
    if (out_bf16 && !writes_bf16(step))
      fail(ErrorKind::internal, "attention.flash: a bf16 output for a step that is not a CUDA decode step (ask "
                                "writes_bf16 first)");
    if (kv.num_kv_heads != p_.num_kv_heads || kv.head_dim != p_.head_dim)
      fail(ErrorKind::internal, "attention.flash: the KV view's heads/head_dim do not match the attention's");
    if (step.num_tokens == 0) return;
    if (!step.d_q_start || !step.d_kv_len)
      fail(ErrorKind::internal, "attention.flash: the step has no device q_start/kv_len arrays");
    a.out = out.data;
    a.out_bf16 = out_bf16;
    a.decode = is_decode(step);
    a.q = q.as<const float>();
    a.k = kv.k;
    a.v = kv.v;
    a.block_table = kv.block_table;
    a.max_blocks = kv.max_blocks_per_seq;
    a.block_tokens = kv.block_tokens;
    a.q_start = step.d_q_start;
    a.kv_len = step.d_kv_len;
    a.num_seqs = step.num_seqs;
    a.num_tokens = step.num_tokens;
    a.max_q_len = step.max_q_len;
    a.max_kv_len = step.max_kv_len;
    a.num_heads = p_.num_heads;
    a.num_kv_heads = p_.num_kv_heads;
    a.head_dim = p_.head_dim;
    a.scale = p_.scale;
    a.partial_o = partial_o_.data();
    a.partial_ml = partial_ml_.data();
    a.partial_rows = partial_rows_;
    a.num_sms = num_sms_;
    fc::forward(a, dev_.info().index, dev_.queue().native_handle());
  }

  static bool is_decode(const StepBatch& step) {
    return paged_decode::is_decode_step(step.max_q_len, step.num_tokens, step.num_seqs);
  }

  int64_t partial_rows_ = 0;
  int num_sms_ = 0;
  Buffer<float> partial_o_;   // [partial_rows_, head_dim] f32 (CUDA only)
  Buffer<float> partial_ml_;  // [partial_rows_, 2] f32 (CUDA only)
#endif
  AttentionParams p_;
  Device& dev_;
};

class FlashAttentionPlugin final : public Plugin {
 public:
  FlashAttentionPlugin() {
    info_.kind = PluginKind::attention;
    info_.name = "flash";
    info_.version = "0.1.0";
    info_.description = "tiled online-softmax attention (never materializes scores); fp16/bf16 caches";
    info_.backends = {BackendKind::cpu};
#ifdef KVRUN_WITH_CUDA
    info_.backends.push_back(BackendKind::cuda);
#endif
    info_.reads_layouts = {std::string(layout::paged_f16), std::string(layout::paged_bf16)};
  }
  const PluginInfo& info() const noexcept override { return info_; }
  Status create_attention(const AttentionParams& p, Device& dev, std::unique_ptr<Attention>* out) noexcept override {
    return guard([&] { *out = std::make_unique<FlashAttention>(p, dev); });
  }

 private:
  PluginInfo info_;
};

}  // namespace
}  // namespace kvrun

KVRUN_DEFINE_PLUGIN("attention.flash", kvrun::FlashAttentionPlugin)
