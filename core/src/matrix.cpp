// The compatibility matrix: every verdict is computed from PluginInfo declarations.
#include "kvrun/matrix.hpp"

#include <algorithm>

namespace kvrun {
namespace {

bool has_backend(const PluginInfo& info, BackendKind b) {
  return std::find(info.backends.begin(), info.backends.end(), b) != info.backends.end();
}

bool reads(const PluginInfo& attention, const std::string& layout) {
  return std::find(attention.reads_layouts.begin(), attention.reads_layouts.end(), layout) !=
         attention.reads_layouts.end();
}

std::string join(const std::vector<std::string>& v, const std::string& sep = ", ") {
  std::string s;
  for (const auto& x : v) s += (s.empty() ? "" : sep) + x;
  return s;
}

std::string backends_of(const PluginInfo& info) {
  std::vector<std::string> b;
  for (BackendKind k : info.backends) b.push_back(backend_name(k));
  return b.empty() ? "none" : join(b);
}

// Adds a reason when a plugin is not built for the backend.
void check_backend(const LoadedPlugin& p, BackendKind backend, const char* key, Verdict& v) {
  if (has_backend(p.info, backend)) return;
  v.ok = false;
  v.reasons.push_back(std::string(plugin_kind_name(p.info.kind)) + " '" + p.info.name + "' was not built for the " +
                      backend_name(backend) + " backend (it runs on: " + backends_of(p.info) + "); " +
                      (backend == BackendKind::cuda ? "set backend.device = \"cpu\", or rebuild the plugin with CUDA code "
                                                                  "(kvrun's own: -Dcuda=enabled)"
                                                    : "set backend.device to a backend it supports") +
                      " [" + key + "]");
}

}  // namespace

std::string Verdict::message() const { return join(reasons, "; "); }

Verdict check_combination(const Registry& reg, const Combination& c) {
  Verdict v;
  const LoadedPlugin* w = reg.find(PluginKind::weights, c.weights);
  const LoadedPlugin* kv = reg.find(PluginKind::cache, c.cache);
  const LoadedPlugin* at = reg.find(PluginKind::attention, c.attention);
  auto unknown = [&](PluginKind k, const std::string& name, const char* key) {
    v.ok = false;
    std::string avail = join(reg.names(k));
    std::string reason = std::string("unknown ") + plugin_kind_name(k) + " plugin '" + name + "' [" + key +
                         "]; available: " + (avail.empty() ? "none found" : avail);
    // It may be one of the modules that were found but refused (e.g. built for another ABI).
    for (const PluginProblem& p : reg.problems())
      if (!p.shadowed) reason += "; refused: " + p.reason;
    v.reasons.push_back(reason);
  };
  if (!w) unknown(PluginKind::weights, c.weights, "weights.format");
  if (!kv) unknown(PluginKind::cache, c.cache, "cache.type");
  if (!at) unknown(PluginKind::attention, c.attention, "attention.kind");

  if (w) check_backend(*w, c.backend, "weights.format", v);
  if (kv) check_backend(*kv, c.backend, "cache.type", v);
  if (at) check_backend(*at, c.backend, "attention.kind", v);

  // The cache's layout must be one the attention reads.
  if (kv && at && !reads(at->info, kv->info.provides_layout)) {
    v.ok = false;
    std::vector<std::string> other_attn, other_cache;
    for (const LoadedPlugin& p : reg.plugins()) {
      // alternatives by layout alone (backend problems are reported as reasons of their own)
      if (p.info.kind == PluginKind::attention && reads(p.info, kv->info.provides_layout))
        other_attn.push_back("attention.kind = \"" + p.info.name + "\"");
      if (p.info.kind == PluginKind::cache && reads(at->info, p.info.provides_layout))
        other_cache.push_back("cache.type = \"" + p.info.name + "\"");
    }
    std::vector<std::string> alts = other_attn;
    alts.insert(alts.end(), other_cache.begin(), other_cache.end());
    v.reasons.push_back("cache '" + kv->info.name + "' stores " + kv->info.provides_layout + " blocks; attention '" +
                        at->info.name + "' reads only " + join(at->info.reads_layouts) +
                        (alts.empty() ? std::string(" — no installed plugin pairs with either")
                                      : " — use " + join(alts, " or ")));
  }

  // The weights plugin must load the checkpoint's encoding.
  if (w && !c.checkpoint_encoding.empty() &&
      std::find(w->info.encodings.begin(), w->info.encodings.end(), c.checkpoint_encoding) == w->info.encodings.end()) {
    v.ok = false;
    std::vector<std::string> alts;
    for (const LoadedPlugin& p : reg.plugins())
      if (p.info.kind == PluginKind::weights &&
          std::find(p.info.encodings.begin(), p.info.encodings.end(), c.checkpoint_encoding) != p.info.encodings.end())
        alts.push_back("weights.format = \"" + p.info.name + "\"");
    v.reasons.push_back("the checkpoint's weights are " + c.checkpoint_encoding + " but weights '" + w->info.name +
                        "' loads only " + join(w->info.encodings) +
                        (alts.empty() ? std::string(" — no installed weights plugin loads ") + c.checkpoint_encoding
                                      : " — use " + join(alts, " or ") + " (or \"auto\")"));
  }
  return v;
}

std::vector<MatrixEntry> full_matrix(const Registry& reg) {
  std::vector<MatrixEntry> out;
  for (BackendKind b : {BackendKind::cpu, BackendKind::cuda})
    for (const std::string& w : reg.names(PluginKind::weights))
      for (const std::string& kv : reg.names(PluginKind::cache))
        for (const std::string& at : reg.names(PluginKind::attention)) {
          Combination c{w, kv, at, b, ""};
          out.push_back({c, check_combination(reg, c)});
        }
  return out;
}

std::string resolve_weights_format(const Registry& reg, const std::string& format, const std::string& encoding) {
  if (format != "auto") return format;
  for (const LoadedPlugin& p : reg.plugins())
    if (p.info.kind == PluginKind::weights &&
        std::find(p.info.encodings.begin(), p.info.encodings.end(), encoding) != p.info.encodings.end())
      return p.info.name;
  fail(ErrorKind::usage, "weights.format = \"auto\": no installed weights plugin loads " + encoding +
                             " checkpoints (available: " + join(reg.names(PluginKind::weights)) + ")");
}

}  // namespace kvrun
