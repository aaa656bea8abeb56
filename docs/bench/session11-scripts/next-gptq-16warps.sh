# Prepared in session 11, not run (device time spent): branch gptq-g1-16 — the batch-1 GPTQ GEMV
# (gemv1_mma_kernel) with 16 warps per block instead of 8. Every block converts x into shared memory
# and copies its scale/zero entries once; with 16 warps those copies serve twice the warps, and
# down_proj (K = 11008: 44 KB of x per block, 2 blocks of 8 warps per SM) gets 32 warps per SM
# instead of 16. Build: on main, scripts/gpu-pack.sh and copy
# build-cuda/plugins/weights_gptq/kvrun_weights_gptq.so to .carry/old; then git checkout gptq-g1-16 &&
# scripts/gpu-pack.sh tiny-qwen2-gptq-int4 && git rev-parse HEAD > .carry/commit; copy this script to
# .carry; scripts/gpu-run.sh bash .carry/next-gptq-16warps.sh
set -uo pipefail
exec > >(tee ${OUT:-.}/session12-gptq-16warps.log) 2>&1
b=build-cuda/tests; k=build-cuda/apps/kvrun; C=configs/bench
echo "commit $(cat .carry/commit)"; date -u
timeout 120 $b/test_plugin_weights_gptq -tc='*CUDA*' > /tmp/t.log 2>&1
echo "weights_gptq (16 warps) rc=$? $(grep 'test cases' /tmp/t.log | tail -1)"; grep -E "ERROR|FAILED" -A8 /tmp/t.log | head -20
printf '[model]\npath = "%s"\n[backend]\ndevice = "cuda"\n[cache]\ntype = "int8"\n[attention]\nkind = "naive"\n' "$KVRUN_FIXTURES/tiny-qwen2-gptq-int4" > /tmp/p.toml
echo "ppl tiny-qwen2-gptq-int4 int8:naive (16 warps): $($k perplexity -c /tmp/p.toml --text "$KVRUN_DATA/pystdlib-valid.txt" 2>&1 | tail -1)"
row() { local name=$1; shift; echo "$name | $($k bench "$@" 2>&1 | grep -A1 -E '^ batch' | tail -1)"; }
for r in 1 2 3; do
  row b1-gptq-16warps -c $C/qwen7b-gptq-int8-naive.toml --batch 1 --prompt-tokens 32 --new-tokens 256
  KVRUN_PLUGIN_PATH=$PWD/.carry/old row b1-gptq-main -c $C/qwen7b-gptq-int8-naive.toml --batch 1 --prompt-tokens 32 --new-tokens 256
done
printf '[model]\nsynthetic = "qwen-7b"\nsynthetic_weights = "gptq"\n[backend]\ndevice = "cuda"\ngraphs = false\n[attention]\nkind = "naive"\n[cache]\ntype = "int8"\n' > /tmp/g.toml
for v in new main; do
  pp=""; [ $v = main ] && pp=$PWD/.carry/old
  echo "== gemv1 per Linear (q·k·v, o, gate·up, down), $v"
  KVRUN_PLUGIN_PATH=$pp ncu --clock-control none -k regex:gemv1 --launch-skip 100 --launch-count 4 --metrics gpu__time_duration.sum,launch__grid_size,sm__warps_active.avg.pct_of_peak_sustained_active,dram__throughput.avg.pct_of_peak_sustained_elapsed \
    $k generate -c /tmp/g.toml --prompt-ids 1,2,3,4 --max-new-tokens 8 2>&1 | grep -E "^    [a-z]"
done
timeout 120 compute-sanitizer --tool memcheck --error-exitcode 9 $b/test_plugin_weights_gptq -tc='*CUDA*' > /tmp/s.log 2>&1; echo "memcheck weights_gptq rc=$? $(grep 'ERROR SUMMARY' /tmp/s.log|tail -1)"
date -u
