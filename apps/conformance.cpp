// Conformance checks for plugins (conformance.hpp): everything runs on the CPU, on seeded random
// data, against references written here in the plainest way (double precision, no blocking).
#include "conformance.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <numeric>
#include <random>
#include <stdexcept>

#include "kvrun/cpu/cpu.hpp"
#include "kvrun/dtype.hpp"
#include "kvrun/kv_rows.hpp"
#include "kvrun/registry.hpp"
#include "pipeline.hpp"

namespace kvrun {
namespace fs = std::filesystem;
using nlohmann::json;

bool ConformanceReport::ok() const {
  return !checks.empty() && std::all_of(checks.begin(), checks.end(), [](const ConformanceCheck& c) { return c.ok; });
}

json ConformanceReport::to_json() const {
  json j{{"path", path}, {"plugin", plugin}, {"kind", kind}, {"ok", ok()}};
  j["checks"] = json::array();
  for (const ConformanceCheck& c : checks) j["checks"].push_back({{"name", c.name}, {"ok", c.ok}, {"detail", c.detail}});
  return j;
}

namespace {

// ---- helpers -------------------------------------------------------------------------------------

struct CheckFailed : std::runtime_error {
  using std::runtime_error::runtime_error;
};
[[noreturn]] void failed(const std::string& why) { throw CheckFailed(why); }
void expect(bool cond, const std::string& why) {
  if (!cond) failed(why);
}
void expect_ok(const Status& s, const std::string& what) {
  if (!s.ok()) failed(what + " failed (" + error_kind_name(s.kind) + "): " + s.message);
}

// Loads output rows off .. off + N of the checkpoint's "layer.proj" ([total, K] with a bias).
std::unique_ptr<Linear> load_proj_slice(WeightFormat& wf, const Checkpoint& ckpt, Device& dev, int64_t K, int64_t N,
                                        int64_t off, int64_t total) {
  LinearSpec spec;
  spec.prefix = "layer.proj";
  spec.in_features = K;
  spec.out_features = N;
  spec.out_offset = off;
  spec.out_total = total;
  spec.bias = true;
  std::unique_ptr<Linear> lin;
  expect_ok(wf.load_linear(ckpt, spec, dev, &lin), "load_linear");
  return lin;
}

std::string num(double v) {
  char b[40];
  std::snprintf(b, sizeof b, "%.3g", v);
  return b;
}

// Runs one named check; an exception (a failed expectation, or an Error from the plugin's code)
// marks it failed with the message. The function returns what it measured.
class Checks {
 public:
  explicit Checks(ConformanceReport& r) : r_(r) {}
  bool run(const std::string& name, const std::function<std::string()>& f) {
    ConformanceCheck c;
    c.name = name;
    try {
      c.detail = f();
      c.ok = true;
    } catch (const CheckFailed& e) {
      c.detail = e.what();
    } catch (const std::exception& e) {
      c.detail = std::string("error: ") + e.what();
    }
    r_.checks.push_back(c);
    return c.ok;
  }
  void note(const std::string& name, const std::string& detail) { r_.checks.push_back({name, true, detail}); }

 private:
  ConformanceReport& r_;
};

class Rng {
 public:
  explicit Rng(uint64_t seed) : g_(seed) {}
  double uniform(double lo, double hi) { return std::uniform_real_distribution<double>(lo, hi)(g_); }
  int integer(int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(g_); }  // [lo, hi]
  std::mt19937_64& engine() { return g_; }

