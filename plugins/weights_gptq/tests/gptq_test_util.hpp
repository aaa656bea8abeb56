// weights.gptq tests — synthetic GPTQ linears packed the way AutoGPTQ packs them (written from
// SPECS.md §2, independently of the plugin's unpacking code), an in-memory Checkpoint, and the
// double-precision reference y = x·W + bias.
#pragma once

#include <algorithm>
#include <cstring>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "kvrun/plugin.hpp"

namespace gptq_test {

using kvrun::DType;
using kvrun::HostTensor;

// A checkpoint held in memory: tensors and small text files.
class MemCheckpoint final : public kvrun::Checkpoint {
 public:
  explicit MemCheckpoint(std::string dir = "/mem/model") : dir_(std::move(dir)) {}
  template <class T>
  void add(const std::string& name, DType dt, std::vector<int64_t> shape, const std::vector<T>& data) {
    Entry& e = tensors_[name];
    e.bytes.resize(data.size() * sizeof(T));
    if (!data.empty()) std::memcpy(e.bytes.data(), data.data(), e.bytes.size());
    e.t.name = name;
    e.t.dtype = dt;
    e.t.shape = std::move(shape);
    e.t.nbytes = e.bytes.size();
    e.t.file = dir_ + "/model.safetensors";
  }
  void remove(const std::string& name) { tensors_.erase(name); }
  void set_text(const std::string& file, const std::string& text) { files_[file] = text; }

  const std::string& directory() const noexcept override { return dir_; }
  bool has(const std::string& n) const noexcept override { return tensors_.count(n) != 0; }
  kvrun::Status get(const std::string& n, HostTensor* out) const noexcept override {
    auto it = tensors_.find(n);
    if (it == tensors_.end())
      return {kvrun::ErrorKind::model, "tensor '" + n + "' is missing from the checkpoint in " + dir_};
    *out = it->second.t;
    out->data = it->second.bytes.data();
    return {};
  }
  kvrun::Status read_text(const std::string& f, std::string* out, bool* exists) const noexcept override {
    auto it = files_.find(f);
    *exists = it != files_.end();
    if (*exists) *out = it->second;
    return {};
  }

 private:
  struct Entry {
    HostTensor t;
    std::vector<uint8_t> bytes;
  };
  std::string dir_;
  std::map<std::string, Entry> tensors_;
  std::map<std::string, std::string> files_;
};

struct Config {
  int bits = 4;
  int64_t K = 256, N = 64;
  int G = 128;  // -1 = K
  bool act_order = false;
  bool v2 = false;
  bool asym = false;
  bool bias = false;
};

inline std::string describe(const Config& c) {
  return std::to_string(c.bits) + "-bit K=" + std::to_string(c.K) + " N=" + std::to_string(c.N) +
         " G=" + std::to_string(c.G) + (c.act_order ? " act-order" : "") + (c.v2 ? " v2" : " v1") +
         (c.asym ? " asym" : " sym") + (c.bias ? " bias" : "");
}

// Packs values of `bits` bits, 32/bits per word lowest first (2, 4, 8), or AutoGPTQ's 3-bit
// layout: 32 values in three words, value 10 split 2+1 bits across words 0/1, value 21 split 1+2
// across words 1/2. `get(i)` is the i-th value along the packed axis; returns the words.
template <class Get>
std::vector<uint32_t> pack_axis(int bits, int64_t count, Get get) {
  std::vector<uint32_t> w(size_t(count * bits / 32), 0u);
  if (bits != 3) {
    const int per = 32 / bits;
    for (int64_t i = 0; i < count; ++i) w[size_t(i / per)] |= get(i) << (bits * (i % per));
    return w;
  }
  for (int64_t i = 0, row = 0; i < count; i += 32, row += 3) {
    for (int j = 0; j < 10; ++j) w[size_t(row)] |= get(i + j) << (3 * j);
    w[size_t(row)] |= get(i + 10) << 30;
    w[size_t(row + 1)] |= (get(i + 10) >> 2) & 1u;
    for (int j = 0; j < 10; ++j) w[size_t(row + 1)] |= get(i + 11 + j) << (3 * j + 1);
    w[size_t(row + 1)] |= get(i + 21) << 31;
    w[size_t(row + 2)] |= (get(i + 21) >> 1) & 3u;
    for (int j = 0; j < 10; ++j) w[size_t(row + 2)] |= get(i + 22 + j) << (3 * j + 2);
  }
  return w;
}

// A random quantized linear: the values (codes, zeros, scales, g_idx) and their packed tensors.
struct Synthetic {
  Config c;
  int64_t groups = 0;
  std::vector<uint32_t> code;   // [K, N]
  std::vector<uint32_t> zero;   // [groups, N] the zero point itself
  std::vector<uint16_t> scale;  // [groups, N] f16
  std::vector<int32_t> gidx;    // [K]
  std::vector<uint16_t> bias;   // [N] f16
  std::vector<int32_t> qweight, qzeros;

