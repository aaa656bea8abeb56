// The kvrun command line as scripts use it (SPECS.md §7): JSON on stdout, messages on stderr,
// exit codes by category, and the catalogue of bad inputs that must fail clearly.
#include <doctest/doctest.h>

#include <array>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>
#include <sys/wait.h>
#include <unistd.h>

#include "fixtures.hpp"
#include "run_kvrun.hpp"

namespace fs = std::filesystem;
namespace test = kvrun::test;
using nlohmann::json;

namespace {

using test::Run;
using test::contains;
using test::run_kvrun;

// A copy of a fixture model as symlinks, so single files can be replaced or damaged.
fs::path model_copy(const std::string& model, const std::string& tag) {
  fs::path dir = fs::temp_directory_path() / ("kvrun_cli_model_" + tag + "_" + std::to_string(getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir);
  kvrun::test::link_fixture_files(model, dir);
  return dir;
}

std::string cfg_for(const fs::path& model_dir, const std::string& extra = "") {
  fs::path p = model_dir.string() + ".toml";
  std::ofstream(p) << "[model]\npath = \"" << model_dir.string() << "\"\n[backend]\ndevice = \"cpu\"\n" << extra;
  return p.string();
}

}  // namespace

TEST_CASE("plugins --json lists the six plugins with kind, version and capabilities") {
  Run r = run_kvrun("plugins --json");
  REQUIRE(r.code == 0);
  json j = json::parse(r.out);
  std::set<std::string> names;
  for (auto& p : j["plugins"]) {
    names.insert(p["name"].get<std::string>());
    CHECK(p.contains("kind"));
    CHECK(p.contains("version"));
    CHECK(p.contains("capabilities"));
    CHECK(p.contains("backends"));
  }
  CHECK(names == std::set<std::string>{"cache.fp16", "cache.int8", "attention.naive", "attention.flash", "weights.bf16",
                                       "weights.gptq"});
}

TEST_CASE("matrix marks flash × int8 invalid with the reason") {
  Run r = run_kvrun("matrix");
  REQUIRE(r.code == 0);
  std::istringstream in(r.out);
  std::string line;
  bool seen = false;
  while (std::getline(in, line))
    if (line.rfind("cpu", 0) == 0 && contains(line, " int8 ") && contains(line, "flash")) {
      seen = true;
      CHECK(contains(line, "NO"));
      CHECK(contains(line, "naive"));
    }
  CHECK(seen);
  json j = json::parse(run_kvrun("matrix --json").out);
  CHECK(j["matrix"].size() >= 12);
}

TEST_CASE("check: every valid example config passes; flash+int8 fails naming both") {
  KVRUN_SKIP_UNLESS(kvrun::test::have_fixture("tiny-qwen2"), "fixture models missing");
  for (const auto& e : fs::directory_iterator(kvrun::test::source_root() + "/configs")) {
    if (!e.is_regular_file() || e.path().extension() != ".toml") continue;  // configs/bench: GPU shapes
    const std::string name = e.path().filename().string();
    Run r = run_kvrun("check -c configs/" + name);
    INFO(name << ": " << r.err);
    if (name.rfind("invalid-", 0) == 0) {
      CHECK(r.code == 2);
    } else {
      CHECK(r.code == 0);
    }
  }
  Run bad = run_kvrun("check -c configs/invalid-flash-int8.toml");
  CHECK(bad.code == 2);
  CHECK(contains(bad.err, "flash"));
  CHECK(contains(bad.err, "int8"));
  // --set applies before the check
  Run ov = run_kvrun("check -c configs/qwen2-fp16-flash.toml --set cache.type=int8 --json");
  CHECK(ov.code == 2);
  CHECK(json::parse(ov.out)["valid"] == false);
  // a CUDA pipeline can be checked without a GPU: the verdict comes from declarations
  Run cu = run_kvrun("check -c configs/qwen2-fp16-naive.toml --set backend.device=cuda --json");
  CHECK(json::parse(cu.out)["backend"] == "cuda");
}

TEST_CASE("selftest passes and reports every device") {
  Run r = run_kvrun("selftest --json");
  REQUIRE(r.code == 0);
  json j = json::parse(r.out);
  CHECK(j["ok"] == true);
  CHECK(j["plugins"].get<int>() >= 6);
  CHECK(j["devices"][0]["name"] == "cpu");
}

TEST_CASE("config errors exit 2 with file, line and key") {
  fs::path p = fs::temp_directory_path() / "kvrun_cli_bad.toml";
  std::ofstream(p) << "[model]\npath = \"x\"\n[cache]\ntypo = 3\n";
  Run r = run_kvrun("check -c " + p.string());
  CHECK(r.code == 2);
  CHECK(contains(r.err, "kvrun_cli_bad.toml:4"));
  CHECK(contains(r.err, "cache.typo"));
  Run r2 = run_kvrun("check -c /nonexistent.toml");
  CHECK(r2.code == 2);
  Run r3 = run_kvrun("frobnicate");
  CHECK(r3.code == 2);
  Run r4 = run_kvrun("generate -c configs/qwen2-fp16-naive.toml");
  CHECK(r4.code == 2);
  CHECK(contains(r4.err, "--prompt"));
}

TEST_CASE("generate --json has the documented shape and is deterministic when greedy") {
  KVRUN_SKIP_UNLESS(kvrun::test::have_fixture("tiny-qwen2"), "fixture models missing");
  Run r = run_kvrun("generate -c configs/qwen2-fp16-naive.toml --set backend.device=cpu --prompt 'def main():' "
                "--max-new-tokens 12 --json");
  REQUIRE(r.code == 0);
  json j = json::parse(r.out);
  REQUIRE(j["results"].size() == 1);
  auto& res = j["results"][0];
  CHECK(res["prompt_ids"].size() > 0);
  CHECK(res["output_ids"].size() <= 12);
  CHECK(res["text"].is_string());
  CHECK((res["finish_reason"] == "length" || res["finish_reason"] == "eos"));
  CHECK(j["stats"]["memory"]["weights_bytes"].get<size_t>() > 0);
  CHECK(j["stats"]["memory"]["kv_cache_bytes"].get<size_t>() > 0);
  Run again = run_kvrun("generate -c configs/qwen2-fp16-naive.toml --set backend.device=cpu --prompt 'def main():' "
                    "--max-new-tokens 12 --json");
  CHECK(json::parse(again.out)["results"][0]["output_ids"] == res["output_ids"]);
  // several prompts as one batch
  fs::path pf = fs::temp_directory_path() / "kvrun_cli_prompts.jsonl";
  std::ofstream(pf) << "\"import os\\n\"\n\"class A:\\n    def\"\n";
  Run b = run_kvrun("generate -c configs/qwen2-int8-naive.toml --set backend.device=cpu --prompts-file " + pf.string() +
                " --max-new-tokens 5 --json");
  REQUIRE(b.code == 0);
  CHECK(json::parse(b.out)["results"].size() == 2);
}

TEST_CASE("bad checkpoints and inputs fail clearly with the right exit code") {
  KVRUN_SKIP_UNLESS(kvrun::test::have_fixture("tiny-qwen2"), "fixture models missing");
  const std::string gen = " --prompt-ids 1,2,3 --max-new-tokens 2";
  SUBCASE("truncated shard") {
    fs::path d = model_copy("tiny-qwen2", "trunc");
    fs::remove(d / "model-00002-of-00004.safetensors");
    fs::copy_file(kvrun::test::fixture("tiny-qwen2") + "/model-00002-of-00004.safetensors", d / "model-00002-of-00004.safetensors");
    fs::resize_file(d / "model-00002-of-00004.safetensors", 1000000);
    Run r = run_kvrun("generate -c " + cfg_for(d) + gen);
    CHECK(r.code == 3);
    CHECK(contains(r.err, "model-00002-of-00004.safetensors"));
  }
  SUBCASE("missing tokenizer") {
    fs::path d = model_copy("tiny-qwen2", "notok");
    fs::remove(d / "tokenizer.json");
    Run r = run_kvrun("generate -c " + cfg_for(d) + " --prompt hi --max-new-tokens 2");
    CHECK(r.code == 3);
    CHECK(contains(r.err, "tokenizer.json"));
    CHECK(contains(r.err, "qwen.tiktoken"));
  }
  SUBCASE(".bin checkpoint") {
    fs::path d = fs::temp_directory_path() / ("kvrun_cli_bin_" + std::to_string(getpid()));
    fs::remove_all(d);
    fs::create_directories(d);
    fs::copy_file(kvrun::test::fixture("tiny-qwen2") + "/config.json", d / "config.json");
    fs::copy_file(kvrun::test::fixture("tiny-qwen2") + "/tokenizer.json", d / "tokenizer.json");
    std::ofstream(d / "pytorch_model.bin") << "not really a pickle";
    Run r = run_kvrun("generate -c " + cfg_for(d) + gen);
    CHECK(r.code == 3);
    CHECK(contains(r.err, ".bin"));
    CHECK(contains(r.err, "safetensors"));
  }
  SUBCASE("unsupported rope_scaling") {
    fs::path d = model_copy("tiny-qwen2", "rope");
    std::ifstream in(kvrun::test::fixture("tiny-qwen2") + "/config.json");
    json c = json::parse(in);
    c["rope_scaling"] = {{"type", "yarn"}, {"factor", 4.0}};
    fs::remove(d / "config.json");
    std::ofstream(d / "config.json") << c.dump();
    Run r = run_kvrun("check -c " + cfg_for(d));
    CHECK(r.code == 3);
    CHECK(contains(r.err, "rope_scaling"));
  }
  SUBCASE("missing tensor") {
    fs::path d = model_copy("tiny-qwen2", "notensor");
    std::ifstream in(kvrun::test::fixture("tiny-qwen2") + "/model.safetensors.index.json");
    json idx = json::parse(in);
    idx["weight_map"].erase("model.layers.3.mlp.up_proj.weight");
    fs::remove(d / "model.safetensors.index.json");
    std::ofstream(d / "model.safetensors.index.json") << idx.dump();
    Run r = run_kvrun("generate -c " + cfg_for(d) + gen);
    CHECK(r.code == 3);
    CHECK(contains(r.err, "model.layers.3.mlp.up_proj"));
  }
  SUBCASE("prompt longer than the cache") {
    std::string ids = "1";
    for (int i = 0; i < 100; ++i) ids += ",2";
    Run r = run_kvrun("generate -c configs/qwen2-fp16-naive.toml --set backend.device=cpu --set cache.max_tokens=32 --prompt-ids " +
                  ids + " --max-new-tokens 2");
    CHECK(r.code == 2);
    CHECK(contains(r.err, "cache.max_tokens"));
  }
  SUBCASE("token id outside the vocabulary") {
    Run r = run_kvrun("score -c configs/qwen2-fp16-naive.toml --set backend.device=cpu --prompt-ids 1,999999");
    CHECK(r.code == 2);
    CHECK(contains(r.err, "999999"));
  }
  SUBCASE("CUDA asked for where there is none or no CUDA build") {
    Run r = run_kvrun("generate -c configs/qwen2-fp16-naive.toml --set backend.device=cuda:7" + gen);
    CHECK((r.code == 4 || r.code == 2));
    CHECK(contains(r.err, "cuda"));
  }
}
