// kvrun — private helpers of models/checkpoint.
#include "checkpoint_util.hpp"

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <system_error>

#include "kvrun/error.hpp"

namespace kvrun::ckpt_detail {

std::optional<std::string> read_file_if_exists(const std::string& path) {
  namespace fs = std::filesystem;
  std::error_code ec;
  fs::file_status st = fs::status(path, ec);
  if (ec || !fs::exists(st)) return std::nullopt;
  if (fs::is_directory(st)) fail(ErrorKind::model, path + ": is a directory, expected a file");
  std::ifstream in(path, std::ios::binary);
  if (!in) fail(ErrorKind::model, path + ": cannot open for reading: " + std::strerror(errno));
  std::ostringstream ss;
  ss << in.rdbuf();
  if (in.bad()) fail(ErrorKind::model, path + ": read error: " + std::strerror(errno));
  return std::move(ss).str();
}

nlohmann::json parse_json(const std::string& text, const std::string& path) {
  try {
    return nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception& e) {
    fail(ErrorKind::model, path + ": malformed JSON (" + e.what() + "); fix or re-download the file");
  }
}

std::string join_path(const std::string& dir, const std::string& name) {
  if (dir.empty()) return name;
  if (dir.back() == '/') return dir + name;
  return dir + "/" + name;
}

namespace {
// Writes v as JSON until `out` passes `limit` characters. Bounded recursion: a value nested deeper
// than a few levels is written as [...] / {...}, so a hostile file nested a million levels deep
// cannot overflow the stack here (nlohmann's dump() recurses once per level).
void brief_into(const nlohmann::json& v, std::string& out, size_t limit, int depth) {
  if (out.size() > limit) return;
  if (v.is_array() || v.is_object()) {
    const bool arr = v.is_array();
    if (depth >= 4 && !v.empty()) {
      out += arr ? "[...]" : "{...}";
      return;
    }
    out += arr ? '[' : '{';
    bool first = true;
    for (auto it = v.begin(); it != v.end() && out.size() <= limit; ++it) {
      if (!first) out += ',';
      first = false;
      if (!arr) out += nlohmann::json(it.key()).dump() + ':';
      brief_into(it.value(), out, limit, depth + 1);
    }
    out += arr ? ']' : '}';
    return;
  }
  if (v.is_string() && v.get_ref<const std::string&>().size() > limit) {
    out += nlohmann::json(v.get_ref<const std::string&>().substr(0, limit)).dump();
    return;
  }
  out += v.dump();
}
}  // namespace

std::string json_brief(const nlohmann::json& v) {
  std::string s;
  brief_into(v, s, 80, 0);
  if (s.size() > 80) s = s.substr(0, 77) + "...";
  return s;
}

}  // namespace kvrun::ckpt_detail
