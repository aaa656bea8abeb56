// kvrun — host-side bookkeeping of a paged KV cache: a free list of blocks and a block table per
// sequence. Cache plugins (ours and third parties') share it; it holds no KV data itself.
#pragma once

#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

#include "kvrun/error.hpp"
#include "kvrun/kv.hpp"

namespace kvrun {

class BlockPool {
 public:
  BlockPool() = default;
  BlockPool(int64_t num_blocks, int block_tokens, int max_seqs)
      : block_tokens_(block_tokens), tables_(size_t(max_seqs)) {
    free_.reserve(size_t(num_blocks));
    for (int64_t b = num_blocks - 1; b >= 0; --b) free_.push_back(int32_t(b));
  }

  int block_tokens() const noexcept { return block_tokens_; }
  int64_t free_blocks() const noexcept { return int64_t(free_.size()); }
  const std::vector<int32_t>& table(int seq) const { return tables_.at(size_t(seq)); }

  // Allocates the blocks the step's sequences need for their new tokens; all or nothing.
  // Returns the largest block count of the step's sequences.
  int allocate(const StepBatch& step) {
    int64_t need = 0;
    for (int i = 0; i < step.num_seqs; ++i) {
      int seq = step.seq_ids[i];
      if (seq < 0 || size_t(seq) >= tables_.size())
        fail(ErrorKind::internal, "cache: sequence id " + std::to_string(seq) + " out of range [0, " +
                                      std::to_string(tables_.size()) + ")");
      need += std::max<int64_t>(0, blocks_for(step, i) - int64_t(tables_[size_t(seq)].size()));
    }
    if (need > free_blocks()) {
      fail(ErrorKind::device, "KV cache full: the step needs " + std::to_string(need) + " more blocks of " +
                                  std::to_string(block_tokens_) + " tokens but " + std::to_string(free_blocks()) +
                                  " are free; raise cache.max_tokens (or cache.memory_fraction) or use a smaller batch");
    }
    int most = 1;
    for (int i = 0; i < step.num_seqs; ++i) {
      auto& t = tables_[size_t(step.seq_ids[i])];
      while (int64_t(t.size()) < blocks_for(step, i)) {
        t.push_back(free_.back());
        free_.pop_back();
      }
      most = std::max(most, int(t.size()));
    }
    return most;
  }

  // packed [num_seqs, stride]: row s = the block table of the step's sequence s, padded with -1.
  void pack(const StepBatch& step, int stride, std::vector<int32_t>& packed) const {
    packed.assign(size_t(step.num_seqs) * size_t(stride), -1);
    for (int i = 0; i < step.num_seqs; ++i) {
      const auto& t = tables_[size_t(step.seq_ids[i])];
      std::copy(t.begin(), t.end(), packed.begin() + size_t(i) * size_t(stride));
    }
  }

  void free_sequence(int seq) {
    auto& t = tables_.at(size_t(seq));
    for (auto it = t.rbegin(); it != t.rend(); ++it) free_.push_back(*it);
    t.clear();
  }

 private:
  int64_t blocks_for(const StepBatch& step, int i) const {
    return (int64_t(step.past_lens[i]) + step.q_lens[i] + block_tokens_ - 1) / block_tokens_;
  }
  int block_tokens_ = 16;
  std::vector<int32_t> free_;                 // [num free] block ids
  std::vector<std::vector<int32_t>> tables_;  // [max_seqs][blocks of that sequence]
};

}  // namespace kvrun

#include "kvrun/device.hpp"
#include "kvrun/kv_rows.hpp"
#include "kvrun/plugin.hpp"

namespace kvrun {

// The shared half of a paged cache plugin: block pool, block tables on the device, reserve/free,
// and the metadata of views. A concrete cache allocates its blocks and writes/points at them.
class PagedCacheBase : public Cache {
 public:
  PagedCacheBase(const CacheParams& p, Device& dev, std::string_view layout, const char* plugin_name)
      : p_(p), dev_(dev), layout_(layout), name_(plugin_name) {
    if (p.num_layers <= 0 || p.num_kv_heads <= 0 || p.head_dim <= 0 || p.block_tokens <= 0 || p.max_seqs <= 0)
      fail(ErrorKind::usage, std::string(plugin_name) + ": invalid cache parameters");
    num_blocks_ = (p.max_tokens + p.block_tokens - 1) / p.block_tokens;
    if (num_blocks_ <= 0)
      fail(ErrorKind::usage, std::string(plugin_name) + ": capacity must be at least one token (cache.max_tokens)");
    pool_ = BlockPool(num_blocks_, p.block_tokens, p.max_seqs);
  }

