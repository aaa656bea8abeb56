// kvrun — Qwen v1 qwen.tiktoken loader.
//
// File format: one token per line, "<base64 of the token's bytes> <rank>", ranks 0..n-1 (the rank
// is the token id and the merge priority). Special tokens follow the last rank, in this order:
//   <|endoftext|>, <|im_start|>, <|im_end|>, then <|extra_0|> .. <|extra_204|>
// (the extras only as far as the model's vocab_size holds them).
#include <algorithm>
#include <charconv>
#include <fstream>
#include <sstream>
#include <unordered_set>

#include "kvrun/error.hpp"
#include "tokenizer_impl.hpp"

namespace kvrun::tok {
namespace {

constexpr int kQwenExtraTokens = 205;

// Standard base64 (RFC 4648, "=" padding); nullopt when malformed.
std::optional<std::string> base64_decode(std::string_view s) {
  static const std::array<int8_t, 256> value = [] {
    std::array<int8_t, 256> v;
    v.fill(-1);
    const std::string_view alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    for (size_t i = 0; i < alphabet.size(); ++i) v[static_cast<unsigned char>(alphabet[i])] = static_cast<int8_t>(i);
    return v;
  }();
  if (s.empty() || s.size() % 4 != 0) return std::nullopt;
  size_t pad = 0;
  while (pad < 2 && s[s.size() - 1 - pad] == '=') ++pad;
  std::string out;
  out.reserve(s.size() / 4 * 3);
  uint32_t acc = 0;
  int bits = 0;
  for (size_t i = 0; i < s.size() - pad; ++i) {
    const int8_t v = value[static_cast<unsigned char>(s[i])];
    if (v < 0) return std::nullopt;
    acc = (acc << 6) | static_cast<uint32_t>(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out += static_cast<char>((acc >> bits) & 0xFF);
    }
  }
  if ((acc & ((1u << bits) - 1)) != 0) return std::nullopt;  // non-zero padding bits
  return out;
}

// Polynomial hashing of byte strings modulo the Mersenne prime 2^61 - 1.
constexpr uint64_t kHashMod = (uint64_t(1) << 61) - 1;
constexpr uint64_t kHashBase = 0x1b3f2a4c5d6e7f1ull % kHashMod;

uint64_t mulmod(uint64_t a, uint64_t b) {
  const unsigned __int128 p = static_cast<unsigned __int128>(a) * b;
  uint64_t r = static_cast<uint64_t>(p & kHashMod) + static_cast<uint64_t>(p >> 61);  // 2^61 = 1 (mod p)
  while (r >= kHashMod) r -= kHashMod;
  return r;
}
uint64_t hash_step(uint64_t h, unsigned char byte) { return (mulmod(h, kHashBase) + byte + 1) % kHashMod; }
uint64_t poly_hash(std::string_view s) {
  uint64_t h = 0;
  for (char c : s) h = hash_step(h, static_cast<unsigned char>(c));
  return h;
}
// The key of a string: its hash with its length mixed in (a filter: a false match costs one lookup).
uint64_t hash_key(uint64_t h, size_t len) { return h ^ (static_cast<uint64_t>(len) * 0x9E3779B97F4A7C15ull); }

}  // namespace

std::unique_ptr<Tokenizer> load_qwen_tiktoken(const std::string& path, std::optional<int64_t> vocab_size) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail(ErrorKind::model, path + ": cannot open the file for reading; check it exists and is readable");
  std::stringstream buf;
  buf << in.rdbuf();
  if (in.bad()) fail(ErrorKind::model, path + ": read error; check the file");
  return parse_qwen_tiktoken(buf.str(), path, vocab_size);
}

