# Prepared in session 11, not run (device time spent): branch naive-decode-early at its head — the
# int8 decode kernel's first loads before the PDL wait (KVRUN_NAIVE_DECODE_EARLY, exp6: within noise
# in one pair) plus one-warp blocks writing their state directly (no shared-memory merge). Three
# repetitions of each against main's plugin. Build: git checkout naive-decode-early &&
# scripts/gpu-pack.sh tiny-qwen2; copy main's build-cuda/plugins/attention_naive/kvrun_attention_naive.so
# (built first, from main) to .carry/old; then scripts/gpu-run.sh bash .carry/next-early-epilogue.sh
set -uo pipefail
exec > >(tee ${OUT:-.}/session12-early-epilogue.log) 2>&1
b=build-cuda/tests; k=build-cuda/apps/kvrun; C=configs/bench
echo "commit $(cat .carry/commit)"; date -u
for v in 0 1; do
  KVRUN_NAIVE_DECODE_WARPS=$v timeout 150 $b/test_plugin_attention_naive > /tmp/t$v.log 2>&1
  echo "attention_naive WARPS=$v rc=$? $(grep 'test cases' /tmp/t$v.log | tail -1)"; grep -E "ERROR|FAILED" -A10 /tmp/t$v.log | head -20
done
timeout 100 $b/test_model_cuda -tc='tiny-qwen2*' > /tmp/m.log 2>&1; echo "test_model_cuda tiny-qwen2 rc=$? $(grep 'test cases' /tmp/m.log | tail -1)"; grep -E "int8/naive" /tmp/m.log | head -4
row() { local name=$1; shift; echo "$name | $($k bench "$@" 2>&1 | grep -A1 -E '^ batch' | tail -1)"; }
for r in 1 2 3; do
  KVRUN_PLUGIN_PATH=$PWD/.carry/old row b64-main -c $C/qwen7b-bf16-int8-naive.toml --batch 64 --prompt-tokens 32 --new-tokens 1024
  KVRUN_NAIVE_DECODE_EARLY=0 row b64-epilogue -c $C/qwen7b-bf16-int8-naive.toml --batch 64 --prompt-tokens 32 --new-tokens 1024
  row b64-epilogue+early -c $C/qwen7b-bf16-int8-naive.toml --batch 64 --prompt-tokens 32 --new-tokens 1024
done
for r in 1 2; do
  KVRUN_PLUGIN_PATH=$PWD/.carry/old row b1-main -c $C/qwen7b-bf16-int8-naive.toml --batch 1 --prompt-tokens 32 --new-tokens 256
  row b1-early -c $C/qwen7b-bf16-int8-naive.toml --batch 1 --prompt-tokens 32 --new-tokens 256
done
printf '[model]\nsynthetic = "qwen-7b"\n[backend]\ndevice = "cuda"\ngraphs = false\n[attention]\nkind = "naive"\n[cache]\ntype = "int8"\n' > /tmp/d64.toml
for v in main new; do
  pp=""; [ $v = main ] && pp=$PWD/.carry/old
  echo "== decode_kernel batch 64, 33 and 545 keys, $v"
  for P in 32 544; do KVRUN_PLUGIN_PATH=$pp ncu --clock-control none -k regex:decode_kernel --launch-skip 32 --launch-count 1 --metrics gpu__time_duration.sum,smsp__inst_executed.sum \
    $k bench -c /tmp/d64.toml --batch 64 --prompt-tokens $P --new-tokens 3 --warmup-tokens 0 2>&1 | grep -E "^    [a-z]"; done
done
KVRUN_NAIVE_DECODE_WARPS=1 timeout 150 compute-sanitizer --tool memcheck --error-exitcode 9 $b/test_plugin_attention_naive > /tmp/s.log 2>&1; echo "memcheck attention_naive WARPS=1 rc=$? $(grep 'ERROR SUMMARY' /tmp/s.log|tail -1)"
date -u
