#!/usr/bin/env bash
# Runs every fuzz target (fuzz/targets.hpp) under libFuzzer for a bounded time and reports, per
# target, executions, coverage (libFuzzer's covered edges "cov" and features "ft") and the result.
# Builds build-fuzz (clang, ASan + UBSan, -Dfuzz=true) first when needed.
#
#   scripts/fuzz.sh [seconds-per-target] [target ...]     (default 10 s, all targets)
#
# Inputs that grow coverage go to build-fuzz/corpus/<target>/ (the committed seeds in
# fuzz/corpus/<target>/ are read, never written). A crash, sanitizer report, hang (> 10 s on one
# input), out-of-memory (> 2 GB) or broken promise leaves the input in build-fuzz/artifacts/<target>/
# and makes the script exit 1: fix the code, then copy the input to fuzz/regressions/<target>/ so
# the test suite replays it. Each run is appended to build-fuzz/fuzz-history.tsv.
# Fuzzers run one at a time under `nice -n 19` (the machine is shared).
# (Everything is inside main, which bash reads whole before running it: editing this file while a
# campaign runs cannot change the running script.)
set -euo pipefail

main() {
  cd "$(dirname "$0")/.."

  secs="${1:-10}"
  shift || true
  all=(safetensors safetensors_index model_config pipeline_toml tokenizer_json qwen_tiktoken tokenizer_encode)
  targets=("$@")
  ((${#targets[@]})) || targets=("${all[@]}")
  B="${FUZZ_BUILD:-build-fuzz}"

  if [ ! -f "$B/build.ninja" ]; then
    log=$(mktemp)
    CC=clang CXX=clang++ meson setup "$B" -Dfuzz=true -Db_sanitize=address,undefined -Db_lundef=false \
      -Dcuda=disabled -Dbuildtype=debugoptimized >"$log" 2>&1 || { cat "$log"; exit 1; }
    rm -f "$log"
  fi
  ninja -C "$B" -j2 $(printf "fuzz/fuzz_%s " "${targets[@]}") >"$B/fuzz-build.log" 2>&1 || { tail -50 "$B/fuzz-build.log"; exit 1; }

  export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:allocator_may_return_null=0}"
  export UBSAN_OPTIONS="${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1}"
  export KVRUN_FIXTURES="${KVRUN_FIXTURES:-$PWD/../shared/models}"

  failed=0
  printf "%-18s %6s %12s %8s %8s %7s  %s\n" target seconds executions cov ft corpus result
  for t in "${targets[@]}"; do
    mkdir -p "$B/corpus/$t" "$B/artifacts/$t" "$B/logs"
    log="$B/logs/$t.log"
    rc=0
    nice -n 19 "$B/fuzz/fuzz_$t" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
      -artifact_prefix="$B/artifacts/$t/" "$B/corpus/$t" "fuzz/corpus/$t" >"$log" 2>&1 || rc=$?
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    last=$(grep -E '^#[0-9]+.*cov: ' "$log" | tail -1 || true)
    cov=$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<<"$last")
    ft=$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<<"$last")
    corp=$(sed -n 's/.* corp: \([0-9]*\).*/\1/p' <<<"$last")
    result=ok
    if [ "$rc" -ne 0 ]; then
      result="FAILED (exit $rc; see $log and $B/artifacts/$t/)"
      failed=1
    fi
    printf "%-18s %6s %12s %8s %8s %7s  %s\n" "$t" "$secs" "${execs:-?}" "${cov:-?}" "${ft:-?}" "${corp:-?}" "$result"
    printf "%s\t%s\t%s\t%s\t%s\t%s\t%s\n" "$(date -u +%FT%TZ)" "$t" "$secs" "${execs:-?}" "${cov:-?}" "${ft:-?}" \
      "$([ "$rc" -eq 0 ] && echo ok || echo failed)" >>"$B/fuzz-history.tsv"
    if [ "$rc" -ne 0 ]; then
      grep -E 'ERROR|fuzz target|runtime error|SUMMARY|uncaught|terminate' "$log" | head -5 | sed 's/^/    /'
    fi
  done
  return "$failed"
}

main "$@"
exit
