// attention.naive's fused decode path on CUDA (decode_kernel + decode_combine_kernel in
// attention_naive_cuda.cu: steps where every sequence has exactly one query token, head_dim 64 and
// 128) against attention.naive on the CPU (the reference), on identical paged KV data and queries.
//
// Tolerance: relative L2 error ≤ 1e-4 over the whole output (the tolerance of the naive CUDA
// kernels in plugins/attention_flash/tests/test_attention_cuda.cpp: fp32 arithmetic on both sides,
// only the summation order differs — here also the softmax, which is online and never
// materialized), and the same bound for every (token, head) row on its own, so one wrong row or
// one key missed in a long sequence cannot hide in the average.
//
// Shapes: fp16, bf16 and int8 (paged_u8_token_head) caches; head_dim 64 and 128; MHA (1:1) and GQA
// 4:1, 3:1 and 7:1 (groups that do not fill the last head chunk of a block); single sequences of
// 1 … 8192 keys (8192: batch 1 split over 32 parts), ragged batches with kv lengths {1, 2, 63, 64,
// 65, 2047, 4096}, a batch of 64 sequences of 1 … 1056 keys (the issue-7 benchmark's range), 16-,
// 32- and 24-token blocks (24: not a power of two, and rows straddle blocks), a peaky softmax. Each
// shape also runs on an attention whose workspace holds two tokens' scores (fewer split parts fit).
// KV slots and blocks that no sequence owns hold NaN bits, and the block table's unused entries
// are −1, so an over-read fails; outputs are poisoned with NaN before each call, so a missed write
// fails; the workspace must not change during forward. Results must be bit-identical across
// repeated runs and between an eager run and a CUDA-graph replay — including a replay after the
// kv lengths changed on the device (the split ranges come from kv_len on the device). Mixed
// (prefill + decode) steps and head_dim 80 still take the three-kernel path and are checked too.
//
// bf16 output (Attention::writes_bf16, ABI 5): every decode step says yes on CUDA (no on the CPU,
// no for mixed steps and head_dim 80), and its bf16 output is the f32 output of the same call
// rounded to nearest even, bit for bit — split parts (the combine kernel) included.
//
// Late append: the decode kernel reads its first keys before its programmatic-dependent-launch
// wait, so one case makes the step's KV append end late (a slow kernel before it) over a poisoned
// cache and checks that the step's own key is still read as the append wrote it.
//
// Without a CUDA device every case prints "skipped: no CUDA device" and returns.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <memory>
#include <numeric>
#include <random>
#include <sstream>
#include <string>
#include <type_traits>
#include <vector>

#include "q_limbs.hpp"
#include "cuda_graph.hpp"
#include "paged_kv_test.hpp"
#include "devices.hpp"
#include "fixtures.hpp"
#include "kvrun/device.hpp"
#include "kvrun/dtype.hpp"
#include "kvrun/registry.hpp"

using namespace kvrun;
using namespace kvrun::attention_test;

