// A well-formed third-party cache plugin declaring a new layout: loads, and the matrix pairs it
// with no shipped attention (none reads its layout). It declares options, for the config checks.
#include <memory>

#include "kvrun/plugin.hpp"

namespace {
class ExtraPlugin final : public kvrun::Plugin {
 public:
  ExtraPlugin() {
    info_.kind = kvrun::PluginKind::cache;
    info_.name = "ring4";
    info_.version = "9.9.9";
    info_.description = "test-only cache with a private layout";
    info_.backends = {kvrun::BackendKind::cpu};
    info_.provides_layout = "paged_ring4";
    info_.kv_tolerance = 0.5;
    info_.options = {{"rings", "integer", "4", "test-only option"}, {"mode", "string", "\"fast\"", "test-only option"}};
  }
  const kvrun::PluginInfo& info() const noexcept override { return info_; }

 private:
  kvrun::PluginInfo info_;
};
}  // namespace

KVRUN_DEFINE_PLUGIN("cache.ring4", ExtraPlugin)
