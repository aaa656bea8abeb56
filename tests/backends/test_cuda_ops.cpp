// The CUDA backend against the CPU backend: every op on random inputs, with the tolerance stated
// at each check; memory accounting, the limit and the out-of-memory message; a decode step
// captured in a CUDA graph. Outputs are poisoned (all bits set: NaN for floats, -1 for ids) before
// each op, so an element the kernel forgot to write fails the comparison.
//
// Without a CUDA device every case prints "skipped: no CUDA device" and returns.
#include <doctest/doctest.h>

#include <cstdlib>
#include <dlfcn.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <iterator>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "cuda_graph.hpp"
#include "devices.hpp"
#include "fixtures.hpp"
#include "kvrun/cpu/cpu.hpp"
#include "kvrun/device.hpp"
#include "kvrun/ops.hpp"
#include "kvrun/sampler.hpp"
#include "kvrun/select.hpp"

using namespace kvrun;

namespace {

// ---------------------------------------------------------------------------------------------
// Devices

// cuda:0 or null; the CUDA backend module must exist (it is built whenever this test is).
std::shared_ptr<Device> gpu() {
  const std::string module = test::cuda_dirs().back() + "/kvrun_backend_cuda.so";
  REQUIRE_MESSAGE(std::filesystem::exists(module), "the CUDA backend module was not built: " << module);
  return test::gpu();
}
using test::cpu_dev;

// A cuda:0 device of its own (its own Ops, stream and plans), opened with these environment
// variables set — the backend reads its switches when the Ops are made; the previous values are
// restored afterwards.
std::shared_ptr<Device> gpu_with(std::initializer_list<std::pair<const char*, const char*>> env) {
  struct Restore {
    std::vector<std::pair<std::string, std::optional<std::string>>> saved;
    ~Restore() {
      for (auto& [name, old] : saved) old ? setenv(name.c_str(), old->c_str(), 1) : unsetenv(name.c_str());
    }
  } restore;
  for (const auto& [name, value] : env) {
    const char* old = std::getenv(name);
    restore.saved.emplace_back(name, old ? std::optional<std::string>(old) : std::nullopt);
    setenv(name, value, 1);
  }
  DeviceRequest req;
  req.spec = "cuda:0";
  req.search_dirs = test::cuda_dirs();
  return open_device(req);
}

// Every M ≤ 8 takes the GEMV kernel in this suite (the backend's default sends only M = 1 there),
// so the multi-row GEMV stays tested; set before the device (and its Ops) is created.
const bool kGemvAllSmallM = [] { return setenv("KVRUN_CUDA_GEMV_MAX_ROWS", "8", 1) == 0; }();

#define NEED_GPU()                                             \
  std::shared_ptr<Device> g_dev = gpu();                       \
  KVRUN_SKIP_UNLESS(g_dev != nullptr, "no CUDA device");       \
  Device& G = *g_dev;                                          \
  Ops& gops = G.ops();                                         \
  Ops& cops = cpu_dev()->ops();                                    \
  (void)gops;                                                  \
  (void)cops

// ---------------------------------------------------------------------------------------------
// Host data in any float dtype

std::vector<uint8_t> encode(const std::vector<float>& v, DType t) {
  std::vector<uint8_t> out(v.size() * dtype_size(t));
  for (size_t i = 0; i < v.size(); ++i) {
    if (t == DType::f32) {
      std::memcpy(out.data() + 4 * i, &v[i], 4);
    } else {
      uint16_t h = t == DType::bf16 ? f32_to_bf16(v[i]) : f32_to_f16(v[i]);
      std::memcpy(out.data() + 2 * i, &h, 2);
    }
  }
  return out;
}

std::vector<float> decode(const std::vector<uint8_t>& b, DType t) {
  std::vector<float> out(b.size() / dtype_size(t));
  for (size_t i = 0; i < out.size(); ++i) {
    if (t == DType::f32) {
      std::memcpy(&out[i], b.data() + 4 * i, 4);
    } else {
      uint16_t h;
      std::memcpy(&h, b.data() + 2 * i, 2);
      out[i] = t == DType::bf16 ? bf16_to_f32(h) : f16_to_f32(h);
    }
  }
  return out;
}

std::vector<float> randn(size_t n, uint64_t seed, float scale = 1.f) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> d(0.f, scale);
  std::vector<float> v(n);
  for (float& x : v) x = d(rng);
  return v;
}

template <class T>
Buffer<T> to_gpu(Device& dev, const std::vector<T>& v) {
  Buffer<T> b(dev, v.size(), MemCategory::workspace);
  b.upload(v.data(), v.size());
  return b;
}

template <class T>
void poison(Device& dev, Buffer<T>& b) {
  check(dev.queue().fill_bytes(b.data(), 0xFF, b.bytes()));
}

template <class T>
TensorView hview(std::vector<T>& v, DType t, std::initializer_list<int64_t> dims) {
  return TensorView(v.data(), t, dims, MemSpace::host);
}

struct Diff {
  double rel_l2 = 0;   // ||got − ref|| / ||ref||
  double max_abs = 0;  // max |got − ref|
  size_t nonfinite = 0;  // elements of got that are NaN/inf where ref is finite (unwritten: NaN)
};

Diff diff(const std::vector<float>& got, const std::vector<float>& ref) {
  REQUIRE(got.size() == ref.size());
  Diff d;
  double num = 0, den = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    if (!std::isfinite(got[i]) && std::isfinite(ref[i])) {
      ++d.nonfinite;
      continue;
    }
    double e = double(got[i]) - double(ref[i]);
    num += e * e;
    den += double(ref[i]) * ref[i];
    d.max_abs = std::max(d.max_abs, std::fabs(e));
  }
  d.rel_l2 = den > 0 ? std::sqrt(num / den) : std::sqrt(num);
  return d;
}

std::string show(const Diff& d) {
  char buf[160];
  std::snprintf(buf, sizeof buf, "rel_l2 %.3g, max_abs %.3g, non-finite %zu", d.rel_l2, d.max_abs, d.nonfinite);
  return buf;
}

bool bitwise_equal(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

using test::cuda_graph_api;
using test::CudaGraphApi;

}  // namespace

// =============================================================================================

TEST_CASE("cuda: device info") {
  NEED_GPU();
  const DeviceInfo& info = G.info();
  MESSAGE("device: " << info.name << " — " << info.description);
  CHECK(info.backend == BackendKind::cuda);
  CHECK(info.name == "cuda:0");
  CHECK(info.index == 0);
  CHECK(info.total_memory > 0);
  CHECK(info.cc_major >= 8);  // built for sm_80 and sm_90
  CHECK(info.description.find("sm_" + std::to_string(info.cc_major) + std::to_string(info.cc_minor)) !=
        std::string::npos);
  CHECK(G.space() == MemSpace::device);
  CHECK(G.queue().native_handle() != nullptr);
}

TEST_CASE("cuda: queue copies, fills and events") {
  NEED_GPU();
  std::vector<float> h = randn(1000, 1);
  Buffer<float> a(G, 1000, MemCategory::workspace), b(G, 1000, MemCategory::workspace);
  a.upload(h.data(), h.size());
  check(G.queue().copy_d2d(b.data(), a.data(), a.bytes()));
  Event ev;
  check(G.queue().record(&ev));
  CHECK(ev.handle != nullptr);
  check(G.queue().record(&ev));  // the same Event records again
  CHECK(bitwise_equal(b.to_host(), h));
  check(G.queue().fill_bytes(b.data(), 0, b.bytes()));
  std::vector<float> z = b.to_host();
  CHECK(std::all_of(z.begin(), z.end(), [](float v) { return v == 0.f; }));
  // copy_d2h leaves the data valid on return
  std::vector<float> part(10, -1.f);
  check(G.queue().copy_d2h(part.data(), a.data() + 500, 10 * sizeof(float)));
  CHECK(std::equal(part.begin(), part.end(), h.begin() + 500));
}

// copy_d2h_async (ABI 6): the bytes are in dst once the host waited past the copy — wait_for() on an
// event recorded after it, or wait() — and not written over by later copies through the same
// staging (slots are reused once handed over); a copy issued after the event is handed over by
// wait(). Large copies take a larger slot. An event never recorded is refused with a message.
TEST_CASE("cuda: queue copy_d2h_async lands after wait_for / wait") {
  NEED_GPU();
  Queue& q = G.queue();
  std::vector<float> h = randn(100000, 3);
  Buffer<float> a(G, h.size(), MemCategory::workspace);
  a.upload(h.data(), h.size());
  for (int round = 0; round < 3; ++round) {
    INFO("round " << round);
    std::vector<float> first(16, -1.f), second(16, -1.f), big(h.size(), -1.f);
    Event e1, e2;
    check(q.copy_d2h_async(first.data(), a.data() + 16 * round, 16 * sizeof(float)));
    check(q.record(&e1));
    check(q.copy_d2h_async(big.data(), a.data(), a.bytes()));  // 400 KB: its own slot
    check(q.copy_d2h_async(second.data(), a.data() + 1000 + round, 16 * sizeof(float)));
    check(q.record(&e2));
    check(q.wait_for(e1));
    CHECK(std::equal(first.begin(), first.end(), h.begin() + 16 * round));
    check(q.wait_for(e2));
    CHECK(std::equal(second.begin(), second.end(), h.begin() + 1000 + round));
    CHECK(bitwise_equal(big, h));
  }
  std::vector<float> last(8, -1.f);
  check(q.copy_d2h_async(last.data(), a.data() + 77, 8 * sizeof(float)));
  check(q.wait());
  CHECK(std::equal(last.begin(), last.end(), h.begin() + 77));
  Event never;
  const Status st = q.wait_for(never);
  CHECK_FALSE(st.ok());
  CHECK(st.message.find("never recorded") != std::string::npos);
}

TEST_CASE("cuda: memory accounting per category, peaks, limit and out-of-memory message") {
  NEED_GPU();
  G.set_memory_limit(0);
  const MemoryStats s0 = G.memory_stats();
  const size_t base_total = s0.current[0] + s0.current[1] + s0.current[2];
  {
    // Accounting counts the bytes asked for (not the rounded blocks).
    Buffer<uint8_t> w(G, 10'000'001, MemCategory::weights);
    Buffer<uint8_t> kv(G, 20'000'000, MemCategory::kv_cache);
    Buffer<uint8_t> ws(G, 5'000'003, MemCategory::workspace);
    MemoryStats s = G.memory_stats();
    CHECK(s.current[0] == s0.current[0] + 10'000'001);
    CHECK(s.current[1] == s0.current[1] + 20'000'000);
    CHECK(s.current[2] == s0.current[2] + 5'000'003);
    CHECK(s.peak[1] >= s.current[1]);
    CHECK(s.peak_total >= base_total + 35'000'004);
    { Buffer<uint8_t> tmp(G, 1000, MemCategory::kv_cache); }
    CHECK(G.memory_stats().current[1] == s0.current[1] + 20'000'000);
  }
  MemoryStats s1 = G.memory_stats();
  for (int c = 0; c < kMemCategories; ++c) CHECK(s1.current[c] == s0.current[c]);
  CHECK(s1.peak_total >= base_total + 35'000'004);  // the peak stays
  G.reset_peak();
  MemoryStats s2 = G.memory_stats();
  CHECK(s2.peak_total == base_total);
  for (int c = 0; c < kMemCategories; ++c) CHECK(s2.peak[c] == s2.current[c]);

  // The limit caps what the pool holds; it is checked before CUDA is asked.
  const size_t mib = size_t(1) << 20;
  const size_t limit = base_total + 64 * mib + mib;  // + slack for block rounding of what is held
  G.set_memory_limit(limit);
  CHECK(G.memory_stats().limit == limit);
  CHECK(G.available_memory() <= limit);
  {
    Buffer<uint8_t> a(G, 32 * mib, MemCategory::weights);  // fits
    void* p = nullptr;
    Status st = G.allocate(48 * mib, MemCategory::kv_cache, &p);  // 32 + 48 > 64
    CHECK(p == nullptr);
    CHECK(st.kind == ErrorKind::device);
    MESSAGE("limit OOM message: " << st.message);
    CHECK(st.message.find("cuda:0: out of memory allocating 48.00 MiB for kv_cache") == 0);
    CHECK(st.message.find("held: weights") != std::string::npos);
    CHECK(st.message.find("kv_cache") != std::string::npos);
    CHECK(st.message.find("workspace") != std::string::npos);
    CHECK(st.message.find("limit " + format_bytes(limit)) != std::string::npos);
    CHECK(st.message.find("raise backend.memory_limit") != std::string::npos);
    // and through Buffer: an Error of kind device
    bool threw = false;
    try {
      Buffer<uint8_t> b(G, 48 * mib, MemCategory::kv_cache);
    } catch (const Error& e) {
      threw = true;
      CHECK(e.kind() == ErrorKind::device);
    }
    CHECK(threw);
    Buffer<uint8_t> c(G, 16 * mib, MemCategory::kv_cache);  // still fits
  }
  G.set_memory_limit(0);

  // Beyond the device itself: CUDA's own out-of-memory becomes the same kind of message.
  void* p = nullptr;
  Status st = G.allocate(G.info().total_memory * 2, MemCategory::kv_cache, &p);
  CHECK(p == nullptr);
  CHECK(st.kind == ErrorKind::device);
  MESSAGE("device OOM message: " << st.message);
  CHECK(st.message.find("cuda:0: out of memory allocating") == 0);
  CHECK(st.message.find("for kv_cache") != std::string::npos);
  // The device still works afterwards.
  Buffer<float> ok(G, 1000, MemCategory::workspace);
  check(G.queue().fill_bytes(ok.data(), 0, ok.bytes()));
  check(G.queue().wait());
}

