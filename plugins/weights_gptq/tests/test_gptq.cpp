// weights.gptq — unpacking, the CPU Linear, settings, error messages, and the GPTQ fixtures end
// to end against their transformers references (SPECS.md §2, §6).
#include <doctest/doctest.h>

#include <cmath>
#include <cstdio>
#include <fstream>
#include <sstream>

#include "devices.hpp"
#include "fixtures.hpp"
#include "reference.hpp"
#include "gptq.hpp"
#include "kvrun/config.hpp"
#include "kvrun/cpu/parallel.hpp"
#include "kvrun/engine.hpp"
#include "kvrun/models/checkpoint.hpp"
#include "kvrun/registry.hpp"
#include "kvrun/select.hpp"
#include "pipeline.hpp"
#include "gptq_test_util.hpp"

using namespace kvrun;
using namespace gptq_test;

namespace {

Device& cpu_device() {
  static std::shared_ptr<Device> dev = open_device(DeviceRequest{.spec = "cpu", .search_dirs = {}});
  return *dev;
}

gptq::Settings settings_of(const Config& c) {
  gptq::Settings s;
  s.bits = c.bits;
  s.group_size = c.G;
  s.desc_act = c.act_order;
  s.sym = !c.asym;
  s.checkpoint_format = c.v2 ? "gptq_v2" : "gptq";
  s.sources = "test";
  return s;
}

gptq::RawTensors raw_of(const MemCheckpoint& ck, const std::string& p, bool bias) {
  gptq::RawTensors t;
  check(ck.get(p + ".qweight", &t.qweight));
  check(ck.get(p + ".qzeros", &t.qzeros));
  check(ck.get(p + ".scales", &t.scales));
  if (ck.has(p + ".g_idx")) {
    check(ck.get(p + ".g_idx", &t.g_idx));
    t.has_g_idx = true;
  }
  if (bias) {
    check(ck.get(p + ".bias", &t.bias));
    t.has_bias = true;
  }
  return t;
}

LinearSpec spec_of(const Config& c, int64_t off = 0, int64_t n = 0) {
  LinearSpec sp;
  sp.prefix = "layer.proj";
  sp.in_features = c.K;
  sp.out_features = n ? n : c.N;
  sp.out_offset = off;
  sp.out_total = n ? c.N : 0;
  sp.bias = c.bias;
  return sp;
}

// Configurations covering every bit width, act-order, asymmetric zeros (0 is stored as all ones in
// v1), v2 zeros, group -1, groups that are not a multiple of the packing unit, and N % 8 != 0.
std::vector<Config> configs() {
  return {
      {4, 256, 64, 128, false, false, false, true},  // the Qwen-Int4 settings
      {4, 512, 72, 64, true, false, true, false},
      {4, 304, 40, 100, false, true, true, true},    // group of 100 rows: sorted and padded at load
      {4, 256, 64, -1, true, false, true, false},    // group -1
      {4, 256, 64, -1, false, true, false, false},
      {2, 512, 48, 128, true, false, true, false},
      {2, 256, 32, 32, false, true, true, true},
      {3, 512, 64, 128, false, false, true, false},
      {3, 256, 32, 64, true, true, true, true},
      {8, 256, 36, 128, false, false, true, true},   // N % 8 = 4: scalar tail columns
      {8, 384, 44, 32, true, false, true, false},
      {8, 256, 64, -1, false, true, false, false},
  };
}

double rel_error(const std::vector<float>& y, const std::vector<double>& ref) {
  double num = 0, den = 0;
  for (size_t i = 0; i < y.size(); ++i) {
    num = std::max(num, std::fabs(double(y[i]) - ref[i]));
    den = std::max(den, std::fabs(ref[i]));
  }
  return num / std::max(den, 1e-30);
}

std::vector<float> random_x(int64_t M, int64_t K, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<float> U(-1.f, 1.f);
  std::vector<float> x(size_t(M * K));
  for (auto& v : x) v = U(rng);
  return x;
}

std::vector<float> run(Linear& lin, const std::vector<float>& x, int64_t M) {
  std::vector<float> y(size_t(M * lin.out_features()), -12345.f);
  TensorView xv(const_cast<float*>(x.data()), DType::f32, {M, lin.in_features()});
  TensorView yv(y.data(), DType::f32, {M, lin.out_features()});
  check(lin.forward(yv, xv));
  return y;
}

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    CHECK(e.kind() == ErrorKind::model);
    return e.what();
  }
  FAIL("no error");
  return "";
}

