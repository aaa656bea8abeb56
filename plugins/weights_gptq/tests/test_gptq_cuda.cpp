// weights.gptq on CUDA: the CUDA Linear of the built module against the CPU Linear on random packed
// weights (bits 4 and 8, plus 2 and 3; act-order; asymmetric zeros; M in {1, 3, 8, 16, 33, 64, 300}).
// Prints "skipped: no CUDA device" and returns where there is none (or no CUDA build).
//
// Tolerances (max |Δy| / max |y_cpu|): M ≤ 8 (M ≤ 64 for 4-bit Linears in the tensor-core layout,
// still checked against the looser bound above 8) runs a fused kernel on the exact dequantized weights
// with fp32 accumulation. The fp32 kernel (2, 3, 8 bits; 4 bits whose groups split 16-row tiles)
// differs from the CPU only in summation order; the 4-bit tensor-core kernel multiplies x as two
// bf16 parts (hi + lo: ≤ 2^-17 relative per product) — 2e-5 for both.
// M > 8 multiplies an f16 copy of W with x rounded to f16 (backend GEMM, fp32 accumulation): each
// operand carries a relative rounding error ≤ 2^-11, so 4e-3.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <random>
#include <sstream>

#include "fixtures.hpp"
#include "gptq_test_util.hpp"
#include "kvrun/registry.hpp"
#include "devices.hpp"
#include "kvrun/select.hpp"

using namespace kvrun;
using namespace gptq_test;


TEST_CASE("CUDA Linear matches the CPU Linear") {
  std::shared_ptr<Device> gpu = test::gpu();
  KVRUN_SKIP_UNLESS(gpu != nullptr, "no CUDA device");

  auto cpu = open_device(DeviceRequest{.spec = "cpu", .search_dirs = {}});
  Registry reg;
  reg.load_path(Registry::search_path({}, test::plugin_dirs()));
  const LoadedPlugin* lp = reg.find(PluginKind::weights, "gptq");
  REQUIRE(lp != nullptr);
  const bool cuda_build = std::find(lp->info.backends.begin(), lp->info.backends.end(), BackendKind::cuda) !=
                          lp->info.backends.end();
  KVRUN_SKIP_UNLESS(cuda_build, "weights.gptq built without CUDA");
  auto gpu_wf = reg.create_weights("gptq", *gpu);
  auto cpu_wf = reg.create_weights("gptq", *cpu);

  const std::vector<Config> configs = {
      {4, 1024, 512, 128, false, false, false, true},  // the Qwen-Int4 settings, with a bias
      {4, 11008, 80, 128, false, false, false, false}, // Qwen-7B down_proj rows: 44 KB of x fragments per block at M = 1
      {4, 512, 200, 32, false, false, true, false},    // group 32: scale per 16-row tile, N % 32 != 0
      {4, 1088, 48, -1, false, true, true, true},      // group -1, an odd number of 16-column tiles
      {4, 768, 320, 128, true, false, true, false},    // act-order, asymmetric
      {4, 304, 96, 100, false, true, true, true},      // groups not a multiple of 8 rows (sorted, padded), v2
      {8, 512, 200, 128, true, false, true, true},     // act-order, asymmetric, N % 32 != 0
      {8, 256, 64, -1, false, true, true, false},      // group -1, v2
      {2, 512, 96, 64, true, false, true, false},
      {3, 512, 128, 128, true, false, true, true},
  };
  double worst_small = 0, worst_large = 0;
  uint64_t seed = 500;
  for (const Config& c : configs) {
    const Synthetic s = make_synthetic(c, seed++);
    MemCheckpoint ck;
    s.store(ck, "layer.proj");
    LinearSpec sp;
    sp.prefix = "layer.proj";
    sp.in_features = c.K;
    sp.out_features = c.N;
    sp.bias = c.bias;
    std::unique_ptr<Linear> gl, cl;
    Status st = gpu_wf->load_linear(ck, sp, *gpu, &gl);
    REQUIRE_MESSAGE(st.ok(), st.message);
    st = cpu_wf->load_linear(ck, sp, *cpu, &cl);
    REQUIRE_MESSAGE(st.ok(), st.message);
    // The CUDA Linear pads each column's words to a multiple of 4 (16-byte rows): ≤ 3 words per
    // column; the 4-bit tensor-core layout pads N to a multiple of 32 and keeps 4 bytes of scale and
    // zero per column and group (3 on the CPU).
    const int64_t groups = c.G < 0 ? 1 : (c.K + c.G - 1) / c.G;
    const int64_t kp_max = c.K + 8 * groups, n_pad = (c.N + 31) / 32 * 32;
    CHECK(gl->device_bytes() >= cl->device_bytes());
    CHECK(gl->device_bytes() <= cl->device_bytes() + size_t(12 * c.N) +
                                     size_t((n_pad - c.N) * (kp_max / 2 + 4 * groups) + groups * c.N));
    for (int64_t M : {1, 3, 8, 16, 33, 64, 300}) {
      INFO(describe(c) << " M=" << M);
      std::mt19937_64 rng(seed * 7 + uint64_t(M));
      std::uniform_real_distribution<float> U(-1.f, 1.f);
      std::vector<float> x(size_t(M * c.K)), y_cpu(size_t(M * c.N)), y_gpu(size_t(M * c.N), -1.f);
      for (auto& v : x) v = U(rng);
      check(cl->forward(TensorView(y_cpu.data(), DType::f32, {M, c.N}), TensorView(x.data(), DType::f32, {M, c.K})));
      Buffer<float> xd(*gpu, x.size(), MemCategory::workspace), yd(*gpu, y_gpu.size(), MemCategory::workspace);
      xd.upload(x.data(), x.size());
      st = gl->forward(yd.view(DType::f32, {M, c.N}), xd.view(DType::f32, {M, c.K}));
      REQUIRE_MESSAGE(st.ok(), st.message);
      yd.download(y_gpu.data(), y_gpu.size());
      check(gpu->queue().wait());
      double num = 0, den = 0;
      for (size_t i = 0; i < y_cpu.size(); ++i) {
        num = std::max(num, std::fabs(double(y_gpu[i]) - y_cpu[i]));
        den = std::max(den, std::fabs(double(y_cpu[i])));
      }
      const double rel = num / den;
      if (M <= 8) {
        worst_small = std::max(worst_small, rel);
        CHECK(rel <= 2e-5);
      } else {
        worst_large = std::max(worst_large, rel);
        CHECK(rel <= 4e-3);
      }
    }
  }
  std::printf("CUDA vs CPU Linear: worst max|dy|/max|y| %.3g for M <= 8 (limit 2e-5), %.3g for M > 8 (limit 4e-3)\n",
              worst_small, worst_large);
}
