// A well-formed fp16 cache plugin with a classic bug: it writes every token into the first block
// of its sequence (position modulo block_tokens), so sequences longer than a block overwrite
// themselves. Only reading back what was appended shows it (`kvrun selftest --plugin`).
#include <memory>
#include <vector>

#include "kvrun/block_pool.hpp"
#include "kvrun/plugin.hpp"

namespace {
using namespace kvrun;

class FirstBlockCache final : public PagedCacheBase {
 public:
  FirstBlockCache(const CacheParams& p, Device& dev) : PagedCacheBase(p, dev, layout::paged_f16, "cache.firstblock") {
    for (int l = 0; l < p.num_layers; ++l) {
      k_.emplace_back(dev, layer_elems(), MemCategory::kv_cache);
      v_.emplace_back(dev, layer_elems(), MemCategory::kv_cache);
    }
  }
  Status append(int layer, const StepBatch& step, TensorView k, TensorView v) noexcept override {
    return guard([&] {
      check_append(step, k, v);
      const int H = p_.num_kv_heads, D = p_.head_dim, bt = p_.block_tokens;
      for (int s = 0; s < step.num_seqs; ++s) {
        const auto& table = pool_.table(step.seq_ids[s]);
        for (int j = 0; j < step.q_lens[s]; ++j) {
          const int pos = step.past_lens[s] + j;
          const size_t t = size_t(step.q_starts[s] + j);
          for (int h = 0; h < H; ++h) {
            const size_t dst = ((size_t(table[0]) * H + h) * bt + pos % bt) * D;  // the bug: table[0], not table[pos / bt]
            for (int i = 0; i < D; ++i) {
              k_[size_t(layer)].data()[dst + i] = f32_to_f16(k.as<float>()[(t * H + h) * D + i]);
              v_[size_t(layer)].data()[dst + i] = f32_to_f16(v.as<float>()[(t * H + h) * D + i]);
            }
          }
        }
      }
    });
  }
  Status view(int layer, const StepBatch&, KvView* out) noexcept override {
    return guard([&] {
      KvView v = base_view();
      v.k = k_.at(size_t(layer)).data();
      v.v = v_.at(size_t(layer)).data();
      *out = v;
    });
  }

 protected:
  size_t storage_bytes() const noexcept override { return 2 * k_.size() * layer_elems() * sizeof(uint16_t); }

 private:
  std::vector<Buffer<uint16_t>> k_, v_;
};

class FirstBlockPlugin final : public Plugin {
 public:
  FirstBlockPlugin() {
    info_.kind = PluginKind::cache;
    info_.name = "firstblock";
    info_.version = "0.0.1";
    info_.description = "test-only fp16 cache that ignores all but the first block";
    info_.backends = {BackendKind::cpu};
    info_.provides_layout = std::string(layout::paged_f16);
  }
  const PluginInfo& info() const noexcept override { return info_; }
  Status create_cache(const CacheParams& p, Device& dev, std::unique_ptr<Cache>* out) noexcept override {
    return guard([&] { *out = std::make_unique<FirstBlockCache>(p, dev); });
  }

 private:
  PluginInfo info_;
};
}  // namespace

KVRUN_DEFINE_PLUGIN("cache.firstblock", FirstBlockPlugin)