// ---------------------------------------------------------------------------------------------
// matmul

namespace {

// One matmul on both backends; returns (gpu, cpu) results.
void run_matmul(Device& G, Ops& gops, Ops& cops, int64_t M, int64_t N, int64_t K, DType wt, bool with_bias, DType bt,
                uint64_t seed, const std::vector<float>* x_override, std::vector<float>* got, std::vector<float>* ref) {
  std::vector<float> x = x_override ? *x_override : randn(size_t(M * K), seed);
  std::vector<uint8_t> w = encode(randn(size_t(N * K), seed + 1, 1.f / std::sqrt(float(K))), wt);
  std::vector<uint8_t> b = encode(randn(size_t(N), seed + 2), bt);
  std::vector<float> yc(size_t(M * N), NAN);

  TensorView cb = hview(b, bt, {N});
  check(cops.matmul(hview(yc, DType::f32, {M, N}), hview(x, DType::f32, {M, K}), hview(w, wt, {N, K}),
                    with_bias ? &cb : nullptr));

  Buffer<float> dx = to_gpu(G, x);
  Buffer<uint8_t> dw = to_gpu(G, w);
  Buffer<uint8_t> db = to_gpu(G, b);
  Buffer<float> dy(G, size_t(M * N), MemCategory::workspace);
  poison(G, dy);
  TensorView gb = db.view(bt, {N});
  check(gops.matmul(dy.view(DType::f32, {M, N}), dx.view(DType::f32, {M, K}), dw.view(wt, {N, K}),
                    with_bias ? &gb : nullptr));
  *got = dy.to_host();
  *ref = yc;
}

}  // namespace

TEST_CASE("cuda: matmul vs CPU, every weight dtype, GEMV (M ≤ 8), tensor-core (bf16, M ≤ 64) and cuBLAS paths") {
  NEED_GPU();
  // Tolerances (relative L2 error of y against the CPU backend with the same weights):
  //   M ≤ 8  GEMV: fp32 activations × exact weights, fp32 accumulation → ≤ 1e-5 (order of sums only)
  //   M > 8  f32 weights: cuBLAS SGEMM (no TF32) → ≤ 1e-5
  //   M > 8  bf16/f16 weights: activations rounded to bf16/f16 for the tensor cores (gemm_small_m.cu
  //          for bf16 up to M = 64, cuBLAS above and for f16) → ≤ 1e-2
  struct Shape {
    int64_t N, K;
  };
  const Shape shapes[] = {{37, 53},     // odd N and K: scalar GEMV path
                          {129, 200},   // K multiple of 8: vector loads
                          {8, 4096},    // few rows: K split over warps
                          {1000, 1027}, // odd K, wider
                          {515, 256}};
  uint64_t seed = 100;
  for (DType wt : {DType::bf16, DType::f16, DType::f32}) {
    for (int64_t M : {1, 2, 7, 64, 300}) {
      for (const Shape& s : shapes) {
        for (int bias = 0; bias < 2; ++bias) {
          const DType bt = bias && s.N % 2 ? DType::bf16 : DType::f32;  // a bf16 bias too
          std::vector<float> got, ref;
          run_matmul(G, gops, cops, M, s.N, s.K, wt, bias != 0, bt, seed += 10, nullptr, &got, &ref);
          const double tol = (M <= 8 || wt == DType::f32) ? 1e-5 : 1e-2;
          Diff d = diff(got, ref);
          INFO("w " << dtype_name(wt) << ", M " << M << ", N " << s.N << ", K " << s.K << ", bias "
                    << (bias ? dtype_name(bt) : "none") << ": " << show(d) << " (tolerance rel_l2 ≤ " << tol << ")");
          CHECK(d.nonfinite == 0);
          CHECK(d.rel_l2 <= tol);
        }
      }
    }
  }
}

TEST_CASE("cuda: batch-1 bf16 GEMV through the shared-memory ring (KVRUN_CUDA_GEMV_RING 6, 4) vs the register kernel and CPU") {
  NEED_GPU();
  // bf16 weights at M = 1 without the norm take gemv_ring_kernel (6 stages by default); devices of
  // their own with KVRUN_CUDA_GEMV_RING=4 and =0 (gemv_kernel). Every path multiplies the exact
  // weights by fp32 x with fp32 accumulation: vs CPU rel_l2 ≤ 1e-5 (as the GEMV above; ≤ 1e-4 for
  // the one-row case, where rel_l2 is one sum of 16384 products and a cancellation in it shows
  // alone: 5.1e-5 measured on the H200, 1.2e-6 absolute); ring vs register kernel ≤ 1e-6 (the
  // same products in the same order per lane; the K split may differ with the blocks per SM).
  std::shared_ptr<Device> r4_dev = gpu_with({{"KVRUN_CUDA_GEMV_RING", "4"}});
  std::shared_ptr<Device> r0_dev = gpu_with({{"KVRUN_CUDA_GEMV_RING", "0"}});
  REQUIRE(r4_dev != nullptr);
  REQUIRE(r0_dev != nullptr);
  struct Shape {
    int64_t N, K;
  };
  const Shape shapes[] = {{3, 8},        // one 16-byte vector per row, one warp with rows past N
                          {37, 64},      // N not a multiple of 4; fewer vectors than lanes
                          {129, 200},    // K / 8 = 25
                          {515, 1032},
                          {4096, 4096},  // o_proj: K split over warps
                          {4096, 11008}, // down_proj
                          {1, 16384}};   // one row: the widest K split
  uint64_t seed = 7300;
  for (const Shape& s : shapes) {
    for (int bias = 0; bias < 2; ++bias) {
      std::vector<float> got, ref, got4, ref4, got0, ref0;
      run_matmul(G, gops, cops, 1, s.N, s.K, DType::bf16, bias != 0, DType::f32, seed += 10, nullptr, &got, &ref);
      run_matmul(*r4_dev, r4_dev->ops(), cops, 1, s.N, s.K, DType::bf16, bias != 0, DType::f32, seed, nullptr, &got4,
                 &ref4);
      run_matmul(*r0_dev, r0_dev->ops(), cops, 1, s.N, s.K, DType::bf16, bias != 0, DType::f32, seed, nullptr, &got0,
                 &ref0);
      const Diff d = diff(got, ref), d4 = diff(got4, ref), d6v0 = diff(got, got0), d4v0 = diff(got4, got0);
      INFO("N " << s.N << ", K " << s.K << ", bias " << bias << ": ring 6 vs CPU " << show(d) << ", ring 4 vs CPU "
                << show(d4) << " (≤ 1e-5, one row ≤ 1e-4); vs the register kernel: ring 6 " << show(d6v0) << ", ring 4 "
                << show(d4v0) << " (≤ 1e-6)");
      CHECK(d.nonfinite == 0);
      CHECK(d4.nonfinite == 0);
      const double tol = s.N == 1 ? 1e-4 : 1e-5;
      CHECK(d.rel_l2 <= tol);
      CHECK(d4.rel_l2 <= tol);
      CHECK(d6v0.rel_l2 <= 1e-6);
      CHECK(d4v0.rel_l2 <= 1e-6);
    }
  }
  // Anything but 0, 4 or 6 stages is refused, with the variable named, when the device opens.
  try {
    gpu_with({{"KVRUN_CUDA_GEMV_RING", "5"}});
    FAIL("KVRUN_CUDA_GEMV_RING=5 opened a device");
  } catch (const std::exception& e) {
    INFO(e.what());
    CHECK(std::string(e.what()).find("KVRUN_CUDA_GEMV_RING=5") != std::string::npos);
  }
}

TEST_CASE("cuda: batch-1 GEMV with the fused norm deferred to its sums (default) and not (KVRUN_CUDA_DEFER_NORM=0) vs CPU") {
  NEED_GPU();
  // The register GEMV with the fused RMSNorm (q·k·v, gate·up at batch 1) writes x·g to shared
  // memory and scales each row's sum by 1 / sqrt(Σx² / K + eps) at the end (default); with
  // KVRUN_CUDA_DEFER_NORM=0 it normalizes x first. Both keep fp32 activations and the exact
  // weights, in other rounding orders: vs the CPU's rms_norm + matmul rel_l2 ≤ 1e-5 (of y − y₀),
  // and against each other ≤ 1e-5. Norm weights of every float type; bf16 ones also 4 bytes off
  // an 8-byte boundary (element loads instead of one 8-byte load per four).
  std::shared_ptr<Device> d0_dev = gpu_with({{"KVRUN_CUDA_DEFER_NORM", "0"}});
  REQUIRE(d0_dev != nullptr);
  struct Case {
    int64_t N, K;
    DType wt, nt;
    size_t offset;  // bytes before the norm weights in their buffer
    bool bias, accumulate;
  };
  const Case cases[] = {
      {1000, 4096, DType::bf16, DType::bf16, 0, true, false},  // q·k·v-like
      {515, 4096, DType::bf16, DType::bf16, 4, false, true},   // misaligned bf16 norm weights, y +=
      {300, 1032, DType::bf16, DType::f32, 0, true, true},
      {257, 512, DType::f16, DType::f16, 0, false, false},
      {64, 16384, DType::f32, DType::bf16, 0, false, true},    // 64 KiB of x·g
  };
  uint64_t seed = 7700;
  for (const Case& c : cases) {
    const int64_t N = c.N, K = c.K;
    INFO("N " << N << " K " << K << " w " << dtype_name(c.wt) << " norm " << dtype_name(c.nt) << " +" << c.offset
              << (c.bias ? " bias" : "") << (c.accumulate ? " +=" : ""));
    std::vector<float> x = randn(size_t(K), ++seed, 2.f), y0 = randn(size_t(N), ++seed, 3.f),
                       b = randn(size_t(N), ++seed);
    std::vector<uint8_t> w = encode(randn(size_t(N * K), ++seed, 0.05f), c.wt);
    std::vector<uint8_t> ln = encode(randn(size_t(K), ++seed, 1.f), c.nt);
    std::vector<uint8_t> ln_buf(c.offset, 0);
    ln_buf.insert(ln_buf.end(), ln.begin(), ln.end());
    std::vector<float> ref = y0;
    const TensorView hln = hview(ln, c.nt, {K}), hb = hview(b, DType::f32, {N});
    MatmulFusion hf;
    hf.norm_w = &hln;
    hf.norm_eps = 1e-6f;
    hf.accumulate = c.accumulate;
    check(cops.matmul_fused(hview(ref, DType::f32, {1, N}), hview(x, DType::f32, {1, K}), hview(w, c.wt, {N, K}),
                            c.bias ? &hb : nullptr, hf));
    auto run_on = [&](Device& D) {
      Buffer<float> dx = to_gpu(D, x), dy = to_gpu(D, y0), db = to_gpu(D, b);
      Buffer<uint8_t> dw = to_gpu(D, w), dln = to_gpu(D, ln_buf);
      const TensorView gln(static_cast<uint8_t*>(dln.data()) + c.offset, c.nt, {K}, D.space());
      const TensorView gb = db.view(DType::f32, {N}), gw = dw.view(c.wt, {N, K});
      MatmulFusion f = hf;
      f.norm_w = &gln;
      REQUIRE(D.ops().matmul_fuses(f, 1, gw));
      check(D.ops().matmul_fused(dy.view(DType::f32, {1, N}), dx.view(DType::f32, {1, K}), gw, c.bias ? &gb : nullptr, f));
      CHECK(bitwise_equal(dx.to_host(), x));  // the residual is only read
      std::vector<float> got = dy.to_host();
      if (c.accumulate)
        for (size_t i = 0; i < got.size(); ++i) got[i] -= y0[i];
      return got;
    };
    if (c.accumulate)
      for (size_t i = 0; i < ref.size(); ++i) ref[i] -= y0[i];
    const std::vector<float> got = run_on(G), got0 = run_on(*d0_dev);
    const Diff d = diff(got, ref), d0 = diff(got0, ref), dd = diff(got, got0);
    INFO("deferred vs CPU " << show(d) << ", normalized first vs CPU " << show(d0) << ", between them " << show(dd));
    CHECK(d.nonfinite == 0);
    CHECK(d.rel_l2 <= 1e-5);
    CHECK(d0.rel_l2 <= 1e-5);
    CHECK(dd.rel_l2 <= 1e-5);
    // the two orders are two kernels: their sums differ somewhere among 1000 rows of 4096 products
    if (N == 1000) CHECK(!bitwise_equal(got, got0));
  }
}

