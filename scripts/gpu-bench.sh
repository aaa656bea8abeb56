#!/usr/bin/env bash
# The published-table benchmarks on the GPU (through gpu-run.sh): batch sweep and length sweep of
# the Qwen-7B shape for each configs/bench pipeline. Results: $OUT/bench-*.json and the tables.
set -uo pipefail
out=${OUT:-gpu-logs}
mkdir -p "$out"
k=build-cuda/apps/kvrun
for c in ${BENCH_CONFIGS:-qwen7b-bf16-fp16-flash qwen7b-bf16-int8-naive qwen7b-gptq-int8-naive}; do
  echo "### $c batch sweep"
  $k bench -c configs/bench/$c.toml --batch ${BATCHES:-1,4,16,32,64,100} --prompt-tokens 32 --new-tokens ${NEW:-1024} \
    --json "$out/bench-$c-batch.json" 2> "$out/bench-$c-batch.err" | tail -n +1
  [ -n "${LENGTHS:-}" ] || continue
  echo "### $c length sweep"
  $k bench -c configs/bench/$c.toml --batch 1 --prompt-tokens 32 --new-tokens $LENGTHS \
    --json "$out/bench-$c-length.json" 2> "$out/bench-$c-length.err" | tail -n +1
done