bool contains(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

}  // namespace

TEST_CASE("unpacking matches the reference dequantization") {
  uint64_t seed = 1;
  for (const Config& c : configs()) {
    INFO(describe(c));
    const Synthetic s = make_synthetic(c, seed++);
    MemCheckpoint ck;
    s.store(ck, "layer.proj");
    // whole tensor, and a slice of the output columns (fused q|k|v style)
    for (int slice = 0; slice < 2; ++slice) {
      const int64_t off = slice ? c.N / 4 : 0, n = slice ? c.N / 2 : c.N;
      const gptq::Packed p = gptq::pack_linear(raw_of(ck, "layer.proj", c.bias), settings_of(c), spec_of(c, off, slice ? n : 0));
      CHECK(p.lay.N == n);
      CHECK(p.lay.permuted == ((c.act_order && s.groups > 1) || (c.G != -1 && c.G % gptq::unit_rows(c.bits) != 0)));
      const std::vector<double> W = gptq::packed_dequant(p);
      int64_t bad = 0;
      for (int64_t k = 0; k < c.K; ++k)
        for (int64_t j = 0; j < n; ++j) bad += W[size_t(k * n + j)] != s.W(k, off + j);
      CHECK(bad == 0);
      if (c.bias)
        for (int64_t j = 0; j < n; ++j) CHECK(p.bias[size_t(j)] == float(s.b(off + j)));
    }
  }
}

TEST_CASE("the spec's unpacking formula reads the test packer's words") {
  // q[k,n] = (qweight[k/(32/bits)][n] >> (bits·(k % (32/bits)))) & mask for 2/4/8 bits
  for (int bits : {2, 4, 8}) {
    Config c{bits, 128, 32, 64, false, false, true, false};
    const Synthetic s = make_synthetic(c, 77);
    const int per = 32 / bits;
    int64_t bad = 0;
    for (int64_t k = 0; k < c.K; ++k)
      for (int64_t n = 0; n < c.N; ++n)
        bad += ((uint32_t(s.qweight[size_t((k / per) * c.N + n)]) >> (bits * (k % per))) & ((1u << bits) - 1u)) !=
               s.code[size_t(k * c.N + n)];
    CHECK(bad == 0);
  }
}

TEST_CASE("CPU Linear: x·W + bias against a double reference") {
  Device& dev = cpu_device();
  uint64_t seed = 100;
  double worst = 0;
  for (const Config& c : configs()) {
    const Synthetic s = make_synthetic(c, seed++);
    MemCheckpoint ck;
    s.store(ck, "layer.proj");
    for (int slice = 0; slice < 2; ++slice) {
      const int64_t off = slice ? c.N / 4 : 0, n = slice ? c.N / 2 : c.N;
      const gptq::Packed p = gptq::pack_linear(raw_of(ck, "layer.proj", c.bias), settings_of(c), spec_of(c, off, slice ? n : 0));
      auto lin = gptq::make_linear(dev, p);
      CHECK(lin->in_features() == c.K);
      CHECK(lin->out_features() == n);
      for (int64_t M : {1, 2, 3, 4, 5, 7, 8, 9, 16, 17, 64, 130}) {
        INFO(describe(c) << " slice " << slice << " M=" << M);
        const auto x = random_x(M, c.K, seed * 31 + uint64_t(M));
        const double e = rel_error(run(*lin, x, M), reference_matmul(s, x, M, off, n));
        worst = std::max(worst, e);
        CHECK(e <= 1e-5);
      }
    }
  }
  std::printf("CPU Linear vs double reference: worst max|dy|/max|y| = %.3g (limit 1e-5)\n", worst);
}

