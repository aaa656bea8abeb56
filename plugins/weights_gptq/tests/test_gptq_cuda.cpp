// weights.gptq on CUDA: the CUDA Linear of the built module against the CPU Linear on random packed
// weights (bits 4 and 8, plus 2 and 3; act-order; asymmetric zeros; M in {1, 3, 8, 16, 24, 33, 64, 300}).
// Prints "skipped: no CUDA device" and returns where there is none (or no CUDA build).
//
// Tolerances (max |Δy| / max |y_cpu|): M ≤ 8 (M ≤ 64 for 4-bit Linears in the tensor-core layout,
// still checked against the looser bound above 8) runs a fused kernel on the exact dequantized weights
// with fp32 accumulation. The fp32 kernel (2, 3, 8 bits; 4 bits whose groups split 16-row tiles)
// differs from the CPU only in summation order; the 4-bit tensor-core kernel multiplies x as two
// bf16 parts (hi + lo: ≤ 2^-17 relative per product) — 2e-5 for both.
// M > 8 multiplies W rounded to f16 with x rounded to f16 (each row scaled by a power of two first,
// exact), fp32 accumulation: each operand carries a relative rounding error ≤ 2^-11, so 4e-3. For
// 4-bit Linears in the tensor-core layout that is gemm_tc_kernel at 9..64 rows (16 takes its 16-row
// width, 24 its 32-row one, 33, 47, 56 and 64 its 64-row one; the small Linears its k split into
// parts) — on compute capability 9.0 gemm_wg_kernel instead (its 16-, 32-, 40-, 48-, 56- and 64-row
// widths; scripts/gpu-check.sh runs the suite with KVRUN_GPTQ_WGMMA=0 too, and with one tile a warp);
// otherwise an f16 copy of W and the backend's GEMM.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <sstream>
#include <string>

#include "fixtures.hpp"
#include "gptq_test_util.hpp"
#include "kvrun/dtype.hpp"
#include "kvrun/ops.hpp"
#include "kvrun/registry.hpp"
#include "devices.hpp"
#include "kvrun/select.hpp"

using namespace kvrun;
using namespace gptq_test;


namespace {

// The built module's weights.gptq on cuda:0 and on the CPU (gpu null: no CUDA device).
struct GptqOnBoth {
  std::shared_ptr<Device> gpu = test::gpu();
  std::shared_ptr<Device> cpu;
  Registry reg;
  bool cuda_build = false;
  std::shared_ptr<WeightFormat> gpu_wf, cpu_wf;

  GptqOnBoth() {
    if (!gpu) return;
    cpu = open_device(DeviceRequest{.spec = "cpu", .search_dirs = {}});
    reg.load_path(Registry::search_path({}, test::plugin_dirs()));
    const LoadedPlugin* lp = reg.find(PluginKind::weights, "gptq");
    REQUIRE(lp != nullptr);
    cuda_build = std::find(lp->info.backends.begin(), lp->info.backends.end(), BackendKind::cuda) !=
                 lp->info.backends.end();
    if (!cuda_build) return;
    gpu_wf = reg.create_weights("gptq", *gpu);
    cpu_wf = reg.create_weights("gptq", *cpu);
  }

  // One random Linear of c (seeded), loaded through each WeightFormat from the same checkpoint.
  void load(const Config& c, uint64_t seed, std::unique_ptr<Linear>* gl, std::unique_ptr<Linear>* cl) {
    const Synthetic s = make_synthetic(c, seed);
    MemCheckpoint ck;
    s.store(ck, "layer.proj");
    LinearSpec sp;
    sp.prefix = "layer.proj";
    sp.in_features = c.K;
    sp.out_features = c.N;
    sp.bias = c.bias;
    Status st = gpu_wf->load_linear(ck, sp, *gpu, gl);
    REQUIRE_MESSAGE(st.ok(), st.message);
    st = cpu_wf->load_linear(ck, sp, *cpu, cl);
    REQUIRE_MESSAGE(st.ok(), st.message);
  }

