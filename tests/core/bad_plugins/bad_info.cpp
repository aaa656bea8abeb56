// A plugin that loads and constructs but declares nothing usable (a cache without a layout, a
// name that differs from its entry header's): refused with the reason, before the matrix sees it.
#include "kvrun/plugin.hpp"

namespace {
class BadInfoPlugin final : public kvrun::Plugin {
 public:
  BadInfoPlugin() {
    info_.kind = kvrun::PluginKind::cache;
    info_.name = "nolayout";
    info_.version = "0.0.1";
    info_.backends = {kvrun::BackendKind::cpu};
  }
  const kvrun::PluginInfo& info() const noexcept override { return info_; }

 private:
  kvrun::PluginInfo info_;
};
}  // namespace

KVRUN_DEFINE_PLUGIN("cache.nolayout", BadInfoPlugin)
