// kvrun bench — for every (batch, new-tokens) pair: tokens/s, ms per decode step (median, p90)
// against the memory-bandwidth floor, time to first token, prefill time, and peak device memory
// split into weights / KV cache / workspace as the allocator saw it. A row that runs out of device
// memory is reported as OOM and the sweep goes on. stdout: the table; stderr: progress and logs.
#include "bench.hpp"

#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <climits>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <optional>
#include <sstream>

#include "cli_common.hpp"
#include "kvrun/log.hpp"
#include "kvrun/random.hpp"
#include "pipeline.hpp"

namespace po = boost::program_options;
using nlohmann::json;

namespace kvrun {
namespace {

using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

// "1,4,16" → {1, 4, 16}; every item a positive integer.
std::vector<int> parse_int_list(const std::string& text, const char* option) {
  std::vector<int> out;
  std::stringstream ss(text);
  std::string item;
  while (std::getline(ss, item, ',')) {
    item.erase(0, item.find_first_not_of(" \t"));
    item.erase(item.find_last_not_of(" \t") + 1);
    if (item.empty()) continue;
    try {
      size_t used = 0;
      long v = std::stol(item, &used);
      if (used != item.size() || v < 1 || v > INT32_MAX) throw std::invalid_argument("x");
      out.push_back(int(v));
    } catch (const std::exception&) {
      fail(ErrorKind::usage, std::string(option) + ": '" + item + "' is not a positive integer (expected e.g. 1,4,16)");
    }
  }
  if (out.empty()) fail(ErrorKind::usage, std::string(option) + ": no values given (expected e.g. 1,4,16)");
  return out;
}

// Nearest-rank percentile (q in (0, 1]); 0 for an empty vector.
double percentile(std::vector<double> v, double q) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  size_t rank = size_t(std::ceil(q * double(v.size())));
  return v[std::min(v.size(), std::max<size_t>(rank, 1)) - 1];
}

std::string fixed(double v, int digits) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*f", digits, v);
  return buf;
}

// ------------------------------------------------------------------------------------------------
// Device copy bandwidth: (bytes read + bytes written) / time of a large device-to-device copy
// through the device queue, median over repetitions.
struct Bandwidth {
  double bytes_per_second = 0;
  size_t buffer_bytes = 0;
  int repetitions = 0;
  int copies_per_repetition = 0;
  std::vector<double> samples;  // bytes per second of each repetition
};

Bandwidth measure_bandwidth(Device& dev, size_t requested_bytes) {
  Bandwidth bw;
  size_t bytes = requested_bytes;
  // Two buffers must fit beside the weights: never ask for more than a quarter of what is left.
  const size_t avail = dev.available_memory();
  if (avail > 0 && 2 * bytes > avail / 2) {
    bytes = avail / 4 / (1 << 20) * (1 << 20);
    log_warn("bandwidth: " + format_bytes(requested_bytes) + " copy buffers do not fit beside the weights (" +
             format_bytes(avail) + " left); measuring with 2 × " + format_bytes(bytes));
  }
  if (bytes < (1 << 20))
    fail(ErrorKind::device, "bandwidth: only " + format_bytes(avail) + " of device memory left after the weights; " +
                                "cannot measure the copy bandwidth (raise backend.memory_limit)");
  Buffer<uint8_t> a(dev, bytes, MemCategory::workspace), b(dev, bytes, MemCategory::workspace);
  Queue& q = dev.queue();
  // Touch both buffers (first-touch page faults on the CPU), then one untimed copy.
  check(q.fill_bytes(a.data(), 0x5a, bytes));
  check(q.fill_bytes(b.data(), 0xa5, bytes));
  check(q.copy_d2d(b.data(), a.data(), bytes));
  check(q.wait());
  const bool cpu = dev.is_cpu();
  bw.buffer_bytes = bytes;
  bw.repetitions = cpu ? 5 : 9;
  bw.copies_per_repetition = cpu ? 1 : 10;  // amortizes the host-side wait on fast devices
  for (int r = 0; r < bw.repetitions; ++r) {
    auto t0 = Clock::now();
    for (int c = 0; c < bw.copies_per_repetition; ++c) {
      const bool forward = (r * bw.copies_per_repetition + c) % 2 == 0;
      check(q.copy_d2d(forward ? a.data() : b.data(), forward ? b.data() : a.data(), bytes));
    }
    check(q.wait());
    const double s = seconds_since(t0);
    bw.samples.push_back(2.0 * double(bytes) * bw.copies_per_repetition / s);
  }
  bw.bytes_per_second = median(bw.samples);
  return bw;
}

