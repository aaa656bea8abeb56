// attention.naive and attention.flash on CUDA against attention.naive on the CPU (the reference),
// on identical paged KV data and queries:
//   naive CUDA vs naive CPU: relative L2 error <= 1e-4 (fp32 arithmetic on both; only summation
//     order differs) for paged_f16, paged_bf16 and paged_u8_token_head;
//   flash CUDA vs naive CPU: relative L2 error <= 2e-3 for paged_f16 (Q and P rounded to fp16 for
//     the tensor cores, fp32 accumulation) and <= 1e-2 for paged_bf16 (Q and P rounded to bf16,
//     8-bit significand).
// Shapes: kv lengths 1 … 4096 (decode and prefill, around tile and block edges), a ragged batch
// (q_lens {1, 7, 300}, pasts {0, 100, 3000}), decode batches that take the split-K path, GQA 4:1
// and 1:1, head_dim 64 and 128 (and 80 for naive). Flash runs with its defaults (split-K on; run
// the suite with KVRUN_FLASH_SPLITK=0 for the unsplit path); its decode steps run the decode kernel
// it shares with naive (then naive's bound, and a bf16 output equal to the f32 one rounded), or
// its own tensor-core tiles with KVRUN_FLASH_DECODE=0 (meson test plugin_attention_flash_tiles). KV slots that no sequence owns hold NaN bits, so
// a kernel reading past a sequence's length fails; outputs are poisoned with NaN before each call,
// so a row it forgot to write fails. The workspace must not change size or grow during forward.
// The last cases run the attentions over the views of cache.fp16 / cache.int8 on both devices, and
// replay a decode step (append + flash with split-K + naive) from a CUDA graph.
//
// Without a CUDA device every case prints "skipped: no CUDA device" and returns.
#include <doctest/doctest.h>
#include <dlfcn.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
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
#include "paged_kv_test.hpp"
#include "devices.hpp"
#include "fixtures.hpp"
#include "kvrun/cpu/cpu.hpp"
#include "kvrun/device.hpp"
#include "kvrun/registry.hpp"
#include "kvrun/select.hpp"

using namespace kvrun;
using namespace kvrun::attention_test;

namespace {

constexpr double kTolNaive = 1e-4;
constexpr double kTolFlashF16 = 2e-3;
constexpr double kTolFlashBf16 = 1e-2;
constexpr int64_t kMaxKv = 4224;      // AttentionParams::max_kv_len of the attentions under test
constexpr int kMaxStepTokens = 512;   // AttentionParams::max_tokens_per_step

using test::cpu_dev;
using test::gpu;
using test::registry;

// A step over sequences 0..n-1 with its device arrays in `dev`'s memory.
// Relative L2 error of `got` against `ref`; every element of `got` must be finite.
double rel_l2(const std::vector<float>& got, const std::vector<float>& ref) {
  REQUIRE(got.size() == ref.size());
  double num = 0, den = 0;
  size_t bad = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    if (!std::isfinite(got[i]) || !std::isfinite(ref[i])) {
      ++bad;
      continue;
    }
    num += (double(got[i]) - ref[i]) * (double(got[i]) - ref[i]);
    den += double(ref[i]) * ref[i];
  }
  CHECK_MESSAGE(bad == 0, bad << " of " << got.size() << " outputs are not finite");
  return bad ? std::numeric_limits<double>::infinity() : std::sqrt(num / std::max(den, 1e-30));
}


struct Shape {
  std::vector<int> q_lens, pasts;
};

std::vector<Shape> shapes() {
  std::vector<Shape> out;
  for (int kv : {1, 2, 15, 16, 17, 63, 64, 65, 127, 129, 255, 256, 511, 512, 1000, 2047, 4096})
    out.push_back({{1}, {kv - 1}});  // decode of one sequence (split-K from 512 keys, 1024 with 16-warp blocks)
  for (int n : {1, 17, 64, 65, 200, 1024}) out.push_back({{n}, {0}});  // prefill
  out.push_back({{1, 7, 300}, {0, 100, 3000}});                          // ragged
  out.push_back({{1, 1, 1, 1}, {0, 63, 1000, 4095}});                    // decode batch, empty split parts
  out.push_back({{1, 1, 1, 1, 1, 1, 1, 1}, {4095, 0, 2046, 15, 511, 63, 1023, 255}});  // ragged decode batch
  out.push_back({{4, 2}, {4000, 10}});                                   // a few queries per sequence
  out.push_back({{129}, {2000}});                                        // prefill continued
  return out;
}