namespace {

constexpr double kTol = 1e-4;         // relative L2, whole output and per (token, head) row
constexpr int64_t kMaxKv = 8448;      // AttentionParams::max_kv_len of the attentions under test
constexpr int kMaxStepTokens = 512;   // AttentionParams::max_tokens_per_step

using test::cpu_dev;
using test::gpu;
using test::registry;

// A step over sequences 0..n-1 with its device arrays in `dev`'s memory.
// A decode step: one query token per sequence, kv lengths `kv`.
std::vector<int> ones(size_t n) { return std::vector<int>(n, 1); }
std::vector<int> pasts_of(const std::vector<int>& kv) {
  std::vector<int> p;
  for (int l : kv) p.push_back(l - 1);
  return p;
}

// Relative L2 errors of `got` against `ref`: over everything, and the largest over rows of D.
// Every element of `got` must be finite.
struct Err {
  double all = 0, worst_row = 0;
  int64_t worst = -1;  // index of the worst row
};

Err rel_l2(const std::vector<float>& got, const std::vector<float>& ref, int D) {
  REQUIRE(got.size() == ref.size());
  Err e;
  double num = 0, den = 0;
  size_t bad = 0;
  for (size_t r0 = 0; r0 < got.size(); r0 += size_t(D)) {
    double rn = 0, rd = 0;
    for (size_t i = r0; i < r0 + size_t(D); ++i) {
      if (!std::isfinite(got[i]) || !std::isfinite(ref[i])) {
        ++bad;
        continue;
      }
      rn += (double(got[i]) - ref[i]) * (double(got[i]) - ref[i]);
      rd += double(ref[i]) * ref[i];
    }
    num += rn;
    den += rd;
    const double er = std::sqrt(rn / std::max(rd, 1e-30));
    if (er > e.worst_row) {
      e.worst_row = er;
      e.worst = int64_t(r0 / size_t(D));
    }
  }
  CHECK_MESSAGE(bad == 0, bad << " of " << got.size() << " outputs are not finite");
  e.all = bad ? std::numeric_limits<double>::infinity() : std::sqrt(num / std::max(den, 1e-30));
  if (bad) e.worst_row = std::numeric_limits<double>::infinity();
  return e;
}

void check_close(const std::vector<float>& got, const std::vector<float>& ref, int D, const char* what) {
  const Err e = rel_l2(got, ref, D);
  INFO(what << ": rel L2 " << e.all << ", worst row " << e.worst << " rel L2 " << e.worst_row << " (tolerance "
            << kTol << ")");
  CHECK(e.all <= kTol);
  CHECK(e.worst_row <= kTol);
}


struct Shape {
  std::vector<int> kv;  // kv length of each sequence (q_len 1 each)
  int bt = 16;
  float q_std = 1.f;
};

std::string shape_string(const Shape& s) {
  std::ostringstream os;
  os << "bt " << s.bt << " q_std " << s.q_std << " kv {";
  const size_t n = std::min<size_t>(s.kv.size(), 12);
  for (size_t i = 0; i < n; ++i) os << (i ? ", " : "") << s.kv[i];
  if (s.kv.size() > n) os << ", … (" << s.kv.size() << " sequences)";
  os << "}";
  return os.str();
}

std::vector<Shape> decode_shapes() {
  std::vector<Shape> out;
  for (int kv : {1, 2, 63, 64, 65, 255, 256, 257, 511, 512, 513, 1000, 2047, 4096})
    out.push_back({{kv}});  // batch 1 (split from 512 keys; from 1024 with sixteen-warp blocks)
  out.push_back({{8192}});                                          // batch 1, long: 32 split parts
  out.push_back({{1, 2, 63, 64, 65, 2047, 4096}});                  // ragged
  out.push_back({{4096, 1, 2047, 16, 512, 64, 1024, 255}});         // ragged, many empty split parts
  out.push_back({{1, 2, 63, 64, 65, 2047, 4096}, 32});              // 32-token blocks
  out.push_back({{1, 2, 63, 64, 65, 1000, 3001}, 24});              // 24-token blocks (not a power of two)
  out.push_back({{700, 3, 2500}, 16, 4.f});                         // peaky softmax (running max moves)
  std::mt19937 rng(64);
  std::uniform_int_distribution<int> len(1, 1056);
  Shape b64;
  for (int i = 0; i < 64; ++i) b64.kv.push_back(len(rng));
  b64.kv[0] = 1;
  b64.kv[1] = 1056;
  out.push_back(b64);                                               // batch 64, issue 7's lengths
  return out;
}

AttentionParams params(const Config& c, int max_step_tokens = kMaxStepTokens) {
  return attention_params(c, kMaxKv, max_step_tokens);
}

// Every decode shape of one configuration and layout through naive CPU (reference) and naive CUDA
// (also with a workspace of two tokens' scores, which bounds the split parts); each CUDA result
// twice, bit-identical.
void run_config(const Config& c, Lay lay, const std::vector<Shape>& shapes) {
  Device& G = *gpu();
  Device& C = *cpu_dev();
  std::shared_ptr<Attention> ref = registry().create_attention("naive", params(c), C);
  std::shared_ptr<Attention> naive = registry().create_attention("naive", params(c), G);
  std::shared_ptr<Attention> naive_small = registry().create_attention("naive", params(c, 2), G);
  std::mt19937 rng(uint32_t(c.H * 1000 + c.Hkv * 100 + c.D + int(lay)));
  for (const Shape& sh : shapes) {
    INFO("H=" << c.H << " Hkv=" << c.Hkv << " D=" << c.D << " " << lay_name(lay) << " " << shape_string(sh));
    const HostKv hkv = make_kv(lay, c.Hkv, c.D, sh.bt, sh.kv, rng);
    const DeviceKv dkv(G, hkv);
    const DeviceStep cs(C, ones(sh.kv.size()), pasts_of(sh.kv)), gs(G, ones(sh.kv.size()), pasts_of(sh.kv));
    const std::vector<float> q = random_q(rng, sh.kv.size() * size_t(c.H) * size_t(c.D), sh.q_std);
    const std::vector<float> want = run_cpu(*ref, q, host_view(hkv), cs, c.H, c.D);
    const std::vector<float> got = run_gpu(G, *naive, q, dkv.view, gs, c.H, c.D);
    check_close(got, want, c.D, "naive CUDA");
    const std::vector<float> again = run_gpu(G, *naive, q, dkv.view, gs, c.H, c.D);
    CHECK_MESSAGE(std::memcmp(got.data(), again.data(), got.size() * sizeof(float)) == 0,
                  "two runs of the same step differ");
    const std::vector<float> small = run_gpu(G, *naive_small, q, dkv.view, gs, c.H, c.D);
    check_close(small, want, c.D, "naive CUDA (small workspace)");
    CHECK_FALSE(ref->writes_bf16(cs.step));
    const bool fused = c.D == 64 || c.D == 128;  // the decode kernel; head_dim 80 takes the three kernels
    CHECK(naive->writes_bf16(gs.step) == fused);
    if (fused) {
      check_bf16_of(run_gpu_bf16(G, *naive, q, dkv.view, gs, c.H, c.D), got, "naive CUDA, bf16 output");
      check_bf16_of(run_gpu_bf16(G, *naive_small, q, dkv.view, gs, c.H, c.D), small,
                    "naive CUDA (small workspace), bf16 output");
    }
  }
}

#define NEED_GPU() KVRUN_SKIP_UNLESS(gpu() != nullptr, "no CUDA device")

using test::cuda_graph_api;
using test::CudaGraphApi;

}  // namespace

