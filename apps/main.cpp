// kvrun — the command line. stdout carries results only (one JSON document with --json); logs,
// warnings and progress go to stderr. Exit codes: 0 ok, 2 usage/config, 3 model, 4 device, 1 other.
#include <poll.h>
#include <unistd.h>

#include <algorithm>
#include <boost/program_options.hpp>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>

#include "kvrun/log.hpp"
#include "kvrun/ops.hpp"
#include "kvrun/select.hpp"
#include "bench.hpp"
#include "cli_common.hpp"
#include "conformance.hpp"
#include "pipeline.hpp"

namespace po = boost::program_options;
using nlohmann::json;

namespace kvrun {
namespace {

const char* kUsage =
    "usage: kvrun <command> [options]\n"
    "\n"
    "commands:\n"
    "  plugins      list the plugins found and their capabilities\n"
    "  matrix       print the compatibility matrix derived from the plugins\n"
    "  check        validate a pipeline config (no device or weights needed)\n"
    "  generate     generate text for one or more prompts (batched)\n"
    "  chat         interactive ChatML chat, streaming\n"
    "  perplexity   score a text file in windows (SPECS.md §6 protocol)\n"
    "  score        per-position argmax and log-prob of given ids\n"
    "  memory       estimate weights / KV cache / workspace bytes for a batch\n"
    "  bench        throughput and memory sweep\n"
    "  selftest     check plugins, devices and the CPU/CUDA ops against each other\n"
    "\n"
    "run 'kvrun <command> --help' for its options; configs: docs/config.md\n";

json info_json(const PluginInfo& i, const std::string& path) {
  json j;
  j["name"] = i.full_name();
  j["kind"] = plugin_kind_name(i.kind);
  j["version"] = i.version;
  j["description"] = i.description;
  json b = json::array();
  for (BackendKind k : i.backends) b.push_back(backend_name(k));
  j["backends"] = b;
  json caps;
  if (i.kind == PluginKind::cache) caps["provides_layout"] = i.provides_layout;
  if (i.kind == PluginKind::attention) caps["reads_layouts"] = i.reads_layouts;
  if (i.kind == PluginKind::weights) caps["encodings"] = i.encodings;
  if (i.kind == PluginKind::cache) caps["kv_tolerance"] = i.kv_tolerance > 0 ? i.kv_tolerance : layout_tolerance(i.provides_layout);
  j["capabilities"] = caps;
  j["options"] = json::array();
  for (const PluginOptionInfo& o : i.options)
    j["options"].push_back({{"key", o.key}, {"type", o.type}, {"default", o.default_text}, {"doc", o.doc}});
  j["path"] = path;
  return j;
}

// ------------------------------------------------------------------------------------------------
int cmd_plugins(int argc, char** argv) {
  Common c;
  po::options_description d("options");
  add_common(d, c, false);
  if (!parse(argc, argv, d, "plugins", "[-c CONFIG] [--json]")) return 0;
  PipelineConfig cfg = config_from(c);
  Registry reg;
  reg.load_path(plugin_search_path(cfg));
  if (c.json_out) {
    json j;
    j["plugins"] = json::array();
    for (const auto& p : reg.plugins()) j["plugins"].push_back(info_json(p.info, p.path));
    j["problems"] = json::array();
    for (const auto& p : reg.problems()) j["problems"].push_back({{"path", p.path}, {"reason", p.reason}});
    j["searched"] = reg.searched();
    std::cout << dump(j) << "\n";
    return 0;
  }
  for (const auto& p : reg.plugins()) {
    const PluginInfo& i = p.info;
    std::string backends;
    for (BackendKind k : i.backends) backends += (backends.empty() ? "" : ",") + std::string(backend_name(k));
    std::string caps;
    if (i.kind == PluginKind::cache) caps = "provides " + i.provides_layout;
    if (i.kind == PluginKind::attention) {
      caps = "reads";
      for (auto& l : i.reads_layouts) caps += " " + l;
    }
    if (i.kind == PluginKind::weights) {
      caps = "loads";
      for (auto& e : i.encodings) caps += " " + e;
    }
    std::printf("%-18s %-7s %-9s %s\n    %s\n    %s\n", i.full_name().c_str(), i.version.c_str(), backends.c_str(),
                caps.c_str(), i.description.c_str(), p.path.c_str());
    for (const PluginOptionInfo& o : i.options)
      std::printf("    option %s (%s, default %s): %s\n", o.key.c_str(), o.type.c_str(), o.default_text.c_str(), o.doc.c_str());
  }
  for (const auto& p : reg.problems()) std::fprintf(stderr, "kvrun: warning: %s: %s\n", p.path.c_str(), p.reason.c_str());
  if (reg.plugins().empty()) std::fprintf(stderr, "kvrun: warning: no plugins found (set KVRUN_PLUGIN_PATH)\n");
  return 0;
}

int cmd_matrix(int argc, char** argv) {
  Common c;
  po::options_description d("options");
  add_common(d, c, false);
  if (!parse(argc, argv, d, "matrix", "[-c CONFIG] [--json]")) return 0;
  PipelineConfig cfg = config_from(c);
  Registry reg;
  reg.load_path(plugin_search_path(cfg));
  auto m = full_matrix(reg);
  if (c.json_out) {
    json j = json::array();
    for (const auto& e : m)
      j.push_back({{"weights", e.combo.weights},
                   {"cache", e.combo.cache},
                   {"attention", e.combo.attention},
                   {"backend", backend_name(e.combo.backend)},
                   {"valid", e.verdict.ok},
                   {"reason", e.verdict.message()}});
    std::cout << dump(json{{"matrix", j}}) << "\n";
    return 0;
  }
  std::printf("%-8s %-8s %-10s %-8s %-7s %s\n", "backend", "weights", "cache", "attention", "valid", "reason");
  for (const auto& e : m)
    std::printf("%-8s %-8s %-10s %-9s %-7s %s\n", backend_name(e.combo.backend), e.combo.weights.c_str(),
                e.combo.cache.c_str(), e.combo.attention.c_str(), e.verdict.ok ? "yes" : "NO", e.verdict.message().c_str());
  return 0;
}

int cmd_check(int argc, char** argv) {
  Common c;
  po::options_description d("options");
  add_common(d, c, true);
  if (!parse(argc, argv, d, "check", "-c CONFIG [--set k=v] [--json]")) return 0;
  PipelineConfig cfg = config_from(c);
  Registry reg;
  CheckReport r = check_pipeline(cfg, reg);
  if (c.json_out) {
    json j{{"config", cfg.source},
           {"valid", r.verdict.ok},
           {"backend", r.backend},
           {"weights", r.weights},
           {"cache", cfg.cache_type},
           {"attention", cfg.attention_kind},
           {"checkpoint_encoding", r.checkpoint_encoding},
           {"reasons", r.verdict.reasons},
           {"notes", r.notes}};
    std::cout << dump(j) << "\n";
  } else if (r.verdict.ok) {
    std::printf("%s: valid pipeline: weights.%s + cache.%s + attention.%s on %s\n", cfg.source.c_str(), r.weights.c_str(),
                cfg.cache_type.c_str(), cfg.attention_kind.c_str(), r.backend.c_str());
    for (auto& n : r.notes) std::fprintf(stderr, "kvrun: note: %s\n", n.c_str());
  }
  if (!r.verdict.ok) {
    std::fprintf(stderr, "kvrun: usage error: %s: invalid pipeline: %s\n", cfg.source.c_str(), r.verdict.message().c_str());
    return 2;
  }
  return 0;
}

// ------------------------------------------------------------------------------------------------
std::vector<int32_t> parse_ids(const std::string& s) {
  std::vector<int32_t> ids;
  std::stringstream ss(s);
  std::string item;
  while (std::getline(ss, item, ',')) {
    item.erase(0, item.find_first_not_of(" \t"));
    if (item.empty()) continue;
    try {
      size_t used = 0;
      long v = std::stol(item, &used);
      if (used != item.size() || v < 0 || v > INT32_MAX) throw std::invalid_argument("x");
      ids.push_back(int32_t(v));
    } catch (const std::exception&) {
      fail(ErrorKind::usage, "--prompt-ids: '" + item + "' is not a token id (expected e.g. 1,2,3)");
    }
  }
  if (ids.empty()) fail(ErrorKind::usage, "--prompt-ids: no ids given (expected e.g. 1,2,3)");
  return ids;
}

std::vector<std::string> read_prompts_file(const std::string& path) {
  std::ifstream in(path);
  if (!in) fail(ErrorKind::usage, "--prompts-file: cannot open '" + path + "'");
  std::vector<std::string> out;
  std::string line;
  int n = 0;
  while (std::getline(in, line)) {
    ++n;
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    try {
      json j = json::parse(line);
      if (!j.is_string()) throw std::runtime_error("not a JSON string");
      out.push_back(j.get<std::string>());
    } catch (const std::exception& e) {
      fail(ErrorKind::usage, path + ":" + std::to_string(n) + ": each line must be one JSON string (" + e.what() + ")");
    }
  }
  if (out.empty()) fail(ErrorKind::usage, "--prompts-file: '" + path + "' has no prompts");
  return out;
}

std::string output_text(Tokenizer* tok, const GenerationSettings& st, const SequenceResult& r) {
  if (!tok) return "";
  std::vector<int32_t> ids = r.output_ids;
  if (r.finish_reason == "eos" && !ids.empty()) ids.pop_back();
  std::string text = tok->decode(ids);
  if (r.finish_reason == "stop" && r.stop_offset != std::string::npos && r.stop_offset <= text.size())
    text.resize(r.stop_offset);
  return text;
}

int cmd_generate(int argc, char** argv) {
  Common c;
  std::string prompt, prompt_ids, prompts_file;
  int max_new = -1;
  bool chat_template = false;
  po::options_description d("options");
  add_common(d, c, true);
  d.add_options()("prompt,p", po::value(&prompt), "prompt text")("prompt-ids", po::value(&prompt_ids),
                                                                 "prompt as token ids: 1,2,3")(
      "prompts-file", po::value(&prompts_file), "JSON Lines file, one JSON string per line (generated as one batch)")(
      "max-new-tokens,n", po::value(&max_new), "tokens to generate per prompt")(
      "chat-template", po::bool_switch(&chat_template), "wrap each prompt as a ChatML user turn");
  if (!parse(argc, argv, d, "generate", "-c CONFIG (--prompt TEXT | --prompt-ids 1,2,3 | --prompts-file F) [--json]"))
    return 0;
  int given = !prompt.empty() + !prompt_ids.empty() + !prompts_file.empty();
  if (given != 1) fail(ErrorKind::usage, "generate: give exactly one of --prompt, --prompt-ids, --prompts-file");
  PipelineConfig cfg = config_from(c);
  // Ctrl-C from here on (the load included) stops generation at the next step; what was
  // generated is printed, then exit code 130.
  InterruptGuard sigint;
  Pipeline pipe(cfg);
  Tokenizer* tok = pipe.has_tokenizer() ? &pipe.tokenizer() : nullptr;
  std::vector<std::vector<int32_t>> prompts;
  std::vector<std::string> texts;
  if (!prompt_ids.empty()) {
    prompts.push_back(parse_ids(prompt_ids));
  } else {
    texts = prompt.empty() ? read_prompts_file(prompts_file) : std::vector<std::string>{prompt};
    for (auto& t : texts) {
      std::string s = chat_template ? chatml_prompt({{"user", t}}, true) : t;
      prompts.push_back(pipe.tokenizer().encode(s));
    }
  }
  GenerationSettings st = pipe.generation_settings(max_new >= 0 ? std::optional<int>(max_new) : std::nullopt);
  st.interrupted = [] { return InterruptGuard::requested(); };
  if (chat_template && tok)
    for (const char* sp : {"<|im_end|>", "<|endoftext|>"})
      if (auto id = tok->special_id(sp)) st.eos_ids.push_back(*id);
  int64_t need = 0;
  for (auto& p : prompts) need += int64_t(p.size()) + st.max_new_tokens;
  pipe.prepare(need, int(prompts.size()));
  Engine engine(pipe.model());
  GenerationStats stats;
  // Stream a single prompt's text to stdout as it comes (not with --json).
  const bool stream = !c.json_out && prompts.size() == 1 && tok;
  std::unique_ptr<StreamDecoder> sd;
  if (stream) sd = std::make_unique<StreamDecoder>(*tok);
  std::string streamed;
  auto on_token = [&](int, int32_t id) {
    if (!stream) return;
    if (std::find(st.eos_ids.begin(), st.eos_ids.end(), id) != st.eos_ids.end()) return;
    std::string piece = sd->push(id);
    streamed += piece;
    std::fwrite(piece.data(), 1, piece.size(), stdout);
    std::fflush(stdout);
  };
  auto results = engine.generate(
      prompts, st, [&](int32_t id) { return tok ? tok->token_bytes(id) : std::string(); }, on_token, &stats);
  const double tps = stats.decode_seconds > 0 ? double(stats.generated_tokens) / (stats.decode_seconds + stats.prefill_seconds) : 0;
  if (c.json_out) {
    json j;
    j["results"] = json::array();
    for (auto& r : results)
      j["results"].push_back({{"prompt_ids", r.prompt_ids},
                              {"output_ids", r.output_ids},
                              {"text", output_text(tok, st, r)},
                              {"finish_reason", r.finish_reason}});
    j["stats"] = {{"prompt_tokens", stats.prompt_tokens},
                  {"generated_tokens", stats.generated_tokens},
                  {"prefill_seconds", stats.prefill_seconds},
                  {"decode_seconds", stats.decode_seconds},
                  {"tokens_per_second", tps},
                  {"ms_per_step_median", median(stats.step_ms)},
                  {"device", pipe.device().info().name},
                  {"pipeline",
                   {{"weights", pipe.report().weights}, {"cache", cfg.cache_type}, {"attention", cfg.attention_kind}}},
                  {"kv_bytes_per_token", pipe.model().cache().info().bytes_per_token},
                  {"memory", memory_json(pipe.device())}};
    std::cout << dump(j) << "\n";
  } else if (stream) {
    std::string rest = sd->flush();
    std::fwrite(rest.data(), 1, rest.size(), stdout);
    std::printf("\n");
  } else {
    for (size_t i = 0; i < results.size(); ++i) {
      std::printf("=== [%zu] (%s)\n%s\n", i, results[i].finish_reason.c_str(), output_text(tok, st, results[i]).c_str());
    }
  }
  std::fprintf(stderr, "kvrun: %lld prompt tokens, %lld generated in %.2f s (prefill %.2f s, %.1f tokens/s, %.2f ms/step median)\n",
               (long long)stats.prompt_tokens, (long long)stats.generated_tokens,
               stats.prefill_seconds + stats.decode_seconds, stats.prefill_seconds, tps, median(stats.step_ms));
  print_memory(pipe.device());
  // A sequence cut short by the cache is a normal result (finish_reason "cache_full"), but say so:
  // with one streamed prompt nothing else would show it.
  for (size_t i = 0; i < results.size(); ++i)
    if (results[i].finish_reason == "cache_full")
      std::fprintf(stderr, "kvrun: warning: prompt %zu stopped after %zu of %d new tokens: the KV cache is full "
                   "(%lld tokens over the batch; finish_reason \"cache_full\"); raise cache.max_tokens (or "
                   "cache.memory_fraction) for longer outputs\n", i, results[i].output_ids.size(), st.max_new_tokens,
                   (long long)pipe.model().cache().info().capacity_tokens);
  if (InterruptGuard::requested()) {
    std::fflush(stdout);
    std::fprintf(stderr, "kvrun: interrupted: generation stopped after %lld generated tokens (finish_reason "
                 "\"interrupted\"); the partial output was printed\n", (long long)stats.generated_tokens);
    return kExitInterrupted;
  }
  return 0;
}

// The chat's input lines, read from fd 0 by kvrun itself: it waits with poll() in short rounds and
// looks at the Ctrl-C flag between them, so a Ctrl-C that arrives just before the wait is never
// lost (with a blocking read, a SIGINT between the prompt and the read left the chat waiting for
// input). A last line without a newline is a line, as with std::getline.
class ChatInput {
 public:
  enum class Got { line, end, interrupted };
  Got next(std::string& line) {
    while (true) {
      if (const size_t nl = buf_.find('\n'); nl != std::string::npos) {
        line.assign(buf_, 0, nl);
        buf_.erase(0, nl + 1);
        return Got::line;
      }
      if (eof_) {
        if (buf_.empty()) return Got::end;
        line = std::move(buf_);
        buf_.clear();
        return Got::line;
      }
      if (InterruptGuard::requested()) return Got::interrupted;
      pollfd p{STDIN_FILENO, POLLIN, 0};
      const int r = ::poll(&p, 1, 100);  // ms
      if (r == 0 || (r < 0 && errno == EINTR)) continue;
      char chunk[4096];
      const ssize_t n = r < 0 ? -1 : ::read(STDIN_FILENO, chunk, sizeof chunk);
      if (n > 0) buf_.append(chunk, size_t(n));
      else if (n == 0 || (errno != EINTR && errno != EAGAIN)) eof_ = true;  // end of input, or unreadable
    }
  }

