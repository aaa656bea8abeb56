# Session 16, call H: the decode kernel's merges (row groups, warps) and the split-K merge take a
# NaN partial state into the result instead of dropping it (l != 0 instead of l > 0); new case: a
# NaN key gives NaN rows, as on the CPU. The naive suite (automatic, 1 and 4 warps), flash's suite
# (both decode paths), the CUDA model suite; two rows as a sanity check (registers unchanged).
set -uo pipefail
exec > >(tee ${OUT:-.}/session16-h.log) 2>&1
source scripts/bench-lib.sh
echo "commit $(cat .carry/commit)"; date -u
OUT=/tmp/gc LINES_PER_SUITE=6 timeout 200 scripts/gpu-check.sh test_plugin_attention_naive \
  KVRUN_NAIVE_DECODE_WARPS=1:test_plugin_attention_naive KVRUN_NAIVE_DECODE_WARPS=4:test_plugin_attention_naive \
  test_plugin_attention_flash KVRUN_FLASH_DECODE=0:test_plugin_attention_flash test_model_cuda
echo "gpu-check rc=$?"
grep -A3 "NaN key" /tmp/gc/test_plugin_attention_naive.log | head -8
row_header
row "bf16 int8 naive" -c $C/qwen7b-bf16-int8-naive.toml $B1
row "bf16 fp16 flash" -c $C/qwen7b-bf16-fp16-flash.toml $B64
date -u
