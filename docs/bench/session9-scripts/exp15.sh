set -uo pipefail
exec > >(tee ${OUT:-.}/session9-exp15.log) 2>&1
b=build-cuda/tests; k=build-cuda/apps/kvrun
echo "commit $(cat .carry/commit)"; date -u
KVRUN_CUDA_WGMMA_STAGES=4 timeout 60 $b/test_cuda_ops -tc='*wgmma*' > /tmp/w.log 2>&1; rc=$?; echo "test_cuda_ops wgmma (4 stages default) rc=$rc $(grep 'test cases' /tmp/w.log | tail -1)"
if [ $rc = 124 ]; then echo "hang: stopping"; exit 1; fi
row() { local name=$1; shift; echo "$name | $(timeout 60 $k bench "$@" 2>&1 | grep -A1 -E '^ batch' | tail -1)"; }
C=configs/bench; I="-c $C/qwen7b-bf16-int8-naive.toml --prompt-tokens 32"
for r in 1 2; do
KVRUN_CUDA_WGMMA_MAX_ROWS=0 row b64-cublas $I --batch 64 --new-tokens 128
KVRUN_CUDA_WGMMA_STAGES=4 row b64-st4x2 $I --batch 64 --new-tokens 128
row b64-st9 $I --batch 64 --new-tokens 128
done
for st in 4 9; do for d in 0 1; do
echo "== ncu stages $st dbg $d"
KVRUN_CUDA_WGMMA_STAGES=$st KVRUN_CUDA_WGMMA_DEBUG=$d timeout 100 ncu --clock-control none --kernel-name regex:'gemm_wgmma' --launch-skip 300 --launch-count 4 --metrics gpu__time_duration.sum,sm__cycles_active.avg,sm__cycles_active.max --csv $k bench $I --batch 64 --new-tokens 4 --warmup-tokens 0 2>/dev/null | grep -E 'gpu__time|sm__' | awk -F'","' '{printf "%s %s=%s ", $9, $(NF-2), $NF} NR%3==0 {print ""}' | sed 's/"//g' | head -4
done; done
date -u
