# Session 20, call D: the split rule for sixteen-warp decode blocks (a part ≥ 512 keys) — the
# attention suites (naive, its 1- and 4-warp variants, flash), memcheck on the naive suite, the
# CUDA model suite; then the rows, new rule against the old pick forced (KVRUN_NAIVE_DECODE_SPLITS:
# 4 parts at 1024 new tokens, 2 at 256), same call.
set -uo pipefail
exec > >(tee ${OUT:-.}/session20-d.log) 2>&1
source scripts/bench-lib.sh
echo "commit $(cat .carry/commit)"; date -u
LINES_PER_SUITE=8 OUT=/tmp/gc bash scripts/gpu-check.sh test_plugin_attention_naive KVRUN_NAIVE_DECODE_WARPS=1:test_plugin_attention_naive KVRUN_NAIVE_DECODE_WARPS=4:test_plugin_attention_naive test_plugin_attention_flash KVRUN_FLASH_DECODE=0:test_plugin_attention_flash test_model_cuda
timeout 240 compute-sanitizer --tool memcheck --error-exitcode 9 $b/test_plugin_attention_naive 2>&1 | tail -3
date -u
L1024="--batch 1 --prompt-tokens 32 --new-tokens 1024"
row_header
for i in 1 2; do
  row "int8 B1 1024 new" -c $C/qwen7b-bf16-int8-naive.toml $L1024
  KVRUN_NAIVE_DECODE_SPLITS=4 row "int8 B1 1024 old (s4)" -c $C/qwen7b-bf16-int8-naive.toml $L1024
  row "fp16 flash B1 1024 new" -c $C/qwen7b-bf16-fp16-flash.toml $L1024
  KVRUN_NAIVE_DECODE_SPLITS=4 row "fp16 flash B1 1024 old (s4)" -c $C/qwen7b-bf16-fp16-flash.toml $L1024
  row "int8 B1 256 new" -c $C/qwen7b-bf16-int8-naive.toml $B1
done
row "int8 B1 len new" -c $C/qwen7b-bf16-int8-naive.toml --batch 1 --prompt-tokens 32 --new-tokens 2048,4096
row "gptq int8 B1 new" -c $C/qwen7b-gptq-int8-naive.toml $B1
row "int8 B64 new" -c $C/qwen7b-bf16-int8-naive.toml $B64
date -u
