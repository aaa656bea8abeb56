// kvrun — conformance checks any Cache, Attention or WeightFormat plugin can be run against, on
// the CPU: `kvrun selftest --plugin PATH [--with PATH]` (docs/plugins.md "Testing a plugin").
//
// - cache: declarations and info(), random keys/values of ragged sequences appended over several
//   steps and layers, read back through the layout (standard layouts decoded by kvrun itself,
//   others through Cache::read) within the declared tolerance; free and reuse; an exhausted pool
//   refused with ErrorKind::device and nothing allocated; a bad sequence id refused.
// - attention: for every layout it declares readable, against a straightforward softmax attention
//   on random inputs (causal, GQA/MQA, ragged prefill, chunked prefill and decode steps), over
//   views kvrun builds itself (standard layouts) or filled by a cache plugin that provides the
//   layout (found beside the plugin, in --with, or on the plugin search path); a layout it does
//   not declare must be refused.
// - weights: for every encoding kvrun can write (bf16, f16, f32, gptq), a synthetic checkpoint's
//   linear against the reference matmul; a missing tensor refused naming it; random_linear is a
//   linear map whose output does not depend on the batch size.
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "kvrun/config.hpp"

namespace kvrun {

struct ConformanceCheck {
  std::string name;    // "cache: append and read back"
  bool ok = false;
  std::string detail;  // what was measured, or why it failed
};

struct ConformanceReport {
  std::string path;     // the module under test
  std::string plugin;   // "cache.int8"
  std::string kind;     // "cache"
  std::vector<ConformanceCheck> checks;
  bool ok() const;
  nlohmann::json to_json() const;
};

// Loads `path` (Error(usage) naming it and the reason when it is refused) and runs the checks of
// its kind. `with`: companion modules or folders (e.g. the cache of a third-party layout an
// attention reads); `search`: the normal plugin search path, consulted after them. The plugin's
// options come from cfg ([cache] options for a cache and for a companion cache, [attention]
// options for an attention); cfg.threads sizes the CPU pool.
ConformanceReport run_conformance(const std::string& path, const std::vector<std::string>& with,
                                  const std::vector<std::string>& search, const PipelineConfig& cfg);
// Prints the report on stdout (one JSON document with json_out); returns the exit code: 0 when
// every check passed, 1 otherwise.
int print_conformance(const ConformanceReport& r, bool json_out);

}  // namespace kvrun
