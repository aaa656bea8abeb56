// kvrun — Hugging Face tokenizer.json loader (byte-level BPE only).
//
// Layout read (tokenizers "version": "1.0"):
//   normalizer:    null | {"type": "NFC"} | {"type": "Sequence", "normalizers": [NFC...]}
//   pre_tokenizer: {"type": "Sequence", "pretokenizers": [ {"type": "Split", "pattern": {"Regex": p}
//                  | {"String": s}, "behavior": "Isolated", "invert": false}, ...,
//                  {"type": "ByteLevel", "add_prefix_space": false, "use_regex": bool} ]}
//                  or a single Split / ByteLevel object
//   decoder:       null | {"type": "ByteLevel"} (also inside a Sequence)
//   model:         {"type": "BPE", "vocab": {token: id}, "merges": ["a b", ...] | [["a", "b"], ...],
//                   "ignore_merges": bool, "byte_fallback": false, ...}
//   added_tokens:  [{"id", "content", "special", "lstrip", "rstrip", "single_word", ...}]
// Tokens in model.vocab / model.merges are byte-level strings: every raw byte is one code point of
// the GPT-2 byte<->unicode table.
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "kvrun/error.hpp"
#include "tokenizer_impl.hpp"

namespace kvrun::tok {
namespace {

using nlohmann::json;

// Sanity bound on token ids. Memory is proportional to the largest id, so it also bounds what a
// small hostile file can make kvrun allocate (~150 MB); real vocabularies stay below 300k.
constexpr int64_t kMaxVocab = int64_t(1) << 22;
// Nesting of "Sequence" normalizers / pre-tokenizers / decoders (real files: 1 level).
constexpr int kMaxSequenceDepth = 16;

// Code point -> raw byte for byte-level strings; -1 where a code point stands for no byte.
const std::array<int16_t, 324>& unicode_to_byte() {
  static const std::array<int16_t, 324> table = [] {
    std::array<int16_t, 324> t;
    t.fill(-1);
    const auto& fwd = byte_to_unicode();
    for (int b = 0; b < 256; ++b) t[fwd[static_cast<size_t>(b)]] = static_cast<int16_t>(b);
    return t;
  }();
  return table;
}

std::string utf8_of(char32_t cp) {
  std::string s;
  if (cp < 0x80) {
    s += static_cast<char>(cp);
  } else if (cp < 0x800) {
    s += static_cast<char>(0xC0 | (cp >> 6));
    s += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    s += static_cast<char>(0xE0 | (cp >> 12));
    s += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    s += static_cast<char>(0x80 | (cp & 0x3F));
  }
  return s;
}

// Byte-level string -> raw bytes; nullopt if some character is outside the byte-level alphabet.
std::optional<std::string> byte_level_to_bytes(std::string_view s) {
  const auto& table = unicode_to_byte();
  std::string out;
  out.reserve(s.size());
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  size_t i = 0;
  while (i < s.size()) {
    char32_t cp;
    size_t len;
    if (p[i] < 0x80) {
      cp = p[i], len = 1;
    } else if ((p[i] & 0xE0) == 0xC0 && i + 1 < s.size()) {
      cp = ((p[i] & 0x1Fu) << 6) | (p[i + 1] & 0x3Fu), len = 2;
    } else {
      return std::nullopt;  // 3+-byte characters are all above U+0143
    }
    if (cp >= table.size() || table[cp] < 0) return std::nullopt;
    out += static_cast<char>(table[cp]);
    i += len;
  }
  return out;
}

std::string type_of(const json& j) { return j.is_object() && j.contains("type") ? j["type"].get<std::string>() : ""; }

bool truthy(const json& obj, const char* key) {
  return obj.contains(key) && !obj[key].is_null() && obj[key].get<bool>();
}

class Loader {
 public:
  // `text`: the contents of the tokenizer.json that `path` names (in messages).
  Loader(std::string_view text, std::string path) : text_(text), path_(std::move(path)) {}

