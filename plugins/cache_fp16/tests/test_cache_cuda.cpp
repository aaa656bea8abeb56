// cache.fp16 and cache.int8 on CUDA against the same caches on the CPU (the reference): identical
// random keys and values are appended step by step (ragged prefill, decode, a freed sequence whose
// blocks are reused), then every live row of every layer is downloaded and compared bit for bit:
// fp16 blocks, int8 codes, fp16 scales and zero points. Rows include the quantizer's special cases
// (all zeros, constants, one-signed, huge, tiny/subnormal scales). The cache memory is poisoned
// before the first step so a row the kernel forgot to write cannot match by accident.
//
// Without a CUDA device every case prints "skipped: no CUDA device" and returns.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <memory>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "devices.hpp"
#include "fixtures.hpp"
#include "kvrun/cpu/cpu.hpp"
#include "kvrun/device.hpp"
#include "kvrun/registry.hpp"
#include "kvrun/select.hpp"
#include "paged_kv_test.hpp"

using namespace kvrun;

namespace {

using test::cpu_dev;
using test::gpu;
using test::registry;

// The step of `seqs` (cache ids) with q_lens new tokens after past_lens, with its device arrays
// in `dev`'s memory.
using attention_test::DeviceStep;  // tests/common/paged_kv_test.hpp

template <class T>
std::vector<T> download(Device& dev, const void* p, size_t n) {
  std::vector<T> out(n);
  if (dev.is_cpu()) {
    std::memcpy(out.data(), p, n * sizeof(T));
  } else {
    check(dev.queue().copy_d2h(out.data(), p, n * sizeof(T)));
    check(dev.queue().wait());
  }
  return out;
}

// Random rows [n_rows, D] with the quantizer's special cases mixed in (row kind cycles with the row index).
std::vector<float> random_rows(std::mt19937& rng, size_t n_rows, int D, int salt) {
  std::vector<float> x(n_rows * size_t(D));
  std::normal_distribution<float> N(0.f, 1.f);
  std::uniform_real_distribution<float> U(-1.f, 1.f);
  for (size_t r = 0; r < n_rows; ++r) {
    float* row = x.data() + r * size_t(D);
    const int kind = int((r + size_t(salt)) % 11);
    for (int d = 0; d < D; ++d) {
      float v;
      switch (kind) {
        case 0: v = 0.f; break;                                 // all zeros: scale 1
        case 1: v = 0.75f; break;                               // constant positive
        case 2: v = -3.25f; break;                              // constant negative
        case 3: v = std::fabs(N(rng)) * 2.f; break;            // one-signed positive
        case 4: v = -std::fabs(N(rng)) * 0.5f; break;          // one-signed negative
        case 5: v = N(rng) * 3000.f; break;                     // huge
        case 6: v = N(rng) * 1e-6f; break;                      // tiny: subnormal fp16 scale
        case 7: v = N(rng) * 1e-9f; break;                      // scale rounds to 0 in fp16
        case 8: v = float(int(U(rng) * 8.f)) * 0.5f; break;     // exact halves: rounding ties
        case 9: v = U(rng) * 70000.f; break;                    // beyond the fp16 range (inf in fp16)
        default: v = N(rng) * float(1 + (r % 5)); break;
      }
      row[d] = v;
    }
  }
  return x;
}

struct CacheCase {
  const char* kind;  // "fp16" or "int8"
  int num_kv_heads;
  int head_dim;
  int block_tokens;
  // > 0: the CUDA cache appends through append_qkv from fused q | k | v rows with q_heads query
  // heads and RoPE over rot dims; the CPU reference runs Ops::rope_apply on q and k, then append.
  int q_heads = 0;
  int rot = 0;
};

void run_case(const CacheCase& cc) {
  Device& G = *gpu();
  Device& C = *cpu_dev();
  INFO("cache." << cc.kind << " kv_heads=" << cc.num_kv_heads << " head_dim=" << cc.head_dim
                << " block_tokens=" << cc.block_tokens);
  CacheParams p;
  p.num_layers = 2;
  p.num_kv_heads = cc.num_kv_heads;
  p.head_dim = cc.head_dim;
  p.block_tokens = cc.block_tokens;
  p.max_tokens = 1200;
  p.max_seqs = 5;
  std::shared_ptr<Cache> gc = registry().create_cache(cc.kind, p, G);
  std::shared_ptr<Cache> cc_cpu = registry().create_cache(cc.kind, p, C);
  const CacheInfo info = gc->info();
  REQUIRE(info.num_blocks == cc_cpu->info().num_blocks);
  const bool int8 = std::string(cc.kind) == "int8";
  const size_t H = size_t(p.num_kv_heads), D = size_t(p.head_dim), bt = size_t(p.block_tokens);
  const size_t rows_per_layer = size_t(info.num_blocks) * H * bt;

  // Steps: (sequence ids, q_lens, past_lens); sequence 1 is freed before the last two steps and
  // sequence 3 reuses its blocks.
  struct Step {
    std::vector<int> seqs, q, past;
    int free_before = -1;
  };
  const std::vector<Step> steps = {
      {{0, 1, 2}, {5, 37, 1}, {0, 0, 0}},
      {{0, 2}, {1, 20}, {5, 1}},
      {{1, 0, 2}, {3, 1, 1}, {37, 6, 21}},
      {{3, 0}, {50, 1}, {0, 7}, 1},
      {{2, 3, 0}, {1, 1, 16}, {22, 50, 8}},
      {{2}, {1}, {23}},  // one token: append_qkv rotates q in place
  };
  std::mt19937 rng(1234 + cc.head_dim + 7 * cc.num_kv_heads);
  bool poisoned = false;
  int step_index = 0;
  for (const Step& st : steps) {
    INFO("step " << step_index);
    if (st.free_before >= 0) {
      check(gc->free_sequence(st.free_before));
      check(cc_cpu->free_sequence(st.free_before));
    }
    DeviceStep gs(G, st.q, st.past, st.seqs), cs(C, st.q, st.past, st.seqs);
    check(gc->reserve(gs.step));
    check(cc_cpu->reserve(cs.step));
    const size_t T = size_t(gs.step.num_tokens);
    for (int layer = 0; layer < p.num_layers; ++layer) {
      KvView gv, cv;
      check(gc->view(layer, gs.step, &gv));
      check(cc_cpu->view(layer, cs.step, &cv));
      CHECK(std::string(gv.layout) == (int8 ? "paged_u8_token_head" : "paged_f16"));
      if (!poisoned) {  // poison every layer's GPU blocks once, before anything is written
        for (int l2 = 0; l2 < p.num_layers; ++l2) {
          KvView pv;
          check(gc->view(l2, gs.step, &pv));
          attention_test::fill_layer_bytes(G, pv, rows_per_layer, 0xA5);
        }
        poisoned = true;
      }
      const std::vector<float> k = random_rows(rng, T * H, int(D), layer + step_index);
      const std::vector<float> v = random_rows(rng, T * H, int(D), layer + step_index + 5);
      Buffer<float> gk(G, k.size(), MemCategory::weights), gvv(G, v.size(), MemCategory::weights);
      gk.upload(k.data(), k.size());
      gvv.upload(v.data(), v.size());
      std::vector<float> ck = k, cvv = v;
      const int64_t Ti = int64_t(T), Hi = int64_t(H), Di = int64_t(D);
      if (cc.q_heads > 0) {
        // q | k | v rows [T, (Hq + 2H)·D] and a cos | sin table [T, rot] of random angles
        const int64_t Hq = cc.q_heads, W = (Hq + 2 * Hi) * Di, rot = cc.rot;
        std::normal_distribution<float> N(0.f, 2.f);
        std::uniform_real_distribution<float> A(-40.f, 40.f);
        std::vector<float> qkv(size_t(Ti * W)), cq(size_t(Ti * Hq * Di)), tab(size_t(Ti * rot));
        for (int64_t t = 0; t < Ti; ++t) {
          for (int64_t j = 0; j < Hq * Di; ++j) qkv[size_t(t * W + j)] = cq[size_t(t * Hq * Di + j)] = N(rng);
          std::copy(k.begin() + t * Hi * Di, k.begin() + (t + 1) * Hi * Di, qkv.begin() + t * W + Hq * Di);
          std::copy(v.begin() + t * Hi * Di, v.begin() + (t + 1) * Hi * Di, qkv.begin() + t * W + (Hq + Hi) * Di);
          for (int64_t i = 0; i < rot / 2; ++i) {
            const float a = A(rng);
            tab[size_t(t * rot + i)] = std::cos(a);
            tab[size_t(t * rot + rot / 2 + i)] = std::sin(a);
          }
        }
        // Qwen v1's logn factors (≥ 1) on every other layer, none on the others
        std::vector<float> qs(static_cast<size_t>(Ti));
        std::uniform_real_distribution<float> F(1.f, 1.5f);
        for (float& f : qs) f = F(rng);
        const bool scaled = layer % 2 == 1;
        Buffer<float> gqkv(G, qkv.size(), MemCategory::weights), gtab(G, tab.size(), MemCategory::weights),
            gq(G, cq.size(), MemCategory::weights), gqs(G, qs.size(), MemCategory::weights);
        gqkv.upload(qkv.data(), qkv.size());
        gtab.upload(tab.data(), tab.size());
        gqs.upload(qs.data(), qs.size());
        REQUIRE(gc->appends_qkv(int(rot)));
        CHECK_FALSE(cc_cpu->appends_qkv(int(rot)));  // the CPU caches leave it to the model's ops
        // one token: q rotated in place in the q | k | v row, as the model does
        const TensorView q_out = Ti == 1 ? gqkv.view(DType::f32, {1, Hq, Di}) : gq.view(DType::f32, {Ti, Hq, Di});
        check(gc->append_qkv(layer, gs.step, gqkv.view(DType::f32, {Ti, W}), q_out, gtab.view(DType::f32, {Ti, rot}),
                             scaled ? gqs.data() : nullptr));
        const TensorView ctab(tab.data(), DType::f32, {Ti, rot});
        check(C.ops().rope_apply(TensorView(cq.data(), DType::f32, {Ti, Hq, Di}), ctab));
        if (scaled) check(C.ops().scale_rows(TensorView(cq.data(), DType::f32, {Ti, Hq * Di}), qs.data()));
        check(C.ops().rope_apply(TensorView(ck.data(), DType::f32, {Ti, Hi, Di}), ctab));
        check(cc_cpu->append(layer, cs.step, TensorView(ck.data(), DType::f32, {Ti, Hi, Di}),
                             TensorView(cvv.data(), DType::f32, {Ti, Hi, Di})));
        check(G.queue().wait());
        std::vector<float> gqr(cq.size());
        if (Ti == 1) {
          check(G.queue().copy_d2h(gqr.data(), gqkv.data(), gqr.size() * sizeof(float)));
        } else {
          check(G.queue().copy_d2h(gqr.data(), gq.data(), gqr.size() * sizeof(float)));
        }
        check(G.queue().wait());
        CHECK_MESSAGE(std::memcmp(gqr.data(), cq.data(), cq.size() * sizeof(float)) == 0,
                      "append_qkv's rotated q differs from Ops::rope_apply on the CPU (layer " << layer << ")");
      } else {
        check(gc->append(layer, gs.step, gk.view(DType::f32, {Ti, Hi, Di}), gvv.view(DType::f32, {Ti, Hi, Di})));
        check(cc_cpu->append(layer, cs.step, TensorView(ck.data(), DType::f32, {Ti, Hi, Di}),
                             TensorView(cvv.data(), DType::f32, {Ti, Hi, Di})));
        check(G.queue().wait());
      }
    }

    // Every live row of every sequence in the step, every layer: identical bits.
    for (int layer = 0; layer < p.num_layers; ++layer) {
      KvView gv, cv;
      check(gc->view(layer, gs.step, &gv));
      check(cc_cpu->view(layer, cs.step, &cv));
      REQUIRE(gv.max_blocks_per_seq == cv.max_blocks_per_seq);
      const size_t nb = size_t(gs.step.num_seqs) * size_t(gv.max_blocks_per_seq);
      const std::vector<int32_t> gtable = download<int32_t>(G, gv.block_table, nb);
      const std::vector<int32_t> ctable(cv.block_table, cv.block_table + nb);
      REQUIRE(gtable == ctable);
      const size_t elem = int8 ? 1 : 2;
      const auto gk = download<uint8_t>(G, gv.k, rows_per_layer * D * elem);
      const auto gvd = download<uint8_t>(G, gv.v, rows_per_layer * D * elem);
      const auto* ck = static_cast<const uint8_t*>(cv.k);
      const auto* cvd = static_cast<const uint8_t*>(cv.v);
      std::vector<uint16_t> gks, gvs;
      std::vector<uint8_t> gkz, gvz;
      if (int8) {
        gks = download<uint16_t>(G, gv.k_scale, rows_per_layer);
        gvs = download<uint16_t>(G, gv.v_scale, rows_per_layer);
        gkz = download<uint8_t>(G, gv.k_zero, rows_per_layer);
        gvz = download<uint8_t>(G, gv.v_zero, rows_per_layer);
      }
      size_t rows_checked = 0, mismatches = 0;
      for (int si = 0; si < gs.step.num_seqs; ++si) {
        const int len = gs.step.past_lens[size_t(si)] + gs.step.q_lens[size_t(si)];
        for (int pos = 0; pos < len; ++pos) {
          const int32_t block = ctable[size_t(si) * size_t(cv.max_blocks_per_seq) + size_t(pos) / bt];
          for (size_t h = 0; h < H; ++h) {
            const size_t r = (size_t(block) * H + h) * bt + size_t(pos) % bt;
            bool same = std::memcmp(gk.data() + r * D * elem, ck + r * D * elem, D * elem) == 0 &&
                        std::memcmp(gvd.data() + r * D * elem, cvd + r * D * elem, D * elem) == 0;
            if (int8)
              same = same && gks[r] == cv.k_scale[r] && gvs[r] == cv.v_scale[r] && gkz[r] == cv.k_zero[r] &&
                     gvz[r] == cv.v_zero[r];
            if (!same && mismatches++ < 5)
              FAIL_CHECK("layer " << layer << " seq " << gs.step.seq_ids[size_t(si)] << " pos " << pos << " head " << h
                                  << ": CUDA and CPU rows differ");
            ++rows_checked;
          }
        }
      }
      CHECK(mismatches == 0);
      CHECK(rows_checked > 0);
    }
    ++step_index;
  }
}

}  // namespace