TEST_CASE("cuda: tensor-core GEMM for bf16 weights, 2 ≤ M ≤ 64 (gemm_small_m.cu) vs CPU") {
  NEED_GPU();
  // A device of its own whose Ops send only M = 1 to the GEMV (the backend's default), so M = 2..8
  // reach the tensor-core kernel too (this suite's shared device sends M ≤ 8 to the GEMV).
  setenv("KVRUN_CUDA_GEMV_MAX_ROWS", "1", 1);
  setenv("KVRUN_CUDA_TC_GEMM_MAX_ROWS", "64", 1);  // every M of the kernel (the default stops at 8)
  std::shared_ptr<Device> tc_dev;
  {
    DeviceRequest req;
    req.spec = "cuda:0";
    req.search_dirs = test::cuda_dirs();
    tc_dev = open_device(req);
  }
  setenv("KVRUN_CUDA_GEMV_MAX_ROWS", "8", 1);
  unsetenv("KVRUN_CUDA_TC_GEMM_MAX_ROWS");
  REQUIRE(tc_dev != nullptr);
  Device& T = *tc_dev;
  // x is rounded to bf16 before both backends see it, so the kernel's own rounding of x is exact
  // and the results differ only in the order of the fp32 sums: relative L2 ≤ 1e-5.
  struct Shape {
    int64_t N, K;
  };
  const Shape shapes[] = {{37, 64},      // N not a multiple of 16, one chunk
                          {129, 200},    // K not a multiple of 64: zero-filled tail
                          {515, 256},
                          {300, 4104},   // many chunks
                          {4096, 1024}}; // few row blocks: K split over parts + the reduction kernel
  uint64_t seed = 7000;
  for (int64_t M : {2, 5, 8, 9, 16, 17, 33, 64}) {
    for (const Shape& s : shapes) {
      for (int bias = 0; bias < 3; ++bias) {
        const DType bt = bias == 2 ? DType::bf16 : DType::f32;
        std::vector<float> x = randn(size_t(M * s.K), seed += 10);
        for (float& v : x) v = bf16_to_f32(f32_to_bf16(v));
        std::vector<float> got, ref;
        run_matmul(T, T.ops(), cops, M, s.N, s.K, DType::bf16, bias != 0, bt, seed, &x, &got, &ref);
        Diff d = diff(got, ref);
        INFO("M " << M << ", N " << s.N << ", K " << s.K << ", bias " << (bias ? dtype_name(bt) : "none") << ": "
                  << show(d) << " (tolerance rel_l2 ≤ 1e-5)");
        CHECK(d.nonfinite == 0);
        CHECK(d.rel_l2 <= 1e-5);
      }
    }
  }
}

TEST_CASE("cuda: matmul with f16 weights keeps activations beyond the f16 range (per-row scaling)") {
  NEED_GPU();
  // One row of x far beyond 65504 (and a row of tiny values): the f16 cuBLAS path scales rows by a
  // power of two, so y stays finite and within the bf16/f16 tolerance (rel_l2 ≤ 1e-2 per row).
  const int64_t M = 16, N = 64, K = 256;
  std::vector<float> x = randn(size_t(M * K), 7);
  for (int64_t k = 0; k < K; ++k) x[size_t(3 * K + k)] *= 1e6f;
  for (int64_t k = 0; k < K; ++k) x[size_t(5 * K + k)] *= 1e-6f;
  std::vector<float> got, ref;
  run_matmul(G, gops, cops, M, N, K, DType::f16, true, DType::f16, 8, &x, &got, &ref);
  for (int64_t m = 0; m < M; ++m) {
    std::vector<float> g(got.begin() + m * N, got.begin() + (m + 1) * N), r(ref.begin() + m * N, ref.begin() + (m + 1) * N);
    Diff d = diff(g, r);
    INFO("row " << m << ": " << show(d));
    CHECK(d.nonfinite == 0);
    CHECK(d.rel_l2 <= 1e-2);
  }
}

TEST_CASE("cuda: matmul GEMV reads exactly the given rows of a sliced x") {
  NEED_GPU();
  // x is a view starting at row 3 of a larger buffer (not 16-byte aligned when K·4 is not):
  // both the vector and the scalar paths must give the CPU result (rel_l2 ≤ 1e-5).
  for (int64_t K : {64, 60, 61}) {
    const int64_t rows = 8, M = 3, N = 77;
    std::vector<float> xa = randn(size_t(rows * K), 21);
    std::vector<uint8_t> w = encode(randn(size_t(N * K), 22), DType::bf16);
    std::vector<float> xs(xa.begin() + 3 * K, xa.begin() + (3 + M) * K);
    std::vector<float> yc(size_t(M * N));
    check(cops.matmul(hview(yc, DType::f32, {M, N}), hview(xs, DType::f32, {M, K}), hview(w, DType::bf16, {N, K}),
                      nullptr));
    Buffer<float> dx = to_gpu(G, xa);
    Buffer<uint8_t> dw = to_gpu(G, w);
    Buffer<float> dy(G, size_t(M * N), MemCategory::workspace);
    poison(G, dy);
    check(gops.matmul(dy.view(DType::f32, {M, N}), dx.view(DType::f32, {rows, K}).slice_rows(3, M),
                      dw.view(DType::bf16, {N, K}), nullptr));
    Diff d = diff(dy.to_host(), yc);
    INFO("K " << K << ": " << show(d));
    CHECK(d.nonfinite == 0);
    CHECK(d.rel_l2 <= 1e-5);
  }
}

TEST_CASE("cuda: matmul rejects mismatched shapes with a message") {
  NEED_GPU();
  Buffer<float> x(G, 12, MemCategory::workspace), y(G, 12, MemCategory::workspace), w(G, 12, MemCategory::workspace);
  Status st = gops.matmul(y.view(DType::f32, {3, 4}), x.view(DType::f32, {3, 4}), w.view(DType::f32, {4, 3}), nullptr);
  CHECK_FALSE(st.ok());
  MESSAGE(st.message);
  CHECK(st.message.find("K") != std::string::npos);
  // a host view is refused, not dereferenced
  std::vector<float> hx(12);
  st = gops.matmul(y.view(DType::f32, {3, 4}), hview(hx, DType::f32, {3, 4}), w.view(DType::f32, {4, 3}), nullptr);
  CHECK_FALSE(st.ok());
}

// ---------------------------------------------------------------------------------------------
// rms_norm, add, silu_mul, scale_rows

TEST_CASE("cuda: matmul_fused (norm in, SwiGLU in, y +=) vs the CPU's unfused ops; which fusions each path takes") {
  NEED_GPU();
  // Reference: the CPU backend's matmul_fused, which composes rms_norm / swiglu, matmul and add.
  // Tolerance (rel_l2 of y − y₀, the product part, against the CPU): the GEMV (M ≤ 8 in this
  // suite) keeps fp32 activations → 1e-5; cuBLAS rounds its operand to bf16 → 1e-2 (f32 weights:
  // Sgemm, 1e-5). y₀ (the residual, accumulate) is added exactly in both.
  struct Case {
    int64_t M, N, K;
    DType wt;
    bool norm, swiglu, accumulate, bias;
    bool fused;  // what matmul_fuses must answer
  };
  const Case cases[] = {
      {1, 1000, 4096, DType::bf16, true, false, false, true, true},    // q·k·v-like: norm + bias
      {1, 515, 4096, DType::bf16, true, false, true, false, true},     // norm and y += at once
      {1, 300, 1027, DType::bf16, true, false, false, false, true},    // odd K: the scalar GEMV
      {1, 64, 16384, DType::f32, true, false, false, false, true},     // 64 KiB of normalized x
      {1, 40, 16388, DType::bf16, true, false, false, false, false},   // past it: not fused
      {1, 4096, 11008, DType::bf16, false, false, true, false, true},  // down: y += (SwiGLU not fused)
      {1, 64, 256, DType::bf16, false, true, true, false, false},
      {1, 70000, 64, DType::bf16, true, false, false, false, false},   // lm_head-sized N: not fused
      {1, 70000, 64, DType::bf16, false, false, true, false, true},
      {3, 257, 512, DType::f16, false, false, true, true, true},       // several rows in the GEMV
      {3, 257, 512, DType::f16, true, false, false, false, false},     // norm only at M = 1
      {100, 1000, 4096, DType::bf16, true, false, false, true, true},  // cuBLAS: norm → bf16
      {100, 700, 1500, DType::bf16, false, true, true, false, true},   // cuBLAS: SwiGLU → bf16, β = 1
      {100, 515, 256, DType::bf16, false, false, true, true, true},    // β = 1 and the bias (cuBLASLt)
      {70, 300, 200, DType::f32, false, false, true, false, true},     // Sgemm, β = 1
      {70, 300, 200, DType::f32, true, false, false, false, false},
      {70, 300, 200, DType::f16, false, false, true, false, false},
  };
  uint64_t seed = 7000;
  for (const Case& c : cases) {
    const int64_t M = c.M, N = c.N, K = c.K, XC = c.swiglu ? 2 * K : K;
    INFO("M " << M << " N " << N << " K " << K << " w " << dtype_name(c.wt) << (c.norm ? " norm" : "")
              << (c.swiglu ? " swiglu" : "") << (c.accumulate ? " +=" : "") << (c.bias ? " bias" : ""));
    std::vector<float> x = randn(size_t(M * XC), ++seed, 2.f), y0 = randn(size_t(M * N), ++seed, 3.f);
    std::vector<uint8_t> w = encode(randn(size_t(N * K), ++seed, 0.05f), c.wt);
    std::vector<uint8_t> ln = encode(randn(size_t(K), ++seed, 1.f), DType::bf16);
    std::vector<float> b = randn(size_t(N), ++seed);
    Buffer<float> dx = to_gpu(G, x), dy = to_gpu(G, y0), db = to_gpu(G, b);
    Buffer<uint8_t> dw = to_gpu(G, w), dln = to_gpu(G, ln);
    TensorView hln = hview(ln, DType::bf16, {K}), gln = dln.view(DType::bf16, {K});
    MatmulFusion hf, gf;
    hf.swiglu = gf.swiglu = c.swiglu;
    hf.accumulate = gf.accumulate = c.accumulate;
    if (c.norm) {
      hf.norm_w = &hln;
      gf.norm_w = &gln;
      hf.norm_eps = gf.norm_eps = 1e-6f;
    }
    CHECK(gops.matmul_fuses(gf, M, dw.view(c.wt, {N, K})) == c.fused);
    if (!c.fused) {  // asked anyway: a clear refusal, y untouched
      Status st = gops.matmul_fused(dy.view(DType::f32, {M, N}), dx.view(DType::f32, {M, XC}),
                                    dw.view(c.wt, {N, K}), nullptr, gf);
      CHECK(!st.ok());
      CHECK(st.message.find("ask matmul_fuses") != std::string::npos);
      CHECK(bitwise_equal(dy.to_host(), y0));
      continue;
    }
    std::vector<float> ref = y0;
    TensorView hb = hview(b, DType::f32, {N}), gb = db.view(DType::f32, {N});
    check(cops.matmul_fused(hview(ref, DType::f32, {M, N}), hview(x, DType::f32, {M, XC}), hview(w, c.wt, {N, K}),
                            c.bias ? &hb : nullptr, hf));
    check(gops.matmul_fused(dy.view(DType::f32, {M, N}), dx.view(DType::f32, {M, XC}), dw.view(c.wt, {N, K}),
                            c.bias ? &gb : nullptr, gf));
    std::vector<float> got = dy.to_host();
    if (c.accumulate)  // compare the products: the residual is in both exactly once
      for (size_t i = 0; i < got.size(); ++i) got[i] -= y0[i], ref[i] -= y0[i];
    const double tol = M <= 8 || c.wt == DType::f32 ? 1e-5 : 1e-2;
    Diff d = diff(got, ref);
    INFO(show(d) << " (tolerance rel_l2 ≤ " << tol << ")");
    CHECK(d.nonfinite == 0);
    CHECK(d.rel_l2 <= tol);
    CHECK(bitwise_equal(dx.to_host(), x));  // the residual read by the norm is left as it was
    if (M > 8 && !c.accumulate) {
      // cuBLAS path without β: the same bf16 operand as the unfused GPU ops → the same y, bitwise
      Buffer<float> t(G, size_t(M * K), MemCategory::workspace), y2(G, size_t(M * N), MemCategory::workspace);
      if (c.norm) check(gops.rms_norm(t.view(DType::f32, {M, K}), dx.view(DType::f32, {M, K}), gln, 1e-6f));
      else if (c.swiglu) check(gops.swiglu(t.view(DType::f32, {M, K}), dx.view(DType::f32, {M, 2 * K})));
      else check(G.queue().copy_d2d(t.data(), dx.data(), t.bytes()));
      check(gops.matmul(y2.view(DType::f32, {M, N}), t.view(DType::f32, {M, K}), dw.view(c.wt, {N, K}),
                        c.bias ? &gb : nullptr));
      CHECK(bitwise_equal(dy.to_host(), y2.to_host()));
    }
  }
}

