// kvrun — an unquantized Linear (y = x · Wᵀ + b through the device's Ops::matmul) and its loader,
// shared by weight plugins: weights.bf16 loads every linear this way, weights.gptq the linears an
// export left unquantized.
#pragma once

#include <algorithm>
#include <memory>
#include <string>
#include <vector>

#include "kvrun/ops.hpp"
#include "kvrun/plugin.hpp"

namespace kvrun {

class DenseLinear final : public Linear {
 public:
  // w: [out, in] of dtype (kept as stored); bias: none until set_bias.
  DenseLinear(Device& dev, DType dtype, int64_t out, int64_t in) : dev_(dev), dtype_(dtype), out_(out), in_(in) {
    w_ = Buffer<uint8_t>(dev, size_t(out * in) * dtype_size(dtype), MemCategory::weights);
  }
  Buffer<uint8_t>& weight() { return w_; }
  void set_bias(const std::vector<float>& b) {
    bias_ = Buffer<float>(dev_, b.size(), MemCategory::weights);
    bias_.upload(b.data(), b.size());
  }

  Status forward(TensorView y, TensorView x) noexcept override {
    TensorView w(w_.data(), dtype_, {out_, in_}, dev_.space());
    TensorView b(bias_.data(), DType::f32, {out_}, dev_.space());
    return dev_.ops().matmul(y, x, w, bias_.empty() ? nullptr : &b);
  }
  bool fuses(const MatmulFusion& f, int64_t M) const noexcept override {
    return dev_.ops().matmul_fuses(f, M, TensorView(w_.data(), dtype_, {out_, in_}, dev_.space()));
  }
  Status forward_fused(TensorView y, TensorView x, const MatmulFusion& f) noexcept override {
    TensorView w(w_.data(), dtype_, {out_, in_}, dev_.space());
    TensorView b(bias_.data(), DType::f32, {out_}, dev_.space());
    return dev_.ops().matmul_fused(y, x, w, bias_.empty() ? nullptr : &b, f);
  }
  bool reads_bf16(const MatmulFusion& f, int64_t M) const noexcept override {
    return dev_.ops().matmul_reads_bf16(f, M, TensorView(w_.data(), dtype_, {out_, in_}, dev_.space()));
  }
  int64_t in_features() const noexcept override { return in_; }
  int64_t out_features() const noexcept override { return out_; }
  size_t device_bytes() const noexcept override { return w_.bytes() + bias_.bytes(); }

