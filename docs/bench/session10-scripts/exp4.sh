# Session 10, exp4: naive decode at 5 blocks per SM (__launch_bounds__(128, 5): 96 registers, no
# spill; .carry/v5, loaded first through KVRUN_PLUGIN_PATH) against main's 4 (128 registers).
set -uo pipefail
exec > >(tee ${OUT:-.}/session10-exp4.log) 2>&1
k=build-cuda/apps/kvrun; C=configs/bench
echo "commit $(cat .carry/commit)"; date -u
row() { local name=$1; shift; echo "$name | $($k bench "$@" 2>&1 | grep -A1 -E '^ batch' | tail -1)"; }
for r in 1 2; do
  row b64-int8-main -c $C/qwen7b-bf16-int8-naive.toml --batch 64 --prompt-tokens 32 --new-tokens 1024
  KVRUN_PLUGIN_PATH=$PWD/.carry/v5 row b64-int8-v5 -c $C/qwen7b-bf16-int8-naive.toml --batch 64 --prompt-tokens 32 --new-tokens 1024
done
row b1-8k-int8-main -c $C/qwen7b-bf16-int8-naive.toml --batch 1 --prompt-tokens 8192 --new-tokens 64
KVRUN_PLUGIN_PATH=$PWD/.carry/v5 row b1-8k-int8-v5 -c $C/qwen7b-bf16-int8-naive.toml --batch 1 --prompt-tokens 8192 --new-tokens 64
printf '[model]\nsynthetic = "qwen-7b"\n[backend]\ndevice = "cuda"\ngraphs = false\n[attention]\nkind = "naive"\n[cache]\ntype = "int8"\n' > /tmp/d64.toml
for v in main v5; do echo "ncu decode_kernel b64 ~550 keys $v"
  [ $v = v5 ] && export KVRUN_PLUGIN_PATH=$PWD/.carry/v5
  ncu --clock-control none -k regex:decode_kernel --launch-skip 40 --launch-count 2 --metrics gpu__time_duration.sum,dram__throughput.avg.pct_of_peak_sustained_elapsed,sm__warps_active.avg.pct_of_peak_sustained_active,launch__registers_per_thread \
    $k bench -c /tmp/d64.toml --batch 64 --prompt-tokens 544 --new-tokens 4 --warmup-tokens 0 2>&1 | grep -E "^    [a-z]"; done
date -u
