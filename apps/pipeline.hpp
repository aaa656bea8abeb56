// kvrun — assembling a pipeline from a validated config (DESIGN.md "Data flow of one request"):
// registry → matrix check → device → checkpoint → weights → cache → attention → model.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "kvrun/config.hpp"
#include "kvrun/engine.hpp"
#include "kvrun/matrix.hpp"
#include "kvrun/models/checkpoint.hpp"
#include "kvrun/models/tokenizer.hpp"
#include "kvrun/models/transformer.hpp"
#include "kvrun/registry.hpp"

namespace kvrun {

// True when the running program lives in the build tree (an uninstalled kvrun, a test): only then
// are the build's plugin and backend folders (compiled in) searched. An installed kvrun finds its
// plugins beside its libraries (Registry::search_path), even when the build tree still exists.
bool running_uninstalled();
// The normal search path (Registry::search_path) with, for an uninstalled kvrun, the build's plugin
// folders (compiled in), for an installed one <bindir>/../<libdir>/kvrun/plugins; each folder once.
std::vector<std::string> plugin_search_path(const PipelineConfig& cfg);
std::vector<std::string> backend_search_path(const PipelineConfig& cfg);

// What `kvrun check` decides without touching a device or reading weights.
struct CheckReport {
  std::string backend;               // "cpu" / "cuda" (what the device spec names; auto → cpu, see notes)
  std::string weights;               // resolved weights plugin
  std::string checkpoint_encoding;   // "" for synthetic models
  Verdict verdict;
  std::vector<std::string> notes;    // e.g. "device auto: on a machine with a GPU this runs on cuda"
};
CheckReport check_pipeline(const PipelineConfig& cfg, Registry& reg);

// A pipeline's options for one plugin ([cache] or [attention] options) checked against what it
// declares (PluginInfo::options): an unknown key or a value of another type adds a reason naming
// the file, line and key, and what the plugin takes.
void check_plugin_options(const PluginInfo& info, const std::vector<ConfigOption>& opts, Verdict& v);
// The same options as the plugin receives them (CacheParams::options, AttentionParams::options).
PluginOptions plugin_options(const std::vector<ConfigOption>& opts);

class Pipeline {
 public:
  // Everything up to the weights on the device; throws Error with a category on any problem.
  explicit Pipeline(const PipelineConfig& cfg);
  ~Pipeline();

  // Creates the cache (sized from cache.max_tokens, else memory_fraction, else `request_tokens`)
  // for up to `max_seqs` sequences, and the attention operator.
  void prepare(int64_t request_tokens, int max_seqs);
  // Waits for the queue, then drops what prepare() made (cache, attention, step workspace), so
  // their device memory is free before the next prepare(); the model needs prepare() again.
  void release();

  const PipelineConfig& config() const noexcept { return cfg_; }
  Device& device() noexcept { return *device_; }
  Transformer& model() noexcept { return *model_; }
  Tokenizer& tokenizer();
  bool has_tokenizer() const noexcept { return tokenizer_ != nullptr; }
  const ModelConfig& model_config() const noexcept { return mcfg_; }
  const CheckReport& report() const noexcept { return report_; }
  const Registry& registry() const noexcept { return registry_; }
  // Generation settings with the precedence of SPECS.md §7: config > generation_config.json > built-ins.
  GenerationSettings generation_settings(std::optional<int> cli_max_new_tokens) const;

 private:
  PipelineConfig cfg_;
  Registry registry_;
  CheckReport report_;
  ModelConfig mcfg_;
  GenerationDefaults gen_;
  std::shared_ptr<Device> device_;
  std::unique_ptr<HfCheckpoint> ckpt_;
  std::unique_ptr<Tokenizer> tokenizer_;
  std::shared_ptr<WeightFormat> weights_;
  std::unique_ptr<Transformer> model_;
};

// SPECS.md §6 perplexity protocol: documents split on the "\n<|endoftext|>\n" line, blank ones
// dropped, each encoded and followed by the <|endoftext|> id, concatenated.
std::vector<int32_t> perplexity_corpus(const Tokenizer& tok, const std::string& text);
// Window starts i = 0, w, 2w, … while i + w + 1 < n; each window is ids[i .. i+w] (w predictions).
std::vector<int64_t> perplexity_windows(int64_t n, int window);

// Bytes per token of the cache plugin named in cfg, for `kvrun memory` (a layout kvrun does not
// know is measured on a one-block CPU cache made with the pipeline's cache options).
size_t cache_bytes_per_token(const Registry& reg, const std::string& cache, const ModelConfig& m,
                             const std::vector<ConfigOption>& options = {});

}  // namespace kvrun
