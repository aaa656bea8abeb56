// Shared by the CUDA attention tests (plugins/attention_flash, plugins/attention_naive): a step
// batch in device memory, a paged KV cache built on the host (fp16 / bf16 / int8 layouts; blocks
// shuffled, unowned slots NaN) and uploaded, and runs of an Attention on the CPU and the GPU with
// poisoned outputs. Header-only; include after doctest.
#pragma once

#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <numeric>
#include <random>
#include <type_traits>
#include <utility>
#include <vector>

#include "kvrun/device.hpp"
#include "kvrun/dtype.hpp"
#include "kvrun/registry.hpp"

namespace kvrun::attention_test {

struct DeviceStep {
  StepBatch step;
  Buffer<int32_t> q_start, kv_len, positions, token_seq;

  DeviceStep(Device& dev, const std::vector<int>& q_lens, const std::vector<int>& pasts,
             std::vector<int> seqs = {}) {
    StepBatch& s = step;
    s.num_seqs = int(q_lens.size());
    if (seqs.empty()) {
      seqs.resize(q_lens.size());
      std::iota(seqs.begin(), seqs.end(), 0);
    }
    s.seq_ids = seqs;
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

enum class Lay { f16, bf16, u8 };
inline const char* lay_name(Lay l) { return l == Lay::f16 ? "paged_f16" : l == Lay::bf16 ? "paged_bf16" : "paged_u8_token_head"; }

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

inline HostKv make_kv(Lay lay, int Hkv, int D, int bt, const std::vector<int>& kv_lens, std::mt19937& rng) {
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

inline KvView base_view(const HostKv& kv) {
  KvView v;
  v.layout = lay_name(kv.lay);
  v.num_kv_heads = kv.Hkv;
  v.head_dim = kv.D;
  v.block_tokens = kv.bt;
  v.max_blocks_per_seq = kv.max_blocks;
  return v;
}

inline KvView host_view(const HostKv& kv) {
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

// Sets every byte of one layer of a cache in `dev`'s memory to `byte`: its K and V (rows rows of
// head_dim elements: num_blocks · num_kv_heads · block_tokens) and, for the int8 layout, their scales
// and zero points — so a row no kernel wrote cannot pass for data (0xFF: NaN fp16 values and scales).
inline void fill_layer_bytes(Device& dev, const KvView& v, size_t rows, uint8_t byte) {
  const bool u8 = v.k_scale != nullptr;
  const size_t data = rows * size_t(v.head_dim) * (u8 ? 1 : 2);
  check(dev.queue().fill_bytes(const_cast<void*>(v.k), byte, data));
  check(dev.queue().fill_bytes(const_cast<void*>(v.v), byte, data));
  if (u8) {
    check(dev.queue().fill_bytes(const_cast<uint16_t*>(v.k_scale), byte, rows * 2));
    check(dev.queue().fill_bytes(const_cast<uint16_t*>(v.v_scale), byte, rows * 2));
    check(dev.queue().fill_bytes(const_cast<uint8_t*>(v.k_zero), byte, rows));
    check(dev.queue().fill_bytes(const_cast<uint8_t*>(v.v_zero), byte, rows));
  }
}

// out = attention(q) on the CPU (host memory) with a NaN-poisoned output.
inline std::vector<float> run_cpu(Attention& att, const std::vector<float>& q, const KvView& kv, const DeviceStep& s,
                           int H, int D) {
  std::vector<float> qc = q, out(q.size(), std::numeric_limits<float>::quiet_NaN());
  const int64_t T = s.step.num_tokens;
  check(att.forward(TensorView(out.data(), DType::f32, {T, H, D}), TensorView(qc.data(), DType::f32, {T, H, D}), kv,
                    s.step));
  return out;
}

// out = attention(q) on the GPU; the output buffer is poisoned with all bits set (NaN) first.
// Checks that forward leaves the workspace (size and device memory) as it was.
inline std::vector<float> run_gpu(Device& G, Attention& att, const std::vector<float>& q, const KvView& kv,
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


// The step through `att` with a bf16 output (poisoned first): its bf16 bits.
inline std::vector<uint16_t> run_gpu_bf16(Device& G, Attention& att, const std::vector<float>& q, const KvView& kv,
                                          const DeviceStep& s, int H, int D) {
  const int64_t T = s.step.num_tokens;
  Buffer<float> gq(G, q.size(), MemCategory::weights);
  Buffer<uint16_t> gout(G, q.size(), MemCategory::weights);
  gq.upload(q.data(), q.size());
  check(G.queue().fill_bytes(gout.data(), 0xFF, gout.bytes()));
  check(att.forward(gout.view(DType::bf16, {T, H, D}), gq.view(DType::f32, {T, H, D}), kv, s.step));
  check(G.queue().wait());
  return gout.to_host();
}

// The bf16 output equals the f32 output `f32` rounded to nearest even (dtype.hpp's f32_to_bf16, the
// host twin of __float2bfloat16_rn), bit for bit.
inline void check_bf16_of(const std::vector<uint16_t>& got, const std::vector<float>& f32, const char* what) {
  REQUIRE(got.size() == f32.size());
  size_t bad = 0, first = 0;
  for (size_t i = 0; i < got.size(); ++i)
    if (got[i] != f32_to_bf16(f32[i]) && bad++ == 0) first = i;
  CHECK_MESSAGE(bad == 0, what << ": " << bad << " of " << got.size() << " bf16 outputs are not the f32 output rounded"
                               << " (first at " << first << ": " << got[first] << " vs " << f32_to_bf16(f32[first]) << ")");
}

// Makes key `pos` of sequence `s`, KV head `kvh` a NaN in the host-built cache: the int8 layout gets
// a NaN scale, fp16 / bf16 one NaN element (element 3). On the CPU every query that attends to it
// (GQA: every query head of that KV head; causal: queries at positions ≥ pos) then gets a NaN row.
inline void poison_key(HostKv& kv, int s, int kvh, int pos) {
  const int32_t block = kv.table[size_t(s) * size_t(kv.max_blocks) + size_t(pos / kv.bt)];
  const size_t r = (size_t(block) * size_t(kv.Hkv) + size_t(kvh)) * size_t(kv.bt) + size_t(pos % kv.bt);
  if (kv.lay == Lay::u8) kv.ks[r] = 0x7e00;
  else kv.k16[r * size_t(kv.D) + 3] = kv.lay == Lay::f16 ? uint16_t(0x7e00) : uint16_t(0x7fc0);
}

// For outputs [rows, D] of a step over a poisoned cache: every row of `got` is all NaN exactly where
// the reference's row is, and the reference has NaN rows and finite ones (or the case tests
// nothing). Returns the rows that are not NaN, {got, want}, for the caller's tolerance.
inline std::pair<std::vector<float>, std::vector<float>> nan_rows_match(const std::vector<float>& got,
                                                                        const std::vector<float>& want, int D) {
  REQUIRE(got.size() == want.size());
  std::pair<std::vector<float>, std::vector<float>> ok;
  size_t nan_rows = 0, rows = want.size() / size_t(D);
  for (size_t row = 0; row < rows; ++row) {
    int want_nan = 0, got_nan = 0;
    for (int d = 0; d < D; ++d) {
      want_nan += std::isnan(want[row * size_t(D) + size_t(d)]) ? 1 : 0;
      got_nan += std::isnan(got[row * size_t(D) + size_t(d)]) ? 1 : 0;
    }
    INFO("output row " << row << " (token · heads + head)");
    REQUIRE((want_nan == 0 || want_nan == D));  // a NaN key score spoils the whole row on the CPU
    CHECK(got_nan == want_nan);
    if (want_nan) {
      ++nan_rows;
      continue;
    }
    const auto b = std::ptrdiff_t(row * size_t(D)), e = b + D;
    ok.first.insert(ok.first.end(), got.begin() + b, got.begin() + e);
    ok.second.insert(ok.second.end(), want.begin() + b, want.begin() + e);
  }
  REQUIRE(nan_rows > 0);
  REQUIRE(nan_rows < rows);
  return ok;
}

// Queries ~ N(0, stdev²).
inline std::vector<float> random_q(std::mt19937& rng, size_t n, float stdev) {
  std::normal_distribution<float> N(0.f, stdev);
  std::vector<float> q(n);
  for (auto& x : q) x = N(rng);
  return q;
}

// Query heads, KV heads and head_dim of an attention under test.
struct Config {
  int H, Hkv, D;
};

// AttentionParams of `c` with softmax scale 1/sqrt(D).
inline AttentionParams attention_params(const Config& c, int64_t max_kv_len, int max_tokens_per_step) {
  AttentionParams p;
  p.num_heads = c.H;
  p.num_kv_heads = c.Hkv;
  p.head_dim = c.D;
  p.scale = 1.f / std::sqrt(float(c.D));
  p.max_tokens_per_step = max_tokens_per_step;
  p.max_kv_len = max_kv_len;
  return p;
}

}  // namespace kvrun::attention_test
