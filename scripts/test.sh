#!/usr/bin/env bash
# Every test kvrun has, in order (the README's test command; CI runs it):
#   1. the normal build's suites:      meson test -C build
#   2. the sanitizer build (ASan + UBSan, CPU only) in build-asan, configured and built here when
#      needed, and its suites: any sanitizer report fails the suite (UBSAN_OPTIONS in meson.build)
#   3. a fuzz smoke run: every fuzz target for a few seconds in build-fuzz (clang + libFuzzer),
#      seeded from fuzz/corpus/ (scripts/fuzz.sh; longer campaigns: scripts/fuzz.sh 600)
# Usage: scripts/test.sh [--no-asan] [--no-fuzz]   (KVRUN_FUZZ_SECONDS, default 5; KVRUN_JOBS)
set -euo pipefail
cd "$(dirname "$0")/.."
asan=1 fuzz=1
for a in "$@"; do
  case "$a" in
    --no-asan) asan=0 ;;
    --no-fuzz) fuzz=0 ;;
    *) echo "usage: $0 [--no-asan] [--no-fuzz]" >&2; exit 2 ;;
  esac
done
jobs="${KVRUN_JOBS:-$(nproc)}"
t0=$SECONDS

echo "== 1/3 meson test -C build"
meson test -C build --print-errorlogs

if ((asan)); then
  echo "== 2/3 sanitizer build (build-asan: ASan + UBSan, CPU only)"
  if [ ! -f build-asan/build.ninja ]; then
    log=$(mktemp)
    # -O1 (the usual sanitizer level): compiles about 2.5x faster than the default -O3, which keeps
    # a full CI run under 25 minutes on 2 cores; -g1 gives sanitizer stacks file:line.
    meson setup build-asan -Db_sanitize=address,undefined -Db_lundef=false -Dcuda=disabled \
      -Doptimization=1 -Dcpp_args=-g1 >"$log" 2>&1 ||
      { cat "$log"; exit 1; }
    rm -f "$log"
  fi
  ninja -C build-asan -j "$jobs" >build-asan/ninja.log 2>&1 || { tail -50 build-asan/ninja.log; exit 1; }
  meson test -C build-asan --print-errorlogs
fi

if ((fuzz)); then
  echo "== 3/3 fuzz smoke (${KVRUN_FUZZ_SECONDS:-5} s per target)"
  ./scripts/fuzz.sh "${KVRUN_FUZZ_SECONDS:-5}"
fi
echo "scripts/test.sh: all passed in $((SECONDS - t0)) s"