TEST_CASE("naive fused decode on CUDA, MHA 1:1, head_dim 128") {
  NEED_GPU();
  for (Lay lay : {Lay::u8, Lay::f16, Lay::bf16}) run_config({4, 4, 128}, lay, decode_shapes());
}

TEST_CASE("naive fused decode on CUDA, MHA 1:1, head_dim 64") {
  NEED_GPU();
  for (Lay lay : {Lay::u8, Lay::f16, Lay::bf16}) run_config({4, 4, 64}, lay, decode_shapes());
}

TEST_CASE("naive fused decode on CUDA, GQA 4:1, head_dim 128") {
  NEED_GPU();
  for (Lay lay : {Lay::u8, Lay::f16, Lay::bf16}) run_config({8, 2, 128}, lay, decode_shapes());
}

TEST_CASE("naive fused decode on CUDA, GQA 4:1, head_dim 64") {
  NEED_GPU();
  for (Lay lay : {Lay::u8, Lay::f16, Lay::bf16}) run_config({8, 2, 64}, lay, decode_shapes());
}

TEST_CASE("naive fused decode on CUDA, GQA 7:1 and 3:1 (partly filled head chunks)") {
  NEED_GPU();
  std::vector<Shape> shapes = {{{1}}, {{65}}, {{4096}}, {{1, 2, 63, 64, 65, 2047, 4096}}, {{300, 9, 1500}, 24, 3.f}};
  for (Lay lay : {Lay::u8, Lay::f16, Lay::bf16}) {
    run_config({14, 2, 128}, lay, shapes);
    run_config({6, 2, 64}, lay, shapes);
  }
}