std::unique_ptr<Tokenizer> parse_qwen_tiktoken(std::string_view text, const std::string& path,
                                               std::optional<int64_t> vocab_size) {
  BpeModel m;
  m.kind = "qwen.tiktoken";
  m.whole_piece_shortcut = true;  // tiktoken: a piece that is a token is that token
  std::vector<std::pair<std::string, int64_t>> entries;
  size_t line_no = 0;
  for (size_t at = 0; at < text.size();) {  // lines end with '\n' (the last one may not)
    const size_t eol = std::min(text.find('\n', at), text.size());
    std::string line(text.substr(at, eol - at));
    at = eol + 1;
    ++line_no;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.empty()) continue;
    const auto bad_line = [&](const std::string& what) {
      fail(ErrorKind::model, path + " line " + std::to_string(line_no) + ": " + what +
                                 " (expected \"<base64 bytes> <rank>\"); re-download the file");
    };
    const size_t sp = line.find(' ');
    if (sp == std::string::npos || line.find(' ', sp + 1) != std::string::npos) bad_line("not two fields");
    auto bytes = base64_decode(std::string_view(line).substr(0, sp));
    if (!bytes) bad_line("malformed base64 \"" + line.substr(0, sp) + "\"");
    int64_t rank = -1;
    const char* first = line.data() + sp + 1;
    const char* last = line.data() + line.size();
    const auto [ptr, ec] = std::from_chars(first, last, rank);
    if (ec != std::errc() || ptr != last || rank < 0) bad_line("malformed rank \"" + line.substr(sp + 1) + "\"");
    entries.emplace_back(std::move(*bytes), rank);
  }
  if (entries.empty()) fail(ErrorKind::model, path + ": no tokens in the file; re-download it");

  const auto n = static_cast<int64_t>(entries.size());
  m.bytes.assign(static_cast<size_t>(n), std::string());
  m.present.assign(static_cast<size_t>(n), 0);
  m.regular_ids.reserve(static_cast<size_t>(n));
  for (auto& [bytes, rank] : entries) {
    if (rank >= n)
      fail(ErrorKind::model, path + ": rank " + std::to_string(rank) + " is not below the number of tokens (" +
                                 std::to_string(n) + "); ranks must be 0..n-1");
    if (m.present[static_cast<size_t>(rank)])
      fail(ErrorKind::model, path + ": rank " + std::to_string(rank) + " appears twice; re-download the file");
    if (!m.regular_ids.emplace(bytes, static_cast<int32_t>(rank)).second)
      fail(ErrorKind::model, path + ": the bytes of rank " + std::to_string(rank) +
                                 " also have another rank; re-download the file");
    m.present[static_cast<size_t>(rank)] = 1;
    m.bytes[static_cast<size_t>(rank)] = std::move(bytes);
  }
  for (int b = 0; b < 256; ++b) {
    auto it = m.regular_ids.find(std::string(1, static_cast<char>(b)));
    if (it == m.regular_ids.end())
      fail(ErrorKind::model, path + ": no token for the single byte " + std::to_string(b) +
                                 "; a tiktoken vocabulary must hold all 256 bytes");
    m.byte_ids[static_cast<size_t>(b)] = it->second;
  }

  // tiktoken merges the adjacent pair whose concatenation has the lowest rank. Every pair of
  // tokens that concatenates to a token is one of that token's two-way splits, so enumerating the
  // splits of every token gives the complete pair table. Looking both halves of every split up by
  // their bytes would cost O(len) per split, O(len^2) per token: one hostile 10 MB token would
  // keep kvrun busy for hours. Polynomial hashes of all prefixes give each half's hash in O(1), and
  // only a split whose two halves both hash like some token is looked up for real.
  m.merges.reserve(static_cast<size_t>(n) * 2);
  size_t longest = 0;
  for (const std::string& t : m.bytes) longest = std::max(longest, t.size());
  std::vector<uint64_t> pow(longest + 1, 1);
  for (size_t i = 1; i <= longest; ++i) pow[i] = mulmod(pow[i - 1], kHashBase);
  std::unordered_set<uint64_t> token_keys;
  token_keys.reserve(static_cast<size_t>(n));
  for (const std::string& t : m.bytes) token_keys.insert(hash_key(poly_hash(t), t.size()));
  std::vector<uint64_t> prefix;
  for (int32_t id = 0; id < n; ++id) {
    const std::string_view t = m.bytes[static_cast<size_t>(id)];
    const size_t len = t.size();
    prefix.assign(len + 1, 0);  // prefix[k] = hash of t[0, k)
    for (size_t k = 0; k < len; ++k) prefix[k + 1] = hash_step(prefix[k], static_cast<unsigned char>(t[k]));
    for (size_t k = 1; k < len; ++k) {
      if (!token_keys.count(hash_key(prefix[k], k))) continue;
      const uint64_t suffix = (prefix[len] + kHashMod - mulmod(prefix[k], pow[len - k])) % kHashMod;
      if (!token_keys.count(hash_key(suffix, len - k))) continue;
      auto left = m.regular_ids.find(t.substr(0, k));
      if (left == m.regular_ids.end()) continue;
      auto right = m.regular_ids.find(t.substr(k));
      if (right == m.regular_ids.end()) continue;
      m.merges.emplace(pair_key(left->second, right->second), PairMerge{static_cast<uint32_t>(id), id});
    }
  }

  // Special tokens after the last rank.
  std::vector<std::string> specials = {"<|endoftext|>", "<|im_start|>", "<|im_end|>"};
  if (vocab_size && *vocab_size < n + 3)
    fail(ErrorKind::model, path + ": config.json vocab_size " + std::to_string(*vocab_size) + " cannot hold the " +
                               std::to_string(n) + " ranks plus <|endoftext|>, <|im_start|>, <|im_end|>; the "
                               "tokenizer does not belong to this model");
  for (int i = 0; i < kQwenExtraTokens; ++i) {
    if (vocab_size && n + static_cast<int64_t>(specials.size()) >= *vocab_size) break;
    specials.push_back("<|extra_" + std::to_string(i) + "|>");
  }
  for (const std::string& s : specials) {
    const auto id = static_cast<int32_t>(m.bytes.size());
    m.bytes.push_back(s);
    m.present.push_back(2);
    m.added.push_back({s, id, true});
  }
  m.stages.emplace_back(kQwenPattern, false, "the Qwen pre-tokenizer pattern");
  return std::make_unique<BpeTokenizer>(std::move(m));
}

}  // namespace kvrun::tok