// ------------------------------------------------------------------------------------------------
struct Row {
  int batch = 0, prompt_tokens = 0, new_tokens = 0;
  std::string status = "ok";  // "ok", "oom", "cache_full"
  std::string message;
  bool ran = false;  // generation finished: the timing fields are meaningful
  GenerationStats stats;
  double tokens_per_second = 0, decode_tokens_per_second = 0;
  double step_ms_median = 0, step_ms_p90 = 0, step_ms_mean = 0;
  double avg_kv_tokens = 0;  // per decode step, summed over the batch
  std::optional<double> floor_ms;  // null without decode steps
  size_t kv_bytes_per_token = 0;
  int64_t cache_capacity_tokens = 0;
  size_t cache_allocated_bytes = 0;
  std::map<std::string, int> finish_reasons;
  bool have_memory = false;
  MemoryStats memory;
};

json row_json(const Row& r) {
  json j{{"batch", r.batch}, {"prompt_tokens", r.prompt_tokens}, {"new_tokens", r.new_tokens}, {"status", r.status}};
  j["message"] = r.message;
  if (r.ran) {
    j["tokens_per_second"] = r.tokens_per_second;
    j["decode_tokens_per_second"] = r.decode_tokens_per_second;
    j["ms_per_step_median"] = r.step_ms_median;
    j["ms_per_step_p90"] = r.step_ms_p90;
    j["ms_per_step_mean"] = r.step_ms_mean;
    j["decode_steps"] = r.stats.step_ms.size();
    j["ttft_seconds"] = r.stats.first_token_seconds;
    j["prefill_seconds"] = r.stats.prefill_seconds;
    j["decode_seconds"] = r.stats.decode_seconds;
    j["generated_tokens"] = r.stats.generated_tokens;
    j["prompt_tokens_total"] = r.stats.prompt_tokens;
    j["avg_kv_tokens_per_step"] = r.avg_kv_tokens;
    if (r.floor_ms) {
      j["floor_ms_per_step"] = *r.floor_ms;
      j["floor_fraction"] = r.step_ms_median > 0 ? *r.floor_ms / r.step_ms_median : 0.0;
    } else {
      j["floor_ms_per_step"] = nullptr;
      j["floor_fraction"] = nullptr;
    }
    j["finish_reasons"] = r.finish_reasons;
  }
  if (r.cache_capacity_tokens > 0)
    j["cache"] = {{"bytes_per_token", r.kv_bytes_per_token},
                  {"capacity_tokens", r.cache_capacity_tokens},
                  {"allocated_bytes", r.cache_allocated_bytes}};
  if (r.have_memory)  // for an OOM row: the peaks up to the failed allocation
    j["memory"] = {{"weights_bytes", r.memory.peak[0]},
                   {"kv_cache_bytes", r.memory.peak[1]},
                   {"workspace_bytes", r.memory.peak[2]},
                   {"peak_total_bytes", r.memory.peak_total},
                   {"limit_bytes", r.memory.limit}};
  return j;
}

std::string csv_field(const std::string& s) {
  if (s.find_first_of(",\"\n\r") == std::string::npos) return s;
  std::string out = "\"";
  for (char c : s) {
    if (c == '"') out += '"';
    out += c;
  }
  return out + "\"";
}

std::string num_or_empty(bool have, double v) {
  if (!have) return "";
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.10g", v);
  return buf;
}

// ------------------------------------------------------------------------------------------------
// Progress on stderr: a bar redrawn in place on a terminal, one line per row otherwise.
class Progress {
 public:
  Progress(int rows) : rows_(rows), tty_(isatty(STDERR_FILENO) == 1) {}

  void start_row(int index, int batch, int new_tokens) {
    index_ = index;
    batch_ = batch;
    new_tokens_ = new_tokens;
    done_ = 0;
    total_ = int64_t(batch) * new_tokens;
    t0_ = Clock::now();
    last_ = Clock::time_point{};
    if (tty_)
      draw();
    else
      std::fprintf(stderr, "kvrun bench: row %d/%d: batch %d, %d new tokens ...\n", index_ + 1, rows_, batch, new_tokens);
  }
  void token() {
    ++done_;
    if (!tty_) return;
    auto now = Clock::now();
    if (done_ < total_ && now - last_ < std::chrono::milliseconds(100)) return;
    last_ = now;
    draw();
  }
  // Replaces the bar with the row's one-line summary.
  void end_row(const std::string& summary) {
    if (tty_) std::fprintf(stderr, "\r\033[K");
    std::fprintf(stderr, "kvrun bench: row %d/%d: batch %d, %d new tokens: %s\n", index_ + 1, rows_, batch_,
                 new_tokens_, summary.c_str());
    std::fflush(stderr);
  }