TEST_CASE("naive fused decode on CUDA, Qwen-7B heads (32:32, head_dim 128), batch 1 at 8192 keys and batch 64") {
  NEED_GPU();
  std::mt19937 rng(7);
  std::uniform_int_distribution<int> len(33, 1056);
  Shape b64;
  for (int i = 0; i < 64; ++i) b64.kv.push_back(len(rng));
  for (Lay lay : {Lay::u8, Lay::f16}) run_config({32, 32, 128}, lay, {{{8192}}, b64});
}

// The decode kernel loads its first round of keys before its programmatic-dependent-launch wait and
// the step's own key — the one the KV append of the same step writes — again after it
// (plugins/common/paged_decode.cu). Here the append is made to end late: the kernel before it, an
// RMSNorm over 8 rows of 4 Mi values (one block per row, about a millisecond), lets the next launch
// go at its start, so the append and then the attention launch at once, and the append waits for it
// before it writes. The cache memory is poisoned before anything is written (NaN fp16 data and
// scales), so an own key read before the append wrote it spoils the output: NaN, or, where the
// merges of partial states drop a NaN state, far outside the tolerance (a module without the re-read
// failed with relative error 0.95, session 16). Both caches through their plain append;
// ragged lengths that put the own key in a warp's first round (short sequences) and in later rounds
// and split parts (long ones); 16- and 24-token blocks (for u8 the aligned and the unaligned load
// paths); GQA 2:1 and MHA (one head per block: the 16-warp blocks, whose first round is early for
// fp16 too — fp16 with 1- or 4-warp blocks waits before its first load). Reference: the same
// appends on the CPU caches and naive attention on the CPU. (Without programmatic dependent launch
// — before sm_90, or KVRUN_CUDA_PDL=0 — there is no overlap and the case checks only the results.)
TEST_CASE("naive fused decode reads the step's own key after the append, also when the append ends late") {
  NEED_GPU();
  Device& G = *gpu();
  Device& C = *cpu_dev();
  const int64_t slow_rows = 8, slow_cols = int64_t(1) << 22;
  Buffer<float> slow(G, size_t(slow_rows * slow_cols), MemCategory::workspace);
  Buffer<float> slow_w(G, size_t(slow_cols), MemCategory::weights);
  check(G.queue().fill_bytes(slow.data(), 0x3C, slow.bytes()));  // 0.0115 each
  check(G.queue().fill_bytes(slow_w.data(), 0x3F, slow_w.bytes()));
  const std::vector<int> kv = {1, 2, 15, 16, 17, 64, 300, 1000};
  std::mt19937 rng(99);
  std::normal_distribution<float> N(0.f, 1.f);
  auto randn = [&](size_t n) {
    std::vector<float> x(n);
    for (float& v : x) v = N(rng);
    return x;
  };
  // GQA 2:1 (blocks of two query heads: 4 warps), MHA (one head per block: 8 sequences × 4 heads
  // take the 16-warp blocks on a GPU of 32 SMs or more)
  for (const Config c : {Config{8, 4, 128}, Config{4, 4, 128}})
  for (const char* kind : {"int8", "fp16"}) {
    std::shared_ptr<Attention> ref = registry().create_attention("naive", params(c), C);
    std::shared_ptr<Attention> naive = registry().create_attention("naive", params(c), G);
    for (int bt : {16, 24}) {
      INFO("H=" << c.H << " Hkv=" << c.Hkv << ", cache." << kind << ", " << bt << "-token blocks");
      CacheParams p;
      p.num_layers = 1;
      p.num_kv_heads = c.Hkv;
      p.head_dim = c.D;
      p.block_tokens = bt;
      p.max_tokens = 4096;
      p.max_seqs = int(kv.size());
      std::shared_ptr<Cache> gc = registry().create_cache(kind, p, G);
      std::shared_ptr<Cache> cc = registry().create_cache(kind, p, C);
      const size_t rows = size_t(gc->info().num_blocks) * size_t(c.Hkv) * size_t(bt);
      const int64_t Hkv = c.Hkv, D = c.D;
      // Prefill every sequence but its last key (sequences of one key have none).
      std::vector<int> pre_seqs, pre_q, pre_past;
      for (size_t i = 0; i < kv.size(); ++i)
        if (kv[i] > 1) {
          pre_seqs.push_back(int(i));
          pre_q.push_back(kv[i] - 1);
          pre_past.push_back(0);
        }
      {
        const DeviceStep gs(G, pre_q, pre_past, pre_seqs), cs(C, pre_q, pre_past, pre_seqs);
        check(gc->reserve(gs.step));
        check(cc->reserve(cs.step));
        KvView pv;
        check(gc->view(0, gs.step, &pv));
        fill_layer_bytes(G, pv, rows, 0xFF);  // fp16 NaN data, NaN int8 scales
        const int64_t T = gs.step.num_tokens;
        const std::vector<float> k = randn(size_t(T * Hkv * D)), v = randn(size_t(T * Hkv * D));
        Buffer<float> gk(G, k.size(), MemCategory::weights), gv(G, v.size(), MemCategory::weights);
        gk.upload(k.data(), k.size());
        gv.upload(v.data(), v.size());
        check(gc->append(0, gs.step, gk.view(DType::f32, {T, Hkv, D}), gv.view(DType::f32, {T, Hkv, D})));
        std::vector<float> ck = k, cv = v;
        check(cc->append(0, cs.step, TensorView(ck.data(), DType::f32, {T, Hkv, D}),
                         TensorView(cv.data(), DType::f32, {T, Hkv, D})));
        check(G.queue().wait());
      }
      // The decode step: every sequence's own key appended after the slow kernel, then attention.
      const DeviceStep gs(G, ones(kv.size()), pasts_of(kv)), cs(C, ones(kv.size()), pasts_of(kv));
      check(gc->reserve(gs.step));
      check(cc->reserve(cs.step));
      KvView gview, cview;
      check(gc->view(0, gs.step, &gview));
      check(cc->view(0, cs.step, &cview));
      const int64_t S = int64_t(kv.size());
      const std::vector<float> k = randn(size_t(S * Hkv * D)), v = randn(size_t(S * Hkv * D));
      const std::vector<float> q = random_q(rng, size_t(S) * size_t(c.H) * size_t(c.D), 1.f);
      Buffer<float> gk(G, k.size(), MemCategory::weights), gv(G, v.size(), MemCategory::weights),
          gq(G, q.size(), MemCategory::weights), gout(G, q.size(), MemCategory::weights);
      gk.upload(k.data(), k.size());
      gv.upload(v.data(), v.size());
      gq.upload(q.data(), q.size());
      check(G.queue().fill_bytes(gout.data(), 0xFF, gout.bytes()));
      const TensorView big = slow.view(DType::f32, {slow_rows, slow_cols});
      check(G.ops().rms_norm(big, big, slow_w.view(DType::f32, {slow_cols}), 1e-6f));
      check(gc->append(0, gs.step, gk.view(DType::f32, {S, Hkv, D}), gv.view(DType::f32, {S, Hkv, D})));
      check(naive->forward(gout.view(DType::f32, {S, c.H, c.D}), gq.view(DType::f32, {S, c.H, c.D}), gview, gs.step));
      check(G.queue().wait());
      const std::vector<float> got = gout.to_host();
      std::vector<float> ck = k, cv = v;
      check(cc->append(0, cs.step, TensorView(ck.data(), DType::f32, {S, Hkv, D}),
                       TensorView(cv.data(), DType::f32, {S, Hkv, D})));
      const std::vector<float> want = run_cpu(*ref, q, cview, cs, c.H, c.D);
      check_close(got, want, c.D, "naive CUDA after a late append");
    }
  }
}

