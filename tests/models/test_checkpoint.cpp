// Checkpoint directories: safetensors (mmap + strict validation), sharded index, config.json and
// generation_config.json, on the fixture models and on damaged copies built in temp directories.
#include <doctest/doctest.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <set>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "fixtures.hpp"
#include "kvrun/error.hpp"
#include "kvrun/models/checkpoint.hpp"

namespace fs = std::filesystem;
using kvrun::DType;
using kvrun::ErrorKind;
using kvrun::HfCheckpoint;
using kvrun::SafetensorsFile;
using nlohmann::json;

namespace {

const std::string kQ2 = "tiny-qwen2";
const std::string kQ1 = "tiny-qwen1";
const std::string kInt4 = "tiny-qwen2-gptq-int4";
const std::string kInt8 = "tiny-qwen2-gptq-int8";

class TempDir {
 public:
  TempDir() {
    static std::atomic<int> counter{0};
    path_ = fs::temp_directory_path() /
            ("kvrun_test_checkpoint_" + std::to_string(::getpid()) + "_" + std::to_string(counter++));
    fs::remove_all(path_);
    fs::create_directories(path_);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  std::string str() const { return path_.string(); }
  std::string file(const std::string& name) const { return (path_ / name).string(); }

 private:
  fs::path path_;
};

std::string read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  REQUIRE_MESSAGE(in.good(), "cannot read " << path);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

void write_bytes(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  REQUIRE_MESSAGE(out.good(), "cannot write " << path);
  out.write(bytes.data(), std::streamsize(bytes.size()));
  REQUIRE(out.good());
}

// Symlinks every file of fixture `model` into `dst`, except those in `skip`.
void link_fixture(const std::string& model, const TempDir& dst, const std::set<std::string>& skip = {}) {
  kvrun::test::link_fixture_files(model, dst.str(), skip);
}

std::string le64(uint64_t n) {
  std::string s(8, '\0');
  for (int i = 0; i < 8; ++i) s[size_t(i)] = char((n >> (8 * i)) & 0xff);
  return s;
}

// A safetensors file from a header and a data section (header padded with spaces to 8 bytes).
std::string make_safetensors(const json& header, const std::string& data) {
  std::string h = header.dump();
  while (h.size() % 8) h.push_back(' ');
  return le64(h.size()) + h + data;
}

// Copies safetensors file `src` to `dst`, editing its header with `edit` (data unchanged).
void rewrite_header(const std::string& src, const std::string& dst, const std::function<void(json&)>& edit) {
  std::string bytes = read_bytes(src);
  uint64_t n = kvrun::test::safetensors_header_length(bytes);
  json h = json::parse(bytes.substr(8, n));
  edit(h);
  write_bytes(dst, make_safetensors(h, bytes.substr(8 + n)));
}

// Copies fixture `model` into `tmp` as symlinks, with config.json replaced by an edited copy.
void edited_config(const std::string& model, const TempDir& tmp, const std::function<void(json&)>& edit) {
  link_fixture(model, tmp, {"config.json"});
  json c = json::parse(read_bytes(kvrun::test::fixture(model) + "/config.json"));
  edit(c);
  write_bytes(tmp.file("config.json"), c.dump(2));
}

bool contains(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

// Runs f, which must throw kvrun::Error of kind model; returns its message.
std::string model_error(const std::function<void()>& f) {
  try {
    f();
  } catch (const kvrun::Error& e) {
    CHECK_MESSAGE(e.kind() == ErrorKind::model, "kind " << int(e.kind()) << ": " << e.what());
    return e.what();
  }
  FAIL_CHECK("expected Error(model), nothing was thrown");
  return "";
}

#define CHECK_HAS(msg, part) CHECK_MESSAGE(contains((msg), (part)), "message lacks '" << (part) << "': " << (msg))

std::vector<int64_t> shape(std::initializer_list<int64_t> s) { return s; }

}  // namespace

// ---------------------------------------------------------------------------------------------
// Fixtures

TEST_CASE("tiny-qwen2: sharded checkpoint with index") {
  KVRUN_SKIP_UNLESS(kvrun::test::have_fixture(kQ2), "tiny-qwen2 fixture absent");
  const std::string dir = kvrun::test::fixture(kQ2);
  auto ck = HfCheckpoint::open(dir);
  CHECK(ck->directory() == dir);

  const auto names = ck->names();
  json index = json::parse(read_bytes(dir + "/model.safetensors.index.json"));
  CHECK(names.size() == index["weight_map"].size());
  CHECK(names.size() == 2 + 6 * 12);  // embed, norm; 12 tensors per layer (q/k/v bias), tied: no lm_head

  const auto& emb = ck->tensor("model.embed_tokens.weight");
  CHECK(emb.dtype == DType::bf16);
  CHECK(emb.shape == shape({8192, 512}));
  CHECK(emb.nbytes == 8192u * 512u * 2u);
  CHECK(contains(emb.file, "model-00001-of-00004.safetensors"));

  const auto& kp = ck->tensor("model.layers.0.self_attn.k_proj.weight");
  CHECK(kp.shape == shape({256, 512}));  // 2 KV heads x 128
  CHECK(ck->tensor("model.layers.0.self_attn.q_proj.bias").shape == shape({512}));
  CHECK(ck->tensor("model.layers.5.mlp.down_proj.weight").shape == shape({512, 1024}));
  CHECK(contains(ck->tensor("model.layers.5.mlp.down_proj.weight").file, "model-00004-of-00004.safetensors"));
  CHECK(ck->has("model.norm.weight"));
  CHECK_FALSE(ck->has("lm_head.weight"));

  // get(): Status form, copies the descriptor.
  kvrun::HostTensor t;
  auto st = ck->get("model.layers.3.mlp.up_proj.weight", &t);
  REQUIRE(st.ok());
  CHECK(t.name == "model.layers.3.mlp.up_proj.weight");
  CHECK(t.shape == shape({1024, 512}));
  CHECK(t.dtype == DType::bf16);
  st = ck->get("lm_head.weight", &t);
  CHECK(st.kind == ErrorKind::model);
  CHECK_HAS(st.message, "lm_head.weight");

  // The mapped bytes are the file's bytes at data start + begin.
  const std::string shard = read_bytes(t.file);
  const uint64_t n = kvrun::test::safetensors_header_length(shard);
  json h = json::parse(shard.substr(8, n));
  const uint64_t begin = h[t.name]["data_offsets"][0].get<uint64_t>();
  REQUIRE(t.nbytes == h[t.name]["data_offsets"][1].get<uint64_t>() - begin);
  CHECK(std::memcmp(t.data, shard.data() + 8 + n + begin, t.nbytes) == 0);
}

TEST_CASE("tiny-qwen1: single file with Qwen v1 names") {
  KVRUN_SKIP_UNLESS(kvrun::test::have_fixture(kQ1), "tiny-qwen1 fixture absent");
  const std::string dir = kvrun::test::fixture(kQ1);
  auto ck = HfCheckpoint::open(dir);
  CHECK(ck->names().size() == 3 + 4 * 8);  // wte, ln_f, lm_head; 8 per layer
  const auto& c_attn = ck->tensor("transformer.h.0.attn.c_attn.weight");
  CHECK(c_attn.dtype == DType::bf16);
  CHECK(c_attn.shape == shape({768, 256}));
  CHECK(ck->tensor("transformer.h.0.attn.c_attn.bias").shape == shape({768}));
  CHECK(ck->tensor("transformer.h.3.mlp.w1.weight").shape == shape({688, 256}));
  CHECK(ck->tensor("transformer.h.3.mlp.w2.weight").shape == shape({688, 256}));
  CHECK(ck->tensor("transformer.h.3.mlp.c_proj.weight").shape == shape({256, 688}));
  CHECK(ck->tensor("lm_head.weight").shape == shape({6144, 256}));
  CHECK(ck->tensor("transformer.wte.weight").shape == shape({6144, 256}));
  CHECK_FALSE(ck->has("transformer.h.0.attn.c_proj.bias"));

  auto f = SafetensorsFile::open(dir + "/model.safetensors");
  CHECK(f->metadata().at("format") == "pt");
  CHECK(f->tensors().size() == 35);
  CHECK(f->unsupported().empty());
  std::string msg = model_error([&] { f->tensor("transformer.h.9.ln_1.weight"); });
  CHECK_HAS(msg, "transformer.h.9.ln_1.weight");
  CHECK_HAS(msg, "model.safetensors");
}

TEST_CASE("GPTQ fixtures: qweight / qzeros / scales / g_idx") {
  for (const auto& [model, bits] : {std::pair{kInt4, 4}, std::pair{kInt8, 8}}) {
    CAPTURE(model);
    if (!kvrun::test::have_fixture(model)) {
      MESSAGE("skipped: fixture absent " << model);
      continue;
    }
    auto ck = HfCheckpoint::open(kvrun::test::fixture(model));
    const int64_t pack = 32 / bits;
    const std::string p = "model.layers.0.mlp.gate_proj.";  // K = 512, N = 1024, group 128
    const auto& qw = ck->tensor(p + "qweight");
    CHECK(qw.dtype == DType::i32);
    CHECK(qw.shape == shape({512 / pack, 1024}));
    const auto& qz = ck->tensor(p + "qzeros");
    CHECK(qz.dtype == DType::i32);
    CHECK(qz.shape == shape({4, 1024 / pack}));
    const auto& sc = ck->tensor(p + "scales");
    CHECK(sc.dtype == DType::f16);
    CHECK(sc.shape == shape({4, 1024}));
    const auto& gi = ck->tensor(p + "g_idx");
    CHECK(gi.dtype == DType::i32);
    CHECK(gi.shape == shape({512}));
    // g_idx = k / 128 (no act-order), read through the mapping.
    std::vector<int32_t> g(512);
    std::memcpy(g.data(), gi.data, gi.nbytes);
    CHECK(g[0] == 0);
    CHECK(g[127] == 0);
    CHECK(g[128] == 1);
    CHECK(g[511] == 3);
    // Symmetric: every stored zero is 2^(bits-1) - 1 packed (0x77777777 for 4-bit).
    uint32_t z0;
    std::memcpy(&z0, qz.data, 4);
    CHECK(z0 == (bits == 4 ? 0x77777777u : 0x7f7f7f7fu));
    CHECK(ck->tensor("model.embed_tokens.weight").dtype == DType::f16);
    CHECK_FALSE(ck->has(p + "weight"));

    bool exists = false;
    std::string text;
    REQUIRE(ck->read_text("quantize_config.json", &text, &exists).ok());
    CHECK(exists);
    CHECK(json::parse(text)["bits"].get<int>() == bits);
  }
}

TEST_CASE("read_text") {
  KVRUN_SKIP_UNLESS(kvrun::test::have_fixture(kQ2), "tiny-qwen2 fixture absent");
  auto ck = HfCheckpoint::open(kvrun::test::fixture(kQ2));
  bool exists = true;
  std::string text = "unchanged";
  auto st = ck->read_text("quantize_config.json", &text, &exists);
  CHECK(st.ok());
  CHECK_FALSE(exists);
  st = ck->read_text("tokenizer_config.json", &text, &exists);
  CHECK(st.ok());
  CHECK(exists);
  CHECK(json::parse(text).is_object());
  st = ck->read_text("../tiny-qwen1/config.json", &text, &exists);
  CHECK(st.kind == ErrorKind::model);
  CHECK_HAS(st.message, "../tiny-qwen1/config.json");
}

TEST_CASE("config.json of the fixtures") {
  KVRUN_SKIP_UNLESS(kvrun::test::have_fixture(kQ2) && kvrun::test::have_fixture(kQ1), "fixtures absent");
  SUBCASE("tiny-qwen2") {
    auto c = kvrun::load_model_config(kvrun::test::fixture(kQ2));
    CHECK(c.arch == kvrun::Arch::qwen2);
    CHECK(std::string(kvrun::arch_name(c.arch)) == "qwen2");
    CHECK(c.model_type == "qwen2");
    CHECK(c.architecture == "Qwen2ForCausalLM");
    CHECK(c.hidden == 512);
    CHECK(c.num_layers == 6);
    CHECK(c.num_heads == 4);
    CHECK(c.num_kv_heads == 2);
    CHECK(c.head_dim == 128);
    CHECK(c.rot_dim == 128);
    CHECK(c.intermediate == 1024);
    CHECK(c.vocab == 8192);
    CHECK(c.tie_embeddings);
    CHECK(c.qkv_bias);
    CHECK(c.rope_theta == 10000.f);
    CHECK(c.norm_eps == doctest::Approx(1e-6));
    CHECK(c.max_positions == 2048);
    CHECK(c.eos_ids == std::vector<int32_t>{8189});
    CHECK(c.torch_dtype == "bfloat16");
    CHECK(c.quant_method.empty());
    CHECK_FALSE(c.use_dynamic_ntk);
    CHECK_FALSE(c.use_logn_attn);
  }
  SUBCASE("tiny-qwen1") {
    auto c = kvrun::load_model_config(kvrun::test::fixture(kQ1));
    CHECK(c.arch == kvrun::Arch::qwen);
    CHECK(std::string(kvrun::arch_name(c.arch)) == "qwen");
    CHECK(c.architecture == "QWenLMHeadModel");
    CHECK(c.hidden == 256);
    CHECK(c.num_layers == 4);
    CHECK(c.num_heads == 4);
    CHECK(c.num_kv_heads == 4);
    CHECK(c.head_dim == 64);
    CHECK(c.rot_dim == 64);
    CHECK(c.intermediate == 688);
    CHECK(c.vocab == 6144);
    CHECK(c.seq_length == 2048);
    CHECK(c.max_positions == 2048);
    CHECK(c.use_dynamic_ntk);
    CHECK(c.use_logn_attn);
    CHECK_FALSE(c.tie_embeddings);
    CHECK(c.qkv_bias);
    CHECK(c.rope_theta == 10000.f);
    CHECK(c.norm_eps == doctest::Approx(1e-6));
    CHECK(c.torch_dtype == "bfloat16");
    CHECK(c.eos_ids.empty());
    CHECK(c.quant_method.empty());
  }
  SUBCASE("GPTQ") {
    for (const auto& m : {kInt4, kInt8}) {
      if (!kvrun::test::have_fixture(m)) continue;
      auto c = kvrun::load_model_config(kvrun::test::fixture(m));
      CHECK(c.quant_method == "gptq");
      CHECK(c.torch_dtype == "float16");
      CHECK(c.hidden == 512);
      CHECK(c.num_kv_heads == 2);
    }
  }
}

TEST_CASE("generation_config.json") {
  KVRUN_SKIP_UNLESS(kvrun::test::have_fixture(kQ2) && kvrun::test::have_fixture(kQ1), "fixtures absent");
  auto g1 = kvrun::load_generation_defaults(kvrun::test::fixture(kQ1));
  CHECK(g1.eos_ids == std::vector<int32_t>{6141});
  REQUIRE(g1.max_new_tokens.has_value());
  CHECK(*g1.max_new_tokens == 512);
  REQUIRE(g1.do_sample.has_value());
  CHECK_FALSE(*g1.do_sample);
  CHECK_FALSE(g1.temperature.has_value());

  auto g2 = kvrun::load_generation_defaults(kvrun::test::fixture(kQ2));
  CHECK(g2.eos_ids == std::vector<int32_t>{8189});
  CHECK_FALSE(g2.do_sample.has_value());
  CHECK_FALSE(g2.top_k.has_value());

  TempDir tmp;
  auto g0 = kvrun::load_generation_defaults(tmp.str());  // absent file: all empty
  CHECK_FALSE(g0.temperature.has_value());
  CHECK(g0.eos_ids.empty());

  write_bytes(tmp.file("generation_config.json"),
              R"({"temperature": 0.7, "top_p": 0.8, "top_k": 20, "min_p": 0.05, "repetition_penalty": 1.05,
                  "max_new_tokens": 64, "do_sample": true, "eos_token_id": [151643, 151645], "pad_token_id": null})");
  auto g = kvrun::load_generation_defaults(tmp.str());
  CHECK(g.temperature.value_or(0) == doctest::Approx(0.7));
  CHECK(g.top_p.value_or(0) == doctest::Approx(0.8));
  CHECK(g.top_k.value_or(0) == 20);
  CHECK(g.min_p.value_or(0) == doctest::Approx(0.05));
  CHECK(g.repetition_penalty.value_or(0) == doctest::Approx(1.05));
  CHECK(g.max_new_tokens.value_or(0) == 64);
  CHECK(g.do_sample.value_or(false));
  CHECK(g.eos_ids == std::vector<int32_t>{151643, 151645});