 private:
  std::mt19937_64 g_;
};

// A StepBatch whose "device" arrays are host vectors (the CPU backend's convention).
struct HostStep {
  StepBatch step;
  std::vector<int32_t> q_start, kv_len, positions, token_seq;
  HostStep(std::vector<int> ids, std::vector<int> past, std::vector<int> q) {
    StepBatch& s = step;
    s.num_seqs = int(ids.size());
    s.q_starts.assign(ids.size() + 1, 0);
    for (size_t i = 0; i < ids.size(); ++i) {
      s.q_starts[i + 1] = s.q_starts[i] + q[i];
      s.max_q_len = std::max(s.max_q_len, q[i]);
      s.max_kv_len = std::max(s.max_kv_len, past[i] + q[i]);
      kv_len.push_back(past[i] + q[i]);
      for (int j = 0; j < q[i]; ++j) {
        positions.push_back(past[i] + j);
        token_seq.push_back(int32_t(i));
      }
    }
    s.seq_ids = std::move(ids);
    s.past_lens = std::move(past);
    s.q_lens = std::move(q);
    s.num_tokens = s.q_starts.back();
    s.prompt_lens.assign(kv_len.begin(), kv_len.end());
    q_start.assign(s.q_starts.begin(), s.q_starts.end());
    s.d_q_start = q_start.data();
    s.d_kv_len = kv_len.data();
    s.d_positions = positions.data();
    s.d_token_seq = token_seq.data();
  }
  HostStep(const HostStep&) = delete;
  HostStep& operator=(const HostStep&) = delete;
};

// One (token, KV head) row of random values of a random range, sometimes away from 0, sometimes
// with an outlier: quantizers meet wide, narrow and one-sided rows.
void random_row(Rng& r, float* x, int n) {
  const double a = std::exp(r.uniform(std::log(0.05), std::log(8.0)));
  const double off = r.integer(0, 2) == 0 ? r.uniform(-a, a) : 0.0;
  for (int i = 0; i < n; ++i) x[i] = float(r.uniform(-a, a) + off);
  if (r.integer(0, 3) == 0) x[r.integer(0, n - 1)] *= 4.f;
}

// The larger of two errors, NaN when either is: std::max(0.0, NaN) is 0, so a plugin that returned
// NaN (or read uninitialized memory that happens to hold NaN) would pass every `worst <= tol`.
double worse(double a, double b) { return std::isnan(a) || std::isnan(b) ? std::nan("") : std::max(a, b); }

// max |got - want| over a row, as a fraction of the row's range with 0 included (the unit of
// PluginInfo::kv_tolerance). NaN when anything read is not finite.
double row_error(const float* want, const float* got, int n) {
  float lo = 0.f, hi = 0.f;
  double err = 0;
  for (int i = 0; i < n; ++i) {
    lo = std::min(lo, want[i]);
    hi = std::max(hi, want[i]);
    const double d = std::fabs(double(got[i]) - double(want[i]));
    if (!(d <= err)) err = d;  // NaN propagates
  }
  return err / std::max(double(hi) - double(lo), 1e-30);
}

CacheParams cache_params(int layers, int heads, int dim, int bt, int64_t max_tokens, int seqs, const PluginOptions& o) {
  CacheParams p;
  p.num_layers = layers;
  p.num_kv_heads = heads;
  p.head_dim = dim;
  p.block_tokens = bt;
  p.max_tokens = max_tokens;
  p.max_seqs = seqs;
  p.options = o;
  return p;
}

// ---- cache ------------------------------------------------------------------------------------

// What the test wrote: for each layer and sequence id, rows [pos][head][dim] of K and of V.
struct Written {
  int heads, dim;
  std::vector<std::vector<std::vector<float>>> k, v;  // [layer][seq] → [len · heads · dim]
  Written(int layers, int seqs, int h, int d)
      : heads(h), dim(d), k(static_cast<size_t>(layers), std::vector<std::vector<float>>(size_t(seqs))), v(k) {}
  size_t row() const { return size_t(heads) * size_t(dim); }
  int len(int layer, int seq) const { return int(k[size_t(layer)][size_t(seq)].size() / row()); }
  void put(int layer, int seq, int pos, const float* kr, const float* vr) {
    auto& ks = k[size_t(layer)][size_t(seq)];
    auto& vs = v[size_t(layer)][size_t(seq)];
    if (ks.size() < size_t(pos + 1) * row()) ks.resize(size_t(pos + 1) * row()), vs.resize(ks.size());
    std::copy(kr, kr + row(), ks.begin() + long(size_t(pos) * row()));
    std::copy(vr, vr + row(), vs.begin() + long(size_t(pos) * row()));
  }
  void clear(int seq) {
    for (auto& l : k) l[size_t(seq)].clear();
    for (auto& l : v) l[size_t(seq)].clear();
  }
};

// reserve + append of random rows on every layer of the cache; records them in w.
void append_step(Cache& c, const HostStep& hs, Written& w, Rng& r, int layers) {
  expect_ok(c.reserve(hs.step), "reserve");
  const int n = hs.step.num_tokens, H = w.heads, D = w.dim;
  std::vector<float> k(static_cast<size_t>(n) * w.row()), v(k.size());
  for (int l = 0; l < layers; ++l) {
    for (size_t row = 0; row < size_t(n) * H; ++row) {
      random_row(r, k.data() + row * D, D);
      random_row(r, v.data() + row * D, D);
    }
    expect_ok(c.append(l, hs.step, TensorView(k.data(), DType::f32, {n, H, D}), TensorView(v.data(), DType::f32, {n, H, D})),
              "append (layer " + std::to_string(l) + ")");
    for (int s = 0; s < hs.step.num_seqs; ++s)
      for (int j = 0; j < hs.step.q_lens[s]; ++j) {
        const size_t t = size_t(hs.step.q_starts[s] + j);
        w.put(l, hs.step.seq_ids[s], hs.step.past_lens[s] + j, k.data() + t * w.row(), v.data() + t * w.row());
      }
  }
}

// The view of a layer for a step, with its fields checked against the cache's parameters.
KvView checked_view(Cache& c, int layer, const HostStep& hs, const std::string& layout, const CacheParams& p) {
  KvView kv;
  expect_ok(c.view(layer, hs.step, &kv), "view (layer " + std::to_string(layer) + ")");
  expect(kv.layout == layout, "view() says layout '" + std::string(kv.layout) + "' but the plugin declares '" + layout + "'");
  expect(kv.num_kv_heads == p.num_kv_heads && kv.head_dim == p.head_dim && kv.block_tokens == p.block_tokens,
         "view() has num_kv_heads " + std::to_string(kv.num_kv_heads) + ", head_dim " + std::to_string(kv.head_dim) +
             ", block_tokens " + std::to_string(kv.block_tokens) + "; the cache was made with " +
             std::to_string(p.num_kv_heads) + ", " + std::to_string(p.head_dim) + ", " + std::to_string(p.block_tokens));
  expect(kv.k && kv.v && kv.block_table, "view() leaves k, v or block_table null");
  expect(int64_t(kv.max_blocks_per_seq) * p.block_tokens >= hs.step.max_kv_len,
         "view()'s block tables hold " + std::to_string(kv.max_blocks_per_seq) + " blocks per sequence, fewer than the step's " +
             std::to_string(hs.step.max_kv_len) + " tokens need");
  return kv;
}

// Largest row error of every position of the step's sequences, decoded by kvrun itself from the
// view (standard layouts).
double error_via_layout(Cache& c, const HostStep& hs, const Written& w, const CacheParams& p, const std::string& layout,
                        kvrows::Layout lay) {
  double worst = 0;
  std::vector<float> row(static_cast<size_t>(w.dim));
  for (int l = 0; l < p.num_layers; ++l) {
    const KvView kv = checked_view(c, l, hs, layout, p);
    for (int s = 0; s < hs.step.num_seqs; ++s) {
      const int seq = hs.step.seq_ids[s];
      const int32_t* table = kv.block_table + size_t(s) * size_t(kv.max_blocks_per_seq);
      for (int pos = 0; pos < w.len(l, seq); ++pos)
        for (int h = 0; h < w.heads; ++h)
          for (int which = 0; which < 2; ++which) {
            kvrows::read_row(kv, lay, which, table, pos, h, row.data());
            const auto& src = which == 0 ? w.k[size_t(l)][size_t(seq)] : w.v[size_t(l)][size_t(seq)];
            const double e = row_error(src.data() + (size_t(pos) * w.heads + h) * w.dim, row.data(), w.dim);
            if (!(e <= worst)) worst = e;
          }
    }
  }
  return worst;
}

// The same through Cache::read; *st is its Status (not ok: read() refused, nothing measured).
double error_via_read(Cache& c, const std::vector<int>& seqs, const Written& w, int layers, Status* st) {
  double worst = 0;
  for (int l = 0; l < layers; ++l)
    for (int seq : seqs) {
      const int n = w.len(l, seq);
      if (n == 0) continue;
      std::vector<float> k(static_cast<size_t>(n) * w.row()), v(k.size());
      *st = c.read(l, seq, 0, n, TensorView(k.data(), DType::f32, {n, w.heads, w.dim}),
                   TensorView(v.data(), DType::f32, {n, w.heads, w.dim}));
      if (!st->ok()) return 0;
      for (size_t r = 0; r < size_t(n) * w.heads; ++r)
        for (int which = 0; which < 2; ++which) {
          const auto& src = which == 0 ? w.k[size_t(l)][size_t(seq)] : w.v[size_t(l)][size_t(seq)];
          const auto& got = which == 0 ? k : v;
          const double e = row_error(src.data() + r * w.dim, got.data() + r * w.dim, w.dim);
          if (!(e <= worst)) worst = e;
        }
    }
  return worst;
}

void check_cache(const LoadedPlugin& lp, Device& cpu, const PluginOptions& opts, Checks& ck) {
  const PluginInfo& info = lp.info;
  const std::string layout = info.provides_layout;
  kvrows::Layout lay{};
  const bool standard = kvrows::layout_of(layout, &lay);
  double tol = info.kv_tolerance > 0 ? info.kv_tolerance : layout_tolerance(layout);
  if (!ck.run("cache: declarations", [&] {
        expect(tol > 0, "layout '" + layout + "' is not a standard one, so the cache must declare PluginInfo::kv_tolerance "
                        "(the largest read-back error as a fraction of a row's range)");
        return "layout " + layout + (standard ? " (standard)" : " (its own)") + ", read-back tolerance " + num(tol) +
               (info.kv_tolerance > 0 ? " (declared)" : " (the layout's)");
      }))
    tol = 1e-300;  // the rest still runs and reports what it measures

  // The main cache: 2 layers, 2 KV heads, head_dim 64, blocks of 16, 3 sequences.
  const CacheParams p = cache_params(2, 2, 128, 16, 160, 3, opts);
  std::unique_ptr<Cache> cache;
  if (!ck.run("cache: create on the CPU", [&] {
        expect_ok(lp.plugin->create_cache(p, cpu, &cache), "create_cache");
        expect(cache != nullptr, "create_cache returned ok but no cache");
        return std::string("2 layers, 2 KV heads, head_dim 128, block_tokens 16, max_tokens 160, 3 sequences");
      }))
    return;

  ck.run("cache: info()", [&] {
    const CacheInfo ci = cache->info();
    expect(ci.layout == layout, "info().layout is '" + ci.layout + "', the plugin declares '" + layout + "'");
    expect(ci.block_tokens == p.block_tokens, "info().block_tokens is " + std::to_string(ci.block_tokens) + ", not 16");
    expect(ci.capacity_tokens >= p.max_tokens && ci.capacity_tokens == ci.num_blocks * ci.block_tokens,
           "info() has capacity " + std::to_string(ci.capacity_tokens) + " tokens in " + std::to_string(ci.num_blocks) +
               " blocks; expected at least max_tokens 160, a whole number of blocks");
    expect(cache->free_blocks() == ci.num_blocks, "a new cache has " + std::to_string(cache->free_blocks()) + " free blocks of " +
                                                      std::to_string(ci.num_blocks));
    expect(ci.bytes_per_token > 0, "info().bytes_per_token is 0; report what a token costs (all layers, K and V, metadata)");
    if (standard) {
      const size_t want = layout_bytes_per_token(layout, p.num_layers, p.num_kv_heads, p.head_dim);
      expect(ci.bytes_per_token == want, "info().bytes_per_token is " + std::to_string(ci.bytes_per_token) + "; layout " +
                                             layout + " takes " + std::to_string(want));
    }
    expect(ci.allocated_bytes >= ci.bytes_per_token * size_t(ci.capacity_tokens),
           "info().allocated_bytes " + std::to_string(ci.allocated_bytes) + " is less than bytes_per_token × capacity = " +
               std::to_string(ci.bytes_per_token * size_t(ci.capacity_tokens)) + " (bytes_per_token understates the cost)");
    return std::to_string(ci.bytes_per_token) + " bytes per token, " + std::to_string(ci.allocated_bytes) + " bytes for " +
           std::to_string(ci.capacity_tokens) + " tokens";
  });

  Rng rng(0xC0FFEE);
  Written w(p.num_layers, p.max_seqs, p.num_kv_heads, p.head_dim);
  const bool nonstandard_needs_read = !standard;
  // Verifies everything written so far for the step's sequences, through the layout and Cache::read.
  auto verify = [&](const HostStep& hs, std::string* how) {
    double worst = 0;
    if (standard) worst = error_via_layout(*cache, hs, w, p, layout, lay);
    else
      for (int l = 0; l < p.num_layers; ++l) checked_view(*cache, l, hs, layout, p);
    Status st;
    const double via_read = error_via_read(*cache, hs.step.seq_ids, w, p.num_layers, &st);
    if (!st.ok()) {
      expect(!nonstandard_needs_read, "Cache::read() failed (" + st.message + "); kvrun cannot decode layout '" + layout +
                                          "' itself, so the cache must implement read()");
      *how = "through the layout (Cache::read not available: " + st.message + ")";
    } else {
      *how = standard ? "through the layout and Cache::read" : "through Cache::read";
      if (standard && worst <= tol * 1.0001)
        expect(via_read <= tol * 1.0001, "what the layout holds is right, but Cache::read() returns other values: error " +
                                             num(via_read) + " of the row range");
      worst = worse(worst, via_read);
    }
    return worst;
  };

  ck.run("cache: ragged append and read back", [&] {
    HostStep a({0, 1, 2}, {0, 0, 0}, {7, 20, 1});   // prefill of three lengths, one across a block
    HostStep b({2, 0}, {1, 7}, {16, 1});            // a subset, in another order
    HostStep c({1, 0, 2}, {20, 8, 17}, {1, 1, 1});  // decode
    double worst = 0;
    std::string how;
    for (const HostStep* hs : {&a, &b, &c}) {
      append_step(*cache, *hs, w, rng, p.num_layers);
      worst = worse(worst, verify(*hs, &how));
    }
    expect(worst <= tol * 1.0001, "read-back error " + num(worst) + " of the row range exceeds the tolerance " + num(tol));
    return "3 steps (prefill 7/20/1, chunk 16/1, decode), 2 layers, " + how + ": max error " + num(worst) +
           " of the row range (tolerance " + num(tol) + ")";
  });

  ck.run("cache: free and reuse", [&] {
    const int64_t before = cache->free_blocks();
    const int held = (w.len(0, 1) + p.block_tokens - 1) / p.block_tokens;
    expect_ok(cache->free_sequence(1), "free_sequence(1)");
    expect(cache->free_blocks() == before + held, "freeing a sequence of " + std::to_string(w.len(0, 1)) + " tokens gave back " +
                                                      std::to_string(cache->free_blocks() - before) + " blocks, not " +
                                                      std::to_string(held));
    w.clear(1);
    HostStep d({1}, {0}, {33});  // a longer sequence in the freed (and more) blocks
    append_step(*cache, d, w, rng, p.num_layers);
    HostStep e({0, 1, 2}, {w.len(0, 0), 33, w.len(0, 2)}, {1, 1, 1});
    append_step(*cache, e, w, rng, p.num_layers);
    std::string how;
    const double worst = verify(e, &how);
    expect(worst <= tol * 1.0001, "after reuse, read-back error " + num(worst) + " exceeds the tolerance " + num(tol) +
                                      " (a freed block still mapped, or another sequence overwritten?)");
    for (int s = 0; s < 3; ++s) expect_ok(cache->free_sequence(s), "free_sequence");
    expect(cache->free_blocks() == cache->info().num_blocks, "after freeing every sequence " +
                                                                 std::to_string(cache->free_blocks()) + " of " +
                                                                 std::to_string(cache->info().num_blocks) + " blocks are free");
    return "freed " + std::to_string(held) + " blocks, reused them for 34 tokens; the other sequences intact (error " +
           num(worst) + ")";
  });

  ck.run("cache: exhaustion and bad sequence ids", [&] {
    const CacheParams sp = cache_params(1, 2, 64, 16, 32, 2, opts);
    std::unique_ptr<Cache> small;
    expect_ok(lp.plugin->create_cache(sp, cpu, &small), "create_cache (2 blocks)");
    const int64_t nb = small->info().num_blocks;
    Written sw(1, 2, sp.num_kv_heads, sp.head_dim);
    HostStep fill({0}, {0}, {int(nb * sp.block_tokens)});
    append_step(*small, fill, sw, rng, 1);
    expect(small->free_blocks() == 0, "a full pool reports " + std::to_string(small->free_blocks()) + " free blocks");
    HostStep more({1}, {0}, {1});
    Status st = small->reserve(more.step);
    expect(!st.ok(), "reserve() succeeded on a full pool");
    expect(st.kind == ErrorKind::device, std::string("a full pool must fail with ErrorKind::device (exit code 4), got ") +
                                             error_kind_name(st.kind) + ": " + st.message);
    expect(!st.message.empty(), "the full-pool error has no message");
    expect(small->free_blocks() == 0, "a refused reserve() changed the free blocks");
    HostStep bad({2}, {0}, {1});  // max_seqs is 2
    expect(!small->reserve(bad.step).ok(), "reserve() accepted sequence id 2 of a cache made for 2 sequences");
    expect_ok(small->free_sequence(0), "free_sequence(0)");
    expect(small->free_blocks() == nb, "after freeing, " + std::to_string(small->free_blocks()) + " of " + std::to_string(nb) +
                                           " blocks are free");
    sw.clear(0);
    HostStep again({1}, {0}, {5});
    append_step(*small, again, sw, rng, 1);
    Status rs;
    double worst = standard ? error_via_layout(*small, again, sw, sp, layout, lay) : 0;
    const double via_read = error_via_read(*small, {1}, sw, 1, &rs);
    if (rs.ok()) worst = worse(worst, via_read);
    expect(worst <= tol * 1.0001, "after the refused step, read-back error " + num(worst) + " exceeds the tolerance");
    return "a full pool of " + std::to_string(nb) + " blocks refused the next block (" + error_kind_name(st.kind) +
           ": " + st.message + "); freed, it took a new sequence";
  });
}

// ---- attention --------------------------------------------------------------------------------

// Reads row `pos` of KV head `head` of sequence `seq` (which: 0 = K, 1 = V) as f32.
using RowReader = std::function<void(int which, int seq, int pos, int head, float* dst)>;

// A paged KvView of a standard layout built by the test: random blocks (unused slots too), block
// tables of shuffled block ids.
struct SyntheticKv {
  KvView kv;
  kvrows::Layout lay{};
  std::string layout;
  std::vector<uint16_t> k16, v16, ks, vs;
  std::vector<uint8_t> k8, v8, kz, vz;
  std::vector<std::vector<int32_t>> tables;  // [seq id] block ids
  std::vector<int32_t> packed;               // the current step's [num_seqs, stride]

