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

#include "cuda_graph.hpp"
#include "devices.hpp"
#include "fixtures.hpp"
#include "kvrun/device.hpp"
#include "kvrun/dtype.hpp"
#include "kvrun/registry.hpp"

using namespace kvrun;

namespace {

constexpr double kTol = 1e-4;         // relative L2, whole output and per (token, head) row
constexpr int64_t kMaxKv = 8448;      // AttentionParams::max_kv_len of the attentions under test
constexpr int kMaxStepTokens = 512;   // AttentionParams::max_tokens_per_step

using test::cpu_dev;
using test::gpu;
using test::registry;

// A step over sequences 0..n-1 with its device arrays in `dev`'s memory.
struct DeviceStep {
  StepBatch step;
  Buffer<int32_t> q_start, kv_len, positions, token_seq;

  DeviceStep(Device& dev, const std::vector<int>& q_lens, const std::vector<int>& pasts) {
    StepBatch& s = step;
    s.num_seqs = int(q_lens.size());
    s.seq_ids.resize(q_lens.size());
    std::iota(s.seq_ids.begin(), s.seq_ids.end(), 0);
    s.q_lens = q_lens;
    s.past_lens = pasts;
    s.q_starts = {0};
    std::vector<int32_t> kvl, pos, tseq;
    for (int i = 0; i < s.num_seqs; ++i) {
      s.q_starts.push_back(s.q_starts.back() + q_lens[size_t(i)]);
      kvl.push_back(pasts[size_t(i)] + q_lens[size_t(i)]);
      s.prompt_lens.push_back(kvl.back());
      s.max_q_len = std::max(s.max_q_len, q_lens[size_t(i)]);
      s.max_kv_len = std::max(s.max_kv_len, kvl.back());
      for (int j = 0; j < q_lens[size_t(i)]; ++j) {
        pos.push_back(pasts[size_t(i)] + j);
        tseq.push_back(i);
      }
    }
    s.num_tokens = s.q_starts.back();
    auto up = [&](Buffer<int32_t>& b, const std::vector<int32_t>& v) {
      b = Buffer<int32_t>(dev, std::max<size_t>(v.size(), 1), MemCategory::weights);
      b.upload(v.data(), v.size());
    };
    up(q_start, std::vector<int32_t>(s.q_starts.begin(), s.q_starts.end()));
    up(kv_len, kvl);
    up(positions, pos);
    up(token_seq, tseq);
    s.d_q_start = q_start.data();
    s.d_kv_len = kv_len.data();
    s.d_positions = positions.data();
    s.d_token_seq = token_seq.data();
  }
};

// A decode step: one query token per sequence, kv lengths `kv`.
std::vector<int> ones(size_t n) { return std::vector<int>(n, 1); }
std::vector<int> pasts_of(const std::vector<int>& kv) {
  std::vector<int> p;
  for (int l : kv) p.push_back(l - 1);
  return p;
}

enum class Lay { f16, bf16, u8 };
const char* lay_name(Lay l) { return l == Lay::f16 ? "paged_f16" : l == Lay::bf16 ? "paged_bf16" : "paged_u8_token_head"; }

// Paged KV built by the test: blocks in shuffled order; slots and blocks no sequence owns hold NaN
// bits (int8: NaN scales), unused table entries are −1.
struct HostKv {
  Lay lay = Lay::f16;
  int Hkv = 0, D = 0, bt = 0, num_blocks = 0, max_blocks = 0;
  std::vector<int32_t> table;       // [num_seqs, max_blocks]
  std::vector<uint16_t> k16, v16;   // [num_blocks, Hkv, bt, D] fp16/bf16 bits
  std::vector<uint8_t> k8, v8;      // [num_blocks, Hkv, bt, D] codes
  std::vector<uint16_t> ks, vs;     // [num_blocks, Hkv, bt] fp16 bits
  std::vector<uint8_t> kz, vz;      // [num_blocks, Hkv, bt]
};

HostKv make_kv(Lay lay, int Hkv, int D, int bt, const std::vector<int>& kv_lens, std::mt19937& rng) {
  HostKv kv;
  kv.lay = lay;
  kv.Hkv = Hkv;
  kv.D = D;
  kv.bt = bt;
  std::vector<int> nblk;
  for (int l : kv_lens) nblk.push_back((l + bt - 1) / bt);
  kv.max_blocks = std::max(1, *std::max_element(nblk.begin(), nblk.end()) + 1);  // + 1: a −1 entry past the end
  kv.num_blocks = std::accumulate(nblk.begin(), nblk.end(), 0) + 3;  // spare blocks stay NaN
  std::vector<int32_t> ids(size_t(kv.num_blocks));
  std::iota(ids.begin(), ids.end(), 0);
  std::shuffle(ids.begin(), ids.end(), rng);
  kv.table.assign(kv_lens.size() * size_t(kv.max_blocks), -1);
  size_t next = 0;
  for (size_t s = 0; s < kv_lens.size(); ++s)
    for (int b = 0; b < nblk[s]; ++b) kv.table[s * size_t(kv.max_blocks) + size_t(b)] = ids[next++];
  const size_t rows = size_t(kv.num_blocks) * size_t(Hkv) * size_t(bt), n = rows * size_t(D);
  const uint16_t nan16 = 0x7e00;  // NaN in fp16 (as bf16 bits a finite value: bf16 uses 0x7fc0)
  std::normal_distribution<float> N(0.f, 1.f);
  std::uniform_int_distribution<int> code(0, 255), zero(100, 155);
  std::uniform_real_distribution<float> scale(0.005f, 0.02f);
  if (lay == Lay::u8) {
    kv.k8.assign(n, 0xCD);
    kv.v8.assign(n, 0xCD);
    kv.ks.assign(rows, nan16);
    kv.vs.assign(rows, nan16);
    kv.kz.assign(rows, 0xCD);
    kv.vz.assign(rows, 0xCD);
  } else {
    const uint16_t nanb = lay == Lay::f16 ? nan16 : uint16_t(0x7fc0);
    kv.k16.assign(n, nanb);
    kv.v16.assign(n, nanb);
  }
  for (size_t s = 0; s < kv_lens.size(); ++s) {
    for (int pos = 0; pos < kv_lens[s]; ++pos) {
      const int32_t block = kv.table[s * size_t(kv.max_blocks) + size_t(pos / bt)];
      for (int h = 0; h < Hkv; ++h) {
        const size_t r = (size_t(block) * size_t(Hkv) + size_t(h)) * size_t(bt) + size_t(pos % bt);
        for (int d = 0; d < D; ++d) {
          const size_t e = r * size_t(D) + size_t(d);
          switch (lay) {
            case Lay::f16: kv.k16[e] = f32_to_f16(N(rng)); kv.v16[e] = f32_to_f16(N(rng)); break;
            case Lay::bf16: kv.k16[e] = f32_to_bf16(N(rng)); kv.v16[e] = f32_to_bf16(N(rng)); break;
            case Lay::u8: kv.k8[e] = uint8_t(code(rng)); kv.v8[e] = uint8_t(code(rng)); break;
          }
        }
        if (lay == Lay::u8) {
          kv.ks[r] = f32_to_f16(scale(rng));
          kv.vs[r] = f32_to_f16(scale(rng));
          kv.kz[r] = uint8_t(zero(rng));
          kv.vz[r] = uint8_t(zero(rng));
        }
      }
    }
  }
  return kv;
}

KvView base_view(const HostKv& kv) {
  KvView v;
  v.layout = lay_name(kv.lay);
  v.num_kv_heads = kv.Hkv;
  v.head_dim = kv.D;
  v.block_tokens = kv.bt;
  v.max_blocks_per_seq = kv.max_blocks;
  return v;
}

KvView host_view(const HostKv& kv) {
  KvView v = base_view(kv);
  v.block_table = kv.table.data();
  if (kv.lay == Lay::u8) {
    v.k = kv.k8.data();
    v.v = kv.v8.data();
    v.k_scale = kv.ks.data();
    v.v_scale = kv.vs.data();
    v.k_zero = kv.kz.data();
    v.v_zero = kv.vz.data();
  } else {
    v.k = kv.k16.data();
    v.v = kv.v16.data();
  }
  return v;
}

// The same KV in a device's memory.
struct DeviceKv {
  Buffer<uint16_t> k16, v16, ks, vs;
  Buffer<uint8_t> k8, v8, kz, vz;
  Buffer<int32_t> table;
  KvView view;

