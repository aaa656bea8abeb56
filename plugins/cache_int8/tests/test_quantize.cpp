// cache.int8 numerics (SPECS.md §1): error bounds on random rows, constant and all-zero rows,
// exact scale/zero arithmetic, and the cache's append → view → dequantize round trip.
#include <doctest/doctest.h>

#include <cmath>
#include <random>
#include <sstream>

#include "kvrun/cpu/cpu.hpp"
#include "kvrun/kv_rows.hpp"
#include "kvrun/registry.hpp"
#include "devices.hpp"
#include "quantize.hpp"

using namespace kvrun;

namespace {

float scale_of(uint16_t bits) { return f16_to_f32(bits); }

// Checks |x̂ − x| ≤ s/2 (≤ s where the code was clamped) for one row.
void check_row(const std::vector<float>& x) {
  const int n = int(x.size());
  std::vector<uint8_t> q(static_cast<size_t>(n));
  uint16_t sb;
  uint8_t z;
  int8kv::quantize_row(x.data(), n, q.data(), &sb, &z);
  const float s = scale_of(sb);
  REQUIRE(s > 0.f);
  for (int i = 0; i < n; ++i) {
    const float xh = int8kv::dequantize(q[i], s, z);
    const bool clamped = q[i] == 0 || q[i] == 255;
    const float bound = (clamped ? s : 0.5f * s) * (1 + 1e-6f) + 1e-30f;
    INFO("x=" << x[i] << " q=" << int(q[i]) << " s=" << s << " z=" << int(z));
    CHECK(std::fabs(xh - x[i]) <= bound);
  }
}

}  // namespace

TEST_CASE("random rows stay within s/2") {
  std::mt19937 rng(7);
  for (int trial = 0; trial < 2000; ++trial) {
    const int n = (trial % 3 == 0) ? 64 : 128;
    std::normal_distribution<float> N(float(trial % 5) - 2.f, std::pow(10.f, float(trial % 7) - 3.f));
    std::vector<float> x(static_cast<size_t>(n));
    for (auto& v : x) v = N(rng);
    check_row(x);
  }
}

TEST_CASE("the arithmetic is exactly SPECS.md §1") {
  std::vector<float> x{-1.f, 0.5f, 2.f, 0.f};
  std::vector<uint8_t> q(4);
  uint16_t sb;
  uint8_t z;
  int8kv::quantize_row(x.data(), 4, q.data(), &sb, &z);
  const float s = f16_to_f32(f32_to_f16(3.f / 255.f));
  CHECK(scale_of(sb) == s);
  CHECK(int(z) == int(std::nearbyint(1.f / s)));
  for (int i = 0; i < 4; ++i) CHECK(int(q[i]) == int(std::min(255.f, std::max(0.f, std::nearbyint(x[i] / s) + z))));
}

TEST_CASE("constant and all-zero rows") {
  for (float v : {0.f, 3.25f, -7.5f, 1e-3f, 60000.f}) {
    std::vector<float> x(128, v);
    std::vector<uint8_t> q(128);
    uint16_t sb;
    uint8_t z;
    int8kv::quantize_row(x.data(), 128, q.data(), &sb, &z);
    const float s = scale_of(sb);
    if (v == 0.f) {
      CHECK(s == 1.f);  // s == 0 becomes 1
      CHECK(int(z) == 0);
    }
    for (int i = 0; i < 128; ++i) {
      const float xh = int8kv::dequantize(q[i], s, z);
      INFO("v=" << v);
      // a constant row comes back as v within the fp16 rounding of s
      CHECK(std::fabs(xh - v) <= 0.5f * s + std::fabs(v) * 1e-3f);
    }
  }
}

TEST_CASE("round half to even") {
  // x / s = 0.5 exactly: rint gives 0, not 1
  std::vector<float> x{0.5f, 0.f, 255.f};  // s = 1 (fp16 exact), zero = 0
  std::vector<uint8_t> q(3);
  uint16_t sb;
  uint8_t z;
  int8kv::quantize_row(x.data(), 3, q.data(), &sb, &z);
  CHECK(scale_of(sb) == 1.f);
  CHECK(int(z) == 0);
  CHECK(int(q[0]) == 0);
  CHECK(int(q[2]) == 255);
}

TEST_CASE("the cache stores per-token per-head rows and reads them back through the view") {
  auto dev = cpu::make_cpu_device(2);
  Registry reg;
  reg.load_path(test::plugin_dirs());
  CacheParams p;
  p.num_layers = 2;
  p.num_kv_heads = 2;
  p.head_dim = 64;
  p.block_tokens = 4;
  p.max_tokens = 64;
  p.max_seqs = 2;
  auto cache = reg.create_cache("int8", p, *dev);
  CacheInfo info = cache->info();
  // (64 + 2 + 1) bytes × 2 heads × K,V × 2 layers
  CHECK(info.bytes_per_token == size_t(67 * 2 * 2 * 2));
  CHECK(info.allocated_bytes >= size_t(16 * 4 * 67 * 2 * 2 * 2));
  // two sequences: 5 tokens (past 0) and 3 tokens (past 0)
  StepBatch st;
  st.num_seqs = 2;
  st.seq_ids = {0, 1};
  st.q_lens = {5, 3};
  st.past_lens = {0, 0};
  st.q_starts = {0, 5, 8};
  st.num_tokens = 8;
  std::vector<float> k(8 * 2 * 64), v(8 * 2 * 64);
  std::mt19937 rng(3);
  std::normal_distribution<float> N(0.f, 1.f);
  for (auto& x : k) x = N(rng);
  for (auto& x : v) x = N(rng);
  REQUIRE(cache->reserve(st).ok());
  TensorView kt(k.data(), DType::f32, {8, 2, 64}), vt(v.data(), DType::f32, {8, 2, 64});
  REQUIRE(cache->append(1, st, kt, vt).ok());
  KvView view;
  REQUIRE(cache->view(1, st, &view).ok());
  kvrows::Layout layout;
  REQUIRE(kvrows::layout_of(view.layout, &layout));
  std::vector<float> row(64);
  for (int s = 0; s < 2; ++s)
    for (int j = 0; j < st.q_lens[s]; ++j)
      for (int h = 0; h < 2; ++h) {
        const size_t t = size_t(st.q_starts[s] + j);
        kvrows::read_row(view, layout, 1, view.block_table + s * view.max_blocks_per_seq, j, h, row.data());
        std::vector<float> ref(v.begin() + (t * 2 + h) * 64, v.begin() + (t * 2 + h + 1) * 64);
        float lo = 0, hi = 0;
        for (float x : ref) lo = std::min(lo, x), hi = std::max(hi, x);
        const float s_bound = f16_to_f32(f32_to_f16((hi - lo) / 255.f));
        for (int d = 0; d < 64; ++d) CHECK(std::fabs(row[d] - ref[d]) <= s_bound * 0.5001f);
      }
  CHECK(cache->free_blocks() == 16 - 2 - 1);
  REQUIRE(cache->free_sequence(0).ok());
  CHECK(cache->free_blocks() == 16 - 1);
}
