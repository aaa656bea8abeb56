// The pipeline schema: every key in one table, parsed from TOML with file:line:column in messages.
#include "kvrun/config.hpp"

#include <cmath>
#include <filesystem>
#include <limits>
#include <fstream>
#include <functional>
#include <sstream>
#include <toml++/toml.h>

#include "kvrun/device.hpp"
#include "kvrun/error.hpp"

namespace kvrun {
namespace {

enum class Type { string, integer, floating, boolean, string_array, table };

const char* type_name(Type t) {
  switch (t) {
    case Type::string: return "string";
    case Type::integer: return "integer";
    case Type::floating: return "float";
    case Type::boolean: return "boolean";
    case Type::string_array: return "array of strings";
    case Type::table: return "table";
  }
  return "?";
}

// A typed value taken from TOML, with where it came from.
struct Value {
  std::string s;
  int64_t i = 0;
  double f = 0;
  bool b = false;
  std::vector<std::string> list;
  std::vector<ConfigOption> options;  // Type::table: a plugin's options
  std::string where;  // "pipeline.toml:12:5 key 'cache.type'"
};

using Setter = std::function<void(PipelineConfig&, const Value&)>;

struct KeyDef {
  ConfigKey doc;
  Type type;
  Setter set;
};

[[noreturn]] void bad_value(const Value& v, const std::string& what) {
  fail(ErrorKind::usage, v.where + ": " + what);
}

int64_t positive(const Value& v, int64_t min) {
  if (v.i < min) bad_value(v, "must be >= " + std::to_string(min) + " (got " + std::to_string(v.i) + ")");
  return v.i;
}

// The same for a key stored as an int: larger values are refused, not truncated.
int positive_int(const Value& v, int64_t min) {
  const int64_t i = positive(v, min);
  if (i > std::numeric_limits<int>::max())
    bad_value(v, "must be <= " + std::to_string(std::numeric_limits<int>::max()) + " (got " + std::to_string(i) + ")");
  return int(i);
}

const std::vector<KeyDef>& defs() {
  static const std::vector<KeyDef> d = {
      {{"model", "path", "string", "(required unless synthetic)",
        "Hugging Face model directory (config.json + safetensors + tokenizer). Relative paths resolve against the TOML file's folder."},
       Type::string, [](PipelineConfig& c, const Value& v) { c.model_path = v.s; }},
      {{"model", "synthetic", "string", "\"\"",
        "Build a model of a published shape with seeded random weights on the device, without files: \"qwen-7b\" or \"qwen2.5-7b\" (benchmarks)."},
       Type::string,
       [](PipelineConfig& c, const Value& v) {
         if (!v.s.empty() && v.s != "qwen-7b" && v.s != "qwen2.5-7b")
           bad_value(v, "unknown synthetic model '" + v.s + "'; use \"qwen-7b\" or \"qwen2.5-7b\"");
         c.model_synthetic = v.s;
       }},
      {{"model", "synthetic_weights", "string", "\"bf16\"",
        "Weight encoding of a synthetic model: \"bf16\" or \"gptq\" (int4, group 128)."},
       Type::string,
       [](PipelineConfig& c, const Value& v) {
         if (v.s != "bf16" && v.s != "gptq") bad_value(v, "must be \"bf16\" or \"gptq\" (got '" + v.s + "')");
         c.synthetic_weights = v.s;
       }},
      {{"backend", "device", "string", "\"auto\"",
        "\"cpu\", \"cuda\" (= cuda:0), \"cuda:N\", or \"auto\" (a GPU if one can be opened, else the CPU with a line on stderr)."},
       Type::string,
       [](PipelineConfig& c, const Value& v) {
         const std::string& s = v.s;
         bool ok = s == "auto" || s == "cpu" || s == "cuda";
         if (!ok && s.rfind("cuda:", 0) == 0 && s.size() > 5 &&
             s.find_first_not_of("0123456789", 5) == std::string::npos)
           ok = true;
         if (!ok) bad_value(v, "unknown device '" + s + "'; use \"auto\", \"cpu\", \"cuda\" or \"cuda:N\"");
         c.device = s;
       }},
      {{"backend", "threads", "integer", "0", "CPU worker threads; 0 = all cores."}, Type::integer,
       [](PipelineConfig& c, const Value& v) { c.threads = positive_int(v, 0); }},
      {{"backend", "memory_limit", "string", "\"\" (no cap)",
        "Most device memory kvrun may take, e.g. \"80GB\" (10^9) or \"75GiB\" (2^30); reproduces smaller GPUs on a bigger one."},
       Type::string,
       [](PipelineConfig& c, const Value& v) {
         c.memory_limit_text = v.s;
         c.memory_limit = v.s.empty() ? 0 : parse_byte_size(v.s, v.where);
       }},
      {{"backend", "max_step_tokens", "integer", "1024",
        "Most tokens one forward step processes; longer prompts are prefilled in chunks (bounds activation workspace)."},
       Type::integer, [](PipelineConfig& c, const Value& v) { c.max_step_tokens = positive_int(v, 1); }},
      {{"backend", "graphs", "boolean", "true",
        "Capture each decode step shape once as a CUDA graph and replay it (no per-kernel launch cost); false runs every kernel eagerly."},
       Type::boolean, [](PipelineConfig& c, const Value& v) { c.graphs = v.b; }},
      {{"weights", "format", "string", "\"auto\"",
        "Weight plugin: \"auto\" (from the checkpoint: gptq if quantized, else bf16), \"bf16\" (also loads fp16/fp32) or \"gptq\"."},
       Type::string, [](PipelineConfig& c, const Value& v) { c.weights_format = v.s; }},
      {{"cache", "type", "string", "\"fp16\"",
        "KV cache plugin: \"fp16\" (16-bit blocks) or \"int8\" (uint8 + per-token, per-head fp16 scale and uint8 zero point)."},
       Type::string, [](PipelineConfig& c, const Value& v) { c.cache_type = v.s; }},
      {{"cache", "block_tokens", "integer", "16", "Tokens per cache block (paged allocation granularity)."},
       Type::integer,
       [](PipelineConfig& c, const Value& v) {
         int64_t n = positive(v, 1);
         if (n > 4096) bad_value(v, "must be <= 4096 (got " + std::to_string(n) + ")");
         c.block_tokens = int(n);
       }},
      {{"cache", "max_tokens", "integer", "0",
        "KV capacity in tokens over all sequences of a batch; 0 = exactly what the request needs (prompts + new tokens)."},
       Type::integer, [](PipelineConfig& c, const Value& v) { c.max_tokens = positive(v, 0); }},
      {{"cache", "memory_fraction", "float", "0.0",
        "If > 0 and max_tokens = 0: size the cache to this fraction of the device memory left after the weights."},
       Type::floating,
       [](PipelineConfig& c, const Value& v) {
         if (v.f < 0 || v.f > 1) bad_value(v, "must be between 0 and 1");
         c.memory_fraction = v.f;
       }},
      {{"cache", "options", "table", "{}",
        "Settings of the cache plugin itself, e.g. { group_size = 32 }; the keys and types each plugin takes are listed by `kvrun plugins`."},
       Type::table, [](PipelineConfig& c, const Value& v) { c.cache_options = v.options; }},
      {{"attention", "kind", "string", "\"naive\"",
        "Attention plugin: \"naive\" (reads every standard cache layout) or \"flash\" (tiled online softmax; fp16/bf16 caches only)."},
       Type::string, [](PipelineConfig& c, const Value& v) { c.attention_kind = v.s; }},
      {{"attention", "options", "table", "{}",
        "Settings of the attention plugin itself; the keys and types each plugin takes are listed by `kvrun plugins`."},
       Type::table, [](PipelineConfig& c, const Value& v) { c.attention_options = v.options; }},
      {{"generation", "max_new_tokens", "integer", "generation_config.json, else 128", "Tokens to generate per prompt."},
       Type::integer, [](PipelineConfig& c, const Value& v) { c.max_new_tokens = positive_int(v, 0); }},
      {{"generation", "temperature", "float", "generation_config.json, else 0",
        "Sampling temperature; 0 = greedy. A model whose generation_config.json says do_sample = false is greedy unless this is set."},
       Type::floating,
       [](PipelineConfig& c, const Value& v) {
         if (v.f < 0) bad_value(v, "must be >= 0");
         c.temperature = v.f;
       }},
      {{"generation", "top_k", "integer", "generation_config.json, else 0 (off)", "Keep the k most likely tokens."},
       Type::integer, [](PipelineConfig& c, const Value& v) { c.top_k = positive_int(v, 0); }},
      {{"generation", "top_p", "float", "generation_config.json, else 1.0 (off)", "Nucleus sampling mass."},
       Type::floating,
       [](PipelineConfig& c, const Value& v) {
         if (v.f <= 0 || v.f > 1) bad_value(v, "must be in (0, 1]");
         c.top_p = v.f;
       }},
      {{"generation", "min_p", "float", "generation_config.json, else 0 (off)",
        "Drop tokens whose probability is below min_p times the top token's."},
       Type::floating,
       [](PipelineConfig& c, const Value& v) {
         if (v.f < 0 || v.f > 1) bad_value(v, "must be in [0, 1]");
         c.min_p = v.f;
       }},
      {{"generation", "repetition_penalty", "float", "generation_config.json, else 1.0 (off)",
        "Divide positive (multiply negative) logits of tokens already in the sequence (CTRL-style)."},
       Type::floating,
       [](PipelineConfig& c, const Value& v) {
         if (v.f <= 0) bad_value(v, "must be > 0");
         c.repetition_penalty = v.f;
       }},
      {{"generation", "seed", "integer", "0", "Seed of the sampler (same seed, same output)."}, Type::integer,
       [](PipelineConfig& c, const Value& v) { c.seed = v.i; }},
      {{"generation", "stop", "array of strings", "[]",
        "Extra stop strings; generation also stops at the model's end-of-sequence ids."},
       Type::string_array, [](PipelineConfig& c, const Value& v) { c.stop = v.list; }},
      {{"generation", "overlap", "string", "\"auto\"",
        "Overlapped decode: the host issues each decode step before it has the previous step's tokens, so its per-step work runs while the GPU computes (same outputs; a sequence ending at eos or a stop string is computed one step past its end). \"auto\" = on a GPU, off on the CPU and with a repetition penalty (sampled on the host); \"on\" refuses a repetition penalty; \"off\" = one step at a time."},
       Type::string,
       [](PipelineConfig& c, const Value& v) {
         if (v.s != "auto" && v.s != "on" && v.s != "off") bad_value(v, "unknown value '" + v.s + "'; use \"auto\", \"on\" or \"off\"");
         c.overlap = v.s;
       }},
      {{"plugins", "paths", "array of strings", "[]",
        "Extra folders (or .so files) searched for plugins before KVRUN_PLUGIN_PATH and the install folder."},
       Type::string_array, [](PipelineConfig& c, const Value& v) { c.plugin_paths = v.list; }},
  };
  return d;
}

std::string where_of(const std::string& source, const toml::source_region& r, const std::string& key) {
  std::ostringstream o;
  o << source;
  if (r.begin.line) o << ":" << r.begin.line << ":" << r.begin.column;
  o << ": key '" << key << "'";
  return o.str();
}

// One plugin option from a TOML scalar.
ConfigOption option_of(const toml::node& n, const std::string& key, const std::string& where) {
  ConfigOption o;
  o.key = key;
  o.where = where;
  if (n.is_string()) {
    o.type = "string";
    o.value = *n.value<std::string>();
  } else if (n.is_integer()) {
    o.type = "integer";
    o.value = std::to_string(*n.value<int64_t>());
  } else if (n.is_floating_point()) {
    o.type = "float";
    std::ostringstream s;
    s.precision(17);
    s << *n.value<double>();
    o.value = s.str();
  } else if (n.is_boolean()) {
    o.type = "boolean";
    o.value = *n.value<bool>() ? "true" : "false";
  } else {
    fail(ErrorKind::usage, where + ": a plugin option is a string, an integer, a float or a boolean");
  }
  return o;
}

// Converts a TOML node to the key's type (integers are accepted for floats). For a table (plugin
// options), `source` (the file, or "" for --set) and `full_key` ("cache.options") name its entries.
Value to_value(const toml::node& n, Type t, const std::string& where, const std::string& source = "",
               const std::string& full_key = "") {
  Value v;
  v.where = where;
  auto mismatch = [&]() -> Value {
    fail(ErrorKind::usage, where + ": expected " + type_name(t) + ", got " +
                               std::string([&] {
                                 switch (n.type()) {
                                   case toml::node_type::string: return "a string";
                                   case toml::node_type::integer: return "an integer";
                                   case toml::node_type::floating_point: return "a float";
                                   case toml::node_type::boolean: return "a boolean";
                                   case toml::node_type::array: return "an array";
                                   case toml::node_type::table: return "a table";
                                   default: return "a date/time";
                                 }
                               }()));
  };
  switch (t) {
    case Type::string:
      if (!n.is_string()) return mismatch();
      v.s = *n.value<std::string>();
      break;
    case Type::integer:
      if (!n.is_integer()) return mismatch();
      v.i = *n.value<int64_t>();
      break;
    case Type::floating:
      if (n.is_integer()) v.f = double(*n.value<int64_t>());
      else if (n.is_floating_point()) v.f = *n.value<double>();
      else return mismatch();
      if (!std::isfinite(v.f)) fail(ErrorKind::usage, where + ": must be a finite number (got " + std::to_string(v.f) + ")");
      break;
    case Type::boolean:
      if (!n.is_boolean()) return mismatch();
      v.b = *n.value<bool>();
      break;
    case Type::table: {
      if (!n.is_table()) return mismatch();
      for (auto&& [k, node] : *n.as_table()) {
        const std::string sub(k.str());
        v.options.push_back(option_of(node, sub, source.empty() ? where + ": key '" + full_key + "." + sub + "'"
                                                                : where_of(source, k.source(), full_key + "." + sub)));
      }
      break;
    }
    case Type::string_array: {
      if (!n.is_array()) return mismatch();
      for (const toml::node& e : *n.as_array()) {
        if (!e.is_string()) fail(ErrorKind::usage, where + ": expected an array of strings; an element is not a string");
        v.list.push_back(*e.value<std::string>());
      }
      break;
    }
  }
  return v;
}

const KeyDef* find_def(const std::string& section, const std::string& key) {
  for (const KeyDef& d : defs())
    if (section == d.doc.section && key == d.doc.key) return &d;
  return nullptr;
}

std::string known_keys(const std::string& section) {
  std::string s;
  for (const KeyDef& d : defs())
    if (section == d.doc.section) s += (s.empty() ? "" : ", ") + std::string(d.doc.key);
  return s;
}

std::string known_sections() {
  std::string s;
  std::string last;
  for (const KeyDef& d : defs())
    if (d.doc.section != last) {
      last = d.doc.section;
      s += (s.empty() ? "[" : ", [") + last + "]";
    }
  return s;
}

void apply_table(PipelineConfig& c, const toml::table& root, const std::string& source) {
  for (auto&& [skey, snode] : root) {
    std::string section(skey.str());
    bool any = false;
    for (const KeyDef& d : defs()) any |= section == d.doc.section;
    if (!any) {
      fail(ErrorKind::usage, where_of(source, skey.source(), section) + ": unknown section [" + section +
                                 "]; known sections: " + known_sections());
    }
    if (!snode.is_table()) {
      fail(ErrorKind::usage, where_of(source, skey.source(), section) + ": [" + section +
                                 "] must be a table (a [" + section + "] header followed by keys)");
    }
    for (auto&& [kkey, knode] : *snode.as_table()) {
      std::string key(kkey.str());
      std::string full = section + "." + key;
      const KeyDef* d = find_def(section, key);
      if (!d) {
        fail(ErrorKind::usage, where_of(source, kkey.source(), full) + ": unknown key; [" + section +
                                   "] has: " + known_keys(section) + " (see docs/config.md)");
      }
      d->set(c, to_value(knode, d->type, where_of(source, kkey.source(), full), source, full));
    }
  }
}

void apply_override(PipelineConfig& c, const std::string& ov) {
  std::string where = "--set '" + ov + "'";
  size_t eq = ov.find('=');
  if (eq == std::string::npos) fail(ErrorKind::usage, where + ": expected section.key=value, e.g. --set cache.type=int8");
  std::string path = ov.substr(0, eq);
  std::string text = ov.substr(eq + 1);
  size_t dot = path.find('.');
  if (dot == std::string::npos) fail(ErrorKind::usage, where + ": expected section.key=value, e.g. --set cache.type=int8");
  std::string section = path.substr(0, dot), key = path.substr(dot + 1);
  const KeyDef* d = find_def(section, key);
  // --set cache.options.KEY=VALUE sets one plugin option (replacing one of the same key).
  std::vector<ConfigOption>* options = section == "cache"       ? &c.cache_options
                                       : section == "attention" ? &c.attention_options
                                                                : nullptr;
  if (!d && options && key.rfind("options.", 0) == 0 && key.size() > 8) {
    const std::string sub = key.substr(8);
    ConfigOption o;
    toml::table t;
    try {
      t = toml::parse("v = " + text);
    } catch (const toml::parse_error&) {
    }
    const toml::node* n = t["v"].node();
    if (n && !n->is_table() && !n->is_array()) {
      o = option_of(*n, sub, where + ": key '" + path + "'");
    } else {  // a bare word is a string, as for other keys
      o = ConfigOption{sub, text, "string", where + ": key '" + path + "'"};
    }
    std::erase_if(*options, [&](const ConfigOption& x) { return x.key == sub; });
    options->push_back(o);
    return;
  }
  if (!d) {
    std::string known = known_keys(section);
    fail(ErrorKind::usage, where + ": unknown key '" + path + "'" +
                               (known.empty() ? "; known sections: " + known_sections()
                                              : "; [" + section + "] has: " + known));
  }
  // The value is TOML; a bare word that is not valid TOML is taken as a string.
  toml::table t;
  bool parsed = false;
  try {
    t = toml::parse("v = " + text);
    parsed = true;
  } catch (const toml::parse_error&) {
  }
  if (parsed && t["v"].node()) {
    const toml::node& n = *t["v"].node();
    if (d->type == Type::string && !n.is_string()) {
      // A number or boolean given for a string key is kept as written (e.g. a path "2024").
      Value v;
      v.where = where;
      v.s = text;
      d->set(c, v);
      return;
    }
    d->set(c, to_value(n, d->type, where, "", path));
    return;
  }
  if (d->type != Type::string) {
    fail(ErrorKind::usage, where + ": '" + text + "' is not a valid " + type_name(d->type));
  }
  Value v;
  v.where = where;
  v.s = text;
  d->set(c, v);
}

PipelineConfig parse_impl(const std::string& text, const std::string& source, const std::string& base_dir,
                          const std::vector<std::string>& overrides) {
  PipelineConfig c;
  c.source = source;
  c.base_dir = base_dir;
  toml::table root;
  try {
    root = toml::parse(text, source);
  } catch (const toml::parse_error& e) {
    std::ostringstream o;
    o << source << ":" << e.source().begin.line << ":" << e.source().begin.column
      << ": malformed TOML: " << e.description();
    fail(ErrorKind::usage, o.str());
  }
  apply_table(c, root, source);
  // Paths written in the file resolve against the file's folder; paths given with --set against
  // the current directory.
  auto resolve = [&](std::string& p) {
    if (!p.empty() && std::filesystem::path(p).is_relative())
      p = (std::filesystem::path(base_dir) / p).lexically_normal().string();
  };
  resolve(c.model_path);
  for (std::string& p : c.plugin_paths) resolve(p);
  for (const std::string& ov : overrides) apply_override(c, ov);
  return c;
}

}  // namespace

const std::vector<ConfigKey>& config_schema() {
  static const std::vector<ConfigKey> keys = [] {
    std::vector<ConfigKey> k;
    for (const KeyDef& d : defs()) k.push_back(d.doc);
    return k;
  }();
  return keys;
}

PipelineConfig parse_config(const std::string& toml_text, const std::string& source,
                            const std::vector<std::string>& overrides) {
  return parse_impl(toml_text, source, ".", overrides);
}

PipelineConfig load_config(const std::string& path, const std::vector<std::string>& overrides) {
  std::error_code ec;
  if (!std::filesystem::is_regular_file(path, ec)) {
    fail(ErrorKind::usage, "config file '" + path + "' does not exist (pass -c FILE; examples are in configs/)");
  }
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  if (in.bad()) fail(ErrorKind::usage, "cannot read config file '" + path + "'");
  std::string base = std::filesystem::path(path).parent_path().string();
  return parse_impl(ss.str(), path, base.empty() ? "." : base, overrides);
}

}  // namespace kvrun