  // y = x · W on the CPU Linear cl and on the CUDA Linear gl; x: [M, K] on the host.
  void forward(Linear& gl, Linear& cl, const std::vector<float>& x, int64_t M, int64_t K, int64_t N,
               std::vector<float>* y_cpu, std::vector<float>* y_gpu) {
    y_cpu->assign(size_t(M * N), 0.f);
    y_gpu->assign(size_t(M * N), -1.f);
    check(cl.forward(TensorView(y_cpu->data(), DType::f32, {M, N}),
                     TensorView(const_cast<float*>(x.data()), DType::f32, {M, K})));
    Buffer<float> xd(*gpu, x.size(), MemCategory::workspace), yd(*gpu, y_gpu->size(), MemCategory::workspace);
    xd.upload(x.data(), x.size());
    Status st = gl.forward(yd.view(DType::f32, {M, N}), xd.view(DType::f32, {M, K}));
    REQUIRE_MESSAGE(st.ok(), st.message);
    yd.download(y_gpu->data(), y_gpu->size());
    check(gpu->queue().wait());
  }
};

// Rows that the tensor-core GEMM (gemm_tc_kernel) takes under this process's environment: 9..64 by
// default, none with KVRUN_GPTQ_TC_GEMM=0, from KVRUN_GPTQ_TC_MIN_ROWS on where that is set (a
// tuning switch; the GPU runs use it to send 2..8 rows through the kernel too).
bool tc_takes_rows(int64_t rows) {
  const char* on = std::getenv("KVRUN_GPTQ_TC_GEMM");
  if (on && std::string(on) == "0") return false;
  const char* min = std::getenv("KVRUN_GPTQ_TC_MIN_ROWS");
  return rows >= (min ? std::atoi(min) : 9) && rows <= 64;
}

}  // namespace

