// weights.gptq — internals shared by the loader, the CPU Linear, the CUDA Linear and the tests.
//
// A GPTQ linear (SPECS.md §2) is turned into a backend-independent packed form (`Packed`) once at
// load: the codes stay packed exactly as the checkpoint stores them ([K·bits/32, N] int32 words,
// each output column a little-endian bit stream over k), the zero points are unpacked to one byte
// per (group, column), scales stay f16. Kernels walk k in *units*: the smallest run of rows that
// fills whole words (32/bits rows in one word for 2/4/8 bits, 32 rows in three words for 3 bits).
// Every unit belongs to one group (`unit_group`). When g_idx changes inside a unit (act-order, or
// a group size that is not a multiple of the unit) the rows are sorted by group once at load, each
// group padded to whole units, and `perm` says which activation column feeds each stored row
// (-1 = padding, fed with 0): forward gathers x[:, perm] first.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "kvrun/plugin.hpp"

namespace kvrun::gptq {

// ---- settings (quantization_config / quant_config.json / quantize_config.json) ----------------

struct Settings {
  int bits = 4;
  int group_size = 128;  // -1: one group over all of K
  bool desc_act = false;
  bool sym = true;
  bool static_groups = false;
  bool true_sequential = true;
  double damp_percent = 0.01;
  std::string checkpoint_format = "gptq";  // "gptq" (v1: stored zero = zero - 1) or "gptq_v2"
  std::string quant_method = "gptq";
  std::string sources;  // the files the settings came from, for messages
  bool v2() const noexcept { return checkpoint_format == "gptq_v2"; }
};

// One settings source: its file name (for messages), its JSON text, and for config.json the key of
// the object to read ("quantization_config"; empty = the whole document).
struct SettingsSource {
  std::string file;
  std::string text;
  std::string key;
};
// Merges the sources in order (later sources win per key) and validates the result. Throws
// Error(model) naming the file and key for malformed JSON, mistyped or unsupported values.
// No source at all is Error(model) as well (a quantized tensor needs its settings).
Settings merge_settings(const std::vector<SettingsSource>& sources);
// Reads config.json["quantization_config"], quant_config.json, quantize_config.json of ck.
Settings load_settings(const Checkpoint& ck);

// ---- the packed form ---------------------------------------------------------------------------

// Rows per unit and 32-bit words per unit, for bits in {2, 3, 4, 8}.
constexpr int unit_rows(int bits) noexcept { return bits == 3 ? 32 : 32 / bits; }
constexpr int unit_words(int bits) noexcept { return bits == 3 ? 3 : 1; }

struct Layout {
  int bits = 4;
  int64_t K = 0;       // in_features
  int64_t N = 0;       // out_features of this Linear
  int64_t Kp = 0;      // rows held: K, or more when rows were sorted and padded by group
  int64_t groups = 0;  // rows of scales/zeros
  bool permuted = false;  // perm present: forward gathers x[:, perm]
  bool bias = false;
  double w_max = 0;       // bound on |W|: max of |scale|·max(zero, 2^bits − 1 − zero)
  int64_t units() const noexcept { return Kp / unit_rows(bits); }
  int64_t words_rows() const noexcept { return units() * unit_words(bits); }  // rows of qweight
};

struct Packed {
  Layout lay;
  std::vector<uint32_t> qweight;    // [words_rows, N]
  std::vector<uint16_t> scales;     // [groups, N] f16
  std::vector<uint8_t> zeros;       // [groups, N] the zero point itself (0 .. 2^bits-1)
  std::vector<int32_t> unit_group;  // [units]
  std::vector<int32_t> perm;        // [Kp] source row of x per stored row, -1 = padding (if permuted)
  std::vector<float> bias;          // [N] (if bias)
};

// Code of row k (in the stored order) of a column whose words are col[0], col[stride], ...
inline uint32_t code_at(const uint32_t* col, int64_t stride, int bits, int64_t k) noexcept {
  const int64_t bit = int64_t(bits) * k;
  const int64_t w = bit >> 5;
  const int off = int(bit & 31);
  uint64_t v = col[w * stride];
  if (off + bits > 32) v |= uint64_t(col[(w + 1) * stride]) << 32;
  return uint32_t(v >> off) & ((1u << bits) - 1u);
}
// Sets the code of row k (the word must start at 0 where it is written for the first time).
inline void put_code(uint32_t* col, int64_t stride, int bits, int64_t k, uint32_t code) noexcept {
  const int64_t bit = int64_t(bits) * k;
  const int64_t w = bit >> 5;
  const int off = int(bit & 31);
  const uint64_t v = uint64_t(code & ((1u << bits) - 1u)) << off;
  col[w * stride] |= uint32_t(v);
  if (off + bits > 32) col[(w + 1) * stride] |= uint32_t(v >> 32);
}

// The raw tensors of one quantized linear, as they come from the checkpoint (host memory).
struct RawTensors {
  HostTensor qweight, qzeros, scales;
  HostTensor g_idx;  // dtype/shape empty when absent (then g_idx[k] = k / G)
  HostTensor bias;   // empty when absent
  bool has_g_idx = false, has_bias = false;
};

// Validates shapes and dtypes against the settings and spec, slices the output rows of spec, and
// builds the packed form (reordering rows by group where g_idx needs it). Error(model) naming the
// tensor, its shape and the expected shape on any mismatch.
Packed pack_linear(const RawTensors& t, const Settings& s, const LinearSpec& spec);

// Several packed linears of the same input as one, their columns side by side in order (biases
// too, zeros for a part without one): WeightFormat::load_joined_linear. Empty when the parts do
// not share bits, in_features, groups and the row order (act-order parts sorted differently).
std::optional<Packed> join_packed(const std::vector<Packed>& parts);

// W[k, n] = scale · (q − zero) of a packed form, read back through perm / unit_group, as a
// [K, N] row-major double matrix (for tests).
std::vector<double> packed_dequant(const Packed& p);

// ---- Linears -----------------------------------------------------------------------------------

// The packed arrays held on a device (MemCategory::weights); the backends' Linears derive from it.
class GptqLinearBase : public Linear {
 public:
  GptqLinearBase(Device& dev, const Layout& lay);
  void upload(const Packed& p);  // all arrays; shapes must match the layout
  // Called once after every array has been uploaded (a backend may derive more data here).
  virtual void on_uploaded() {}
  int64_t in_features() const noexcept override { return lay_.K; }
  int64_t out_features() const noexcept override { return lay_.N; }
  size_t device_bytes() const noexcept override;
  const Layout& layout() const noexcept { return lay_; }