  std::unique_ptr<Tokenizer> load() {
    const json root = parse();
    try {
      return build(root);
    } catch (const json::exception& e) {
      bad(std::string("unexpected content (") + e.what() + ")");
    }
  }

 private:
  [[noreturn]] void bad(const std::string& what) const {
    fail(ErrorKind::model, path_ + ": " + what);
  }
  [[noreturn]] void unsupported(const std::string& what) const {
    fail(ErrorKind::model, path_ + ": " + what +
                               "; kvrun reads byte-level BPE tokenizer.json files (Split regex + ByteLevel "
                               "pre-tokenizer, as Qwen2 and Llama 3 use) — convert the tokenizer or use a model "
                               "with a byte-level BPE tokenizer");
  }

  json parse() const {
    try {
      return json::parse(text_);
    } catch (const json::exception& e) {  // parse_error, or out_of_range for a number like 1e400
      bad(std::string("not valid JSON (") + e.what() + "); re-download the file");
    }
  }

  void check_depth(int depth, const char* what) const {
    if (depth > kMaxSequenceDepth)
      bad(std::string(what) + " Sequences are nested more than " + std::to_string(kMaxSequenceDepth) + " levels deep");
  }

  void check_normalizer(const json& n, int depth = 0) const {
    if (n.is_null()) return;
    check_depth(depth, "normalizer");
    const std::string t = type_of(n);
    if (t == "NFC") return;
    if (t == "Sequence") {
      for (const json& sub : n.at("normalizers")) check_normalizer(sub, depth + 1);
      return;
    }
    unsupported("normalizer type \"" + t + "\" is not supported (only NFC is applied)");
  }

  // Appends the regex stages of one pre-tokenizer; notes whether a ByteLevel one was seen.
  void add_pre_tokenizer(const json& p, BpeModel& m, bool& byte_level, int depth = 0) const {
    check_depth(depth, "pre_tokenizer");
    const std::string t = type_of(p);
    if (t == "Sequence") {
      for (const json& sub : p.at("pretokenizers")) add_pre_tokenizer(sub, m, byte_level, depth + 1);
    } else if (t == "Split") {
      const json& pat = p.at("pattern");
      const std::string behavior = p.value("behavior", std::string("Isolated"));
      if (behavior != "Isolated")
        unsupported("pre_tokenizer Split with behavior \"" + behavior + "\" is not supported (only \"Isolated\")");
      if (truthy(p, "invert")) unsupported("pre_tokenizer Split with \"invert\": true is not supported");
      if (pat.contains("Regex")) {
        m.stages.emplace_back(pat["Regex"].get<std::string>(), false, path_ + " pre_tokenizer Split pattern");
      } else if (pat.contains("String")) {
        m.stages.emplace_back(pat["String"].get<std::string>(), true, path_ + " pre_tokenizer Split pattern");
      } else {
        bad("pre_tokenizer Split has a \"pattern\" with neither \"Regex\" nor \"String\"; fix the file");
      }
    } else if (t == "ByteLevel") {
      if (truthy(p, "add_prefix_space"))
        unsupported("pre_tokenizer ByteLevel with \"add_prefix_space\": true is not supported");
      // tokenizers' ByteLevel defaults to use_regex = true (the GPT-2 split).
      if (!p.contains("use_regex") || p["use_regex"].get<bool>())
        m.stages.emplace_back(kGpt2Pattern, false, "GPT-2 ByteLevel pattern");
      byte_level = true;
    } else if (t == "Metaspace") {
      unsupported("pre_tokenizer type \"Metaspace\" (SentencePiece-style) is not supported");
    } else {
      unsupported("pre_tokenizer type \"" + t + "\" is not supported");
    }
  }

  void check_decoder(const json& d, int depth = 0) const {
    if (d.is_null()) return;
    check_depth(depth, "decoder");
    const std::string t = type_of(d);
    if (t == "ByteLevel") return;
    if (t == "Sequence") {
      for (const json& sub : d.at("decoders")) check_decoder(sub, depth + 1);
      return;
    }
    unsupported("decoder type \"" + t + "\" is not supported (only ByteLevel)");
  }