  CacheInfo info() const noexcept override {
    CacheInfo i;
    i.layout = std::string(layout_);
    i.block_tokens = p_.block_tokens;
    i.num_blocks = num_blocks_;
    i.capacity_tokens = num_blocks_ * p_.block_tokens;
    i.bytes_per_token = layout_bytes_per_token(layout_, p_.num_layers, p_.num_kv_heads, p_.head_dim);
    i.allocated_bytes = storage_bytes() + tables_.bytes();
    return i;
  }
  int64_t free_blocks() const noexcept override { return pool_.free_blocks(); }

  Status reserve(const StepBatch& step) noexcept override {
    return guard([&] {
      // The table stride only grows, in powers of two, so it rarely changes (CUDA graphs bake it in).
      const int most = pool_.allocate(step);
      while (max_blocks_ < most) max_blocks_ = max_blocks_ ? 2 * max_blocks_ : 1;
      pool_.pack(step, max_blocks_, packed_);
      if (tables_.size() < packed_.size()) {
        tables_ = Buffer<int32_t>(dev_, packed_.size() * 2, MemCategory::kv_cache);
        uploaded_.clear();
      }
      // Most decode steps need no new block: the same tables as the last step, not uploaded again
      // (one copy fewer in the queue before the step's kernels).
      if (packed_ != uploaded_) {
        tables_.upload(packed_.data(), packed_.size());
        uploaded_ = packed_;
      }
    });
  }
  Status free_sequence(int seq) noexcept override {
    return guard([&] { pool_.free_sequence(seq); });
  }
  // Cache::read for the standard layouts, on the CPU backend (through kv_rows.hpp). A cache with
  // a layout of its own overrides it (check_read does the argument checks).
  Status read(int layer, int seq, int begin, int count, TensorView k, TensorView v) noexcept override {
    return guard([&] {
      check_read(layer, seq, begin, count, k, v);
      kvrows::Layout lay{};
      if (!kvrows::layout_of(layout_, &lay))
        fail(ErrorKind::usage, name_ + ": layout '" + std::string(layout_) + "' is not a standard one; the cache must "
                                   "override Cache::read()");
      KvView kv;
      check(view(layer, StepBatch{}, &kv));
      const std::vector<int32_t>& table = pool_.table(seq);
      const size_t row = size_t(p_.head_dim);
      for (int i = 0; i < count; ++i)
        for (int h = 0; h < p_.num_kv_heads; ++h) {
          const size_t at = (size_t(i) * size_t(p_.num_kv_heads) + size_t(h)) * row;
          kvrows::read_row(kv, lay, 0, table.data(), begin + i, h, k.as<float>() + at);
          kvrows::read_row(kv, lay, 1, table.data(), begin + i, h, v.as<float>() + at);
        }
    });
  }

