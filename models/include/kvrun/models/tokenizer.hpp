// kvrun — tokenizers: Hugging Face tokenizer.json (byte-level BPE) and Qwen v1 qwen.tiktoken,
// both pre-tokenized with the Qwen regex (PCRE2) after NFC normalization (SPECS.md §5).
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace kvrun {

class Tokenizer {
 public:
  virtual ~Tokenizer() = default;

  // Loads tokenizer.json if the directory has one, else qwen.tiktoken; Error(ErrorKind::model)
  // naming the directory and the files looked for when neither exists, or naming the file and
  // what is wrong with it (unsupported pre-tokenizer / model type, malformed JSON, bad line).
  static std::unique_ptr<Tokenizer> load(const std::string& model_dir);
  // The same from a file's contents already in memory; `origin` names the file in messages.
  // vocab_size (config.json's) bounds the <|extra_N|> specials of a qwen.tiktoken.
  static std::unique_ptr<Tokenizer> from_tokenizer_json(std::string_view text, const std::string& origin);
  static std::unique_ptr<Tokenizer> from_qwen_tiktoken(std::string_view text, const std::string& origin,
                                                       std::optional<int64_t> vocab_size = std::nullopt);

  // NFC-normalizes, then splits out special tokens (when allow_special), pre-tokenizes and BPEs.
  virtual std::vector<int32_t> encode(std::string_view text, bool allow_special = true) const = 0;
  // Concatenated bytes of the tokens (specials as their text). May end inside a UTF-8 character.
  virtual std::string decode(const std::vector<int32_t>& ids) const = 0;
  // Raw bytes of one token; Error(usage) for an id outside the vocabulary.
  virtual std::string token_bytes(int32_t id) const = 0;
  virtual int32_t vocab_size() const noexcept = 0;  // regular + special tokens
  virtual std::optional<int32_t> special_id(std::string_view token) const = 0;  // "<|endoftext|>"
  virtual std::string kind() const = 0;  // "tokenizer.json (byte-level BPE)", "qwen.tiktoken"
};

// Streaming detokenization: push ids one at a time, get back only complete UTF-8 characters.
class StreamDecoder {
 public:
  explicit StreamDecoder(const Tokenizer& tok) : tok_(tok) {}
  std::string push(int32_t id);  // text that became complete with this token
  std::string flush();           // whatever remains (invalid trailing bytes as U+FFFD)

 private:
  const Tokenizer& tok_;
  std::string pending_;
};

struct ChatMessage {
  std::string role;  // "system", "user", "assistant"
  std::string content;
};

// ChatML: <|im_start|>{role}\n{content}<|im_end|>\n ... then <|im_start|>assistant\n if asked.
std::string chatml_prompt(const std::vector<ChatMessage>& messages, bool add_generation_prompt);

// NFC normalization of UTF-8 text (invalid UTF-8 is an Error(usage)).
std::string nfc_normalize(std::string_view text);

}  // namespace kvrun
