// kvrun — Tokenizer::load (picks the file kind), streaming detokenization, ChatML prompts.
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "kvrun/error.hpp"
#include "tokenizer_impl.hpp"

namespace kvrun {
namespace {

// vocab_size from config.json next to qwen.tiktoken, when the file is there and has one.
std::optional<int64_t> config_vocab_size(const std::filesystem::path& dir) {
  const std::filesystem::path path = dir / "config.json";
  std::error_code ec;
  if (!std::filesystem::is_regular_file(path, ec)) return std::nullopt;
  std::ifstream in(path, std::ios::binary);
  if (!in) fail(ErrorKind::model, path.string() + ": cannot open the file for reading; check it is readable");
  try {
    const nlohmann::json cfg = nlohmann::json::parse(in);
    if (!cfg.is_object() || !cfg.contains("vocab_size") || cfg["vocab_size"].is_null()) return std::nullopt;
    // An integer only: get<int64_t>() of a float such as 1e300 would be an undefined conversion.
    if (!cfg["vocab_size"].is_number_integer())
      fail(ErrorKind::model, path.string() + ": key 'vocab_size' must be an integer");
    return cfg["vocab_size"].get<int64_t>();
  } catch (const nlohmann::json::exception& e) {
    fail(ErrorKind::model, path.string() + ": cannot read vocab_size (" + e.what() + "); fix the file");
  }
}

}  // namespace

std::unique_ptr<Tokenizer> Tokenizer::load(const std::string& model_dir) {
  namespace fs = std::filesystem;
  const fs::path dir(model_dir);
  std::error_code ec;
  if (!fs::is_directory(dir, ec))
    fail(ErrorKind::model, "model directory " + model_dir +
                               " does not exist or is not a directory; pass the directory that holds "
                               "tokenizer.json or qwen.tiktoken");
  // tokenizer.json wins when both are present.
  const fs::path json_path = dir / "tokenizer.json";
  if (fs::exists(json_path, ec)) return tok::load_tokenizer_json(json_path.string());
  const fs::path tiktoken_path = dir / "qwen.tiktoken";
  if (fs::exists(tiktoken_path, ec)) return tok::load_qwen_tiktoken(tiktoken_path.string(), config_vocab_size(dir));
  fail(ErrorKind::model, "model directory " + model_dir +
                             " has no tokenizer: neither tokenizer.json nor qwen.tiktoken is there; copy the "
                             "model's tokenizer file into the directory");
}

std::unique_ptr<Tokenizer> Tokenizer::from_tokenizer_json(std::string_view text, const std::string& origin) {
  return tok::parse_tokenizer_json(text, origin);
}

std::unique_ptr<Tokenizer> Tokenizer::from_qwen_tiktoken(std::string_view text, const std::string& origin,
                                                        std::optional<int64_t> vocab_size) {
  return tok::parse_qwen_tiktoken(text, origin, vocab_size);
}

std::string StreamDecoder::push(int32_t id) {
  pending_ += tok_.token_bytes(id);
  std::string out;
  const size_t used = tok::append_complete_utf8(pending_, /*final=*/false, out);
  pending_.erase(0, used);
  return out;
}

std::string StreamDecoder::flush() {
  std::string out;
  tok::append_complete_utf8(pending_, /*final=*/true, out);
  pending_.clear();
  return out;
}

std::string chatml_prompt(const std::vector<ChatMessage>& messages, bool add_generation_prompt) {
  std::string out;
  for (const ChatMessage& m : messages) {
    out += "<|im_start|>";
    out += m.role;
    out += '\n';
    out += m.content;
    out += "<|im_end|>\n";
  }
  if (add_generation_prompt) out += "<|im_start|>assistant\n";
  return out;
}

}  // namespace kvrun