 private:
  void draw() {
    const int width = 30;
    const double frac = total_ > 0 ? double(done_) / double(total_) : 0;
    const int fill = int(frac * width);
    std::string bar(size_t(fill), '#');
    bar.append(size_t(width - fill), '.');
    std::fprintf(stderr, "\r\033[Kkvrun bench: row %d/%d batch %d new %d [%s] %3d%% %lld/%lld tokens %.1f s", index_ + 1,
                 rows_, batch_, new_tokens_, bar.c_str(), int(frac * 100), (long long)done_, (long long)total_,
                 seconds_since(t0_));
    std::fflush(stderr);
  }
  int rows_;
  bool tty_;
  int index_ = 0, batch_ = 0, new_tokens_ = 0;
  int64_t done_ = 0, total_ = 0;
  Clock::time_point t0_, last_;
};

// ------------------------------------------------------------------------------------------------
// Seeded random prompts over the model's vocabulary; sequence i is the same in every row.
std::vector<std::vector<int32_t>> make_prompts(int batch, int tokens, int32_t vocab, uint64_t seed) {
  std::vector<std::vector<int32_t>> p(static_cast<size_t>(batch));
  for (int s = 0; s < batch; ++s) {
    p[size_t(s)].resize(size_t(tokens));
    for (int t = 0; t < tokens; ++t)
      p[size_t(s)][size_t(t)] =
          int32_t(random_bits(seed, uint64_t(s) * uint64_t(tokens) + uint64_t(t)) % uint64_t(vocab));
  }
  return p;
}

bool is_oom(const std::exception& e, std::string* message) {
  if (auto* err = dynamic_cast<const Error*>(&e)) {
    if (err->kind() != ErrorKind::device) return false;
    *message = err->what();
    return true;
  }
  if (dynamic_cast<const std::bad_alloc*>(&e)) {
    *message = "out of host memory";
    return true;
  }
  return false;
}

struct Sweep {
  PipelineConfig cfg;
  std::string device_name, device_description, backend, weights;
  ModelSummary model;
  Bandwidth bw;
  int prompt_tokens = 0;
  std::vector<int> batches, new_tokens;
  uint64_t seed = 0;
  GenerationSettings settings;
  std::string warmup;  // "", "done (N tokens)", or why it failed
  std::vector<Row> rows;
};

json sweep_json(const Sweep& s) {
  json j;
  j["config"] = s.cfg.source;
  j["pipeline"] = {{"weights", s.weights},
                   {"cache", s.cfg.cache_type},
                   {"attention", s.cfg.attention_kind},
                   {"backend", s.backend}};
  j["device"] = {{"name", s.device_name}, {"description", s.device_description}};
  j["memory_limit"] = s.cfg.memory_limit_text;
  j["memory_limit_bytes"] = s.cfg.memory_limit;
  j["model"] = {{"name", s.model.name},
                {"arch", s.model.arch},
                {"weight_bytes", s.model.weight_bytes},
                {"step_weight_bytes", s.model.step_weight_bytes}};
  j["bandwidth"] = {{"bytes_per_second", s.bw.bytes_per_second},
                    {"buffer_bytes", s.bw.buffer_bytes},
                    {"repetitions", s.bw.repetitions},
                    {"copies_per_repetition", s.bw.copies_per_repetition},
                    {"samples_bytes_per_second", s.bw.samples},
                    {"method", "device-to-device copy through the device queue; (bytes read + bytes written) / time, median"}};
  j["prompt_tokens"] = s.prompt_tokens;
  j["batches"] = s.batches;
  j["new_tokens"] = s.new_tokens;
  j["prompt_seed"] = s.seed;
  j["generation"] = {{"temperature", s.settings.temperature},
                     {"top_k", s.settings.top_k},
                     {"top_p", s.settings.top_p},
                     {"min_p", s.settings.min_p},
                     {"repetition_penalty", s.settings.repetition_penalty},
                     {"seed", s.settings.seed},
                     {"eos", "ignored"},
                     {"overlap", Engine::overlaps(s.settings, s.backend == "cpu")}};
  j["warmup"] = s.warmup;
  j["rows"] = json::array();
  for (const Row& r : s.rows) j["rows"].push_back(row_json(r));
  return j;
}

void write_json(const std::string& path, const Sweep& s) {
  std::ofstream out(path, std::ios::trunc);
  out << dump(sweep_json(s)) << "\n";
  if (!out) fail(ErrorKind::usage, "--json: cannot write '" + path + "'");
}

