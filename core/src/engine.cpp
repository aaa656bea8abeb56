// The generation loop: chunked batched prefill, then one decode step at a time for every live
// sequence; sampling on the device unless a repetition penalty needs the logits on the host.
#include "kvrun/engine.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>

#include "kvrun/log.hpp"
#include "kvrun/sampler.hpp"
#include "kvrun/ops.hpp"

namespace kvrun {
namespace {

using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

int64_t blocks_for(int64_t tokens, int block_tokens) { return (tokens + block_tokens - 1) / block_tokens; }

// Builds a StepBatch (host part) from per-sequence (seq id, past, q_len).
StepBatch make_step(const std::vector<int>& seq_ids, const std::vector<int>& past, const std::vector<int>& qlen,
                    const std::vector<int>& prompt_lens) {
  StepBatch s;
  s.prompt_lens = prompt_lens;
  s.num_seqs = int(seq_ids.size());
  s.seq_ids = seq_ids;
  s.past_lens = past;
  s.q_lens = qlen;
  s.q_starts.assign(size_t(s.num_seqs) + 1, 0);
  for (int i = 0; i < s.num_seqs; ++i) {
    s.q_starts[i + 1] = s.q_starts[i] + qlen[i];
    s.max_q_len = std::max(s.max_q_len, qlen[i]);
    s.max_kv_len = std::max(s.max_kv_len, past[i] + qlen[i]);
  }
  s.num_tokens = s.q_starts.back();
  return s;
}

// HF-style repetition penalty on one row: divide positive logits, multiply negative ones.
void apply_repetition_penalty(float* row, const std::vector<int32_t>& history, float penalty) {
  std::vector<int32_t> seen = history;
  std::sort(seen.begin(), seen.end());
  seen.erase(std::unique(seen.begin(), seen.end()), seen.end());
  for (int32_t id : seen) row[id] = row[id] > 0 ? row[id] / penalty : row[id] * penalty;
}

}  // namespace

std::vector<SequenceResult> Engine::generate(const std::vector<std::vector<int32_t>>& prompts,
                                             const GenerationSettings& st,
                                             const std::function<std::string(int32_t)>& token_bytes,
                                             const std::function<void(int, int32_t)>& on_token,
                                             GenerationStats* stats) {
  const int B = int(prompts.size());
  Device& dev = model_.device();
  Cache& cache = model_.cache();
  const CacheInfo ci = cache.info();
  const int32_t V = model_.summary().vocab;
  const int chunk = model_.max_step_tokens();

  // Refuse what can never fit, before any work.
  int64_t prompt_blocks = 0;
  for (int s = 0; s < B; ++s) {
    if (prompts[s].empty()) fail(ErrorKind::usage, "prompt " + std::to_string(s) + " is empty");
    for (int32_t id : prompts[s])
      if (id < 0 || id >= V)
        fail(ErrorKind::usage, "prompt " + std::to_string(s) + " has token id " + std::to_string(id) +
                                   " outside the vocabulary [0, " + std::to_string(V) + ")");
    prompt_blocks += blocks_for(int64_t(prompts[s].size()) + 1, ci.block_tokens);
  }
  if (prompt_blocks > cache.free_blocks()) {
    int64_t total = 0;
    for (auto& p : prompts) total += int64_t(p.size());
    fail(ErrorKind::usage, "the prompts (" + std::to_string(total) + " tokens in " + std::to_string(B) +
                               " sequences) do not fit in the KV cache (capacity " + std::to_string(ci.capacity_tokens) +
                               " tokens of " + std::to_string(ci.block_tokens) +
                               "-token blocks); raise cache.max_tokens (or cache.memory_fraction), or shorten the prompts");
  }
  const int64_t max_pos = model_.summary().max_positions;
  for (int s = 0; s < B; ++s)
    if (max_pos > 0 && int64_t(prompts[s].size()) + st.max_new_tokens > max_pos)
      log_warn("sequence " + std::to_string(s) + " may reach " + std::to_string(prompts[s].size() + st.max_new_tokens) +
               " tokens, past the model's trained context of " + std::to_string(max_pos));

  std::vector<SequenceResult> res(static_cast<size_t>(B));
  std::vector<int> past(static_cast<size_t>(B), 0);
  std::vector<bool> done(static_cast<size_t>(B), false);
  // Every sequence's cache blocks go back when generate() returns — also when it fails midway (a
  // NaN in the logits, a device error), so the caller's next request finds the cache empty again.
  struct FreeAll {
    Cache& cache;
    int n;
    bool checked = false;  // the normal way out frees (and reports failures) itself
    ~FreeAll() {
      if (!checked)
        for (int s = 0; s < n; ++s) (void)cache.free_sequence(s);
    }
  } free_all{cache, B};
  std::vector<std::string> text(static_cast<size_t>(B));
  for (int s = 0; s < B; ++s) res[s].prompt_ids = prompts[s];

  // A finished sequence gives its cache blocks back at once, so the others can use them.
  auto finish = [&](int s, const char* reason) {
    res[s].finish_reason = reason;
    done[s] = true;
    check(cache.free_sequence(s));
  };
  // Polled once per step; on an interrupt every running sequence ends with "interrupted" (the
  // overlapped decode first takes the step in flight: before_ending).
  auto interrupted = [&](const std::function<void()>& before_ending = {}) {
    if (!st.interrupted || !st.interrupted()) return false;
    if (before_ending) before_ending();
    for (int s = 0; s < B; ++s)
      if (!done[s]) finish(s, "interrupted");
    return true;
  };

  Buffer<int32_t> d_ids(dev, size_t(std::max(B, 1)), MemCategory::workspace);
  std::vector<int32_t> h_ids(static_cast<size_t>(B));
  std::vector<float> h_logits;

  // Sampling parameters for `seqs` (same order as the logits rows; Ops::sample on the device,
  // sample_row on the host): each sequence's RNG stream is (seed, sequence), at position `sampled`
  // (its tokens sampled so far).
  std::vector<int64_t> sampled(static_cast<size_t>(B), 0);
  auto sample_params = [&](const std::vector<int>& seqs) {
    std::vector<SampleParams> params(seqs.size());
    for (size_t i = 0; i < seqs.size(); ++i) {
      const int s = seqs[i];
      params[i] = SampleParams{st.temperature, st.top_k, st.top_p, st.min_p,
                               st.seed + 0x9e3779b97f4a7c15ull * uint64_t(s), uint64_t(sampled[size_t(s)])};
    }
    return params;
  };

  // Records one sampled id for each sequence in `seqs` (same order), streams it, and decides
  // whether the sequence is finished. A sequence already finished (the overlapped decode below
  // computes one step past an end it did not know yet) takes nothing: its id is dropped.
  auto take = [&](const std::vector<int>& seqs, const int32_t* ids) {
    for (size_t i = 0; i < seqs.size(); ++i) {
      const int s = seqs[i];
      if (done[s]) continue;
      const int32_t id = ids[i];
      if (id < 0)  // Ops::sample / sample_row: the row holds a NaN
        fail(ErrorKind::model,
             "sequence " + std::to_string(s) + ": the logits for its generated token " +
                 std::to_string(res[s].output_ids.size() + 1) +
                 " hold a NaN, so no token can be sampled. The model produced it: a weight of the checkpoint "
                 "that is NaN or inf, or activations that overflowed (in an fp16 KV cache, values past ±65504 "
                 "become inf). Check the checkpoint's tensors for NaN / inf; with cache.type = \"fp16\", try "
                 "\"int8\" (per-token scales)");
      res[s].output_ids.push_back(id);
      if (on_token) on_token(s, id);
      if (std::find(st.eos_ids.begin(), st.eos_ids.end(), id) != st.eos_ids.end()) {
        finish(s, "eos");
        continue;
      }
      if (!st.stop_strings.empty() && token_bytes) {
        std::string piece = token_bytes(id);
        size_t before = text[s].size();
        text[s] += piece;
        for (const std::string& stop : st.stop_strings) {
          if (stop.empty()) continue;
          size_t from = before >= stop.size() ? before - stop.size() + 1 : 0;
          size_t at = text[s].find(stop, from);
          if (at != std::string::npos) {
            res[s].stop_offset = at;
            finish(s, "stop");
            break;
          }
        }
        if (done[s]) continue;
      }
      if (int(res[s].output_ids.size()) >= st.max_new_tokens) finish(s, "length");
    }
  };

  // Samples one token for each sequence in `seqs` from logits rows (same order) and takes them,
  // waiting for the device.
  auto sample = [&](const std::vector<int>& seqs, TensorView logits) {
    const int n = int(seqs.size());
    const std::vector<SampleParams> params = sample_params(seqs);
    if (st.repetition_penalty != 1.f) {  // the penalty needs the logits on the host
      h_logits.resize(size_t(n) * V);
      check(dev.queue().copy_d2h(h_logits.data(), logits.data, h_logits.size() * sizeof(float)));
      check(dev.queue().wait());
      for (int i = 0; i < n; ++i) {
        int s = seqs[i];
        float* row = h_logits.data() + size_t(i) * V;
        std::vector<int32_t> hist = res[s].prompt_ids;
        hist.insert(hist.end(), res[s].output_ids.begin(), res[s].output_ids.end());
        apply_repetition_penalty(row, hist, st.repetition_penalty);
        const SampleParams& p = params[size_t(i)];
        h_ids[i] = sample_row(row, V, p.temperature, p.top_k, p.top_p, p.min_p, p.seed, p.counter);
      }
    } else {
      check(dev.ops().sample(d_ids.data(), logits, params.data()));
      check(dev.queue().copy_d2h(h_ids.data(), d_ids.data(), size_t(n) * sizeof(int32_t)));
      check(dev.queue().wait());
    }
    for (int s : seqs) ++sampled[size_t(s)];
    take(seqs, h_ids.data());
  };

  auto t0 = Clock::now();
  if (st.max_new_tokens <= 0) {  // nothing to generate: no prefill, no decode
    for (int s = 0; s < B; ++s) res[s].finish_reason = "length", done[s] = true;
  }

  // ---- Prefill, packing chunks of several sequences into steps of at most `chunk` tokens.
  if (st.max_new_tokens > 0) {
    int s = 0;
    while (s < B && !interrupted()) {
      std::vector<int> ids, pst, ql, finishing;
      std::vector<int32_t> tokens, rows;
      int budget = chunk;
      while (s < B && budget > 0) {
        int remaining = int(prompts[s].size()) - past[s];
        int take = std::min(remaining, budget);
        ids.push_back(s);
        pst.push_back(past[s]);
        ql.push_back(take);
        tokens.insert(tokens.end(), prompts[s].begin() + past[s], prompts[s].begin() + past[s] + take);
        budget -= take;
        if (take == remaining) {
          rows.push_back(int32_t(tokens.size()) - 1);
          finishing.push_back(s);
          ++s;
        } else {
          break;  // this sequence continues in the next step
        }
      }
      std::vector<int> plen;
      for (int i : ids) plen.push_back(int(prompts[i].size()));
      StepBatch step = make_step(ids, pst, ql, plen);
      TensorView logits = model_.forward(tokens, step, rows);
      for (size_t i = 0; i < ids.size(); ++i) past[ids[i]] += ql[i];
      if (!finishing.empty()) sample(finishing, logits);
    }
  }
  double prefill = seconds_since(t0);
  if (stats) {
    stats->prefill_seconds = prefill;
    stats->first_token_seconds = prefill;
    for (auto& p : prompts) stats->prompt_tokens += int64_t(p.size());
  }

  // ---- Decode: one token per live sequence per step.
  const bool penalty = st.repetition_penalty != 1.f;
  if (st.overlap == GenerationSettings::Overlap::on && penalty)
    fail(ErrorKind::usage, "generation.overlap = \"on\" needs sampling on the device, but a repetition penalty "
                           "samples on the host; use overlap \"auto\" or \"off\", or repetition_penalty = 1");
  const bool overlap = overlaps(st, dev.is_cpu());

  // The next step's sequences: the live ones with tokens left to sample (`sampled` also counts a
  // step still in flight), each with a cache block for its next token. A sequence without one
  // ends with "cache_full" (its blocks go to the ones after it) — unless may_end is false: then
  // plan() ends nothing and returns false, and the caller first takes the step in flight (whose
  // ends may free blocks), as the one-step-at-a-time loop would have.
  struct Plan {
    std::vector<int> ids, past, q_lens, prompt_lens;
    std::vector<int32_t> rows;
  };
  auto plan = [&](Plan& p, bool may_end) {
    p = Plan{};
    int64_t free_blocks = cache.free_blocks();
    for (int s = 0; s < B; ++s) {
      if (done[s] || sampled[size_t(s)] >= st.max_new_tokens) continue;
      int64_t need = blocks_for(past[s] + 1, ci.block_tokens) - blocks_for(past[s], ci.block_tokens);
      if (need > free_blocks) {
        if (!may_end) return false;
        const int64_t before = cache.free_blocks();
        finish(s, "cache_full");
        free_blocks += cache.free_blocks() - before;
        continue;
      }
      free_blocks -= need;
      p.rows.push_back(int32_t(p.ids.size()));
      p.ids.push_back(s);
      p.past.push_back(past[s]);
      p.q_lens.push_back(1);
      p.prompt_lens.push_back(int(prompts[s].size()));
    }
    return true;
  };

  // A step's input ids from the host: each sequence's last token (sampled and taken).
  auto host_tokens = [&](const Plan& p) {
    std::vector<int32_t> tokens;
    for (int s : p.ids) tokens.push_back(res[s].output_ids.back());
    return tokens;
  };

  auto t1 = Clock::now();
  if (!overlap) {
    while (!interrupted()) {
      Plan p;
      plan(p, true);
      if (p.ids.empty()) break;
      auto ts = Clock::now();
      StepBatch step = make_step(p.ids, p.past, p.q_lens, p.prompt_lens);
      TensorView logits = model_.forward(host_tokens(p), step, p.rows);
      for (int s : p.ids) past[s] += 1;
      sample(p.ids, logits);
      if (stats) stats->step_ms.push_back(seconds_since(ts) * 1e3);
    }
  } else {
    // Two steps alternate in `fl`: the one being issued (fl[cur]) and the one before it, whose ids
    // the host takes while the device runs the new one. The sampler writes each step's ids into
    // the model's input (next_tokens) in the step's order, and copies them to the host behind an
    // event. A step's time is the time between two steps' ids reaching the host.
    struct InFlight {
      std::vector<int> seqs;
      std::vector<int32_t> ids;
      Event ev;
    };
    InFlight fl[2];
    // Leaving with an error while a step is in flight: its copy into fl[] must land first.
    struct Drain {
      Queue& q;
      ~Drain() { (void)q.wait(); }
    } drain{dev.queue()};
    int cur = 0;
    bool pending = false;  // fl[1 - cur] is issued and not taken
    bool on_device = false;  // next_tokens() holds the ids of fl[1 - cur] (the last step issued)
    auto last = t1;
    auto take_pending = [&] {
      if (!pending) return;
      InFlight& f = fl[1 - cur];
      check(dev.queue().wait_for(f.ev));
      pending = false;
      take(f.seqs, f.ids.data());
      if (stats) {
        const auto now = Clock::now();
        stats->step_ms.push_back(std::chrono::duration<double, std::milli>(now - last).count());
        last = now;
      }
    };
    while (true) {
      if (interrupted(take_pending)) break;  // the step in flight is sampled already: kept
      Plan p;
      if (!plan(p, !pending)) {
        take_pending();
        continue;
      }
      if (p.ids.empty()) break;
      StepBatch step = make_step(p.ids, p.past, p.q_lens, p.prompt_lens);
      TensorView logits;
      if (on_device) {
        // This step's sequences are the last step's less those that ended (in the same order):
        // their ids move to the front of next_tokens(), each to a place at or before its own.
        const std::vector<int>& prev = fl[1 - cur].seqs;
        int32_t* d = model_.next_tokens();
        size_t j = 0;
        for (size_t i = 0; i < p.ids.size(); ++i, ++j) {
          while (j < prev.size() && prev[j] != p.ids[i]) ++j;
          if (j == prev.size()) fail(ErrorKind::internal, "overlapped decode: a sequence joined between steps");
          if (j != i) check(dev.queue().copy_d2d(d + i, d + j, sizeof(int32_t)));
        }
        try {
          logits = model_.forward_device(step, p.rows);
        } catch (...) {
          // A step that fails as it is issued (a synchronous backend runs it here: the CPU's
          // embedding refuses the −1 a NaN row gave) first lets the step before report its own
          // cause — take() fails on that NaN — and otherwise passes the error on.
          take_pending();
          throw;
        }
      } else {  // the first step: its ids came back with the prefill
        logits = model_.forward(host_tokens(p), step, p.rows);
      }
      for (int s : p.ids) past[s] += 1;
      InFlight& f = fl[cur];
      const std::vector<SampleParams> params = sample_params(p.ids);
      check(dev.ops().sample(model_.next_tokens(), logits, params.data()));
      for (int s : p.ids) ++sampled[size_t(s)];
      f.seqs = p.ids;
      f.ids.assign(p.ids.size(), 0);
      check(dev.queue().copy_d2h_async(f.ids.data(), model_.next_tokens(), f.ids.size() * sizeof(int32_t)));
      check(dev.queue().record(&f.ev));
      on_device = true;
      take_pending();  // the step before, while this one runs
      pending = true;
      cur = 1 - cur;
    }
    take_pending();
  }
  if (stats) {
    stats->decode_seconds = seconds_since(t1);
    for (auto& r : res) stats->generated_tokens += int64_t(r.output_ids.size());
  }
  free_all.checked = true;
  for (int s = 0; s < B; ++s) check(cache.free_sequence(s));
  return res;
}

ScoreResult Engine::score(const std::vector<int32_t>& ids) {
  Device& dev = model_.device();
  Cache& cache = model_.cache();
  const int32_t V = model_.summary().vocab;
  const int n = int(ids.size());
  if (n == 0) fail(ErrorKind::usage, "nothing to score: the id list is empty");
  for (int32_t id : ids)
    if (id < 0 || id >= V)
      fail(ErrorKind::usage, "token id " + std::to_string(id) + " is outside the vocabulary [0, " + std::to_string(V) + ")");
  const CacheInfo ci = cache.info();
  if (blocks_for(n, ci.block_tokens) > cache.free_blocks())
    fail(ErrorKind::usage, "a sequence of " + std::to_string(n) + " tokens does not fit in the KV cache (capacity " +
                               std::to_string(ci.capacity_tokens) + " tokens); raise cache.max_tokens");
  ScoreResult r;
  r.argmax.resize(size_t(n));
  r.logprob.resize(size_t(n - 1));
  std::vector<float> h;
  const int chunk = model_.max_step_tokens();
  for (int p = 0; p < n; p += chunk) {
    int q = std::min(chunk, n - p);
    std::vector<int32_t> tokens(ids.begin() + p, ids.begin() + p + q);
    std::vector<int32_t> rows(static_cast<size_t>(q));
    for (int i = 0; i < q; ++i) rows[i] = i;
    StepBatch step = make_step({0}, {p}, {q}, {n});
    TensorView logits = model_.forward(tokens, step, rows);
    h.resize(size_t(q) * V);
    check(dev.queue().copy_d2h(h.data(), logits.data, h.size() * sizeof(float)));
    check(dev.queue().wait());
    for (int i = 0; i < q; ++i) {
      const float* row = h.data() + size_t(i) * V;
      int32_t best = 0;
      for (int32_t v = 1; v < V; ++v)
        if (row[v] > row[best]) best = v;
      const double mx = row[best];
      r.argmax[p + i] = best;
      if (p + i + 1 < n) {
        double sum = 0;
        for (int32_t v = 0; v < V; ++v) sum += std::exp(double(row[v]) - mx);
        double lp = double(row[ids[p + i + 1]]) - mx - std::log(sum);
        r.logprob[p + i] = float(lp);
        r.nll -= lp;
      }
    }
  }
  check(cache.free_sequence(0));
  return r;
}

}  // namespace kvrun
