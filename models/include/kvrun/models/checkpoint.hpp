// kvrun — Hugging Face model directories: safetensors (mmap, strict validation per SPECS.md §4),
// sharded index, config.json / generation_config.json.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "kvrun/plugin.hpp"

namespace kvrun {

// One .safetensors file, memory-mapped read-only, header validated on open:
// header length beyond the file or > 100 MB, malformed JSON, unknown dtype, offsets outside the
// data, overlapping ranges, size != product(shape) * dtype size → Error(model) naming the file and
// the tensor. Supported dtypes: F32, F16, BF16, I32, I8, U8 (others, e.g. F64/I64, are refused
// naming the tensor).
class SafetensorsFile {
 public:
  static std::unique_ptr<SafetensorsFile> open(const std::string& path);
  // The same validation of a whole file image already in memory (`size` bytes at `bytes`); `name`
  // stands for the file in messages and HostTensor::file. Tensors point into `bytes`, which must
  // outlive the result (fuzzing and tests; open() validates its read-only mapping this way).
  static std::unique_ptr<SafetensorsFile> parse(const void* bytes, size_t size, const std::string& name);
  ~SafetensorsFile();
  const std::string& path() const noexcept { return path_; }
  bool has(const std::string& name) const noexcept { return tensors_.count(name) != 0; }
  const HostTensor& tensor(const std::string& name) const;  // Error(model) if absent
  const std::map<std::string, HostTensor>& tensors() const noexcept { return tensors_; }
  const std::map<std::string, std::string>& metadata() const noexcept { return metadata_; }
  // Tensors whose dtype is valid safetensors but not loadable by kvrun (F64, I64, BOOL, ...):
  // name -> safetensors dtype. Their offsets are validated; they are kept out of tensors() and
  // has(), and tensor(name) refuses them naming the tensor and its dtype.
  const std::map<std::string, std::string>& unsupported() const noexcept { return unsupported_; }

 private:
  SafetensorsFile() = default;
  void validate(const char* base, uint64_t file_size);  // fills the maps or throws Error(model)
  std::string path_;
  void* map_ = nullptr;
  size_t map_size_ = 0;
  std::map<std::string, HostTensor> tensors_;
  std::map<std::string, std::string> metadata_;
  std::map<std::string, std::string> unsupported_;
};

// A model directory: model.safetensors, or model.safetensors.index.json + its shards (every shard
// the index names must exist and hold the tensors the index says). A directory holding only
// pytorch_model*.bin is refused (pickle runs code on load: safetensors only).
class HfCheckpoint final : public Checkpoint {
 public:
  static std::unique_ptr<HfCheckpoint> open(const std::string& dir);

  const std::string& directory() const noexcept override { return dir_; }
  bool has(const std::string& tensor) const noexcept override;
  Status get(const std::string& tensor, HostTensor* out) const noexcept override;
  Status read_text(const std::string& file_name, std::string* out, bool* exists) const noexcept override;

  const HostTensor& tensor(const std::string& name) const;  // throwing form of get()
  std::vector<std::string> names() const;

 private:
  std::string dir_;
  std::vector<std::unique_ptr<SafetensorsFile>> files_;
  std::map<std::string, const SafetensorsFile*> where_;  // tensor name -> file
};

// The weight_map of a model.safetensors.index.json whose contents are `text` (`path` names it in
// messages): tensor name -> shard file name. Error(model) naming the path for malformed JSON, a
// missing, mistyped or empty weight_map, a non-string entry, or a shard name that leaves the model
// directory (absolute, or with a ".." component).
std::map<std::string, std::string> parse_safetensors_index(const std::string& text, const std::string& path);

enum class Arch { qwen, qwen2, llama };
const char* arch_name(Arch a) noexcept;

// Everything the forward pass needs from config.json, normalized across Qwen v1 / Qwen2 / Llama.
struct ModelConfig {
  Arch arch = Arch::qwen2;
  std::string model_type;    // as in config.json
  std::string architecture;  // architectures[0]
  int hidden = 0;
  int num_layers = 0;
  int num_heads = 0;
  int num_kv_heads = 0;
  int head_dim = 0;
  int intermediate = 0;  // width of one MLP branch (gate/up); Qwen v1: intermediate_size / 2
  int vocab = 0;
  float norm_eps = 1e-6f;
  float rope_theta = 10000.f;
  int rot_dim = 0;  // rotary dims (head_dim * rotary_pct for Qwen v1)
  bool tie_embeddings = false;
  bool qkv_bias = false;
  int max_positions = 0;  // max_position_embeddings (Qwen v1: seq_length)
  // Qwen v1 only
  int seq_length = 0;
  bool use_dynamic_ntk = false;
  bool use_logn_attn = false;
  // ids from config.json (bos/eos), possibly several eos
  std::vector<int32_t> eos_ids;
  std::string torch_dtype;  // "bfloat16", "float16", "float32" or "" (Qwen v1: from bf16/fp16/fp32 flags)
  std::string quant_method; // "gptq" when quantization_config says so, else ""
};

// Parses <dir>/config.json. Error(model) naming the file and key for: missing file, missing or
// mistyped required keys, unknown architecture, rope_scaling / rope_parameters.rope_type other
// than default, use_sliding_window = true.
ModelConfig load_model_config(const std::string& dir);
// The same from the contents of a config.json (`path` names it in messages), without looking at the
// directory: quant_method comes only from quantization_config (load_model_config also says "gptq"
// when a quantize_config.json / quant_config.json lies beside it).
ModelConfig parse_model_config(const std::string& text, const std::string& path);

// Defaults from <dir>/generation_config.json (all optional; absent file = all empty).
struct GenerationDefaults {
  std::optional<float> temperature, top_p, min_p, repetition_penalty;
  std::optional<int> top_k, max_new_tokens;
  std::optional<bool> do_sample;  // false means greedy regardless of temperature
  std::vector<int32_t> eos_ids;
};
GenerationDefaults load_generation_defaults(const std::string& dir);
// The same from the contents of a generation_config.json (`path` names it in messages).
GenerationDefaults parse_generation_defaults(const std::string& text, const std::string& path);

}  // namespace kvrun
