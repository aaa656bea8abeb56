// weights.bf16 — unquantized checkpoints (bf16, also fp16 and fp32 tensors). The weight stays in
// its checkpoint dtype on the device; Linear::forward is the backend's matmul (x · Wᵀ + b)
// (kvrun/dense_linear.hpp).
#include <memory>
#include <cmath>
#include <vector>

#include "kvrun/dense_linear.hpp"

namespace kvrun {
namespace {

class Bf16Weights final : public WeightFormat {
 public:
  Status load_linear(const Checkpoint& ck, const LinearSpec& spec, Device& dev,
                     std::unique_ptr<Linear>* out) noexcept override {
    return guard([&] {
      const std::string wname = spec.prefix + ".weight";
      if (!ck.has(wname) && ck.has(spec.prefix + ".qweight"))
        fail(ErrorKind::model, "tensor '" + spec.prefix + ".qweight' is GPTQ-quantized; weights.format \"bf16\" "
                               "cannot load it — use weights.format = \"gptq\" (or \"auto\")");
      *out = load_dense_linear(ck, spec, dev, "weights.bf16");
    });
  }

  Status load_joined_linear(const Checkpoint& ck, const std::vector<LinearSpec>& parts, Device& dev,
                            std::unique_ptr<Linear>* out) noexcept override {
    return guard([&] { *out = load_dense_joined_linear(ck, parts, dev, "weights.bf16"); });
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
