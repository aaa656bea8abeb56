// Plugin loading (ABI checks, missing symbols, lifetimes) and the derived compatibility matrix.
#include <doctest/doctest.h>

#include <algorithm>
#include <sstream>

#include "devices.hpp"
#include "fixtures.hpp"
#include "kvrun/cpu/cpu.hpp"
#include "kvrun/matrix.hpp"
#include "kvrun/registry.hpp"

using namespace kvrun;

namespace {

Registry shipped() {
  Registry r;
  r.load_path(test::plugin_dirs());
  return r;
}

std::string load_error(const std::string& file) {
  Registry r;
  try {
    r.load_file(std::string(KVRUN_TEST_PLUGIN_DIR) + "/" + file);
  } catch (const Error& e) {
    CHECK(e.kind() == ErrorKind::usage);
    return e.what();
  }
  FAIL("expected the registry to refuse " << file);
  return "";
}

}  // namespace

TEST_CASE("the six shipped plugins load with their declarations") {
  Registry r = shipped();
  CHECK(r.plugins().size() == 6);
  for (auto [kind, name] : std::vector<std::pair<PluginKind, std::string>>{{PluginKind::cache, "fp16"},
                                                                           {PluginKind::cache, "int8"},
                                                                           {PluginKind::attention, "naive"},
                                                                           {PluginKind::attention, "flash"},
                                                                           {PluginKind::weights, "bf16"},
                                                                           {PluginKind::weights, "gptq"}}) {
    INFO(name);
    const LoadedPlugin* p = r.find(kind, name);
    REQUIRE(p != nullptr);
    CHECK(!p->info.version.empty());
    CHECK(!p->info.backends.empty());
  }
  CHECK(r.find(PluginKind::cache, "int8")->info.provides_layout == "paged_u8_token_head");
  const auto& flash = r.find(PluginKind::attention, "flash")->info.reads_layouts;
  CHECK(std::find(flash.begin(), flash.end(), "paged_u8_token_head") == flash.end());
}

TEST_CASE("wrong ABI version is refused naming the file and both versions") {
  std::string m = load_error("testplugin_wrong_abi.so");
  CHECK(m.find("testplugin_wrong_abi.so") != std::string::npos);
  CHECK(m.find("ABI 999") != std::string::npos);
  CHECK(m.find("ABI " + std::to_string(kPluginAbiVersion)) != std::string::npos);
}

TEST_CASE("an older entry symbol is recognised as another ABI") {
  std::string m = load_error("testplugin_old_entry.so");
  CHECK(m.find("testplugin_old_entry.so") != std::string::npos);
  CHECK(m.find("kvrun_plugin_v0") != std::string::npos);
  CHECK(m.find("another plugin ABI") != std::string::npos);
}

TEST_CASE("a library without the entry symbol is refused") {
  std::string m = load_error("testplugin_no_entry.so");
  CHECK(m.find("testplugin_no_entry.so") != std::string::npos);
  CHECK(m.find("no entry symbol '" KVRUN_PLUGIN_ENTRY_NAME "'") != std::string::npos);
  CHECK(m.find("not a kvrun plugin") != std::string::npos);
}

TEST_CASE("a plugin whose factory throws is refused with the exception's message") {
  std::string m = load_error("testplugin_throwing_factory.so");
  CHECK(m.find("testplugin_throwing_factory.so") != std::string::npos);
  CHECK(m.find("cache.throws") != std::string::npos);
  CHECK(m.find("failed to create its plugin object") != std::string::npos);
  CHECK(m.find("cannot open /etc/throwing-cache.lic") != std::string::npos);
}

TEST_CASE("a plugin with unusable declarations is refused with the reason") {
  std::string m = load_error("testplugin_bad_info.so");
  CHECK(m.find("testplugin_bad_info.so") != std::string::npos);
  CHECK(m.find("provides_layout") != std::string::npos);
}