// A NaN in the cache (an fp16 value past the range, a NaN int8 scale) makes its key's score NaN;
// the CPU's softmax then gives NaN for every query head of that KV head, and so must the decode
// kernel — not a finite result of the other keys, which its merges of partial states (row groups,
// warps, split parts) used to give by treating a NaN state as one without keys. Keys poisoned in a
// first round, in the step's last key, in a middle split part (2000 keys: the step splits); MHA
// and GQA 4:1; the suite runs it with automatic, 1- and 4-warp blocks. The other rows stay finite
// and within the tolerance.
TEST_CASE("naive fused decode: a NaN key gives NaN rows, as on the CPU, through every merge") {
  NEED_GPU();
  Device& G = *gpu();
  Device& C = *cpu_dev();
  const std::vector<int> kv = {1, 40, 300, 2000};
  struct Poison {
    int s, kvh, pos;
  };
  for (const Config c : {Config{4, 4, 128}, Config{8, 2, 64}}) {
    std::shared_ptr<Attention> ref = registry().create_attention("naive", params(c), C);
    std::shared_ptr<Attention> naive = registry().create_attention("naive", params(c), G);
    const std::vector<Poison> poisons = {{1, 0, 7}, {2, c.Hkv - 1, 299}, {3, 0, 1000}};
    for (Lay lay : {Lay::u8, Lay::f16, Lay::bf16}) {
      INFO("H=" << c.H << " Hkv=" << c.Hkv << " D=" << c.D << " " << lay_name(lay));
      std::mt19937 rng(uint32_t(17 + c.D + int(lay)));
      HostKv hkv = make_kv(lay, c.Hkv, c.D, 16, kv, rng);
      for (const Poison& pz : poisons) poison_key(hkv, pz.s, pz.kvh, pz.pos);
      const DeviceKv dkv(G, hkv);
      const DeviceStep cs(C, ones(kv.size()), pasts_of(kv)), gs(G, ones(kv.size()), pasts_of(kv));
      const std::vector<float> q = random_q(rng, kv.size() * size_t(c.H) * size_t(c.D), 1.f);
      const std::vector<float> want = run_cpu(*ref, q, host_view(hkv), cs, c.H, c.D);
      const std::vector<float> got = run_gpu(G, *naive, q, dkv.view, gs, c.H, c.D);
      // the reference's NaN rows are those of the poisoned (sequence, KV head) pairs
      const int Gq = c.H / c.Hkv;
      for (int si = 0; si < int(kv.size()); ++si)
        for (int h = 0; h < c.H; ++h) {
          bool poisoned = false;
          for (const Poison& pz : poisons) poisoned = poisoned || (pz.s == si && pz.kvh == h / Gq);
          INFO("sequence " << si << " (" << kv[size_t(si)] << " keys), query head " << h);
          REQUIRE(std::isnan(want[(size_t(si) * size_t(c.H) + size_t(h)) * size_t(c.D)]) == poisoned);
        }
      const auto [got_ok, want_ok] = nan_rows_match(got, want, c.D);
      check_close(got_ok, want_ok, c.D, "naive CUDA, rows without a NaN key");
    }
  }
}

