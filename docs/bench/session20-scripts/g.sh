# Session 20, call G: the final GPTQ code (gemm_tc_kernel from 17 rows): the Linear case against
# the CPU and the fixture cases, then batches 16 / 24 / 32 / 64 with the kernel on and off, then an
# ncu kernel table of one batch-64 step (written in session 20, not run there: no device time left).
set -uo pipefail
exec > >(tee ${OUT:-.}/session20-g.log) 2>&1
source scripts/bench-lib.sh
echo "commit $(cat .carry/commit)"; date -u
timeout 60 $b/test_plugin_weights_gptq 2>&1 | grep -E "ERROR|CHECK|worst|test cases|ppl of" | head -20
row_header
G="-c $C/qwen7b-gptq-int8-naive.toml --batch 16,24,32,64 --prompt-tokens 32 --new-tokens 128"
row "gptq int8 tc on" $G
KVRUN_GPTQ_TC_GEMM=0 row "gptq int8 tc off" $G
date -u
# Where the GPTQ batch-64 step goes, per kernel (ncu, graphs off; one decode step after the
# prefill): gemm_tc_kernel against tc_xfrag_kernel / tc_reduce_kernel and the rest.
OUT=${OUT:-.}/prof64 WEIGHTS=gptq BATCH=64 ATTN=naive CACHE=int8 SKIP=2500 COUNT=700 NEW=8 TOP=24 \
  timeout 240 bash scripts/gpu-profile.sh
date -u
