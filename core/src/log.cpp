#include "kvrun/log.hpp"

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>

namespace kvrun {
namespace {

LogLevel initial_level() {
  const char* e = std::getenv("KVRUN_LOG");
  if (!e) return LogLevel::info;
  if (!std::strcmp(e, "debug")) return LogLevel::debug;
  if (!std::strcmp(e, "warn")) return LogLevel::warn;
  if (!std::strcmp(e, "error")) return LogLevel::error;
  return LogLevel::info;
}
std::atomic<int> g_level{int(initial_level())};
std::mutex g_mutex;

}  // namespace

void set_log_level(LogLevel level) noexcept { g_level = int(level); }
LogLevel log_level() noexcept { return LogLevel(g_level.load()); }

void log(LogLevel level, const std::string& message) {
  if (int(level) > g_level.load()) return;
  static const char* tags[] = {"error", "warning", "info", "debug"};
  std::lock_guard<std::mutex> lock(g_mutex);
  std::fprintf(stderr, "kvrun: %s: %s\n", tags[int(level)], message.c_str());
}

}  // namespace kvrun