 private:
  Device& dev_;
  DType dtype_;
  int64_t out_, in_;
  Buffer<uint8_t> w_;   // [out, in] elements of dtype_
  Buffer<float> bias_;  // [out] or empty
};

// The rows [out_offset, out_offset + out_features) of prefix.bias as f32, or empty when the
// checkpoint has no bias (an Error(model) when spec.bias says there must be one).
inline std::vector<float> load_linear_bias(const Checkpoint& ck, const LinearSpec& spec) {
  const std::string bname = spec.prefix + ".bias";
  if (!ck.has(bname)) {
    if (spec.bias)
      fail(ErrorKind::model, "tensor '" + bname + "' is missing from the checkpoint in " + ck.directory() +
                                 " (this architecture has a bias here)");
    return {};
  }
  const int64_t total = spec.out_total ? spec.out_total : spec.out_features;
  HostTensor b;
  check(ck.get(bname, &b));
  if (!dtype_is_float(b.dtype) || b.shape.size() != 1 || b.shape[0] != total)
    fail(ErrorKind::model, "tensor '" + bname + "' in " + b.file + " has shape " + shape_string(b.shape) + " dtype " +
                               std::string(dtype_name(b.dtype)) + ", expected [" + std::to_string(total) + "] float");
  std::vector<float> bias(size_t(spec.out_features));
  for (size_t i = 0; i < bias.size(); ++i) bias[i] = load_f32(b.data, b.dtype, size_t(spec.out_offset) + i);
  return bias;
}

// prefix.weight [out_total, in] (bf16, f16 or f32), checked against the spec. `who` names the
// plugin in messages.
inline HostTensor dense_linear_weight(const Checkpoint& ck, const LinearSpec& spec, const char* who) {
  const std::string wname = spec.prefix + ".weight";
  HostTensor w;
  check(ck.get(wname, &w));
  const int64_t total = spec.out_total ? spec.out_total : spec.out_features;
  if (!dtype_is_float(w.dtype))
    fail(ErrorKind::model, "tensor '" + wname + "' in " + w.file + " has dtype " + std::string(dtype_name(w.dtype)) +
                               "; " + who + " loads unquantized linears stored as bf16, f16 or f32");
  if (w.shape.size() != 2 || w.shape[0] != total || w.shape[1] != spec.in_features)
    fail(ErrorKind::model, "tensor '" + wname + "' in " + w.file + " has shape " + shape_string(w.shape) +
                               ", expected [" + std::to_string(total) + ", " + std::to_string(spec.in_features) +
                               "] from config.json; the weights and config.json do not match (re-download or "
                               "re-convert them together)");
  return w;
}

// prefix.weight [out_total, in] (bf16, f16 or f32) → a DenseLinear of the spec's rows, with its
// bias. `who` names the plugin in messages.
inline std::unique_ptr<DenseLinear> load_dense_linear(const Checkpoint& ck, const LinearSpec& spec, Device& dev,
                                                      const char* who) {
  const HostTensor w = dense_linear_weight(ck, spec, who);
  auto lin = std::make_unique<DenseLinear>(dev, w.dtype, spec.out_features, spec.in_features);
  const size_t row_bytes = size_t(spec.in_features) * dtype_size(w.dtype);
  lin->weight().upload(static_cast<const uint8_t*>(w.data) + size_t(spec.out_offset) * row_bytes,
                       size_t(spec.out_features) * row_bytes);
  std::vector<float> bias = load_linear_bias(ck, spec);
  if (!bias.empty()) lin->set_bias(bias);
  check(dev.queue().wait());
  return lin;
}

// WeightFormat::load_joined_linear for unquantized parts: their rows stacked into one
// [Σ out_features, in] weight of their common dtype, their biases side by side (zeros for a part
// without one). Null when the parts cannot be joined: a part not stored as prefix.weight, dtypes
// or in_features that differ.
inline std::unique_ptr<DenseLinear> load_dense_joined_linear(const Checkpoint& ck, const std::vector<LinearSpec>& parts,
                                                             Device& dev, const char* who) {
  if (parts.empty()) return nullptr;
  std::vector<HostTensor> ws;
  int64_t out = 0;
  for (const LinearSpec& p : parts) {
    if (!ck.has(p.prefix + ".weight") || p.in_features != parts[0].in_features) return nullptr;
    ws.push_back(dense_linear_weight(ck, p, who));
    if (ws.back().dtype != ws[0].dtype) return nullptr;
    out += p.out_features;
  }
  const int64_t in = parts[0].in_features;
  auto lin = std::make_unique<DenseLinear>(dev, ws[0].dtype, out, in);
  const size_t row_bytes = size_t(in) * dtype_size(ws[0].dtype);
  std::vector<float> bias(size_t(out), 0.f);
  bool any_bias = false;
  size_t row = 0;
  for (size_t i = 0; i < parts.size(); ++i) {
    const LinearSpec& p = parts[i];
    lin->weight().upload(static_cast<const uint8_t*>(ws[i].data) + size_t(p.out_offset) * row_bytes,
                         size_t(p.out_features) * row_bytes, row * row_bytes);
    const std::vector<float> b = load_linear_bias(ck, p);
    if (!b.empty()) {
      std::copy(b.begin(), b.end(), bias.begin() + std::ptrdiff_t(row));
      any_bias = true;
    }
    row += size_t(p.out_features);
  }
  if (any_bias) lin->set_bias(bias);
  check(dev.queue().wait());
  return lin;
}

}  // namespace kvrun
