# Session 12, exp1 (branch gptq-probe): where the batch-1 GPTQ GEMV's time goes in the real step.
# KVRUN_GPTQ_G1_PROBE=1 runs every batch-1 GEMV without its weight stream (prologue, x conversion,
# epilogue only; output wrong, timing only), =2 also without the x conversion / Σx². Bench rows in
# one call, then ncu stall reasons and pipe use per Linear shape.
set -uo pipefail
exec > >(tee ${OUT:-.}/session12-exp1.log) 2>&1
k=build-cuda/apps/kvrun; C=configs/bench
echo "commit $(cat .carry/commit)"; date -u
row() { local name=$1; shift; echo "$name | $($k bench "$@" 2>&1 | grep -A1 -E '^ batch' | tail -1)"; }
for r in 1 2; do
  for p in 0 1 2; do
    KVRUN_GPTQ_G1_PROBE=$p row gptq-b1-probe$p -c $C/qwen7b-gptq-int8-naive.toml --batch 1 --prompt-tokens 32 --new-tokens 256
  done
done
row bf16-b1 -c $C/qwen7b-bf16-int8-naive.toml --batch 1 --prompt-tokens 32 --new-tokens 256
printf '[model]\nsynthetic = "qwen-7b"\nsynthetic_weights = "gptq"\n[backend]\ndevice = "cuda"\ngraphs = false\n[attention]\nkind = "naive"\n[cache]\ntype = "int8"\n' > /tmp/g.toml
for p in 0 1; do
  echo "== ncu per Linear (q·k·v, o, gate·up, down), probe $p"
  KVRUN_GPTQ_G1_PROBE=$p ncu --clock-control none -k regex:gemv1 --launch-skip 128 --launch-count 4 \
    --metrics gpu__time_duration.sum,smsp__inst_executed.sum,smsp__issue_active.avg.pct_of_peak_sustained_active,smsp__warps_active.avg.per_cycle_active,regex:smsp__average_warps_issue_stalled_.*_per_issue_active\.ratio,regex:sm__pipe_.*_cycles_active\.avg\.pct_of_peak_sustained_active,regex:sm__inst_executed_pipe_.*\.avg\.pct_of_peak_sustained_active,dram__throughput.avg.pct_of_peak_sustained_elapsed \
    $k generate -c /tmp/g.toml --prompt-ids 1,2,3,4 --max-new-tokens 4 2>&1 | grep -E "^\s+(gpu__|smsp__|sm__|dram__)" | awk '$NF!="0" && $NF!="0.00"'
done
date -u
