# Session 16, call C: the final code (f8f3d16: append and decode reading before their PDL wait, the
# decode's 16-warp blocks at batch 1). Every GPU suite (scripts/gpu-check.sh's default list, with
# the new four-warp run of the naive suite and the late-append case); memcheck of the cache suite
# (both append kernels) and of the naive suite's late-append, MHA and Qwen-7B cases; racecheck of
# the late-append case. Rows against the previous session's four modules (.carry/old/base, built
# from 74e533d) first on KVRUN_PLUGIN_PATH, alternating.
set -uo pipefail
exec > >(tee ${OUT:-.}/session16-c.log) 2>&1
source scripts/bench-lib.sh
echo "commit $(cat .carry/commit)"; date -u
mkdir -p /tmp/o && tar -xzf .carry/old.tgz -C /tmp/o
O=/tmp/o/old
OUT=/tmp/gc LINES_PER_SUITE=10 timeout 420 scripts/gpu-check.sh
echo "gpu-check rc=$?"
timeout 150 compute-sanitizer --tool memcheck --error-exitcode 9 $b/test_plugin_cache_fp16 > /tmp/s1.log 2>&1
echo "memcheck cache suite rc=$? $(grep 'ERROR SUMMARY' /tmp/s1.log | tail -1)"
timeout 300 compute-sanitizer --tool memcheck --error-exitcode 9 $b/test_plugin_attention_naive -tc='*late*,*MHA 1:1, head_dim 128*,*Qwen-7B*' > /tmp/s2.log 2>&1
echo "memcheck naive suite (late append, MHA 128, Qwen-7B heads) rc=$? $(grep 'ERROR SUMMARY' /tmp/s2.log | tail -1)"
timeout 120 compute-sanitizer --tool racecheck --error-exitcode 9 $b/test_plugin_attention_naive -tc='*late*' > /tmp/s3.log 2>&1
echo "racecheck naive late-append case rc=$? $(grep 'RACECHECK SUMMARY\|ERROR SUMMARY' /tmp/s3.log | tail -1)"
row_header
for r in 1 2 3; do
  row "bf16 int8 naive" -c $C/qwen7b-bf16-int8-naive.toml $B1
  KVRUN_PLUGIN_PATH=$O/base row "bf16 int8 naive, 74e533d modules" -c $C/qwen7b-bf16-int8-naive.toml $B1
done
for r in 1 2; do
  row "gptq int8 naive" -c $C/qwen7b-gptq-int8-naive.toml $B1
  KVRUN_PLUGIN_PATH=$O/base row "gptq int8 naive, 74e533d modules" -c $C/qwen7b-gptq-int8-naive.toml $B1
done
for r in 1 2; do
  row "bf16 fp16 flash" -c $C/qwen7b-bf16-fp16-flash.toml $B1
  KVRUN_PLUGIN_PATH=$O/base row "bf16 fp16 flash, 74e533d modules" -c $C/qwen7b-bf16-fp16-flash.toml $B1
done
row "bf16 fp16 naive" -c $C/qwen7b-bf16-fp16-flash.toml --set attention.kind=naive $B1
row "bf16 int8 flash" -c $C/qwen7b-bf16-int8-naive.toml --set attention.kind=flash $B1
row "gptq fp16 flash" -c $C/qwen7b-gptq-fp16-flash.toml $B1
row "bf16 int8 naive, 2048 new" -c $C/qwen7b-bf16-int8-naive.toml --batch 1 --prompt-tokens 32 --new-tokens 2048
KVRUN_PLUGIN_PATH=$O/base row "bf16 int8 naive, 2048 new, 74e533d modules" -c $C/qwen7b-bf16-int8-naive.toml --batch 1 --prompt-tokens 32 --new-tokens 2048
for r in 1 2; do
  row "bf16 int8 naive" -c $C/qwen7b-bf16-int8-naive.toml $B64
  KVRUN_PLUGIN_PATH=$O/base row "bf16 int8 naive, 74e533d modules" -c $C/qwen7b-bf16-int8-naive.toml $B64
done
row "bf16 fp16 flash" -c $C/qwen7b-bf16-fp16-flash.toml $B64
row "gptq int8 naive" -c $C/qwen7b-gptq-int8-naive.toml $B64
date -u