std::string shape_string(const Shape& s) {
  std::ostringstream os;
  os << "q_lens {";
  for (size_t i = 0; i < s.q_lens.size(); ++i) os << (i ? ", " : "") << s.q_lens[i];
  os << "} pasts {";
  for (size_t i = 0; i < s.pasts.size(); ++i) os << (i ? ", " : "") << s.pasts[i];
  os << "}";
  return os.str();
}

AttentionParams params(const Config& c, int max_step_tokens = kMaxStepTokens) {
  return attention_params(c, kMaxKv, max_step_tokens);
}

// Runs every shape of one configuration and layout through naive CPU (reference), naive CUDA
// (also with a workspace of two tokens, so the step is processed in many chunks) and, for
// fp16/bf16 with head_dim 64/128, flash CUDA.
void run_config(const Config& c, Lay lay) {
  Device& G = *gpu();
  Device& C = *cpu_dev();
  const AttentionParams p = params(c);
  std::shared_ptr<Attention> ref = registry().create_attention("naive", p, C);
  std::shared_ptr<Attention> naive = registry().create_attention("naive", p, G);
  std::shared_ptr<Attention> naive_small = registry().create_attention("naive", params(c, 2), G);
  const bool flash_ok = lay != Lay::u8 && (c.D == 64 || c.D == 128);
  std::shared_ptr<Attention> flash = flash_ok ? registry().create_attention("flash", p, G) : nullptr;
  CHECK(naive->workspace_bytes() > 0);
  CHECK(naive_small->workspace_bytes() < naive->workspace_bytes());
  if (flash) CHECK(flash->workspace_bytes() > 0);
  std::mt19937 rng(uint32_t(c.H * 1000 + c.Hkv * 100 + c.D + int(lay)));
  for (const Shape& sh : shapes()) {
    INFO("H=" << c.H << " Hkv=" << c.Hkv << " D=" << c.D << " " << lay_name(lay) << " " << shape_string(sh));
    std::vector<int> kv_lens;
    for (size_t i = 0; i < sh.q_lens.size(); ++i) kv_lens.push_back(sh.q_lens[i] + sh.pasts[i]);
    const int bt = sh.q_lens.size() == 1 && sh.q_lens[0] == 200 ? 32 : 16;  // one shape with 32-token blocks
    const HostKv hkv = make_kv(lay, c.Hkv, c.D, bt, kv_lens, rng);
    const DeviceKv dkv(G, hkv);
    const DeviceStep cs(C, sh.q_lens, sh.pasts), gs(G, sh.q_lens, sh.pasts);
    const float q_std = sh.q_lens.size() == 3 ? 3.f : 1.f;  // peakier softmax for the ragged batch
    const std::vector<float> q = random_q(rng, size_t(cs.step.num_tokens) * size_t(c.H) * size_t(c.D), q_std);
    const std::vector<float> want = run_cpu(*ref, q, host_view(hkv), cs, c.H, c.D);
    {
      const double e = rel_l2(run_gpu(G, *naive, q, dkv.view, gs, c.H, c.D), want);
      INFO("naive CUDA rel L2 " << e);
      CHECK(e <= kTolNaive);
    }
    if (sh.q_lens.size() == 3 || (sh.q_lens.size() == 1 && sh.q_lens[0] == 1024)) {
      const double e = rel_l2(run_gpu(G, *naive_small, q, dkv.view, gs, c.H, c.D), want);
      INFO("naive CUDA (2-token chunks) rel L2 " << e);
      CHECK(e <= kTolNaive);
    }
    if (flash) {
      const std::vector<float> got = run_gpu(G, *flash, q, dkv.view, gs, c.H, c.D);
      const double e = rel_l2(got, want);
      // decode steps take the decode kernel shared with naive (fp32 throughout: naive's bound),
      // unless KVRUN_FLASH_DECODE=0 keeps them on the tensor-core tiles
      const bool decode = gs.step.max_q_len == 1 && gs.step.num_tokens == gs.step.num_seqs;
      const char* env = std::getenv("KVRUN_FLASH_DECODE");
      const bool decode_kernel = decode && !(env && std::string(env) == "0");
      const double tol = decode_kernel ? kTolNaive : lay == Lay::f16 ? kTolFlashF16 : kTolFlashBf16;
      INFO("flash CUDA rel L2 " << e << " (tolerance " << tol << ")");
      CHECK(e <= tol);
      // a bf16 output (Attention::writes_bf16) for decode steps: the f32 output rounded, bit for bit
      CHECK(flash->writes_bf16(gs.step) == decode_kernel);
      if (decode_kernel) check_bf16_of(run_gpu_bf16(G, *flash, q, dkv.view, gs, c.H, c.D), got, "flash CUDA, bf16 output");
    }
  }
}

