# Session 23, call F: gemm_wg_kernel at the exact width ⌈M / 8⌉ · 8 from 33 rows (40, 48, 56 as well
# as 64) — suite (with M = 47, 56 added), memcheck, rows 33..64 against gemm_tc_kernel.
set -uo pipefail
exec > >(tee ${OUT:-.}/session23-f.log) 2>&1
source scripts/bench-lib.sh
echo "commit $(cat .carry/commit)"; date -u
echo "== default"; timeout 120 $b/test_plugin_weights_gptq 2>&1 | grep -E "ERROR|CHECK|worst|test cases" | head -20
echo "== wg from 9 rows"; KVRUN_GPTQ_WG_MIN_ROWS=9 timeout 120 $b/test_plugin_weights_gptq -tc="CUDA*" 2>&1 | grep -E "ERROR|worst|test cases" | head -10
echo "== tc"; KVRUN_GPTQ_WGMMA=0 timeout 120 $b/test_plugin_weights_gptq -tc="CUDA*" 2>&1 | grep -E "ERROR|worst|test cases" | head -10
echo "== memcheck, wg from 9 rows"; KVRUN_GPTQ_WG_MIN_ROWS=9 timeout 240 compute-sanitizer --tool memcheck --print-limit 5 $b/test_plugin_weights_gptq -tc="CUDA*" 2>&1 | tail -2
printf '[model]\npath = "%s"\n[backend]\ndevice = "cuda"\n' "$KVRUN_FIXTURES/tiny-qwen2-gptq-int4" > /tmp/p4.toml
for w in 1 0; do echo "ppl window 41, KVRUN_GPTQ_WGMMA=$w: $(KVRUN_GPTQ_WGMMA=$w $k perplexity -c /tmp/p4.toml --text $KVRUN_DATA/pystdlib-valid.txt --window 41 --max-windows 100 2>&1 | tail -1)"; done
row_header
G="--batch 33,40,48,56,64 --prompt-tokens 32 --new-tokens 128"
for i in 1 2; do
  KVRUN_GPTQ_WGMMA=0 row "tc" -c $C/qwen7b-gptq-int8-naive.toml $G
  row "wg" -c $C/qwen7b-gptq-int8-naive.toml $G
done
row "bf16" -c $C/qwen7b-bf16-int8-naive.toml $G
date -u
