// attention.grouped — causal attention on the CPU that reads the layout of cache.int4
// (example.paged_u4_grouped, int4_layout.hpp) as well as kvrun's standard layouts (through
// kvrun/kv_rows.hpp). It declares exactly those layouts, so kvrun's matrix pairs cache.int4 with
// it and with no shipped attention.
//
// Work is split over (sequence, KV head, chunk of queries) on kvrun's CPU worker pool
// (kvrun/cpu/parallel.hpp). A task dequantizes the keys and values its queries can see once, then
// for every query and every query head of the KV head's group: scores, softmax in fp32, output.
#include <algorithm>
#include <cmath>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include "int4_layout.hpp"
#include "kvrun/cpu/parallel.hpp"
#include "kvrun/kv_rows.hpp"
#include "kvrun/plugin.hpp"

namespace int4kv {
namespace {

using namespace kvrun;

constexpr int kQueryChunk = 32;

class GroupedAttention final : public Attention {
 public:
  explicit GroupedAttention(const AttentionParams& p) : p_(p) {
    if (p.num_heads <= 0 || p.num_kv_heads <= 0 || p.num_heads % p.num_kv_heads != 0 || p.head_dim <= 0)
      fail(ErrorKind::usage, "attention.grouped: num_heads must be a positive multiple of num_kv_heads");
  }

  // out, q: [num_tokens, num_heads, head_dim] f32 (host memory).
  Status forward(TensorView out, TensorView q, const KvView& kv, const StepBatch& step) noexcept override {
    return guard([&] {
      // Which reader: this package's layout, or one of kvrun's standard ones.
      const bool own = kv.layout == kLayout;
      kvrows::Layout standard{};
      if (!own && !kvrows::layout_of(kv.layout, &standard))
        fail(ErrorKind::usage, "attention.grouped cannot read KV layout '" + std::string(kv.layout) + "'");
      int group = 0;
      if (own) {
        const auto* ext = static_cast<const Int4LayoutExt*>(kv.ext);
        if (!ext || ext->struct_size < sizeof(Int4LayoutExt) || !kv.k_scale || !kv.v_scale || !kv.k_zero || !kv.v_zero)
          fail(ErrorKind::internal, "attention.grouped: a " + std::string(kLayout) + " view without its scales, zero "
                                    "points or Int4LayoutExt");
        group = ext->group_size;
        if (group < 2 || group % 2 || kv.head_dim % group)
          fail(ErrorKind::internal, "attention.grouped: group size " + std::to_string(group) + " does not divide head_dim");
      }
      const int H = p_.num_heads, G = p_.num_heads / p_.num_kv_heads, D = p_.head_dim;
      const int64_t n = int64_t(step.num_tokens) * H * D;
      if (q.dtype != DType::f32 || out.dtype != DType::f32 || q.numel() < n || out.numel() < n)
        fail(ErrorKind::internal, "attention.grouped: q and out must be [num_tokens, num_heads, head_dim] f32");
      if (kv.num_kv_heads != p_.num_kv_heads || kv.head_dim != D)
        fail(ErrorKind::internal, "attention.grouped: the KV view's heads/head_dim do not match the attention's");

      struct Task {
        int s, g, q0, nq;
      };
      std::vector<Task> tasks;
      for (int s = 0; s < step.num_seqs; ++s)
        for (int g = 0; g < p_.num_kv_heads; ++g)
          for (int q0 = 0; q0 < step.q_lens[s]; q0 += kQueryChunk)
            tasks.push_back({s, g, q0, std::min(kQueryChunk, step.q_lens[s] - q0)});
      const float* qd = q.as<float>();
      float* od = out.as<float>();
      cpu::parallel_for(int64_t(tasks.size()), 1, [&](int64_t b, int64_t e) {
        thread_local std::vector<float> keys, values, scores;
        for (int64_t ti = b; ti < e; ++ti) {
          const Task t = tasks[size_t(ti)];
          const int past = step.past_lens[t.s];
          const int kv_len = past + t.q0 + t.nq;  // what the chunk's last query sees
          const int32_t* table = kv.block_table + size_t(t.s) * size_t(kv.max_blocks_per_seq);
          keys.resize(size_t(kv_len) * D);    // [kv_len, head_dim]
          values.resize(size_t(kv_len) * D);  // [kv_len, head_dim]
          scores.resize(size_t(kv_len));
          for (int j = 0; j < kv_len; ++j) {
            float* kr = keys.data() + size_t(j) * D;
            float* vr = values.data() + size_t(j) * D;
            if (own) {
              read_row(kv, group, 0, table, j, t.g, kr);
              read_row(kv, group, 1, table, j, t.g, vr);
            } else {
              kvrows::read_row(kv, standard, 0, table, j, t.g, kr);
              kvrows::read_row(kv, standard, 1, table, j, t.g, vr);
            }
          }
          for (int i = 0; i < t.nq; ++i) {
            const int pos = past + t.q0 + i;  // causal: keys 0 .. pos
            const size_t tok = size_t(step.q_starts[t.s] + t.q0 + i);
            for (int h = t.g * G; h < (t.g + 1) * G; ++h) {
              const float* qr = qd + (tok * H + size_t(h)) * D;
              float* o = od + (tok * H + size_t(h)) * D;
              float mx = -std::numeric_limits<float>::infinity();
              for (int j = 0; j <= pos; ++j) {
                scores[size_t(j)] = kvrows::dot(qr, keys.data() + size_t(j) * D, D) * p_.scale;
                mx = std::max(mx, scores[size_t(j)]);
              }
              float sum = 0.f;
              for (int j = 0; j <= pos; ++j) sum += (scores[size_t(j)] = std::exp(scores[size_t(j)] - mx));
              const float inv = 1.f / sum;
              std::fill_n(o, D, 0.f);
              for (int j = 0; j <= pos; ++j) kvrows::axpy(scores[size_t(j)] * inv, values.data() + size_t(j) * D, o, D);
            }
          }
        }
      });
    });
  }

  size_t workspace_bytes() const noexcept override {
    // Per worker: keys and values [max_kv_len, head_dim] and one row of scores.
    return size_t(cpu::num_threads()) * (2 * size_t(p_.head_dim) + 1) * size_t(std::max<int64_t>(p_.max_kv_len, 1)) *
           sizeof(float);
  }

 private:
  AttentionParams p_;
};

class GroupedAttentionPlugin final : public Plugin {
 public:
  GroupedAttentionPlugin() {
    info_.kind = PluginKind::attention;
    info_.name = "grouped";
    info_.version = "0.1.0";
    info_.description = "example third-party plugin: CPU causal attention reading example.paged_u4_grouped (cache.int4) "
                        "and the standard layouts";
    info_.backends = {BackendKind::cpu};
    info_.reads_layouts = {std::string(kLayout), std::string(layout::paged_f16), std::string(layout::paged_bf16),
                           std::string(layout::paged_u8_token_head)};
  }
  const PluginInfo& info() const noexcept override { return info_; }
  Status create_attention(const AttentionParams& p, Device& dev, std::unique_ptr<Attention>* out) noexcept override {
    return guard([&] {
      if (!dev.is_cpu()) fail(ErrorKind::usage, "attention.grouped runs on the CPU only");
      *out = std::make_unique<GroupedAttention>(p);
    });
  }

 private:
  PluginInfo info_;
};

}  // namespace
}  // namespace int4kv

KVRUN_DEFINE_PLUGIN("attention.grouped", int4kv::GroupedAttentionPlugin)
