// The CPU backend: worker pool, device memory accounting, queue, and every dense op against
// straightforward reference loops (double accumulation) on random inputs.
#include <doctest/doctest.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>
#include <random>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "kvrun/cpu/cpu.hpp"
#include "kvrun/cpu/gemm.hpp"
#include "kvrun/cpu/parallel.hpp"
#include "kvrun/device.hpp"
#include "kvrun/ops.hpp"
#include "kvrun/sampler.hpp"

using namespace kvrun;

namespace {

std::vector<float> randn(size_t n, uint32_t seed, float scale = 1.f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> d(0.f, scale);
  std::vector<float> v(n);
  for (auto& x : v) x = d(rng);
  return v;
}

// Weights stored in dtype t (as raw bytes) and the exact f32 values they hold.
struct Weights {
  std::vector<uint8_t> raw;
  std::vector<float> f;
  DType t;
};
Weights make_weights(size_t n, DType t, uint32_t seed, float scale = 0.5f) {
  Weights w;
  w.t = t;
  std::vector<float> v = randn(n, seed, scale);
  w.raw.resize(n * dtype_size(t));
  w.f.resize(n);
  for (size_t i = 0; i < n; ++i) {
    if (t == DType::f32) {
      std::memcpy(w.raw.data() + 4 * i, &v[i], 4);
      w.f[i] = v[i];
    } else {
      uint16_t h = t == DType::bf16 ? f32_to_bf16(v[i]) : f32_to_f16(v[i]);
      std::memcpy(w.raw.data() + 2 * i, &h, 2);
      w.f[i] = t == DType::bf16 ? bf16_to_f32(h) : f16_to_f32(h);
    }
  }
  return w;
}

TensorView host_view(const void* p, DType t, std::initializer_list<int64_t> dims) {
  return TensorView(const_cast<void*>(p), t, dims, MemSpace::host);
}

// Restores the pool size after a test changes it.
struct ThreadsGuard {
  int saved = cpu::num_threads();
  ~ThreadsGuard() { cpu::set_num_threads(saved); }
};

const DType kFloatTypes[] = {DType::f32, DType::f16, DType::bf16};

}  // namespace

// ---- worker pool ---------------------------------------------------------------------------------

TEST_CASE("parallel_for covers every index exactly once") {
  ThreadsGuard g;
  for (int threads : {1, 2, 3, 8}) {
    cpu::set_num_threads(threads);
    CHECK(cpu::num_threads() == threads);
    for (int64_t n : {0, 1, 2, 7, 100, 1000, 100003}) {
      for (int64_t grain : {1, 3, 64, 100000}) {
        std::vector<std::atomic<int>> hits(static_cast<size_t>(n));
        for (auto& h : hits) h = 0;
        std::atomic<int> ranges{0};
        bool ok_bounds = true;
        cpu::parallel_for(n, grain, [&](int64_t b, int64_t e) {
          if (b < 0 || e > n || b >= e) ok_bounds = false;
          ranges++;
          for (int64_t i = b; i < e; ++i) hits[size_t(i)]++;
        });
        CHECK(ok_bounds);
        CHECK(ranges.load() <= threads);
        int bad = 0;
        for (auto& h : hits) bad += h.load() != 1;
        CHECK_MESSAGE(bad == 0, "threads=" << threads << " n=" << n << " grain=" << grain);
      }
    }
  }
}

TEST_CASE("parallel_for: nested calls run inline, several host threads are serialized") {
  ThreadsGuard g;
  cpu::set_num_threads(2);
  std::atomic<int64_t> sum{0};
  cpu::parallel_for(8, 1, [&](int64_t b, int64_t e) {
    CHECK(cpu::in_parallel());
    for (int64_t i = b; i < e; ++i)
      cpu::parallel_for(100, 1, [&](int64_t b2, int64_t e2) {
        CHECK(b2 == 0);  // nested: one range, on this thread
        CHECK(e2 == 100);
        sum += e2 - b2;
      });
  });
  CHECK(sum.load() == 800);
  CHECK_FALSE(cpu::in_parallel());

  std::atomic<int64_t> total{0};
  std::vector<std::thread> hosts;
  for (int h = 0; h < 4; ++h)
    hosts.emplace_back([&] {
      for (int r = 0; r < 200; ++r)
        cpu::parallel_for(1000, 10, [&](int64_t b, int64_t e) { total += e - b; });
    });
  for (auto& t : hosts) t.join();
  CHECK(total.load() == 4 * 200 * 1000);
}

TEST_CASE("parallel_for rethrows a task's exception on the calling thread") {
  ThreadsGuard g;
  for (int threads : {1, 2, 4}) {
    cpu::set_num_threads(threads);
    bool caught = false;
    try {
      cpu::parallel_for(1000, 1, [&](int64_t b, int64_t e) {
        if (b <= 999 && 999 < e) throw Error(ErrorKind::model, "task failed at 999");
      });
    } catch (const Error& e) {
      caught = true;
      CHECK(e.kind() == ErrorKind::model);
      CHECK(std::string(e.what()) == "task failed at 999");
    }
    CHECK(caught);
    CHECK_THROWS_AS(cpu::parallel_for(10, 1, [](int64_t, int64_t) { throw std::runtime_error("x"); }), std::runtime_error);
    // still usable afterwards
    std::atomic<int64_t> s{0};
    cpu::parallel_for(1000, 1, [&](int64_t b, int64_t e) { s += e - b; });
    CHECK(s.load() == 1000);
  }
  CHECK_THROWS_AS(cpu::set_num_threads(-1), Error);
}

TEST_CASE("parallel_for dispatch overhead (printed)") {
  ThreadsGuard g;
  cpu::set_num_threads(2);
  std::atomic<int64_t> s{0};
  const int reps = 20000;
  auto t0 = std::chrono::steady_clock::now();
  for (int r = 0; r < reps; ++r) cpu::parallel_for(2, 1, [&](int64_t b, int64_t e) { s += e - b; });
  double us = std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0).count() / reps;
  CHECK(s.load() == 2 * reps);
  std::printf("[cpu] parallel_for dispatch with 2 threads: %.2f us per call\n", us);
}

// ---- device, memory, queue -----------------------------------------------------------------------

