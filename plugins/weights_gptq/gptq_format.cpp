// weights.gptq — the WeightFormat: quantized linears from a GPTQ checkpoint, unquantized ones
// (prefix.weight, f16/bf16/f32) through the backend's dense matmul, and synthetic int4 linears.
#include <cmath>
#include <optional>
#include <random>

#include "gptq.hpp"
#include "kvrun/dense_linear.hpp"
#include "kvrun/ops.hpp"
#if KVRUN_GPTQ_CUDA
#include "gptq_cuda.hpp"
#endif

namespace kvrun::gptq {
namespace {

// The checkpoint tensors of the quantized linear spec.prefix (qweight, qzeros, scales; g_idx and
// bias when stored). Error(model) naming a missing tensor.
RawTensors read_raw(const Checkpoint& ck, const LinearSpec& spec) {
  const std::string& p = spec.prefix;
  RawTensors t;
  auto need = [&](const char* suffix, HostTensor* h) {
    const std::string name = p + suffix;
    if (!ck.has(name))
      fail(ErrorKind::model, "tensor '" + name + "' is missing from the checkpoint in " + ck.directory() +
                                 " (GPTQ linear '" + p + "' has a qweight, so it needs qweight, qzeros and scales)");
    check(ck.get(name, h));
  };
  need(".qweight", &t.qweight);
  need(".qzeros", &t.qzeros);
  need(".scales", &t.scales);
  if (ck.has(p + ".g_idx")) {
    check(ck.get(p + ".g_idx", &t.g_idx));
    t.has_g_idx = true;
  }
  if (ck.has(p + ".bias")) {
    check(ck.get(p + ".bias", &t.bias));
    t.has_bias = true;
  } else if (spec.bias) {
    fail(ErrorKind::model, "tensor '" + p + ".bias' is missing from the checkpoint in " + ck.directory() +
                               " (this architecture has a bias here)");
  }
  return t;
}

class GptqWeights final : public WeightFormat {
 public:
  Status load_linear(const Checkpoint& ck, const LinearSpec& spec, Device& dev,
                     std::unique_ptr<Linear>* out) noexcept override {
    return guard([&] {
      const std::string& p = spec.prefix;
      if (!ck.has(p + ".qweight")) {
        if (ck.has(p + ".weight")) {
          *out = load_dense_linear(ck, spec, dev, "weights.gptq");  // a linear the export left unquantized
          return;
        }
        fail(ErrorKind::model, "linear '" + p + "' is not in the checkpoint in " + ck.directory() + ": expected '" + p +
                                   ".qweight' (with .qzeros, .scales, .g_idx) or an unquantized '" + p + ".weight'");
      }
      *out = make_linear(dev, pack_linear(read_raw(ck, spec), load_settings(ck), spec), &scratch_);
    });
  }

  // Quantized parts join when their packed forms share the row order (join_packed); parts the
  // export left unquantized join as dense ones; a mix of both does not join.
  Status load_joined_linear(const Checkpoint& ck, const std::vector<LinearSpec>& parts, Device& dev,
                            std::unique_ptr<Linear>* out) noexcept override {
    return guard([&] {
      out->reset();
      if (parts.empty()) return;
      size_t quantized = 0;
      for (const LinearSpec& p : parts) quantized += ck.has(p.prefix + ".qweight") ? 1 : 0;
      if (quantized == 0) {
        *out = load_dense_joined_linear(ck, parts, dev, "weights.gptq");
        return;
      }
      if (quantized != parts.size()) return;
      const Settings s = load_settings(ck);
      std::vector<Packed> packed;
      for (const LinearSpec& p : parts) packed.push_back(pack_linear(read_raw(ck, p), s, p));
      std::optional<Packed> joined = join_packed(packed);
      if (joined) *out = make_linear(dev, *joined, &scratch_);
    });
  }

