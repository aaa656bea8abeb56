// kvrun — helpers shared by the commands of the command line (apps/main.cpp, apps/bench.cpp):
// the common options (-c, --set, --json, -v), argument parsing, and the JSON/log forms of reports.
#pragma once

#include <boost/program_options.hpp>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "kvrun/config.hpp"
#include "kvrun/device.hpp"

namespace kvrun {

// JSON text as the CLI prints it (2-space indent; invalid UTF-8 replaced, never an exception).
std::string dump(const nlohmann::json& j);

struct Common {
  std::string config;
  std::vector<std::string> sets;
  bool json_out = false;
  bool verbose = false;
};

// Adds --help, -c/--config (required if needs_config), --set, --verbose and, with json_switch,
// the --json switch (commands whose --json takes a FILE declare their own).
void add_common(boost::program_options::options_description& d, Common& c, bool needs_config,
                bool json_switch = true);

// Parses argv[2..] for a command; returns false if --help was printed.
bool parse(int argc, char** argv, boost::program_options::options_description& d, const char* cmd,
           const char* synopsis, boost::program_options::positional_options_description* pos = nullptr);

// The config file (or the defaults) with the --set overrides; -v turns on debug logging.
PipelineConfig config_from(const Common& c);

// Peak memory by category as the allocator reports it.
nlohmann::json memory_json(const Device& dev);
void print_memory(const Device& dev);  // one line on stderr

// The upper median (v[n/2] of the sorted values); 0 for an empty vector.
double median(std::vector<double> v);

// Ctrl-C during generation (docs/errors.md). While a guard lives, the first SIGINT only sets a
// flag that the engine polls once per step (GenerationSettings::interrupted): generation stops,
// the partial output is printed and the command exits with kExitInterrupted. A second SIGINT ends
// the process at once. Nothing is installed when SIGINT is ignored (e.g. a script's background
// job). With restart_syscalls = false a blocking read is interrupted too (chat's prompt).
constexpr int kExitInterrupted = 130;  // 128 + SIGINT, as shells report it
class InterruptGuard {
 public:
  explicit InterruptGuard(bool restart_syscalls = true);
  ~InterruptGuard();
  InterruptGuard(const InterruptGuard&) = delete;
  InterruptGuard& operator=(const InterruptGuard&) = delete;
  static bool requested() noexcept;
  static void clear() noexcept;

 private:
  bool installed_ = false;
};

}  // namespace kvrun
