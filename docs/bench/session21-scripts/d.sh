# Session 21, call D: gemm_tc_kernel with the k parts summed through a thread-block cluster
# (KVRUN_GPTQ_TC_CLUSTER, default 1) instead of tc_reduce_kernel, its sums staged through shared
# memory, no WARPSYNC per mma, x fragments read 16 bytes at a time; suites, memcheck, rows.
set -uo pipefail
exec > >(tee ${OUT:-.}/session21-d.log) 2>&1
source scripts/bench-lib.sh
echo "commit $(cat .carry/commit)"; date -u
for e in "" KVRUN_GPTQ_TC_CLUSTER=0 KVRUN_GPTQ_TC_TILES=1; do
  echo "== ${e:-default}"
  env $e timeout 90 $b/test_plugin_weights_gptq 2>&1 | grep -E "ERROR|CHECK|worst|test cases|skipped" | head -20
done
printf '[model]\npath = "%s"\n[backend]\ndevice = "cuda"\n' "$KVRUN_FIXTURES/tiny-qwen2-gptq-int4" > /tmp/p4.toml
for e in "" KVRUN_GPTQ_TC_CLUSTER=0; do
  echo "ppl window 48 ${e:-default}: $(env $e $k perplexity -c /tmp/p4.toml --text $KVRUN_DATA/pystdlib-valid.txt --window 48 --max-windows 300 2>&1 | tail -1)"
done
timeout 240 compute-sanitizer --tool memcheck --print-limit 5 $b/test_plugin_weights_gptq -tc="CUDA*" 2>&1 | tail -3
date -u
row_header
G="--batch 16,24,32,48,64 --prompt-tokens 32 --new-tokens 128"
row "gptq cluster" -c $C/qwen7b-gptq-int8-naive.toml $G
KVRUN_GPTQ_TC_CLUSTER=0 row "gptq reduce kernel" -c $C/qwen7b-gptq-int8-naive.toml $G
KVRUN_GPTQ_TC_TILES=1 row "gptq tiles 1" -c $C/qwen7b-gptq-int8-naive.toml --batch 32,64 --prompt-tokens 32 --new-tokens 128
row "bf16 int8" -c $C/qwen7b-bf16-int8-naive.toml --batch 16,32,64 --prompt-tokens 32 --new-tokens 128
row "gptq b1" -c $C/qwen7b-gptq-int8-naive.toml $B1
date -u
OUT=${OUT:-.}/prof64 WEIGHTS=gptq BATCH=64 ATTN=naive CACHE=int8 SKIP=2500 COUNT=700 NEW=8 TOP=16 \
  timeout 200 bash scripts/gpu-profile.sh
date -u