TEST_CASE("CUDA Linear matches the CPU Linear") {
  GptqOnBoth both;
  KVRUN_SKIP_UNLESS(both.gpu != nullptr, "no CUDA device");
  KVRUN_SKIP_UNLESS(both.cuda_build, "weights.gptq built without CUDA");

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
    std::unique_ptr<Linear> gl, cl;
    both.load(c, seed++, &gl, &cl);
    // The CUDA Linear pads each column's words to a multiple of 4 (16-byte rows): ≤ 3 words per
    // column; the 4-bit tensor-core layout pads N to a multiple of 32 and keeps 4 bytes of scale and
    // zero per column and group (3 on the CPU).
    const int64_t groups = c.G < 0 ? 1 : (c.K + c.G - 1) / c.G;
    const int64_t kp_max = c.K + 8 * groups, n_pad = (c.N + 31) / 32 * 32;
    CHECK(gl->device_bytes() >= cl->device_bytes());
    CHECK(gl->device_bytes() <= cl->device_bytes() + size_t(12 * c.N) +
                                     size_t((n_pad - c.N) * (kp_max / 2 + 4 * groups) + groups * c.N));
    for (int64_t M : {1, 3, 8, 16, 24, 33, 47, 56, 64, 300}) {
      INFO(describe(c) << " M=" << M);
      std::mt19937_64 rng(seed * 7 + uint64_t(M));
      std::uniform_real_distribution<float> U(-1.f, 1.f);
      std::vector<float> x(size_t(M * c.K)), y_cpu, y_gpu;
      for (auto& v : x) v = U(rng);
      both.forward(*gl, *cl, x, M, c.K, c.N, &y_cpu, &y_gpu);
      double num = 0, den = 0;
      for (size_t i = 0; i < y_cpu.size(); ++i) {
        num = std::max(num, std::fabs(double(y_gpu[i]) - y_cpu[i]));
        den = std::max(den, std::fabs(double(y_cpu[i])));
      }
      const double rel = num / den;
      if (M <= 8 && !tc_takes_rows(M)) {
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

TEST_CASE("CUDA Linear at 9..64 rows: rows of huge and of tiny activations keep their precision") {
  // The f16 paths (gemm_tc_kernel at 9..64 rows, dequantize + GEMM above) scale each row of x by a
  // power of two before rounding it to f16: a row with |x| up to 1e7 must not overflow (65504 is
  // f16's largest value) and a row of 1e-6-sized values must not fall into f16's subnormals. Each
  // row is checked against the CPU on its own scale: max |Δy| / max |y| of the row ≤ 4e-3 (the
  // second Linear has no bias, so its tiny rows are all products).
  GptqOnBoth both;
  KVRUN_SKIP_UNLESS(both.gpu != nullptr, "no CUDA device");
  KVRUN_SKIP_UNLESS(both.cuda_build, "weights.gptq built without CUDA");
  const Config configs[] = {
      {4, 1024, 512, 128, false, false, false, true},  // one k part, a bias
      {4, 11008, 80, 128, false, false, false, false}, // k split into parts (the reduce kernel)
  };
  uint64_t seed = 700;
  double worst = 0;
  for (const Config& c : configs) {
    std::unique_ptr<Linear> gl, cl;
    both.load(c, seed++, &gl, &cl);
    for (int64_t M : {12, 24, 40, 64, 100}) {
      INFO(describe(c) << " M=" << M);
      std::mt19937_64 rng(seed * 11 + uint64_t(M));
      std::uniform_real_distribution<float> U(-1.f, 1.f);
      std::vector<float> x(size_t(M * c.K)), y_cpu, y_gpu;
      for (int64_t m = 0; m < M; ++m) {
        const float row_scale = m % 3 == 0 ? 1e7f : m % 3 == 1 ? 1e-6f : 1.f;
        for (int64_t k = 0; k < c.K; ++k) x[size_t(m * c.K + k)] = U(rng) * row_scale;
      }
      both.forward(*gl, *cl, x, M, c.K, c.N, &y_cpu, &y_gpu);
      for (int64_t m = 0; m < M; ++m) {
        double num = 0, den = 0;
        for (int64_t n = 0; n < c.N; ++n) {
          const size_t i = size_t(m * c.N + n);
          num = std::max(num, std::fabs(double(y_gpu[i]) - y_cpu[i]));
          den = std::max(den, std::fabs(double(y_cpu[i])));
        }
        INFO("row " << m);
        REQUIRE(std::isfinite(num));
        const double rel = den > 0 ? num / den : num;
        worst = std::max(worst, rel);
        CHECK(rel <= 4e-3);
      }
    }
  }
  std::printf("CUDA vs CPU Linear, rows of 1e7 / 1e-6 / 1: worst per-row max|dy|/max|y| %.3g (limit 4e-3)\n", worst);
}

TEST_CASE("CUDA Linear fused at M = 1 and at 9..64 rows (norm of x in, y += out) matches the CPU's unfused ops") {
  // Reference: the CPU backend's rms_norm, the CPU Linear, then the residual add. M = 1 (the batch-1
  // kernel): the unfused batch-1 kernel's tolerance, 2e-5 of max |product|, the norm adding fp32
  // rounding only. M = 12, 24, 64 (gemm_tc_kernel, the norm in its x-fragment kernel): W and the
  // normalized x rounded to f16, as in the unfused 9..64-row case: 4e-3.
  GptqOnBoth both;
  KVRUN_SKIP_UNLESS(both.gpu != nullptr, "no CUDA device");
  KVRUN_SKIP_UNLESS(both.cuda_build, "weights.gptq built without CUDA");
  auto* gpu = both.gpu.get();
  auto* cpu = both.cpu.get();
  struct Case {
    Config c;
    bool fused;  // what fuses() must answer for norm and for accumulate
  };
  const Case cases[] = {
      {{4, 1024, 512, 128, false, false, false, true}, true},   // the Qwen-Int4 settings, a bias
      {{4, 11008, 80, 128, false, false, false, false}, true},  // down_proj rows (k parts at 9..64 rows)
      {{4, 512, 200, 32, false, true, true, true}, true},       // group 32 (scale per 16-row tile), v2, asym
      {{4, 304, 96, 100, false, true, true, true}, false},      // K not a multiple of 64: not the tensor-core layout
      {{4, 768, 320, 128, true, false, true, false}, false},    // act-order: not fused
      {{8, 512, 200, 128, false, false, true, true}, false},    // 8 bits: another kernel, not fused
  };
  // Besides M = 1, the rows the tensor-core GEMM takes fuse (tc_takes_rows).
  const auto fuses_at = [&](bool layout_fuses, int64_t rows) { return layout_fuses && (rows == 1 || tc_takes_rows(rows)); };
  uint64_t seed = 900;
  double worst1 = 0, worst_tc = 0;
  for (const Case& cs : cases) {
    const Config& c = cs.c;
    std::unique_ptr<Linear> gl, cl;
    both.load(c, seed++, &gl, &cl);
    for (int64_t M : {1, 12, 24, 64}) {
      std::mt19937_64 rng(seed + uint64_t(M));
      std::normal_distribution<float> nd(0.f, 2.f);
      std::vector<float> x(size_t(M * c.K)), y0(size_t(M * c.N)), lnf(size_t(c.K));
      for (auto& v : x) v = nd(rng);
      for (auto& v : y0) v = nd(rng);
      std::vector<uint16_t> ln(size_t(c.K));
      for (size_t i = 0; i < ln.size(); ++i) lnf[i] = bf16_to_f32(ln[i] = f32_to_bf16(1.f + 0.2f * nd(rng)));
      Buffer<float> xd(*gpu, x.size(), MemCategory::workspace), yd(*gpu, y0.size(), MemCategory::workspace);
      Buffer<uint16_t> lnd(*gpu, ln.size(), MemCategory::workspace);
      xd.upload(x.data(), x.size());
      lnd.upload(ln.data(), ln.size());
      const TensorView gln = lnd.view(DType::bf16, {c.K});
      const TensorView hln(lnf.data(), DType::f32, {c.K});
      const bool fused = fuses_at(cs.fused, M);
      const double limit = M == 1 ? 2e-5 : 4e-3;
      for (int mode = 0; mode < 3; ++mode) {  // norm, accumulate, both
        INFO(describe(c) << " M " << M << (mode != 1 ? " norm" : "") << (mode != 0 ? " +=" : ""));
        MatmulFusion f;
        if (mode != 1) f.norm_w = &gln, f.norm_eps = 1e-6f;
        f.accumulate = mode != 0;
        CHECK(gl->fuses(f, M) == fused);
        CHECK(gl->fuses(f, 2) == fuses_at(cs.fused, 2));  // the decode kernel for 2..8 rows fuses nothing
        CHECK(gl->fuses(f, 8) == fuses_at(cs.fused, 8));
        CHECK(gl->fuses(f, 16) == fuses_at(cs.fused, 16));
        CHECK_FALSE(gl->fuses(f, 65));  // nor does the prefill path
        MatmulFusion sw;
        sw.swiglu = true;
        CHECK_FALSE(gl->fuses(sw, M));
        yd.upload(y0.data(), y0.size());
        if (!fused) {
          Status st = gl->forward_fused(yd.view(DType::f32, {M, c.N}), xd.view(DType::f32, {M, c.K}), f);
          CHECK(!st.ok());
          CHECK(st.message.find("ask fuses()") != std::string::npos);
          continue;
        }
        // CPU: h = rms_norm(x)·ln (or x), p = h·W + b, y = y0 + p (or p)
        std::vector<float> h = x, p(size_t(M * c.N)), y_gpu(size_t(M * c.N));
        if (mode != 1)
          check(cpu->ops().rms_norm(TensorView(h.data(), DType::f32, {M, c.K}),
                                    TensorView(x.data(), DType::f32, {M, c.K}), hln, 1e-6f));
        check(cl->forward(TensorView(p.data(), DType::f32, {M, c.N}), TensorView(h.data(), DType::f32, {M, c.K})));
        Status st = gl->forward_fused(yd.view(DType::f32, {M, c.N}), xd.view(DType::f32, {M, c.K}), f);
        REQUIRE_MESSAGE(st.ok(), st.message);
        yd.download(y_gpu.data(), y_gpu.size());
        check(gpu->queue().wait());
        double num = 0, den = 0;
        for (size_t i = 0; i < p.size(); ++i) {
          const double got = f.accumulate ? double(y_gpu[i]) - y0[i] : y_gpu[i];
          num = std::max(num, std::fabs(got - p[i]));
          den = std::max(den, std::fabs(double(p[i])));
        }
        (M == 1 ? worst1 : worst_tc) = std::max(M == 1 ? worst1 : worst_tc, num / den);
        CHECK(num / den <= limit);
      }
    }
  }
  std::printf("CUDA fused Linear vs CPU unfused ops: worst max|dy|/max|y| %.3g at M = 1 (limit 2e-5), %.3g at "
              "M = 12, 24, 64 (limit 4e-3)\n",
              worst1, worst_tc);
}