TEST_CASE("cache plugins declare the cuda backend") {
  const LoadedPlugin* f = registry().find(PluginKind::cache, "fp16");
  const LoadedPlugin* i = registry().find(PluginKind::cache, "int8");
  REQUIRE(f != nullptr);
  REQUIRE(i != nullptr);
  for (const LoadedPlugin* lp : {f, i}) {
    INFO(lp->info.full_name());
    CHECK(std::find(lp->info.backends.begin(), lp->info.backends.end(), BackendKind::cuda) != lp->info.backends.end());
    CHECK(std::find(lp->info.backends.begin(), lp->info.backends.end(), BackendKind::cpu) != lp->info.backends.end());
  }
}

TEST_CASE("cache.fp16 on CUDA stores the same fp16 bits as on the CPU") {
  KVRUN_SKIP_UNLESS(gpu() != nullptr, "no CUDA device");
  for (CacheCase c : {CacheCase{"fp16", 2, 128, 16}, CacheCase{"fp16", 8, 64, 16}, CacheCase{"fp16", 3, 40, 8},
                      CacheCase{"fp16", 1, 256, 32}})
    run_case(c);
}

TEST_CASE("cache.int8 on CUDA writes the same codes, scales and zero points as on the CPU") {
  KVRUN_SKIP_UNLESS(gpu() != nullptr, "no CUDA device");
  for (CacheCase c : {CacheCase{"int8", 2, 128, 16}, CacheCase{"int8", 8, 64, 16}, CacheCase{"int8", 3, 40, 8},
                      CacheCase{"int8", 1, 256, 32}, CacheCase{"int8", 4, 96, 16}})
    run_case(c);
}