  std::unique_ptr<Tokenizer> build(const json& root) {
    if (!root.is_object()) bad("the top level is not a JSON object; re-download the file");
    if (!root.contains("model") || !root["model"].is_object()) bad("no \"model\" object; re-download the file");
    const json& model = root["model"];
    const std::string model_type = model.value("type", std::string("BPE"));
    if (model_type != "BPE") unsupported("model type \"" + model_type + "\" is not supported");
    // The pre-tokenizer first: it names SentencePiece-style files best (Metaspace).
    BpeModel m;
    m.kind = "tokenizer.json (byte-level BPE)";
    m.whole_piece_shortcut = model.value("ignore_merges", false);
    const json pre = root.value("pre_tokenizer", json());
    bool byte_level = false;
    if (!pre.is_null()) add_pre_tokenizer(pre, m, byte_level);
    if (!byte_level) unsupported("the pre_tokenizer has no ByteLevel step, so the vocabulary is not byte-level");
    if (truthy(model, "byte_fallback"))
      unsupported("model.byte_fallback is true (SentencePiece-style byte fallback), which is not supported");
    for (const char* key : {"continuing_subword_prefix", "end_of_word_suffix"})
      if (model.contains(key) && !model[key].is_null() && !model[key].get<std::string>().empty())
        unsupported(std::string("model.") + key + " is set, which is not supported");
    if (model.contains("dropout") && !model["dropout"].is_null() && model["dropout"].get<double>() > 0.0)
      unsupported("model.dropout is set (training-time BPE dropout), which is not supported at inference");
    check_normalizer(root.value("normalizer", json()));
    check_decoder(root.value("decoder", json()));

    // ---- vocabulary --------------------------------------------------------------------------
    if (!model.contains("vocab") || !model["vocab"].is_object()) bad("model.vocab is missing or not an object");
    const json& vocab = model["vocab"];
    std::unordered_map<std::string, int32_t> level_ids;  // byte-level string -> id
    level_ids.reserve(vocab.size());
    int64_t max_id = -1;
    for (auto it = vocab.begin(); it != vocab.end(); ++it) {
      if (!it.value().is_number_integer())
        bad("model.vocab token \"" + it.key() + "\" has an id that is not an integer");
      const int64_t id = it.value().get<int64_t>();
      if (id < 0 || id >= kMaxVocab)
        bad("model.vocab token \"" + it.key() + "\" has id " + std::to_string(id) + ", outside 0.." +
            std::to_string(kMaxVocab - 1));
      level_ids.emplace(it.key(), static_cast<int32_t>(id));
      max_id = std::max(max_id, id);
    }
    const json added = root.value("added_tokens", json::array());
    if (!added.is_array()) bad("added_tokens is not an array");
    for (const json& a : added) {
      const json& id = a.at("id");
      // Checked before any use: get<int32_t>() would silently truncate a larger integer.
      if (!id.is_number_integer() || id.get<int64_t>() < 0 || id.get<int64_t>() >= kMaxVocab) {
        const json& c = a.at("content");
        bad("added token \"" + (c.is_string() ? c.get<std::string>() : std::string("?")) + "\" has id " +
            (id.is_number_integer() ? std::to_string(id.get<int64_t>()) : std::string("that is not an integer")) +
            ", outside 0.." + std::to_string(kMaxVocab - 1));
      }
      max_id = std::max(max_id, id.get<int64_t>());
    }

    const auto size = static_cast<size_t>(max_id + 1);
    m.bytes.assign(size, std::string());
    m.present.assign(size, 0);
    m.regular_ids.reserve(level_ids.size());
    for (const auto& [level, id] : level_ids) {
      auto raw = byte_level_to_bytes(level);
      if (!raw)
        unsupported("model.vocab token \"" + level + "\" (id " + std::to_string(id) +
                    ") has characters outside the ByteLevel alphabet");
      if (m.present[static_cast<size_t>(id)])
        bad("model.vocab has two tokens with id " + std::to_string(id) + "; re-download the file");
      m.present[static_cast<size_t>(id)] = 1;
      m.regular_ids.emplace(*raw, id);
      m.bytes[static_cast<size_t>(id)] = std::move(*raw);
    }
    const auto& b2u = byte_to_unicode();
    for (int b = 0; b < 256; ++b) {
      auto it = level_ids.find(utf8_of(b2u[static_cast<size_t>(b)]));
      if (it == level_ids.end())
        unsupported("model.vocab lacks the single-byte token \"" + utf8_of(b2u[static_cast<size_t>(b)]) +
                    "\" (byte " + std::to_string(b) + "), so the vocabulary is not byte-level");
      m.byte_ids[static_cast<size_t>(b)] = it->second;
    }

    // ---- merges: "a b" strings (older files) or ["a", "b"] pairs (newer) ----------------------
    if (!model.contains("merges") || !model["merges"].is_array()) bad("model.merges is missing or not an array");
    const json& merges = model["merges"];
    m.merges.reserve(merges.size() * 2);
    for (size_t rank = 0; rank < merges.size(); ++rank) {
      const json& e = merges[rank];
      std::string a, b;
      if (e.is_string()) {
        const std::string s = e.get<std::string>();
        const size_t sp = s.find(' ');
        if (sp == std::string::npos || s.find(' ', sp + 1) != std::string::npos)
          bad("model.merges[" + std::to_string(rank) + "] = \"" + s + "\" is not two tokens separated by one space");
        a = s.substr(0, sp), b = s.substr(sp + 1);
      } else if (e.is_array() && e.size() == 2) {
        a = e[0].get<std::string>(), b = e[1].get<std::string>();
      } else {
        bad("model.merges[" + std::to_string(rank) + "] is neither \"a b\" nor [\"a\", \"b\"]");
      }
      const auto ia = level_ids.find(a), ib = level_ids.find(b), im = level_ids.find(a + b);
      if (ia == level_ids.end() || ib == level_ids.end() || im == level_ids.end())
        bad("model.merges[" + std::to_string(rank) + "] (\"" + a + "\", \"" + b + "\") uses a token missing from " +
            "model.vocab (\"" + (ia == level_ids.end() ? a : ib == level_ids.end() ? b : a + b) + "\")");
      // As in tokenizers, a repeated pair keeps its last rank.
      m.merges.insert_or_assign(pair_key(ia->second, ib->second),
                                PairMerge{static_cast<uint32_t>(rank), im->second});
    }

    // ---- added tokens ------------------------------------------------------------------------
    for (const json& a : added) {
      AddedToken t{a.at("content").get<std::string>(), a.at("id").get<int32_t>(), a.value("special", false)};
      if (t.id < 0) bad("added token \"" + t.content + "\" has a negative id");
      if (t.content.empty()) bad("added token with id " + std::to_string(t.id) + " has empty content");
      for (const char* flag : {"lstrip", "rstrip", "single_word"})
        if (truthy(a, flag))
          unsupported("added token \"" + t.content + "\" has \"" + flag + "\": true, which is not supported");
      if (first_invalid_utf8(t.content) != t.content.size())
        bad("added token with id " + std::to_string(t.id) + " is not valid UTF-8");
      m.bytes[static_cast<size_t>(t.id)] = t.content;
      m.present[static_cast<size_t>(t.id)] = 2;
      m.added.push_back(std::move(t));
    }
    return std::make_unique<BpeTokenizer>(std::move(m));
  }

  std::string_view text_;
  std::string path_;
};

}  // namespace

std::unique_ptr<Tokenizer> parse_tokenizer_json(std::string_view text, const std::string& origin) {
  return Loader(text, origin).load();
}

std::unique_ptr<Tokenizer> load_tokenizer_json(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail(ErrorKind::model, path + ": cannot open the file for reading; check it exists and is readable");
  std::stringstream buf;
  buf << in.rdbuf();
  if (in.bad()) fail(ErrorKind::model, path + ": read error; check the file");
  return parse_tokenizer_json(buf.str(), path);
}

}  // namespace kvrun::tok
