// kvrun — config.json (SPECS.md §3) and generation_config.json, normalized across Qwen v1, Qwen2 and
// Llama. Defaults for absent optional keys are those of the transformers config classes; a key that
// is present with the wrong type is an error naming it, never ignored.
#include <algorithm>
#include <cctype>
#include <cmath>
#include <filesystem>
#include <initializer_list>
#include <limits>

#include <nlohmann/json.hpp>

#include "checkpoint_util.hpp"
#include "kvrun/error.hpp"
#include "kvrun/models/checkpoint.hpp"

namespace kvrun {
namespace {

using nlohmann::json;
using ckpt_detail::join_path;
using ckpt_detail::json_brief;

// Typed access to one JSON object with errors naming the file and the key. A key whose value is
// null counts as absent (transformers writes e.g. "rope_scaling": null).
class Keys {
 public:
  Keys(const json& j, std::string path, std::string prefix = "")
      : j_(j), path_(std::move(path)), prefix_(std::move(prefix)) {}

  [[noreturn]] void error(const std::string& key, const std::string& what) const {
    fail(ErrorKind::model, path_ + ": key '" + prefix_ + key + "' " + what);
  }

  // The first of `keys` present (non-null), or nullptr; *used = its name.
  const json* find(std::initializer_list<const char*> keys, std::string* used = nullptr) const {
    for (const char* k : keys) {
      auto it = j_.find(k);
      if (it != j_.end() && !it->is_null()) {
        if (used) *used = k;
        return &*it;
      }
    }
    return nullptr;
  }

  std::optional<int64_t> opt_int(std::initializer_list<const char*> keys) const {
    std::string k;
    const json* v = find(keys, &k);
    if (!v) return std::nullopt;
    if (v->is_number_integer()) return v->get<int64_t>();
    if (v->is_number_float()) {
      double d = v->get<double>();
      if (std::isfinite(d) && d == std::floor(d) && std::fabs(d) < 9.0e15) return int64_t(d);
    }
    error(k, "must be an integer, got " + json_brief(*v));
  }

  std::optional<double> opt_num(std::initializer_list<const char*> keys) const {
    std::string k;
    const json* v = find(keys, &k);
    if (!v) return std::nullopt;
    if (!v->is_number()) error(k, "must be a number, got " + json_brief(*v));
    return v->get<double>();
  }

  std::optional<bool> opt_bool(std::initializer_list<const char*> keys) const {
    std::string k;
    const json* v = find(keys, &k);
    if (!v) return std::nullopt;
    if (!v->is_boolean()) error(k, "must be true or false, got " + json_brief(*v));
    return v->get<bool>();
  }

  std::optional<std::string> opt_str(std::initializer_list<const char*> keys) const {
    std::string k;
    const json* v = find(keys, &k);
    if (!v) return std::nullopt;
    if (!v->is_string()) error(k, "must be a string, got " + json_brief(*v));
    return v->get<std::string>();
  }

  // A positive int from the first key present; `keys` lists the name and its aliases.
  int req_pos_int(std::initializer_list<const char*> keys) const {
    auto v = opt_int(keys);
    if (!v) {
      std::string names;
      for (const char* k : keys) names += std::string(names.empty() ? "'" : " or '") + prefix_ + k + "'";
      fail(ErrorKind::model, path_ + ": required key " + names +
                                 " is missing; the file is incomplete (take config.json from the model's repository)");
    }
    return checked_pos(*keys.begin(), *v, keys);
  }
  int opt_pos_int(std::initializer_list<const char*> keys, int def) const {
    auto v = opt_int(keys);
    return v ? checked_pos(*keys.begin(), *v, keys) : def;
  }

  const std::string& path() const { return path_; }

 private:
  int checked_pos(const char* first, int64_t v, std::initializer_list<const char*> keys) const {
    std::string k = first;
    find(keys, &k);
    if (v <= 0 || v > std::numeric_limits<int>::max()) error(k, "must be a positive integer, got " + std::to_string(v));
    return int(v);
  }

