# Session 23, call I: the final code (tc_reduce4_kernel from 32 rows) — the weights_gptq suite with
# the fixtures on CUDA, the suite from 9 rows on the Hopper kernel, memcheck, rows 1 / 16 / 32 / 64.
set -uo pipefail
exec > >(tee ${OUT:-.}/session23-i.log) 2>&1
source scripts/bench-lib.sh
echo "commit $(cat .carry/commit)"; date -u
timeout 200 $b/test_plugin_weights_gptq 2>&1 | grep -E "ERROR|CHECK|worst|test cases|ppl of" | head -20
KVRUN_GPTQ_WG_MIN_ROWS=9 timeout 120 $b/test_plugin_weights_gptq -tc="CUDA Linear*" 2>&1 | grep -E "ERROR|test cases" | head -4
timeout 150 compute-sanitizer --tool memcheck --print-limit 5 $b/test_plugin_weights_gptq -tc="CUDA Linear*" 2>&1 | tail -1
row_header
row "final" -c $C/qwen7b-gptq-int8-naive.toml --batch 1,16,32,64 --prompt-tokens 32 --new-tokens 128
date -u
