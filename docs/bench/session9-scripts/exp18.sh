set -uo pipefail
exec > >(tee ${OUT:-.}/session9-exp18.log) 2>&1
b=build-cuda/tests; k=build-cuda/apps/kvrun
echo "commit $(cat .carry/commit)"; date -u
timeout 60 $b/test_cuda_ops -tc='*wgmma*' > /tmp/w.log 2>&1; rc=$?; echo "test_cuda_ops wgmma rc=$rc $(grep 'test cases' /tmp/w.log | tail -1)"
grep -E "ERROR|FAILED" -A10 /tmp/w.log | head -24
if [ $rc = 124 ]; then echo "hang: stopping"; exit 1; fi
row() { local name=$1; shift; echo "$name | $(timeout 60 $k bench "$@" 2>&1 | grep -A1 -E '^ batch' | tail -1)"; }
C=configs/bench; I="-c $C/qwen7b-bf16-int8-naive.toml --prompt-tokens 32"
echo "name | batch new tok/s ms/step p90 floor_ms %floor ttft prefill weights kv workspace peak"
row b64-wg-pingpong $I --batch 64 --new-tokens 128
KVRUN_CUDA_WGMMA_MAX_ROWS=0 row b64-cublas $I --batch 64 --new-tokens 128
echo "== ncu (q·k·v, o, gate·up, down)"
timeout 60 ncu --clock-control none --kernel-name regex:'gemm_wgmma' --launch-skip 300 --launch-count 4 --metrics gpu__time_duration.sum,sm__cycles_active.avg,sm__cycles_active.max --csv $k bench $I --batch 64 --new-tokens 4 --warmup-tokens 0 2>/dev/null | grep -E 'gpu__time|sm__' | awk -F'","' '{printf "%s=%s ", $(NF-2), $NF} NR%3==0 {print ""}' | sed 's/"//g' | head -4
row b64-1024-wg $I --batch 64 --new-tokens 1024
KVRUN_CUDA_WGMMA_MAX_ROWS=0 row b64-1024-cublas $I --batch 64 --new-tokens 1024
for bb in 16 32; do row b$bb-wg $I --batch $bb --new-tokens 128; KVRUN_CUDA_WGMMA_MAX_ROWS=0 row b$bb-cublas $I --batch $bb --new-tokens 128; done
date -u