TEST_CASE("cpu device: info, allocation alignment, accounting, limit") {
  ThreadsGuard g;
  auto dev = cpu::make_cpu_device(2);
  const DeviceInfo& info = dev->info();
  CHECK(info.name == "cpu");
  CHECK(info.backend == BackendKind::cpu);
  CHECK(info.threads == 2);
  CHECK(cpu::num_threads() == 2);
  CHECK(info.total_memory > 0);
  CHECK(info.description.find("AVX2") != std::string::npos);
  CHECK(info.description.find("2 threads") != std::string::npos);
  CHECK(dev->space() == MemSpace::host);
  CHECK(dev->is_cpu());
  CHECK(dev->queue().native_handle() == nullptr);

  void* a = nullptr;
  void* b = nullptr;
  void* c = nullptr;
  REQUIRE(dev->allocate(1000, MemCategory::weights, &a).ok());
  REQUIRE(dev->allocate(3000, MemCategory::kv_cache, &b).ok());
  REQUIRE(dev->allocate(17, MemCategory::workspace, &c).ok());
  CHECK(reinterpret_cast<uintptr_t>(a) % 64 == 0);
  CHECK(reinterpret_cast<uintptr_t>(b) % 64 == 0);
  CHECK(reinterpret_cast<uintptr_t>(c) % 64 == 0);
  MemoryStats s = dev->memory_stats();
  CHECK(s.current[0] == 1000);
  CHECK(s.current[1] == 3000);
  CHECK(s.current[2] == 17);
  CHECK(s.peak_total == 4017);
  dev->deallocate(b, 3000, MemCategory::kv_cache);
  void* d = nullptr;
  REQUIRE(dev->allocate(500, MemCategory::workspace, &d).ok());
  s = dev->memory_stats();
  CHECK(s.current[1] == 0);
  CHECK(s.peak[1] == 3000);
  CHECK(s.current[2] == 517);
  CHECK(s.peak[2] == 517);
  CHECK(s.peak_total == 4017);  // peak of the sum, not the sum of peaks (4517)
  dev->reset_peak();
  s = dev->memory_stats();
  CHECK(s.peak[1] == 0);
  CHECK(s.peak_total == 1517);

  // The limit counts everything held.
  dev->set_memory_limit(4000);
  CHECK(dev->memory_stats().limit == 4000);
  CHECK(dev->available_memory() <= 4000 - 1517);
  void* e = nullptr;
  Status st = dev->allocate(3000, MemCategory::kv_cache, &e);
  CHECK_FALSE(st.ok());
  CHECK(e == nullptr);
  CHECK(st.kind == ErrorKind::device);
  INFO(st.message);
  CHECK(st.message.find("kv_cache") != std::string::npos);
  CHECK(st.message.find("2.93 KiB") != std::string::npos);   // the request
  CHECK(st.message.find("1.48 KiB") != std::string::npos);   // what is held
  CHECK(st.message.find("3.91 KiB") != std::string::npos);   // the limit
  CHECK(st.message.find("memory_limit") != std::string::npos);  // what to do
  CHECK(dev->memory_stats().current[1] == 0);
  REQUIRE(dev->allocate(2000, MemCategory::kv_cache, &e).ok());  // 3517 <= 4000
  CHECK(dev->available_memory() <= 4000 - 3517);
  dev->set_memory_limit(0);
  CHECK(dev->available_memory() > 4000);

  // Buffer<T> goes through the same accounting.
  {
    Buffer<float> buf(*dev, 256, MemCategory::workspace);
    CHECK(dev->memory_stats().current[2] == 517 + 1024);
    std::vector<float> h(256);
    for (int i = 0; i < 256; ++i) h[size_t(i)] = float(i) * 0.5f;
    buf.upload(h.data(), 256);
    CHECK(buf.to_host() == h);
    REQUIRE(dev->queue().fill_bytes(buf.data(), 0, 64 * sizeof(float)).ok());
    CHECK(buf.to_host()[63] == 0.f);
    CHECK(buf.to_host()[64] == 32.f);
    REQUIRE(dev->queue().copy_d2d(buf.data(), buf.data() + 128, 128 * sizeof(float)).ok());
    CHECK(buf.to_host()[0] == 64.f);
    Event ev;
    CHECK(dev->queue().record(&ev).ok());
    CHECK(dev->queue().wait().ok());
  }
  CHECK(dev->memory_stats().current[2] == 517);
  CHECK_FALSE(dev->queue().copy_h2d(nullptr, a, 4).ok());

  dev->deallocate(a, 1000, MemCategory::weights);
  dev->deallocate(c, 17, MemCategory::workspace);
  dev->deallocate(d, 500, MemCategory::workspace);
  dev->deallocate(e, 2000, MemCategory::kv_cache);
  s = dev->memory_stats();
  CHECK(s.current[0] + s.current[1] + s.current[2] == 0);

  // A Buffer over the limit throws the device error.
  dev->set_memory_limit(1 << 20);
  bool threw = false;
  try {
    Buffer<float> big(*dev, 1 << 20, MemCategory::kv_cache);
  } catch (const Error& err) {
    threw = true;
    CHECK(err.kind() == ErrorKind::device);
  }
  CHECK(threw);
  CHECK(&dev->ops() == &cpu::cpu_ops());
}

// ---- matmul ---------------------------------------------------------------------------------------

namespace {

// y = x·wᵀ (+bias) in double; also Σ|x·w| per output for the tolerance.
void ref_matmul(int64_t M, int64_t N, int64_t K, const float* x, int64_t ldx, const float* w, const float* bias,
                std::vector<double>& y, std::vector<double>& mag) {
  y.assign(size_t(M * N), 0.0);
  mag.assign(size_t(M * N), 0.0);
  for (int64_t m = 0; m < M; ++m)
    for (int64_t n = 0; n < N; ++n) {
      double s = bias ? double(bias[n]) : 0.0, a = bias ? std::fabs(double(bias[n])) : 0.0;
      for (int64_t k = 0; k < K; ++k) {
        double p = double(x[m * ldx + k]) * double(w[n * K + k]);
        s += p;
        a += std::fabs(p);
      }
      y[size_t(m * N + n)] = s;
      mag[size_t(m * N + n)] = a;
    }
}

// Worst |y - ref| / (Σ|x·w| + tiny), so the bound is independent of the scale of the inputs.
double rel_err(const float* y, int64_t ldy, int64_t M, int64_t N, const std::vector<double>& ref,
               const std::vector<double>& mag) {
  double worst = 0;
  for (int64_t m = 0; m < M; ++m)
    for (int64_t n = 0; n < N; ++n) {
      double e = std::fabs(double(y[m * ldy + n]) - ref[size_t(m * N + n)]) / (mag[size_t(m * N + n)] + 1e-30);
      if (!(e <= worst)) worst = e;  // NaN propagates as a failure
    }
  return worst;
}

}  // namespace

