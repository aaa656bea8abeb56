// weights.gptq — the WeightFormat: quantized linears from a GPTQ checkpoint, unquantized ones
// (prefix.weight, f16/bf16/f32) through the backend's dense matmul, and synthetic int4 linears.
#include <cmath>
#include <random>

#include "gptq.hpp"
#include "kvrun/ops.hpp"
#if KVRUN_GPTQ_CUDA
#include "gptq_cuda.hpp"
#endif

namespace kvrun::gptq {
namespace {

// An unquantized linear of a GPTQ checkpoint (e.g. a layer the export skipped): W stays in its
// checkpoint dtype, forward is Ops::matmul (x · Wᵀ + b).
class DenseLinear final : public Linear {
 public:
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
  Buffer<uint8_t> w_;
  Buffer<float> bias_;
};

bool is_float(DType t) { return t == DType::f32 || t == DType::f16 || t == DType::bf16; }

float to_f32(const void* p, DType t, size_t i) {
  switch (t) {
    case DType::f32: return static_cast<const float*>(p)[i];
    case DType::f16: return f16_to_f32(static_cast<const uint16_t*>(p)[i]);
    case DType::bf16: return bf16_to_f32(static_cast<const uint16_t*>(p)[i]);
    default: return 0.f;
  }
}

std::vector<float> load_bias(const Checkpoint& ck, const LinearSpec& spec, int64_t total, bool* present) {
  const std::string bname = spec.prefix + ".bias";
  *present = false;
  if (!ck.has(bname)) {
    if (spec.bias)
      fail(ErrorKind::model, "tensor '" + bname + "' is missing from the checkpoint in " + ck.directory() +
                                 " (this architecture has a bias here)");
    return {};
  }
  HostTensor b;
  check(ck.get(bname, &b));
  if (!is_float(b.dtype) || b.shape.size() != 1 || b.shape[0] != total)
    fail(ErrorKind::model, "tensor '" + bname + "' in " + b.file + " has shape " + shape_str(b.shape) + " dtype " +
                               std::string(dtype_name(b.dtype)) + ", expected [" + std::to_string(total) + "] float");
  std::vector<float> bias(size_t(spec.out_features));
  for (size_t i = 0; i < bias.size(); ++i) bias[i] = to_f32(b.data, b.dtype, size_t(spec.out_offset) + i);
  *present = true;
  return bias;
}

std::unique_ptr<Linear> load_dense(const Checkpoint& ck, const LinearSpec& spec, Device& dev) {
  const std::string wname = spec.prefix + ".weight";
  HostTensor w;
  check(ck.get(wname, &w));
  const int64_t total = spec.out_total ? spec.out_total : spec.out_features;
  if (!is_float(w.dtype))
    fail(ErrorKind::model, "tensor '" + wname + "' in " + w.file + " has dtype " + std::string(dtype_name(w.dtype)) +
                               "; an unquantized linear of a GPTQ checkpoint must be f16, bf16 or f32");
  if (w.shape.size() != 2 || w.shape[0] != total || w.shape[1] != spec.in_features)
    fail(ErrorKind::model, "tensor '" + wname + "' in " + w.file + " has shape " + shape_str(w.shape) + ", expected [" +
                               std::to_string(total) + ", " + std::to_string(spec.in_features) + "]");
  auto lin = std::make_unique<DenseLinear>(dev, w.dtype, spec.out_features, spec.in_features);
  const size_t row_bytes = size_t(spec.in_features) * dtype_size(w.dtype);
  lin->weight().upload(static_cast<const uint8_t*>(w.data) + size_t(spec.out_offset) * row_bytes,
                       size_t(spec.out_features) * row_bytes);
  bool has_bias = false;
  std::vector<float> bias = load_bias(ck, spec, total, &has_bias);
  if (has_bias) lin->set_bias(bias);
  check(dev.queue().wait());
  return lin;
}

class GptqWeights final : public WeightFormat {
 public:
  Status load_linear(const Checkpoint& ck, const LinearSpec& spec, Device& dev,
                     std::unique_ptr<Linear>* out) noexcept override {
    return guard([&] {
      const std::string& p = spec.prefix;
      if (!ck.has(p + ".qweight")) {
        if (ck.has(p + ".weight")) {
          *out = load_dense(ck, spec, dev);
          return;
        }
        fail(ErrorKind::model, "linear '" + p + "' is not in the checkpoint in " + ck.directory() + ": expected '" + p +
                                   ".qweight' (with .qzeros, .scales, .g_idx) or an unquantized '" + p + ".weight'");
      }
      const Settings s = load_settings(ck);  // a few small files; read per linear, nothing cached
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
      *out = make_linear(dev, pack_linear(t, s, spec), &scratch_);
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
