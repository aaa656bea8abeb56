# Session 24, call B: gemm_wg_kernel's tiles per warp (2 against 4 up to 32 rows) and ring depth
# (5 stages against 4 and 7: variant builds from scripts/gpu-variants.sh), from 9 rows; the suite's
# CUDA Linear cases with 4 tiles; where the 64-row step goes now (gpu-profile.sh).
set -uo pipefail
exec > >(tee ${OUT:-.}/session24-b.log) 2>&1
source scripts/bench-lib.sh
echo "commit $(cat .carry/commit)"; date -u
echo "== wg from 9 rows, tiles 4"; KVRUN_GPTQ_WG_TILES=4 KVRUN_GPTQ_WG_MIN_ROWS=9 timeout 120 $b/test_plugin_weights_gptq -tc="CUDA Linear*" 2>&1 | grep -E "ERROR|worst|test cases" | head -10
echo "== memcheck, tiles 4"; KVRUN_GPTQ_WG_TILES=4 KVRUN_GPTQ_WG_MIN_ROWS=9 timeout 200 compute-sanitizer --tool memcheck --print-limit 5 $b/test_plugin_weights_gptq -tc="CUDA Linear*" 2>&1 | tail -1
for v in s4 s7; do echo "== $v"; KVRUN_PLUGIN_PATH=.carry/var/$v KVRUN_GPTQ_WG_MIN_ROWS=9 timeout 120 $b/test_plugin_weights_gptq -tc="CUDA Linear*" 2>&1 | grep -E "test cases" | head -2; done
row_header
G="--batch 16,24,32,48,64 --prompt-tokens 32 --new-tokens 128"
export KVRUN_GPTQ_WG_MIN_ROWS=9
for i in 1 2; do
  row "t2" -c $C/qwen7b-gptq-int8-naive.toml $G
  KVRUN_GPTQ_WG_TILES=4 row "t4" -c $C/qwen7b-gptq-int8-naive.toml --batch 16,24,32 --prompt-tokens 32 --new-tokens 128
  KVRUN_PLUGIN_PATH=.carry/var/s4 row "t2 s4" -c $C/qwen7b-gptq-int8-naive.toml $G
  KVRUN_PLUGIN_PATH=.carry/var/s7 row "t2 s7" -c $C/qwen7b-gptq-int8-naive.toml $G
done
date -u
echo "== profile, 64 rows, tiles 2"
OUT=/tmp/prof WEIGHTS=gptq BATCH=64 ATTN=naive CACHE=int8 SKIP=2500 COUNT=700 NEW=8 TOP=16 timeout 200 bash scripts/gpu-profile.sh
date -u
