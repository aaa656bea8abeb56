// Tokenizer tests: the fixtures' reference cases (tokenizer_cases.json, produced by the reference
// tokenizers), a round trip of the whole validation text, streaming detokenization, ChatML, special
// tokens, and the errors for unsupported or broken tokenizer files.
#include <doctest/doctest.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <unistd.h>

#include "fixtures.hpp"
#include "kvrun/error.hpp"
#include "kvrun/models/tokenizer.hpp"

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

std::string read_file(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  REQUIRE_MESSAGE(in.good(), "cannot open " << p.string());
  std::stringstream buf;
  buf << in.rdbuf();
  return buf.str();
}

void write_file(const fs::path& p, const std::string& s) {
  std::ofstream out(p, std::ios::binary);
  out << s;
  REQUIRE(out.good());
}

// A fresh directory under the system temp dir, removed when the object goes away.
struct TempDir {
  fs::path path;
  TempDir() {
    static std::atomic<int> counter{0};
    path = fs::temp_directory_path() /
           ("kvrun-tok-test-" + std::to_string(::getpid()) + "-" + std::to_string(counter++));
    fs::remove_all(path);
    fs::create_directories(path);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
};

bool valid_utf8(const std::string& s) {
  try {
    kvrun::nfc_normalize(s);
    return true;
  } catch (const kvrun::Error&) {
    return false;
  }
}

// Every case of <fixture>/tokenizer_cases.json: encode gives exactly the reference ids and decode
// gives the (NFC) text back.
void check_cases(const std::string& dir, const std::string& expected_kind) {
  auto tok = kvrun::Tokenizer::load(dir);
  CHECK(tok->kind() == expected_kind);
  const json cases = json::parse(read_file(fs::path(dir) / "tokenizer_cases.json"));
  REQUIRE(cases.size() > 0);
  for (const json& c : cases) {
    const std::string text = c["text"].get<std::string>();
    const auto expected = c["ids"].get<std::vector<int32_t>>();
    CAPTURE(text);
    CHECK(tok->encode(text) == expected);
    CHECK(tok->decode(expected) == kvrun::nfc_normalize(text));
  }
}

std::optional<int32_t> id_of_bytes(const kvrun::Tokenizer& tok, const std::string& bytes) {
  for (int32_t i = 0; i < tok.vocab_size(); ++i)
    if (tok.token_bytes(i) == bytes) return i;
  return std::nullopt;
}

template <class F>
kvrun::Error expect_error(F&& f) {
  try {
    f();
  } catch (const kvrun::Error& e) {
    return e;
  }
  FAIL("expected a kvrun::Error");
  return kvrun::Error(kvrun::ErrorKind::ok, "");
}

}  // namespace

TEST_CASE("tokenizer cases: tiny-qwen2 (tokenizer.json)") {
  KVRUN_SKIP_UNLESS(kvrun::test::have_fixture("tiny-qwen2"), "fixture tiny-qwen2 missing");
  check_cases(kvrun::test::fixture("tiny-qwen2"), "tokenizer.json (byte-level BPE)");
}

TEST_CASE("tokenizer cases: tiny-qwen2-gptq-int4 (tokenizer.json)") {
  KVRUN_SKIP_UNLESS(kvrun::test::have_fixture("tiny-qwen2-gptq-int4"), "fixture tiny-qwen2-gptq-int4 missing");
  check_cases(kvrun::test::fixture("tiny-qwen2-gptq-int4"), "tokenizer.json (byte-level BPE)");
}

TEST_CASE("tokenizer cases: tiny-qwen2-gptq-int8 (tokenizer.json)") {
  KVRUN_SKIP_UNLESS(kvrun::test::have_fixture("tiny-qwen2-gptq-int8"), "fixture tiny-qwen2-gptq-int8 missing");
  check_cases(kvrun::test::fixture("tiny-qwen2-gptq-int8"), "tokenizer.json (byte-level BPE)");
}

TEST_CASE("tokenizer cases: tiny-qwen1 (qwen.tiktoken)") {
  KVRUN_SKIP_UNLESS(kvrun::test::have_fixture("tiny-qwen1"), "fixture tiny-qwen1 missing");
  check_cases(kvrun::test::fixture("tiny-qwen1"), "qwen.tiktoken");
}

