# Session 12, exp4: build-cuda = main (lean GEMV); .carry/trig = branch gptq-trigger
# (KVRUN_GPTQ_G1_TRIGGER=1: the batch-1 GEMV calls pdl_trigger at its start, so the next kernel is
# launched at once and its blocks prefetch wherever they fit). Suite with the trigger, rows three
# times, and the lean kernel's stall reasons per Linear.
set -uo pipefail
exec > >(tee ${OUT:-.}/session12-exp4.log) 2>&1
b=build-cuda/tests; k=build-cuda/apps/kvrun; C=configs/bench
echo "commit $(cat .carry/commit)"; date -u
KVRUN_GPTQ_G1_TRIGGER=1 KVRUN_PLUGIN_PATH=$PWD/.carry/trig timeout 120 $b/test_plugin_weights_gptq -tc='*CUDA*' > /tmp/t.log 2>&1
echo "weights_gptq (trigger at start) rc=$? $(grep 'test cases' /tmp/t.log | tail -1)"
KVRUN_GPTQ_G1_TRIGGER=1 KVRUN_PLUGIN_PATH=$PWD/.carry/trig timeout 120 $b/test_model_cuda -tc='*gptq*' > /tmp/m.log 2>&1
echo "test_model_cuda gptq (trigger at start) rc=$? $(grep 'test cases' /tmp/m.log | tail -1)"
row() { local name=$1; shift; echo "$name | $($k bench "$@" 2>&1 | grep -A1 -E '^ batch' | tail -1)"; }
G="-c $C/qwen7b-gptq-int8-naive.toml --batch 1 --prompt-tokens 32 --new-tokens 256"
for r in 1 2 3; do
  row b1-gptq-lean $G
  KVRUN_GPTQ_G1_TRIGGER=0 KVRUN_PLUGIN_PATH=$PWD/.carry/trig row b1-gptq-trig0 $G
  KVRUN_GPTQ_G1_TRIGGER=1 KVRUN_PLUGIN_PATH=$PWD/.carry/trig row b1-gptq-trig1 $G
done
printf '[model]\nsynthetic = "qwen-7b"\nsynthetic_weights = "gptq"\n[backend]\ndevice = "cuda"\ngraphs = false\n[attention]\nkind = "naive"\n[cache]\ntype = "int8"\n' > /tmp/g.toml
echo "== gemv1 per Linear (q·k·v, o, gate·up, down), lean"
M='gpu__time_duration.sum,smsp__inst_executed.sum,smsp__warps_active.avg.per_cycle_active,regex:smsp__average_warps_issue_stalled_.*_per_issue_active\.ratio'
ncu --clock-control none -k regex:gemv1 --launch-skip 128 --launch-count 4 --metrics "$M" \
  $k generate -c /tmp/g.toml --prompt-ids 1,2,3,4 --max-new-tokens 4 2>&1 | grep -E "^    [a-z]" | awk '$NF!="0" && $NF!="0.00"'
date -u
