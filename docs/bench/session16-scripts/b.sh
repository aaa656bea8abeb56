# Session 16, call B: 82891e2 (append and decode reading before their PDL wait) with the decode
# kernel's 16-warp block (one query head per block) as an option, KVRUN_NAIVE_DECODE_WARPS=16. The
# late-append case again with call A's module without the re-read of the own key swapped into the
# build folder (call A's negative control ran the build's own module: the test registry does not
# read KVRUN_PLUGIN_PATH). Rows: batch 1 with 16-warp blocks (automatic split, and one part) against
# the automatic choice and the previous commit's modules; flash + fp16 again (call A: one row each).
set -uo pipefail
exec > >(tee ${OUT:-.}/session16-b.log) 2>&1
source scripts/bench-lib.sh
echo "commit $(cat .carry/commit)"; date -u
mkdir -p /tmp/o && tar -xzf .carry/old.tgz -C /tmp/o
O=/tmp/o/old
OUT=/tmp/gc LINES_PER_SUITE=8 timeout 300 scripts/gpu-check.sh KVRUN_NAIVE_DECODE_WARPS=16:test_plugin_attention_naive \
  KVRUN_NAIVE_DECODE_WARPS=16:test_plugin_attention_flash test_model_cuda
echo "gpu-check rc=$?"
m=build-cuda/plugins/attention_naive/kvrun_attention_naive.so
cp $m /tmp/naive-keep.so && cp $O/noreload/kvrun_attention_naive.so $m
timeout 60 $b/test_plugin_attention_naive -tc='*late*' > /tmp/nr.log 2>&1
echo "negative control (module without the re-read) rc=$? (must fail): $(grep -c 'not finite' /tmp/nr.log) non-finite checks; $(grep 'test cases' /tmp/nr.log)"
grep -m4 "rel L2\|not finite" /tmp/nr.log
cp /tmp/naive-keep.so $m
timeout 60 $b/test_plugin_attention_naive -tc='*late*' > /tmp/r.log 2>&1
echo "late-append case with the build's module rc=$? $(grep 'test cases' /tmp/r.log)"
row_header
for r in 1 2 3; do
  row "bf16 int8 naive" -c $C/qwen7b-bf16-int8-naive.toml $B1
  KVRUN_NAIVE_DECODE_WARPS=16 row "bf16 int8 naive, 16 warps" -c $C/qwen7b-bf16-int8-naive.toml $B1
  KVRUN_NAIVE_DECODE_WARPS=16 KVRUN_NAIVE_DECODE_SPLITS=1 row "bf16 int8 naive, 16 warps, 1 part" -c $C/qwen7b-bf16-int8-naive.toml $B1
  KVRUN_PLUGIN_PATH=$O/base row "bf16 int8 naive, base modules" -c $C/qwen7b-bf16-int8-naive.toml $B1
done
for r in 1 2 3; do
  row "bf16 fp16 flash" -c $C/qwen7b-bf16-fp16-flash.toml $B1
  KVRUN_PLUGIN_PATH=$O/base row "bf16 fp16 flash, base modules" -c $C/qwen7b-bf16-fp16-flash.toml $B1
done
row "gptq int8 naive" -c $C/qwen7b-gptq-int8-naive.toml $B1
KVRUN_NAIVE_DECODE_WARPS=16 row "gptq int8 naive, 16 warps" -c $C/qwen7b-gptq-int8-naive.toml $B1
date -u
