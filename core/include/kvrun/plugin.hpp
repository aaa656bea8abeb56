// kvrun — the plugin ABI and the three plugin interfaces: Cache, Attention, WeightFormat.
//
// A plugin is a shared module exporting one C symbol, KVRUN_PLUGIN_ENTRY_NAME ("kvrun_plugin_v6"),
// that returns a PluginHeader. The host reads header->abi_version before anything else, then
// calls header->create() for the Plugin object. Every virtual method below is noexcept and
// reports failure as a Status: no C++ exception crosses the boundary. Objects a plugin creates
// keep its library loaded (the registry wraps them).
//
// Plugins must be built with the same C++ standard library as the host (std::string and
// std::vector appear in these interfaces), which `pkg-config kvrun-plugin` provides.
//
// ABI rule (docs/plugins.md): any change to the layout of a type declared here or in the headers
// it includes (PluginInfo, CacheParams, AttentionParams, KvView, StepBatch, TensorView, Status,
// DeviceInfo, ...) or to the virtual methods of Plugin, Cache, Attention, WeightFormat, Linear,
// Checkpoint, Device, Queue or Ops bumps kPluginAbiVersion, and with it the entry symbol's name.
// ABI 2 (the first published SDK): plugin options, Cache::read, KvView::ext, PluginInfo::kv_tolerance
// and a create() that reports why it failed. ABI 3: Linear::fuses / forward_fused and
// Ops::matmul_fuses / matmul_fused (MatmulFusion), with defaults, so plugin sources compile as before.
// ABI 4: WeightFormat::load_joined_linear (q | k | v and gate | up as one Linear) and
// Cache::appends_qkv / append_qkv (RoPE and the q | k | v split done by the append), with defaults.
// ABI 5: Attention::writes_bf16, Linear::reads_bf16 and Ops::matmul_reads_bf16 (the attention's
// output handed to the o projection as bf16, without a conversion kernel), with defaults.
// ABI 6: Queue::copy_d2h_async and Queue::wait_for (the engine issues the next decode step before
// the host has the previous step's tokens), with defaults.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "kvrun/device.hpp"
#include "kvrun/error.hpp"
#include "kvrun/kv.hpp"
#include "kvrun/ops.hpp"
#include "kvrun/tensor.hpp"

namespace kvrun {

constexpr uint32_t kPluginAbiVersion = 6;
#define KVRUN_PLUGIN_ENTRY kvrun_plugin_v6
#define KVRUN_PLUGIN_ENTRY_NAME "kvrun_plugin_v6"
#define KVRUN_PLUGIN_ENTRY_PREFIX "kvrun_plugin_v"

enum class PluginKind : uint8_t { cache, attention, weights };
const char* plugin_kind_name(PluginKind k) noexcept;  // "cache", "attention", "weights"

// An option a plugin reads from the `options` table of its pipeline section ([cache] options for
// a cache, [attention] options for an attention plugin): `[cache] options = { group_size = 32 }`.
// kvrun checks the keys and types against these declarations before anything is created.
struct PluginOptionInfo {
  std::string key;           // "group_size"
  std::string type;          // "integer", "float", "boolean" or "string"
  std::string default_text;  // "32", shown by `kvrun plugins`
  std::string doc;           // one line
};

// One option as the pipeline passes it (already checked against the declaration's key and type).
struct PluginOption {
  std::string key;    // "group_size"
  std::string value;  // the value as text: "32", "0.5", "true", or a string without quotes
  std::string where;  // "pipe.toml:7:11: key 'cache.options.group_size'", for messages
};
using PluginOptions = std::vector<PluginOption>;

// The option `key` of `opts` as a number (nullptr when absent). Error(usage) naming `where` when
// its text is not one (the host checks declared types, so this only trips on hand-made options).
const PluginOption* find_option(const PluginOptions& opts, std::string_view key) noexcept;
int64_t option_int(const PluginOptions& opts, std::string_view key, int64_t fallback);
double option_float(const PluginOptions& opts, std::string_view key, double fallback);

// What a plugin declares about itself. The compatibility matrix is derived from these fields
// alone, and the same fields choose the code path at run time.
struct PluginInfo {
  PluginKind kind = PluginKind::cache;
  std::string name;         // "int8"; its full name is "<kind>.<name>", e.g. "cache.int8"
  std::string version;      // "0.1.0"
  std::string description;  // one line
  std::vector<BackendKind> backends;  // backends this build of the plugin can run on

