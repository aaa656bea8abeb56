// `kvrun bench` on the CPU with the tiny fixture model: the JSON/CSV rows, the sequence-length
// sweep, a batch that does not fit under backend.memory_limit (OOM row, sweep goes on, exit 0),
// --plot without gnuplot failing loudly after the other outputs, and bad lists.
#include <doctest/doctest.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <sys/wait.h>
#include <unistd.h>

#include "fixtures.hpp"
#include "run_kvrun.hpp"

namespace fs = std::filesystem;
namespace test = kvrun::test;
using nlohmann::json;

namespace {

using test::Run;
using test::run_kvrun;
using test::slurp;

std::string tmp_path(const std::string& name) {
  return (fs::temp_directory_path() / ("kvrun_bench_" + std::to_string(getpid()) + "_" + name)).string();
}

using test::contains;

const std::string kBase = "bench -c configs/qwen2-fp16-naive.toml --set backend.device=cpu --copy-size 8MiB ";

void check_ok_row(const json& row, int batch, int new_tokens) {
  INFO(row.dump());
  CHECK(row["status"] == "ok");
  CHECK(row["batch"] == batch);
  CHECK(row["new_tokens"] == new_tokens);
  CHECK(row["generated_tokens"] == int64_t(batch) * new_tokens);  // EOS ignored: exactly new_tokens each
  CHECK(row["tokens_per_second"].get<double>() > 0);
  CHECK(row["decode_tokens_per_second"].get<double>() > 0);
  CHECK(row["ms_per_step_median"].get<double>() > 0);
  CHECK(row["ms_per_step_p90"].get<double>() >= row["ms_per_step_median"].get<double>());
  CHECK(row["decode_steps"] == new_tokens - 1);
  CHECK(row["ttft_seconds"].get<double>() > 0);
  CHECK(row["prefill_seconds"].get<double>() > 0);
  CHECK(row["floor_ms_per_step"].get<double>() > 0);
  CHECK(row["floor_fraction"].get<double>() > 0);
  const json& m = row["memory"];
  const size_t w = m["weights_bytes"], kv = m["kv_cache_bytes"], ws = m["workspace_bytes"], peak = m["peak_total_bytes"];
  CHECK(w > 0);
  CHECK(kv > 0);
  CHECK(ws > 0);
  // weights and the whole cache are held together; the peak of the sum is at most the sum of peaks
  CHECK(peak >= w + kv);
  CHECK(peak <= w + kv + ws);
  // the cache holds at least what the batch needs
  const size_t per_token = row["cache"]["bytes_per_token"];
  CHECK(per_token > 0);
  CHECK(kv >= per_token * size_t(batch) * size_t(8 + new_tokens));
}

}  // namespace

TEST_CASE("bench: --json rows carry throughput, step times, the floor and the memory split") {
  KVRUN_SKIP_UNLESS(kvrun::test::have_fixture("tiny-qwen2"), "fixture models missing");
  const std::string jpath = tmp_path("rows.json"), cpath = tmp_path("rows.csv");
  Run r = run_kvrun(kBase + "--batch 1,2 --prompt-tokens 8 --new-tokens 4 --warmup-tokens 2 --json '" + jpath +
                    "' --csv '" + cpath + "'");
  INFO(r.err);
  REQUIRE(r.code == 0);
  json j = json::parse(slurp(jpath));
  REQUIRE(j["rows"].size() == 2);
  check_ok_row(j["rows"][0], 1, 4);
  check_ok_row(j["rows"][1], 2, 4);
  // the KV cache of batch 2 is larger than that of batch 1: rows do not stack, and each is sized
  CHECK(j["rows"][1]["memory"]["kv_cache_bytes"] > j["rows"][0]["memory"]["kv_cache_bytes"]);
  CHECK(j["rows"][1]["memory"]["weights_bytes"] == j["rows"][0]["memory"]["weights_bytes"]);
  CHECK(j["bandwidth"]["bytes_per_second"].get<double>() > 0);
  CHECK(j["pipeline"]["cache"] == "fp16");
  CHECK(j["pipeline"]["attention"] == "naive");
  CHECK(j["device"]["name"] == "cpu");
  CHECK(j["prompt_tokens"] == 8);
  CHECK(j["model"]["step_weight_bytes"].get<size_t>() > 0);
  // stdout is the human table, one line per row
  CHECK(contains(r.out, "tok/s"));
  CHECK(contains(r.out, "bandwidth"));
  // CSV: a header and one line per row
  std::istringstream csv(slurp(cpath));
  std::string line;
  int lines = 0;
  while (std::getline(csv, line)) ++lines;
  CHECK(lines == 3);
  fs::remove(jpath);
  fs::remove(cpath);
}

