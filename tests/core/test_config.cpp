// The TOML schema: unknown keys and sections with line numbers, type errors, --set overrides,
// defaults, path resolution, and docs/config.md documenting every key.
#include <doctest/doctest.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "fixtures.hpp"
#include "kvrun/config.hpp"
#include "kvrun/error.hpp"

using namespace kvrun;

namespace {
// Runs f and returns the Error it throws (fails the test if none).
template <class F>
Error expect_error(F&& f) {
  try {
    f();
  } catch (const Error& e) {
    return e;
  }
  FAIL("expected a kvrun::Error");
  return Error(ErrorKind::ok, "");
}
}  // namespace

TEST_CASE("defaults") {
  PipelineConfig c = parse_config("", "t.toml");
  CHECK(c.device == "auto");
  CHECK(c.cache_type == "fp16");
  CHECK(c.block_tokens == 16);
  CHECK(c.attention_kind == "naive");
  CHECK(c.weights_format == "auto");
  CHECK(!c.temperature.has_value());
}

TEST_CASE("a full pipeline file") {
  PipelineConfig c = parse_config(R"(
[model]
path = "/models/qwen"
[backend]
device = "cuda:1"
memory_limit = "80GB"
[weights]
format = "gptq"
[cache]
type = "int8"
block_tokens = 32
max_tokens = 4096
[attention]
kind = "naive"
[generation]
max_new_tokens = 64
temperature = 0.7
top_k = 20
top_p = 0.9
seed = 42
stop = ["\n\n", "###"]
[plugins]
paths = ["/opt/kvrun/plugins"]
)",
                                  "full.toml");
  CHECK(c.model_path == "/models/qwen");
  CHECK(c.device == "cuda:1");
  CHECK(c.memory_limit == size_t(80000000000ull));
  CHECK(c.weights_format == "gptq");
  CHECK(c.cache_type == "int8");
  CHECK(c.block_tokens == 32);
  CHECK(c.max_tokens == 4096);
  CHECK(*c.max_new_tokens == 64);
  CHECK(*c.temperature == doctest::Approx(0.7));
  CHECK(*c.top_k == 20);
  CHECK(*c.seed == 42);
  REQUIRE(c.stop.size() == 2);
  CHECK(c.stop[1] == "###");
  CHECK(c.plugin_paths == std::vector<std::string>{"/opt/kvrun/plugins"});
}

TEST_CASE("unknown key names file, line and key") {
  Error e = expect_error([] { parse_config("[cache]\ntype = \"int8\"\nblok_tokens = 8\n", "pipe.toml"); });
  CHECK(e.kind() == ErrorKind::usage);
  std::string m = e.what();
  CHECK(m.find("pipe.toml:3") != std::string::npos);
  CHECK(m.find("cache.blok_tokens") != std::string::npos);
  CHECK(m.find("block_tokens") != std::string::npos);  // lists the known keys
}

TEST_CASE("unknown section") {
  Error e = expect_error([] { parse_config("[cahce]\ntype = \"int8\"\n", "p.toml"); });
  std::string m = e.what();
  CHECK(m.find("p.toml:1") != std::string::npos);
  CHECK(m.find("unknown section [cahce]") != std::string::npos);
}

TEST_CASE("type errors name the key and the expected type") {
  Error e = expect_error([] { parse_config("[cache]\nblock_tokens = \"sixteen\"\n", "p.toml"); });
  std::string m = e.what();
  CHECK(m.find("p.toml:2") != std::string::npos);
  CHECK(m.find("cache.block_tokens") != std::string::npos);
  CHECK(m.find("expected integer") != std::string::npos);
  Error e2 = expect_error([] { parse_config("[generation]\nstop = \"x\"\n", "p.toml"); });
  CHECK(std::string(e2.what()).find("array of strings") != std::string::npos);
  Error e3 = expect_error([] { parse_config("[backend]\ndevice = \"tpu\"\n", "p.toml"); });
  CHECK(std::string(e3.what()).find("unknown device 'tpu'") != std::string::npos);
  Error e4 = expect_error([] { parse_config("[cache]\nblock_tokens = 0\n", "p.toml"); });
  CHECK(std::string(e4.what()).find(">= 1") != std::string::npos);
  Error e5 = expect_error([] { parse_config("[backend]\nmemory_limit = \"80 parsecs\"\n", "p.toml"); });
  CHECK(std::string(e5.what()).find("unknown size unit") != std::string::npos);
}

TEST_CASE("malformed TOML has a line number") {
  Error e = expect_error([] { parse_config("[cache\ntype = 1\n", "bad.toml"); });
  CHECK(e.kind() == ErrorKind::usage);
  std::string m = e.what();
  CHECK(m.find("bad.toml:1") != std::string::npos);
  CHECK(m.find("malformed TOML") != std::string::npos);
}

TEST_CASE("--set overrides win over the file and are type-checked") {
  PipelineConfig c = parse_config("[cache]\ntype = \"fp16\"\n", "p.toml",
                                  {"cache.type=int8", "cache.max_tokens=1000", "generation.temperature=0",
                                   "backend.device=cpu", "generation.stop=[\"a\",\"b\"]"});
  CHECK(c.cache_type == "int8");
  CHECK(c.max_tokens == 1000);
  CHECK(*c.temperature == 0.0);
  CHECK(c.device == "cpu");
  CHECK(c.stop.size() == 2);
  Error e = expect_error([] { parse_config("", "p.toml", {"cache.max_tokens=lots"}); });
  CHECK(std::string(e.what()).find("--set 'cache.max_tokens=lots'") != std::string::npos);
  Error e2 = expect_error([] { parse_config("", "p.toml", {"cache.size=3"}); });
  CHECK(std::string(e2.what()).find("unknown key 'cache.size'") != std::string::npos);
  Error e3 = expect_error([] { parse_config("", "p.toml", {"nonsense"}); });
  CHECK(std::string(e3.what()).find("section.key=value") != std::string::npos);
}

TEST_CASE("relative paths resolve against the file's folder; missing file is an error") {
  auto dir = std::filesystem::temp_directory_path() / "kvrun_cfg_test";
  std::filesystem::create_directories(dir / "sub");
  {
    std::ofstream(dir / "sub" / "p.toml") << "[model]\npath = \"../models/m\"\n";
  }
  PipelineConfig c = load_config((dir / "sub" / "p.toml").string());
  CHECK(c.model_path == (dir / "models" / "m").lexically_normal().string());
  Error e = expect_error([&] { load_config((dir / "nope.toml").string()); });
  CHECK(std::string(e.what()).find("nope.toml") != std::string::npos);
}

TEST_CASE("every schema key is documented in docs/config.md") {
  std::ifstream in(kvrun::test::source_root() + "/docs/config.md");
  REQUIRE(in.good());
  std::stringstream ss;
  ss << in.rdbuf();
  const std::string doc = ss.str();
  for (const ConfigKey& k : config_schema()) {
    std::string needle = "`" + std::string(k.key) + "`";
    std::string section = "[" + std::string(k.section) + "]";
    INFO(k.section << "." << k.key);
    CHECK(doc.find(section) != std::string::npos);
    CHECK(doc.find(needle) != std::string::npos);
  }
}
