// attention.naive — causal attention with materialized scores, softmax in fp32, reading every
// standard KV layout (int8 rows are dequantized as they are read). Queries are processed in
// chunks of kQueryChunk positions (times the GQA group) so the score workspace is bounded by
// kQueryChunk · group · kv_len per worker at any prompt length.
// On a CUDA device (builds with KVRUN_WITH_CUDA) the kernels of attention_naive_cuda.cu run
// instead: scores of a chunk of tokens [chunk, num_heads, kv_len] in a workspace allocated once at
// creation (at most kCudaScoreBudget bytes, at least one token's scores at max_kv_len); decode
// steps (one query token per sequence, head_dim 64/128) run a fused online-softmax kernel.
#include <algorithm>
#include <cmath>
#include <limits>
#include <memory>
#include <vector>

#include "kvrun/cpu/parallel.hpp"
#include "kvrun/kv_rows.hpp"
#include "kvrun/plugin.hpp"
#ifdef KVRUN_WITH_CUDA
#include "attention_naive_cuda.hpp"
#endif

namespace kvrun {
namespace {

constexpr int kQueryChunk = 16;
#ifdef KVRUN_WITH_CUDA
constexpr size_t kCudaScoreBudget = size_t(64) << 20;  // bytes of scores per chunk on CUDA
#endif

class NaiveAttention final : public Attention {
 public:
  NaiveAttention(const AttentionParams& p, Device& dev) : p_(p), dev_(dev) {
    // Created only on a declared backend (Registry::create_* checks).
    if (p.num_heads <= 0 || p.num_kv_heads <= 0 || p.num_heads % p.num_kv_heads)
      fail(ErrorKind::usage, "attention.naive: num_heads must be a multiple of num_kv_heads");
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
      if (!kvrows::layout_of(kv.layout, &layout))
        fail(ErrorKind::usage, "attention.naive cannot read KV layout '" + std::string(kv.layout) + "'");
      const int H = p_.num_heads, G = p_.num_heads / p_.num_kv_heads, D = p_.head_dim;
      // Tasks: (sequence, kv head, query chunk).
      struct Task { int s, g, q0, nq; };
      std::vector<Task> tasks;
      for (int s = 0; s < step.num_seqs; ++s)
        for (int g = 0; g < p_.num_kv_heads; ++g)
          for (int q0 = 0; q0 < step.q_lens[s]; q0 += kQueryChunk)
            tasks.push_back({s, g, q0, std::min(kQueryChunk, step.q_lens[s] - q0)});
      const float* qd = q.as<float>();
      float* od = out.as<float>();
      cpu::parallel_for(int64_t(tasks.size()), 1, [&](int64_t b, int64_t e) {
        thread_local std::vector<float> scores, row;
        for (int64_t ti = b; ti < e; ++ti) {
          const Task t = tasks[size_t(ti)];
          const int past = step.past_lens[t.s];
          const int kv_len = past + t.q0 + t.nq;  // keys this chunk can see
          const int rows = t.nq * G;              // row r = (query i = r / G, head g*G + r % G)
          const int32_t* table = kv.block_table + size_t(t.s) * size_t(kv.max_blocks_per_seq);
          scores.assign(size_t(rows) * size_t(kv_len), 0.f);  // [rows, kv_len]
          row.resize(size_t(D));
          auto qrow = [&](int r) {
            const size_t tok = size_t(step.q_starts[t.s] + t.q0 + r / G);
            return qd + (tok * H + size_t(t.g * G + r % G)) * D;
          };
          // scores = scale · Q Kᵀ, masked causally
          for (int j = 0; j < kv_len; ++j) {
            kvrows::read_row(kv, layout, 0, table, j, t.g, row.data());
            for (int r = 0; r < rows; ++r) {
              const int pos = past + t.q0 + r / G;
              scores[size_t(r) * kv_len + j] =
                  j <= pos ? kvrows::dot(qrow(r), row.data(), D) * p_.scale : -std::numeric_limits<float>::infinity();
            }
          }
          // softmax per row (fp32)
          for (int r = 0; r < rows; ++r) {
            float* sr = scores.data() + size_t(r) * kv_len;
            float mx = -std::numeric_limits<float>::infinity();
            for (int j = 0; j < kv_len; ++j) mx = std::max(mx, sr[j]);
            float sum = 0.f;
            for (int j = 0; j < kv_len; ++j) sum += (sr[j] = std::exp(sr[j] - mx));
            const float inv = 1.f / sum;
            for (int j = 0; j < kv_len; ++j) sr[j] *= inv;
          }
          // out = P V
          for (int r = 0; r < rows; ++r) {
            const size_t tok = size_t(step.q_starts[t.s] + t.q0 + r / G);
            std::fill_n(od + (tok * H + size_t(t.g * G + r % G)) * D, D, 0.f);
          }
          for (int j = 0; j < kv_len; ++j) {
            kvrows::read_row(kv, layout, 1, table, j, t.g, row.data());
            for (int r = 0; r < rows; ++r) {
              const float pj = scores[size_t(r) * kv_len + j];
              if (pj == 0.f) continue;
              const size_t tok = size_t(step.q_starts[t.s] + t.q0 + r / G);
              kvrows::axpy(pj, row.data(), od + (tok * H + size_t(t.g * G + r % G)) * D, D);
            }
          }
        }
      });
    });
  }

