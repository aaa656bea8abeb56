// weights.bf16 — unquantized checkpoints (bf16, also fp16 and fp32 tensors). The weight stays in
// its checkpoint dtype on the device; Linear::forward is the backend's matmul (x · Wᵀ + b).
#include <memory>
#include <cmath>
#include <vector>

#include "kvrun/ops.hpp"
#include "kvrun/plugin.hpp"

namespace kvrun {
namespace {

std::string shape_str(const std::vector<int64_t>& s) {
  std::string r = "[";
  for (size_t i = 0; i < s.size(); ++i) r += (i ? ", " : "") + std::to_string(s[i]);
  return r + "]";
}

class DenseLinear final : public Linear {
 public:
  // w: [out, in] of dtype; bias: [out] f32 (empty = none)
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

float to_f32(const void* p, DType t, size_t i) {
  switch (t) {
    case DType::f32: return static_cast<const float*>(p)[i];
    case DType::f16: return f16_to_f32(static_cast<const uint16_t*>(p)[i]);
    case DType::bf16: return bf16_to_f32(static_cast<const uint16_t*>(p)[i]);
    default: return 0.f;
  }
}

bool is_float(DType t) { return t == DType::f32 || t == DType::f16 || t == DType::bf16; }

class Bf16Weights final : public WeightFormat {
 public:
  Status load_linear(const Checkpoint& ck, const LinearSpec& spec, Device& dev,
                     std::unique_ptr<Linear>* out) noexcept override {
    return guard([&] {
      const std::string wname = spec.prefix + ".weight";
      if (!ck.has(wname) && ck.has(spec.prefix + ".qweight"))
        fail(ErrorKind::model, "tensor '" + spec.prefix + ".qweight' is GPTQ-quantized; weights.format \"bf16\" "
                               "cannot load it — use weights.format = \"gptq\" (or \"auto\")");
      HostTensor w;
      check(ck.get(wname, &w));
      const int64_t total = spec.out_total ? spec.out_total : spec.out_features;
      if (!is_float(w.dtype))
        fail(ErrorKind::model, "tensor '" + wname + "' in " + w.file + " has dtype " + std::string(dtype_name(w.dtype)) +
                                   "; weights.bf16 loads bf16, f16 or f32");
      if (w.shape.size() != 2 || w.shape[0] != total || w.shape[1] != spec.in_features)
        fail(ErrorKind::model, "tensor '" + wname + "' in " + w.file + " has shape " + shape_str(w.shape) +
                                   ", expected [" + std::to_string(total) + ", " + std::to_string(spec.in_features) + "]");
      auto lin = std::make_unique<DenseLinear>(dev, w.dtype, spec.out_features, spec.in_features);
      const size_t row_bytes = size_t(spec.in_features) * dtype_size(w.dtype);
      lin->weight().upload(static_cast<const uint8_t*>(w.data) + size_t(spec.out_offset) * row_bytes,
                           size_t(spec.out_features) * row_bytes);
      const std::string bname = spec.prefix + ".bias";
      if (ck.has(bname)) {
        HostTensor b;
        check(ck.get(bname, &b));
        if (!is_float(b.dtype) || b.shape.size() != 1 || b.shape[0] != total)
          fail(ErrorKind::model, "tensor '" + bname + "' in " + b.file + " has shape " + shape_str(b.shape) + " dtype " +
                                     std::string(dtype_name(b.dtype)) + ", expected [" + std::to_string(total) + "] float");
        std::vector<float> bias(static_cast<size_t>(spec.out_features));
        for (size_t i = 0; i < bias.size(); ++i) bias[i] = to_f32(b.data, b.dtype, size_t(spec.out_offset) + i);
        lin->set_bias(bias);
      } else if (spec.bias) {
        fail(ErrorKind::model, "tensor '" + bname + "' is missing from the checkpoint in " + ck.directory() +
                                   " (this architecture has a bias here)");
      }
      check(dev.queue().wait());
      *out = std::move(lin);
    });
  }

  Status random_linear(const LinearSpec& spec, uint64_t seed, Device& dev,
                       std::unique_ptr<Linear>* out) noexcept override {
    return guard([&] {
      // Values ~ U(-a, a) with a = 1/sqrt(in), generated on the device: activations keep their
      // scale through the stack, and a 7B-shaped model needs no host time.
      auto lin = std::make_unique<DenseLinear>(dev, DType::bf16, spec.out_features, spec.in_features);
      TensorView w(lin->weight().data(), DType::bf16, {spec.out_features, spec.in_features}, dev.space());
      check(dev.ops().fill_random(w, 1.f / std::sqrt(float(spec.in_features)), seed));
      if (spec.bias) lin->set_bias(std::vector<float>(size_t(spec.out_features), 0.f));
      *out = std::move(lin);
    });
  }
};

class Bf16WeightsPlugin final : public Plugin {
 public:
  Bf16WeightsPlugin() {
    info_.kind = PluginKind::weights;
    info_.name = "bf16";
    info_.version = "0.1.0";
    info_.description = "unquantized weights (bf16, fp16, fp32 tensors), kept in their dtype; backend GEMM";
    info_.backends = {BackendKind::cpu, BackendKind::cuda};  // only calls Ops::matmul
    info_.encodings = {"bf16", "f16", "f32"};
  }
  const PluginInfo& info() const noexcept override { return info_; }
  Status create_weights(Device&, std::unique_ptr<WeightFormat>* out) noexcept override {
    return guard([&] { *out = std::make_unique<Bf16Weights>(); });
  }

 private:
  PluginInfo info_;
};

}  // namespace
}  // namespace kvrun

KVRUN_DEFINE_PLUGIN("weights.bf16", kvrun::Bf16WeightsPlugin)
