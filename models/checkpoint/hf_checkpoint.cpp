// kvrun — a Hugging Face model directory: model.safetensors, or model.safetensors.index.json and
// its shards. Only headers are read on open.
//
// Tensors with a valid but unsupported safetensors dtype (F64, I64, BOOL, ...) are known to the
// checkpoint (a sharded index may name them) but not loadable: has() is false for them, names()
// leaves them out, and get()/tensor() refuse them naming the tensor, its dtype and its file.
#include <algorithm>
#include <filesystem>
#include <set>
#include <system_error>

#include <nlohmann/json.hpp>

#include "checkpoint_util.hpp"
#include "kvrun/error.hpp"
#include "kvrun/models/checkpoint.hpp"

namespace kvrun {
namespace fs = std::filesystem;
using ckpt_detail::join_path;

namespace {

constexpr const char* kIndexName = "model.safetensors.index.json";
constexpr const char* kSingleName = "model.safetensors";

bool is_file(const std::string& p) {
  std::error_code ec;
  return fs::is_regular_file(p, ec);  // follows symlinks
}

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// A shard or side file name must stay inside the model directory.
bool safe_relative_name(const std::string& name) {
  if (name.empty() || name.front() == '/') return false;
  for (const auto& part : fs::path(name))
    if (part == "..") return false;
  return true;
}

bool contains_tensor(const SafetensorsFile& f, const std::string& name) {
  return f.has(name) || f.unsupported().count(name) != 0;
}

}  // namespace

std::map<std::string, std::string> parse_safetensors_index(const std::string& text, const std::string& index_path) {
  nlohmann::json idx = ckpt_detail::parse_json(text, index_path);
  if (!idx.is_object()) fail(ErrorKind::model, index_path + ": expected a JSON object; re-download the file");
  auto wm = idx.find("weight_map");
  if (wm == idx.end() || !wm->is_object())
    fail(ErrorKind::model, index_path + ": key 'weight_map' is missing or not an object (tensor name -> shard file)");
  if (wm->empty()) fail(ErrorKind::model, index_path + ": 'weight_map' is empty; the index names no tensors");
  std::map<std::string, std::string> weight_map;
  for (auto it = wm->begin(); it != wm->end(); ++it) {
    if (!it.value().is_string())
      fail(ErrorKind::model, index_path + ": weight_map['" + it.key() + "'] must be a file name string, got " +
                                 ckpt_detail::json_brief(it.value()));
    const std::string shard = it.value().get<std::string>();
    if (!safe_relative_name(shard))
      fail(ErrorKind::model, index_path + ": weight_map['" + it.key() + "'] = '" + shard +
                                 "' is not a file name inside the model directory");
    weight_map.emplace(it.key(), shard);
  }
  return weight_map;
}

std::unique_ptr<HfCheckpoint> HfCheckpoint::open(const std::string& dir) {
  std::error_code ec;
  if (!fs::exists(dir, ec)) fail(ErrorKind::model, dir + ": model directory not found");
  if (!fs::is_directory(dir, ec))
    fail(ErrorKind::model, dir + ": not a directory; pass the Hugging Face model directory (with config.json)");
  const std::string config = join_path(dir, "config.json");
  if (!is_file(config))
    fail(ErrorKind::model, config + ": not found; a Hugging Face model directory needs its config.json next to "
                                    "the safetensors weights");

  std::unique_ptr<HfCheckpoint> ck(new HfCheckpoint());
  ck->dir_ = dir;
  const std::string index_path = join_path(dir, kIndexName);
  const std::string single_path = join_path(dir, kSingleName);

  if (is_file(index_path)) {
    auto text = ckpt_detail::read_file_if_exists(index_path);
    if (!text) fail(ErrorKind::model, index_path + ": cannot read");
    const std::map<std::string, std::string> weight_map = parse_safetensors_index(*text, index_path);
    std::map<std::string, std::string> first_tensor;  // shard -> a tensor mapped to it, for messages
    for (const auto& [tensor, shard] : weight_map) first_tensor.emplace(shard, tensor);

    std::map<std::string, const SafetensorsFile*> by_name;
    for (const auto& [shard, some_tensor] : first_tensor) {
      const std::string shard_path = join_path(dir, shard);
      if (!is_file(shard_path))
        fail(ErrorKind::model, index_path + " maps tensors (e.g. '" + some_tensor + "') to shard '" + shard +
                                   "', but " + shard_path + " does not exist; download the missing shard");
      ck->files_.push_back(SafetensorsFile::open(shard_path));
      by_name[shard] = ck->files_.back().get();
    }
    for (const auto& [tensor, shard] : weight_map) {
      const SafetensorsFile* f = by_name.at(shard);
      if (!contains_tensor(*f, tensor))
        fail(ErrorKind::model, index_path + ": tensor '" + tensor + "' is mapped to shard '" + shard + "', but " +
                                   f->path() + " has no such tensor; the index and the shards do not match "
                                   "(re-download them together)");
      ck->where_[tensor] = f;
    }
    return ck;
  }

  if (is_file(single_path)) {
    ck->files_.push_back(SafetensorsFile::open(single_path));
    const SafetensorsFile* f = ck->files_.back().get();
    for (const auto& [name, t] : f->tensors()) ck->where_[name] = f;
    for (const auto& [name, dt] : f->unsupported()) ck->where_[name] = f;
    return ck;
  }

  // No usable weights: say what is there instead.
  std::vector<std::string> bins, others;
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    const std::string n = e.path().filename().string();
    if (ends_with(n, ".bin") || ends_with(n, ".bin.index.json")) bins.push_back(n);
    else if (ends_with(n, ".safetensors")) others.push_back(n);
  }
  std::sort(bins.begin(), bins.end());
  std::sort(others.begin(), others.end());
  if (!bins.empty() && others.empty())
    fail(ErrorKind::model,
         dir + ": holds only PyTorch weights (" + bins.front() + (bins.size() > 1 ? ", ..." : "") +
             "): PyTorch .bin checkpoints are not supported (pickle executes code on load); convert to "
             "safetensors (e.g. python -c \"from transformers import AutoModelForCausalLM as M; "
             "M.from_pretrained('" + dir + "').save_pretrained('<out_dir>', safe_serialization=True)\", "
             "then copy the tokenizer files)");
  std::string found;
  for (const auto& o : others) found += (found.empty() ? "" : ", ") + o;
  fail(ErrorKind::model, dir + ": no " + kSingleName + " or " + kIndexName +
                             (found.empty() ? std::string(" (and no other weights)")
                                            : " (found " + found + "; rename a single file to " + kSingleName +
                                                  " or provide the index)"));
}