  DeviceKv(Device& dev, const HostKv& kv) {
    auto up = [&](auto& buf, const auto& host) {
      using T = typename std::decay_t<decltype(host)>::value_type;
      buf = Buffer<T>(dev, host.size(), MemCategory::kv_cache);
      buf.upload(host.data(), host.size());
    };
    up(table, kv.table);
    view = base_view(kv);
    view.block_table = table.data();
    if (kv.lay == Lay::u8) {
      up(k8, kv.k8);
      up(v8, kv.v8);
      up(ks, kv.ks);
      up(vs, kv.vs);
      up(kz, kv.kz);
      up(vz, kv.vz);
      view.k = k8.data();
      view.v = v8.data();
      view.k_scale = ks.data();
      view.v_scale = vs.data();
      view.k_zero = kz.data();
      view.v_zero = vz.data();
    } else {
      up(k16, kv.k16);
      up(v16, kv.v16);
      view.k = k16.data();
      view.v = v16.data();
    }
  }
};

// out = attention(q) on the CPU (host memory) with a NaN-poisoned output.
std::vector<float> run_cpu(Attention& att, const std::vector<float>& q, const KvView& kv, const DeviceStep& s,
                           int H, int D) {
  std::vector<float> qc = q, out(q.size(), std::numeric_limits<float>::quiet_NaN());
  const int64_t T = s.step.num_tokens;
  check(att.forward(TensorView(out.data(), DType::f32, {T, H, D}), TensorView(qc.data(), DType::f32, {T, H, D}), kv,
                    s.step));
  return out;
}

// out = attention(q) on the GPU; the output buffer is poisoned with all bits set (NaN) first.
// Checks that forward leaves the workspace (size and device memory) as it was.
std::vector<float> run_gpu(Device& G, Attention& att, const std::vector<float>& q, const KvView& kv,
                           const DeviceStep& s, int H, int D) {
  const int64_t T = s.step.num_tokens;
  Buffer<float> gq(G, q.size(), MemCategory::weights), gout(G, q.size(), MemCategory::weights);
  gq.upload(q.data(), q.size());
  check(G.queue().fill_bytes(gout.data(), 0xFF, gout.bytes()));
  check(G.queue().wait());
  const size_t ws = att.workspace_bytes();
  const MemoryStats before = G.memory_stats();
  check(att.forward(gout.view(DType::f32, {T, H, D}), gq.view(DType::f32, {T, H, D}), kv, s.step));
  check(G.queue().wait());
  const MemoryStats after = G.memory_stats();
  CHECK(att.workspace_bytes() == ws);
  for (int c = 0; c < kMemCategories; ++c) CHECK(after.current[c] == before.current[c]);
  CHECK(after.peak[int(MemCategory::workspace)] == before.peak[int(MemCategory::workspace)]);
  CHECK(after.peak_total == before.peak_total);
  return gout.to_host();
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

std::vector<float> random_q(std::mt19937& rng, size_t n, float stdev) {
  std::normal_distribution<float> N(0.f, stdev);
  std::vector<float> q(n);
  for (auto& x : q) x = N(rng);
  return q;
}

struct Config {
  int H, Hkv, D;
};

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
    out.push_back({{kv}});                                          // batch 1 (split from 512 keys)
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
  AttentionParams p;
  p.num_heads = c.H;
  p.num_kv_heads = c.Hkv;
  p.head_dim = c.D;
  p.scale = 1.f / std::sqrt(float(c.D));
  p.max_tokens_per_step = max_step_tokens;
  p.max_kv_len = kMaxKv;
  return p;
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
    check_close(run_gpu(G, *naive_small, q, dkv.view, gs, c.H, c.D), want, c.D, "naive CUDA (small workspace)");
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