#define NEED_GPU() KVRUN_SKIP_UNLESS(gpu() != nullptr, "no CUDA device")

using test::cuda_graph_api;
using test::CudaGraphApi;

}  // namespace

TEST_CASE("attention plugins declare the cuda backend") {
  for (const char* name : {"naive", "flash"}) {
    const LoadedPlugin* lp = registry().find(PluginKind::attention, name);
    REQUIRE(lp != nullptr);
    INFO(lp->info.full_name());
    CHECK(std::find(lp->info.backends.begin(), lp->info.backends.end(), BackendKind::cuda) != lp->info.backends.end());
  }
}

TEST_CASE("attention on CUDA, GQA 4:1, head_dim 128") {
  NEED_GPU();
  for (Lay lay : {Lay::f16, Lay::bf16, Lay::u8}) run_config({8, 2, 128}, lay);
}

TEST_CASE("attention on CUDA, MHA 1:1, head_dim 64") {
  NEED_GPU();
  for (Lay lay : {Lay::f16, Lay::bf16, Lay::u8}) run_config({4, 4, 64}, lay);
}

TEST_CASE("attention on CUDA, GQA 4:1, head_dim 64") {
  NEED_GPU();
  for (Lay lay : {Lay::f16, Lay::bf16, Lay::u8}) run_config({8, 2, 64}, lay);
}

TEST_CASE("attention on CUDA, MHA 1:1, head_dim 128") {
  NEED_GPU();
  for (Lay lay : {Lay::f16, Lay::bf16, Lay::u8}) run_config({4, 4, 128}, lay);
}

TEST_CASE("attention.naive on CUDA, GQA 3:1, head_dim 80") {
  NEED_GPU();
  for (Lay lay : {Lay::f16, Lay::u8}) run_config({6, 2, 80}, lay);
}

