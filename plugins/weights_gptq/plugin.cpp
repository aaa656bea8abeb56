// weights.gptq — AutoGPTQ / GPTQModel checkpoints (SPECS.md §2). The descriptor is real (the
// matrix uses it); the loader arrives with the GPTQ issue and until then refuses clearly.
#include <memory>

#include "kvrun/plugin.hpp"

namespace kvrun {
namespace {

class GptqWeights final : public WeightFormat {
 public:
  Status load_linear(const Checkpoint&, const LinearSpec& spec, Device&, std::unique_ptr<Linear>*) noexcept override {
    return {ErrorKind::usage, "weights.gptq: loading GPTQ tensors ('" + spec.prefix +
                                  ".qweight') is not implemented in this build yet"};
  }
  Status random_linear(const LinearSpec&, uint64_t, Device&, std::unique_ptr<Linear>*) noexcept override {
    return {ErrorKind::usage, "weights.gptq: synthetic GPTQ weights are not implemented in this build yet"};
  }
};

class GptqWeightsPlugin final : public Plugin {
 public:
  GptqWeightsPlugin() {
    info_.kind = PluginKind::weights;
    info_.name = "gptq";
    info_.version = "0.1.0";
    info_.description = "GPTQ int2/4/8 weights (AutoGPTQ/GPTQModel, v1 and v2, act-order), dequantized on the fly";
    info_.backends = {BackendKind::cpu};
    info_.encodings = {"gptq"};
  }
  const PluginInfo& info() const noexcept override { return info_; }
  Status create_weights(Device&, std::unique_ptr<WeightFormat>* out) noexcept override {
    return guard([&] { *out = std::make_unique<GptqWeights>(); });
  }

 private:
  PluginInfo info_;
};

}  // namespace
}  // namespace kvrun

KVRUN_DEFINE_PLUGIN("weights.gptq", kvrun::GptqWeightsPlugin)