bool HfCheckpoint::has(const std::string& tensor) const noexcept {
  auto it = where_.find(tensor);
  return it != where_.end() && it->second->has(tensor);
}

const HostTensor& HfCheckpoint::tensor(const std::string& name) const {
  auto it = where_.find(name);
  if (it == where_.end()) {
    std::string where = files_.size() == 1 ? files_.front()->path()
                                           : "the weight_map of " + join_path(dir_, kIndexName);
    fail(ErrorKind::model, "tensor '" + name + "' not found in " + where +
                               "; the checkpoint does not match the architecture in config.json");
  }
  return it->second->tensor(name);  // refuses an unsupported dtype naming the file
}

Status HfCheckpoint::get(const std::string& tensor, HostTensor* out) const noexcept {
  return guard([&] {
    const HostTensor& t = this->tensor(tensor);
    if (out) *out = t;
  });
}

Status HfCheckpoint::read_text(const std::string& file_name, std::string* out, bool* exists) const noexcept {
  return guard([&] {
    if (exists) *exists = false;
    if (!safe_relative_name(file_name))
      fail(ErrorKind::model, "'" + file_name + "' is not a file name inside the model directory " + dir_);
    auto text = ckpt_detail::read_file_if_exists(join_path(dir_, file_name));
    if (!text) return;
    if (exists) *exists = true;
    if (out) *out = std::move(*text);
  });
}

std::vector<std::string> HfCheckpoint::names() const {
  std::vector<std::string> v;
  v.reserve(where_.size());
  for (const auto& [name, f] : where_)
    if (f->has(name)) v.push_back(name);
  return v;
}

}  // namespace kvrun
