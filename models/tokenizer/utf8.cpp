// kvrun — UTF-8 validation, NFC normalization, the GPT-2 byte<->unicode table.
#include <utf8proc.h>

#include <cstdlib>
#include <cstring>
#include <memory>

#include "kvrun/error.hpp"
#include "tokenizer_impl.hpp"

namespace kvrun {
namespace tok {
namespace {

// Well-formed UTF-8 (Unicode Table 3-7): the lead byte fixes the length and the allowed range of
// the second byte; later bytes are always 80..BF.
struct SeqShape {
  int len;  // 0: not a valid lead byte
  uint8_t lo2, hi2;
};

inline SeqShape shape_of(uint8_t b) noexcept {
  if (b < 0x80) return {1, 0, 0};
  if (b < 0xC2) return {0, 0, 0};
  if (b < 0xE0) return {2, 0x80, 0xBF};
  if (b == 0xE0) return {3, 0xA0, 0xBF};
  if (b == 0xED) return {3, 0x80, 0x9F};
  if (b < 0xF0) return {3, 0x80, 0xBF};
  if (b == 0xF0) return {4, 0x90, 0xBF};
  if (b < 0xF4) return {4, 0x80, 0xBF};
  if (b == 0xF4) return {4, 0x80, 0x8F};
  return {0, 0, 0};
}

// Checks the character at p[i]. Returns its length when complete and valid; otherwise 0 and sets
// `valid_prefix` to how many bytes form a valid-but-unfinished start (1..3), or 0 for an invalid
// lead byte, and `truncated` when the text ended before the character did.
inline int check_char(const uint8_t* p, size_t n, size_t i, int& valid_prefix, bool& truncated) noexcept {
  const SeqShape s = shape_of(p[i]);
  truncated = false;
  valid_prefix = 0;
  if (s.len == 0) return 0;
  if (s.len == 1) return 1;
  valid_prefix = 1;
  for (int k = 1; k < s.len; ++k) {
    if (i + k >= n) {
      truncated = true;
      return 0;
    }
    const uint8_t c = p[i + k];
    const uint8_t lo = k == 1 ? s.lo2 : 0x80, hi = k == 1 ? s.hi2 : 0xBF;
    if (c < lo || c > hi) return 0;
    valid_prefix = k + 1;
  }
  return s.len;
}

inline bool all_ascii(std::string_view s) noexcept {
  const char* p = s.data();
  size_t n = s.size(), i = 0;
  for (; i + 8 <= n; i += 8) {
    uint64_t w;
    std::memcpy(&w, p + i, 8);
    if (w & 0x8080808080808080ull) return false;
  }
  for (; i < n; ++i)
    if (static_cast<uint8_t>(p[i]) & 0x80) return false;
  return true;
}

constexpr std::string_view kReplacement = "\xEF\xBF\xBD";  // U+FFFD

}  // namespace

size_t first_invalid_utf8(std::string_view text) noexcept {
  const auto* p = reinterpret_cast<const uint8_t*>(text.data());
  const size_t n = text.size();
  size_t i = 0;
  while (i < n) {
    // Skip ASCII quickly, 8 bytes at a time.
    while (i + 8 <= n) {
      uint64_t w;
      std::memcpy(&w, p + i, 8);
      if (w & 0x8080808080808080ull) break;
      i += 8;
    }
    if (i >= n) break;
    int prefix;
    bool truncated;
    const int len = check_char(p, n, i, prefix, truncated);
    if (len == 0) return i;
    i += static_cast<size_t>(len);
  }
  return n;
}

size_t append_complete_utf8(std::string_view bytes, bool final, std::string& out) {
  const auto* p = reinterpret_cast<const uint8_t*>(bytes.data());
  const size_t n = bytes.size();
  size_t i = 0;
  while (i < n) {
    int prefix;
    bool truncated;
    const int len = check_char(p, n, i, prefix, truncated);
    if (len > 0) {
      out.append(bytes.data() + i, static_cast<size_t>(len));
      i += static_cast<size_t>(len);
      continue;
    }
    if (truncated && !final) return i;  // wait for the rest of the character
    out.append(kReplacement);
    i += prefix > 0 ? static_cast<size_t>(prefix) : 1;  // skip the maximal invalid subpart
  }
  return n;
}

const std::array<char32_t, 256>& byte_to_unicode() noexcept {
  static const std::array<char32_t, 256> table = [] {
    std::array<char32_t, 256> t{};
    char32_t next = 256;
    for (int b = 0; b < 256; ++b) {
      const bool printable = (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
      t[static_cast<size_t>(b)] = printable ? static_cast<char32_t>(b) : next++;
    }
    return t;
  }();
  return table;
}

}  // namespace tok

std::string nfc_normalize(std::string_view text) {
  const size_t bad = tok::first_invalid_utf8(text);
  if (bad != text.size())
    fail(ErrorKind::usage, "text is not valid UTF-8 (invalid byte 0x" +
                               [&] {
                                 static const char* hex = "0123456789ABCDEF";
                                 const auto b = static_cast<uint8_t>(text[bad]);
                                 return std::string{hex[b >> 4], hex[b & 15]};
                               }() +
                               " at byte offset " + std::to_string(bad) + "); pass UTF-8 encoded text");
  if (tok::all_ascii(text)) return std::string(text);  // ASCII is already NFC
  utf8proc_uint8_t* dst = nullptr;
  const utf8proc_ssize_t len =
      utf8proc_map(reinterpret_cast<const utf8proc_uint8_t*>(text.data()), static_cast<utf8proc_ssize_t>(text.size()),
                   &dst, static_cast<utf8proc_option_t>(UTF8PROC_STABLE | UTF8PROC_COMPOSE));
  std::unique_ptr<utf8proc_uint8_t, decltype(&std::free)> owned(dst, &std::free);
  if (len < 0)
    fail(ErrorKind::usage, std::string("NFC normalization failed: ") + utf8proc_errmsg(len) +
                               " (text of " + std::to_string(text.size()) + " bytes); pass valid UTF-8 text");
  return std::string(reinterpret_cast<const char*>(dst), static_cast<size_t>(len));
}

}  // namespace kvrun