TEST_CASE("matmul: every weight dtype, with and without bias, odd sizes, 1..3 threads") {
  ThreadsGuard g;
  Ops& ops = cpu::cpu_ops();
  struct Shape {
    int64_t M, N, K;
  };
  const Shape shapes[] = {{1, 1, 1},    {1, 37, 1},    {1, 19, 70},   {2, 9, 33},     {3, 40, 17},   {4, 50, 300},
                          {5, 13, 9},   {7, 100, 1030}, {13, 5, 31},  {40, 23, 129},  {41, 33, 300}, {47, 64, 64},
                          {6, 16, 256}, {67, 17, 513}, {130, 49, 7},  {97, 130, 270}, {200, 3, 40},  {1, 300, 2049},
                          {300, 10, 64}, {8, 40, 1100}};
  uint32_t seed = 1;
  for (int threads : {1, 2, 3}) {
    cpu::set_num_threads(threads);
    for (const Shape& s : shapes) {
      for (DType wt : kFloatTypes) {
        for (bool with_bias : {false, true}) {
          std::vector<float> x = randn(size_t(s.M * s.K), seed++);
          Weights w = make_weights(size_t(s.N * s.K), wt, seed++);
          Weights b = make_weights(size_t(s.N), wt, seed++);
          std::vector<float> y(size_t(s.M * s.N), std::numeric_limits<float>::quiet_NaN());
          TensorView bv = host_view(b.raw.data(), wt, {s.N});
          Status st = ops.matmul(host_view(y.data(), DType::f32, {s.M, s.N}), host_view(x.data(), DType::f32, {s.M, s.K}),
                                 host_view(w.raw.data(), wt, {s.N, s.K}), with_bias ? &bv : nullptr);
          REQUIRE_MESSAGE(st.ok(), st.message);
          std::vector<double> ref, mag;
          ref_matmul(s.M, s.N, s.K, x.data(), s.K, w.f.data(), with_bias ? b.f.data() : nullptr, ref, mag);
          double err = rel_err(y.data(), s.N, s.M, s.N, ref, mag);
          CHECK_MESSAGE(err < 1e-5, "M=" << s.M << " N=" << s.N << " K=" << s.K << " w=" << dtype_name(wt)
                                          << " bias=" << with_bias << " threads=" << threads << " err=" << err);
        }
      }
    }
  }
}

TEST_CASE("gemm: strides, accumulate, large prefill-like shapes") {
  ThreadsGuard g;
  cpu::set_num_threads(2);
  struct Shape {
    int64_t M, N, K;
  };
  uint32_t seed = 100;
  for (Shape s : {Shape{3, 29, 45}, Shape{50, 70, 300}, Shape{256, 1100, 513}, Shape{8, 2000, 64}}) {
    for (DType wt : kFloatTypes) {
      const int64_t ldx = s.K + 5, ldy = s.N + 3;
      std::vector<float> x = randn(size_t(s.M * ldx), seed++);
      Weights w = make_weights(size_t(s.N * s.K), wt, seed++);
      std::vector<float> y0 = randn(size_t(s.M * ldy), seed++);
      std::vector<float> y = y0;
      cpu::gemm(s.M, s.N, s.K, x.data(), ldx, w.raw.data(), wt, s.K, y.data(), ldy, true);
      std::vector<double> ref, mag;
      ref_matmul(s.M, s.N, s.K, x.data(), ldx, w.f.data(), nullptr, ref, mag);
      double worst = 0;
      bool pads_kept = true;
      for (int64_t m = 0; m < s.M; ++m) {
        for (int64_t n = 0; n < s.N; ++n) {
          size_t i = size_t(m * s.N + n);
          double want = ref[i] + double(y0[size_t(m * ldy + n)]);
          double e = std::fabs(double(y[size_t(m * ldy + n)]) - want) / (mag[i] + std::fabs(y0[size_t(m * ldy + n)]) + 1e-30);
          if (!(e <= worst)) worst = e;
        }
        for (int64_t n = s.N; n < ldy; ++n) pads_kept &= y[size_t(m * ldy + n)] == y0[size_t(m * ldy + n)];
      }
      CHECK_MESSAGE(worst < 1e-5, "M=" << s.M << " N=" << s.N << " K=" << s.K << " w=" << dtype_name(wt) << " err=" << worst);
      CHECK(pads_kept);
    }
  }
  // K = 0: y = 0, or unchanged when accumulating
  std::vector<float> y = {1.f, 2.f, 3.f, 4.f};
  cpu::gemm_f32(2, 2, 0, nullptr, 0, nullptr, 0, y.data(), 2, true);
  CHECK(y == std::vector<float>{1.f, 2.f, 3.f, 4.f});
  cpu::gemm_f32(2, 2, 0, nullptr, 0, nullptr, 0, y.data(), 2, false);
  CHECK(y == std::vector<float>{0.f, 0.f, 0.f, 0.f});
  CHECK_THROWS_AS(cpu::gemm_f32(2, 2, 4, y.data(), 2, y.data(), 4, y.data(), 2, false), Error);  // ldx < K
  CHECK_THROWS_AS(cpu::gemm(1, 1, 1, y.data(), 1, y.data(), DType::i8, 1, y.data(), 1, false), Error);
}

TEST_CASE("gemm inside a parallel_for task runs on the calling thread") {
  ThreadsGuard g;
  cpu::set_num_threads(2);
  const int64_t M = 64, N = 64, K = 96;
  std::vector<float> x = randn(size_t(4 * M * K), 7);
  Weights w = make_weights(size_t(N * K), DType::bf16, 8);
  std::vector<float> y(size_t(4 * M * N));
  cpu::parallel_for(4, 1, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i)
      cpu::gemm_bf16(M, N, K, x.data() + i * M * K, K, reinterpret_cast<const uint16_t*>(w.raw.data()), K,
                     y.data() + i * M * N, N, false);
  });
  for (int i = 0; i < 4; ++i) {
    std::vector<double> ref, mag;
    ref_matmul(M, N, K, x.data() + i * M * K, K, w.f.data(), nullptr, ref, mag);
    CHECK(rel_err(y.data() + i * M * N, N, M, N, ref, mag) < 1e-5);
  }
}