  // kind == cache: the KvView layout it provides.
  std::string provides_layout;
  // kind == attention: the KvView layouts it reads (per backend where they differ: a layout is
  // readable on backend b iff it is listed here and b is in `backends`).
  std::vector<std::string> reads_layouts;
  // kind == weights: checkpoint weight encodings it loads ("bf16", "f16", "f32", "gptq").
  std::vector<std::string> encodings;

  // kind == cache: the largest |read - written| of a key or value element, as a fraction of the
  // range of its (token, KV head) row with 0 included: max(0, max x) - min(0, min x). 0 = the
  // bound of its standard layout (layout_tolerance); a cache with a layout of its own declares it.
  // `kvrun selftest --plugin` checks what the cache stores against it.
  double kv_tolerance = 0;
  // Options it reads from its pipeline section's `options` table (cache and attention plugins).
  std::vector<PluginOptionInfo> options;

  std::string full_name() const { return std::string(plugin_kind_name(kind)) + "." + name; }
};

// ---------------------------------------------------------------------------------------------
// Checkpoint access (implemented in models/, used by WeightFormat plugins).

struct HostTensor {
  std::string name;
  DType dtype = DType::f32;
  std::vector<int64_t> shape;
  const void* data = nullptr;  // host memory (mmap of the file), row-major, little-endian
  size_t nbytes = 0;
  std::string file;  // the shard it came from, for messages
};

class Checkpoint {
 public:
  virtual ~Checkpoint() = default;
  virtual const std::string& directory() const noexcept = 0;
  virtual bool has(const std::string& tensor) const noexcept = 0;
  // Fails with ErrorKind::model naming the tensor (and the shard) when it is missing.
  virtual Status get(const std::string& tensor, HostTensor* out) const noexcept = 0;
  // Reads a small file of the model directory (e.g. "quantize_config.json"); *exists = false and
  // an ok Status when it is absent.
  virtual Status read_text(const std::string& file_name, std::string* out, bool* exists) const noexcept = 0;
};

// ---------------------------------------------------------------------------------------------
// WeightFormat: builds Linear operators y = x·Wᵀ + b from a checkpoint.

class Linear {
 public:
  virtual ~Linear() = default;
  // y: [M, out_features] f32, x: [M, in_features] f32, both in the device's memory.
  virtual Status forward(TensorView y, TensorView x) noexcept = 0;
  virtual int64_t in_features() const noexcept = 0;
  virtual int64_t out_features() const noexcept = 0;
  virtual size_t device_bytes() const noexcept = 0;  // weights + scales + zeros + bias on the device
  // The fused form of forward (Ops::matmul_fused's MatmulFusion: RMSNorm or SwiGLU of x on the way
  // in, y += on the way out). fuses() says whether forward_fused takes f for a batch of M rows; the
  // model runs the unfused ops around forward() when it says no, so a Linear need not fuse.
  virtual bool fuses(const MatmulFusion& f, int64_t M) const noexcept {
    (void)f, (void)M;
    return false;
  }
  virtual Status forward_fused(TensorView y, TensorView x, const MatmulFusion& f) noexcept {
    (void)y, (void)x, (void)f;
    return {ErrorKind::internal, "Linear::forward_fused: this Linear fuses nothing (ask fuses() first)"};
  }
  // Optional (ABI 5): whether forward_fused(y, x, f) also takes x as bf16 [M, in_features] — values
  // already rounded to bf16 by whoever wrote them (an Attention that writes_bf16), read as they are.
  // Asked only where fuses(f, M) said yes and f has neither norm_w nor swiglu. The product must
  // equal forward_fused with the same values in f32 (the default path rounds x to bf16 anyway on
  // backends that multiply in bf16, which is where this pays: one conversion kernel fewer).
  // The default says no.
  virtual bool reads_bf16(const MatmulFusion& f, int64_t M) const noexcept {
    (void)f, (void)M;
    return false;
  }
};

struct LinearSpec {
  // Checkpoint prefix, e.g. "model.layers.0.self_attn.q_proj"; the tensors are prefix + ".weight"
  // (bf16) or ".qweight"/".qzeros"/".scales"/".g_idx" (gptq), and prefix + ".bias" if present.
  std::string prefix;
  int64_t in_features = 0;
  int64_t out_features = 0;  // of this Linear (a row range of the stored tensor, see below)
  // A fused checkpoint tensor split into several Linears (Qwen v1 c_attn = q|k|v): this Linear is
  // output rows [out_offset, out_offset + out_features) of a stored tensor with out_total rows.
  int64_t out_offset = 0;
  int64_t out_total = 0;  // 0 = out_features
  bool bias = false;      // expect a bias (missing is an error); without it a stored bias is still used
};

class WeightFormat {
 public:
  virtual ~WeightFormat() = default;
  virtual Status load_linear(const Checkpoint& ckpt, const LinearSpec& spec, Device& dev,
                             std::unique_ptr<Linear>* out) noexcept = 0;
  // Builds a random Linear directly on the device (synthetic benchmark models).
  virtual Status random_linear(const LinearSpec& spec, uint64_t seed, Device& dev,
                               std::unique_ptr<Linear>* out) noexcept = 0;
  // One Linear for several checkpoint linears that read the same input (q | k | v, gate | up):
  // its output row is theirs side by side, in the order of `parts`, each part exactly what
  // load_linear(parts[i]) computes (its bias, or zeros where a part has none) — one matmul where
  // the model would run several. Every part has the same in_features. Leaves *out null (and
  // returns ok) when this format cannot join these parts — GPTQ act-order parts whose row orders
  // differ, say —, and the model then loads them one by one; the default always does that.
  virtual Status load_joined_linear(const Checkpoint& ckpt, const std::vector<LinearSpec>& parts, Device& dev,
                                    std::unique_ptr<Linear>* out) noexcept;
};

// ---------------------------------------------------------------------------------------------
// Cache: owns KV memory as a pool of fixed-size blocks per layer, with a block table per sequence.

struct CacheParams {
  int num_layers = 0;
  int num_kv_heads = 0;
  int head_dim = 0;
  int block_tokens = 16;
  int64_t max_tokens = 0;  // capacity in tokens over all sequences (rounded up to whole blocks)
  int max_seqs = 1;        // sequence ids are 0 .. max_seqs-1
  PluginOptions options;   // [cache] options of the pipeline, checked against PluginInfo::options
};

struct CacheInfo {
  std::string layout;
  int block_tokens = 0;
  int64_t num_blocks = 0;
  int64_t capacity_tokens = 0;
  size_t bytes_per_token = 0;  // all layers, keys and values, scales and zero points included
  size_t allocated_bytes = 0;  // what the cache holds on the device (from its Buffers)
};

class Cache {
 public:
  virtual ~Cache() = default;
  virtual CacheInfo info() const noexcept = 0;
  virtual int64_t free_blocks() const noexcept = 0;
  // Makes room for the step's new tokens of every sequence (allocating blocks) and uploads the
  // block tables. Fails with ErrorKind::device when the pool is exhausted (nothing allocated then).
  virtual Status reserve(const StepBatch& step) noexcept = 0;
  // Writes the step's keys and values of one layer (quantizing if the cache quantizes).
  // k, v: [num_tokens, num_kv_heads, head_dim] f32 in the device's memory.
  virtual Status append(int layer, const StepBatch& step, TensorView k, TensorView v) noexcept = 0;
  // Optional (ABI 4): append() straight from a fused q | k | v projection, with the step's RoPE
  // applied on the way — one kernel where the model would run a RoPE (or split + RoPE) kernel and
  // append(). appends_qkv(rot_dim) says whether append_qkv takes a rotation over the first
  // rot_dim dims of each head; the model asks once per layer and otherwise runs Ops::rope_apply /
  // split_rope and append(). The defaults say no.
  //   qkv:   [num_tokens, (num_heads + 2·num_kv_heads)·head_dim] f32 — q | k | v of each token
  //   q_out: [num_tokens, num_heads, head_dim] f32 — receives q rotated; may be qkv itself when
  //          num_tokens == 1 (its q part, rotated in place)
  //   cs:    [num_tokens, rot_dim] f32 — Ops::rope_table's cos | sin (computed before the kernel
  //          that produced qkv: the append may read it before its programmatic-dependent-launch
  //          wait, as it does the step's metadata)
  //   q_scale: [num_tokens] f32 or null — each token's rotated q multiplied by its factor, as
  //          Ops::scale_rows would (Qwen v1's logn attention scaling)
  // k is rotated and stored, v stored, exactly as Ops::rope_apply then append() would (bit for
  // bit: the rotation's products rounded one at a time, as rope_apply documents).
  virtual bool appends_qkv(int rot_dim) const noexcept {
    (void)rot_dim;
    return false;
  }
  virtual Status append_qkv(int layer, const StepBatch& step, TensorView qkv, TensorView q_out, TensorView cs,
                            const float* q_scale) noexcept;
  virtual Status view(int layer, const StepBatch& step, KvView* out) noexcept = 0;
  virtual Status free_sequence(int seq_id) noexcept = 0;
  // Reads back positions [begin, begin + count) of sequence seq_id of one layer as f32, as an
  // attention would see them (dequantized): k, v [count, num_kv_heads, head_dim] f32 in host
  // memory. For conformance tests and debugging (may be slow, may be CPU-only); a cache whose
  // layout kvrun cannot decode itself must implement it. The default says it is not implemented.
  virtual Status read(int layer, int seq_id, int begin, int count, TensorView k, TensorView v) noexcept;
};

// Computes bytes per token of a layout (all layers, K and V, metadata included); used by
// `kvrun memory` before anything is allocated. Returns 0 for a layout core does not know.
size_t layout_bytes_per_token(std::string_view layout, int num_layers, int num_kv_heads, int head_dim);
// The read-back bound of a standard layout in the units of PluginInfo::kv_tolerance (fp16: 2^-11,
// bf16: 2^-8, uint8 with scale and zero point: one quantization step, 1/255); 0 for other layouts.
double layout_tolerance(std::string_view layout);

// ---------------------------------------------------------------------------------------------
// Attention: causal attention of the step's queries against a KvView.

struct AttentionParams {
  int num_heads = 0;
  int num_kv_heads = 0;  // GQA: query head h reads KV head h / (num_heads / num_kv_heads)
  int head_dim = 0;
  float scale = 0.f;     // softmax scale, usually 1/sqrt(head_dim)
  int max_tokens_per_step = 0;  // upper bound on StepBatch::num_tokens, to size workspace once
  int64_t max_kv_len = 0;       // upper bound on a sequence's KV length
  PluginOptions options;        // [attention] options of the pipeline, checked against PluginInfo::options
};

class Attention {
 public:
  virtual ~Attention() = default;
  // out, q: [num_tokens, num_heads, head_dim] f32 (out may be bf16 for a step where writes_bf16
  // said yes). Token t of sequence s at absolute position p attends to keys 0..p of s (causal);
  // the step's own keys are already in kv.
  virtual Status forward(TensorView out, TensorView q, const KvView& kv, const StepBatch& step) noexcept = 0;
  virtual size_t workspace_bytes() const noexcept = 0;
  // Optional (ABI 5): whether forward() for this step also takes `out` as bf16, each element the
  // f32 result rounded to nearest even — exactly what converting the f32 output would give. The
  // model asks once per step and uses it where the o projection reads_bf16 (the conversion kernel
  // before a bf16 GEMM is then gone). The default says no.
  virtual bool writes_bf16(const StepBatch& step) const noexcept {
    (void)step;
    return false;
  }
};

// ---------------------------------------------------------------------------------------------
// The plugin object and its entry point.

class Plugin {
 public:
  virtual ~Plugin() = default;
  virtual const PluginInfo& info() const noexcept = 0;
  virtual Status create_cache(const CacheParams&, Device&, std::unique_ptr<Cache>*) noexcept;
  virtual Status create_attention(const AttentionParams&, Device&, std::unique_ptr<Attention>*) noexcept;
  virtual Status create_weights(Device&, std::unique_ptr<WeightFormat>*) noexcept;
};

// Plain data. abi_version comes first in every ABI version: the host reads it before touching
// anything else.
struct PluginHeader {
  uint32_t abi_version;  // kPluginAbiVersion the plugin was built against
  uint32_t reserved;
  const char* name;  // "cache.int8", for messages before create(); must equal info().full_name()
  // Makes the Plugin object (owned by the caller, deleted through its virtual destructor); on
  // failure *out is null and the Status says why (e.g. the constructor threw).
  Status (*create)(Plugin** out) noexcept;
};

}  // namespace kvrun

// Defines the entry symbol of a plugin: KVRUN_DEFINE_PLUGIN("cache.int8", MyPluginClass). An
// exception from CLASS's constructor becomes the failed Status of create(), with its message.
#define KVRUN_DEFINE_PLUGIN(NAME, CLASS)                                                           \
  extern "C" __attribute__((visibility("default"))) const ::kvrun::PluginHeader*                  \
  KVRUN_PLUGIN_ENTRY() noexcept {                                                                  \
    static const ::kvrun::PluginHeader header{                                                     \
        ::kvrun::kPluginAbiVersion, 0, NAME, [](::kvrun::Plugin** out) noexcept -> ::kvrun::Status { \
          *out = nullptr;                                                                          \
          return ::kvrun::guard([&] { *out = new CLASS(); });                                      \
        }};                                                                                        \
    return &header;                                                                                \
  }
