// weights.gptq — quantization settings: config.json["quantization_config"], then
// quant_config.json, then quantize_config.json; later files win per key (SPECS.md §2).
#include <cmath>
#include <map>
#include <nlohmann/json.hpp>

#include "gptq.hpp"

namespace kvrun::gptq {
namespace {

using json = nlohmann::json;

struct Entry {
  json value;
  std::string file;
};

std::string brief(const json& v) {
  std::string s = v.dump();
  return s.size() > 40 ? s.substr(0, 37) + "..." : s;
}

[[noreturn]] void bad(const Entry& e, const std::string& key, const std::string& why) {
  fail(ErrorKind::model, e.file + ": GPTQ setting '" + key + "' " + why);
}

bool get_bool(const std::map<std::string, Entry>& m, const std::string& key, bool def) {
  auto it = m.find(key);
  if (it == m.end() || it->second.value.is_null()) return def;
  if (!it->second.value.is_boolean()) bad(it->second, key, "must be true or false, got " + brief(it->second.value));
  return it->second.value.get<bool>();
}

int get_int(const std::map<std::string, Entry>& m, const std::string& key, int def) {
  auto it = m.find(key);
  if (it == m.end() || it->second.value.is_null()) return def;
  const json& v = it->second.value;
  if (v.is_number_integer()) return int(v.get<int64_t>());
  if (v.is_number_float()) {
    double d = v.get<double>();
    if (d == std::floor(d) && std::fabs(d) < 1e9) return int(d);
  }
  bad(it->second, key, "must be an integer, got " + brief(v));
}

std::string get_str(const std::map<std::string, Entry>& m, const std::string& key, const std::string& def) {
  auto it = m.find(key);
  if (it == m.end() || it->second.value.is_null()) return def;
  if (!it->second.value.is_string()) bad(it->second, key, "must be a string, got " + brief(it->second.value));
  return it->second.value.get<std::string>();
}

std::string lower(std::string s) {
  for (char& c : s)
    if (c >= 'A' && c <= 'Z') c = char(c - 'A' + 'a');
  return s;
}

}  // namespace

Settings merge_settings(const std::vector<SettingsSource>& sources) {
  std::map<std::string, Entry> merged;
  std::string files;
  for (const SettingsSource& src : sources) {
    json doc;
    try {
      doc = json::parse(src.text);
    } catch (const json::exception& e) {
      fail(ErrorKind::model, src.file + ": malformed JSON (" + std::string(e.what()) + ")");
    }
    const json* obj = &doc;
    std::string label = src.file;
    if (!src.key.empty()) {
      if (!doc.is_object() || !doc.contains(src.key)) continue;
      obj = &doc[src.key];
      label = src.file + " [" + src.key + "]";
      if (obj->is_null()) continue;
    }
    if (!obj->is_object()) fail(ErrorKind::model, label + ": expected a JSON object, got " + brief(*obj));
    for (auto it = obj->begin(); it != obj->end(); ++it) merged[it.key()] = Entry{it.value(), label};
    files += (files.empty() ? "" : ", ") + label;
  }
  if (files.empty())
    fail(ErrorKind::model, "no GPTQ settings found: expected config.json[\"quantization_config\"], quant_config.json "
                           "or quantize_config.json in the model directory");

  Settings s;
  s.sources = files;
  s.bits = get_int(merged, "bits", s.bits);
  if (s.bits != 2 && s.bits != 3 && s.bits != 4 && s.bits != 8)
    bad(merged.at("bits"), "bits", "is " + std::to_string(s.bits) + "; weights.gptq loads 2, 3, 4 or 8 bits");
  s.group_size = get_int(merged, "group_size", s.group_size);
  if (s.group_size == 0 || s.group_size < -1)
    bad(merged.at("group_size"), "group_size", "is " + std::to_string(s.group_size) + "; expected -1 (one group) or a positive size");
  s.desc_act = get_bool(merged, "desc_act", s.desc_act);
  s.sym = get_bool(merged, "sym", s.sym);
  s.static_groups = get_bool(merged, "static_groups", s.static_groups);
  s.true_sequential = get_bool(merged, "true_sequential", s.true_sequential);
  if (auto it = merged.find("damp_percent"); it != merged.end() && !it->second.value.is_null()) {
    if (!it->second.value.is_number()) bad(it->second, "damp_percent", "must be a number, got " + brief(it->second.value));
    s.damp_percent = it->second.value.get<double>();
  }
  s.quant_method = lower(get_str(merged, "quant_method", s.quant_method));
  if (s.quant_method != "gptq")
    bad(merged.at("quant_method"), "quant_method",
        "is \"" + s.quant_method + "\"; weights.gptq loads GPTQ checkpoints only (quant_method \"gptq\")");
  s.checkpoint_format = lower(get_str(merged, "checkpoint_format", "gptq"));
  if (s.checkpoint_format != "gptq" && s.checkpoint_format != "gptq_v2")
    bad(merged.at("checkpoint_format"), "checkpoint_format",
        "is \"" + s.checkpoint_format + "\"; weights.gptq loads \"gptq\" (v1) and \"gptq_v2\" layouts");
  if (get_bool(merged, "is_marlin_format", false))
    bad(merged.at("is_marlin_format"), "is_marlin_format",
        "is true; Marlin-repacked GPTQ checkpoints are not supported (use the plain GPTQ export)");
  return s;
}

Settings load_settings(const Checkpoint& ck) {
  std::vector<SettingsSource> src;
  struct File {
    const char* name;
    const char* key;
  };
  for (File f : {File{"config.json", "quantization_config"}, File{"quant_config.json", ""},
                 File{"quantize_config.json", ""}}) {
    std::string text;
    bool exists = false;
    check(ck.read_text(f.name, &text, &exists));
    if (exists) src.push_back({ck.directory() + "/" + f.name, std::move(text), f.key});
  }
  return merge_settings(src);
}

}  // namespace kvrun::gptq