  write_bytes(tmp.file("generation_config.json"), R"({"temperature": 0.7,, })");
  std::string msg = model_error([&] { kvrun::load_generation_defaults(tmp.str()); });
  CHECK_HAS(msg, "generation_config.json");

  write_bytes(tmp.file("generation_config.json"), R"({"top_k": "many"})");
  msg = model_error([&] { kvrun::load_generation_defaults(tmp.str()); });
  CHECK_HAS(msg, "generation_config.json");
  CHECK_HAS(msg, "top_k");
}

// ---------------------------------------------------------------------------------------------
// Other architectures and key variants (hand-written configs)

TEST_CASE("config.json: Llama, Qwen v1 aliases, GPTQ side file") {
  TempDir tmp;
  SUBCASE("llama") {
    write_bytes(tmp.file("config.json"), R"({
      "architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 2048,
      "num_attention_heads": 16, "num_hidden_layers": 2, "intermediate_size": 5632, "vocab_size": 32000,
      "rms_norm_eps": 1e-5, "rope_theta": 500000.0, "attention_bias": true, "torch_dtype": "float16",
      "eos_token_id": [128001, 128009], "rope_scaling": null, "max_position_embeddings": 4096})");
    auto c = kvrun::load_model_config(tmp.str());
    CHECK(c.arch == kvrun::Arch::llama);
    CHECK(c.num_kv_heads == 16);
    CHECK(c.head_dim == 128);
    CHECK(c.intermediate == 5632);
    CHECK(c.qkv_bias);
    CHECK_FALSE(c.tie_embeddings);
    CHECK(c.rope_theta == 500000.f);
    CHECK(c.norm_eps == doctest::Approx(1e-5));
    CHECK(c.max_positions == 4096);
    CHECK(c.torch_dtype == "float16");
    CHECK(c.eos_ids == std::vector<int32_t>{128001, 128009});
  }
  SUBCASE("llama from architectures only, no attention_bias") {
    write_bytes(tmp.file("config.json"), R"({"architectures": ["LlamaForCausalLM"], "hidden_size": 64,
      "num_attention_heads": 4, "num_key_value_heads": 1, "num_hidden_layers": 1, "intermediate_size": 128,
      "vocab_size": 100})");
    auto c = kvrun::load_model_config(tmp.str());
    CHECK(c.arch == kvrun::Arch::llama);
    CHECK_FALSE(c.qkv_bias);
    CHECK(c.num_kv_heads == 1);
    CHECK(c.head_dim == 16);
    CHECK(c.rope_theta == 10000.f);
    CHECK(c.torch_dtype.empty());
  }
  SUBCASE("qwen v1 with old aliases") {
    write_bytes(tmp.file("config.json"), R"({"architectures": ["QWenLMHeadModel"], "model_type": "qwen",
      "n_embd": 128, "n_head": 2, "n_layer": 3, "ffn_hidden_size": 512, "kv_channels": 64, "vocab_size": 1000,
      "rotary_pct": 0.5, "seq_length": 8192, "use_dynamic_ntk": false, "use_logn_attn": false,
      "layer_norm_epsilon": 1e-5, "rotary_emb_base": 20000, "fp16": true, "bf16": false})");
    auto c = kvrun::load_model_config(tmp.str());
    CHECK(c.arch == kvrun::Arch::qwen);
    CHECK(c.hidden == 128);
    CHECK(c.num_heads == 2);
    CHECK(c.num_kv_heads == 2);
    CHECK(c.num_layers == 3);
    CHECK(c.intermediate == 256);
    CHECK(c.head_dim == 64);
    CHECK(c.rot_dim == 32);
    CHECK(c.seq_length == 8192);
    CHECK_FALSE(c.use_dynamic_ntk);
    CHECK_FALSE(c.use_logn_attn);
    CHECK(c.rope_theta == 20000.f);
    CHECK(c.torch_dtype == "float16");
  }
  SUBCASE("quantize_config.json without quantization_config means gptq") {
    KVRUN_SKIP_UNLESS(kvrun::test::have_fixture(kQ2), "tiny-qwen2 fixture absent");
    fs::copy_file(kvrun::test::fixture(kQ2) + "/config.json", tmp.file("config.json"));
    CHECK(kvrun::load_model_config(tmp.str()).quant_method.empty());
    write_bytes(tmp.file("quantize_config.json"), R"({"bits": 4, "group_size": 128})");
    CHECK(kvrun::load_model_config(tmp.str()).quant_method == "gptq");
  }
}