TEST_CASE("a folder scan records refusals as problems and keeps the good plugins") {
  Registry r;
  r.load_path({KVRUN_TEST_PLUGIN_DIR});
  CHECK(r.find(PluginKind::cache, "ring4") != nullptr);
  CHECK(r.problems().size() >= 5);
  for (const char* bad : {"wrong_abi", "old_entry", "no_entry", "throwing_factory", "bad_info"}) {
    INFO(bad);
    bool seen = false;
    for (const PluginProblem& p : r.problems()) seen |= p.path.find(std::string("testplugin_") + bad) != std::string::npos;
    CHECK(seen);
  }
  // The good plugins beside them still load.
  Registry all = shipped();
  all.load_path({KVRUN_TEST_PLUGIN_DIR});
  CHECK(all.plugins().size() == 7);
}

TEST_CASE("unknown plugin names list what is available") {
  Registry r = shipped();
  try {
    r.get(PluginKind::cache, "int4");
    FAIL("expected an error");
  } catch (const Error& e) {
    std::string m = e.what();
    CHECK(m.find("unknown cache type 'int4'") != std::string::npos);
    CHECK(m.find("fp16") != std::string::npos);
    CHECK(m.find("int8") != std::string::npos);
  }
}

TEST_CASE("objects keep their plugin library loaded after the registry is gone") {
  auto dev = cpu::make_cpu_device(1);
  std::shared_ptr<Cache> cache;
  {
    Registry r = shipped();
    CacheParams p;
    p.num_layers = 1;
    p.num_kv_heads = 1;
    p.head_dim = 8;
    p.max_tokens = 32;
    cache = r.create_cache("int8", p, *dev);
  }
  CHECK(cache->info().layout == "paged_u8_token_head");  // code of the plugin still mapped
  CHECK(cache->free_blocks() == 2);
}

TEST_CASE("matrix: flash + int8 is invalid with a reason naming both and the way out") {
  Registry r = shipped();
  Verdict v = check_combination(r, {"bf16", "int8", "flash", BackendKind::cpu, "bf16"});
  CHECK(!v.ok);
  std::string m = v.message();
  CHECK(m.find("flash") != std::string::npos);
  CHECK(m.find("int8") != std::string::npos);
  CHECK(m.find("attention.kind = \"naive\"") != std::string::npos);
  CHECK(m.find("cache.type = \"fp16\"") != std::string::npos);
  CHECK(check_combination(r, {"bf16", "int8", "naive", BackendKind::cpu, "bf16"}).ok);
  CHECK(check_combination(r, {"bf16", "fp16", "flash", BackendKind::cpu, "bf16"}).ok);
}

TEST_CASE("matrix: derived from declarations, including a third-party layout") {
  Registry r = shipped();
  r.load_path({KVRUN_TEST_PLUGIN_DIR});
  Verdict v = check_combination(r, {"bf16", "ring4", "naive", BackendKind::cpu, ""});
  CHECK(!v.ok);
  CHECK(v.message().find("paged_ring4") != std::string::npos);
  auto m = full_matrix(r);
  // 2 weights × 3 caches × 2 attentions × 2 backends
  CHECK(m.size() == 24);
  int valid_cpu = 0;
  for (auto& e : m) valid_cpu += e.verdict.ok && e.combo.backend == BackendKind::cpu;
  CHECK(valid_cpu == 6);  // (fp16: naive, flash; int8: naive) × 2 weights
}

TEST_CASE("matrix: weights that do not match the checkpoint, and backends not built") {
  Registry r = shipped();
  Verdict v = check_combination(r, {"bf16", "fp16", "naive", BackendKind::cpu, "gptq"});
  CHECK(!v.ok);
  CHECK(v.message().find("weights.format = \"gptq\"") != std::string::npos);
  CHECK(resolve_weights_format(r, "auto", "gptq") == "gptq");
  CHECK(resolve_weights_format(r, "auto", "bf16") == "bf16");
  // A plugin that does not list a backend is refused for it, naming the key to change.
  for (const auto& p : r.plugins()) {
    if (std::find(p.info.backends.begin(), p.info.backends.end(), BackendKind::cuda) != p.info.backends.end()) continue;
    Combination c{"bf16", "fp16", "naive", BackendKind::cuda, ""};
    if (p.info.kind == PluginKind::cache) c.cache = p.info.name;
    if (p.info.kind == PluginKind::attention) c.attention = p.info.name;
    if (p.info.kind == PluginKind::weights) c.weights = p.info.name;
    Verdict vb = check_combination(r, c);
    CHECK(!vb.ok);
    CHECK(vb.message().find("not built for the cuda backend") != std::string::npos);
  }
}