 private:
  std::string buf_;
  bool eof_ = false;
};

int cmd_chat(int argc, char** argv) {
  Common c;
  std::string system = "You are a helpful assistant.";
  int max_new = -1;
  po::options_description d("options");
  add_common(d, c, true);
  d.add_options()("system", po::value(&system), "system message")("max-new-tokens,n", po::value(&max_new),
                                                                  "tokens per reply");
  if (!parse(argc, argv, d, "chat", "-c CONFIG [--system TEXT]")) return 0;
  PipelineConfig cfg = config_from(c);
  Pipeline pipe(cfg);
  Tokenizer& tok = pipe.tokenizer();
  GenerationSettings st = pipe.generation_settings(max_new >= 0 ? std::optional<int>(max_new) : std::nullopt);
  for (const char* sp : {"<|im_end|>", "<|endoftext|>"})
    if (auto id = tok.special_id(sp)) st.eos_ids.push_back(*id);
  const int64_t ctx = pipe.model_config().max_positions > 0 ? pipe.model_config().max_positions : 4096;
  pipe.prepare(cfg.max_tokens > 0 ? cfg.max_tokens : ctx, 1);
  Engine engine(pipe.model());
  // Ctrl-C during a reply stops that reply; at the prompt it ends the chat (exit code 130).
  InterruptGuard sigint(false);
  st.interrupted = [] { return InterruptGuard::requested(); };
  std::vector<ChatMessage> msgs{{"system", system}};
  std::string line;
  ChatInput input;
  std::fprintf(stderr, "kvrun chat — empty line or Ctrl-D to quit\n");
  while (true) {
    std::fprintf(stderr, "> ");
    if (input.next(line) != ChatInput::Got::line || line.empty()) break;
    msgs.push_back({"user", line});
    std::vector<int32_t> ids = tok.encode(chatml_prompt(msgs, true));
    StreamDecoder sd(tok);
    std::string reply;
    auto on_token = [&](int, int32_t id) {
      if (std::find(st.eos_ids.begin(), st.eos_ids.end(), id) != st.eos_ids.end()) return;
      std::string piece = sd.push(id);
      reply += piece;
      std::fwrite(piece.data(), 1, piece.size(), stdout);
      std::fflush(stdout);
    };
    auto res = engine.generate({ids}, st, [&](int32_t id) { return tok.token_bytes(id); }, on_token, nullptr);
    std::string rest = sd.flush();
    reply += rest;
    std::printf("%s\n", rest.c_str());
    msgs.push_back({"assistant", output_text(&tok, st, res[0])});
    if (InterruptGuard::requested()) {
      std::fflush(stdout);
      std::fprintf(stderr, "kvrun: reply interrupted; empty line or Ctrl-D to quit\n");
      InterruptGuard::clear();
    }
  }
  if (InterruptGuard::requested()) {
    std::fprintf(stderr, "\nkvrun: chat interrupted\n");
    return kExitInterrupted;
  }
  return 0;
}

// ------------------------------------------------------------------------------------------------
// SPECS.md §6: documents split on the "<|endoftext|>" line, blank ones dropped, each encoded and
// followed by the <|endoftext|> id; windows of `window`+1 ids at i = 0, window, 2·window, …
// while i + window + 1 < N, each scored as one fresh context.
int cmd_perplexity(int argc, char** argv) {
  Common c;
  std::string text_file;
  int window = 512, max_windows = 0;
  po::options_description d("options");
  add_common(d, c, true);
  d.add_options()("text", po::value(&text_file)->required(), "text file to score")(
      "window", po::value(&window), "predictions per window (default 512)")(
      "max-windows", po::value(&max_windows), "score only the first K windows");
  if (!parse(argc, argv, d, "perplexity", "-c CONFIG --text FILE [--window 512] [--max-windows K] [--json]")) return 0;
  if (window < 1) fail(ErrorKind::usage, "--window must be >= 1");
  PipelineConfig cfg = config_from(c);
  std::ifstream in(text_file, std::ios::binary);
  if (!in) fail(ErrorKind::usage, "--text: cannot open '" + text_file + "'");
  std::stringstream ss;
  ss << in.rdbuf();
  const std::string text = ss.str();
  Pipeline pipe(cfg);
  Tokenizer& tok = pipe.tokenizer();
  auto t0 = std::chrono::steady_clock::now();
  const std::vector<int32_t> ids = perplexity_corpus(tok, text);
  double encode_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const int64_t N = int64_t(ids.size());
  std::vector<int64_t> starts = perplexity_windows(N, window);
  const int64_t total_windows = int64_t(starts.size());
  if (max_windows > 0 && int64_t(max_windows) < total_windows) starts.resize(size_t(max_windows));
  if (starts.empty()) fail(ErrorKind::usage, "--text: '" + text_file + "' is too short for one window of " + std::to_string(window));
  pipe.prepare(window + 1, 1);
  Engine engine(pipe.model());
  std::vector<double> nll;
  double total = 0;
  auto t1 = std::chrono::steady_clock::now();
  for (size_t w = 0; w < starts.size(); ++w) {
    std::vector<int32_t> win(ids.begin() + starts[w], ids.begin() + starts[w] + window + 1);
    ScoreResult r = engine.score(win);
    nll.push_back(r.nll);
    total += r.nll;
    // progress on stderr (stdout stays the result)
    std::fprintf(stderr, "\rkvrun: window %zu/%zu  ppl %.4f", w + 1, starts.size(),
                 std::exp(total / (double(window) * double(w + 1))));
    std::fflush(stderr);
  }
  std::fprintf(stderr, "\n");
  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t1).count();
  const double ppl = std::exp(total / (double(window) * double(starts.size())));
  if (c.json_out) {
    json j{{"ppl", ppl},
           {"tokens", int64_t(window) * int64_t(starts.size())},
           {"windows", starts.size()},
           {"windows_available", total_windows},
           {"text_tokens", N},
           {"nll", total},
           {"window_nll", nll},
           {"seconds", secs},
           {"encode_seconds", encode_s},
           {"device", pipe.device().info().name},
           {"pipeline", {{"weights", pipe.report().weights}, {"cache", cfg.cache_type}, {"attention", cfg.attention_kind}}},
           {"memory", memory_json(pipe.device())}};
    std::cout << dump(j) << "\n";
  } else {
    std::printf("perplexity %.4f over %zu windows of %d (%lld tokens)\n", ppl, starts.size(), window,
                (long long)(int64_t(window) * int64_t(starts.size())));
  }
  return 0;
}

int cmd_score(int argc, char** argv) {
  Common c;
  std::string prompt_ids;
  po::options_description d("options");
  add_common(d, c, true);
  d.add_options()("prompt-ids", po::value(&prompt_ids)->required(), "ids to score: 1,2,3");
  if (!parse(argc, argv, d, "score", "-c CONFIG --prompt-ids 1,2,3 [--json]")) return 0;
  PipelineConfig cfg = config_from(c);
  std::vector<int32_t> ids = parse_ids(prompt_ids);
  Pipeline pipe(cfg);
  pipe.prepare(int64_t(ids.size()), 1);
  Engine engine(pipe.model());
  ScoreResult r = engine.score(ids);
  if (c.json_out) {
    std::cout << dump(json{{"ids", ids}, {"argmax", r.argmax}, {"logprob", r.logprob}, {"nll", r.nll}}) << "\n";
  } else {
    for (size_t i = 0; i < ids.size(); ++i) {
      if (i + 1 < ids.size())
        std::printf("%zu\tid %d\targmax %d\tlogprob(next=%d) %.6f\n", i, ids[i], r.argmax[i], ids[i + 1], r.logprob[i]);
      else
        std::printf("%zu\tid %d\targmax %d\n", i, ids[i], r.argmax[i]);
    }
  }
  return 0;
}

int cmd_memory(int argc, char** argv) {
  Common c;
  int batch = 1;
  int64_t tokens = 2048;
  po::options_description d("options");
  add_common(d, c, true);
  d.add_options()("batch,b", po::value(&batch), "sequences")("tokens,t", po::value(&tokens),
                                                             "tokens per sequence (prompt + new)");
  if (!parse(argc, argv, d, "memory", "-c CONFIG --batch B --tokens T [--json]")) return 0;
  PipelineConfig cfg = config_from(c);
  Registry reg;
  CheckReport r = check_pipeline(cfg, reg);
  if (!r.verdict.ok) fail(ErrorKind::usage, cfg.source + ": invalid pipeline: " + r.verdict.message());
  ModelConfig m;
  size_t weight_bytes = 0;
  if (!cfg.model_synthetic.empty()) {
    m = synthetic_config(cfg.model_synthetic);
    const size_t hidden = size_t(m.hidden), F = size_t(m.intermediate);
    const size_t qkv = hidden * size_t(m.num_heads + 2 * m.num_kv_heads) * size_t(m.head_dim);
    const size_t linear_params = size_t(m.num_layers) * (qkv + hidden * hidden + 3 * hidden * F);
    const size_t linear_bytes =
        cfg.synthetic_weights == "gptq" ? linear_params / 2 + linear_params / 128 * 2 * 2 : linear_params * 2;
    weight_bytes = linear_bytes + size_t(m.vocab) * hidden * 2 * (m.tie_embeddings ? 1 : 2) +
                   size_t(m.num_layers) * hidden * 4 + hidden * 2;
  } else {
    m = load_model_config(cfg.model_path);
    auto ck = HfCheckpoint::open(cfg.model_path);
    for (const auto& name : ck->names()) weight_bytes += ck->tensor(name).nbytes;
  }
  const size_t per_token = cache_bytes_per_token(reg, cfg.cache_type, m, cfg.cache_options);
  const size_t kv = per_token * size_t(batch) * size_t(tokens);
  const size_t T = size_t(cfg.max_step_tokens);
  const size_t ws = sizeof(float) * (T * (3 * size_t(m.hidden) + 2 * size_t(m.num_heads) * m.head_dim +
                                          2 * size_t(m.num_kv_heads) * m.head_dim + 2 * size_t(m.intermediate)) +
                                     size_t(batch) * size_t(m.vocab));
  if (c.json_out) {
    std::cout << dump(json{{"batch", batch},
                           {"tokens", tokens},
                           {"cache", cfg.cache_type},
                           {"kv_bytes_per_token", per_token},
                           {"weights_bytes", weight_bytes},
                           {"kv_cache_bytes", kv},
                           {"workspace_bytes", ws},
                           {"total_bytes", weight_bytes + kv + ws},
                           {"note", "estimate before running; run reports give allocator-measured peaks"}})
              << "\n";
  } else {
    std::printf("weights    %s\nKV cache   %s (%zu bytes/token × %d × %lld)\nworkspace  %s (estimate)\ntotal      %s\n",
                format_bytes(weight_bytes).c_str(), format_bytes(kv).c_str(), per_token, batch, (long long)tokens,
                format_bytes(ws).c_str(), format_bytes(weight_bytes + kv + ws).c_str());
  }
  return 0;
}

// Plugins load, the matrix is derived, and every device computes the same matmul / RMSNorm as
// the CPU on seeded random data (a quick installation check; the test suites go much further).
int cmd_selftest(int argc, char** argv) {
  Common c;
  std::string plugin;
  std::vector<std::string> with;
  po::options_description d("options");
  add_common(d, c, false);
  d.add_options()("plugin", po::value(&plugin), "run the conformance checks of one plugin module (docs/plugins.md)")(
      "with", po::value(&with)->composing(), "with --plugin: a companion module or folder (e.g. a cache of the layout an attention reads)");
  if (!parse(argc, argv, d, "selftest", "[--plugin PATH [--with PATH]] [-c CONFIG] [--set cache.options.K=V] [--json]"))
    return 0;
  PipelineConfig cfg = config_from(c);
  if (!plugin.empty()) return print_conformance(run_conformance(plugin, with, plugin_search_path(cfg), cfg), c.json_out);
  json report;
  bool ok = true;
  Registry reg;
  reg.load_path(plugin_search_path(cfg));
  report["plugins"] = reg.plugins().size();
  report["plugin_problems"] = reg.problems().size();
  int valid = 0;
  for (const auto& e : full_matrix(reg)) valid += e.verdict.ok;
  report["valid_combinations"] = valid;
  if (reg.plugins().size() < 6) ok = false;

  auto cpu = open_device(DeviceRequest{"cpu", cfg.threads, 0, {}});
  std::string why;
  std::vector<DeviceInfo> gpus = cuda_devices(backend_search_path(cfg), &why);
  report["cuda"] = gpus.empty() ? json(why) : json(gpus.size());
  // y[3, 32] = x[3, 64] · w[32, 64]ᵀ and RMSNorm of x, on a device; results copied to the host.
  auto run = [](Device& dev, std::vector<float>* y, std::vector<float>* nrm) {
    Buffer<float> x(dev, 3 * 64, MemCategory::workspace), out(dev, 3 * 32, MemCategory::workspace),
        n(dev, 3 * 64, MemCategory::workspace);
    Buffer<uint16_t> w(dev, 32 * 64, MemCategory::workspace), g(dev, 64, MemCategory::workspace);
    TensorView xv = x.view(DType::f32, {3, 64}), wv = w.view(DType::bf16, {32, 64}), gv = g.view(DType::bf16, {64});
    check(dev.ops().fill_random(xv, 1.f, 11));
    check(dev.ops().fill_random(wv, 0.125f, 12));
    check(dev.ops().fill_random(gv, 1.f, 13));
    check(dev.ops().matmul(out.view(DType::f32, {3, 32}), xv, wv, nullptr));
    check(dev.ops().rms_norm(n.view(DType::f32, {3, 64}), xv, gv, 1e-6f));
    *y = out.to_host();
    *nrm = n.to_host();
  };
  std::vector<float> y_ref, n_ref;
  run(*cpu, &y_ref, &n_ref);
  report["devices"] = json::array();
  report["devices"].push_back({{"name", "cpu"}, {"ok", true}});
  for (const DeviceInfo& gi : gpus) {
    json entry{{"name", gi.name}, {"description", gi.description}};
    try {
      auto dev = open_device(DeviceRequest{gi.name, 0, 0, backend_search_path(cfg)});
      std::vector<float> y, nrm;
      run(*dev, &y, &nrm);
      double err = 0;
      for (size_t i = 0; i < y.size(); ++i) err = std::max(err, double(std::fabs(y[i] - y_ref[i])));
      for (size_t i = 0; i < nrm.size(); ++i) err = std::max(err, double(std::fabs(nrm[i] - n_ref[i])));
      entry["max_abs_diff_vs_cpu"] = err;
      entry["ok"] = err < 1e-4;
    } catch (const Error& e) {
      entry["ok"] = false;
      entry["error"] = e.what();
    }
    ok = ok && entry["ok"].get<bool>();
    report["devices"].push_back(entry);
  }
  report["ok"] = ok;
  if (c.json_out) {
    std::cout << dump(report) << "\n";
  } else {
    std::printf("plugins: %zu loaded, %zu refused; %d valid combinations\n", reg.plugins().size(), reg.problems().size(), valid);
    for (const auto& dv : report["devices"])
      std::printf("%-8s %s%s\n", dv["name"].get<std::string>().c_str(), dv["ok"].get<bool>() ? "ok" : "FAILED",
                  dv.contains("max_abs_diff_vs_cpu") ? (" (max |diff| vs cpu " + std::to_string(dv["max_abs_diff_vs_cpu"].get<double>()) + ")").c_str() : "");
    if (gpus.empty()) std::printf("cuda     none (%s)\n", why.c_str());
    std::printf("%s\n", ok ? "selftest passed" : "selftest FAILED");
  }
  return ok ? 0 : 1;
}

int run(int argc, char** argv) {
  if (argc < 2 || std::string(argv[1]) == "--help" || std::string(argv[1]) == "-h" || std::string(argv[1]) == "help") {
    std::cout << kUsage;
    return argc < 2 ? 2 : 0;
  }
  const std::string cmd = argv[1];
  if (cmd == "plugins") return cmd_plugins(argc, argv);
  if (cmd == "matrix") return cmd_matrix(argc, argv);
  if (cmd == "check") return cmd_check(argc, argv);
  if (cmd == "generate") return cmd_generate(argc, argv);
  if (cmd == "chat") return cmd_chat(argc, argv);
  if (cmd == "perplexity") return cmd_perplexity(argc, argv);
  if (cmd == "score") return cmd_score(argc, argv);
  if (cmd == "memory") return cmd_memory(argc, argv);
  if (cmd == "bench") return cmd_bench(argc, argv);
  if (cmd == "selftest") return cmd_selftest(argc, argv);
  fail(ErrorKind::usage, "unknown command '" + cmd + "'\n" + kUsage);
}

}  // namespace
}  // namespace kvrun

int main(int argc, char** argv) {
  try {
    return kvrun::run(argc, argv);
  } catch (const kvrun::Error& e) {
    std::fprintf(stderr, "kvrun: %s: %s\n", kvrun::error_kind_name(e.kind()), e.what());
    return e.exit_code();
  } catch (const po::error& e) {
    std::fprintf(stderr, "kvrun: usage error: %s (see kvrun %s --help)\n", e.what(), argc > 1 ? argv[1] : "");
    return 2;
  } catch (const std::bad_alloc&) {
    std::fprintf(stderr, "kvrun: device error: out of host memory\n");
    return 4;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "kvrun: error: %s\n", e.what());
    return 1;
  }
}
