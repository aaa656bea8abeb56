// A plugin whose constructor throws (a missing licence file, say): KVRUN_DEFINE_PLUGIN turns the
// exception into create()'s Status, and the registry refuses the module with that message.
#include <stdexcept>

#include "kvrun/plugin.hpp"

namespace {
class ThrowingPlugin final : public kvrun::Plugin {
 public:
  ThrowingPlugin() { throw std::runtime_error("cannot open /etc/throwing-cache.lic (test: the factory throws)"); }
  const kvrun::PluginInfo& info() const noexcept override { return info_; }

 private:
  kvrun::PluginInfo info_;
};
}  // namespace

KVRUN_DEFINE_PLUGIN("cache.throws", ThrowingPlugin)