TEST_CASE("matmul rejects bad operands with the op name and shapes") {
  Ops& ops = cpu::cpu_ops();
  std::vector<float> x(64), w(64), y(64);
  Status st = ops.matmul(host_view(y.data(), DType::f32, {2, 4}), host_view(x.data(), DType::f32, {2, 8}),
                         host_view(w.data(), DType::f32, {4, 7}), nullptr);
  CHECK(st.kind == ErrorKind::internal);
  CHECK(st.message.find("matmul") != std::string::npos);
  CHECK(st.message.find("[2, 8]") != std::string::npos);
  CHECK(st.message.find("[4, 7]") != std::string::npos);
  TensorView bias = host_view(w.data(), DType::f32, {5});
  st = ops.matmul(host_view(y.data(), DType::f32, {2, 4}), host_view(x.data(), DType::f32, {2, 8}),
                  host_view(w.data(), DType::f32, {4, 8}), &bias);
  CHECK_FALSE(st.ok());
  CHECK(st.message.find("bias") != std::string::npos);
  st = ops.matmul(host_view(y.data(), DType::f32, {2, 4}), TensorView(x.data(), DType::f32, {2, 8}, MemSpace::device),
                  host_view(w.data(), DType::f32, {4, 8}), nullptr);
  CHECK_FALSE(st.ok());
  CHECK(st.message.find("host memory") != std::string::npos);
  st = ops.matmul(host_view(y.data(), DType::f32, {2, 4}), host_view(x.data(), DType::f32, {2, 8}),
                  host_view(w.data(), DType::i32, {4, 8}), nullptr);
  CHECK_FALSE(st.ok());
  st = ops.matmul(host_view(x.data(), DType::f32, {2, 4}), host_view(x.data(), DType::f32, {2, 8}),
                  host_view(w.data(), DType::f32, {4, 8}), nullptr);
  CHECK_FALSE(st.ok());  // y aliases x
  // 3-D activations [B, T, K] are rows of K
  std::vector<float> y3(2 * 3 * 4);
  std::vector<float> x3 = randn(2 * 3 * 8, 3);
  REQUIRE(ops.matmul(host_view(y3.data(), DType::f32, {2, 3, 4}), host_view(x3.data(), DType::f32, {2, 3, 8}),
                     host_view(w.data(), DType::f32, {4, 8}), nullptr)
              .ok());
}

// ---- elementwise and row ops ----------------------------------------------------------------------

TEST_CASE("rms_norm matches the double reference for every weight dtype (in place too)") {
  ThreadsGuard g;
  Ops& ops = cpu::cpu_ops();
  for (int threads : {1, 2}) {
    cpu::set_num_threads(threads);
    for (DType wt : kFloatTypes) {
      for (int64_t D : {1, 7, 8, 64, 100, 4096}) {
        for (int64_t R : {1, 3, 300}) {
          std::vector<float> x = randn(size_t(R * D), uint32_t(D * 7 + R), 2.f);
          Weights w = make_weights(size_t(D), wt, uint32_t(D + R), 1.f);
          std::vector<float> y(x.size());
          const float eps = 1e-6f;
          REQUIRE(ops.rms_norm(host_view(y.data(), DType::f32, {R, D}), host_view(x.data(), DType::f32, {R, D}),
                               host_view(w.raw.data(), wt, {D}), eps)
                      .ok());
          double worst = 0;
          for (int64_t r = 0; r < R; ++r) {
            double ss = 0;
            for (int64_t i = 0; i < D; ++i) ss += double(x[size_t(r * D + i)]) * x[size_t(r * D + i)];
            double inv = 1.0 / std::sqrt(ss / double(D) + eps);
            for (int64_t i = 0; i < D; ++i) {
              double want = double(x[size_t(r * D + i)]) * inv * w.f[size_t(i)];
              double e = std::fabs(y[size_t(r * D + i)] - want) / (std::fabs(want) + 1e-30);
              worst = std::max(worst, e);
            }
          }
          CHECK_MESSAGE(worst < 2e-6, "D=" << D << " R=" << R << " w=" << dtype_name(wt) << " err=" << worst);
          // in place gives the same bits
          std::vector<float> xi = x;
          REQUIRE(ops.rms_norm(host_view(xi.data(), DType::f32, {R, D}), host_view(xi.data(), DType::f32, {R, D}),
                               host_view(w.raw.data(), wt, {D}), eps)
                      .ok());
          CHECK(xi == y);
        }
      }
    }
  }
  std::vector<float> a(8), w(7);
  Status st = cpu::cpu_ops().rms_norm(host_view(a.data(), DType::f32, {1, 8}), host_view(a.data(), DType::f32, {1, 8}),
                                      host_view(w.data(), DType::f32, {7}), 1e-5f);
  CHECK_FALSE(st.ok());
  CHECK(st.message.find("rms_norm") != std::string::npos);
}

TEST_CASE("fused ops: add_rms_norm == add then rms_norm, swiglu == silu_mul on the halves, split_cols") {
  Ops& ops = cpu::cpu_ops();
  const int64_t M = 3, D = 37, F = 21;
  std::vector<float> x = randn(size_t(M * D), 71, 2.f), dlt = randn(size_t(M * D), 72, 2.f);
  std::vector<float> w = randn(size_t(D), 73);
  // unfused reference
  std::vector<float> xr(x.size()), yr(x.size());
  REQUIRE(ops.add(host_view(xr.data(), DType::f32, {M, D}), host_view(x.data(), DType::f32, {M, D}),
                  host_view(dlt.data(), DType::f32, {M, D})).ok());
  REQUIRE(ops.rms_norm(host_view(yr.data(), DType::f32, {M, D}), host_view(xr.data(), DType::f32, {M, D}),
                       host_view(w.data(), DType::f32, {D}), 1e-6f).ok());
  // fused, with y aliasing delta (the model's use)
  std::vector<float> xf = x, df = dlt;
  REQUIRE(ops.add_rms_norm(host_view(xf.data(), DType::f32, {M, D}), host_view(df.data(), DType::f32, {M, D}),
                           host_view(df.data(), DType::f32, {M, D}), host_view(w.data(), DType::f32, {D}), 1e-6f).ok());
  CHECK(xf == xr);
  CHECK(df == yr);
  CHECK_FALSE(ops.add_rms_norm(host_view(xf.data(), DType::f32, {M, D}), host_view(df.data(), DType::f32, {M, D}),
                               host_view(xf.data(), DType::f32, {M, D}), host_view(w.data(), DType::f32, {D}), 1e-6f)
                  .ok());

  std::vector<float> gu = randn(size_t(M * 2 * F), 74, 4.f), out(size_t(M * F)), ref(size_t(M * F));
  REQUIRE(ops.swiglu(host_view(out.data(), DType::f32, {M, F}), host_view(gu.data(), DType::f32, {M, 2 * F})).ok());
  for (int64_t m = 0; m < M; ++m)
    REQUIRE(ops.silu_mul(host_view(ref.data() + m * F, DType::f32, {F}), host_view(gu.data() + m * 2 * F, DType::f32, {F}),
                         host_view(gu.data() + m * 2 * F + F, DType::f32, {F})).ok());
  CHECK(out == ref);
  CHECK_FALSE(ops.swiglu(host_view(out.data(), DType::f32, {M, F}), host_view(gu.data(), DType::f32, {M, F})).ok());

  const int64_t C = 10;
  std::vector<float> src = randn(size_t(M * C), 75), a(size_t(M * 6)), b(size_t(M * 1)), c(size_t(M * 3));
  const TensorView dsts[3] = {host_view(a.data(), DType::f32, {M, 6}), host_view(b.data(), DType::f32, {M, 1}),
                              host_view(c.data(), DType::f32, {M, 3})};
  REQUIRE(ops.split_cols(host_view(src.data(), DType::f32, {M, C}), dsts, 3).ok());
  bool ok = true;
  for (int64_t m = 0; m < M; ++m)
    for (int64_t j = 0; j < C; ++j) {
      const float want = src[size_t(m * C + j)];
      const float got = j < 6 ? a[size_t(m * 6 + j)] : j < 7 ? b[size_t(m)] : c[size_t(m * 3 + j - 7)];
      ok &= got == want;
    }
  CHECK(ok);
  CHECK_FALSE(ops.split_cols(host_view(src.data(), DType::f32, {M, C}), dsts, 2).ok());  // widths 7 ≠ 10
}

