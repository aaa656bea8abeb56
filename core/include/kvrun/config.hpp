// kvrun — the pipeline configuration (TOML), its schema in one place, and --set overrides.
//
// Every key, its type, default and meaning lives in config_schema() (config.cpp); docs/config.md
// documents the same keys (a test checks that each schema key appears there).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace kvrun {

// One entry of a plugin's options table: `[cache] options = { group_size = 32 }` (or
// `--set cache.options.group_size=32`). Checked against the plugin's declared options
// (PluginInfo::options) by check_pipeline, then passed in CacheParams / AttentionParams.
struct ConfigOption {
  std::string key;    // "group_size"
  std::string value;  // as text: a string without quotes, numbers and booleans in TOML form
  std::string type;   // "string", "integer", "float" or "boolean" (the TOML type written)
  std::string where;  // "pipe.toml:5:13: key 'cache.options.group_size'" (the key's position)
};

struct PipelineConfig {
  std::string source = "<defaults>";  // the TOML file, for messages
  std::string base_dir = ".";         // relative paths in the file resolve against its folder

  // [model]
  std::string model_path;       // Hugging Face model directory
  std::string model_synthetic;  // "qwen-7b", "qwen2.5-7b": random weights of that shape, no files
  std::string synthetic_weights = "bf16";  // encoding of a synthetic model: "bf16" or "gptq"

  // [backend]
  std::string device = "auto";  // "auto", "cpu", "cuda", "cuda:N"
  int threads = 0;              // CPU worker threads, 0 = all cores
  size_t memory_limit = 0;      // bytes kvrun may take on the device, 0 = no cap
  std::string memory_limit_text;
  int max_step_tokens = 1024;   // prefill is processed in chunks of at most this many tokens
  bool graphs = true;           // replay decode steps as CUDA graphs where the device has them

  // [weights]
  std::string weights_format = "auto";  // "auto" = from the checkpoint; else a weights plugin name

  // [cache]
  std::string cache_type = "fp16";
  int block_tokens = 16;
  int64_t max_tokens = 0;        // KV capacity in tokens over all sequences; 0 = sized to the request
  double memory_fraction = 0.0;  // > 0: capacity from this fraction of the device memory left after weights
  std::vector<ConfigOption> cache_options;  // [cache] options: the cache plugin's own settings

  // [attention]
  std::string attention_kind = "naive";
  std::vector<ConfigOption> attention_options;  // [attention] options: the attention plugin's own settings

  // [generation] (unset values fall back to the model's generation_config.json, then built-ins)
  std::optional<int> max_new_tokens;
  std::optional<double> temperature, top_p, min_p, repetition_penalty;
  std::optional<int> top_k;
  std::optional<int64_t> seed;
  std::vector<std::string> stop;  // extra stop strings
  std::string overlap = "auto";   // overlapped decode: "auto", "on", "off" (GenerationSettings::overlap)

  // [plugins]
  std::vector<std::string> plugin_paths;
};

// One documented key of the schema.
struct ConfigKey {
  const char* section;
  const char* key;
  const char* type;  // "string", "integer", "float", "boolean", "array of strings", "table"
  const char* default_text;
  const char* doc;
};
const std::vector<ConfigKey>& config_schema();

// Parses a TOML file and applies "section.key=value" overrides (values in TOML syntax; a bare
// word is taken as a string). Error(usage) naming the file, line, column and key for malformed
// TOML, unknown sections or keys, wrong types and invalid values.
PipelineConfig load_config(const std::string& path, const std::vector<std::string>& overrides = {});
// The same from TOML text (tests); `source` names it in messages.
PipelineConfig parse_config(const std::string& toml_text, const std::string& source,
                            const std::vector<std::string>& overrides = {});

}  // namespace kvrun
