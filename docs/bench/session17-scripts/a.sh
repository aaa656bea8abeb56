# Session 17, call A: (1) the GPU cases of 9aabedf's test helper (cache suites, naive suite) and the
# flash tile merge's NaN fix with its new case (both decode paths), plus a negative control: the
# new case against the flash module built without the fix (swapped into the build folder, since
# the suites load the build's modules). (2) Where a batch-1 / batch-64 decode step's wall time goes
# between the graph and the host: a throw-away backend (KVRUN_EXP_STEPTIME, /tmp/o/exp) records
# events around the graph launch and the token copy and prints the medians of graph time, sample +
# copy time, and the gap from one step's token copy to the next step's graph start.
set -uo pipefail
exec > >(tee ${OUT:-.}/session17-a.log) 2>&1
source scripts/bench-lib.sh
echo "commit $(cat .carry/commit)"; date -u
mkdir -p /tmp/o && tar -xzf .carry/exp.tgz -C /tmp/o
OUT=/tmp/gc LINES_PER_SUITE=6 timeout 300 scripts/gpu-check.sh test_plugin_cache_fp16 test_plugin_cache_int8 \
  test_plugin_attention_naive KVRUN_NAIVE_DECODE_WARPS=1:test_plugin_attention_naive \
  KVRUN_NAIVE_DECODE_WARPS=4:test_plugin_attention_naive test_plugin_attention_flash \
  KVRUN_FLASH_DECODE=0:test_plugin_attention_flash
echo "gpu-check rc=$?"
f=build-cuda/plugins/attention_flash/kvrun_attention_flash.so
cp $f /tmp/flash-new.so && cp /tmp/o/oldflash/kvrun_attention_flash.so $f
echo "negative control (flash without the fix, tiles for decode; must FAIL):"
KVRUN_FLASH_DECODE=0 timeout 60 $b/test_plugin_attention_flash -tc='*NaN key*' 2>&1 | grep -E "ERROR|CHECK\(|got_nan|Status|test cases" | head -8
cp /tmp/flash-new.so $f
echo "same case, kept module:"
KVRUN_FLASH_DECODE=0 timeout 60 $b/test_plugin_attention_flash -tc='*NaN key*' 2>&1 | tail -3
row_header
row "bf16 int8 B1" -c $C/qwen7b-bf16-int8-naive.toml $B1
for cfg in qwen7b-bf16-int8-naive qwen7b-gptq-int8-naive; do
  echo "== steptime $cfg batch 1"
  KVRUN_EXP_STEPTIME=1 KVRUN_PLUGIN_PATH=/tmp/o/exp $k bench -c $C/$cfg.toml $B1 2>&1 | grep -E "EXP|^ +1 "
done
echo "== steptime bf16 int8 batch 64"
KVRUN_EXP_STEPTIME=1 KVRUN_PLUGIN_PATH=/tmp/o/exp $k bench -c $C/qwen7b-bf16-int8-naive.toml $B64 2>&1 | grep -E "EXP|^ +64 "
row "bf16 int8 B1" -c $C/qwen7b-bf16-int8-naive.toml $B1
date -u