// matmul_reads_bf16 (ABI 5): the attention's output handed over as bf16. Where the backend says yes
// (bf16 weights on cuBLAS, no norm or SwiGLU in f), matmul_fused with x in bf16 must give exactly
// (bitwise) what it gives for x in f32 holding the same values — the f32 path rounds x to bf16
// for cuBLAS, so the GEMM sees the same operand. Everywhere else it says no, and a bf16 x is
// refused with a message.
TEST_CASE("cuda: matmul_fused with x in bf16 (matmul_reads_bf16) == x in f32 (bitwise); where it is taken") {
  NEED_GPU();
  struct Case {
    int64_t M, N, K;
    DType wt;
    bool norm, swiglu, accumulate, bias;
    bool reads;  // what matmul_reads_bf16 must answer
  };
  const Case cases[] = {
      {64, 515, 256, DType::bf16, false, false, true, true, true},     // o_proj at batch 64: y +=, bias
      {64, 4096, 4096, DType::bf16, false, false, true, false, true},  // Qwen-7B's o_proj
      {100, 700, 1500, DType::bf16, false, false, false, false, true}, // y = (no β)
      {9, 256, 128, DType::bf16, false, false, true, false, true},     // the first M past the GEMV (8 here)
      {8, 256, 128, DType::bf16, false, false, true, false, false},    // the GEMV (this suite: M ≤ 8) reads f32
      {1, 256, 128, DType::bf16, false, false, true, false, false},
      {64, 256, 128, DType::bf16, true, false, false, false, false},   // norm: its kernel writes bf16
      {64, 256, 128, DType::bf16, false, true, true, false, false},    // SwiGLU: likewise
      {70, 300, 200, DType::f32, false, false, true, false, false},    // Sgemm reads f32
  };
  uint64_t seed = 9100;
  for (const Case& c : cases) {
    const int64_t M = c.M, N = c.N, K = c.K, XC = c.swiglu ? 2 * K : K;
    INFO("M " << M << " N " << N << " K " << K << " w " << dtype_name(c.wt) << (c.norm ? " norm" : "")
              << (c.swiglu ? " swiglu" : "") << (c.accumulate ? " +=" : "") << (c.bias ? " bias" : ""));
    // x: bf16 values, held as bf16 bits and as the same values in f32
    const std::vector<uint8_t> xb = encode(randn(size_t(M * XC), ++seed, 2.f), DType::bf16);
    std::vector<float> x = decode(xb, DType::bf16);
    std::vector<float> y0 = randn(size_t(M * N), ++seed, 3.f), b = randn(size_t(N), ++seed);
    std::vector<uint8_t> w = encode(randn(size_t(N * K), ++seed, 0.05f), c.wt);
    const std::vector<uint8_t> ln = encode(randn(size_t(K), ++seed, 1.f), DType::bf16);
    Buffer<float> dx = to_gpu(G, x), dy = to_gpu(G, y0), dy2 = to_gpu(G, y0), db = to_gpu(G, b);
    Buffer<uint8_t> dxb = to_gpu(G, xb), dw = to_gpu(G, w), dln = to_gpu(G, ln);
    const TensorView gln = dln.view(DType::bf16, {K}), gb = db.view(DType::f32, {N}), gw = dw.view(c.wt, {N, K});
    MatmulFusion f;
    f.swiglu = c.swiglu;
    f.accumulate = c.accumulate;
    if (c.norm) {
      f.norm_w = &gln;
      f.norm_eps = 1e-6f;
    }
    const bool fuses = gops.matmul_fuses(f, M, gw);
    CHECK(gops.matmul_reads_bf16(f, M, gw) == c.reads);
    CHECK((!c.reads || fuses));
    if (!c.reads) {
      if (!fuses) continue;
      Status st = gops.matmul_fused(dy.view(DType::f32, {M, N}), dxb.view(DType::bf16, {M, XC}), gw,
                                    c.bias ? &gb : nullptr, f);
      CHECK(!st.ok());
      CHECK(st.message.find("ask matmul_reads_bf16") != std::string::npos);
      CHECK(bitwise_equal(dy.to_host(), y0));
      continue;
    }
    check(gops.matmul_fused(dy.view(DType::f32, {M, N}), dxb.view(DType::bf16, {M, XC}), gw, c.bias ? &gb : nullptr, f));
    check(gops.matmul_fused(dy2.view(DType::f32, {M, N}), dx.view(DType::f32, {M, XC}), gw, c.bias ? &gb : nullptr, f));
    const std::vector<float> got = dy.to_host(), want = dy2.to_host();
    CHECK(bitwise_equal(got, want));
    // and it is the product at all (not, say, y left alone): against the CPU, as the suite above
    std::vector<float> ref = y0;
    const TensorView hb = hview(b, DType::f32, {N});
    check(cops.matmul_fused(hview(ref, DType::f32, {M, N}), hview(x, DType::f32, {M, XC}), hview(w, c.wt, {N, K}),
                            c.bias ? &hb : nullptr, f));
    std::vector<float> g2 = got;
    if (c.accumulate)
      for (size_t i = 0; i < g2.size(); ++i) g2[i] -= y0[i], ref[i] -= y0[i];
    const Diff d = diff(g2, ref);
    INFO(show(d) << " (tolerance rel_l2 ≤ 1e-5: x is exactly bf16 on both sides)");
    CHECK(d.nonfinite == 0);
    CHECK(d.rel_l2 <= 1e-5);
  }
}

TEST_CASE("cuda: cuBLAS path with a bias (bf16 weights: cuBLASLt bias epilogue) vs CPU and KVRUN_CUDA_LT_BIAS=0") {
  NEED_GPU();
  // Rows past the tensor-core GEMM's default (8) reach cuBLAS. With bf16 weights and an f32 bias
  // one cublasLtMatmul adds the bias in its epilogue (β = 1 too, matmul_fused's accumulate); a
  // bf16 or f16 bias is added by the epilogue kernel after the GEMM (a plain cublasLtMatmul with
  // KVRUN_CUDA_LT_TUNE on, the default). A device of its own with KVRUN_CUDA_LT_BIAS=0 and
  // KVRUN_CUDA_LT_TUNE=0 runs the old path everywhere (cublasGemmEx + the epilogue kernel).
  // Tolerances: against the CPU (x rounded to bf16 for the tensor cores) rel_l2 ≤ 1e-2 as the
  // other cuBLAS cases (of y − y₀ where accumulating); cuBLASLt vs the old path: the same bf16
  // products with fp32 accumulation, summed in another order (the timed algorithm may split K) →
  // rel_l2 ≤ 1e-5. (Bitwise equality with the old path held for the bf16 and f16 biases before
  // KVRUN_CUDA_LT_TUNE; now their GEMM runs on cuBLASLt too — the bitwise check of the old path
  // against itself is in the KVRUN_CUDA_LT_TUNE case below.)
  std::shared_ptr<Device> off_dev = gpu_with({{"KVRUN_CUDA_LT_BIAS", "0"}, {"KVRUN_CUDA_LT_TUNE", "0"}});
  REQUIRE(off_dev != nullptr);
  Device& O = *off_dev;
  Ops& oops = O.ops();
  struct Shape {
    int64_t N, K;
  };
  const Shape shapes[] = {{37, 64},      // N not a multiple of 4
                          {515, 256},
                          {1000, 1027},  // odd K: bf16 rows of odd length (cuBLASLt may decline)
                          {3584, 512}};  // q·k·v-like width
  uint64_t seed = 9100;
  for (int64_t M : {16, 64, 300}) {
    for (const Shape& sh : shapes) {
      for (DType bt : {DType::f32, DType::bf16, DType::f16}) {
        const int64_t N = sh.N, K = sh.K;
        // plain matmul: y[M, N] = x[M, K]·w[N, K]ᵀ + bias[N]
        std::vector<float> got, ref;
        run_matmul(G, gops, cops, M, N, K, DType::bf16, true, bt, seed += 10, nullptr, &got, &ref);
        std::vector<float> got_off, ref_off;
        run_matmul(O, oops, cops, M, N, K, DType::bf16, true, bt, seed, nullptr, &got_off, &ref_off);
        Diff d = diff(got, ref), d_off = diff(got, got_off);
        INFO("matmul M " << M << ", N " << N << ", K " << K << ", bias " << dtype_name(bt) << ": vs CPU " << show(d)
                         << " (≤ 1e-2); LT on vs off " << show(d_off) << " (≤ 1e-5)");
        CHECK(d.nonfinite == 0);
        CHECK(d.rel_l2 <= 1e-2);
        CHECK(d_off.nonfinite == 0);
        CHECK(d_off.rel_l2 <= 1e-5);
      }
    }
  }
  // matmul_fused: norm in (β = 0), y += (β = 1), SwiGLU in with y +=; f32 and bf16 bias.
  struct Case {
    int64_t M, N, K;
    bool norm, swiglu, accumulate;
  };
  const Case cases[] = {{16, 3584, 512, true, false, false},  // q·k·v-like at batch 16
                        {64, 515, 256, true, false, false},
                        {64, 37, 200, false, false, true},
                        {16, 1000, 1027, false, false, true},
                        {64, 700, 1500, false, true, true},
                        {300, 515, 256, true, false, false}};
  for (const Case& c : cases) {
    for (DType bt : {DType::f32, DType::bf16}) {
      const int64_t M = c.M, N = c.N, K = c.K, XC = c.swiglu ? 2 * K : K;
      INFO("matmul_fused M " << M << " N " << N << " K " << K << (c.norm ? " norm" : "")
                             << (c.swiglu ? " swiglu" : "") << (c.accumulate ? " +=" : "") << " bias "
                             << dtype_name(bt));
      std::vector<float> x = randn(size_t(M * XC), ++seed, 2.f), y0 = randn(size_t(M * N), ++seed, 3.f);
      std::vector<uint8_t> w = encode(randn(size_t(N * K), ++seed, 0.05f), DType::bf16);
      std::vector<uint8_t> ln = encode(randn(size_t(K), ++seed, 1.f), DType::bf16);
      std::vector<uint8_t> b = encode(randn(size_t(N), ++seed), bt);
      MatmulFusion hf;
      hf.swiglu = c.swiglu;
      hf.accumulate = c.accumulate;
      TensorView hln = hview(ln, DType::bf16, {K}), hb = hview(b, bt, {N});
      if (c.norm) {
        hf.norm_w = &hln;
        hf.norm_eps = 1e-6f;
      }
      std::vector<float> ref = y0;
      check(cops.matmul_fused(hview(ref, DType::f32, {M, N}), hview(x, DType::f32, {M, XC}),
                              hview(w, DType::bf16, {N, K}), &hb, hf));
      std::vector<float> outs[2];
      for (int dev = 0; dev < 2; ++dev) {
        Device& D = dev == 0 ? G : O;
        Ops& ops = D.ops();
        Buffer<float> dx = to_gpu(D, x), dy = to_gpu(D, y0);
        Buffer<uint8_t> dw = to_gpu(D, w), dln = to_gpu(D, ln), db = to_gpu(D, b);
        TensorView gln = dln.view(DType::bf16, {K}), gb = db.view(bt, {N});
        MatmulFusion gf = hf;
        gf.norm_w = c.norm ? &gln : nullptr;
        REQUIRE(ops.matmul_fuses(gf, M, dw.view(DType::bf16, {N, K})));
        if (!c.accumulate) poison(D, dy);
        check(ops.matmul_fused(dy.view(DType::f32, {M, N}), dx.view(DType::f32, {M, XC}),
                               dw.view(DType::bf16, {N, K}), &gb, gf));
        outs[dev] = dy.to_host();
      }
      std::vector<float> got = outs[0], ref_p = ref;
      if (c.accumulate)  // compare the products: the residual is in both exactly once
        for (size_t i = 0; i < got.size(); ++i) got[i] -= y0[i], ref_p[i] -= y0[i];
      Diff d = diff(got, ref_p), d_off = diff(outs[0], outs[1]);
      INFO("vs CPU " << show(d) << " (≤ 1e-2); LT on vs off " << show(d_off) << " (≤ 1e-5)");
      CHECK(d.nonfinite == 0);
      CHECK(d.rel_l2 <= 1e-2);
      CHECK(d_off.nonfinite == 0);
      CHECK(d_off.rel_l2 <= 1e-5);
    }
  }
}

