// kvrun — the compatibility matrix, derived from the plugins' declared capabilities (never a
// hand-written list). The same declarations choose the code path at run time, so what the matrix
// allows is exactly what can run.
#pragma once

#include <string>
#include <vector>

#include "kvrun/device.hpp"
#include "kvrun/registry.hpp"

namespace kvrun {

struct Combination {
  std::string weights;    // weights plugin name, e.g. "bf16"
  std::string cache;      // cache plugin name, e.g. "int8"
  std::string attention;  // attention plugin name, e.g. "flash"
  BackendKind backend = BackendKind::cpu;
  std::string checkpoint_encoding;  // "bf16", "f16", "f32", "gptq", … or "" when no checkpoint is known
};

struct Verdict {
  bool ok = true;
  std::vector<std::string> reasons;  // each names the plugins involved and what would work instead
  std::string message() const;       // reasons joined
};

// Decides one combination: unknown plugin names, plugins not built for the backend, a cache
// layout the attention cannot read, a weights plugin that cannot load the checkpoint's encoding.
Verdict check_combination(const Registry& reg, const Combination& c);

struct MatrixEntry {
  Combination combo;
  Verdict verdict;
};
// Every weights × cache × attention × backend of the loaded plugins (backends: cpu, cuda).
std::vector<MatrixEntry> full_matrix(const Registry& reg);

// The weights plugin to use for `format` ("auto" picks the one that loads `encoding`).
std::string resolve_weights_format(const Registry& reg, const std::string& format, const std::string& encoding);

}  // namespace kvrun
