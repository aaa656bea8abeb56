// Replays every input of fuzz/regressions/<target>/ (inputs that once crashed a fuzz target, kept
// after the fix) and fuzz/corpus/<target>/ (the seeds) through the fuzz targets' own entry points.
// A target aborts on a broken promise, and only kvrun::Error may leave a parser, so a regression
// shows up here as a crash or a failed check, in every build (the sanitizer build included).
#include <doctest/doctest.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "fixtures.hpp"
#include "targets.hpp"

namespace fs = std::filesystem;

namespace {

std::vector<fs::path> inputs(const std::string& kind, const std::string& target) {
  std::vector<fs::path> files;
  const fs::path dir = fs::path(kvrun::test::source_root()) / "fuzz" / kind / target;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir, ec))
    if (e.is_regular_file() && e.path().filename() != "README.md") files.push_back(e.path());
  std::sort(files.begin(), files.end());
  return files;
}

size_t replay(const kvrun::fuzz::Target& t, const std::string& kind) {
  size_t n = 0;
  for (const fs::path& p : inputs(kind, t.name)) {
    std::ifstream in(p, std::ios::binary);
    REQUIRE_MESSAGE(in.good(), "cannot read " << p.string());
    const std::vector<uint8_t> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    INFO("input " << p.string());
    CHECK_NOTHROW(t.run(bytes.data(), bytes.size()));
    ++n;
  }
  return n;
}

}  // namespace

TEST_CASE("every fuzz target replays its seeds and regression inputs") {
  for (const kvrun::fuzz::Target& t : kvrun::fuzz::targets()) {
    SUBCASE(t.name) {
      if (std::string(t.name) == "tokenizer_encode")
        KVRUN_SKIP_UNLESS(kvrun::test::have_fixture("tiny-qwen2") && kvrun::test::have_fixture("tiny-qwen1"),
                          "fixture models not found");
      const size_t seeds = replay(t, "corpus");
      const size_t regressions = replay(t, "regressions");
      MESSAGE(std::string(t.name) << ": " << seeds << " seeds, " << regressions << " regression inputs");
      CHECK_MESSAGE(seeds > 0, "no seeds in fuzz/corpus/" << t.name << " (run scripts/fuzz-seeds.sh)");
    }
  }
}

TEST_CASE("the empty input is handled by every target") {
  for (const kvrun::fuzz::Target& t : kvrun::fuzz::targets()) {
    if (std::string(t.name) == "tokenizer_encode" && !kvrun::test::have_fixture("tiny-qwen2")) continue;
    const uint8_t none = 0;
    CHECK_NOTHROW(t.run(&none, 0));
  }
}

// Hostile inputs too large to keep as files, built here and fed to the same entry points. Each
// once crashed or hung kvrun (docs/HARDENING.md).
namespace {

void run_target(const char* name, const std::string& input) {
  for (const kvrun::fuzz::Target& t : kvrun::fuzz::targets())
    if (std::string(t.name) == name) {
      t.run(reinterpret_cast<const uint8_t*>(input.data()), input.size());
      return;
    }
  FAIL("no fuzz target " << name);
}

std::string nested(size_t depth) { return std::string(depth, '[') + std::string(depth, ']'); }

std::string safetensors_image(const std::string& header) {
  std::string out(8, '\0');
  for (int i = 0; i < 8; ++i) out[size_t(i)] = char((uint64_t(header.size()) >> (8 * i)) & 0xFF);
  return out + header;
}

}  // namespace

TEST_CASE("JSON nested a million levels deep is refused without overflowing the stack") {
  // Error messages quote the offending value; nlohmann's dump() recursed once per level.
  const std::string deep = nested(1000000);
  CHECK_NOTHROW(run_target("safetensors",
      safetensors_image(R"({"a":{"dtype":"F32","shape":)" + deep + R"(,"data_offsets":[0,0]}})")));
  CHECK_NOTHROW(run_target("model_config", R"({"model_type":"qwen2","hidden_size":)" + deep + "}"));
  CHECK_NOTHROW(run_target("safetensors_index", R"({"weight_map":{"a":)" + deep + "}}"));
  // tokenizer.json Sequences were walked recursively, one call per level.
  std::string seq;
  for (int i = 0; i < 200000; ++i) seq += R"({"type":"Sequence","normalizers":[)";
  seq += R"({"type":"NFC"})";
  for (int i = 0; i < 200000; ++i) seq += "]}";
  CHECK_NOTHROW(run_target("tokenizer_json", R"({"normalizer":)" + seq + R"(,"model":{"type":"BPE"}})"));
}

TEST_CASE("a qwen.tiktoken with one 4 MB token loads in linear time") {
  // The pair table looked up both halves of every split of every token by their bytes: O(len^2)
  // per token, about an hour for this file. Now a few hundred milliseconds, sanitizers included.
  std::string file;
  const char* b64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  for (int b = 0; b < 256; ++b) {
    const unsigned v = unsigned(b) << 16;  // one byte: two base64 digits then "=="
    file += std::string{b64[(v >> 18) & 63], b64[(v >> 12) & 63], '=', '='} + " " + std::to_string(b) + "\n";
  }
  file += std::string(4 << 20, 'Y') + " 256\n";  // "YYYY" = the bytes 61 86 18, repeated (3 MB)
  const auto t0 = std::chrono::steady_clock::now();
  run_target("qwen_tiktoken", file);
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  MESSAGE("loaded in " << s << " s");
  CHECK(s < 20.0);
}
