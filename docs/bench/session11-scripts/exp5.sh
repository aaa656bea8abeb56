# Session 11, exp5: the decode kernel sends the next round's K/V rows toward L2 at the start of each
# round (prefetch.global.L2, one line per lane; KVRUN_NAIVE_DECODE_PREFETCH=0 turns it off), on
# top of exp3 (query limbs once per warp) and exp4 (one-warp blocks at batch 64), same call.
set -uo pipefail
exec > >(tee ${OUT:-.}/session11-exp5.log) 2>&1
b=build-cuda/tests; k=build-cuda/apps/kvrun; C=configs/bench
echo "commit $(cat .carry/commit)"; date -u
for v in 0 1; do
  KVRUN_NAIVE_DECODE_WARPS=$v timeout 150 $b/test_plugin_attention_naive > /tmp/t$v.log 2>&1
  echo "attention_naive WARPS=$v rc=$? $(grep 'test cases' /tmp/t$v.log | tail -1)"; grep -E "ERROR|FAILED" -A10 /tmp/t$v.log | head -30
done
printf '[model]\nsynthetic = "qwen-7b"\n[backend]\ndevice = "cuda"\ngraphs = false\n[attention]\nkind = "naive"\n[cache]\ntype = "int8"\n' > /tmp/d64.toml
for P in 544 1056; do for v in 1 0; do
  echo "== decode_kernel batch 64, prompt $P, PREFETCH=$v"
  KVRUN_NAIVE_DECODE_PREFETCH=$v ncu --clock-control none -k regex:decode_kernel --launch-skip 32 --launch-count 1 --metrics gpu__time_duration.sum,dram__throughput.avg.pct_of_peak_sustained_elapsed,smsp__inst_executed.sum,smsp__issue_active.avg.pct_of_peak_sustained_active \
    $k bench -c /tmp/d64.toml --batch 64 --prompt-tokens $P --new-tokens 3 --warmup-tokens 0 2>&1 | grep -E "^    [a-z]"
done; done
row() { local name=$1; shift; echo "$name | $($k bench "$@" 2>&1 | grep -A1 -E '^ batch' | tail -1)"; }
for r in 1 2; do for v in 1 0; do
  KVRUN_NAIVE_DECODE_PREFETCH=$v row b64-int8-prefetch$v -c $C/qwen7b-bf16-int8-naive.toml --batch 64 --prompt-tokens 32 --new-tokens 1024
done; done
for v in 1 0; do
  KVRUN_NAIVE_DECODE_PREFETCH=$v row b1-int8-prefetch$v -c $C/qwen7b-bf16-int8-naive.toml --batch 1 --prompt-tokens 32 --new-tokens 256
  KVRUN_NAIVE_DECODE_PREFETCH=$v row b1-8k-int8-prefetch$v -c $C/qwen7b-bf16-int8-naive.toml --batch 1 --prompt-tokens 8192 --new-tokens 64
done
timeout 150 compute-sanitizer --tool memcheck --error-exitcode 9 $b/test_plugin_attention_naive > /tmp/s.log 2>&1; echo "memcheck attention_naive rc=$? $(grep 'ERROR SUMMARY' /tmp/s.log|tail -1)"
date -u
