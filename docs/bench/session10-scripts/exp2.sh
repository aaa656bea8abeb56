# Session 10, exp2 (empty barriers, table ids a stage ahead): naive decode through the bulk-copy ring (KVRUN_NAIVE_DECODE_STAGES, default 3)
# against the register path (=0), same build, same call: suites, memcheck/racecheck, bench rows.
set -uo pipefail
exec > >(tee ${OUT:-.}/session10-exp2.log) 2>&1
b=build-cuda/tests; k=build-cuda/apps/kvrun
echo "commit $(cat .carry/commit)"; date -u
for st in 3 0; do
  KVRUN_NAIVE_DECODE_STAGES=$st timeout 200 $b/test_plugin_attention_naive > /tmp/t$st.log 2>&1
  echo "attention_naive STAGES=$st rc=$? $(grep 'test cases' /tmp/t$st.log | tail -1)"; grep -E "ERROR|FAILED" -A8 /tmp/t$st.log | head -30
done
row() { local name=$1; shift; echo "$name | $($k bench "$@" 2>&1 | grep -A1 -E '^ batch' | tail -1)"; }
C=configs/bench
echo "name | batch new tok/s ms/step p90 floor_ms %floor ttft prefill weights kv workspace peak"
for r in 1 2; do for st in 3 0; do
  KVRUN_NAIVE_DECODE_STAGES=$st row b64-int8-st$st -c $C/qwen7b-bf16-int8-naive.toml --batch 64 --prompt-tokens 32 --new-tokens 1024
done; done
for st in 2 4; do
  KVRUN_NAIVE_DECODE_STAGES=$st row b64-int8-st$st -c $C/qwen7b-bf16-int8-naive.toml --batch 64 --prompt-tokens 32 --new-tokens 1024
done
for st in 3 0; do
  KVRUN_NAIVE_DECODE_STAGES=$st row b1-int8-st$st -c $C/qwen7b-bf16-int8-naive.toml --batch 1 --prompt-tokens 32 --new-tokens 256
  KVRUN_NAIVE_DECODE_STAGES=$st row b1-8k-int8-st$st -c $C/qwen7b-bf16-int8-naive.toml --batch 1 --prompt-tokens 8192 --new-tokens 64
  KVRUN_NAIVE_DECODE_STAGES=$st row b64-fp16-naive-st$st -c $C/qwen7b-bf16-int8-naive.toml --set cache.type=fp16 --batch 64 --prompt-tokens 32 --new-tokens 1024
done
date -u
printf '[model]\nsynthetic = "qwen-7b"\n[backend]\ndevice = "cuda"\ngraphs = false\n[attention]\nkind = "naive"\n[cache]\ntype = "int8"\n' > /tmp/d64.toml
for st in 3 0; do echo "ncu decode_kernel b64 ~550 keys STAGES=$st"
KVRUN_NAIVE_DECODE_STAGES=$st ncu --clock-control none -k regex:decode_kernel --launch-skip 40 --launch-count 2 --metrics gpu__time_duration.sum,dram__throughput.avg.pct_of_peak_sustained_elapsed,sm__warps_active.avg.pct_of_peak_sustained_active,smsp__average_warp_latency_issue_stalled_barrier,smsp__average_warps_issue_stalled_barrier_per_issue_active.ratio,smsp__average_warps_issue_stalled_long_scoreboard_per_issue_active.ratio \
  $k bench -c /tmp/d64.toml --batch 64 --prompt-tokens 544 --new-tokens 4 --warmup-tokens 0 2>&1 | grep -E "^    [a-z]" ; done
timeout 150 compute-sanitizer --tool memcheck --error-exitcode 9 $b/test_plugin_attention_naive > /tmp/s2.log 2>&1; echo "memcheck attention_naive (ring) rc=$? $(grep 'ERROR SUMMARY' /tmp/s2.log|tail -1)"
timeout 150 compute-sanitizer --tool racecheck --error-exitcode 9 $b/test_plugin_attention_naive -tc='*MHA 1:1, head_dim 128*' > /tmp/s3.log 2>&1; echo "racecheck attention_naive MHA 128 (ring) rc=$? $(grep -E 'RACECHECK SUMMARY|ERROR SUMMARY' /tmp/s3.log|tail -1)"
timeout 100 compute-sanitizer --tool synccheck --error-exitcode 9 $b/test_plugin_attention_naive -tc='*GQA 4:1, head_dim 64*' > /tmp/s4.log 2>&1; echo "synccheck attention_naive GQA 64 (ring) rc=$? $(grep -E 'ERROR SUMMARY' /tmp/s4.log|tail -1)"
date -u