TEST_CASE("vocabulary sizes and special ids") {
  KVRUN_SKIP_UNLESS(kvrun::test::have_fixture("tiny-qwen2") && kvrun::test::have_fixture("tiny-qwen1"),
                    "fixtures tiny-qwen2 / tiny-qwen1 missing");
  auto q2 = kvrun::Tokenizer::load(kvrun::test::fixture("tiny-qwen2"));
  CHECK(q2->vocab_size() == 8192);
  CHECK(q2->special_id("<|endoftext|>") == 8189);
  CHECK(q2->special_id("<|im_start|>") == 8190);
  CHECK(q2->special_id("<|im_end|>") == 8191);
  CHECK_FALSE(q2->special_id("<|nope|>").has_value());

  auto q1 = kvrun::Tokenizer::load(kvrun::test::fixture("tiny-qwen1"));
  CHECK(q1->vocab_size() == 6144);  // 6141 ranks + 3 specials = config.json vocab_size
  CHECK(q1->special_id("<|endoftext|>") == 6141);
  CHECK(q1->special_id("<|im_start|>") == 6142);
  CHECK(q1->special_id("<|im_end|>") == 6143);
  CHECK_FALSE(q1->special_id("<|extra_0|>").has_value());  // no room left in the vocab
  CHECK(q1->token_bytes(6143) == "<|im_end|>");
}

TEST_CASE("qwen.tiktoken: <|extra_N|> tokens as far as config.json vocab_size allows") {
  KVRUN_SKIP_UNLESS(kvrun::test::have_fixture("tiny-qwen1"), "fixture tiny-qwen1 missing");
  TempDir d;
  fs::copy_file(fs::path(kvrun::test::fixture("tiny-qwen1")) / "qwen.tiktoken", d.path / "qwen.tiktoken");
  {
    auto tok = kvrun::Tokenizer::load(d.path.string());  // no config.json: all 205 extras, as Qwen's tokenizer
    CHECK(tok->vocab_size() == 6141 + 3 + 205);
    CHECK(tok->special_id("<|extra_204|>") == 6141 + 3 + 204);
  }
  write_file(d.path / "config.json", R"({"vocab_size": 6149})");
  auto tok = kvrun::Tokenizer::load(d.path.string());
  CHECK(tok->vocab_size() == 6149);
  CHECK(tok->special_id("<|extra_4|>") == 6148);
  CHECK_FALSE(tok->special_id("<|extra_5|>").has_value());
  CHECK(tok->encode("<|extra_2|>") == std::vector<int32_t>{6146});

  write_file(d.path / "config.json", R"({"vocab_size": 6000})");
  const auto e = expect_error([&] { kvrun::Tokenizer::load(d.path.string()); });
  CHECK(e.kind() == kvrun::ErrorKind::model);
  CHECK(std::string(e.what()).find("vocab_size 6000") != std::string::npos);
}

TEST_CASE("round trip of the whole validation text, with timing") {
  const std::string path = kvrun::test::data_dir() + "/pystdlib-valid.txt";
  KVRUN_SKIP_UNLESS(fs::exists(path), "validation text pystdlib-valid.txt missing");
  KVRUN_SKIP_UNLESS(kvrun::test::have_fixture("tiny-qwen2") && kvrun::test::have_fixture("tiny-qwen1"),
                    "fixtures tiny-qwen2 / tiny-qwen1 missing");
  const std::string text = read_file(path);
  const std::string nfc = kvrun::nfc_normalize(text);
  for (const char* model : {"tiny-qwen2", "tiny-qwen1"}) {
    CAPTURE(model);
    const auto t0 = std::chrono::steady_clock::now();
    auto tok = kvrun::Tokenizer::load(kvrun::test::fixture(model));
    const auto t1 = std::chrono::steady_clock::now();
    const std::vector<int32_t> ids = tok->encode(text);
    const auto t2 = std::chrono::steady_clock::now();
    const std::string back = tok->decode(ids);
    const double load_s = std::chrono::duration<double>(t1 - t0).count();
    const double enc_s = std::chrono::duration<double>(t2 - t1).count();
    std::printf("%s (%s): load %.3f s, encode %zu bytes -> %zu tokens in %.3f s (%.1f MB/s)\n", model,
                tok->kind().c_str(), load_s, text.size(), ids.size(), enc_s, text.size() / enc_s / 1e6);
    CHECK(back == nfc);
    CHECK(ids.size() < text.size());
    CHECK(enc_s < 5.0);
  }
}