TEST_CASE("bench: --new-tokens list is a sequence-length sweep, one row per (batch, new-tokens)") {
  KVRUN_SKIP_UNLESS(kvrun::test::have_fixture("tiny-qwen2"), "fixture models missing");
  const std::string jpath = tmp_path("seq.json");
  Run r = run_kvrun(kBase + "--batch 1 --prompt-tokens 8 --new-tokens 3,9 --warmup-tokens 0 --json '" + jpath + "'");
  INFO(r.err);
  REQUIRE(r.code == 0);
  json j = json::parse(slurp(jpath));
  REQUIRE(j["rows"].size() == 2);
  check_ok_row(j["rows"][0], 1, 3);
  check_ok_row(j["rows"][1], 1, 9);
  // a longer run reads more KV per step on average
  CHECK(j["rows"][1]["avg_kv_tokens_per_step"].get<double>() > j["rows"][0]["avg_kv_tokens_per_step"].get<double>());
  fs::remove(jpath);
}

TEST_CASE("bench: a batch that does not fit under memory_limit is an OOM row and the sweep goes on") {
  KVRUN_SKIP_UNLESS(kvrun::test::have_fixture("tiny-qwen2"), "fixture models missing");
  // Measure batch 1 without a limit, then cap memory a little above its peak: batch 1 still fits,
  // batch 512 (about 90 MB of KV cache) cannot.
  const std::string opts = "--set backend.max_step_tokens=64 --prompt-tokens 8 --new-tokens 4 --warmup-tokens 0 ";
  const std::string j1 = tmp_path("one.json");
  Run one = run_kvrun(kBase + opts + "--batch 1 --json '" + j1 + "'");
  INFO(one.err);
  REQUIRE(one.code == 0);
  const size_t peak = json::parse(slurp(j1))["rows"][0]["memory"]["peak_total_bytes"];
  const size_t limit = peak + (8u << 20);
  const std::string jpath = tmp_path("oom.json");
  Run r = run_kvrun(kBase + opts + "--set backend.memory_limit=" + std::to_string(limit) + "B --batch 1,512,2 --json '" +
                    jpath + "'");
  INFO(r.err);
  REQUIRE(r.code == 0);
  json j = json::parse(slurp(jpath));
  REQUIRE(j["rows"].size() == 3);
  CHECK(j["rows"][0]["status"] == "ok");
  CHECK(j["rows"][1]["status"] == "oom");
  CHECK(contains(j["rows"][1]["message"].get<std::string>(), "memory"));
  CHECK_FALSE(j["rows"][1].contains("tokens_per_second"));
  CHECK(j["rows"][2]["status"] == "ok");  // the rows after the OOM ran
  CHECK(j["rows"][2]["generated_tokens"] == 8);
  CHECK(j["memory_limit_bytes"] == limit);
  CHECK(j["rows"][2]["memory"]["peak_total_bytes"].get<size_t>() <= limit);
  CHECK(contains(r.out, "OOM"));
  fs::remove(j1);
  fs::remove(jpath);
}

TEST_CASE("bench: --plot without gnuplot fails after writing the other outputs; bad lists are usage errors") {
  KVRUN_SKIP_UNLESS(kvrun::test::have_fixture("tiny-qwen2"), "fixture models missing");
  const std::string jpath = tmp_path("plot.json"), png = tmp_path("plot.png");
  fs::remove(png);
  // An empty PATH: gnuplot cannot be found whether or not this machine has it.
  Run r = run_kvrun(kBase + "--batch 1 --prompt-tokens 4 --new-tokens 2 --warmup-tokens 0 --json '" + jpath +
                        "' --plot '" + png + "'",
                    "PATH=/nonexistent");
  CHECK(r.code != 0);
  CHECK(contains(r.err, "gnuplot"));
  CHECK_FALSE(fs::exists(png));
  json j = json::parse(slurp(jpath));
  CHECK(j["rows"].size() == 1);
  CHECK(contains(r.out, "tok/s"));
  fs::remove(jpath);

  // With gnuplot on PATH (this machine's), the plot is written.
  if (std::system("command -v gnuplot >/dev/null 2>&1") == 0) {
    Run p = run_kvrun(kBase + "--batch 1,2 --prompt-tokens 4 --new-tokens 2 --warmup-tokens 0 --plot '" + png + "'");
    INFO(p.err);
    CHECK(p.code == 0);
    CHECK(fs::exists(png));
    CHECK(fs::file_size(png) > 0);
    fs::remove(png);
  } else {
    MESSAGE("gnuplot not on PATH: the plot itself is not checked on this machine");
  }

  CHECK(run_kvrun(kBase + "--batch 0 --new-tokens 2").code == 2);
  CHECK(run_kvrun(kBase + "--batch 1,x --new-tokens 2").code == 2);
  CHECK(run_kvrun(kBase + "--batch 1 --new-tokens ''").code == 2);
  CHECK(run_kvrun(kBase + "--batch 1 --new-tokens 2 --prompt-tokens 0").code == 2);
}
