// A well-formed attention plugin with a classic bug: no causal mask (every token of a prefill sees
// the whole chunk, later tokens included). It loads and pairs in the matrix; only running it
// against a reference shows the bug, which is what `kvrun selftest --plugin` must do.
#include <algorithm>
#include <cmath>
#include <memory>
#include <vector>

#include "kvrun/kv_rows.hpp"
#include "kvrun/plugin.hpp"

namespace {
using namespace kvrun;

class NoMaskAttention final : public Attention {
 public:
  explicit NoMaskAttention(const AttentionParams& p) : p_(p) {}
  Status forward(TensorView out, TensorView q, const KvView& kv, const StepBatch& step) noexcept override {
    return guard([&] {
      kvrows::Layout lay;
      if (!kvrows::layout_of(kv.layout, &lay) || lay != kvrows::Layout::f16)
        fail(ErrorKind::usage, "attention.nomask reads paged_f16 only");
      const int H = p_.num_heads, G = p_.num_heads / p_.num_kv_heads, D = p_.head_dim;
      std::vector<float> row(static_cast<size_t>(D));
      for (int s = 0; s < step.num_seqs; ++s) {
        const int len = step.past_lens[s] + step.q_lens[s];  // the bug: every query sees all of it
        const int32_t* table = kv.block_table + size_t(s) * size_t(kv.max_blocks_per_seq);
        for (int j = 0; j < step.q_lens[s]; ++j)
          for (int h = 0; h < H; ++h) {
            const size_t t = size_t(step.q_starts[s] + j);
            const float* qr = q.as<float>() + (t * H + size_t(h)) * D;
            float* o = out.as<float>() + (t * H + size_t(h)) * D;
            std::vector<float> sc(static_cast<size_t>(len));
            float mx = -INFINITY, sum = 0.f;
            for (int k = 0; k < len; ++k) {
              kvrows::read_row(kv, lay, 0, table, k, h / G, row.data());
              sc[size_t(k)] = kvrows::dot(qr, row.data(), D) * p_.scale;
              mx = std::max(mx, sc[size_t(k)]);
            }
            for (float& x : sc) sum += (x = std::exp(x - mx));
            std::fill_n(o, D, 0.f);
            for (int k = 0; k < len; ++k) {
              kvrows::read_row(kv, lay, 1, table, k, h / G, row.data());
              kvrows::axpy(sc[size_t(k)] / sum, row.data(), o, D);
            }
          }
      }
    });
  }
  size_t workspace_bytes() const noexcept override { return 0; }

 private:
  AttentionParams p_;
};

class NoMaskPlugin final : public Plugin {
 public:
  NoMaskPlugin() {
    info_.kind = PluginKind::attention;
    info_.name = "nomask";
    info_.version = "0.0.1";
    info_.description = "test-only attention without a causal mask";
    info_.backends = {BackendKind::cpu};
    info_.reads_layouts = {std::string(layout::paged_f16)};
  }
  const PluginInfo& info() const noexcept override { return info_; }
  Status create_attention(const AttentionParams& p, Device&, std::unique_ptr<Attention>* out) noexcept override {
    return guard([&] { *out = std::make_unique<NoMaskAttention>(p); });
  }

 private:
  PluginInfo info_;
};
}  // namespace

KVRUN_DEFINE_PLUGIN("attention.nomask", NoMaskPlugin)