  const json& j_;
  std::string path_;
  std::string prefix_;
};

std::vector<int32_t> parse_ids(const Keys& keys, const char* key) {
  std::vector<int32_t> ids;
  const json* v = keys.find({key});
  if (!v) return ids;
  auto one = [&](const json& x) {
    if (!x.is_number_integer() || x.get<int64_t>() < 0 || x.get<int64_t>() > std::numeric_limits<int32_t>::max())
      keys.error(key, "must be a token id or a list of token ids, got " + json_brief(*v));
    ids.push_back(int32_t(x.get<int64_t>()));
  };
  if (v->is_array()) {
    for (const auto& x : *v) one(x);
  } else {
    one(*v);
  }
  return ids;
}

std::string lower(std::string s) {
  for (char& c : s) c = char(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

// "bfloat16" / "torch.bfloat16" / "bf16" -> "bfloat16", etc.
std::string normalize_dtype(const Keys& keys, const char* key, const std::string& raw) {
  std::string s = lower(raw);
  if (s.rfind("torch.", 0) == 0) s = s.substr(6);
  if (s == "bfloat16" || s == "bf16") return "bfloat16";
  if (s == "float16" || s == "fp16" || s == "half") return "float16";
  if (s == "float32" || s == "fp32" || s == "float") return "float32";
  keys.error(key, "has dtype '" + raw + "'; kvrun knows bfloat16, float16 and float32 checkpoints");
}

void read_dtype(const Keys& keys, ModelConfig& c) {
  std::string k;
  const json* v = keys.find({"dtype", "torch_dtype"}, &k);
  if (!v) return;
  if (!v->is_string()) keys.error(k, "must be a string, got " + json_brief(*v));
  c.torch_dtype = normalize_dtype(keys, k.c_str(), v->get<std::string>());
}

bool arch_from_model_type(const std::string& t, Arch* a) {
  if (t == "qwen") *a = Arch::qwen;
  else if (t == "qwen2") *a = Arch::qwen2;
  else if (t == "llama") *a = Arch::llama;
  else return false;
  return true;
}
bool arch_from_architecture(const std::string& t, Arch* a) {
  if (t == "QWenLMHeadModel") *a = Arch::qwen;
  else if (t == "Qwen2ForCausalLM") *a = Arch::qwen2;
  else if (t == "LlamaForCausalLM") *a = Arch::llama;
  else return false;
  return true;
}

// rope_scaling / rope_parameters: only the default (unscaled) RoPE is implemented.
void check_rope_type(const Keys& keys, const char* key, const json& obj) {
  if (!obj.is_object()) keys.error(key, "must be an object or null, got " + json_brief(obj));
  std::string type;
  for (const char* tk : {"rope_type", "type"}) {
    auto it = obj.find(tk);
    if (it != obj.end() && !it->is_null()) {
      if (!it->is_string()) keys.error(std::string(key) + "." + tk, "must be a string, got " + json_brief(*it));
      type = it->get<std::string>();
      if (type != "default")
        keys.error(std::string(key) + "." + tk,
                   "is '" + type + "': RoPE scaling is not implemented (only \"default\"); remove the key to run "
                   "without scaling (contexts up to the original length)");
    }
  }
  if (type.empty() && std::string(key) == "rope_scaling" && !obj.empty())
    keys.error(key, "is " + json_brief(obj) + " without a rope_type; only unscaled RoPE is implemented");
}

void load_qwen1(const Keys& k, ModelConfig& c) {
  c.hidden = k.req_pos_int({"hidden_size", "n_embd"});
  c.num_heads = k.req_pos_int({"num_attention_heads", "n_head"});
  c.num_layers = k.req_pos_int({"num_hidden_layers", "n_layer"});
  c.num_kv_heads = c.num_heads;
  if (c.hidden % c.num_heads != 0 && !k.find({"kv_channels"}))
    k.error("kv_channels", "is missing and hidden_size is not a multiple of num_attention_heads");
  c.head_dim = k.opt_pos_int({"kv_channels"}, c.hidden / c.num_heads);
  std::string ik = "intermediate_size";
  k.find({"intermediate_size", "ffn_hidden_size"}, &ik);
  int inter = k.req_pos_int({"intermediate_size", "ffn_hidden_size"});
  if (inter % 2 != 0) k.error(ik, "must be even (it is twice the width of w1/w2), got " + std::to_string(inter));
  c.intermediate = inter / 2;
  c.vocab = k.req_pos_int({"vocab_size"});
  c.norm_eps = float(k.opt_num({"layer_norm_epsilon"}).value_or(1e-6));
  c.rope_theta = float(k.opt_num({"rotary_emb_base"}).value_or(10000.0));
  double pct = k.opt_num({"rotary_pct"}).value_or(1.0);
  if (!(pct > 0.0 && pct <= 1.0)) k.error("rotary_pct", "must be in (0, 1], got " + std::to_string(pct));
  c.rot_dim = int(c.head_dim * pct);
  if (c.rot_dim < 2 || c.rot_dim % 2 != 0)
    k.error("rotary_pct", "gives " + std::to_string(c.rot_dim) + " rotary dims of kv_channels " +
                              std::to_string(c.head_dim) + "; it must be a positive even number");
  if (!k.find({"seq_length", "max_position_embeddings"}))
    k.error("seq_length", "is missing (needed for dynamic NTK and logn attention)");
  c.seq_length = k.opt_pos_int({"seq_length", "max_position_embeddings"}, 0);
  c.max_positions = c.seq_length;
  c.use_dynamic_ntk = k.opt_bool({"use_dynamic_ntk"}).value_or(true);  // QWenConfig defaults
  c.use_logn_attn = k.opt_bool({"use_logn_attn"}).value_or(true);
  c.tie_embeddings = k.opt_bool({"tie_word_embeddings"}).value_or(false);
  c.qkv_bias = true;  // c_attn always has a bias in Qwen v1
  if (k.opt_bool({"bf16"}).value_or(false)) c.torch_dtype = "bfloat16";
  else if (k.opt_bool({"fp16"}).value_or(false)) c.torch_dtype = "float16";
  else if (k.opt_bool({"fp32"}).value_or(false)) c.torch_dtype = "float32";
  else read_dtype(k, c);
}

void load_qwen2_llama(const Keys& k, ModelConfig& c) {
  c.hidden = k.req_pos_int({"hidden_size"});
  c.num_heads = k.req_pos_int({"num_attention_heads"});
  c.num_layers = k.req_pos_int({"num_hidden_layers"});
  c.num_kv_heads = k.opt_pos_int({"num_key_value_heads"}, c.num_heads);
  if (c.num_heads % c.num_kv_heads != 0)
    k.error("num_key_value_heads", "(" + std::to_string(c.num_kv_heads) + ") must divide num_attention_heads (" +
                                       std::to_string(c.num_heads) + ")");
  if (c.hidden % c.num_heads != 0 && !k.find({"head_dim"}))
    k.error("head_dim", "is missing and hidden_size is not a multiple of num_attention_heads");
  c.head_dim = k.opt_pos_int({"head_dim"}, c.hidden / c.num_heads);
  if (c.head_dim % 2 != 0) k.error("head_dim", "must be even for RoPE, got " + std::to_string(c.head_dim));
  c.rot_dim = c.head_dim;
  c.intermediate = k.req_pos_int({"intermediate_size"});
  c.vocab = k.req_pos_int({"vocab_size"});
  c.norm_eps = float(k.opt_num({"rms_norm_eps"}).value_or(1e-6));
  c.tie_embeddings = k.opt_bool({"tie_word_embeddings"}).value_or(false);
  c.max_positions = k.opt_pos_int({"max_position_embeddings"}, c.arch == Arch::llama ? 2048 : 32768);
  c.qkv_bias = c.arch == Arch::qwen2 ? true : k.opt_bool({"attention_bias"}).value_or(false);

  if (auto act = k.opt_str({"hidden_act"}); act && *act != "silu" && *act != "swish")
    k.error("hidden_act", "is '" + *act + "'; only silu is implemented");

  // RoPE base: rope_parameters.rope_theta (newer transformers), else top-level rope_theta.
  std::optional<double> theta;
  if (const json* rp = k.find({"rope_parameters"})) {
    check_rope_type(k, "rope_parameters", *rp);
    Keys sub(*rp, k.path(), "rope_parameters.");
    theta = sub.opt_num({"rope_theta"});
  }
  if (const json* rs = k.find({"rope_scaling"})) {
    check_rope_type(k, "rope_scaling", *rs);
    if (!theta) theta = Keys(*rs, k.path(), "rope_scaling.").opt_num({"rope_theta"});
  }
  if (auto top = k.opt_num({"rope_theta"}); top && !theta) theta = top;
  c.rope_theta = float(theta.value_or(10000.0));
  if (!(c.rope_theta > 1.0f)) k.error("rope_theta", "must be > 1, got " + std::to_string(c.rope_theta));

  if (k.opt_bool({"use_sliding_window"}).value_or(false))
    k.error("use_sliding_window", "is true: sliding-window attention is not implemented; set it to false only if "
                                  "your contexts stay within sliding_window tokens");
  if (const json* lt = k.find({"layer_types"})) {
    if (!lt->is_array()) k.error("layer_types", "must be a list, got " + json_brief(*lt));
    for (const auto& t : *lt)
      if (!t.is_string() || t.get<std::string>() != "full_attention")
        k.error("layer_types", "contains " + json_brief(t) + ": only full_attention layers are implemented");
  }
  read_dtype(k, c);
}

}  // namespace

const char* arch_name(Arch a) noexcept {
  switch (a) {
    case Arch::qwen: return "qwen";
    case Arch::qwen2: return "qwen2";
    case Arch::llama: return "llama";
  }
  return "?";
}

ModelConfig parse_model_config(const std::string& text, const std::string& path) {
  const json j = ckpt_detail::parse_json(text, path);
  if (!j.is_object()) fail(ErrorKind::model, path + ": expected a JSON object");
  Keys k(j, path);

  ModelConfig c;
  c.model_type = k.opt_str({"model_type"}).value_or("");
  if (const json* a = k.find({"architectures"})) {
    if (!a->is_array() || (!a->empty() && !(*a)[0].is_string()))
      k.error("architectures", "must be a list of class names, got " + json_brief(*a));
    if (!a->empty()) c.architecture = (*a)[0].get<std::string>();
  }
  Arch from_type{}, from_arch{};
  const bool have_type = arch_from_model_type(c.model_type, &from_type);
  const bool have_arch = arch_from_architecture(c.architecture, &from_arch);
  if (!have_type && !have_arch)
    fail(ErrorKind::model, path + ": unsupported architecture (model_type '" + c.model_type + "', architectures[0] '" +
                               c.architecture + "'); kvrun runs qwen (QWenLMHeadModel), qwen2 (Qwen2ForCausalLM) "
                               "and llama (LlamaForCausalLM)");
  if (have_type && have_arch && from_type != from_arch)
    fail(ErrorKind::model, path + ": key 'model_type' ('" + c.model_type + "') contradicts 'architectures' ('" +
                               c.architecture + "'); fix the config");
  if (have_type && !have_arch && !c.architecture.empty())
    k.error("architectures", "names '" + c.architecture + "', which kvrun does not run (model_type is '" +
                                 c.model_type + "')");
  if (have_arch && !have_type && !c.model_type.empty())
    k.error("model_type", "is '" + c.model_type + "', which kvrun does not run (architectures[0] is '" +
                              c.architecture + "')");
  c.arch = have_type ? from_type : from_arch;

  if (c.arch == Arch::qwen) load_qwen1(k, c);
  else load_qwen2_llama(k, c);

  c.eos_ids = parse_ids(k, "eos_token_id");

  if (const json* q = k.find({"quantization_config"})) {
    if (!q->is_object()) k.error("quantization_config", "must be an object, got " + json_brief(*q));
    Keys qk(*q, path, "quantization_config.");
    auto m = qk.opt_str({"quant_method"});
    if (!m) qk.error("quant_method", "is missing; say which quantization the checkpoint uses (e.g. \"gptq\")");
    c.quant_method = lower(*m);
  }
  return c;
}

ModelConfig load_model_config(const std::string& dir) {
  const std::string path = join_path(dir, "config.json");
  auto text = ckpt_detail::read_file_if_exists(path);
  if (!text)
    fail(ErrorKind::model, path + ": not found; a Hugging Face model directory needs its config.json");
  ModelConfig c = parse_model_config(*text, path);
  if (c.quant_method.empty()) {  // no quantization_config: a GPTQ side file says GPTQ
    for (const char* side : {"quantize_config.json", "quant_config.json"}) {
      std::error_code ec;
      if (std::filesystem::is_regular_file(join_path(dir, side), ec)) {
        c.quant_method = "gptq";
        break;
      }
    }
  }
  return c;
}

GenerationDefaults load_generation_defaults(const std::string& dir) {
  const std::string path = join_path(dir, "generation_config.json");
  auto text = ckpt_detail::read_file_if_exists(path);
  if (!text) return {};
  return parse_generation_defaults(*text, path);
}

GenerationDefaults parse_generation_defaults(const std::string& text, const std::string& path) {
  GenerationDefaults g;
  const json j = ckpt_detail::parse_json(text, path);
  if (!j.is_object()) fail(ErrorKind::model, path + ": expected a JSON object");
  Keys k(j, path);
  auto f = [&](const char* key) -> std::optional<float> {
    auto v = k.opt_num({key});
    return v ? std::optional<float>(float(*v)) : std::nullopt;
  };
  auto i = [&](const char* key) -> std::optional<int> {
    auto v = k.opt_int({key});
    if (!v) return std::nullopt;
    if (*v < 0 || *v > std::numeric_limits<int>::max()) k.error(key, "must be a non-negative integer, got " + std::to_string(*v));
    return int(*v);
  };
  g.temperature = f("temperature");
  g.top_p = f("top_p");
  g.min_p = f("min_p");
  g.repetition_penalty = f("repetition_penalty");
  g.top_k = i("top_k");
  g.max_new_tokens = i("max_new_tokens");
  g.do_sample = k.opt_bool({"do_sample"});
  g.eos_ids = parse_ids(k, "eos_token_id");
  return g;
}

}  // namespace kvrun
