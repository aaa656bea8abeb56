// kvrun — tokenizer internals shared by the tokenizer.json and qwen.tiktoken loaders (private).
//
// Both file kinds become one BpeTokenizer:
//   * a vocabulary of raw byte strings indexed by id (regular tokens) plus added/special tokens,
//   * a pair table (left id, right id) -> (priority, merged id) that drives byte-pair merging:
//       - tokenizer.json: priority = index of the merge in model.merges (Hugging Face BPE);
//       - qwen.tiktoken:  priority = rank of the merged bytes (tiktoken), built from every way a
//         token splits into two tokens, so "merge the adjacent pair whose concatenation has the
//         lowest rank" becomes a lookup,
//   * one or more PCRE2 pre-tokenizer stages (pieces of stage i are split again by stage i+1).
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "kvrun/models/tokenizer.hpp"

struct pcre2_real_code_8;  // pcre2_code_8 of <pcre2.h> (8-bit code units), included by regex_split.cpp only

namespace kvrun::tok {

// The Qwen (v1 and Qwen2) pre-tokenization regex; qwen.tiktoken carries no pattern of its own.
inline constexpr std::string_view kQwenPattern =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
// GPT-2's pattern, used by a ByteLevel pre-tokenizer with "use_regex": true.
inline constexpr std::string_view kGpt2Pattern =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

// ---- UTF-8 helpers (utf8.cpp) ------------------------------------------------------------------

// Byte offset of the first invalid UTF-8 sequence (overlong, surrogate, > U+10FFFF, truncated),
// or text.size() when the whole text is valid.
size_t first_invalid_utf8(std::string_view text) noexcept;

// Copies the longest prefix of `bytes` made of complete characters into `out`, invalid sequences
// replaced by U+FFFD (one per maximal invalid subpart). Returns how many bytes were consumed; an
// incomplete character at the end is left unconsumed unless `final`, where it becomes U+FFFD.
size_t append_complete_utf8(std::string_view bytes, bool final, std::string& out);

// ---- GPT-2 byte <-> unicode mapping (ByteLevel pre-tokenizer / decoder) -------------------------

// byte b -> the code point that stands for it in byte-level vocabularies (printable bytes map to
// themselves, the other 68 to U+0100.. in byte order).
const std::array<char32_t, 256>& byte_to_unicode() noexcept;

// ---- PCRE2 pre-tokenizer stage (regex_split.cpp) ------------------------------------------------

class RegexSplitter {
 public:
  // `literal`: the pattern is a plain string (tokenizer.json Split {"String": ...}).
  // `origin` names where the pattern came from, for error messages.
  RegexSplitter(std::string_view pattern, bool literal, const std::string& origin);
  ~RegexSplitter();
  RegexSplitter(RegexSplitter&& o) noexcept;
  RegexSplitter& operator=(RegexSplitter&&) = delete;
  RegexSplitter(const RegexSplitter&) = delete;
  RegexSplitter& operator=(const RegexSplitter&) = delete;

  // Calls f for every piece of `text` (valid UTF-8), in order: each match and each gap between
  // matches ("Isolated" split behaviour), so the pieces concatenate back to `text`.
  void for_each_piece(std::string_view text, const std::function<void(std::string_view)>& f) const;

 private:
  pcre2_real_code_8* code_ = nullptr;
  bool jit_ = false;
};

// ---- the shared byte-level BPE tokenizer (bpe_tokenizer.cpp) ------------------------------------

struct PairMerge {
  uint32_t priority;  // lower merges first
  int32_t merged;     // id of the concatenation
};

struct AddedToken {
  std::string content;  // literal text matched in the input
  int32_t id;
  bool special;  // matched only when allow_special; non-special added tokens always match
};

// Hash/equality that let unordered_map<std::string, ...> be searched with a string_view.
struct StringHash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const noexcept { return std::hash<std::string_view>{}(s); }
};
using BytesToId = std::unordered_map<std::string, int32_t, StringHash, std::equal_to<>>;

struct BpeModel {
  std::string kind;                 // Tokenizer::kind()
  std::vector<std::string> bytes;   // [vocab_size] raw bytes of every id (added: their content)
  std::vector<uint8_t> present;     // [vocab_size] 0: id unused, 1: regular token, 2: added token
  BytesToId regular_ids;            // raw bytes -> id, regular tokens only
  std::array<int32_t, 256> byte_ids{};  // id of each single byte (all 256 must exist)
  std::unordered_map<uint64_t, PairMerge> merges;  // key: (uint64(left) << 32) | uint32(right)
  std::vector<AddedToken> added;
  std::vector<RegexSplitter> stages;  // applied in order; none: each segment is one piece
  // A piece that is itself a regular token becomes that token without merging (tiktoken; HF BPE
  // with "ignore_merges": true).
  bool whole_piece_shortcut = false;
};

inline uint64_t pair_key(int32_t left, int32_t right) noexcept {
  return (static_cast<uint64_t>(static_cast<uint32_t>(left)) << 32) | static_cast<uint32_t>(right);
}

class BpeTokenizer final : public Tokenizer {
 public:
  explicit BpeTokenizer(BpeModel model);

  std::vector<int32_t> encode(std::string_view text, bool allow_special) const override;
  std::string decode(const std::vector<int32_t>& ids) const override;
  std::string token_bytes(int32_t id) const override;
  int32_t vocab_size() const noexcept override { return static_cast<int32_t>(m_.bytes.size()); }
  std::optional<int32_t> special_id(std::string_view token) const override;
  std::string kind() const override { return m_.kind; }

 private:
  struct PieceCache;
  void encode_segment(std::string_view segment, PieceCache& cache, std::vector<int32_t>& out) const;
  void bpe_piece(std::string_view piece, std::vector<int32_t>& out) const;

  BpeModel m_;
  // Added tokens by first byte, longest first, for leftmost-longest matching.
  std::array<std::vector<uint32_t>, 256> added_by_first_byte_;
};

// ---- loaders -------------------------------------------------------------------------------------

std::unique_ptr<Tokenizer> load_tokenizer_json(const std::string& path);
// vocab_size: from config.json of the same directory when known (limits the <|extra_N|> tokens).
std::unique_ptr<Tokenizer> load_qwen_tiktoken(const std::string& path, std::optional<int64_t> vocab_size);
// The same from file contents already in memory; `origin` names the file in messages.
std::unique_ptr<Tokenizer> parse_tokenizer_json(std::string_view text, const std::string& origin);
std::unique_ptr<Tokenizer> parse_qwen_tiktoken(std::string_view text, const std::string& origin,
                                               std::optional<int64_t> vocab_size);

}  // namespace kvrun::tok