TEST_CASE("matmul_fused == rms_norm / swiglu, matmul, add (bitwise); norm with swiglu refused") {
  Ops& ops = cpu::cpu_ops();
  const int64_t M = 3, N = 19, K = 40;
  std::vector<float> x = randn(size_t(M * 2 * K), 91, 2.f), y0 = randn(size_t(M * N), 92, 3.f);
  std::vector<float> w = randn(size_t(N * K), 93, 0.1f), ln = randn(size_t(K), 94), b = randn(size_t(N), 95);
  const TensorView wv = host_view(w.data(), DType::f32, {N, K}), lv = host_view(ln.data(), DType::f32, {K});
  const TensorView bv = host_view(b.data(), DType::f32, {N});
  for (int mode = 0; mode < 3; ++mode) {  // 0: norm, 1: swiglu, 2: plain
    for (int acc = 0; acc < 2; ++acc) {
      INFO("mode " << mode << " accumulate " << acc);
      MatmulFusion f;
      if (mode == 0) f.norm_w = &lv, f.norm_eps = 1e-6f;
      f.swiglu = mode == 1;
      f.accumulate = acc != 0;
      CHECK(ops.matmul_fuses(f, M, wv));
      const int64_t XC = mode == 1 ? 2 * K : K;
      // unfused
      std::vector<float> in(size_t(M * K)), prod(size_t(M * N)), ref = y0;
      if (mode == 0) REQUIRE(ops.rms_norm(host_view(in.data(), DType::f32, {M, K}), host_view(x.data(), DType::f32, {M, K}), lv, 1e-6f).ok());
      if (mode == 1) REQUIRE(ops.swiglu(host_view(in.data(), DType::f32, {M, K}), host_view(x.data(), DType::f32, {M, 2 * K})).ok());
      if (mode == 2) std::copy(x.begin(), x.begin() + M * K, in.begin());
      REQUIRE(ops.matmul(host_view(prod.data(), DType::f32, {M, N}), host_view(in.data(), DType::f32, {M, K}), wv, &bv).ok());
      if (acc) REQUIRE(ops.add(host_view(ref.data(), DType::f32, {M, N}), host_view(ref.data(), DType::f32, {M, N}),
                               host_view(prod.data(), DType::f32, {M, N})).ok());
      else ref = prod;
      std::vector<float> y = y0;
      REQUIRE(ops.matmul_fused(host_view(y.data(), DType::f32, {M, N}), host_view(x.data(), DType::f32, {M, XC}), wv, &bv, f).ok());
      CHECK(y == ref);
    }
  }
  MatmulFusion both;
  both.norm_w = &lv;
  both.swiglu = true;
  CHECK_FALSE(ops.matmul_fuses(both, M, wv));
  std::vector<float> y = y0;
  Status st = ops.matmul_fused(host_view(y.data(), DType::f32, {M, N}), host_view(x.data(), DType::f32, {M, 2 * K}), wv,
                               nullptr, both);
  CHECK(!st.ok());
  CHECK(st.message.find("exclude each other") != std::string::npos);
}

TEST_CASE("rope_table + rope_apply == rope (bitwise), per-token bases and a partial rot_dim") {
  Ops& ops = cpu::cpu_ops();
  const int64_t T = 5, H = 3, D = 64;
  std::vector<int32_t> pos = {0, 1, 17, 4095, 8191};
  std::vector<float> bases = {10000.f, 10000.f, 25000.f, 1e6f, 10000.f};
  for (int rot : {64, 32}) {
    for (bool per_token : {false, true}) {
      std::vector<float> x = randn(size_t(T * H * D), 91, 2.f), y = x;
      const float* bp = per_token ? bases.data() : nullptr;
      REQUIRE(ops.rope(host_view(x.data(), DType::f32, {T, H, D}), pos.data(), bp, 10000.f, rot).ok());
      std::vector<float> cs(size_t(T * rot));
      REQUIRE(ops.rope_table(host_view(cs.data(), DType::f32, {T, rot}), pos.data(), bp, 10000.f).ok());
      REQUIRE(ops.rope_apply(host_view(y.data(), DType::f32, {T, H, D}), host_view(cs.data(), DType::f32, {T, rot})).ok());
      INFO("rot " << rot << ", per-token bases " << per_token);
      CHECK(x == y);
    }
  }
  std::vector<float> x(size_t(T * H * D)), cs(size_t(T * 2 * D));
  CHECK_FALSE(ops.rope_apply(host_view(x.data(), DType::f32, {T, H, D}), host_view(cs.data(), DType::f32, {T, 2 * D})).ok());
}

