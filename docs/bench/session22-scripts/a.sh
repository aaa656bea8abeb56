# Session 22, call A: gemv2_kernel (batch-1 GPTQ on Hopper: one block per SM, bulk-copy rings per
# warp) — the GPTQ suite with it and without it (KVRUN_GPTQ_G2=0), memcheck, the perplexity of
# tiny-qwen2-gptq-int4, and batch 1 with it on and off against bf16 in the same call.
set -uo pipefail
exec > >(tee ${OUT:-.}/session22-a.log) 2>&1
source scripts/bench-lib.sh
echo "commit $(cat .carry/commit)"; date -u; nvidia-smi --query-gpu=name,clocks.max.sm,clocks.max.mem --format=csv,noheader
timeout 120 $b/test_plugin_weights_gptq 2>&1 | grep -E "ERROR|CHECK|worst|test cases|ppl of|skipped" | head -30
KVRUN_GPTQ_G2=0 timeout 120 $b/test_plugin_weights_gptq 2>&1 | grep -E "ERROR|test cases" | head -10
timeout 240 compute-sanitizer --tool memcheck --print-limit 5 $b/test_plugin_weights_gptq -tc="CUDA*" 2>&1 | tail -3
timeout 240 compute-sanitizer --tool racecheck --print-limit 5 $b/test_plugin_weights_gptq -tc="CUDA Linear fused*" 2>&1 | tail -3
printf '[model]\npath = "%s"\n[backend]\ndevice = "cuda"\n' "$KVRUN_FIXTURES/tiny-qwen2-gptq-int4" > /tmp/p4.toml
for w in 11; do
  echo "ppl window $w G2: $($k perplexity -c /tmp/p4.toml --text $KVRUN_DATA/pystdlib-valid.txt --window $w --max-windows 300 2>&1 | tail -1)"
  echo "ppl window $w G1: $(KVRUN_GPTQ_G2=0 $k perplexity -c /tmp/p4.toml --text $KVRUN_DATA/pystdlib-valid.txt --window $w --max-windows 300 2>&1 | tail -1)"
done
date -u
row_header
for i in 1 2; do
  row "gptq g2" -c $C/qwen7b-gptq-int8-naive.toml $B1
  KVRUN_GPTQ_G2=0 row "gptq g1" -c $C/qwen7b-gptq-int8-naive.toml $B1
done
KVRUN_GPTQ_G1_TRIGGER=0 row "gptq g2 late trigger" -c $C/qwen7b-gptq-int8-naive.toml $B1
row "gptq g2 q2.5" -c $C/qwen7b-gptq-int8-naive.toml $B1 --set model.synthetic=qwen2.5-7b
KVRUN_GPTQ_G2=0 row "gptq g1 q2.5" -c $C/qwen7b-gptq-int8-naive.toml $B1 --set model.synthetic=qwen2.5-7b
row "bf16 int8" -c $C/qwen7b-bf16-int8-naive.toml $B1
date -u
