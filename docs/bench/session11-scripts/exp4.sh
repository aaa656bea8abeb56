# Session 11, exp4: the decode kernel with one warp per block when the work items fill the GPU
# (branch naive-decode-qsplit at this commit: automatic choice; KVRUN_NAIVE_DECODE_WARPS=4 forces
# the four-warp blocks, =1 one-warp blocks) against main's plugin (.carry/old), same call.
set -uo pipefail
exec > >(tee ${OUT:-.}/session11-exp4.log) 2>&1
b=build-cuda/tests; k=build-cuda/apps/kvrun; C=configs/bench
echo "commit $(cat .carry/commit)"; date -u
for v in 0 1; do
  KVRUN_NAIVE_DECODE_WARPS=$v timeout 200 $b/test_plugin_attention_naive > /tmp/t$v.log 2>&1
  echo "attention_naive WARPS=$v rc=$? $(grep 'test cases' /tmp/t$v.log | tail -1)"; grep -E "ERROR|FAILED" -A10 /tmp/t$v.log | head -30
done
printf '[model]\nsynthetic = "qwen-7b"\n[backend]\ndevice = "cuda"\ngraphs = false\n[attention]\nkind = "naive"\n[cache]\ntype = "int8"\n' > /tmp/d64.toml
for P in 32 544 1056; do for v in 0 4; do
  echo "== decode_kernel batch 64, prompt $P, WARPS=$v"
  KVRUN_NAIVE_DECODE_WARPS=$v ncu --clock-control none -k regex:decode_kernel --launch-skip 32 --launch-count 1 --metrics gpu__time_duration.sum,dram__throughput.avg.pct_of_peak_sustained_elapsed,smsp__inst_executed.sum,smsp__issue_active.avg.pct_of_peak_sustained_active,launch__grid_size,launch__block_size \
    $k bench -c /tmp/d64.toml --batch 64 --prompt-tokens $P --new-tokens 3 --warmup-tokens 0 2>&1 | grep -E "^    [a-z]"
done; done
row() { local name=$1; shift; echo "$name | $($k bench "$@" 2>&1 | grep -A1 -E '^ batch' | tail -1)"; }
for r in 1 2; do
  row b64-int8-auto -c $C/qwen7b-bf16-int8-naive.toml --batch 64 --prompt-tokens 32 --new-tokens 1024
  KVRUN_NAIVE_DECODE_WARPS=4 row b64-int8-w4 -c $C/qwen7b-bf16-int8-naive.toml --batch 64 --prompt-tokens 32 --new-tokens 1024
  KVRUN_PLUGIN_PATH=$PWD/.carry/old row b64-int8-main -c $C/qwen7b-bf16-int8-naive.toml --batch 64 --prompt-tokens 32 --new-tokens 1024
done
sed "s/type = \"int8\"/type = \"fp16\"/" $C/qwen7b-bf16-int8-naive.toml > /tmp/fp16n.toml
row b64-fp16-auto -c /tmp/fp16n.toml --batch 64 --prompt-tokens 32 --new-tokens 1024
KVRUN_PLUGIN_PATH=$PWD/.carry/old row b64-fp16-main -c /tmp/fp16n.toml --batch 64 --prompt-tokens 32 --new-tokens 1024
row b100-int8-auto -c $C/qwen7b-bf16-int8-naive.toml --batch 100 --prompt-tokens 32 --new-tokens 1024
KVRUN_NAIVE_DECODE_WARPS=1 row b100-int8-w1 -c $C/qwen7b-bf16-int8-naive.toml --batch 100 --prompt-tokens 32 --new-tokens 1024
KVRUN_PLUGIN_PATH=$PWD/.carry/old row b100-int8-main -c $C/qwen7b-bf16-int8-naive.toml --batch 100 --prompt-tokens 32 --new-tokens 1024
row b32-int8-auto -c $C/qwen7b-bf16-int8-naive.toml --batch 32 --prompt-tokens 32 --new-tokens 512
KVRUN_NAIVE_DECODE_WARPS=1 row b32-int8-w1 -c $C/qwen7b-bf16-int8-naive.toml --batch 32 --prompt-tokens 32 --new-tokens 512
row b1-int8-auto -c $C/qwen7b-bf16-int8-naive.toml --batch 1 --prompt-tokens 32 --new-tokens 256
KVRUN_PLUGIN_PATH=$PWD/.carry/old row b1-int8-main -c $C/qwen7b-bf16-int8-naive.toml --batch 1 --prompt-tokens 32 --new-tokens 256
printf '[model]\npath = "%s"\n[backend]\ndevice = "cuda"\n[cache]\ntype = "int8"\n[attention]\nkind = "naive"\n' "$KVRUN_FIXTURES/tiny-qwen2" > /tmp/p.toml
echo "ppl tiny-qwen2 int8:naive: $($k perplexity -c /tmp/p.toml --text "$KVRUN_DATA/pystdlib-valid.txt" 2>&1 | tail -1)"
KVRUN_NAIVE_DECODE_WARPS=1 timeout 200 compute-sanitizer --tool memcheck --error-exitcode 9 $b/test_plugin_attention_naive > /tmp/s.log 2>&1; echo "memcheck attention_naive WARPS=1 rc=$? $(grep 'ERROR SUMMARY' /tmp/s.log|tail -1)"
date -u
