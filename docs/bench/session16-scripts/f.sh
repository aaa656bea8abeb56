# Session 16, call F: the early round only with the int8 cache or the 16-warp blocks (kEarly), the
# two loop shapes (early: next loads after the arithmetic; else at the top, through L1). Call E's
# cause: the early round's registers (fp16 4-warp kernel 80 -> 93) flipped decode_warps to one-warp
# blocks for batch 64 with fp16; now 79 again. Suites, memcheck/racecheck of the late-append case,
# rows of this build against 74e533d's modules (base) and f8f3d16's attention modules (head).
set -uo pipefail
exec > >(tee ${OUT:-.}/session16-f.log) 2>&1
source scripts/bench-lib.sh
echo "commit $(cat .carry/commit)"; date -u
mkdir -p /tmp/o && tar -xzf .carry/old.tgz -C /tmp/o
O=/tmp/o/old
OUT=/tmp/gc LINES_PER_SUITE=8 timeout 300 scripts/gpu-check.sh test_plugin_attention_naive \
  KVRUN_NAIVE_DECODE_WARPS=1:test_plugin_attention_naive KVRUN_NAIVE_DECODE_WARPS=4:test_plugin_attention_naive \
  test_plugin_attention_flash test_plugin_cache_fp16 test_model_cuda
echo "gpu-check rc=$?"
timeout 120 compute-sanitizer --tool memcheck --error-exitcode 9 $b/test_plugin_attention_naive -tc='*late*' > /tmp/s2.log 2>&1
echo "memcheck naive late-append case rc=$? $(grep 'ERROR SUMMARY' /tmp/s2.log | tail -1)"
timeout 120 compute-sanitizer --tool racecheck --error-exitcode 9 $b/test_plugin_attention_naive -tc='*late*' > /tmp/s3.log 2>&1
echo "racecheck naive late-append case rc=$? $(grep 'RACECHECK SUMMARY' /tmp/s3.log | tail -1)"
row_header
for r in 1 2; do
  row "bf16 fp16 flash" -c $C/qwen7b-bf16-fp16-flash.toml $B64
  KVRUN_PLUGIN_PATH=$O/base row "bf16 fp16 flash, 74e533d modules" -c $C/qwen7b-bf16-fp16-flash.toml $B64
done
KVRUN_NAIVE_DECODE_WARPS=1 row "bf16 fp16 flash, one-warp blocks forced" -c $C/qwen7b-bf16-fp16-flash.toml $B64
row "bf16 int8 naive" -c $C/qwen7b-bf16-int8-naive.toml $B64
KVRUN_PLUGIN_PATH=$O/base row "bf16 int8 naive, 74e533d modules" -c $C/qwen7b-bf16-int8-naive.toml $B64
KVRUN_PLUGIN_PATH=$O/head row "bf16 int8 naive, f8f3d16 attention" -c $C/qwen7b-bf16-int8-naive.toml $B64
for r in 1 2; do
  row "bf16 int8 naive" -c $C/qwen7b-bf16-int8-naive.toml $B1
  KVRUN_PLUGIN_PATH=$O/base row "bf16 int8 naive, 74e533d modules" -c $C/qwen7b-bf16-int8-naive.toml $B1
done
row "bf16 fp16 flash" -c $C/qwen7b-bf16-fp16-flash.toml $B1
KVRUN_PLUGIN_PATH=$O/base row "bf16 fp16 flash, 74e533d modules" -c $C/qwen7b-bf16-fp16-flash.toml $B1
row "gptq int8 naive" -c $C/qwen7b-gptq-int8-naive.toml $B1
date -u