TEST_CASE("CPU Linear: other thread counts split the work the same way") {
  Device& dev = cpu_device();
  const std::vector<Config> cs = {{4, 512, 200, 128, true, false, true, true}, {8, 256, 36, 64, false, false, true, false}};
  for (int threads : {1, 3, 5}) {
    cpu::set_num_threads(threads);
    for (const Config& c : cs) {
      const Synthetic s = make_synthetic(c, 7);
      MemCheckpoint ck;
      s.store(ck, "layer.proj");
      auto lin = gptq::make_linear(dev, gptq::pack_linear(raw_of(ck, "layer.proj", c.bias), settings_of(c), spec_of(c)));
      for (int64_t M : {1, 6, 40, 100}) {
        INFO(describe(c) << " threads " << threads << " M=" << M);
        const auto x = random_x(M, c.K, uint64_t(M));
        CHECK(rel_error(run(*lin, x, M), reference_matmul(s, x, M, 0, c.N)) <= 1e-5);
      }
    }
  }
  cpu::set_num_threads(0);
}

TEST_CASE("CPU Linear: a Qwen-sized layer, decode and prefill paths agree with the reference") {
  Device& dev = cpu_device();
  const Config c{4, 1024, 768, 128, true, false, true, true};
  const Synthetic s = make_synthetic(c, 5);
  MemCheckpoint ck;
  s.store(ck, "layer.proj");
  auto lin = gptq::make_linear(dev, gptq::pack_linear(raw_of(ck, "layer.proj", true), settings_of(c), spec_of(c)));
  for (int64_t M : {1, 8, 300}) {
    const auto x = random_x(M, c.K, 9 + uint64_t(M));
    const double e = rel_error(run(*lin, x, M), reference_matmul(s, x, M, 0, c.N));
    INFO("M=" << M);
    CHECK(e <= 1e-5);
  }
  // device_bytes: packed words + f16 scales + byte zeros + unit groups + permutation + f32 bias
  const int64_t units = c.K / 8;  // act-order with whole groups of 128: no padding
  CHECK(lin->device_bytes() == size_t(c.K / 8 * c.N * 4 + 8 * c.N * 2 + 8 * c.N + units * 4 + c.K * 4 + c.N * 4));
}

TEST_CASE("load_linear through the WeightFormat, quantized and unquantized") {
  Device& dev = cpu_device();
  auto wf = gptq::make_weight_format();
  const Config c{4, 256, 64, 64, true, false, true, true};
  const Synthetic s = make_synthetic(c, 11);
  MemCheckpoint ck;
  s.store(ck, "model.layers.0.mlp.up_proj");
  ck.set_text("config.json", R"({"model_type": "qwen2", "quantization_config": {"bits": 8, "group_size": 32, "quant_method": "gptq"}})");
  LinearSpec sp = spec_of(c);
  sp.prefix = "model.layers.0.mlp.up_proj";
  std::unique_ptr<Linear> lin;
  Status st = wf->load_linear(ck, sp, dev, &lin);  // quantize_config.json (bits 4, group 64) wins
  REQUIRE_MESSAGE(st.ok(), st.message);
  const auto x = random_x(3, c.K, 3);
  CHECK(rel_error(run(*lin, x, 3), reference_matmul(s, x, 3, 0, c.N)) <= 1e-5);

  // an unquantized linear in a GPTQ checkpoint: f16 weight [N, K] through Ops::matmul
  std::vector<uint16_t> w(size_t(c.N * c.K));
  std::vector<double> wd(w.size());
  std::mt19937_64 rng(4);
  std::uniform_real_distribution<float> U(-0.1f, 0.1f);
  for (size_t i = 0; i < w.size(); ++i) wd[i] = f16_to_f32(w[i] = f32_to_f16(U(rng)));
  ck.add("lm.dense.weight", DType::f16, {c.N, c.K}, w);
  LinearSpec dsp;
  dsp.prefix = "lm.dense";
  dsp.in_features = c.K;
  dsp.out_features = c.N;
  st = wf->load_linear(ck, dsp, dev, &lin);
  REQUIRE_MESSAGE(st.ok(), st.message);
  CHECK(lin->device_bytes() == w.size() * 2);
  const auto y = run(*lin, x, 3);
  std::vector<double> ref(size_t(3 * c.N), 0.0);
  for (int m = 0; m < 3; ++m)
    for (int64_t n = 0; n < c.N; ++n)
      for (int64_t k = 0; k < c.K; ++k) ref[size_t(m * c.N + n)] += double(x[size_t(m * c.K + k)]) * wd[size_t(n * c.K + k)];
  CHECK(rel_error(y, ref) <= 1e-5);
}

