#include "kvrun/plugin.hpp"

namespace kvrun {

const char* plugin_kind_name(PluginKind k) noexcept {
  switch (k) {
    case PluginKind::cache: return "cache";
    case PluginKind::attention: return "attention";
    case PluginKind::weights: return "weights";
  }
  return "?";
}

namespace {
Status not_this_kind(const PluginInfo& info, const char* what) {
  return {ErrorKind::internal, "plugin '" + info.full_name() + "' is a " + plugin_kind_name(info.kind) +
                                   " plugin and cannot create " + what};
}
}  // namespace

Status Plugin::create_cache(const CacheParams&, Device&, std::unique_ptr<Cache>*) noexcept {
  return not_this_kind(info(), "a cache");
}
Status Plugin::create_attention(const AttentionParams&, Device&, std::unique_ptr<Attention>*) noexcept {
  return not_this_kind(info(), "an attention operator");
}
Status Plugin::create_weights(Device&, std::unique_ptr<WeightFormat>*) noexcept {
  return not_this_kind(info(), "a weight format");
}

size_t layout_bytes_per_token(std::string_view layout, int num_layers, int num_kv_heads, int head_dim) {
  size_t per_head;  // bytes of one token of one KV head, for K or V
  if (layout == layout::paged_f16 || layout == layout::paged_bf16) {
    per_head = size_t(head_dim) * 2;
  } else if (layout == layout::paged_u8_token_head) {
    per_head = size_t(head_dim) + 2 /* fp16 scale */ + 1 /* uint8 zero */;
  } else {
    return 0;
  }
  return per_head * size_t(num_kv_heads) * 2 /* K and V */ * size_t(num_layers);
}

}  // namespace kvrun
