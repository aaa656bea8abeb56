// The forward pass of Qwen (v1), Qwen2 and Llama: a straight-line recipe over backend ops,
// Linears from the weights plugin, the Cache and the Attention plugin.
#include "kvrun/models/transformer.hpp"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>

#include "kvrun/log.hpp"
#include "kvrun/ops.hpp"

namespace kvrun {

// Checkpoint names of one layer's parts, per architecture.
namespace {

struct Names {
  std::string embed, final_norm, lm_head;
  std::string layer(int i) const { return layer_prefix + std::to_string(i) + "."; }
  std::string layer_prefix;
  std::string ln1, ln2;
  std::string q, k, v, qkv_fused, o;
  std::string gate, up, down;
};

Names names_for(Arch a) {
  Names n;
  if (a == Arch::qwen) {
    n.embed = "transformer.wte.weight";
    n.final_norm = "transformer.ln_f.weight";
    n.lm_head = "lm_head.weight";
    n.layer_prefix = "transformer.h.";
    n.ln1 = "ln_1.weight";
    n.ln2 = "ln_2.weight";
    n.qkv_fused = "attn.c_attn";
    n.o = "attn.c_proj";
    n.gate = "mlp.w2";  // Qwen v1: w2 is the gate, w1 the up projection
    n.up = "mlp.w1";
    n.down = "mlp.c_proj";
  } else {
    n.embed = "model.embed_tokens.weight";
    n.final_norm = "model.norm.weight";
    n.lm_head = "lm_head.weight";
    n.layer_prefix = "model.layers.";
    n.ln1 = "input_layernorm.weight";
    n.ln2 = "post_attention_layernorm.weight";
    n.q = "self_attn.q_proj";
    n.k = "self_attn.k_proj";
    n.v = "self_attn.v_proj";
    n.o = "self_attn.o_proj";
    n.gate = "mlp.gate_proj";
    n.up = "mlp.up_proj";
    n.down = "mlp.down_proj";
  }
  return n;
}

// An on/off switch of the environment, on when unset; anything but 0 or 1 is a usage error.
bool env_switch(const char* name) {
  const char* v = std::getenv(name);
  if (!v) return true;
  const std::string s(v);
  if (s != "0" && s != "1")
    fail(ErrorKind::usage, std::string(name) + "=" + s + ": expected 0 or 1 (an on/off switch for comparisons; " +
                               "docs/GPU.md lists them; unset it for the default)");
  return s == "1";
}

// KVRUN_JOIN_LINEARS (default 1): 0 loads q, k, v and gate, up as separate Linears (for
// comparisons in one run; docs/GPU.md).
bool join_linears() { return env_switch("KVRUN_JOIN_LINEARS"); }

// Copies a float tensor of the expected shape to the device, keeping its dtype.
Buffer<uint8_t> upload(const Checkpoint& ck, const std::string& name, std::vector<int64_t> shape, Device& dev,
                       DType* dtype) {
  HostTensor t;
  check(ck.get(name, &t));
  if (t.dtype != DType::bf16 && t.dtype != DType::f16 && t.dtype != DType::f32)
    fail(ErrorKind::model, "tensor '" + name + "' in " + t.file + " has dtype " + std::string(dtype_name(t.dtype)) +
                               "; expected bf16, f16 or f32");
  if (t.shape != shape)
    fail(ErrorKind::model, "tensor '" + name + "' in " + t.file + " has shape " + shape_string(t.shape) + ", expected " +
                               shape_string(shape) + " from config.json");
  Buffer<uint8_t> b(dev, t.nbytes, MemCategory::weights);
  b.upload(static_cast<const uint8_t*>(t.data), t.nbytes);
  *dtype = t.dtype;
  return b;
}

// Output width of a linear stored in the checkpoint (dense or GPTQ), from its tensors.
int64_t stored_out_features(const Checkpoint& ck, const std::string& prefix) {
  HostTensor t;
  if (ck.has(prefix + ".weight")) {
    check(ck.get(prefix + ".weight", &t));
    if (t.shape.size() == 2) return t.shape[0];
  } else if (ck.has(prefix + ".scales")) {
    check(ck.get(prefix + ".scales", &t));
    if (t.shape.size() == 2) return t.shape[1];
  }
  fail(ErrorKind::model, "cannot find the weights of linear '" + prefix + "' (expected '" + prefix + ".weight' or '" +
                             prefix + ".qweight'/'.scales') in " + ck.directory());
}

// A bf16 tensor of n values filled on the device: uniform in [-scale, scale), or all ones.
Buffer<uint8_t> random_bf16(Device& dev, size_t n, float scale, uint64_t seed, bool ones = false) {
  Buffer<uint8_t> b(dev, n * 2, MemCategory::weights);
  TensorView v(b.data(), DType::bf16, {int64_t(n)}, dev.space());
  if (ones) {
    std::vector<uint16_t> host(n, f32_to_bf16(1.f));
    b.upload(reinterpret_cast<const uint8_t*>(host.data()), n * 2);
  } else {
    check(dev.ops().fill_random(v, scale, seed));
  }
  return b;
}

}  // namespace

struct Transformer::Layer {
  Buffer<uint8_t> ln1, ln2;  // [hidden]
  DType ln1_dtype = DType::bf16, ln2_dtype = DType::bf16;
  // q: hidden → H·D, k/v: hidden → KVH·D, o: H·D → hidden. qkv (hidden → (H + 2·KVH)·D, q | k | v)
  // replaces q, k, v where the checkpoint stores them as one tensor (Qwen v1's c_attn) or the
  // weight format joins them (WeightFormat::load_joined_linear).
  std::shared_ptr<Linear> q, k, v, qkv, o;
  // gate/up: hidden → F, down: F → hidden; gate_up (hidden → 2F, gate | up) replaces gate and up
  // where the weight format joins them.
  std::shared_ptr<Linear> gate, up, gate_up, down;
};

// Activations of one step, sized for max_step_tokens rows (T).
struct Transformer::Workspace {
  Buffer<float> x, h;     // [T, hidden] residual stream, normalized input
  Buffer<float> q, a;     // [T, H·D] queries, attention output
  Buffer<float> k, v;     // [T, KVH·D]
  Buffer<float> g, u;     // [T, F] gate (then silu(gate)·up), up (unfused projections only)
  Buffer<float> qkv;      // [T, (H + 2·KVH)·D] fused q | k | v projection (layers with qkv)
  Buffer<float> gu;       // [T, 2F] fused gate | up projection (layers with gate_up)
  Buffer<float> rope;     // [T, rot_dim] cos | sin of each token's RoPE angles (one table per step)
  Buffer<float> sel;      // [T, hidden] rows that need logits
  Buffer<float> logits;   // [rows, vocab], grown on demand
  Buffer<int32_t> ids;    // [T] token ids
  // q_start [S+1] | kv_len [S] | positions [T] | token_seq [T] | rows [T] int32, then bases [T] |
  // logn [T] f32 (bit patterns), packed for the step's S and T: one upload per step
  Buffer<int32_t> meta;
  int max_seqs = 0;
  std::vector<int32_t> h_meta;
  std::vector<float> h_fmeta;  // bases | logn, copied behind the int32 arrays of h_meta
};

Transformer::~Transformer() {
  for (auto& [key, g] : graphs_) dev_.queue().graph_destroy(g);
}

Transformer::Transformer(const ModelConfig& cfg, const Checkpoint& ck, std::shared_ptr<WeightFormat> weights,
                         Device& dev, std::string name)
    : cfg_(cfg), dev_(dev), weights_(std::move(weights)) {
  const Names n = names_for(cfg.arch);
  const int64_t hidden = cfg.hidden, H = cfg.num_heads, KVH = cfg.num_kv_heads, D = cfg.head_dim;
  embed_ = upload(ck, n.embed, {cfg.vocab, hidden}, dev, &embed_dtype_);
  final_norm_ = upload(ck, n.final_norm, {hidden}, dev, &norm_dtype_);
  if (ck.has(n.lm_head)) {
    lm_head_ = upload(ck, n.lm_head, {cfg.vocab, hidden}, dev, &lm_head_dtype_);
  } else if (!cfg.tie_embeddings) {
    fail(ErrorKind::model, "tensor '" + n.lm_head + "' is missing from " + ck.directory() +
                               " and config.json does not tie the embeddings (tie_word_embeddings)");
  }
  auto spec = [&](const std::string& prefix, int64_t in, int64_t out, bool bias, int64_t offset = 0,
                  int64_t total = 0) {
    LinearSpec sp;
    sp.prefix = prefix;
    sp.in_features = in;
    sp.out_features = out;
    sp.out_offset = offset;
    sp.out_total = total;
    sp.bias = bias;
    return sp;
  };
  auto linear = [&](const LinearSpec& sp) {
    std::unique_ptr<Linear> l;
    check(weights_->load_linear(ck, sp, dev, &l));
    return std::shared_ptr<Linear>(std::move(l));
  };
  // q | k | v and gate | up as one Linear each where the weight format can join them (null if not,
  // or with KVRUN_JOIN_LINEARS=0): one matmul instead of three and of two, and SwiGLU fused into down.
  const bool join = join_linears();
  auto joined = [&](const std::vector<LinearSpec>& parts) -> std::shared_ptr<Linear> {
    if (!join) return nullptr;
    std::unique_ptr<Linear> l;
    check(weights_->load_joined_linear(ck, parts, dev, &l));
    return std::shared_ptr<Linear>(std::move(l));
  };
  // MLP width from the tensors (some GPTQ exports pad intermediate_size).
  const int64_t F = stored_out_features(ck, n.layer(0) + n.up);
  cfg_.intermediate = int(F);
  int apart = 0;  // layers whose q, k, v or gate, up the weight format could not join
  for (int i = 0; i < cfg.num_layers; ++i) {
    auto L = std::make_unique<Layer>();
    const std::string p = n.layer(i);
    L->ln1 = upload(ck, p + n.ln1, {hidden}, dev, &L->ln1_dtype);
    L->ln2 = upload(ck, p + n.ln2, {hidden}, dev, &L->ln2_dtype);
    if (cfg.arch == Arch::qwen) {  // c_attn = q | k | v in one tensor, with bias: one Linear
      L->qkv = linear(spec(p + n.qkv_fused, hidden, (H + 2 * KVH) * D, true, 0, (H + 2 * KVH) * D));
    } else {
      const LinearSpec q = spec(p + n.q, hidden, H * D, cfg.qkv_bias), k = spec(p + n.k, hidden, KVH * D, cfg.qkv_bias),
                       v = spec(p + n.v, hidden, KVH * D, cfg.qkv_bias);
      L->qkv = joined({q, k, v});
      if (!L->qkv) {
        L->q = linear(q);
        L->k = linear(k);
        L->v = linear(v);
      }
    }
    L->o = linear(spec(p + n.o, H * D, hidden, false));
    const LinearSpec gate = spec(p + n.gate, hidden, F, false), up = spec(p + n.up, hidden, F, false);
    L->gate_up = joined({gate, up});
    if (!L->gate_up) {
      L->gate = linear(gate);
      L->up = linear(up);
    }
    L->down = linear(spec(p + n.down, F, hidden, false));
    if (join && (!L->qkv || !L->gate_up)) ++apart;
    layers_.push_back(std::move(L));
  }
  if (apart > 0)
    log_info("model: in " + std::to_string(apart) + " of " + std::to_string(cfg.num_layers) +
             " layers the weight format could not join q, k, v or gate, up into one Linear (GPTQ act-order "
             "parts each sorted by their own g_idx, or parts of different dtypes): they run as separate, "
             "slower matmuls");
  init_summary(std::move(name));
}

Transformer::Transformer(const ModelConfig& cfg, uint64_t seed, std::shared_ptr<WeightFormat> weights, Device& dev,
                         std::string name)
    : cfg_(cfg), dev_(dev), weights_(std::move(weights)) {
  const int64_t hidden = cfg.hidden, H = cfg.num_heads, KVH = cfg.num_kv_heads, D = cfg.head_dim, F = cfg.intermediate;
  embed_ = random_bf16(dev, size_t(cfg.vocab) * hidden, 0.02f, seed);
  final_norm_ = random_bf16(dev, size_t(hidden), 0, 0, true);
  if (!cfg.tie_embeddings) lm_head_ = random_bf16(dev, size_t(cfg.vocab) * hidden, 0.02f, seed + 1);
  uint64_t s = seed + 2;
  auto linear = [&](int64_t in, int64_t out, bool bias) {
    LinearSpec spec;
    spec.prefix = "synthetic";
    spec.in_features = in;
    spec.out_features = out;
    spec.bias = bias;
    std::unique_ptr<Linear> l;
    check(weights_->random_linear(spec, s++, dev, &l));
    return std::shared_ptr<Linear>(std::move(l));
  };
  // The Linears a checkpoint of this shape loads into: q | k | v and gate | up joined (separate
  // with KVRUN_JOIN_LINEARS=0, as a checkpoint then loads them).
  const bool join = join_linears();
  for (int i = 0; i < cfg.num_layers; ++i) {
    auto L = std::make_unique<Layer>();
    L->ln1 = random_bf16(dev, size_t(hidden), 0, 0, true);
    L->ln2 = random_bf16(dev, size_t(hidden), 0, 0, true);
    if (join || cfg.arch == Arch::qwen) {
      L->qkv = linear(hidden, (H + 2 * KVH) * D, cfg.qkv_bias);
    } else {
      L->q = linear(hidden, H * D, cfg.qkv_bias);
      L->k = linear(hidden, KVH * D, cfg.qkv_bias);
      L->v = linear(hidden, KVH * D, cfg.qkv_bias);
    }
    L->o = linear(H * D, hidden, false);
    if (join) {
      L->gate_up = linear(hidden, 2 * F, false);
    } else {
      L->gate = linear(hidden, F, false);
      L->up = linear(hidden, F, false);
    }
    L->down = linear(F, hidden, false);
    layers_.push_back(std::move(L));
  }
  init_summary(std::move(name));
}

void Transformer::init_summary(std::string name) {
  summary_.name = std::move(name);
  summary_.arch = arch_name(cfg_.arch);
  summary_.vocab = cfg_.vocab;
  summary_.hidden = cfg_.hidden;
  summary_.num_layers = cfg_.num_layers;
  summary_.num_heads = cfg_.num_heads;
  summary_.num_kv_heads = cfg_.num_kv_heads;
  summary_.head_dim = cfg_.head_dim;
  summary_.max_positions = cfg_.max_positions;
  size_t bytes = embed_.bytes() + final_norm_.bytes() + lm_head_.bytes();
  for (const auto& L : layers_) {
    bytes += L->ln1.bytes() + L->ln2.bytes();
    for (const auto* l : {&L->q, &L->k, &L->v, &L->qkv, &L->o, &L->gate, &L->up, &L->gate_up, &L->down})
      if (*l) bytes += (*l)->device_bytes();
  }
  summary_.weight_bytes = bytes;
  summary_.embedding_bytes = embed_.bytes();
  summary_.step_weight_bytes = lm_head_.empty() ? bytes : bytes - embed_.bytes();
}

void Transformer::detach() {
  for (auto& [key, g] : graphs_) dev_.queue().graph_destroy(g);
  graphs_.clear();
  seen_shapes_.clear();
  ws_.reset();
  attention_.reset();
  cache_.reset();
}

void Transformer::attach(std::shared_ptr<Cache> cache, std::shared_ptr<Attention> attention, int max_step_tokens,
                         bool use_graphs) {
  detach();
  use_graphs_ = use_graphs && dev_.queue().supports_graphs();
  cache_ = std::move(cache);
  attention_ = std::move(attention);
  append_qkv_ = env_switch("KVRUN_APPEND_QKV") && cache_->appends_qkv(cfg_.rot_dim);
  attn_bf16_ = env_switch("KVRUN_ATTN_BF16");
  max_step_tokens_ = max_step_tokens;
  const size_t T = size_t(max_step_tokens);
  const size_t hidden = size_t(cfg_.hidden), HD = size_t(cfg_.num_heads) * cfg_.head_dim,
               KVD = size_t(cfg_.num_kv_heads) * cfg_.head_dim, F = size_t(cfg_.intermediate);
  auto w = std::make_unique<Workspace>();
  auto f = [&](size_t n) { return Buffer<float>(dev_, n, MemCategory::workspace); };
  w->x = f(T * hidden);
  w->h = f(T * hidden);
  w->q = f(T * HD);
  w->a = f(T * HD);
  w->k = f(T * KVD);
  w->v = f(T * KVD);
  // Layers may differ (a weight format can join one layer's projections and not another's).
  bool any_qkv = false, any_gate_up = false, any_apart = false;
  for (const auto& L : layers_) {
    any_qkv = any_qkv || L->qkv;
    any_gate_up = any_gate_up || L->gate_up;
    any_apart = any_apart || !L->gate_up;
  }
  w->g = f(T * F);
  if (any_apart) w->u = f(T * F);
  if (any_qkv) w->qkv = f(T * (HD + 2 * KVD));
  if (any_gate_up) w->gu = f(T * 2 * F);
  w->rope = f(T * size_t(cfg_.rot_dim));
  w->sel = f(T * hidden);
  w->ids = Buffer<int32_t>(dev_, T, MemCategory::workspace);
  w->max_seqs = int(T);  // at most one sequence per token
  w->meta = Buffer<int32_t>(dev_, 2 * T + 1 + 3 * T + 2 * T, MemCategory::workspace);
  ws_ = std::move(w);
}

TensorView Transformer::forward(const std::vector<int32_t>& tokens, StepBatch& step,
                                const std::vector<int32_t>& logit_rows) {
  return run_step(&tokens, step, logit_rows);
}

int32_t* Transformer::next_tokens() noexcept { return ws_ ? ws_->ids.data() : nullptr; }

TensorView Transformer::forward_device(StepBatch& step, const std::vector<int32_t>& logit_rows) {
  return run_step(nullptr, step, logit_rows);
}

TensorView Transformer::run_step(const std::vector<int32_t>* tokens, StepBatch& step,
                                 const std::vector<int32_t>& logit_rows) {
  if (!cache_ || !attention_) fail(ErrorKind::internal, "model used before attach()");
  Workspace& w = *ws_;
  const int T = step.num_tokens, S = step.num_seqs;
  if (T <= 0 || T > max_step_tokens_ || (tokens && int(tokens->size()) != T))
    fail(ErrorKind::internal, "forward: step of " + std::to_string(T) + " tokens (max " +
                                  std::to_string(max_step_tokens_) + ")");
  // before anything of the step is computed, stored or sent to the device
  if (tokens)
    for (int32_t id : *tokens)
      if (id < 0 || id >= cfg_.vocab)
        fail(ErrorKind::usage, "token id " + std::to_string(id) + " is outside the vocabulary [0, " +
                                   std::to_string(cfg_.vocab) + ")");
  const MemSpace sp = dev_.space();

  // ---- Step metadata: positions, sequence of each token, RoPE base and logn factor per token.
  const int64_t seq_len = cfg_.seq_length > 0 ? cfg_.seq_length : 0;
  // One upload per step: the int32 arrays, then the f32 ones (as bits) right after them.
  const size_t int_words = size_t(2 * S + 1 + 3 * T);
  w.h_meta.assign(int_words + size_t(2 * T), 0);
  w.h_fmeta.assign(size_t(2 * T), 1.f);
  int32_t* q_start = w.h_meta.data();
  int32_t* kv_len = q_start + S + 1;
  int32_t* positions = kv_len + S;
  int32_t* token_seq = positions + T;
  int32_t* rows = token_seq + T;
  float* bases = w.h_fmeta.data();
  float* logn = bases + T;
  for (int s = 0; s < S; ++s) {
    q_start[s + 1] = step.q_starts[s + 1];
    kv_len[s] = step.past_lens[s] + step.q_lens[s];
    // Qwen v1 dynamic NTK: alpha fixed per sequence at its prefill from the prompt length.
    float base = cfg_.rope_theta;
    if (cfg_.use_dynamic_ntk && seq_len > 0) {
      const int seq = step.seq_ids[s];
      if (size_t(seq) >= ntk_base_.size()) ntk_base_.resize(size_t(seq) + 1, cfg_.rope_theta);
      if (step.past_lens[s] == 0) {
        const double L = step.prompt_lens.empty() ? double(kv_len[s]) : double(step.prompt_lens[s]);
        const double context = std::log2(L / double(seq_len)) + 1.0;
        const double alpha = std::max(std::pow(2.0, std::ceil(context)) - 1.0, 1.0);
        const double d = cfg_.rot_dim;
        ntk_base_[size_t(seq)] = float(double(cfg_.rope_theta) * std::pow(alpha, d / (d - 2.0)));
      }
      base = ntk_base_[size_t(seq)];
    }
    for (int j = 0; j < step.q_lens[s]; ++j) {
      const int t = step.q_starts[s] + j;
      const int pos = step.past_lens[s] + j;
      positions[t] = pos;
      token_seq[t] = s;
      bases[t] = base;
      if (cfg_.use_logn_attn && seq_len > 0)
        logn[t] = pos + 1 > seq_len ? float(std::log(double(pos + 1)) / std::log(double(seq_len))) : 1.f;
    }
  }
  const int R = int(logit_rows.size());
  for (int i = 0; i < R; ++i) rows[i] = logit_rows[size_t(i)];
  std::memcpy(w.h_meta.data() + int_words, w.h_fmeta.data(), w.h_fmeta.size() * sizeof(float));
  w.meta.upload(w.h_meta.data(), w.h_meta.size());
  if (tokens) w.ids.upload(tokens->data(), size_t(T));  // else written there by the caller
  const int32_t* d_meta = w.meta.data();
  step.d_q_start = d_meta;
  step.d_kv_len = d_meta + S + 1;
  step.d_positions = d_meta + 2 * S + 1;
  step.d_token_seq = step.d_positions + T;
  // Logits of every token in order (every decode step): the last norm reads x itself, no gather
  bool rows_identity = R == T;
  for (int i = 0; i < R && rows_identity; ++i) rows_identity = logit_rows[size_t(i)] == i;
  const int32_t* d_rows = rows_identity ? nullptr : step.d_token_seq + T;
  const float* d_bases = reinterpret_cast<const float*>(d_meta + int_words);
  const float* d_logn = d_bases + T;
  check(cache_->reserve(step));
  if (w.logits.size() < size_t(R) * size_t(cfg_.vocab))
    w.logits = Buffer<float>(dev_, size_t(R) * size_t(cfg_.vocab), MemCategory::workspace);
  const TensorView logits(w.logits.data(), DType::f32, {R, cfg_.vocab}, sp);

  bool decode = use_graphs_ && R == S;
  for (int s = 0; s < S && decode; ++s) decode = step.q_lens[s] == 1;
  if (!decode) {
    compute(step, R, d_bases, d_logn, d_rows);
    return logits;
  }
  // Decode: replay a graph captured for this shape. The kv length is rounded up to a power of two
  // (an upper bound is all attention needs), so a shape is re-captured only log2(L) times.
  int64_t bucket = 64;
  while (bucket < step.max_kv_len) bucket *= 2;
  step.max_kv_len = int(std::min<int64_t>(bucket, cache_->info().capacity_tokens));
  KvView kv0;
  check(cache_->view(0, step, &kv0));
  const std::array<int64_t, 6> key{S, R, step.max_kv_len, int64_t(reinterpret_cast<intptr_t>(kv0.block_table)),
                                   kv0.max_blocks_per_seq, rows_identity ? 1 : 0};
  auto it = graphs_.find(key);
  if (it == graphs_.end()) {
    if (!seen_shapes_.count(key)) {  // first time: run eagerly so every workspace reaches its size
      seen_shapes_.insert(key);
      compute(step, R, d_bases, d_logn, d_rows);
      return logits;
    }
    Queue& q = dev_.queue();
    check(q.capture_begin());
    try {
      compute(step, R, d_bases, d_logn, d_rows);
    } catch (...) {
      void* broken = nullptr;
      q.capture_end(&broken);
      q.graph_destroy(broken);
      throw;
    }
    void* g = nullptr;
    check(q.capture_end(&g));
    it = graphs_.emplace(key, g).first;
    ++graph_captures_;
  }
  check(dev_.queue().graph_launch(it->second));
  ++graph_replays_;
  return logits;
}

void Transformer::compute(const StepBatch& step, int R, const float* d_bases, const float* d_logn,
                          const int32_t* d_rows) {
  Workspace& w = *ws_;
  Ops& ops = dev_.ops();
  const int T = step.num_tokens;
  const int64_t hidden = cfg_.hidden, H = cfg_.num_heads, KVH = cfg_.num_kv_heads, D = cfg_.head_dim,
                F = cfg_.intermediate;
  const MemSpace sp = dev_.space();
  auto view = [&](void* p, DType t, std::initializer_list<int64_t> dims) { return TensorView(p, t, dims, sp); };
  TensorView x = view(w.x.data(), DType::f32, {T, hidden});
  TensorView h = view(w.h.data(), DType::f32, {T, hidden});
  TensorView q = view(w.q.data(), DType::f32, {T, H * D});
  TensorView a = view(w.a.data(), DType::f32, {T, H * D});
  TensorView k = view(w.k.data(), DType::f32, {T, KVH * D});
  TensorView v = view(w.v.data(), DType::f32, {T, KVH * D});
  TensorView g = view(w.g.data(), DType::f32, {T, F});
  TensorView u = view(w.u.data(), DType::f32, {T, F});

  // x = embedding(tokens); the RoPE cos/sin of every token, once for all layers
  check(ops.embedding(x, view(embed_.data(), embed_dtype_, {cfg_.vocab, hidden}), w.ids.data()));
  const TensorView rope_cs = view(w.rope.data(), DType::f32, {T, cfg_.rot_dim});
  check(ops.rope_table(rope_cs, step.d_positions, d_bases, cfg_.rope_theta));
  // Projections that fuse (Linear::fuses) read RMSNorm(x) themselves and add their output to x
  // themselves; around the others the unfused ops run: h = RMSNorm(x) before, and the output left
  // in h ("pending") until the next norm adds it to x (add_rms_norm) or settle() does.
  const float eps = cfg_.norm_eps;
  bool pending = false;  // h holds a projection's output not yet added to x
  auto settle = [&] {
    if (pending) check(ops.add(x, x, h));
    pending = false;
  };
  auto norm_into_h = [&](const TensorView& ln) {
    if (pending) check(ops.add_rms_norm(x, h, h, ln, eps));
    else check(ops.rms_norm(h, x, ln, eps));
    pending = false;
  };
  // y = lin(RMSNorm(x)·ln): the Linear normalizes x itself when it fuses `norm`, else h = RMSNorm(x).
  auto project_normed = [&](Linear& lin, TensorView y, const MatmulFusion& norm, const TensorView& ln) {
    if (lin.fuses(norm, T)) {
      settle();
      check(lin.forward_fused(y, x, norm));
    } else {
      norm_into_h(ln);
      check(lin.forward(y, h));
    }
  };
  MatmulFusion acc;
  acc.accumulate = true;
  // The attention may write its output as bf16 for an o projection that multiplies in bf16 anyway
  // (reads_bf16): the same values, one conversion kernel fewer per layer (KVRUN_ATTN_BF16=0: f32).
  const bool attn_writes_bf16 = attention_->writes_bf16(step);
  const bool attn_bf16 = attn_bf16_ && attn_writes_bf16;
  bool logged_bf16 = false;  // the debug line below: once per step
  for (int l = 0; l < cfg_.num_layers; ++l) {
    Layer& L = *layers_[size_t(l)];
    const TensorView ln1 = view(L.ln1.data(), L.ln1_dtype, {hidden});
    const TensorView ln2 = view(L.ln2.data(), L.ln2_dtype, {hidden});
    MatmulFusion norm1, norm2;
    norm1.norm_w = &ln1;
    norm2.norm_w = &ln2;
    norm1.norm_eps = norm2.norm_eps = eps;
    // q, k, v = projections of RMSNorm(x). A fused projection writes q | k | v per token: one
    // token's q, k and v are contiguous and are used in place; several tokens are split into q, k, v.
    TensorView qt = q, kt = k, vt = v;
    bool qk_adjacent = false;  // q and k heads contiguous: one RoPE launch over both
    bool roped = false;        // q and k already rotated (split_rope)
    bool appended = false;     // keys and values already in the cache (append_qkv)
    if (L.qkv) {
      TensorView qkv = view(w.qkv.data(), DType::f32, {T, (H + 2 * KVH) * D});
      project_normed(*L.qkv, qkv, norm1, ln1);
      if (append_qkv_) {
        // the cache rotates (and logn-scales) q into q_out (one token: in place) and stores k
        // rotated and v
        qt = T == 1 ? view(w.qkv.data(), DType::f32, {1, H * D}) : q;
        check(cache_->append_qkv(l, step, qkv, view(qt.data, DType::f32, {T, H, D}), rope_cs,
                                 cfg_.use_logn_attn ? d_logn : nullptr));
        roped = appended = true;
      } else if (T == 1) {
        qt = view(w.qkv.data(), DType::f32, {1, H * D});
        kt = view(w.qkv.data() + H * D, DType::f32, {1, KVH * D});
        vt = view(w.qkv.data() + (H + KVH) * D, DType::f32, {1, KVH * D});
        qk_adjacent = true;
      } else {
        // several tokens: q, k, v split out of the fused rows, q and k rotated on the way
        check(ops.split_rope(qkv, view(q.data, DType::f32, {T, H, D}), view(k.data, DType::f32, {T, KVH, D}),
                             view(v.data, DType::f32, {T, KVH, D}), rope_cs));
        roped = true;
      }
    } else {
      norm_into_h(ln1);
      check(L.q->forward(q, h));
      check(L.k->forward(k, h));
      check(L.v->forward(v, h));
    }
    // RoPE on q and k (rotate-half over rot_dim), Qwen v1 logn scaling of q
    TensorView q3 = view(qt.data, DType::f32, {T, H, D});
    TensorView k3 = view(kt.data, DType::f32, {T, KVH, D});
    if (qk_adjacent) {
      check(ops.rope_apply(view(qt.data, DType::f32, {T, H + KVH, D}), rope_cs));
    } else if (!roped) {
      check(ops.rope_apply(q3, rope_cs));
      check(ops.rope_apply(k3, rope_cs));
    }
    if (cfg_.use_logn_attn && !appended) check(ops.scale_rows(qt, d_logn));
    // quantize-then-attend: keys/values go to the cache first, attention reads them back
    if (!appended) check(cache_->append(l, step, k3, view(vt.data, DType::f32, {T, KVH, D})));
    KvView kv;
    check(cache_->view(l, step, &kv));
    // x += o(a)
    const bool o_fused = L.o->fuses(acc, T);
    const bool o_reads_bf16 = o_fused && L.o->reads_bf16(acc, T);
    const bool o_bf16 = attn_bf16 && o_reads_bf16;
    if (!logged_bf16 && log_level() <= LogLevel::debug) {
      logged_bf16 = true;
      log_debug("model: step of " + std::to_string(T) + " tokens: attention output " +
                (o_bf16 ? "handed to o_proj as bf16" : "in f32") + " (KVRUN_ATTN_BF16 " + (attn_bf16_ ? "on" : "off") +
                ", attention writes bf16: " + (attn_writes_bf16 ? "yes" : "no") + ", o_proj fuses y +=: " +
                (o_fused ? "yes" : "no") + ", reads bf16: " + (o_reads_bf16 ? "yes" : "no") + ")");
    }
    // the attention's output: [T, H·D], bf16 where o_proj reads it so, else f32 (a)
    const DType a_dtype = o_bf16 ? DType::bf16 : DType::f32;
    check(attention_->forward(view(a.data, a_dtype, {T, H, D}), q3, kv, step));
    if (o_fused) {
      check(L.o->forward_fused(x, view(a.data, a_dtype, {T, H * D}), acc));
    } else {
      check(L.o->forward(h, a));
      pending = true;
    }
    // x += down(silu(gate(RMSNorm(x))) * up(RMSNorm(x)))
    if (L.gate_up) {
      TensorView gu = view(w.gu.data(), DType::f32, {T, 2 * F});
      project_normed(*L.gate_up, gu, norm2, ln2);
      MatmulFusion sw_acc;
      sw_acc.swiglu = sw_acc.accumulate = true;
      if (L.down->fuses(sw_acc, T)) {
        check(L.down->forward_fused(x, gu, sw_acc));
        continue;
      }
      check(ops.swiglu(g, gu));
    } else {
      norm_into_h(ln2);
      check(L.gate->forward(g, h));
      check(L.up->forward(u, h));
      check(ops.silu_mul(g, g, u));
    }
    if (L.down->fuses(acc, T)) {
      check(L.down->forward_fused(x, g, acc));
    } else {
      check(L.down->forward(h, g));
      pending = true;
    }
  }
  settle();
  if (R == 0) return;
  // logits = lm_head(RMSNorm(x[rows])); d_rows null: rows 0 .. R − 1 = every token (x itself)
  TensorView sel = d_rows ? view(w.sel.data(), DType::f32, {R, hidden}) : x;
  if (d_rows) check(ops.gather_rows(sel, x, d_rows));
  TensorView logits = view(w.logits.data(), DType::f32, {R, cfg_.vocab});
  TensorView head = lm_head_.empty() ? view(embed_.data(), embed_dtype_, {cfg_.vocab, hidden})
                                     : view(lm_head_.data(), lm_head_dtype_, {cfg_.vocab, hidden});
  const TensorView final_norm = view(final_norm_.data(), norm_dtype_, {hidden});
  MatmulFusion normf;
  normf.norm_w = &final_norm;
  normf.norm_eps = eps;
  if (ops.matmul_fuses(normf, R, head)) {
    check(ops.matmul_fused(logits, sel, head, nullptr, normf));
  } else {
    check(ops.rms_norm(sel, sel, final_norm, eps));
    check(ops.matmul(logits, sel, head, nullptr));
  }
}

ModelConfig synthetic_config(const std::string& name) {
  ModelConfig c;
  if (name == "qwen-7b") {
    c.arch = Arch::qwen;
    c.model_type = "qwen";
    c.hidden = 4096;
    c.num_layers = 32;
    c.num_heads = 32;
    c.num_kv_heads = 32;
    c.head_dim = 128;
    c.intermediate = 11008;
    c.vocab = 151936;
    c.qkv_bias = true;
    c.tie_embeddings = false;
    c.seq_length = 8192;
    c.max_positions = 8192;
  } else if (name == "qwen2.5-7b") {
    c.arch = Arch::qwen2;
    c.model_type = "qwen2";
    c.hidden = 3584;
    c.num_layers = 28;
    c.num_heads = 28;
    c.num_kv_heads = 4;
    c.head_dim = 128;
    c.intermediate = 18944;
    c.vocab = 152064;
    c.qkv_bias = true;
    c.tie_embeddings = false;
    c.max_positions = 32768;
  } else {
    fail(ErrorKind::usage, "unknown synthetic model '" + name + "'; use \"qwen-7b\" or \"qwen2.5-7b\"");
  }
  c.rope_theta = 10000.f;
  c.rot_dim = c.head_dim;
  c.norm_eps = 1e-6f;
  c.torch_dtype = "bfloat16";
  return c;
}

}  // namespace kvrun