TEST_CASE("load_joined_linear: parts side by side; act-order parts only with one row order") {
  Device& dev = cpu_device();
  auto wf = gptq::make_weight_format();
  for (const Config& c : {Config{4, 256, 64, 64, false, false, false, true}, Config{4, 256, 64, 64, true, false, true, false},
                          Config{8, 256, 48, 128, false, false, true, true}, Config{3, 256, 32, 64, true, true, true, true}}) {
    CAPTURE(describe(c));
    const Synthetic a = make_synthetic(c, 31);
    Synthetic b = make_synthetic(c, 32);
    b.gidx = a.gidx;  // one row order for both
    MemCheckpoint ck;
    a.store(ck, "p.a");
    b.store(ck, "p.b");
    LinearSpec sa = spec_of(c), sb = spec_of(c);
    sa.prefix = "p.a";
    sb.prefix = "p.b";
    std::unique_ptr<Linear> lin;
    Status st = wf->load_joined_linear(ck, {sa, sb}, dev, &lin);
    REQUIRE_MESSAGE(st.ok(), st.message);
    REQUIRE(lin != nullptr);
    CHECK(lin->out_features() == 2 * c.N);
    const auto x = random_x(3, c.K, 5);
    const auto ra = reference_matmul(a, x, 3, 0, c.N), rb = reference_matmul(b, x, 3, 0, c.N);
    std::vector<double> ref;
    for (int64_t m = 0; m < 3; ++m) {
      ref.insert(ref.end(), ra.begin() + m * c.N, ra.begin() + (m + 1) * c.N);
      ref.insert(ref.end(), rb.begin() + m * c.N, rb.begin() + (m + 1) * c.N);
    }
    CHECK(rel_error(run(*lin, x, 3), ref) <= 1e-5);
    if (c.act_order) {  // parts quantized in their own act-order: rows sorted differently, not joined
      make_synthetic(c, 33).store(ck, "p.c");
      LinearSpec sc = sa;
      sc.prefix = "p.c";
      st = wf->load_joined_linear(ck, {sa, sc}, dev, &lin);
      REQUIRE_MESSAGE(st.ok(), st.message);
      CHECK(lin == nullptr);
    }
  }
  // a quantized part beside one the export left unquantized: not joined
  const Config c{4, 256, 64, 64, false, false, false, false};
  MemCheckpoint ck;
  make_synthetic(c, 41).store(ck, "p.q");
  ck.add("p.d.weight", DType::f16, {c.N, c.K}, std::vector<uint16_t>(size_t(c.N * c.K), f32_to_f16(0.01f)));
  LinearSpec sq = spec_of(c), sd = spec_of(c);
  sq.prefix = "p.q";
  sd.prefix = "p.d";
  std::unique_ptr<Linear> lin;
  Status st = wf->load_joined_linear(ck, {sq, sd}, dev, &lin);
  REQUIRE_MESSAGE(st.ok(), st.message);
  CHECK(lin == nullptr);
}

TEST_CASE("the built module loads a GPTQ linear") {
  Device& dev = cpu_device();
  Registry reg;
  reg.load_path(Registry::search_path({}, test::plugin_dirs()));
  const LoadedPlugin* lp = reg.find(PluginKind::weights, "gptq");
  REQUIRE(lp != nullptr);
  CHECK(lp->info.encodings == std::vector<std::string>{"gptq"});
  auto wf = reg.create_weights("gptq", dev);
  const Config c{8, 256, 36, 128, true, true, true, true};
  const Synthetic s = make_synthetic(c, 21);
  MemCheckpoint ck;
  s.store(ck, "layer.proj");
  std::unique_ptr<Linear> lin;
  Status st = wf->load_linear(ck, spec_of(c), dev, &lin);
  REQUIRE_MESSAGE(st.ok(), st.message);
  const auto x = random_x(2, c.K, 8);
  CHECK(rel_error(run(*lin, x, 2), reference_matmul(s, x, 2, 0, c.N)) <= 1e-5);
}

