// A plugin built for an older ABI: it exports kvrun_plugin_v0, not kvrun_plugin_v1.
extern "C" __attribute__((visibility("default"))) const void* kvrun_plugin_v0() noexcept { return nullptr; }
