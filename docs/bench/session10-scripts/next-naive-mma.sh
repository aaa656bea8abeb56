# Prepared in session 10, not run (no device time left): branch naive-decode-mma, the int8 decode's
# P·V on the tensor cores (KVRUN_NAIVE_DECODE_MMA, default 1) against the CUDA-core loop (=0).
# The batch-64 decode kernel is bound by its instruction stream (session 10: more bytes in flight
# and more warps did not help); its V loop was 3 instructions per code. Build the branch with
# scripts/gpu-pack.sh tiny-qwen2, then scripts/gpu-run.sh bash .carry/next-naive-mma.sh
set -uo pipefail
exec > >(tee ${OUT:-.}/session11-naive-mma.log) 2>&1
b=build-cuda/tests; k=build-cuda/apps/kvrun; C=configs/bench
date -u
for v in 1 0; do
  KVRUN_NAIVE_DECODE_MMA=$v timeout 200 $b/test_plugin_attention_naive > /tmp/t$v.log 2>&1
  echo "attention_naive MMA=$v rc=$? $(grep 'test cases' /tmp/t$v.log | tail -1)"; grep -E "ERROR|FAILED" -A10 /tmp/t$v.log | head -40
done
row() { local name=$1; shift; echo "$name | $($k bench "$@" 2>&1 | grep -A1 -E '^ batch' | tail -1)"; }
for r in 1 2; do for v in 1 0; do
  KVRUN_NAIVE_DECODE_MMA=$v row b64-int8-mma$v -c $C/qwen7b-bf16-int8-naive.toml --batch 64 --prompt-tokens 32 --new-tokens 1024
done; done
for v in 1 0; do
  KVRUN_NAIVE_DECODE_MMA=$v row b1-int8-mma$v -c $C/qwen7b-bf16-int8-naive.toml --batch 1 --prompt-tokens 32 --new-tokens 256
  KVRUN_NAIVE_DECODE_MMA=$v row b1-8k-int8-mma$v -c $C/qwen7b-bf16-int8-naive.toml --batch 1 --prompt-tokens 8192 --new-tokens 64
done
printf '[model]\nsynthetic = "qwen-7b"\n[backend]\ndevice = "cuda"\ngraphs = false\n[attention]\nkind = "naive"\n[cache]\ntype = "int8"\n' > /tmp/d64.toml
for v in 1 0; do echo "ncu decode_kernel b64 545 keys MMA=$v"
  KVRUN_NAIVE_DECODE_MMA=$v ncu --clock-control none -k regex:decode_kernel --launch-skip 32 --launch-count 1 --metrics gpu__time_duration.sum,dram__throughput.avg.pct_of_peak_sustained_elapsed,smsp__inst_executed.sum,smsp__issue_active.avg.pct_of_peak_sustained_active,launch__registers_per_thread \
    $k bench -c /tmp/d64.toml --batch 64 --prompt-tokens 544 --new-tokens 3 --warmup-tokens 0 2>&1 | grep -E "^    [a-z]"; done
printf '[model]\npath = "%s"\n[backend]\ndevice = "cuda"\n[cache]\ntype = "int8"\n[attention]\nkind = "naive"\n' "$KVRUN_FIXTURES/tiny-qwen2" > /tmp/p.toml
echo "ppl tiny-qwen2 int8:naive (mma): $($k perplexity -c /tmp/p.toml --text "$KVRUN_DATA/pystdlib-valid.txt" 2>&1 | tail -1)"
timeout 200 compute-sanitizer --tool memcheck --error-exitcode 9 $b/test_plugin_attention_naive > /tmp/s.log 2>&1; echo "memcheck attention_naive rc=$? $(grep 'ERROR SUMMARY' /tmp/s.log|tail -1)"
date -u