TEST_CASE("random_linear: synthetic int4, group 128, symmetric") {
  Device& dev = cpu_device();
  auto wf = gptq::make_weight_format();
  LinearSpec sp;
  sp.prefix = "synthetic";
  sp.in_features = 512;
  sp.out_features = 96;
  sp.bias = true;
  std::unique_ptr<Linear> a, b;
  REQUIRE(wf->random_linear(sp, 42, dev, &a).ok());
  REQUIRE(wf->random_linear(sp, 42, dev, &b).ok());
  CHECK(a->device_bytes() == size_t(512 / 8 * 96 * 4 + 4 * 96 * 2 + 4 * 96 + 64 * 4 + 96 * 4));
  // W itself, row by row: x = identity
  const int64_t K = 512;
  std::vector<float> eye(size_t(K * K), 0.f);
  for (int64_t k = 0; k < K; ++k) eye[size_t(k * K + k)] = 1.f;
  const auto W = run(*a, eye, K);
  CHECK(W == run(*b, eye, K));  // same seed, same weights
  double ss = 0;
  for (float v : W) ss += double(v) * v;
  const double rms = std::sqrt(ss / double(W.size())), a_ = 1 / std::sqrt(double(K));
  // codes uniform in 0..15 around zero 8, scales a/8·U(0.75, 1.25): rms ≈ 0.58·a
  CHECK(rms > 0.45 * a_);
  CHECK(rms < 0.75 * a_);
  std::unique_ptr<Linear> bad;
  sp.in_features = 100;
  Status st = wf->random_linear(sp, 1, dev, &bad);
  CHECK(st.kind == ErrorKind::usage);
}

TEST_CASE("settings: merge order and validation") {
  using gptq::SettingsSource;
  const std::string cfg = R"({"model_type": "qwen2", "quantization_config": {"bits": 8, "group_size": 64,
      "desc_act": true, "sym": false, "quant_method": "gptq", "checkpoint_format": "gptq_v2", "damp_percent": 0.1}})";
  {  // config.json alone
    auto s = gptq::merge_settings({{"config.json", cfg, "quantization_config"}});
    CHECK(s.bits == 8);
    CHECK(s.group_size == 64);
    CHECK(s.desc_act);
    CHECK(!s.sym);
    CHECK(s.v2());
    CHECK(s.damp_percent == doctest::Approx(0.1));
  }
  {  // quant_config.json overrides config.json, quantize_config.json overrides both, per key
    auto s = gptq::merge_settings({{"config.json", cfg, "quantization_config"},
                                   {"quant_config.json", R"({"bits": 4, "group_size": 32})", ""},
                                   {"quantize_config.json", R"({"group_size": 128, "checkpoint_format": "gptq"})", ""}});
    CHECK(s.bits == 4);
    CHECK(s.group_size == 128);
    CHECK(s.desc_act);  // only config.json says it
    CHECK(!s.v2());
    CHECK(contains(s.sources, "quant_config.json"));
  }
  {  // no checkpoint_format: v1
    auto s = gptq::merge_settings({{"quantize_config.json", R"({"bits": 4, "group_size": -1, "sym": true})", ""}});
    CHECK(s.checkpoint_format == "gptq");
    CHECK(s.group_size == -1);
  }
  {  // through a checkpoint: config.json without quantization_config, then the side files
    MemCheckpoint ck;
    ck.set_text("config.json", R"({"model_type": "qwen2"})");
    ck.set_text("quant_config.json", R"({"bits": 2, "desc_act": true})");
    ck.set_text("quantize_config.json", R"({"bits": 3})");
    auto s = gptq::load_settings(ck);
    CHECK(s.bits == 3);
    CHECK(s.desc_act);
    CHECK(s.group_size == 128);
  }
  auto err = [](std::vector<SettingsSource> src) { return error_of([&] { gptq::merge_settings(src); }); };
  std::string e = err({{"quantize_config.json", R"({"bits": 5})", ""}});
  CHECK(contains(e, "quantize_config.json"));
  CHECK(contains(e, "'bits'"));
  e = err({{"quantize_config.json", R"({"bits": "4"})", ""}});
  CHECK(contains(e, "must be an integer"));
  e = err({{"config.json", R"({"quantization_config": {"quant_method": "awq", "bits": 4}})", "quantization_config"}});
  CHECK(contains(e, "awq"));
  e = err({{"quantize_config.json", R"({"checkpoint_format": "marlin"})", ""}});
  CHECK(contains(e, "checkpoint_format"));
  e = err({{"quantize_config.json", R"({"bits": 4,)", ""}});
  CHECK(contains(e, "malformed JSON"));
  e = err({{"config.json", R"({"model_type": "qwen2"})", "quantization_config"}});
  CHECK(contains(e, "no GPTQ settings"));
}