TEST_CASE("split_rope == split_cols then rope_apply on q and k (bitwise); mismatched shapes refused") {
  Ops& ops = cpu::cpu_ops();
  const int64_t T = 3, Hq = 4, Hk = 2, D = 16, C = (Hq + 2 * Hk) * D;
  std::vector<int32_t> pos = {0, 5, 300};
  for (int rot : {16, 8}) {
    std::vector<float> src = randn(size_t(T * C), 93, 2.f), cs(size_t(T * rot));
    REQUIRE(ops.rope_table(host_view(cs.data(), DType::f32, {T, rot}), pos.data(), nullptr, 10000.f).ok());
    std::vector<float> q1(size_t(T * Hq * D)), k1(size_t(T * Hk * D)), v1(k1.size()), q2(q1.size()), k2(k1.size()),
        v2(k1.size());
    const TensorView parts[3] = {host_view(q1.data(), DType::f32, {T, Hq * D}), host_view(k1.data(), DType::f32, {T, Hk * D}),
                                 host_view(v1.data(), DType::f32, {T, Hk * D})};
    REQUIRE(ops.split_cols(host_view(src.data(), DType::f32, {T, C}), parts, 3).ok());
    REQUIRE(ops.rope_apply(host_view(q1.data(), DType::f32, {T, Hq, D}), host_view(cs.data(), DType::f32, {T, rot})).ok());
    REQUIRE(ops.rope_apply(host_view(k1.data(), DType::f32, {T, Hk, D}), host_view(cs.data(), DType::f32, {T, rot})).ok());
    REQUIRE(ops.split_rope(host_view(src.data(), DType::f32, {T, C}), host_view(q2.data(), DType::f32, {T, Hq, D}),
                           host_view(k2.data(), DType::f32, {T, Hk, D}), host_view(v2.data(), DType::f32, {T, Hk, D}),
                           host_view(cs.data(), DType::f32, {T, rot}))
                .ok());
    INFO("rot " << rot);
    CHECK(q1 == q2);
    CHECK(k1 == k2);
    CHECK(v1 == v2);
    // v is a copy of the last Hk heads of each row
    CHECK(v2[0] == src[size_t((Hq + Hk) * D)]);
  }
  std::vector<float> src(size_t(T * C)), q(size_t(T * Hq * D)), k(size_t(T * Hk * D)), cs(size_t(T * D));
  const Status st = ops.split_rope(host_view(src.data(), DType::f32, {T, C - D}), host_view(q.data(), DType::f32, {T, Hq, D}),
                                   host_view(k.data(), DType::f32, {T, Hk, D}), host_view(k.data(), DType::f32, {T, Hk, D}),
                                   host_view(cs.data(), DType::f32, {T, D}));
  CHECK_FALSE(st.ok());
  CHECK(st.message.find("qkv") != std::string::npos);
}

TEST_CASE("add, silu_mul, scale_rows") {
  ThreadsGuard g;
  Ops& ops = cpu::cpu_ops();
  for (int threads : {1, 2}) {
    cpu::set_num_threads(threads);
    for (int64_t n : {1, 7, 8, 9, 1000, 100001}) {
      std::vector<float> a = randn(size_t(n), uint32_t(n), 4.f), b = randn(size_t(n), uint32_t(n + 1), 4.f);
      if (n > 8) {  // extremes
        a[0] = 100.f, a[1] = -100.f, a[2] = 0.f, a[3] = -30.f, a[4] = 30.f, a[5] = -90.f, a[6] = 1e-20f;
      }
      std::vector<float> y(static_cast<size_t>(n));
      REQUIRE(ops.add(host_view(y.data(), DType::f32, {n}), host_view(a.data(), DType::f32, {n}),
                      host_view(b.data(), DType::f32, {n}))
                  .ok());
      bool add_ok = true;
      for (int64_t i = 0; i < n; ++i) add_ok &= y[size_t(i)] == a[size_t(i)] + b[size_t(i)];
      CHECK(add_ok);

      std::vector<float> o(static_cast<size_t>(n));
      REQUIRE(ops.silu_mul(host_view(o.data(), DType::f32, {1, n}), host_view(a.data(), DType::f32, {1, n}),
                           host_view(b.data(), DType::f32, {1, n}))
                  .ok());
      double worst = 0;
      for (int64_t i = 0; i < n; ++i) {
        double g = a[size_t(i)], want = g / (1.0 + std::exp(-g)) * double(b[size_t(i)]);
        double e = std::fabs(o[size_t(i)] - want) / (std::fabs(want) + 1e-35);
        if (std::fabs(want) < 1e-30) e = std::fabs(o[size_t(i)] - want);  // deep negative tail: absolute
        worst = std::max(worst, e);
      }
      CHECK_MESSAGE(worst < 5e-7, "n=" << n << " err=" << worst);
      // in place (out aliases gate)
      std::vector<float> ai = a;
      REQUIRE(ops.silu_mul(host_view(ai.data(), DType::f32, {n}), host_view(ai.data(), DType::f32, {n}),
                           host_view(b.data(), DType::f32, {n}))
                  .ok());
      CHECK(ai == o);
    }
    const int64_t T = 37, C = 129;
    std::vector<float> x = randn(size_t(T * C), 5), f = randn(size_t(T), 6), x0 = x;
    REQUIRE(ops.scale_rows(host_view(x.data(), DType::f32, {T, C}), f.data()).ok());
    bool ok = true;
    for (int64_t t = 0; t < T; ++t)
      for (int64_t c = 0; c < C; ++c) ok &= x[size_t(t * C + c)] == x0[size_t(t * C + c)] * f[size_t(t)];
    CHECK(ok);
  }
  std::vector<float> a(8);
  Status st = ops.add(host_view(a.data(), DType::f32, {8}), host_view(a.data(), DType::f32, {8}),
                      host_view(a.data(), DType::f32, {4}));
  CHECK_FALSE(st.ok());
  CHECK(st.message.find("add") != std::string::npos);
  CHECK(st.message.find("[4]") != std::string::npos);
}

