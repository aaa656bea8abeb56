// kvrun — the plugin registry: finds plugin modules, loads them with Boost.DLL, checks their ABI,
// and creates plugin objects that keep their library loaded for as long as they live.
#pragma once

#include <deque>
#include <memory>
#include <string>
#include <vector>

#include "kvrun/plugin.hpp"

namespace kvrun {

struct LoadedPlugin {
  std::string path;                // the module file
  PluginInfo info;                 // copied from the plugin at load time
  std::shared_ptr<Plugin> plugin;  // its deleter keeps the library loaded
};

// A module that was found but refused, and why (shown by `kvrun plugins`).
struct PluginProblem {
  std::string path;
  std::string reason;
  bool shadowed = false;  // a valid plugin whose name an earlier one already took (not an error)
};

class Registry {
 public:
  // Search order: config [plugins] paths, then KVRUN_PLUGIN_PATH (':'-separated), then
  // extra_dirs (e.g. the build tree's plugin folders for an uninstalled kvrun), then the install
  // folder: <libdir>/kvrun/plugins beside the libkvrun-core.so in use (so a relocated or
  // DESTDIR-staged installation finds its own plugins), then the configured install plugindir.
  // An entry may be a folder (every *.so in it is tried) or one .so file.
  static std::vector<std::string> search_path(const std::vector<std::string>& config_paths,
                                              const std::vector<std::string>& extra_dirs = {});

  // Loads every module found on the path. The first plugin of a given full name wins; modules
  // without the entry symbol, of another ABI version, whose factory fails, or whose declarations
  // are unusable are recorded as problems (and logged at debug level) rather than stopping the scan.
  void load_path(const std::vector<std::string>& entries);
  // Loads one module; Error(usage) naming the file and the reason on any refusal.
  const LoadedPlugin& load_file(const std::string& path);

  const std::deque<LoadedPlugin>& plugins() const noexcept { return plugins_; }
  const std::vector<PluginProblem>& problems() const noexcept { return problems_; }
  const std::vector<std::string>& searched() const noexcept { return searched_; }
  const LoadedPlugin* find(PluginKind kind, const std::string& name) const noexcept;
  // Error(usage) "unknown cache type 'x'; available: fp16, int8 (searched: …)" when absent.
  const LoadedPlugin& get(PluginKind kind, const std::string& name) const;
  std::vector<std::string> names(PluginKind kind) const;

  // Creation; the objects keep the plugin's library loaded.
  std::shared_ptr<Cache> create_cache(const std::string& name, const CacheParams& p, Device& dev) const;
  std::shared_ptr<Attention> create_attention(const std::string& name, const AttentionParams& p, Device& dev) const;
  std::shared_ptr<WeightFormat> create_weights(const std::string& name, Device& dev) const;

 private:
  std::deque<LoadedPlugin> plugins_;  // deque: references stay valid as plugins load
  std::vector<PluginProblem> problems_;
  std::vector<std::string> searched_;
};

// Wraps an object made by a plugin so that it keeps `owner` (and through it the library) alive.
template <class T, class Owner>
std::shared_ptr<T> adopt(std::shared_ptr<Owner> owner, std::unique_ptr<T> obj) {
  T* raw = obj.release();
  return std::shared_ptr<T>(raw, [owner](T* p) { delete p; });
}

}  // namespace kvrun
