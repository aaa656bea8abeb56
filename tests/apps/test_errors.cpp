// The error catalogue (docs/errors.md), one test per row: each bad input is given to the built
// kvrun as a user would, and the test checks the exit code and the parts of the message that say
// what was wrong, where (file, key, tensor) and what to do. Damaged models are built in temporary
// folders from the fixtures (symlinks for the untouched files); the fixtures are never modified.
#include <doctest/doctest.h>

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "fixtures.hpp"
#include "poisoned_model.hpp"
#include "run_kvrun.hpp"

namespace fs = std::filesystem;
using nlohmann::json;
using kvrun::test::contains;
using kvrun::test::Run;
using kvrun::test::run_kvrun;

namespace {

const std::string kQ2 = "tiny-qwen2";
const std::string kQ1 = "tiny-qwen1";
const std::string kInt4 = "tiny-qwen2-gptq-int4";

// A scratch folder for one test case, removed afterwards.
class Scratch {
 public:
  Scratch() {
    static int n = 0;
    dir_ = fs::temp_directory_path() / ("kvrun_errors_" + std::to_string(::getpid()) + "_" + std::to_string(n++));
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  ~Scratch() {
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }
  Scratch(const Scratch&) = delete;
  Scratch& operator=(const Scratch&) = delete;
  fs::path path(const std::string& name) const { return dir_ / name; }

  // A model folder "model" holding symlinks to every file of `fixture` except those in `own`
  // (which the test writes itself); returns its path.
  fs::path model(const std::string& fixture, const std::set<std::string>& own = {}) const {
    fs::path m = dir_ / "model";
    fs::create_directories(m);
    kvrun::test::link_fixture_files(fixture, m, own);
    return m;
  }

  // A pipeline file for `model_dir` on the CPU, with extra TOML lines; returns its path.
  std::string config(const fs::path& model_dir, const std::string& extra = "") const {
    fs::path p = dir_ / "pipeline.toml";
    std::ofstream(p) << "[model]\npath = \"" << model_dir.string() << "\"\n[backend]\ndevice = \"cpu\"\n" << extra;
    return p.string();
  }

 private:
  fs::path dir_;
};

std::string read_file(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  REQUIRE_MESSAGE(in.good(), "cannot read " << p);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

void write_file(const fs::path& p, const std::string& bytes) {
  std::ofstream out(p, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), std::streamsize(bytes.size()));
  REQUIRE_MESSAGE(out.good(), "cannot write " << p);
}

std::string fixture_file(const std::string& model, const std::string& name) {
  return read_file(kvrun::test::fixture(model) + "/" + name);
}

// Writes `dst` as a copy of safetensors bytes `src` whose JSON header went through `edit`; the data
// section is unchanged.
void edit_safetensors(const std::string& src, const fs::path& dst, const std::function<void(json&)>& edit) {
  const uint64_t n = kvrun::test::safetensors_header_length(src);
  json h = json::parse(src.substr(8, n));
  edit(h);
  std::string text = h.dump();
  while (text.size() % 8) text.push_back(' ');
  std::string out(8, '\0');
  for (int i = 0; i < 8; ++i) out[size_t(i)] = char((uint64_t(text.size()) >> (8 * i)) & 0xff);
  write_file(dst, out + text + src.substr(8 + n));
}

// Writes `dst` as fixture JSON file `name` of `model` after `edit`.
void edit_json(const std::string& model, const std::string& name, const fs::path& dst,
               const std::function<void(json&)>& edit) {
  json j = json::parse(fixture_file(model, name));
  edit(j);
  write_file(dst, j.dump(2));
}

#define CHECK_ERR(run, part) \
  CHECK_MESSAGE(contains((run).err, (part)), "stderr lacks '" << (part) << "':\n" << (run).err)

const std::string kGen = " --prompt-ids 1,2,3 --max-new-tokens 2";

// kvrun started without a shell (so the test knows its pid), from the repository root, stdout and
// stderr to files, stdin from `stdin_fd` (else /dev/null), SIGINT at its default disposition.
pid_t spawn_kvrun(const std::vector<std::string>& args, const fs::path& out, const fs::path& err, int stdin_fd = -1) {
  pid_t pid = ::fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    // A test runner may start us with SIGINT ignored or blocked; kvrun keeps an ignored SIGINT
    // ignored, as programs should, so give it the default a terminal would.
    ::signal(SIGINT, SIG_DFL);
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    ::sigprocmask(SIG_UNBLOCK, &set, nullptr);
    int in = stdin_fd >= 0 ? stdin_fd : ::open("/dev/null", O_RDONLY);
    int o = ::open(out.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    int e = ::open(err.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (in < 0 || o < 0 || e < 0 || ::dup2(in, 0) < 0 || ::dup2(o, 1) < 0 || ::dup2(e, 2) < 0) ::_exit(126);
    if (::chdir(kvrun::test::source_root().c_str()) != 0) ::_exit(126);
    std::vector<char*> argv;
    static char exe[] = KVRUN_EXE;
    argv.push_back(exe);
    for (const std::string& a : args) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    ::execv(exe, argv.data());
    ::_exit(127);
  }
  return pid;
}

// Waits up to `seconds` for the child; its wait status, or -1 after killing it on a timeout.
int wait_child(pid_t pid, int seconds) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(seconds);
  int status = 0;
  while (std::chrono::steady_clock::now() < deadline) {
    pid_t r = ::waitpid(pid, &status, WNOHANG);
    if (r == pid) return status;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  ::kill(pid, SIGKILL);
  ::waitpid(pid, &status, 0);
  return -1;
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Pipeline files (exit code 2)

TEST_CASE("errors: malformed TOML names the file, line and column") {
  Scratch s;
  write_file(s.path("bad.toml"), "[model\npath = \"x\"\n");
  Run r = run_kvrun("check -c " + s.path("bad.toml").string());
  CHECK(r.code == 2);
  CHECK_ERR(r, "kvrun: usage error: " + s.path("bad.toml").string() + ":1:");
  CHECK_ERR(r, "malformed TOML");
}

TEST_CASE("errors: an unknown TOML key names the key and lists the known ones") {
  Scratch s;
  write_file(s.path("bad.toml"), "[model]\npath = \"x\"\n[cache]\ntpye = \"int8\"\n");
  Run r = run_kvrun("check -c " + s.path("bad.toml").string());
  CHECK(r.code == 2);
  CHECK_ERR(r, "bad.toml:4:1: key 'cache.tpye': unknown key");
  CHECK_ERR(r, "[cache] has: type,");
  CHECK_ERR(r, "docs/config.md");
  Run ov = run_kvrun("check -c configs/qwen2-fp16-naive.toml --set cahce.type=int8");
  CHECK(ov.code == 2);
  CHECK_ERR(ov, "--set 'cahce.type=int8': unknown key 'cahce.type'");
}

TEST_CASE("errors: a mistyped TOML value names the key and both types") {
  Scratch s;
  write_file(s.path("bad.toml"), "[model]\npath = \"x\"\n[cache]\nmax_tokens = \"lots\"\n");
  Run r = run_kvrun("check -c " + s.path("bad.toml").string());
  CHECK(r.code == 2);
  CHECK_ERR(r, "bad.toml:4:1: key 'cache.max_tokens': expected integer, got a string");
  Run ov = run_kvrun("check -c configs/qwen2-fp16-naive.toml --set cache.max_tokens=lots");
  CHECK(ov.code == 2);
  CHECK_ERR(ov, "--set 'cache.max_tokens=lots'");
  CHECK_ERR(ov, "is not a valid integer");
}

// ---------------------------------------------------------------------------------------------
// Model directories and checkpoints (exit code 3)

TEST_CASE("errors: a missing model directory says which path and what to set") {
  Scratch s;
  const std::string cfg = s.config(s.path("no-such-model"));
  for (const std::string& cmd : {"check -c " + cfg, "generate -c " + cfg + kGen}) {
    Run r = run_kvrun(cmd);
    CHECK(r.code == 3);
    CHECK_ERR(r, "[model] path '" + s.path("no-such-model").string() + "' does not exist");
    CHECK_ERR(r, "set [model] path to a Hugging Face model directory");
  }
}

TEST_CASE("errors: config.json without a required field names the file and the key") {
  KVRUN_SKIP_UNLESS(kvrun::test::have_fixture(kQ2), "fixture models missing");
  Scratch s;
  fs::path m = s.model(kQ2, {"config.json"});
  edit_json(kQ2, "config.json", m / "config.json", [](json& c) { c.erase("num_hidden_layers"); });
  Run r = run_kvrun("generate -c " + s.config(m) + kGen);
  CHECK(r.code == 3);
  CHECK_ERR(r, (m / "config.json").string());
  CHECK_ERR(r, "required key 'num_hidden_layers'");
  CHECK_ERR(r, "is missing");
  CHECK_ERR(r, "take config.json from the model's repository");
}

TEST_CASE("errors: a shard named by the index is missing") {
  KVRUN_SKIP_UNLESS(kvrun::test::have_fixture(kQ2), "fixture models missing");
  Scratch s;
  fs::path m = s.model(kQ2, {"model-00003-of-00004.safetensors"});
  Run r = run_kvrun("generate -c " + s.config(m) + kGen);
  CHECK(r.code == 3);
  CHECK_ERR(r, "model.safetensors.index.json maps tensors");
  CHECK_ERR(r, (m / "model-00003-of-00004.safetensors").string() + " does not exist");
  CHECK_ERR(r, "download the missing shard");
}

TEST_CASE("errors: a truncated shard names the shard and the tensor outside the data") {
  KVRUN_SKIP_UNLESS(kvrun::test::have_fixture(kQ2), "fixture models missing");
  Scratch s;
  const std::string shard = "model-00002-of-00004.safetensors";
  fs::path m = s.model(kQ2, {shard});
  const std::string bytes = fixture_file(kQ2, shard);
  write_file(m / shard, bytes.substr(0, bytes.size() / 2));
  Run r = run_kvrun("generate -c " + s.config(m) + kGen);
  CHECK(r.code == 3);
  CHECK_ERR(r, (m / shard).string() + ": tensor '");
  CHECK_ERR(r, "outside the data section");
  CHECK_ERR(r, "re-download");
}

TEST_CASE("errors: a safetensors header length beyond the end of the file") {
  KVRUN_SKIP_UNLESS(kvrun::test::have_fixture(kQ1), "fixture models missing");
  Scratch s;
  fs::path m = s.model(kQ1, {"model.safetensors"});
  std::string bytes = fixture_file(kQ1, "model.safetensors");
  const uint64_t n = bytes.size();  // header length = the whole file: goes past its end
  for (int i = 0; i < 8; ++i) bytes[size_t(i)] = char((n >> (8 * i)) & 0xff);
  write_file(m / "model.safetensors", bytes);
  Run r = run_kvrun("generate -c " + s.config(m) + kGen);
  CHECK(r.code == 3);
  CHECK_ERR(r, (m / "model.safetensors").string() + ": header length " + std::to_string(n) + " bytes");
  CHECK_ERR(r, "beyond the end of the file");
  CHECK_ERR(r, "re-download");
}

TEST_CASE("errors: overlapping and out-of-range data_offsets name the tensors") {
  KVRUN_SKIP_UNLESS(kvrun::test::have_fixture(kQ1), "fixture models missing");
  Scratch s;
  fs::path m = s.model(kQ1, {"model.safetensors"});
  const std::string src = fixture_file(kQ1, "model.safetensors");
  const std::string cfg = s.config(m);
  SUBCASE("overlapping") {
    edit_safetensors(src, m / "model.safetensors", [](json& h) {
      h["transformer.h.1.ln_2.weight"]["data_offsets"] = h["transformer.h.1.ln_1.weight"]["data_offsets"];
    });
    Run r = run_kvrun("generate -c " + cfg + kGen);
    CHECK(r.code == 3);
    CHECK_ERR(r, (m / "model.safetensors").string());
    CHECK_ERR(r, "'transformer.h.1.ln_1.weight'");
    CHECK_ERR(r, "'transformer.h.1.ln_2.weight'");
    CHECK_ERR(r, "overlapping data_offsets");
  }
  SUBCASE("out of range") {
    edit_safetensors(src, m / "model.safetensors", [](json& h) {
      auto& o = h["transformer.ln_f.weight"]["data_offsets"];
      o = {o[0].get<uint64_t>() + 100000000, o[1].get<uint64_t>() + 100000000};
    });
    Run r = run_kvrun("generate -c " + cfg + kGen);
    CHECK(r.code == 3);
    CHECK_ERR(r, "tensor 'transformer.ln_f.weight'");
    CHECK_ERR(r, "outside the data section");
  }
}

TEST_CASE("errors: a tensor whose dtype or shape does not match the model") {
  KVRUN_SKIP_UNLESS(kvrun::test::have_fixture(kQ1), "fixture models missing");
  Scratch s;
  fs::path m = s.model(kQ1, {"model.safetensors"});
  const std::string src = fixture_file(kQ1, "model.safetensors");
  const std::string cfg = s.config(m);
  SUBCASE("shape") {  // same bytes, other shape
    edit_safetensors(src, m / "model.safetensors",
                     [](json& h) { h["transformer.h.1.attn.c_proj.weight"]["shape"] = {128, 512}; });
    Run r = run_kvrun("generate -c " + cfg + kGen);
    CHECK(r.code == 3);
    CHECK_ERR(r, "tensor 'transformer.h.1.attn.c_proj.weight' in " + (m / "model.safetensors").string());
    CHECK_ERR(r, "has shape [128, 512], expected [256, 256]");
    CHECK_ERR(r, "config.json");
  }
  SUBCASE("dtype kvrun reads, but not for this tensor") {
    edit_safetensors(src, m / "model.safetensors", [](json& h) {
      h["transformer.h.0.ln_1.weight"]["dtype"] = "I32";  // 512 bytes = 128 int32
      h["transformer.h.0.ln_1.weight"]["shape"] = {128};
    });
    Run r = run_kvrun("generate -c " + cfg + kGen);
    CHECK(r.code == 3);
    CHECK_ERR(r, "tensor 'transformer.h.0.ln_1.weight'");
    CHECK_ERR(r, "has dtype i32; expected bf16, f16 or f32");
  }
  SUBCASE("dtype kvrun does not read") {
    edit_safetensors(src, m / "model.safetensors", [](json& h) { h["transformer.ln_f.weight"]["dtype"] = "I16"; });
    Run r = run_kvrun("generate -c " + cfg + kGen);
    CHECK(r.code == 3);
    CHECK_ERR(r, "tensor 'transformer.ln_f.weight' has dtype I16, which kvrun cannot load");
    CHECK_ERR(r, "convert");
  }
}

TEST_CASE("errors: GPTQ tensors with inconsistent shapes") {
  KVRUN_SKIP_UNLESS(kvrun::test::have_fixture(kInt4), "fixture models missing");
  Scratch s;
  fs::path m = s.model(kInt4, {"model.safetensors"});
  const std::string src = fixture_file(kInt4, "model.safetensors");
  SUBCASE("scales") {
    edit_safetensors(src, m / "model.safetensors",
                     [](json& h) { h["model.layers.0.self_attn.q_proj.scales"]["shape"] = {8, 256}; });
    Run r = run_kvrun("generate -c " + s.config(m) + kGen);
    CHECK(r.code == 3);
    CHECK_ERR(r, "tensor 'model.layers.0.self_attn.q_proj.scales'");
    CHECK_ERR(r, "has shape [8, 256], expected [4, 512]");
    CHECK_ERR(r, "group size 128");
    CHECK_ERR(r, "'group_size'");
  }
  SUBCASE("qweight") {
    edit_safetensors(src, m / "model.safetensors",
                     [](json& h) { h["model.layers.0.self_attn.q_proj.qweight"]["shape"] = {128, 256}; });
    Run r = run_kvrun("generate -c " + s.config(m) + kGen);
    CHECK(r.code == 3);
    CHECK_ERR(r, "tensor 'model.layers.0.self_attn.q_proj.qweight'");
    CHECK_ERR(r, "expected [64, 512]");
    CHECK_ERR(r, "'bits'");
  }
}

TEST_CASE("errors: unknown GPTQ bits name the settings file") {
  KVRUN_SKIP_UNLESS(kvrun::test::have_fixture(kInt4), "fixture models missing");
  Scratch s;
  fs::path m = s.model(kInt4, {"quantize_config.json"});
  edit_json(kInt4, "quantize_config.json", m / "quantize_config.json", [](json& q) { q["bits"] = 5; });
  Run r = run_kvrun("generate -c " + s.config(m) + kGen);
  CHECK(r.code == 3);
  CHECK_ERR(r, (m / "quantize_config.json").string() + ": GPTQ setting 'bits' is 5");
  CHECK_ERR(r, "2, 3, 4 or 8 bits");
}

TEST_CASE("errors: tokenizer missing or corrupt") {
  KVRUN_SKIP_UNLESS(kvrun::test::have_fixture(kQ2), "fixture models missing");
  Scratch s;
  fs::path m = s.model(kQ2, {"tokenizer.json"});
  const std::string cfg = s.config(m);
  SUBCASE("missing") {
    Run r = run_kvrun("generate -c " + cfg + " --prompt hi --max-new-tokens 2");
    CHECK(r.code == 3);
    CHECK_ERR(r, m.string());
    CHECK_ERR(r, "neither tokenizer.json nor qwen.tiktoken");
    CHECK_ERR(r, "copy the model's tokenizer file");
  }
  SUBCASE("corrupt") {
    write_file(m / "tokenizer.json", fixture_file(kQ2, "tokenizer.json").substr(0, 1000));
    Run r = run_kvrun("generate -c " + cfg + " --prompt hi --max-new-tokens 2");
    CHECK(r.code == 3);
    CHECK_ERR(r, (m / "tokenizer.json").string());
    CHECK_ERR(r, "not valid JSON");
    CHECK_ERR(r, "re-download");
  }
}

TEST_CASE("errors: a PyTorch .bin checkpoint is refused (pickle runs code)") {
  KVRUN_SKIP_UNLESS(kvrun::test::have_fixture(kQ2), "fixture models missing");
  Scratch s;
  fs::path m = s.path("model");
  fs::create_directories(m);
  for (const char* f : {"config.json", "tokenizer.json", "generation_config.json"})
    fs::create_symlink(kvrun::test::fixture(kQ2) + "/" + f, m / f);
  write_file(m / "pytorch_model.bin", "PK\x03\x04 a pickle would run code here");
  Run r = run_kvrun("generate -c " + s.config(m) + kGen);
  CHECK(r.code == 3);
  CHECK_ERR(r, "pytorch_model.bin");
  CHECK_ERR(r, "PyTorch .bin checkpoints are not supported (pickle executes code on load)");
  CHECK_ERR(r, "convert to safetensors");
}

// ---------------------------------------------------------------------------------------------
// Plugins (exit code 2)

TEST_CASE("errors: a plugin built for another ABI is refused, and a pipeline naming it says why") {
  Scratch s;
  const std::string lib = std::string(KVRUN_TEST_PLUGIN_DIR) + "/testplugin_wrong_abi.so";
  REQUIRE(fs::exists(lib));
  Run r = run_kvrun("check -c configs/qwen2-fp16-naive.toml --set 'plugins.paths=[\"" + lib +
                    "\"]' --set cache.type=from_the_future");
  CHECK(r.code == 2);
  CHECK_ERR(r, "unknown cache plugin 'from_the_future' [cache.type]");
  CHECK_ERR(r, lib);
  CHECK_ERR(r, "built for plugin ABI 999 but this kvrun speaks ABI");
  CHECK_ERR(r, "rebuild it against this kvrun's headers");
  // the same module on the path of a pipeline that does not need it: a warning, the run goes on
  Run ok = run_kvrun("check -c configs/qwen2-fp16-naive.toml --set 'plugins.paths=[\"" + lib + "\"]'");
  CHECK(ok.code == 0);
  CHECK_ERR(ok, "kvrun: warning: plugin skipped: plugin '" + lib + "'");
}

// ---------------------------------------------------------------------------------------------
// Running: cache and memory

TEST_CASE("errors: a prompt longer than the KV cache") {
  KVRUN_SKIP_UNLESS(kvrun::test::have_fixture(kQ2), "fixture models missing");
  std::string ids = "1";
  for (int i = 0; i < 100; ++i) ids += ",2";
  Run r = run_kvrun("generate -c configs/qwen2-fp16-naive.toml --set backend.device=cpu --set cache.max_tokens=32 "
                    "--prompt-ids " + ids + " --max-new-tokens 2");
  CHECK(r.code == 2);
  CHECK_ERR(r, "the prompts (101 tokens in 1 sequences) do not fit in the KV cache (capacity 32 tokens");
  CHECK_ERR(r, "raise cache.max_tokens");
}

TEST_CASE("errors: a malformed on/off switch of the model (KVRUN_JOIN_LINEARS, KVRUN_APPEND_QKV, KVRUN_ATTN_BF16) is a usage error") {
  KVRUN_SKIP_UNLESS(kvrun::test::have_fixture(kQ2), "fixture models missing");
  for (const char* var : {"KVRUN_JOIN_LINEARS", "KVRUN_APPEND_QKV", "KVRUN_ATTN_BF16"}) {
    Run r = run_kvrun("generate -c configs/qwen2-fp16-naive.toml --set backend.device=cpu --prompt-ids 1,2 "
                      "--max-new-tokens 1",
                      std::string(var) + "=yes");
    CHECK(r.code == 2);
    CHECK_ERR(r, std::string(var) + "=yes: expected 0 or 1");
  }
  // the switch off is a valid run (q, k, v and gate, up loaded apart) with the same greedy tokens
  Run on = run_kvrun("generate -c configs/qwen2-fp16-naive.toml --set backend.device=cpu --prompt-ids 1,2,3 "
                     "--max-new-tokens 6 --json");
  Run off = run_kvrun("generate -c configs/qwen2-fp16-naive.toml --set backend.device=cpu --prompt-ids 1,2,3 "
                      "--max-new-tokens 6 --json",
                      "KVRUN_JOIN_LINEARS=0");
  CHECK(on.code == 0);
  CHECK(off.code == 0);
  const auto tokens = [](const std::string& out) {
    const size_t p = out.find("\"output_ids\"");
    return p == std::string::npos ? std::string() : out.substr(p, out.find(']', p) - p);
  };
  CHECK(!tokens(on.out).empty());
  CHECK(tokens(on.out) == tokens(off.out));
}

TEST_CASE("errors: projections the weight format cannot join load apart, and the model says so") {
  // layer 0's k_proj stored as f16 beside a bf16 q_proj and v_proj (the same bytes, read as f16:
  // finite values): the dense join refuses mixed dtypes, so q, k, v of that layer load apart
  KVRUN_SKIP_UNLESS(kvrun::test::have_fixture(kQ2), "fixture models missing");
  Scratch s;
  const std::string shard = "model-00001-of-00004.safetensors";
  fs::path m = s.model(kQ2, {shard});
  edit_safetensors(fixture_file(kQ2, shard), m / shard,
                   [](json& h) { h["model.layers.0.self_attn.k_proj.weight"]["dtype"] = "F16"; });
  Run r = run_kvrun("generate -c " + s.config(m) + kGen);
  CHECK(r.code == 0);
  CHECK_ERR(r, "in 1 of 6 layers the weight format could not join q, k, v or gate, up");
  // the stock checkpoint joins everything: no such note
  Scratch s2;
  Run ok = run_kvrun("generate -c " + s2.config(kvrun::test::fixture(kQ2)) + kGen);
  CHECK(ok.code == 0);
  CHECK_FALSE(contains(ok.err, "could not join"));
}

TEST_CASE("errors: NaN in the logits stops generation with exit code 3, naming the sequence and token") {
  KVRUN_SKIP_UNLESS(kvrun::test::have_fixture(kQ1), "fixture models missing");
  Scratch s;
  const fs::path m = kvrun::test::poisoned_copy(kQ1, "transformer.ln_f.weight", s.path("nan-model"));
  Run r = run_kvrun("generate -c " + s.config(m) + " --prompt 'def f(x):' --max-new-tokens 4");
  CHECK(r.code == 3);
  CHECK_ERR(r, "kvrun: model error: sequence 0: the logits for its generated token 1 hold a NaN");
  CHECK_ERR(r, "Check the checkpoint's tensors for NaN / inf");
  CHECK(r.out.empty());  // no text made of token 0s
}

TEST_CASE("errors: the KV cache running out mid-generation ends that sequence only") {
  KVRUN_SKIP_UNLESS(kvrun::test::have_fixture(kQ2), "fixture models missing");
  Scratch s;
  // A short prompt and a long one (about 55 tokens): with 80 tokens of cache (5 blocks of 16),
  // the prompts take every block; the long one needs a 5th block of its own after a few tokens
  // and ends with "cache_full", which gives its blocks back, so the short one still reaches
  // max_new_tokens with the same tokens as with a cache big enough for both.
  std::string longer;
  for (int i = 0; i < 5; ++i) longer += "def f(x):\\n    return x + 1\\n\\n";
  write_file(s.path("prompts.jsonl"), "\"import os\\n\"\n\"" + longer + "\"\n");
  const std::string base = "generate -c configs/qwen2-fp16-naive.toml --set backend.device=cpu --prompts-file " +
                           s.path("prompts.jsonl").string() + " --max-new-tokens 20 --json";
  Run full = run_kvrun(base);
  Run cut = run_kvrun(base + " --set cache.max_tokens=80");
  REQUIRE(full.code == 0);
  REQUIRE_MESSAGE(cut.code == 0, cut.err);
  json jf = json::parse(full.out), jc = json::parse(cut.out);
  REQUIRE(jc["results"].size() == 2);
  REQUIRE(jc["results"][1]["prompt_ids"].size() > 48);  // 4 full blocks
  CHECK(jc["results"][1]["finish_reason"] == "cache_full");
  CHECK(jc["results"][1]["output_ids"].size() < 20);
  CHECK_ERR(cut, "kvrun: warning: prompt 1 stopped after ");
  CHECK_ERR(cut, "the KV cache is full (80 tokens over the batch; finish_reason \"cache_full\"); raise cache.max_tokens");
  CHECK_FALSE(contains(full.err, "cache is full"));
  CHECK(jc["results"][0]["finish_reason"] == jf["results"][0]["finish_reason"]);
  CHECK(jc["results"][0]["finish_reason"] != "cache_full");
  CHECK(jc["results"][0]["output_ids"] == jf["results"][0]["output_ids"]);
  // what the cut sequence did generate is what it generates with room to spare
  const auto& part = jc["results"][1]["output_ids"];
  const auto& whole = jf["results"][1]["output_ids"];
  REQUIRE(part.size() <= whole.size());
  for (size_t i = 0; i < part.size(); ++i) CHECK(part[i] == whole[i]);
}

TEST_CASE("errors: out of device memory at load says how many bytes the model needs") {
  KVRUN_SKIP_UNLESS(kvrun::test::have_fixture(kQ2), "fixture models missing");
  SUBCASE("weights") {
    Run r = run_kvrun("generate -c configs/qwen2-fp16-naive.toml --set backend.device=cpu "
                      "--set backend.memory_limit=1MB" + kGen);
    CHECK(r.code == 4);
    CHECK_ERR(r, "kvrun: device error: cpu: cannot allocate");
    CHECK_ERR(r, "for weights");
    CHECK_ERR(r, "the memory limit is");
    CHECK_ERR(r, "the weights of ");
    CHECK_ERR(r, "bytes, the size of its tensors) on cpu, more than [backend] memory_limit = \"1MB\" (1000000 bytes)");
    CHECK_ERR(r, "kvrun memory -c configs/qwen2-fp16-naive.toml");
  }
  SUBCASE("KV cache") {
    Run r = run_kvrun("generate -c configs/qwen2-fp16-naive.toml --set backend.device=cpu "
                      "--set backend.memory_limit=40MB --set cache.max_tokens=100000" + kGen);
    CHECK(r.code == 4);
    CHECK_ERR(r, "for kv_cache");
    CHECK_ERR(r, "the KV cache needs");
    CHECK_ERR(r, "100000 tokens × ");
    CHECK_ERR(r, "cache.type = \"int8\"");
  }
}

TEST_CASE("errors: --max-new-tokens 0 generates nothing (no crash)") {
  KVRUN_SKIP_UNLESS(kvrun::test::have_fixture(kQ2), "fixture models missing");
  Run r = run_kvrun("generate -c configs/qwen2-fp16-naive.toml --set backend.device=cpu --prompt-ids 1,2,3 "
                    "--max-new-tokens 0 --json");
  REQUIRE(r.code == 0);
  json j = json::parse(r.out);
  CHECK(j["results"][0]["output_ids"].empty());
  CHECK(j["results"][0]["finish_reason"] == "length");
}

// ---------------------------------------------------------------------------------------------
// Ctrl-C (exit code 130)

TEST_CASE("errors: Ctrl-C during generation stops cleanly, prints the partial output, exits 130") {
  KVRUN_SKIP_UNLESS(kvrun::test::have_fixture(kQ2), "fixture models missing");
  Scratch s;
  const fs::path out = s.path("out"), err = s.path("err");
  const int n = 1900;  // seconds of work on the CPU: the interrupt comes long before the end
  const std::vector<std::string> base = {"generate", "-c", "configs/qwen2-fp16-naive.toml", "--set", "backend.device=cpu",
                                         "--set", "backend.threads=1", "--prompt", "def main():", "--max-new-tokens",
                                         std::to_string(n)};
  SUBCASE("streamed text") {
    pid_t pid = spawn_kvrun(base, out, err);
    // wait until tokens are streaming, then interrupt
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(120);
    while (std::chrono::steady_clock::now() < deadline && (!fs::exists(out) || fs::file_size(out) < 8))
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    REQUIRE(::kill(pid, SIGINT) == 0);
    const int status = wait_child(pid, 120);
    const std::string text = read_file(out), log = read_file(err);
    INFO("stderr: " << log);
    REQUIRE(status != -1);
    REQUIRE_FALSE(WIFSIGNALED(status));
    CHECK(WEXITSTATUS(status) == 130);
    CHECK(text.size() >= 8);
    CHECK(contains(log, "kvrun: interrupted (SIGINT): stopping at the next step"));
    CHECK(contains(log, "kvrun: interrupted: generation stopped after "));
    CHECK(contains(log, "peak memory"));  // the normal end of a run: reports printed, nothing skipped
  }
  SUBCASE("--json") {
    std::vector<std::string> args = base;
    args.push_back("--json");
    pid_t pid = spawn_kvrun(args, out, err);
    std::this_thread::sleep_for(std::chrono::seconds(3));
    REQUIRE(::kill(pid, SIGINT) == 0);
    const int status = wait_child(pid, 120);
    const std::string log = read_file(err);
    INFO("stderr: " << log);
    REQUIRE(status != -1);
    REQUIRE_FALSE(WIFSIGNALED(status));
    CHECK(WEXITSTATUS(status) == 130);
    json j = json::parse(read_file(out));  // one complete JSON document
    REQUIRE(j["results"].size() == 1);
    CHECK(j["results"][0]["finish_reason"] == "interrupted");
    CHECK(j["results"][0]["output_ids"].size() < size_t(n));
    MESSAGE("tokens before the interrupt: " << j["results"][0]["output_ids"].size());
  }
}

TEST_CASE("errors: Ctrl-C at the chat prompt ends the chat with exit code 130") {
  KVRUN_SKIP_UNLESS(kvrun::test::have_fixture(kQ2), "fixture models missing");
  // Sent once the prompt is up, and once as soon as the banner before it is: a Ctrl-C between
  // the prompt and the wait for input once left the chat waiting (it read with a blocking getline).
  for (const char* marker : {"> ", "kvrun chat"}) {
    INFO("SIGINT once stderr shows '" << marker << "'");
    Scratch s;
    const fs::path out = s.path("out"), err = s.path("err");
    int fds[2];
    REQUIRE(::pipe(fds) == 0);  // stdin that stays open and empty: chat waits at its prompt
    pid_t pid =
        spawn_kvrun({"chat", "-c", "configs/qwen2-fp16-naive.toml", "--set", "backend.device=cpu"}, out, err, fds[0]);
    ::close(fds[0]);
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(120);
    while (std::chrono::steady_clock::now() < deadline && !(fs::exists(err) && contains(read_file(err), marker)))
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
    REQUIRE(::kill(pid, SIGINT) == 0);
    const int status = wait_child(pid, 60);
    ::close(fds[1]);
    const std::string log = read_file(err);
    INFO("stderr: " << log);
    REQUIRE(status != -1);
    REQUIRE_FALSE(WIFSIGNALED(status));
    CHECK(WEXITSTATUS(status) == 130);
    CHECK(contains(log, "kvrun: chat interrupted"));
  }
}
