#include "kvrun/plugin.hpp"

#include <cerrno>
#include <cstdlib>

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

Status WeightFormat::load_joined_linear(const Checkpoint&, const std::vector<LinearSpec>&, Device&,
                                        std::unique_ptr<Linear>* out) noexcept {
  if (out) out->reset();
  return {};
}

Status Cache::append_qkv(int, const StepBatch&, TensorView, TensorView, TensorView, const float*) noexcept {
  return {ErrorKind::internal, "layout '" + info().layout +
                                   "': this cache does not implement Cache::append_qkv (ask appends_qkv() first)"};
}

Status Cache::read(int, int, int, int, TensorView, TensorView) noexcept {
  return {ErrorKind::usage, "layout '" + info().layout + "': this cache does not implement Cache::read()"};
}

const PluginOption* find_option(const PluginOptions& opts, std::string_view key) noexcept {
  for (const PluginOption& o : opts)
    if (o.key == key) return &o;
  return nullptr;
}

int64_t option_int(const PluginOptions& opts, std::string_view key, int64_t fallback) {
  const PluginOption* o = find_option(opts, key);
  if (!o) return fallback;
  errno = 0;
  char* end = nullptr;
  const long long v = std::strtoll(o->value.c_str(), &end, 10);
  if (o->value.empty() || *end != '\0' || errno == ERANGE)
    fail(ErrorKind::usage, (o->where.empty() ? "option '" + o->key + "'" : o->where) + ": expected an integer, got '" +
                               o->value + "'");
  return v;
}

double option_float(const PluginOptions& opts, std::string_view key, double fallback) {
  const PluginOption* o = find_option(opts, key);
  if (!o) return fallback;
  char* end = nullptr;
  const double v = std::strtod(o->value.c_str(), &end);
  if (o->value.empty() || *end != '\0')
    fail(ErrorKind::usage, (o->where.empty() ? "option '" + o->key + "'" : o->where) + ": expected a number, got '" +
                               o->value + "'");
  return v;
}

double layout_tolerance(std::string_view layout) {
  if (layout == layout::paged_f16) return 1.0 / 2048;  // round to nearest, 11-bit significand
  if (layout == layout::paged_bf16) return 1.0 / 256;  // 8-bit significand
  // SPECS.md §1: rounding is half a step of (range / 255); the scale's own fp16 rounding and the
  // clamp at the ends stay within one step.
  if (layout == layout::paged_u8_token_head) return 1.0 / 255;
  return 0;
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