TEST_CASE("naive on CUDA: mixed steps and head_dim 80 still take the three-kernel path") {
  NEED_GPU();
  Device& G = *gpu();
  Device& C = *cpu_dev();
  for (Lay lay : {Lay::u8, Lay::f16}) {
    // head_dim 80 decode (fused path is for 64/128 only).
    run_config({6, 2, 80}, lay, {{{1}}, {{65}}, {{1, 2, 63, 64, 65, 2047, 4096}}});
    // A step with one decode and one 3-token sequence (not a decode step).
    const Config c{8, 2, 128};
    INFO(lay_name(lay) << " mixed step");
    std::shared_ptr<Attention> ref = registry().create_attention("naive", params(c), C);
    std::shared_ptr<Attention> naive = registry().create_attention("naive", params(c), G);
    std::mt19937 rng(11);
    const std::vector<int> q_lens = {1, 3}, pasts = {1000, 50};
    const HostKv hkv = make_kv(lay, c.Hkv, c.D, 16, {1001, 53}, rng);
    const DeviceKv dkv(G, hkv);
    const DeviceStep cs(C, q_lens, pasts), gs(G, q_lens, pasts);
    const std::vector<float> q = random_q(rng, size_t(4 * c.H * c.D), 1.f);
    check_close(run_gpu(G, *naive, q, dkv.view, gs, c.H, c.D), run_cpu(*ref, q, host_view(hkv), cs, c.H, c.D), c.D,
                "naive CUDA, mixed step");
    CHECK_FALSE(naive->writes_bf16(gs.step));  // not a decode step: f32 only
    Buffer<float> gq(G, q.size(), MemCategory::weights);
    Buffer<uint16_t> gout(G, q.size(), MemCategory::weights);
    const Status st = naive->forward(gout.view(DType::bf16, {4, c.H, c.D}), gq.view(DType::f32, {4, c.H, c.D}),
                                     dkv.view, gs.step);
    CHECK_FALSE(st.ok());
    CHECK(st.message.find("writes_bf16") != std::string::npos);
  }
}

