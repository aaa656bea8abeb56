# Session 12, exp3: build-cuda = main with gptq-g1-lean merged; .carry/s8 = branch gptq-s8 (8-stage
# ring per warp); .carry/probe = branch gptq-probe2 (KVRUN_GPTQ_G1_PROBE 0..3 on the lean kernel:
# 1 no weight stream, 2 also no x, 3 every batch-1 GEMV returns at once). Rows twice, ncu per Linear.
set -uo pipefail
exec > >(tee ${OUT:-.}/session12-exp3.log) 2>&1
b=build-cuda/tests; k=build-cuda/apps/kvrun; C=configs/bench
echo "commit $(cat .carry/commit)"; date -u
KVRUN_PLUGIN_PATH=$PWD/.carry/s8 timeout 120 $b/test_plugin_weights_gptq -tc='*CUDA*' > /tmp/t.log 2>&1
echo "weights_gptq (s8) rc=$? $(grep 'test cases' /tmp/t.log | tail -1)"
row() { local name=$1; shift; echo "$name | $($k bench "$@" 2>&1 | grep -A1 -E '^ batch' | tail -1)"; }
G="-c $C/qwen7b-gptq-int8-naive.toml --batch 1 --prompt-tokens 32 --new-tokens 256"
for r in 1 2; do
  row b1-gptq-lean $G
  KVRUN_PLUGIN_PATH=$PWD/.carry/s8 row b1-gptq-s8 $G
  for p in 0 1 2 3; do KVRUN_GPTQ_G1_PROBE=$p KVRUN_PLUGIN_PATH=$PWD/.carry/probe row b1-gptq-probe$p $G; done
done
printf '[model]\nsynthetic = "qwen-7b"\nsynthetic_weights = "gptq"\n[backend]\ndevice = "cuda"\ngraphs = false\n[attention]\nkind = "naive"\n[cache]\ntype = "int8"\n' > /tmp/g.toml
for v in lean s8; do
  pp=""; [ $v = s8 ] && pp=$PWD/.carry/s8
  echo "== gemv1 per Linear (q·k·v, o, gate·up, down), $v"
  KVRUN_PLUGIN_PATH=$pp ncu --clock-control none -k regex:gemv1 --launch-skip 128 --launch-count 4 --metrics gpu__time_duration.sum,launch__grid_size,smsp__warps_active.avg.per_cycle_active,regex:smsp__average_warps_issue_stalled_(long_scoreboard|wait|short_scoreboard|barrier)_per_issue_active\.ratio \
    $k generate -c /tmp/g.toml --prompt-ids 1,2,3,4 --max-new-tokens 4 2>&1 | grep -E "^    [a-z]"
done
date -u