// ---------------------------------------------------------------------------------------------
// Refused configs

TEST_CASE("config.json: refusals name the key") {
  KVRUN_SKIP_UNLESS(kvrun::test::have_fixture(kQ2), "tiny-qwen2 fixture absent");
  TempDir tmp;
  std::string msg;
  SUBCASE("rope_scaling yarn") {
    edited_config(kQ2, tmp, [](json& c) { c["rope_scaling"] = {{"type", "yarn"}, {"factor", 4.0}}; });
    msg = model_error([&] { kvrun::load_model_config(tmp.str()); });
    CHECK_HAS(msg, "rope_scaling");
    CHECK_HAS(msg, "yarn");
    CHECK_HAS(msg, "config.json");
  }
  SUBCASE("rope_scaling llama3 (rope_type)") {
    edited_config(kQ2, tmp, [](json& c) { c["rope_scaling"] = {{"rope_type", "llama3"}, {"factor", 8.0}}; });
    msg = model_error([&] { kvrun::load_model_config(tmp.str()); });
    CHECK_HAS(msg, "rope_scaling");
    CHECK_HAS(msg, "llama3");
  }
  SUBCASE("rope_parameters.rope_type linear") {
    edited_config(kQ2, tmp, [](json& c) { c["rope_parameters"]["rope_type"] = "linear"; });
    msg = model_error([&] { kvrun::load_model_config(tmp.str()); });
    CHECK_HAS(msg, "rope_parameters.rope_type");
    CHECK_HAS(msg, "linear");
  }
  SUBCASE("rope_scaling default is accepted, rope_theta read from rope_parameters") {
    edited_config(kQ2, tmp, [](json& c) {
      c["rope_scaling"] = {{"rope_type", "default"}};
      c["rope_parameters"]["rope_theta"] = 1000000.0;
    });
    CHECK(kvrun::load_model_config(tmp.str()).rope_theta == 1000000.f);
  }
  SUBCASE("use_sliding_window true") {
    edited_config(kQ2, tmp, [](json& c) {
      c["use_sliding_window"] = true;
      c["sliding_window"] = 4096;
    });
    msg = model_error([&] { kvrun::load_model_config(tmp.str()); });
    CHECK_HAS(msg, "use_sliding_window");
  }
  SUBCASE("unknown architecture") {
    edited_config(kQ2, tmp, [](json& c) {
      c["model_type"] = "mistral";
      c["architectures"] = {"MistralForCausalLM"};
    });
    msg = model_error([&] { kvrun::load_model_config(tmp.str()); });
    CHECK_HAS(msg, "mistral");
    CHECK_HAS(msg, "MistralForCausalLM");
  }
  SUBCASE("mistyped key") {
    edited_config(kQ2, tmp, [](json& c) { c["hidden_size"] = "512"; });
    msg = model_error([&] { kvrun::load_model_config(tmp.str()); });
    CHECK_HAS(msg, "hidden_size");
  }
  SUBCASE("missing required key") {
    edited_config(kQ2, tmp, [](json& c) { c.erase("vocab_size"); });
    msg = model_error([&] { kvrun::load_model_config(tmp.str()); });
    CHECK_HAS(msg, "vocab_size");
  }
  SUBCASE("kv heads do not divide heads") {
    edited_config(kQ2, tmp, [](json& c) { c["num_key_value_heads"] = 3; });
    msg = model_error([&] { kvrun::load_model_config(tmp.str()); });
    CHECK_HAS(msg, "num_key_value_heads");
  }
  SUBCASE("malformed JSON") {
    link_fixture(kQ2, tmp, {"config.json"});
    write_bytes(tmp.file("config.json"), "{\"hidden_size\": 512,");
    msg = model_error([&] { kvrun::load_model_config(tmp.str()); });
    CHECK_HAS(msg, "config.json");
  }
  SUBCASE("missing config.json") {
    msg = model_error([&] { kvrun::load_model_config(tmp.str()); });
    CHECK_HAS(msg, tmp.file("config.json"));
  }
}