TEST_CASE("rope: NeoX rotate-half, partial rot_dim, per-token bases, positions to 4096") {
  ThreadsGuard g;
  Ops& ops = cpu::cpu_ops();
  struct Case {
    int64_t T, H, D;
    int rot;
    bool per_token_base;
  };
  for (int threads : {1, 2}) {
    cpu::set_num_threads(threads);
    for (Case c : {Case{5, 3, 64, 64, false}, Case{9, 2, 128, 64, false}, Case{4, 4, 80, 20, false},
                   Case{33, 2, 128, 128, true}, Case{3, 1, 6, 6, false}, Case{64, 8, 128, 128, false}}) {
      const float base = 10000.f;
      std::vector<float> x = randn(size_t(c.T * c.H * c.D), uint32_t(c.T * 31 + c.rot));
      std::vector<int32_t> pos(size_t(c.T));
      std::vector<float> bases(size_t(c.T));
      std::mt19937 rng(uint32_t(c.T));
      for (int64_t t = 0; t < c.T; ++t) {
        pos[size_t(t)] = t < 3 ? int32_t(t) : int32_t(rng() % 4097);  // 0, 1, 2, then up to 4096
        bases[size_t(t)] = c.per_token_base ? 10000.f * float(1 + t % 4) : base;
      }
      if (c.T > 3) pos[size_t(c.T - 1)] = 4096;
      std::vector<float> y = x;
      REQUIRE(ops.rope(host_view(y.data(), DType::f32, {c.T, c.H, c.D}), pos.data(),
                       c.per_token_base ? bases.data() : nullptr, base, c.rot)
                  .ok());
      const int64_t half = c.rot / 2;
      double worst_direct = 0;
      bool same_as_torch = true, tail_kept = true;
      for (int64_t t = 0; t < c.T; ++t)
        for (int64_t h = 0; h < c.H; ++h) {
          const float* xr = x.data() + (t * c.H + h) * c.D;
          const float* yr = y.data() + (t * c.H + h) * c.D;
          for (int64_t i = 0; i < half; ++i) {
            // direct formula in double: angle = pos · base^(-2i/rot_dim)
            double ang = double(pos[size_t(t)]) * std::pow(double(bases[size_t(t)]), -2.0 * double(i) / c.rot);
            double want1 = xr[i] * std::cos(ang) - xr[i + half] * std::sin(ang);
            double want2 = xr[i + half] * std::cos(ang) + xr[i] * std::sin(ang);
            // float32 angle error grows with the position (ulp(4096) ≈ 5e-4): bound by pos
            double tol = 1e-6 + 4e-7 * double(pos[size_t(t)]) * (std::fabs(xr[i]) + std::fabs(xr[i + half]));
            worst_direct = std::max(worst_direct, (std::fabs(yr[i] - want1) - tol));
            worst_direct = std::max(worst_direct, (std::fabs(yr[i + half] - want2) - tol));
            // transformers' float32 recipe: inv_freq = 1/(base^(2i/rot)), angle = float(pos)·inv_freq
            volatile float inv = 1.0f / std::pow(bases[size_t(t)], float(2 * i) / float(c.rot));
            volatile float fang = float(pos[size_t(t)]) * inv;
            volatile float cs = std::cos(float(fang)), sn = std::sin(float(fang));
            volatile float p1 = xr[i] * cs, p2 = xr[i + half] * sn, p3 = xr[i + half] * cs, p4 = xr[i] * sn;
            same_as_torch &= yr[i] == p1 - p2 && yr[i + half] == p3 + p4;
          }
          for (int64_t i = c.rot; i < c.D; ++i) tail_kept &= yr[i] == xr[i];
        }
      CHECK_MESSAGE(worst_direct <= 0, "T=" << c.T << " rot=" << c.rot << " excess=" << worst_direct);
      CHECK_MESSAGE(same_as_torch, "T=" << c.T << " rot=" << c.rot);
      CHECK(tail_kept);
    }
  }
  std::vector<float> x(2 * 2 * 8);
  int32_t pos[2] = {0, 1};
  Status st = ops.rope(host_view(x.data(), DType::f32, {2, 2, 8}), pos, nullptr, 10000.f, 5);
  CHECK_FALSE(st.ok());
  CHECK(st.message.find("rope") != std::string::npos);
  CHECK(st.message.find("[2, 2, 8]") != std::string::npos);
  CHECK_FALSE(ops.rope(host_view(x.data(), DType::f32, {2, 2, 8}), pos, nullptr, 10000.f, 10).ok());
}

TEST_CASE("embedding and gather_rows") {
  ThreadsGuard g;
  Ops& ops = cpu::cpu_ops();
  cpu::set_num_threads(2);
  const int64_t V = 1000, D = 77;
  for (DType t : kFloatTypes) {
    Weights table = make_weights(size_t(V * D), t, 11);
    std::vector<int32_t> ids = {0, 999, 5, 5, 123, 998, 1, 500, 42};
    const int64_t T = int64_t(ids.size());
    std::vector<float> out(size_t(T * D));
    REQUIRE(ops.embedding(host_view(out.data(), DType::f32, {T, D}), host_view(table.raw.data(), t, {V, D}), ids.data()).ok());
    bool ok = true;
    for (int64_t i = 0; i < T; ++i)
      for (int64_t d = 0; d < D; ++d) ok &= out[size_t(i * D + d)] == table.f[size_t(ids[size_t(i)] * D + d)];
    CHECK_MESSAGE(ok, dtype_name(t));
    ids[3] = int32_t(V);
    Status st = ops.embedding(host_view(out.data(), DType::f32, {T, D}), host_view(table.raw.data(), t, {V, D}), ids.data());
    CHECK_FALSE(st.ok());
    CHECK(st.message.find("ids[3] = 1000") != std::string::npos);
  }
  const int64_t R = 50, C = 33;
  std::vector<float> x = randn(size_t(R * C), 12);
  std::vector<int32_t> rows = {49, 0, 7, 7, 20};
  std::vector<float> out(rows.size() * size_t(C));
  REQUIRE(ops.gather_rows(host_view(out.data(), DType::f32, {int64_t(rows.size()), C}), host_view(x.data(), DType::f32, {R, C}),
                          rows.data())
              .ok());
  bool ok = true;
  for (size_t i = 0; i < rows.size(); ++i)
    for (int64_t c = 0; c < C; ++c) ok &= out[i * size_t(C) + size_t(c)] == x[size_t(rows[i] * C + c)];
  CHECK(ok);
  rows[0] = -1;
  CHECK_FALSE(ops.gather_rows(host_view(out.data(), DType::f32, {int64_t(rows.size()), C}),
                              host_view(x.data(), DType::f32, {R, C}), rows.data())
                  .ok());
}

