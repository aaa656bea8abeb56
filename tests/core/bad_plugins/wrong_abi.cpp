// A plugin whose header claims a future ABI version: the registry must refuse it by name.
#include "kvrun/plugin.hpp"

extern "C" __attribute__((visibility("default"))) const kvrun::PluginHeader* kvrun_plugin_v1() noexcept {
  static const kvrun::PluginHeader h{999, 0, "cache.from_the_future", nullptr};
  return &h;
}
