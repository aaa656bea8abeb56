// cache.int8 — paged uint8 KV blocks with one fp16 scale and one uint8 zero point per token and
// KV head (layout paged_u8_token_head, SPECS.md §1). Quantizes on append; attention dequantizes.
//   k_[layer], v_[layer]:            [num_blocks, num_kv_heads, block_tokens, head_dim] uint8
//   k_scale_[layer], v_scale_[layer]: [num_blocks, num_kv_heads, block_tokens] fp16 bits
//   k_zero_[layer], v_zero_[layer]:   [num_blocks, num_kv_heads, block_tokens] uint8
// On a CUDA device (builds with KVRUN_WITH_CUDA) the blocks live in device memory and append runs
// the kernel of cache_int8_cuda.cu, which shares quantize.hpp with the CPU code below (the
// reference): codes, scales and zero points are bit-identical.
#include <memory>
#include <vector>

#include "kvrun/block_pool.hpp"
#include "kvrun/plugin.hpp"
#include "qkv_append.hpp"
#include "quantize.hpp"
#ifdef KVRUN_WITH_CUDA
#include "cache_int8_cuda.hpp"
#endif

namespace kvrun {
namespace {

class Int8Cache final : public PagedCacheBase {
 public:
  Int8Cache(const CacheParams& p, Device& dev) : PagedCacheBase(p, dev, layout::paged_u8_token_head, "cache.int8") {
    // Created only on a declared backend (Registry::create_* checks).
    for (int l = 0; l < p.num_layers; ++l) {
      for (auto* b : {&k_, &v_}) b->emplace_back(dev, layer_elems(), MemCategory::kv_cache);
      for (auto* b : {&k_scale_, &v_scale_}) b->emplace_back(dev, layer_rows(), MemCategory::kv_cache);
      for (auto* b : {&k_zero_, &v_zero_}) b->emplace_back(dev, layer_rows(), MemCategory::kv_cache);
    }
#ifdef KVRUN_WITH_CUDA
    if (dev.info().backend == BackendKind::cuda) cache_int8_cuda::prepare(dev.info().index);
#endif
  }

  // k, v: [num_tokens, num_kv_heads, head_dim] f32 — quantized row by row.
  Status append(int layer, const StepBatch& step, TensorView k, TensorView v) noexcept override {
    return guard([&] {
#ifdef KVRUN_WITH_CUDA
      if (dev_.info().backend == BackendKind::cuda) return append_cuda(layer, step, k, v);
#endif
      const int D = p_.head_dim;
      const size_t l = size_t(layer);
      const float* ks = k.as<float>();
      const float* vs = v.as<float>();
      for_each_new_row(step, [&](size_t src, size_t dst) {
        int8kv::quantize_row(ks + src * D, D, k_.at(l).data() + dst * D, k_scale_[l].data() + dst, k_zero_[l].data() + dst);
        int8kv::quantize_row(vs + src * D, D, v_.at(l).data() + dst * D, v_scale_[l].data() + dst, v_zero_[l].data() + dst);
      });
    });
  }

  // append_qkv: the CUDA kernel only (on the CPU the model runs rope_apply and append()).
  bool appends_qkv(int rot_dim) const noexcept override {
    return dev_.info().backend == BackendKind::cuda && qkv_rope::supported(p_.head_dim, rot_dim);
  }
  Status append_qkv(int layer, const StepBatch& step, TensorView qkv, TensorView q_out, TensorView cs,
                    const float* q_scale) noexcept override {
    return guard([&] {
      const int H = check_append_qkv(step, qkv, q_out, cs);
#ifdef KVRUN_WITH_CUDA
      cache_int8_cuda::AppendQkvArgs a;
      fill_cuda_args(layer, step, a);
      a.src = qkv_rope::source_of(H, qkv, q_out, cs, q_scale);
      cache_int8_cuda::append_qkv(a, dev_.info().index, dev_.queue().native_handle());
#else
      (void)layer, (void)H, (void)q_scale;
#endif
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
      *out = v;
    });
  }

 private:
#ifdef KVRUN_WITH_CUDA
  // k, v: [num_tokens, num_kv_heads, head_dim] f32 in device memory; token -> (sequence, position)
  // from the step's device arrays, block ids from the table reserve() uploaded.
  void append_cuda(int layer, const StepBatch& step, TensorView k, TensorView v) {
    check_append(step, k, v);
    cache_int8_cuda::AppendArgs a;
    fill_cuda_args(layer, step, a);
    a.k = k.as<const float>();
    a.v = v.as<const float>();
    cache_int8_cuda::append(a, dev_.info().index, dev_.queue().native_handle());
  }
  // The cache and step fields of the launch arguments.
  void fill_cuda_args(int layer, const StepBatch& step, cache_int8_cuda::AppendArgs& a) {
    const size_t l = size_t(layer);
    a.k_cache = k_.at(l).data();
    a.v_cache = v_.at(l).data();
    a.k_scale = k_scale_[l].data();
    a.v_scale = v_scale_[l].data();
    a.k_zero = k_zero_[l].data();
    a.v_zero = v_zero_[l].data();
    a.block_table = tables_.data();
    a.token_seq = step.d_token_seq;
    a.positions = step.d_positions;
    a.max_blocks = max_blocks_;
    a.num_tokens = step.num_tokens;
    a.num_kv_heads = p_.num_kv_heads;
    a.head_dim = p_.head_dim;
    a.block_tokens = p_.block_tokens;
  }
#endif

 protected:
  size_t storage_bytes() const noexcept override {
    return 2 * k_.size() * (layer_elems() + layer_rows() * (sizeof(uint16_t) + sizeof(uint8_t)));
  }

 private:
  std::vector<Buffer<uint8_t>> k_, v_;              // per layer
  std::vector<Buffer<uint16_t>> k_scale_, v_scale_; // per layer
  std::vector<Buffer<uint8_t>> k_zero_, v_zero_;    // per layer
};

class Int8CachePlugin final : public Plugin {
 public:
  Int8CachePlugin() {
    info_.kind = PluginKind::cache;
    info_.name = "int8";
    info_.version = "0.1.0";
    info_.description = "paged KV cache of uint8 blocks, per-token per-head fp16 scale and uint8 zero point";
    info_.backends = {BackendKind::cpu};
#ifdef KVRUN_WITH_CUDA
    info_.backends.push_back(BackendKind::cuda);
#endif
    info_.provides_layout = std::string(layout::paged_u8_token_head);
  }
  const PluginInfo& info() const noexcept override { return info_; }
  Status create_cache(const CacheParams& p, Device& dev, std::unique_ptr<Cache>* out) noexcept override {
    return guard([&] { *out = std::make_unique<Int8Cache>(p, dev); });
  }

 private:
  PluginInfo info_;
};

}  // namespace
}  // namespace kvrun

KVRUN_DEFINE_PLUGIN("cache.int8", kvrun::Int8CachePlugin)