void write_csv(const std::string& path, const Sweep& s) {
  std::ofstream out(path, std::ios::trunc);
  out << "batch,prompt_tokens,new_tokens,status,tokens_per_second,decode_tokens_per_second,ms_per_step_median,"
         "ms_per_step_p90,floor_ms_per_step,floor_fraction,ttft_seconds,prefill_seconds,decode_seconds,"
         "generated_tokens,weights_bytes,kv_cache_bytes,workspace_bytes,peak_total_bytes,limit_bytes,"
         "bandwidth_bytes_per_second,device,weights,cache,attention,message\n";
  for (const Row& r : s.rows) {
    const bool fl = r.ran && r.floor_ms.has_value();
    out << r.batch << ',' << r.prompt_tokens << ',' << r.new_tokens << ',' << r.status << ','
        << num_or_empty(r.ran, r.tokens_per_second) << ',' << num_or_empty(r.ran, r.decode_tokens_per_second) << ','
        << num_or_empty(r.ran, r.step_ms_median) << ',' << num_or_empty(r.ran, r.step_ms_p90) << ','
        << num_or_empty(fl, fl ? *r.floor_ms : 0) << ','
        << num_or_empty(fl && r.step_ms_median > 0, fl && r.step_ms_median > 0 ? *r.floor_ms / r.step_ms_median : 0)
        << ',' << num_or_empty(r.ran, r.stats.first_token_seconds) << ','
        << num_or_empty(r.ran, r.stats.prefill_seconds) << ',' << num_or_empty(r.ran, r.stats.decode_seconds) << ','
        << (r.ran ? std::to_string(r.stats.generated_tokens) : "") << ','
        << (r.have_memory ? std::to_string(r.memory.peak[0]) : "") << ','
        << (r.have_memory ? std::to_string(r.memory.peak[1]) : "") << ','
        << (r.have_memory ? std::to_string(r.memory.peak[2]) : "") << ','
        << (r.have_memory ? std::to_string(r.memory.peak_total) : "") << ',' << s.cfg.memory_limit << ','
        << num_or_empty(true, s.bw.bytes_per_second) << ',' << csv_field(s.device_name) << ','
        << csv_field(s.weights) << ',' << csv_field(s.cfg.cache_type) << ',' << csv_field(s.cfg.attention_kind) << ','
        << csv_field(r.message) << "\n";
  }
  if (!out) fail(ErrorKind::usage, "--csv: cannot write '" + path + "'");
}

// ------------------------------------------------------------------------------------------------
// The human table on stdout.
void print_table(const Sweep& s) {
  std::printf("kvrun bench: %s\n", s.cfg.source.c_str());
  std::printf("pipeline   weights.%s + cache.%s + attention.%s on %s (%s)\n", s.weights.c_str(), s.cfg.cache_type.c_str(),
              s.cfg.attention_kind.c_str(), s.device_name.c_str(), s.device_description.c_str());
  std::printf("model      %s (%s): weights %s, read per decode step %s\n", s.model.name.c_str(), s.model.arch.c_str(),
              format_bytes(s.model.weight_bytes).c_str(), format_bytes(s.model.step_weight_bytes).c_str());
  if (s.cfg.memory_limit)
    std::printf("memory     limit %s (%s)\n", s.cfg.memory_limit_text.c_str(), format_bytes(s.cfg.memory_limit).c_str());
  else
    std::printf("memory     no limit (backend.memory_limit unset)\n");
  std::printf("bandwidth  %.1f GB/s device copy (read + write, 2 × %s buffers, median of %d × %d copies)\n",
              s.bw.bytes_per_second / 1e9, format_bytes(s.bw.buffer_bytes).c_str(), s.bw.repetitions,
              s.bw.copies_per_repetition);
  std::printf("prompts    %d random tokens each (seed %llu), %s, EOS ignored; decode %s\n", s.prompt_tokens,
              (unsigned long long)s.seed,
              s.settings.temperature == 0.f ? "greedy" : ("temperature " + fixed(s.settings.temperature, 2)).c_str(),
              Engine::overlaps(s.settings, s.backend == "cpu") ? "overlapped (generation.overlap)"
                                                              : "one step at a time (generation.overlap)");
  std::printf("\n%6s %7s %10s %9s %9s %9s %7s %8s %9s %11s %11s %11s %11s\n", "batch", "new", "tok/s", "ms/step",
              "p90 ms", "floor ms", "%floor", "TTFT s", "prefill s", "weights", "KV cache", "workspace", "peak");
  for (const Row& r : s.rows) {
    std::printf("%6d %7d ", r.batch, r.new_tokens);
    if (!r.ran) {
      std::printf("%s: %s\n", r.status == "oom" ? "OOM" : "CACHE FULL", r.message.c_str());
      continue;
    }
    const bool fl = r.floor_ms.has_value() && r.step_ms_median > 0;
    std::printf("%10s %9s %9s %9s %7s %8s %9s %11s %11s %11s %11s", fixed(r.tokens_per_second, 1).c_str(),
                fixed(r.step_ms_median, 2).c_str(), fixed(r.step_ms_p90, 2).c_str(),
                r.floor_ms ? fixed(*r.floor_ms, 2).c_str() : "-",
                fl ? fixed(100.0 * *r.floor_ms / r.step_ms_median, 1).c_str() : "-",
                fixed(r.stats.first_token_seconds, 3).c_str(), fixed(r.stats.prefill_seconds, 3).c_str(),
                format_bytes(r.memory.peak[0]).c_str(), format_bytes(r.memory.peak[1]).c_str(),
                format_bytes(r.memory.peak[2]).c_str(), format_bytes(r.memory.peak_total).c_str());
    if (r.status != "ok") std::printf("  %s: %s", r.status == "oom" ? "OOM" : "CACHE FULL", r.message.c_str());
    std::printf("\n");
  }
  std::fflush(stdout);
}