  double W(int64_t k, int64_t n) const {
    const int64_t g = gidx[size_t(k)];
    return double(kvrun::f16_to_f32(scale[size_t(g * c.N + n)])) *
           (double(code[size_t(k * c.N + n)]) - double(zero[size_t(g * c.N + n)]));
  }
  double b(int64_t n) const { return c.bias ? double(kvrun::f16_to_f32(bias[size_t(n)])) : 0.0; }

  // Stores the tensors under prefix in ck, plus a quantize_config.json describing c.
  void store(MemCheckpoint& ck, const std::string& prefix) const {
    ck.add(prefix + ".qweight", DType::i32, {c.K * c.bits / 32, c.N}, qweight);
    ck.add(prefix + ".qzeros", DType::i32, {groups, c.N * c.bits / 32}, qzeros);
    ck.add(prefix + ".scales", DType::f16, {groups, c.N}, scale);
    ck.add(prefix + ".g_idx", DType::i32, {c.K}, gidx);
    if (c.bias) ck.add(prefix + ".bias", DType::f16, {c.N}, bias);
    ck.set_text("quantize_config.json", "{\"bits\": " + std::to_string(c.bits) + ", \"group_size\": " +
                                            std::to_string(c.G) + ", \"desc_act\": " + (c.act_order ? "true" : "false") +
                                            ", \"sym\": " + (c.asym ? "false" : "true") +
                                            ", \"checkpoint_format\": \"" + (c.v2 ? "gptq_v2" : "gptq") + "\"}");
  }
};

inline Synthetic make_synthetic(const Config& c, uint64_t seed) {
  Synthetic s;
  s.c = c;
  const int64_t G = c.G == -1 ? c.K : c.G;
  s.groups = (c.K + G - 1) / G;
  const uint32_t mask = (1u << c.bits) - 1u;
  std::mt19937_64 rng(seed);
  s.code.resize(size_t(c.K * c.N));
  for (auto& q : s.code) q = uint32_t(rng()) & mask;
  s.zero.resize(size_t(s.groups * c.N));
  for (auto& z : s.zero) {
    if (!c.asym) {
      z = 1u << (c.bits - 1);
    } else {
      const uint32_t r = uint32_t(rng() % 4);
      z = r == 0 ? 0u : r == 1 ? mask : uint32_t(rng()) & mask;  // zeros of 0 (v1 stores all ones) and max
    }
  }
  std::uniform_real_distribution<float> U(0.002f, 0.05f), B(-1.f, 1.f);
  s.scale.resize(size_t(s.groups * c.N));
  for (auto& v : s.scale) v = kvrun::f32_to_f16(U(rng));
  s.gidx.resize(size_t(c.K));
  if (c.act_order) {  // GPTQ with desc_act: row perm[i] is the i-th quantized, so g_idx[perm[i]] = i / G
    std::vector<int64_t> perm(size_t(c.K));
    for (int64_t i = 0; i < c.K; ++i) perm[size_t(i)] = i;
    std::shuffle(perm.begin(), perm.end(), rng);
    for (int64_t i = 0; i < c.K; ++i) s.gidx[size_t(perm[size_t(i)])] = int32_t(i / G);
  } else {
    for (int64_t k = 0; k < c.K; ++k) s.gidx[size_t(k)] = int32_t(k / G);
  }
  if (c.bias) {
    s.bias.resize(size_t(c.N));
    for (auto& v : s.bias) v = kvrun::f32_to_f16(B(rng));
  }
  // qweight: along k for every column n
  s.qweight.assign(size_t(c.K * c.bits / 32 * c.N), 0);
  for (int64_t n = 0; n < c.N; ++n) {
    auto col = pack_axis(c.bits, c.K, [&](int64_t k) { return s.code[size_t(k * c.N + n)]; });
    for (size_t r = 0; r < col.size(); ++r) s.qweight[r * size_t(c.N) + size_t(n)] = int32_t(col[r]);
  }
  // qzeros: along n for every group; v1 stores zero - 1 (wrapping to all ones for zero 0)
  s.qzeros.assign(size_t(s.groups * (c.N * c.bits / 32)), 0);
  for (int64_t g = 0; g < s.groups; ++g) {
    auto row = pack_axis(c.bits, c.N, [&](int64_t n) {
      const uint32_t z = s.zero[size_t(g * c.N + n)];
      return c.v2 ? z : (z - 1u) & mask;
    });
    for (size_t i = 0; i < row.size(); ++i) s.qzeros[size_t(g) * row.size() + i] = int32_t(row[i]);
  }
  return s;
}

// y = x·W + bias in double for the columns [off, off + n) of s; x: [M, K].
inline std::vector<double> reference_matmul(const Synthetic& s, const std::vector<float>& x, int64_t M, int64_t off,
                                            int64_t n) {
  std::vector<double> y(size_t(M * n), 0.0);
  for (int64_t k = 0; k < s.c.K; ++k)
    for (int64_t j = 0; j < n; ++j) {
      const double w = s.W(k, off + j);
      for (int64_t m = 0; m < M; ++m) y[size_t(m * n + j)] += double(x[size_t(m * s.c.K + k)]) * w;
    }
  for (int64_t m = 0; m < M; ++m)
    for (int64_t j = 0; j < n; ++j) y[size_t(m * n + j)] += s.b(off + j);
  return y;
}

}  // namespace gptq_test