  Status random_linear(const LinearSpec& spec, uint64_t seed, Device& dev,
                       std::unique_ptr<Linear>* out) noexcept override {
    return guard([&] {
      // int4, group 128, symmetric (zero 8); codes uniform in 0..15, scales a/8·U(0.75, 1.25) with
      // a = 1/sqrt(in): W has about the spread of U(-a, a), like the synthetic bf16 weights.
      const int64_t K = spec.in_features, N = spec.out_features;
      if (K <= 0 || N <= 0 || K % 8 != 0)
        fail(ErrorKind::usage, "synthetic GPTQ int4 weights need in_features a positive multiple of 8 (got " +
                                   std::to_string(K) + " for '" + spec.prefix + "')");
      Layout lay;
      lay.bits = 4;
      lay.K = lay.Kp = K;
      lay.N = N;
      lay.groups = (K + 127) / 128;
      lay.bias = spec.bias;
      lay.w_max = 1.25 * (1.0 / std::sqrt(double(K))) / 8.0 * 8.0;  // largest scale · largest |q − 8|
      auto lin = new_linear(dev, lay, &scratch_);
      std::mt19937_64 rng(seed);
      const int64_t rows = lay.words_rows();  // K / 8
      const int64_t chunk_rows = std::max<int64_t>(1, (int64_t(1) << 20) / N);
      std::vector<uint32_t> chunk;
      for (int64_t r0 = 0; r0 < rows; r0 += chunk_rows) {
        const int64_t nr = std::min(chunk_rows, rows - r0);
        chunk.resize(size_t(nr * N));
        for (size_t i = 0; i < chunk.size(); i += 2) {
          const uint64_t v = rng();
          chunk[i] = uint32_t(v);
          if (i + 1 < chunk.size()) chunk[i + 1] = uint32_t(v >> 32);
        }
        lin->qweight.upload(chunk.data(), chunk.size(), size_t(r0 * N));
        check(dev.queue().wait());
      }
      const float a = 1.f / std::sqrt(float(K));
      std::uniform_real_distribution<float> U(0.75f, 1.25f);
      std::vector<uint16_t> sc(size_t(lay.groups * N));
      for (auto& v : sc) v = f32_to_f16(a / 8.f * U(rng));
      lin->scales.upload(sc.data(), sc.size());
      std::vector<uint8_t> z(size_t(lay.groups * N), uint8_t(8));
      lin->zeros.upload(z.data(), z.size());
      std::vector<int32_t> ug(size_t(lay.units()));
      for (int64_t u = 0; u < lay.units(); ++u) ug[size_t(u)] = int32_t(u * 8 / 128);
      lin->unit_group.upload(ug.data(), ug.size());
      if (spec.bias) {
        std::vector<float> b(size_t(N), 0.f);
        lin->bias.upload(b.data(), b.size());
      }
      check(dev.queue().wait());
      lin->on_uploaded();
      *out = std::move(lin);
    });
  }

 private:
  std::shared_ptr<BackendScratch> scratch_;  // shared by this format's Linears (one device, one queue)
};

}  // namespace

std::unique_ptr<GptqLinearBase> new_linear(Device& dev, const Layout& lay, std::shared_ptr<BackendScratch>* scratch) {
  switch (dev.info().backend) {
    case BackendKind::cpu: return make_cpu_linear(dev, lay);
    case BackendKind::cuda: {
#if KVRUN_GPTQ_CUDA
      std::shared_ptr<BackendScratch> own;
      return make_cuda_linear(dev, lay, scratch ? *scratch : own);
#else
      (void)scratch;
      fail(ErrorKind::usage, "weights.gptq was built without CUDA support; it runs on the cpu backend only "
                             "(rebuild kvrun with -Dcuda=enabled)");
#endif
    }
  }
  fail(ErrorKind::internal, "weights.gptq: unknown backend");
}

std::unique_ptr<Linear> make_linear(Device& dev, const Packed& p, std::shared_ptr<BackendScratch>* scratch) {
  auto lin = new_linear(dev, p.lay, scratch);
  lin->upload(p);
  lin->on_uploaded();
  return lin;
}

std::unique_ptr<WeightFormat> make_weight_format() { return std::make_unique<GptqWeights>(); }

}  // namespace kvrun::gptq