TEST_CASE("cuda: bf16 GEMMs on cuBLASLt with timed algorithms (KVRUN_CUDA_LT_TUNE) vs CPU, =0 and the old path") {
  NEED_GPU();
  // Three devices of their own, each with fresh plans (the shared device has seen shapes before):
  //   tune  KVRUN_CUDA_LT_TUNE=1: every bf16 GEMM past the tensor-core rows on cuBLASLt; for
  //         M ≤ 256 the first call of a shape times the heuristic's candidates (into a scratch
  //         output) before the real call. KVRUN_CUDA_LT_TUNE_LOG=1 prints the timings (stderr).
  //   t0    KVRUN_CUDA_LT_TUNE=0: as before this switch (f32 bias: cuBLASLt's bias epilogue with
  //         the heuristic's first algorithm; everything else cublasGemmEx)
  //   old   KVRUN_CUDA_LT_TUNE=0 and KVRUN_CUDA_LT_BIAS=0: cublasGemmEx + the epilogue kernel
  // Tolerances: against the CPU (x rounded to bf16) rel_l2 ≤ 1e-2 as the other cuBLAS cases (of
  // y − y₀ where accumulating); tune vs old: the same bf16 products with fp32 accumulation in
  // another order (the timed algorithm may split K) → rel_l2 ≤ 1e-5; t0 vs old bitwise where
  // neither runs cuBLASLt (no f32 bias: both cublasGemmEx); the same call twice on `tune` bitwise
  // (a plan's algorithm is fixed — the first call timed it, the second only runs it).
  std::shared_ptr<Device> tune_dev = gpu_with({{"KVRUN_CUDA_LT_TUNE", "1"}, {"KVRUN_CUDA_LT_TUNE_LOG", "1"}});
  std::shared_ptr<Device> t0_dev = gpu_with({{"KVRUN_CUDA_LT_TUNE", "0"}});
  std::shared_ptr<Device> old_dev = gpu_with({{"KVRUN_CUDA_LT_TUNE", "0"}, {"KVRUN_CUDA_LT_BIAS", "0"}});
  REQUIRE(tune_dev != nullptr);
  REQUIRE(t0_dev != nullptr);
  REQUIRE(old_dev != nullptr);
  Device& T = *tune_dev;
  Device& T0 = *t0_dev;
  Device& O = *old_dev;
  struct Shape {
    int64_t N, K;
  };
  enum Bias { none, f32_bias, bf16_bias };
  auto bias_name = [](Bias b) { return b == none ? "none" : b == f32_bias ? "f32" : "bf16"; };

  SUBCASE("matmul: M = 16, 64, 300; no bias, f32 bias (epilogue), bf16 bias (epilogue kernel)") {
    const Shape shapes[] = {{515, 256},    // N odd: y's rows of odd length
                            {1000, 1027},  // odd K: bf16 rows of odd length (cuBLASLt may decline: GemmEx)
                            {3584, 512}};  // q·k·v-like width
    uint64_t seed = 9700;
    for (int64_t M : {16, 64, 300}) {
      for (const Shape& sh : shapes) {
        for (Bias b : {none, f32_bias, bf16_bias}) {
          const int64_t N = sh.N, K = sh.K;
          const DType bt = b == bf16_bias ? DType::bf16 : DType::f32;
          seed += 10;
          std::vector<float> got, ref, again, ref2, t0, ref3, old, ref4;
          run_matmul(T, T.ops(), cops, M, N, K, DType::bf16, b != none, bt, seed, nullptr, &got, &ref);
          run_matmul(T, T.ops(), cops, M, N, K, DType::bf16, b != none, bt, seed, nullptr, &again, &ref2);
          run_matmul(T0, T0.ops(), cops, M, N, K, DType::bf16, b != none, bt, seed, nullptr, &t0, &ref3);
          run_matmul(O, O.ops(), cops, M, N, K, DType::bf16, b != none, bt, seed, nullptr, &old, &ref4);
          const Diff d = diff(got, ref), d_old = diff(got, old), d_t0 = diff(t0, old);
          INFO("matmul M " << M << ", N " << N << ", K " << K << ", bias " << bias_name(b) << ": tune vs CPU "
                           << show(d) << " (≤ 1e-2); tune vs old path " << show(d_old) << " (≤ 1e-5); t0 vs old "
                           << show(d_t0));
          CHECK(d.nonfinite == 0);
          CHECK(d.rel_l2 <= 1e-2);
          CHECK(d_old.nonfinite == 0);
          CHECK(d_old.rel_l2 <= 1e-5);
          CHECK(bitwise_equal(got, again));  // the second call runs the algorithm the first one timed
          CHECK(d_t0.nonfinite == 0);
          CHECK(d_t0.rel_l2 <= 1e-5);
          if (b != f32_bias) CHECK(bitwise_equal(t0, old));  // both cublasGemmEx (+ the epilogue kernel)
        }
      }
    }
  }

  SUBCASE("matmul_fused: norm in, y +=, SwiGLU in with y +=; y₀ known: the timing runs leave y alone") {
    // Every accumulating case is the first call of its shape with β = 1 on `tune` (matmul never
    // uses β = 1), so its plan is timed inside this very call, before the real GEMM adds into y.
    // Had a timing run written y, y − y₀ would hold several products instead of one (far beyond
    // 1e-2), and the repeat of the call from y₀ (plan made, nothing timed) would differ in bits.
    struct Case {
      int64_t N, K;
      bool norm, swiglu, accumulate;
    };
    const Case cases[] = {{3584, 512, true, false, false},  // q·k·v-like: norm in, β = 0
                          {515, 256, false, false, true},   // o-like: y += (β = 1)
                          {700, 1500, false, true, true}};  // down-like: SwiGLU in, y +=
    uint64_t seed = 9900;
    for (int64_t M : {16, 64, 300}) {
      for (const Case& c : cases) {
        for (Bias b : {none, f32_bias}) {
          const int64_t N = c.N, K = c.K, XC = c.swiglu ? 2 * K : K;
          INFO("matmul_fused M " << M << " N " << N << " K " << K << (c.norm ? " norm" : "")
                                 << (c.swiglu ? " swiglu" : "") << (c.accumulate ? " +=" : "") << " bias "
                                 << bias_name(b));
          std::vector<float> x = randn(size_t(M * XC), ++seed, 2.f), y0 = randn(size_t(M * N), ++seed, 3.f);
          std::vector<uint8_t> w = encode(randn(size_t(N * K), ++seed, 0.05f), DType::bf16);
          std::vector<uint8_t> ln = encode(randn(size_t(K), ++seed, 1.f), DType::bf16);
          std::vector<float> bias = randn(size_t(N), ++seed);
          MatmulFusion hf;
          hf.swiglu = c.swiglu;
          hf.accumulate = c.accumulate;
          TensorView hln = hview(ln, DType::bf16, {K}), hb = hview(bias, DType::f32, {N});
          if (c.norm) {
            hf.norm_w = &hln;
            hf.norm_eps = 1e-6f;
          }
          std::vector<float> ref = y0;
          check(cops.matmul_fused(hview(ref, DType::f32, {M, N}), hview(x, DType::f32, {M, XC}),
                                  hview(w, DType::bf16, {N, K}), b == f32_bias ? &hb : nullptr, hf));
          // outs: tune (first call: timed), tune again from y₀, t0, old
          std::vector<float> outs[4];
          for (int run = 0; run < 4; ++run) {
            Device& D = run < 2 ? T : run == 2 ? T0 : O;
            Ops& ops = D.ops();
            Buffer<float> dx = to_gpu(D, x), dy = to_gpu(D, y0), db = to_gpu(D, bias);
            Buffer<uint8_t> dw = to_gpu(D, w), dln = to_gpu(D, ln);
            TensorView gln = dln.view(DType::bf16, {K}), gb = db.view(DType::f32, {N});
            MatmulFusion gf = hf;
            gf.norm_w = c.norm ? &gln : nullptr;
            REQUIRE(ops.matmul_fuses(gf, M, dw.view(DType::bf16, {N, K})));  // the cuBLAS path
            if (!c.accumulate) poison(D, dy);
            check(ops.matmul_fused(dy.view(DType::f32, {M, N}), dx.view(DType::f32, {M, XC}),
                                   dw.view(DType::bf16, {N, K}), b == f32_bias ? &gb : nullptr, gf));
            outs[run] = dy.to_host();
          }
          std::vector<float> got = outs[0], ref_p = ref, old_p = outs[3];
          if (c.accumulate)  // compare the products: the residual is in each exactly once
            for (size_t i = 0; i < got.size(); ++i) got[i] -= y0[i], ref_p[i] -= y0[i], old_p[i] -= y0[i];
          const Diff d = diff(got, ref_p), d_old = diff(got, old_p), d_t0 = diff(outs[2], outs[3]);
          INFO("tune vs CPU " << show(d) << " (≤ 1e-2); tune vs old path " << show(d_old) << " (≤ 1e-5); t0 vs old "
                              << show(d_t0));
          CHECK(d.nonfinite == 0);
          CHECK(d.rel_l2 <= 1e-2);
          CHECK(d_old.nonfinite == 0);
          CHECK(d_old.rel_l2 <= 1e-5);
          CHECK(bitwise_equal(outs[0], outs[1]));  // timed call == untimed repeat: y and xb untouched
          CHECK(d_t0.nonfinite == 0);
          CHECK(d_t0.rel_l2 <= 1e-5);
          if (b == none) CHECK(bitwise_equal(outs[2], outs[3]));  // both cublasGemmEx
        }
      }
    }
  }

  SUBCASE("a shape first seen during graph capture: the heuristic's first algorithm, kept afterwards") {
    CudaGraphApi api = cuda_graph_api();
    KVRUN_SKIP_UNLESS(api.ok(), "libcudart graph API not found in the process");
    // Timing would allocate and synchronize, which a capture forbids (global mode: the capture
    // would be invalidated). So a plan made during capture takes the heuristic's first algorithm
    // and keeps it: eager calls of that shape afterwards run the same algorithm as the graph
    // (bitwise equal), they do not time it again.
    const int64_t M = 16, K = 512, N1 = 1024, N2 = 2048, N3 = 1536;
    std::shared_ptr<Device> cap_dev = gpu_with({{"KVRUN_CUDA_LT_TUNE", "1"}, {"KVRUN_CUDA_LT_TUNE_LOG", "1"}});
    REQUIRE(cap_dev != nullptr);
    Device& C = *cap_dev;
    Ops& ops = C.ops();
    std::vector<float> x = randn(size_t(M * K), 9951), b2 = randn(size_t(N2), 9952);
    std::vector<uint8_t> w1 = encode(randn(size_t(N1 * K), 9953, 0.05f), DType::bf16);
    std::vector<uint8_t> w2 = encode(randn(size_t(N2 * K), 9954, 0.05f), DType::bf16);
    std::vector<uint8_t> w3 = encode(randn(size_t(N3 * K), 9955, 0.05f), DType::bf16);
    Buffer<float> dx = to_gpu(C, x), db2 = to_gpu(C, b2);
    Buffer<uint8_t> dw1 = to_gpu(C, w1), dw2 = to_gpu(C, w2), dw3 = to_gpu(C, w3);
    Buffer<float> y1(C, size_t(M * N1), MemCategory::workspace), y2(C, size_t(M * N2), MemCategory::workspace),
        y3(C, size_t(M * N3), MemCategory::workspace), e2(C, size_t(M * N2), MemCategory::workspace),
        e3(C, size_t(M * N3), MemCategory::workspace);
    const TensorView gb2 = db2.view(DType::f32, {N2});
    // eager, another N: the workspace reaches the bf16 x of M·K (a capture cannot grow it)
    check(ops.matmul(y1.view(DType::f32, {M, N1}), dx.view(DType::f32, {M, K}), dw1.view(DType::bf16, {N1, K}),
                     nullptr));
    check(C.queue().wait());
    void* stream = C.queue().native_handle();
    REQUIRE(api.begin(stream, 0 /* cudaStreamCaptureModeGlobal */) == 0);
    const Status s2 = ops.matmul(y2.view(DType::f32, {M, N2}), dx.view(DType::f32, {M, K}),
                                 dw2.view(DType::bf16, {N2, K}), &gb2);  // bias epilogue, new shape
    const Status s3 = ops.matmul(y3.view(DType::f32, {M, N3}), dx.view(DType::f32, {M, K}),
                                 dw3.view(DType::bf16, {N3, K}), nullptr);  // plain, new shape
    void* graph = nullptr;
    const int end_rc = api.end(stream, &graph);
    REQUIRE_MESSAGE(s2.ok(), s2.message);
    REQUIRE_MESSAGE(s3.ok(), s3.message);
    REQUIRE(end_rc == 0);
    void* exec = nullptr;
    REQUIRE(api.instantiate(&exec, graph, 0) == 0);
    poison(C, y2);
    poison(C, y3);
    REQUIRE(api.launch(exec, stream) == 0);
    check(C.queue().wait());
    const std::vector<float> g2 = y2.to_host(), g3 = y3.to_host();
    api.exec_destroy(exec);
    api.graph_destroy(graph);
    // after the capture, eagerly: the same plans
    poison(C, e2);
    poison(C, e3);
    check(ops.matmul(e2.view(DType::f32, {M, N2}), dx.view(DType::f32, {M, K}), dw2.view(DType::bf16, {N2, K}), &gb2));
    check(ops.matmul(e3.view(DType::f32, {M, N3}), dx.view(DType::f32, {M, K}), dw3.view(DType::bf16, {N3, K}),
                     nullptr));
    CHECK(bitwise_equal(e2.to_host(), g2));
    CHECK(bitwise_equal(e3.to_host(), g3));
    // and right: against the CPU
    std::vector<float> r2(size_t(M * N2)), r3(size_t(M * N3));
    TensorView hb2 = hview(b2, DType::f32, {N2});
    check(cops.matmul(hview(r2, DType::f32, {M, N2}), hview(x, DType::f32, {M, K}), hview(w2, DType::bf16, {N2, K}),
                      &hb2));
    check(cops.matmul(hview(r3, DType::f32, {M, N3}), hview(x, DType::f32, {M, K}), hview(w3, DType::bf16, {N3, K}),
                      nullptr));
    const Diff d2 = diff(g2, r2), d3 = diff(g3, r3);
    INFO("replayed vs CPU: with bias " << show(d2) << ", without " << show(d3) << " (≤ 1e-2)");
    CHECK(d2.nonfinite == 0);
    CHECK(d2.rel_l2 <= 1e-2);
    CHECK(d3.nonfinite == 0);
    CHECK(d3.rel_l2 <= 1e-2);
  }
}