// ------------------------------------------------------------------------------------------------
// The plot through gnuplot: tokens/s and peak memory against the swept dimension.
bool on_path(const std::string& program) {
  const char* path = std::getenv("PATH");
  if (!path) return false;
  std::stringstream ss(path);
  std::string dir;
  while (std::getline(ss, dir, ':')) {
    const std::string file = (dir.empty() ? std::string(".") : dir) + "/" + program;
    if (access(file.c_str(), X_OK) == 0) return true;
  }
  return false;
}

std::string gp_quote(const std::string& s) {  // a gnuplot single-quoted string
  std::string out = "'";
  for (char c : s) {
    if (c == '\'') out += '\'';
    out += c;
  }
  return out + "'";
}

std::string gp_dquote(const std::string& s) {  // a gnuplot double-quoted string, taken literally
  std::string out = "\"";
  for (char c : s) {
    if (c == '\\' || c == '"') out += '\\';
    out += c;
  }
  return out + "\"";
}

// Returns "" on success, else why the plot was not written.
std::string write_plot(const std::string& path, const Sweep& s, const std::vector<int>& batches,
                       const std::vector<int>& news) {
  if (!on_path("gnuplot")) return "gnuplot is not on PATH (install gnuplot, or leave out --plot)";
  const bool by_batch = batches.size() > 1 || news.size() == 1;
  // One series per value of the other dimension.
  const std::vector<int>& series = by_batch ? news : batches;
  std::string data, oom;
  int points = 0;
  std::vector<int> used_series;
  for (int sv : series) {
    std::string block;
    for (const Row& r : s.rows) {
      if ((by_batch ? r.new_tokens : r.batch) != sv) continue;
      const int x = by_batch ? r.batch : r.new_tokens;
      if (!r.ran) {
        oom += (oom.empty() ? "" : ", ") + std::string(by_batch ? "batch " : "new ") + std::to_string(x) +
               (series.size() > 1 ? std::string(by_batch ? " (new " : " (batch ") + std::to_string(sv) + ")" : "");
        continue;
      }
      const double gib = 1024.0 * 1024.0 * 1024.0;
      char line[256];
      std::snprintf(line, sizeof line, "%d %.6g %.6g %.6g %.6g %.6g\n", x, r.tokens_per_second,
                    double(r.memory.peak_total) / gib, double(r.memory.peak[0]) / gib, double(r.memory.peak[1]) / gib,
                    double(r.memory.peak[2]) / gib);
      block += line;
      ++points;
    }
    if (block.empty()) continue;
    data += (used_series.empty() ? "" : "\n\n") + block;
    used_series.push_back(sv);
  }
  if (points == 0) return "nothing to plot: no row finished (every row ran out of memory)";
  int xmin = INT32_MAX, xmax = 0;
  for (int v : by_batch ? batches : news) xmin = std::min(xmin, v), xmax = std::max(xmax, v);

  std::string g;
  g += "if (strstrt(GPVAL_TERMINALS, 'pngcairo') > 0) { set terminal pngcairo size 1000,900 } else { set terminal png size 1000,900 }\n";
  g += "set output " + gp_quote(path) + "\n";
  g += "$data << EOD\n" + data + "EOD\n";
  // Title: the pipeline and device, then the run's shape (a gnuplot double-quoted string: "\n" breaks).
  const std::string line1 = "kvrun bench: weights." + s.weights + " + cache." + s.cfg.cache_type + " + attention." +
                            s.cfg.attention_kind + " on " + s.device_name;
  const std::string line2 =
      s.device_description + (s.cfg.memory_limit ? ", memory limit " + s.cfg.memory_limit_text : std::string()) +
      ", prompt " + std::to_string(s.prompt_tokens) + " tokens" +
      (by_batch && news.size() == 1 ? ", " + std::to_string(news[0]) + " new tokens" : std::string()) +
      (!by_batch && batches.size() == 1 ? ", batch " + std::to_string(batches[0]) : std::string());
  g += "set multiplot layout 2,1 title " + gp_dquote(line1) + ".\"\\n\"." + gp_dquote(line2) + "\n";
  g += "set grid\nset key left top\n";
  if (xmax >= 8 * xmin) g += "set logscale x 2\n";
  g += "set xrange [" + std::to_string(xmin) + "*0.9:" + std::to_string(xmax) + "*1.1]\n";
  g += "set xlabel " + gp_quote(by_batch ? "batch size" : "new tokens per sequence") + "\n";
  if (!oom.empty()) g += "set label 1 " + gp_quote("OOM: " + oom) + " at graph 0.98, graph 0.06 right textcolor rgb 'red'\n";
  auto title = [&](const std::string& what, int sv) {
    if (series.size() == 1) return gp_quote(what);
    return gp_quote(what + (by_batch ? " (new " : " (batch ") + std::to_string(sv) + ")");
  };
  g += "set ylabel 'tokens/s'\nset yrange [0:*]\nplot ";
  for (size_t i = 0; i < used_series.size(); ++i)
    g += std::string(i ? ", " : "") + "$data index " + std::to_string(i) + " using 1:2 with linespoints lw 2 pt 7 title " +
         title("tokens/s", used_series[i]);
  g += "\nset ylabel 'peak device memory (GiB)'\nset yrange [0:*]\nset offsets 0, 0, graph 0.4, 0\nset key left top maxrows 4\nplot ";
  for (size_t i = 0; i < used_series.size(); ++i) {
    const std::string idx = "$data index " + std::to_string(i);
    g += std::string(i ? ", " : "") + idx + " using 1:3 with linespoints lw 2 pt 7 title " + title("peak total", used_series[i]) +
         ", " + idx + " using 1:5 with linespoints dt 2 title " + title("KV cache", used_series[i]) + ", " + idx +
         " using 1:6 with linespoints dt 3 title " + title("workspace", used_series[i]);
  }
  g += ", $data index 0 using 1:4 with lines lc rgb 'gray' dt 4 title 'weights'\n";
  g += "unset multiplot\nset output\n";

  FILE* p = popen("gnuplot", "w");
  if (!p) return "cannot start gnuplot";
  std::fwrite(g.data(), 1, g.size(), p);
  const int status = pclose(p);
  if (status == -1 || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
    return "gnuplot failed (exit status " + std::to_string(WIFEXITED(status) ? WEXITSTATUS(status) : -1) +
           "; its messages are above)";
  std::ifstream check_file(path, std::ios::binary | std::ios::ate);
  if (!check_file || check_file.tellg() <= 0) return "gnuplot ran but '" + path + "' is missing or empty";
  return "";
}

// ------------------------------------------------------------------------------------------------
// One row: cache for this batch, seeded prompts, greedy generation with EOS ignored, allocator peaks.
void run_row(Pipeline& pipe, Row& row, const GenerationSettings& base, uint64_t seed, double bandwidth,
             Progress& progress) {
  Device& dev = pipe.device();
  const ModelSummary& ms = pipe.model().summary();
  dev.reset_peak();  // the weights stay held: their peak is what is held now
  try {
    const int64_t need = int64_t(row.batch) * (int64_t(row.prompt_tokens) + row.new_tokens);
    pipe.prepare(need, row.batch);
    const CacheInfo ci = pipe.model().cache().info();
    row.kv_bytes_per_token = ci.bytes_per_token;
    row.cache_capacity_tokens = ci.capacity_tokens;
    row.cache_allocated_bytes = ci.allocated_bytes;
    // The prompts must fit (only a configured cache.max_tokens / memory_fraction can be too small).
    const int64_t blocks_per_prompt = (int64_t(row.prompt_tokens) + 1 + ci.block_tokens - 1) / ci.block_tokens;
    if (blocks_per_prompt * row.batch > pipe.model().cache().free_blocks()) {
      row.status = "cache_full";
      row.message = "the prompts (" + std::to_string(row.batch) + " × " + std::to_string(row.prompt_tokens) +
                    " tokens) do not fit in the KV cache (capacity " + std::to_string(ci.capacity_tokens) +
                    " tokens, set by cache.max_tokens / cache.memory_fraction)";
    } else {
      GenerationSettings st = base;
      st.max_new_tokens = row.new_tokens;
      auto prompts = make_prompts(row.batch, row.prompt_tokens, ms.vocab, seed);
      Engine engine(pipe.model());
      auto results = engine.generate(prompts, st, nullptr, [&](int, int32_t) { progress.token(); }, &row.stats);
      row.ran = true;
      const GenerationStats& gs = row.stats;
      const double total = gs.prefill_seconds + gs.decode_seconds;
      row.tokens_per_second = total > 0 ? double(gs.generated_tokens) / total : 0;
      // Decode steps produce every token after each sequence's first (which comes from the prefill).
      int64_t first_tokens = 0;
      double kv_tokens = 0;  // summed over decode steps: each live sequence's length in that step
      for (const auto& r : results) {
        ++row.finish_reasons[r.finish_reason];
        const int64_t out = int64_t(r.output_ids.size());
        if (out > 0) ++first_tokens;
        const double P = double(r.prompt_ids.size());
        for (int64_t k = 1; k < out; ++k) kv_tokens += P + double(k);
      }
      row.decode_tokens_per_second =
          gs.decode_seconds > 0 ? double(gs.generated_tokens - first_tokens) / gs.decode_seconds : 0;
      row.step_ms_median = median(gs.step_ms);
      row.step_ms_p90 = percentile(gs.step_ms, 0.9);
      double sum = 0;
      for (double v : gs.step_ms) sum += v;
      row.step_ms_mean = gs.step_ms.empty() ? 0 : sum / double(gs.step_ms.size());
      if (!gs.step_ms.empty()) {
        row.avg_kv_tokens = kv_tokens / double(gs.step_ms.size());
        row.floor_ms = (double(ms.step_weight_bytes) + double(ci.bytes_per_token) * row.avg_kv_tokens) /
                       bandwidth * 1e3;
      }
      const int full = row.finish_reasons.count("cache_full") ? row.finish_reasons["cache_full"] : 0;
      if (full > 0) {
        row.status = "cache_full";
        row.message = std::to_string(full) + " of " + std::to_string(row.batch) +
                      " sequences stopped early: the KV cache (capacity " + std::to_string(ci.capacity_tokens) +
                      " tokens) filled";
      }
    }
  } catch (const std::exception& e) {
    std::string msg;
    if (!is_oom(e, &msg)) throw;
    row.status = "oom";
    row.message = msg;
    row.ran = false;
  }
  row.memory = dev.memory_stats();
  row.have_memory = true;
  pipe.release();  // this row's cache, attention and workspace go before the next row's
}

}  // namespace