TEST_CASE("shape and dtype mismatches name the tensor, its shape and the expected shape") {
  Device& dev = cpu_device();
  auto wf = gptq::make_weight_format();
  const Config c{4, 256, 64, 128, false, false, false, false};
  const Synthetic s = make_synthetic(c, 3);
  auto load = [&](MemCheckpoint& ck, LinearSpec sp) {
    std::unique_ptr<Linear> lin;
    Status st = wf->load_linear(ck, sp, dev, &lin);
    CHECK(st.kind == ErrorKind::model);
    CHECK(lin == nullptr);
    return st.message;
  };
  auto fresh = [&] {
    MemCheckpoint ck;
    s.store(ck, "layer.proj");
    return ck;
  };
  {  // qweight for another in_features
    MemCheckpoint ck = fresh();
    LinearSpec sp = spec_of(c);
    sp.in_features = 512;
    const std::string e = load(ck, sp);
    CHECK(contains(e, "'layer.proj.qweight'"));
    CHECK(contains(e, "[32, 64]"));
    CHECK(contains(e, "expected [64, 64]"));
  }
  {  // scales rows that do not match the group size
    MemCheckpoint ck = fresh();
    ck.add("layer.proj.scales", DType::f16, {4, 64}, std::vector<uint16_t>(256, 0x3c00));
    const std::string e = load(ck, spec_of(c));
    CHECK(contains(e, "'layer.proj.scales'"));
    CHECK(contains(e, "[4, 64]"));
    CHECK(contains(e, "expected [2, 64]"));
  }
  {  // qzeros packed for the wrong bit width
    MemCheckpoint ck = fresh();
    ck.add("layer.proj.qzeros", DType::i32, {2, 16}, std::vector<int32_t>(32, 0));
    const std::string e = load(ck, spec_of(c));
    CHECK(contains(e, "'layer.proj.qzeros'"));
    CHECK(contains(e, "[2, 16]"));
    CHECK(contains(e, "expected [2, 8]"));
  }
  {  // g_idx of the wrong length, then with a group index out of range
    MemCheckpoint ck = fresh();
    ck.add("layer.proj.g_idx", DType::i32, {255}, std::vector<int32_t>(255, 0));
    std::string e = load(ck, spec_of(c));
    CHECK(contains(e, "'layer.proj.g_idx'"));
    CHECK(contains(e, "expected [256]"));
    std::vector<int32_t> g(256, 0);
    g[7] = 2;
    ck.add("layer.proj.g_idx", DType::i32, {256}, g);
    e = load(ck, spec_of(c));
    CHECK(contains(e, "g_idx[7] = 2"));
  }
  {  // scales stored as f32
    MemCheckpoint ck = fresh();
    ck.add("layer.proj.scales", DType::f32, {2, 64}, std::vector<float>(128, 1.f));
    const std::string e = load(ck, spec_of(c));
    CHECK(contains(e, "'layer.proj.scales'"));
    CHECK(contains(e, "dtype f32"));
  }
  {  // a slice beyond out_total is the caller's bug; a stored N that differs from out_total is the checkpoint's
    MemCheckpoint ck = fresh();
    LinearSpec sp = spec_of(c, 0, 32);
    sp.out_total = 96;
    const std::string e = load(ck, sp);
    CHECK(contains(e, "expected [32, 96]"));
  }
  {  // missing tensors
    MemCheckpoint ck = fresh();
    ck.remove("layer.proj.qzeros");
    std::string e = load(ck, spec_of(c));
    CHECK(contains(e, "'layer.proj.qzeros' is missing"));
    ck = fresh();
    ck.remove("layer.proj.scales");
    e = load(ck, spec_of(c));
    CHECK(contains(e, "'layer.proj.scales' is missing"));
    ck = fresh();
    LinearSpec sp = spec_of(c);
    sp.bias = true;
    e = load(ck, sp);
    CHECK(contains(e, "'layer.proj.bias' is missing"));
    ck = fresh();
    sp = spec_of(c);
    sp.prefix = "layer.other";
    e = load(ck, sp);
    CHECK(contains(e, "'layer.other.qweight'"));
    CHECK(contains(e, "'layer.other.weight'"));
  }
  {  // act-order without g_idx
    MemCheckpoint ck = fresh();
    ck.remove("layer.proj.g_idx");
    ck.set_text("quantize_config.json", R"({"bits": 4, "group_size": 128, "desc_act": true})");
    const std::string e = load(ck, spec_of(c));
    CHECK(contains(e, "g_idx"));
    CHECK(contains(e, "desc_act"));
  }
  {  // without g_idx and act-order, g_idx[k] = k / G
    MemCheckpoint ck = fresh();
    ck.remove("layer.proj.g_idx");
    std::unique_ptr<Linear> lin;
    REQUIRE(wf->load_linear(ck, spec_of(c), dev, &lin).ok());
    const auto x = random_x(2, c.K, 1);
    CHECK(rel_error(run(*lin, x, 2), reference_matmul(s, x, 2, 0, c.N)) <= 1e-5);
  }
  {  // settings missing altogether
    MemCheckpoint ck;
    Synthetic t = s;
    t.store(ck, "layer.proj");
    MemCheckpoint bare;
    for (const char* suf : {".qweight", ".qzeros", ".scales", ".g_idx"}) {
      HostTensor h;
      check(ck.get(std::string("layer.proj") + suf, &h));
      std::vector<uint8_t> bytes(static_cast<const uint8_t*>(h.data), static_cast<const uint8_t*>(h.data) + h.nbytes);
      bare.add(h.name, h.dtype, h.shape, bytes);
    }
    const std::string e = load(bare, spec_of(c));
    CHECK(contains(e, "no GPTQ settings"));
  }
}