  SyntheticKv(const std::string& name, int kv_heads, int dim, int bt, const std::vector<int>& lens, Rng& r) : layout(name) {
    kvrows::layout_of(name, &lay);
    int64_t nb = 2;
    for (int n : lens) nb += (n + bt - 1) / bt;
    std::vector<int32_t> ids(static_cast<size_t>(nb));
    std::iota(ids.begin(), ids.end(), 0);
    std::shuffle(ids.begin(), ids.end(), r.engine());
    size_t next = 0;
    for (int n : lens) {
      tables.emplace_back();
      for (int b = 0; b < (n + bt - 1) / bt; ++b) tables.back().push_back(ids[next++]);
    }
    const size_t rows = size_t(nb) * size_t(kv_heads) * size_t(bt), elems = rows * size_t(dim);
    if (lay == kvrows::Layout::u8) {
      for (auto* d : {&k8, &v8}) {
        d->resize(elems);
        for (auto& x : *d) x = uint8_t(r.integer(0, 255));
      }
      for (auto* d : {&ks, &vs}) {
        d->resize(rows);
        for (auto& x : *d) x = f32_to_f16(float(r.uniform(0.002, 0.02)));
      }
      for (auto* d : {&kz, &vz}) {
        d->resize(rows);
        for (auto& x : *d) x = uint8_t(r.integer(0, 255));
      }
      kv.k = k8.data();
      kv.v = v8.data();
      kv.k_scale = ks.data();
      kv.v_scale = vs.data();
      kv.k_zero = kz.data();
      kv.v_zero = vz.data();
    } else {
      for (auto* d : {&k16, &v16}) {
        d->resize(elems);
        for (auto& x : *d) {
          const float f = float(r.uniform(-2, 2));
          x = lay == kvrows::Layout::f16 ? f32_to_f16(f) : f32_to_bf16(f);
        }
      }
      kv.k = k16.data();
      kv.v = v16.data();
    }
    kv.layout = layout;
    kv.num_kv_heads = kv_heads;
    kv.head_dim = dim;
    kv.block_tokens = bt;
  }
  void pack(const StepBatch& step) {
    size_t stride = 1;
    for (int s = 0; s < step.num_seqs; ++s) stride = std::max(stride, tables[size_t(step.seq_ids[s])].size());
    packed.assign(size_t(step.num_seqs) * stride, -1);
    for (int s = 0; s < step.num_seqs; ++s) {
      const auto& t = tables[size_t(step.seq_ids[s])];
      std::copy(t.begin(), t.end(), packed.begin() + long(size_t(s) * stride));
    }
    kv.block_table = packed.data();
    kv.max_blocks_per_seq = int(stride);
  }
  void read(int which, int seq, int pos, int head, float* dst) const {
    kvrows::read_row(kv, lay, which, tables[size_t(seq)].data(), pos, head, dst);
  }
};

// Runs the attention on one step and compares every output row with a softmax attention in double
// precision over the rows `read` gives. Returns max |out - reference|; *vmax gets max |V|.
double attention_step(Attention& at, const AttentionParams& p, const KvView& kv, const HostStep& hs, const RowReader& read,
                      Rng& r, double* vmax) {
  const StepBatch& st = hs.step;
  const int H = p.num_heads, G = p.num_heads / p.num_kv_heads, D = p.head_dim, n = st.num_tokens;
  std::vector<float> q(static_cast<size_t>(n) * H * D), out(q.size(), 12345.f);  // out: a sentinel where nothing was written
  for (float& x : q) x = float(r.uniform(-1, 1));
  expect_ok(at.forward(TensorView(out.data(), DType::f32, {n, H, D}), TensorView(q.data(), DType::f32, {n, H, D}), kv, st),
            "forward");
  double worst = 0;
  std::vector<float> row(static_cast<size_t>(D));
  for (int s = 0; s < st.num_seqs; ++s) {
    const int seq = st.seq_ids[s], len = st.past_lens[s] + st.q_lens[s];
    // The sequence's rows, per KV head: keys and values 0 .. len-1.
    std::vector<std::vector<double>> K(static_cast<size_t>(p.num_kv_heads)), V(K.size());
    for (int g = 0; g < p.num_kv_heads; ++g)
      for (int pos = 0; pos < len; ++pos) {
        read(0, seq, pos, g, row.data());
        K[size_t(g)].insert(K[size_t(g)].end(), row.begin(), row.end());
        read(1, seq, pos, g, row.data());
        V[size_t(g)].insert(V[size_t(g)].end(), row.begin(), row.end());
        for (float x : row) *vmax = std::max(*vmax, double(std::fabs(x)));
      }
    for (int j = 0; j < st.q_lens[s]; ++j) {
      const int pos = st.past_lens[s] + j;  // sees keys 0 .. pos
      const size_t t = size_t(st.q_starts[s] + j);
      for (int h = 0; h < H; ++h) {
        const int g = h / G;
        const float* qr = q.data() + (t * H + size_t(h)) * D;
        std::vector<double> sc(static_cast<size_t>(pos) + 1);
        double mx = -INFINITY;
        for (int k = 0; k <= pos; ++k) {
          double d = 0;
          for (int i = 0; i < D; ++i) d += double(qr[i]) * K[size_t(g)][size_t(k) * D + size_t(i)];
          sc[size_t(k)] = d * p.scale;
          mx = std::max(mx, sc[size_t(k)]);
        }
        double sum = 0;
        for (double& x : sc) sum += (x = std::exp(x - mx));
        for (int i = 0; i < D; ++i) {
          double o = 0;
          for (int k = 0; k <= pos; ++k) o += sc[size_t(k)] / sum * V[size_t(g)][size_t(k) * D + size_t(i)];
          const double d = std::fabs(double(out[(t * H + size_t(h)) * D + size_t(i)]) - o);
          if (!(d <= worst)) worst = d;
        }
      }
    }
  }
  return worst;
}

// A cache plugin of the registry providing `layout` on the CPU, or null.
const LoadedPlugin* cache_providing(const Registry& reg, const std::string& layout) {
  for (const LoadedPlugin& p : reg.plugins())
    if (p.info.kind == PluginKind::cache && p.info.provides_layout == layout &&
        std::find(p.info.backends.begin(), p.info.backends.end(), BackendKind::cpu) != p.info.backends.end())
      return &p;
  return nullptr;
}

void check_attention(const LoadedPlugin& lp, const Registry& reg, Device& cpu, const PluginOptions& opts,
                     const PluginOptions& cache_opts, Checks& ck) {
  const PluginInfo& info = lp.info;
  ck.run("attention: declarations", [&] {
    std::string all;
    for (const auto& l : info.reads_layouts) all += (all.empty() ? "" : ", ") + l;
    return "reads " + all;
  });
  struct Shape {
    int heads, kv_heads, dim, bt;
    const char* what;
  };
  const Shape shapes[] = {{4, 2, 64, 16, "GQA 4/2, head_dim 64, blocks of 16"},
                          {4, 1, 32, 8, "MQA 4/1, head_dim 32, blocks of 8"},
                          {2, 2, 128, 16, "MHA 2/2, head_dim 128, blocks of 16"}};
  // Three sequences: ragged prefill, a chunked prefill of two of them, then decode of all three.
  const std::vector<int> lens = {12, 41, 2};
  int tested = 0;
  for (const std::string& layout : info.reads_layouts) {
    kvrows::Layout lay{};
    const bool standard = kvrows::layout_of(layout, &lay);
    const LoadedPlugin* source = standard ? nullptr : cache_providing(reg, layout);
    if (!standard && !source) {
      ck.note("attention: layout " + layout,
              "not checked: no cache plugin providing it was found beside the plugin, in --with or on the plugin path");
      continue;
    }
    ck.run("attention: " + layout + " against the reference", [&] {
      Rng rng(0xA77E);
      std::string report;
      double worst_ratio = 0;
      for (const Shape& sh : shapes) {
        AttentionParams p;
        p.num_heads = sh.heads;
        p.num_kv_heads = sh.kv_heads;
        p.head_dim = sh.dim;
        p.scale = 1.3f / std::sqrt(float(sh.dim));
        p.max_tokens_per_step = 64;
        p.max_kv_len = 64;
        p.options = opts;
        std::unique_ptr<Attention> at;
        Status made = lp.plugin->create_attention(p, cpu, &at);
        if (!made.ok() && made.kind == ErrorKind::usage) {  // a shape it does not support
          report += std::string(report.empty() ? "" : "; ") + sh.what + ": refused (" + made.message + ")";
          continue;
        }
        expect_ok(made, std::string("create_attention (") + sh.what + ")");
        expect(at != nullptr, "create_attention returned ok but no attention");
        std::unique_ptr<SyntheticKv> synth;
        std::unique_ptr<Cache> cache;
        Written w(1, 3, sh.kv_heads, sh.dim);
        if (standard) {
          synth = std::make_unique<SyntheticKv>(layout, sh.kv_heads, sh.dim, sh.bt, lens, rng);
        } else {
          const CacheParams cp = cache_params(1, sh.kv_heads, sh.dim, sh.bt, 64 + 3 * sh.bt, 3, cache_opts);
          Status cs = source->plugin->create_cache(cp, cpu, &cache);
          if (!cs.ok() && cs.kind == ErrorKind::usage) {
            report += std::string(report.empty() ? "" : "; ") + sh.what + ": " + source->info.full_name() +
                      " refuses the shape (" + cs.message + ")";
            continue;
          }
          expect_ok(cs, "create_cache of " + source->info.full_name());
        }
        double worst = 0, vmax = 0;
        KvView last_view;
        auto steps = std::vector<std::shared_ptr<HostStep>>{
            std::make_shared<HostStep>(std::vector<int>{0, 1, 2}, std::vector<int>{0, 0, 0}, std::vector<int>{9, 33, 1}),
            std::make_shared<HostStep>(std::vector<int>{1, 0}, std::vector<int>{33, 9}, std::vector<int>{7, 2}),
            std::make_shared<HostStep>(std::vector<int>{2, 0, 1}, std::vector<int>{1, 11, 40}, std::vector<int>{1, 1, 1})};
        for (const auto& hs : steps) {
          KvView kv;
          RowReader reader;
          std::vector<std::vector<float>> rk(3), rv(3);  // cache-backed: what Cache::read returns
          if (synth) {
            synth->pack(hs->step);
            kv = synth->kv;
            reader = [&](int which, int seq, int pos, int head, float* dst) { synth->read(which, seq, pos, head, dst); };
          } else {
            append_step(*cache, *hs, w, rng, 1);
            kv = checked_view(*cache, 0, *hs, layout, cache_params(1, sh.kv_heads, sh.dim, sh.bt, 0, 3, cache_opts));
            for (int seq = 0; seq < 3; ++seq) {
              const int n = w.len(0, seq);
              rk[size_t(seq)].resize(size_t(n) * w.row());
              rv[size_t(seq)].resize(size_t(n) * w.row());
              if (n)
                expect_ok(cache->read(0, seq, 0, n, TensorView(rk[size_t(seq)].data(), DType::f32, {n, sh.kv_heads, sh.dim}),
                                      TensorView(rv[size_t(seq)].data(), DType::f32, {n, sh.kv_heads, sh.dim})),
                          source->info.full_name() + " Cache::read (the reference reads what the cache holds)");
            }
            reader = [&](int which, int seq, int pos, int head, float* dst) {
              const auto& src = which == 0 ? rk[size_t(seq)] : rv[size_t(seq)];
              std::copy_n(src.data() + (size_t(pos) * sh.kv_heads + size_t(head)) * sh.dim, sh.dim, dst);
            };
          }
          worst = worse(worst, attention_step(*at, p, kv, *hs, reader, rng, &vmax));
          last_view = kv;
        }
        const double tol = 2e-4 * (1.0 + vmax);
        ++tested;  // checked (passed or not)
        expect(worst <= tol, std::string(sh.what) + ": max |out - reference| " + num(worst) + " exceeds " + num(tol) +
                                 " (causal mask, GQA head mapping, block tables, scale?)");
        worst_ratio = worse(worst_ratio, worst / tol);
        report += std::string(report.empty() ? "" : "; ") + sh.what + ": max |diff| " + num(worst);
        // An undeclared layout must be refused, not read as something else.
        KvView wrong = last_view;
        wrong.layout = "conformance.undeclared_layout";
        HostStep one({0}, {0}, {1});
        if (synth) {
          synth->pack(one.step);
          wrong.block_table = synth->kv.block_table;
          wrong.max_blocks_per_seq = synth->kv.max_blocks_per_seq;
        } else {
          expect_ok(cache->reserve(one.step), "reserve");
          expect_ok(cache->view(0, one.step, &wrong), "view");
          wrong.layout = "conformance.undeclared_layout";
        }
        std::vector<float> q(static_cast<size_t>(sh.heads) * sh.dim, 0.5f), out(q.size());
        Status refused = at->forward(TensorView(out.data(), DType::f32, {1, sh.heads, sh.dim}),
                                     TensorView(q.data(), DType::f32, {1, sh.heads, sh.dim}), wrong, one.step);
        expect(!refused.ok(), "forward() accepted a view of layout '" + std::string(wrong.layout) +
                                  "', which it does not declare; it must check KvView::layout");
      }
      expect(!report.empty() && report.find("max |diff|") != std::string::npos, "no shape could be checked: " + report);
      return (standard ? "views built by kvrun" : "filled by " + source->info.full_name()) +
             ", ragged prefill 9/33/1, chunks 7/2, decode: " + report + "; undeclared layouts refused";
    });
  }
  if (tested == 0)
    ck.run("attention: at least one layout checked", [&]() -> std::string {
      failed("none of the layouts it reads could be checked; give a cache plugin that provides one with --with PATH");
    });
}

// ---- weights ----------------------------------------------------------------------------------

// A checkpoint held in memory: tensors and small files the test writes.
class SyntheticCheckpoint final : public Checkpoint {
 public:
  const std::string& directory() const noexcept override { return dir_; }
  bool has(const std::string& t) const noexcept override { return tensors_.count(t) != 0; }
  Status get(const std::string& t, HostTensor* out) const noexcept override {
    auto it = tensors_.find(t);
    if (it == tensors_.end()) return {ErrorKind::model, "tensor '" + t + "' is missing from the checkpoint in " + dir_};
    *out = it->second.t;
    return {};
  }
  Status read_text(const std::string& file, std::string* out, bool* exists) const noexcept override {
    auto it = files_.find(file);
    *exists = it != files_.end();
    if (*exists) *out = it->second;
    return {};
  }
  template <class T>
  void add(const std::string& name, DType dt, std::vector<int64_t> shape, const std::vector<T>& values) {
    Entry& e = tensors_[name];
    e.bytes.resize(values.size() * sizeof(T));
    std::memcpy(e.bytes.data(), values.data(), e.bytes.size());
    e.t.name = name;
    e.t.dtype = dt;
    e.t.shape = std::move(shape);
    e.t.data = e.bytes.data();
    e.t.nbytes = e.bytes.size();
    e.t.file = dir_ + "/model.safetensors";
  }
  void add_file(const std::string& name, const std::string& text) { files_[name] = text; }

