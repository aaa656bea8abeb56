// cache.int4 — a paged KV cache of 4-bit codes with an fp16 scale and a 4-bit zero point per
// token, KV head and group of G elements along head_dim (layout example.paged_u4_grouped,
// int4_layout.hpp). G comes from the pipeline: [cache] options = { group_size = 32 }.
// CPU only: it declares the cpu backend and nothing else, so kvrun refuses it on a GPU pipeline
// before anything is allocated.
//
// Built only against the installed SDK: kvrun/block_pool.hpp gives the block pool, block tables,
// reserve/free and argument checks (PagedCacheBase); this file stores and reads the codes.
#include <memory>
#include <string>
#include <vector>

#include "int4_layout.hpp"
#include "kvrun/block_pool.hpp"
#include "kvrun/plugin.hpp"

namespace int4kv {
namespace {

using namespace kvrun;

constexpr int kDefaultGroup = 32;

class Int4Cache final : public PagedCacheBase {
 public:
  Int4Cache(const CacheParams& p, Device& dev, int group) : PagedCacheBase(p, dev, kLayout, "cache.int4") {
    ext_.group_size = group;
    groups_ = p.head_dim / group;
    for (int l = 0; l < p.num_layers; ++l) {
      for (auto* b : {&k_, &v_}) b->emplace_back(dev, layer_elems() / 2, MemCategory::kv_cache);
      for (auto* b : {&k_scale_, &v_scale_}) b->emplace_back(dev, layer_rows() * groups_, MemCategory::kv_cache);
      for (auto* b : {&k_zero_, &v_zero_}) b->emplace_back(dev, layer_rows() * groups_, MemCategory::kv_cache);
    }
  }

  // kvrun knows the byte cost of its standard layouts only; this one reports its own.
  CacheInfo info() const noexcept override {
    CacheInfo i = PagedCacheBase::info();
    i.bytes_per_token = 2 * row_bytes(p_.head_dim, ext_.group_size) * size_t(p_.num_kv_heads) * size_t(p_.num_layers);
    return i;
  }

  // k, v: [num_tokens, num_kv_heads, head_dim] f32 (host memory: CPU only), quantized row by row.
  Status append(int layer, const StepBatch& step, TensorView k, TensorView v) noexcept override {
    return guard([&] {
      check_append(step, k, v);
      const int D = p_.head_dim, G = ext_.group_size;
      const size_t l = size_t(layer);
      const float* ks = k.as<float>();
      const float* vs = v.as<float>();
      for_each_new_row(step, [&](size_t src, size_t dst) {
        quantize_row(ks + src * D, D, G, k_.at(l).data() + dst * (D / 2), k_scale_[l].data() + dst * groups_,
                     k_zero_[l].data() + dst * groups_);
        quantize_row(vs + src * D, D, G, v_.at(l).data() + dst * (D / 2), v_scale_[l].data() + dst * groups_,
                     v_zero_[l].data() + dst * groups_);
      });
    });
  }

  Status view(int layer, const StepBatch&, KvView* out) noexcept override {
    return guard([&] {
      const size_t l = size_t(layer);
      KvView v = base_view();
      v.k = k_.at(l).data();
      v.v = v_.at(l).data();
      v.k_scale = k_scale_[l].data();
      v.v_scale = v_scale_[l].data();
      v.k_zero = k_zero_[l].data();
      v.v_zero = v_zero_[l].data();
      v.ext = &ext_;
      *out = v;
    });
  }

  // What attention sees, for kvrun's conformance checks (kvrun cannot decode this layout itself).
  Status read(int layer, int seq, int begin, int count, TensorView k, TensorView v) noexcept override {
    return guard([&] {
      check_read(layer, seq, begin, count, k, v);
      KvView kv;
      check(view(layer, StepBatch{}, &kv));
      const std::vector<int32_t>& table = pool_.table(seq);
      const size_t D = size_t(p_.head_dim);
      for (int i = 0; i < count; ++i)
        for (int h = 0; h < p_.num_kv_heads; ++h) {
          const size_t at = (size_t(i) * size_t(p_.num_kv_heads) + size_t(h)) * D;
          read_row(kv, ext_.group_size, 0, table.data(), begin + i, h, k.as<float>() + at);
          read_row(kv, ext_.group_size, 1, table.data(), begin + i, h, v.as<float>() + at);
        }
    });
  }

 protected:
  size_t storage_bytes() const noexcept override {
    return 2 * k_.size() * (layer_elems() / 2 + layer_rows() * groups_ * (sizeof(uint16_t) + sizeof(uint8_t)));
  }

 private:
  Int4LayoutExt ext_;
  size_t groups_ = 0;                                // head_dim / group_size
  std::vector<Buffer<uint8_t>> k_, v_;               // per layer [blocks, heads, block_tokens, head_dim / 2]
  std::vector<Buffer<uint16_t>> k_scale_, v_scale_;  // per layer [blocks, heads, block_tokens, groups] fp16
  std::vector<Buffer<uint8_t>> k_zero_, v_zero_;     // per layer [blocks, heads, block_tokens, groups]
};

class Int4CachePlugin final : public Plugin {
 public:
  Int4CachePlugin() {
    info_.kind = PluginKind::cache;
    info_.name = "int4";
    info_.version = "0.1.0";
    info_.description = "example third-party plugin: paged 4-bit KV cache, fp16 scale and zero point per token, head "
                        "and group of head_dim";
    info_.backends = {BackendKind::cpu};
    info_.provides_layout = std::string(kLayout);
    // One quantization step of the row's range at most (int4_layout.hpp); kvrun's conformance
    // checks measure it.
    info_.kv_tolerance = 1.0 / 15;
    info_.options = {{"group_size", "integer", std::to_string(kDefaultGroup),
                      "elements of head_dim sharing a scale and zero point; even, and dividing head_dim"}};
  }
  const PluginInfo& info() const noexcept override { return info_; }

  Status create_cache(const CacheParams& p, Device& dev, std::unique_ptr<Cache>* out) noexcept override {
    return guard([&] {
      const int64_t g = option_int(p.options, "group_size", kDefaultGroup);
      if (g < 2 || g % 2 != 0 || p.head_dim <= 0 || p.head_dim % g != 0) {
        const PluginOption* o = find_option(p.options, "group_size");
        fail(ErrorKind::usage, (o ? o->where : std::string("cache.int4")) + ": group_size " + std::to_string(g) +
                                   " must be even and divide head_dim " + std::to_string(p.head_dim) +
                                   " (e.g. 32, 64 or head_dim itself); set [cache] options = { group_size = N }");
      }
      *out = std::make_unique<Int4Cache>(p, dev, int(g));
    });
  }

 private:
  PluginInfo info_;
};

}  // namespace
}  // namespace int4kv

KVRUN_DEFINE_PLUGIN("cache.int4", int4kv::Int4CachePlugin)
