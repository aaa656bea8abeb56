# Session 21, call F: the final code (ffb5d6d + a 16-row form of gemm_tc_kernel, selectable with
# KVRUN_GPTQ_TC_MIN_ROWS): suites (default, and with the kernel from 2 rows), memcheck, and
# batches 2–16 with the 16-row form against gemv_mma_kernel, bf16 in the same call.
set -uo pipefail
exec > >(tee ${OUT:-.}/session21-f.log) 2>&1
source scripts/bench-lib.sh
echo "commit $(cat .carry/commit)"; date -u
for e in "" KVRUN_GPTQ_TC_MIN_ROWS=2; do
  echo "== ${e:-default}"
  env $e timeout 90 $b/test_plugin_weights_gptq 2>&1 | grep -E "ERROR|CHECK|worst|test cases" | head -20
done
timeout 240 compute-sanitizer --tool memcheck --print-limit 5 $b/test_plugin_weights_gptq -tc="CUDA*" 2>&1 | tail -2
KVRUN_GPTQ_TC_MIN_ROWS=2 timeout 240 compute-sanitizer --tool memcheck --print-limit 5 $b/test_plugin_weights_gptq -tc="CUDA Linear matches*" 2>&1 | tail -2
row_header
G="-c $C/qwen7b-gptq-int8-naive.toml --batch 2,4,8,12,16 --prompt-tokens 32 --new-tokens 128"
for rep in 1 2; do
  row "gptq gemv_mma $rep" $G
  KVRUN_GPTQ_TC_MIN_ROWS=2 row "gptq tc from 2 $rep" $G
done
row "bf16 int8" -c $C/qwen7b-bf16-int8-naive.toml --batch 2,4,8,16 --prompt-tokens 32 --new-tokens 128
row "gptq 24-64" -c $C/qwen7b-gptq-int8-naive.toml --batch 24,32,64 --prompt-tokens 32 --new-tokens 128
date -u