// The decode step captured in a CUDA graph (split parts on: few sequences, long caches) replays
// bit-identically to an eager run, and still computes the right thing after the kv lengths
// changed on the device (same step shape and max_kv_len, as the model replays its graphs).
TEST_CASE("naive fused decode replays from a CUDA graph, also after the kv lengths change") {
  NEED_GPU();
  const CudaGraphApi api = cuda_graph_api();
  KVRUN_SKIP_UNLESS(api.ok(), "libcudart graph API not found in the process");
  Device& G = *gpu();
  Device& C = *cpu_dev();
  const Config c{8, 2, 128};
  for (Lay lay : {Lay::u8, Lay::f16}) {
    INFO(lay_name(lay));
    const std::vector<int> kv_a = {4096, 100, 1, 700}, kv_b = {300, 4096, 1, 1500};
    std::vector<int> kv_max;
    for (size_t i = 0; i < kv_a.size(); ++i) kv_max.push_back(std::max(kv_a[i], kv_b[i]));
    std::mt19937 rng(21);
    const HostKv hkv = make_kv(lay, c.Hkv, c.D, 16, kv_max, rng);
    const DeviceKv dkv(G, hkv);
    std::shared_ptr<Attention> ref = registry().create_attention("naive", params(c), C);
    std::shared_ptr<Attention> naive = registry().create_attention("naive", params(c), G);
    const int64_t T = int64_t(kv_a.size());
    const std::vector<float> qh = random_q(rng, size_t(T * c.H * c.D), 1.f);
    Buffer<float> q(G, qh.size(), MemCategory::weights), out(G, qh.size(), MemCategory::weights);
    q.upload(qh.data(), qh.size());
    DeviceStep gs(G, ones(kv_a.size()), pasts_of(kv_a));
    const DeviceStep gs_b(G, ones(kv_b.size()), pasts_of(kv_b));
    REQUIRE(gs.step.max_kv_len == gs_b.step.max_kv_len);  // the graph's key: same shape and bound
    auto poison = [&] {
      check(G.queue().fill_bytes(out.data(), 0xFF, out.bytes()));
      check(G.queue().wait());
    };
    auto forward = [&](const DeviceStep& s) {
      check(naive->forward(out.view(DType::f32, {T, c.H, c.D}), q.view(DType::f32, {T, c.H, c.D}), dkv.view, s.step));
    };
    poison();
    forward(gs);
    check(G.queue().wait());
    const std::vector<float> eager_a = out.to_host();
    poison();
    forward(gs_b);
    check(G.queue().wait());
    const std::vector<float> eager_b = out.to_host();
    {
      const DeviceStep cs_a(C, ones(kv_a.size()), pasts_of(kv_a)), cs_b(C, ones(kv_b.size()), pasts_of(kv_b));
      check_close(eager_a, run_cpu(*ref, qh, host_view(hkv), cs_a, c.H, c.D), c.D, "eager, lengths A");
      check_close(eager_b, run_cpu(*ref, qh, host_view(hkv), cs_b, c.H, c.D), c.D, "eager, lengths B");
    }
    poison();
    void* stream = G.queue().native_handle();
    REQUIRE(api.begin(stream, 0 /* cudaStreamCaptureModeGlobal: an allocation or host sync would fail */) == 0);
    forward(gs);
    void* graph = nullptr;
    REQUIRE(api.end(stream, &graph) == 0);
    void* exec = nullptr;
    REQUIRE(api.instantiate(&exec, graph, 0) == 0);
    for (int rep = 0; rep < 2; ++rep) {
      poison();
      REQUIRE(api.launch(exec, stream) == 0);
      check(G.queue().wait());
      const std::vector<float> got = out.to_host();
      CHECK_MESSAGE(std::memcmp(got.data(), eager_a.data(), got.size() * sizeof(float)) == 0,
                    "graph replay (lengths A) differs from the eager run");
    }
    // New lengths in the same device array the graph reads.
    std::vector<int32_t> b32(kv_b.begin(), kv_b.end());
    gs.kv_len.upload(b32.data(), b32.size());
    check(G.queue().wait());
    for (int rep = 0; rep < 2; ++rep) {
      poison();
      REQUIRE(api.launch(exec, stream) == 0);
      check(G.queue().wait());
      const std::vector<float> got = out.to_host();
      CHECK_MESSAGE(std::memcmp(got.data(), eager_b.data(), got.size() * sizeof(float)) == 0,
                    "graph replay (lengths B) differs from the eager run with lengths B");
    }
    api.exec_destroy(exec);
    api.graph_destroy(graph);
  }
}

