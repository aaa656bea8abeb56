#include "kvrun/registry.hpp"

#include <algorithm>
#include <boost/dll/library_info.hpp>
#include <boost/dll/shared_library.hpp>
#include <cctype>
#include <cstdlib>
#include <dlfcn.h>
#include <filesystem>
#include <sstream>

#include "kvrun/log.hpp"

namespace kvrun {
namespace fs = std::filesystem;

namespace {

std::vector<std::string> split_colon(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream ss(s);
  std::string item;
  while (std::getline(ss, item, ':'))
    if (!item.empty()) out.push_back(item);
  return out;
}

// Names of exported symbols that look like a kvrun plugin entry of any ABI version.
std::vector<std::string> entry_like_symbols(const std::string& path) {
  std::vector<std::string> out;
  try {
    boost::dll::library_info info(path);
    for (const std::string& s : info.symbols())
      if (s.rfind(KVRUN_PLUGIN_ENTRY_PREFIX, 0) == 0) out.push_back(s);
  } catch (...) {
  }
  return out;
}

std::string kind_label(PluginKind k) {
  switch (k) {
    case PluginKind::cache: return "cache type";
    case PluginKind::attention: return "attention kind";
    case PluginKind::weights: return "weights format";
  }
  return "plugin";
}

// Objects are created only on backends the plugin declares (the same declaration the matrix reads).
void require_backend(const LoadedPlugin& lp, const Device& dev) {
  const BackendKind b = dev.info().backend;
  const auto& bs = lp.info.backends;
  if (std::find(bs.begin(), bs.end(), b) != bs.end()) return;
  std::string runs;
  for (BackendKind k : bs) runs += (runs.empty() ? "" : ", ") + std::string(backend_name(k));
  fail(ErrorKind::usage, lp.info.full_name() + ": this build has no " + backend_name(b) + " code (it runs on: " +
                             (runs.empty() ? "nothing" : runs) + "); use backend.device = \"cpu\"");
}

// The plugin folder of an installed kvrun, found from where this library is: plugins live in
// <libdir>/kvrun/plugins beside <libdir>/libkvrun-core.so, so an installation (or a DESTDIR
// staging of one) finds its own plugins wherever it was copied. Empty if it cannot be told.
std::string plugindir_beside_core() {
  Dl_info di{};
  if (!dladdr(reinterpret_cast<void*>(&plugin_kind_name), &di) || !di.dli_fname) return "";
  std::error_code ec;
  fs::path lib = fs::canonical(di.dli_fname, ec);
  if (ec) return "";
  return (lib.parent_path() / KVRUN_PLUGINDIR_FROM_LIBDIR).lexically_normal().string();
}

// What a plugin declares must be usable by the matrix; "" when it is, else why not.
std::string info_problem(const PluginInfo& i, const char* header_name) {
  if (i.kind != PluginKind::cache && i.kind != PluginKind::attention && i.kind != PluginKind::weights)
    return "its info() has an unknown kind (" + std::to_string(int(i.kind)) + ")";
  if (i.name.empty()) return "its info() has an empty name";
  for (char ch : i.name)
    if (!(std::isalnum(static_cast<unsigned char>(ch)) || ch == '_' || ch == '-'))
      return "its name '" + i.name + "' has characters other than letters, digits, '_' and '-'";
  if (header_name && i.full_name() != header_name)
    return "its entry header names it '" + std::string(header_name) + "' but info() says '" + i.full_name() +
           "'; use the same name in KVRUN_DEFINE_PLUGIN and PluginInfo";
  if (i.backends.empty()) return "it declares no backends (PluginInfo::backends)";
  switch (i.kind) {
    case PluginKind::cache:
      if (i.provides_layout.empty()) return "a cache plugin must declare PluginInfo::provides_layout";
      if (i.kv_tolerance < 0 || !(i.kv_tolerance < 1)) return "its kv_tolerance must be in [0, 1)";
      break;
    case PluginKind::attention:
      if (i.reads_layouts.empty()) return "an attention plugin must declare PluginInfo::reads_layouts";
      break;
    case PluginKind::weights:
      if (i.encodings.empty()) return "a weights plugin must declare PluginInfo::encodings";
      break;
  }
  for (const PluginOptionInfo& o : i.options)
    if (o.key.empty() || (o.type != "integer" && o.type != "float" && o.type != "boolean" && o.type != "string"))
      return "its option '" + o.key + "' needs a key and a type of integer, float, boolean or string";
  return "";
}

}  // namespace

std::vector<std::string> Registry::search_path(const std::vector<std::string>& config_paths,
                                               const std::vector<std::string>& extra_dirs) {
  std::vector<std::string> out = config_paths;
  if (const char* env = std::getenv("KVRUN_PLUGIN_PATH")) {
    for (auto& p : split_colon(env)) out.push_back(p);
  }
  for (auto& p : extra_dirs) out.push_back(p);
  const std::string beside = plugindir_beside_core();
  if (!beside.empty()) out.push_back(beside);
  if (beside != KVRUN_PLUGINDIR) out.push_back(KVRUN_PLUGINDIR);
  return out;
}

void Registry::load_path(const std::vector<std::string>& entries) {
  for (const std::string& entry : entries) {
    std::error_code ec;
    std::vector<std::string> files;
    if (fs::is_directory(entry, ec)) {
      searched_.push_back(entry);
      for (const auto& de : fs::directory_iterator(entry, ec))
        // kvrun_backend_*.so beside the plugins are device backends (backends/select.cpp), not plugins.
        if (de.is_regular_file() && de.path().extension() == ".so" &&
            de.path().filename().string().rfind("kvrun_backend_", 0) != 0)
          files.push_back(de.path().string());
      std::sort(files.begin(), files.end());
    } else if (fs::is_regular_file(entry, ec)) {
      searched_.push_back(entry);
      files.push_back(entry);
    } else {
      continue;  // a configured folder that does not exist is not an error (install dir, env)
    }
    for (const std::string& f : files) {
      try {
        load_file(f);
      } catch (const Error& e) {
        // Refused modules do not stop the scan; the other plugins stay usable. Commands report
        // problems() (kvrun plugins lists them, pipelines warn).
        problems_.push_back({f, e.what()});
        log_debug(e.what());
      }
    }
  }
}

const LoadedPlugin& Registry::load_file(const std::string& path) {
  for (const LoadedPlugin& p : plugins_)
    if (p.path == path) return p;

  auto lib = std::make_shared<boost::dll::shared_library>();
  try {
    lib->load(path, boost::dll::load_mode::rtld_lazy | boost::dll::load_mode::rtld_local);
  } catch (const std::exception& e) {
    fail(ErrorKind::usage, "plugin '" + path + "' could not be loaded: " + e.what());
  }
  if (!lib->has(KVRUN_PLUGIN_ENTRY_NAME)) {
    std::vector<std::string> others = entry_like_symbols(path);
    std::string msg = "plugin '" + path + "' has no entry symbol '" KVRUN_PLUGIN_ENTRY_NAME "'";
    if (!others.empty()) {
      msg += ": it exports '" + others[0] + "', so it was built for another plugin ABI (this kvrun speaks ABI " +
             std::to_string(kPluginAbiVersion) + "); rebuild it against this kvrun's headers (pkg-config kvrun-plugin)";
    } else {
      msg += ": it is not a kvrun plugin (plugins define their entry with KVRUN_DEFINE_PLUGIN)";
    }
    fail(ErrorKind::usage, msg);
  }
  using Entry = const PluginHeader* (*)() noexcept;
  Entry entry = lib->get<const PluginHeader*() noexcept>(KVRUN_PLUGIN_ENTRY_NAME);
  const PluginHeader* header = entry ? entry() : nullptr;
  if (!header) fail(ErrorKind::usage, "plugin '" + path + "': entry symbol returned no header");
  if (header->abi_version != kPluginAbiVersion) {
    fail(ErrorKind::usage, "plugin '" + path + "' (" + (header->name ? header->name : "?") + ") was built for plugin ABI " +
                               std::to_string(header->abi_version) + " but this kvrun speaks ABI " +
                               std::to_string(kPluginAbiVersion) + "; rebuild it against this kvrun's headers");
  }
  if (!header->create) fail(ErrorKind::usage, "plugin '" + path + "': its entry header has no create function");
  Plugin* raw = nullptr;
  Status made = header->create(&raw);
  std::string who = header->name ? std::string(" (") + header->name + ")" : std::string();
  if (!made.ok() || !raw) {
    delete raw;
    fail(ErrorKind::usage, "plugin '" + path + "'" + who + " failed to create its plugin object: " +
                               (made.message.empty() ? "create() returned nothing" : made.message));
  }
  // The Plugin keeps its library alive; every object it makes keeps the Plugin alive (adopt()).
  std::shared_ptr<Plugin> plugin(raw, [lib](Plugin* p) { delete p; });
  if (std::string why = info_problem(plugin->info(), header->name); !why.empty())
    fail(ErrorKind::usage, "plugin '" + path + "'" + who + " is refused: " + why);

  LoadedPlugin lp;
  lp.path = path;
  lp.info = plugin->info();
  lp.plugin = std::move(plugin);
  if (const LoadedPlugin* prior = find(lp.info.kind, lp.info.name)) {
    log_debug("plugin '" + lp.info.full_name() + "' in '" + path + "' is shadowed by '" + prior->path + "'");
    problems_.push_back({path, "shadowed by '" + prior->path + "' (same plugin name " + lp.info.full_name() + ")", true});
    return *prior;
  }
  log_debug("loaded plugin " + lp.info.full_name() + " " + lp.info.version + " from " + path);
  plugins_.push_back(std::move(lp));
  return plugins_.back();
}

const LoadedPlugin* Registry::find(PluginKind kind, const std::string& name) const noexcept {
  for (const LoadedPlugin& p : plugins_)
    if (p.info.kind == kind && p.info.name == name) return &p;
  return nullptr;
}

std::vector<std::string> Registry::names(PluginKind kind) const {
  std::vector<std::string> out;
  for (const LoadedPlugin& p : plugins_)
    if (p.info.kind == kind) out.push_back(p.info.name);
  return out;
}

const LoadedPlugin& Registry::get(PluginKind kind, const std::string& name) const {
  if (const LoadedPlugin* p = find(kind, name)) return *p;
  std::string avail;
  for (const std::string& n : names(kind)) avail += (avail.empty() ? "" : ", ") + n;
  std::string searched;
  for (const std::string& s : searched_) searched += (searched.empty() ? "" : ", ") + s;
  fail(ErrorKind::usage, "unknown " + kind_label(kind) + " '" + name + "'; available: " +
                             (avail.empty() ? "none" : avail) + " (plugins searched in: " +
                             (searched.empty() ? "nothing found" : searched) +
                             "; add folders with [plugins] paths or KVRUN_PLUGIN_PATH)");
}

std::shared_ptr<Cache> Registry::create_cache(const std::string& name, const CacheParams& p, Device& dev) const {
  const LoadedPlugin& lp = get(PluginKind::cache, name);
  require_backend(lp, dev);
  std::unique_ptr<Cache> obj;
  check(lp.plugin->create_cache(p, dev, &obj));
  return adopt(lp.plugin, std::move(obj));
}

std::shared_ptr<Attention> Registry::create_attention(const std::string& name, const AttentionParams& p,
                                                      Device& dev) const {
  const LoadedPlugin& lp = get(PluginKind::attention, name);
  require_backend(lp, dev);
  std::unique_ptr<Attention> obj;
  check(lp.plugin->create_attention(p, dev, &obj));
  return adopt(lp.plugin, std::move(obj));
}

std::shared_ptr<WeightFormat> Registry::create_weights(const std::string& name, Device& dev) const {
  const LoadedPlugin& lp = get(PluginKind::weights, name);
  require_backend(lp, dev);
  std::unique_ptr<WeightFormat> obj;
  check(lp.plugin->create_weights(dev, &obj));
  return adopt(lp.plugin, std::move(obj));
}

}  // namespace kvrun