TEST_CASE("cuda: rms_norm vs CPU (f32/bf16/f16 weight; in place too)") {
  NEED_GPU();
  // Tolerance: |Δ| ≤ 1e-5 · (1 + |ref|) per element (fp32 sums in a different order).
  for (DType wt : {DType::f32, DType::bf16, DType::f16}) {
    for (int64_t D : {64, 1001, 4096, 9000}) {  // 9000: past the 8 elements per thread kept in registers
      const int64_t M = 5;
      std::vector<float> x = randn(size_t(M * D), 31, 3.f);
      std::vector<uint8_t> w = encode(randn(size_t(D), 32), wt);
      std::vector<float> yc(size_t(M * D));
      check(cops.rms_norm(hview(yc, DType::f32, {M, D}), hview(x, DType::f32, {M, D}), hview(w, wt, {D}), 1e-6f));
      Buffer<float> dx = to_gpu(G, x);
      Buffer<uint8_t> dw = to_gpu(G, w);
      Buffer<float> dy(G, size_t(M * D), MemCategory::workspace);
      poison(G, dy);
      check(gops.rms_norm(dy.view(DType::f32, {M, D}), dx.view(DType::f32, {M, D}), dw.view(wt, {D}), 1e-6f));
      std::vector<float> got = dy.to_host();
      // in place: y aliases x
      check(gops.rms_norm(dx.view(DType::f32, {M, D}), dx.view(DType::f32, {M, D}), dw.view(wt, {D}), 1e-6f));
      std::vector<float> got_inplace = dx.to_host();
      INFO("w " << dtype_name(wt) << ", D " << D << ": " << show(diff(got, yc)));
      size_t bad = 0;
      for (size_t i = 0; i < yc.size(); ++i)
        if (!(std::fabs(got[i] - yc[i]) <= 1e-5f * (1.f + std::fabs(yc[i])))) ++bad;
      CHECK(bad == 0);
      CHECK(bitwise_equal(got, got_inplace));
    }
  }
}

TEST_CASE("cuda: add, silu_mul, scale_rows vs CPU") {
  NEED_GPU();
  const int64_t T = 7, C = 1003;
  std::vector<float> a = randn(size_t(T * C), 41, 4.f), b = randn(size_t(T * C), 42, 4.f);
  std::vector<float> f = randn(size_t(T), 43);
  Buffer<float> da = to_gpu(G, a), db = to_gpu(G, b), dfac = to_gpu(G, f);
  Buffer<float> dy(G, size_t(T * C), MemCategory::workspace);

  // add: exact (one IEEE addition)
  std::vector<float> yc(size_t(T * C));
  check(cops.add(hview(yc, DType::f32, {T, C}), hview(a, DType::f32, {T, C}), hview(b, DType::f32, {T, C})));
  poison(G, dy);
  check(gops.add(dy.view(DType::f32, {T, C}), da.view(DType::f32, {T, C}), db.view(DType::f32, {T, C})));
  CHECK(bitwise_equal(dy.to_host(), yc));

  // silu_mul: |Δ| ≤ 1e-6 · (1 + |ref|) (expf may differ in the last bits)
  check(cops.silu_mul(hview(yc, DType::f32, {T, C}), hview(a, DType::f32, {T, C}), hview(b, DType::f32, {T, C})));
  poison(G, dy);
  check(gops.silu_mul(dy.view(DType::f32, {T, C}), da.view(DType::f32, {T, C}), db.view(DType::f32, {T, C})));
  std::vector<float> got = dy.to_host();
  size_t bad = 0;
  for (size_t i = 0; i < yc.size(); ++i)
    if (!(std::fabs(got[i] - yc[i]) <= 1e-6f * (1.f + std::fabs(yc[i])))) ++bad;
  INFO("silu_mul: " << show(diff(got, yc)));
  CHECK(bad == 0);
  // in place (out aliases gate)
  Buffer<float> dg = to_gpu(G, a);
  check(gops.silu_mul(dg.view(DType::f32, {T, C}), dg.view(DType::f32, {T, C}), db.view(DType::f32, {T, C})));
  CHECK(bitwise_equal(dg.to_host(), got));

  // scale_rows: exact (one multiplication), in place
  std::vector<float> xc = a;
  check(cops.scale_rows(hview(xc, DType::f32, {T, C}), f.data()));
  check(gops.scale_rows(da.view(DType::f32, {T, C}), dfac.data()));
  CHECK(bitwise_equal(da.to_host(), xc));
}

TEST_CASE("cuda: add_rms_norm, swiglu, split_cols vs CPU") {
  NEED_GPU();
  // add_rms_norm: x exact (one addition); y |Δ| ≤ 1e-5 · (1 + |ref|) (sums in another order).
  // swiglu: |Δ| ≤ 1e-6 · (1 + |ref|) (expf). split_cols: exact.
  const int64_t M = 5, F0 = 1003;
  for (int64_t D : {4096, 9000}) {  // 9000: past the 8 elements per thread kept in registers
  INFO("D = " << D);
  std::vector<float> x = randn(size_t(M * D), 81, 3.f), dl = randn(size_t(M * D), 82, 3.f);
  std::vector<uint8_t> w = encode(randn(size_t(D), 83), DType::bf16);
  std::vector<float> xc = x, yc(size_t(M * D));
  check(cops.add_rms_norm(hview(xc, DType::f32, {M, D}), hview(dl, DType::f32, {M, D}), hview(yc, DType::f32, {M, D}),
                          hview(w, DType::bf16, {D}), 1e-6f));
  Buffer<float> dx = to_gpu(G, x), dd = to_gpu(G, dl);
  Buffer<uint8_t> dw = to_gpu(G, w);
  // y aliases delta, as in the model
  check(gops.add_rms_norm(dx.view(DType::f32, {M, D}), dd.view(DType::f32, {M, D}), dd.view(DType::f32, {M, D}),
                          dw.view(DType::bf16, {D}), 1e-6f));
  CHECK(bitwise_equal(dx.to_host(), xc));
  std::vector<float> got = dd.to_host();
  size_t bad = 0;
  for (size_t i = 0; i < yc.size(); ++i)
    if (!(std::fabs(got[i] - yc[i]) <= 1e-5f * (1.f + std::fabs(yc[i])))) ++bad;
  INFO("add_rms_norm: " << show(diff(got, yc)));
  CHECK(bad == 0);
  }

  for (int64_t F : {F0, int64_t(1024)}) {  // 1024: four outputs per thread (swiglu4_kernel)
  INFO("F = " << F);
  std::vector<float> gu = randn(size_t(M * 2 * F), 84, 4.f), oc(size_t(M * F));
  check(cops.swiglu(hview(oc, DType::f32, {M, F}), hview(gu, DType::f32, {M, 2 * F})));
  Buffer<float> dgu = to_gpu(G, gu), dout(G, size_t(M * F), MemCategory::workspace);
  poison(G, dout);
  check(gops.swiglu(dout.view(DType::f32, {M, F}), dgu.view(DType::f32, {M, 2 * F})));
  std::vector<float> got = dout.to_host();
  size_t bad = 0;
  for (size_t i = 0; i < oc.size(); ++i)
    if (!(std::fabs(got[i] - oc[i]) <= 1e-6f * (1.f + std::fabs(oc[i])))) ++bad;
  INFO("swiglu: " << show(diff(got, oc)));
  CHECK(bad == 0);
  }

  const int64_t C = 4096 + 2 * 1024;
  std::vector<float> src = randn(size_t(M * C), 85);
  std::vector<float> ha(size_t(M * 4096)), hb(size_t(M * 1024)), hc(size_t(M * 1024));
  const TensorView hd[3] = {hview(ha, DType::f32, {M, 4096}), hview(hb, DType::f32, {M, 1024}),
                            hview(hc, DType::f32, {M, 1024})};
  check(cops.split_cols(hview(src, DType::f32, {M, C}), hd, 3));
  Buffer<float> dsrc = to_gpu(G, src), ga(G, ha.size(), MemCategory::workspace), gb(G, hb.size(), MemCategory::workspace),
                gc(G, hc.size(), MemCategory::workspace);
  const TensorView gd[3] = {ga.view(DType::f32, {M, 4096}), gb.view(DType::f32, {M, 1024}),
                            gc.view(DType::f32, {M, 1024})};
  check(gops.split_cols(dsrc.view(DType::f32, {M, C}), gd, 3));
  CHECK(bitwise_equal(ga.to_host(), ha));
  CHECK(bitwise_equal(gb.to_host(), hb));
  CHECK(bitwise_equal(gc.to_host(), hc));
  // widths that are not multiples of 4 take the element-wise kernel
  const int64_t C2 = 10;
  std::vector<float> src2 = randn(size_t(M * C2), 86), h6(size_t(M * 6)), h1(static_cast<size_t>(M)), h3(size_t(M * 3));
  const TensorView hd2[3] = {hview(h6, DType::f32, {M, 6}), hview(h1, DType::f32, {M, 1}), hview(h3, DType::f32, {M, 3})};
  check(cops.split_cols(hview(src2, DType::f32, {M, C2}), hd2, 3));
  Buffer<float> dsrc2 = to_gpu(G, src2), g6(G, h6.size(), MemCategory::workspace), g1(G, h1.size(), MemCategory::workspace),
                g3(G, h3.size(), MemCategory::workspace);
  const TensorView gd2[3] = {g6.view(DType::f32, {M, 6}), g1.view(DType::f32, {M, 1}), g3.view(DType::f32, {M, 3})};
  check(gops.split_cols(dsrc2.view(DType::f32, {M, C2}), gd2, 3));
  CHECK(bitwise_equal(g6.to_host(), h6));
  CHECK(bitwise_equal(g1.to_host(), h1));
  CHECK(bitwise_equal(g3.to_host(), h3));
}

// ---------------------------------------------------------------------------------------------
// rope

namespace {

// PyTorch's float32 recipe (HF rotary embedding), written out independently of both backends.
void rope_reference(std::vector<float>& x, int64_t T, int64_t H, int64_t D, const std::vector<int32_t>& pos,
                    const std::vector<float>* bases, float base, int rot) {
  const int half = rot / 2;
  for (int64_t t = 0; t < T; ++t) {
    const float b = bases ? (*bases)[size_t(t)] : base;
    for (int i = 0; i < half; ++i) {
      const float inv = 1.0f / std::pow(b, float(2 * i) / float(rot));
      const float ang = float(pos[size_t(t)]) * inv;
      const float c = std::cos(ang), s = std::sin(ang);
      for (int64_t h = 0; h < H; ++h) {
        float* xh = x.data() + (t * H + h) * D;
        const float x1 = xh[i], x2 = xh[i + half];
        xh[i] = x1 * c - x2 * s;
        xh[i + half] = x2 * c + x1 * s;
      }
    }
  }
}

}  // namespace