  // CUDA decode steps (the fused decode kernel) write bf16 as well as f32.
  bool writes_bf16(const StepBatch& step) const noexcept override {
#ifdef KVRUN_WITH_CUDA
    if (dev_.info().backend == BackendKind::cuda) {
      try {
        return attention_naive_cuda::decode_writes_bf16(is_decode(step), p_.head_dim, step.num_seqs, step.num_tokens);
      } catch (...) {  // a malformed KVRUN_NAIVE_DECODE: f32 here; forward() reports it
        return false;
      }
    }
#endif
    (void)step;
    return false;
  }

  size_t workspace_bytes() const noexcept override {
#ifdef KVRUN_WITH_CUDA
    if (dev_.info().backend == BackendKind::cuda) return scores_.bytes();
#endif
    const int G = p_.num_heads / p_.num_kv_heads;
    return size_t(cpu::num_threads()) * (size_t(kQueryChunk) * G * size_t(p_.max_kv_len) + size_t(p_.head_dim)) *
           sizeof(float);
  }

 private:
#ifdef KVRUN_WITH_CUDA
  void init_cuda() {
    if (p_.head_dim <= 0 || p_.head_dim > attention_naive_cuda::kMaxHeadDim)
      fail(ErrorKind::usage, "attention.naive: the CUDA kernels support head_dim 1.." +
                                 std::to_string(attention_naive_cuda::kMaxHeadDim) + ", not " + std::to_string(p_.head_dim));
    if (p_.max_tokens_per_step <= 0 || p_.max_kv_len <= 0)
      fail(ErrorKind::usage, "attention.naive: on CUDA the workspace is sized at creation; set "
                             "AttentionParams::max_tokens_per_step and max_kv_len");
    // Scores of one token at the longest context, times the tokens that fit the budget (at least one).
    const size_t per_token = size_t(p_.num_heads) * size_t(p_.max_kv_len);
    const size_t tokens = std::clamp<size_t>(kCudaScoreBudget / sizeof(float) / per_token, 1, size_t(p_.max_tokens_per_step));
    scores_ = Buffer<float>(dev_, tokens * per_token, MemCategory::workspace);
    num_sms_ = attention_naive_cuda::prepare(dev_.info().index, p_.num_heads, p_.num_kv_heads, p_.head_dim);
  }