// A NaN key score (a NaN or inf in the cache) gives NaN rows where the CPU reference has them:
// every merge of partial states (the decode kernel's, the tiles' warp merge with KVRUN_FLASH_DECODE=0,
// the split-K merge) takes a state whose l is NaN into the result instead of treating it as a
// state without keys. Decode steps (a key in a first tile, the step's last key, a middle split
// part) and a ragged prefill step (causal: only the queries at or after the poisoned key); the
// other rows stay within the path's tolerance. The suite runs it with both decode paths.
TEST_CASE("flash on CUDA: a NaN key gives NaN rows, as on the CPU") {
  NEED_GPU();
  Device& G = *gpu();
  Device& C = *cpu_dev();
  struct Poison {
    int s, kvh, pos;
  };
  struct Case {
    Shape shape;
    std::vector<Poison> poisons;  // kvh −1: the last KV head
  };
  const std::vector<Case> cases = {
      {{{1, 1, 1, 1}, {0, 39, 299, 1999}}, {{1, 0, 7}, {2, -1, 299}, {3, 0, 1000}}},
      {{{1, 7, 300}, {0, 100, 3000}}, {{1, 0, 103}, {2, -1, 3150}}},
  };
  const char* env = std::getenv("KVRUN_FLASH_DECODE");
  for (const Config c : {Config{4, 4, 128}, Config{8, 2, 64}}) {
    std::shared_ptr<Attention> ref = registry().create_attention("naive", params(c), C);
    std::shared_ptr<Attention> flash = registry().create_attention("flash", params(c), G);
    for (Lay lay : {Lay::f16, Lay::bf16}) {
      for (const Case& k : cases) {
        INFO("H=" << c.H << " Hkv=" << c.Hkv << " D=" << c.D << " " << lay_name(lay) << " " << shape_string(k.shape));
        std::vector<int> kv_lens;
        for (size_t i = 0; i < k.shape.q_lens.size(); ++i) kv_lens.push_back(k.shape.q_lens[i] + k.shape.pasts[i]);
        std::mt19937 rng(uint32_t(29 + c.D + int(lay)));
        HostKv hkv = make_kv(lay, c.Hkv, c.D, 16, kv_lens, rng);
        for (const Poison& pz : k.poisons) poison_key(hkv, pz.s, pz.kvh < 0 ? c.Hkv - 1 : pz.kvh, pz.pos);
        const DeviceKv dkv(G, hkv);
        const DeviceStep cs(C, k.shape.q_lens, k.shape.pasts), gs(G, k.shape.q_lens, k.shape.pasts);
        const std::vector<float> q = random_q(rng, size_t(cs.step.num_tokens) * size_t(c.H) * size_t(c.D), 1.f);
        const std::vector<float> want = run_cpu(*ref, q, host_view(hkv), cs, c.H, c.D);
        const std::vector<float> got = run_gpu(G, *flash, q, dkv.view, gs, c.H, c.D);
        const auto [got_ok, want_ok] = nan_rows_match(got, want, c.D);
        const bool decode = gs.step.max_q_len == 1 && gs.step.num_tokens == gs.step.num_seqs;
        const bool decode_kernel = decode && !(env && std::string(env) == "0");
        const double tol = decode_kernel ? kTolNaive : lay == Lay::f16 ? kTolFlashF16 : kTolFlashBf16;
        const double e = rel_l2(got_ok, want_ok);
        INFO("flash CUDA rel L2 of the rows without a NaN key " << e << " (tolerance " << tol << ")");
        CHECK(e <= tol);
      }
    }
  }
}

TEST_CASE("attention on CUDA refuses what it cannot do, clearly") {
  NEED_GPU();
  Device& G = *gpu();
  {
    AttentionParams p = params({8, 2, 96});
    try {
      registry().create_attention("flash", p, G);
      FAIL("attention.flash accepted head_dim 96 on CUDA");
    } catch (const Error& e) {
      CHECK(e.kind() == ErrorKind::usage);
      CHECK(std::string(e.what()).find("head_dim") != std::string::npos);
    }
  }
  std::mt19937 rng(5);
  const Config c{4, 2, 64};
  const HostKv hkv = make_kv(Lay::u8, c.Hkv, c.D, 16, {10}, rng);
  const DeviceKv dkv(G, hkv);
  const DeviceStep gs(G, {10}, {0});
  Buffer<float> q(G, size_t(10 * 4 * 64), MemCategory::weights), out(G, size_t(10 * 4 * 64), MemCategory::weights);
  {
    std::shared_ptr<Attention> flash = registry().create_attention("flash", params(c), G);
    const Status st = flash->forward(out.view(DType::f32, {10, 4, 64}), q.view(DType::f32, {10, 4, 64}), dkv.view, gs.step);
    CHECK(st.kind == ErrorKind::usage);
    CHECK(st.message.find("paged_u8_token_head") != std::string::npos);
  }
  {
    // a bf16 output for a prefill step (10 query tokens): flash writes bf16 for decode steps only
    const HostKv h16 = make_kv(Lay::f16, c.Hkv, c.D, 16, {10}, rng);
    const DeviceKv d16(G, h16);
    std::shared_ptr<Attention> flash = registry().create_attention("flash", params(c), G);
    CHECK_FALSE(flash->writes_bf16(gs.step));
    Buffer<uint16_t> ob(G, size_t(10 * 4 * 64), MemCategory::weights);
    const Status st = flash->forward(ob.view(DType::bf16, {10, 4, 64}), q.view(DType::f32, {10, 4, 64}), d16.view, gs.step);
    CHECK(st.kind == ErrorKind::internal);
    CHECK(st.message.find("writes_bf16") != std::string::npos);
  }
  {
    AttentionParams p = params(c);
    p.max_kv_len = 8;  // the step has 10 keys
    std::shared_ptr<Attention> naive = registry().create_attention("naive", p, G);
    const Status st = naive->forward(out.view(DType::f32, {10, 4, 64}), q.view(DType::f32, {10, 4, 64}), dkv.view, gs.step);
    CHECK(st.kind == ErrorKind::usage);
    CHECK(st.message.find("max_kv_len") != std::string::npos);
  }
}

