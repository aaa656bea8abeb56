#!/usr/bin/env bash
# compute-sanitizer memcheck over the CUDA kernel suites (run through scripts/gpu-run.sh).
set -uo pipefail
out=${OUT:-gpu-logs}
mkdir -p "$out"
status=0
for t in "$@"; do
  # The out-of-memory test case provokes cudaMalloc failures on purpose (API errors, not memory
  # errors); it is excluded so that a non-zero summary means a real problem.
  compute-sanitizer --tool memcheck --error-exitcode 9 build-cuda/tests/$t -tce='*out-of-memory*' \
    > "$out/sanitize-$t.log" 2>&1
  rc=$?
  echo "== memcheck $t rc=$rc: $(grep -E 'ERROR SUMMARY' "$out/sanitize-$t.log" | tail -1)"
  [ $rc -ne 0 ] && status=1 && grep -m5 -E "Invalid|ERROR" "$out/sanitize-$t.log"
done
exit $status
