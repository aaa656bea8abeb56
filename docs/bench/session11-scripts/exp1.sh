# Session 11, exp1: the batch-64 int8 decode kernel's time against its key count (fixed cost per
# launch vs cost per key), and the whole step against the key count. Build: main (c747b47).
set -uo pipefail
exec > >(tee ${OUT:-.}/session11-exp1.log) 2>&1
echo "commit $(cat .carry/commit)"; date -u
k=build-cuda/apps/kvrun; C=configs/bench
printf '[model]\nsynthetic = "qwen-7b"\n[backend]\ndevice = "cuda"\ngraphs = false\n[attention]\nkind = "naive"\n[cache]\ntype = "int8"\n' > /tmp/d64.toml
for P in 32 288 544 1056; do
  echo "== decode_kernel batch 64, prompt $P (keys $((P+1)))"
  ncu --clock-control none -k regex:decode_kernel --launch-skip 32 --launch-count 1 --metrics gpu__time_duration.sum,dram__bytes_read.sum,smsp__inst_executed.sum,smsp__issue_active.avg.pct_of_peak_sustained_active,dram__throughput.avg.pct_of_peak_sustained_elapsed,launch__grid_size,sm__warps_active.avg.pct_of_peak_sustained_active \
    $k bench -c /tmp/d64.toml --batch 64 --prompt-tokens $P --new-tokens 3 --warmup-tokens 0 2>&1 | grep -E "^    [a-z]"
done
row() { local name=$1; shift; echo "$name | $($k bench "$@" 2>&1 | grep -A1 -E '^ batch' | tail -1)"; }
for P in 32 288 544 1056; do
  row b64-int8-P$P -c $C/qwen7b-bf16-int8-naive.toml --batch 64 --prompt-tokens $P --new-tokens 24
done
date -u