// End to end: cache plugins on both devices fed the same keys and values (prefill, then decode),
// attention over their views.
TEST_CASE("attention on CUDA over cache.fp16 and cache.int8 views") {
  NEED_GPU();
  Device& G = *gpu();
  Device& C = *cpu_dev();
  const Config c{8, 2, 128};
  for (const char* kind : {"fp16", "int8"}) {
    INFO("cache." << kind);
    CacheParams cp;
    cp.num_layers = 1;
    cp.num_kv_heads = c.Hkv;
    cp.head_dim = c.D;
    cp.block_tokens = 16;
    cp.max_tokens = 4096;
    cp.max_seqs = 3;
    std::shared_ptr<Cache> gcache = registry().create_cache(kind, cp, G);
    std::shared_ptr<Cache> ccache = registry().create_cache(kind, cp, C);
    const AttentionParams p = params(c);
    std::shared_ptr<Attention> ref = registry().create_attention("naive", p, C);
    std::shared_ptr<Attention> naive = registry().create_attention("naive", p, G);
    std::shared_ptr<Attention> flash = std::string(kind) == "fp16" ? registry().create_attention("flash", p, G) : nullptr;
    std::mt19937 rng(99);
    const std::vector<Shape> steps = {{{300, 5, 200}, {0, 0, 0}}, {{1, 1, 1}, {300, 5, 200}}, {{3, 1, 1}, {301, 6, 201}}};
    for (const Shape& sh : steps) {
      INFO(shape_string(sh));
      const DeviceStep gs(G, sh.q_lens, sh.pasts), cs(C, sh.q_lens, sh.pasts);
      check(gcache->reserve(gs.step));
      check(ccache->reserve(cs.step));
      const int64_t T = gs.step.num_tokens;
      const std::vector<float> k = random_q(rng, size_t(T) * size_t(c.Hkv) * size_t(c.D), 1.f);
      const std::vector<float> v = random_q(rng, size_t(T) * size_t(c.Hkv) * size_t(c.D), 1.f);
      Buffer<float> gk(G, k.size(), MemCategory::weights), gv(G, v.size(), MemCategory::weights);
      gk.upload(k.data(), k.size());
      gv.upload(v.data(), v.size());
      std::vector<float> ck = k, cv = v;
      check(gcache->append(0, gs.step, gk.view(DType::f32, {T, c.Hkv, c.D}), gv.view(DType::f32, {T, c.Hkv, c.D})));
      check(ccache->append(0, cs.step, TensorView(ck.data(), DType::f32, {T, c.Hkv, c.D}),
                           TensorView(cv.data(), DType::f32, {T, c.Hkv, c.D})));
      KvView gview, cview;
      check(gcache->view(0, gs.step, &gview));
      check(ccache->view(0, cs.step, &cview));
      const std::vector<float> q = random_q(rng, size_t(T) * size_t(c.H) * size_t(c.D), 1.f);
      const std::vector<float> want = run_cpu(*ref, q, cview, cs, c.H, c.D);
      {
        const double e = rel_l2(run_gpu(G, *naive, q, gview, gs, c.H, c.D), want);
        INFO("naive CUDA rel L2 " << e);
        CHECK(e <= kTolNaive);
      }
      if (flash) {
        const double e = rel_l2(run_gpu(G, *flash, q, gview, gs, c.H, c.D), want);
        INFO("flash CUDA rel L2 " << e);
        CHECK(e <= kTolFlashF16);
      }
    }
  }
}

