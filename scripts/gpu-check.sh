#!/usr/bin/env bash
# The GPU test pass, run on the GPU machine through scripts/gpu-run.sh (docs/GPU.md):
# every GPU suite, compute-sanitizer memcheck on the kernel suites, and the CUDA model suite.
# Logs go to $OUT (or ./gpu-logs). Usage: scripts/gpu-check.sh [suite ...]
set -uo pipefail
out=${OUT:-gpu-logs}
mkdir -p "$out"
b=build-cuda/tests
# A suite is an executable of build-cuda/tests, optionally with environment settings before it
# (VAR=value:test_name). Default: every CUDA suite the build has — the kernels, every plugin's,
# the naive decode with one-warp and four-warp blocks forced, the GPTQ suite with the mma.sync
# 9..64-row kernel (the A100 path; Hopper takes the warpgroup-MMA one) and with the warpgroup-MMA
# kernel's one-tile form forced, and the model suite last.
suites=("$@")
if [ ${#suites[@]} -eq 0 ]; then
  suites=(test_cuda_ops)
  for f in "$b"/test_plugin_*; do [ -x "$f" ] && [ -f "$f" ] && suites+=("$(basename "$f")"); done
  suites+=(KVRUN_NAIVE_DECODE_WARPS=1:test_plugin_attention_naive KVRUN_NAIVE_DECODE_WARPS=4:test_plugin_attention_naive KVRUN_FLASH_DECODE=0:test_plugin_attention_flash KVRUN_GPTQ_WGMMA=0:test_plugin_weights_gptq KVRUN_GPTQ_WG_TILES=1:test_plugin_weights_gptq test_model_cuda)
fi
status=0
for s in "${suites[@]}"; do
  envs=(); t=$s
  if [[ $s == *:* ]]; then IFS=' ' read -r -a envs <<< "${s%%:*}"; t=${s#*:}; fi
  if [ ! -x "$b/$t" ]; then echo "== $s: not built"; status=1; continue; fi
  log="$out/$(echo "$s" | tr ':=' '__').log"
  start=$SECONDS
  env "${envs[@]}" "$b/$t" > "$log" 2>&1
  rc=$?
  printf '== %-32s rc=%d  %ds  %s\n' "$s" $rc $((SECONDS - start)) "$(grep -E 'test cases:' "$log" | tail -1)"
  grep -E -A3 "ERROR|skipped|^tiny|agreement|ppl|greedy" "$log" | grep -v "^--$" | head -${LINES_PER_SUITE:-40}
  [ $rc -ne 0 ] && status=1
done
exit $status
