// attention.naive — causal attention with materialized scores, softmax in fp32, reading every
// standard KV layout (int8 rows are dequantized as they are read). Queries are processed in
// chunks of kQueryChunk positions (times the GQA group) so the score workspace is bounded by
// kQueryChunk · group · kv_len per worker at any prompt length.
#include <algorithm>
#include <cmath>
#include <limits>
#include <memory>
#include <vector>

#include "kvrun/cpu/parallel.hpp"
#include "kvrun/kv_rows.hpp"
#include "kvrun/plugin.hpp"

namespace kvrun {
namespace {

constexpr int kQueryChunk = 16;

class NaiveAttention final : public Attention {
 public:
  NaiveAttention(const AttentionParams& p, Device& dev) : p_(p) {
    if (!dev.is_cpu())
      fail(ErrorKind::usage, "attention.naive: this build has no " + std::string(backend_name(dev.info().backend)) +
                                 " code; use backend.device = \"cpu\"");
    if (p.num_heads <= 0 || p.num_kv_heads <= 0 || p.num_heads % p.num_kv_heads)
      fail(ErrorKind::usage, "attention.naive: num_heads must be a multiple of num_kv_heads");
  }

  // out, q: [num_tokens, num_heads, head_dim] f32
  Status forward(TensorView out, TensorView q, const KvView& kv, const StepBatch& step) noexcept override {
    return guard([&] {
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

  size_t workspace_bytes() const noexcept override {
    const int G = p_.num_heads / p_.num_kv_heads;
    return size_t(cpu::num_threads()) * (size_t(kQueryChunk) * G * size_t(p_.max_kv_len) + size_t(p_.head_dim)) *
           sizeof(float);
  }

 private:
  AttentionParams p_;
};

class NaiveAttentionPlugin final : public Plugin {
 public:
  NaiveAttentionPlugin() {
    info_.kind = PluginKind::attention;
    info_.name = "naive";
    info_.version = "0.1.0";
    info_.description = "materialized scores in query chunks; reads fp16, bf16 and int8 (dequantized on the fly) caches";
    info_.backends = {BackendKind::cpu};
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
