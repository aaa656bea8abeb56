#include "cli_common.hpp"

#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <iostream>

#include "kvrun/log.hpp"

namespace po = boost::program_options;
using nlohmann::json;

namespace kvrun {

std::string dump(const json& j) { return j.dump(2, ' ', false, json::error_handler_t::replace); }

void add_common(po::options_description& d, Common& c, bool needs_config, bool json_switch) {
  d.add_options()("help,h", "show this help");
  if (needs_config)
    d.add_options()("config,c", po::value(&c.config)->required(), "pipeline TOML file");
  else
    d.add_options()("config,c", po::value(&c.config), "pipeline TOML file");
  d.add_options()("set", po::value(&c.sets)->composing(), "override a config key: --set cache.type=int8 (repeatable)");
  if (json_switch) d.add_options()("json", po::bool_switch(&c.json_out), "print one JSON document on stdout");
  d.add_options()("verbose,v", po::bool_switch(&c.verbose), "debug logging on stderr");
}

bool parse(int argc, char** argv, po::options_description& d, const char* cmd, const char* synopsis,
           po::positional_options_description* pos) {
  po::variables_map vm;
  po::command_line_parser p(argc - 1, argv + 1);
  p.options(d);
  if (pos) p.positional(*pos);
  po::store(p.run(), vm);
  if (vm.count("help")) {
    std::cout << "usage: kvrun " << cmd << " " << synopsis << "\n\n" << d << "\n";
    return false;
  }
  po::notify(vm);
  return true;
}

PipelineConfig config_from(const Common& c) {
  if (c.verbose) set_log_level(LogLevel::debug);
  if (c.config.empty()) return parse_config("", "<defaults>", c.sets);
  return load_config(c.config, c.sets);
}

json memory_json(const Device& dev) {
  MemoryStats m = dev.memory_stats();
  return json{{"weights_bytes", m.peak[0]},
              {"kv_cache_bytes", m.peak[1]},
              {"workspace_bytes", m.peak[2]},
              {"peak_total_bytes", m.peak_total},
              {"limit_bytes", m.limit}};
}

void print_memory(const Device& dev) {
  MemoryStats m = dev.memory_stats();
  std::fprintf(stderr, "kvrun: peak memory on %s: weights %s, KV cache %s, workspace %s, total %s\n",
               dev.info().name.c_str(), format_bytes(m.peak[0]).c_str(), format_bytes(m.peak[1]).c_str(),
               format_bytes(m.peak[2]).c_str(), format_bytes(m.peak_total).c_str());
}

double median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

namespace {

std::atomic<bool> g_interrupted{false};
static_assert(std::atomic<bool>::is_always_lock_free, "the SIGINT flag must be usable in a signal handler");
struct sigaction g_previous {};

extern "C" void on_sigint(int) {
  if (g_interrupted.load()) {  // the second Ctrl-C: quit now, as without kvrun's handler
    ::signal(SIGINT, SIG_DFL);
    ::raise(SIGINT);
    return;
  }
  g_interrupted.store(true);
  static const char msg[] = "\nkvrun: interrupted (SIGINT): stopping at the next step; Ctrl-C again to quit at once\n";
  ssize_t ignored = ::write(STDERR_FILENO, msg, sizeof msg - 1);
  (void)ignored;
}

}  // namespace

InterruptGuard::InterruptGuard(bool restart_syscalls) {
  g_interrupted.store(false);
  struct sigaction current {};
  if (::sigaction(SIGINT, nullptr, &current) != 0 || current.sa_handler == SIG_IGN) return;
  struct sigaction sa {};
  sa.sa_handler = on_sigint;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = restart_syscalls ? SA_RESTART : 0;
  installed_ = ::sigaction(SIGINT, &sa, &g_previous) == 0;
}

InterruptGuard::~InterruptGuard() {
  if (installed_) ::sigaction(SIGINT, &g_previous, nullptr);
}

bool InterruptGuard::requested() noexcept { return g_interrupted.load(); }
void InterruptGuard::clear() noexcept { g_interrupted.store(false); }

}  // namespace kvrun
