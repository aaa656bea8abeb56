# Session 22, call I: gemv1's prologue — the group table's loads held in registers and stored after
# x's loads are issued, the norm weights in one vector load per float4 (all issued before the first
# conversion), __launch_bounds__(256, 3) — against main's module (.carry/v0) in the same call; the
# GPTQ suite, memcheck, the perplexity.
set -uo pipefail
exec > >(tee ${OUT:-.}/session22-i.log) 2>&1
source scripts/bench-lib.sh
echo "commit $(cat .carry/commit)"; date -u
timeout 120 $b/test_plugin_weights_gptq 2>&1 | grep -E "ERROR|CHECK|worst|test cases" | head -20
KVRUN_GPTQ_G1_DEFER_NORM=0 timeout 120 $b/test_plugin_weights_gptq -tc="CUDA*" 2>&1 | grep -E "ERROR|test cases" | head -5
timeout 240 compute-sanitizer --tool memcheck --print-limit 5 $b/test_plugin_weights_gptq -tc="CUDA*" 2>&1 | tail -2
printf '[model]\npath = "%s"\n[backend]\ndevice = "cuda"\n' "$KVRUN_FIXTURES/tiny-qwen2-gptq-int4" > /tmp/p4.toml
echo "ppl window 11: $($k perplexity -c /tmp/p4.toml --text $KVRUN_DATA/pystdlib-valid.txt --window 11 --max-windows 300 2>&1 | tail -1)"
row_header
for i in 1 2 3; do
  KVRUN_PLUGIN_PATH=$PWD/.carry/v0 row "main" -c $C/qwen7b-gptq-int8-naive.toml $B1
  row "new" -c $C/qwen7b-gptq-int8-naive.toml $B1
done
KVRUN_PLUGIN_PATH=$PWD/.carry/v0 row "main q2.5" -c $C/qwen7b-gptq-int8-naive.toml $B1 --set model.synthetic=qwen2.5-7b
row "new q2.5" -c $C/qwen7b-gptq-int8-naive.toml $B1 --set model.synthetic=qwen2.5-7b
date -u
