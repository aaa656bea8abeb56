# Session 12, exp2: the batch-1 GPTQ GEMV, three builds in one call. build-cuda = branch gptq-g1-lean
# (one round trip to x before the barrier, one scale/zero entry per stage when both chunks share a
# group, running cp.async source pointer); .carry/old = main's plugin; .carry/w16 = branch gptq-g1-16
# (16 warps per block). Suite + perplexity + memcheck of gptq-g1-lean, A/B/C rows three times, ncu
# per Linear.
set -uo pipefail
exec > >(tee ${OUT:-.}/session12-exp2.log) 2>&1
b=build-cuda/tests; k=build-cuda/apps/kvrun; C=configs/bench
echo "commit $(cat .carry/commit)"; date -u
timeout 120 $b/test_plugin_weights_gptq > /tmp/t.log 2>&1
echo "weights_gptq rc=$? $(grep 'test cases' /tmp/t.log | tail -1)"; grep -E "ERROR|FAILED" -A8 /tmp/t.log | head -20
for v in lean main w16; do
  pp=""; [ $v = main ] && pp=$PWD/.carry/old; [ $v = w16 ] && pp=$PWD/.carry/w16
  printf '[model]\npath = "%s"\n[backend]\ndevice = "cuda"\n[cache]\ntype = "int8"\n[attention]\nkind = "naive"\n' "$KVRUN_FIXTURES/tiny-qwen2-gptq-int4" > /tmp/p.toml
  echo "ppl tiny-qwen2-gptq-int4 int8:naive ($v): $(KVRUN_PLUGIN_PATH=$pp $k perplexity -c /tmp/p.toml --text "$KVRUN_DATA/pystdlib-valid.txt" 2>&1 | tail -1)"
done
row() { local name=$1; shift; echo "$name | $($k bench "$@" 2>&1 | grep -A1 -E '^ batch' | tail -1)"; }
for r in 1 2 3; do
  row b1-gptq-lean -c $C/qwen7b-gptq-int8-naive.toml --batch 1 --prompt-tokens 32 --new-tokens 256
  KVRUN_PLUGIN_PATH=$PWD/.carry/old row b1-gptq-main -c $C/qwen7b-gptq-int8-naive.toml --batch 1 --prompt-tokens 32 --new-tokens 256
  KVRUN_PLUGIN_PATH=$PWD/.carry/w16 row b1-gptq-w16 -c $C/qwen7b-gptq-int8-naive.toml --batch 1 --prompt-tokens 32 --new-tokens 256
done
printf '[model]\nsynthetic = "qwen-7b"\nsynthetic_weights = "gptq"\n[backend]\ndevice = "cuda"\ngraphs = false\n[attention]\nkind = "naive"\n[cache]\ntype = "int8"\n' > /tmp/g.toml
for v in lean main w16; do
  pp=""; [ $v = main ] && pp=$PWD/.carry/old; [ $v = w16 ] && pp=$PWD/.carry/w16
  echo "== gemv1 per Linear (q·k·v, o, gate·up, down), $v"
  KVRUN_PLUGIN_PATH=$pp ncu --clock-control none -k regex:gemv1 --launch-skip 128 --launch-count 4 --metrics gpu__time_duration.sum,launch__grid_size,smsp__inst_executed.sum,smsp__issue_active.avg.pct_of_peak_sustained_active,smsp__warps_active.avg.per_cycle_active \
    $k generate -c /tmp/g.toml --prompt-ids 1,2,3,4 --max-new-tokens 4 2>&1 | grep -E "^    [a-z]"
done
timeout 150 compute-sanitizer --tool memcheck --error-exitcode 9 $b/test_plugin_weights_gptq -tc='*CUDA*' > /tmp/s.log 2>&1; echo "memcheck weights_gptq rc=$? $(grep 'ERROR SUMMARY' /tmp/s.log|tail -1)"
date -u
