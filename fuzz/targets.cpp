// kvrun — fuzz targets (see targets.hpp). Only kvrun::Error may leave a parser; what an accepted
// input yields is checked against what the parser's header promises.
#include "targets.hpp"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <string_view>
#include <map>
#include <tuple>

#include "kvrun/config.hpp"
#include "kvrun/dtype.hpp"
#include "kvrun/error.hpp"
#include "kvrun/models/checkpoint.hpp"
#include "kvrun/models/tokenizer.hpp"

#ifndef KVRUN_FIXTURES_DEFAULT
#define KVRUN_FIXTURES_DEFAULT "../shared/models"
#endif

namespace kvrun::fuzz {
namespace {

// A broken promise: say which and abort, so libFuzzer (or the test run) records the input.
[[noreturn]] void violated(const char* target, const std::string& what) {
  std::fprintf(stderr, "fuzz target %s: %s\n", target, what.c_str());
  std::fflush(stderr);
  std::abort();
}

void require(bool ok, const char* target, const std::string& what) {
  if (!ok) violated(target, what);
}

// A refusal must have the documented category and name the input in its message.
void check_refusal(const Error& e, ErrorKind kind, const std::string& name, const char* target) {
  const std::string msg = e.what();
  require(e.kind() == kind, target,
          std::string("refused with category ") + error_kind_name(e.kind()) + " instead of " + error_kind_name(kind) +
              ": " + msg);
  require(name.empty() || msg.find(name) != std::string::npos, target,
          "the message does not name '" + name + "': " + msg);
}

std::string_view as_text(const uint8_t* data, size_t size) {
  return std::string_view(reinterpret_cast<const char*>(data), size);
}

// Text every loaded tokenizer is asked to encode: ASCII code, multi-byte characters, specials,
// whitespace runs, digits.
constexpr std::string_view kSample =
    "def f(x):\n    return x * 2  # caf\xC3\xA9 \xE4\xB8\xAD\xE6\x96\x87 \xF0\x9F\x98\x80\n\n"
    "<|im_start|>user\nHi 12345<|im_end|>\n<|endoftext|>   \t\r\n";

}  // namespace

// ---- safetensors ---------------------------------------------------------------------------------

void safetensors(const uint8_t* data, size_t size) {
  constexpr const char* kT = "safetensors";
  const std::string name = "fuzz.safetensors";
  std::unique_ptr<SafetensorsFile> f;
  try {
    f = SafetensorsFile::parse(data, size, name);
  } catch (const Error& e) {
    check_refusal(e, ErrorKind::model, name, kT);
    return;
  }
  // Accepted: 8 + N header bytes, then the data section every tensor lies in, without overlaps.
  require(size >= 10, kT, "accepted a file of " + std::to_string(size) + " bytes");
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | data[i];
  require(n <= size - 8, kT, "accepted a header length beyond the file");
  const auto* first = reinterpret_cast<const char*>(data) + 8 + n;
  const auto* last = reinterpret_cast<const char*>(data) + size;
  std::vector<std::pair<const char*, const char*>> ranges;
  unsigned sum = 0;
  for (const auto& [tname, t] : f->tensors()) {
    require(t.name == tname && t.file == name, kT, "tensor '" + tname + "' has the wrong name or file");
    require(f->has(tname) && &f->tensor(tname) == &t, kT, "tensor '" + tname + "' is not found by name");
    size_t numel = 1;
    for (int64_t d : t.shape) {
      require(d >= 0, kT, "tensor '" + tname + "' has a negative dimension");
      numel *= size_t(d);
    }
    require(t.nbytes == numel * dtype_size(t.dtype), kT, "tensor '" + tname + "' nbytes != numel * dtype size");
    const auto* b = static_cast<const char*>(t.data);
    require(b >= first && b <= last && t.nbytes <= size_t(last - b), kT,
            "tensor '" + tname + "' lies outside the data section");
    if (t.nbytes) {
      sum += static_cast<unsigned char>(b[0]) + static_cast<unsigned char>(b[t.nbytes - 1]);  // ASan checks these
      ranges.emplace_back(b, b + t.nbytes);
    }
  }
  std::sort(ranges.begin(), ranges.end());
  for (size_t i = 1; i < ranges.size(); ++i)
    require(ranges[i].first >= ranges[i - 1].second, kT, "accepted overlapping tensors");
  for (const auto& [uname, dt] : f->unsupported()) {
    require(!f->has(uname), kT, "unsupported tensor '" + uname + "' reported by has()");
    try {
      f->tensor(uname);
      violated(kT, "tensor() returned unsupported tensor '" + uname + "' (" + dt + ")");
    } catch (const Error& e) {
      check_refusal(e, ErrorKind::model, uname, kT);
    }
  }
  volatile unsigned sink = sum;  // keeps the reads
  (void)sink;
}

void safetensors_index(const uint8_t* data, size_t size) {
  constexpr const char* kT = "safetensors_index";
  const std::string name = "fuzz/model.safetensors.index.json";
  std::map<std::string, std::string> wm;
  try {
    wm = parse_safetensors_index(std::string(as_text(data, size)), name);
  } catch (const Error& e) {
    check_refusal(e, ErrorKind::model, name, kT);
    return;
  }
  require(!wm.empty(), kT, "accepted an empty weight_map");
  for (const auto& [tensor, shard] : wm) {
    require(!shard.empty() && shard.front() != '/', kT, "accepted shard name '" + shard + "'");
    // No ".." path component may survive: the shard must stay inside the model directory.
    size_t at = 0;
    while (at <= shard.size()) {
      const size_t slash = std::min(shard.find('/', at), shard.size());
      require(shard.substr(at, slash - at) != "..", kT, "accepted shard name '" + shard + "' that leaves the directory");
      at = slash + 1;
    }
  }
}

// ---- config.json / generation_config.json -----------------------------------------------------------

void model_config(const uint8_t* data, size_t size) {
  constexpr const char* kT = "model_config";
  const std::string text(as_text(data, size));
  const std::string name = "fuzz/config.json";
  try {
    const ModelConfig c = parse_model_config(text, name);
    require(c.hidden > 0 && c.num_layers > 0 && c.num_heads > 0 && c.num_kv_heads > 0 && c.head_dim > 0 &&
                c.intermediate > 0 && c.vocab > 0 && c.max_positions > 0,
            kT, "accepted a non-positive size");
    require(c.num_heads % c.num_kv_heads == 0, kT, "accepted num_kv_heads that does not divide num_heads");
    require(c.rot_dim >= 2 && c.rot_dim % 2 == 0 && c.rot_dim <= c.head_dim, kT,
            "accepted rotary dims " + std::to_string(c.rot_dim) + " for head_dim " + std::to_string(c.head_dim));
    require(c.rope_theta > 1.0f, kT, "accepted rope_theta <= 1");
    for (int32_t id : c.eos_ids) require(id >= 0, kT, "accepted a negative eos id");
    require(c.torch_dtype.empty() || c.torch_dtype == "bfloat16" || c.torch_dtype == "float16" ||
                c.torch_dtype == "float32",
            kT, "accepted dtype '" + c.torch_dtype + "'");
  } catch (const Error& e) {
    check_refusal(e, ErrorKind::model, name, kT);
  }
  const std::string gname = "fuzz/generation_config.json";
  try {
    const GenerationDefaults g = parse_generation_defaults(text, gname);
    require(g.top_k.value_or(0) >= 0 && g.max_new_tokens.value_or(0) >= 0, kT, "accepted a negative count");
    for (int32_t id : g.eos_ids) require(id >= 0, kT, "accepted a negative eos id");
  } catch (const Error& e) {
    check_refusal(e, ErrorKind::model, gname, kT);
  }
}

// ---- pipeline TOML ------------------------------------------------------------------------------

namespace {
void check_pipeline(const PipelineConfig& c, const char* kT) {
  require(c.threads >= 0, kT, "accepted threads = " + std::to_string(c.threads));
  require(c.max_step_tokens >= 1, kT, "accepted max_step_tokens = " + std::to_string(c.max_step_tokens));
  require(c.block_tokens >= 1 && c.block_tokens <= 4096, kT, "accepted block_tokens = " + std::to_string(c.block_tokens));
  require(c.max_tokens >= 0, kT, "accepted max_tokens = " + std::to_string(c.max_tokens));
  require(c.memory_fraction >= 0 && c.memory_fraction <= 1, kT, "accepted memory_fraction out of [0, 1]");
  require(c.max_new_tokens.value_or(0) >= 0, kT, "accepted max_new_tokens < 0");
  require(c.top_k.value_or(0) >= 0, kT, "accepted top_k < 0");
  require(c.temperature.value_or(0) >= 0, kT, "accepted temperature < 0");
  require(!c.top_p || (*c.top_p > 0 && *c.top_p <= 1), kT, "accepted top_p out of (0, 1]");
  require(!c.min_p || (*c.min_p >= 0 && *c.min_p <= 1), kT, "accepted min_p out of [0, 1]");
  require(c.repetition_penalty.value_or(1) > 0, kT, "accepted repetition_penalty <= 0");
}
}  // namespace

void pipeline_toml(const uint8_t* data, size_t size) {
  constexpr const char* kT = "pipeline_toml";
  const std::string text(as_text(data, size));
  const std::string name = "fuzz.toml";
  try {
    check_pipeline(parse_config(text, name), kT);
  } catch (const Error& e) {
    check_refusal(e, ErrorKind::usage, name, kT);
  }
  // The first line as a --set override on an empty file (its message names the override).
  const std::string ov = text.substr(0, text.find('\n'));
  try {
    check_pipeline(parse_config("", name, {ov}), kT);
  } catch (const Error& e) {
    check_refusal(e, ErrorKind::usage, "", kT);
  }
}

// ---- tokenizers ------------------------------------------------------------------------------------

namespace {

// A tokenizer the fuzzer built from a file: encoding the sample either works, with ids that decode,
// or is refused with a kvrun::Error (a pattern from the file may hit PCRE2's match limit).
void exercise_loaded(const Tokenizer& tok, const char* kT, bool must_round_trip) {
  require(tok.vocab_size() > 0, kT, "accepted an empty vocabulary");
  for (bool allow_special : {true, false}) {
    std::vector<int32_t> ids;
    try {
      ids = tok.encode(kSample, allow_special);
    } catch (const Error&) {
      require(!must_round_trip, kT, "refused to encode the sample");
      continue;
    }
    for (int32_t id : ids)
      require(id >= 0 && id < tok.vocab_size(), kT, "encode produced id " + std::to_string(id) + " outside the vocabulary");
    std::string text;
    try {
      text = tok.decode(ids);
    } catch (const Error& e) {
      violated(kT, std::string("decode refused ids that encode produced: ") + e.what());
    }
    if (must_round_trip)
      require(text == kSample, kT, "decode(encode(sample)) differs from the sample: '" + text + "'");
  }
}

}  // namespace

void tokenizer_json(const uint8_t* data, size_t size) {
  constexpr const char* kT = "tokenizer_json";
  const std::string name = "fuzz/tokenizer.json";
  std::unique_ptr<Tokenizer> tok;
  try {
    tok = Tokenizer::from_tokenizer_json(as_text(data, size), name);
  } catch (const Error& e) {
    check_refusal(e, ErrorKind::model, name, kT);
    return;
  }
  exercise_loaded(*tok, kT, /*must_round_trip=*/false);
}

void qwen_tiktoken(const uint8_t* data, size_t size) {
  constexpr const char* kT = "qwen_tiktoken";
  const std::string name = "fuzz/qwen.tiktoken";
  std::unique_ptr<Tokenizer> tok;
  try {
    tok = Tokenizer::from_qwen_tiktoken(as_text(data, size), name);
  } catch (const Error& e) {
    check_refusal(e, ErrorKind::model, name, kT);
    return;
  }
  // Ranks are unique byte strings and every merge joins two of them into a third, so byte-level BPE
  // loses nothing: the sample must come back exactly.
  for (const char* s : {"<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|extra_204|>"})
    require(tok->special_id(s).has_value(), kT, std::string("no special token ") + s);
  exercise_loaded(*tok, kT, /*must_round_trip=*/true);
  // With a config.json vocab_size: 3 specials must fit, extras only as far as it reaches.
  const int64_t ranks = tok->vocab_size() - 3 - 205;
  const int64_t vocab = ranks + (size ? data[0] % 6 : 0);
  try {
    auto limited = Tokenizer::from_qwen_tiktoken(as_text(data, size), name, vocab);
    require(vocab >= ranks + 3, kT, "accepted vocab_size " + std::to_string(vocab) + " below ranks + 3");
    require(limited->vocab_size() == vocab, kT, "vocab_size " + std::to_string(limited->vocab_size()) +
                                                    " instead of config.json's " + std::to_string(vocab));
    exercise_loaded(*limited, kT, /*must_round_trip=*/true);
  } catch (const Error& e) {
    require(vocab < ranks + 3, kT, std::string("refused a vocab_size that holds the specials: ") + e.what());
    check_refusal(e, ErrorKind::model, name, kT);
  }
}

namespace {

struct FixtureTokenizers {
  std::unique_ptr<Tokenizer> qwen2, qwen1;
};

const FixtureTokenizers& fixture_tokenizers() {
  static const FixtureTokenizers t = [] {
    const char* env = std::getenv("KVRUN_FIXTURES");
    const std::string dir = env && *env ? env : KVRUN_FIXTURES_DEFAULT;
    FixtureTokenizers f;
    try {
      f.qwen2 = Tokenizer::load(dir + "/tiny-qwen2");
      f.qwen1 = Tokenizer::load(dir + "/tiny-qwen1");
    } catch (const Error& e) {
      std::fprintf(stderr, "tokenizer_encode needs the fixture models (set KVRUN_FIXTURES): %s\n", e.what());
      std::abort();
    }
    return f;
  }();
  return t;
}

}  // namespace

void tokenizer_encode(const uint8_t* data, size_t size) {
  constexpr const char* kT = "tokenizer_encode";
  if (size == 0) return;
  const FixtureTokenizers& fx = fixture_tokenizers();
  const Tokenizer& tok = (data[0] & 1) ? *fx.qwen1 : *fx.qwen2;
  const bool allow_special = (data[0] & 2) != 0;
  const std::string_view text = as_text(data + 1, size - 1);

  std::string nfc;
  bool valid = true;
  try {
    nfc = nfc_normalize(text);
  } catch (const Error& e) {
    check_refusal(e, ErrorKind::usage, "", kT);
    valid = false;
  }
  std::vector<int32_t> ids;
  try {
    ids = tok.encode(text, allow_special);
    require(valid, kT, "encoded text that is not valid UTF-8");
  } catch (const Error& e) {
    require(!valid, kT, std::string("refused valid UTF-8: ") + e.what());
    check_refusal(e, ErrorKind::usage, "", kT);
  }
  if (valid) {
    // Byte-level BPE is lossless: the ids decode to the NFC form of the input, also streamed.
    for (int32_t id : ids)
      require(id >= 0 && id < tok.vocab_size(), kT, "encode produced id " + std::to_string(id) + " outside the vocabulary");
    require(tok.decode(ids) == nfc, kT, "decode(encode(text)) != NFC(text)");
    StreamDecoder sd(tok);
    std::string streamed;
    for (int32_t id : ids) streamed += sd.push(id);
    streamed += sd.flush();
    require(streamed == nfc, kT, "streamed decode != NFC(text)");
    if (!allow_special)
      for (const char* s : {"<|endoftext|>", "<|im_start|>", "<|im_end|>"})
        require(std::find(ids.begin(), ids.end(), *tok.special_id(s)) == ids.end(), kT,
                std::string("allow_special = false still produced ") + s);
  }
  // The same bytes read as token ids: decode either works or refuses with Error(usage).
  std::vector<int32_t> raw_ids;
  for (size_t i = 1; i + 4 <= size && raw_ids.size() < 64; i += 4) {
    uint32_t v = 0;
    for (int k = 3; k >= 0; --k) v = (v << 8) | data[i + size_t(k)];
    raw_ids.push_back(static_cast<int32_t>(v % 16384u) - 1024);  // mostly in range, some outside
  }
  try {
    tok.decode(raw_ids);
  } catch (const Error& e) {
    check_refusal(e, ErrorKind::usage, "", kT);
  }
}

const std::vector<Target>& targets() {
  static const std::vector<Target> t = {
      {"safetensors", safetensors},       {"safetensors_index", safetensors_index},
      {"model_config", model_config},     {"pipeline_toml", pipeline_toml},
      {"tokenizer_json", tokenizer_json}, {"qwen_tiktoken", qwen_tiktoken},
      {"tokenizer_encode", tokenizer_encode},
  };
  return t;
}

}  // namespace kvrun::fuzz
