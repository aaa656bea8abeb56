// Test helpers: where the fixture models are (KVRUN_FIXTURES, default ../shared/models relative to
// the repository root) and a visible skip for tests that need something absent.
#pragma once

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <set>
#include <string>

namespace kvrun::test {

inline std::string source_root() {
  const char* r = std::getenv("KVRUN_SOURCE_ROOT");
  return r ? r : KVRUN_SOURCE_ROOT_DEFAULT;
}
inline std::string fixtures_dir() {
  const char* f = std::getenv("KVRUN_FIXTURES");
  if (f && *f) return f;
  return source_root() + "/../shared/models";
}
inline std::string fixture(const std::string& model) { return fixtures_dir() + "/" + model; }
inline std::string data_dir() {
  const char* f = std::getenv("KVRUN_DATA");
  if (f && *f) return f;
  return fixtures_dir() + "/../data";
}
inline bool have_fixture(const std::string& model) {
  return std::filesystem::exists(fixture(model) + "/config.json");
}

// Symlinks (absolute targets) every file of fixture `model` into the existing folder `dst`, except
// those named in `skip` (which the test writes itself).
inline void link_fixture_files(const std::string& model, const std::filesystem::path& dst,
                               const std::set<std::string>& skip = {}) {
  for (const auto& e : std::filesystem::directory_iterator(fixture(model)))
    if (!skip.count(e.path().filename().string()))
      std::filesystem::create_symlink(std::filesystem::absolute(e.path()), dst / e.path().filename());
}

// The byte length of a safetensors file's JSON header: its first 8 bytes, little-endian.
inline uint64_t safetensors_header_length(const std::string& bytes) {
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | static_cast<unsigned char>(bytes[size_t(i)]);
  return n;
}

}  // namespace kvrun::test

// Skips the rest of a test case with a visible line (doctest has no skip-with-reason at run time).
#define KVRUN_SKIP_UNLESS(cond, why)                                  \
  do {                                                                \
    if (!(cond)) {                                                    \
      std::fprintf(stderr, "skipped: %s (%s)\n", why, __FILE__);      \
      MESSAGE("skipped: " why);                                       \
      return;                                                         \
    }                                                                 \
  } while (0)
