// A plugin whose header claims a future ABI version under the current entry name: the registry
// must refuse it by name, before calling anything else in it.
#include "kvrun/plugin.hpp"

extern "C" __attribute__((visibility("default"))) const kvrun::PluginHeader* KVRUN_PLUGIN_ENTRY() noexcept {
  static const kvrun::PluginHeader h{999, 0, "cache.from_the_future", nullptr};
  return &h;
}