TEST_CASE("cache append and attention replay from a CUDA graph bit-identically") {
  NEED_GPU();
  const CudaGraphApi api = cuda_graph_api();
  KVRUN_SKIP_UNLESS(api.ok(), "libcudart graph API not found in the process");
  Device& G = *gpu();
  const Config c{8, 2, 128};
  CacheParams cp;
  cp.num_layers = 1;
  cp.num_kv_heads = c.Hkv;
  cp.head_dim = c.D;
  cp.block_tokens = 16;
  cp.max_tokens = 4096;
  cp.max_seqs = 3;
  std::shared_ptr<Cache> cache = registry().create_cache("fp16", cp, G);
  const AttentionParams p = params(c, 4096);
  std::shared_ptr<Attention> naive = registry().create_attention("naive", p, G);
  std::shared_ptr<Attention> flash = registry().create_attention("flash", p, G);
  std::mt19937 rng(7);
  auto append_random = [&](const DeviceStep& s) {
    const int64_t T = s.step.num_tokens;
    const std::vector<float> k = random_q(rng, size_t(T) * size_t(c.Hkv) * size_t(c.D), 1.f);
    const std::vector<float> v = random_q(rng, size_t(T) * size_t(c.Hkv) * size_t(c.D), 1.f);
    Buffer<float> gk(G, k.size(), MemCategory::weights), gv(G, v.size(), MemCategory::weights);
    gk.upload(k.data(), k.size());
    gv.upload(v.data(), v.size());
    check(cache->append(0, s.step, gk.view(DType::f32, {T, c.Hkv, c.D}), gv.view(DType::f32, {T, c.Hkv, c.D})));
    check(G.queue().wait());
  };
  const DeviceStep prefill(G, {200, 5, 3000}, {0, 0, 0});
  check(cache->reserve(prefill.step));
  append_random(prefill);
  // The decode step (flash takes the split-K path at 3001 keys: 6 blocks on a whole GPU).
  const DeviceStep dec(G, {1, 1, 1}, {200, 5, 3000});
  check(cache->reserve(dec.step));
  const int64_t T = 3;
  const std::vector<float> kh = random_q(rng, size_t(T * c.Hkv * c.D), 1.f), vh = random_q(rng, size_t(T * c.Hkv * c.D), 1.f);
  const std::vector<float> qh = random_q(rng, size_t(T * c.H * c.D), 1.f);
  Buffer<float> k(G, kh.size(), MemCategory::weights), v(G, vh.size(), MemCategory::weights),
      q(G, qh.size(), MemCategory::weights), out_f(G, qh.size(), MemCategory::weights),
      out_n(G, qh.size(), MemCategory::weights);
  k.upload(kh.data(), kh.size());
  v.upload(vh.data(), vh.size());
  q.upload(qh.data(), qh.size());
  auto step = [&] {
    check(cache->append(0, dec.step, k.view(DType::f32, {T, c.Hkv, c.D}), v.view(DType::f32, {T, c.Hkv, c.D})));
    KvView kv;
    check(cache->view(0, dec.step, &kv));
    check(flash->forward(out_f.view(DType::f32, {T, c.H, c.D}), q.view(DType::f32, {T, c.H, c.D}), kv, dec.step));
    check(naive->forward(out_n.view(DType::f32, {T, c.H, c.D}), q.view(DType::f32, {T, c.H, c.D}), kv, dec.step));
  };
  auto poison = [&] {
    check(G.queue().fill_bytes(out_f.data(), 0xFF, out_f.bytes()));
    check(G.queue().fill_bytes(out_n.data(), 0xFF, out_n.bytes()));
  };
  poison();
  step();
  const std::vector<float> f_eager = out_f.to_host(), n_eager = out_n.to_host();
  CHECK(rel_l2(f_eager, n_eager) <= kTolFlashF16);
  poison();
  check(G.queue().wait());
  void* stream = G.queue().native_handle();
  REQUIRE(api.begin(stream, 0 /* cudaStreamCaptureModeGlobal: an allocation or host sync would fail */) == 0);
  step();
  void* graph = nullptr;
  REQUIRE(api.end(stream, &graph) == 0);
  void* exec = nullptr;
  REQUIRE(api.instantiate(&exec, graph, 0) == 0);
  for (int rep = 0; rep < 3; ++rep) {
    poison();
    REQUIRE(api.launch(exec, stream) == 0);
    check(G.queue().wait());
    const std::vector<float> f = out_f.to_host(), n = out_n.to_host();
    CHECK(std::memcmp(f.data(), f_eager.data(), f.size() * sizeof(float)) == 0);
    CHECK(std::memcmp(n.data(), n_eager.data(), n.size() * sizeof(float)) == 0);
  }
  api.exec_destroy(exec);
  api.graph_destroy(graph);
}