 private:
  struct Entry {
    std::vector<uint8_t> bytes;
    HostTensor t;
  };
  std::string dir_ = "<conformance checkpoint>";
  std::map<std::string, Entry> tensors_;
  std::map<std::string, std::string> files_;
};

// y = x · Wᵀ + b against the reference (W as [out, in] f32, b or empty); returns the largest error
// as a fraction of Σ|x||w| of its output element.
double linear_error(Linear& lin, const std::vector<float>& W, const std::vector<float>& b, int M, Rng& r) {
  const int64_t K = lin.in_features(), N = lin.out_features();
  std::vector<float> x(static_cast<size_t>(M * K)), y(static_cast<size_t>(M * N), 12345.f);
  for (float& v : x) v = float(r.uniform(-1, 1));
  expect_ok(lin.forward(TensorView(y.data(), DType::f32, {M, N}), TensorView(x.data(), DType::f32, {M, K})),
            "forward (M = " + std::to_string(M) + ")");
  double worst = 0;
  for (int m = 0; m < M; ++m)
    for (int64_t n = 0; n < N; ++n) {
      double ref = b.empty() ? 0 : b[size_t(n)], mag = std::fabs(ref);
      for (int64_t k = 0; k < K; ++k) {
        ref += double(x[size_t(m * K + k)]) * W[size_t(n * K + k)];
        mag += std::fabs(double(x[size_t(m * K + k)]) * W[size_t(n * K + k)]);
      }
      const double e = std::fabs(double(y[size_t(m * N + n)]) - ref) / (mag + 1e-6);
      if (!(e <= worst)) worst = e;
    }
  return worst;
}

// A linear's weights and bias as the reference reads them: W [out, in], b [out] (empty: none).
struct DenseOf {
  std::vector<float> W, b;
};

// Stores a random GPTQ linear (SPECS.md §2, v1 zero points) under prefix: qweight, qzeros,
// scales, g_idx (shuffled with act_order) and, with bias, an f16 bias; [total out, K in].
DenseOf store_gptq(SyntheticCheckpoint& ckpt, const std::string& prefix, Rng& rng, int bits, int group, bool sym,
                   bool act_order, int64_t K, int64_t total, bool with_bias) {
  const int64_t G = group == -1 ? K : group, groups = K / G;
  const int per = 32 / bits, qmax = (1 << bits) - 1;
  std::vector<int32_t> gidx(static_cast<size_t>(K));
  for (int64_t k = 0; k < K; ++k) gidx[size_t(k)] = int32_t(k / G);
  if (act_order) std::shuffle(gidx.begin(), gidx.end(), rng.engine());
  std::vector<int> q(static_cast<size_t>(K * total)), zero(static_cast<size_t>(groups * total));
  std::vector<uint16_t> scales(static_cast<size_t>(groups * total));
  for (int& v : q) v = rng.integer(0, qmax);
  for (int& z : zero) z = sym ? (qmax + 1) / 2 : rng.integer(1, qmax);
  for (uint16_t& v : scales) v = f32_to_f16(float(rng.uniform(0.005, 0.02)));
  std::vector<int32_t> qweight(static_cast<size_t>(K / per * total), 0), qzeros(static_cast<size_t>(groups * total / per), 0);
  for (int64_t k = 0; k < K; ++k)
    for (int64_t n = 0; n < total; ++n)
      qweight[size_t((k / per) * total + n)] |= int32_t(uint32_t(q[size_t(k * total + n)]) << (bits * (k % per)));
  for (int64_t g = 0; g < groups; ++g)
    for (int64_t n = 0; n < total; ++n)
      qzeros[size_t(g * (total / per) + n / per)] |=
          int32_t(uint32_t(zero[size_t(g * total + n)] - 1) << (bits * (n % per)));  // v1: stored zero - 1
  ckpt.add(prefix + ".qweight", DType::i32, {K / per, total}, qweight);
  ckpt.add(prefix + ".qzeros", DType::i32, {groups, total / per}, qzeros);
  ckpt.add(prefix + ".scales", DType::f16, {groups, total}, scales);
  ckpt.add(prefix + ".g_idx", DType::i32, {K}, gidx);
  DenseOf d;
  d.W.resize(static_cast<size_t>(total * K));
  for (int64_t n = 0; n < total; ++n)
    for (int64_t k = 0; k < K; ++k) {
      const int64_t g = gidx[size_t(k)];
      d.W[size_t(n * K + k)] = f16_to_f32(scales[size_t(g * total + n)]) * float(q[size_t(k * total + n)] - zero[size_t(g * total + n)]);
    }
  if (with_bias) {
    std::vector<uint16_t> bias(static_cast<size_t>(total));
    for (uint16_t& v : bias) v = f32_to_f16(float(rng.uniform(-1, 1)));
    ckpt.add(prefix + ".bias", DType::f16, {total}, bias);
    d.b.resize(size_t(total));
    for (int64_t n = 0; n < total; ++n) d.b[size_t(n)] = f16_to_f32(bias[size_t(n)]);
  }
  return d;
}

std::string gptq_settings_json(int bits, int group, bool sym, bool act_order) {
  return "{\"bits\": " + std::to_string(bits) + ", \"group_size\": " + std::to_string(group) +
         ", \"desc_act\": " + (act_order ? "true" : "false") + ", \"sym\": " + (sym ? "true" : "false") + "}";
}

// The dtype of an unquantized encoding ("bf16", "f16", "f32").
DType dense_dtype(const std::string& enc) {
  return enc == "bf16" ? DType::bf16 : enc == "f16" ? DType::f16 : DType::f32;
}

// Stores a random unquantized linear [total out, K in] of dtype dt under prefix (with an f32-exact
// bias of the same dtype when with_bias).
DenseOf store_dense(SyntheticCheckpoint& ckpt, const std::string& prefix, Rng& rng, DType dt, int64_t K, int64_t total,
                    bool with_bias) {
  auto store = [&](const std::string& name, std::vector<float>& v, std::vector<int64_t> shape) {
    if (dt == DType::f32) return ckpt.add(name, dt, shape, v);
    std::vector<uint16_t> h(v.size());
    for (size_t i = 0; i < v.size(); ++i) {
      h[i] = dt == DType::f16 ? f32_to_f16(v[i]) : f32_to_bf16(v[i]);
      v[i] = dt == DType::f16 ? f16_to_f32(h[i]) : bf16_to_f32(h[i]);
    }
    ckpt.add(name, dt, shape, h);
  };
  DenseOf d;
  d.W.resize(static_cast<size_t>(total * K));
  for (float& v : d.W) v = float(rng.uniform(-1, 1));
  store(prefix + ".weight", d.W, {total, K});
  if (with_bias) {
    d.b.resize(static_cast<size_t>(total));
    for (float& v : d.b) v = float(rng.uniform(-1, 1));
    store(prefix + ".bias", d.b, {total});
  }
  return d;
}

void check_weights(const LoadedPlugin& lp, Device& cpu, Checks& ck) {
  const PluginInfo& info = lp.info;
  auto declares = [&](const std::string& e) {
    return std::find(info.encodings.begin(), info.encodings.end(), e) != info.encodings.end();
  };
  std::unique_ptr<WeightFormat> wf;
  if (!ck.run("weights: create on the CPU", [&] {
        expect_ok(lp.plugin->create_weights(cpu, &wf), "create_weights");
        expect(wf != nullptr, "create_weights returned ok but nothing");
        std::string all;
        for (const auto& e : info.encodings) all += (all.empty() ? "" : ", ") + e;
        return "loads " + all;
      }))
    return;
  Rng rng(0x5EED);
  const double tol = 1e-4;  // of Σ|x·w| per output: f32 accumulation in any order

  // Unquantized encodings: a [40, 64] tensor of which the Linear is rows 8..31, with a bias.
  for (const char* enc : {"bf16", "f16", "f32"}) {
    if (!declares(enc)) continue;
    ck.run(std::string("weights: ") + enc + " linear against the reference", [&] {
      const int64_t K = 64, total = 40, off = 8, N = 24;
      SyntheticCheckpoint ckpt;
      const DenseOf full = store_dense(ckpt, "layer.proj", rng, dense_dtype(enc), K, total, true);
      std::vector<float> W(full.W.begin() + std::ptrdiff_t(off * K), full.W.begin() + std::ptrdiff_t((off + N) * K));
      std::vector<float> b(full.b.begin() + std::ptrdiff_t(off), full.b.begin() + std::ptrdiff_t(off + N));
      std::unique_ptr<Linear> lin = load_proj_slice(*wf, ckpt, cpu, K, N, off, total);
      expect(lin && lin->in_features() == K && lin->out_features() == N,
             "the Linear's in/out features are not 64/24 (rows 8..31 of a [40, 64] tensor)");
      expect(lin->device_bytes() > 0, "device_bytes() is 0");
      double worst = 0;
      for (int M : {1, 3, 17}) worst = worse(worst, linear_error(*lin, W, b, M, rng));
      expect(worst <= tol, "max error " + num(worst) + " of Σ|x·w| exceeds " + num(tol));
      return "rows 8..31 of a [40, 64] tensor with bias, M = 1, 3, 17: max error " + num(worst) + " of Σ|x·w|";
    });
  }

  // GPTQ (SPECS.md §2, v1 zero points): 4-bit groups of 32 (asymmetric, then act-order) and 8-bit
  // one group (symmetric), [64 out, 128 in] of which the Linear is rows 16..47.
  if (declares("gptq")) {
    struct Case {
      int bits, group;
      bool sym, act_order;
      const char* what;
    };
    for (const Case& c : {Case{4, 32, false, false, "4-bit, group 32, asymmetric"},
                          Case{4, 32, true, true, "4-bit, group 32, act-order"},
                          Case{8, -1, true, false, "8-bit, one group, symmetric"}}) {
      ck.run(std::string("weights: gptq ") + c.what + " against the reference", [&] {
        const int64_t K = 128, total = 64, off = 16, N = 32;
        SyntheticCheckpoint ckpt;
        const DenseOf full = store_gptq(ckpt, "layer.proj", rng, c.bits, c.group, c.sym, c.act_order, K, total, true);
        ckpt.add_file("quantize_config.json", gptq_settings_json(c.bits, c.group, c.sym, c.act_order));
        std::vector<float> W(full.W.begin() + std::ptrdiff_t(off * K), full.W.begin() + std::ptrdiff_t((off + N) * K));
        std::vector<float> b(full.b.begin() + std::ptrdiff_t(off), full.b.begin() + std::ptrdiff_t(off + N));
        std::unique_ptr<Linear> lin = load_proj_slice(*wf, ckpt, cpu, K, N, off, total);
        expect(lin && lin->in_features() == K && lin->out_features() == N, "the Linear's in/out features are not 128/32");
        double worst = 0;
        for (int M : {1, 3, 17}) worst = worse(worst, linear_error(*lin, W, b, M, rng));
        expect(worst <= tol, "max error " + num(worst) + " of Σ|x·w| exceeds " + num(tol));
        return std::string("rows 16..47 of [64, 128] with bias, M = 1, 3, 17: max error ") + num(worst) + " of Σ|x·w|";
      });
    }
  }

  // load_joined_linear (q | k | v of a GQA layer, in every encoding the plugin declares): a joined
  // Linear must compute its parts side by side, biases where they have one; not joining is allowed.
  struct JoinCase {
    std::string enc;
    bool act_order;
  };
  std::vector<JoinCase> joins;
  for (const char* enc : {"bf16", "f16", "f32"})
    if (declares(enc)) joins.push_back({enc, false});
  if (declares("gptq")) {
    joins.push_back({"gptq", false});
    joins.push_back({"gptq", true});  // act-order: each part's own g_idx (a plugin may refuse to join)
  }
  for (const JoinCase& jc : joins) {
    ck.run("weights: load_joined_linear of " + jc.enc + (jc.act_order ? " act-order" : "") + " q | k | v", [&] {
      const int64_t K = 128;
      const std::vector<std::pair<std::string, int64_t>> parts = {{"attn.q", 64}, {"attn.k", 32}, {"attn.v", 32}};
      SyntheticCheckpoint ckpt;
      std::vector<LinearSpec> specs;
      DenseOf ref;  // the parts side by side
      for (size_t i = 0; i < parts.size(); ++i) {
        const bool bias = i != 1;  // k without a bias: zeros in the joined one
        const DenseOf d = jc.enc == "gptq"
                              ? store_gptq(ckpt, parts[i].first, rng, 4, 32, false, jc.act_order, K, parts[i].second, bias)
                              : store_dense(ckpt, parts[i].first, rng, dense_dtype(jc.enc), K, parts[i].second, bias);
        ref.W.insert(ref.W.end(), d.W.begin(), d.W.end());
        if (d.b.empty()) ref.b.insert(ref.b.end(), size_t(parts[i].second), 0.f);
        else ref.b.insert(ref.b.end(), d.b.begin(), d.b.end());
        LinearSpec sp;
        sp.prefix = parts[i].first;
        sp.in_features = K;
        sp.out_features = parts[i].second;
        sp.bias = bias;
        specs.push_back(sp);
      }
      if (jc.enc == "gptq") ckpt.add_file("quantize_config.json", gptq_settings_json(4, 32, false, jc.act_order));
      std::unique_ptr<Linear> lin;
      expect_ok(wf->load_joined_linear(ckpt, specs, cpu, &lin), "load_joined_linear");
      if (!lin) return std::string("not joined (allowed: the model then loads q, k and v one by one)");
      expect(lin->in_features() == K && lin->out_features() == 128,
             "the joined Linear is [" + std::to_string(lin->out_features()) + " out, " +
                 std::to_string(lin->in_features()) + " in], expected [128 out, 128 in] (64 + 32 + 32 rows)");
      double worst = 0;
      for (int M : {1, 3, 17}) worst = worse(worst, linear_error(*lin, ref.W, ref.b, M, rng));
      expect(worst <= tol, "max error " + num(worst) + " of Σ|x·w| exceeds " + num(tol) +
                               " against the parts side by side (rows in the order of the parts?)");
      return "joined: [64 | 32 | 32, 128], k without bias, M = 1, 3, 17: max error " + num(worst) + " of Σ|x·w|";
    });
  }

  ck.run("weights: a missing tensor is refused naming it", [&] {
    SyntheticCheckpoint empty;
    LinearSpec spec;
    spec.prefix = "conformance.missing_proj";
    spec.in_features = 128;
    spec.out_features = 64;
    std::unique_ptr<Linear> lin;
    Status st = wf->load_linear(empty, spec, cpu, &lin);
    expect(!st.ok(), "load_linear succeeded on a checkpoint without the linear's tensors");
    expect(st.kind == ErrorKind::model, std::string("a missing tensor must fail with ErrorKind::model (exit code 3), got ") +
                                            error_kind_name(st.kind));
    expect(st.message.find("conformance.missing_proj") != std::string::npos,
           "the message does not name the missing tensor: " + st.message);
    return st.message;
  });

  ck.run("weights: random_linear is one linear map at every batch size", [&] {
    const int64_t K = 256, N = 64;
    LinearSpec spec;
    spec.prefix = "conformance.random_proj";
    spec.in_features = K;
    spec.out_features = N;
    std::unique_ptr<Linear> a, b;
    expect_ok(wf->random_linear(spec, 7, cpu, &a), "random_linear");
    expect_ok(wf->random_linear(spec, 7, cpu, &b), "random_linear (again, same seed)");
    // W recovered column by column from the identity (a batch of K rows).
    auto recover = [&](Linear& lin) {
      std::vector<float> eye(static_cast<size_t>(K * K), 0.f), y(static_cast<size_t>(K * N));
      for (int64_t k = 0; k < K; ++k) eye[size_t(k * K + k)] = 1.f;
      expect_ok(lin.forward(TensorView(y.data(), DType::f32, {K, N}), TensorView(eye.data(), DType::f32, {K, K})),
                "forward of the identity");
      std::vector<float> W(static_cast<size_t>(N * K));
      for (int64_t k = 0; k < K; ++k)
        for (int64_t n = 0; n < N; ++n) W[size_t(n * K + k)] = y[size_t(k * N + n)];
      return W;
    };
    const std::vector<float> W = recover(*a), W2 = recover(*b);
    expect(W == W2, "two random_linear calls with the same seed gave different weights");
    double wmax = 0;
    for (float v : W) wmax = std::max(wmax, double(std::fabs(v)));
    expect(wmax > 0 && std::isfinite(wmax), "random_linear's weights are all zero or not finite");
    double worst = 0;
    for (int M : {1, 5, 40}) worst = worse(worst, linear_error(*a, W, {}, M, rng));
    expect(worst <= 1e-3, "forward at M = 1, 5, 40 differs from x·Wᵀ by " + num(worst) + " of Σ|x·w| (the small-batch "
                          "and large-batch paths disagree?)");
    return "[64, 256], W read back through the identity; M = 1, 5, 40 agree within " + num(worst) + " of Σ|x·w|";
  });
}

}  // namespace

ConformanceReport run_conformance(const std::string& path, const std::vector<std::string>& with,
                                  const std::vector<std::string>& search, const PipelineConfig& cfg) {
  ConformanceReport report;
  report.path = path;
  Registry reg;
  const LoadedPlugin& lp = reg.load_file(path);  // first, so it wins its name over installed copies
  report.plugin = lp.info.full_name();
  report.kind = plugin_kind_name(lp.info.kind);
  // Companions: --with, the plugin's own folder, then the normal search path.
  std::vector<std::string> more = with;
  more.push_back(fs::path(path).parent_path().string());
  more.insert(more.end(), search.begin(), search.end());
  reg.load_path(more);

  Checks ck(report);
  Verdict v;
  check_plugin_options(lp.info, lp.info.kind == PluginKind::attention ? cfg.attention_options : cfg.cache_options, v);
  if (lp.info.kind != PluginKind::weights && !v.ok) fail(ErrorKind::usage, v.message());
  const auto& bs = lp.info.backends;
  if (std::find(bs.begin(), bs.end(), BackendKind::cpu) == bs.end()) {
    ck.run("runs on the CPU", [&]() -> std::string {
      failed(report.plugin + " does not declare the cpu backend; the conformance checks run on the CPU");
    });
    return report;
  }
  auto cpu = cpu::make_cpu_device(cfg.threads);
  switch (lp.info.kind) {
    case PluginKind::cache: check_cache(lp, *cpu, plugin_options(cfg.cache_options), ck); break;
    case PluginKind::attention:
      check_attention(lp, reg, *cpu, plugin_options(cfg.attention_options), plugin_options(cfg.cache_options), ck);
      break;
    case PluginKind::weights: check_weights(lp, *cpu, ck); break;
  }
  return report;
}

int print_conformance(const ConformanceReport& r, bool json_out) {
  if (json_out) {
    std::printf("%s\n", r.to_json().dump(2, ' ', false, json::error_handler_t::replace).c_str());
  } else {
    std::printf("conformance of %s (%s)\n", r.plugin.c_str(), r.path.c_str());
    int passed = 0;
    for (const ConformanceCheck& c : r.checks) {
      passed += c.ok;
      std::printf("  %-4s  %s\n        %s\n", c.ok ? "ok" : "FAIL", c.name.c_str(), c.detail.c_str());
    }
    std::printf("%s: %d of %zu checks passed\n", r.ok() ? "conformance passed" : "conformance FAILED", passed,
                r.checks.size());
  }
  return r.ok() ? 0 : 1;
}

}  // namespace kvrun