 protected:
  // Elements of one layer's K (or V) data: [num_blocks, num_kv_heads, block_tokens, head_dim].
  size_t layer_elems() const noexcept {
    return size_t(num_blocks_) * size_t(p_.num_kv_heads) * size_t(p_.block_tokens) * size_t(p_.head_dim);
  }
  // Entries of one layer's per-token metadata: [num_blocks, num_kv_heads, block_tokens].
  size_t layer_rows() const noexcept { return size_t(num_blocks_) * size_t(p_.num_kv_heads) * size_t(p_.block_tokens); }
  virtual size_t storage_bytes() const noexcept = 0;
  // A view with everything but the data pointers filled.
  KvView base_view() const noexcept {
    KvView v;
    v.layout = layout_;
    v.num_kv_heads = p_.num_kv_heads;
    v.head_dim = p_.head_dim;
    v.block_tokens = p_.block_tokens;
    v.block_table = tables_.data();
    v.max_blocks_per_seq = max_blocks_;
    return v;
  }
  // Checks the arguments of append() for a device-side walk: k, v [num_tokens, num_kv_heads,
  // head_dim] f32, the step's device token arrays, and reserve() done for this step.
  void check_append(const StepBatch& step, TensorView k, TensorView v) const {
    const int64_t n = int64_t(step.num_tokens) * p_.num_kv_heads * p_.head_dim;
    if (k.dtype != DType::f32 || v.dtype != DType::f32 || k.numel() < n || v.numel() < n)
      fail(ErrorKind::internal, name_ + ": append expects k and v of [num_tokens, num_kv_heads, head_dim] f32, got " +
                                    k.shape_string() + " and " + v.shape_string());
    check_step_walk(step);
  }
  // The step's device token arrays are there and reserve() was done for it (an append's device walk).
  void check_step_walk(const StepBatch& step) const {
    if (step.num_tokens > 0 && (!step.d_token_seq || !step.d_positions))
      fail(ErrorKind::internal, name_ + ": the step has no device token_seq/positions arrays");
    if (step.num_tokens > 0 && (max_blocks_ <= 0 || packed_.size() < size_t(step.num_seqs) * size_t(max_blocks_)))
      fail(ErrorKind::internal, name_ + ": append before reserve() for this step");
  }
  // Checks the arguments of append_qkv() (kvrun/plugin.hpp) as check_append does, with
  // appends_qkv(rot_dim) for the table's rot_dim; returns the number of query heads.
  int check_append_qkv(const StepBatch& step, TensorView qkv, TensorView q_out, TensorView cs) const {
    const int64_t T = step.num_tokens, D = p_.head_dim, KVH = p_.num_kv_heads;
    const int64_t H = qkv.cols() % D == 0 ? qkv.cols() / D - 2 * KVH : 0;
    if (qkv.dtype != DType::f32 || q_out.dtype != DType::f32 || cs.dtype != DType::f32 || qkv.rows() != T || H <= 0 ||
        q_out.numel() != T * H * D || cs.rows() != T)
      fail(ErrorKind::internal, name_ + ": append_qkv expects qkv [num_tokens, (H + 2·" + std::to_string(KVH) + ")·" +
                                    std::to_string(D) + "], q_out [num_tokens, H, " + std::to_string(D) +
                                    "] and cs [num_tokens, rot_dim], all f32, for " + std::to_string(T) +
                                    " tokens; got " + qkv.shape_string() + ", " + q_out.shape_string() + ", " +
                                    cs.shape_string());
    if (!appends_qkv(int(cs.cols())))
      fail(ErrorKind::internal, name_ + ": append_qkv with rot_dim " + std::to_string(cs.cols()) +
                                    ", which appends_qkv() refuses");
    check_step_walk(step);
    return int(H);
  }
  // Checks the arguments of read(): host f32 k, v of at least [count, num_kv_heads, head_dim],
  // positions inside the sequence's blocks, and (for the shared code paths) a CPU device.
  void check_read(int layer, int seq, int begin, int count, TensorView k, TensorView v) const {
    const int64_t n = int64_t(count) * p_.num_kv_heads * p_.head_dim;
    if (k.dtype != DType::f32 || v.dtype != DType::f32 || k.numel() < n || v.numel() < n ||
        k.space != MemSpace::host || v.space != MemSpace::host)
      fail(ErrorKind::internal, name_ + ": read expects host k and v of [count, num_kv_heads, head_dim] f32, got " +
                                    k.shape_string() + " and " + v.shape_string());
    if (layer < 0 || layer >= p_.num_layers || seq < 0 || seq >= p_.max_seqs)
      fail(ErrorKind::internal, name_ + ": read of layer " + std::to_string(layer) + ", sequence " +
                                    std::to_string(seq) + " is out of range");
    const int64_t held = int64_t(pool_.table(seq).size()) * p_.block_tokens;
    if (begin < 0 || count < 0 || begin + count > held)
      fail(ErrorKind::internal, name_ + ": read of positions [" + std::to_string(begin) + ", " +
                                    std::to_string(begin + count) + ") of sequence " + std::to_string(seq) +
                                    ", which holds " + std::to_string(held));
    if (!dev_.is_cpu()) fail(ErrorKind::usage, name_ + ": read() runs on the CPU backend only");
  }
  // Calls f(token row t, destination row index r) for every new token and KV head of the step,
  // where r indexes [num_blocks, num_kv_heads, block_tokens] (host-side walk, CPU caches).
  template <class F>
  void for_each_new_row(const StepBatch& step, F&& f) const {
    const int H = p_.num_kv_heads, bt = p_.block_tokens;
    for (int s = 0; s < step.num_seqs; ++s) {
      const auto& table = pool_.table(step.seq_ids[s]);
      for (int j = 0; j < step.q_lens[s]; ++j) {
        const int pos = step.past_lens[s] + j;
        const size_t t = size_t(step.q_starts[s] + j);
        for (int h = 0; h < H; ++h) f(t * size_t(H) + size_t(h), (size_t(table[size_t(pos / bt)]) * H + h) * bt + pos % bt);
      }
    }
  }

  CacheParams p_;
  Device& dev_;
  std::string_view layout_;
  std::string name_;  // "cache.int8", for messages
  int64_t num_blocks_ = 0;
  BlockPool pool_;
  std::vector<int32_t> packed_;  // [num_seqs, max_blocks_] the step's block tables (host copy)
  std::vector<int32_t> uploaded_;  // what tables_ holds (the last upload)
  int max_blocks_ = 0;
  Buffer<int32_t> tables_;       // the same in device memory
};

}  // namespace kvrun