  // out, q: [num_tokens, num_heads, head_dim] f32 in device memory.
  void forward_cuda(TensorView out, TensorView q, const KvView& kv, const StepBatch& step) {
    namespace nc = attention_naive_cuda;
    nc::Args a;
    if (kv.layout == layout::paged_f16) a.layout = nc::KvLayout::f16;
    else if (kv.layout == layout::paged_bf16) a.layout = nc::KvLayout::bf16;
    else if (kv.layout == layout::paged_u8_token_head) a.layout = nc::KvLayout::u8;
    else fail(ErrorKind::usage, "attention.naive cannot read KV layout '" + std::string(kv.layout) + "'");
    const int64_t n = int64_t(step.num_tokens) * p_.num_heads * p_.head_dim;
    const bool out_bf16 = out.dtype == DType::bf16;
    if (q.dtype != DType::f32 || (out.dtype != DType::f32 && !out_bf16) || q.numel() < n || out.numel() < n)
      fail(ErrorKind::internal, "attention.naive: q and out must be [num_tokens, num_heads, head_dim] f32, got " +
                                    q.shape_string() + " and " + out.shape_string());
    if (out_bf16 && !writes_bf16(step))
      fail(ErrorKind::internal, "attention.naive: a bf16 output for a step that is not a CUDA decode step (ask "
                                "writes_bf16 first)");
    if (kv.num_kv_heads != p_.num_kv_heads || kv.head_dim != p_.head_dim)
      fail(ErrorKind::internal, "attention.naive: the KV view's heads/head_dim do not match the attention's");
    if (a.layout == nc::KvLayout::u8 && (!kv.k_scale || !kv.v_scale || !kv.k_zero || !kv.v_zero))
      fail(ErrorKind::internal, "attention.naive: paged_u8_token_head view without scales/zero points");
    if (step.num_tokens == 0) return;
    if (!step.d_q_start || !step.d_kv_len || !step.d_token_seq)
      fail(ErrorKind::internal, "attention.naive: the step has no device q_start/kv_len/token_seq arrays");
    if (int64_t(step.max_kv_len) > p_.max_kv_len)
      fail(ErrorKind::usage, "attention.naive: the step's kv length " + std::to_string(step.max_kv_len) +
                                 " exceeds AttentionParams::max_kv_len " + std::to_string(p_.max_kv_len));
    a.out = out.data;
    a.out_bf16 = out_bf16;
    a.q = q.as<const float>();
    a.k = kv.k;
    a.v = kv.v;
    a.k_scale = kv.k_scale;
    a.v_scale = kv.v_scale;
    a.k_zero = kv.k_zero;
    a.v_zero = kv.v_zero;
    a.block_table = kv.block_table;
    a.max_blocks = kv.max_blocks_per_seq;
    a.block_tokens = kv.block_tokens;
    a.q_start = step.d_q_start;
    a.kv_len = step.d_kv_len;
    a.token_seq = step.d_token_seq;
    a.num_tokens = step.num_tokens;
    a.num_heads = p_.num_heads;
    a.num_kv_heads = p_.num_kv_heads;
    a.head_dim = p_.head_dim;
    a.max_kv_len = step.max_kv_len;
    a.scale = p_.scale;
    a.scores = scores_.data();
    a.scores_capacity = scores_.size();
    // One query token per sequence: the fused decode kernel (head_dim 64/128). Under a captured
    // graph this is fixed by the graph's shape (the model captures decode steps only).
    a.decode = is_decode(step);
    a.num_seqs = step.num_seqs;
    a.num_sms = num_sms_;
    nc::forward(a, dev_.info().index, dev_.queue().native_handle());
  }

  static bool is_decode(const StepBatch& step) {
    return paged_decode::is_decode_step(step.max_q_len, step.num_tokens, step.num_seqs);
  }

  // [tokens per chunk, num_heads, max_kv_len] f32 (CUDA only); the fused decode kernel keeps its
  // split-K partial results here ([splits, num_tokens · num_heads, head_dim + 2]).
  Buffer<float> scores_;
  int num_sms_ = 1;
#endif
  AttentionParams p_;
  Device& dev_;
};

class NaiveAttentionPlugin final : public Plugin {
 public:
  NaiveAttentionPlugin() {
    info_.kind = PluginKind::attention;
    info_.name = "naive";
    info_.version = "0.1.0";
    info_.description = "materialized scores in query chunks; reads fp16, bf16 and int8 (dequantized on the fly) caches";
    info_.backends = {BackendKind::cpu};
#ifdef KVRUN_WITH_CUDA
    info_.backends.push_back(BackendKind::cuda);
#endif
    info_.reads_layouts = {std::string(layout::paged_f16), std::string(layout::paged_bf16),
                           std::string(layout::paged_u8_token_head)};
  }
  const PluginInfo& info() const noexcept override { return info_; }
  Status create_attention(const AttentionParams& p, Device& dev, std::unique_ptr<Attention>* out) noexcept override {
    return guard([&] { *out = std::make_unique<NaiveAttention>(p, dev); });
  }

 private:
  PluginInfo info_;
};

}  // namespace
}  // namespace kvrun

KVRUN_DEFINE_PLUGIN("attention.naive", kvrun::NaiveAttentionPlugin)