TEST_CASE("long pieces: runs of one letter, spaces and digits") {
  KVRUN_SKIP_UNLESS(kvrun::test::have_fixture("tiny-qwen2") && kvrun::test::have_fixture("tiny-qwen1"),
                    "fixtures tiny-qwen2 / tiny-qwen1 missing");
  for (const char* model : {"tiny-qwen2", "tiny-qwen1"}) {
    CAPTURE(model);
    auto tok = kvrun::Tokenizer::load(kvrun::test::fixture(model));
    const std::string text = std::string(200000, 'a') + std::string(100000, ' ') + "x" + std::string(50000, '\n') +
                             std::string(3000, '7') + "ab" + std::string(70000, ' ');
    const auto t0 = std::chrono::steady_clock::now();
    const auto ids = tok->encode(text);
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::printf("%s: %zu-byte text of long runs -> %zu tokens in %.3f s\n", model, text.size(), ids.size(), s);
    CHECK(tok->decode(ids) == text);
    CHECK(s < 5.0);
  }
}

TEST_CASE("special tokens: matched as one id, or as plain text when not allowed") {
  KVRUN_SKIP_UNLESS(kvrun::test::have_fixture("tiny-qwen2") && kvrun::test::have_fixture("tiny-qwen1"),
                    "fixtures tiny-qwen2 / tiny-qwen1 missing");
  for (const char* model : {"tiny-qwen2", "tiny-qwen1"}) {
    CAPTURE(model);
    auto tok = kvrun::Tokenizer::load(kvrun::test::fixture(model));
    const int32_t im_start = *tok->special_id("<|im_start|>");
    const int32_t im_end = *tok->special_id("<|im_end|>");
    const int32_t eot = *tok->special_id("<|endoftext|>");
    CHECK(tok->encode("<|im_start|>") == std::vector<int32_t>{im_start});
    CHECK(tok->encode("<|im_start|><|im_end|><|endoftext|>") == std::vector<int32_t>{im_start, im_end, eot});
    const auto mixed = tok->encode("a<|im_end|>b");
    REQUIRE(mixed.size() == 3);
    CHECK(mixed[1] == im_end);

    const auto plain = tok->encode("<|im_start|>user", /*allow_special=*/false);
    CHECK(plain.size() > 2);
    for (int32_t id : plain) CHECK(id < eot);
    CHECK(tok->decode(plain) == "<|im_start|>user");
    // A partial special token is plain text.
    const auto partial = tok->encode("<|im_start");
    for (int32_t id : partial) CHECK(id < eot);
  }
}

TEST_CASE("chatml_prompt") {
  using kvrun::ChatMessage;
  const std::vector<ChatMessage> msgs = {{"system", "You are a helpful assistant."}, {"user", "Hi there"}};
  CHECK(kvrun::chatml_prompt(msgs, true) ==
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\nHi there<|im_end|>\n"
        "<|im_start|>assistant\n");
  CHECK(kvrun::chatml_prompt({{"user", "q"}}, false) == "<|im_start|>user\nq<|im_end|>\n");
  CHECK(kvrun::chatml_prompt({}, true) == "<|im_start|>assistant\n");

  KVRUN_SKIP_UNLESS(kvrun::test::have_fixture("tiny-qwen2"), "fixture tiny-qwen2 missing");
  // Matches the fixture's reference case for the same text.
  auto tok = kvrun::Tokenizer::load(kvrun::test::fixture("tiny-qwen2"));
  const auto ids = tok->encode(kvrun::chatml_prompt({{"user", "Write a loop"}}, true));
  CHECK(ids == std::vector<int32_t>{8190, 1907, 198, 6965, 317, 1562, 8191, 198, 8190, 345, 806, 1384, 198});
}

