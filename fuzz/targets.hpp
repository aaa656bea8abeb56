// kvrun — fuzz targets: the parsers of files kvrun reads from strangers, fed arbitrary bytes.
//
// Each target takes one input and returns normally when kvrun handled it: either the input was
// accepted (and then the target checks what the parser promised about the result) or it was refused
// with a kvrun::Error. Anything else is a bug: a crash, a sanitizer report, a hang, another
// exception type escaping, or a broken promise (the target prints it and aborts).
//
// The same functions run under libFuzzer (fuzz/libfuzzer_main.cpp, `meson setup -Dfuzz=true` with
// clang; scripts/fuzz.sh) and in the normal test suite, which replays every file of
// fuzz/regressions/<target>/ and fuzz/corpus/<target>/ (tests/fuzz/test_fuzz_regressions.cpp).
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace kvrun::fuzz {

using TargetFn = void (*)(const uint8_t* data, size_t size);

struct Target {
  const char* name;  // folder name under fuzz/corpus and fuzz/regressions
  TargetFn run;
};

// safetensors file image (8-byte length, JSON header, data): SafetensorsFile::parse.
void safetensors(const uint8_t* data, size_t size);
// model.safetensors.index.json: parse_safetensors_index.
void safetensors_index(const uint8_t* data, size_t size);
// config.json and generation_config.json: parse_model_config and parse_generation_defaults.
void model_config(const uint8_t* data, size_t size);
// The TOML pipeline config: parse_config, and the first line as a --set override.
void pipeline_toml(const uint8_t* data, size_t size);
// tokenizer.json: Tokenizer::from_tokenizer_json, then encode/decode a sample with the result.
void tokenizer_json(const uint8_t* data, size_t size);
// qwen.tiktoken: Tokenizer::from_qwen_tiktoken, then encode/decode a sample with the result.
void qwen_tiktoken(const uint8_t* data, size_t size);
// Tokenizer::encode of arbitrary bytes with the fixture tokenizers (tiny-qwen2's tokenizer.json,
// tiny-qwen1's qwen.tiktoken); the first byte picks the tokenizer and allow_special.
void tokenizer_encode(const uint8_t* data, size_t size);

// All of the above, in this order.
const std::vector<Target>& targets();

}  // namespace kvrun::fuzz
