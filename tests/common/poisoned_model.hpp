// A copy of a fixture model with one tensor's bytes — or, with row ≥ 0, one row of a 2-D tensor —
// all 0xFF (NaN in bf16, fp16 and f32): the other files are symlinks, the shard holding the tensor
// (model.safetensors.index.json's weight_map, else model.safetensors) a real copy. For the
// NaN-logits error path of the engine.
#pragma once

#include <doctest/doctest.h>

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <nlohmann/json.hpp>
#include <string>

#include "fixtures.hpp"

namespace kvrun::test {

inline std::filesystem::path poisoned_copy(const std::string& model, const std::string& tensor,
                                           const std::filesystem::path& dst, int64_t row = -1) {
  namespace fs = std::filesystem;
  using nlohmann::json;
  const fs::path src = fixture(model);
  std::string shard = "model.safetensors";
  if (fs::exists(src / "model.safetensors.index.json")) {
    std::ifstream in(src / "model.safetensors.index.json");
    shard = json::parse(in)["weight_map"].at(tensor).get<std::string>();
  }
  fs::remove_all(dst);
  fs::create_directories(dst);
  link_fixture_files(model, dst, {shard});
  std::ifstream in(src / shard, std::ios::binary);
  std::string bytes((std::istreambuf_iterator<char>(in)), {});
  REQUIRE(bytes.size() > 8);
  const uint64_t n = safetensors_header_length(bytes);
  const json h = json::parse(bytes.substr(8, n));
  const auto& off = h.at(tensor).at("data_offsets");
  size_t begin = 8 + n + off[0].get<size_t>(), end = 8 + n + off[1].get<size_t>();
  if (row >= 0) {
    const auto& shape = h.at(tensor).at("shape");
    REQUIRE(shape.size() == 2);
    const size_t row_bytes = (end - begin) / shape[0].get<size_t>();
    REQUIRE(size_t(row) < shape[0].get<size_t>());
    begin += size_t(row) * row_bytes;
    end = begin + row_bytes;
  }
  REQUIRE(end <= bytes.size());
  for (size_t i = begin; i < end; ++i) bytes[i] = char(0xFF);
  std::ofstream out(dst / shard, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), std::streamsize(bytes.size()));
  REQUIRE(out.good());
  return dst;
}

}  // namespace kvrun::test