TEST_CASE("append_qkv on CUDA (RoPE and the q | k | v split in the append) matches rope_apply + append on the CPU") {
  KVRUN_SKIP_UNLESS(gpu() != nullptr, "no CUDA device");
  // GQA and MHA, full and partial rotary, head_dim 64 / 128 / 256 and one not a multiple of 32
  for (const char* kind : {"fp16", "int8"})
    for (CacheCase c : {CacheCase{kind, 2, 128, 16, 8, 128}, CacheCase{kind, 4, 64, 16, 4, 32},
                        CacheCase{kind, 1, 256, 32, 3, 256}, CacheCase{kind, 3, 40, 8, 6, 24}}) {
      INFO("q_heads " << c.q_heads << " rot " << c.rot);
      run_case(c);
    }
}

TEST_CASE("cache append on CUDA allocates nothing") {
  KVRUN_SKIP_UNLESS(gpu() != nullptr, "no CUDA device");
  Device& G = *gpu();
  for (const char* kind : {"fp16", "int8"}) {
    INFO(kind);
    CacheParams p;
    p.num_layers = 1;
    p.num_kv_heads = 2;
    p.head_dim = 64;
    p.block_tokens = 16;
    p.max_tokens = 256;
    p.max_seqs = 2;
    std::shared_ptr<Cache> c = registry().create_cache(kind, p, G);
    DeviceStep s(G, {10, 3}, {0, 0}, {0, 1});
    check(c->reserve(s.step));
    Buffer<float> k(G, size_t(13 * 2 * 64), MemCategory::weights), v(G, size_t(13 * 2 * 64), MemCategory::weights);
    check(G.queue().fill_bytes(k.data(), 0, k.bytes()));
    check(G.queue().fill_bytes(v.data(), 0, v.bytes()));
    check(G.queue().wait());
    const MemoryStats before = G.memory_stats();
    check(c->append(0, s.step, k.view(DType::f32, {13, 2, 64}), v.view(DType::f32, {13, 2, 64})));
    check(G.queue().wait());
    const MemoryStats after = G.memory_stats();
    for (int cat = 0; cat < kMemCategories; ++cat) CHECK(after.current[cat] == before.current[cat]);
    CHECK(after.peak_total == before.peak_total);
  }
}