// ---------------------------------------------------------------------------------------------
// Damaged safetensors files

TEST_CASE("safetensors: damaged headers and data") {
  KVRUN_SKIP_UNLESS(kvrun::test::have_fixture(kQ1), "tiny-qwen1 fixture absent");
  const std::string src = kvrun::test::fixture(kQ1) + "/model.safetensors";
  const std::string orig = read_bytes(src);
  const uint64_t n = kvrun::test::safetensors_header_length(orig);
  const uint64_t data_size = orig.size() - 8 - n;
  TempDir tmp;
  const std::string dst = tmp.file("model.safetensors");
  std::string msg;

  SUBCASE("truncated file") {
    write_bytes(dst, orig.substr(0, orig.size() - 1000));
    msg = model_error([&] { SafetensorsFile::open(dst); });
    CHECK_HAS(msg, dst);
    CHECK_HAS(msg, "outside the data");
  }
  SUBCASE("shorter than the length prefix") {
    write_bytes(dst, orig.substr(0, 5));
    msg = model_error([&] { SafetensorsFile::open(dst); });
    CHECK_HAS(msg, dst);
  }
  SUBCASE("header length beyond the file") {
    write_bytes(dst, le64(orig.size()) + orig.substr(8));
    msg = model_error([&] { SafetensorsFile::open(dst); });
    CHECK_HAS(msg, dst);
    CHECK_HAS(msg, "beyond the end of the file");
  }
  SUBCASE("header length over 100 MB") {
    write_bytes(dst, le64(200'000'000) + orig.substr(8));
    msg = model_error([&] { SafetensorsFile::open(dst); });
    CHECK_HAS(msg, dst);
    CHECK_HAS(msg, "100 MB");
  }
  SUBCASE("header not JSON") {
    std::string bad = orig;
    bad[8] = 'x';
    write_bytes(dst, bad);
    msg = model_error([&] { SafetensorsFile::open(dst); });
    CHECK_HAS(msg, dst);
    CHECK_HAS(msg, "JSON");
  }
  SUBCASE("offsets out of range") {
    rewrite_header(src, dst, [&](json& h) {
      auto& t = h["transformer.ln_f.weight"];  // [256] BF16, 512 bytes
      t["data_offsets"] = {data_size - 510, data_size + 2};
    });
    msg = model_error([&] { SafetensorsFile::open(dst); });
    CHECK_HAS(msg, dst);
    CHECK_HAS(msg, "transformer.ln_f.weight");
    CHECK_HAS(msg, "outside the data");
  }
  SUBCASE("overlapping offsets") {
    rewrite_header(src, dst, [&](json& h) {
      h["transformer.h.1.ln_2.weight"]["data_offsets"] = h["transformer.h.1.ln_1.weight"]["data_offsets"];
    });
    msg = model_error([&] { SafetensorsFile::open(dst); });
    CHECK_HAS(msg, "transformer.h.1.ln_1.weight");
    CHECK_HAS(msg, "transformer.h.1.ln_2.weight");
    CHECK_HAS(msg, "overlapping");
  }
  SUBCASE("partially overlapping offsets") {
    rewrite_header(src, dst, [&](json& h) {
      auto& o = h["transformer.h.0.attn.c_attn.bias"]["data_offsets"];
      uint64_t b = o[0].get<uint64_t>() + 2, e = o[1].get<uint64_t>() + 2;
      o = {b, e};
    });
    msg = model_error([&] { SafetensorsFile::open(dst); });
    CHECK_HAS(msg, "transformer.h.0.attn.c_attn.bias");
    CHECK_HAS(msg, "overlapping");
  }
  SUBCASE("size mismatch") {
    rewrite_header(src, dst, [&](json& h) { h["transformer.h.2.ln_1.weight"]["shape"] = {255}; });
    msg = model_error([&] { SafetensorsFile::open(dst); });
    CHECK_HAS(msg, "transformer.h.2.ln_1.weight");
    CHECK_HAS(msg, "size mismatch");
  }
  SUBCASE("unknown dtype") {
    rewrite_header(src, dst, [&](json& h) { h["transformer.h.2.ln_1.weight"]["dtype"] = "Q7"; });
    msg = model_error([&] { SafetensorsFile::open(dst); });
    CHECK_HAS(msg, "transformer.h.2.ln_1.weight");
    CHECK_HAS(msg, "Q7");
  }
  SUBCASE("negative shape") {
    rewrite_header(src, dst, [&](json& h) { h["transformer.h.2.ln_1.weight"]["shape"] = {-256}; });
    msg = model_error([&] { SafetensorsFile::open(dst); });
    CHECK_HAS(msg, "transformer.h.2.ln_1.weight");
  }
  SUBCASE("non-string metadata") {
    rewrite_header(src, dst, [&](json& h) { h["__metadata__"]["step"] = 5; });
    msg = model_error([&] { SafetensorsFile::open(dst); });
    CHECK_HAS(msg, "__metadata__");
  }
  SUBCASE("valid but unsupported dtype F64 in a model directory") {
    fs::create_symlink(kvrun::test::fixture(kQ1) + "/config.json", tmp.file("config.json"));
    rewrite_header(src, dst, [&](json& h) {
      h["transformer.h.2.ln_1.weight"]["dtype"] = "F64";  // 512 bytes = 64 doubles
      h["transformer.h.2.ln_1.weight"]["shape"] = {64};
    });
    auto f = SafetensorsFile::open(dst);
    CHECK_FALSE(f->has("transformer.h.2.ln_1.weight"));
    CHECK(f->tensors().count("transformer.h.2.ln_1.weight") == 0);
    CHECK(f->unsupported().at("transformer.h.2.ln_1.weight") == "F64");
    CHECK(f->tensors().size() == 34);

    auto ck = HfCheckpoint::open(tmp.str());
    CHECK_FALSE(ck->has("transformer.h.2.ln_1.weight"));
    CHECK(ck->names().size() == 34);
    kvrun::HostTensor t;
    auto st = ck->get("transformer.h.2.ln_1.weight", &t);
    CHECK(st.kind == ErrorKind::model);
    CHECK_HAS(st.message, "transformer.h.2.ln_1.weight");
    CHECK_HAS(st.message, "F64");
    CHECK(ck->get("transformer.h.2.ln_2.weight", &t).ok());
  }
  SUBCASE("unsupported dtypes still have their offsets checked") {
    rewrite_header(src, dst, [&](json& h) {
      h["transformer.h.2.ln_1.weight"]["dtype"] = "I64";
      h["transformer.h.2.ln_1.weight"]["shape"] = {65};
    });
    msg = model_error([&] { SafetensorsFile::open(dst); });
    CHECK_HAS(msg, "transformer.h.2.ln_1.weight");
    CHECK_HAS(msg, "size mismatch");
  }
}

