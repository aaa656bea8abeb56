// kvrun — logging to stderr (stdout carries results only, SPECS.md §7).
#pragma once

#include <string>

namespace kvrun {

enum class LogLevel : int { error = 0, warn = 1, info = 2, debug = 3 };
void set_log_level(LogLevel level) noexcept;  // default info; KVRUN_LOG=debug|info|warn|error
LogLevel log_level() noexcept;
void log(LogLevel level, const std::string& message);
inline void log_info(const std::string& m) { log(LogLevel::info, m); }
inline void log_warn(const std::string& m) { log(LogLevel::warn, m); }
inline void log_debug(const std::string& m) { log(LogLevel::debug, m); }

}  // namespace kvrun
