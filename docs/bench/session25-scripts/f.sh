# Session 25, call F: GPTQ int4 at 40..56 rows with gemm_wg_kernel at its exact width (⌈M / 8⌉ row
# blocks, default) against always 64 rows past 32 (KVRUN_GPTQ_WG_WIDE=1): call E found Qwen2.5-7B at
# 48 / 56 rows (5.07 / 5.29 ms/step) slower than at 64 (4.75).
set -uo pipefail
exec > >(tee ${OUT:-.}/session25-f.log) 2>&1
source scripts/bench-lib.sh
echo "commit $(cat .carry/commit)"; date -u
row_header
G="--batch 40,48,56,64 --prompt-tokens 32 --new-tokens 128"
for shape in qwen2.5-7b qwen-7b; do
  for i in 1 2; do
    row "$shape exact" -c $C/qwen7b-gptq-int8-naive.toml --set model.synthetic=$shape $G
    KVRUN_GPTQ_WG_WIDE=1 row "$shape wide" -c $C/qwen7b-gptq-int8-naive.toml --set model.synthetic=$shape $G
  done
done
printf '[model]\npath = "%s"\n[backend]\ndevice = "cuda"\n' "$KVRUN_FIXTURES/tiny-qwen2-gptq-int4" > /tmp/p4.toml
for e in "" KVRUN_GPTQ_WG_WIDE=1; do echo "ppl window 48 $e: $(env $e $k perplexity -c /tmp/p4.toml --text $KVRUN_DATA/pystdlib-valid.txt --window 48 --max-windows 100 2>&1 | tail -1)"; done
KVRUN_GPTQ_WG_WIDE=1 timeout 100 $b/test_plugin_weights_gptq 2>&1 | grep -E "ERROR|test cases" | head -4
date -u
