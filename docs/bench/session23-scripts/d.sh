# Session 23, call D: gemm_wg_kernel with two warpgroups per column tile (KVRUN_GPTQ_WG_KS=2: each on
# alternate chunks, sums added in shared memory) against one (KS=1) and gemm_tc_kernel; the k parts
# back on tc_reduce_kernel (call C's in-kernel reduction reverted); loop unrolled by two.
set -uo pipefail
exec > >(tee ${OUT:-.}/session23-d.log) 2>&1
source scripts/bench-lib.sh
echo "commit $(cat .carry/commit)"; date -u
echo "== default"; timeout 120 $b/test_plugin_weights_gptq 2>&1 | grep -E "ERROR|CHECK|worst|test cases" | head -20
for ks in 1 2; do echo "== wg from 9 rows, KS=$ks"; KVRUN_GPTQ_WG_KS=$ks KVRUN_GPTQ_WG_MIN_ROWS=9 timeout 120 $b/test_plugin_weights_gptq -tc="CUDA*" 2>&1 | grep -E "ERROR|worst|test cases" | head -10; done
echo "== swapped (must fail)"; KVRUN_GPTQ_WG_SWAP_DESC=1 KVRUN_GPTQ_WG_MIN_ROWS=9 timeout 120 $b/test_plugin_weights_gptq -tc="CUDA Linear matches*" 2>&1 | grep -E "test cases" | head -3
echo "== memcheck, wg from 9 rows"; KVRUN_GPTQ_WG_MIN_ROWS=9 timeout 240 compute-sanitizer --tool memcheck --print-limit 5 $b/test_plugin_weights_gptq -tc="CUDA*" 2>&1 | tail -2
row_header
G="--batch 16,32,48,64 --prompt-tokens 32 --new-tokens 128"
for i in 1 2; do
  KVRUN_GPTQ_WGMMA=0 row "tc" -c $C/qwen7b-gptq-int8-naive.toml $G
  KVRUN_GPTQ_WG_KS=1 KVRUN_GPTQ_WG_MIN_ROWS=9 row "wg ks1" -c $C/qwen7b-gptq-int8-naive.toml $G
  KVRUN_GPTQ_WG_KS=2 KVRUN_GPTQ_WG_MIN_ROWS=9 row "wg ks2" -c $C/qwen7b-gptq-int8-naive.toml $G
done
KVRUN_GPTQ_WG_KS=2 KVRUN_GPTQ_WG_MIN_ROWS=9 KVRUN_GPTQ_TC_MAX_PARTS=4 row "wg ks2 p<=4" -c $C/qwen7b-gptq-int8-naive.toml $G
echo "== profile, wg ks2, batch 64"
OUT=/tmp/prof WEIGHTS=gptq BATCH=64 ATTN=naive CACHE=int8 SKIP=2500 COUNT=700 NEW=8 TOP=10 timeout 200 bash scripts/gpu-profile.sh
date -u