int cmd_bench(int argc, char** argv) {
  Common c;
  std::string batch_list = "1", new_list = "128", json_path, csv_path, plot_path, copy_size;
  int prompt_tokens = 32, warmup_tokens = 16;
  uint64_t seed = 0;
  po::options_description d("options");
  add_common(d, c, true, /*json_switch=*/false);
  d.add_options()("batch,b", po::value(&batch_list), "batch sizes, comma-separated (default 1)")(
      "prompt-tokens", po::value(&prompt_tokens), "random prompt tokens per sequence (default 32)")(
      "new-tokens,n", po::value(&new_list), "tokens generated per sequence, comma-separated (default 128); EOS is ignored")(
      "json", po::value(&json_path), "also write the results as JSON to FILE")(
      "csv", po::value(&csv_path), "also write one CSV line per row to FILE")(
      "plot", po::value(&plot_path), "also plot tokens/s and peak memory to FILE.png (needs gnuplot on PATH)")(
      "seed", po::value(&seed), "seed of the random prompts (default 0)")(
      "warmup-tokens", po::value(&warmup_tokens),
      "before the sweep, generate this many tokens at batch 1 (untimed; 0 = no warmup, default 16)")(
      "copy-size", po::value(&copy_size),
      "bytes of each buffer of the bandwidth measurement (default 1GiB on CUDA, 256MiB on the CPU)");
  if (!parse(argc, argv, d, "bench",
             "-c CONFIG [--batch 1,4,16] [--prompt-tokens 32] [--new-tokens 128,1024] [--json FILE] [--csv FILE] "
             "[--plot FILE.png]"))
    return 0;
  const std::vector<int> batches = parse_int_list(batch_list, "--batch");
  const std::vector<int> news = parse_int_list(new_list, "--new-tokens");
  if (prompt_tokens < 1) fail(ErrorKind::usage, "--prompt-tokens must be >= 1");
  if (warmup_tokens < 0) fail(ErrorKind::usage, "--warmup-tokens must be >= 0");
  // Output files: fail now, not after an hour of sweeping, if they cannot be written.
  for (const auto& [opt, path] : {std::pair<const char*, std::string>{"--json", json_path}, {"--csv", csv_path}}) {
    if (path.empty()) continue;
    std::ofstream probe(path, std::ios::trunc);
    if (!probe) fail(ErrorKind::usage, std::string(opt) + ": cannot write '" + path + "'");
  }
  if (!plot_path.empty() && !on_path("gnuplot"))
    log_warn("--plot: gnuplot is not on PATH: the plot step will fail after the sweep (the table, --json and --csv are still written)");

  Sweep s;
  s.cfg = config_from(c);
  s.prompt_tokens = prompt_tokens;
  s.batches = batches;
  s.new_tokens = news;
  s.seed = seed;
  Pipeline pipe(s.cfg);
  Device& dev = pipe.device();
  s.device_name = dev.info().name;
  s.device_description = dev.info().description;
  s.backend = pipe.report().backend;
  s.weights = pipe.report().weights;
  s.model = pipe.model().summary();
  s.settings = pipe.generation_settings(std::nullopt);
  s.settings.eos_ids.clear();       // every sequence makes exactly new-tokens tokens
  s.settings.stop_strings.clear();

  const size_t requested = copy_size.empty() ? (dev.is_cpu() ? size_t(256) << 20 : size_t(1) << 30)
                                             : parse_byte_size(copy_size, "--copy-size");
  std::fprintf(stderr, "kvrun bench: measuring the device copy bandwidth ...\n");
  s.bw = measure_bandwidth(dev, requested);
  std::fprintf(stderr, "kvrun bench: device copy bandwidth %.1f GB/s\n", s.bw.bytes_per_second / 1e9);

  if (warmup_tokens > 0) {
    try {
      pipe.prepare(int64_t(prompt_tokens) + warmup_tokens, 1);
      GenerationSettings st = s.settings;
      st.max_new_tokens = warmup_tokens;
      Engine engine(pipe.model());
      engine.generate(make_prompts(1, prompt_tokens, s.model.vocab, seed), st, nullptr, nullptr, nullptr);
      s.warmup = "batch 1, " + std::to_string(warmup_tokens) + " tokens";
    } catch (const std::exception& e) {
      std::string msg;
      if (!is_oom(e, &msg)) throw;
      s.warmup = "failed: " + msg;
      log_warn("warmup (batch 1, " + std::to_string(warmup_tokens) + " tokens) ran out of memory: " + msg);
    }
    pipe.release();
  }

  Progress progress(int(batches.size() * news.size()));
  int index = 0;
  for (int b : batches) {
    for (int n : news) {
      Row row;
      row.batch = b;
      row.prompt_tokens = prompt_tokens;
      row.new_tokens = n;
      progress.start_row(index++, b, n);
      run_row(pipe, row, s.settings, seed, s.bw.bytes_per_second, progress);
      if (row.status == "oom")
        progress.end_row("OOM: " + row.message);
      else if (!row.ran)
        progress.end_row("CACHE FULL: " + row.message);
      else
        progress.end_row(fixed(row.tokens_per_second, 1) + " tokens/s, " + fixed(row.step_ms_median, 2) +
                         " ms/step median, peak " + format_bytes(row.memory.peak_total) +
                         (row.status == "ok" ? std::string() : " (" + row.message + ")"));
      s.rows.push_back(std::move(row));
      // Rewritten after every row: an interrupted sweep keeps what it measured.
      if (!json_path.empty()) write_json(json_path, s);
      if (!csv_path.empty()) write_csv(csv_path, s);
    }
  }
  print_table(s);
  if (!plot_path.empty()) {
    std::string why = write_plot(plot_path, s, batches, news);
    if (!why.empty()) {
      std::fprintf(stderr, "kvrun: error: --plot: %s; '%s' was not written\n", why.c_str(), plot_path.c_str());
      return 1;
    }
    std::fprintf(stderr, "kvrun bench: plot written to %s\n", plot_path.c_str());
  }
  return 0;
}

}  // namespace kvrun