TEST_CASE("safetensors: synthetic files") {
  TempDir tmp;
  const std::string p = tmp.file("x.safetensors");
  std::string data(64, '\0');
  for (size_t i = 0; i < data.size(); ++i) data[i] = char(i);
  json h = {{"__metadata__", {{"format", "pt"}}},
            {"a", {{"dtype", "F32"}, {"shape", {2, 2}}, {"data_offsets", {0, 16}}}},
            {"b", {{"dtype", "U8"}, {"shape", {8}}, {"data_offsets", {16, 24}}}},
            {"c", {{"dtype", "BOOL"}, {"shape", {8}}, {"data_offsets", {24, 32}}}},
            {"e", {{"dtype", "I8"}, {"shape", {0}}, {"data_offsets", {32, 32}}}},
            {"s", {{"dtype", "I32"}, {"shape", json::array()}, {"data_offsets", {32, 36}}}}};
  write_bytes(p, make_safetensors(h, data));
  auto f = SafetensorsFile::open(p);
  CHECK(f->tensors().size() == 4);
  CHECK(f->tensor("a").dtype == DType::f32);
  CHECK(f->tensor("a").shape == shape({2, 2}));
  CHECK(static_cast<const unsigned char*>(f->tensor("b").data)[3] == 19);
  CHECK(f->tensor("e").nbytes == 0);
  CHECK(f->tensor("s").shape.empty());
  CHECK(f->tensor("s").nbytes == 4);
  CHECK(f->tensor("a").file == p);
  std::string msg = model_error([&] { f->tensor("c"); });
  CHECK_HAS(msg, "'c'");
  CHECK_HAS(msg, "BOOL");
  CHECK_HAS(msg, p);
}