TEST_CASE("cuda: rope vs CPU and the PyTorch float32 recipe, positions up to 8192, per-token bases") {
  NEED_GPU();
  // Tolerances: max |Δ| ≤ 1e-5 for positions < 64 and ≤ 1e-3 up to 8192 (inputs ~N(0,1)): at
  // position p an inv_freq one float ulp apart (pow rounding) moves the angle by p·ulp ≈ 5e-4.
  // Dimensions past rot_dim must be untouched (exact).
  const int64_t H = 4, D = 128;
  std::vector<int32_t> pos = {0, 1, 2, 7, 31, 63, 100, 511, 1000, 2047, 4095, 4096, 6000, 8000, 8191, 8192};
  const int64_t T = int64_t(pos.size());
  std::vector<float> bases(static_cast<size_t>(T));
  for (int64_t t = 0; t < T; ++t) bases[size_t(t)] = t % 3 == 0 ? 10000.f : t % 3 == 1 ? 1e6f : 35000.5f;
  Buffer<int32_t> dpos = to_gpu(G, pos);
  Buffer<float> dbases = to_gpu(G, bases);
  for (int rot : {128, 64}) {
    for (int per_token = 0; per_token < 2; ++per_token) {
      const float base = per_token ? 0.f : 10000.f;
      const std::vector<float>* bp = per_token ? &bases : nullptr;
      std::vector<float> x = randn(size_t(T * H * D), 51);
      std::vector<float> xc = x, xr = x;
      check(cops.rope(hview(xc, DType::f32, {T, H, D}), pos.data(), bp ? bp->data() : nullptr, per_token ? 1.f : base,
                      rot));
      rope_reference(xr, T, H, D, pos, bp, base, rot);
      Buffer<float> dx = to_gpu(G, x);
      check(gops.rope(dx.view(DType::f32, {T, H, D}), dpos.data(), per_token ? dbases.data() : nullptr,
                      per_token ? 1.f : base, rot));
      std::vector<float> got = dx.to_host();
      for (const auto* ref : {&xc, &xr}) {
        double max_near = 0, max_far = 0;
        size_t untouched_bad = 0, nonfinite = 0;
        for (int64_t t = 0; t < T; ++t)
          for (int64_t h = 0; h < H; ++h)
            for (int64_t d = 0; d < D; ++d) {
              const size_t i = size_t((t * H + h) * D + d);
              if (!std::isfinite(got[i])) ++nonfinite;
              const double e = std::fabs(double(got[i]) - double((*ref)[i]));
              if (d >= rot) {
                if (got[i] != x[i]) ++untouched_bad;
              } else if (pos[size_t(t)] < 64) {
                max_near = std::max(max_near, e);
              } else {
                max_far = std::max(max_far, e);
              }
            }
        INFO("rot " << rot << (per_token ? ", per-token bases" : ", base 10000") << ", vs "
                    << (ref == &xc ? "CPU backend" : "PyTorch recipe") << ": max |Δ| " << max_near
                    << " (pos < 64), " << max_far << " (pos ≥ 64)");
        CHECK(nonfinite == 0);
        CHECK(untouched_bad == 0);
        CHECK(max_near <= 1e-5);
        CHECK(max_far <= 1e-3);
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------
// embedding, gather_rows, convert

TEST_CASE("cuda: rope_table + rope_apply == cuda rope (bitwise) and ≈ CPU") {
  NEED_GPU();
  const int64_t T = 4, H = 40, D = 128;
  std::vector<int32_t> pos = {0, 3, 1000, 8191};
  std::vector<float> bases = {10000.f, 50000.f, 10000.f, 1e6f};
  for (int rot : {128, 64}) {
    std::vector<float> x = randn(size_t(T * H * D), 95, 2.f);
    Buffer<int32_t> dpos = to_gpu(G, pos);
    Buffer<float> dbase = to_gpu(G, bases), da = to_gpu(G, x), db = to_gpu(G, x);
    Buffer<float> dcs(G, size_t(T * rot), MemCategory::workspace);
    check(gops.rope(da.view(DType::f32, {T, H, D}), dpos.data(), dbase.data(), 0.f, rot));
    check(gops.rope_table(dcs.view(DType::f32, {T, rot}), dpos.data(), dbase.data(), 0.f));
    check(gops.rope_apply(db.view(DType::f32, {T, H, D}), dcs.view(DType::f32, {T, rot})));
    std::vector<float> ga = da.to_host(), gb = db.to_host();
    CHECK(bitwise_equal(ga, gb));
    // and the CPU's table path within the rope test's tolerance for positions up to 8192: |Δ| ≤ 1e-3
    // (an inv_freq one float ulp apart moves the angle by p·ulp)
    std::vector<float> cs(size_t(T * rot)), xc = x;
    check(cops.rope_table(hview(cs, DType::f32, {T, rot}), pos.data(), bases.data(), 0.f));
    check(cops.rope_apply(hview(xc, DType::f32, {T, H, D}), hview(cs, DType::f32, {T, rot})));
    size_t bad = 0;
    for (size_t i = 0; i < xc.size(); ++i)
      if (!(std::fabs(gb[i] - xc[i]) <= 1e-3f)) ++bad;
    INFO("rot " << rot << ": " << show(diff(gb, xc)));
    CHECK(bad == 0);
  }
}

TEST_CASE("cuda: split_rope == split_cols + rope_apply (bitwise, on the GPU and against the CPU)") {
  NEED_GPU();
  // GQA shape (8 query heads, 2 KV heads) and a partial rot_dim (the copied tail of q and k).
  const int64_t T = 5, Hq = 8, Hk = 2, D = 64, C = (Hq + 2 * Hk) * D;
  std::vector<int32_t> pos = {0, 1, 17, 4095, 8191};
  for (int rot : {64, 32}) {
    INFO("rot " << rot);
    std::vector<float> src = randn(size_t(T * C), 97, 2.f);
    Buffer<int32_t> dpos = to_gpu(G, pos);
    Buffer<float> dsrc = to_gpu(G, src), dcs(G, size_t(T * rot), MemCategory::workspace);
    check(gops.rope_table(dcs.view(DType::f32, {T, rot}), dpos.data(), nullptr, 10000.f));
    Buffer<float> q1(G, size_t(T * Hq * D), MemCategory::workspace), k1(G, size_t(T * Hk * D), MemCategory::workspace),
        v1(G, size_t(T * Hk * D), MemCategory::workspace), q2(G, q1.size(), MemCategory::workspace),
        k2(G, k1.size(), MemCategory::workspace), v2(G, v1.size(), MemCategory::workspace);
    poison(G, q2);
    poison(G, k2);
    poison(G, v2);
    const TensorView parts[3] = {q1.view(DType::f32, {T, Hq * D}), k1.view(DType::f32, {T, Hk * D}),
                                 v1.view(DType::f32, {T, Hk * D})};
    check(gops.split_cols(dsrc.view(DType::f32, {T, C}), parts, 3));
    check(gops.rope_apply(q1.view(DType::f32, {T, Hq, D}), dcs.view(DType::f32, {T, rot})));
    check(gops.rope_apply(k1.view(DType::f32, {T, Hk, D}), dcs.view(DType::f32, {T, rot})));
    check(gops.split_rope(dsrc.view(DType::f32, {T, C}), q2.view(DType::f32, {T, Hq, D}), k2.view(DType::f32, {T, Hk, D}),
                          v2.view(DType::f32, {T, Hk, D}), dcs.view(DType::f32, {T, rot})));
    CHECK(bitwise_equal(q2.to_host(), q1.to_host()));
    CHECK(bitwise_equal(k2.to_host(), k1.to_host()));
    CHECK(bitwise_equal(v2.to_host(), v1.to_host()));
    // the CPU with the same table
    std::vector<float> cs = dcs.to_host(), qc(q1.size()), kc(k1.size()), vc(v1.size());
    check(cops.split_rope(hview(src, DType::f32, {T, C}), hview(qc, DType::f32, {T, Hq, D}),
                          hview(kc, DType::f32, {T, Hk, D}), hview(vc, DType::f32, {T, Hk, D}),
                          hview(cs, DType::f32, {T, rot})));
    CHECK(bitwise_equal(q2.to_host(), qc));
    CHECK(bitwise_equal(k2.to_host(), kc));
    CHECK(bitwise_equal(v2.to_host(), vc));
  }
  // shapes that do not add up are refused
  Buffer<float> dsrc(G, size_t(T * C), MemCategory::workspace), q(G, size_t(T * Hq * D), MemCategory::workspace),
      k(G, size_t(T * Hk * D), MemCategory::workspace), cs(G, size_t(T * D), MemCategory::workspace);
  CHECK_FALSE(gops.split_rope(dsrc.view(DType::f32, {T, C - D}), q.view(DType::f32, {T, Hq, D}),
                              k.view(DType::f32, {T, Hk, D}), k.view(DType::f32, {T, Hk, D}), cs.view(DType::f32, {T, D}))
                  .ok());
}

TEST_CASE("cuda: embedding vs CPU (exact), every table dtype") {
  NEED_GPU();
  const int64_t V = 1000, D = 77;
  std::vector<int32_t> ids = {0, 999, 5, 5, 123, 998, 1, 500, 0};
  const int64_t T = int64_t(ids.size());
  Buffer<int32_t> dids = to_gpu(G, ids);
  for (DType t : {DType::f32, DType::bf16, DType::f16}) {
    std::vector<uint8_t> table = encode(randn(size_t(V * D), 61), t);
    std::vector<float> oc(size_t(T * D));
    check(cops.embedding(hview(oc, DType::f32, {T, D}), hview(table, t, {V, D}), ids.data()));
    Buffer<uint8_t> dt = to_gpu(G, table);
    Buffer<float> dout(G, size_t(T * D), MemCategory::workspace);
    poison(G, dout);
    check(gops.embedding(dout.view(DType::f32, {T, D}), dt.view(t, {V, D}), dids.data()));
    INFO("table " << dtype_name(t));
    CHECK(bitwise_equal(dout.to_host(), oc));
  }
}

TEST_CASE("cuda: gather_rows vs CPU and a host copy (exact; 16-byte, 4-byte and byte-wise rows)") {
  NEED_GPU();
  std::vector<int32_t> rows = {3, 0, 49, 3, 17, 48, 1};
  const int64_t n = int64_t(rows.size()), R = 50;
  Buffer<int32_t> drows = to_gpu(G, rows);
  struct Case {
    DType t;
    int64_t C;
  };
  for (Case c : {Case{DType::f32, 64}, Case{DType::f32, 33}, Case{DType::bf16, 3}}) {
    std::vector<uint8_t> x = encode(randn(size_t(R * c.C), 71), c.t);
    const size_t row_bytes = size_t(c.C) * dtype_size(c.t);
    std::vector<uint8_t> oc(size_t(n) * row_bytes);
    for (int64_t i = 0; i < n; ++i)
      std::memcpy(oc.data() + size_t(i) * row_bytes, x.data() + size_t(rows[size_t(i)]) * row_bytes, row_bytes);
    if (c.t == DType::f32) {  // the CPU backend agrees (activations are f32)
      std::vector<uint8_t> cpu_out(oc.size());
      check(cops.gather_rows(hview(cpu_out, c.t, {n, c.C}), hview(x, c.t, {R, c.C}), rows.data()));
      CHECK(cpu_out == oc);
    }
    Buffer<uint8_t> dx = to_gpu(G, x);
    Buffer<uint8_t> dout(G, oc.size(), MemCategory::workspace);
    poison(G, dout);
    check(gops.gather_rows(dout.view(c.t, {n, c.C}), dx.view(c.t, {R, c.C}), drows.data()));
    INFO(dtype_name(c.t) << " rows of " << c.C);
    CHECK(dout.to_host() == oc);
  }
}

TEST_CASE("cuda: convert between f32, bf16 and f16 vs CPU and dtype.hpp (bitwise)") {
  NEED_GPU();
  std::vector<float> v = randn(4099, 81, 10.f);
  // edge values: ties, subnormals, overflow to inf in f16, signed zero, infinities
  const float extra[] = {0.f, -0.f, 1.f + 1.f / 256.f, 65504.f, 65520.f, 1e5f, -1e5f, 6e-8f, 3e-8f, 1e-40f,
                         3.0e38f, -3.0e38f, INFINITY, -INFINITY, 1.00390625f, -2.0078125f};
  v.insert(v.end(), std::begin(extra), std::end(extra));
  const int64_t n = int64_t(v.size());
  for (DType from : {DType::f32, DType::bf16, DType::f16}) {
    std::vector<uint8_t> src = encode(v, from);
    Buffer<uint8_t> dsrc = to_gpu(G, src);
    for (DType to : {DType::f32, DType::bf16, DType::f16}) {
      std::vector<uint8_t> expect = encode(decode(src, from), to);  // dtype.hpp conversions
      std::vector<uint8_t> oc(size_t(n) * dtype_size(to));
      check(cops.convert(hview(oc, to, {n}), hview(src, from, {n})));
      Buffer<uint8_t> dout(G, oc.size(), MemCategory::workspace);
      poison(G, dout);
      check(gops.convert(dout.view(to, {n}), dsrc.view(from, {n})));
      std::vector<uint8_t> got = dout.to_host();
      INFO(dtype_name(from) << " → " << dtype_name(to));
      CHECK(got == expect);
      CHECK(got == oc);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// sample

TEST_CASE("cuda: greedy sample == CPU argmax (first maximum)") {
  NEED_GPU();
  const int64_t B = 5, V = 151936;
  std::vector<float> logits = randn(size_t(B * V), 91, 3.f);
  // row 0: a tie for the maximum → the first one; row 1: maximum at the last id; row 2: all equal;
  // row 3: -inf everywhere but one; row 4: plain random.
  logits[size_t(0 * V + 100)] = 50.f;
  logits[size_t(0 * V + 90000)] = 50.f;
  logits[size_t(1 * V + V - 1)] = 60.f;
  std::fill(logits.begin() + 2 * V, logits.begin() + 3 * V, 0.25f);
  std::fill(logits.begin() + 3 * V, logits.begin() + 4 * V, -INFINITY);
  logits[size_t(3 * V + 7)] = -1e30f;
  std::vector<SampleParams> params(static_cast<size_t>(B));  // temperature 0 = greedy
  std::vector<int32_t> ic(static_cast<size_t>(B), -1);
  check(cops.sample(ic.data(), hview(logits, DType::f32, {B, V}), params.data()));
  Buffer<float> dl = to_gpu(G, logits);
  Buffer<int32_t> dids(G, size_t(B), MemCategory::workspace);
  poison(G, dids);
  check(gops.sample(dids.data(), dl.view(DType::f32, {B, V}), params.data()));
  std::vector<int32_t> got = dids.to_host();
  CHECK(got == ic);
  CHECK(got[0] == 100);
  CHECK(got[1] == V - 1);
  CHECK(got[2] == 0);
  CHECK(got[3] == 7);
  for (int64_t b = 0; b < B; ++b)
    CHECK(got[size_t(b)] == sample_row(logits.data() + b * V, int32_t(V), 0.f, 0, 1.f, 0.f, 0, 0));

  // One row at a time (batch-1 decode splits the row into parts: a tie across parts, the maximum
  // in the last part, NaN in logits[0]), and 300 rows (one block per row).
  logits[size_t(4 * V)] = NAN;
  for (int64_t b = 0; b < B; ++b) {
    INFO("row " << b);
    Buffer<float> row = to_gpu(G, std::vector<float>(logits.begin() + b * V, logits.begin() + (b + 1) * V));
    Buffer<int32_t> id(G, 1, MemCategory::workspace);
    poison(G, id);
    check(gops.sample(id.data(), row.view(DType::f32, {1, V}), params.data()));
    CHECK(id.to_host()[0] == sample_row(logits.data() + b * V, int32_t(V), 0.f, 0, 1.f, 0.f, 0, 0));
  }
  const int64_t B2 = 300, V2 = 5000;
  std::vector<float> many = randn(size_t(B2 * V2), 92, 3.f);
  std::vector<SampleParams> params2(static_cast<size_t>(B2));
  Buffer<float> dm = to_gpu(G, many);
  Buffer<int32_t> ids2(G, size_t(B2), MemCategory::workspace);
  poison(G, ids2);
  check(gops.sample(ids2.data(), dm.view(DType::f32, {B2, V2}), params2.data()));
  const std::vector<int32_t> got2 = ids2.to_host();
  for (int64_t b = 0; b < B2; ++b)
    CHECK(got2[size_t(b)] == sample_row(many.data() + b * V2, int32_t(V2), 0.f, 0, 1.f, 0.f, 0, 0));
}

// A row holding a NaN (sign bit clear or set, anywhere in the row) gives −1, as sample_row does, on
// every path: greedy over many rows (one block per row), one row split into parts (batch-1 decode),
// and the sorted sampling path; the other rows are unchanged.
TEST_CASE("cuda: sample gives -1 for a row holding a NaN, on every path") {
  NEED_GPU();
  for (const auto& [B, V] : {std::pair<int64_t, int64_t>{1, 151936}, {6, 151936}, {300, 5000}}) {
    std::vector<float> logits = randn(size_t(B * V), 93, 3.f);
    std::vector<bool> bad(size_t(B), false);
    for (int64_t b = 0; b < B; b += 2) {  // rows 0, 2, 4, ...: one NaN each, signs alternating
      const int64_t at = b == 0 ? V - 1 : (b * 7919) % V;
      logits[size_t(b * V + at)] = (b / 2) % 2 ? -NAN : NAN;
      bad[size_t(b)] = true;
    }
    Buffer<float> dl = to_gpu(G, logits);
    for (const float temperature : {0.f, 0.8f}) {
      INFO("B " << B << " V " << V << " temperature " << temperature);
      std::vector<SampleParams> params(static_cast<size_t>(B));
      for (int64_t b = 0; b < B; ++b) params[size_t(b)] = SampleParams{temperature, 50, 0.95f, 0.f, uint64_t(5 + b), 2};
      Buffer<int32_t> dids(G, size_t(B), MemCategory::workspace);
      poison(G, dids);
      check(gops.sample(dids.data(), dl.view(DType::f32, {B, V}), params.data()));
      const std::vector<int32_t> got = dids.to_host();
      for (int64_t b = 0; b < B; ++b) {
        INFO("row " << b);
        const SampleParams& p = params[size_t(b)];
        const int32_t want = sample_row(logits.data() + b * V, int32_t(V), p.temperature, p.top_k, p.top_p, p.min_p,
                                        p.seed, p.counter);
        CHECK((want == -1) == bad[size_t(b)]);
        CHECK(got[size_t(b)] == want);
      }
    }
  }
}

TEST_CASE("cuda: seeded top-k / top-p / min-p sampling == CPU on the same logits") {
  NEED_GPU();
  // Exact equality of ids is expected: both sides sort by (logit desc, id asc), compute the
  // softmax and cumulative sums in double and use the same uniform01(seed, counter) draw.
  struct Setting {
    float temperature;
    int top_k;
    float top_p;
    float min_p;
  };
  const Setting settings[] = {
      {0.7f, 50, 1.f, 0.f},   {1.0f, 0, 0.9f, 0.f},  {1.3f, 0, 0.95f, 0.05f}, {0.8f, 20, 0.5f, 0.f},
      {0.f, 0, 1.f, 0.f},     {1.0f, 1, 1.f, 0.f},   {1.0f, 0, 1.f, 0.f},     {2.0f, 0, 1.f, 0.2f},
      {0.5f, 40, 0.8f, 0.1f}, {1.0f, 0, 0.f, 0.f}};
  const int64_t B = int64_t(std::size(settings));
  for (int64_t V : {int64_t(32000), int64_t(151936)}) {
    std::vector<float> logits = randn(size_t(B * V), 101 + V, 2.5f);
    // three exact ties at the top (above every random logit), to exercise the id order
    for (int64_t b = 0; b < B; ++b) {
      logits[size_t(b * V + 11)] = 16.f;
      logits[size_t(b * V + 12)] = 16.f;
      logits[size_t(b * V + V - 3)] = 16.f;
    }
    Buffer<float> dl = to_gpu(G, logits);
    Buffer<int32_t> dids(G, size_t(B), MemCategory::workspace);
    size_t compared = 0, mismatches = 0;
    for (uint64_t counter = 0; counter < 40; ++counter) {
      std::vector<SampleParams> params(static_cast<size_t>(B));
      for (int64_t b = 0; b < B; ++b) {
        const Setting& s = settings[b];
        params[size_t(b)] = SampleParams{s.temperature, s.top_k, s.top_p, s.min_p, uint64_t(1234 + b), counter};
      }
      std::vector<int32_t> ic(static_cast<size_t>(B), -1);
      check(cops.sample(ic.data(), hview(logits, DType::f32, {B, V}), params.data()));
      poison(G, dids);
      check(gops.sample(dids.data(), dl.view(DType::f32, {B, V}), params.data()));
      std::vector<int32_t> got = dids.to_host();
      for (int64_t b = 0; b < B; ++b) {
        const SampleParams& p = params[size_t(b)];
        const int32_t host = sample_row(logits.data() + b * V, int32_t(V), p.temperature, p.top_k, p.top_p, p.min_p,
                                        p.seed, p.counter);
        ++compared;
        if (got[size_t(b)] != ic[size_t(b)] || got[size_t(b)] != host) {
          ++mismatches;
          MESSAGE("V " << V << " row " << b << " counter " << counter << ": cuda " << got[size_t(b)] << ", cpu ops "
                       << ic[size_t(b)] << ", sample_row " << host);
        }
      }
    }
    INFO("V " << V << ": " << mismatches << " of " << compared << " draws differ");
    CHECK(mismatches == 0);
  }
}

TEST_CASE("cuda: sampling a large batch (several sort chunks) == CPU") {
  NEED_GPU();
  // 40 rows × 151936 candidates exceed one radix-sort chunk (2^22 items): rows are sorted in
  // chunks; ids must still equal the CPU's. Mixed greedy and sampled rows.
  const int64_t B = 40, V = 151936;
  std::vector<float> logits = randn(size_t(B * V), 202, 3.f);
  std::vector<SampleParams> params(static_cast<size_t>(B));
  for (int64_t b = 0; b < B; ++b)
    params[size_t(b)] = b % 5 == 0 ? SampleParams{} : SampleParams{0.9f, int(b % 3 == 0 ? 100 : 0), 0.92f, 0.f,
                                                                     uint64_t(77 + b), uint64_t(b * 3)};
  std::vector<int32_t> ic(static_cast<size_t>(B), -1);
  check(cops.sample(ic.data(), hview(logits, DType::f32, {B, V}), params.data()));
  Buffer<float> dl = to_gpu(G, logits);
  Buffer<int32_t> dids(G, size_t(B), MemCategory::workspace);
  poison(G, dids);
  check(gops.sample(dids.data(), dl.view(DType::f32, {B, V}), params.data()));
  CHECK(dids.to_host() == ic);
}

// ---------------------------------------------------------------------------------------------
// CUDA graph capture

TEST_CASE("cuda: a decode step captured in a CUDA graph replays bit-identically") {
  NEED_GPU();
  CudaGraphApi api = cuda_graph_api();
  KVRUN_SKIP_UNLESS(api.ok(), "libcudart graph API not found in the process");
  // One token through rms_norm → matmul (GEMV, M = 1) → rope → silu_mul → add → matmul (cuBLAS,
  // M = 16, bf16 weights with an f32 bias: cuBLASLt's bias epilogue) → greedy sample: run eagerly,
  // then capture (global mode: any allocation or host sync inside an op would break the capture)
  // and replay; results must match bit for bit.
  const int64_t K = 512, N = 1024, H = 8, D = 128, M2 = 16, V = 4096;
  std::vector<float> x = randn(size_t(K), 301);
  std::vector<uint8_t> wn = encode(randn(size_t(K), 302), DType::bf16);
  std::vector<uint8_t> w1 = encode(randn(size_t(N * K), 303, 0.05f), DType::bf16);
  std::vector<uint8_t> w2 = encode(randn(size_t(V * K), 304, 0.05f), DType::bf16);
  std::vector<float> xb = randn(size_t(M2 * K), 305);
  std::vector<float> b2 = randn(size_t(V), 306);  // [V] f32 bias of the M2 matmul
  std::vector<int32_t> pos = {4321};
  Buffer<float> dx = to_gpu(G, x), dxb = to_gpu(G, xb), db2 = to_gpu(G, b2);
  const TensorView gb2 = db2.view(DType::f32, {V});
  Buffer<uint8_t> dwn = to_gpu(G, wn), dw1 = to_gpu(G, w1), dw2 = to_gpu(G, w2);
  Buffer<int32_t> dpos = to_gpu(G, pos);
  Buffer<float> h(G, size_t(K), MemCategory::workspace), q(G, size_t(N), MemCategory::workspace),
      r(G, size_t(N), MemCategory::workspace), logits(G, size_t(M2 * V), MemCategory::workspace);
  Buffer<int32_t> ids(G, size_t(M2), MemCategory::workspace);
  std::vector<SampleParams> params(static_cast<size_t>(M2));  // greedy: nothing uploaded, capturable

  auto step = [&] {
    check(gops.rms_norm(h.view(DType::f32, {1, K}), dx.view(DType::f32, {1, K}), dwn.view(DType::bf16, {K}), 1e-6f));
    check(gops.matmul(q.view(DType::f32, {1, N}), h.view(DType::f32, {1, K}), dw1.view(DType::bf16, {N, K}), nullptr));
    check(gops.rope(q.view(DType::f32, {1, H, D}), dpos.data(), nullptr, 10000.f, int(D)));
    check(gops.silu_mul(r.view(DType::f32, {1, N}), q.view(DType::f32, {1, N}), q.view(DType::f32, {1, N})));
    check(gops.add(r.view(DType::f32, {1, N}), r.view(DType::f32, {1, N}), q.view(DType::f32, {1, N})));
    check(gops.matmul(logits.view(DType::f32, {M2, V}), dxb.view(DType::f32, {M2, K}), dw2.view(DType::bf16, {V, K}),
                      &gb2));
    check(gops.sample(ids.data(), logits.view(DType::f32, {M2, V}), params.data()));
  };
  auto poison_all = [&] {
    poison(G, h);
    poison(G, q);
    poison(G, r);
    poison(G, logits);
    poison(G, ids);
  };

  step();  // eager (also grows the workspace outside capture)
  const std::vector<float> r_eager = r.to_host(), l_eager = logits.to_host();
  const std::vector<int32_t> ids_eager = ids.to_host();

  poison_all();
  check(G.queue().wait());
  void* stream = G.queue().native_handle();
  REQUIRE(api.begin(stream, 0 /* cudaStreamCaptureModeGlobal */) == 0);
  step();
  void* graph = nullptr;
  REQUIRE(api.end(stream, &graph) == 0);
  void* exec = nullptr;
  REQUIRE(api.instantiate(&exec, graph, 0) == 0);
  for (int rep = 0; rep < 3; ++rep) {
    poison_all();
    REQUIRE(api.launch(exec, stream) == 0);
    check(G.queue().wait());
    CHECK(bitwise_equal(r.to_host(), r_eager));
    CHECK(bitwise_equal(logits.to_host(), l_eager));
    CHECK(ids.to_host() == ids_eager);
  }
  api.exec_destroy(exec);
  api.graph_destroy(graph);
}
