#include "pipeline.hpp"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <sstream>

#include "kvrun/cpu/cpu.hpp"
#include "kvrun/log.hpp"
#include "kvrun/select.hpp"

namespace kvrun {
namespace fs = std::filesystem;

namespace {

std::vector<std::string> split_colon(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream ss(s);
  std::string item;
  while (std::getline(ss, item, ':'))
    if (!item.empty()) out.push_back(item);
  return out;
}

// The checkpoint's weight encoding as the weights plugins declare them.
std::string encoding_of(const ModelConfig& m) {
  if (!m.quant_method.empty()) return m.quant_method;
  if (m.torch_dtype == "float16") return "f16";
  if (m.torch_dtype == "float32") return "f32";
  return "bf16";
}

void check_all_options(const Registry& reg, const PipelineConfig& cfg, Verdict& v) {
  // An unknown plugin is a reason of its own (check_combination).
  if (const LoadedPlugin* p = reg.find(PluginKind::cache, cfg.cache_type)) check_plugin_options(p->info, cfg.cache_options, v);
  if (const LoadedPlugin* p = reg.find(PluginKind::attention, cfg.attention_kind))
    check_plugin_options(p->info, cfg.attention_options, v);
}

}  // namespace

void check_plugin_options(const PluginInfo& info, const std::vector<ConfigOption>& opts, Verdict& v) {
  std::string takes;
  for (const PluginOptionInfo& d : info.options)
    takes += (takes.empty() ? "" : ", ") + d.key + " (" + d.type + ", default " + d.default_text + ")";
  for (const ConfigOption& o : opts) {
    auto d = std::find_if(info.options.begin(), info.options.end(), [&](const PluginOptionInfo& x) { return x.key == o.key; });
    if (d == info.options.end()) {
      v.ok = false;
      v.reasons.push_back(o.where + ": " + info.full_name() + " has no option '" + o.key + "'; " +
                          (takes.empty() ? "it takes none" : "it takes: " + takes));
    } else if (d->type != o.type && !(d->type == "float" && o.type == "integer")) {
      v.ok = false;
      v.reasons.push_back(o.where + ": " + info.full_name() + " option '" + o.key + "' is " + d->type + ", got " +
                          o.type + " '" + o.value + "'");
    }
  }
}

PluginOptions plugin_options(const std::vector<ConfigOption>& opts) {
  PluginOptions out;
  for (const ConfigOption& o : opts) out.push_back({o.key, o.value, o.where});
  return out;
}

bool running_uninstalled() {
#ifdef KVRUN_BUILD_ROOT
  std::error_code e1, e2;
  const fs::path exe = fs::canonical("/proc/self/exe", e1);
  const fs::path root = fs::canonical(KVRUN_BUILD_ROOT, e2);
  if (e1 || e2) return false;
  auto [r, e] = std::mismatch(root.begin(), root.end(), exe.begin(), exe.end());
  return r == root.end();
#else
  return false;
#endif
}

std::vector<std::string> plugin_search_path(const PipelineConfig& cfg) {
  std::vector<std::string> extra;
  if (running_uninstalled()) {
#ifdef KVRUN_BUILD_PLUGIN_DIRS
    for (auto& d : split_colon(KVRUN_BUILD_PLUGIN_DIRS))
      if (fs::is_directory(d)) extra.push_back(d);
#endif
  } else {
#ifdef KVRUN_PLUGINDIR_FROM_BINDIR
    // An installed kvrun: <bindir>/../<libdir>/kvrun/plugins, wherever the installation was put
    // (also when LD_LIBRARY_PATH makes it load kvrun's libraries from elsewhere).
    std::error_code ec;
    const fs::path exe = fs::canonical("/proc/self/exe", ec);
    const fs::path dir = (exe.parent_path() / KVRUN_PLUGINDIR_FROM_BINDIR).lexically_normal();
    if (!ec && fs::is_directory(dir, ec)) extra.push_back(dir.string());
#endif
  }
  std::vector<std::string> out;
  for (std::string& d : Registry::search_path(cfg.plugin_paths, extra))  // each folder once
    if (std::find(out.begin(), out.end(), d) == out.end()) out.push_back(std::move(d));
  return out;
}

std::vector<std::string> backend_search_path(const PipelineConfig& cfg) {
  std::vector<std::string> dirs = plugin_search_path(cfg);
#ifdef KVRUN_BUILD_BACKEND_DIRS
  if (running_uninstalled())
    for (auto& d : split_colon(KVRUN_BUILD_BACKEND_DIRS)) dirs.push_back(d);
#endif
  return dirs;
}

CheckReport check_pipeline(const PipelineConfig& cfg, Registry& reg) {
  CheckReport r;
  if (reg.plugins().empty()) {
    reg.load_path(plugin_search_path(cfg));
    // A module on the plugin path that was refused (built for another plugin ABI, no entry
    // symbol, does not load) is worth a line even when this pipeline does not name it.
    for (const PluginProblem& p : reg.problems())
      if (!p.shadowed) log_warn("plugin skipped: " + p.reason);
  }
  BackendKind backend = backend_of_spec(cfg.device);
  r.backend = backend_name(backend);
  if (cfg.device == "auto") r.notes.push_back("backend.device = \"auto\": checked for cpu; a GPU is used when one can be opened");
  if (cfg.model_synthetic.empty()) {
    if (cfg.model_path.empty())
      fail(ErrorKind::usage, cfg.source + ": [model] path is not set (or set [model] synthetic)");
    std::error_code ec;
    const std::string want = "; set [model] path to a Hugging Face model directory (config.json, *.safetensors, "
                             "tokenizer.json); a relative path in the file is taken from the file's folder";
    if (!fs::exists(cfg.model_path, ec))
      fail(ErrorKind::model, cfg.source + ": [model] path '" + cfg.model_path + "' does not exist" + want);
    if (!fs::is_directory(cfg.model_path, ec))
      fail(ErrorKind::model, cfg.source + ": [model] path '" + cfg.model_path + "' is not a directory" + want);
    ModelConfig m = load_model_config(cfg.model_path);
    r.checkpoint_encoding = encoding_of(m);
  } else {
    r.checkpoint_encoding = cfg.synthetic_weights;
  }
  r.weights = resolve_weights_format(reg, cfg.weights_format, r.checkpoint_encoding);
  Combination c{r.weights, cfg.cache_type, cfg.attention_kind, backend, r.checkpoint_encoding};
  r.verdict = check_combination(reg, c);
  check_all_options(reg, cfg, r.verdict);
  return r;
}

Pipeline::Pipeline(const PipelineConfig& cfg) : cfg_(cfg) {
  // 1. plugins and the matrix, before anything is allocated
  report_ = check_pipeline(cfg_, registry_);
  // 2. the device (auto: a GPU if one opens)
  DeviceRequest req;
  req.spec = cfg_.device;
  req.cpu_threads = cfg_.threads;
  req.memory_limit = cfg_.memory_limit;
  req.search_dirs = backend_search_path(cfg_);
  device_ = open_device(req);
  if (device_->info().backend != backend_of_spec(cfg_.device)) {
    // "auto" resolved to another backend: check the combination again for it
    Combination c{report_.weights, cfg_.cache_type, cfg_.attention_kind, device_->info().backend,
                  report_.checkpoint_encoding};
    report_.verdict = check_combination(registry_, c);
    check_all_options(registry_, cfg_, report_.verdict);
    report_.backend = backend_name(device_->info().backend);
  }
  if (!report_.verdict.ok) fail(ErrorKind::usage, cfg_.source + ": invalid pipeline: " + report_.verdict.message());
  // 3. weights
  weights_ = registry_.create_weights(report_.weights, *device_);
  if (!cfg_.model_synthetic.empty()) {
    mcfg_ = synthetic_config(cfg_.model_synthetic);
    model_ = std::make_unique<Transformer>(mcfg_, 1234, weights_, *device_, cfg_.model_synthetic);
  } else {
    mcfg_ = load_model_config(cfg_.model_path);
    gen_ = load_generation_defaults(cfg_.model_path);
    ckpt_ = HfCheckpoint::open(cfg_.model_path);
    tokenizer_ = Tokenizer::load(cfg_.model_path);
    try {
      model_ = std::make_unique<Transformer>(mcfg_, *ckpt_, weights_, *device_, cfg_.model_path);
    } catch (const Error& e) {
      if (e.kind() != ErrorKind::device) throw;
      // Out of device memory while loading: say what the whole model needs, not only the
      // allocation that failed.
      size_t need = 0;
      for (const std::string& name : ckpt_->names()) need += ckpt_->tensor(name).nbytes;
      fail(ErrorKind::device, std::string(e.what()) + "\n  the weights of " + cfg_.model_path + " need about " +
                                  format_bytes(need) + " (" + std::to_string(need) + " bytes, the size of its tensors) on " +
                                  device_->info().name +
                                  (cfg_.memory_limit ? ", more than [backend] memory_limit = \"" + cfg_.memory_limit_text +
                                                           "\" (" + std::to_string(cfg_.memory_limit) + " bytes) allows"
                                                     : std::string()) +
                                  "; `kvrun memory -c " + cfg_.source + "` estimates weights + KV cache + workspace");
    }
    mcfg_ = model_->config();
  }
  check(device_->queue().wait());
}

Pipeline::~Pipeline() = default;

Tokenizer& Pipeline::tokenizer() {
  if (!tokenizer_) fail(ErrorKind::usage, "a synthetic model has no tokenizer; pass token ids (--prompt-ids)");
  return *tokenizer_;
}

void Pipeline::prepare(int64_t request_tokens, int max_seqs) {
  CacheParams cp;
  cp.num_layers = mcfg_.num_layers;
  cp.num_kv_heads = mcfg_.num_kv_heads;
  cp.head_dim = mcfg_.head_dim;
  cp.block_tokens = cfg_.block_tokens;
  cp.max_seqs = max_seqs;
  cp.options = plugin_options(cfg_.cache_options);
  const LoadedPlugin& cache_plugin = registry_.get(PluginKind::cache, cfg_.cache_type);
  size_t per_token =
      layout_bytes_per_token(cache_plugin.info.provides_layout, cp.num_layers, cp.num_kv_heads, cp.head_dim);
  if (per_token == 0 && cfg_.max_tokens == 0 && cfg_.memory_fraction > 0) {
    // A layout kvrun does not know: a one-block cache says what a token costs.
    CacheParams probe = cp;
    probe.max_tokens = cp.block_tokens;
    probe.max_seqs = 1;
    per_token = registry_.create_cache(cfg_.cache_type, probe, *device_)->info().bytes_per_token;
  }
  if (cfg_.max_tokens > 0) {
    cp.max_tokens = cfg_.max_tokens;
  } else if (cfg_.memory_fraction > 0) {
    if (per_token == 0)
      fail(ErrorKind::usage, "cache.memory_fraction: cache '" + cfg_.cache_type + "' has a layout kvrun cannot size; set cache.max_tokens");
    cp.max_tokens = int64_t(double(device_->available_memory()) * cfg_.memory_fraction / double(per_token));
  } else {
    // Exactly the request, plus one partly used block per sequence.
    cp.max_tokens = request_tokens + int64_t(max_seqs) * cfg_.block_tokens;
  }
  std::shared_ptr<Cache> cache;
  try {
    cache = registry_.create_cache(cfg_.cache_type, cp, *device_);
  } catch (const Error& e) {
    if (e.kind() != ErrorKind::device || per_token == 0) throw;
    const size_t need = per_token * size_t(cp.max_tokens);
    fail(ErrorKind::device, std::string(e.what()) + "\n  the KV cache needs " + format_bytes(need) + " (" +
                                std::to_string(need) + " bytes: " + std::to_string(cp.max_tokens) + " tokens × " +
                                std::to_string(per_token) + " bytes per token of cache." + cfg_.cache_type +
                                "); lower cache.max_tokens (or the batch size / --max-new-tokens)" +
                                (cfg_.cache_type == "fp16" ? ", or set cache.type = \"int8\" (about half the bytes)" : "") +
                                (cfg_.memory_limit ? ", or raise [backend] memory_limit" : ""));
  }
  AttentionParams ap;
  ap.num_heads = mcfg_.num_heads;
  ap.num_kv_heads = mcfg_.num_kv_heads;
  ap.head_dim = mcfg_.head_dim;
  ap.scale = 1.f / std::sqrt(float(mcfg_.head_dim));
  ap.max_tokens_per_step = cfg_.max_step_tokens;
  ap.max_kv_len = cache->info().capacity_tokens;
  ap.options = plugin_options(cfg_.attention_options);
  auto attention = registry_.create_attention(cfg_.attention_kind, ap, *device_);
  model_->attach(std::move(cache), std::move(attention), cfg_.max_step_tokens, cfg_.graphs);
}

void Pipeline::release() {
  check(device_->queue().wait());
  model_->detach();
}

GenerationSettings Pipeline::generation_settings(std::optional<int> cli_max_new_tokens) const {
  GenerationSettings s;
  // built-ins < generation_config.json < TOML/--set < command-line flags
  s.max_new_tokens = gen_.max_new_tokens.value_or(128);
  const bool greedy_model = gen_.do_sample.has_value() && !*gen_.do_sample;
  s.temperature = greedy_model ? 0.f : gen_.temperature.value_or(0.f);
  s.top_k = gen_.top_k.value_or(0);
  s.top_p = gen_.top_p.value_or(1.f);
  s.min_p = gen_.min_p.value_or(0.f);
  s.repetition_penalty = gen_.repetition_penalty.value_or(1.f);
  if (cfg_.max_new_tokens) s.max_new_tokens = *cfg_.max_new_tokens;
  if (cfg_.temperature) s.temperature = float(*cfg_.temperature);
  if (cfg_.top_k) s.top_k = *cfg_.top_k;
  if (cfg_.top_p) s.top_p = float(*cfg_.top_p);
  if (cfg_.min_p) s.min_p = float(*cfg_.min_p);
  if (cfg_.repetition_penalty) s.repetition_penalty = float(*cfg_.repetition_penalty);
  if (cfg_.seed) s.seed = uint64_t(*cfg_.seed);
  if (cli_max_new_tokens) s.max_new_tokens = *cli_max_new_tokens;
  s.eos_ids = gen_.eos_ids.empty() ? mcfg_.eos_ids : gen_.eos_ids;
  s.stop_strings = cfg_.stop;
  s.overlap = cfg_.overlap == "on"    ? GenerationSettings::Overlap::on
              : cfg_.overlap == "off" ? GenerationSettings::Overlap::off
                                      : GenerationSettings::Overlap::automatic;
  return s;
}

std::vector<int32_t> perplexity_corpus(const Tokenizer& tok, const std::string& text) {
  auto eos = tok.special_id("<|endoftext|>");
  if (!eos) fail(ErrorKind::model, "the tokenizer has no <|endoftext|> token, needed to join documents");
  std::vector<int32_t> ids;
  const std::string sep = "\n<|endoftext|>\n";
  size_t pos = 0;
  while (true) {
    size_t at = text.find(sep, pos);
    std::string doc = text.substr(pos, at == std::string::npos ? std::string::npos : at - pos);
    if (doc.find_first_not_of(" \t\r\n\f\v") != std::string::npos) {
      auto d = tok.encode(doc, false);
      ids.insert(ids.end(), d.begin(), d.end());
      ids.push_back(*eos);
    }
    if (at == std::string::npos) break;
    pos = at + sep.size();
  }
  return ids;
}

std::vector<int64_t> perplexity_windows(int64_t n, int window) {
  std::vector<int64_t> starts;
  for (int64_t i = 0; i + window + 1 < n; i += window) starts.push_back(i);
  return starts;
}

size_t cache_bytes_per_token(const Registry& reg, const std::string& cache, const ModelConfig& m,
                             const std::vector<ConfigOption>& options) {
  const LoadedPlugin& p = reg.get(PluginKind::cache, cache);
  const size_t n = layout_bytes_per_token(p.info.provides_layout, m.num_layers, m.num_kv_heads, m.head_dim);
  const auto& bs = p.info.backends;
  if (n != 0 || std::find(bs.begin(), bs.end(), BackendKind::cpu) == bs.end()) return n;
  // A layout kvrun does not know: a one-block cache on the CPU says what a token costs.
  CacheParams probe;
  probe.num_layers = m.num_layers;
  probe.num_kv_heads = m.num_kv_heads;
  probe.head_dim = m.head_dim;
  probe.max_tokens = probe.block_tokens;
  probe.options = plugin_options(options);
  auto cpu = cpu::make_cpu_device(0);
  return reg.create_cache(cache, probe, *cpu)->info().bytes_per_token;
}

}  // namespace kvrun
