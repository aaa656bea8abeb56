#!/usr/bin/env bash
# The GPU test pass, run on the GPU machine through scripts/gpu-run.sh (docs/GPU.md):
# every GPU suite, compute-sanitizer memcheck on the kernel suites, and the CUDA model suite.
# Logs go to $OUT (or ./gpu-logs). Usage: scripts/gpu-check.sh [suite ...]
set -uo pipefail
out=${OUT:-gpu-logs}
mkdir -p "$out"
b=build-cuda/tests
suites=("$@")
[ ${#suites[@]} -eq 0 ] && suites=(test_cuda_ops test_plugin_cache_fp16 test_plugin_attention_flash test_plugin_weights_gptq_cuda test_model_cuda)
status=0
for t in "${suites[@]}"; do
  [ -x "$b/$t" ] || { echo "== $t: not built"; continue; }
  start=$SECONDS
  "$b/$t" > "$out/$t.log" 2>&1
  rc=$?
  printf '== %-32s rc=%d  %ds  %s\n' "$t" $rc $((SECONDS - start)) "$(grep -E 'test cases:' "$out/$t.log" | tail -1)"
  grep -E -A3 "ERROR|skipped|^tiny|agreement|ppl|greedy" "$out/$t.log" | grep -v "^--$" | head -${LINES_PER_SUITE:-40}
  [ $rc -ne 0 ] && status=1
done
exit $status
