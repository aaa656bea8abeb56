// The plugin SDK from the command line (docs/plugins.md): `kvrun selftest --plugin` on good,
// buggy and refused modules; broken modules on KVRUN_PLUGIN_PATH leave the other plugins working;
// plugin options in the pipeline ([cache] options) parsed and checked against declarations.
// The install-and-build-out-of-tree path is tests/sdk/test_sdk_install.sh.
#include <doctest/doctest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

#include "devices.hpp"
#include "fixtures.hpp"
#include "kvrun/config.hpp"
#include "pipeline.hpp"
#include "run_kvrun.hpp"

namespace fs = std::filesystem;
using nlohmann::json;
using kvrun::test::contains;
using kvrun::test::Run;
using kvrun::test::run_kvrun;

namespace {

std::string bad(const std::string& name) { return std::string(KVRUN_TEST_PLUGIN_DIR) + "/testplugin_" + name + ".so"; }
std::string broken(const std::string& name) {
  return std::string(KVRUN_BUILD_ROOT) + "/tests/core/broken_plugins/testplugin_" + name + ".so";
}

// The shipped module files of this build.
std::vector<std::string> shipped_modules() {
  std::vector<std::string> out;
  for (const std::string& d : kvrun::test::build_plugin_dirs())
    for (const auto& e : fs::directory_iterator(d))
      if (e.path().extension() == ".so" && e.path().filename().string().rfind("kvrun_", 0) == 0) out.push_back(e.path());
  return out;
}

}  // namespace

TEST_CASE("selftest --plugin: each shipped plugin passes the checks of its kind (JSON report)") {
  const std::vector<std::string> mods = shipped_modules();
  REQUIRE(mods.size() == 6);
  std::set<std::string> kinds;
  for (const std::string& m : mods) {
    INFO(m);
    Run r = run_kvrun("selftest --plugin '" + m + "' --json");
    CHECK(r.code == 0);
    json j = json::parse(r.out);
    CHECK(j["ok"].get<bool>());
    CHECK(j["path"] == m);
    kinds.insert(j["kind"].get<std::string>());
    CHECK(j["checks"].size() >= 3);
    for (const auto& c : j["checks"]) {
      INFO(c["name"].get<std::string>() << ": " << c["detail"].get<std::string>());
      CHECK(c["ok"].get<bool>());
    }
  }
  CHECK(kinds == std::set<std::string>{"cache", "attention", "weights"});
}

TEST_CASE("selftest --plugin: an attention without a causal mask fails, naming the check") {
  Run r = run_kvrun("selftest --plugin '" + broken("broken_attention") + "'");
  CHECK(r.code == 1);
  CHECK(contains(r.out, "conformance of attention.nomask"));
  CHECK(contains(r.out, "FAIL  attention: paged_f16 against the reference"));
  CHECK(contains(r.out, "max |out - reference|"));
  CHECK(contains(r.out, "conformance FAILED"));
}

TEST_CASE("selftest --plugin: a cache that loses blocks fails the read-back, naming the check") {
  Run r = run_kvrun("selftest --plugin '" + broken("broken_cache") + "' --json");
  CHECK(r.code == 1);
  json j = json::parse(r.out);
  CHECK(!j["ok"].get<bool>());
  bool seen = false;
  for (const auto& c : j["checks"])
    if (c["name"] == "cache: ragged append and read back") {
      seen = true;
      CHECK(!c["ok"].get<bool>());
      CHECK(contains(c["detail"].get<std::string>(), "exceeds the tolerance"));
    }
  CHECK(seen);
}

TEST_CASE("selftest --plugin: a module kvrun refuses is a usage error naming it and why") {
  Run r = run_kvrun("selftest --plugin '" + bad("throwing_factory") + "'");
  CHECK(r.code == 2);
  CHECK(contains(r.err, "testplugin_throwing_factory.so"));
  CHECK(contains(r.err, "cannot open /etc/throwing-cache.lic"));
  Run r2 = run_kvrun("selftest --plugin '" + bad("old_entry") + "'");
  CHECK(r2.code == 2);
  CHECK(contains(r2.err, "kvrun_plugin_v0"));
  CHECK(contains(r2.err, "rebuild it"));
  Run r3 = run_kvrun("selftest --plugin /nonexistent/kvrun_cache_x.so");
  CHECK(r3.code == 2);
  CHECK(contains(r3.err, "/nonexistent/kvrun_cache_x.so"));
}

TEST_CASE("kvrun plugins: broken modules on KVRUN_PLUGIN_PATH are reported, the good plugins listed") {
  Run r = run_kvrun("plugins", "KVRUN_PLUGIN_PATH='" KVRUN_TEST_PLUGIN_DIR "'");
  REQUIRE(r.code == 0);
  for (const char* name : {"cache.fp16", "cache.int8", "attention.naive", "attention.flash", "weights.bf16", "weights.gptq",
                           "cache.ring4"}) {
    INFO(name);
    CHECK(contains(r.out, name));
  }
  // One clear warning per refused module: the file and the reason.
  auto warned = [&](const std::string& file, const std::string& why) {
    std::istringstream in(r.err);
    for (std::string line; std::getline(in, line);)
      if (contains(line, "warning") && contains(line, file) && contains(line, why)) return true;
    return false;
  };
  CHECK(warned("testplugin_wrong_abi.so", "built for plugin ABI 999"));
  CHECK(warned("testplugin_old_entry.so", "exports 'kvrun_plugin_v0'"));
  CHECK(warned("testplugin_no_entry.so", "not a kvrun plugin"));
  CHECK(warned("testplugin_throwing_factory.so", "cannot open /etc/throwing-cache.lic"));
  CHECK(warned("testplugin_bad_info.so", "provides_layout"));
  CHECK(!contains(r.out, "cache.throws"));
  // The declared options are listed.
  CHECK(contains(r.out, "option rings (integer, default 4)"));
}

