// kvrun — PCRE2 pre-tokenizer stage (8-bit, UTF + UCP, JIT-compiled when the library has a JIT).
#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <memory>

#include "kvrun/error.hpp"
#include "tokenizer_impl.hpp"

namespace kvrun::tok {
namespace {

std::string pcre2_message(int code) {
  PCRE2_UCHAR8 buf[256];
  const int n = pcre2_get_error_message_8(code, buf, sizeof buf);
  return n < 0 ? "PCRE2 error " + std::to_string(code) : std::string(reinterpret_cast<const char*>(buf));
}

// Length of the UTF-8 character starting with byte b (text is already validated).
inline size_t utf8_len(unsigned char b) noexcept {
  return b < 0x80 ? 1 : b < 0xE0 ? 2 : b < 0xF0 ? 3 : 4;
}

struct MatchDataDeleter {
  void operator()(pcre2_match_data_8* m) const noexcept { pcre2_match_data_free_8(m); }
};
struct MatchContextDeleter {
  void operator()(pcre2_match_context_8* c) const noexcept { pcre2_match_context_free_8(c); }
};
struct JitStackDeleter {
  void operator()(pcre2_jit_stack_8* s) const noexcept { pcre2_jit_stack_free_8(s); }
};

}  // namespace

RegexSplitter::RegexSplitter(std::string_view pattern, bool literal, const std::string& origin) {
  int err = 0;
  PCRE2_SIZE err_offset = 0;
  uint32_t options = PCRE2_UTF | PCRE2_UCP;
  if (literal) options |= PCRE2_LITERAL;
  code_ = pcre2_compile_8(reinterpret_cast<PCRE2_SPTR8>(pattern.data()), pattern.size(), options, &err, &err_offset,
                          nullptr);
  if (!code_)
    fail(ErrorKind::model, origin + ": the pre-tokenizer regex does not compile with PCRE2 (" + pcre2_message(err) +
                               " at offset " + std::to_string(err_offset) + " of pattern \"" + std::string(pattern) +
                               "\"); fix the pattern in the file");
  // JIT is an optimisation only: when the library was built without it, the interpreter gives the
  // same matches (pcre2_match uses the JIT code only when compilation succeeded).
  jit_ = pcre2_jit_compile_8(code_, PCRE2_JIT_COMPLETE) == 0;
}

RegexSplitter::~RegexSplitter() {
  if (code_) pcre2_code_free_8(code_);
}

RegexSplitter::RegexSplitter(RegexSplitter&& o) noexcept : code_(o.code_), jit_(o.jit_) { o.code_ = nullptr; }

void RegexSplitter::for_each_piece(std::string_view text, const std::function<void(std::string_view)>& f) const {
  if (text.empty()) return;
  std::unique_ptr<pcre2_match_data_8, MatchDataDeleter> md(pcre2_match_data_create_from_pattern_8(code_, nullptr));
  std::unique_ptr<pcre2_match_context_8, MatchContextDeleter> mc(pcre2_match_context_create_8(nullptr));
  std::unique_ptr<pcre2_jit_stack_8, JitStackDeleter> stack;
  if (!md || !mc) throw std::bad_alloc();
  if (jit_) {
    // The default JIT stack (32 KiB on the machine stack) can be too small for long runs that
    // backtrack into a look-ahead (e.g. \s+(?!\S)); give it room to grow up to 64 MiB.
    stack.reset(pcre2_jit_stack_create_8(64 * 1024, 64 * 1024 * 1024, nullptr));
    if (!stack) throw std::bad_alloc();
    pcre2_jit_stack_assign_8(mc.get(), nullptr, stack.get());
  }
  const auto* subject = reinterpret_cast<PCRE2_SPTR8>(text.data());
  const size_t n = text.size();
  size_t pos = 0;   // where the next search starts
  size_t emitted = 0;  // text[0, emitted) was handed to f
  while (pos < n) {
    const int rc = pcre2_match_8(code_, subject, n, pos, PCRE2_NO_UTF_CHECK, md.get(), mc.get());
    if (rc == PCRE2_ERROR_NOMATCH) break;
    if (rc < 0)
      fail(ErrorKind::internal, "pre-tokenizer regex failed at byte " + std::to_string(pos) + " of a " +
                                    std::to_string(n) + "-byte text: " + pcre2_message(rc));
    const PCRE2_SIZE* ov = pcre2_get_ovector_pointer_8(md.get());
    const size_t start = ov[0], end = ov[1];
    if (end == start) {  // empty match: it yields no piece; search again one character later
      if (start >= n) break;
      pos = start + utf8_len(static_cast<unsigned char>(text[start]));
      continue;
    }
    if (start > emitted) f(text.substr(emitted, start - emitted));  // gap before the match
    f(text.substr(start, end - start));
    emitted = pos = end;
  }
  if (emitted < n) f(text.substr(emitted));
}

}  // namespace kvrun::tok
