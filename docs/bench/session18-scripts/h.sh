# Session 18, call H: the batch-1 GPTQ kernel applying the fused norm's 1/rms to each column's sum
# at the end (KVRUN_GPTQ_G1_DEFER_NORM=1, the default of this build) instead of to x before the
# conversion (=0): the GPTQ suite both ways, memcheck of its fused case, same-call A/B rows.
set -uo pipefail
exec > >(tee ${OUT:-.}/session18-h.log) 2>&1
source scripts/bench-lib.sh
echo "commit $(cat .carry/commit)"; date -u
for d in 1 0; do
  echo "== GPTQ suite, KVRUN_GPTQ_G1_DEFER_NORM=$d"
  KVRUN_GPTQ_G1_DEFER_NORM=$d timeout 300 $b/test_plugin_weights_gptq 2>&1 | grep -E "worst|perplexity|ppl|test cases|Status" | head -8
done
timeout 200 compute-sanitizer --tool memcheck --print-limit 5 $b/test_plugin_weights_gptq -tc='*fused*' 2>&1 | grep -E "ERROR SUMMARY|test cases|Invalid" | head -4
row_header
for i in 1 2 3; do
  KVRUN_GPTQ_G1_DEFER_NORM=1 row "gptq B1 defer 1" -c $C/qwen7b-gptq-int8-naive.toml $B1
  KVRUN_GPTQ_G1_DEFER_NORM=0 row "gptq B1 defer 0" -c $C/qwen7b-gptq-int8-naive.toml $B1
done
date -u
