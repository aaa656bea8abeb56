#include "kvrun/device.hpp"

#include <cctype>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <string>

namespace kvrun {

const char* backend_name(BackendKind k) noexcept { return k == BackendKind::cuda ? "cuda" : "cpu"; }

const char* mem_category_name(MemCategory c) noexcept {
  switch (c) {
    case MemCategory::weights: return "weights";
    case MemCategory::kv_cache: return "kv_cache";
    case MemCategory::workspace: return "workspace";
  }
  return "?";
}

size_t parse_byte_size(const std::string& text, const std::string& where) {
  size_t i = 0;
  while (i < text.size() && std::isspace((unsigned char)text[i])) ++i;
  size_t start = i;
  while (i < text.size() && (std::isdigit((unsigned char)text[i]) || text[i] == '.')) ++i;
  if (i == start) {
    fail(ErrorKind::usage, where + ": '" + text + "' is not a size; write e.g. \"80GB\", \"512MiB\" or \"0\" (no limit)");
  }
  const std::string number = text.substr(start, i - start);
  if (number.find('.') != number.rfind('.') || number == ".")  // std::stod would throw on these
    fail(ErrorKind::usage, where + ": '" + text + "' is not a size; write e.g. \"80GB\", \"512MiB\" or \"0\" (no limit)");
  const double value = std::strtod(number.c_str(), nullptr);  // digits and one dot: no error but overflow (inf)
  std::string unit;
  for (; i < text.size(); ++i)
    if (!std::isspace((unsigned char)text[i])) unit += char(std::tolower((unsigned char)text[i]));
  double mult = 0;
  if (unit.empty() || unit == "b") mult = 1;
  else if (unit == "k" || unit == "kb") mult = 1e3;
  else if (unit == "m" || unit == "mb") mult = 1e6;
  else if (unit == "g" || unit == "gb") mult = 1e9;
  else if (unit == "t" || unit == "tb") mult = 1e12;
  else if (unit == "kib") mult = 1024.0;
  else if (unit == "mib") mult = 1024.0 * 1024;
  else if (unit == "gib") mult = 1024.0 * 1024 * 1024;
  else if (unit == "tib") mult = 1024.0 * 1024 * 1024 * 1024;
  else
    fail(ErrorKind::usage, where + ": unknown size unit '" + unit + "' in '" + text +
                               "'; use B, KB, MB, GB, TB (powers of 10) or KiB, MiB, GiB, TiB");
  const double bytes = value * mult;
  if (!(bytes < 0x1p63))  // also inf; llround would be undefined past the range of long long
    fail(ErrorKind::usage, where + ": '" + text + "' is too large for a memory size");
  return size_t(std::llround(bytes));
}

std::string format_bytes(size_t bytes) {
  char buf[64];
  double b = double(bytes);
  if (b >= 1024.0 * 1024 * 1024) std::snprintf(buf, sizeof buf, "%.2f GiB", b / (1024.0 * 1024 * 1024));
  else if (b >= 1024.0 * 1024) std::snprintf(buf, sizeof buf, "%.2f MiB", b / (1024.0 * 1024));
  else if (b >= 1024.0) std::snprintf(buf, sizeof buf, "%.2f KiB", b / 1024.0);
  else std::snprintf(buf, sizeof buf, "%zu B", bytes);
  return buf;
}

}  // namespace kvrun
