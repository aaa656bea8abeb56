// cache.fp16 — paged fp16 KV blocks (layout paged_f16).
//   k_[layer], v_[layer]: [num_blocks, num_kv_heads, block_tokens, head_dim] fp16 bits
#include <memory>
#include <vector>

#include "kvrun/block_pool.hpp"
#include "kvrun/plugin.hpp"

namespace kvrun {
namespace {

class Fp16Cache final : public PagedCacheBase {
 public:
  Fp16Cache(const CacheParams& p, Device& dev) : PagedCacheBase(p, dev, layout::paged_f16, "cache.fp16") {
    if (!dev.is_cpu())
      fail(ErrorKind::usage, "cache.fp16: this build has no " + std::string(backend_name(dev.info().backend)) +
                                 " code; use backend.device = \"cpu\"");
    for (int l = 0; l < p.num_layers; ++l) {
      k_.emplace_back(dev, layer_elems(), MemCategory::kv_cache);
      v_.emplace_back(dev, layer_elems(), MemCategory::kv_cache);
    }
  }

  // k, v: [num_tokens, num_kv_heads, head_dim] f32
  Status append(int layer, const StepBatch& step, TensorView k, TensorView v) noexcept override {
    return guard([&] {
      const size_t D = size_t(p_.head_dim);
      uint16_t* kd = k_.at(size_t(layer)).data();
      uint16_t* vd = v_.at(size_t(layer)).data();
      const float* ks = k.as<float>();
      const float* vs = v.as<float>();
      for_each_new_row(step, [&](size_t src_row, size_t dst_row) {
        for (size_t d = 0; d < D; ++d) {
          kd[dst_row * D + d] = f32_to_f16(ks[src_row * D + d]);
          vd[dst_row * D + d] = f32_to_f16(vs[src_row * D + d]);
        }
      });
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
  std::vector<Buffer<uint16_t>> k_, v_;  // per layer
};

class Fp16CachePlugin final : public Plugin {
 public:
  Fp16CachePlugin() {
    info_.kind = PluginKind::cache;
    info_.name = "fp16";
    info_.version = "0.1.0";
    info_.description = "paged KV cache of fp16 blocks";
    info_.backends = {BackendKind::cpu};
    info_.provides_layout = std::string(layout::paged_f16);
  }
  const PluginInfo& info() const noexcept override { return info_; }
  Status create_cache(const CacheParams& p, Device& dev, std::unique_ptr<Cache>* out) noexcept override {
    return guard([&] { *out = std::make_unique<Fp16Cache>(p, dev); });
  }

 private:
  PluginInfo info_;
};

}  // namespace
}  // namespace kvrun

KVRUN_DEFINE_PLUGIN("cache.fp16", kvrun::Fp16CachePlugin)