// ---- end to end on the GPTQ fixtures -----------------------------------------------------------

namespace {

using test::check_scores;
using test::greedy;
using test::load_reference;
using test::Reference;
using test::slurp;

// Greedy ids against transformers: the first 16 of every prompt equal, >= 90 % of all 192. With
// `judge` (a pipeline of the same weights with the fp16 cache), a prompt that leaves the reference
// before token 16 is accepted only at a near-tie: under `judge`, the reference token and ours
// differ by less than 0.1 nat at the first mismatch (int8 KV rounding flips such ties); the
// 90 % total is not required then (a flipped tie changes the rest of that continuation).
void check_greedy(const std::vector<std::vector<int32_t>>& out, const Reference& ref, const std::string& label,
                  Pipeline* judge = nullptr) {
  int same = 0;
  for (int b = 0; b < 4; ++b) {
    REQUIRE(out[b].size() == 48);
    int prefix = 0;
    while (prefix < 48 && out[b][prefix] == ref.greedy[b * 80 + 32 + prefix]) ++prefix;
    for (int t = 0; t < 48; ++t) same += out[b][t] == ref.greedy[b * 80 + 32 + t];
    INFO(label << " prompt " << b << ": first mismatch at " << prefix);
    if (!judge || prefix >= 16) {
      CHECK(prefix >= 16);
      continue;
    }
    std::vector<int32_t> a(ref.greedy.begin() + b * 80, ref.greedy.begin() + b * 80 + 32 + prefix + 1), c = a;
    c.back() = out[b][prefix];
    Engine engine(judge->model());
    const double lp_ref = engine.score(a).logprob.back(), lp_ours = engine.score(c).logprob.back();
    std::printf("%s prompt %d: leaves the reference at token %d, where (fp16 cache) log p(reference %d) = %.4f, "
                "log p(ours %d) = %.4f: margin %.4f\n",
                label.c_str(), b, prefix, a.back(), lp_ref, c.back(), lp_ours, lp_ref - lp_ours);
    CHECK(std::fabs(lp_ref - lp_ours) < 0.1);
  }
  std::printf("%s: greedy tokens equal to transformers: %d/192 (%.1f %%)\n", label.c_str(), same, 100.0 * same / 192);
  if (!judge) CHECK(same >= 0.9 * 192);  // with a judge, every early departure was checked to be a near-tie
}

double window_ppl(Pipeline& pipe, int k) {
  const std::vector<int32_t> ids =
      perplexity_corpus(pipe.tokenizer(), slurp(test::data_dir() + "/pystdlib-valid.txt"));
  auto starts = perplexity_windows(int64_t(ids.size()), 512);
  REQUIRE(int(starts.size()) >= k);
  Engine engine(pipe.model());
  double total = 0;
  for (int w = 0; w < k; ++w) {
    std::vector<int32_t> win(ids.begin() + starts[w], ids.begin() + starts[w] + 513);
    total += engine.score(win).nll;
  }
  return std::exp(total / (512.0 * k));
}

PipelineConfig gptq_config(const std::string& model, const std::string& cache, const std::string& device) {
  std::string text = "[model]\npath = \"" + test::fixture(model) + "\"\n[backend]\ndevice = \"" + device + "\"\n";
  if (!cache.empty()) text += "[cache]\ntype = \"" + cache + "\"\n";
  return parse_config(text, model + (cache.empty() ? "" : "-" + cache));
}

// The fixture against its transformers reference on `device` ("cpu", or "cuda": skipped without a
// CUDA device) with the fp16 and the int8 KV cache.
void gptq_fixture_suite(const std::string& model, const std::string& device) {
  if (device != "cpu") {
    std::string why;
    KVRUN_SKIP_UNLESS(!cuda_devices(test::cuda_dirs(), &why).empty(), "no CUDA device");
  }
  KVRUN_SKIP_UNLESS(test::have_fixture(model), "fixture model missing (set KVRUN_FIXTURES)");
  const std::string tag = model + " (" + device + ")";
  const Reference ref = load_reference(model);
  const int K = 20;
  double want = 0;
  for (int w = 0; w < K; ++w) want += ref.window_nll[size_t(w)];
  want = std::exp(want / (512.0 * K));

  Pipeline fp16(gptq_config(model, "", device));
  CHECK(fp16.report().weights == "gptq");
  fp16.prepare(4 * 128, 4);
  check_scores(fp16, ref, tag + " fp16 cache", 0.05);
  check_greedy(greedy(fp16, ref), ref, tag + " fp16 cache");
  const double ppl_fp16 = window_ppl(fp16, K);
  std::printf("%s fp16 cache: ppl of the first %d windows %.5f vs reference %.5f (%+.3f %%)\n", tag.c_str(), K,
              ppl_fp16, want, 100 * (ppl_fp16 / want - 1));
  CHECK(std::fabs(ppl_fp16 / want - 1) < 0.01);

  // The int8 KV cache adds its own rounding (SPECS.md §1): log-probs move by up to a few 0.1 nat.
  Pipeline int8(gptq_config(model, "int8", device));
  int8.prepare(4 * 128, 4);
  check_scores(int8, ref, tag + " int8 cache", 0.25);
  check_greedy(greedy(int8, ref), ref, tag + " int8 cache", &fp16);
  const double p = window_ppl(int8, K);
  std::printf("%s int8 cache: ppl %.5f vs fp16 cache %.5f (%+.3f %%), vs reference %+.3f %%\n", tag.c_str(), p,
              ppl_fp16, 100 * (p / ppl_fp16 - 1), 100 * (p / want - 1));
  CHECK(std::fabs(p / ppl_fp16 - 1) < 0.005);
  CHECK(std::fabs(p / want - 1) < 0.01);
}

}  // namespace

TEST_CASE("tiny-qwen2-gptq-int4 on the CPU matches transformers") { gptq_fixture_suite("tiny-qwen2-gptq-int4", "cpu"); }
TEST_CASE("tiny-qwen2-gptq-int8 on the CPU matches transformers") { gptq_fixture_suite("tiny-qwen2-gptq-int8", "cpu"); }
// The same on cuda:0 (issue 5: the fixtures on the GPU too, not only by hand with kvrun perplexity).
TEST_CASE("tiny-qwen2-gptq-int4 on CUDA matches transformers") { gptq_fixture_suite("tiny-qwen2-gptq-int4", "cuda"); }
TEST_CASE("tiny-qwen2-gptq-int8 on CUDA matches transformers") { gptq_fixture_suite("tiny-qwen2-gptq-int8", "cuda"); }

