#include "cli_common.hpp"

#include <algorithm>
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

}  // namespace kvrun
