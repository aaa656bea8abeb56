// Test helper: runs the built kvrun (KVRUN_EXE) from the repository root and captures its exit
// code, stdout and stderr, as scripts use the command line (SPECS.md §7).
#pragma once

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <sys/wait.h>
#include <unistd.h>

#include "fixtures.hpp"

namespace kvrun::test {

struct Run {
  int code = -1;
  std::string out, err;
};

inline std::string slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

inline bool contains(const std::string& s, const std::string& needle) { return s.find(needle) != std::string::npos; }

// args: a shell-quoted argument string; env: prepended to the command (e.g. "PATH=/nonexistent").
// stdin is /dev/null.
inline Run run_kvrun(const std::string& args, const std::string& env = "") {
  static int n = 0;
  const std::string base = (std::filesystem::temp_directory_path() /
                            ("kvrun_run_" + std::to_string(getpid()) + "_" + std::to_string(n++)))
                               .string();
  const std::string cmd = "cd '" + source_root() + "' && " + env + " '" KVRUN_EXE "' " + args + " </dev/null >'" +
                          base + ".out' 2>'" + base + ".err'";
  const int status = std::system(cmd.c_str());
  Run r;
  r.code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  r.out = slurp(base + ".out");
  r.err = slurp(base + ".err");
  std::filesystem::remove(base + ".out");
  std::filesystem::remove(base + ".err");
  return r;
}

}  // namespace kvrun::test