// ---------------------------------------------------------------------------------------------
// Damaged model directories

TEST_CASE("model directories: shards, index, .bin, config.json") {
  KVRUN_SKIP_UNLESS(kvrun::test::have_fixture(kQ2) && kvrun::test::have_fixture(kQ1), "fixtures absent");
  const std::string q2 = kvrun::test::fixture(kQ2);
  TempDir tmp;
  std::string msg;

  SUBCASE("truncated shard") {
    const std::string shard = "model-00004-of-00004.safetensors";
    link_fixture(kQ2, tmp, {shard});
    const std::string bytes = read_bytes(q2 + "/" + shard);
    write_bytes(tmp.file(shard), bytes.substr(0, bytes.size() / 2));
    msg = model_error([&] { HfCheckpoint::open(tmp.str()); });
    CHECK_HAS(msg, shard);
    CHECK_HAS(msg, "outside the data");
  }
  SUBCASE("index names a missing shard") {
    link_fixture(kQ2, tmp, {"model-00003-of-00004.safetensors"});
    msg = model_error([&] { HfCheckpoint::open(tmp.str()); });
    CHECK_HAS(msg, "model-00003-of-00004.safetensors");
    CHECK_HAS(msg, "does not exist");
  }
  SUBCASE("index maps a tensor to a shard that lacks it") {
    link_fixture(kQ2, tmp, {"model.safetensors.index.json"});
    json idx = json::parse(read_bytes(q2 + "/model.safetensors.index.json"));
    idx["weight_map"]["model.layers.0.input_layernorm.weight"] = "model-00001-of-00004.safetensors";
    write_bytes(tmp.file("model.safetensors.index.json"), idx.dump(2));
    msg = model_error([&] { HfCheckpoint::open(tmp.str()); });
    CHECK_HAS(msg, "model.layers.0.input_layernorm.weight");
    CHECK_HAS(msg, "model-00001-of-00004.safetensors");
  }
  SUBCASE("index without weight_map") {
    link_fixture(kQ2, tmp, {"model.safetensors.index.json"});
    write_bytes(tmp.file("model.safetensors.index.json"), R"({"metadata": {}})");
    msg = model_error([&] { HfCheckpoint::open(tmp.str()); });
    CHECK_HAS(msg, "model.safetensors.index.json");
    CHECK_HAS(msg, "weight_map");
  }
  SUBCASE("index escaping the directory") {
    link_fixture(kQ2, tmp, {"model.safetensors.index.json"});
    json idx = json::parse(read_bytes(q2 + "/model.safetensors.index.json"));
    idx["weight_map"]["model.norm.weight"] = "../tiny-qwen2/model-00004-of-00004.safetensors";
    write_bytes(tmp.file("model.safetensors.index.json"), idx.dump(2));
    msg = model_error([&] { HfCheckpoint::open(tmp.str()); });
    CHECK_HAS(msg, "model.norm.weight");
  }
  SUBCASE("PyTorch .bin only") {
    fs::create_symlink(q2 + "/config.json", tmp.file("config.json"));
    write_bytes(tmp.file("pytorch_model.bin"), "PK\x03\x04 not really a pickle");
    msg = model_error([&] { HfCheckpoint::open(tmp.str()); });
    CHECK_HAS(msg, "pytorch_model.bin");
    CHECK_HAS(msg, "PyTorch .bin checkpoints are not supported");
    CHECK_HAS(msg, "safetensors");
  }
  SUBCASE(".bin next to safetensors: safetensors are used") {
    link_fixture(kQ2, tmp);
    write_bytes(tmp.file("pytorch_model.bin"), "ignored");
    CHECK(HfCheckpoint::open(tmp.str())->has("model.norm.weight"));
  }
  SUBCASE("no weights at all") {
    fs::create_symlink(q2 + "/config.json", tmp.file("config.json"));
    msg = model_error([&] { HfCheckpoint::open(tmp.str()); });
    CHECK_HAS(msg, "model.safetensors");
  }
  SUBCASE("missing config.json") {
    link_fixture(kQ1, tmp, {"config.json"});
    msg = model_error([&] { HfCheckpoint::open(tmp.str()); });
    CHECK_HAS(msg, tmp.file("config.json"));
  }
  SUBCASE("missing directory") {
    msg = model_error([&] { HfCheckpoint::open(tmp.file("nope")); });
    CHECK_HAS(msg, tmp.file("nope"));
  }
  SUBCASE("missing tensor names the tensor and the index") {
    auto ck = HfCheckpoint::open(q2);
    msg = model_error([&] { ck->tensor("model.layers.6.mlp.up_proj.weight"); });
    CHECK_HAS(msg, "model.layers.6.mlp.up_proj.weight");
    CHECK_HAS(msg, "model.safetensors.index.json");
  }
}