TEST_CASE("a pipeline runs with broken modules on KVRUN_PLUGIN_PATH") {
  KVRUN_SKIP_UNLESS(kvrun::test::have_fixture("tiny-qwen2"), "fixture models missing");
  Run r = run_kvrun("generate -c configs/qwen2-fp16-naive.toml --set backend.device=cpu --prompt-ids 1,2,3 -n 2 --json",
                    "KVRUN_PLUGIN_PATH='" KVRUN_TEST_PLUGIN_DIR "'");
  CHECK(r.code == 0);
  CHECK(json::parse(r.out)["results"][0]["output_ids"].size() == 2);
  CHECK(contains(r.err, "testplugin_throwing_factory.so"));
}

TEST_CASE("plugin options: [cache] options, [cache.options] and --set cache.options.K=V") {
  kvrun::PipelineConfig c = kvrun::parse_config(
      "[cache]\ntype = \"ring4\"\noptions = { rings = 8, mode = \"slow\" }\n[attention]\noptions = { depth = 1.5 }\n", "p.toml",
      {"cache.options.rings=16", "cache.options.extra=true"});
  REQUIRE(c.cache_options.size() == 3);
  CHECK(c.cache_options[0].key == "mode");
  CHECK(c.cache_options[0].value == "slow");
  CHECK(c.cache_options[0].type == "string");
  CHECK(c.cache_options[0].where == "p.toml:3:24: key 'cache.options.mode'");
  CHECK(c.cache_options[1].key == "rings");
  CHECK(c.cache_options[1].value == "16");
  CHECK(c.cache_options[1].type == "integer");
  CHECK(contains(c.cache_options[1].where, "--set 'cache.options.rings=16'"));
  CHECK(c.cache_options[2].type == "boolean");
  REQUIRE(c.attention_options.size() == 1);
  CHECK(c.attention_options[0].type == "float");
  CHECK(c.attention_options[0].value == "1.5");
  kvrun::PipelineConfig t = kvrun::parse_config("[cache.options]\nrings = 2\n", "t.toml", {"cache.options={}"});
  CHECK(t.cache_options.empty());
  kvrun::PipelineConfig u = kvrun::parse_config("[cache.options]\nrings = 2\n", "u.toml");
  REQUIRE(u.cache_options.size() == 1);
  CHECK(u.cache_options[0].where == "u.toml:2:1: key 'cache.options.rings'");
  try {
    kvrun::parse_config("[cache]\noptions = { rings = [1, 2] }\n", "v.toml");
    FAIL("an array option must be refused");
  } catch (const kvrun::Error& e) {
    CHECK(contains(e.what(), "v.toml:2"));
    CHECK(contains(e.what(), "cache.options.rings"));
  }
}

TEST_CASE("plugin options: checked against what the plugin declares, before anything is made") {
  kvrun::Registry reg;
  reg.load_path(kvrun::test::plugin_dirs());
  reg.load_path({KVRUN_TEST_PLUGIN_DIR});
  auto check = [&](const std::string& toml) {
    kvrun::PipelineConfig cfg = kvrun::parse_config("[model]\nsynthetic = \"qwen-7b\"\n[backend]\ndevice = \"cpu\"\n" + toml, "o.toml");
    return kvrun::check_pipeline(cfg, reg).verdict;
  };
  // ring4's layout pairs with no attention, so only the option reasons are looked at here.
  auto has = [](const kvrun::Verdict& v, const std::string& s) { return contains(v.message(), s); };
  kvrun::Verdict ok = check("[cache]\ntype = \"ring4\"\noptions = { rings = 8, mode = \"slow\" }\n");
  CHECK(!has(ok, "option"));
  kvrun::Verdict unknown = check("[cache]\ntype = \"ring4\"\noptions = { ringz = 8 }\n");
  CHECK(!unknown.ok);
  CHECK(has(unknown, "o.toml:7:13: key 'cache.options.ringz': cache.ring4 has no option 'ringz'"));
  CHECK(has(unknown, "it takes: rings (integer, default 4), mode (string, default \"fast\")"));
  kvrun::Verdict type = check("[cache]\ntype = \"ring4\"\noptions = { rings = \"many\" }\n");
  CHECK(has(type, "cache.ring4 option 'rings' is integer, got string 'many'"));
  kvrun::Verdict none = check("[cache]\ntype = \"fp16\"\noptions = { group_size = 32 }\n");
  CHECK(!none.ok);
  CHECK(has(none, "cache.fp16 has no option 'group_size'; it takes none"));
  CHECK(check("[cache]\ntype = \"fp16\"\n").ok);
}