TEST_CASE("int8 decode arithmetic: q as three int8 limbs gives Σ q·(k − z) to 2e-5 of Σ |q|·|k − z| (CPU)") {
  // The decode kernel's dp4a path, replayed on the host: a row of 128 query values in lanes of 16,
  // each lane's scale from its max, limbs per value, integer sums per lane, then
  // qs·(S0 + S1/128 + S2/128²) − z·Σq per lane. Includes rows with an outlier (100× the rest) and
  // tiny and large rows. (The cache's own rounding is 1/255 of each row's range.)
  using namespace kvrun::paged_decode;
  std::mt19937_64 rng(77);
  std::normal_distribution<float> nd(0.f, 1.f);
  std::uniform_int_distribution<int> code(0, 255);
  double worst = 0;
  for (int trial = 0; trial < 400; ++trial) {
    const float scale = trial % 4 == 0 ? 1e-6f : trial % 4 == 1 ? 1e4f : 1.f;
    float q[128];
    for (float& v : q) v = nd(rng) * scale;
    if (trial % 3 == 0) q[trial % 128] *= 100.f;
    const int z = code(rng);
    double exact = 0, mag = 0, got = 0;
    for (int lane = 0; lane < 8; ++lane) {  // 16 values per lane, each lane its own scale
      float mx = 0.f;
      for (int i = 0; i < 16; ++i) mx = std::max(mx, std::fabs(q[lane * 16 + i]));
      const int e = q_limb_exponent(mx);
      const float inv = std::ldexp(1.f, 6 - e), qs = std::ldexp(1.f, e - 6);
      long long s[3] = {0, 0, 0};
      float qsum = 0.f;
      for (int i = 0; i < 16; ++i) {
        const float v = q[lane * 16 + i];
        const int k = code(rng);
        int l[3];
        q_limb_split(v * inv, l);
        for (int j = 0; j < 3; ++j) {
          REQUIRE(std::abs(l[j]) <= 64);
          s[j] += (long long)l[j] * k;
        }
        qsum += v;
        exact += double(v) * (k - z);
        mag += std::fabs(double(v)) * std::abs(k - z);
      }
      const float lk = std::fma(float(s[2]), 1.f / 16384.f, std::fma(float(s[1]), 1.f / 128.f, float(s[0])));
      got += double(std::fma(qs, lk, -float(z) * qsum));
    }
    worst = std::max(worst, std::fabs(got - exact) / mag);
  }
  INFO("worst |Δ| / Σ|q||k − z| = " << worst);
  CHECK(worst < 2e-5);  // fp32 cancellation of qs·Σ l·k against z·Σ q; far below the cache's 1/255
}
