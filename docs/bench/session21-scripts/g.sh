# Session 21, call G: the final code (gemm_tc_kernel from 9 rows, its 16-row form): the GPTQ suite,
# memcheck, the window-48 perplexity, rows 8–64 against bf16 in the same call.
set -uo pipefail
exec > >(tee ${OUT:-.}/session21-g.log) 2>&1
source scripts/bench-lib.sh
echo "commit $(cat .carry/commit)"; date -u
timeout 90 $b/test_plugin_weights_gptq 2>&1 | grep -E "ERROR|CHECK|worst|test cases|ppl of" | head -20
timeout 240 compute-sanitizer --tool memcheck --print-limit 5 $b/test_plugin_weights_gptq -tc="CUDA*" 2>&1 | tail -2
printf '[model]\npath = "%s"\n[backend]\ndevice = "cuda"\n' "$KVRUN_FIXTURES/tiny-qwen2-gptq-int4" > /tmp/p4.toml
for w in 11 48; do
  echo "ppl window $w: $($k perplexity -c /tmp/p4.toml --text $KVRUN_DATA/pystdlib-valid.txt --window $w --max-windows 300 2>&1 | tail -1)"
done
row_header
row "gptq int8" -c $C/qwen7b-gptq-int8-naive.toml --batch 1,8,12,16,24,32,48,64 --prompt-tokens 32 --new-tokens 128
row "bf16 int8" -c $C/qwen7b-bf16-int8-naive.toml --batch 1,8,12,16,24,32,48,64 --prompt-tokens 32 --new-tokens 128
date -u
