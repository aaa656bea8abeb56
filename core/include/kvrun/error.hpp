// kvrun — errors and statuses.
//
// Inside one shared object, errors are exceptions (kvrun::Error). Across a plugin or backend
// boundary they travel as a Status value: every virtual method of a plugin interface is noexcept
// and returns Status; the host turns a failed Status back into an Error with check().
#pragma once

#include <stdexcept>
#include <string>
#include <utility>

namespace kvrun {

// The category decides the process exit code (SPECS.md §7).
enum class ErrorKind : int {
  ok = 0,
  internal = 1,  // anything else
  usage = 2,     // command line or configuration
  model = 3,     // model directory, checkpoint, tokenizer
  device = 4,    // device, out of memory, cache capacity
};

const char* error_kind_name(ErrorKind k) noexcept;

class Error : public std::runtime_error {
 public:
  Error(ErrorKind kind, std::string message) : std::runtime_error(std::move(message)), kind_(kind) {}
  ErrorKind kind() const noexcept { return kind_; }
  int exit_code() const noexcept { return static_cast<int>(kind_); }

 private:
  ErrorKind kind_;
};

[[noreturn]] inline void fail(ErrorKind kind, std::string message) { throw Error(kind, std::move(message)); }

// The value that crosses shared-library boundaries instead of an exception.
struct Status {
  ErrorKind kind = ErrorKind::ok;
  std::string message;
  bool ok() const noexcept { return kind == ErrorKind::ok; }
};

// Runs f, converting any exception into a Status. Every plugin entry point is written as
//   Status method(...) noexcept override { return guard([&] { ... }); }
template <class F>
Status guard(F&& f) noexcept {
  try {
    f();
    return {};
  } catch (const Error& e) {
    return {e.kind(), e.what()};
  } catch (const std::bad_alloc&) {
    return {ErrorKind::device, "out of host memory"};
  } catch (const std::exception& e) {
    return {ErrorKind::internal, e.what()};
  } catch (...) {
    return {ErrorKind::internal, "unknown exception"};
  }
}

// Host side: a failed Status becomes an Error again.
inline void check(const Status& s) {
  if (!s.ok()) throw Error(s.kind, s.message);
}

}  // namespace kvrun
