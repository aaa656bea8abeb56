// weights.gptq — AutoGPTQ / GPTQModel checkpoints (SPECS.md §2): int2/3/4/8, v1 and v2 zero
// points, act-order. The weights stay packed on the device and are dequantized on the fly
// (gptq_cpu.cpp; gptq_cuda.cu when built with CUDA).
#include <memory>

#include "gptq.hpp"
#include "kvrun/plugin.hpp"

namespace kvrun {
namespace {

class GptqWeightsPlugin final : public Plugin {
 public:
  GptqWeightsPlugin() {
    info_.kind = PluginKind::weights;
    info_.name = "gptq";
    info_.version = "0.1.0";
    info_.description = "GPTQ int2/3/4/8 weights (AutoGPTQ/GPTQModel, v1 and v2, act-order), dequantized on the fly";
    info_.backends = {BackendKind::cpu};
#if KVRUN_GPTQ_CUDA
    info_.backends.push_back(BackendKind::cuda);
#endif
    info_.encodings = {"gptq"};
  }
  const PluginInfo& info() const noexcept override { return info_; }
  Status create_weights(Device&, std::unique_ptr<WeightFormat>* out) noexcept override {
    return guard([&] { *out = gptq::make_weight_format(); });
  }

 private:
  PluginInfo info_;
};

}  // namespace
}  // namespace kvrun

KVRUN_DEFINE_PLUGIN("weights.gptq", kvrun::GptqWeightsPlugin)