  Buffer<uint32_t> qweight;
  Buffer<uint16_t> scales;
  Buffer<uint8_t> zeros;
  Buffer<int32_t> unit_group;
  Buffer<int32_t> perm;
  Buffer<float> bias;

 protected:
  Device& dev_;
  Layout lay_;
};

std::unique_ptr<GptqLinearBase> make_cpu_linear(Device& dev, const Layout& lay);
// M at or below this takes the fused dequant-dot path on the CPU; above it, dequantized tiles
// go through the CPU GEMM.
int64_t cpu_small_m() noexcept;

// State a backend shares between the Linears of one WeightFormat (CUDA: the f16 workspace of the
// large-M path and the gathered activations). Created on the first Linear that needs it.
struct BackendScratch {
  virtual ~BackendScratch() = default;
};

// An empty Linear for dev's backend (arrays allocated, not filled). scratch: the WeightFormat's
// shared state (null: the Linear gets a private one).
std::unique_ptr<GptqLinearBase> new_linear(Device& dev, const Layout& lay,
                                           std::shared_ptr<BackendScratch>* scratch = nullptr);
// Builds the Linear for dev's backend and uploads p into it.
std::unique_ptr<Linear> make_linear(Device& dev, const Packed& p, std::shared_ptr<BackendScratch>* scratch = nullptr);

// A WeightFormat for GPTQ checkpoints (the plugin's create_weights returns one).
std::unique_ptr<WeightFormat> make_weight_format();

}  // namespace kvrun::gptq