TEST_CASE("StreamDecoder: multi-byte characters split across tokens") {
  KVRUN_SKIP_UNLESS(kvrun::test::have_fixture("tiny-qwen2") && kvrun::test::have_fixture("tiny-qwen1"),
                    "fixtures tiny-qwen2 / tiny-qwen1 missing");
  for (const char* model : {"tiny-qwen2", "tiny-qwen1"}) {
    CAPTURE(model);
    auto tok = kvrun::Tokenizer::load(kvrun::test::fixture(model));
    const std::string text = "日本語のテキスト 🙂 naïve café — 🚀🚀";
    const auto ids = tok->encode(text);
    kvrun::StreamDecoder dec(*tok);
    std::string all;
    int empty_pushes = 0;
    for (int32_t id : ids) {
      const std::string piece = dec.push(id);
      CHECK(valid_utf8(piece));
      if (piece.empty()) ++empty_pushes;
      all += piece;
    }
    CHECK(empty_pushes > 0);  // some characters did span several tokens
    CHECK(dec.flush().empty());
    CHECK(all == text);

    // A dangling lead byte becomes U+FFFD at flush, or as soon as a byte proves it invalid.
    const auto lead = id_of_bytes(*tok, "\xE6");
    const auto letter = id_of_bytes(*tok, "a");
    REQUIRE(lead.has_value());
    REQUIRE(letter.has_value());
    kvrun::StreamDecoder d2(*tok);
    CHECK(d2.push(*letter) == "a");
    CHECK(d2.push(*lead).empty());
    CHECK(d2.flush() == "\xEF\xBF\xBD");
    CHECK(d2.push(*lead).empty());
    CHECK(d2.push(*letter) == "\xEF\xBF\xBD" "a");
    CHECK(d2.flush().empty());
  }
}

TEST_CASE("token_bytes and decode: ids out of range are usage errors") {
  KVRUN_SKIP_UNLESS(kvrun::test::have_fixture("tiny-qwen2") && kvrun::test::have_fixture("tiny-qwen1"),
                    "fixtures tiny-qwen2 / tiny-qwen1 missing");
  for (const char* model : {"tiny-qwen2", "tiny-qwen1"}) {
    CAPTURE(model);
    auto tok = kvrun::Tokenizer::load(kvrun::test::fixture(model));
    CHECK(tok->token_bytes(tok->vocab_size() - 1) == "<|im_end|>");
    for (int32_t bad : {-1, tok->vocab_size(), 1 << 30}) {
      CAPTURE(bad);
      const auto e = expect_error([&] { tok->token_bytes(bad); });
      CHECK(e.kind() == kvrun::ErrorKind::usage);
      CHECK(std::string(e.what()).find(std::to_string(bad)) != std::string::npos);
      CHECK(expect_error([&] { tok->decode({1, bad}); }).kind() == kvrun::ErrorKind::usage);
      kvrun::StreamDecoder dec(*tok);
      CHECK(expect_error([&] { dec.push(bad); }).kind() == kvrun::ErrorKind::usage);
    }
  }
}

TEST_CASE("NFC normalization and invalid UTF-8") {
  CHECK(kvrun::nfc_normalize("cafe\xCC\x81") == "caf\xC3\xA9");  // e + combining acute -> é
  CHECK(kvrun::nfc_normalize("") == "");
  CHECK(kvrun::nfc_normalize(std::string("a\0b", 3)) == std::string("a\0b", 3));
  for (const std::string bad : {"\xFF", "ab\xC3", "\xC0\xAF", "\xED\xA0\x80", "\xF4\x90\x80\x80", "x\x80"}) {
    const auto e = expect_error([&] { kvrun::nfc_normalize(bad); });
    CHECK(e.kind() == kvrun::ErrorKind::usage);
    CHECK(std::string(e.what()).find("UTF-8") != std::string::npos);
  }
  KVRUN_SKIP_UNLESS(kvrun::test::have_fixture("tiny-qwen2"), "fixture tiny-qwen2 missing");
  auto tok = kvrun::Tokenizer::load(kvrun::test::fixture("tiny-qwen2"));
  CHECK(expect_error([&] { tok->encode("ok \xE6\x97 broken"); }).kind() == kvrun::ErrorKind::usage);
  // Decomposed input encodes like the composed form.
  CHECK(tok->encode("cafe\xCC\x81") == tok->encode("caf\xC3\xA9"));
}

TEST_CASE("errors: directory without tokenizer files, missing directory") {
  TempDir d;
  const auto e = expect_error([&] { kvrun::Tokenizer::load(d.path.string()); });
  CHECK(e.kind() == kvrun::ErrorKind::model);
  const std::string msg = e.what();
  CHECK(msg.find(d.path.string()) != std::string::npos);
  CHECK(msg.find("tokenizer.json") != std::string::npos);
  CHECK(msg.find("qwen.tiktoken") != std::string::npos);

  const auto e2 = expect_error([&] { kvrun::Tokenizer::load((d.path / "nope").string()); });
  CHECK(e2.kind() == kvrun::ErrorKind::model);
  CHECK(std::string(e2.what()).find((d.path / "nope").string()) != std::string::npos);
}

