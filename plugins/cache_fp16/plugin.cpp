// cache.fp16 — paged fp16 KV blocks (layout paged_f16).
//   k_[layer], v_[layer]: [num_blocks, num_kv_heads, block_tokens, head_dim] fp16 bits
// On a CUDA device (builds with KVRUN_WITH_CUDA) the blocks live in device memory and append runs
// the kernel of cache_fp16_cuda.cu; the CPU code below is the reference it matches bit for bit.
#include <memory>
#include <vector>

#include "kvrun/block_pool.hpp"
#include "kvrun/plugin.hpp"
#include "qkv_append.hpp"
#ifdef KVRUN_WITH_CUDA
#include "cache_fp16_cuda.hpp"
#endif

namespace kvrun {
namespace {

class Fp16Cache final : public PagedCacheBase {
 public:
  Fp16Cache(const CacheParams& p, Device& dev) : PagedCacheBase(p, dev, layout::paged_f16, "cache.fp16") {
    // Created only on a declared backend (Registry::create_* checks).
    for (int l = 0; l < p.num_layers; ++l) {
      k_.emplace_back(dev, layer_elems(), MemCategory::kv_cache);
      v_.emplace_back(dev, layer_elems(), MemCategory::kv_cache);
    }
#ifdef KVRUN_WITH_CUDA
    if (dev.info().backend == BackendKind::cuda) cache_fp16_cuda::prepare(dev.info().index);
#endif
  }

  // k, v: [num_tokens, num_kv_heads, head_dim] f32
  Status append(int layer, const StepBatch& step, TensorView k, TensorView v) noexcept override {
    return guard([&] {
#ifdef KVRUN_WITH_CUDA
      if (dev_.info().backend == BackendKind::cuda) return append_cuda(layer, step, k, v);
#endif
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

  // append_qkv: the CUDA kernel only (on the CPU the model runs rope_apply and append()).
  bool appends_qkv(int rot_dim) const noexcept override {
    return dev_.info().backend == BackendKind::cuda && qkv_rope::supported(p_.head_dim, rot_dim);
  }
  Status append_qkv(int layer, const StepBatch& step, TensorView qkv, TensorView q_out, TensorView cs,
                    const float* q_scale) noexcept override {
    return guard([&] {
      const int H = check_append_qkv(step, qkv, q_out, cs);
#ifdef KVRUN_WITH_CUDA
      cache_fp16_cuda::AppendQkvArgs a;
      fill_cuda_args(layer, step, a);
      a.src = qkv_rope::source_of(H, qkv, q_out, cs, q_scale);
      cache_fp16_cuda::append_qkv(a, dev_.info().index, dev_.queue().native_handle());
#else
      (void)layer, (void)H, (void)q_scale;
#endif
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

 private:
#ifdef KVRUN_WITH_CUDA
  // k, v: [num_tokens, num_kv_heads, head_dim] f32 in device memory; token -> (sequence, position)
  // from the step's device arrays, block ids from the table reserve() uploaded.
  void append_cuda(int layer, const StepBatch& step, TensorView k, TensorView v) {
    check_append(step, k, v);
    cache_fp16_cuda::AppendArgs a;
    fill_cuda_args(layer, step, a);
    a.k = k.as<const float>();
    a.v = v.as<const float>();
    cache_fp16_cuda::append(a, dev_.info().index, dev_.queue().native_handle());
  }
  // The cache and step fields of the launch arguments.
  void fill_cuda_args(int layer, const StepBatch& step, cache_fp16_cuda::AppendArgs& a) {
    a.k_cache = k_.at(size_t(layer)).data();
    a.v_cache = v_.at(size_t(layer)).data();
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
#ifdef KVRUN_WITH_CUDA
    info_.backends.push_back(BackendKind::cuda);
#endif
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
