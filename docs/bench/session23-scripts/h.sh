# Session 23, call H: the k parts added four columns at a time with 32-bit indices
# (tc_reduce4_kernel) against tc_reduce_kernel (KVRUN_GPTQ_TC_REDUCE4=0) in the same call — suite
# both ways, memcheck, rows 16..64.
set -uo pipefail
exec > >(tee ${OUT:-.}/session23-h.log) 2>&1
source scripts/bench-lib.sh
echo "commit $(cat .carry/commit)"; date -u
echo "== default"; timeout 120 $b/test_plugin_weights_gptq -tc="CUDA*" 2>&1 | grep -E "ERROR|worst|test cases" | head -10
echo "== REDUCE4=0"; KVRUN_GPTQ_TC_REDUCE4=0 timeout 120 $b/test_plugin_weights_gptq -tc="CUDA*" 2>&1 | grep -E "ERROR|worst|test cases" | head -10
echo "== memcheck"; timeout 200 compute-sanitizer --tool memcheck --print-limit 5 $b/test_plugin_weights_gptq -tc="CUDA Linear*" 2>&1 | tail -2
row_header
G="--batch 16,32,48,64 --prompt-tokens 32 --new-tokens 128"
for i in 1 2; do
  KVRUN_GPTQ_TC_REDUCE4=0 row "scalar" -c $C/qwen7b-gptq-int8-naive.toml $G
  row "reduce4" -c $C/qwen7b-gptq-int8-naive.toml $G
done
date -u