TEST_CASE("errors: SentencePiece-style tokenizer.json (Metaspace) is refused") {
  TempDir d;
  write_file(d.path / "tokenizer.json", R"({
    "version": "1.0", "added_tokens": [], "normalizer": null,
    "pre_tokenizer": {"type": "Metaspace", "replacement": "\u2581", "prepend_scheme": "first", "split": false},
    "decoder": {"type": "Metaspace", "replacement": "\u2581", "prepend_scheme": "first", "split": false},
    "model": {"type": "BPE", "byte_fallback": true, "vocab": {"<unk>": 0, "a": 1}, "merges": []}
  })");
  const auto e = expect_error([&] { kvrun::Tokenizer::load(d.path.string()); });
  CHECK(e.kind() == kvrun::ErrorKind::model);
  const std::string msg = e.what();
  CHECK(msg.find("Metaspace") != std::string::npos);
  CHECK(msg.find((d.path / "tokenizer.json").string()) != std::string::npos);

  write_file(d.path / "tokenizer.json", "{ not json");
  const auto e2 = expect_error([&] { kvrun::Tokenizer::load(d.path.string()); });
  CHECK(e2.kind() == kvrun::ErrorKind::model);
  CHECK(std::string(e2.what()).find("JSON") != std::string::npos);

  write_file(d.path / "tokenizer.json", R"({"model": {"type": "Unigram", "vocab": []}})");
  const auto e3 = expect_error([&] { kvrun::Tokenizer::load(d.path.string()); });
  CHECK(std::string(e3.what()).find("Unigram") != std::string::npos);
}

TEST_CASE("errors: malformed qwen.tiktoken names the line") {
  TempDir d;
  write_file(d.path / "qwen.tiktoken", "IQ== 0\nIg== 1\nnot*base64 2\n");
  const auto e = expect_error([&] { kvrun::Tokenizer::load(d.path.string()); });
  CHECK(e.kind() == kvrun::ErrorKind::model);
  CHECK(std::string(e.what()).find("line 3") != std::string::npos);

  write_file(d.path / "qwen.tiktoken", "IQ== 0\nIg== x\n");
  CHECK(std::string(expect_error([&] { kvrun::Tokenizer::load(d.path.string()); }).what()).find("line 2") !=
        std::string::npos);
  write_file(d.path / "qwen.tiktoken", "IQ== 0\nIg== 1\n");  // well-formed but lacks most bytes
  CHECK(std::string(expect_error([&] { kvrun::Tokenizer::load(d.path.string()); }).what()).find("256 bytes") !=
        std::string::npos);
}

TEST_CASE("tokenizer.json wins over qwen.tiktoken; merges as \"a b\" strings work too") {
  KVRUN_SKIP_UNLESS(kvrun::test::have_fixture("tiny-qwen2") && kvrun::test::have_fixture("tiny-qwen1"),
                    "fixtures tiny-qwen2 / tiny-qwen1 missing");
  const fs::path q2 = kvrun::test::fixture("tiny-qwen2");
  TempDir d;
  fs::copy_file(fs::path(kvrun::test::fixture("tiny-qwen1")) / "qwen.tiktoken", d.path / "qwen.tiktoken");
  // Older tokenizer.json layout: each merge a "a b" string.
  json j = json::parse(read_file(q2 / "tokenizer.json"));
  json merges = json::array();
  for (const json& m : j["model"]["merges"]) merges.push_back(m[0].get<std::string>() + " " + m[1].get<std::string>());
  j["model"]["merges"] = merges;
  write_file(d.path / "tokenizer.json", j.dump());
  fs::copy_file(q2 / "tokenizer_cases.json", d.path / "tokenizer_cases.json");
  check_cases(d.path.string(), "tokenizer.json (byte-level BPE)");

  // A pre-tokenizer given as a bare Split (no Sequence) with a ByteLevel-less file is refused,
  // since its vocabulary could not be byte-level.
  j["pre_tokenizer"] = j["pre_tokenizer"]["pretokenizers"][0];
  write_file(d.path / "tokenizer.json", j.dump());
  const auto e = expect_error([&] { kvrun::Tokenizer::load(d.path.string()); });
  CHECK(std::string(e.what()).find("ByteLevel") != std::string::npos);
}