TEST_CASE("convert between float dtypes matches the scalar conversions (round trips)") {
  ThreadsGuard g;
  Ops& ops = cpu::cpu_ops();
  cpu::set_num_threads(2);
  for (int64_t n : {1, 7, 8, 9, 257, 100003}) {
    std::vector<float> src = randn(size_t(n), uint32_t(n), 100.f);
    // special values: subnormal halves, overflow, ties, inf, NaN, signed zero
    const float specials[] = {0.f, -0.f, 1e-7f, -3e-8f, 6.1e-5f, 65504.f, 65520.f, 1e6f, -1e30f,
                              std::numeric_limits<float>::infinity(), std::numeric_limits<float>::quiet_NaN(),
                              1.00390625f, 1.01171875f, 2.98023224e-8f};
    for (size_t i = 0; i < std::size(specials) && i < size_t(n); ++i) src[i] = specials[i];
    std::vector<uint16_t> bf(static_cast<size_t>(n)), hf(static_cast<size_t>(n)), bf2(static_cast<size_t>(n)), hf2(static_cast<size_t>(n));
    REQUIRE(ops.convert(host_view(bf.data(), DType::bf16, {n}), host_view(src.data(), DType::f32, {n})).ok());
    REQUIRE(ops.convert(host_view(hf.data(), DType::f16, {n}), host_view(src.data(), DType::f32, {n})).ok());
    bool ok_b = true, ok_h = true;
    for (int64_t i = 0; i < n; ++i) {
      ok_b &= bf[size_t(i)] == f32_to_bf16(src[size_t(i)]);
      ok_h &= hf[size_t(i)] == f32_to_f16(src[size_t(i)]);
    }
    CHECK(ok_b);
    CHECK(ok_h);
    // back to f32: exact
    std::vector<float> fb(static_cast<size_t>(n)), fh(static_cast<size_t>(n));
    REQUIRE(ops.convert(host_view(fb.data(), DType::f32, {n}), host_view(bf.data(), DType::bf16, {n})).ok());
    REQUIRE(ops.convert(host_view(fh.data(), DType::f32, {n}), host_view(hf.data(), DType::f16, {n})).ok());
    bool ok_rb = true, ok_rh = true;
    for (int64_t i = 0; i < n; ++i) {
      float a = bf16_to_f32(bf[size_t(i)]), b = f16_to_f32(hf[size_t(i)]);
      ok_rb &= std::memcmp(&fb[size_t(i)], &a, 4) == 0;
      ok_rh &= std::memcmp(&fh[size_t(i)], &b, 4) == 0;
    }
    CHECK(ok_rb);
    CHECK(ok_rh);
    // bf16 -> f16 -> bf16 and f16 -> bf16 follow the f32 path
    REQUIRE(ops.convert(host_view(hf2.data(), DType::f16, {n}), host_view(bf.data(), DType::bf16, {n})).ok());
    REQUIRE(ops.convert(host_view(bf2.data(), DType::bf16, {n}), host_view(hf.data(), DType::f16, {n})).ok());
    bool ok_x = true;
    for (int64_t i = 0; i < n; ++i) {
      ok_x &= hf2[size_t(i)] == f32_to_f16(bf16_to_f32(bf[size_t(i)]));
      ok_x &= bf2[size_t(i)] == f32_to_bf16(f16_to_f32(hf[size_t(i)]));
    }
    CHECK(ok_x);
    // same dtype: a copy
    std::vector<float> cp(static_cast<size_t>(n));
    REQUIRE(ops.convert(host_view(cp.data(), DType::f32, {n}), host_view(src.data(), DType::f32, {n})).ok());
    CHECK(std::memcmp(cp.data(), src.data(), size_t(n) * 4) == 0);
  }
  std::vector<float> a(8);
  CHECK_FALSE(ops.convert(host_view(a.data(), DType::f32, {8}), host_view(a.data(), DType::i32, {8})).ok());
  CHECK_FALSE(ops.convert(host_view(a.data(), DType::f32, {8}), host_view(a.data(), DType::f32, {7})).ok());
}

TEST_CASE("sample calls sample_row per row") {
  Ops& ops = cpu::cpu_ops();
  const int64_t B = 5, V = 300;
  std::vector<float> logits = randn(size_t(B * V), 77, 3.f);
  std::vector<SampleParams> params(static_cast<size_t>(B));
  for (int64_t b = 0; b < B; ++b) {
    params[size_t(b)].temperature = b == 0 ? 0.f : 0.8f;
    params[size_t(b)].top_k = b == 2 ? 20 : 0;
    params[size_t(b)].top_p = b == 3 ? 0.9f : 1.f;
    params[size_t(b)].seed = 1234 + uint64_t(b);
    params[size_t(b)].counter = uint64_t(b) * 3;
  }
  std::vector<int32_t> ids(static_cast<size_t>(B), -1);
  REQUIRE(ops.sample(ids.data(), host_view(logits.data(), DType::f32, {B, V}), params.data()).ok());
  for (int64_t b = 0; b < B; ++b) {
    const SampleParams& p = params[size_t(b)];
    CHECK(ids[size_t(b)] == sample_row(logits.data() + b * V, int32_t(V), p.temperature, p.top_k, p.top_p, p.min_p,
                                       p.seed, p.counter));
  }
  int64_t best = 0;
  for (int64_t v = 1; v < V; ++v)
    if (logits[size_t(v)] > logits[size_t(best)]) best = v;
  CHECK(ids[0] == best);
}

// ---- speed (printed, not asserted) ----------------------------------------------------------------

TEST_CASE("matmul speed (printed)") {
  ThreadsGuard g;
  cpu::set_num_threads(0);
  Ops& ops = cpu::cpu_ops();
  auto time_best = [](auto&& fn, double budget_s) {
    double best = 1e30, spent = 0;
    int reps = 0;
    while (spent < budget_s || reps < 3) {
      auto t0 = std::chrono::steady_clock::now();
      fn();
      double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      best = std::min(best, s);
      spent += s;
      ++reps;
    }
    return best;
  };
  std::printf("[cpu] matmul with %d threads (best of repeated runs)\n", cpu::num_threads());
  for (int64_t N : {512, 1024, 8192}) {
    const int64_t M = 512, K = 512;
    std::vector<float> x = randn(size_t(M * K), 1), y(size_t(M * N));
    Weights w = make_weights(size_t(N * K), DType::bf16, 2);
    double s = time_best([&] {
      CHECK(ops.matmul(host_view(y.data(), DType::f32, {M, N}), host_view(x.data(), DType::f32, {M, K}),
                       host_view(w.raw.data(), DType::bf16, {N, K}), nullptr)
                .ok());
    }, 0.3);
    std::printf("[cpu]   prefill M=%lld N=%lld K=%lld bf16: %.2f ms, %.1f GFLOP/s\n", (long long)M, (long long)N,
                (long long)K, s * 1e3, 2.0 * double(M * N * K) / s / 1e9);
  }
  for (int64_t M : {1, 8}) {
    const int64_t N = 8192, K = 4096;  // 64 MiB of bf16 weights: more than the caches
    std::vector<float> x = randn(size_t(M * K), 3), y(size_t(M * N));
    Weights w = make_weights(size_t(N * K), DType::bf16, 4);
    double s = time_best([&] {
      CHECK(ops.matmul(host_view(y.data(), DType::f32, {M, N}), host_view(x.data(), DType::f32, {M, K}),
                       host_view(w.raw.data(), DType::bf16, {N, K}), nullptr)
                .ok());
    }, 0.3);
    std::printf("[cpu]   decode  M=%lld N=%lld K=%lld bf16: %.2f ms, %.1f GB/s of weights, %.1f GFLOP/s\n",
                (long long)M, (long long)N, (long long)K, s * 1e3, double(N * K * 2) / s / 1e9,
                2.0 * double(M * N * K) / s / 1e9);
  }
}
