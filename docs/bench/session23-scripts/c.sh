# Session 23, call C: gemm_wg_kernel with its chunk loop unrolled by two (no wgmma drain per chunk),
# the k parts added by each column block's last block (no tc_reduce_kernel), the part count over
# waves of the blocks an SM holds; taken from 33 rows (KVRUN_GPTQ_WG_MIN_ROWS) — suite, memcheck,
# rows at 16..64 against gemm_tc_kernel in the same call, the batch-64 step's kernels.
set -uo pipefail
exec > >(tee ${OUT:-.}/session23-c.log) 2>&1
source scripts/bench-lib.sh
echo "commit $(cat .carry/commit)"; date -u
echo "== default"; timeout 120 $b/test_plugin_weights_gptq 2>&1 | grep -E "ERROR|CHECK|worst|test cases" | head -20
echo "== wg from 9 rows"; KVRUN_GPTQ_WG_MIN_ROWS=9 timeout 120 $b/test_plugin_weights_gptq -tc="CUDA*" 2>&1 | grep -E "ERROR|worst|test cases" | head -10
echo "== memcheck, wg from 9 rows"; KVRUN_GPTQ_WG_MIN_ROWS=9 timeout 240 compute-sanitizer --tool memcheck --print-limit 5 $b/test_plugin_weights_gptq -tc="CUDA*" 2>&1 | tail -2
row_header
G="--batch 16,32,48,64 --prompt-tokens 32 --new-tokens 128"
for i in 1 2; do
  KVRUN_GPTQ_WGMMA=0 row "tc" -c $C/qwen7b-gptq-int8-naive.toml $G
  KVRUN_GPTQ_WG_MIN_ROWS=9 row "wg" -c $C/qwen7b-gptq-int8-naive.toml $G
done
row "default" -c $C/qwen7b-gptq-int8-naive.toml --batch 1,64 --prompt-tokens 32 --new-tokens 128
row "bf16" -c $C/qwen7b-bf16-int8-naive.toml --batch 16,32,48,64 --prompt-tokens 32 --new-tokens 128
echo "== profile, wg, batch 64"
OUT=/tmp/prof WEIGHTS=gptq BATCH=64 ATTN=naive CACHE=int8 SKIP=2500 COUNT=700 NEW=8 TOP=14 timeout 200 bash scripts/gpu-profile.sh
date -u
