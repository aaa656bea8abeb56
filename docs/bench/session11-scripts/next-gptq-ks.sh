# Prepared in session 11, not run (device time spent): branch gptq-g1-ks (also KVRUN_GPTQ_G1_CHAINS=2,
# two independent mma chains per chunk, at the end). The batch-1 GPTQ GEMV
# (gemv1_mma_kernel) splits each column tile's k range over ks warps; the plan picks the largest ks
# whose grid fits one wave. KVRUN_GPTQ_G1_KS forces it (1, 2, 4, 8) for every Linear, to see whether
# the automatic pick leaves time on the table (each block converts all of x into shared memory,
# so more blocks cost x conversions; fewer leave SMs short of warps). Build: git checkout
# gptq-g1-ks && scripts/gpu-pack.sh tiny-qwen2-gptq-int4; then scripts/gpu-run.sh bash .carry/next-gptq-ks.sh
set -uo pipefail
exec > >(tee ${OUT:-.}/session12-gptq-ks.log) 2>&1
b=build-cuda/tests; k=build-cuda/apps/kvrun; C=configs/bench
echo "commit $(cat .carry/commit)"; date -u
for v in 0 8; do
  KVRUN_GPTQ_G1_KS=$v timeout 120 $b/test_plugin_weights_gptq -tc='*CUDA*' > /tmp/t$v.log 2>&1
  echo "weights_gptq KS=$v rc=$? $(grep 'test cases' /tmp/t$v.log | tail -1)"
done
row() { local name=$1; shift; echo "$name | $($k bench "$@" 2>&1 | grep -A1 -E '^ batch' | tail -1)"; }
for r in 1 2; do for v in 0 1 2 4 8; do
  KVRUN_GPTQ_G1_KS=$v row b1-gptq-ks$v -c $C/qwen7b-gptq-int8-naive.toml --batch 1 --prompt-tokens 32 --new-tokens 256
done; done
# Two mma chains per chunk instead of one (KVRUN_GPTQ_G1_CHAINS=2): the suite, then A/B rows.
KVRUN_GPTQ_G1_CHAINS=2 timeout 120 $b/test_plugin_weights_gptq -tc='*CUDA*' > /tmp/tc.log 2>&1
echo "weights_gptq CHAINS=2 rc=$? $(grep 'test cases' /tmp/tc.log | tail -1)"
for r in 1 2; do for v in 1 2; do
  KVRUN_GPTQ_G1_CHAINS=$v row b1-gptq-chains$v -c $C/qwen7b-gptq-int8-naive.toml --batch 1 --prompt-tokens 32 --new-tokens 256
done; done
printf '[model]\nsynthetic = "qwen-7b"\nsynthetic_weights = "gptq"\n[backend]\ndevice = "cuda"\ngraphs = false\n[attention]\nkind = "naive"\n[cache]\ntype = "int8"\n' > /tmp/g.toml
for v in 0 1 2 4 8; do
  echo "== gemv1 per Linear (q·k·v, o, gate·up, down), KS=$v"
  KVRUN_GPTQ_G1_KS=$v ncu --clock-control none -k regex:gemv1 --launch-skip 100 --launch-count 4 --metrics gpu__time_duration.sum,launch__grid_size,sm__warps_active.avg.pct_of_peak_sustained_active \
    $k generate -c /tmp/g.toml --prompt-ids 1,2,3,4 --max-new-tokens 8 2>&1 | grep -E "^    [a-z]"
done
date -u
